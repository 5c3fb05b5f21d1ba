"""Bulk actions: CreateMultiple, UpdateMultiple and UpsertMultiple on a table, and BulkDelete.

The three *Multiple actions are all or nothing: one Writer applies every target and, on the first
error, `undo()` reverts the targets already applied and the request answers that error. They carry
no If-Match, so they never check row versions; a client that wants per-row concurrency checks uses
$batch. BulkDelete is a job in Dataverse that skips rows it cannot delete; here it runs at once
(tombstones included) and skips the same way.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from aiohttp import web

from simulator.protocol.odata import API_ROOT, GUID_RE, split_entity_ref
from simulator.server.errors import DataverseError, bad_request
from simulator.server.handlers.common import origin_of, resolve_key, root_url, state_of, table_for, user_of
from simulator.server.handlers.writes import SET, read_json
from simulator.server.middlewares import json_response
from simulator.server.mutations import Writer
from simulator.server.store import TableStore

routes = web.RouteTableDef()

CHANGESET_WRITER: web.RequestKey[Writer] = web.RequestKey("syncsim_changeset_writer", Writer)
"""A Writer shared with an enclosing $batch changeset, so a bulk action inside it rolls back with it."""

_TYPE_PREFIX = "Microsoft.Dynamics.CRM."
T = TypeVar("T")


def _writer(request: web.Request) -> Writer:
    """The enclosing changeset's Writer, or a new one for this request's user."""
    writer = request.get(CHANGESET_WRITER) or Writer(state_of(request), user_of(request))
    return writer.at(origin_of(request))


async def _targets(request: web.Request, table: TableStore) -> list[dict[str, Any]]:
    """The `Targets` list: non-empty, objects only, @odata.type of this table. No cap on how many:
    Dataverse sets none; the body's size is limited (`server.max_body_mb`, 413) as for every write."""
    body = await read_json(request)
    targets = body.get("Targets") if isinstance(body, dict) else None
    if not isinstance(targets, list) or not targets:
        raise bad_request("The body must be {\"Targets\": [...]} with at least one target.")
    expected = _TYPE_PREFIX + table.meta.logical_name
    for i, target in enumerate(targets):
        if not isinstance(target, dict):
            raise bad_request(f"Targets[{i}] must be a JSON object.")
        kind = target.get("@odata.type")
        if kind is not None and str(kind).lstrip("#") != expected:
            raise bad_request(f"Targets[{i}] has @odata.type {kind!r}; this table expects {expected!r}.")
    return targets


def _all_or_nothing(writer: Writer, items: Sequence[T], apply: Callable[[T], str]) -> list[str]:
    """Apply every item in order; on a DataverseError undo all of them and re-raise it."""
    try:
        return [apply(item) for item in items]
    except DataverseError:
        writer.undo()
        raise


def _primary_id(table: TableStore, target: dict[str, Any], required: bool) -> str | None:
    """The target's primary id column as a lowercase GUID (None if absent and not required)."""
    column = table.meta.id_column
    value = target.get(column)
    if value is None:
        if required:
            raise bad_request(f"Each target must carry its primary id '{column}'.")
        return None
    if not isinstance(value, str) or not GUID_RE.match(value.strip("{}")):
        raise bad_request(f"'{column}' must be a GUID, got {value!r}.")
    return value.strip("{}").lower()


def _upsert_key(table: TableStore, target: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
    """The row a target names through `@odata.id` ("<set>(<guid>)" or "<set>(<alternate key>)") or
    its primary id column: (row id, or None to create; the alternate key's values for a new row)."""
    by_column = _primary_id(table, target, required=False)
    ref = target.get("@odata.id")
    if ref is None:
        return by_column, {}
    found = split_entity_ref(str(ref).rstrip("/").rsplit("/", 1)[-1])
    if found is None or found[0] != table.meta.set_name:
        raise bad_request(f"@odata.id {ref!r} must be {table.meta.set_name}(<guid or alternate key>).")
    row_id, values = resolve_key(table, found[1])
    if values:  # an alternate key: the row with those values, or a new one that gets them
        return row_id, values
    if by_column is not None and by_column != row_id:
        raise bad_request(f"@odata.id {ref!r} and '{table.meta.id_column}' name different rows.")
    return row_id, {}


@routes.post(SET + "/Microsoft.Dynamics.CRM.CreateMultiple", name="create_multiple")
async def create_multiple(request: web.Request) -> web.Response:
    """200 {"Ids": [...]} in input order; nothing is created if any target fails."""
    table = table_for(request)
    targets = await _targets(request, table)
    writer = _writer(request)
    ids = _all_or_nothing(writer, targets, lambda t: writer.create(table, t).row_id)
    return json_response({"@odata.context": f"{root_url(request)}$metadata#{_TYPE_PREFIX}CreateMultipleResponse",
                          "Ids": ids})


@routes.post(SET + "/Microsoft.Dynamics.CRM.UpdateMultiple", name="update_multiple")
async def update_multiple(request: web.Request) -> web.Response:
    """204; every target must exist (404 for the whole request otherwise)."""
    table = table_for(request)
    targets = await _targets(request, table)
    pairs = [(_primary_id(table, t, required=True) or "", t) for t in targets]
    writer = _writer(request)
    _all_or_nothing(writer, pairs, lambda p: writer.update(table, p[0], p[1], if_match="*").row_id)
    return web.Response(status=204, headers={"OData-Version": "4.0"})


@routes.post(SET + "/Microsoft.Dynamics.CRM.UpsertMultiple", name="upsert_multiple")
async def upsert_multiple(request: web.Request) -> web.Response:
    """204; each target updates the row it names or creates it (a target without a key creates a row)."""
    table = table_for(request)
    targets = await _targets(request, table)
    writer = _writer(request)

    def apply(target: dict[str, Any]) -> str:
        key, key_values = _upsert_key(table, target)  # looked up in turn: an earlier target may have made the row
        if key is None:
            return writer.create(table, {**target, **key_values}).row_id
        return writer.update(table, key, target).row_id

    _all_or_nothing(writer, targets, apply)
    return web.Response(status=204, headers={"OData-Version": "4.0"})


@routes.post(API_ROOT + "/BulkDelete", name="bulk_delete")
async def bulk_delete(request: web.Request) -> web.Response:
    """200 {"JobId": ...}: delete the listed rows the user may delete, skip the others."""
    body = await read_json(request)
    table, ids = _bulk_delete_query(request, body)
    writer = _writer(request)
    for row_id in ids:
        try:
            writer.delete(table, row_id)
        except DataverseError:
            continue  # like the async job: a row that cannot be deleted is skipped
    job_id = str(uuid.UUID(bytes=bytes(state_of(request).rng.bytes(16)), version=4))
    return json_response({"@odata.context": f"{root_url(request)}$metadata#{_TYPE_PREFIX}BulkDeleteResponse",
                          "JobId": job_id})


def _bulk_delete_query(request: web.Request, body: Any) -> tuple[TableStore, list[str]]:
    """The table and ids of a QuerySet holding one QueryExpression `<primary id> In [ids]`."""
    queries = body.get("QuerySet") if isinstance(body, dict) else None
    if not isinstance(queries, list) or len(queries) != 1 or not isinstance(queries[0], dict):
        raise bad_request("BulkDelete needs a QuerySet of exactly one QueryExpression.")
    query = queries[0]
    table = state_of(request).store.tables.get(str(query.get("EntityName", "")).lower())
    if table is None:
        raise bad_request(f"The entity '{query.get('EntityName')}' does not exist.")
    criteria = query.get("Criteria")
    criteria = criteria if isinstance(criteria, dict) else {}
    conditions = criteria.get("Conditions")
    if (not isinstance(conditions, list) or len(conditions) != 1 or not isinstance(conditions[0], dict)
            or str(criteria.get("FilterOperator", "And")).lower() != "and"):
        raise bad_request("syncsim's BulkDelete supports one condition: '<primary id> In [ids]'.")
    return table, _condition_ids(table, conditions[0])


def _condition_ids(table: TableStore, condition: dict[str, Any]) -> list[str]:
    column = table.meta.id_column
    operator = str(condition.get("Operator", "")).lower()
    if condition.get("AttributeName") != column or operator not in ("in", "equal"):
        raise bad_request(f"syncsim's BulkDelete supports only '{column} In [ids]' conditions.")
    values = condition.get("Values")
    if not isinstance(values, list) or not values:
        raise bad_request("The BulkDelete condition needs a non-empty Values list.")
    ids: list[str] = []
    for value in values:
        raw = value.get("Value") if isinstance(value, dict) else value
        if not isinstance(raw, str) or not GUID_RE.match(raw.strip("{}")):
            raise bad_request(f"BulkDelete value {raw!r} is not a GUID.")
        ids.append(raw.strip("{}").lower())
    return ids
