"""Pulling delivery reports: `LogsFetcher.pull_reports` against the fake provider's
`GET /voice/1/reports`, in-process and over real HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import httpx
import pytest
from conftest import FakeThrottle, Sleeps

from infobip_voicelogs import InvalidQueryError, LogsFetcher, RateLimitError
from infobip_voicelogs.codec import Format
from infobip_voicelogs.reports import VoiceReport, decode_reports
from infobip_voicelogs.testing import (
    IN_PROCESS_URL,
    FakeAccount,
    FakeClock,
    FakeInfobip,
    Fault,
    report_of,
    running,
)

PULL = "/voice/1/reports"


@pytest.fixture
def fake(clock: FakeClock) -> FakeInfobip:
    return FakeInfobip(clock=clock, seed=3)


@pytest.fixture
def account(fake: FakeInfobip) -> FakeAccount:
    """A pulling account: none of its calls has a notify URL; 60 calls, all settled."""
    account = fake.add_account("acme", pull_share=1.0)
    account.generate(60, within=timedelta(hours=1), settle_after=timedelta(0))
    return account


@asynccontextmanager
async def pulling(
    fake: FakeInfobip,
    account: FakeAccount,
    throttle: FakeThrottle,
    sleeps: Sleeps,
    fmt: Format = "json",
    **options: Any,
) -> AsyncIterator[LogsFetcher]:
    """A fetcher of ``account`` reaching ``fake`` in-process, retries sleeping into ``sleeps``."""
    client = fake.in_process_client()
    async with (
        client,
        LogsFetcher(
            IN_PROCESS_URL,
            account.api_key,
            client=client,
            format=fmt,
            throttle=throttle,
            sleep=sleeps,
            **options,
        ) as fetcher,
    ):
        yield fetcher


def ids(reports: list[VoiceReport]) -> list[str]:
    return [str(report.message_id) for report in reports]


def settled_oldest_first(account: FakeAccount) -> list[str]:
    """The account's calls in the order their reports were kept (they settled as sent)."""
    return [str(log.message_id) for log in reversed(account.logs)]


# -- each report once ----------------------------------------------------------------------


async def test_each_report_is_pulled_once_then_the_pull_is_empty(
    fake: FakeInfobip, account: FakeAccount, throttle: FakeThrottle, sleeps: Sleeps
) -> None:
    async with pulling(fake, account, throttle, sleeps) as fetcher:
        first = await fetcher.pull_reports(limit=1000)
        again = await fetcher.pull_reports(limit=1000)
    assert ids(first) == settled_oldest_first(account)
    assert first == [report_of(log) for log in reversed(account.logs)]
    assert again == []
    assert account.pull.returned_ids == set(ids(first))
    assert account.pull.lost_ids == set()
    assert account.pull.waiting == []
    assert len(account.logs) == 60  # the logs still show every call


async def test_the_default_limit_is_50_and_a_limit_caps_a_pull(
    fake: FakeInfobip, account: FakeAccount, throttle: FakeThrottle, sleeps: Sleeps
) -> None:
    async with pulling(fake, account, throttle, sleeps) as fetcher:
        default = await fetcher.pull_reports()
        seven = await fetcher.pull_reports(limit=7)
        rest = await fetcher.pull_reports(limit=7)
    assert (len(default), len(seven), len(rest)) == (50, 7, 3)
    assert ids(default + seven + rest) == settled_oldest_first(account)
    pulls = [entry.query for entry in fake.requests(account)]
    assert pulls == [{}, {"limit": "7"}, {"limit": "7"}]


async def test_a_pull_narrowed_to_a_bulk_or_a_message_takes_only_those(
    fake: FakeInfobip, account: FakeAccount, throttle: FakeThrottle, sleeps: Sleeps
) -> None:
    newest, *_ = account.logs
    bulk = [log for log in account.logs if log.bulk_id == newest.bulk_id]
    one = account.logs[-1]
    async with pulling(fake, account, throttle, sleeps) as fetcher:
        of_bulk = await fetcher.pull_reports(bulk_id=str(newest.bulk_id))
        of_message = await fetcher.pull_reports(message_id=str(one.message_id))
        gone = await fetcher.pull_reports(message_id=str(one.message_id))
        others = await fetcher.pull_reports(limit=1000)
    assert 1 < len(of_bulk) == len(bulk) < 60
    assert set(ids(of_bulk)) == {str(log.message_id) for log in bulk}
    assert ids(of_message) == [one.message_id]
    assert gone == []
    assert len(others) == 60 - len(bulk) - 1


@pytest.mark.parametrize("fmt", ["json", "xml"])
async def test_reports_come_in_the_fetchers_format(
    fake: FakeInfobip, account: FakeAccount, throttle: FakeThrottle, sleeps: Sleeps, fmt: Format
) -> None:
    types: list[str] = []

    async def record(response: httpx.Response) -> None:
        types.append(response.headers["content-type"])

    client = fake.in_process_client(event_hooks={"response": [record]})
    async with (
        client,
        LogsFetcher(IN_PROCESS_URL, account.api_key, client=client, format=fmt) as fetcher,
    ):
        reports = await fetcher.pull_reports(limit=1000)
    assert reports == [report_of(log) for log in reversed(account.logs)]
    assert len(types) == 1
    assert types[0].startswith(f"application/{fmt}")


async def test_a_share_of_calls_is_pulled_and_the_rest_pushed_never_both(
    fake: FakeInfobip, clock: FakeClock
) -> None:
    account = fake.add_account("half", pull_share=0.5)
    posted: list[VoiceReport] = []

    async def receiver(scope: Any, receive: Any, send: Any) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = dict(scope["headers"])
        posted.extend(decode_reports(body, headers[b"content-type"].decode()))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    pusher = account.push_reports("http://receiver/reports/half", app=receiver)
    account.generate(80, within=timedelta(0), settle_after=timedelta(seconds=10))
    clock.advance(timedelta(seconds=11))
    await pusher.step()
    async with fake.in_process_client(account) as client:
        response = await client.get(PULL, params={"limit": "1000"})
    pulled = decode_reports(response.content, response.headers["content-type"])
    pushed_ids, pulled_ids = set(ids(posted)), set(ids(pulled))
    assert pushed_ids
    assert pulled_ids
    assert pushed_ids.isdisjoint(pulled_ids)
    assert pushed_ids | pulled_ids == {str(log.message_id) for log in account.logs}
    assert pulled_ids == {i for i in pulled_ids | pushed_ids if account.pull.keeps(i)}


async def test_a_report_waits_for_its_call_to_settle(
    fake: FakeInfobip, clock: FakeClock, throttle: FakeThrottle, sleeps: Sleeps
) -> None:
    account = fake.add_account("late", pull_share=1.0)
    account.generate(5, within=timedelta(0), settle_after=timedelta(seconds=30))
    async with pulling(fake, account, throttle, sleeps) as fetcher:
        before = await fetcher.pull_reports()
        clock.advance(timedelta(seconds=31))
        after = await fetcher.pull_reports()
    assert before == []
    assert sorted(ids(after)) == sorted(str(log.message_id) for log in account.logs)


# -- lost answers and retries ---------------------------------------------------------------


@pytest.mark.parametrize(
    "fault",
    [Fault.status(503, after_work=True), Fault.reset(after_work=True), Fault.truncate()],
    ids=["5xx-after-work", "reset-after-work", "truncated"],
)
async def test_a_retried_pull_does_not_get_back_what_a_lost_answer_consumed(
    fake: FakeInfobip, account: FakeAccount, throttle: FakeThrottle, sleeps: Sleeps, fault: Fault
) -> None:
    order = settled_oldest_first(account)
    account.script(fault)
    async with pulling(fake, account, throttle, sleeps) as fetcher:
        got = await fetcher.pull_reports(limit=10)
        rest = await fetcher.pull_reports(limit=1000)
    assert fetcher.stats.retries == 1
    assert ids(got) == order[10:20]  # the retry's answer: the next ten
    assert account.pull.lost_ids == set(order[:10])  # taken by the faulted answer
    assert [pull.answered for pull in account.pull.pulls] == [False, True, True]
    assert account.pull.pulls[0].fault == fault
    assert set(ids(rest)).isdisjoint(order[:10])
    assert ids(got + rest) == order[10:]
    # Only the logs still tell those calls' states.
    assert set(order[:10]) <= {str(log.message_id) for log in account.logs}


async def test_a_fault_before_the_work_consumes_nothing(
    fake: FakeInfobip, account: FakeAccount, throttle: FakeThrottle, sleeps: Sleeps
) -> None:
    order = settled_oldest_first(account)
    account.script(Fault.status(503), Fault.reset())
    async with pulling(fake, account, throttle, sleeps) as fetcher:
        got = await fetcher.pull_reports(limit=10)
    assert fetcher.stats.retries == 2
    assert ids(got) == order[:10]
    assert account.pull.lost_ids == set()


async def test_pulls_spend_the_accounts_throttle_and_limit_with_the_logs(
    clock: FakeClock, throttle: FakeThrottle, sleeps: Sleeps
) -> None:
    fake = FakeInfobip(clock=clock, rate_limit_per_minute=3)
    account = fake.add_account("acme", pull_share=1.0)
    account.generate(5, settle_after=timedelta(0))
    async with pulling(fake, account, throttle, sleeps, max_attempts=1) as fetcher:
        await fetcher.fetch()
        await fetcher.pull_reports(limit=1)
        await fetcher.fetch()
        with pytest.raises(RateLimitError):  # the account's 4th request in one minute
            await fetcher.pull_reports(limit=1)
    paths = [(entry.path, entry.status) for entry in fake.requests(account)]
    assert paths == [
        ("/tts/3/logs", 200),
        (PULL, 200),
        ("/tts/3/logs", 200),
        (PULL, 429),
    ]
    assert throttle.acquired == 4
    assert fetcher.stats.requests == 4
    assert len(account.pull.returned_ids) == 1  # the refused pull took nothing


# -- arguments -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 1001}, "limit"),
        ({"limit": True}, "limit"),
        ({"limit": "5"}, "limit"),
        ({"bulk_id": ""}, "bulk_id"),
        ({"message_id": "  "}, "message_id"),
        ({"message_id": 7}, "message_id"),
    ],
)
async def test_bad_arguments_are_refused_before_any_request(
    fake: FakeInfobip,
    account: FakeAccount,
    throttle: FakeThrottle,
    sleeps: Sleeps,
    arguments: dict[str, Any],
    field: str,
) -> None:
    async with pulling(fake, account, throttle, sleeps) as fetcher:
        with pytest.raises(InvalidQueryError) as raised:
            await fetcher.pull_reports(**arguments)
    assert raised.value.field == field
    assert fake.journal == []
    assert len(account.pull.waiting) == 60


@pytest.mark.parametrize(
    "query", [{"limit": "0"}, {"limit": "1001"}, {"limit": "x"}, {"bulkId": ""}]
)
async def test_the_fake_refuses_a_bad_pull_with_400_and_takes_nothing(
    fake: FakeInfobip, account: FakeAccount, query: dict[str, str]
) -> None:
    async with fake.in_process_client(account) as client:
        response = await client.get(PULL, params=query)
        anonymous = await client.get(PULL, headers={"Authorization": "App wrong"})
    assert response.status_code == 400
    assert anonymous.status_code == 401
    assert len(account.pull.waiting) == 60


# -- over real HTTP ------------------------------------------------------------------------


@pytest.fixture
def server_fake(clock: FakeClock) -> FakeInfobip:
    pytest.importorskip("uvicorn")
    return FakeInfobip(clock=clock, seed=5)


@pytest.mark.parametrize("fmt", ["json", "xml"])
async def test_over_http_each_report_once_and_a_dropped_answer_loses_its_reports(
    server_fake: FakeInfobip, fmt: Format, sleeps: Sleeps, throttle: FakeThrottle
) -> None:
    account = server_fake.add_account("acme", pull_share=1.0)
    account.generate(30, settle_after=timedelta(0))
    order = settled_oldest_first(account)
    account.script(Fault.reset(after_work=True))
    async with (
        running(server_fake) as server,
        LogsFetcher(
            server.base_url, account.api_key, format=fmt, throttle=throttle, sleep=sleeps
        ) as fetcher,
    ):
        got = await fetcher.pull_reports(limit=10)
        rest = await fetcher.pull_reports(limit=1000)
        empty = await fetcher.pull_reports()
    assert fetcher.stats.retries == 1
    assert ids(got) == order[10:20]
    assert ids(rest) == order[20:]
    assert empty == []
    assert account.pull.lost_ids == set(order[:10])
    assert account.pull.returned_ids == set(order[10:])


async def test_calls_added_to_the_past_after_a_pull_keep_their_reports_for_the_next(
    fake: FakeInfobip,
) -> None:
    account = fake.add_account("late", pull_share=1.0)
    async with fake.in_process_client(account) as client:
        first = await client.get(PULL)
        added = account.generate(12, settle_after=timedelta(0))  # settled before that pull
        second = await client.get(PULL, params={"limit": "100"})
    assert decode_reports(first.content, first.headers["content-type"]) == []
    pulled = decode_reports(second.content, second.headers["content-type"])
    assert {r.message_id for r in pulled} == {log.message_id for log in added}
