"""The bare aiohttp references: the same page bytes, or hello world, with nothing of syncsim in between.

`bare_app(pages)` answers GET <path?query> with pre-encoded bytes looked up by the raw path (pages
captured once from real syncsim responses), and GET /hello with "Hello, world". No middlewares, no
routing beyond that, no encoding: what aiohttp itself costs on this machine.
"""

from __future__ import annotations

from aiohttp import web

from simulator.protocol.odata import JSON_CONTENT_TYPE

HELLO_PATH = "/hello"
_JSON = {"Content-Type": JSON_CONTENT_TYPE, "OData-Version": "4.0"}


def bare_app(pages: dict[str, bytes] | None = None) -> web.Application:
    """A bare application serving `pages` (raw path with query -> body, read at request time) and /hello."""
    pages = {} if pages is None else pages

    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="Hello, world")

    async def page(request: web.Request) -> web.Response:
        body = pages.get(request.raw_path)
        if body is None:
            return web.Response(status=404, text=f"no page {request.raw_path}")
        return web.Response(body=body, headers=_JSON)

    app = web.Application()
    app.router.add_get(HELLO_PATH, hello)
    app.router.add_get("/{tail:.*}", page)
    return app


async def start_bare(pages: dict[str, bytes] | None = None) -> tuple[web.AppRunner, str]:
    """Listen on an ephemeral 127.0.0.1 port; returns the runner (cleanup() it) and the base URL."""
    runner = web.AppRunner(bare_app(pages), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"


def rebase(pages: dict[str, bytes], old_origin: str, new_origin: str) -> dict[str, bytes]:
    """Pages whose absolute links (nextLink, deltaLink, context) point at new_origin instead."""
    old, new = old_origin.encode(), new_origin.encode()
    return {path: body.replace(old, new) for path, body in pages.items()}
