"""The device's own work (storing rows, writing files, reading metadata), with answers known by hand.

On loopback a transfer takes no time on the manual clock, so a sync lasts exactly the device
processing it spends; on a slow link it lasts its transfers plus that processing. Time scale 60, as
`syncsim run` uses it: processing is real time, never compressed.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from simulator.clock import ManualClock
from simulator.device.processing import KIND_NAMES, KINDS, NO_PROCESSING, Processing, processing_for
from simulator.fleet import build_fleet, connection_of, processing_of
from simulator.network import NetworkModel
from simulator.scenario import Scenario, ScenarioError, parse_scenario
from tests.rig import Rig

SCALE = 60.0
MIB = 1 << 20


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(time_scale=SCALE)


def _scenario(tables: list[dict[str, Any]], devices: list[dict[str, Any]] | None = None,
              classes: list[dict[str, Any]] | None = None) -> Scenario:
    profile = [{"table": t["logical_name"]} for t in tables]
    return parse_scenario({
        "name": "processing", "seed": 3, "tables": tables,
        "user_classes": classes or [{"name": "manager", "count": 1, "profile": profile,
                                     **({"devices": devices} if devices else {})}],
    })


def _rows(n: int, name: str = "account") -> dict[str, Any]:
    return {"logical_name": name, "rows": n, "row_bytes": 200}


# --- the engine ---------------------------------------------------------------------------------------
async def test_storing_5000_rows_at_1000_a_second_adds_5_seconds_to_the_data_phase(rig_factory: Any) -> None:
    rig: Rig = await rig_factory(_scenario([_rows(5000)]))
    free = await rig.device("manager-0001", page_size=1000).sync_once()
    assert free.result == "success" and free.rows == 5000
    assert free.duration_s == 0 and free.phases["data"] == 0 and free.processing_s == {}
    record = await rig.device("manager-0001", page_size=1000,
                              processing=Processing(store_rows_per_s=1000)).sync_once()
    assert record.result == "success" and record.rows == 5000
    assert record.phases["data"] == pytest.approx(5.0)  # 5 pages of 1,000 rows, 1 s each
    assert record.processing_s == pytest.approx({"data": 5.0})
    assert record.phases["metadata"] == 0 and record.duration_s == pytest.approx(5.0)
    first = rig.metrics.first_syncs[-1]
    assert first.processing_s == pytest.approx({"data": 5.0}) and first.duration_s == pytest.approx(5.0)


async def test_a_delta_pays_for_the_rows_it_changes_and_nothing_for_rows_already_held(rig_factory: Any) -> None:
    rig: Rig = await rig_factory(_scenario([_rows(200)]))
    device = rig.device("manager-0001", processing=Processing(store_rows_per_s=100))
    first = await device.sync_once()
    assert first.phases["data"] == pytest.approx(2.0)  # 200 rows at 100 a second
    quiet = await device.sync_once()
    assert quiet.mode == "DELTA_SYNC" and quiet.processing_s == {} and quiet.duration_s == 0
    for row_id in list(device.store.ids("account"))[:3]:
        rig.back_office_update("account", row_id, {"name": "changed"})
    delta = await device.sync_once()
    assert delta.rows == 3
    assert delta.processing_s == pytest.approx({"data": 0.03}) and delta.duration_s == pytest.approx(0.03)


async def test_metadata_for_4_tables_at_half_a_second_each_adds_2_seconds(rig_factory: Any) -> None:
    rig: Rig = await rig_factory(_scenario([_rows(10, f"table{i}") for i in range(4)]))
    record = await rig.device("manager-0001", processing=Processing(metadata_s_per_table=0.5)).sync_once()
    assert record.result == "success"
    assert record.phases["metadata"] == pytest.approx(2.0) and record.phases["data"] == 0
    assert record.processing_s == pytest.approx({"metadata": 2.0})
    # and the phase grows with the tables of the profile: one table, a quarter of it
    one: Rig = await rig_factory(_scenario([_rows(10)]))
    single = await one.device("manager-0001", processing=Processing(metadata_s_per_table=0.5)).sync_once()
    assert single.phases["metadata"] == pytest.approx(0.5)


async def test_a_10_mib_file_written_at_5_mib_a_second_adds_2_seconds_to_the_files_phase(rig_factory: Any) -> None:
    notes = {"logical_name": "annotation", "rows": 1, "row_bytes": 200, "columns": [
        {"name": "documentbody", "type": "file", "size": {"median_kb": 10240, "sigma": 0, "max_kb": 16384}}]}
    rig: Rig = await rig_factory(_scenario([notes]))
    ranges: list[str] = []
    rig.events.request.add_listener(lambda **kw: ranges.append(kw["name"]) if kw["name"].endswith("$value") else None)
    record = await rig.device("manager-0001", processing=Processing(write_file_mb_per_s=5)).sync_once()
    assert record.result == "success" and record.file_bytes == 10 * MIB
    assert len(ranges) == 3  # 4 + 4 + 2 MiB, one wait each
    assert record.phases["files"] == pytest.approx(2.0)
    assert record.processing_s == pytest.approx({"files": 2.0}) and record.duration_s == pytest.approx(2.0)


async def test_processing_adds_to_transfers_on_a_slow_link(rig_factory: Any) -> None:
    rig: Rig = await rig_factory(_scenario([_rows(600)]))
    link = NetworkModel(np.random.default_rng(0), down_kbps=100, up_kbps=100, name="100kbps")
    free = await rig.device("manager-0001", network=link, page_size=100).sync_once()
    link = NetworkModel(np.random.default_rng(0), down_kbps=100, up_kbps=100, name="100kbps")
    slow = await rig.device("manager-0001", network=link, page_size=100,
                            processing=Processing(store_rows_per_s=200, metadata_s_per_table=1.5)).sync_once()
    assert free.duration_s > 10  # 600 rows of about 200 bytes at 100 kbps
    assert slow.phases["metadata"] - free.phases["metadata"] == pytest.approx(1.5, abs=1e-6)
    assert slow.phases["data"] - free.phases["data"] == pytest.approx(600 / 200, abs=1e-6)
    assert slow.duration_s - free.duration_s == pytest.approx(4.5, abs=1e-6)
    assert slow.processing_s == pytest.approx({"metadata": 1.5, "data": 3.0})


async def test_a_devices_own_work_keeps_its_connection_and_a_wait_past_the_keep_alive_does_not(
        rig_factory: Any) -> None:
    """The keep-alive (60 s) counts the device's lived time: storing a page of 5,000 rows at 1,000 a second
    is 5 s of it (300 scenario seconds at time_scale 60) and keeps the connection, as on a real phone,
    while 61 s of waiting between syncs ends it and 59 s does not."""
    rig: Rig = await rig_factory(_scenario([_rows(10_000)]))
    model = NetworkModel(np.random.default_rng(0), latency_ms=100, name="100ms")
    device = rig.device("manager-0001", network=model, page_size=5000, processing=Processing(store_rows_per_s=1000))
    started = rig.clock.now()
    first = await device.sync_once()
    assert first.result == "success" and first.processing_s == pytest.approx({"data": 10.0})  # 2 pages, 5 s each
    assert rig.clock.now() - started > 2 * 5 * SCALE  # idle for 300 scenario seconds after each page
    assert model.connections.opened == 1  # one set-up for the whole sync
    await device.timeline.sleep(61, "idle")
    assert (await device.sync_once()).mode == "DELTA_SYNC" and model.connections.opened == 2
    await device.timeline.sleep(59, "idle")
    assert (await device.sync_once()).result == "success" and model.connections.opened == 2


# --- device kinds in a scenario -------------------------------------------------------------------------
async def test_two_classes_on_the_same_network_differ_by_their_devices_processing(rig_factory: Any) -> None:
    tables = [_rows(1200), _rows(800, "contact")]
    profile = [{"table": "account"}, {"table": "contact"}]
    scenario = _scenario(tables, classes=[
        {"name": "fieldtech", "count": 1, "profile": profile, "networks": {"4g": 1.0},
         "devices": [{"storage_mb": 4096, "kind": "low_end_phone"}]},
        {"name": "office", "count": 1, "profile": profile, "networks": {"4g": 1.0},
         "devices": [{"storage_mb": 65536, "kind": "laptop"}]}])
    fleet = {e.spec.user_class: e.spec for e in build_fleet(scenario)}
    assert fleet["fieldtech"].processing == KINDS["low_end_phone"] and fleet["office"].processing == KINDS["laptop"]
    rig: Rig = await rig_factory(scenario)

    def link() -> NetworkModel:  # the same link for both: 1,000 kbps, no latency
        return NetworkModel(np.random.default_rng(0), down_kbps=1000, up_kbps=1000, name="1000kbps")

    phone = await rig.device("fieldtech-0001", network=link(), processing=fleet["fieldtech"].processing).sync_once()
    laptop = await rig.device("office-0001", network=link(), processing=fleet["office"].processing).sync_once()
    assert phone.rows == laptop.rows == 2000
    # metadata: 2 tables x (1.0 - 0.1) s; rows: 2,000 x (1/400 - 1/3,000) s
    assert phone.phases["metadata"] - laptop.phases["metadata"] == pytest.approx(2 * 0.9, abs=1e-3)
    assert phone.phases["data"] - laptop.phases["data"] == pytest.approx(2000 / 400 - 2000 / 3000, abs=1e-3)
    assert phone.duration_s - laptop.duration_s == pytest.approx(1.8 + 5 - 2 / 3, abs=1e-3)
    assert sum(phone.processing_s.values()) == pytest.approx(2 * 1.0 + 2000 / 400)
    assert sum(laptop.processing_s.values()) == pytest.approx(2 * 0.1 + 2000 / 3000)


def test_a_device_kind_names_a_built_in_kind_and_overrides_its_figures() -> None:
    s = _scenario([_rows(10)], devices=[
        {"name": "old", "storage_mb": 512, "kind": "low_end_phone", "store_rows_per_s": 100},
        {"name": "new", "storage_mb": 512, "write_file_mb_per_s": 9, "share": 2},
        {"name": "plain", "storage_mb": 512}])
    old, new, plain = s.user_classes[0].devices
    assert processing_of(old) == Processing(100, KINDS["low_end_phone"].write_file_mb_per_s,
                                          KINDS["low_end_phone"].metadata_s_per_table)
    assert processing_of(new) == Processing(None, 9, 0.0)
    assert processing_of(plain) == NO_PROCESSING and processing_of(plain).free  # today's behaviour: free
    assert processing_for(None) == NO_PROCESSING


def test_every_built_in_kind_has_every_figure_and_slower_kinds_are_slower() -> None:
    assert set(KINDS) == set(KIND_NAMES) == {"low_end_phone", "mid_range_phone", "tablet", "laptop"}
    order = [KINDS[k] for k in ("low_end_phone", "mid_range_phone", "tablet", "laptop")]
    for slower, faster in zip(order, order[1:], strict=False):
        assert slower.store_rows_per_s is not None and faster.store_rows_per_s is not None
        assert slower.write_file_mb_per_s is not None and faster.write_file_mb_per_s is not None
        assert slower.store_rows_per_s < faster.store_rows_per_s
        assert slower.write_file_mb_per_s < faster.write_file_mb_per_s
        assert slower.metadata_s_per_table > faster.metadata_s_per_table > 0


@pytest.mark.parametrize(("device", "field", "message"), [
    ({"kind": "phone"}, "kind",
     "Input should be 'low_end_phone', 'mid_range_phone', 'tablet' or 'laptop' (got 'phone')"),
    ({"store_rows_per_s": 0}, "store_rows_per_s", "Input should be greater than 0 (got 0)"),
    ({"write_file_mb_per_s": -1}, "write_file_mb_per_s", "Input should be greater than 0 (got -1)"),
    ({"metadata_s_per_table": -0.5}, "metadata_s_per_table", "Input should be greater than or equal to 0"),
])
def test_a_bad_processing_field_is_named_with_what_is_allowed(device: dict[str, Any], field: str, message: str) -> None:
    with pytest.raises(ScenarioError) as err:
        _scenario([_rows(10)], devices=[{"storage_mb": 512, **device}])
    assert f"user_classes.0.devices.0.{field}: {message}" in str(err.value)


def test_processing_figures_are_checked_in_python_too() -> None:
    with pytest.raises(ValueError, match="store_rows_per_s must be > 0"):
        Processing(store_rows_per_s=0)
    with pytest.raises(ValueError, match="metadata_s_per_table must be >= 0"):
        Processing(metadata_s_per_table=-1)
    p = Processing(store_rows_per_s=500, write_file_mb_per_s=2, metadata_s_per_table=0.25)
    assert (p.rows_s(1000), p.files_s(3 * MIB), p.metadata_s(4)) == (2.0, 1.5, 1.0)
    assert (NO_PROCESSING.rows_s(10**6), NO_PROCESSING.files_s(10**9), NO_PROCESSING.metadata_s(100)) == (0, 0, 0)


# --- the advisor ----------------------------------------------------------------------------------------
def test_the_advisor_adds_each_kinds_processing_and_the_share_weighted_mix_to_the_estimate() -> None:
    from simulator import advisor

    tables = [_rows(1000), _rows(500, "contact")]
    profile = [{"table": "account"}, {"table": "contact"}]

    def estimate(devices: list[dict[str, Any]]) -> tuple[Scenario, advisor.ClassEstimate]:
        s = parse_scenario({"name": "mix", "tables": tables, "networks": {"lan": {"latency_ms": 0}},
                            "user_classes": [{"name": "tech", "count": 4, "profile": profile,
                                              "networks": {"lan": 1.0, "wifi": 1.0}, "devices": devices}]})
        (c,) = advisor.report(s).classes
        return s, c

    _, plain = estimate([{"storage_mb": 4096}])
    s, mixed = estimate([{"name": "phone", "storage_mb": 4096, "kind": "low_end_phone", "share": 3},
                         {"name": "laptop", "storage_mb": 4096, "kind": "laptop", "share": 1}])
    assert plain.processing_s == {} and "processing" not in plain.first_sync_s["wifi"]
    # low-end phone: 2 tables x 1.0 s + 1,500 rows / 400 a second; laptop: 2 x 0.1 s + 1,500 / 3,000
    assert mixed.processing_s["phone"] == pytest.approx({"metadata": 2.0, "data": 3.75, "files": 0, "total": 5.75})
    assert mixed.processing_s["laptop"] == pytest.approx({"metadata": 0.2, "data": 0.5, "files": 0, "total": 0.7})
    mix = 0.75 * 5.75 + 0.25 * 0.7  # 4.4875 s
    # a network that takes no time: the estimate is the device's work alone
    assert plain.first_sync_s["lan"]["total"] == 0
    assert mixed.first_sync_s["lan"] == pytest.approx({"metadata": 0.75 * 2.0 + 0.25 * 0.2,
                                                       "data": 0.75 * 3.75 + 0.25 * 0.5, "files": 0.0,
                                                       "total": mix, "processing": mix})
    # on Wi-Fi each kind's estimate is its network time (the connection idling while the device works:
    # slow start after idle) plus its work, and the class's is their mean weighted by share
    wifi, conn = s.network("wifi"), connection_of(s.user_classes[0])
    phone = advisor.first_sync(mixed, wifi, conn, KINDS["low_end_phone"])["total"]
    laptop = advisor.first_sync(mixed, wifi, conn, KINDS["laptop"])["total"]
    assert phone - plain.first_sync_s["wifi"]["total"] >= 5.75
    assert mixed.first_sync_s["wifi"]["total"] == pytest.approx(0.75 * phone + 0.25 * laptop)
    assert mixed.first_sync_s["wifi"]["processing"] == pytest.approx(mix)
    assert mixed.to_dict()["processing_s"]["phone"]["total"] == 5.75


def test_the_advisor_counts_file_bytes_at_the_kinds_write_speed() -> None:
    from simulator import advisor

    notes = {"logical_name": "annotation", "rows": 4, "row_bytes": 200, "columns": [
        {"name": "documentbody", "type": "file", "size": {"median_kb": 10240, "sigma": 0, "max_kb": 16384}}]}
    s = _scenario([notes], devices=[{"storage_mb": 4096, "write_file_mb_per_s": 5}])
    (c,) = advisor.report(s).classes
    assert c.processing_s["device"]["files"] == pytest.approx(4 * 10 / 5)  # 40 MiB at 5 MiB/s


# --- the reports ----------------------------------------------------------------------------------------
def _first(device: str, processing: dict[str, float], duration_s: float) -> Any:
    from simulator.metrics import FirstSync

    return FirstSync(device, device[4:], "tech", "4g", 0.0, duration_s, True, 1,
                     {"metadata": 1.0, "data": 10.0}, {}, 600, 600_000, processing_s=processing)


def test_the_summary_reports_first_sync_processing_per_phase_and_in_total() -> None:
    from simulator.reports import summarize

    firsts = [_first("dev-a", {"metadata": 0.5, "data": 2.0}, 12.0), _first("dev-b", {"data": 4.0}, 14.0),
              _first("dev-c", {}, 9.0)]
    detail = summarize([], [], first_syncs=firsts)["classes"]["tech"]["first_sync_detail"]
    assert detail["processing_s"]["data"] == {"p50": 2.0, "p95": 3.8, "max": 4.0}
    assert detail["processing_s"]["metadata"] == {"p50": 0.0, "p95": 0.45, "max": 0.5}
    assert detail["processing_s"]["total"] == {"p50": 2.5, "p95": 3.85, "max": 4.0}
    assert "files" not in detail["processing_s"]
    none = summarize([], [], first_syncs=[_first("dev-c", {}, 9.0)])["classes"]["tech"]["first_sync_detail"]
    assert none["processing_s"] == {}


def test_processing_survives_the_csv_round_trip(tmp_path: Any) -> None:
    from simulator.metrics import SyncRecord
    from simulator.reports.files import (
        read_first_syncs_csv,
        read_records_csv,
        write_csv,
        write_first_syncs_csv,
    )

    record = SyncRecord("dev-a", "a", "tech", "FIRST_SYNC", "success", 0.0, 7.5, 2.0,
                        phases={"metadata": 1.0, "data": 6.5}, processing_s={"metadata": 0.5, "data": 5.0})
    (back,) = read_records_csv(write_csv([record], tmp_path / "syncs.csv"))
    assert back.processing_s == {"metadata": 0.5, "data": 5.0}
    first = _first("dev-a", {"data": 2.0}, 12.0)
    (again,) = read_first_syncs_csv(write_first_syncs_csv([first], tmp_path / "first_syncs.csv"))
    assert again.processing_s == {"data": 2.0} and again == first


def test_the_html_report_hatches_the_device_processing_inside_the_phases() -> None:
    from simulator.reports import summarize
    from simulator.reports.html import render_html

    firsts = [_first("dev-a", {"metadata": 0.5, "data": 2.0}, 12.0)]
    page = render_html(summarize([], [], first_syncs=firsts), [], "processing", first_syncs=firsts)
    assert "device processing" in page and "<pattern" in page
    plain = [_first("dev-a", {}, 12.0)]
    assert "<pattern" not in render_html(summarize([], [], first_syncs=plain), [], "plain", first_syncs=plain)


def test_the_documented_kinds_are_the_built_in_ones() -> None:
    from pathlib import Path

    doc = (Path(__file__).parent.parent / "docs" / "scenarios.md").read_text()
    for name, p in KINDS.items():
        row = next(line for line in doc.splitlines() if line.startswith(f"| `{name}` |"))
        cells = [c.strip().replace(",", "") for c in row.strip("|").split("|")]
        assert [float(c) for c in cells[1:]] == [p.store_rows_per_s, p.write_file_mb_per_s, p.metadata_s_per_table]
