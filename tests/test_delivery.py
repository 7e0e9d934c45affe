"""The one delivery core: every source to the handler once, whatever the deployment.

Logs walked by the poller, reports recorded by a receiver, reports pulled from
`GET /voice/1/reports`: each state of each message reaches the handler once, never an
older one after a newer, and a hand-over that did not commit is offered again. Tests on
SQLite and PostgreSQL where the store matters; the fake provider stands in for the network.
"""

from __future__ import annotations

import asyncio
import time
import tracemalloc
from collections import Counter
from collections.abc import AsyncIterator, Collection, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from infobip_voicelogs import (
    Account,
    AccountStatus,
    LogsPoller,
    SqliteStore,
    TokenBucket,
    VoiceLog,
)
from infobip_voicelogs.delivery import LeaseKeeper
from infobip_voicelogs.postgres import PostgresStore
from infobip_voicelogs.reports import VoiceReport
from infobip_voicelogs.state import fingerprint
from infobip_voicelogs.store import Lease
from infobip_voicelogs.testing import FakeClock, FakeInfobip, Fault
from infobip_voicelogs.testing.fake import IN_PROCESS_URL

Item = VoiceLog | VoiceReport
Store = SqliteStore | PostgresStore


async def no_sleep(seconds: float) -> None:
    """Retries wait for nothing: the tests count, they do not time."""


class Stream:
    """A handler that keeps every state it is given, in order."""

    def __init__(self) -> None:
        self.items: list[tuple[str, str, str]] = []  # source, message id, fingerprint

    async def __call__(self, account: str, items: Sequence[Item]) -> None:
        self.items += [(i.source, i.message_id or "", fingerprint(i)) for i in items]

    def by_message(self) -> dict[str, list[tuple[str, str]]]:
        found: dict[str, list[tuple[str, str]]] = {}
        for source, message_id, print_ in self.items:
            found.setdefault(message_id, []).append((source, print_))
        return found


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    opened: Store
    if request.param == "sqlite":
        opened = SqliteStore(tmp_path / "voicelogs.db", archive=True)
    else:
        opened = PostgresStore(request.getfixturevalue("postgres_dsn"), archive=True)
    async with opened:
        yield opened


def account_of(fake: FakeInfobip, name: str, **options: Any) -> Account:
    key = fake.accounts[name].api_key
    return Account(name, IN_PROCESS_URL, auth=key, throttle=TokenBucket(1e6, 1000), **options)


def assert_each_final_state_once(fake: FakeInfobip, name: str, stream: Stream) -> None:
    """Every final state of the fake's calls reached the handler once, and last."""
    seen = stream.by_message()
    finals = {str(log.message_id): fingerprint(log) for log in fake.accounts[name].logs}
    finals = {m: p for m, p in finals.items() if p.startswith("2f:")}
    assert finals
    for message_id, final in finals.items():
        states = [p for _, p in seen.get(message_id, [])]
        assert states.count(final) == 1, (message_id, states)
        assert states[-1] == final  # nothing after the final state
    prints = [p for _, _, p in stream.items]
    assert len(prints) == len({(m, p) for _, m, p in stream.items}), "a state handed over twice"


# -- pulled reports ------------------------------------------------------------------------


async def test_pulled_reports_reach_the_handler_once_as_reports(store: Store) -> None:
    clock = FakeClock()
    fake = FakeInfobip(clock=clock, seed=31, rate_limit_per_minute=100_000)
    acme = fake.add_account("acme", pull_share=1.0)  # no call has a notify URL
    acme.traffic(0.5, settle_after=timedelta(seconds=40))
    stream = Stream()
    async with (
        fake.in_process_client() as client,
        LogsPoller(
            [account_of(fake, "acme", pull_reports=True)],
            store=store,
            handler=stream,
            client=client,
            clock=clock.now,
            reconcile=timedelta(minutes=10),
            fetcher_options={"sleep": no_sleep},
        ) as poller,
    ):
        for _ in range(40):
            clock.advance(timedelta(seconds=30))
            await poller.run_once()
        acme.stop_traffic()
        clock.advance(timedelta(minutes=11))  # every call settled, the logs reconciled
        await poller.run_once()
        status = poller.status()["acme"]

    assert_each_final_state_once(fake, "acme", stream)
    pulled = acme.pull.returned_ids
    assert len(pulled) > 100
    finals = {m: s for s, m, p in stream.items if p.startswith("2f:")}
    assert all(finals[m] == "report" for m in pulled)
    assert status.reports_flowing
    assert status.webhook_lost == 0  # every final state came by a pull


async def test_a_pull_whose_answer_was_lost_loses_nothing_the_logs_bring_it(store: Store) -> None:
    clock = FakeClock()
    fake = FakeInfobip(clock=clock, seed=37, rate_limit_per_minute=100_000)
    acme = fake.add_account("acme", pull_share=1.0)
    acme.generate(30, within=timedelta(minutes=30), settle_after=timedelta(0))
    acme.script(Fault.status(500, after_work=True))  # the first pull: consumed, then a 500
    stream = Stream()
    async with (
        fake.in_process_client() as client,
        LogsPoller(
            [account_of(fake, "acme", pull_reports=True)],
            store=store,
            handler=stream,
            client=client,
            clock=clock.now,
            max_attempts=3,
            fetcher_options={"sleep": no_sleep},
        ) as poller,
    ):
        await poller.run_once()
        status = poller.status()["acme"]

    lost = acme.pull.lost_ids
    assert lost, "the fault consumed reports"
    assert_each_final_state_once(fake, "acme", stream)
    by_log = {m for s, m, _ in stream.items if s == "log"}
    assert set(lost) <= by_log
    assert status.webhook_lost >= len(lost)


async def test_a_pulled_batch_that_cannot_be_recorded_is_brought_by_the_logs(
    tmp_path: Path,
) -> None:
    class Failing(SqliteStore):
        failures = 1

        async def record_reports(self, *args: Any, **kwargs: Any) -> int:
            if self.failures:
                self.failures -= 1
                raise OSError("disk full")
            return await super().record_reports(*args, **kwargs)

    clock = FakeClock()
    fake = FakeInfobip(clock=clock, seed=41, rate_limit_per_minute=100_000)
    acme = fake.add_account("acme", pull_share=1.0)
    acme.generate(20, within=timedelta(minutes=30), settle_after=timedelta(0))
    stream = Stream()
    async with (
        Failing(tmp_path / "v.db") as store,
        fake.in_process_client() as client,
        LogsPoller(
            [account_of(fake, "acme", pull_reports=True)],
            store=store,
            handler=stream,
            client=client,
            clock=clock.now,
            fetcher_options={"sleep": no_sleep},
        ) as poller,
    ):
        failed = await poller.run_once()  # pulled, not recorded: lost to the pull channel
        assert failed["acme"].error is not None
        clock.advance(timedelta(minutes=1))
        await poller.run_once()  # the logs bring every state

    assert_each_final_state_once(fake, "acme", stream)
    assert {s for s, _, _ in stream.items} == {"log"}


async def test_pulls_and_log_requests_share_the_accounts_limit(tmp_path: Path) -> None:
    clock = FakeClock()
    fake = FakeInfobip(clock=clock, seed=43, rate_limit_per_minute=100_000)
    acme = fake.add_account("acme", pull_share=1.0)
    acme.generate(3_500, within=timedelta(hours=2), settle_after=timedelta(0))
    stream = Stream()
    bucket = TokenBucket(1e6, 1000)
    account = Account("acme", IN_PROCESS_URL, auth=acme.api_key, throttle=bucket, pull_reports=True)
    async with (
        SqliteStore(tmp_path / "v.db") as store,
        fake.in_process_client() as client,
        LogsPoller([account], store=store, handler=stream, client=client, clock=clock.now) as p,
    ):
        await p.run_once()
        status = p.status()["acme"]
    paths = Counter(r.path for r in fake.requests())
    # Full pulls of 1,000 follow each other, then the logs' pages: one account, one count.
    assert paths["/voice/1/reports"] == 4
    assert status.requests == paths["/voice/1/reports"] + paths["/tts/3/logs"]
    assert_each_final_state_once(fake, "acme", stream)


# -- the SQLite lease and a blocked loop ---------------------------------------------------


async def poll_with_a_blocking_handler(
    store: Store, fake: FakeInfobip, handler: Any, *, lease_ttl: float, cycles: int
) -> tuple[AccountStatus, dict[str, str]]:
    """`run()` until the account has had `cycles` cycles; its status and stored prints."""
    seen: list[str] = []

    async def recording(account: str, items: Sequence[Item]) -> None:
        await handler(account, items)
        seen.extend(str(item.message_id) for item in items)

    async with (
        fake.in_process_client() as client,
        LogsPoller(
            [account_of(fake, "acme")],
            store=store,
            handler=recording,
            client=client,
            clock=fake.clock.now,
            interval=0.05,
            lease_ttl=lease_ttl,
            claim_interval=0.1,
        ) as poller,
    ):
        task = asyncio.create_task(poller.run())
        async with asyncio.timeout(30):
            while poller.status()["acme"].cycles < cycles:  # noqa: ASYNC110 (no event)
                await asyncio.sleep(0.02)
        poller.stop()
        await task
        return poller.status()["acme"], await store.fingerprints("acme", seen)


async def test_a_handler_blocking_the_loop_past_the_ttl_on_sqlite_costs_no_lease(
    tmp_path: Path,
) -> None:
    fake = FakeInfobip(clock=FakeClock(), seed=47)
    fake.add_account("acme").generate(30, settle_after=timedelta(0))
    calls: Counter[str] = Counter()

    async def blocking(account: str, items: Sequence[Item]) -> None:
        time.sleep(0.5)  # noqa: ASYNC251 (a synchronous write downstream: twice the ttl)
        calls.update(str(item.message_id) for item in items)

    async with SqliteStore(tmp_path / "v.db") as store:
        status, stored = await poll_with_a_blocking_handler(
            store, fake, blocking, lease_ttl=0.25, cycles=4
        )

    assert len(calls) == 30
    assert set(calls.values()) == {1}
    assert status.lost_leases == 0
    assert set(stored) == set(calls)


# -- memory --------------------------------------------------------------------------------


async def peak_of_a_backfill(tmp_path: Path, logs: int) -> int:
    """The most the poller's own allocations (the fake provider's left out) held at once,
    looked at halfway through and at the end of a backfill of `logs` logs, `max_batch=200`."""
    clock = FakeClock()
    fake = FakeInfobip(clock=clock, seed=53, rate_limit_per_minute=1_000_000)
    fake.add_account("acme").generate(logs, within=timedelta(hours=40), settle_after=timedelta(0))
    delivered = 0
    peak = 0
    not_the_fake = [tracemalloc.Filter(False, "*/infobip_voicelogs/testing/*", all_frames=True)]

    async def count(account: str, items: Sequence[Item]) -> None:
        nonlocal delivered, peak
        delivered += len(items)
        if delivered in (logs // 2, logs):  # the same two moments of every backfill
            snapshot = tracemalloc.take_snapshot().filter_traces(not_the_fake)
            peak = max(peak, sum(stat.size for stat in snapshot.statistics("filename")))

    async with (
        SqliteStore(tmp_path / f"{logs}.db") as store,
        fake.in_process_client() as client,
        LogsPoller(
            [account_of(fake, "acme")],
            store=store,
            handler=count,
            client=client,
            clock=clock.now,
            max_batch=200,
            page_size=200,
        ) as poller,
    ):
        tracemalloc.start(8)
        try:
            await poller.run_once()
        finally:
            tracemalloc.stop()
    assert delivered == logs
    return peak


async def test_a_pollers_memory_is_bounded_by_max_batch_whatever_the_window(
    tmp_path: Path,
) -> None:
    small = await peak_of_a_backfill(tmp_path, 4_000)
    large = await peak_of_a_backfill(tmp_path, 20_000)
    assert large <= 1.5 * small, (small, large)


# -- overlapping claims --------------------------------------------------------------------


class ScriptedLeases:
    """A lease store whose answers the test releases one by one."""

    leases_expire = True

    def __init__(self) -> None:
        self.answers: list[tuple[asyncio.Event, dict[str, Lease]]] = []

    def answer(self, leases: dict[str, Lease]) -> asyncio.Event:
        gate = asyncio.Event()
        self.answers.append((gate, leases))
        return gate

    async def lease(self, owner: str, accounts: Sequence[str], **options: Any) -> dict[str, Lease]:
        gate, leases = self.answers.pop(0)
        await gate.wait()
        return leases

    async def release(self, owner: str, accounts: Collection[str] | None = None) -> None:
        return None


def lease(account: str, fence: int) -> Lease:
    return Lease(account, owner="me", fence=fence, expires_at=datetime(2100, 1, 1, tzinfo=UTC))


async def test_an_older_claims_late_answer_never_overwrites_a_newer_ones() -> None:
    store = ScriptedLeases()
    older = store.answer({"a": lease("a", 1), "b": lease("b", 1)})
    newer = store.answer({"a": lease("a", 2)})
    keeper = LeaseKeeper(store, ["a", "b"], owner="me", lease_ttl=30, claim_interval=5)  # type: ignore[arg-type]
    first = asyncio.create_task(keeper.refresh())
    second = asyncio.create_task(keeper.refresh())
    settled = asyncio.create_task(keeper.settled())
    newer.set()
    await second
    await asyncio.sleep(0)
    assert not settled.done(), "a claim is still in flight: no hand-over may start"
    older.set()
    await first
    await settled
    held_a = keeper.held("a")
    assert held_a is not None
    assert held_a.fence == 2
    assert keeper.held("b") is None


async def test_a_handler_blocking_the_loop_past_the_ttl_on_postgres_costs_the_lease_once(
    postgres_dsn: str,
) -> None:
    fake = FakeInfobip(clock=FakeClock(), seed=61)
    fake.add_account("acme").generate(30, settle_after=timedelta(0))
    calls: Counter[str] = Counter()
    batches = 0

    async def blocking(account: str, items: Sequence[Item]) -> None:
        nonlocal batches
        batches += 1
        if not calls:
            time.sleep(1.5)  # noqa: ASYNC251 (the first call blocks the loop: 3x the ttl)
        calls.update(str(item.message_id) for item in items)

    async with PostgresStore(postgres_dsn) as store:
        status, stored = await poll_with_a_blocking_handler(
            store, fake, blocking, lease_ttl=0.5, cycles=10
        )

    # The lease lapsed by the database's clock while the loop was blocked: unless the
    # claim renewed it first, the commit was refused and the batch handed over once more.
    # Either way it was committed, and never handed over again: no loop.
    assert len(calls) == 30
    assert batches == max(calls.values()) <= 2
    assert status.lost_leases == batches - 1
    assert set(stored) == set(calls)


async def test_a_receiver_mounted_without_lifespan_events_delivers_through_its_handler(
    tmp_path: Path,
) -> None:
    import httpx
    from starlette.applications import Starlette
    from starlette.routing import Mount

    from infobip_voicelogs import Status
    from infobip_voicelogs.reports import NoAuth, ReportsReceiver, encode_reports

    stream = Stream()
    delivered = Status(3, "DELIVERED", 5, "DELIVERED_TO_HANDSET", "Message delivered")
    reports = [VoiceReport(message_id=f"m-{n}", status=delivered) for n in range(5)]
    async with SqliteStore(tmp_path / "v.db") as store:
        receiver = ReportsReceiver({"acme"}, store=store, auth=NoAuth(), handler=stream)
        app = Starlette(routes=[Mount("/reports", app=receiver)])  # no lifespan reaches it
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            body = encode_reports(reports, "json")
            headers = {"content-type": "application/json"}
            answer = await client.post("/reports/acme", content=body, headers=headers)
            assert answer.status_code == 200
            async with asyncio.timeout(20):
                while len(stream.items) < len(reports):  # noqa: ASYNC110 (the holder fills it)
                    await asyncio.sleep(0.01)
        await receiver.aclose()
        assert await store.inbox_accounts(["acme"]) == set()
    assert sorted(m for _, m, _ in stream.items) == sorted(f"m-{n}" for n in range(5))


async def test_a_burst_over_many_accounts_is_delivered_a_bounded_number_at_a_time(
    tmp_path: Path,
) -> None:
    import httpx

    from infobip_voicelogs import Status
    from infobip_voicelogs.delivery import DEFAULT_MAX_DRAINS
    from infobip_voicelogs.reports import NoAuth, ReportsReceiver, encode_reports

    names = [f"acct-{n:02d}" for n in range(40)]
    delivered = Status(3, "DELIVERED", 5, "DELIVERED_TO_HANDSET", "Message delivered")
    running = most = 0
    handed: Counter[str] = Counter()

    async def slow(account: str, items: Sequence[Item]) -> None:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.02)
        running -= 1
        handed[account] += len(items)

    async with SqliteStore(tmp_path / "v.db") as store:
        receiver = ReportsReceiver(names, store=store, auth=NoAuth(), handler=slow)
        transport = httpx.ASGITransport(app=receiver)
        async with httpx.AsyncClient(transport=transport, base_url="http://r") as client:

            async def post(name: str) -> int:
                reports = [
                    VoiceReport(message_id=f"{name}-{n}", status=delivered) for n in range(3)
                ]
                body = encode_reports(reports, "json")
                headers = {"content-type": "application/json"}
                return (await client.post(f"/{name}", content=body, headers=headers)).status_code

            # Every account's batch at once (in two waves: the receiver admits 32 requests
            # at a time); the first request starts the holder.
            for wave in (names[:20], names[20:]):
                assert set(await asyncio.gather(*(post(name) for name in wave))) == {200}
            async with asyncio.timeout(30):
                while sum(handed.values()) < 3 * len(names):  # noqa: ASYNC110 (the holder fills it)
                    await asyncio.sleep(0.01)
        await receiver.aclose()

    assert handed == Counter(dict.fromkeys(names, 3))
    assert 1 < most <= DEFAULT_MAX_DRAINS
