"""The $batch codec: parsing what Microsoft's SDK writes and encoding what its parser reads."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from simulator.protocol.batch_codec import (
    BatchFormatError,
    ChangesetRequest,
    ChangesetResponse,
    PartRequest,
    PartResponse,
    boundary_of,
    content_id_reference,
    count_requests,
    encode_batch,
    parse_batch,
    request_target,
    split_parts,
)

ROOT = "/api/data/v9.2"
HOST = "https://org.example.com/api/data/v9.2"

# Verbatim the shape the SDK 1.1.0 writes (DATAVERSE_WEBAPI.md section 6): absolute URLs, raw spaces
# and quotes in a GET, no inner Content-Length, Content-ID in the MIME headers, a GET ending in a blank line.
SDK_BODY = (
    "--batch_abc\r\n"
    "Content-Type: multipart/mixed; boundary=\"changeset_def\"\r\n"
    "\r\n"
    "--changeset_def\r\n"
    "Content-Type: application/http\r\n"
    "Content-Transfer-Encoding: binary\r\n"
    "Content-ID: 1\r\n"
    "\r\n"
    f"POST {HOST}/accounts HTTP/1.1\r\n"
    "Content-Type: application/json; type=entry\r\n"
    "\r\n"
    '{"name": "a"}\r\n'
    "--changeset_def\r\n"
    "Content-Type: application/http\r\n"
    "Content-Transfer-Encoding: binary\r\n"
    "Content-ID: 2\r\n"
    "\r\n"
    "PATCH $1 HTTP/1.1\r\n"
    "Content-Type: application/json; type=entry\r\n"
    "If-Match: *\r\n"
    "\r\n"
    '{"name": "b"}\r\n'
    "--changeset_def--\r\n"
    "\r\n"
    "--batch_abc\r\n"
    "Content-Type: application/http\r\n"
    "Content-Transfer-Encoding: binary\r\n"
    "\r\n"
    f"GET {HOST}/accounts?$select=name&$filter=name eq 'a b' HTTP/1.1\r\n"
    "\r\n"
    "--batch_abc--\r\n"
).encode()


def test_the_sdk_body_parses_into_a_changeset_and_a_get() -> None:
    items = parse_batch(SDK_BODY, "batch_abc", 1000)
    assert len(items) == 2 and count_requests(items) == 3
    changeset, get = items
    assert isinstance(changeset, ChangesetRequest) and isinstance(get, PartRequest)
    create, patch = changeset.requests
    assert (create.method, create.url, create.content_id, create.body) == ("POST", f"{HOST}/accounts", "1", b'{"name": "a"}')
    assert create.header("content-type") == "application/json; type=entry"
    assert (patch.method, patch.url, patch.content_id, patch.header("If-Match")) == ("PATCH", "$1", "2", "*")
    assert get.url == f"{HOST}/accounts?$select=name&$filter=name eq 'a b'"
    assert get.body == b"" and get.headers == []


def test_bare_line_feeds_are_tolerated() -> None:
    items = parse_batch(SDK_BODY.replace(b"\r\n", b"\n"), "batch_abc", 1000)
    assert count_requests(items) == 3
    assert items[0].requests[0].body == b'{"name": "a"}'  # type: ignore[union-attr]


def test_preamble_and_epilogue_are_ignored() -> None:
    assert len(split_parts(b"preamble\r\n--b\r\nX: 1\r\n\r\n--b--\r\nepilogue", "b")) == 1


def test_a_boundary_is_read_quoted_or_not() -> None:
    assert boundary_of('multipart/mixed; boundary="batch_1"') == "batch_1"
    assert boundary_of("multipart/mixed;boundary=batch_2; charset=x") == "batch_2"
    assert boundary_of("multipart/mixed") is None


def _one(request: str, boundary: str = "b") -> bytes:
    return (f"--{boundary}\r\nContent-Type: application/http\r\n\r\n{request}\r\n--{boundary}--\r\n").encode()


@pytest.mark.parametrize(("body", "message"), [
    (b"no delimiter at all", "no '--b' delimiter"),
    (b"--b\r\nContent-Type: application/http\r\n\r\nGET x HTTP/1.1\r\n", "closing delimiter"),
    (b"--b\r\n\r\nGET x HTTP/1.1\r\n--b--", "no Content-Type"),
    (b"--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n--b--", "expected application/http"),
    (_one("GET accounts"), "Malformed request line"),
    (_one("FETCH accounts HTTP/1.1"), "not supported"),
    (_one("POST $batch HTTP/1.1"), "another batch"),
    (_one(f"POST {HOST}/$batch HTTP/1.1"), "another batch"),
    (b"--b\r\nContent-Type: multipart/mixed\r\n\r\n--b--", "no boundary"),
    (b"--b\r\nContent-Type: application/http\r\nbroken header\r\n\r\nGET a HTTP/1.1\r\n--b--", "Malformed header"),
])
def test_malformed_bodies_raise_batch_format_error(body: bytes, message: str) -> None:
    with pytest.raises(BatchFormatError, match=message):
        parse_batch(body, "b", 1000)


def _changeset(*requests: str, boundary: str = "cs") -> str:
    parts = "".join(f"--{boundary}\r\nContent-Type: application/http\r\nContent-ID: {i}\r\n\r\n{r}\r\n"
                    for i, r in enumerate(requests, 1))
    return f"Content-Type: multipart/mixed; boundary={boundary}\r\n\r\n{parts}--{boundary}--"


def test_a_get_inside_a_changeset_is_refused() -> None:
    body = f"--b\r\n{_changeset('GET accounts HTTP/1.1')}\r\n--b--\r\n".encode()
    with pytest.raises(BatchFormatError, match="GET requests are not allowed"):
        parse_batch(body, "b", 1000)


def test_a_changeset_inside_a_changeset_is_refused() -> None:
    inner = _changeset("POST accounts HTTP/1.1", boundary="inner")
    body = f"--b\r\nContent-Type: multipart/mixed; boundary=outer\r\n\r\n--outer\r\n{inner}\r\n--outer--\r\n--b--".encode()
    with pytest.raises(BatchFormatError, match="cannot be nested"):
        parse_batch(body, "b", 1000)


def test_a_content_id_used_twice_is_refused() -> None:
    body = (f"--b\r\n{_changeset('POST accounts HTTP/1.1', boundary='c1')}\r\n"
            f"--b\r\n{_changeset('POST accounts HTTP/1.1', boundary='c2')}\r\n--b--").encode()
    with pytest.raises(BatchFormatError, match="more than once"):
        parse_batch(body, "b", 1000)


def test_the_request_limit_counts_each_changeset_item() -> None:
    body = f"--b\r\n{_changeset(*['POST accounts HTTP/1.1'] * 3)}\r\n--b--".encode()
    assert count_requests(parse_batch(body, "b", 3)) == 3
    with pytest.raises(BatchFormatError, match="3 requests; the maximum is 2"):
        parse_batch(body, "b", 2)


def test_request_targets_are_encoded_under_the_service_root() -> None:
    assert request_target(f"{HOST}/accounts?$filter=name eq 'a+b'", ROOT) == \
        f"{ROOT}/accounts?$filter=name%20eq%20'a%2Bb'"
    assert request_target("accounts(1)", ROOT) == f"{ROOT}/accounts(1)"
    assert request_target(f"{ROOT}/accounts?sql=select%20name", ROOT) == f"{ROOT}/accounts?sql=select%20name"


@pytest.mark.parametrize("url", ["/_syncsim/faults", f"{ROOT}/../../_syncsim/faults", "https://h/other/x",
                                 f"{ROOT}/%2e%2e/x"])
def test_request_targets_outside_the_web_api_are_refused(url: str) -> None:
    with pytest.raises(BatchFormatError):
        request_target(url, ROOT)


def test_content_id_references_split_the_id_from_the_rest() -> None:
    assert content_id_reference("$1") == ("1", "")
    assert content_id_reference("$12/description") == ("12", "/description")
    assert content_id_reference(f"{HOST}/accounts") is None


def _sdk_parse(body: bytes, content_type: str) -> object:
    batch_base = pytest.importorskip("PowerPlatform.Dataverse.data._batch_base")
    response = SimpleNamespace(headers={"Content-Type": content_type}, text=body.decode(), status_code=200)
    return batch_base._BatchBase(None)._parse_batch_response(response)  # type: ignore[arg-type]


def test_encoded_responses_satisfy_the_sdk_parser() -> None:
    url = f"{HOST}/accounts(00000000-0000-0000-0000-00000000000a)"
    created = PartResponse(204, [("OData-Version", "4.0"), ("OData-EntityId", url)], b"", "1")
    error = PartResponse(404, [("Content-Type", "application/json")],
                         b'{"error":{"code":"0x80040217","message":"gone"}}')
    row = PartResponse(200, [("Content-Type", "application/json")], b'{"name":"a"}')
    body = encode_batch([ChangesetResponse([created], "changesetresponse_1"), row, error], "batchresponse_x")
    assert body.endswith(b"--batchresponse_x--\r\n") and b"\n" not in body.replace(b"\r\n", b"")
    result = _sdk_parse(body, "multipart/mixed; boundary=batchresponse_x")
    items = result.responses  # type: ignore[attr-defined]
    assert [i.status_code for i in items] == [204, 200, 404]
    assert items[0].content_id == "1" and items[0].entity_id == "00000000-0000-0000-0000-00000000000a"
    assert items[1].data == {"name": "a"}
    assert (items[2].error_code, items[2].error_message) == ("0x80040217", "gone")


def test_an_encoded_part_has_the_status_line_and_reason_phrase() -> None:
    body = encode_batch([PartResponse(204, [("OData-Version", "4.0")])], "b")
    assert body == (b"--b\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n"
                    b"HTTP/1.1 204 No Content\r\nOData-Version: 4.0\r\n\r\n\r\n--b--\r\n")
