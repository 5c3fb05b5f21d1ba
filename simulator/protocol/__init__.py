"""The wire protocol shared by the mock server and the device: a Dataverse Web API v9.2 subset.

Nothing here does I/O and nothing here imports other syncsim modules.
"""

from simulator.protocol.errors import ErrorCode, error_body
from simulator.protocol.odata import (
    API_ROOT,
    DeltaToken,
    H,
    format_etag,
    parse_etag,
    parse_prefer,
)

__all__ = [
    "API_ROOT",
    "H",
    "DeltaToken",
    "ErrorCode",
    "error_body",
    "format_etag",
    "parse_etag",
    "parse_prefer",
]
