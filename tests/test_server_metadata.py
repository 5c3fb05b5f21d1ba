"""Metadata: EntityDefinitions lookups as the SDK sends them, attributes, picklists, service document, $metadata."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

import pytest
from yarl import URL

from simulator.server.expand import navigation_properties
from simulator.server.handlers.metadata import metadata_id
from tests.conftest import Api

ROOT = "/api/data/v9.2"
SDK_LOOKUP = (f"{ROOT}/EntityDefinitions?%24select=LogicalName%2CEntitySetName%2CPrimaryIdAttribute"
              "&%24filter=LogicalName+eq+%27{}%27")
PICKLIST = (f"{ROOT}/EntityDefinitions(LogicalName='{{}}')/Attributes/Microsoft.Dynamics.CRM.PicklistAttributeMetadata"
            "?$select=LogicalName&$expand=OptionSet($select=Options)")
TABLES = ("account", "msdyn_workorder", "annotation")


async def get(api: Api, path: str, status: int = 200, encoded: bool = False) -> Any:
    url = URL(path, encoded=True) if encoded else path
    resp = await api.client.get(url, headers={"Authorization": f"Bearer {await api.token('technician-0001')}"})
    assert resp.status == status, await resp.text()
    return await resp.json() if resp.content_type.startswith("application/json") else await resp.text()


async def test_the_sdk_entity_set_lookup_url_returns_the_names_it_needs(api: Api) -> None:
    body = await get(api, SDK_LOOKUP.format("account"), encoded=True)
    assert body["value"] == [{"MetadataId": metadata_id("account"), "LogicalName": "account",
                              "EntitySetName": "accounts", "PrimaryIdAttribute": "accountid"}]


async def test_the_files_upload_lookup_returns_schema_and_primary_names(api: Api) -> None:
    select = "MetadataId,LogicalName,SchemaName,EntitySetName,PrimaryNameAttribute,PrimaryIdAttribute"
    body = await get(api, f"{ROOT}/EntityDefinitions?$select={select}&$filter=LogicalName eq 'annotation'")
    (item,) = body["value"]
    assert item == {"MetadataId": metadata_id("annotation"), "LogicalName": "annotation", "SchemaName": "Annotation",
                    "EntitySetName": "annotations", "PrimaryNameAttribute": "name", "PrimaryIdAttribute": "annotationid"}


async def test_an_unknown_table_gives_an_empty_value(api: Api) -> None:
    body = await get(api, SDK_LOOKUP.format("nosuchtable"), encoded=True)
    assert body["value"] == []


async def test_change_tracking_filter_lists_tracked_tables(api: Api) -> None:
    body = await get(api, f"{ROOT}/EntityDefinitions?$select=LogicalName&$filter=ChangeTrackingEnabled eq true")
    assert sorted(e["LogicalName"] for e in body["value"]) == sorted(TABLES)


async def test_entity_definitions_without_select_carry_the_full_entity(api: Api) -> None:
    body = await get(api, f"{ROOT}/EntityDefinitions")
    entity = next(e for e in body["value"] if e["LogicalName"] == "msdyn_workorder")
    assert entity["ChangeTrackingEnabled"] is True and entity["IsOptimisticConcurrencyEnabled"] is True
    assert entity["DisplayName"]["LocalizedLabels"][0]["LanguageCode"] == 1033


@pytest.mark.parametrize("table", TABLES)
async def test_the_picklist_route_answers_200_for_every_table(api: Api, table: str) -> None:
    body = await get(api, PICKLIST.format(table))
    assert isinstance(body["value"], list)


async def test_the_picklist_route_lists_options_in_the_sdk_shape(api: Api) -> None:
    (item,) = (await get(api, PICKLIST.format("msdyn_workorder")))["value"]
    assert item["LogicalName"] == "msdyn_priority"
    options = {o["Value"]: o["Label"]["LocalizedLabels"][0] for o in item["OptionSet"]["Options"]}
    assert {v: (lbl["Label"], lbl["LanguageCode"]) for v, lbl in options.items()} == \
        {1: ("Low", 1033), 2: ("Normal", 1033), 3: ("High", 1033)}


async def test_attributes_filter_by_logical_name_through_the_metadata_id(api: Api) -> None:
    url = (f"{ROOT}/EntityDefinitions({metadata_id('annotation')})/Attributes"
           "?$select=MetadataId,LogicalName,SchemaName&$filter=LogicalName eq 'documentbody'")
    body = await get(api, url)
    assert body["value"] == [{"@odata.type": "#Microsoft.Dynamics.CRM.FileAttributeMetadata",
                              "MetadataId": metadata_id("annotation", "documentbody"),
                              "LogicalName": "documentbody", "SchemaName": "Documentbody"}]


async def test_attributes_describe_types_lengths_and_targets(api: Api) -> None:
    body = await get(api, f"{ROOT}/EntityDefinitions(LogicalName='msdyn_workorder')/Attributes")
    by_name = {a["LogicalName"]: a for a in body["value"]}
    assert by_name["msdyn_workorderid"]["AttributeType"] == "Uniqueidentifier"
    assert by_name["name"]["AttributeType"] == "String" and by_name["name"]["MaxLength"] == 200
    assert by_name["msdyn_priority"]["AttributeType"] == "Picklist"
    assert by_name["msdyn_duration"]["AttributeType"] == "Integer"
    assert by_name["msdyn_account"]["Targets"] == ["account"]
    assert by_name["modifiedon"]["AttributeType"] == "DateTime"


async def test_entity_definition_by_logical_name_expands_attributes(api: Api) -> None:
    body = await get(api, f"{ROOT}/EntityDefinitions(LogicalName='account')"
                          "?$select=LogicalName&$expand=Attributes($select=LogicalName,AttributeType)")
    assert body["LogicalName"] == "account"
    assert {"LogicalName": "revenue", "AttributeType": "Decimal"}.items() <= \
        next(a for a in body["Attributes"] if a["LogicalName"] == "revenue").items()


async def test_more_tables_and_columns_mean_more_metadata_bytes(api: Api) -> None:
    small = await get(api, f"{ROOT}/EntityDefinitions(LogicalName='account')?$expand=Attributes")
    large = await get(api, f"{ROOT}/EntityDefinitions(LogicalName='msdyn_workorder')?$expand=Attributes")
    assert len(str(large)) > len(str(small)) > 5000


async def test_unknown_entity_definition_is_a_404_dataverse_error(api: Api) -> None:
    body = await get(api, f"{ROOT}/EntityDefinitions(LogicalName='nosuch')", status=404)
    assert body["error"]["code"] == "0x80040217"
    body = await get(api, f"{ROOT}/EntityDefinitions(LogicalName='nosuch')/Attributes", status=404)
    assert body["error"]["code"] == "0x80040217"


@pytest.mark.parametrize("query", ["$select=NoSuchProperty", "$filter=NoSuch eq 1", "$filter=LogicalName eq",
                                   "$filter=DisplayName eq 'x'"])
async def test_bad_metadata_queries_are_400(api: Api, query: str) -> None:
    body = await get(api, f"{ROOT}/EntityDefinitions?{query}", status=400)
    assert body["error"]["code"] == "0x80048d19"


async def test_service_document_lists_the_entity_sets(api: Api) -> None:
    body = await get(api, f"{ROOT}/")
    assert {e["name"] for e in body["value"]} == {"accounts", "msdyn_workorders", "annotations"}


async def test_csdl_is_xml_with_change_tracking_annotations(api: Api) -> None:
    text = await get(api, f"{ROOT}/$metadata")
    root = ET.fromstring(text)
    ns = {"edm": "http://docs.oasis-open.org/odata/ns/edm"}
    sets = root.findall(".//edm:EntitySet", ns)
    assert {s.get("Name") for s in sets} == {"accounts", "msdyn_workorders", "annotations"}
    for s in sets:
        term = s.find("edm:Annotation", ns)
        assert term is not None and term.get("Term") == "Org.OData.Capabilities.V1.ChangeTracking"
    workorder = root.find(".//edm:EntityType[@Name='msdyn_workorder']", ns)
    assert workorder is not None
    assert workorder.find("edm:Property[@Name='_msdyn_account_value']", ns) is not None


async def test_csdl_lists_every_navigation_property_expand_accepts_with_its_partner(api: Api) -> None:
    """Single-valued (lookups) and collection-valued (the lookups pointing at the table), named as
    $expand names them; each side names the other as its Partner."""
    root = ET.fromstring(await get(api, f"{ROOT}/$metadata"))
    ns = {"edm": "http://docs.oasis-open.org/odata/ns/edm"}
    listed = {(t.get("Name"), n.get("Name")): (n.get("Type"), n.get("Partner"))
              for t in root.findall(".//edm:EntityType", ns) for n in t.findall("edm:NavigationProperty", ns)}
    store = api.state.store
    expected = {(t.meta.logical_name, name) for t in store.tables.values() for name in navigation_properties(store, t)}
    assert set(listed) == expected
    assert listed[("msdyn_workorder", "msdyn_account")] == ("mscrm.account", "account_msdyn_workorder_msdyn_account")
    assert listed[("account", "account_msdyn_workorder_msdyn_account")] == (
        "Collection(mscrm.msdyn_workorder)", "msdyn_account")
    for (table, name), _ in listed.items():
        set_name = store.table(table).meta.set_name
        assert (await api.call("GET", f"{ROOT}/{set_name}?$top=1&$expand={name}", "manager-0001")).status == 200

