"""Requests as sent on the wire, their answers, and a curl line that repeats a request.

Requests go out through http.client exactly as built: the path is not re-quoted, headers are sent
in order (repeated names included, values as bytes when they must be), and the body is raw bytes,
so a hostile request reaches the server as written.
"""

from __future__ import annotations

import http.client
import json
import shlex
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

Header = tuple[str, str | bytes]


@dataclass
class Request:
    """One HTTP request: method, path with its query (already encoded), headers, body.

    `who` names the credentials the Authorization header carries ("technician-0001", "admin",
    "forged", ...) so a repro can say which token to use instead of a token that expired with
    the run.
    """

    method: str
    path: str
    headers: list[Header] = field(default_factory=list)
    body: bytes | None = None
    who: str | None = None

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value if isinstance(value, str) else value.decode("latin-1")
        return None

    def curl(self, base_url: str = "http://127.0.0.1:PORT") -> str:
        """A curl command that sends this request again (token values replaced by who they belong to).

        A body of more than 2,000 bytes or a path of more than 2,000 characters is too long to print;
        the command then names its size and start instead."""
        parts = ["curl", "-sS", "-i", "-X", self.method]
        for key, value in self.headers:
            parts += ["-H", f"{key}: {self._shown(key, value)}"]
        quoted = [shlex.quote(p) for p in parts]
        notes = []
        if self.body is not None and len(self.body) > 2000:
            quoted += ["--data-binary", "@body.bin"]
            notes.append(f"body.bin: {len(self.body)} bytes, starting {self.body[:100]!r}")
        elif self.body is not None:
            quoted += ["--data-binary", _body_arg(self.body)]
        url = f"{base_url}{self.path}"
        if len(self.path) > 2000:
            quoted.append(shlex.quote(url[:300] + "..."))
            notes.append(f"the path has {len(self.path)} characters")
        else:
            quoted.append(shlex.quote(url))
        return " ".join(quoted) + (f"  # {'; '.join(notes)}" if notes else "")

    def _shown(self, key: str, value: str | bytes) -> str:
        text = value if isinstance(value, str) else value.decode("latin-1")
        if key.lower() == "authorization" and self.who and text.lower().startswith("bearer ") and len(text) > 7:
            return "Bearer <admin key>" if self.who == "admin" else f"Bearer <{self.who} token>"
        return text

    def describe(self) -> str:
        """METHOD path, headers and the start of the body, for a report."""
        lines = [f"{self.method} {_clip(self.path, 300)}"]
        lines += [f"  {key}: {_clip(self._shown(key, value), 200)}" for key, value in self.headers]
        if self.body is not None:
            lines.append(f"  body ({len(self.body)} bytes): {_clip(repr(self.body), 300)}")
        return "\n".join(lines)


def _clip(text: str, n: int) -> str:
    return text if len(text) <= n else text[:n] + f"... ({len(text)} characters)"


def _body_arg(body: bytes) -> str:
    """The body as a shell word for curl's --data-binary (bash $'...' quoting keeps CR, LF and bytes)."""
    escaped = "".join(chr(b) if 32 <= b < 127 and b not in (39, 92) else
                      {13: "\\r", 10: "\\n", 9: "\\t"}.get(b, f"\\x{b:02x}") for b in body)
    return f"$'{escaped}'"


@dataclass
class Answer:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None

    @property
    def media_type(self) -> str:
        return (self.header("Content-Type") or "").split(";")[0].strip().lower()

    def json(self) -> Any:
        return json.loads(self.body)

    def summary(self) -> str:
        return f"{self.status} {self.media_type or '-'} {_clip(repr(self.body), 300)}"


class NoAnswer(Exception):
    """The server closed the connection or timed out without an answer."""


class Client:
    """Sends Requests to one server over a kept-alive connection (reopened after an error)."""

    def __init__(self, base_url: str, timeout_s: float = 30.0) -> None:
        split = urlsplit(base_url)
        assert split.scheme == "http" and split.hostname in ("127.0.0.1", "localhost", "::1"), base_url
        self.base_url = base_url.rstrip("/")
        self.host, self.port = split.hostname, split.port or 80
        self.timeout_s = timeout_s
        self._conn: http.client.HTTPConnection | None = None
        self.sent = 0

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def send(self, request: Request) -> Answer:
        self.sent += 1
        try:
            return self._send(request)
        except (TimeoutError, ConnectionError, http.client.HTTPException, OSError) as exc:
            self.close()
            if isinstance(exc, http.client.RemoteDisconnected | BrokenPipeError | ConnectionResetError):
                try:  # a kept-alive connection the server had closed: once more on a new one
                    return self._send(request)
                except (ConnectionError, http.client.HTTPException, OSError) as again:
                    self.close()
                    raise NoAnswer(f"{type(again).__name__}: {again}") from None
            raise NoAnswer(f"{type(exc).__name__}: {exc}") from None

    def _send(self, request: Request) -> Answer:
        if self._conn is None:
            self._conn = http.client.HTTPConnection(self.host or "127.0.0.1", self.port, timeout=self.timeout_s)
        conn = self._conn
        conn.putrequest(request.method, request.path, skip_host=True, skip_accept_encoding=True)
        names = {k.lower() for k, _ in request.headers}
        if "host" not in names:
            conn.putheader("Host", f"{self.host}:{self.port}")
        for key, value in request.headers:
            conn.putheader(key, value)
        if request.body is not None and "content-length" not in names and "transfer-encoding" not in names:
            conn.putheader("Content-Length", str(len(request.body)))
        conn.endheaders(request.body)
        response = conn.getresponse()
        body = response.read()
        if response.will_close:
            self.close()
        return Answer(response.status, list(response.getheaders()), body)
