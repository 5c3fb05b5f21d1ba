"""File columns on the mock server: download with Range, single and chunked upload, delete, privileges."""

from __future__ import annotations

from typing import Any

from simulator.protocol.odata import FILE_CHUNK_BYTES
from simulator.server.seed import file_bytes
from simulator.server.store import FileInfo, Row
from tests.conftest import Api

ROOT = "/api/data/v9.2"
COL = "documentbody"


def _owned_row(api: Api, user: str, with_file: bool = True) -> Row:
    """An annotation row owned by `user` (with a file when asked)."""
    table = api.state.store.table("annotation")
    owner = api.state.store.users_by_name[user].index
    for row in table:
        if row.owner == owner and bool(row.files and COL in row.files) == with_file:
            return row
    raise AssertionError(f"no annotation owned by {user} (with_file={with_file})")


def _foreign_row(api: Api, user: str) -> Row:
    table = api.state.store.table("annotation")
    owner = api.state.store.users_by_name[user].index
    return next(r for r in table if r.owner != owner and r.files and COL in r.files)


def _attach(api: Api, row: Row, info: FileInfo) -> Row:
    """Give a row a (generated) file directly in the store, as a new row version."""
    store = api.state.store
    table = store.table("annotation")
    new = Row(row.id, store.next_version(), row.owner, row.team, row.modified, dict(row.values), {COL: info})
    store.write(table, new)
    return new


def _url(row_id: str, suffix: str = "") -> str:
    return f"{ROOT}/annotations({row_id})/{COL}{suffix}"


async def _error_code(resp: Any) -> str:
    return (await resp.json())["error"]["code"]


async def test_download_whole_file_with_headers(api: Api) -> None:
    row = _owned_row(api, "technician-0001")
    info = row.files[COL]  # type: ignore[index]
    resp = await api.call("GET", _url(row.id, "/$value"))
    assert resp.status == 200
    body = await resp.read()
    assert body == file_bytes(info, 0, info.size) and len(body) == info.size
    assert resp.headers["x-ms-file-size"] == str(info.size)
    assert resp.headers["x-ms-file-name"] == info.name
    assert resp.headers["mimetype"] == "image/jpeg"
    assert resp.headers["Content-Type"] == "application/octet-stream"
    exposed = resp.headers["Access-Control-Expose-Headers"]
    for name in ("x-ms-file-size", "x-ms-file-name", "mimetype", "x-ms-chunk-size"):
        assert name in exposed
    assert api.state.counters.file_bytes_served == info.size


async def test_range_206_and_resume_concatenates(api: Api) -> None:
    row = _attach(api, _owned_row(api, "technician-0001"), FileInfo("f-1", 1_000_003, "big.jpg", seed=99))
    info = row.files[COL]  # type: ignore[index]
    full = await (await api.call("GET", _url(row.id, "/$value"))).read()
    assert full == file_bytes(info, 0, info.size)

    first = await api.call("GET", _url(row.id, "/$value"), headers={"Range": "bytes=0-299999"})
    assert first.status == 206
    assert first.headers["Content-Range"] == f"bytes 0-299999/{info.size}"
    assert first.headers["x-ms-file-size"] == str(info.size)
    assert first.headers["x-ms-chunk-size"] == str(FILE_CHUNK_BYTES) == "4194304"
    head = await first.read()
    assert len(head) == 300_000

    rest = await api.call("GET", _url(row.id, "/$value"), headers={"Range": "bytes=300000-"})
    assert rest.status == 206
    assert rest.headers["Content-Range"] == f"bytes 300000-{info.size - 1}/{info.size}"
    assert head + await rest.read() == full

    tail = await api.call("GET", _url(row.id, "/$value"), headers={"Range": "bytes=-3"})
    assert tail.status == 206 and await tail.read() == full[-3:]
    clipped = await api.call("GET", _url(row.id, "/$value"), headers={"Range": f"bytes=999999-{10 ** 9}"})
    assert clipped.status == 206 and await clipped.read() == full[999_999:]


async def test_range_beyond_size_is_416(api: Api) -> None:
    row = _owned_row(api, "technician-0001")
    size = row.files[COL].size  # type: ignore[index]
    resp = await api.call("GET", _url(row.id, "/$value"), headers={"Range": f"bytes={size}-{size + 10}"})
    assert resp.status == 416
    assert await _error_code(resp) == "0x80060891"
    assert resp.headers["Content-Range"] == f"bytes */{size}"
    bad = await api.call("GET", _url(row.id, "/$value"), headers={"Range": "pages=1-2"})
    assert bad.status == 400


async def test_404_for_row_without_file_and_invisible_row(api: Api) -> None:
    created = await api.call("POST", f"{ROOT}/annotations", json={"name": "no file here"})
    assert created.status == 204, await created.text()
    new_id = created.headers["OData-EntityId"].rsplit("(", 1)[1].rstrip(")")
    resp = await api.call("GET", _url(new_id, "/$value"))
    assert resp.status == 404 and await _error_code(resp) == "0x80040217"

    missing = await api.call("GET", _url("00000000-0000-0000-0000-000000000042", "/$value"))
    assert missing.status == 404 and await _error_code(missing) == "0x80040217"

    admin = {"Authorization": "Bearer admin"}
    changed = await api.client.post("/_syncsim/privileges", headers=admin,
                                    json={"user": "technician-0002", "table": "annotation", "read": "user"})
    assert changed.status == 200, await changed.text()
    hidden = _foreign_row(api, "technician-0002")
    resp = await api.call("GET", _url(hidden.id, "/$value"), user="technician-0002")
    assert resp.status == 404 and await _error_code(resp) == "0x80040217"


async def test_non_file_and_unknown_columns_are_400(api: Api) -> None:
    row = _owned_row(api, "technician-0001")
    resp = await api.call("GET", f"{ROOT}/annotations({row.id})/name/$value")
    assert resp.status == 400 and await _error_code(resp) == "0x80048d19"
    resp = await api.call("GET", f"{ROOT}/annotations({row.id})/nosuchcolumn/$value")
    assert resp.status == 400


async def test_single_patch_upload_then_download(api: Api) -> None:
    row = _owned_row(api, "technician-0001")
    table = api.state.store.table("annotation")
    before = api.state.store.version
    data = bytes(range(256)) * 1200  # 300 KiB: streamed back in two chunks
    resp = await api.call("PATCH", _url(row.id), data=data, headers={
        "Content-Type": "application/octet-stream", "x-ms-file-name": "report.pdf", "If-None-Match": "null"})
    assert resp.status == 204, await resp.text()

    down = await api.call("GET", _url(row.id, "/$value"))
    assert down.status == 200 and await down.read() == data
    assert down.headers["x-ms-file-name"] == "report.pdf"
    assert down.headers["mimetype"] == "application/pdf"
    assert down.headers["x-ms-file-size"] == str(len(data))

    stored = table.rows[row.id]
    assert stored.version > before and stored.files[COL].data == data  # type: ignore[index]
    assert row.id in table.changes_since(before, api.state.store.version)  # change tracking sees it
    got = await (await api.call("GET", f"{ROOT}/annotations({row.id})")).json()
    assert got[f"{COL}_name"] == "report.pdf" and got[f"{COL}_size"] == len(data)
    assert got[COL] == stored.files[COL].file_id != row.files[COL].file_id  # type: ignore[index]

    nameless = await api.call("PATCH", _url(row.id), data=b"x", headers={"Content-Type": "application/octet-stream"})
    assert nameless.status == 400


async def test_chunked_upload(api: Api) -> None:
    row = _owned_row(api, "technician-0001")
    data = bytes((i * 7) % 251 for i in range(250_000))
    init = await api.call("PATCH", _url(row.id, "?x-ms-file-name=site%20photo.png"),
                          headers={"x-ms-transfer-mode": "chunked", "If-None-Match": "null"})
    assert init.status == 200, await init.text()
    location = init.headers["Location"]
    assert location.startswith("http") and "sessiontoken=" in location
    assert init.headers["x-ms-chunk-size"] == "4194304"
    assert init.headers["Accept-Ranges"] == "bytes"

    step = 100_000
    statuses = []
    for start in range(0, len(data), step):
        chunk = data[start : start + step]
        resp = await api.call("PATCH", location, data=chunk, headers={
            "Content-Type": "application/octet-stream", "x-ms-file-name": "site photo.png",
            "Content-Range": f"bytes {start}-{start + len(chunk) - 1}/{len(data)}"})
        statuses.append(resp.status)
    assert statuses == [206, 206, 204]

    down = await api.call("GET", _url(row.id, "/$value"))
    assert await down.read() == data
    assert down.headers["x-ms-file-name"] == "site photo.png"
    assert down.headers["mimetype"] == "image/png"

    again = await api.call("PATCH", location, data=b"x", headers={"Content-Range": "bytes 0-0/1"})
    assert again.status == 400  # the session ended with the last chunk


async def test_chunked_upload_over_limit_is_file_too_large(api: Api) -> None:
    row = _owned_row(api, "technician-0001")
    init = await api.call("PATCH", _url(row.id, "?x-ms-file-name=huge.bin"), headers={"x-ms-transfer-mode": "chunked"})
    resp = await api.call("PATCH", init.headers["Location"], data=b"0123456789",
                          headers={"Content-Range": f"bytes 0-9/{200 * 1024 * 1024}"})
    assert resp.status == 400 and await _error_code(resp) == "0x80044a02"


async def test_delete_file(api: Api) -> None:
    row = _owned_row(api, "technician-0001")
    table = api.state.store.table("annotation")
    resp = await api.call("DELETE", _url(row.id))
    assert resp.status == 204
    assert table.rows[row.id].version > row.version and table.rows[row.id].files is None
    assert (await api.call("GET", _url(row.id, "/$value"))).status == 404
    got = await (await api.call("GET", f"{ROOT}/annotations({row.id})")).json()
    assert got[COL] is None and got[f"{COL}_name"] is None
    version = table.rows[row.id].version
    assert (await api.call("DELETE", _url(row.id))).status == 204  # idempotent, no new version
    assert table.rows[row.id].version == version


async def test_write_without_privilege_is_403(api: Api) -> None:
    row = _foreign_row(api, "technician-0001")  # annotation write depth is "user"
    table = api.state.store.table("annotation")
    resp = await api.call("PATCH", _url(row.id), data=b"abc",
                          headers={"Content-Type": "application/octet-stream", "x-ms-file-name": "a.txt"})
    assert resp.status == 403 and await _error_code(resp) == "0x80040220"
    init = await api.call("PATCH", _url(row.id, "?x-ms-file-name=a.txt"), headers={"x-ms-transfer-mode": "chunked"})
    assert init.status == 403
    gone = await api.call("DELETE", _url(row.id))
    assert gone.status == 403
    assert table.rows[row.id] is row  # nothing changed
    assert api.state.counters.rejections["annotation/technician-0001"] == 3


async def test_delete_on_a_plain_column_clears_it(api: Api) -> None:
    row = _owned_row(api, "technician-0001")
    resp = await api.call("DELETE", f"{ROOT}/annotations({row.id})/name")
    assert resp.status == 204, await resp.text()
    got = await (await api.call("GET", f"{ROOT}/annotations({row.id})")).json()
    assert got["name"] is None and got[COL] == row.files[COL].file_id  # type: ignore[index]
