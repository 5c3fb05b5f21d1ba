"""$batch on the client side: encode a multipart/mixed request, parse the multipart response.

Parsing shares batch_codec's boundary, delimiter and header handling with the server.

Follows Dataverse's wire format (../shared/DATAVERSE_WEBAPI.md section 6): CRLF lines, parts of
`Content-Type: application/http`, inner request line `METHOD URL HTTP/1.1`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from simulator.protocol.batch_codec import (
    BatchFormatError,
    boundary_of,
    is_multipart_mixed,
    parse_headers,
    split_head,
    split_parts,
)

CRLF = b"\r\n"


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


def parse_batch_response(body: bytes, content_type: str) -> list[BatchResponsePart]:
    """Every inner response in order, flattening changesets.

    Raises ValueError (a BatchFormatError) when the body is not a well-formed multipart answer.
    """
    boundary = boundary_of(content_type)
    if boundary is None:
        raise BatchFormatError(f"not a multipart batch response: Content-Type {content_type!r}")
    out: list[BatchResponsePart] = []
    for part in split_parts(body, boundary):
        lines, payload = split_head(part)
        mime = {name.lower(): value for name, value in parse_headers(lines)}
        ctype = mime.get("content-type", "")
        if is_multipart_mixed(ctype):
            out.extend(parse_batch_response(payload, ctype))
        else:
            out.append(_http_part(payload, mime.get("content-id")))
    return out


def _http_part(payload: bytes, content_id: str | None) -> BatchResponsePart:
    """`HTTP/1.1 <status> <reason>`, headers, a blank line and the body."""
    lines, body = split_head(payload)
    fields = lines[0].split(" ", 2) if lines else []
    status = int(fields[1]) if len(fields) > 1 and fields[1].isdigit() else 0
    headers = {name.lower(): value for name, value in parse_headers(lines[1:])}
    return BatchResponsePart(status, headers, body, content_id)
