"""Scenario files: the shipped ones load, defaults are as documented, and mistakes give errors that
name the file, the field path and what is allowed (docs/scenarios.md)."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from simulator.cli import main as cli_main
from simulator.scenario import (
    DeviceKind,
    Privilege,
    Scenario,
    ScenarioError,
    Wave,
    load_scenario,
    parse_scenario,
)

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = sorted((ROOT / "scenarios").glob("*.yaml"))
PRESETS = ("wifi", "4g", "3g", "2g", "edge", "satellite", "loopback")
FILTERS = ("all", "owner", "team", "modified_within_days", "related")
DEPTHS = ("none", "user", "team", "org")

BASE: dict[str, Any] = {
    "name": "unit",
    "tables": [
        {"logical_name": "account", "rows": 10, "columns": [
            {"name": "revenue", "type": "decimal", "min": 0, "max": 1000},
        ]},
        {"logical_name": "msdyn_workorder", "rows": 20, "owned_by": ["technician"], "columns": [
            {"name": "msdyn_priority", "type": "choice", "options": {"Low": 1, "High": 2}},
            {"name": "msdyn_serviceaccount", "type": "lookup", "target": "account"},
        ]},
        {"logical_name": "annotation", "rows": 30, "columns": [
            {"name": "objectid", "type": "lookup", "target": "msdyn_workorder"},
            {"name": "documentbody", "type": "file", "size": {"median_kb": 20}},
        ]},
    ],
    "user_classes": [
        {"name": "technician", "count": 3, "profile": [
            {"table": "account"},
            {"table": "msdyn_workorder", "filter": "owner"},
            {"table": "annotation", "filter": "related", "related_table": "msdyn_workorder", "via": "objectid"},
        ]},
        {"name": "manager", "count": 1, "profile": [{"table": "account"}]},
    ],
}


def base() -> dict[str, Any]:
    return copy.deepcopy(BASE)


def write(tmp_path: Path, data: Any, name: str = "mine.yaml") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    return path


def error_for(tmp_path: Path, change: Callable[[dict[str, Any]], Any]) -> tuple[Path, str]:
    """Write BASE with `change` applied, load it, and return (path, the ScenarioError message)."""
    data = base()
    change(data)
    path = write(tmp_path, data)
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    return path, str(info.value)


def line_with(message: str, needle: str) -> str:
    """The one error line of a message that mentions `needle`."""
    lines = [line for line in message.splitlines() if needle in line]
    assert lines, f"no line mentions {needle!r} in:\n{message}"
    return lines[0]


def allowed_values(line: str) -> str:
    assert "Input should be " in line, line
    return line.split("Input should be ", 1)[1]


# --- what loads ------------------------------------------------------------------------------------
def test_the_five_shipped_scenarios_are_there() -> None:
    assert {p.stem for p in SHIPPED} >= {"smoke", "field_service", "airplane_mode", "rollout_monday", "conflicts"}


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_every_shipped_scenario_loads_and_is_named_after_its_file(path: Path) -> None:
    s = load_scenario(path)
    assert s.name == path.stem
    assert sum(s.class_counts().values()) > 0


def test_the_minimal_example_in_the_docs_loads_with_the_documented_defaults() -> None:
    text = (ROOT / "docs" / "scenarios.md").read_text()
    block = re.search(r"```yaml\n(.*?)```", text, re.S)
    assert block is not None, "docs/scenarios.md starts with a yaml example"
    s = parse_scenario(yaml.safe_load(block.group(1)), "docs/scenarios.md")
    assert s.class_counts() == {"technician": 10}
    tech = s.user_class("technician")
    assert tech.devices == [DeviceKind(name="device", storage_mb=32768, share=1)]
    assert tech.behaviour.sync_interval_s == 900 and tech.behaviour.sync_jitter == 0.2
    assert tech.behaviour.edits_per_hour == 4
    assert (tech.behaviour.edit_mix.update, tech.behaviour.edit_mix.create, tech.behaviour.edit_mix.delete) == (
        0.8, 0.15, 0.05)
    assert tech.behaviour.upload_mode == "batch" and tech.teams == 1
    assert s.rollout == [Wave(at_s=0)]
    assert (s.duration_s, s.time_scale, s.quiet_period_s, s.max_devices) == (3600, 60, 600, 20000)
    assert s.back_office.writes_per_s == 0 and s.privilege_changes == []
    assert s.table("account").set_name == "accounts" and s.table("account").id_column == "accountid"
    assert s.table("account").rows == 500 and s.table("account").row_bytes == 1000


def test_a_table_without_privileges_gets_read_org_write_user_create_delete_user() -> None:
    s = parse_scenario(base())
    assert s.user_class("manager").privilege("account") == Privilege(
        read="org", write="user", create=True, delete="user")


def test_a_class_without_networks_is_on_wifi() -> None:
    assert parse_scenario(base()).user_class("manager").networks == {"wifi": 1.0}


def test_server_defaults_are_the_dataverse_values() -> None:
    server = parse_scenario(base()).server
    assert server.conflict_detection is False
    assert (server.token_retention_days, server.max_page_size, server.token_ttl_s) == (7, 5000, 86400)
    limits = server.limits
    assert (limits.requests, limits.execution_time_s, limits.concurrent, limits.window_s) == (6000, 1200, 52, 300)


# --- errors name the file, the field path and the allowed values ------------------------------------
def test_a_bad_network_preset_names_the_file_the_class_and_every_preset(tmp_path: Path) -> None:
    path, msg = error_for(tmp_path, lambda d: d["user_classes"][0].update(networks={"5g": 1.0}))
    line = line_with(msg, "networks")
    assert str(path) in line
    assert "user_classes.0.networks" in line and "'5g'" in line
    assert all(f"'{p}'" in allowed_values(line) for p in PRESETS)


def test_a_bad_filter_kind_names_the_profile_entry_and_every_filter(tmp_path: Path) -> None:
    path, msg = error_for(tmp_path, lambda d: d["user_classes"][0]["profile"][1].update(filter="mine"))
    line = line_with(msg, "filter")
    assert str(path) in line and "user_classes.0.profile.1.filter" in line and "'mine'" in line
    assert all(f"'{f}'" in allowed_values(line) for f in FILTERS)


def test_a_bad_privilege_depth_lists_none_user_team_org(tmp_path: Path) -> None:
    path, msg = error_for(tmp_path, lambda d: d["user_classes"][0].update(
        privileges={"msdyn_workorder": {"read": "all"}}))
    line = line_with(msg, "read")
    assert str(path) in line and "user_classes.0.privileges.msdyn_workorder.read" in line
    assert all(f"'{x}'" in allowed_values(line) for x in DEPTHS)


def test_a_bad_column_type_lists_every_column_type(tmp_path: Path) -> None:
    _, msg = error_for(tmp_path, lambda d: d["tables"][0]["columns"][0].update(type="float"))
    line = line_with(msg, "tables.0.columns.0.type")
    assert all(f"'{t}'" in allowed_values(line) for t in
               ("text", "integer", "decimal", "datetime", "choice", "lookup", "file"))


def test_a_bad_upload_mode_lists_batch_and_one_by_one(tmp_path: Path) -> None:
    _, msg = error_for(tmp_path, lambda d: d["user_classes"][0].update(behaviour={"upload_mode": "bulk"}))
    line = line_with(msg, "user_classes.0.behaviour.upload_mode")
    assert "'batch'" in allowed_values(line) and "'one_by_one'" in allowed_values(line)


def test_an_unknown_lookup_target_names_table_column_target_and_the_tables(tmp_path: Path) -> None:
    path, msg = error_for(tmp_path, lambda d: d["tables"][1]["columns"][1].update(target="acount"))
    assert str(path) in msg
    assert "'msdyn_workorder'" in msg and "'msdyn_serviceaccount'" in msg and "'acount'" in msg
    assert "['account', 'annotation', 'msdyn_workorder']" in msg


def test_a_profile_table_whose_lookup_points_outside_the_profile_is_refused(tmp_path: Path) -> None:
    # work orders look up accounts; a profile with work orders but no accounts is unavailable offline
    path, msg = error_for(tmp_path, lambda d: d["user_classes"][1].update(
        profile=[{"table": "msdyn_workorder"}]))
    assert str(path) in msg
    assert "'manager'" in msg and "'msdyn_workorder'" in msg and "'msdyn_serviceaccount'" in msg
    assert "'account'" in msg and "not in the profile" in msg and "unavailable" in msg


def test_a_related_filter_without_via_names_the_entry_and_both_fields(tmp_path: Path) -> None:
    path, msg = error_for(tmp_path, lambda d: d["user_classes"][0]["profile"][2].pop("via"))
    line = line_with(msg, "user_classes.0.profile.2")
    assert str(path) in line and "'related_table'" in line and "'via'" in line


def test_a_related_filter_via_a_column_that_is_not_the_lookup_is_refused(tmp_path: Path) -> None:
    _, msg = error_for(tmp_path, lambda d: d["user_classes"][0]["profile"][2].update(via="documentbody"))
    assert "via 'documentbody'" in msg and "lookup column of 'annotation' to 'msdyn_workorder'" in msg


def test_a_related_filter_on_a_table_outside_the_profile_is_refused(tmp_path: Path) -> None:
    _, msg = error_for(tmp_path, lambda d: d["user_classes"][1]["profile"].append(
        {"table": "annotation", "filter": "related", "related_table": "msdyn_workorder", "via": "objectid"}))
    assert "user class 'manager' profile table 'annotation'" in msg
    assert "related_table 'msdyn_workorder' is not in this profile" in msg


def test_a_modified_within_days_filter_without_days_is_refused(tmp_path: Path) -> None:
    _, msg = error_for(tmp_path, lambda d: d["user_classes"][1]["profile"][0].update(
        filter="modified_within_days"))
    assert "user_classes.1.profile.0" in msg and "'days'" in msg


@pytest.mark.parametrize(("column", "needs"), [
    ({"name": "status", "type": "choice"}, "'options'"),
    ({"name": "parentid", "type": "lookup"}, "'target'"),
    ({"name": "photo", "type": "file"}, "'size'"),
])
def test_a_column_without_what_its_type_needs_is_refused(tmp_path: Path, column: dict[str, Any], needs: str) -> None:
    _, msg = error_for(tmp_path, lambda d: d["tables"][0]["columns"].append(column))
    assert "tables.0.columns.1" in msg and needs in msg


def test_a_class_given_by_share_without_the_devices_total_is_refused(tmp_path: Path) -> None:
    def change(d: dict[str, Any]) -> None:
        d["user_classes"][1].pop("count")
        d["user_classes"][1]["share"] = 0.5

    path, msg = error_for(tmp_path, change)
    assert str(path) in msg and "'share'" in msg and "'devices'" in msg


def test_a_class_with_both_count_and_share_is_refused(tmp_path: Path) -> None:
    _, msg = error_for(tmp_path, lambda d: d["user_classes"][0].update(share=0.5))
    line = line_with(msg, "user_classes.0")
    assert "exactly one of 'count' or 'share'" in line


def test_a_class_with_neither_count_nor_share_is_refused(tmp_path: Path) -> None:
    _, msg = error_for(tmp_path, lambda d: d["user_classes"][1].pop("count"))
    assert "user_classes.1" in msg and "exactly one of 'count' or 'share'" in msg


def test_an_airplane_mean_without_the_other_is_refused(tmp_path: Path) -> None:
    _, msg = error_for(tmp_path, lambda d: d["user_classes"][0].update(
        behaviour={"airplane": {"mean_online_s": 1500}}))
    line = line_with(msg, "user_classes.0.behaviour.airplane")
    assert "mean_online_s" in line and "mean_offline_s" in line


def test_an_airplane_window_that_ends_before_it_starts_is_refused(tmp_path: Path) -> None:
    _, msg = error_for(tmp_path, lambda d: d["user_classes"][0].update(
        behaviour={"airplane": {"windows": [[600, 300]]}}))
    assert "user_classes.0.behaviour.airplane" in msg and "must end after it starts" in msg


def test_invalid_yaml_names_the_file_and_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "name: broken\ntables:\n  - logical_name: account\n    rows: [1, 2\nuser_classes: []\n")
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    msg = str(info.value)
    assert msg.startswith(f"{path}:") and "not valid YAML" in msg
    assert re.search(r"line \d+ column \d+", msg)


def test_the_yaml_line_number_counts_from_one(tmp_path: Path) -> None:
    path = write(tmp_path, "name: broken\nseed: 1\ndescription: a: b\n")
    with pytest.raises(ScenarioError, match=r"line 3 column \d+: not valid YAML"):
        load_scenario(path)


def test_an_unknown_field_is_refused_with_its_path(tmp_path: Path) -> None:
    path, msg = error_for(tmp_path, lambda d: d["user_classes"][0].update(behavior={"sync_interval_s": 60}))
    line = line_with(msg, "user_classes.0.behavior")
    assert str(path) in line and "unknown field" in line


def test_an_unknown_top_level_field_shows_the_value_given(tmp_path: Path) -> None:
    _, msg = error_for(tmp_path, lambda d: d.update(sead=3))
    assert "sead: unknown field (check its spelling against docs/scenarios.md) (got 3)" in msg


def test_a_missing_required_field_is_named(tmp_path: Path) -> None:
    _, msg = error_for(tmp_path, lambda d: d.pop("tables"))
    assert "tables: Field required" in msg


def test_a_value_out_of_range_shows_the_value_given(tmp_path: Path) -> None:
    _, msg = error_for(tmp_path, lambda d: d["tables"][0].update(rows=4_000_000))
    assert "tables.0.rows" in msg and "(got 4000000)" in msg


def test_every_field_error_of_a_file_is_listed_on_its_own_line(tmp_path: Path) -> None:
    def change(d: dict[str, Any]) -> None:
        d["user_classes"][0]["networks"] = {"5g": 1.0}
        d["user_classes"][1]["profile"][0]["filter"] = "mine"

    path, msg = error_for(tmp_path, change)
    lines = msg.splitlines()
    assert lines[0] == "invalid scenario"
    assert sum(str(path) in line for line in lines) == 2


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(ScenarioError, match=re.escape(f"{path}: cannot read scenario")):
        load_scenario(path)


@pytest.mark.parametrize(("text", "expected"), [("", "the file is empty"), ("- just\n- a list\n", "a scenario must be a mapping")],
                         ids=["empty", "list"])
def test_a_file_that_is_not_a_mapping_is_refused(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ScenarioError, match=re.escape(f"{path}: {expected}")):
        load_scenario(path)


# --- references across the file ---------------------------------------------------------------------
@pytest.mark.parametrize(("change", "expected"), [
    (lambda d: d["tables"].append(copy.deepcopy(d["tables"][0])), "table logical names must be unique"),
    (lambda d: d["user_classes"].append(copy.deepcopy(d["user_classes"][1])), "user class names must be unique"),
    (lambda d: d["tables"][1].update(owned_by=["tech"]), "owned_by 'tech' is not a user class"),
    (lambda d: d["user_classes"][1]["profile"].append({"table": "contact"}),
     "profile table 'contact': not a table of this scenario"),
    (lambda d: d["user_classes"][1].update(privileges={"contact": {"read": "org"}}),
     "privileges: 'contact' is not one of"),
    (lambda d: d["user_classes"][1].update(behaviour={"edit_tables": ["msdyn_workorder"]}),
     "behaviour.edit_tables: 'msdyn_workorder' is not in its profile ['account']"),
    (lambda d: d.update(rollout=[{"at_s": 0, "user_class": "tech"}]), "user_class 'tech' is not one of"),
    (lambda d: d.update(privilege_changes=[{"at_s": 60, "user_class": "tech", "table": "account"}]),
     "privilege change at 60.0s: user_class 'tech'"),
    (lambda d: d.update(privilege_changes=[{"at_s": 60, "user_class": "manager", "table": "contact"}]),
     "privilege change at 60.0s: table 'contact'"),
    (lambda d: d.update(back_office={"writes_per_s": 1, "tables": ["contact"]}), "back_office.tables: 'contact'"),
    (lambda d: d.update(back_office={"hot_rows": {"table": "contact", "count": 5}}),
     "back_office.hot_rows.table: 'contact'"),
    (lambda d: d.update(max_devices=3), "4 devices exceed max_devices=3"),
], ids=["dup-table", "dup-class", "owned_by", "profile-table", "privileges", "edit_tables", "rollout",
        "privilege-class", "privilege-table", "back-office", "hot-rows", "max_devices"])
def test_a_reference_to_something_the_scenario_does_not_define_is_refused(
    tmp_path: Path, change: Callable[[dict[str, Any]], Any], expected: str
) -> None:
    path, msg = error_for(tmp_path, change)
    assert str(path) in msg and expected in msg


# --- overrides and counts -----------------------------------------------------------------------------
def test_overrides_replace_top_level_fields(tmp_path: Path) -> None:
    path = write(tmp_path, {**base(), "seed": 1, "duration_s": 600})
    s = load_scenario(path, seed=99, duration_s=1800, time_scale=120)
    assert (s.seed, s.duration_s, s.time_scale) == (99, 1800, 120)
    assert s.user_classes == parse_scenario(base()).user_classes


def test_a_devices_override_scales_classes_given_by_count(tmp_path: Path) -> None:
    data = base()
    counts = {c["name"]: c.get("count") for c in data["user_classes"]}
    path = write(tmp_path, data)
    total = sum(v for v in counts.values() if v)
    s = load_scenario(path, devices=total * 10)
    assert sum(s.class_counts().values()) == total * 10
    assert all(s.class_counts()[k] == v * 10 for k, v in counts.items() if v)


def test_an_override_of_none_keeps_the_files_value(tmp_path: Path) -> None:
    path = write(tmp_path, {**base(), "seed": 5})
    assert load_scenario(path, seed=None, devices=None, duration_s=None, time_scale=None).seed == 5


def test_overrides_are_validated_like_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, base())
    with pytest.raises(ScenarioError) as info:
        load_scenario(path, time_scale=0)
    assert str(path) in str(info.value) and "time_scale" in str(info.value)


def test_class_counts_take_count_as_given_and_round_shares_of_devices() -> None:
    data = base()
    data["devices"] = 10
    data["user_classes"][1] = {"name": "manager", "share": 0.25, "profile": [{"table": "account"}]}
    data["user_classes"].append({"name": "dispatcher", "share": 0.75, "profile": [{"table": "account"}]})
    s = parse_scenario(data)
    # round(devices * share), Python rounding: 2.5 -> 2, 7.5 -> 8 (halves to even)
    assert s.class_counts() == {"technician": 3, "manager": 2, "dispatcher": 8}


def test_the_devices_override_scales_classes_given_by_share_only(tmp_path: Path) -> None:
    data = base()
    data["devices"] = 10
    data["user_classes"][1] = {"name": "manager", "share": 0.5, "profile": [{"table": "account"}]}
    path = write(tmp_path, data)
    assert load_scenario(path).class_counts() == {"technician": 3, "manager": 5}
    assert load_scenario(path, devices=1000).class_counts() == {"technician": 3, "manager": 500}


def test_a_devices_override_above_max_devices_is_refused(tmp_path: Path) -> None:
    data = base()
    data["user_classes"][1] = {"name": "manager", "share": 1.0, "profile": [{"table": "account"}]}
    path = write(tmp_path, {**data, "devices": 10, "max_devices": 100})
    with pytest.raises(ScenarioError, match="exceed max_devices=100"):
        load_scenario(path, devices=500)


def test_parse_scenario_without_a_path_says_scenario() -> None:
    with pytest.raises(ScenarioError, match="<scenario>: sead"):
        parse_scenario({**base(), "sead": 1})


def test_a_loaded_scenario_is_read_only() -> None:
    s: Scenario = parse_scenario(base())
    with pytest.raises(Exception, match="frozen"):
        s.seed = 3  # type: ignore[misc]


# --- the command line -------------------------------------------------------------------------------
def test_syncsim_validate_prints_what_a_good_file_defines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, base())
    assert cli_main(["validate", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"{path}: ok: 3 tables, 60 rows, 4 devices (technician 3, manager 1)" in out


def test_syncsim_validate_exits_2_with_the_error_for_a_bad_file(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    data = base()
    data["user_classes"][0]["networks"] = {"5g": 1.0}
    path = write(tmp_path, data)
    assert cli_main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("syncsim: invalid scenario") and "user_classes.0.networks" in err and "'5g'" in err


# --- mistakes that would otherwise run silently wrong -----------------------------------------------
@pytest.mark.parametrize(("change", "expected"), [
    (lambda d: d.update(rollout=[{"at_s": 0, "count": 1}]), "rollout leaves users out"),
    (lambda d: d.update(rollout=[{"at_s": 10**9}]), "starts at or after duration_s"),
    (lambda d: d.update(privilege_changes=[{"at_s": 10**9, "user_class": d["user_classes"][0]["name"],
                                            "table": d["tables"][0]["logical_name"], "read": "none"}]),
     "is at or after duration_s"),
    (lambda d: d.update(privilege_changes=[{"at_s": 1, "user_class": d["user_classes"][0]["name"],
                                            "table": d["tables"][0]["logical_name"]}]), "changes nothing"),
    (lambda d: d["tables"][0].setdefault("columns", []).append({"name": "x", "type": "text", "faker": "no_such"}),
     "faker 'no_such' is not a Faker provider"),
    (lambda d: d["tables"][0].setdefault("columns", []).append({"name": "n", "type": "integer", "min": 5, "max": 1}),
     "min (5) is above max (1)"),
], ids=["wave-leaves-users-out", "late-wave", "late-privilege-change", "empty-privilege-change", "bad-faker", "min-above-max"])
def test_silent_mistakes_are_refused_with_a_reason(tmp_path: Path, change: Callable[[dict[str, Any]], Any],
                                                   expected: str) -> None:
    _, msg = error_for(tmp_path, change)
    assert expected in msg


def test_a_key_given_twice_is_refused_with_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, "name: a\nseed: 1\nname: b\n")
    with pytest.raises(ScenarioError, match=re.escape(f"{path}: line 3 column 1: not valid YAML: key 'name' appears twice")):
        load_scenario(path)


# --- files and YAML that cannot be read as a scenario ---------------------------------------------------
MERGED = """\
name: merged
tables:
  - logical_name: account
    rows: 10
user_classes:
  - &technician
    name: technician
    count: 2
    profile: [{table: account}]
    behaviour: &often {sync_interval_s: 60, edits_per_hour: 10}
  - <<: *technician
    name: manager
    count: 1
    behaviour: &rare
      <<: *often
      edits_per_hour: 0
      upload_mode: one_by_one
"""


def test_a_file_that_is_not_utf8_names_the_byte_its_offset_and_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: café\n".encode("latin-1"))
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    assert str(info.value) == f"{path}: not UTF-8 text (byte 0xe9 at offset 9, line 1); save the scenario as UTF-8"


@pytest.mark.parametrize(("text", "where", "kind"), [
    ("name: a\n[x, y]: 1\n", "line 2 column 1", "list"),
    ("name: a\n? {x: 1}\n: 1\n", "line 2 column 3", "mapping"),
], ids=["list", "mapping"])
def test_a_list_or_mapping_used_as_a_key_is_refused_with_its_line_and_column(
    tmp_path: Path, text: str, where: str, kind: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    assert str(info.value) == (f"{path}: {where}: not valid YAML: "
                               f"a key must be a plain value such as a name or a number, not a {kind}")


def test_merge_keys_share_settings_and_the_mappings_own_keys_override_merged_ones(tmp_path: Path) -> None:
    s = load_scenario(write(tmp_path, MERGED))
    assert s.class_counts() == {"technician": 2, "manager": 1}
    manager = s.user_class("manager")
    assert manager.profile == s.user_class("technician").profile
    assert (manager.behaviour.sync_interval_s, manager.behaviour.edits_per_hour) == (60, 0)
    assert manager.behaviour.upload_mode == "one_by_one"
    assert s.user_class("technician").behaviour.edits_per_hour == 10


def test_of_several_merged_mappings_the_first_one_wins(tmp_path: Path) -> None:
    text = MERGED + "  - {name: dispatcher, count: 1, profile: [{table: account}], behaviour: {<<: [*rare, *often]}}\n"
    behaviour = load_scenario(write(tmp_path, text)).user_class("dispatcher").behaviour
    assert (behaviour.sync_interval_s, behaviour.edits_per_hour, behaviour.upload_mode) == (60, 0, "one_by_one")


def test_a_key_given_twice_beside_a_merge_key_is_still_refused(tmp_path: Path) -> None:
    path = write(tmp_path, MERGED.replace("    count: 1\n", "    count: 1\n    count: 3\n"))
    with pytest.raises(ScenarioError, match=re.escape(f"{path}: line 14 column 5: not valid YAML: "
                                                      "key 'count' appears twice")):
        load_scenario(path)


@pytest.mark.parametrize(("value", "expected"), [
    ("2024-13-01", "cannot read '2024-13-01' as timestamp (month must be in 1..12); put it in quotes"),
    ("9" * 5000, "as int (Exceeds the limit (4300 digits)"),
], ids=["month-13", "5000-digits"])
def test_a_value_yaml_cannot_convert_is_refused_with_its_line(tmp_path: Path, value: str, expected: str) -> None:
    path = write(tmp_path, f"name: a\ndescription: {value}\n")
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    assert str(info.value).startswith(f"{path}: line 2 column 14: not valid YAML: ")
    assert expected in str(info.value)


def test_yaml_nested_thousands_deep_is_refused_not_a_crash(tmp_path: Path) -> None:
    path = write(tmp_path, "name: " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(ScenarioError, match=re.escape(f"{path}: not valid YAML: nested too deeply")):
        load_scenario(path)


def test_a_control_character_is_reported_on_one_line_with_its_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, "name: a\nseed: 1\x07\n")
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    assert str(info.value) == (f"{path}: line 2 column 8: not valid YAML: "
                               "unacceptable character #x0007: special characters are not allowed")


# --- numbers and overrides that would crash or run silently wrong ---------------------------------------
@pytest.mark.parametrize("devices", ["ten", 2.5, True, 0, -3], ids=["text", "fraction", "bool", "zero", "negative"])
def test_a_devices_override_must_be_an_integer_of_at_least_one(devices: Any) -> None:
    with pytest.raises(ScenarioError) as info:
        parse_scenario(base(), "mine.yaml", devices=devices)
    assert str(info.value) == f"mine.yaml: devices override: must be an integer >= 1 (got {devices!r})"


def test_a_devices_override_above_max_devices_names_the_allowed_range() -> None:
    with pytest.raises(ScenarioError) as info:
        parse_scenario({**base(), "max_devices": 50}, "mine.yaml", devices=51)
    assert str(info.value).startswith("mine.yaml: devices override: 51 devices exceed max_devices=50; "
                                      "give an integer from 1 to 50")


@pytest.mark.parametrize("count", ["many", 1.5, -1], ids=["text", "fraction", "negative"])
def test_a_devices_override_does_not_hide_a_bad_count_in_the_file(count: Any) -> None:
    data = base()
    data["user_classes"][0]["count"] = count
    data["user_classes"][1]["count"] = 5
    with pytest.raises(ScenarioError) as info:
        parse_scenario(data, "mine.yaml", devices=10)
    assert "mine.yaml: user_classes.0.count:" in str(info.value) and f"(got {count!r})" in str(info.value)


@pytest.mark.parametrize(("field", "value"), [
    ("duration_s", float("inf")), ("time_scale", float("inf")), ("duration_s", float("nan")),
    ("time_scale", float("nan")),
], ids=["duration-inf", "time-scale-inf", "duration-nan", "time-scale-nan"])
def test_an_override_that_is_not_a_finite_number_is_refused(field: str, value: float) -> None:
    with pytest.raises(ScenarioError, match=re.escape(f"mine.yaml: {field}: Input should be a finite number")):
        parse_scenario(base(), "mine.yaml", **{field: value})


def test_an_infinite_number_in_the_file_is_refused_with_its_field(tmp_path: Path) -> None:
    _, msg = error_for(tmp_path, lambda d: d.update(server={"max_body_mb": float("inf")}))
    assert "server.max_body_mb: Input should be a finite number (got inf)" in msg


def test_a_negative_seed_is_refused(tmp_path: Path) -> None:
    _, msg = error_for(tmp_path, lambda d: d.update(seed=-1))
    assert "seed: Input should be greater than or equal to 0 (got -1)" in msg


# --- bad input that used to be taken (issue #21) ---------------------------------------------------
@pytest.mark.parametrize(("change", "needle", "problem"), [
    (lambda d: d.update(seed=2**64), "seed", "less than or equal to 9223372036854775807"),
    (lambda d: d["user_classes"][0].update(count=True), "count", "valid integer"),
    (lambda d: d.update(back_office={"writes_per_s": 1, "hot_rows": {"table": "account", "count": 11}}),
     "hot_rows.count", "11 hot rows of 'account', which seeds 10 rows; at most 10"),
    (lambda d: d.update(privilege_changes=[{"at_s": 1, "user_class": "manager", "users": 2, "table": "account",
                                            "read": "none"}]),
     "privilege change", "users 2 of class 'manager', which has 1; at most 1"),
    (lambda d: d.update(storms={"every_s": 60, "user_class": "technician", "users": 4}),
     "storms.users", "4 of class 'technician', which has 3; at most 3"),
], ids=["seed-past-63-bits", "count-true", "hot-rows-past-the-table", "privilege-change-past-the-class",
        "storm-past-the-class"])
def test_out_of_range_counts_and_seeds_are_refused_naming_the_field(
        tmp_path: Path, change: Callable[[dict[str, Any]], Any], needle: str, problem: str) -> None:
    _, message = error_for(tmp_path, change)
    assert problem in line_with(message, needle)


def test_a_scenario_without_devices_is_refused_before_running(tmp_path: Path) -> None:
    from simulator.runner import run_blocking

    data = base()
    for c in data["user_classes"]:
        c["count"] = 0
    with pytest.raises(ScenarioError, match="has no devices to run .* give a class a count of 1 or more"):
        run_blocking(load_scenario(write(tmp_path, data)), tmp_path / "out")
    assert not (tmp_path / "out").exists()
