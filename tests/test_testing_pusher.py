"""The fake provider pushes delivery reports: on its clock, with faults, counted exactly."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest

from infobip_voicelogs import GeneralStatus
from infobip_voicelogs.reports import VoiceReport, decode_reports
from infobip_voicelogs.testing import (
    FakeAccount,
    FakeClock,
    FakeInfobip,
    PushBasic,
    PushFaults,
    PushHmac,
    ReportPusher,
    report_of,
    running,
)

URL = "http://receiver.test/reports/acme"


class Receiver:
    """A stand-in for the library's receiver: records each POST, answers as scripted."""

    def __init__(self, answers: Callable[[int], int] = lambda _: 200) -> None:
        self.posts: list[tuple[dict[str, str], bytes]] = []
        self.reports: list[VoiceReport] = []
        self._answers = answers

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (message := await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        status = self._answers(len(self.posts))
        self.posts.append((headers, body))
        if 200 <= status < 300:
            self.reports += decode_reports(body, headers["content-type"])
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    def ids(self) -> list[str]:
        return [str(report.message_id) for report in self.reports]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def account(clock: FakeClock) -> FakeAccount:
    account = FakeInfobip(clock=clock, seed=3).add_account("acme")
    account.traffic(2.0, settle_after=timedelta(seconds=20))
    return account


async def run(pusher: ReportPusher, clock: FakeClock, seconds: int, step: int = 1) -> None:
    for _ in range(seconds // step):
        clock.advance(timedelta(seconds=step))
        await pusher.step()


def final_ids(account: FakeAccount, after: Any, until: Any) -> list[str]:
    return [str(log.message_id) for log in account.settling(after, until)]


async def test_each_settled_call_is_pushed_once_with_its_final_state(
    account: FakeAccount, clock: FakeClock
) -> None:
    receiver = Receiver()
    start = clock.now()
    pusher = account.push_reports(URL, app=receiver)

    await run(pusher, clock, 120)

    truth = account.settling(start, clock.now())
    assert len(truth) > 150
    assert receiver.ids() == [str(log.message_id) for log in truth]  # in settling order
    by_id = {log.message_id: log for log in truth}
    for report in receiver.reports:
        log = by_id[report.message_id]
        assert (report.status, report.error, report.price) == (log.status, log.error, log.price)
        assert report.general_status is not None
        assert report.general_status.is_final
        assert report.callback_data == f"order:{report.message_id}"
    assert pusher.stats.settled == pusher.stats.sent == pusher.stats.accepted == len(truth)
    assert pusher.stats.dropped == pusher.stats.retried == pusher.stats.given_up == 0


@pytest.mark.parametrize("fmt", ["json", "xml"])
@pytest.mark.parametrize("shape", ["current", "flat"])
async def test_reports_go_in_the_format_and_shape_asked_for(
    account: FakeAccount, clock: FakeClock, fmt: str, shape: str
) -> None:
    receiver = Receiver()
    pusher = account.push_reports(URL, app=receiver, fmt=fmt, shape=shape, batch_size=7)

    await run(pusher, clock, 30)

    assert receiver.posts
    for headers, _ in receiver.posts:
        assert headers["content-type"] == f"application/{fmt}"
    assert {report.shape for report in receiver.reports} == {shape}
    assert max(len(decode_reports(b, h["content-type"])) for h, b in receiver.posts) <= 7
    if shape == "flat":
        assert all(r.done_at is not None and r.voice_call is None for r in receiver.reports)


async def test_basic_and_hmac_authentication_headers(
    account: FakeAccount, clock: FakeClock
) -> None:
    basic, signed = Receiver(), Receiver()
    one = account.push_reports(URL, app=basic, auth=PushBasic("provider", "s3cret"))
    two = account.push_reports(
        URL, app=signed, auth=PushHmac("shared", header="X-Hub-Signature", algorithm="sha512")
    )

    clock.advance(timedelta(seconds=40))
    await one.step()
    await two.step()

    expected = "Basic " + base64.b64encode(b"provider:s3cret").decode()
    assert {headers["authorization"] for headers, _ in basic.posts} == {expected}
    for headers, body in signed.posts:
        digest = hmac.new(b"shared", body, hashlib.sha512).hexdigest()
        assert headers["x-hub-signature"] == digest
    assert "s3cret" not in repr(one) + repr(PushBasic("provider", "s3cret"))
    assert "shared" not in repr(PushHmac("shared"))


async def test_dropped_duplicated_and_reordered_reports_are_counted_exactly(
    account: FakeAccount, clock: FakeClock
) -> None:
    receiver = Receiver()
    start = clock.now()
    faults = PushFaults(drop=0.1, duplicate=0.05, reorder=0.05)
    pusher = account.push_reports(URL, app=receiver, faults=faults)

    await run(pusher, clock, 600, step=5)
    account.stop_traffic()
    await run(pusher, clock, 120, step=60)  # what was held back or duplicated is due now

    stats = pusher.stats
    assert pusher.pending == 0
    truth = set(final_ids(account, start, clock.now()))
    got = receiver.ids()
    assert stats.dropped > 0
    assert stats.duplicated > 0
    assert stats.reordered > 0
    assert set(got) | stats.dropped_ids == truth
    assert not set(got) & stats.dropped_ids
    assert len(got) == len(truth) - stats.dropped + stats.duplicated == stats.accepted
    assert 0.05 < stats.dropped / stats.settled < 0.15  # seeded: the share asked for
    settle_order = final_ids(account, start, clock.now())
    unique = list(dict.fromkeys(got))
    assert unique != [i for i in settle_order if i in set(unique)]  # some overtaken


async def test_a_failed_post_is_retried_with_backoff_then_given_up(clock: FakeClock) -> None:
    account = FakeInfobip(clock=clock, seed=4).add_account("calls")
    pusher_faults = PushFaults(max_retries=2, retry_backoff=timedelta(seconds=10))
    # The first two POSTs fail, then the receiver answers.
    receiver = Receiver(lambda n: 503 if n < 2 else 200)
    pusher = account.push_reports(URL, app=receiver, faults=pusher_faults, batch_size=1000)
    account.generate(25, within=timedelta(seconds=1), settle_after=timedelta(seconds=10))

    clock.advance(timedelta(seconds=30))
    await pusher.step()  # fails
    assert pusher.stats.sent == 25
    clock.advance(timedelta(seconds=5))
    await pusher.step()  # nothing due yet: the backoff is 10 s
    assert pusher.stats.sent == 25
    clock.advance(timedelta(seconds=5))
    await pusher.step()  # the retry fails too; the next waits 20 s
    clock.advance(timedelta(seconds=19))
    await pusher.step()
    assert (pusher.stats.sent, pusher.stats.retried, receiver.ids()) == (50, 50, [])
    clock.advance(timedelta(seconds=1))
    await pusher.step()

    assert len(receiver.ids()) == 25
    assert (pusher.stats.sent, pusher.stats.accepted, pusher.stats.given_up) == (75, 25, 0)

    other = FakeInfobip(clock=clock, seed=5).add_account("down")
    gone = other.push_reports(URL, app=Receiver(lambda _: 500), faults=pusher_faults)
    other.generate(25, within=timedelta(seconds=1), settle_after=timedelta(seconds=10))
    for _ in range(6):
        clock.advance(timedelta(seconds=20))
        await gone.step()
    assert gone.stats.given_up == gone.stats.settled == 25
    assert gone.stats.given_up_ids == {str(log.message_id) for log in other.logs}
    assert (gone.stats.sent, gone.stats.accepted, gone.pending) == (75, 0, 0)  # 1 try + 2


async def test_a_receiver_that_cannot_be_reached_counts_as_a_failure(
    account: FakeAccount, clock: FakeClock
) -> None:
    async with httpx.AsyncClient(timeout=1.0) as client:
        faults = PushFaults(max_retries=0)
        pusher = account.push_reports("http://127.0.0.1:9/reports/x", client=client, faults=faults)
        clock.advance(timedelta(seconds=30))
        await pusher.step()

    assert pusher.stats.given_up == pusher.stats.settled > 0


async def test_the_log_lags_behind_its_report(account: FakeAccount, clock: FakeClock) -> None:
    receiver = Receiver()
    lag = timedelta(seconds=8)
    pusher = account.push_reports(URL, app=receiver, faults=PushFaults(log_lag=lag))

    clock.advance(timedelta(seconds=30))
    await pusher.step()

    logs = {log.message_id: log for log in account.logs}
    lagging = [r for r in receiver.reports if not logs[r.message_id].general_status.is_final]  # type: ignore[union-attr]
    assert lagging  # the report said final while the log still says pending
    clock.advance(lag)
    logs = {log.message_id: log for log in account.logs}
    assert all(logs[r.message_id].status == r.status for r in receiver.reports)


async def test_the_same_seed_pushes_the_same_reports(clock: FakeClock) -> None:
    runs = []
    for _ in range(2):
        clock.set(clock.now().replace(year=2030, month=1, day=1, hour=0, minute=0))
        account = FakeInfobip(clock=clock, seed=9).add_account("acme")
        account.traffic(3.0)
        receiver = Receiver()
        faults = PushFaults(drop=0.2, duplicate=0.1, reorder=0.1)
        pusher = account.push_reports(URL, app=receiver, faults=faults)
        await run(pusher, clock, 90, step=3)
        runs.append((receiver.ids(), pusher.stats))

    assert runs[0] == runs[1]


async def test_over_a_real_socket_to_a_uvicorn_served_receiver(
    account: FakeAccount, clock: FakeClock
) -> None:
    receiver = Receiver()
    async with running(receiver) as server, httpx.AsyncClient() as client:  # type: ignore[arg-type]
        pusher = account.push_reports(f"{server.base_url}/reports/acme", client=client)
        await run(pusher, clock, 20)

    assert receiver.ids()
    assert pusher.stats.accepted == len(receiver.ids())


def test_report_of_a_log_keeps_its_state_and_adds_the_call() -> None:
    account = FakeInfobip(clock=FakeClock(), seed=1).add_account("a")
    [log] = account.generate(1, settle_after=timedelta(0))

    report = report_of(log)

    assert (report.message_id, report.status, report.price) == (
        log.message_id,
        log.status,
        log.price,
    )
    assert report.voice_call is not None
    assert report.voice_call.end_time == log.done_at
    if log.general_status is GeneralStatus.DELIVERED:
        assert report.voice_call.duration == log.duration


async def test_the_fixture_makes_the_test_account_push(
    fake_pusher: Callable[..., ReportPusher], fake_account: FakeAccount, fake_clock: FakeClock
) -> None:
    receiver = Receiver()
    fake_account.traffic(1.0, settle_after=timedelta(seconds=5))
    pusher = fake_pusher(URL, app=receiver)

    fake_clock.advance(timedelta(seconds=30))
    await pusher.step()

    assert pusher.account is fake_account
    assert len(receiver.ids()) == pusher.stats.accepted > 0


def test_faults_are_validated() -> None:
    with pytest.raises(ValueError, match="share"):
        PushFaults(drop=1.5)
    with pytest.raises(ValueError, match="negative"):
        PushFaults(log_lag=timedelta(seconds=-1))
    with pytest.raises(ValueError):
        PushFaults(max_retries=-1)


async def test_run_steps_on_a_ticking_clock_until_cancelled() -> None:
    clock = FakeClock(ticking=True)
    account = FakeInfobip(clock=clock, seed=2).add_account("live")
    account.generate(5, within=timedelta(seconds=1), settle_after=timedelta(0))
    receiver = Receiver()
    pusher = account.push_reports(URL, app=receiver)
    account.generate(3, within=timedelta(0), settle_after=timedelta(milliseconds=50))

    task = asyncio.create_task(pusher.run(every=0.01))
    try:
        async with asyncio.timeout(10):
            while len(receiver.ids()) < 3:  # noqa: ASYNC110 (the receiver is a stand-in)
                await asyncio.sleep(0.01)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    assert len(receiver.ids()) == 3  # only the calls that settled after it started
