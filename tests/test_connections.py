"""HostTransport: a connection per host kept across requests, idle ones dropped, all closed."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator

import httpx
import pytest
import trustme

from infobip_voicelogs import connections
from infobip_voicelogs.connections import HostTransport, poller_client


class Host:
    """A loopback HTTP/1.1 server that answers every request and counts its connections."""

    def __init__(
        self, address: str, tls: ssl.SSLContext | None = None, *, silent: bool = False
    ) -> None:
        self.address, self.tls, self.silent = address, tls, silent
        self.opened = 0
        self.open = 0
        self.server: asyncio.Server | None = None
        self.changed = asyncio.Condition()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, self.address, 0, ssl=self.tls)

    @property
    def url(self) -> str:
        assert self.server is not None
        port = self.server.sockets[0].getsockname()[1]
        return f"{'https' if self.tls else 'http'}://{self.address}:{port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.opened += 1
        self.open += 1
        try:
            while await reader.readuntil(b"\r\n\r\n"):
                if self.silent:  # a host that never answers
                    continue
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            self.open -= 1
            writer.close()
            async with self.changed:
                self.changed.notify_all()

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()


@pytest.fixture
async def hosts() -> AsyncIterator[list[Host]]:
    # Each on its own loopback address, as each account has a host of its own.
    servers = [Host(f"127.0.{1 + i // 250}.{1 + i % 250}") for i in range(30)]
    for server in servers:
        await server.start()
    yield servers
    for server in servers:
        await server.stop()


async def _round(client: httpx.AsyncClient, servers: list[Host]) -> None:
    answers = await asyncio.gather(*(client.get(s.url + "/tts/3/logs") for s in servers))
    assert all(a.status_code == 200 and a.content == b"ok" for a in answers)


async def _closed(servers: list[Host]) -> None:
    """Wait (at most 5 s) until none of the servers has a connection open."""
    async with asyncio.timeout(5.0):
        for server in servers:
            async with server.changed:
                await server.changed.wait_for(lambda s=server: s.open == 0)  # type: ignore[misc]


async def test_each_host_keeps_its_one_connection_across_rounds(hosts: list[Host]) -> None:
    transport = HostTransport()
    async with httpx.AsyncClient(transport=transport) as client:
        for _ in range(5):
            await _round(client, hosts)
        assert transport.hosts == len(hosts)
    assert [h.opened for h in hosts] == [1] * len(hosts)


async def test_no_keepalive_opens_a_connection_per_request(hosts: list[Host]) -> None:
    async with httpx.AsyncClient(transport=HostTransport(keepalive=0)) as client:
        for _ in range(3):
            await _round(client, hosts)
            await _closed(hosts)  # nothing kept
    assert [h.opened for h in hosts] == [3] * len(hosts)


async def test_a_host_idle_past_the_timeout_loses_its_pool_and_connection(
    hosts: list[Host], monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = [1000.0]
    monkeypatch.setattr(connections, "_monotonic", lambda: clock[0])
    first, second = hosts[0], hosts[1]
    transport = HostTransport(idle_timeout=60.0)
    async with httpx.AsyncClient(transport=transport) as client:
        await client.get(first.url)
        clock[0] += 59.0
        await client.get(second.url)  # the first is still within its idle time
        assert transport.hosts == 2
        assert first.open == 1
        clock[0] += 30.0
        await client.get(second.url)  # the first has been idle 89 s: dropped
        assert transport.hosts == 1
        await _closed([first])
        assert second.open == 1
        assert second.opened == 1


async def test_a_response_still_open_keeps_its_pool_past_the_idle_time(
    hosts: list[Host], monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = [1000.0]
    monkeypatch.setattr(connections, "_monotonic", lambda: clock[0])
    first, second = hosts[0], hosts[1]
    transport = HostTransport(idle_timeout=60.0)
    async with httpx.AsyncClient(transport=transport) as client:
        async with client.stream("GET", first.url) as streaming:
            clock[0] += 120.0
            await client.get(second.url)  # the sweep passes over the busy pool
            assert transport.hosts == 2
            assert await streaming.aread() == b"ok"
        assert first.open == 1  # its connection was never closed under the reader


async def test_aclose_closes_every_connection_and_refuses_later_requests(
    hosts: list[Host],
) -> None:
    transport = HostTransport()
    client = httpx.AsyncClient(transport=transport)
    await _round(client, hosts)
    await client.aclose()
    await _closed(hosts)
    assert transport.hosts == 0
    with pytest.raises(RuntimeError, match="closed"):
        await transport.handle_async_request(httpx.Request("GET", hosts[0].url))


async def test_tls_hosts_share_one_context_and_handshake_once_each() -> None:
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    addresses = [f"127.0.3.{i}" for i in range(1, 6)]
    ca.issue_cert(*addresses).configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    servers = [Host(a, tls=server_ctx) for a in addresses]
    for server in servers:
        await server.start()
    try:
        async with httpx.AsyncClient(transport=HostTransport(verify=client_ctx)) as client:
            for _ in range(4):
                await _round(client, servers)
        assert [s.opened for s in servers] == [1] * len(servers)  # one handshake each
    finally:
        for server in servers:
            await server.stop()


async def test_a_host_shared_by_accounts_keeps_a_connection_per_account(
    hosts: list[Host],
) -> None:
    shared = hosts[0]
    urls = [shared.url] * 5 + [h.url for h in hosts[1:3]]
    async with poller_client(urls, max_connections=50) as client:
        for _ in range(3):
            await asyncio.gather(*(client.get(u) for u in urls))
    assert shared.opened == 5
    assert hosts[1].opened == hosts[2].opened == 1


async def test_a_proxy_in_the_environment_gets_httpx_own_client(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    async with poller_client(["https://a.example"], max_connections=5) as client:
        assert not isinstance(client._transport, HostTransport)  # httpx honours the proxy


async def test_a_cancelled_request_leaves_the_other_hosts_served(hosts: list[Host]) -> None:
    silent = Host("127.0.4.1", silent=True)
    await silent.start()
    transport = HostTransport()
    try:
        async with httpx.AsyncClient(transport=transport) as client:
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.2):
                    await client.get(silent.url)
            await _round(client, hosts)  # unaffected by the cancelled one
        await _closed([silent, *hosts])  # aclose: nothing left open
    finally:
        await silent.stop()


def test_arguments_out_of_range_are_refused() -> None:
    with pytest.raises(ValueError):
        HostTransport(keepalive=-1)
    with pytest.raises(ValueError):
        HostTransport(idle_timeout=0)
