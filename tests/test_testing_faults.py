"""Faults on demand, in-process: scripted and random, and how each looks to a client."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import httpx
import pytest
from conftest import START

from infobip_voicelogs import DecodeError, decode_logs
from infobip_voicelogs.codec import decode_error
from infobip_voicelogs.testing import FakeAccount, FakeClock, FakeInfobip, Fault

PATH = "/tts/3/logs"


@pytest.fixture
def fake() -> FakeInfobip:
    return FakeInfobip(clock=FakeClock(START), seed=5)


@pytest.fixture
def account(fake: FakeInfobip) -> FakeAccount:
    account = fake.add_account("acme", api_key="k")
    account.generate(40, within=timedelta(hours=1))
    return account


async def test_a_script_plays_one_fault_per_request_in_order(
    fake: FakeInfobip, account: FakeAccount
) -> None:
    account.script(Fault.status(429), Fault.status(503), Fault.none(), Fault.status(500))
    async with fake.in_process_client(account) as client:
        statuses = [(await client.get(PATH)).status_code for _ in range(6)]
    assert statuses == [429, 503, 200, 500, 200, 200]
    assert [entry.fault for entry in fake.journal] == [
        Fault.status(429),
        Fault.status(503),
        None,
        Fault.status(500),
        None,
        None,
    ]
    assert account.faults.pending == 0


@pytest.mark.parametrize(
    ("code", "message_id"),
    [
        (429, "TOO_MANY_REQUESTS"),
        (500, "GENERAL_ERROR"),
        (502, "BAD_GATEWAY"),
        (503, "SERVICE_UNAVAILABLE"),
        (504, "GATEWAY_TIMEOUT"),
    ],
)
async def test_a_status_fault_carries_the_provider_body(
    fake: FakeInfobip, account: FakeAccount, code: int, message_id: str
) -> None:
    account.script(Fault.status(code))
    async with fake.in_process_client(account) as client:
        response = await client.get(PATH)
    assert response.status_code == code
    assert decode_error(response.content, response.headers["content-type"]).message_id == message_id
    assert "retry-after" not in response.headers


async def test_a_scripted_429_may_ask_for_a_wait(fake: FakeInfobip, account: FakeAccount) -> None:
    account.script(Fault.status(429, retry_after=7))
    async with fake.in_process_client(account) as client:
        response = await client.get(PATH)
    assert response.headers["retry-after"] == "7"


async def test_status_faults_do_not_count_against_the_rate_limit() -> None:
    fake = FakeInfobip(clock=FakeClock(START), rate_limit_per_minute=2)
    account = fake.add_account("acme", api_key="k")
    account.script(*[Fault.status(503)] * 5)
    async with fake.in_process_client(account) as client:
        statuses = [(await client.get(PATH)).status_code for _ in range(8)]
    assert statuses == [503] * 5 + [200, 200, 429]


async def test_a_reset_raises_a_transport_error(fake: FakeInfobip, account: FakeAccount) -> None:
    account.script(Fault.reset())
    async with fake.in_process_client(account) as client:
        with pytest.raises(httpx.RemoteProtocolError):
            await client.get(PATH)
        assert (await client.get(PATH)).status_code == 200
    assert [entry.status for entry in fake.journal] == [None, 200]


async def test_a_truncated_body_raises_a_transport_error(
    fake: FakeInfobip, account: FakeAccount
) -> None:
    account.script(Fault.truncate())
    async with fake.in_process_client(account) as client:
        with pytest.raises(httpx.RemoteProtocolError, match="complete message body"):
            await client.get(PATH)


async def test_a_malformed_body_is_complete_but_undecodable(
    fake: FakeInfobip, account: FakeAccount
) -> None:
    account.script(Fault.malformed(), Fault.malformed())
    async with fake.in_process_client(account) as client:
        json_response = await client.get(PATH)
        xml_response = await client.get(PATH, headers={"Accept": "application/xml"})
    for response in (json_response, xml_response):
        assert response.status_code == 200
        assert int(response.headers["content-length"]) == len(response.content)
        with pytest.raises(DecodeError):
            decode_logs(response.content, response.headers["content-type"])


async def test_a_delay_beyond_the_timeout_raises_read_timeout(
    fake: FakeInfobip, account: FakeAccount
) -> None:
    account.script(Fault.delay(5.0), Fault.delay(0.01))
    async with fake.in_process_client(account, timeout=0.05) as client:
        with pytest.raises(httpx.ReadTimeout):
            await client.get(PATH)
        slow_but_in_time = await client.get(PATH)
    assert slow_but_in_time.status_code == 200


async def test_under_plain_asgi_transport_faults_are_raw(
    fake: FakeInfobip, account: FakeAccount
) -> None:
    # httpx.ASGITransport passes the app's exception up and keeps a short body as it is.
    account.script(Fault.reset(), Fault.truncate())
    transport = httpx.ASGITransport(app=fake)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://fake", headers={"Authorization": "App k"}
    ) as client:
        with pytest.raises(ConnectionResetError):
            await client.get(PATH)
        truncated = await client.get(PATH)
    assert len(truncated.content) < int(truncated.headers["content-length"])
    with pytest.raises(DecodeError):
        decode_logs(truncated.content, "application/json")


async def test_faults_belong_to_one_account(fake: FakeInfobip, account: FakeAccount) -> None:
    other = fake.add_account("zeta")
    account.script(Fault.status(503))
    async with fake.in_process_client(other) as client:
        assert (await client.get(PATH)).status_code == 200
    async with fake.in_process_client(account) as client:
        assert (await client.get(PATH)).status_code == 503


def statuses_with_random_faults(seed: int, requests: int) -> list[int]:
    fake = FakeInfobip(clock=FakeClock(START), rate_limit_per_minute=10_000)
    account = fake.add_account("acme")
    account.random_faults({Fault.status(503): 0.2, Fault.status(429): 0.1}, seed=seed)

    async def run() -> list[int]:
        async with fake.in_process_client(account) as client:
            return [(await client.get(PATH)).status_code for _ in range(requests)]

    return asyncio.run(run())


def test_random_faults_follow_their_probabilities_and_seed() -> None:
    statuses = statuses_with_random_faults(seed=1, requests=1000)
    assert 150 <= statuses.count(503) <= 250
    assert 60 <= statuses.count(429) <= 140
    assert statuses == statuses_with_random_faults(seed=1, requests=1000)
    assert statuses != statuses_with_random_faults(seed=2, requests=1000)


async def test_a_script_goes_before_random_faults(fake: FakeInfobip, account: FakeAccount) -> None:
    account.random_faults({Fault.status(500): 1.0})
    account.script(Fault.none())
    async with fake.in_process_client(account) as client:
        assert [(await client.get(PATH)).status_code for _ in range(2)] == [200, 500]
    account.faults.clear()


def test_faults_are_checked_on_construction(account: FakeAccount) -> None:
    with pytest.raises(ValueError, match=r"Fault\.status"):
        Fault.status(404)
    with pytest.raises(ValueError, match="negative"):
        Fault.delay(-1)
    with pytest.raises(ValueError, match="at most 1"):
        account.random_faults({Fault.status(503): 0.7, Fault.reset(): 0.5})
