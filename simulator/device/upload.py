"""Upload the outbox: one $batch (continue-on-error, one part per op) or one request per op.

A group's key (the op id, or one derived from a batch's op ids when the group was formed) is its
idempotency key, so a retry after a lost response is not applied twice. Every request or part
names its op in `x-syncsim-op-id`, so the server's write log can say which edit made which write.
Outcome per op: (status, new version, overwrote-a-newer-version, error code).
"""

from __future__ import annotations

import orjson

from simulator.device.client import ApiClient, SyncFailed, Tally
from simulator.device.outbox import Group, Op
from simulator.protocol import ErrorCode, H, format_etag, parse_etag
from simulator.protocol.batch import BatchRequestPart, encode_batch, parse_batch_response
from simulator.protocol.odata import API_ROOT

Outcome = tuple[int, int | None, bool, str | None]  # status, new version, overwrote newer, error code
_ANSWERED = (400, 403, 404, 412, 422)


def _request(op: Op, detect: bool) -> tuple[str, str, dict[str, str], bytes]:
    """Method, path below the service root, headers and body for one op.

    An update or delete always carries If-Match: with the table's conflict detection on, the base
    version's etag (a newer row answers 412: server wins); off, `*` (the row must still exist) and
    the base version in x-syncsim-base-version, so the server can count the overwrite."""
    headers: dict[str, str] = {H.OP_ID: op.op_id}
    if op.kind == "create":
        headers["Content-Type"] = "application/json"
        return "POST", op.entity_set, headers, orjson.dumps(op.payload)
    if detect and op.base_version:
        headers[H.IF_MATCH] = format_etag(op.base_version)
    else:
        headers[H.IF_MATCH] = "*"
        if op.base_version:
            headers[H.BASE_VERSION] = str(op.base_version)
    path = f"{op.entity_set}({op.row_id})"
    if op.kind == "delete":
        return "DELETE", path, headers, b""
    headers["Content-Type"] = "application/json"
    return "PATCH", path, headers, orjson.dumps(op.payload)


def _version(headers: dict[str, str] | object) -> int | None:
    etag = headers.get("etag") if isinstance(headers, dict) else headers.get(H.ETAG)  # type: ignore[attr-defined]
    return parse_etag(etag) if etag else None


async def upload_ops(api: ApiClient, group: Group, tally: Tally, batch: bool,
                     detect: dict[str, bool] | None = None) -> list[Outcome]:
    """Send one group and return an outcome per op, in the group's order; `detect`: each table's
    conflict policy (from its metadata)."""
    policy = detect or {}
    if batch and len(group.ops) > 1:
        return await _upload_batch(api, group, tally, policy)
    out: list[Outcome] = []
    for op in group.ops:
        method, path, headers, body = _request(op, policy.get(op.table, False))
        headers[H.IDEMPOTENCY_KEY] = op.op_id
        resp = await api.call(method, f"{API_ROOT}/{path}", tally, body=body, headers=headers,
                              table=op.table, accept=_ANSWERED)
        out.append((resp.status, _version(resp.headers), resp.headers.get(H.CONFLICT) == "true",
                    _code(resp.status, resp.body)))
    return out


async def _upload_batch(api: ApiClient, group: Group, tally: Tally, detect: dict[str, bool]) -> list[Outcome]:
    ops, boundary = group.ops, group.key
    parts = []
    for op in ops:
        method, path, headers, body = _request(op, detect.get(op.table, False))
        parts.append(BatchRequestPart(method, f"{api.base_url}{API_ROOT}/{path}", headers, body))
    payload = encode_batch(parts, boundary)
    resp = await api.call(
        "POST", f"{API_ROOT}/$batch", tally, body=payload, table=ops[0].table,
        headers={"Content-Type": f'multipart/mixed; boundary="{boundary}"', "Prefer": "odata.continue-on-error",
                 H.IDEMPOTENCY_KEY: boundary})
    try:
        answers = parse_batch_response(resp.body, resp.headers.get("Content-Type", ""))
    except ValueError as exc:
        raise SyncFailed("BATCH", f"$batch answer could not be read: {exc}") from None
    if len(answers) != len(ops):
        raise SyncFailed("BATCH", f"$batch answered {len(answers)} parts for {len(ops)} requests")
    return [(a.status, _version(a.headers), a.headers.get(H.CONFLICT) == "true", _code(a.status, a.body))
            for a in answers]


def _code(status: int, body: bytes) -> str | None:
    """The Dataverse error code of a refused op (HTTP_<status> when the body has none)."""
    if status < 400:
        return None
    try:
        data = orjson.loads(body)
        code = data.get("error", {}).get("code") if isinstance(data, dict) else None
    except orjson.JSONDecodeError:
        code = None
    if not code:
        return f"HTTP_{status}"
    known = ErrorCode.from_code(str(code))
    return known.value[2] if known is not None else str(code)
