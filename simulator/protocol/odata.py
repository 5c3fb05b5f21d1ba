"""OData / Dataverse wire details: paths, header names, Prefer parsing, etags, delta tokens."""

from __future__ import annotations

import calendar
import re
import time
import zlib
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import orjson

API_ROOT = "/api/data/v9.2"
SYNCSIM_ROOT = "/_syncsim"
MAX_PAGE_SIZE = 5000
MAX_BATCH_REQUESTS = 1000
FILE_CHUNK_BYTES = 4 * 1024 * 1024


class H:
    """Header names (Dataverse's, then syncsim's own extensions)."""

    AUTHORIZATION = "Authorization"
    PREFER = "Prefer"
    PREFERENCE_APPLIED = "Preference-Applied"
    ODATA_VERSION = "OData-Version"
    ODATA_ENTITY_ID = "OData-EntityId"
    IF_MATCH = "If-Match"
    IF_NONE_MATCH = "If-None-Match"
    ETAG = "ETag"
    RETRY_AFTER = "Retry-After"
    FILE_SIZE = "x-ms-file-size"
    FILE_NAME = "x-ms-file-name"
    CHUNK_SIZE = "x-ms-chunk-size"
    SERVICE_REQUEST_ID = "x-ms-service-request-id"
    # syncsim extensions (documented in docs/protocol.md)
    DEVICE_ID = "x-syncsim-device-id"  # marks a device session: offline-profile filters apply
    IDEMPOTENCY_KEY = "x-syncsim-idempotency-key"  # a retried write answers its first response
    OP_ID = "x-syncsim-op-id"  # the device edit a write carries out (the server's write log names it)
    CONFLICT = "x-syncsim-conflict"  # "true" on a write that overwrote a newer version than its base
    BASE_VERSION = "x-syncsim-base-version"  # the version a last-writer-wins write was based on (no If-Match)


CONFLICT_DETECTION = "@syncsim.ConflictDetection"  # instance annotation on EntityDefinitions(...): the
# table's conflict policy for devices (true: send If-Match, server wins; false: last writer wins)

GUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
JSON_CONTENT_TYPE = "application/json; odata.metadata=minimal"

_PREFER_ITEM = re.compile(r'\s*([A-Za-z][\w.\-]*)\s*(?:=\s*("(?:[^"\\]|\\.)*"|[^,;]*))?\s*')


def parse_prefer(values: list[str] | tuple[str, ...]) -> dict[str, str]:
    """Parse one or more Prefer header values ("a=1,b=\"x,y\"" or separate lines) into a dict.

    Preferences without a value map to "". Quotes around values are removed.
    """
    out: dict[str, str] = {}
    for value in values:
        pos = 0
        while pos < len(value):
            m = _PREFER_ITEM.match(value, pos)
            if not m or m.end() == pos:
                break
            name, raw = m.group(1).lower(), (m.group(2) or "").strip()
            if raw.startswith('"') and raw.endswith('"') and len(raw) >= 2:
                raw = raw[1:-1]
            out[name] = raw
            pos = m.end()
            # skip parameters (;...) and the separator
            while pos < len(value) and value[pos] not in ",":
                pos += 1
            pos += 1
    return out


def format_etag(version: int) -> str:
    """A weak etag holding a row version: W/"123"."""
    return f'W/"{version}"'


_ETAG = re.compile(r'^\s*(?:W/)?"(\d+)"\s*$')


def parse_etag(value: str) -> int | None:
    """The row version in an etag (W/"123" or "123"), or None for '*' and anything else."""
    m = _ETAG.match(value)
    return int(m.group(1)) if m else None


@dataclass(frozen=True)
class DeltaToken:
    """A change-tracking token: the global row version and the scenario time it was issued.

    On the wire it reads like Dataverse's: "<version>!<MM/dd/yyyy HH:mm:ss>" (URL-encoded in the
    deltaLink). Clients treat it as opaque.
    """

    version: int
    issued_at: float  # scenario time, seconds since the Unix epoch

    def encode(self) -> str:
        t = time.gmtime(self.issued_at)
        return f"{self.version}!{t.tm_mon:02d}/{t.tm_mday:02d}/{t.tm_year:04d} {t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}"

    @classmethod
    def decode(cls, raw: str) -> DeltaToken:
        """Parse a token (URL-encoded or not). Raises ValueError when it is not one of ours."""
        m = _TOKEN.match(unquote(raw))
        if m is None:
            raise ValueError(f"not a delta token: {raw!r}")
        version, month, day, year, hour, minute, second = (int(g) for g in m.groups())
        return cls(version, float(calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0))))


_TOKEN = re.compile(r"^(\d+)!(\d{2})/(\d{2})/(\d{4}) (\d{2}):(\d{2}):(\d{2})$")


def delta_link_version(link: str) -> int:
    """The row version the `$deltatoken` of a deltaLink stands for; -1 when it is not one of ours."""
    raw = parse_qs(urlsplit(link).query).get("$deltatoken", [""])[0]
    try:
        return DeltaToken.decode(raw).version
    except ValueError:
        return -1


def entity_url(base_url: str, entity_set: str, row_id: str) -> str:
    """Absolute URL of one row: <base>/api/data/v9.2/<set>(<guid>)."""
    return f"{base_url}{API_ROOT}/{entity_set}({row_id})"


_KEY = re.compile(r"^(?P<set>[A-Za-z_][\w]*)\((?P<key>[^)]*)\)$")


def split_entity_ref(segment: str) -> tuple[str, str] | None:
    """'accounts(<guid>)' -> ('accounts', '<guid>'); None when the segment has no key."""
    m = _KEY.match(segment)
    return (m.group("set"), m.group("key")) if m else None


def row_digest(raw: bytes) -> int:
    """A row's contents as served (its JSON object, the bytes a page carries), as a CRC-32 that is
    never 0 (0 stands for "contents not known"): what a device received, and what the server would
    serve it now, digest alike when the device holds the current body (a syncsim extension for the
    end-of-run check)."""
    return zlib.crc32(raw) or 1


def values_digest(values: Any) -> int | None:
    """CRC-32 of a body's plain column values (keys without "@": no lookup bindings or annotations),
    sorted by key: what a device sent, and what the server stored for those columns, digest alike
    when the row holds the values sent (a syncsim extension for the run's ledger). None for a body
    that is not an object."""
    if not isinstance(values, dict):
        return None
    return zlib.crc32(orjson.dumps({k: v for k, v in values.items() if "@" not in k}, option=orjson.OPT_SORT_KEYS))


def body_digest(payload: Any) -> int:
    """CRC-32 of a JSON body re-encoded with sorted keys: the same edit gives the same digest on the
    device that sent it and in the server's write log (a syncsim extension for the run's ledger)."""
    return zlib.crc32(orjson.dumps(payload, option=orjson.OPT_SORT_KEYS))
