"""LogsPoller against the fake provider: every new log once, every change once, nothing lost."""

from __future__ import annotations

import asyncio
import gc
import logging
import socket
import weakref
from collections import Counter
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest

from infobip_voicelogs import (
    Account,
    AccountStatus,
    AuthenticationError,
    ErrorInfo,
    GeneralStatus,
    LeaseLostError,
    LogsPoller,
    Price,
    SqliteStore,
    Status,
    TokenBucket,
    TransportError,
    VoiceLog,
)
from infobip_voicelogs.poller import Handler, LeaseState, fingerprint
from infobip_voicelogs.store import Delivered, LeaseStore
from infobip_voicelogs.testing import FakeClock, FakeInfobip, Fault
from infobip_voicelogs.testing.fake import IN_PROCESS_URL

SETTLE = timedelta(minutes=2)


async def no_sleep(seconds: float) -> None:
    """Retries wait for nothing in these tests: they count, they do not time."""


class Recorder:
    """A handler that remembers every (account, message id, state) it was given."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[VoiceLog]]] = []
        self.fail_next = 0

    async def __call__(self, account: str, logs: list[VoiceLog]) -> None:
        if self.fail_next:
            self.fail_next -= 1
            raise RuntimeError("the handler's database is down")
        self.calls.append((account, logs))

    def states(self) -> Counter[tuple[str, str, str]]:
        return Counter(
            (account, log.message_id or "", fingerprint(log))
            for account, logs in self.calls
            for log in logs
        )

    def ids(self, account: str) -> set[str]:
        return {
            log.message_id or "" for name, logs in self.calls if name == account for log in logs
        }


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def fake(clock: FakeClock) -> FakeInfobip:
    return FakeInfobip(clock=clock, rate_limit_per_minute=10_000, seed=3)


@pytest.fixture
async def client(fake: FakeInfobip) -> AsyncIterator[httpx.AsyncClient]:
    async with fake.in_process_client() as client:
        yield client


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "voicelogs.db"


@pytest.fixture
async def store(store_path: Path) -> AsyncIterator[SqliteStore]:
    async with SqliteStore(store_path, archive=True) as store:
        yield store


def account_for(fake: FakeInfobip, name: str, key: str | None = None) -> Account:
    fake_account = fake.accounts[name]
    # A generous bucket: these tests count requests, they do not wait for slots.
    return Account(
        name, IN_PROCESS_URL, auth=key or fake_account.api_key, throttle=TokenBucket(1e6, 1000)
    )


@pytest.fixture
def make_poller(
    fake: FakeInfobip, client: httpx.AsyncClient, clock: FakeClock
) -> Callable[..., LogsPoller]:
    def make(store: SqliteStore, handler: Handler, **overrides: object) -> LogsPoller:
        accounts = overrides.pop("accounts", None) or [
            account_for(fake, name) for name in fake.accounts
        ]
        options: dict[str, object] = {
            "store": store,
            "handler": handler,
            "client": client,
            "clock": clock.now,
            "page_size": 100,
            "fetcher_options": {"sleep": no_sleep},
        }
        options.update(overrides)
        return LogsPoller(accounts, **options)  # type: ignore[arg-type]

    return make


async def test_first_cycle_delivers_the_backfill_once(
    fake: FakeInfobip, store: SqliteStore, make_poller: Callable[..., LogsPoller]
) -> None:
    acme = fake.add_account("acme")
    acme.generate(250, within=timedelta(hours=5), settle_after=timedelta(0))
    handler = Recorder()
    async with make_poller(store, handler) as poller:
        first = await poller.run_once()
        second = await poller.run_once()

    assert first["acme"].ok
    assert first["acme"].new == first["acme"].delivered == 250
    assert second["acme"].delivered == 0
    assert handler.ids("acme") == {log.message_id for log in acme.logs}
    assert max(handler.states().values()) == 1
    # The batch comes oldest first: the order things happened in.
    sent = [log.sent_at for _, logs in handler.calls for log in logs]
    assert sent == sorted(sent)  # type: ignore[type-var]


async def test_backfill_reaches_only_as_far_as_asked(
    fake: FakeInfobip, store: SqliteStore, make_poller: Callable[..., LogsPoller]
) -> None:
    acme = fake.add_account("acme")
    acme.generate(100, within=timedelta(hours=10), settle_after=timedelta(0))
    handler = Recorder()
    async with make_poller(store, handler, backfill=timedelta(hours=2)) as poller:
        await poller.run_once()
    cutoff = fake.clock.now() - timedelta(hours=2)
    expected = {log.message_id for log in acme.logs if log.sent_at and log.sent_at >= cutoff}
    assert handler.ids("acme") == expected
    assert 0 < len(expected) < 100


async def test_a_status_change_is_delivered_once(
    fake: FakeInfobip,
    clock: FakeClock,
    store: SqliteStore,
    make_poller: Callable[..., LogsPoller],
) -> None:
    acme = fake.add_account("acme", settle_after=SETTLE)
    acme.generate(60, within=timedelta(seconds=30), settle_after=SETTLE)
    handler = Recorder()
    async with make_poller(store, handler) as poller:
        first = await poller.run_once()
        pending = sum(1 for log in acme.logs if log.general_status is GeneralStatus.PENDING)
        clock.advance(SETTLE + timedelta(seconds=1))
        second = await poller.run_once()
        third = await poller.run_once()

    assert first["acme"].new == 60
    assert pending > 0
    assert second["acme"].new == 0
    assert second["acme"].changed == pending
    assert third["acme"].delivered == 0
    assert max(handler.states().values()) == 1
    final = {log.message_id: log for log in acme.logs}
    last_seen = {log.message_id: log for _, logs in handler.calls for log in logs}
    assert last_seen == final


async def test_new_traffic_between_cycles(
    fake: FakeInfobip,
    clock: FakeClock,
    store: SqliteStore,
    make_poller: Callable[..., LogsPoller],
) -> None:
    acme = fake.add_account("acme", settle_after=timedelta(seconds=5))
    acme.traffic(2.0, settle_after=timedelta(seconds=5))
    handler = Recorder()
    async with make_poller(store, handler) as poller:
        for _ in range(6):
            clock.advance(timedelta(seconds=10))
            await poller.run_once()
        clock.advance(timedelta(seconds=6))
        acme.stop_traffic()
        await poller.run_once()
    assert len(acme.logs) >= 100
    assert set(await store.archived("acme")) == set(acme.logs)
    assert max(handler.states().values()) == 1


async def test_restart_on_the_same_store_repeats_nothing(
    fake: FakeInfobip,
    clock: FakeClock,
    store_path: Path,
    make_poller: Callable[..., LogsPoller],
) -> None:
    acme = fake.add_account("acme")
    acme.generate(120, within=timedelta(hours=1), settle_after=timedelta(0))
    handler = Recorder()
    async with SqliteStore(store_path) as store, make_poller(store, handler) as poller:
        await poller.run_once()
    clock.advance(timedelta(minutes=5))
    acme.generate(7, within=timedelta(minutes=1), settle_after=timedelta(0))

    handler_after_restart = Recorder()
    async with (
        SqliteStore(store_path) as store,
        make_poller(store, handler_after_restart) as poller,
    ):
        report = await poller.run_once()
    assert report["acme"].new == 7
    assert len(handler_after_restart.ids("acme")) == 7
    assert not handler_after_restart.ids("acme") & handler.ids("acme")


async def test_a_failing_handler_gets_the_same_logs_next_cycle(
    fake: FakeInfobip, store: SqliteStore, make_poller: Callable[..., LogsPoller]
) -> None:
    acme = fake.add_account("acme")
    acme.generate(30, within=timedelta(hours=1), settle_after=timedelta(0))
    handler = Recorder()
    handler.fail_next = 1
    async with make_poller(store, handler) as poller:
        failed = await poller.run_once()
        retried = await poller.run_once()
    assert isinstance(failed["acme"].error, RuntimeError)
    assert failed["acme"].delivered == 0
    assert await store.checkpoint("acme") is not None  # the retried cycle committed
    assert retried["acme"].new == 30
    assert len(handler.calls) == 1
    assert poller.status()["acme"].failures == 1


async def test_the_backfill_reaches_the_retention_line(
    fake: FakeInfobip, clock: FakeClock, store: SqliteStore, make_poller: Callable[..., LogsPoller]
) -> None:
    acme = fake.add_account("acme")
    now = clock.now()
    ages = [timedelta(hours=48) - timedelta(seconds=s) for s in (5, 30, 50)]
    acme.add_logs(VoiceLog(message_id=f"old-{i}", sent_at=now - age) for i, age in enumerate(ages))
    handler = Recorder()
    async with make_poller(store, handler) as poller:
        report = await poller.run_once()
    assert report["acme"].new == 3  # still served by the provider, so still delivered


async def test_only_a_checkpoint_past_the_retention_warns(
    fake: FakeInfobip,
    clock: FakeClock,
    store: SqliteStore,
    make_poller: Callable[..., LogsPoller],
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake.add_account("acme")
    async with make_poller(store, Recorder()) as poller:
        await store.commit("acme", checkpoint=clock.now() - timedelta(hours=47.5), delivered=())
        await poller.run_once()  # revisit reaches past the line: nothing can be lost
        assert "retention" not in caplog.text
        await store.commit("acme", checkpoint=clock.now() - timedelta(hours=49), delivered=())
        await poller.run_once()
        assert "beyond the provider's 48-hour retention" in caplog.text


async def test_a_millisecond_holding_more_than_a_page_is_delivered_whole(
    fake: FakeInfobip, clock: FakeClock, store: SqliteStore, make_poller: Callable[..., LogsPoller]
) -> None:
    acme = fake.add_account("acme")
    at = clock.now() - timedelta(minutes=5)
    groups = [("DELIVERED", 3, 60), ("PENDING", 1, 60), ("UNDELIVERABLE", 2, 30)]
    acme.add_logs(
        VoiceLog(message_id=f"{name}-{i}", sent_at=at, status=Status(group, name, 1, name))
        for name, group, count in groups
        for i in range(count)
    )
    handler = Recorder()
    async with make_poller(store, handler) as poller:  # pages of 100
        report = await poller.run_once()
    assert report["acme"].new == 150
    assert len(handler.ids("acme")) == 150


async def test_a_big_window_comes_in_bounded_batches(
    fake: FakeInfobip, store: SqliteStore, make_poller: Callable[..., LogsPoller]
) -> None:
    acme = fake.add_account("acme")
    acme.generate(250, within=timedelta(hours=2), settle_after=timedelta(0))
    handler = Recorder()
    async with make_poller(store, handler, max_batch=100) as poller:
        report = await poller.run_once()
    assert [len(logs) for _, logs in handler.calls] == [100, 100, 50]
    assert report["acme"].new == report["acme"].delivered == 250
    assert handler.ids("acme") == {log.message_id for log in acme.logs}
    # Each batch is oldest first; the walk goes back in time, so the batches come newest first.
    firsts = [logs[0].sent_at for _, logs in handler.calls]
    assert firsts == sorted(firsts, reverse=True)  # type: ignore[type-var]


async def test_a_batch_failing_mid_walk_repeats_only_what_was_not_taken(
    fake: FakeInfobip, store: SqliteStore, make_poller: Callable[..., LogsPoller]
) -> None:
    acme = fake.add_account("acme")
    acme.generate(250, within=timedelta(hours=2), settle_after=timedelta(0))
    taken: list[VoiceLog] = []

    async def flaky(account: str, logs: list[VoiceLog]) -> None:
        if len(taken) == 100 and not flaky.failed:  # type: ignore[attr-defined]
            flaky.failed = True  # type: ignore[attr-defined]
            raise RuntimeError("the second batch fails once")
        taken.extend(logs)

    flaky.failed = False  # type: ignore[attr-defined]
    async with make_poller(store, flaky, max_batch=100) as poller:
        first = await poller.run_once()
        assert isinstance(first["acme"].error, RuntimeError)
        assert first["acme"].new == first["acme"].delivered == 100  # the first batch counts
        assert await store.checkpoint("acme") is None  # the walk did not finish
        second = await poller.run_once()
    assert second["acme"].new == 150
    assert poller.status()["acme"].new == 250
    assert sorted(log.message_id or "" for log in taken) == sorted(
        log.message_id or "" for log in acme.logs
    )


async def test_a_refused_account_does_not_stall_the_others(
    fake: FakeInfobip, store: SqliteStore, make_poller: Callable[..., LogsPoller]
) -> None:
    for name in ("good-1", "bad", "good-2"):
        fake.add_account(name).generate(20, within=timedelta(hours=1), settle_after=timedelta(0))
    accounts = [
        account_for(fake, "good-1"),
        account_for(fake, "bad", key="revoked-key"),
        account_for(fake, "good-2"),
    ]
    handler = Recorder()
    async with make_poller(store, handler, accounts=accounts) as poller:
        report = await poller.run_once()
    assert isinstance(report["bad"].error, AuthenticationError)
    assert report["good-1"].new == report["good-2"].new == 20
    assert await store.checkpoint("bad") is None
    assert "revoked-key" not in repr(report) + repr(accounts)
    # Backed off, and ten times longer than an ordinary failure would be.
    status = poller.status()["bad"]
    assert status.consecutive_failures == 1
    assert status.next_due - asyncio.get_running_loop().time() > 60 * 5


class SlowHandler:
    """A handler that says when it is entered, and finishes only once released."""

    def __init__(self) -> None:
        self.entered, self.release = asyncio.Event(), asyncio.Event()
        self.taken: list[VoiceLog] = []

    async def __call__(self, account: str, logs: list[VoiceLog]) -> None:
        self.entered.set()
        await self.release.wait()
        self.taken.extend(logs)


async def test_a_cancelled_cycle_lets_its_handler_finish_within_the_grace_and_commits(
    fake: FakeInfobip, store_path: Path, make_poller: Callable[..., LogsPoller]
) -> None:
    acme = fake.add_account("acme")
    acme.generate(40, within=timedelta(hours=1), settle_after=timedelta(0))
    handler = SlowHandler()

    async with SqliteStore(store_path) as store:
        poller = make_poller(store, handler, shutdown_grace=3600)
        cycle = asyncio.create_task(poller.run_once())
        await handler.entered.wait()
        cycle.cancel()
        for _ in range(10):
            await asyncio.sleep(0)
        assert not cycle.done()  # the handler in flight has the grace to finish
        handler.release.set()
        with pytest.raises(asyncio.CancelledError):
            await cycle
        await poller.aclose()
        assert await store.checkpoint("acme") is not None  # committed before the store closed
    assert len(handler.taken) == 40

    after = Recorder()
    async with SqliteStore(store_path) as store, make_poller(store, after) as poller:
        report = await poller.run_once()
    assert report["acme"].delivered == 0


class StuckHandler:
    """A handler that never returns on its own (a dead webhook), and counts how it ended."""

    def __init__(self, *, ignore_cancel: bool = False) -> None:
        self.entered = asyncio.Event()
        self.calls = 0
        self.cancelled = 0
        self.ignore_cancel = ignore_cancel
        self.leave = asyncio.Event()  # lets a handler that ignores cancellation go at last

    async def __call__(self, account: str, logs: list[VoiceLog]) -> None:
        self.calls += 1
        self.entered.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            if not self.ignore_cancel:
                raise
            await self.leave.wait()


async def redelivered(
    store_path: Path, make_poller: Callable[..., LogsPoller], account: str = "acme"
) -> int:
    """How many logs a fresh poller on the same store delivers: what was not committed."""
    after = Recorder()
    async with SqliteStore(store_path) as store, make_poller(store, after) as poller:
        report = await poller.run_once()
    assert report[account].error is None
    return len(after.ids(account))


@pytest.mark.parametrize("cancels", [1, 2], ids=["after-the-grace", "second-cancel-at-once"])
async def test_a_handler_that_never_returns_is_cancelled_and_its_batch_offered_again(
    fake: FakeInfobip, store_path: Path, make_poller: Callable[..., LogsPoller], cancels: int
) -> None:
    acme = fake.add_account("acme")
    acme.generate(40, within=timedelta(hours=1), settle_after=timedelta(0))
    handler = StuckHandler()
    # With two cancels the grace is never waited for: an hour would hang the test.
    grace = 0.05 if cancels == 1 else 3600

    async with SqliteStore(store_path) as store:
        poller = make_poller(store, handler, shutdown_grace=grace)
        cycle = asyncio.create_task(poller.run_once())
        await handler.entered.wait()
        for _ in range(cancels):
            cycle.cancel()
            await asyncio.sleep(0)
        with pytest.raises(asyncio.CancelledError):
            await cycle
        await poller.aclose()
        assert handler.cancelled == 1
        assert await store.checkpoint("acme") is None  # nothing committed
    assert await redelivered(store_path, make_poller) == 40


async def test_aclose_during_a_stuck_handler_returns_and_loses_nothing(
    fake: FakeInfobip, store_path: Path, make_poller: Callable[..., LogsPoller]
) -> None:
    acme = fake.add_account("acme")
    acme.generate(40, within=timedelta(hours=1), settle_after=timedelta(0))
    handler = StuckHandler()

    async with SqliteStore(store_path) as store:
        poller = make_poller(store, handler, shutdown_grace=0.05)
        cycle = asyncio.create_task(poller.run_once())
        await handler.entered.wait()
        await poller.aclose()
        report = await cycle  # cut short: a failure in the result, not a cancellation
        assert isinstance(report["acme"].error, RuntimeError)
        assert report["acme"].delivered == 0
        assert handler.cancelled == 1
        assert poller.status()["acme"].consecutive_failures == 1
    assert await redelivered(store_path, make_poller) == 40


async def test_a_handler_that_ignores_its_cancellation_is_abandoned(
    fake: FakeInfobip,
    store_path: Path,
    make_poller: Callable[..., LogsPoller],
    caplog: pytest.LogCaptureFixture,
) -> None:
    acme = fake.add_account("acme")
    acme.generate(10, within=timedelta(hours=1), settle_after=timedelta(0))
    handler = StuckHandler(ignore_cancel=True)

    async with SqliteStore(store_path) as store:
        poller = make_poller(store, handler, shutdown_grace=0)
        cycle = asyncio.create_task(poller.run_once())
        await handler.entered.wait()
        await poller.aclose()  # bounded: the grace, then ABANDON_WAIT for the handler
        assert "ignored its cancellation" in caplog.text
        assert await store.checkpoint("acme") is None
        handler.leave.set()  # let the stray handler task end before the loop does
        report = await cycle
        assert report["acme"].error is not None
    assert await redelivered(store_path, make_poller) == 10


async def test_stop_before_run_is_remembered(
    fake: FakeInfobip, store: SqliteStore, make_poller: Callable[..., LogsPoller]
) -> None:
    fake.add_account("acme").generate(5, within=timedelta(hours=1))
    recorder = Recorder()
    poller = make_poller(store, recorder)
    poller.stop()
    await poller.run()  # returns at once: nothing polled
    assert recorder.calls == []
    assert poller.status()["acme"].cycles == 0
    await poller.run_once()  # an explicit cycle still runs
    assert poller.status()["acme"].cycles == 1
    await poller.aclose()


@pytest.mark.parametrize("how", ["stop", "cancel", "cancel-twice"])
async def test_run_ends_within_the_grace_with_a_stuck_handler(
    fake: FakeInfobip,
    store_path: Path,
    make_poller: Callable[..., LogsPoller],
    how: str,
) -> None:
    acme = fake.add_account("acme")
    acme.generate(30, within=timedelta(hours=1), settle_after=timedelta(0))
    handler = StuckHandler()
    grace = 3600 if how == "cancel-twice" else 0.05

    async with SqliteStore(store_path) as store:
        poller = make_poller(store, handler, shutdown_grace=grace)
        running = asyncio.create_task(poller.run())
        await handler.entered.wait()
        if how == "stop":
            poller.stop()
            await running  # returns: a stop is not an error
        else:
            running.cancel()
            if how == "cancel-twice":
                await asyncio.sleep(0)
                running.cancel()
            with pytest.raises(asyncio.CancelledError):
                await running
        assert handler.calls == 1
        assert handler.cancelled == 1
        await poller.aclose()
    assert await redelivered(store_path, make_poller) == 30


async def test_status_returns_snapshots_that_cannot_be_changed(
    fake: FakeInfobip, store: SqliteStore, make_poller: Callable[..., LogsPoller]
) -> None:
    fake.add_account("acme").generate(5, within=timedelta(hours=1), settle_after=timedelta(0))
    async with make_poller(store, Recorder()) as poller:
        await poller.run_once()
        first = poller.status()["acme"]
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            first.cycles = 99  # type: ignore[misc]
        poller.status().clear()  # the dict is the caller's own copy
        await poller.run_once()
        assert first.cycles == 1
        assert poller.status()["acme"].cycles == 2


async def test_aclose_lets_the_cycle_in_flight_finish_and_polls_no_more(
    fake: FakeInfobip, store: SqliteStore, make_poller: Callable[..., LogsPoller]
) -> None:
    acme = fake.add_account("acme")
    acme.generate(40, within=timedelta(hours=1), settle_after=timedelta(0))
    handler = SlowHandler()

    poller = make_poller(store, handler)
    cycle = asyncio.create_task(poller.run_once())
    await handler.entered.wait()
    closing = asyncio.create_task(poller.aclose())
    await asyncio.sleep(0)
    assert not closing.done()  # waits for the cycle in flight
    handler.release.set()
    await closing
    report = await cycle
    assert report["acme"].error is None
    assert report["acme"].new == 40
    later = await poller.run_once()
    assert isinstance(later["acme"].error, RuntimeError)
    assert poller._fetchers == {}  # no client opened after closing


class StuckBucket(TokenBucket):
    """A throttle that lets the first request through and holds the second until released."""

    def __init__(self) -> None:
        super().__init__(1e6, burst=1000)
        self.holding = asyncio.Event()
        self.release = asyncio.Event()
        self.granted = 0

    async def acquire(self) -> float:
        self.granted += 1
        if self.granted == 2:
            self.holding.set()
            await self.release.wait()
        return await super().acquire()


async def test_cancellation_before_the_handler_loses_nothing(
    fake: FakeInfobip, store_path: Path, make_poller: Callable[..., LogsPoller]
) -> None:
    acme = fake.add_account("acme")
    acme.generate(150, within=timedelta(hours=1), settle_after=timedelta(0))
    bucket = StuckBucket()
    account = Account("acme", IN_PROCESS_URL, auth=acme.api_key, throttle=bucket)
    async with SqliteStore(store_path) as store:
        poller = make_poller(store, Recorder(), accounts=[account])
        cycle = asyncio.create_task(poller.run_once())
        await bucket.holding.wait()  # one page fetched, the walk waits for the second
        cycle.cancel()
        with pytest.raises(asyncio.CancelledError):
            await cycle
        await poller.aclose()

    after = Recorder()
    async with SqliteStore(store_path) as store, make_poller(store, after) as poller:
        report = await poller.run_once()
    assert report["acme"].error is None
    assert report["acme"].new == 150


async def test_archive_equals_ground_truth_after_a_faulty_run(
    fake: FakeInfobip,
    clock: FakeClock,
    store: SqliteStore,
    make_poller: Callable[..., LogsPoller],
) -> None:
    acme = fake.add_account("acme", settle_after=timedelta(seconds=20))
    acme.generate(300, within=timedelta(hours=3), settle_after=timedelta(seconds=20))
    acme.traffic(3.0, settle_after=timedelta(seconds=20))
    acme.random_faults(
        {
            Fault.status(503): 0.15,
            Fault.status(429): 0.1,
            Fault.reset(): 0.1,
            Fault.truncate(): 0.1,
        },
        seed=11,
    )
    handler = Recorder()
    async with make_poller(store, handler) as poller:
        for _ in range(12):
            clock.advance(timedelta(seconds=15))
            await poller.run_once()
        acme.stop_traffic()
        acme.faults.clear()
        clock.advance(timedelta(seconds=21))
        await poller.run_once()
    assert poller.status()["acme"].retries > 0
    assert set(await store.archived("acme")) == set(acme.logs)
    assert max(handler.states().values()) == 1


async def test_run_cycles_until_stopped(
    fake: FakeInfobip, store: SqliteStore, make_poller: Callable[..., LogsPoller]
) -> None:
    fake.add_account("acme").generate(5, within=timedelta(minutes=5), settle_after=timedelta(0))
    handler = Recorder()
    async with make_poller(store, handler, interval=0.01) as poller:
        runner = asyncio.create_task(poller.run())
        for _ in range(500):  # bounded: a few cycles take a few hundredths of a second
            if poller.status()["acme"].cycles >= 3:
                break
            await asyncio.sleep(0.01)
        poller.stop()
        await asyncio.wait_for(runner, timeout=5)
    assert poller.status()["acme"].cycles >= 3
    assert len(handler.calls) == 1


def test_fingerprints_stay_the_same_across_releases() -> None:
    # Stored fingerprints outlive the process: if this digest changes, every log still
    # within 48 hours is delivered again as "changed" after an upgrade. Change it only on
    # purpose, with a note in the changelog.
    cet = timezone(timedelta(hours=1))
    log = VoiceLog(
        message_id="m1",
        sent_at=datetime(2015, 2, 23, 17, 40, 31, 773000, cet),
        done_at=datetime(2015, 2, 23, 17, 41, 2, 0, cet),
        duration=10,
        price=Price(Decimal("0.0100"), "EUR"),
        status=Status(3, "DELIVERED", 5, "DELIVERED_TO_HANDSET", "Message delivered"),
        error=ErrorInfo(0, "OK", 0, "NO_ERROR", "No Error", False),
    )
    assert fingerprint(log) == "2f:bb23b69b5ceb572b70c7cacdff674c66"
    assert fingerprint(VoiceLog(message_id="m1")) == "2p:4f973daca239f8a13fc8ade37ccf8c29"
    # Only the state counts (status, error, price), however spelled: not the text, not the
    # times or the duration (a report of the same state has none of them), not the case of
    # a group name, not the spelling of an equal amount.
    assert fingerprint(attrs.evolve(log, text="x", to="1")) == fingerprint(log)
    assert fingerprint(attrs.evolve(log, price=Price(Decimal("0.01"), "EUR"))) == fingerprint(log)
    assert fingerprint(attrs.evolve(log, duration=11, done_at=None)) == fingerprint(log)
    other_group = attrs.evolve(log, error=attrs.evolve(log.error, group_name="Ok"))
    assert fingerprint(other_group) == fingerprint(log)
    assert fingerprint(attrs.evolve(log, price=Price(Decimal("0.02"), "EUR"))) != fingerprint(log)


def test_accounts_never_show_their_key() -> None:
    account = Account("eu-1", "https://xyz.api.infobip.com", auth="s3cret-key")
    assert "s3cret" not in repr(account)


async def test_bad_poller_arguments(store: SqliteStore) -> None:
    twins = [Account("a", "https://x.test", "k"), Account("a", "https://y.test", "k")]
    with pytest.raises(ValueError, match="two accounts"):
        LogsPoller(twins, store=store, handler=Recorder())
    with pytest.raises(ValueError, match="interval"):
        LogsPoller([], store=store, handler=Recorder(), interval=0)
    with pytest.raises(ValueError, match="page_size"):
        LogsPoller([], store=store, handler=Recorder(), page_size=5000)
    with pytest.raises(ValueError, match="max_concurrency"):
        LogsPoller([], store=store, handler=Recorder(), max_concurrency=0)


async def test_without_a_client_every_account_shares_one_pool_closed_by_aclose(
    fake: FakeInfobip, store: SqliteStore
) -> None:
    from infobip_voicelogs.testing import running

    for n in range(5):
        fake.add_account(f"a{n}").generate(3, within=timedelta(hours=1))
    async with running(fake) as server:
        accounts = [
            Account(name, server.base_url, auth=a.api_key, throttle=TokenBucket(1e6, 1000))
            for name, a in fake.accounts.items()
        ]
        poller = LogsPoller(accounts, store=store, handler=Recorder(), clock=fake.clock.now)
        report = await poller.run_once()
        assert all(result.ok for result in report.values())
        # One pool and one TLS context for all, not one per account (a few hundred KiB each).
        clients = {id(fetcher._client) for fetcher in poller._fetchers.values()}
        assert len(clients) == 1
        client = next(iter(poller._fetchers.values()))._client
        await poller.aclose()
        assert client.is_closed


# -- one delivery path: every store leases ---------------------------------------------


class DictStore:
    """A user's own `CheckpointStore`, without leases: the poller leases it locally."""

    def __init__(self) -> None:
        self.checkpoints: dict[str, datetime] = {}
        self.prints: dict[tuple[str, str], str] = {}

    async def checkpoint(self, account: str) -> datetime | None:
        return self.checkpoints.get(account)

    async def fingerprints(self, account: str, message_ids: Collection[str]) -> dict[str, str]:
        return {m: f for m in message_ids if (f := self.prints.get((account, m))) is not None}

    async def commit(
        self, account: str, *, checkpoint: datetime | None, delivered: Sequence[Delivered]
    ) -> None:
        for item in delivered:
            self.prints[account, item.log.message_id or ""] = item.fingerprint
        if checkpoint is not None:
            self.checkpoints[account] = checkpoint

    async def prune(self, *, before: datetime) -> int:
        return 0

    async def aclose(self) -> None:
        pass


async def test_a_store_without_leases_still_delivers_everything_once(
    fake: FakeInfobip, make_poller: Callable[..., LogsPoller]
) -> None:
    acme = fake.add_account("acme")
    acme.generate(120, within=timedelta(hours=2), settle_after=timedelta(0))
    store, handler = DictStore(), Recorder()
    assert not isinstance(store, LeaseStore)
    async with make_poller(store, handler) as poller:
        assert poller.status()["acme"].lease is LeaseState.UNKNOWN  # nothing claimed yet
        first = await poller.run_once()
        again = await poller.run_once()
    assert first["acme"].new == 120
    assert again["acme"].delivered == 0
    assert handler.ids("acme") == {log.message_id for log in acme.logs}
    assert "acme" in store.checkpoints
    assert poller.status()["acme"].lease is LeaseState.UNKNOWN  # released by aclose


async def test_two_pollers_on_one_store_object_never_deliver_one_log_twice(
    fake: FakeInfobip, store: SqliteStore, make_poller: Callable[..., LogsPoller]
) -> None:
    acme = fake.add_account("acme")
    acme.generate(50, within=timedelta(hours=1), settle_after=timedelta(0))
    first_handler, second_handler = Recorder(), Recorder()
    async with make_poller(store, first_handler) as first:
        assert (await first.run_once())["acme"].new == 50
        async with make_poller(store, second_handler) as second:
            # Refused while the first is alive: it polls nothing, knows it holds nothing,
            # and says so in its result.
            refused = await second.run_once()
            assert not refused["acme"].ok
            assert "another poller" in str(refused["acme"].error)
            assert refused["acme"].delivered == 0
            assert second.status()["acme"].lease is LeaseState.UNKNOWN
    assert second_handler.calls == []
    async with make_poller(store, second_handler) as after:  # the first released the store
        assert (await after.run_once())["acme"].delivered == 0


# -- one cycle per account at a time -------------------------------------------------------


async def test_run_once_during_run_waits_for_the_cycle_in_flight(
    fake: FakeInfobip, store: SqliteStore, make_poller: Callable[..., LogsPoller]
) -> None:
    acme = fake.add_account("acme")
    acme.generate(40, within=timedelta(hours=1), settle_after=timedelta(0))
    entered, release = asyncio.Event(), asyncio.Event()
    taken: list[str] = []

    async def slow(account: str, logs: list[VoiceLog]) -> None:
        entered.set()
        await release.wait()  # the run's cycle holds its batch while run_once is asked
        taken.extend(log.message_id or "" for log in logs)

    async with make_poller(store, slow, interval=3600) as poller:
        runner = asyncio.create_task(poller.run())
        await asyncio.wait_for(entered.wait(), timeout=5)
        once = asyncio.create_task(poller.run_once())
        await asyncio.sleep(0.05)
        assert not once.done()  # it waits for the account's turn
        release.set()
        report = await asyncio.wait_for(once, timeout=5)
        poller.stop()
        await asyncio.wait_for(runner, timeout=5)
        again = await asyncio.wait_for(
            asyncio.gather(poller.run_once(), poller.run_once()), timeout=5
        )
    assert report["acme"].ok
    assert report["acme"].delivered == 0
    assert all(r["acme"].delivered == 0 for r in again)
    assert sorted(taken) == sorted({log.message_id for log in acme.logs})  # each once


# -- a failing cycle's error pins nothing --------------------------------------------------


class _Big:
    """Stands for a cycle's batch: only a live frame could keep it reachable."""


async def test_last_error_keeps_no_frames_and_a_success_clears_it(
    fake: FakeInfobip, store: SqliteStore, make_poller: Callable[..., LogsPoller]
) -> None:
    acme = fake.add_account("acme")
    acme.generate(30, within=timedelta(hours=1), settle_after=timedelta(0))
    refs: list[weakref.ref[_Big]] = []
    down = [True]

    async def failing(account: str, logs: list[VoiceLog]) -> None:
        if not down[0]:
            return
        batch = _Big()  # a local of the failing frame, as `seen` and `batch` are
        refs.append(weakref.ref(batch))
        try:
            raise KeyError("inner")
        except KeyError as exc:
            raise RuntimeError(f"the handler's database is down ({len(logs)} logs)") from exc

    async with make_poller(store, failing) as poller:
        report = await poller.run_once()
        error = poller.status()["acme"].last_error
        assert report["acme"].error is error
        assert isinstance(error, RuntimeError)
        assert error.__traceback__ is None
        assert error.__cause__ is not None
        assert error.__cause__.__traceback__ is None
        del report
        gc.collect()
        assert len(refs) == 1
        assert refs[0]() is None  # the frame that held the batch is gone
        down[0] = False  # the handler recovers
        assert (await poller.run_once())["acme"].ok
        assert poller.status()["acme"].last_error is None


# -- public names --------------------------------------------------------------------------


async def test_durations_may_be_timedeltas(
    store: SqliteStore, make_poller: Callable[..., LogsPoller]
) -> None:
    async with make_poller(
        store,
        Recorder(),
        interval=timedelta(minutes=2),
        shutdown_grace=timedelta(seconds=3),
        lease_ttl=timedelta(seconds=30),
        claim_interval=timedelta(seconds=10),
    ) as poller:
        assert poller.interval == 120.0
        assert poller.shutdown_grace == 3.0
        assert poller.lease_ttl == 30.0
        assert poller.claim_interval == 10.0
    with pytest.raises(ValueError, match="claim_interval"):
        make_poller(store, Recorder(), lease_ttl=timedelta(seconds=4), claim_interval=3)


def test_the_types_of_public_signatures_are_public_and_old_spellings_warn() -> None:
    import infobip_voicelogs
    from infobip_voicelogs.fetcher import Throttle

    assert infobip_voicelogs.Throttle is Throttle
    assert infobip_voicelogs.Handler is Handler
    with pytest.warns(DeprecationWarning, match="lease=LeaseState"):
        elsewhere = AccountStatus(held=False)
    assert elsewhere.lease is LeaseState.ELSEWHERE
    assert not elsewhere.held
    assert AccountStatus(cycles=2).held  # a status built by hand counts as held


async def test_a_run_once_longer_than_the_lease_keeps_its_lease_renewed(
    fake: FakeInfobip, store: SqliteStore, make_poller: Callable[..., LogsPoller]
) -> None:
    acme = fake.add_account("acme")
    acme.generate(60, within=timedelta(hours=1), settle_after=timedelta(0))
    handler = Recorder()

    async def slow(account: str, logs: list[VoiceLog]) -> None:
        await asyncio.sleep(0.1)  # six batches: the cycle outlives its 0.3 s lease
        await handler(account, logs)

    async with make_poller(store, slow, max_batch=10, lease_ttl=0.3, claim_interval=0.1) as poller:
        report = await poller.run_once()
    assert report["acme"].ok, report["acme"].error
    assert report["acme"].delivered == 60
    assert poller.status()["acme"].lost_leases == 0


async def test_two_runs_at_once_never_hand_one_log_over_twice(
    fake: FakeInfobip, store: SqliteStore, make_poller: Callable[..., LogsPoller]
) -> None:
    acme = fake.add_account("acme")
    acme.generate(30, within=timedelta(hours=1), settle_after=timedelta(0))
    handler = Recorder()

    async def slow(account: str, logs: list[VoiceLog]) -> None:
        await asyncio.sleep(0.05)  # long enough for the other run's cycle to start
        await handler(account, logs)

    async with make_poller(store, slow, interval=0.01) as poller:
        runs = [asyncio.create_task(poller.run()) for _ in range(2)]
        for _ in range(500):  # bounded: a few cycles take a few tenths of a second
            if poller.status()["acme"].cycles >= 4:
                break
            await asyncio.sleep(0.01)
        poller.stop()
        await asyncio.wait_for(asyncio.gather(*runs), timeout=5)
    assert poller.status()["acme"].cycles >= 4
    assert max(handler.states().values()) == 1
    assert handler.ids("acme") == {log.message_id for log in acme.logs}


class ShedOnRequest(SqliteStore):
    """A `SqliteStore` whose claims give every account up once `shed`: what a fleet's store
    answers when another poller joins and takes this one's share."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.shed = False
        self.shed_claims = 0
        self.claimed = asyncio.Event()

    async def lease(
        self,
        owner: str,
        accounts: Sequence[str],
        *,
        lease_ttl: float | None = None,
        busy: Collection[str] = (),
        ttl: float | None = None,
    ) -> dict[str, Any]:
        leases = await super().lease(owner, accounts, lease_ttl=lease_ttl, busy=busy)
        if not self.shed:
            return dict(leases)
        self.shed_claims += 1
        self.claimed.set()
        return {}


class ShedBeforeSecondPage(TokenBucket):
    """Lets the first page go, then has the store shed the account before the second."""

    def __init__(self, store: ShedOnRequest) -> None:
        super().__init__(1e6, 1000)
        self.store = store
        self.requests = 0

    async def acquire(self) -> float:
        self.requests += 1
        if self.requests == 2:
            self.store.shed = True
            await asyncio.wait_for(self.store.claimed.wait(), 10)  # the keeper's next claim
        return await super().acquire()


async def test_a_walk_cut_by_a_rebalance_is_a_hand_over_not_a_failure(
    fake: FakeInfobip,
    store_path: Path,
    make_poller: Callable[..., LogsPoller],
    caplog: pytest.LogCaptureFixture,
) -> None:
    acme = fake.add_account("acme")
    acme.generate(600, within=timedelta(hours=1), settle_after=timedelta(0))  # six pages
    shedding = ShedOnRequest(store_path)
    throttle = ShedBeforeSecondPage(shedding)
    account = attrs.evolve(account_for(fake, "acme"), throttle=throttle)
    handler = Recorder()
    caplog.set_level("INFO", logger="infobip_voicelogs")
    async with (
        shedding,
        make_poller(
            shedding, handler, accounts=[account], lease_ttl=0.6, claim_interval=0.1
        ) as poller,
    ):
        report = await poller.run_once()
    assert shedding.shed_claims >= 1
    # The walk stopped at the page after the shed and handed nothing over: the new holder
    # walks the account. That is the fleet working, so it is said at INFO, not as a failure.
    assert isinstance(report["acme"].error, LeaseLostError)
    assert throttle.requests <= 3
    assert handler.calls == []
    assert poller.status()["acme"].lost_leases == 1
    ours = [r for r in caplog.records if r.name.startswith("infobip_voicelogs")]
    assert not [r for r in ours if r.levelno >= logging.WARNING], [r.message for r in ours]
    assert any("passed to another poller mid-cycle" in r.message for r in ours)


async def test_run_once_after_a_failed_claim_reports_every_account_it_could_not_poll(
    fake: FakeInfobip,
    store_path: Path,
    make_poller: Callable[..., LogsPoller],
    caplog: pytest.LogCaptureFixture,
) -> None:
    from infobip_voicelogs import StoreError

    acme = fake.add_account("acme")
    acme.generate(5, within=timedelta(hours=1), settle_after=timedelta(0))
    handler = Recorder()
    async with SqliteStore(store_path) as holder, SqliteStore(store_path) as second:
        await holder.lease("someone else", ["acme"], lease_ttl=60.0)
        async with make_poller(second, handler) as poller:
            report = await poller.run_once()
            # Nothing was polled, and the call says so rather than returning nothing.
            assert list(report) == ["acme"]
            assert isinstance(report["acme"].error, StoreError)
            assert "another poller" in str(report["acme"].error)
            assert not report["acme"].ok
            status = poller.status()["acme"]
            assert status.consecutive_failures == 1
            assert status.lease is LeaseState.UNKNOWN
            assert handler.calls == []
            # Said once, by the claim, not once more per account.
            said = [r for r in caplog.records if "another poller" in r.getMessage()]
            assert len(said) == 1, [r.getMessage() for r in said]
            await holder.release("someone else")
            report = await poller.run_once()  # the file free: polled as usual
        assert report["acme"].ok, report["acme"].error
        assert handler.ids("acme") == {log.message_id for log in acme.logs}


async def test_a_host_that_does_not_exist_is_tried_once_a_cycle_and_again_next_cycle(
    store: SqliteStore,
) -> None:
    tries: list[httpx.Request] = []

    def no_such_host(request: httpx.Request) -> httpx.Response:
        tries.append(request)
        try:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        except socket.gaierror as exc:
            raise httpx.ConnectError(str(exc), request=request) from exc

    account = Account("gone", "https://gone.invalid", auth="k" * 32, throttle=TokenBucket(1e6, 10))
    async with (
        httpx.AsyncClient(transport=httpx.MockTransport(no_such_host)) as client,
        LogsPoller(
            [account],
            store=store,
            handler=Recorder(),
            client=client,
            fetcher_options={"sleep": no_sleep},
        ) as poller,
    ):
        first = await poller.run_once()
        second = await poller.run_once()
    assert isinstance(first["gone"].error, TransportError)
    assert isinstance(second["gone"].error, TransportError)
    assert len(tries) == 2  # one try per cycle, and the next cycle tried again
    assert poller.status()["gone"].consecutive_failures == 2
