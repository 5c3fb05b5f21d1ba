"""$batch on the client side: encode a multipart/mixed request, parse the multipart response.

Follows Dataverse's wire format (../shared/DATAVERSE_WEBAPI.md section 6): CRLF lines, parts of
`Content-Type: application/http`, inner request line `METHOD URL HTTP/1.1`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

CRLF = b"\r\n"
_BOUNDARY = re.compile(r'boundary="?([^";]+)"?')


@dataclass(slots=True)
class BatchRequestPart:
    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


@dataclass(slots=True)
class BatchResponsePart:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes
    content_id: str | None = None


def encode_batch(parts: list[BatchRequestPart], boundary: str) -> bytes:
    """A $batch body with each request as its own part (no changesets)."""
    out: list[bytes] = []
    for part in parts:
        out.append(f"--{boundary}".encode())
        out.append(b"Content-Type: application/http")
        out.append(b"Content-Transfer-Encoding: binary")
        out.append(b"")
        out.append(f"{part.method} {part.url} HTTP/1.1".encode())
        for name, value in part.headers.items():
            out.append(f"{name}: {value}".encode())
        out.append(b"")
        out.append(part.body)
    out.append(f"--{boundary}--".encode())
    out.append(b"")
    return CRLF.join(out)


def boundary_of(content_type: str) -> str | None:
    m = _BOUNDARY.search(content_type)
    return m.group(1) if m else None


def parse_batch_response(body: bytes, content_type: str) -> list[BatchResponsePart]:
    """Every inner response in order, flattening changesets. Raises ValueError if not multipart."""
    boundary = boundary_of(content_type)
    if boundary is None:
        raise ValueError(f"not a multipart batch response: Content-Type {content_type!r}")
    out: list[BatchResponsePart] = []
    for mime_headers, payload in _split(body, boundary):
        ctype = mime_headers.get("content-type", "")
        if ctype.startswith("multipart/mixed"):
            inner = boundary_of(ctype)
            if inner:
                out.extend(parse_batch_response(payload, ctype))
            continue
        out.append(_http_part(payload, mime_headers.get("content-id")))
    return out


def _split(body: bytes, boundary: str) -> list[tuple[dict[str, str], bytes]]:
    delim = b"--" + boundary.encode()
    parts = []
    for chunk in body.split(delim)[1:]:
        if chunk.startswith(b"--"):
            break
        chunk = chunk.removeprefix(CRLF).removesuffix(CRLF)
        head, _, payload = chunk.partition(CRLF + CRLF)
        parts.append((_headers(head), payload))
    return parts


def _headers(block: bytes) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in block.split(CRLF):
        name, sep, value = line.decode("latin-1").partition(":")
        if sep:
            out[name.strip().lower()] = value.strip()
    return out


def _http_part(payload: bytes, content_id: str | None) -> BatchResponsePart:
    head, _, body = payload.partition(CRLF + CRLF)
    status_line, _, header_block = head.partition(CRLF)
    fields = status_line.decode("latin-1").split(" ", 2)
    status = int(fields[1]) if len(fields) > 1 and fields[1].isdigit() else 0
    return BatchResponsePart(status, _headers(header_block), body.removesuffix(CRLF), content_id)
