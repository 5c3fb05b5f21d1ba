"""Standalone serving: start_server over http and TLS, loopback-only refusal, the CA file."""

from __future__ import annotations

import io
import socket
import ssl
from pathlib import Path

import aiohttp
import pytest

import simulator.server.serve as serve_module
from simulator.clock import ManualClock
from simulator.server.serve import (
    describe,
    loopback_host,
    make_ssl_client_context,
    serve_forever,
    start_server,
)
from tests.conftest import small_scenario


async def _token(session: aiohttp.ClientSession, base: str, admin_key: str, user: str = "technician-0001") -> str:
    async with session.post(f"{base}/_syncsim/token", json={"user": user},
                            headers={"Authorization": f"Bearer {admin_key}"}) as resp:
        assert resp.status == 200, await resp.text()
        return (await resp.json())["access_token"]


async def test_start_server_http_ephemeral_port() -> None:
    server = await start_server(small_scenario(), admin_key="k1")
    try:
        assert server.base_url.startswith("http://127.0.0.1:")
        port = int(server.base_url.rsplit(":", 1)[1])
        assert port > 0 and server.ca_path is None and server.admin_key == "k1"
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{server.base_url}/_syncsim/health") as resp:
                assert resp.status == 200
                assert (await resp.json())["scenario"] == "unit"
            token = await _token(session, server.base_url, "k1")
            async with session.get(f"{server.base_url}/api/data/v9.2/accounts",
                                   headers={"Authorization": f"Bearer {token}"}) as resp:
                assert resp.status == 200
                assert len((await resp.json())["value"]) == 20
    finally:
        await server.close()


async def test_start_server_tls_with_generated_ca(tmp_path: Path) -> None:
    server = await start_server(small_scenario(), tls=True, state_dir=tmp_path, clock=ManualClock())
    try:
        assert server.base_url.startswith("https://127.0.0.1:")
        assert server.ca_path == tmp_path / "ca.pem"
        assert server.ca_path.read_text().startswith("-----BEGIN CERTIFICATE-----")
        assert len(server.admin_key) >= 20  # generated
        ctx = make_ssl_client_context(server.ca_path)
        port = server.base_url.rsplit(":", 1)[1]
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as session:
            for base in (server.base_url, f"https://localhost:{port}"):  # both names are in the cert
                async with session.get(f"{base}/_syncsim/health") as resp:
                    assert resp.status == 200
            token = await _token(session, server.base_url, server.admin_key)
            async with session.get(f"{server.base_url}/api/data/v9.2/msdyn_workorders?$top=1",
                                   headers={"Authorization": f"Bearer {token}"}) as resp:
                assert resp.status == 200
        # a client that does not trust the CA is refused
        async with aiohttp.ClientSession() as session:
            with pytest.raises(aiohttp.ClientConnectorCertificateError):
                await session.get(f"{server.base_url}/_syncsim/health")
    finally:
        await server.close()
    assert server.ca_path.exists()  # a caller-given state dir is kept


async def test_tls_temp_state_dir_is_removed_on_close() -> None:
    server = await start_server(small_scenario(), tls=True)
    assert server.ca_path is not None and server.ca_path.exists()
    ctx = make_ssl_client_context(server.ca_path)
    assert isinstance(ctx, ssl.SSLContext) and ctx.verify_mode == ssl.CERT_REQUIRED
    await server.close()
    assert not server.ca_path.exists()


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.10", "10.0.0.1", "example.com", "", "::ffff:8.8.8.8"])
async def test_refuses_non_loopback_hosts(host: str) -> None:
    with pytest.raises(ValueError, match="loopback"):
        await start_server(small_scenario(), host=host)


@pytest.mark.parametrize("host", ["0.0.0.0", "203.0.113.5"])
def test_serve_forever_refuses_non_loopback_before_starting(host: str) -> None:
    with pytest.raises(ValueError, match="loopback"):
        serve_forever(small_scenario(), host=host, out=io.StringIO())


@pytest.mark.parametrize(("host", "bind"), [("127.0.0.1", "127.0.0.1"), ("127.1.2.3", "127.1.2.3"),
                                            ("localhost", "127.0.0.1"), ("::1", "::1"), ("[::1]", "::1")])
def test_loopback_hosts_accepted(host: str, bind: str) -> None:
    assert loopback_host(host) == bind


async def test_describe_prints_url_key_ca_and_curl(tmp_path: Path) -> None:
    server = await start_server(small_scenario(), tls=True, admin_key="secret-key", state_dir=tmp_path)
    try:
        text = describe(server, small_scenario())
    finally:
        await server.close()
    assert server.base_url in text and "secret-key" in text
    assert f"--cacert {tmp_path / 'ca.pem'}" in text
    assert "/_syncsim/token" in text and '"user": "technician-0001"' in text
    assert "REQUESTS_CA_BUNDLE" in text


def test_serve_forever_reports_bad_port() -> None:
    out = io.StringIO()
    with pytest.raises(ValueError, match="port"):
        serve_forever(small_scenario(), port=70000, out=out)


async def test_start_server_on_a_port_in_use_names_the_port_and_the_host() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ValueError, match=f"^port {port} on 127.0.0.1 is already in use; choose another port"):
            await start_server(small_scenario(), port=port)


async def test_a_port_taken_after_the_check_is_still_reported_as_in_use(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(serve_module, "_check_free", lambda bind, port: None)  # as if taken just after it
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ValueError, match=f"^port {port} on 127.0.0.1 is already in use"):
            await start_server(small_scenario(), port=port)


@pytest.mark.parametrize("port", [65536, -1, True])
def test_a_port_outside_0_to_65535_names_the_allowed_range(port: int) -> None:
    with pytest.raises(ValueError, match=r"is not allowed; give a port from 0 to 65535 \(0 picks a free one\)"):
        serve_forever(small_scenario(), port=port, out=io.StringIO())
