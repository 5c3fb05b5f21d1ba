"""Microsoft's Python SDK (PowerPlatform-Dataverse-Client), unchanged, against the mock server over TLS.

The server runs in a background thread with its own event loop (the SDK is synchronous). Each SDK
operation is checked by reading the same rows back through the raw Web API with `requests`. When an
SDK call fails, the assertion message lists the last HTTP exchanges (request line, status, body).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import PowerPlatform.Dataverse as dataverse
import pytest
import requests
from azure.core.credentials import AccessToken
from PowerPlatform.Dataverse import DataverseClient, col

from simulator.clock import RealClock
from simulator.scenario import Scenario, parse_scenario
from simulator.server.serve import RunningServer, start_server

USER = "integrator-0001"
ROWS = 5200  # more than one 5,000-row page
SCENARIO: dict[str, Any] = {
    "name": "sdk",
    "seed": 11,
    "tables": [{
        "logical_name": "account", "rows": ROWS, "row_bytes": 300,
        "columns": [
            {"name": "revenue", "type": "decimal", "min": 0, "max": 1000},
            {"name": "sample_document", "type": "file", "fill": 0.0, "size": {"median_kb": 4, "max_kb": 16}},
            {"name": "accountnumber", "type": "text", "max_length": 20},
            {"name": "address1_postalcode", "type": "text", "max_length": 20},
        ],
        "keys": [{"name": "accountnumber_key", "columns": ["accountnumber"]},
                 {"name": "number_postalcode_key", "columns": ["accountnumber", "address1_postalcode"]}],
    }, {
        "logical_name": "contact", "rows": 5, "conflict_detection": True,  # server wins (account: last writer wins)
    }],
    "user_classes": [{
        "name": "integrator", "count": 1, "profile": [{"table": "account"}, {"table": "contact"}],
        "privileges": {"account": {"read": "org", "write": "org", "create": True, "delete": "org"},
                       "contact": {"read": "org", "write": "org"}},
    }],
}


# --- the server in a thread ------------------------------------------------------------------------
class ServerThread:
    """start_server(tls=True) on a private event loop in a daemon thread."""

    def __init__(self, scenario: Scenario, state_dir: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="syncsim-server", daemon=True)
        self.thread.start()
        coro = start_server(scenario, tls=True, state_dir=state_dir, clock=RealClock())
        self.server: RunningServer = asyncio.run_coroutine_threadsafe(coro, self.loop).result(60)

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.close(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    thread = ServerThread(parse_scenario(SCENARIO), tmp_path_factory.mktemp("sdk-tls"))
    try:
        yield thread.server
    finally:
        thread.close()


# --- credential, wire log, raw API -----------------------------------------------------------------
class SyncsimCredential:
    """A TokenCredential: tokens from POST /_syncsim/token (admin key) for one scenario user."""

    def __init__(self, base_url: str, admin_key: str, user: str, ca_path: Path) -> None:
        self.base_url, self.admin_key, self.user, self.ca_path = base_url, admin_key, user, ca_path
        self.scopes: list[tuple[str, ...]] = []
        self._token: AccessToken | None = None

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.scopes.append(scopes)
        if self._token is None or self._token.expires_on - 60 < time.time():
            resp = requests.post(f"{self.base_url}/_syncsim/token", json={"user": self.user},
                                 headers={"Authorization": f"Bearer {self.admin_key}"},
                                 verify=str(self.ca_path), timeout=10)
            resp.raise_for_status()
            body = resp.json()
            self._token = AccessToken(body["access_token"], int(time.time()) + int(body["expires_in"]))
        return self._token


@dataclass
class Exchange:
    method: str
    url: str
    status: int
    body: str

    def __str__(self) -> str:
        return f"{self.method} {self.url} -> {self.status} {self.body[:300]!r}"


class Wire(list[Exchange]):
    """Every HTTP exchange made through requests during one test."""

    def since(self, mark: int) -> list[Exchange]:
        return self[mark:]

    def tail(self, n: int = 4) -> str:
        return "\n  ".join(str(e) for e in self[-n:]) or "(no HTTP exchange)"


@pytest.fixture
def wire(monkeypatch: pytest.MonkeyPatch) -> Wire:
    log = Wire()
    send = requests.Session.send

    def recording_send(self: requests.Session, request: requests.PreparedRequest, **kw: Any) -> requests.Response:
        resp = send(self, request, **kw)
        text = "" if "octet-stream" in resp.headers.get("Content-Type", "") else resp.text
        log.append(Exchange(str(request.method), str(request.url), resp.status_code, text))
        return resp

    monkeypatch.setattr(requests.Session, "send", recording_send)
    return log


@contextlib.contextmanager
def sdk_step(wire: Wire, what: str) -> Iterator[None]:
    """Turn an SDK exception into an assertion that shows the wire."""
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - any SDK failure is reported with the wire log
        raise AssertionError(f"SDK {what} failed: {exc!r}\n  last HTTP exchanges:\n  {wire.tail()}") from exc


@dataclass
class Env:
    server: RunningServer
    client: DataverseClient
    cred: SyncsimCredential
    wire: Wire

    @property
    def api(self) -> str:
        return f"{self.server.base_url}/api/data/v9.2"

    def raw(self, method: str, path: str, **kw: Any) -> requests.Response:
        """The raw Web API with the same user's bearer token (path relative to the API root, or absolute)."""
        token = self.cred.get_token(f"{self.server.base_url}/.default").token
        headers = {"Authorization": f"Bearer {token}", **kw.pop("headers", {})}
        url = path if path.startswith("https://") else f"{self.api}/{path}"
        return requests.request(method, url, headers=headers, timeout=30, **kw)

    def row(self, row_id: str) -> dict[str, Any] | None:
        resp = self.raw("GET", f"accounts({row_id})")
        if resp.status_code == 404:
            return None
        assert resp.status_code == 200, resp.text
        return resp.json()

    def all_rows(self) -> list[dict[str, Any]]:
        """Every account through raw paging (no $filter, so it only needs plain list + nextLink)."""
        rows: list[dict[str, Any]] = []
        url: str | None = f"{self.api}/accounts?$select=name,revenue"
        while url:
            resp = self.raw("GET", url, headers={"Prefer": "odata.maxpagesize=5000"})
            assert resp.status_code == 200, resp.text[:300]
            body = resp.json()
            rows += body["value"]
            url = body.get("@odata.nextLink")
        return rows


@pytest.fixture
def env(served: RunningServer, wire: Wire, monkeypatch: pytest.MonkeyPatch) -> Iterator[Env]:
    assert served.ca_path is not None
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(served.ca_path))
    cred = SyncsimCredential(served.base_url, served.admin_key, USER, served.ca_path)
    client = DataverseClient(served.base_url, cred)
    try:
        yield Env(served, client, cred, wire)
    finally:
        client.close()


def _posts_to(exchanges: list[Exchange], suffix: str) -> list[Exchange]:
    return [e for e in exchanges if e.method == "POST" and e.url.split("?")[0].endswith(suffix)]


# --- the tests -------------------------------------------------------------------------------------
def test_sdk_version_https_and_credential_scope(env: Env) -> None:
    assert dataverse.__version__.startswith("1.1")
    with pytest.raises(ValueError, match="HTTPS"):
        DataverseClient(env.server.base_url.replace("https://", "http://"), env.cred)
    first = env.raw("GET", "accounts?$top=1&$select=name").json()["value"][0]
    with sdk_step(env.wire, "records.retrieve (existing row)"):
        found = env.client.records.retrieve("account", first["accountid"], select=["name"])
    assert found is not None and found["name"] == first["name"]
    with sdk_step(env.wire, "records.retrieve (missing row)"):
        missing = env.client.records.retrieve("account", "00000000-0000-0000-0000-0000000000aa")
    assert missing is None
    assert (f"{env.server.base_url}/.default",) in env.cred.scopes  # one positional scope, as documented


def test_create_one_and_get(env: Env) -> None:
    with sdk_step(env.wire, "records.create (one)"):
        rid = env.client.records.create("account", {"name": "SDK single", "revenue": 234.5})
    with sdk_step(env.wire, "records.get"), pytest.warns(DeprecationWarning, match="retrieve"):
        rec = env.client.records.get("account", rid, select=["name", "revenue"])  # deprecated in 1.1, still works
    assert rec["name"] == "SDK single" and rec["revenue"] == 234.5
    raw = env.row(rid)
    assert raw is not None and raw["name"] == "SDK single" and raw["revenue"] == 234.5
    assert raw["accountid"] == rid


def test_create_many_uses_create_multiple(env: Env) -> None:
    mark = len(env.wire)
    names = [f"SDK bulk {i}" for i in range(3)]
    with sdk_step(env.wire, "records.create (many)"):
        ids = env.client.records.create("account", [{"name": n, "revenue": float(i)} for i, n in enumerate(names)])
    assert len(ids) == 3 and len(set(ids)) == 3
    assert _posts_to(env.wire.since(mark), "/accounts/Microsoft.Dynamics.CRM.CreateMultiple")
    for i, (rid, name) in enumerate(zip(ids, names, strict=True)):
        raw = env.row(rid)
        assert raw is not None and raw["name"] == name and raw["revenue"] == float(i)


def test_create_5200_rows_is_one_create_multiple(env: Env) -> None:
    """No fixed row cap on bulk actions, as in Dataverse (the SDK sends all 5,200 in one request)."""
    mark = len(env.wire)
    with sdk_step(env.wire, "records.create (5,200)"):
        ids = env.client.records.create("account", [{"name": f"SDK big {i}"} for i in range(5200)])
    assert len(ids) == 5200 and len(set(ids)) == 5200
    assert len(_posts_to(env.wire.since(mark), "/accounts/Microsoft.Dynamics.CRM.CreateMultiple")) == 1


def test_upsert_by_alternate_key_one_and_many(env: Env) -> None:
    """records.upsert: one item is PATCH accounts(accountnumber='...'), several are UpsertMultiple
    with @odata.id key references; both create a missing row and update an existing one."""
    from PowerPlatform.Dataverse.models import UpsertItem

    from simulator.server.state import STATE

    table = env.server.app[STATE].store.table("account")
    existing = next(r for r in table.rows.values() if r.values.get("accountnumber") == "ACC-000003")
    mark = len(env.wire)
    with sdk_step(env.wire, "records.upsert (one, new)"):
        env.client.records.upsert("account", [UpsertItem(alternate_key={"accountnumber": "SDK-O'1"},
                                                         record={"name": "upserted one"})])
    with sdk_step(env.wire, "records.upsert (many)"):
        env.client.records.upsert("account", [
            UpsertItem(alternate_key={"accountnumber": "ACC-000003"}, record={"name": "renamed by key"}),
            UpsertItem(alternate_key={"accountnumber": "SDK-2", "address1_postalcode": "98052"},
                       record={"name": "made by composite key"}),
        ])
    by_number = {r.values.get("accountnumber"): r for r in table.rows.values()}
    assert by_number["SDK-O'1"].values["name"] == "upserted one"
    assert table.rows[existing.id].values["name"] == "renamed by key"
    assert by_number["SDK-2"].values["address1_postalcode"] == "98052"
    exchanges = env.wire.since(mark)
    assert [e.method for e in exchanges if "accountnumber=" in e.url] == ["PATCH"]
    assert len(_posts_to(exchanges, "/accounts/Microsoft.Dynamics.CRM.UpsertMultiple")) == 1


def test_update_one_and_many(env: Env) -> None:
    created = [env.raw("POST", "accounts", json={"name": f"to update {i}"}) for i in range(3)]
    assert all(r.status_code == 204 for r in created), [r.text for r in created]
    ids = [r.headers["OData-EntityId"].rsplit("(", 1)[1].rstrip(")") for r in created]
    with sdk_step(env.wire, "records.update (one)"):
        env.client.records.update("account", ids[0], {"name": "updated one", "revenue": 5.0})
    raw = env.row(ids[0])
    assert raw is not None and raw["name"] == "updated one" and raw["revenue"] == 5.0

    mark = len(env.wire)
    with sdk_step(env.wire, "records.update (many, broadcast)"):
        env.client.records.update("account", ids, {"revenue": 42.0})
    assert _posts_to(env.wire.since(mark), "/accounts/Microsoft.Dynamics.CRM.UpdateMultiple")
    with sdk_step(env.wire, "records.update (many, paired)"):
        env.client.records.update("account", ids[1:], [{"name": "paired a"}, {"name": "paired b"}])
    rows = [env.row(i) for i in ids]
    assert [r["revenue"] for r in rows if r] == [42.0, 42.0, 42.0]
    assert [r["name"] for r in rows if r] == ["updated one", "paired a", "paired b"]


def test_delete_one_and_bulk_delete(env: Env) -> None:
    created = [env.raw("POST", "accounts", json={"name": f"to delete {i}"}) for i in range(3)]
    ids = [r.headers["OData-EntityId"].rsplit("(", 1)[1].rstrip(")") for r in created]
    with sdk_step(env.wire, "records.delete (one)"):
        env.client.records.delete("account", ids[0])
    assert env.row(ids[0]) is None

    mark = len(env.wire)
    with sdk_step(env.wire, "records.delete (many -> BulkDelete)"):
        job = env.client.records.delete("account", ids[1:])
    assert _posts_to(env.wire.since(mark), "/BulkDelete")
    assert isinstance(job, str) and len(job) == 36
    assert env.row(ids[1]) is None and env.row(ids[2]) is None  # the emulator deletes at once


def test_list_pages_past_5000_rows(env: Env) -> None:
    expected = {r["accountid"]: r["name"] for r in env.all_rows()}
    assert len(expected) >= ROWS - 10  # other tests create and delete a few
    mark = len(env.wire)
    with sdk_step(env.wire, "records.list (all rows)"):
        result = env.client.records.list("account", select=["name"])
    records = list(result)
    pages = [e for e in env.wire.since(mark) if e.method == "GET" and "/accounts" in e.url]
    assert len(pages) >= 2, "the SDK should have followed @odata.nextLink"
    got = {r["accountid"]: r["name"] for r in records}
    assert len(got) == len(records)  # no row twice across pages
    assert got == expected


def test_query_builder_with_filter(env: Env) -> None:
    truth = {r["accountid"] for r in env.all_rows() if r["revenue"] is not None and r["revenue"] > 900}
    assert 100 < len(truth) < ROWS
    with sdk_step(env.wire, "query.builder(...).where(col('revenue') > 900).execute()"):
        result = (env.client.query.builder("account").select("name", "revenue")
                  .where(col("revenue") > 900).execute())
    records = list(result)
    assert all(r["revenue"] > 900 for r in records)
    assert {r["accountid"] for r in records} == truth


def test_batch_with_changeset(env: Env) -> None:
    with sdk_step(env.wire, "batch with a changeset"):
        batch = env.client.batch.new()
        batch.records.create("account", {"name": "batch plain", "revenue": 1.0})
        with batch.changeset() as cs:
            ref = cs.records.create("account", {"name": "changeset new"})
            cs.records.update("account", ref, {"revenue": 77.0})
            cs.records.create("account", {"name": "changeset second", "revenue": 2.0})
        result = batch.execute()
    assert not result.has_errors, [(r.status_code, r.error_message) for r in result.failed]
    assert len(result.responses) == 4
    ids = result.entity_ids
    assert len(set(ids)) == 3, ids  # the update answers with the created row's id again
    rows = {i: env.row(i) for i in set(ids)}
    by_name = {r["name"]: r for r in rows.values() if r}
    assert by_name["batch plain"]["revenue"] == 1.0
    assert by_name["changeset new"]["revenue"] == 77.0
    assert by_name["changeset second"]["revenue"] == 2.0


def test_batch_continue_on_error_runs_past_a_failure_and_stops_without_it(env: Env) -> None:
    missing = "00000000-0000-4000-8000-00000000dead"
    for keep_going in (True, False):
        with sdk_step(env.wire, f"batch, continue_on_error={keep_going}"):
            batch = env.client.batch.new()
            batch.records.create("account", {"name": f"before the failure {keep_going}"})
            batch.records.update("account", missing, {"revenue": 1.0})
            batch.records.create("account", {"name": f"after the failure {keep_going}"})
            result = batch.execute(continue_on_error=keep_going)
        assert [r.status_code for r in result.failed] == [404]
        names = {r["name"] for r in env.all_rows()}
        assert f"before the failure {keep_going}" in names
        assert (f"after the failure {keep_going}" in names) is keep_going  # Dataverse stops at the first failure


@pytest.mark.parametrize("entity_set", ["accounts", "contacts"])  # last writer wins, server wins
def test_a_stale_if_match_is_412_whatever_the_tables_policy(env: Env, entity_set: str) -> None:
    row = env.raw("GET", f"{entity_set}?$top=1").json()["value"][0]
    row_id, etag = row[f"{entity_set[:-1]}id"], row["@odata.etag"]
    assert env.raw("PATCH", f"{entity_set}({row_id})", json={"description": "first"},
                   headers={"If-Match": etag}).status_code == 204
    stale = env.raw("PATCH", f"{entity_set}({row_id})", json={"description": "second"}, headers={"If-Match": etag})
    assert stale.status_code == 412 and stale.json()["error"]["code"] == "0x80060882", stale.text
    assert env.raw("GET", f"{entity_set}({row_id})").json()["description"] == "first"


def test_files_upload_small_and_chunked(env: Env, tmp_path: Path) -> None:
    created = env.raw("POST", "accounts", json={"name": "with a file"})
    rid = created.headers["OData-EntityId"].rsplit("(", 1)[1].rstrip(")")
    small = tmp_path / "notes.txt"
    small.write_bytes(b"hello file column\n" * 20_000)  # 360 kB: one PATCH
    with sdk_step(env.wire, "files.upload (small)"):
        env.client.files.upload("account", rid, "sample_document", str(small))
    down = env.raw("GET", f"accounts({rid})/sample_document/$value")
    assert down.status_code == 200 and down.content == small.read_bytes()
    assert down.headers["x-ms-file-name"] == "notes.txt"

    big = tmp_path / "scan.bin"
    big.write_bytes(bytes(range(256)) * (5 * 4096 + 7))  # about 5 MiB: two 4 MiB chunks
    mark = len(env.wire)
    with sdk_step(env.wire, "files.upload (chunk)"):
        env.client.files.upload("account", rid, "sample_document", str(big), mode="chunk", if_none_match=False)
    statuses = [e.status for e in env.wire.since(mark) if e.method == "PATCH"]
    assert statuses == [200, 206, 204]
    down = env.raw("GET", f"accounts({rid})/sample_document/$value")
    assert down.status_code == 200 and down.content == big.read_bytes()
    part = env.raw("GET", f"accounts({rid})/sample_document/$value", headers={"Range": "bytes=0-4194303"})
    assert part.status_code == 206 and part.content == big.read_bytes()[:4194304]
