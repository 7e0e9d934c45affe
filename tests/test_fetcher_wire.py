"""`LogsFetcher` over a real loopback socket, and bodies too large or cut short.

What no mock transport can do: a server that trickles its answer, hangs up mid-body, or
answers through a client whose event hook raises for the status.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import traceback
from collections.abc import Iterator

import httpx
import pytest
import respx
from conftest import API_KEY, BASE, FakeThrottle, Sleeps, log_at, loopback_server, ms

from infobip_voicelogs import ApiKeyAuth, DecodeError, LogsFetcher, ServerError, TransportError
from infobip_voicelogs.codec import encode_error, encode_logs

# -- a real socket: truncation as the wire does it -----------------------------------------


@pytest.fixture
async def truncating_server() -> Iterator[str]:  # type: ignore[misc]
    """A loopback server that promises 1,000 bytes, sends 20 and hangs up."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
            b'{"results": [{"mess'
        )
        await writer.drain()
        writer.close()

    async with loopback_server(serve) as url:
        yield url


@pytest.fixture
async def trickling_server() -> Iterator[str]:  # type: ignore[misc]
    """A loopback server that answers a byte every 50 ms: never idle long enough to time out."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n")
        writer.write(b"Content-Length: 100000\r\n\r\n")
        with contextlib.suppress(ConnectionError):
            for _ in range(100_000):
                writer.write(b" ")
                await writer.drain()
                await asyncio.sleep(0.05)
        writer.close()

    async with loopback_server(serve) as url:
        yield url


async def test_a_trickled_answer_fails_the_try_at_its_deadline(
    trickling_server: str, respx_mock: respx.MockRouter
) -> None:
    respx_mock.route(host="127.0.0.1").pass_through()
    sleeps = Sleeps()
    async with LogsFetcher(
        trickling_server,
        API_KEY,
        throttle=FakeThrottle(),
        sleep=sleeps,
        max_attempts=2,
        timeout=0.3,  # each byte comes well within it...
        deadline=0.4,  # ...but the answer as a whole never does
    ) as fetcher:
        with pytest.raises(TransportError, match=r"within 0\.4 s"):
            await fetcher.fetch()
    assert fetcher.stats.requests == 2  # retried, then given up
    assert len(sleeps) == 1


async def test_a_hook_raising_for_status_on_a_real_socket_is_still_a_typed_error(
    respx_mock: respx.MockRouter,
) -> None:
    respx_mock.route(host="127.0.0.1").pass_through()
    body = encode_error("E503", "down for maintenance", "json")

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        await writer.drain()
        writer.close()

    async def raise_for_status(response: httpx.Response) -> None:
        response.raise_for_status()  # httpx closes the response before we see it

    async with (
        loopback_server(serve) as url,
        httpx.AsyncClient(event_hooks={"response": [raise_for_status]}) as client,
    ):
        fetcher = LogsFetcher(
            url, API_KEY, throttle=FakeThrottle(), client=client, sleep=Sleeps(), max_attempts=2
        )
        with pytest.raises(ServerError) as caught:
            await fetcher.fetch()
    assert caught.value.status_code == 503
    assert fetcher.stats.requests == 2  # retried like any 503


async def test_a_page_body_beyond_the_limit_is_refused_not_read_whole(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from infobip_voicelogs import fetcher as fetcher_module

    monkeypatch.setattr(fetcher_module, "MAX_BODY_BYTES", 2_000)
    page = encode_logs([log_at(ms(n), f"m{n}") for n in range(100)], "json")
    assert len(page) > 2_000
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(200, content=page, headers={"Content-Type": "application/json"})

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        fetcher = LogsFetcher(BASE, API_KEY, throttle=FakeThrottle(), client=client)
        with pytest.raises(DecodeError, match="larger than 2,000 bytes"):
            await fetcher.fetch()
    assert len(calls) == 1  # not retried: the same page would be as large again


async def test_only_the_start_of_a_huge_error_body_is_read(sleeps: Sleeps) -> None:
    huge = encode_error("E500", "x" * 200_000, "json")

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(500, content=huge, headers={"Content-Type": "application/json"})

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        fetcher = LogsFetcher(
            BASE, API_KEY, throttle=FakeThrottle(), client=client, sleep=sleeps, max_attempts=1
        )
        with pytest.raises(ServerError) as caught:
            await fetcher.fetch()
    assert caught.value.status_code == 500  # typed by its status, whatever its body


async def test_a_truncated_body_on_the_wire_is_a_retried_transport_error(
    truncating_server: str, respx_mock: respx.MockRouter
) -> None:
    respx_mock.route(host="127.0.0.1").pass_through()
    sleeps = Sleeps()
    async with LogsFetcher(
        truncating_server, API_KEY, throttle=FakeThrottle(), sleep=sleeps, max_attempts=3
    ) as fetcher:
        with pytest.raises(TransportError, match="RemoteProtocolError"):
            await fetcher.fetch()
    assert fetcher.stats.requests == 3
    assert len(sleeps) == 2


# -- failures that would only repeat: one try ----------------------------------------------


class _SpacedHeader(httpx.Auth):
    """A user's own auth that sets a header h11 refuses (a trailing space)."""

    def __init__(self, credential: str) -> None:
        self.credential = credential

    def auth_flow(self, request: httpx.Request) -> Iterator[httpx.Request]:  # type: ignore[override]
        request.headers["Authorization"] = f"App {self.credential} "
        yield request


async def test_a_header_the_http_layer_refuses_is_tried_once_and_never_shown(
    sleeps: Sleeps,
) -> None:
    connections = 0

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        writer.close()

    registered = ApiKeyAuth(API_KEY)  # the key is configured, so it is scrubbed wherever it goes
    async with loopback_server(serve) as url:
        fetcher = LogsFetcher(url, _SpacedHeader(API_KEY), throttle=FakeThrottle(), sleep=sleeps)
        async with fetcher:
            with pytest.raises(TransportError, match="could not send the request") as caught:
                await fetcher.fetch()
    assert caught.value.retryable is False
    assert fetcher.stats.requests == 1
    assert sleeps == []  # no retry
    assert API_KEY not in str(caught.value)
    assert API_KEY not in "".join(traceback.format_exception(caught.value))
    del registered


def _resolver_failing(code: int, tries: list[httpx.Request]) -> httpx.MockTransport:
    """A transport whose name lookup fails as the system resolver does, with ``code``."""

    def handler(request: httpx.Request) -> httpx.Response:
        tries.append(request)
        try:
            raise socket.gaierror(code, "Name or service not known")
        except socket.gaierror as exc:
            raise httpx.ConnectError(str(exc), request=request) from exc

    return httpx.MockTransport(handler)


async def test_a_host_name_that_does_not_exist_is_tried_once(sleeps: Sleeps) -> None:
    tries: list[httpx.Request] = []
    async with httpx.AsyncClient(transport=_resolver_failing(socket.EAI_NONAME, tries)) as client:
        fetcher = LogsFetcher(BASE, API_KEY, throttle=FakeThrottle(), sleep=sleeps, client=client)
        with pytest.raises(TransportError, match=r"no such host xyz\.api\.infobip\.com") as caught:
            await fetcher.fetch()
    assert caught.value.retryable is False
    assert len(tries) == 1
    assert sleeps == []


async def test_a_temporary_resolver_failure_is_retried(sleeps: Sleeps) -> None:
    tries: list[httpx.Request] = []
    async with httpx.AsyncClient(transport=_resolver_failing(socket.EAI_AGAIN, tries)) as client:
        fetcher = LogsFetcher(
            BASE, API_KEY, throttle=FakeThrottle(), sleep=sleeps, client=client, max_attempts=3
        )
        with pytest.raises(TransportError, match="could not connect") as caught:
            await fetcher.fetch()
    assert caught.value.retryable is True
    assert len(tries) == 3
    assert len(sleeps) == 2
