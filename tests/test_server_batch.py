"""POST $batch: SDK wire format, changesets and rollback, Content-ID references, error modes, limits."""

from __future__ import annotations

import copy
import uuid
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from aiohttp import web

from tests.conftest import SMALL, Api, small_scenario

batch_base = pytest.importorskip("PowerPlatform.Dataverse.data._batch_base")

ROOT = "/api/data/v9.2"
TECH = "technician-0001"
MANAGER = "manager-0001"
CRLF = "\r\n"

Part = tuple[str, str, dict[str, Any] | None, dict[str, str] | None, int | None]  # method, url, body, headers, cid


def sdk_part(boundary: str, method: str, url: str, body: dict[str, Any] | None = None,
             headers: dict[str, str] | None = None, content_id: int | None = None) -> str:
    """One part byte for byte as the SDK's `_serialize_raw_request` writes it."""
    head = [f"--{boundary}", "Content-Type: application/http", "Content-Transfer-Encoding: binary"]
    if content_id is not None:
        head.append(f"Content-ID: {content_id}")
    inner = [f"{method} {url} HTTP/1.1"]
    if body is not None:
        inner.append("Content-Type: application/json; type=entry")
    inner += [f"{k}: {v}" for k, v in (headers or {}).items()]
    inner.append("")
    if body is not None:
        inner.append(orjson.dumps(body).decode())
    return CRLF.join(head) + CRLF + CRLF + CRLF.join(inner) + CRLF


def sdk_batch(boundary: str, items: list[Part | list[Part]]) -> bytes:
    """A whole body as the SDK's `_build_batch_body` writes it (a list is a changeset)."""
    out = []
    for n, item in enumerate(items):
        if isinstance(item, list):
            cs = f"changeset_{n}"
            inner = "".join(sdk_part(cs, *p) for p in item) + f"--{cs}--{CRLF}"
            out.append(f'--{boundary}{CRLF}Content-Type: multipart/mixed; boundary="{cs}"{CRLF}{CRLF}{inner}{CRLF}')
        else:
            out.append(sdk_part(boundary, *item))
    return ("".join(out) + f"--{boundary}--{CRLF}").encode()


def parse(resp_body: bytes, content_type: str) -> Any:
    """The SDK's own response parser (BatchResult)."""
    fake = SimpleNamespace(headers={"Content-Type": content_type}, text=resp_body.decode(), status_code=200)
    return batch_base._BatchBase(None)._parse_batch_response(fake)


async def send(api: Api, body: bytes, user: str = TECH, boundary: str = "batch_t", **headers: str) -> tuple[int, Any, bytes]:
    """POST a batch; (status, SDK BatchResult or None, raw body)."""
    h = {"Content-Type": f'multipart/mixed; boundary="{boundary}"', **headers}
    resp = await api.call("POST", f"{ROOT}/$batch", user, headers=h, data=body)
    raw = await resp.read()
    ctype = resp.headers.get("Content-Type", "")
    result = parse(raw, ctype) if ctype.startswith("multipart/mixed") else None
    return resp.status, result, raw


def url(api: Api, path: str) -> str:
    """An absolute inner URL, as the SDK writes them."""
    return f"{api.client.make_url(ROOT)}/{path}"


def rows(api: Api, logical: str) -> dict[str, int]:
    return {r.id: r.version for r in api.state.store.table(logical)}


def account_of(api: Api, user: str, mine: bool) -> str:
    index = api.state.store.users_by_name[user].index
    return next(r.id for r in api.state.store.table("account") if (r.owner == index) == mine)


async def test_a_batch_exactly_as_the_sdk_writes_it_runs_a_changeset_with_content_id_references(api: Api) -> None:
    host = url(api, "")[:-1]
    body = (
        "--batch_abc\r\n"
        'Content-Type: multipart/mixed; boundary="changeset_def"\r\n'
        "\r\n"
        "--changeset_def\r\n"
        "Content-Type: application/http\r\nContent-Transfer-Encoding: binary\r\nContent-ID: 1\r\n\r\n"
        f"POST {host}/accounts HTTP/1.1\r\n"
        "Content-Type: application/json; type=entry\r\n\r\n"
        '{"name": "Contoso batch"}\r\n'
        "--changeset_def\r\n"
        "Content-Type: application/http\r\nContent-Transfer-Encoding: binary\r\nContent-ID: 2\r\n\r\n"
        f"POST {host}/msdyn_workorders HTTP/1.1\r\n"
        "Content-Type: application/json; type=entry\r\n\r\n"
        '{"name": "wo batch", "msdyn_account@odata.bind": "$1"}\r\n'
        "--changeset_def\r\n"
        "Content-Type: application/http\r\nContent-Transfer-Encoding: binary\r\nContent-ID: 3\r\n\r\n"
        "PATCH $1 HTTP/1.1\r\n"
        "Content-Type: application/json; type=entry\r\nIf-Match: *\r\n\r\n"
        '{"revenue": 12.5}\r\n'
        "--changeset_def--\r\n"
        "\r\n"
        "--batch_abc\r\n"
        "Content-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n"
        f"GET {host}/accounts?$select=name,revenue&$filter=name eq 'Contoso batch' HTTP/1.1\r\n"
        "\r\n"
        "--batch_abc--\r\n"
    ).encode()
    status, result, raw = await send(api, body, boundary="batch_abc")
    assert status == 200, raw
    assert [r.status_code for r in result.responses] == [204, 204, 204, 200]
    assert [r.content_id for r in result.responses] == ["1", "2", "3", None]
    account, workorder, patched = (r.entity_id for r in result.responses[:3])
    assert patched == account
    assert api.state.store.table("msdyn_workorder").rows[workorder].values["_msdyn_account_value"] == account
    assert result.responses[3].data["value"] == [
        {"@odata.etag": result.responses[3].data["value"][0]["@odata.etag"], "accountid": account,
         "name": "Contoso batch", "revenue": 12.5}]
    assert b"\r\n--changesetresponse_" in raw and b"Location: " in raw and b"OData-Version: 4.0" in raw


def test_the_test_serializer_matches_the_sdk_byte_for_byte() -> None:
    raw_request = pytest.importorskip("PowerPlatform.Dataverse.data._raw_request")._RawRequest
    sdk = batch_base._BatchBase(None)
    req = raw_request("PATCH", "https://h/api/data/v9.2/accounts(1)", '{"a":1}', {"If-Match": "*"}, 4)
    assert sdk._serialize_raw_request(req, "b") == sdk_part("b", "PATCH", req.url, {"a": 1}, {"If-Match": "*"}, 4)
    get = raw_request("GET", "https://h/api/data/v9.2/accounts?$filter=name eq 'a'")
    assert sdk._build_batch_body([get], "b").encode() == sdk_batch("b", [("GET", get.url, None, None, None)])


async def test_get_inside_a_batch_returns_the_row(api: Api) -> None:
    row_id = account_of(api, TECH, mine=False)
    body = sdk_batch("batch_t", [("GET", url(api, f"accounts({row_id})?$select=name"), None, None, None)])
    status, result, _ = await send(api, body)
    assert status == 200
    (item,) = result.responses
    assert item.status_code == 200 and item.data["accountid"] == row_id
    assert item.data["name"] == api.state.store.table("account").rows[row_id].values["name"]


async def test_inner_urls_may_be_host_or_service_root_relative(api: Api) -> None:
    row_id = account_of(api, TECH, mine=False)
    body = sdk_batch("batch_t", [("GET", f"accounts({row_id})", None, None, None),
                                 ("GET", f"{ROOT}/accounts({row_id})", None, None, None)])
    status, result, _ = await send(api, body)
    assert status == 200 and [r.data["accountid"] for r in result.responses] == [row_id, row_id]


def conflict_app(make_server: Callable[..., web.Application]) -> web.Application:
    tables = copy.deepcopy(SMALL["tables"])
    tables[0]["conflict_detection"] = True  # account
    return make_server(small_scenario(tables=tables))


async def test_a_changeset_whose_second_item_fails_rolls_back_its_first(
        aiohttp_client: Callable[..., Any], make_server: Callable[..., web.Application]) -> None:
    api = Api(await aiohttp_client(conflict_app(make_server)))
    mine = account_of(api, TECH, mine=True)
    stale = f'W/"{api.state.store.table("account").rows[mine].version - 1}"'
    before = rows(api, "account")
    body = sdk_batch("batch_t", [[("POST", url(api, "accounts"), {"name": "rolled back"}, None, 1),
                                  ("PATCH", url(api, f"accounts({mine})"), {"revenue": 1}, {"If-Match": stale}, 2)]])
    status, result, _ = await send(api, body)
    assert status == 400
    (item,) = result.responses
    assert (item.status_code, item.error_code, item.content_id) == (412, "0x80060882", "2")
    assert rows(api, "account") == before


async def test_without_continue_on_error_processing_stops_at_the_first_failure(api: Api) -> None:
    missing = str(uuid.uuid4())
    body = sdk_batch("batch_t", [("POST", url(api, "accounts"), {"name": "first"}, None, None),
                                 ("DELETE", url(api, f"accounts({missing})"), None, {"If-Match": "*"}, None),
                                 ("POST", url(api, "accounts"), {"name": "never"}, None, None)])
    status, result, _ = await send(api, body)
    assert status == 400
    assert [r.status_code for r in result.responses] == [204, 404]
    assert result.responses[1].error_message == f"account With Id = {missing} Does Not Exist"
    names = {r.values["name"] for r in api.state.store.table("account")}
    assert "first" in names and "never" not in names


async def test_continue_on_error_answers_every_part_and_a_failed_changeset_once(api: Api) -> None:
    missing = str(uuid.uuid4())
    before = len(api.state.store.table("account"))
    body = sdk_batch("batch_t", [
        ("DELETE", url(api, f"accounts({missing})"), None, {"If-Match": "*"}, None),
        [("POST", url(api, "accounts"), {"name": "undone"}, None, 1),
         ("POST", url(api, "accounts"), {"nosuchcolumn": 1}, None, 2)],
        ("POST", url(api, "accounts"), {"name": "after"}, None, None),
    ])
    status, result, _ = await send(api, body, Prefer="odata.continue-on-error")
    assert status == 200
    assert [(r.status_code, r.content_id) for r in result.responses] == [(404, None), (400, "2"), (204, None)]
    names = {r.values["name"] for r in api.state.store.table("account")}
    assert "after" in names and "undone" not in names and len(names) >= before


async def test_a_privilege_denied_item_is_a_403_part(api: Api) -> None:
    other = account_of(api, TECH, mine=False)
    body = sdk_batch("batch_t", [("PATCH", url(api, f"accounts({other})"), {"name": "x"}, {"If-Match": "*"}, None)])
    status, result, _ = await send(api, body)
    assert status == 400
    (item,) = result.responses
    assert (item.status_code, item.error_code) == (403, "0x80040220")


async def test_an_undeclared_content_id_reference_is_400(api: Api) -> None:
    body = sdk_batch("batch_t", [[("POST", url(api, "accounts"), {"name": "a"}, None, 1),
                                  ("PATCH", "$7", {"name": "b"}, {"If-Match": "*"}, 2)]])
    before = rows(api, "account")
    status, result, _ = await send(api, body)
    assert status == 400
    (item,) = result.responses
    assert item.status_code == 400
    assert item.error_message == "Content-ID Reference: '$7' does not exist in the batch context."
    assert rows(api, "account") == before


async def test_an_undone_delete_leaves_no_tombstone_and_the_versions_are_given_back(api: Api) -> None:
    """A rolled-back changeset used to leave store.version advanced and the undone delete in the ledger."""
    mine = account_of(api, TECH, mine=True)
    before, version = rows(api, "account"), api.state.store.version
    body = sdk_batch("batch_t", [[("DELETE", url(api, f"accounts({mine})"), None, {"If-Match": "*"}, 1),
                                  ("POST", url(api, "accounts"), {"nosuchcolumn": 1}, None, 2)]])
    status, _, _ = await send(api, body)
    assert status == 400 and rows(api, "account") == before and api.state.store.version == version
    assert mine not in api.state.store.table("account").deleted
    ledger = await (await api.client.get("/_syncsim/ledger", headers={"Authorization": "Bearer admin"})).json()
    assert "account" not in ledger["deleted"] and ledger["version"] == version


async def test_a_delimiter_not_followed_by_a_line_break_is_400_not_a_lost_part(api: Api) -> None:
    part = sdk_part("batch_t", "GET", url(api, "accounts?$top=1"))
    body = (part + "--batch_t--\r\n").replace("--batch_t\r\n", "--batch_t", 1).encode()
    resp = await api.call("POST", f"{ROOT}/$batch", TECH, data=body,
                          headers={"Content-Type": "multipart/mixed; boundary=batch_t"})
    assert resp.status == 400
    assert "text after the boundary" in (await resp.json())["error"]["message"]


async def test_a_bulk_action_inside_a_changeset_rolls_back_with_it(api: Api) -> None:
    before = rows(api, "account")
    body = sdk_batch("batch_t", [[
        ("POST", url(api, "accounts/Microsoft.Dynamics.CRM.CreateMultiple"), {"Targets": [{"name": "bulk"}]}, None, 1),
        ("DELETE", url(api, f"accounts({uuid.uuid4()})"), None, {"If-Match": "*"}, 2)]])
    status, _, _ = await send(api, body)
    assert status == 400 and rows(api, "account") == before


async def test_more_than_1000_requests_is_400_and_nothing_is_applied(api: Api) -> None:
    before = rows(api, "account")
    creates = [("POST", url(api, "accounts"), {"name": f"n{i}"}, None, None) for i in range(1001)]
    changeset = [(*c[:4], i + 1) for i, c in enumerate(creates[400:900])]
    body = sdk_batch("batch_t", [*creates[:400], changeset, *creates[900:]])
    resp = await api.call("POST", f"{ROOT}/$batch", TECH, data=body,
                          headers={"Content-Type": 'multipart/mixed; boundary="batch_t"'})
    assert resp.status == 400
    assert "1001 requests" in (await resp.json())["error"]["message"]
    assert rows(api, "account") == before


@pytest.mark.parametrize("body", [
    b"",
    b"garbage without delimiters",
    b"--batch_t\r\nContent-Type: application/http\r\n\r\nGET accounts HTTP/1.1\r\n",  # never closed
    b"--batch_t\r\nContent-Type: application/http\r\n\r\nnot a request line\r\n--batch_t--\r\n",
    b"--batch_t\r\nContent-Type: application/http\r\n\r\nPOST $batch HTTP/1.1\r\n--batch_t--\r\n",
    b"--batch_t\r\nContent-Type: multipart/mixed; boundary=cs\r\n\r\n--cs\r\nContent-Type: application/http\r\n"
    b"\r\nGET accounts HTTP/1.1\r\n--cs--\r\n--batch_t--\r\n",  # GET in a changeset
    b"--batch_t\r\nContent-Type: application/http\r\n\r\n\xff\xfe HTTP/1.1\r\n--batch_t--\r\n",
])
async def test_a_malformed_batch_is_400_never_5xx(api: Api, body: bytes) -> None:
    resp = await api.call("POST", f"{ROOT}/$batch", TECH, data=body,
                          headers={"Content-Type": "multipart/mixed; boundary=batch_t"})
    assert resp.status == 400
    assert (await resp.json())["error"]["code"] == "0x80048d19"


async def test_a_batch_that_is_not_multipart_is_415_and_one_without_boundary_is_400(api: Api) -> None:
    resp = await api.call("POST", f"{ROOT}/$batch", TECH, json={"a": 1})
    assert resp.status == 415
    resp = await api.call("POST", f"{ROOT}/$batch", TECH, data=b"x", headers={"Content-Type": "multipart/mixed"})
    assert resp.status == 400


async def test_inner_urls_outside_the_web_api_are_refused(api: Api) -> None:
    body = sdk_batch("batch_t", [("POST", "/_syncsim/faults", {"error_rate": 1}, None, None),
                                 ("GET", url(api, "nosuchset"), None, None, None)])
    status, result, _ = await send(api, body, Prefer="odata.continue-on-error")
    assert status == 200
    assert [r.status_code for r in result.responses] == [404, 404]
    assert api.state.faults.error_rate == 0


async def test_a_batch_retried_with_the_same_idempotency_key_is_applied_once(api: Api) -> None:
    body = sdk_batch("batch_t", [("POST", url(api, "accounts"), {"name": "once"}, None, None)])
    key = {"x-syncsim-idempotency-key": "batch-key-1"}
    first = await send(api, body, **key)
    second = await send(api, body, **key)
    assert first[0] == second[0] == 200
    assert first[2] == second[2]
    assert sum(r.values["name"] == "once" for r in api.state.store.table("account")) == 1
    other = sdk_batch("batch_t", [("POST", url(api, "accounts"), {"name": "twice"}, None, None)])
    status, _, _ = await send(api, other, **key)
    assert status == 422
