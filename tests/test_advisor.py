"""`syncsim advise`: estimates whose true answer is known by hand, each kind of advice naming class,
table and number, the what-if comparison, and the command's output and exit status."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from simulator import advisor
from simulator.cli import main
from simulator.scenario import parse_scenario


def _scenario(**changes: Any) -> Any:
    """10 technicians owning 1,000 work orders of 1,000 bytes; each holds 100 (owner filter), on 3g."""
    base: dict[str, Any] = {
        "name": "advise", "seed": 3,
        "tables": [{"logical_name": "msdyn_workorder", "rows": 1000, "row_bytes": 1000, "owned_by": ["technician"]}],
        "user_classes": [{"name": "technician", "count": 10, "networks": {"3g": 1.0},
                          "profile": [{"table": "msdyn_workorder", "filter": "owner"}]}],
    }
    return parse_scenario({**base, **changes})


def _cls(report: advisor.Report, name: str = "technician") -> advisor.ClassEstimate:
    return next(c for c in report.classes if c.user_class == name)


WIRE = 1514 / 1448 * (1 + 22 / 16384)
"""Wire bytes per HTTP byte over TLS (the default): 52 B of TCP/IP headers and 14 B of link framing per
1,448-B segment, 22 B per 16 KiB TLS record. Every request also carries 500 B of headers each way."""


def test_a_known_profile_is_estimated_as_by_hand() -> None:
    c = _cls(advisor.report(_scenario()))
    assert c.rows == pytest.approx(100) and c.data_bytes == pytest.approx(100_000)
    # 3g: 150 ms round trip, 2,000 kbps down, 750 up. Metadata: 2 requests of 10 kB; data: 1 page of 100 kB.
    # Each request: a round trip, 500 B of headers up, its answer + 500 B of headers down, all on the wire.
    t = c.first_sync_s["3g"]
    up = 500 * WIRE * 8 / 750e3
    # The sync's first request opens the connection: TCP + TLS set-up, 2 round trips. Its 10,500 B are
    # 8 segments, within the first window of 10: no slow-start wait. The window grows to 16.
    assert t["metadata"] == pytest.approx(2 * 0.15 + 2 * (0.15 + up + 10_500 * WIRE * 8 / 2e6))
    # The page's 100,500 B are 70 segments: windows of 16, 32, 64 segments. The pipe holds 1 + 0.15 / s
    # = 25.8 segments (s: a 1,514-B segment's time at 2,000 kbps), so the sender waits once, after 16.
    seg = 1514 * 8 / 2e6
    assert t["data"] == pytest.approx(0.15 + up + 100_500 * WIRE * 8 / 2e6 + (seg + 0.15) - seg * 16)
    assert t["files"] == 0 and t["total"] == pytest.approx(t["metadata"] + t["data"])
    assert t["total"] == pytest.approx(0.699 + 0.636, abs=1e-3)  # was 0.38 + 0.55 = 0.93 s: set-up, headers, wire


def test_600_kb_on_a_100_kbps_link_takes_about_50_seconds() -> None:
    s = _scenario(tables=[{"logical_name": "msdyn_workorder", "rows": 600, "row_bytes": 1000}],
                  user_classes=[{"name": "technician", "count": 1, "networks": {"2g": 1.0},
                                 "profile": [{"table": "msdyn_workorder"}]}])
    t = _cls(advisor.report(s)).first_sync_s["2g"]
    # 600,000 bytes + 500 B of headers on the wire at 100 kbps (50.3 s, was 48 s of bodies alone), plus
    # one page's round trip and its 500 B of request headers at 50 kbps up. No slow-start wait: 100 kbps
    # for 0.4 s is 4.3 segments in flight, fewer than the window of 16 the metadata left.
    assert t["data"] == pytest.approx(600_500 * WIRE * 8 / 100e3 + 0.4 + 500 * WIRE * 8 / 50e3)
    assert 50.7 < t["data"] < 50.9


def test_a_class_without_tls_saves_a_round_trip_of_set_up_and_the_record_framing() -> None:
    with_tls = _cls(advisor.report(_scenario())).first_sync_s["3g"]
    plain_class = {"name": "technician", "count": 10, "networks": {"3g": 1.0}, "connection": {"tls": False},
                   "profile": [{"table": "msdyn_workorder", "filter": "owner"}]}
    plain = _cls(advisor.report(_scenario(user_classes=[plain_class]))).first_sync_s["3g"]
    # The connection is set up once, in the metadata phase: TCP's round trip only (0.15 s on 3g).
    # Every byte also loses TLS's 22 B per 16 KiB record: 3 requests (2 metadata, 1 page) bring 20,000 +
    # 100,000 B + 3 x 500 B of headers down at 2,000 kbps and send 3 x 500 B of headers up at 750 kbps,
    # x 1514/1448 x 22/16384 on the wire: about 0.6 ms.
    framing_s = 22 / 16384 * 1514 / 1448 * 8 * ((20_000 + 100_000 + 3 * 500) / 2e6 + 3 * 500 / 750e3)
    assert with_tls["total"] - plain["total"] == pytest.approx(0.15 + framing_s)
    assert with_tls["data"] - plain["data"] == pytest.approx(100_500 * 22 / 16384 * 1514 / 1448 * 8 / 2e6
                                                             + 500 * 22 / 16384 * 1514 / 1448 * 8 / 750e3)


def test_related_and_team_and_date_filters_keep_their_share() -> None:
    s = _scenario(
        tables=[{"logical_name": "msdyn_workorder", "rows": 1000, "owned_by": ["technician"], "modified_within_days": 90},
                {"logical_name": "annotation", "rows": 2000, "columns": [
                    {"name": "objectid", "type": "lookup", "target": "msdyn_workorder", "fill": 0.5}]}],
        user_classes=[{"name": "technician", "count": 10, "teams": 2, "networks": {"4g": 1.0}, "profile": [
            {"table": "msdyn_workorder", "filter": "team"},
            {"table": "annotation", "filter": "related", "related_table": "msdyn_workorder", "via": "objectid"}]},
            {"name": "planner", "count": 1, "networks": {"wifi": 1.0}, "profile": [
                {"table": "msdyn_workorder", "filter": "modified_within_days", "days": 30}]}])
    r = advisor.report(s)
    rows = {t.table: t.rows for t in _cls(r).tables}
    assert rows["msdyn_workorder"] == pytest.approx(500)  # a team of 5 of the 10 owners
    assert rows["annotation"] == pytest.approx(2000 * 0.5 * 0.5)  # half have a work order, half of those are the team's
    assert _cls(r, "planner").rows == pytest.approx(1000 / 3)  # 30 of 90 days


def test_each_kind_of_advice_names_the_class_the_table_and_the_number() -> None:
    s = _scenario(
        tables=[{"logical_name": "account", "rows": 250_000, "row_bytes": 100},
                {"logical_name": "msdyn_workorder", "rows": 1000, "row_bytes": 1000, "owned_by": ["technician"],
                 "columns": [{"name": "photo", "type": "file", "size": {"median_kb": 3000, "sigma": 0.5,
                                                                         "max_kb": 16000}}]}],
        user_classes=[{"name": "technician", "count": 10, "networks": {"3g": 1.0},
                       "devices": [{"name": "small phone", "storage_mb": 100}],
                       "profile": [{"table": "msdyn_workorder", "filter": "owner"}]},
                      {"name": "manager", "count": 1, "networks": {"wifi": 1.0}, "profile": [{"table": "account"}]}])
    advice = [str(a) for a in advisor.report(s).advice]
    expect = [
        ("manager", "over the guidance of 200,000 rows"),
        ("manager / account", "no filter: every device holds about 250,000 rows"),
        ("technician / msdyn_workorder", "files over 4 MB per device"),
        ("error: technician", "more than its smallest device's 100 MB"),
    ]
    for who, words in expect:
        assert any(who in a and words in a for a in advice), (who, words, advice)
    assert advisor.report(s).errors == 1


def test_a_what_if_compares_first_syncs_class_by_class(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = {"name": "before", "seed": 3,
              "tables": [{"logical_name": "msdyn_workorder", "rows": 90_000, "row_bytes": 1000}],
              "user_classes": [{"name": "technician", "count": 10, "networks": {"3g": 1.0},
                                "profile": [{"table": "msdyn_workorder"}]}]}
    after = json.loads(json.dumps(before))
    after["name"] = "after"
    after["user_classes"][0]["profile"] = [{"table": "msdyn_workorder", "filter": "modified_within_days", "days": 30}]
    paths = []
    for doc in (before, after):
        path = tmp_path / f"{doc['name']}.yaml"
        path.write_text(yaml.safe_dump(doc))
        paths.append(str(path))
    assert main(["advise", *paths]) == 0
    out = capsys.readouterr().out
    assert "what-if: before -> after" in out and "technician on 3g: first sync" in out
    lines = advisor.compare(advisor.report(parse_scenario(before)), advisor.report(parse_scenario(after)))
    (line,) = lines
    assert "rows 90,000 -> 30,000" in line
    assert main(["advise", "--json", paths[0]]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["scenarios"][0]["classes"][0]["rows"] == 90_000
    assert any("no filter" in a["message"] for a in data["scenarios"][0]["advice"])


def test_a_profiles_file_cap_keeps_big_files_off_the_estimate_and_the_advice() -> None:
    def scenario(cap: float | None) -> Any:
        pt: dict[str, Any] = {"table": "msdyn_workorder", "filter": "owner"}
        if cap is not None:
            pt["max_file_kb"] = cap
        return _scenario(
            tables=[{"logical_name": "msdyn_workorder", "rows": 1000, "row_bytes": 1000, "owned_by": ["technician"],
                     "columns": [{"name": "photo", "type": "file", "size": {"median_kb": 3000, "sigma": 0.5,
                                                                            "max_kb": 16000}}]}],
            user_classes=[{"name": "technician", "count": 10, "networks": {"3g": 1.0}, "profile": [pt]}])
    uncapped, capped = (_cls(advisor.report(scenario(c))) for c in (None, 4096))
    assert capped.file_bytes < uncapped.file_bytes and capped.tables[0].files_over_4mb == 0
    assert not any("over 4 MB" in str(a) for a in advisor.report(scenario(4096)).advice)


def test_a_table_read_without_its_files_costs_no_files_as_on_the_device() -> None:
    """`files: false` in a profile: the device never downloads the table's files, so neither the
    estimate nor the advice counts them (it did: field_service's managers showed 240 MB)."""
    def scenario(files: bool) -> Any:
        return _scenario(
            tables=[{"logical_name": "annotation", "entity_set": "annotations", "rows": 200,
                     "columns": [{"name": "documentbody", "type": "file",
                                  "size": {"median_kb": 6000, "sigma": 0, "min_kb": 6000, "max_kb": 6000}}]}],
            user_classes=[{"name": "technician", "count": 1, "networks": {"3g": 1.0},
                           "profile": [{"table": "annotation", "files": files}]}])
    with_files, without = (_cls(advisor.report(scenario(f))) for f in (True, False))
    assert with_files.file_bytes > 1e9 and with_files.tables[0].files_over_4mb == 200
    assert without.file_bytes == 0 and without.tables[0].files == 0 and without.tables[0].files_over_4mb == 0
    assert without.first_sync_s["3g"]["files"] == 0
    assert not any("over 4 MB" in str(a) for a in advisor.report(scenario(False)).advice)
