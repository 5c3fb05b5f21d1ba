"""Reading a page of rows as its body streams in, so a device never holds a whole page.

A Dataverse page is one JSON object, `{"@odata.context": ..., "value": [row, row, ...],
"@odata.nextLink": ...}`, and a 5,000-row page of 1 KB rows is 5 MB. A phone's client parses it as
it arrives; so does the device here: `PageReader` is the body sink of the page's request (see
`Link.request`). Each chunk is appended to a buffer; the rows complete so far, up to the last
`},{` in the buffer, are parsed in one `orjson.loads` and handed to `apply`, and their bytes are
dropped. A `},{` that is not between two rows of the array (inside a string, or between objects
nested in a row) cannot close a valid JSON array there, so the parse fails and the reader waits for
the next chunk; a body it cannot split (another server's layout) is parsed whole at the end. Either
way every row reaches `apply` once, in order, and the links come from `finish()`.

A row's size (what it costs in the device's storage) is the length of its JSON as `orjson`
writes it, plus one separator: the same whatever the chunks were, so runs stay reproducible.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

_ARRAY = b'"value":['
_BOUNDARY = b"},{"

Rows = list[dict[str, Any]]
Apply = Callable[[Rows], None]


def row_size(row: dict[str, Any]) -> int:
    """Bytes a row takes on the device: its JSON plus one separator."""
    return row_size_of(orjson.dumps(row))


def row_size_of(raw: bytes) -> int:
    """`row_size` of a row already encoded as `orjson.dumps` writes it."""
    return len(raw) + 1


class PageReader:
    """The body sink of one page request: parses rows as they arrive and passes them to `apply`.

    `restart()` is called before the request is sent again (after a cut): the new body starts
    from its first byte, so the reader starts over; rows already applied stay applied (the
    retried page holds them again, at the same versions). An exception raised by `apply` is kept,
    no further rows are applied, and `finish()` raises it once the body has been read, as a device
    that reads a page and then cannot store it.
    """

    __slots__ = ("apply", "_buf", "_head", "error")

    def __init__(self, apply: Apply) -> None:
        self.apply = apply
        self._buf = bytearray()
        self._head: bytes | None = None  # the object's text up to and including `"value":[`, once found
        self.error: Exception | None = None

    def restart(self) -> PageReader:
        self._buf.clear()
        self._head = None
        return self

    def __call__(self, chunk: bytes) -> None:
        buf = self._buf
        buf += chunk
        if self._head is None:
            if not self._find_array():
                return
        elif not self._head:
            return  # a layout it cannot split: parsed whole by finish()
        cut = buf.rfind(_BOUNDARY)
        if cut < 0:
            return
        try:
            rows = orjson.loads(b"[" + buf[: cut + 1] + b"]")
        except orjson.JSONDecodeError:
            return  # that `},{` is not between two rows: wait for more
        del buf[: cut + 2]
        self._apply(rows)

    def finish(self) -> dict[str, Any]:
        """The rest of the body: applies its rows and returns the page object (links; its
        `value` holds only the rows applied here). Raises what `apply` raised, if anything."""
        body = bytes(self._buf) if self._head is None else self._head + self._buf
        self.restart()
        page = orjson.loads(body)
        if not isinstance(page, dict):
            raise ValueError(f"a page is a JSON object, got {type(page).__name__}")
        rows = page.get("value", [])
        if rows:
            self._apply(rows)
        if self.error is not None:
            raise self.error
        return page

    def _find_array(self) -> bool:
        """Find where the top-level `value` array starts; keep the text before it as the head."""
        buf = self._buf
        at = buf.find(_ARRAY)
        if at < 0:
            return False
        head = bytes(buf[: at + len(_ARRAY)])
        try:  # the head closes into a valid object only if this "value" key is the top level's
            orjson.loads(head + b"]}")
        except orjson.JSONDecodeError:
            self._head = b""  # another layout: no streaming; finish() parses the whole body
            return False
        self._head = head
        del buf[: at + len(_ARRAY)]
        return True

    def _apply(self, rows: Rows) -> None:
        if self.error is not None:
            return
        try:
            self.apply(rows)
        except Exception as exc:  # kept, and raised by finish() once the body is read
            self.error = exc
