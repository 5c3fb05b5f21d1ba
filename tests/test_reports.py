"""Summary reduction, console table, JSON and CSV outputs of simulator.reports."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from rich.console import Console

from simulator.metrics import DeviceEvent, FirstSync, SyncRecord
from simulator.reports import (
    read_events_csv,
    read_first_syncs_csv,
    read_records_csv,
    render_table,
    summarize,
    write_all,
    write_csv,
    write_events_csv,
    write_first_syncs_csv,
    write_json,
)
from simulator.reports.files import ALL_TABLES

T0 = 1_700_000_000.0


def rec(device: str = "d1", user_class: str = "tech", mode: str = "FIRST_SYNC", **kw: Any) -> SyncRecord:
    """A successful sync record with defaults; keyword arguments override any field."""
    fields: dict[str, Any] = {
        "device": device,
        "user": f"u-{device}",
        "user_class": user_class,
        "mode": mode,
        "result": "success",
        "start": T0,
        "duration_s": 1.0,
        "active_s": 0.5,
    }
    return SyncRecord(**{**fields, **kw})


def failed(device: str, code: str | None, user_class: str = "tech") -> SyncRecord:
    return rec(device, user_class, result="failed", error_code=code, duration_s=999.0)


def fs(device: str = "d1", user_class: str = "tech", duration_s: float = 1.0, **kw: Any) -> FirstSync:
    """A finished first sync in one attempt; keyword arguments override any field."""
    fields: dict[str, Any] = {"device": device, "user": f"u-{device}", "user_class": user_class, "network": "4g",
                              "start": T0, "duration_s": duration_s, "finished": True, "attempts": 1}
    return FirstSync(**{**fields, **kw})


def test_first_sync_percentiles_of_durations_1_to_100_are_linear_numpy_percentiles() -> None:
    firsts = [fs(f"d{i}", duration_s=float(i)) for i in range(1, 101)]
    first = summarize([], [], first_syncs=firsts)["classes"]["tech"]["first_sync"]
    assert first == {"count": 100, "p50": 50.5, "p95": 95.05, "p99": 99.01, "max": 100.0, "mean": 50.5}


def test_first_sync_time_spans_attempts_and_unfinished_ones_are_counted_not_left_out() -> None:
    firsts = [fs("d1", duration_s=53.0, attempts=2, rows=600, waits_s={"between_attempts": 20.0}),
              fs("d2", duration_s=40.0, rows=600),
              fs("d3", duration_s=70.0, finished=False, rows=100)]
    attempts = [rec("d1", duration_s=13.0, result="failed", error_code="NETWORK", rows_by_table={"a": 400}),
                rec("d1", duration_s=20.0, rows_by_table={"a": 200})]
    c = summarize(attempts, [], first_syncs=firsts)["classes"]["tech"]
    assert c["first_sync"]["count"] == 2 and c["first_sync"]["p50"] == 46.5  # not the 20 s of the last attempt
    assert c["rows_per_device"] == {"p50": 600.0, "max": 600.0}
    detail = c["first_sync_detail"]
    assert detail["unfinished"] == {"count": 1, "elapsed_max": 70.0, "by_cause": {"STILL_RUNNING": 1}, "devices": ["d3"]}
    assert detail["attempts"] == {"mean": 1.5, "max": 2.0}
    assert detail["waits_s"]["between_attempts"]["max"] == 20.0
    assert c["failures_by_cause"] == {"NETWORK": 1}  # the failed attempt is still a failed sync


def test_final_syncs_of_the_quiet_period_count_for_uploads_not_for_times_or_failures() -> None:
    records = [rec(mode="DELTA_SYNC", duration_s=2.0, uploaded=4, conflicts=1),
               rec(mode="DELTA_SYNC", duration_s=90.0, uploaded=6, conflicts=1, final=True),
               rec(mode="DELTA_SYNC", result="failed", error_code="NETWORK", final=True)]
    c = summarize(records, [])["classes"]["tech"]
    assert c["delta_sync"]["count"] == 1 and c["delta_sync"]["max"] == 2.0
    assert (c["uploaded"], c["conflicts"], c["conflict_rate"]) == (10, 2, 0.2)
    assert (c["failed"], c["failures_by_cause"], c["final_syncs"]) == (0, {}, 2)


def test_failed_syncs_are_counted_by_cause_and_left_out_of_durations() -> None:
    records = [rec("d1", duration_s=10.0), failed("d2", "STORAGE_FULL"), failed("d3", "STORAGE_FULL")]
    records += [failed("d4", "NETWORK"), failed("d5", None)]
    c = summarize(records, [], first_syncs=[fs("d1", duration_s=10.0)])["classes"]["tech"]
    assert (c["syncs"], c["failed"]) == (5, 4)
    assert c["failures_by_cause"] == {"STORAGE_FULL": 2, "NETWORK": 1, "UNKNOWN": 1}
    assert c["first_sync"]["count"] == 1 and c["first_sync"]["max"] == 10.0


def test_each_mode_gets_its_own_duration_statistics() -> None:
    records = [
        rec(duration_s=30.0),
        rec(mode="DELTA_SYNC", duration_s=2.0),
        rec(mode="DELTA_SYNC", duration_s=4.0),
    ]
    records.append(rec(mode="FORCED_SYNC", duration_s=20.0))
    summary = summarize(records, [])
    c = summary["classes"]["tech"]
    assert c["delta_sync"] == {"count": 2, "p50": 3.0, "p95": 3.9, "p99": 3.98, "max": 4.0}
    assert c["forced_sync"] == {"count": 1, "p50": 20.0, "p95": 20.0}
    assert summary["mode_counts"] == {"DELTA_SYNC": 2, "FIRST_SYNC": 1, "FORCED_SYNC": 1}


def test_conflict_and_rejection_rates_are_shares_of_uploaded_operations() -> None:
    records = [
        rec(mode="DELTA_SYNC", uploaded=30, applied=27, conflicts=2, rejections=1),
        rec(mode="DELTA_SYNC", uploaded=0),
        rec("d2", "sales", mode="DELTA_SYNC", uploaded=3, conflicts=1),
    ]
    classes = summarize(records, [])["classes"]
    assert (classes["tech"]["conflict_rate"], classes["tech"]["rejection_rate"]) == (0.0667, 0.0333)
    assert (classes["tech"]["uploaded"], classes["tech"]["conflicts"], classes["tech"]["rejections"]) == (
        30,
        2,
        1,
    )
    assert classes["sales"]["conflict_rate"] == 0.3333


def test_rates_are_zero_when_nothing_was_uploaded() -> None:
    c = summarize([rec()], [])["classes"]["tech"]
    assert (c["conflict_rate"], c["rejection_rate"]) == (0.0, 0.0)


def test_user_classes_are_summarised_separately_and_sorted_by_name() -> None:
    records = [rec("t1", "tech", duration_s=10.0), rec("t2", "tech", duration_s=20.0)]
    records += [rec("m1", "manager", duration_s=100.0), failed("m2", "NETWORK", "manager")]
    firsts = [fs("t1", "tech", 10.0), fs("t2", "tech", 20.0), fs("m1", "manager", 100.0)]
    classes = summarize(records, [], first_syncs=firsts)["classes"]
    assert list(classes) == ["manager", "tech"]
    assert classes["tech"]["first_sync"]["p50"] == 15.0 and classes["tech"]["failed"] == 0
    assert classes["manager"]["first_sync"]["p50"] == 100.0 and classes["manager"]["devices"] == 2
    assert classes["tech"]["failures_by_cause"] == {}


def test_a_class_seen_only_in_events_has_zero_syncs_and_null_statistics() -> None:
    events = [
        DeviceEvent("d9", "visitor", "airplane_on", T0),
        DeviceEvent("d9", "visitor", "airplane_off", T0 + 5),
    ]
    c = summarize([rec()], events)["classes"]["visitor"]
    assert (c["devices"], c["syncs"], c["failed"]) == (1, 0, 0)
    assert c["first_sync"] == {"count": 0, "p50": None, "p95": None, "p99": None, "max": None, "mean": None}
    assert c["delta_sync"]["count"] == 0 and c["delta_sync"]["p95"] is None
    assert c["first_sync_phases"]["data"] == {"p50": None, "p95": None}
    assert c["rows_per_device"] == {"p50": None, "max": None}
    assert c["storage"] == {"used_p50": None, "used_max": None, "capacity_p50": None, "used_share_max": None}
    assert c["events"] == {"airplane_off": 1, "airplane_on": 1}


def test_no_records_and_no_events_give_an_empty_summary() -> None:
    summary = summarize([], [])
    assert summary["classes"] == {} and summary["mode_counts"] == {}
    assert set(summary["totals"].values()) == {0}


def test_first_sync_phases_report_p50_and_p95_per_phase() -> None:
    firsts = [fs(f"d{i}", phases={"metadata": 1.0, "data": float(i), "files": 0.5}) for i in range(1, 5)]
    firsts.append(fs("d5", phases={"metadata": 9.0}, finished=False))
    phases = summarize([], [], first_syncs=firsts)["classes"]["tech"]["first_sync_phases"]
    assert phases == {
        "metadata": {"p50": 1.0, "p95": 1.0},
        "data": {"p50": 2.5, "p95": 3.85},
        "files": {"p50": 0.5, "p95": 0.5},
    }


def test_rows_per_device_counts_finished_first_syncs_and_bytes_per_device_sums_everything() -> None:
    records = [
        rec(
            "d1",
            rows_by_table={"account": 100, "contact": 50},
            bytes_by_table={"account": 1000},
            file_bytes=500,
        ),
        rec("d1", mode="DELTA_SYNC", rows_by_table={"account": 7}, bytes_by_table={"account": 100}),
        rec("d2", rows_by_table={"account": 300}, bytes_by_table={"account": 3000}),
        rec(
            "d3", result="failed", error_code="STORAGE_FULL", rows_by_table={"a": 5}, bytes_by_table={"a": 10}
        ),
    ]
    firsts = [fs("d1", rows=150), fs("d2", rows=300), fs("d3", rows=5, finished=False)]
    c = summarize(records, [], first_syncs=firsts)["classes"]["tech"]
    assert c["rows_per_device"] == {"p50": 225.0, "max": 300.0}
    assert c["bytes_per_device"] == {"p50": 1600.0, "p95": 2860.0, "max": 3000.0}


def test_storage_uses_each_devices_latest_record() -> None:
    records = [
        rec("d1", start=T0 + 10, storage_used_bytes=800, storage_capacity_bytes=1000),
        rec("d1", start=T0, storage_used_bytes=100, storage_capacity_bytes=1000),
        rec("d2", start=T0, storage_used_bytes=200, storage_capacity_bytes=4000),
    ]
    storage = summarize(records, [])["classes"]["tech"]["storage"]
    assert storage == {"used_p50": 500.0, "used_max": 800.0, "capacity_p50": 2500.0, "used_share_max": 0.8}


def test_storage_skips_later_records_that_report_no_capacity() -> None:
    records = [
        rec("d1", start=T0, storage_used_bytes=300, storage_capacity_bytes=1000),
        rec("d1", mode="DELTA_SYNC", start=T0 + 60),
    ]
    storage = summarize(records, [])["classes"]["tech"]["storage"]
    assert storage == {"used_p50": 300.0, "used_max": 300.0, "capacity_p50": 1000.0, "used_share_max": 0.3}


def test_restarts_events_totals_and_extra_are_reported() -> None:
    records = [
        rec("d1", restarts=2, rows_by_table={"a": 3}, bytes_by_table={"a": 40}),
        rec("d2", "sales", restarts=1),
    ]
    events = [DeviceEvent("d1", "tech", "throttled", T0), DeviceEvent("d1", "tech", "throttled", T0 + 1)]
    summary = summarize(records, events, extra={"scenario": "field_service", "seed": 7})
    assert summary["classes"]["tech"]["restarts"] == 2
    assert summary["classes"]["tech"]["events"] == {"throttled": 2}
    assert summary["totals"] == {
        "devices": 2, "syncs": 2, "failed": 0, "uploaded": 0, "conflicts": 0, "rejections": 0, "rows": 3, "bytes": 40,
    }  # fmt: skip
    assert (summary["scenario"], summary["seed"]) == ("field_service", 7)


def test_extra_may_not_override_the_summary_keys() -> None:
    with pytest.raises(ValueError, match="totals"):
        summarize([rec()], [], extra={"totals": {}})


def test_dict_forms_of_records_and_events_summarise_the_same() -> None:
    records = [rec("d1", duration_s=3.0, phases={"data": 1.0}), failed("d2", "NETWORK")]
    events = [DeviceEvent("d1", "tech", "retry", T0)]
    as_dicts = summarize([r.to_dict() for r in records], [e.to_dict() for e in events])
    assert as_dicts == summarize(records, events)


def test_summary_floats_are_rounded_to_four_decimals() -> None:
    firsts = [fs("d1", duration_s=1 / 3), fs("d2", duration_s=2 / 3)]
    assert summarize([], [], first_syncs=firsts)["classes"]["tech"]["first_sync"]["p50"] == 0.5
    assert summarize([], [], first_syncs=firsts[:1])["classes"]["tech"]["first_sync"]["mean"] == 0.3333


def sample_records() -> list[SyncRecord]:
    return [
        rec("d1", start=T0 + 0.125, duration_s=12.345678, active_s=10.1, phases={"metadata": 1.5, "data": 9.25},
            rows_by_table={"account": 10, "contact": 5}, bytes_by_table={"account": 900, "contact": 100},
            file_bytes=2048, network="4g", storage_used_bytes=5000, storage_capacity_bytes=64_000_000_000),
        rec("d1", mode="DELTA_SYNC", start=T0 + 600, uploaded=4, applied=3, conflicts=1, rejections=0, restarts=1,
            phases={"upload": 0.3, "data": 0.2}, network="3g", waits_s={"retry_after": 105.0, "backoff": 2.5},
            refetched_bytes=4096, final=True, ended_at=1234.5),
        failed("d2", "STORAGE_FULL", "sales"),
        rec("d3", "sales", user="user, with \"quotes\"", duration_s=0.1 + 0.2),
    ]  # fmt: skip


def test_csv_round_trip_keeps_fields_and_collapses_tables_to_totals(tmp_path: Path) -> None:
    records = sample_records()
    back = read_records_csv(write_csv(records, tmp_path / "syncs.csv"))
    assert len(back) == len(records)
    for original, copy in zip(records, back, strict=True):
        expected = original.to_dict()
        expected["rows_by_table"] = {ALL_TABLES: original.rows} if original.rows else {}
        table_bytes = original.bytes - original.file_bytes
        expected["bytes_by_table"] = {ALL_TABLES: table_bytes} if table_bytes else {}
        assert copy.to_dict() == expected
        assert (copy.rows, copy.bytes) == (original.rows, original.bytes)


def test_summary_rebuilt_from_csv_equals_the_original_summary(tmp_path: Path) -> None:
    records = sample_records()
    back = read_records_csv(write_csv(records, tmp_path / "syncs.csv"))
    assert summarize(back, []) == summarize(records, [])


def test_csv_has_the_documented_columns_and_one_row_per_sync(tmp_path: Path) -> None:
    lines = write_csv(sample_records(), tmp_path / "syncs.csv").read_text().splitlines()
    assert lines[0] == (
        "device,user,user_class,mode,result,start,duration_s,active_s,phase_metadata_s,phase_data_s,"
        "phase_files_s,phase_upload_s,rows,bytes,file_bytes,uploaded,applied,conflicts,rejections,restarts,"
        "error_code,network,storage_used_bytes,storage_capacity_bytes,rejection_codes,waits_s,refetched_bytes,final,ended_at,"
        "processing_s"
    )
    assert len(lines) == 1 + len(sample_records())


def test_events_csv_round_trip(tmp_path: Path) -> None:
    events = [
        DeviceEvent("d1", "tech", "storage_full", T0 + 0.5, "needs 2 GB, has 1 GB"),
        DeviceEvent("d2", "sales", "edit", T0),
    ]
    assert read_events_csv(write_events_csv(events, tmp_path / "events.csv")) == events


def test_json_output_is_valid_and_loads_back_to_the_summary(tmp_path: Path) -> None:
    summary = summarize(sample_records(), [DeviceEvent("d1", "tech", "retry", T0)], extra={"seed": 1})
    path = write_json(summary, tmp_path / "out" / "summary.json")
    assert orjson.loads(path.read_bytes()) == summary
    assert path.read_text().startswith('{\n  "classes"')


def test_console_table_shows_each_class_its_failures_and_totals() -> None:
    records = [*sample_records(), failed("d4", "NETWORK", "sales"), failed("d5", "STORAGE_FULL", "sales")]
    console = Console(record=True, width=220)
    render_table(summarize(records, []), console)
    text = console.export_text()
    assert "tech" in text and "sales" in text
    assert "STORAGE_FULL:2 NETWORK:1" in text
    assert "25.00" in text  # tech conflict rate: 1 of 4 uploaded operations, in %
    assert "Totals: 5 devices, 6 syncs (3 failed)" in text


def test_console_table_renders_a_class_without_syncs_with_dashes() -> None:
    console = Console(record=True, width=220)
    render_table(summarize([], [DeviceEvent("d1", "idle", "edit", T0)]), console)
    text = console.export_text()
    assert "idle" in text and "–" in text


def test_write_all_writes_the_six_report_files(tmp_path: Path) -> None:
    records = sample_records()
    events = [DeviceEvent("d1", "tech", "retry", T0)]
    paths = write_all(tmp_path / "run", summarize(records, events), records, events, "Run")
    assert {p.name for p in paths.values()} == {"summary.json", "syncs.csv", "first_syncs.csv", "events.csv",
                                                 "timeline.csv", "report.html"}
    assert all(p.is_file() and p.stat().st_size > 0 for p in paths.values())
    assert len(read_records_csv(paths["syncs"])) == len(records)


def test_rejections_are_broken_down_by_cause_per_class_and_survive_the_csv(tmp_path: Path) -> None:
    records = [
        SyncRecord("d1", "u1", "tech", "DELTA_SYNC", "success", 0.0, 1.0, 1.0, uploaded=5, rejections=3,
                   rejection_codes={"PrivilegeDenied": 2, "ObjectDoesNotExist": 1}),
        SyncRecord("d2", "u2", "tech", "DELTA_SYNC", "success", 1.0, 1.0, 1.0, uploaded=2, rejections=1,
                   rejection_codes={"PrivilegeDenied": 1}),
    ]
    summary = summarize(records, [])
    assert summary["classes"]["tech"]["rejections_by_cause"] == {"PrivilegeDenied": 3, "ObjectDoesNotExist": 1}
    back = read_records_csv(write_csv(records, tmp_path / "syncs.csv"))
    assert [r.rejection_codes for r in back] == [r.rejection_codes for r in records]


def test_first_syncs_csv_round_trip_rebuilds_the_same_summary(tmp_path: Path) -> None:
    firsts = [fs("d1", duration_s=53.25, attempts=2, phases={"metadata": 1.5, "data": 40.0},
                 waits_s={"between_attempts": 10.0, "backoff": 2.0}, rows=600, bytes=600_000, refetched_bytes=77,
                 error_code="NETWORK"),
              fs("d2", "sales", duration_s=0.1 + 0.2, finished=False)]
    back = read_first_syncs_csv(write_first_syncs_csv(firsts, tmp_path / "first_syncs.csv"))
    assert back == firsts
    assert summarize([], [], first_syncs=back) == summarize([], [], first_syncs=firsts)


def test_console_table_cuts_nothing_at_120_columns() -> None:
    """A header or a cell too long for its column wraps; nothing ends in "…" (issue #21: "Rejectio…",
    "STORAGE_…" hid the word and the count)."""
    records = [*sample_records(), *(failed(f"d{i}", "0x80060890_IDEMPOTENCY_KEY_REUSED", "sales") for i in range(4)),
               failed("d9", "STORAGE_FULL", "sales")]
    console = Console(record=True, width=120)
    render_table(summarize(records, []), console)
    text = console.export_text()
    assert "…" not in text
    causes = "".join(line.split("│")[11].strip() for line in text.splitlines() if line.startswith("│"))
    assert causes == "0x80060890_IDEMPOTENCY_KEY_REUSED:4STORAGE_FULL:2–"  # sales folded whole, then tech's dash
