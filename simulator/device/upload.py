"""Upload the outbox: one $batch (continue-on-error, one part per op) or one request per op.

Each op's id is its idempotency key (one-by-one) and a batch's key is derived from its op ids,
so a retry after a lost response is not applied twice. Outcome per op: (status, new version,
overwrote-a-newer-version).
"""

from __future__ import annotations

import hashlib

import orjson

from simulator.device.client import ApiClient, SyncFailed, Tally
from simulator.device.outbox import Op
from simulator.protocol import H, format_etag, parse_etag
from simulator.protocol.batch import BatchRequestPart, encode_batch, parse_batch_response
from simulator.protocol.odata import API_ROOT

Outcome = tuple[int, int | None, bool]
_ANSWERED = (400, 403, 404, 412, 422)


def _request(op: Op) -> tuple[str, str, dict[str, str], bytes]:
    """Method, path below the service root, headers and body for one op."""
    headers: dict[str, str] = {}
    if op.kind == "create":
        return "POST", op.entity_set, {"Content-Type": "application/json"}, orjson.dumps(op.payload)
    headers[H.IF_MATCH] = format_etag(op.base_version) if op.base_version else "*"
    path = f"{op.entity_set}({op.row_id})"
    if op.kind == "delete":
        return "DELETE", path, headers, b""
    headers["Content-Type"] = "application/json"
    return "PATCH", path, headers, orjson.dumps(op.payload)


def _version(headers: dict[str, str] | object) -> int | None:
    etag = headers.get("etag") if isinstance(headers, dict) else headers.get(H.ETAG)  # type: ignore[attr-defined]
    return parse_etag(etag) if etag else None


async def upload_ops(api: ApiClient, ops: list[Op], tally: Tally, batch: bool) -> list[Outcome]:
    if batch and len(ops) > 1:
        return await _upload_batch(api, ops, tally)
    out: list[Outcome] = []
    for op in ops:
        method, path, headers, body = _request(op)
        headers[H.IDEMPOTENCY_KEY] = op.op_id
        resp = await api.call(method, f"{API_ROOT}/{path}", tally, body=body, headers=headers,
                              table=op.table, accept=_ANSWERED)
        out.append((resp.status, _version(resp.headers), resp.headers.get(H.CONFLICT) == "true"))
    return out


async def _upload_batch(api: ApiClient, ops: list[Op], tally: Tally) -> list[Outcome]:
    boundary = "batch_" + hashlib.sha1("".join(o.op_id for o in ops).encode()).hexdigest()[:24]
    parts = []
    for op in ops:
        method, path, headers, body = _request(op)
        parts.append(BatchRequestPart(method, f"{api.base_url}{API_ROOT}/{path}", headers, body))
    payload = encode_batch(parts, boundary)
    resp = await api.call(
        "POST", f"{API_ROOT}/$batch", tally, body=payload, table=ops[0].table,
        headers={"Content-Type": f'multipart/mixed; boundary="{boundary}"', "Prefer": "odata.continue-on-error",
                 H.IDEMPOTENCY_KEY: boundary})
    answers = parse_batch_response(resp.body, resp.headers.get("Content-Type", ""))
    if len(answers) != len(ops):
        raise SyncFailed("BATCH", f"$batch answered {len(answers)} parts for {len(ops)} requests")
    return [(a.status, _version(a.headers), a.headers.get(H.CONFLICT) == "true") for a in answers]
