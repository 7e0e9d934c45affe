"""Quiet cycles cost no per-account store call: checkpoints cached per lease, advances batched.

Store calls are counted through `Counting`, a `LeaseStore` wrapping a `SqliteStore`; a
crash before a flush is a real SIGKILL of a poller process. Bounds are counts, not times.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Collection, Iterator, Sequence
from datetime import datetime, timedelta
from pathlib import Path

import attrs
import httpx
import pytest
from conftest import fake_in_a_thread

from infobip_voicelogs import Account, LogsPoller, SqliteStore, TokenBucket, VoiceLog
from infobip_voicelogs.store import Delivered, Lease, LeaseStore
from infobip_voicelogs.testing import FakeClock, FakeInfobip, FakeServer
from infobip_voicelogs.testing.fake import IN_PROCESS_URL

ROOT = Path(__file__).parents[1]
BUSY, IDLE = ["busy-1", "busy-2"], ["idle-1", "idle-2", "idle-3"]
SETTLED = timedelta(0)  # logs settled at once: a later cycle finds no change
WAIT = 30.0  # a hang guard for the waits below, not a bound anything is measured against


async def no_sleep(seconds: float) -> None:
    """Retries wait for nothing here."""


class Counting:
    """A `LeaseStore` counting the calls it passes on; it can hold, refuse or re-fence."""

    def __init__(self, store: SqliteStore) -> None:
        self.store = store
        self.calls: Counter[tuple[str, str]] = Counter()  # (method, account)
        self.advances: list[list[tuple[Lease, datetime]]] = []
        self.hold: asyncio.Event | None = None  # the next advance waits for it
        self.held = asyncio.Event()  # an advance is waiting for `hold`
        self.refuse_next = False
        self.fence = 0  # added to every fence the store grants

    def count(self, method: str) -> int:
        return sum(n for (name, _), n in self.calls.items() if name == method)

    async def checkpoint(self, account: str) -> datetime | None:
        self.calls["checkpoint", account] += 1
        return await self.store.checkpoint(account)

    async def fingerprints(self, account: str, message_ids: Collection[str]) -> dict[str, str]:
        self.calls["fingerprints", account] += 1
        return await self.store.fingerprints(account, message_ids)

    async def commit(
        self, account: str, *, checkpoint: datetime | None, delivered: Sequence[Delivered]
    ) -> None:
        self.calls["commit", account] += 1
        await self.store.commit(account, checkpoint=checkpoint, delivered=delivered)

    async def prune(self, *, before: datetime) -> int:
        return await self.store.prune(before=before)

    async def aclose(self) -> None:
        await self.store.aclose()

    async def lease(
        self, owner: str, accounts: Sequence[str], *, lease_ttl: float, busy: Collection[str] = ()
    ) -> dict[str, Lease]:
        leases = await self.store.lease(owner, accounts, lease_ttl=lease_ttl, busy=busy)
        return {
            n: attrs.evolve(lease, fence=lease.fence + self.fence) for n, lease in leases.items()
        }

    async def release(self, owner: str, accounts: Collection[str] | None = None) -> None:
        await self.store.release(owner, accounts)

    async def commit_leased(
        self, lease: Lease, *, checkpoint: datetime | None, delivered: Sequence[Delivered]
    ) -> None:
        self.calls["commit_leased", lease.account] += 1
        await self.store.commit_leased(lease, checkpoint=checkpoint, delivered=delivered)

    async def advance(self, checkpoints: Sequence[tuple[Lease, datetime]]) -> set[str]:
        self.advances.append(list(checkpoints))
        if self.hold is not None:
            hold, self.hold = self.hold, None
            self.held.set()
            await hold.wait()
        if self.refuse_next:
            self.refuse_next = False
            return {lease.account for lease, _ in checkpoints}
        return await self.store.advance(checkpoints)


class Recorder:
    """A handler that counts every message id it was given."""

    def __init__(self) -> None:
        self.ids: Counter[str] = Counter()

    async def __call__(self, account: str, logs: list[VoiceLog]) -> None:
        self.ids.update(log.message_id or "" for log in logs)


async def until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def fake(clock: FakeClock) -> FakeInfobip:
    fake = FakeInfobip(clock=clock, rate_limit_per_minute=1_000_000, seed=5)
    for name in BUSY:  # logs in every window (within the revisit), all settled
        fake.add_account(name).generate(30, within=timedelta(minutes=30), settle_after=SETTLED)
    for name in IDLE:  # never a log: every window is empty
        fake.add_account(name)
    return fake


@pytest.fixture
async def counting(tmp_path: Path) -> AsyncIterator[Counting]:
    async with SqliteStore(tmp_path / "quiet.db") as store:
        yield Counting(store)


@pytest.fixture
async def client(fake: FakeInfobip) -> AsyncIterator[httpx.AsyncClient]:
    async with fake.in_process_client() as client:
        yield client


@pytest.fixture
def make_poller(
    fake: FakeInfobip, client: httpx.AsyncClient, clock: FakeClock
) -> Callable[..., LogsPoller]:
    def make(store: LeaseStore, handler: Recorder, **overrides: object) -> LogsPoller:
        accounts = [
            Account(n, IN_PROCESS_URL, auth=a.api_key, throttle=TokenBucket(1e6, 1000))
            for n, a in fake.accounts.items()
        ]
        options: dict[str, object] = {
            "store": store,
            "handler": handler,
            "client": client,
            "clock": clock.now,
            "fetcher_options": {"sleep": no_sleep},
            # Cycles every 50 ms, claims (and so flushes) every 20 ms: many quiet cycles.
            "interval": 0.05,
            "lease_ttl": 10.0,
            "claim_interval": 0.02,
            **overrides,
        }
        return LogsPoller(accounts, **options)  # type: ignore[arg-type]

    return make


def cycles(poller: LogsPoller) -> dict[str, int]:
    return {name: status.cycles for name, status in poller.status().items()}


async def stop(poller: LogsPoller, runner: asyncio.Task[None]) -> None:
    poller.stop()
    await asyncio.wait_for(runner, timeout=WAIT)


async def test_quiet_cycles_read_no_checkpoint_commit_nothing_and_share_one_advance(
    fake: FakeInfobip,
    clock: FakeClock,
    counting: Counting,
    make_poller: Callable[..., LogsPoller],
) -> None:
    handler = Recorder()
    counting.hold = release = asyncio.Event()  # the first flush stays in flight until then
    async with make_poller(counting, handler) as poller:
        runner = asyncio.create_task(poller.run())
        await asyncio.wait_for(counting.held.wait(), timeout=WAIT)
        at_hold = cycles(poller)
        # The flush in flight blocks no cycle: every account cycles twice more meanwhile.
        await until(
            lambda: all(cycles(poller)[n] >= at_hold[n] + 2 for n in fake.accounts),
            "cycles while a flush is in flight",
        )
        assert len(counting.advances) == 1
        release.set()
        await until(lambda: len(counting.advances) >= 2, "the next flush")
        # Every account's quiet cycles since the first flush, in one call.
        assert {lease.account for lease, _ in counting.advances[1]} == set(fake.accounts)
        await stop(poller, runner)
        done = cycles(poller)

    every = BUSY + IDLE
    assert min(done.values()) >= 3
    # One checkpoint read per account for the whole run: one lease, one read.
    assert {n: counting.calls["checkpoint", n] for n in every} == dict.fromkeys(every, 1)
    # Only the busy accounts' first cycles committed; nothing committed per quiet cycle.
    assert counting.count("commit_leased") == len(BUSY)
    assert counting.count("commit") == 0
    # An empty window reads no fingerprints; a window with logs reads them once: later
    # cycles find the same logs in the states this process committed, and read nothing.
    assert all(counting.calls["fingerprints", n] == 0 for n in IDLE)
    assert all(counting.calls["fingerprints", n] == 1 for n in BUSY)
    # Each flush sends an account at most once; the last is stored (the shutdown's flush).
    assert all(len({lease.account for lease, _ in call}) == len(call) for call in counting.advances)
    assert await counting.store.accounts() == dict.fromkeys(every, clock.now())
    assert max(handler.ids.values()) == 1
    assert set(handler.ids) == {log.message_id for n in BUSY for log in fake.accounts[n].logs}


async def test_a_new_fence_reads_the_checkpoint_again(
    fake: FakeInfobip, counting: Counting, make_poller: Callable[..., LogsPoller]
) -> None:
    async with make_poller(counting, Recorder()) as poller:
        runner = asyncio.create_task(poller.run())
        await until(lambda: min(cycles(poller).values()) >= 2, "two cycles each")
        assert counting.count("checkpoint") == len(fake.accounts)
        counting.fence = 7  # as if another process had held every account meanwhile
        await until(
            lambda: counting.count("checkpoint") == 2 * len(fake.accounts), "a read per new lease"
        )
        after = cycles(poller)
        await until(
            lambda: all(cycles(poller)[n] >= after[n] + 2 for n in fake.accounts),
            "more cycles on the new leases",
        )
        await stop(poller, runner)
    assert counting.count("checkpoint") == 2 * len(fake.accounts)  # once per lease, no more


async def test_a_refused_advance_drops_the_cached_checkpoints(
    fake: FakeInfobip, counting: Counting, make_poller: Callable[..., LogsPoller]
) -> None:
    handler = Recorder()
    async with make_poller(counting, handler) as poller:
        runner = asyncio.create_task(poller.run())
        await until(lambda: len(counting.advances) >= 1, "a first flush")
        counting.refuse_next = True
        flushes = len(counting.advances)
        await until(lambda: len(counting.advances) > flushes, "a refused flush")
        refused = {lease.account for lease, _ in counting.advances[flushes]}
        assert refused  # a flush with nothing queued makes no call
        # Dropped: the next cycle of each refused account reads its checkpoint again.
        await until(
            lambda: all(counting.calls["checkpoint", n] == 2 for n in refused), "the re-reads"
        )
        after = cycles(poller)
        await until(
            lambda: all(cycles(poller)[n] >= after[n] + 2 for n in fake.accounts),
            "more cycles",
        )
        await stop(poller, runner)
    assert all(counting.calls["checkpoint", n] == 2 for n in refused)
    assert all(counting.calls["checkpoint", n] == 1 for n in set(fake.accounts) - refused)
    assert max(handler.ids.values()) == 1  # refused advances never repeat a delivery


async def test_a_failed_flush_is_sent_again_and_delivers_nothing_twice(
    fake: FakeInfobip,
    clock: FakeClock,
    counting: Counting,
    make_poller: Callable[..., LogsPoller],
) -> None:
    from infobip_voicelogs import StoreError

    failures = 3
    advance = counting.advance

    async def failing(checkpoints: Sequence[tuple[Lease, datetime]]) -> set[str]:
        nonlocal failures
        if failures:
            failures -= 1
            counting.advances.append(list(checkpoints))
            raise StoreError("the database is unreachable")
        return await advance(checkpoints)

    counting.advance = failing  # type: ignore[method-assign]
    handler = Recorder()
    async with make_poller(counting, handler) as poller:
        runner = asyncio.create_task(poller.run())
        await until(lambda: len(counting.advances) >= 5, "flushes after the failures")
        await stop(poller, runner)
    assert await counting.store.accounts() == dict.fromkeys(fake.accounts, clock.now())
    assert max(handler.ids.values()) == 1


# -- a crash before the flush: a real process, SIGKILL -------------------------------------

WORKER = """
import asyncio, json, sys
from infobip_voicelogs import Account, LogsPoller, SqliteStore, TokenBucket

class NeverFlushed(SqliteStore):
    async def advance(self, checkpoints):
        print("advancing", flush=True)  # the flush in flight when the kill comes
        await asyncio.Event().wait()

async def main(config, out):
    async def handler(account, logs):
        with open(out, "a") as f:
            f.write(json.dumps([account, [log.message_id for log in logs]]) + "\\n")
    accounts = [
        Account(a["name"], a["base_url"], auth=a["key"], throttle=TokenBucket(1e6, 1000))
        for a in config["accounts"]
    ]
    async with NeverFlushed(config["path"]) as store, LogsPoller(
        accounts, store=store, handler=handler, interval=0.05, lease_ttl=10, claim_interval=0.02
    ) as poller:
        async def report():
            while True:
                cycles = min(s.cycles for s in poller.status().values())
                print(json.dumps({"cycles": cycles}), flush=True)
                await asyncio.sleep(0.02)
        reporter = asyncio.create_task(report())
        await poller.run()

asyncio.run(main(json.loads(sys.argv[1]), sys.argv[2]))
"""


@pytest.fixture
def served() -> Iterator[tuple[FakeInfobip, FakeServer]]:
    fake = FakeInfobip(rate_limit_per_minute=1_000_000, seed=9)
    for name in BUSY:
        fake.add_account(name).generate(30, within=timedelta(minutes=30), settle_after=SETTLED)
    for name in IDLE:
        fake.add_account(name)
    with fake_in_a_thread(fake) as server:
        yield fake, server


def read_deliveries(path: Path) -> Counter[str]:
    found: Counter[str] = Counter()
    if path.exists():
        for line in path.read_text().splitlines():
            found.update(json.loads(line)[1])
    return found


def test_a_sigkill_before_the_flush_rewalks_a_wider_window_and_repeats_nothing(
    tmp_path: Path, served: tuple[FakeInfobip, FakeServer]
) -> None:
    fake, server = served
    path, out = tmp_path / "killed.db", tmp_path / "delivered.ndjson"
    config = {
        "path": str(path),
        "accounts": [
            {"name": n, "base_url": server.base_url, "key": a.api_key}
            for n, a in fake.accounts.items()
        ],
    }
    process = subprocess.Popen(
        [sys.executable, "-c", WORKER, json.dumps(config), str(out)],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=(tmp_path / "worker.err").open("wb"),
        text=True,
    )
    try:
        assert process.stdout is not None
        flushing, deadline = False, time.monotonic() + WAIT
        for line in process.stdout:  # a flush in flight, and three quiet cycles each
            assert time.monotonic() < deadline, "the worker did not cycle"
            flushing = flushing or line.startswith("advancing")
            if flushing and line.startswith("{") and json.loads(line)["cycles"] >= 4:
                break
        else:
            pytest.fail((tmp_path / "worker.err").read_text())
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(WAIT)
    before = read_deliveries(out)
    assert set(before) == {log.message_id for n in BUSY for log in fake.accounts[n].logs}
    assert max(before.values()) == 1

    asyncio.run(restart(fake, server, path, before))


async def restart(fake: FakeInfobip, server: FakeServer, path: Path, before: Counter[str]) -> None:
    """A new poller on the killed one's file: it walks wider windows, delivers only news."""
    async with SqliteStore(path) as store:
        # Only the busy accounts' first commits landed; no quiet cycle's advance did.
        stored = await store.accounts()
        assert set(stored) == set(BUSY)
        fake.accounts[BUSY[0]].generate(4, within=timedelta(seconds=1), settle_after=SETTLED)
        counting, handler = Counting(store), Recorder()
        async with (
            httpx.AsyncClient() as client,
            LogsPoller(
                [
                    Account(n, server.base_url, auth=a.api_key, throttle=TokenBucket(1e6, 1000))
                    for n, a in fake.accounts.items()
                ],
                store=counting,
                handler=handler,
                client=client,
            ) as poller,
        ):
            report = await poller.run_once()
    # The wider window (the idle accounts' backfill again) delivers only what is new.
    assert all(report[n].error is None for n in fake.accounts)
    assert sum(r.new for r in report.values()) == 4
    assert max(handler.ids.values()) == 1
    assert not set(handler.ids) & set(before)
