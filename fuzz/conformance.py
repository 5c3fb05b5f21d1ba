"""Does an answer conform to simulator/protocol/openapi.yaml? The same rules as tests/test_openapi.py,
returning problems instead of failing:

- no 5xx;
- a path the document does not list is 404, a method a documented path does not list is 405 (or
  404 where a generic `{set}` route matches), both with the error body;
- the status is listed for the path template and method;
- the watched response headers (OData-*, ETag, Location, x-ms-*, x-syncsim-*...) are documented,
  required ones are present, and their values validate;
- the body validates against the schema of its status and media type (no body for HEAD, 204, 304);
- every 4xx with a body carries Dataverse's error shape {"error": {"code": "0x...", "message"}};
- inside a $batch answer, no part is a 5xx and every 4xx part has the error shape.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import yaml
from openapi_schema_validator import OAS31Validator, oas31_format_checker
from referencing import Registry
from referencing.jsonschema import DRAFT202012

import simulator.protocol
from fuzz.wire import Answer
from simulator.protocol.batch import parse_batch_response

ROOT = "/api/data/v9.2"
SPEC_PATH = Path(simulator.protocol.__file__).parent / "openapi.yaml"
SPEC_URI = "urn:syncsim:openapi"
METHODS = ("get", "head", "post", "put", "patch", "delete")
ERROR_CODE = re.compile(r"^0x[0-9a-f]{8}$")
WATCHED = re.compile(r"^(odata-|x-ms-|x-syncsim-|etag$|location$|retry-after$|preference-applied$|"
                     r"content-range$|mimetype$|accept-ranges$)", re.IGNORECASE)


@lru_cache(maxsize=1)
def spec() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(SPEC_PATH.read_text())
    return loaded


@lru_cache(maxsize=1)
def _registry() -> Registry:
    return Registry().with_resource(SPEC_URI, DRAFT202012.create_resource(spec()))


def pointer(*parts: str) -> str:
    """A JSON pointer ('/' and '~' escaped)."""
    return "".join("/" + p.replace("~", "~0").replace("/", "~1") for p in parts)


def at(ptr: str) -> Any:
    node: Any = spec()
    for raw in ptr.split("/")[1:]:
        key = raw.replace("~1", "/").replace("~0", "~")
        node = node[int(key)] if isinstance(node, list) else node[key]
    return node


def deref(node: dict[str, Any], ptr: str) -> tuple[dict[str, Any], str]:
    while "$ref" in node:
        ptr = node["$ref"].removeprefix("#")
        node = at(ptr)
    return node, ptr


@lru_cache(maxsize=512)
def _validator(schema_ptr: str) -> OAS31Validator:
    ref = {"$ref": f"{SPEC_URI}#{quote(schema_ptr, safe='/~')}"}
    return OAS31Validator(ref, registry=_registry(), format_checker=oas31_format_checker)


def validate(schema_ptr: str, instance: Any) -> list[str]:
    """Validation errors of an instance against the schema at a spec pointer (empty when valid)."""
    errors = sorted(_validator(schema_ptr).iter_errors(instance), key=lambda e: list(e.absolute_path))
    return [f"at {'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message[:200]}" for e in errors[:3]]


def _template_regex(template: str) -> re.Pattern[str]:
    out, pos = "", 0
    for m in re.finditer(r"\{(\w+)\}", template):
        out += re.escape(template[pos : m.start()]) + f"(?P<{m.group(1)}>[^/()]+)"
        pos = m.end()
    return re.compile(out + re.escape(template[pos:]))


@lru_cache(maxsize=1)
def templates() -> list[tuple[str, re.Pattern[str]]]:
    """Path templates, literal ones first (fewest parameters, then longest), as OpenAPI matches them."""
    return sorted(((t, _template_regex(t)) for t in spec()["paths"]), key=lambda p: (p[0].count("{"), -len(p[0])))


def match_path(path: str) -> str | None:
    """The template a concrete, decoded path belongs to."""
    for template, regex in templates():
        if regex.fullmatch(path):
            return template
    return None


def operations() -> Iterator[tuple[str, str]]:
    """(template, method) of every documented operation."""
    for template, item in spec()["paths"].items():
        for method in METHODS:
            if method in item:
                yield template, method


def error_shape(body: bytes) -> str | None:
    """What is wrong with a Dataverse error body, or None when it is {"error": {"code", "message"}}."""
    try:
        data = json.loads(body)
    except ValueError:
        return f"not JSON: {body[:120]!r}"
    error = data.get("error") if isinstance(data, dict) else None
    if not isinstance(error, dict):
        return f"no error object: {body[:120]!r}"
    code, message = error.get("code"), error.get("message")
    if not isinstance(code, str) or not ERROR_CODE.match(code):
        return f"error.code is not a hex code: {code!r}"
    if not isinstance(message, str) or not message:
        return f"error.message is empty or not text: {message!r}"
    return None


def check(method: str, path: str, answer: Answer) -> list[str]:
    """Everything about the answer to `method path` that the document does not allow."""
    method = method.upper()
    problems: list[str] = []
    if answer.status >= 500:
        problems.append(f"server error {answer.status}")
    if 400 <= answer.status < 500 and method != "HEAD" and answer.media_type != "multipart/mixed":
        shape = error_shape(answer.body)
        if shape:
            problems.append(f"{answer.status} without the Dataverse error body: {shape}")
    decoded = unquote(urlsplit(path).path)
    template = match_path(decoded)
    if template is None:
        # "a path not listed gets 404", after "authentication comes before routing" (401 without a token)
        allowed = {404, 401} if decoded.startswith((ROOT + "/", "/_syncsim/")) else {404}
        if answer.status not in allowed:
            problems.append(f"the path is not documented, yet it answered {answer.status} (the document says 404)")
        return problems
    op = spec()["paths"][template].get(method.lower())
    if op is None:
        if method == "HEAD" and "get" in spec()["paths"][template]:
            op = spec()["paths"][template]["get"]  # every GET route answers HEAD (the document's rule)
        else:
            if answer.status not in (404, 405, 401):  # 401: authentication comes before routing
                problems.append(f"{method} is not documented for {template}, yet it answered {answer.status} "
                                "(the document says 405, or 404 on a generic {set} route)")
            return problems
    where = f"{method} {template} -> {answer.status}"
    responses = op["responses"]
    if str(answer.status) not in responses:
        problems.append(f"{where}: status not documented (documented: {', '.join(sorted(responses))})")
        return problems
    base = pointer("paths", template, "get" if method == "HEAD" and "head" not in spec()["paths"][template]
                   else method.lower(), "responses", str(answer.status))
    response, ptr = deref(responses[str(answer.status)], base)
    problems += _headers(answer, response, ptr, where)
    problems += _body(method, answer, response, ptr, where)
    return problems


def _headers(answer: Answer, response: dict[str, Any], ptr: str, where: str) -> list[str]:
    problems = []
    documented = {name.lower(): name for name in response.get("headers", {})}
    for name in sorted({k.lower() for k, _ in answer.headers}):
        if WATCHED.match(name) and name not in documented:
            problems.append(f"{where}: header {name} is sent but not documented")
    for low, name in documented.items():
        header, hptr = deref(response["headers"][name], f"{ptr}/headers/{pointer(name)[1:]}")
        value = answer.header(low)
        if value is None:
            if header.get("required"):
                problems.append(f"{where}: required header {name} is missing")
            continue
        schema, _ = deref(header["schema"], f"{hptr}/schema")
        instance: Any = int(value) if schema.get("type") == "integer" and value.isdigit() else value
        problems += [f"{where}: header {name}={value!r} {e}" for e in validate(f"{hptr}/schema", instance)]
    return problems


def _body(method: str, answer: Answer, response: dict[str, Any], ptr: str, where: str) -> list[str]:
    content = response.get("content")
    if method == "HEAD" or answer.status in (204, 304) or not content:
        return [] if answer.body == b"" else [f"{where}: a body where none is documented: {answer.body[:120]!r}"]
    media = answer.media_type
    if media not in content:
        return [f"{where}: Content-Type {media!r} is not documented ({', '.join(sorted(content))})"]
    schema_ptr = f"{ptr}/content/{pointer(media)[1:]}/schema"
    try:
        if media == "application/json":
            return [f"{where}: body {e}" for e in validate(schema_ptr, json.loads(answer.body))]
        if media == "text/plain":
            return [f"{where}: body {e}" for e in validate(schema_ptr, answer.body.decode())]
        if media == "application/xml":
            ET.fromstring(answer.body)
            return []
        if media == "multipart/mixed":
            return _batch_parts(answer, where)
    except (ValueError, ET.ParseError) as exc:
        return [f"{where}: the {media} body does not parse: {exc}"]
    return _octets(answer, where)


def _batch_parts(answer: Answer, where: str) -> list[str]:
    problems = []
    for n, part in enumerate(parse_batch_response(answer.body, answer.header("Content-Type") or "")):
        if part.status >= 500 or part.status < 100:
            problems.append(f"{where}: $batch part {n} answered {part.status}: {part.body[:200]!r}")
        elif part.status >= 400:
            shape = error_shape(part.body)
            if shape:
                problems.append(f"{where}: $batch part {n} ({part.status}) without the error body: {shape}")
    return problems


def batch_parts(answer: Answer) -> list[int]:
    """The statuses of a multipart $batch answer's parts (changesets flattened); [] if it is not one."""
    if answer.media_type != "multipart/mixed":
        return []
    try:
        return [p.status for p in parse_batch_response(answer.body, answer.header("Content-Type") or "")]
    except ValueError:
        return []


def _octets(answer: Answer, where: str) -> list[str]:
    m = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+)", answer.header("Content-Range") or "")
    if m:
        expected = int(m.group(2)) - int(m.group(1)) + 1
    elif (answer.header("x-ms-file-size") or "").isdigit():
        expected = int(answer.header("x-ms-file-size") or 0)
    else:
        return [f"{where}: a download without x-ms-file-size"]
    if len(answer.body) != expected:
        return [f"{where}: {len(answer.body)} bytes where {expected} were announced"]
    return []
