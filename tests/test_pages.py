"""A page is parsed as it streams in: every row reaches the store once, in order, whatever the
chunks, and a device never holds a whole page (issue #12: memory per device)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from aiohttp import web

from simulator.device.pages import PageReader, row_size
from simulator.scenario import Faults, parse_scenario
from simulator.server.state import STATE
from tests.rig import Rig


def page(rows: list[dict[str, Any]], **links: str) -> bytes:
    return orjson.dumps({"@odata.context": "https://x/api/data/v9.2/$metadata#accounts", "value": rows,
                         **{f"@odata.{k}": v for k, v in links.items()}})


def rows_of(n: int, text: str = "plain") -> list[dict[str, Any]]:
    return [{"@odata.etag": f'W/"{i}"', "accountid": f"id-{i}", "name": f"{text} {i}", "n": i} for i in range(n)]


def read(body: bytes, chunk: int) -> tuple[list[dict[str, Any]], dict[str, Any], int]:
    """Feed the body in chunks; returns the rows applied, the page object, and the most bytes buffered."""
    got: list[dict[str, Any]] = []
    reader = PageReader(got.extend)
    most = 0
    for at in range(0, len(body), chunk):
        reader(body[at: at + chunk])
        most = max(most, len(reader._buf))
    return got, reader.finish(), most


@pytest.mark.parametrize("chunk", [1, 7, 64, 1000, 16_384, 10**9])
def test_every_row_arrives_once_in_order_whatever_the_chunks(chunk: int) -> None:
    rows = rows_of(300)
    got, obj, _ = read(page(rows, nextLink="https://x/next"), chunk)
    assert got == rows
    assert obj["@odata.nextLink"] == "https://x/next"


def test_a_device_holds_about_one_chunk_not_the_page() -> None:
    rows = rows_of(2000, "x" * 400)
    body = page(rows, deltaLink="https://x/delta")
    got, obj, most = read(body, 16_384)
    assert len(body) > 800_000 and got == rows and obj["@odata.deltaLink"] == "https://x/delta"
    assert most < 2 * 16_384  # a chunk plus the part of a row it cut


@pytest.mark.parametrize("chunk", [1, 5, 50, 10**9])
def test_boundaries_inside_strings_and_nested_objects_do_not_split_a_row(chunk: int) -> None:
    rows = [{"id": "a", "s": 'tricky },{ text "},{" \\ },{', "nested": [{"x": 1}, {"y": 2}], "deep": {"v": [{}, {}]}},
            {"id": "b", "s": "},{", "nested": []}, {"id": "c", "value": [{"q": "},{"}]}]
    got, _, _ = read(page(rows, deltaLink="d"), chunk)
    assert got == rows


def test_an_empty_page_and_deleted_entries() -> None:
    got, obj, _ = read(page([], deltaLink="d"), 3)
    assert got == [] and obj["@odata.deltaLink"] == "d"
    gone = [{"@odata.context": "$metadata#accounts/$deletedEntity", "id": "x", "reason": "deleted"}]
    assert read(page(gone, deltaLink="d"), 2)[0] == gone


def test_another_layout_is_parsed_whole_at_the_end() -> None:
    rows = rows_of(5)
    pretty = orjson.dumps({"value": rows, "@odata.deltaLink": "d"}, option=orjson.OPT_INDENT_2)
    nested_first = orjson.dumps({"meta": {"value": [1]}, "value": rows, "@odata.deltaLink": "d"})
    for body in (pretty, nested_first):
        got, obj, _ = read(body, 10)
        assert got == rows and obj["@odata.deltaLink"] == "d"


def test_sizes_do_not_depend_on_the_chunks() -> None:
    rows = rows_of(50, "é ü")
    assert [row_size(r) for r in rows] == [len(orjson.dumps(r)) + 1 for r in rows]
    for chunk in (3, 4096):
        got, _, _ = read(page(rows, deltaLink="d"), chunk)
        assert sum(map(row_size, got)) == sum(map(row_size, rows))


def test_restart_starts_over_and_a_failure_is_raised_after_the_body() -> None:
    rows = rows_of(100)
    body = page(rows, deltaLink="d")
    got: list[dict[str, Any]] = []
    reader = PageReader(got.extend)
    reader(body[: len(body) // 2])  # cut half-way
    applied = len(got)
    assert 0 < applied < 100
    reader.restart()
    for at in range(0, len(body), 100):
        reader(body[at: at + 100])
    assert reader.finish()["@odata.deltaLink"] == "d"
    assert got[applied:] == rows  # the retried body in full; the first rows again at the same versions

    calls: list[int] = []

    def full(batch: list[dict[str, Any]]) -> None:
        calls.append(len(batch))
        raise RuntimeError("storage full")

    failing = PageReader(full)
    for at in range(0, len(body), 100):
        failing(body[at: at + 100])  # the body is read to its end
    with pytest.raises(RuntimeError, match="storage full"):
        failing.finish()
    assert len(calls) == 1  # nothing more applied after the failure


def test_a_body_that_is_not_a_page_is_an_error() -> None:
    reader = PageReader(lambda rows: None)
    reader(b"[1, 2]")
    with pytest.raises(ValueError, match="JSON object"):
        reader.finish()


def _cut_first_page_then_delete_its_first_row() -> Any:
    """A middleware: the first data page of notes is cut half-way (the server's cut fault), and then
    the back office deletes the page's first row, which the device had received before the cut."""
    done: list[str] = []

    @web.middleware
    async def cut(request: web.Request, handler: Any) -> web.StreamResponse:
        if request.method != "GET" or not request.path.endswith("/annotations") or done:
            return await handler(request)
        state = request.app[STATE]
        state.faults = Faults(cut_rate=1.0)
        try:
            response = await handler(request)
        finally:
            state.faults = Faults()
        table = state.store.table("annotation")
        first = min(table.rows)  # pages are in row id order
        state.store.delete(table, first)
        done.append(first)
        return response

    return cut


async def test_a_page_cut_half_way_changes_nothing_so_a_row_deleted_before_the_retry_is_not_kept(
        rig_factory: Any) -> None:
    scenario = parse_scenario({
        "name": "pages", "seed": 3,
        "tables": [{"logical_name": "annotation", "entity_set": "annotations", "rows": 300, "row_bytes": 800}],
        "user_classes": [{"name": "manager", "count": 1, "profile": [{"table": "annotation"}],
                          "privileges": {"annotation": {"read": "org", "write": "org"}}}],
    })
    rig: Rig = await rig_factory(scenario, middlewares=[_cut_first_page_then_delete_its_first_row()])
    device = rig.device("manager-0001")
    record = await device.sync_once()
    assert record.result == "success", record
    assert record.rows == 299 and device.store.row_count() == 299  # the deleted row was never stored
    assert record.refetched_bytes > 100_000  # the cut attempt's bytes were received, then read again
    assert rig.check(device).ok
