"""$batch wire format: parse multipart/mixed requests and encode multipart/mixed responses.

Pure bytes-in, dataclasses-out (and back); no aiohttp, no server state. The format is OData's
(11.7 Batch Requests) as Microsoft's Python SDK writes and parses it (../shared/DATAVERSE_WEBAPI.md
section 6):

- parts open with `--<boundary>` and the body ends with `--<boundary>--`; CRLF line endings (bare LF
  is tolerated on input);
- a part is either `Content-Type: application/http` (one request) or `multipart/mixed; boundary=...`
  (a changeset of requests);
- a request is `METHOD URL HTTP/1.1` (method = first token, version = last token, the URL is
  everything between and may hold raw spaces and quotes), headers, a blank line and a body that has
  no Content-Length: it runs to the line break before the next delimiter;
- `Content-ID` sits in the MIME part headers (an inner header of that name is accepted too).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from urllib.parse import quote, unquote

CRLF = "\r\n"
_METHODS = frozenset({"GET", "POST", "PATCH", "PUT", "DELETE"})
_BOUNDARY = re.compile(r'boundary\s*=\s*(?:"([^"]+)"|([^";,\s]+))', re.IGNORECASE)
_HEAD_END = re.compile(rb"\r?\n\r?\n")
_LINE = re.compile(r"\r?\n")
_SCHEME_HOST = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://[^/?#]*")
_PATH_SAFE = "/:@!$&'()*+,;=-._~%"
_QUERY_SAFE = "/:@!$&'()*,;=-._~%?"  # no '+': a raw '+' in an inner URL is a literal plus


class BatchFormatError(ValueError):
    """The batch body (or one of its parts) is malformed; the server answers 400."""


@dataclass(slots=True)
class PartRequest:
    """One request of a batch: method, URL as written, headers, body bytes and its Content-ID."""

    method: str
    url: str
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    content_id: str | None = None

    def header(self, name: str) -> str | None:
        """The first header of that name (case-insensitive), or None."""
        name = name.lower()
        return next((v for k, v in self.headers if k.lower() == name), None)


@dataclass(slots=True)
class ChangesetRequest:
    """An atomic group of write requests."""

    requests: list[PartRequest]


BatchItem = PartRequest | ChangesetRequest


@dataclass(slots=True)
class PartResponse:
    """One answer of a batch: status, headers in order, body bytes and the echoed Content-ID."""

    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    content_id: str | None = None


@dataclass(slots=True)
class ChangesetResponse:
    """The answers of a changeset that succeeded, nested under their own boundary."""

    responses: list[PartResponse]
    boundary: str


BatchAnswer = PartResponse | ChangesetResponse


# --- content types --------------------------------------------------------------------------------
def is_multipart_mixed(content_type: str) -> bool:
    """Whether a Content-Type value is multipart/mixed (parameters ignored)."""
    return content_type.split(";", 1)[0].strip().lower() == "multipart/mixed"


def boundary_of(content_type: str) -> str | None:
    """The boundary parameter of a Content-Type, quoted or not; None when there is none."""
    m = _BOUNDARY.search(content_type)
    if not m:
        return None
    return m.group(1) or m.group(2)


# --- parsing --------------------------------------------------------------------------------------
def parse_batch(body: bytes, boundary: str, max_requests: int) -> list[BatchItem]:
    """The items of a batch body, in order; BatchFormatError for anything malformed.

    Also refused here, before anything runs: more than `max_requests` requests (each changeset item
    counts), a GET or a nested changeset inside a changeset, a nested $batch, a Content-ID used twice.
    """
    items = [_parse_item(part) for part in split_parts(body, boundary)]
    total = count_requests(items)
    if total > max_requests:
        raise BatchFormatError(f"The batch contains {total} requests; the maximum is {max_requests}.")
    _check_content_ids(items)
    return items


def count_requests(items: Sequence[BatchItem]) -> int:
    """Requests in a batch, counting each changeset item."""
    return sum(len(i.requests) if isinstance(i, ChangesetRequest) else 1 for i in items)


def split_parts(body: bytes, boundary: str) -> list[bytes]:
    """The encapsulated parts between `--boundary` delimiters; preamble and epilogue are dropped.

    A line that opens with `--boundary` is a delimiter (RFC 2046 5.1.1): only `--` (the closing one)
    and blanks may follow it on its line, anything else is a BatchFormatError (the part would be lost)."""
    candidate = re.compile(rb"(?:\A|\r?\n)--" + re.escape(boundary.encode()))
    rest = re.compile(rb"(--)?[ \t]*(?=\r?\n|\Z)")
    parts: list[bytes] = []
    opened: int | None = None  # where the current part starts (after its delimiter line)
    for found in candidate.finditer(body):
        line = rest.match(body, found.end())
        if line is None:
            text = body[found.start() : found.end() + 24].strip(b"\r\n")
            raise BatchFormatError(f"The delimiter line {text!r}... has text after the boundary; a line break "
                                   "must follow it.")
        if opened is not None:
            parts.append(_strip_line_break(body[opened : found.start()]))
        if line.group(1):
            return parts
        opened = line.end()
    if opened is None:
        raise BatchFormatError(f"The body has no '--{boundary}' delimiter.")
    raise BatchFormatError(f"The body does not end with the closing delimiter '--{boundary}--'.")


def _strip_line_break(part: bytes) -> bytes:
    if part.startswith(b"\r\n"):
        return part[2:]
    return part[1:] if part.startswith(b"\n") else part


def split_head(raw: bytes) -> tuple[list[str], bytes]:
    """Header lines (decoded) and the rest after the first blank line."""
    if raw.startswith((b"\r\n", b"\n")):
        return [], _strip_line_break(raw)
    m = _HEAD_END.search(raw)
    head, rest = (raw[: m.start()], raw[m.end() :]) if m else (raw.rstrip(b"\r\n"), b"")
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        raise BatchFormatError("A part's headers are not valid UTF-8.") from None
    return [line for line in _LINE.split(text) if line], rest


def parse_headers(lines: list[str]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for line in lines:
        name, colon, value = line.partition(":")
        if not colon or not name.strip() or name != name.strip():
            raise BatchFormatError(f"Malformed header line {line!r}.")
        out.append((name, value.strip()))
    return out


def _get(headers: list[tuple[str, str]], name: str) -> str | None:
    return next((v for k, v in headers if k.lower() == name.lower()), None)


def _parse_item(part: bytes, in_changeset: bool = False) -> BatchItem:
    """One MIME part: a request (application/http) or a changeset (multipart/mixed)."""
    lines, content = split_head(part)
    mime = parse_headers(lines)
    ctype = _get(mime, "Content-Type")
    if ctype is None:
        raise BatchFormatError("A batch part has no Content-Type header.")
    if is_multipart_mixed(ctype):
        if in_changeset:
            raise BatchFormatError("Changesets cannot be nested.")
        return _parse_changeset(content, ctype)
    if ctype.split(";", 1)[0].strip().lower() != "application/http":
        raise BatchFormatError(f"A batch part has Content-Type {ctype!r}; expected application/http.")
    request = _parse_request(content)
    request.content_id = _get(mime, "Content-ID") or request.header("Content-ID")
    return request


def _parse_changeset(content: bytes, content_type: str) -> ChangesetRequest:
    boundary = boundary_of(content_type)
    if not boundary:
        raise BatchFormatError("A changeset part has no boundary parameter.")
    requests: list[PartRequest] = []
    for part in split_parts(content, boundary):
        item = _parse_item(part, in_changeset=True)
        assert isinstance(item, PartRequest)
        if item.method == "GET":
            raise BatchFormatError("GET requests are not allowed inside a changeset.")
        requests.append(item)
    return ChangesetRequest(requests)


def _parse_request(content: bytes) -> PartRequest:
    """`METHOD URL HTTP/1.1`, headers, a blank line, then the body (to the end of the part)."""
    lines, body = split_head(content)
    if not lines:
        raise BatchFormatError("A batch part has no request line.")
    tokens = lines[0].split()
    if len(tokens) < 3 or not tokens[-1].upper().startswith("HTTP/"):
        raise BatchFormatError(f"Malformed request line {lines[0]!r}; expected 'METHOD URL HTTP/1.1'.")
    method = tokens[0].upper()
    if method not in _METHODS:
        raise BatchFormatError(f"Method {tokens[0]!r} is not supported in a batch.")
    url = lines[0].strip()[len(tokens[0]) : -len(tokens[-1])].strip()
    if _is_nested_batch(url):
        raise BatchFormatError("A batch cannot contain another batch.")
    return PartRequest(method, url, parse_headers(lines[1:]), body)


def _is_nested_batch(url: str) -> bool:
    path = unquote(url.split("?", 1)[0]).rstrip("/")
    return path == "$batch" or path.endswith("/$batch")


def _check_content_ids(items: Sequence[BatchItem]) -> None:
    seen: set[str] = set()
    for item in items:
        for request in item.requests if isinstance(item, ChangesetRequest) else [item]:
            cid = request.content_id
            if cid is None:
                continue
            if cid in seen:
                raise BatchFormatError(f"Content-ID '{cid}' is used more than once in the batch.")
            seen.add(cid)


# --- inner URLs -----------------------------------------------------------------------------------
def content_id_reference(url: str) -> tuple[str, str] | None:
    """For a `$n` URL: (n, the rest after it, e.g. '/description' or ''); None otherwise."""
    m = re.match(r"^\$([^/?]+)(.*)$", url)
    return (m.group(1), m.group(2)) if m else None


def request_target(url: str, api_root: str) -> str:
    """An absolute, host-relative or service-root-relative URL as an encoded `path?query` under api_root.

    Raw spaces, quotes and other unsafe characters are percent-encoded; existing escapes are kept. A
    URL that leaves the Web API (another path, `..` segments) raises BatchFormatError.
    """
    rest = _SCHEME_HOST.sub("", url, count=1) if _SCHEME_HOST.match(url) else url
    if not rest.startswith("/"):
        rest = f"{api_root}/{rest}"
    rest = rest.split("#", 1)[0]
    path, sep, query = rest.partition("?")
    segments = unquote(path).split("/")
    if not (path == api_root or path.startswith(api_root + "/")) or any(s in (".", "..") for s in segments):
        raise BatchFormatError(f"The URL {url!r} is not under the Web API root {api_root}/.")
    target = quote(path, safe=_PATH_SAFE)
    return f"{target}?{quote(query, safe=_QUERY_SAFE)}" if sep else target


# --- encoding -------------------------------------------------------------------------------------
def reason(status: int) -> str:
    """The reason phrase of an HTTP status ('No Content'), or 'Unknown'."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def encode_part(response: PartResponse) -> bytes:
    """One `application/http` part (without its delimiter line), ending in CRLF."""
    mime = ["Content-Type: application/http", "Content-Transfer-Encoding: binary"]
    if response.content_id is not None:
        mime.append(f"Content-ID: {response.content_id}")
    http = [f"HTTP/1.1 {response.status} {reason(response.status)}"]
    http += [f"{name}: {value}" for name, value in response.headers]
    head = CRLF.join(mime) + CRLF + CRLF + CRLF.join(http) + CRLF + CRLF
    return head.encode("utf-8") + response.body + CRLF.encode()


def encode_changeset(changeset: ChangesetResponse) -> bytes:
    """A nested multipart/mixed part holding a changeset's answers (without its outer delimiter)."""
    out = [f"Content-Type: multipart/mixed; boundary={changeset.boundary}{CRLF}{CRLF}".encode()]
    for response in changeset.responses:
        out.append(f"--{changeset.boundary}{CRLF}".encode())
        out.append(encode_part(response))
    out.append(f"--{changeset.boundary}--{CRLF}".encode())
    return b"".join(out)


def encode_batch(answers: Sequence[BatchAnswer], boundary: str) -> bytes:
    """The whole multipart/mixed response body, parts in request order, closed by `--boundary--`."""
    out: list[bytes] = []
    for answer in answers:
        out.append(f"--{boundary}{CRLF}".encode())
        out.append(encode_changeset(answer) if isinstance(answer, ChangesetResponse) else encode_part(answer))
    out.append(f"--{boundary}--{CRLF}".encode())
    return b"".join(out)
