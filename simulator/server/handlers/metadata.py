"""Metadata: EntityDefinitions (tables, their attributes, choice options), the service document, $metadata.

Entries carry the properties clients read (LogicalName, EntitySetName, PrimaryIdAttribute, MetadataId,
ChangeTrackingEnabled...) plus the labels and managed properties Dataverse sends, so a metadata
download is realistically sized: about 2 KB per table and 1.6 KB per attribute. MetadataIds are
uuid5 of the names, stable across runs. `$select`, `$filter` (the $filter grammar of odata_filter)
and `$expand=Attributes` / `$expand=OptionSet` with a nested `$select` are supported.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from aiohttp import web

from simulator.protocol import ErrorCode, H
from simulator.protocol.odata import API_ROOT, CONFLICT_DETECTION, GUID_RE
from simulator.scenario import ColumnDef, TableDef
from simulator.server.errors import DataverseError
from simulator.server.expand import collection_name
from simulator.server.handlers.common import root_url, state_of
from simulator.server.middlewares import json_response
from simulator.server.odata_filter import Field, compile_filter, parse_filter
from simulator.server.state import ServerState

routes = web.RouteTableDef()
ENTITY = API_ROOT + "/EntityDefinitions({key:[^()/]+})"
_NAMESPACE = uuid.UUID("5f1c0e53-7d3b-4a57-9a0e-2b1f3c9d5e11")  # syncsim's namespace for MetadataIds
_LOGICAL_KEY = re.compile(r"^\s*LogicalName\s*=\s*'([^']*)'\s*$")
_TYPES = {"String": "String", "Memo": "Memo", "Integer": "Integer", "BigInt": "BigInt", "Decimal": "Decimal",
          "DateTime": "DateTime", "Picklist": "Picklist", "Lookup": "Lookup", "Owner": "Lookup", "File": "File",
          "Uniqueidentifier": "UniqueIdentifier"}
_EDM = {"String": "Edm.String", "Memo": "Edm.String", "Integer": "Edm.Int32", "BigInt": "Edm.Int64",
        "Decimal": "Edm.Decimal", "DateTime": "Edm.DateTimeOffset", "Picklist": "Edm.Int32",
        "Lookup": "Edm.Guid", "Owner": "Edm.Guid", "File": "Edm.Guid", "Uniqueidentifier": "Edm.Guid"}
Spec = tuple[str, str, dict[str, Any]]  # (logical name, AttributeType, type-specific properties)


# --- building blocks -------------------------------------------------------------------------------
def metadata_id(*names: str) -> str:
    """A stable MetadataId: uuid5 of the names (table, then column, then a part) under syncsim's namespace."""
    return str(uuid.uuid5(_NAMESPACE, "/".join(names)))


def schema_name(logical: str) -> str:
    """account -> Account, msdyn_workorder -> msdyn_Workorder (publisher prefix kept)."""
    prefix, _, rest = logical.rpartition("_") if logical.count("_") == 1 else ("", "", logical)
    return f"{prefix}_{rest[:1].upper()}{rest[1:]}" if prefix else logical[:1].upper() + logical[1:]


def label(text: str, owner_id: str) -> dict[str, Any]:
    """A Dataverse Label: one en-US (1033) LocalizedLabel, also as the UserLocalizedLabel."""
    local = {"Label": text, "LanguageCode": 1033, "IsManaged": False,
             "MetadataId": metadata_id(owner_id, "label", text), "HasChanged": None}
    return {"LocalizedLabels": [local], "UserLocalizedLabel": local}


def managed(value: Any, name: str) -> dict[str, Any]:
    return {"Value": value, "CanBeChanged": True, "ManagedPropertyLogicalName": name}


def _title(logical: str) -> str:
    return logical.rpartition("_")[2].replace("_", " ").title() if "_" in logical else logical.title()


def entity(meta: TableDef, index: int) -> dict[str, Any]:
    """The EntityMetadata of a table; `index` is its position in the scenario (ObjectTypeCode 10000+)."""
    logical, mid = meta.logical_name, metadata_id(meta.logical_name)
    return {
        "MetadataId": mid, "LogicalName": logical, "SchemaName": schema_name(logical),
        "EntitySetName": meta.set_name, "LogicalCollectionName": meta.set_name,
        "CollectionSchemaName": schema_name(meta.set_name), "PrimaryIdAttribute": meta.id_column,
        "PrimaryNameAttribute": meta.primary_name, "PrimaryImageAttribute": None, "ObjectTypeCode": 10000 + index,
        "OwnershipType": "UserOwned", "ChangeTrackingEnabled": meta.change_tracking,
        "IsOptimisticConcurrencyEnabled": True, "IsCustomEntity": "_" in logical, "IsActivity": False,
        "IsIntersect": False, "IsManaged": False, "IsAvailableOffline": True, "HasNotes": True,
        "HasActivities": False, "IsValidForAdvancedFind": True, "IntroducedVersion": "1.0.0.0",
        "EntityColor": "#0078D4", "TableType": "Standard",
        "DisplayName": label(_title(logical), mid), "DisplayCollectionName": label(_title(meta.set_name), mid),
        "Description": label(f"Rows of the {_title(logical)} table (syncsim).", mid),
        "IsOfflineInMobileClient": managed(True, "canmodifymobileofflinevisibility"),
        "IsAuditEnabled": managed(False, "canmodifyauditsettings"),
        "CanChangeTrackingBeEnabled": managed(True, "canchangetrackingbeenabled"),
    }


def _column_specs(col: ColumnDef) -> list[Spec]:
    if col.type == "text":
        return [(col.name, "String", {"MaxLength": col.max_length, "Format": "Text"})]
    if col.type == "integer":
        return [(col.name, "Integer", {"MinValue": int(col.min), "MaxValue": int(col.max), "Format": "None"})]
    if col.type == "decimal":
        return [(col.name, "Decimal", {"MinValue": col.min, "MaxValue": col.max, "Precision": 2})]
    if col.type == "datetime":
        return [(col.name, "DateTime", {"Format": "DateAndTime", "DateTimeBehavior": {"Value": "UserLocal"}})]
    if col.type == "choice":
        return [(col.name, "Picklist", {"DefaultFormValue": -1})]
    if col.type == "lookup":
        return [(col.name, "Lookup", {"Targets": [col.target]})]
    max_kb = int(col.size.max_kb) if col.size else 32768
    return [(col.name, "File", {"MaxSizeInKB": max_kb}),
            (f"{col.name}_name", "String", {"MaxLength": 200, "Format": "Text", "AttributeOf": col.name}),
            (f"{col.name}_size", "Integer", {"MinValue": 0, "MaxValue": max_kb * 1024, "AttributeOf": col.name})]


def _specs(meta: TableDef) -> list[Spec]:
    declared = {c.name for c in meta.columns}
    specs: list[Spec] = [(meta.id_column, "Uniqueidentifier", {})]
    if meta.primary_name not in declared:
        specs.append((meta.primary_name, "String", {"MaxLength": 200, "Format": "Text"}))
    for col in meta.columns:
        specs.extend(_column_specs(col))
    specs += [("createdon", "DateTime", {"Format": "DateAndTime"}), ("modifiedon", "DateTime", {"Format": "DateAndTime"}),
              ("ownerid", "Owner", {"Targets": ["systemuser", "team"]}), ("versionnumber", "BigInt", {})]
    if "description" not in declared:
        specs.append(("description", "Memo", {"MaxLength": 1048576, "Format": "TextArea"}))
    return specs


def attributes(meta: TableDef) -> list[dict[str, Any]]:
    """The AttributeMetadata of every column, system columns included, in column order."""
    return [_attribute(meta, i, *spec) for i, spec in enumerate(_specs(meta))]


def _attribute(meta: TableDef, index: int, name: str, kind: str, extra: dict[str, Any]) -> dict[str, Any]:
    mid = metadata_id(meta.logical_name, name)
    # system columns and companions of a file column (<col>_name, <col>_size) are read-only
    system = name in ("createdon", "modifiedon", "versionnumber") or name == meta.id_column or "AttributeOf" in extra
    return {
        "@odata.type": f"#Microsoft.Dynamics.CRM.{_TYPES[kind]}AttributeMetadata",
        "MetadataId": mid, "LogicalName": name, "SchemaName": schema_name(name),
        "EntityLogicalName": meta.logical_name, "AttributeType": kind, "AttributeTypeName": {"Value": f"{kind}Type"},
        "ColumnNumber": index + 1, "AttributeOf": None, "SourceType": 0, "IntroducedVersion": "1.0.0.0",
        "DisplayName": label(_title(name), mid), "Description": label(f"{_title(name)} of the row.", mid),
        "RequiredLevel": managed("SystemRequired" if name == meta.id_column else "None",
                                 "canmodifyrequirementlevelsettings"),
        "IsPrimaryId": name == meta.id_column, "IsPrimaryName": name == meta.primary_name,
        "IsValidForRead": True, "IsValidForCreate": not system, "IsValidForUpdate": not system,
        "IsCustomAttribute": "_" in name and not name.endswith("id"), "IsLogical": False, "IsSecured": False,
        "IsFilterable": True, "IsRetrievable": True, "IsSearchable": kind in ("String", "Memo"),
        "IsAuditEnabled": managed(True, "canmodifyauditsettings"),
        "IsValidForAdvancedFind": managed(True, "canmodifysearchsettings"),
        **extra,
    }


def option_set(meta: TableDef, col: ColumnDef) -> dict[str, Any]:
    """The local OptionSetMetadata of a choice column: one option per label, in declared order."""
    mid = metadata_id(meta.logical_name, col.name, "optionset")
    options = [{"Value": value, "Color": None, "IsManaged": False, "ExternalValue": None,
                "Label": label(text, mid), "Description": label("", mid)} for text, value in (col.options or {}).items()]
    return {"MetadataId": mid, "Name": f"{meta.logical_name}_{col.name}", "IsGlobal": False, "IsCustomOptionSet": True,
            "OptionSetType": "Picklist", "DisplayName": label(_title(col.name), mid), "Options": options}


# --- query options on metadata ---------------------------------------------------------------------
def _bad(message: str) -> DataverseError:
    return DataverseError(ErrorCode.BAD_PAYLOAD, message)


def select(items: list[dict[str, Any]], names: list[str] | None, type_name: str) -> list[dict[str, Any]]:
    """Each item limited to the named properties plus MetadataId and @odata.type (400 for unknown names)."""
    if names is None:
        return items
    known = {key for item in items for key in item}
    for name in names:
        if items and name not in known:
            raise _bad(f"Could not find a property named '{name}' on type 'Microsoft.Dynamics.CRM.{type_name}'.")
    keep = {*names, "MetadataId", "@odata.type"}
    return [{k: v for k, v in item.items() if k in keep} for item in items]


def _names(raw: str | None) -> list[str] | None:
    return [n.strip() for n in raw.split(",") if n.strip()] if raw else None


def where(items: list[dict[str, Any]], text: str | None, type_name: str) -> list[dict[str, Any]]:
    """The items matching a $filter over their scalar properties."""
    if not text or not text.strip():
        return items

    def resolve(name: str) -> Field:
        values = [item[name] for item in items if item.get(name) is not None]
        if not any(name in item for item in items) or any(isinstance(v, dict | list) for v in values):
            raise _bad(f"Could not find a property named '{name}' on type 'Microsoft.Dynamics.CRM.{type_name}'.")
        sample = values[0] if values else ""
        kind = ("boolean" if isinstance(sample, bool) else "integer" if isinstance(sample, int)
                else "decimal" if isinstance(sample, float) else "guid" if GUID_RE.match(str(sample)) else "string")
        return Field(kind, lambda item: item.get(name))

    predicate = compile_filter(parse_filter(text), resolve)
    return [item for item in items if predicate(item)]


def expand(raw: str | None, allowed: tuple[str, ...]) -> dict[str, list[str] | None]:
    """$expand as {navigation property: nested $select names or None}; 400 for other properties."""
    out: dict[str, list[str] | None] = {}
    depth, start, text = 0, 0, raw or ""
    for i, ch in enumerate(text + ","):
        depth += (ch == "(") - (ch == ")")
        if ch == "," and depth == 0:
            item, start = text[start:i].strip(), i + 1
            m = re.fullmatch(r"(\w+)\s*(?:\((.*)\))?", item)
            if item and (m is None or m.group(1) not in allowed):
                raise _bad(f"The $expand '{item}' is not supported by syncsim (only {', '.join(allowed)}).")
            if m is not None:
                nested = re.search(r"\$select=([^;]*)", m.group(2) or "")
                out[m.group(1)] = _names(nested.group(1)) if nested else None
    return out


# --- lookups ---------------------------------------------------------------------------------------
def _tables(state: ServerState) -> list[TableDef]:
    return [t.meta for t in state.store.tables.values()]


def _table(request: web.Request) -> tuple[TableDef, int]:
    """The table named by EntityDefinitions(LogicalName='x') or EntityDefinitions(<MetadataId>); 404 if none."""
    key = request.match_info["key"]
    m = _LOGICAL_KEY.match(key)
    tables = _tables(state_of(request))
    if m is not None:
        found = [i for i, t in enumerate(tables) if t.logical_name == m.group(1)]
    elif GUID_RE.match(key.strip().strip("{}")):
        found = [i for i, t in enumerate(tables) if metadata_id(t.logical_name) == key.strip().strip("{}").lower()]
    else:
        raise _bad(f"The key '{key}' is not valid for EntityDefinitions; use LogicalName='<name>' or a MetadataId.")
    if not found:
        raise DataverseError(ErrorCode.NOT_FOUND, f"Could not find entity with key {key}.")
    return tables[found[0]], found[0]


def _answer(request: web.Request, body: dict[str, Any]) -> web.Response:
    response = json_response(body)
    state_of(request).counters.bytes_served += len(response.body)  # type: ignore[arg-type]
    return response


def _context(request: web.Request, path: str, names: list[str] | None) -> str:
    return f"{root_url(request)}$metadata#{path}" + (f"({','.join(names)})" if names else "")


# --- routes ----------------------------------------------------------------------------------------
@routes.get(API_ROOT + "/EntityDefinitions", name="entity_definitions")
async def entity_definitions(request: web.Request) -> web.Response:
    q = request.query
    names = _names(q.get("$select"))
    items = where([entity(t, i) for i, t in enumerate(_tables(state_of(request)))], q.get("$filter"), "EntityMetadata")
    return _answer(request, {"@odata.context": _context(request, "EntityDefinitions", names),
                             "value": select(items, names, "EntityMetadata")})


@routes.get(ENTITY, name="entity_definition")
async def entity_definition(request: web.Request) -> web.Response:
    meta, index = _table(request)
    names = _names(request.query.get("$select"))
    body = select([entity(meta, index)], names, "EntityMetadata")[0]
    body[CONFLICT_DETECTION] = state_of(request).store.table(meta.logical_name).conflict_detection
    nested = expand(request.query.get("$expand"), ("Attributes", "Keys"))
    if "Attributes" in nested:
        body["Attributes"] = select(attributes(meta), nested["Attributes"], "AttributeMetadata")
    if "Keys" in nested:
        body["Keys"] = select(keys(meta), nested["Keys"], "EntityKeyMetadata")
    context = _context(request, "EntityDefinitions", names) + "/$entity"
    return _answer(request, {"@odata.context": context, **body})


def keys(meta: TableDef) -> list[dict[str, Any]]:
    """The table's alternate keys as EntityKeyMetadata (every key active)."""
    out = []
    for k in meta.keys:
        mid = metadata_id(meta.logical_name, "key", k.name)
        out.append({"@odata.type": "#Microsoft.Dynamics.CRM.EntityKeyMetadata", "MetadataId": mid,
                    "LogicalName": k.name, "SchemaName": schema_name(k.name), "EntityLogicalName": meta.logical_name,
                    "KeyAttributes": list(k.columns), "EntityKeyIndexStatus": "Active", "IsManaged": False,
                    "IsCustomizable": managed(True, "iscustomizable"),
                    "DisplayName": label(_title(k.name), mid), "AsyncJob": None, "IsSynchronous": True})
    return out


@routes.get(ENTITY + "/Keys", name="entity_keys")
async def entity_keys(request: web.Request) -> web.Response:
    """EntityDefinitions(...)/Keys: the table's alternate keys."""
    meta, _ = _table(request)
    names = _names(request.query.get("$select"))
    return _answer(request, {"@odata.context": _context(request, f"EntityDefinitions('{meta.logical_name}')/Keys", names),
                             "value": select(keys(meta), names, "EntityKeyMetadata")})


@routes.get(ENTITY + "/Attributes", name="entity_attributes")
async def entity_attributes(request: web.Request) -> web.Response:
    return _attribute_list(request, None)


@routes.get(ENTITY + r"/Attributes/{cast:Microsoft\.Dynamics\.CRM\.\w+}", name="entity_attributes_cast")
async def entity_attributes_cast(request: web.Request) -> web.Response:
    """Attributes of one metadata type, e.g. .../Microsoft.Dynamics.CRM.PicklistAttributeMetadata (never 404)."""
    return _attribute_list(request, "#" + request.match_info["cast"])


def _attribute_list(request: web.Request, odata_type: str | None) -> web.Response:
    meta, _ = _table(request)
    q = request.query
    items = [a for a in attributes(meta) if odata_type is None or a["@odata.type"] == odata_type]
    items = select(where(items, q.get("$filter"), "AttributeMetadata"), _names(q.get("$select")), "AttributeMetadata")
    nested = expand(q.get("$expand"), ("OptionSet", "GlobalOptionSet"))
    choices = {metadata_id(meta.logical_name, c.name): c for c in meta.columns if c.type == "choice"}
    for item in items:
        col = choices.get(item["MetadataId"])
        if col is not None and "OptionSet" in nested:
            item["OptionSet"] = select([option_set(meta, col)], nested["OptionSet"], "OptionSetMetadata")[0]
        if "GlobalOptionSet" in nested:
            item["GlobalOptionSet"] = None
    path = f"EntityDefinitions({metadata_id(meta.logical_name)})/Attributes" + (f"/{odata_type[1:]}" if odata_type else "")
    return _answer(request, {"@odata.context": _context(request, path, _names(q.get("$select"))), "value": items})


@routes.get(API_ROOT, name="service_document_bare")
@routes.get(API_ROOT + "/", name="service_document")
async def service_document(request: web.Request) -> web.Response:
    """The entity sets, as OData's service document lists them."""
    value = [{"name": t.set_name, "kind": "EntitySet", "url": t.set_name} for t in _tables(state_of(request))]
    return _answer(request, {"@odata.context": f"{root_url(request)}$metadata", "value": value})


@routes.get(API_ROOT + "/$metadata", name="csdl")
async def csdl(request: web.Request) -> web.Response:
    """A modest CSDL document: entity types with their properties, entity sets, change-tracking annotations."""
    body = csdl_document(_tables(state_of(request))).encode()
    state_of(request).counters.bytes_served += len(body)
    return web.Response(body=body, headers={"Content-Type": "application/xml", H.ODATA_VERSION: "4.0"})


def csdl_document(tables: list[TableDef]) -> str:
    """$metadata as CSDL XML; sets of change-tracked tables carry Org.OData.Capabilities.V1.ChangeTracking."""
    lines = ['<?xml version="1.0" encoding="utf-8"?>',
             '<edmx:Edmx Version="4.0" xmlns:edmx="http://docs.oasis-open.org/odata/ns/edmx"><edmx:DataServices>',
             '<Schema Namespace="Microsoft.Dynamics.CRM" Alias="mscrm" xmlns="http://docs.oasis-open.org/odata/ns/edm">']
    known = {t.logical_name: t for t in tables}
    for meta in tables:
        lines.append(f'<EntityType Name="{meta.logical_name}"><Key><PropertyRef Name="{meta.id_column}" /></Key>')
        for name, kind, extra in _specs(meta):
            if kind not in ("Lookup", "Owner"):
                lines.append(f'<Property Name="{name}" Type="{_EDM[kind]}" />')
                continue
            lines.append(f'<Property Name="_{name}_value" Type="Edm.Guid" />')
            target = known.get(extra["Targets"][0]) if kind == "Lookup" else None
            if target is not None:  # the single-valued navigation property, as $expand names it
                partner = collection_name(target.logical_name, meta.logical_name, name)
                lines.append(f'<NavigationProperty Name="{name}" Type="mscrm.{target.logical_name}" Partner="{partner}">'
                             f'<ReferentialConstraint Property="_{name}_value" ReferencedProperty="{target.id_column}" />'
                             "</NavigationProperty>")
        lines += _collection_properties(meta, tables)
        lines.append("</EntityType>")
    lines.append('<EntityContainer Name="System">')
    for meta in tables:
        lines.append(f'<EntitySet Name="{meta.set_name}" EntityType="Microsoft.Dynamics.CRM.{meta.logical_name}">')
        if meta.change_tracking:
            lines.append('<Annotation Term="Org.OData.Capabilities.V1.ChangeTracking"><Record>'
                         '<PropertyValue Property="Supported" Bool="true" /></Record></Annotation>')
        lines.append("</EntitySet>")
    lines.append("</EntityContainer></Schema></edmx:DataServices></edmx:Edmx>")
    return "\n".join(lines)


def _collection_properties(meta: TableDef, tables: list[TableDef]) -> list[str]:
    """The collection-valued navigation properties of a table (one per lookup pointing at it), named as
    $expand names them (simulator/server/expand.py), each the partner of its lookup."""
    out = []
    for other in tables:
        for col in other.columns:
            if col.type == "lookup" and col.target == meta.logical_name:
                name = collection_name(meta.logical_name, other.logical_name, col.name)
                out.append(f'<NavigationProperty Name="{name}" Type="Collection(mscrm.{other.logical_name})" '
                           f'Partner="{col.name}" />')
    return out
