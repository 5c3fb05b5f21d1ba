"""The request pipeline, outermost first: errors, auth, service protection, faults, idempotency."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable

import orjson
from aiohttp import web

from simulator.protocol import ErrorCode, H, error_body
from simulator.protocol.odata import API_ROOT, JSON_CONTENT_TYPE, SYNCSIM_ROOT
from simulator.server import faults as injected
from simulator.server.errors import DataverseError
from simulator.server.limits import ServiceProtection
from simulator.server.state import STATE, ServerState
from simulator.server.store import User
from simulator.server.write_log import EarlyRequest

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
USER: web.RequestKey[User] = web.RequestKey("syncsim_user", User)
BATCH_PART: web.RequestKey[bool] = web.RequestKey("syncsim_batch_part", bool)  # set on $batch inner requests
PROTECTION: web.AppKey[ServiceProtection] = web.AppKey("syncsim_protection", ServiceProtection)
PREPARED_AT: web.RequestKey[float] = web.RequestKey("syncsim_prepared_at", float)  # clock.monotonic()


def json_response(body: object, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """A JSON answer with Dataverse's content type and OData-Version header."""
    out = {H.ODATA_VERSION: "4.0", **(headers or {})}
    return web.Response(body=orjson.dumps(body), status=status, content_type=None,
                        headers={"Content-Type": JSON_CONTENT_TYPE, **out})


def error_response(err: DataverseError) -> web.Response:
    return json_response(error_body(err.code, err.message), err.status, err.headers)


def _route_name(request: web.Request) -> str:
    info = request.match_info.route
    name = info.name if info is not None else None
    return name or (info.resource.canonical if info is not None and info.resource is not None else "unmatched")


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure leaves as Dataverse's error JSON; counts requests by route and status."""
    state = request.app[STATE]
    try:
        response = await handler(request)
    except DataverseError as err:
        response = error_response(err)
    except web.HTTPException as exc:
        code = {404: ErrorCode.RESOURCE_NOT_FOUND, 405: ErrorCode.METHOD_NOT_ALLOWED,
                413: ErrorCode.PAYLOAD_TOO_LARGE, 415: ErrorCode.UNSUPPORTED_MEDIA_TYPE}.get(exc.status)
        if code is None or exc.status < 400:
            raise
        text = f"Resource not found for the segment '{request.path}'." if exc.status == 404 else exc.reason
        response = error_response(DataverseError(code, text))
    state.counters.requests[f"{_route_name(request)} {response.status}"] += 1
    return response


@web.middleware
async def faults(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Injected faults (scenario `server.faults` or /_syncsim/faults); see simulator/server/faults.py."""
    state = request.app[STATE]
    if request.path.startswith(SYNCSIM_ROOT) or not state.faults_on:
        return await handler(request)
    await injected.before(state, request)
    return await injected.after(state, request, await handler(request))


def _bearer(request: web.Request) -> str | None:
    value = request.headers.get(H.AUTHORIZATION, "")
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


@web.middleware
async def auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Web API requests need a valid user token; /_syncsim/ needs the admin key (except health)."""
    state = request.app[STATE]
    token = _bearer(request)
    if request.path.startswith(SYNCSIM_ROOT):
        if request.path != f"{SYNCSIM_ROOT}/health" and token != state.admin_key:
            raise DataverseError(ErrorCode.UNAUTHORIZED, "The admin key is missing or wrong.")
        return await handler(request)
    if not request.path.startswith(API_ROOT):
        return await handler(request)
    if token is None:
        raise DataverseError(ErrorCode.UNAUTHORIZED, "Bearer token is missing.")
    entry = state.tokens.get(token)
    if entry is None:
        raise DataverseError(ErrorCode.UNAUTHORIZED, "Bearer token is not valid.")
    if entry.expires_at < state.clock.now():
        raise DataverseError(ErrorCode.UNAUTHORIZED, "Bearer token has expired.")
    request[USER] = entry.user
    return await handler(request)


@web.middleware
async def protection(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Service protection limits per user: 429 with Retry-After past them."""
    user = request.get(USER)
    if user is None:
        return await handler(request)
    state = request.app[STATE]
    guard = request.app[PROTECTION]
    now = state.clock.now()
    _note_early(state, user, request, now)
    refused = guard.admit(user.index, now)
    if refused is not None:
        state.counters.throttles[refused.code.value[2]] += 1
        state.write_log.wait_until[(user.index, request.headers.get(H.DEVICE_ID))] = now + refused.retry_after_s
        raise DataverseError(refused.code, refused.message, {H.RETRY_AFTER: str(refused.retry_after_s)})
    started = state.clock.monotonic()
    try:
        return await handler(request)
    finally:
        ended = request.get(PREPARED_AT, state.clock.monotonic())  # a streamed answer: until it started
        guard.release(user.index, state.clock.now(), ended - started)


async def mark_prepared(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: when the answer starts. What follows is transfer to the client, whose
    speed is the client's network, not server execution time (service protection counts server time)."""
    request[PREPARED_AT] = request.app[STATE].clock.monotonic()


EARLY_TOLERANCE_S = 0.01  # scenario seconds: timer rounding, not a client ignoring Retry-After


def _note_early(state: ServerState, user: User, request: web.Request, now: float) -> None:
    """Log a request that arrives before the end of the wait its client (the user's device, or its
    other clients together) was told (the ledger checks devices)."""
    device = request.headers.get(H.DEVICE_ID)
    until = state.write_log.wait_until.get((user.index, device))
    if until is not None and now < until - EARLY_TOLERANCE_S:
        state.write_log.early.append(EarlyRequest(user.name, device, f"{request.method} {request.path}", until - now))


@web.middleware
async def idempotency(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A write retried with the same x-syncsim-idempotency-key gets its first answer again.

    The same key with a different method, path or body is refused with 422.
    """
    key = request.headers.get(H.IDEMPOTENCY_KEY)
    user = request.get(USER)
    if key is None or user is None or request.method == "GET":
        return await handler(request)
    state: ServerState = request.app[STATE]
    body = await request.read()
    fingerprint = hashlib.sha256(request.method.encode() + b" " + request.path_qs.encode() + b"\n" + body).digest()
    cached = state.idempotency.get((user.index, key))
    if cached is not None:
        if cached[0] != fingerprint:
            raise DataverseError(ErrorCode.IDEMPOTENCY_KEY_REUSED,
                                 f"Idempotency key {key!r} was already used for a different request.")
        _, status, headers, payload = cached
        return web.Response(status=status, body=payload, headers={**headers, "x-syncsim-replayed": "true"})
    try:
        response = await handler(request)
    except DataverseError as err:
        response = error_response(err)
    if isinstance(response, web.Response) and response.status < 500:
        keep = {k: v for k, v in response.headers.items() if k.lower() != "content-length"}
        body = response.body if isinstance(response.body, bytes) else b""
        state.idempotency[(user.index, key)] = (fingerprint, response.status, keep, body)
        if len(state.idempotency) > state.idempotency_max:
            state.idempotency.popitem(last=False)
    return response
