"""Seed data: deterministic users, rows, lookups, files and file contents."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from simulator.scenario import Privilege, Scenario, ScenarioError, parse_scenario
from simulator.server.seed import build_store, file_bytes, make_users, new_guid, new_guids
from simulator.server.store import FileInfo, Store, lookup_key

NOW = 1_735_689_600.0  # 2025-01-01T00:00:00Z
ISO = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
PHOTO = {"median_kb": 50, "sigma": 1.5, "min_kb": 10, "max_kb": 200}


def make_scenario(seed: int = 7, **changes: Any) -> Scenario:
    """Accounts, contacts looking them up, and visits with every column type; two user classes."""
    data: dict[str, Any] = {
        "name": "seedtest",
        "seed": seed,
        "tables": [
            {
                "logical_name": "visit",
                "rows": 400,
                "row_bytes": 1200,
                "owned_by": ["tech"],
                "modified_within_days": 10,
                "columns": [
                    {"name": "subject", "type": "text", "faker": "catch_phrase", "max_length": 20},
                    {"name": "duration", "type": "integer", "min": 5, "max": 9},
                    {"name": "amount", "type": "decimal", "min": 1.5, "max": 2.5},
                    {"name": "due", "type": "datetime"},
                    {"name": "status", "type": "choice", "options": {"open": 3, "done": 7}},
                    {"name": "account", "type": "lookup", "target": "account", "fill": 0.5},
                    {"name": "photo", "type": "file", "size": PHOTO, "fill": 0.6},
                ],
            },
            {"logical_name": "account", "rows": 30, "row_bytes": 400},
            {
                "logical_name": "contact",
                "rows": 60,
                "columns": [{"name": "account", "type": "lookup", "target": "account"}],
            },
        ],
        "user_classes": [
            {"name": "tech", "count": 7, "teams": 3, "profile": [{"table": "visit"}, {"table": "account"}]},
            {
                "name": "sales",
                "count": 4,
                "teams": 2,
                "profile": [{"table": "contact"}, {"table": "account"}],
                "privileges": {"contact": {"read": "team", "write": "team"}},
            },
        ],
    }
    data.update(changes)
    return parse_scenario(data)


def snapshot(store: Store) -> dict[str, list[tuple[Any, ...]]]:
    """Every row's fields (files as tuples) per table, in load order."""
    out = {}
    for name, table in store.tables.items():
        out[name] = [
            (
                r.id,
                r.version,
                r.owner,
                r.team,
                r.modified,
                orjson.dumps(r.values).decode(),
                sorted((k, f.file_id, f.size, f.name, f.seed) for k, f in (r.files or {}).items()),
            )
            for r in table
        ]
    return out


@pytest.fixture(scope="module")
def store() -> Store:
    return build_store(make_scenario(), NOW)


def test_same_seed_gives_identical_rows() -> None:
    first, second = build_store(make_scenario(), NOW), build_store(make_scenario(), NOW)
    assert snapshot(first) == snapshot(second)
    assert [(u.id, u.name, u.team) for u in first.users] == [(u.id, u.name, u.team) for u in second.users]


def test_different_seed_gives_different_ids_and_values() -> None:
    first, second = build_store(make_scenario(seed=1), NOW), build_store(make_scenario(seed=2), NOW)
    assert {u.id for u in first.users}.isdisjoint(u.id for u in second.users)
    for name in first.tables:
        a, b = list(first.table(name)), list(second.table(name))
        assert {r.id for r in a}.isdisjoint(r.id for r in b)
        assert [r.values["name"] for r in a] != [r.values["name"] for r in b]


def test_make_users_gives_the_same_users_as_build_store(store: Store) -> None:
    assert [(u.id, u.name, u.team) for u in make_users(make_scenario())] == [
        (u.id, u.name, u.team) for u in store.users
    ]


def test_every_table_gets_its_row_count(store: Store) -> None:
    assert {name: len(t) for name, t in store.tables.items()} == {"visit": 400, "account": 30, "contact": 60}


def test_seeded_rows_get_distinct_versions_and_are_not_logged(store: Store) -> None:
    versions = [r.version for t in store.tables.values() for r in t]
    assert len(set(versions)) == len(versions) == 490
    assert min(versions) > 1000 and max(versions) == store.version
    assert all(not t.log for t in store.tables.values())


def test_users_are_named_per_class_and_assigned_round_robin_to_global_teams(store: Store) -> None:
    users = store.users
    assert [u.name for u in users[:8]] == [f"tech-{n:04d}" for n in range(1, 8)] + ["sales-0001"]
    assert [u.index for u in users] == list(range(len(users)))
    assert [u.team for u in users if u.user_class == "tech"] == [0, 1, 2, 0, 1, 2, 0]
    assert [u.team for u in users if u.user_class == "sales"] == [3, 4, 3, 4]
    assert users[8].privilege("contact") == Privilege(read="team", write="team")
    assert users[0].privilege("visit") == Privilege()


def test_backoffice_user_comes_last_with_its_own_team_and_org_rights_everywhere(store: Store) -> None:
    back = store.users[-1]
    assert (back.name, back.user_class, back.index, back.team) == ("backoffice", "backoffice", 11, 5)
    for table in ("visit", "account", "contact"):
        assert back.privilege(table) == Privilege(read="org", write="org", delete="org")


def test_guids_are_lowercase_version_4_and_unique(store: Store) -> None:
    ids = [r.id for t in store.tables.values() for r in t] + [u.id for u in store.users]
    assert len(set(ids)) == len(ids)
    for s in ids + new_guids(np.random.default_rng(1), 1000) + [new_guid(np.random.default_rng(2))]:
        parsed = uuid.UUID(s)
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122 and str(parsed) == s


def test_owners_come_only_from_owned_by_classes_and_rows_take_the_owners_team(store: Store) -> None:
    visits = list(store.table("visit"))
    assert {store.users[r.owner].user_class for r in visits} == {"tech"}
    assert len({r.owner for r in visits}) == 7
    contacts = list(store.table("contact"))
    assert {store.users[r.owner].user_class for r in contacts} == {"tech", "sales"}
    for r in visits + contacts:
        assert r.team == store.users[r.owner].team


def test_rows_belong_to_the_backoffice_user_when_there_are_no_other_users() -> None:
    store = build_store(make_scenario(user_classes=[{"name": "tech", "count": 0, "profile": []}]), NOW)
    assert {r.owner for r in store.table("account")} == {store.users[-1].index}


def test_lookups_point_at_existing_target_rows_with_the_fill_share(store: Store) -> None:
    accounts = store.table("account").rows
    key = lookup_key("account")
    visits = [r.values[key] for r in store.table("visit")]
    assert all(v is None or v in accounts for v in visits)
    assert 0.35 < sum(v is not None for v in visits) / len(visits) < 0.65
    assert all(r.values[key] in accounts for r in store.table("contact"))
    assert len({r.values[key] for r in store.table("contact")}) > 10


def test_a_lookup_to_its_own_table_is_empty() -> None:
    table = {
        "logical_name": "node",
        "rows": 5,
        "columns": [{"name": "parent", "type": "lookup", "target": "node"}],
    }
    store = build_store(make_scenario(tables=[table], user_classes=[]), NOW)
    assert all(r.values[lookup_key("parent")] is None for r in store.table("node"))


def test_column_values_have_their_types_and_ranges(store: Store) -> None:
    for r in store.table("visit"):
        v = r.values
        assert isinstance(v["subject"], str) and 0 < len(v["subject"]) <= 20
        assert isinstance(v["duration"], int) and 5 <= v["duration"] <= 9
        assert (
            isinstance(v["amount"], float)
            and 1.5 <= v["amount"] <= 2.5
            and round(v["amount"], 2) == v["amount"]
        )
        assert v["status"] in (3, 7)
        assert isinstance(v["name"], str) and v["name"]
        assert ISO.match(v["due"]) and ISO.match(v["createdon"]) and ISO.match(v["modifiedon"])
        assert v["createdon"] <= v["modifiedon"]
        assert "photo" not in v
    assert {r.values["status"] for r in store.table("visit")} == {3, 7}


def test_modified_lies_within_the_tables_days_before_now(store: Store) -> None:
    for r in store.table("visit"):
        assert NOW - 10 * 86400 <= r.modified <= NOW
        assert r.values["modifiedon"][:10] >= "2024-12-22"


def test_file_sizes_stay_within_min_and_max_with_the_fill_share(store: Store) -> None:
    infos = [r.files["photo"] for r in store.table("visit") if r.files]
    assert 0.45 < len(infos) / 400 < 0.75
    assert all(10 * 1024 <= f.size <= 200 * 1024 for f in infos)
    assert len({f.size for f in infos}) > 50
    assert all(f.name.endswith(".jpg") and uuid.UUID(f.file_id).version == 4 for f in infos)
    assert all(r.files is None for r in store.table("account"))


@pytest.mark.parametrize("row_bytes", [400, 1000, 5000, 50_000])
def test_encoded_rows_are_near_row_bytes(row_bytes: int) -> None:
    scenario = make_scenario()
    tables = [t.model_copy(update={"row_bytes": row_bytes}) for t in scenario.tables]
    store = build_store(scenario.model_copy(update={"tables": tables}), NOW)
    for table in store.tables.values():
        if row_bytes < 500 and table.meta.logical_name == "visit":
            continue  # its columns alone take more than 400 bytes
        assert all("description" in r.values for r in table)
        sizes = np.array([len(r.encoded(table)) for r in table])
        assert np.all(np.abs(sizes - row_bytes) <= 0.15 * row_bytes), (
            table.meta.logical_name,
            sizes.min(),
            sizes.max(),
        )
        assert abs(sizes.mean() - row_bytes) <= 0.05 * row_bytes


def test_rows_longer_than_row_bytes_get_no_padding() -> None:
    store = build_store(
        make_scenario(tables=[{"logical_name": "tiny", "rows": 10, "row_bytes": 64}], user_classes=[]), NOW
    )
    assert all("description" not in r.values for r in store.table("tiny"))


def test_file_bytes_split_ranges_concatenate_to_the_whole() -> None:
    info = FileInfo(file_id="x", size=300_000, name="a.jpg", seed=5)
    whole = file_bytes(info, 0, info.size)
    assert len(whole) == info.size and whole == file_bytes(info, 0, info.size)
    for k in (0, 1, 65_535, 65_536, 65_537, 200_000, 300_000):
        assert file_bytes(info, 0, k) + file_bytes(info, k, info.size) == whole
    assert file_bytes(info, 70_000, 140_000) == whole[70_000:140_000]
    assert file_bytes(info, 299_990, 400_000) == whole[299_990:]
    assert file_bytes(info, 10, 10) == b""
    assert len(set(whole[:4096])) > 200  # looks random


def test_file_bytes_depend_on_the_seed_and_prefer_stored_data() -> None:
    a = FileInfo(file_id="a", size=1000, name="a.jpg", seed=1)
    b = FileInfo(file_id="b", size=1000, name="b.jpg", seed=2)
    assert file_bytes(a, 0, 1000) != file_bytes(b, 0, 1000)
    stored = FileInfo(file_id="c", size=5, name="c.txt", data=b"hello")
    assert file_bytes(stored, 1, 4) == b"ell" and file_bytes(stored, 0, 99) == b"hello"


def test_an_unknown_faker_provider_is_refused_before_seeding() -> None:
    table = {
        "logical_name": "t",
        "rows": 1,
        "columns": [{"name": "x", "type": "text", "faker": "no_such_thing"}],
    }
    with pytest.raises(ScenarioError, match="faker 'no_such_thing' is not a Faker provider"):
        make_scenario(tables=[table], user_classes=[])


def test_same_seed_gives_identical_rows_in_a_fresh_process_with_another_hash_seed() -> None:
    code = (
        "import hashlib, sys, orjson\n"
        "sys.path.insert(0, 'tests')\n"
        "from test_seed import NOW, make_scenario, snapshot\n"
        "from simulator.server.seed import build_store\n"
        "print(hashlib.sha256(orjson.dumps(snapshot(build_store(make_scenario(), NOW)))).hexdigest())\n"
    )
    digests = {
        subprocess.run(
            [sys.executable, "-c", code],
            env={**os.environ, "PYTHONHASHSEED": str(hash_seed)},
            cwd=Path(__file__).parent.parent,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        for hash_seed in (1, 2)
    }
    local = hashlib.sha256(orjson.dumps(snapshot(build_store(make_scenario(), NOW)))).hexdigest()
    assert digests == {local}
