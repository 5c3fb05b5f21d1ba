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


def test_a_known_profile_is_estimated_as_by_hand() -> None:
    c = _cls(advisor.report(_scenario()))
    assert c.rows == pytest.approx(100) and c.data_bytes == pytest.approx(100_000)
    # 3g: 150 ms round trip, 2,000 kbps. Metadata: 2 requests + 20 kB; data: 1 page + 100 kB.
    t = c.first_sync_s["3g"]
    assert t["metadata"] == pytest.approx(2 * 0.15 + 20_000 * 8 / 2e6)
    assert t["data"] == pytest.approx(0.15 + 100_000 * 8 / 2e6)
    assert t["files"] == 0 and t["total"] == pytest.approx(0.38 + 0.55)


def test_600_kb_on_a_100_kbps_link_takes_about_48_seconds() -> None:
    s = _scenario(tables=[{"logical_name": "msdyn_workorder", "rows": 600, "row_bytes": 1000}],
                  user_classes=[{"name": "technician", "count": 1, "networks": {"2g": 1.0},
                                 "profile": [{"table": "msdyn_workorder"}]}])
    t = _cls(advisor.report(s)).first_sync_s["2g"]
    assert t["data"] == pytest.approx(48 + 0.4)  # 600,000 bytes at 100 kbps, plus one page's round trip


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
