"""FakeInfobip over real HTTP: uvicorn on a free port of 127.0.0.1, reached with plain httpx."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest
from conftest import START

from infobip_voicelogs import DecodeError, decode_logs
from infobip_voicelogs.codec import decode_error
from infobip_voicelogs.testing import (
    FakeAccount,
    FakeClock,
    FakeInfobip,
    FakeServer,
    Fault,
    running,
    serve,
)

pytest.importorskip("uvicorn")

PATH = "/tts/3/logs"


@pytest.fixture
def fake() -> FakeInfobip:
    return FakeInfobip(clock=FakeClock(START), rate_limit_per_minute=5, retry_after="seconds")


@pytest.fixture
def account(fake: FakeInfobip) -> FakeAccount:
    account = fake.add_account("acme")
    account.generate(30, within=timedelta(hours=1))
    return account


@pytest.fixture
async def server(fake: FakeInfobip) -> AsyncIterator[FakeServer]:
    async with running(fake) as server:
        yield server


@pytest.fixture
async def client(server: FakeServer, account: FakeAccount) -> AsyncIterator[httpx.AsyncClient]:
    base_url, api_key = server.endpoint(account)
    headers = {"Authorization": f"App {api_key}"}
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=5.0) as client:
        yield client


async def test_serves_logs_on_a_loopback_port(
    server: FakeServer, client: httpx.AsyncClient, account: FakeAccount
) -> None:
    assert server.base_url.startswith("http://127.0.0.1:")
    assert server.endpoint("acme") == (server.base_url, account.api_key)
    response = await client.get(
        PATH, params={"limit": 100, "sentSince": "2026-03-01T11:00:00.000+00:00"}
    )
    assert response.status_code == 200
    assert decode_logs(response.content, response.headers["content-type"]) == account.logs
    xml = await client.get(PATH, headers={"Accept": "application/xml"})
    assert decode_logs(xml.content, xml.headers["content-type"]) == account.logs[:30]


async def test_errors_and_the_rate_limit_over_http(
    server: FakeServer, client: httpx.AsyncClient
) -> None:
    async with httpx.AsyncClient(base_url=server.base_url) as anonymous:
        refused = await anonymous.get(PATH)
    assert refused.status_code == 401
    statuses = [(await client.get(PATH)).status_code for _ in range(6)]
    assert statuses == [200] * 5 + [429]
    limited = await client.get(PATH)
    assert limited.headers["retry-after"] == "60"
    assert decode_error(limited.content, "application/json").message_id == "TOO_MANY_REQUESTS"


async def test_a_reset_drops_the_connection(
    fake: FakeInfobip, client: httpx.AsyncClient, account: FakeAccount
) -> None:
    account.script(Fault.reset())
    with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
        await client.get(PATH)
    assert (await client.get(PATH)).status_code == 200  # a fresh connection works
    assert [entry.status for entry in fake.journal] == [None, 200]


async def test_a_truncated_body_stops_short_of_its_length(
    client: httpx.AsyncClient, account: FakeAccount
) -> None:
    account.script(Fault.truncate())
    with pytest.raises(httpx.RemoteProtocolError, match="complete message body"):
        await client.get(PATH)
    assert (await client.get(PATH)).status_code == 200


async def test_a_malformed_body_arrives_whole(
    client: httpx.AsyncClient, account: FakeAccount
) -> None:
    account.script(Fault.malformed())
    response = await client.get(PATH)
    assert response.status_code == 200
    with pytest.raises(DecodeError):
        decode_logs(response.content, response.headers["content-type"])


async def test_a_slow_answer_trips_the_read_timeout(
    client: httpx.AsyncClient, account: FakeAccount
) -> None:
    account.script(Fault.delay(0.5), Fault.status(502))
    with pytest.raises(httpx.ReadTimeout):
        await client.get(PATH, timeout=0.1)
    assert (await client.get(PATH)).status_code == 502


def test_serving_without_uvicorn_says_what_to_install(
    fake: FakeInfobip, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "uvicorn", None)
    with pytest.raises(RuntimeError, match=r"infobip-voicelogs\[simulate\]"):
        serve(fake, port=0)
