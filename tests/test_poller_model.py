"""A model-based test of `LogsPoller`: hypothesis drives it over the fake provider.

A rule-based state machine mixes what happens to a poller in production: calls arriving
(alone and as steady traffic), calls settling and being corrected, time passing, the
provider failing (429, 5xx, dropped connections, cut bodies), the handler failing,
restarts on the same store, and crashes between the handler and the commit. The model
keeps every delivery the handler took, in order, and checks after each step:

* nothing delivered twice: each (account, message id, state) is taken once, plus once more
  for every crash that struck while it was in flight (taken, not committed);
* a final state is never followed by a non-final one for the same log;
* after a cycle that succeeded, nothing is lost: every log the fake holds was taken in its
  current state, and whatever a failed handler call or a crash left uncommitted was
  offered again (taken after the failure) unless it changed since.

Only the public API is used (the poller, `SqliteStore`, the fake and its clock), so the
test holds however the poller is built inside. Time is the fake's: nothing sleeps.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Coroutine, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

import httpx
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
)

from infobip_voicelogs import (
    Account,
    AccountResult,
    ErrorInfo,
    LogsPoller,
    Price,
    SqliteStore,
    Status,
    VoiceLog,
)
from infobip_voicelogs.store import Delivered
from infobip_voicelogs.testing import IN_PROCESS_URL, FakeAccount, FakeClock, FakeInfobip, Fault

T = TypeVar("T")

ACCOUNTS = ("north", "south")
#: The longest a call stays pending at the fake; well inside the revisit window.
SETTLE = timedelta(minutes=2)
#: How far back each cycle looks again for changes.
REVISIT = timedelta(minutes=30)
START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
# Small pages and batches, so one cycle walks several pages and hands over several batches.
PAGE_SIZE = 20
MAX_BATCH = 30

DELIVERED = Status(3, "DELIVERED", 5, "DELIVERED_TO_HANDSET", "Message delivered to handset")
NO_ERROR = ErrorInfo(0, "OK", 0, "NO_ERROR", "No Error", False)

FAULTS = st.sampled_from(
    [
        Fault.status(429),
        Fault.status(429, retry_after=2),
        Fault.status(500),
        Fault.status(502),
        Fault.status(503),
        Fault.status(504),
        Fault.reset(),
        Fault.truncate(),
        Fault.none(),
    ]
)

#: One delivery as the model counts it: account, message id, state.
Key = tuple[str, str, tuple[object, ...]]


class SimulatedCrash(BaseException):
    """The process dies between the handler and the commit: nothing of the poller catches it."""


def state_of(log: VoiceLog) -> tuple[object, ...]:
    """What tells one state of a log from another, independent of the poller's fingerprint.

    A state is its status, error and price (the times and the duration only describe it):
    so a correction of a call's duration alone is no new state and must not be delivered.
    """
    status, error, price = log.status, log.error, log.price
    no_error = error is None or (error.group_id == 0 and error.id == 0)
    return (
        is_final(log),
        None if status is None else (status.group_id, status.id, status.name),
        None if price is None else (price.per_second.normalize(), price.currency),
        None if no_error else (error.group_id, error.id, error.name),
    )


def is_final(log: VoiceLog) -> bool:
    group = log.general_status
    return group is not None and group.is_final


def key_of(account: str, log: VoiceLog) -> Key:
    assert log.message_id is not None  # the fake gives every log an id
    return (account, log.message_id, state_of(log))


async def no_sleep(seconds: float) -> None:
    """Retries and `Retry-After` wait for nothing: the model counts, it does not time."""


class OpenThrottle:
    """A throttle that never waits: a 429's cooldown would otherwise sleep in real time."""

    def __init__(self) -> None:
        self.cooldowns = 0

    async def acquire(self) -> float:
        return 0.0

    def on_success(self) -> None:
        pass

    def cooldown(self, seconds: float) -> None:
        self.cooldowns += 1

    def on_rate_limited(self) -> None:
        self.cooldowns += 1


class CrashingStore(SqliteStore):
    """A store whose next commit of a non-empty batch can be made to fail or to crash.

    That is what the store sees when a process dies (or its database goes away) after the
    handler took a batch and before the batch was committed.
    """

    def __init__(self) -> None:
        super().__init__(":memory:", archive=True)
        #: "crash", "error" or None: what a commit of a non-empty batch does, once...
        self.armed: str | None = None
        #: ...after this many more were let through.
        self.skip = 0
        #: Commits of a non-empty batch seen, struck ones included.
        self.attempts = 0
        #: The batches whose commit was struck, as the model's keys.
        self.struck: list[list[Key]] = []
        self._fenced = False  # inside commit_leased, whose check passed

    def _strike(self, account: str, delivered: Sequence[Delivered]) -> None:
        if not delivered:
            return
        self.attempts += 1
        if self.armed is None:
            return
        if self.skip:
            self.skip -= 1
            return
        kind, self.armed = self.armed, None
        self.struck.append([key_of(account, item.log) for item in delivered])
        if kind == "crash":
            raise SimulatedCrash
        raise RuntimeError("the database went away before the commit")

    async def commit(
        self, account: str, *, checkpoint: datetime | None, delivered: Sequence[Delivered]
    ) -> None:
        if not self._fenced:  # not already counted by commit_leased, which commits through here
            self._strike(account, delivered)
        await super().commit(account, checkpoint=checkpoint, delivered=delivered)

    async def commit_leased(
        self, lease: Any, *, checkpoint: datetime | None, delivered: Sequence[Delivered]
    ) -> None:
        # The fenced commit, for a SqliteStore that leases accounts (one process, fence 0).
        self._strike(lease.account, delivered)
        self._fenced = True
        try:
            await super().commit_leased(lease, checkpoint=checkpoint, delivered=delivered)
        finally:
            self._fenced = False


class Recorder:
    """Records every batch it takes, in order; fails an account's `fail_next` calls after
    its `passing` more."""

    def __init__(self) -> None:
        self.taken: list[Key] = []
        self.calls = 0
        self.passing: Counter[str] = Counter()
        self.fail_next: Counter[str] = Counter()
        #: What the failed calls were offered: it must be offered again.
        self.refused: list[Key] = []

    async def __call__(self, account: str, logs: list[VoiceLog]) -> None:
        if self.passing[account]:
            self.passing[account] -= 1
        elif self.fail_next[account]:
            self.fail_next[account] -= 1
            self.refused.extend(key_of(account, log) for log in logs)
            raise RuntimeError("the handler's database is down")
        self.taken.extend(key_of(account, log) for log in logs)
        self.calls += 1


class PollerModel(RuleBasedStateMachine):
    """The poller against the fake provider, with the model's bookkeeping of deliveries."""

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.clock = FakeClock(START)
        self.handler = Recorder()
        self.store = CrashingStore()
        self.client: httpx.AsyncClient | None = None
        self.poller: LogsPoller | None = None
        self.fake = FakeInfobip(clock=self.clock, rate_limit_per_minute=10_000)
        self.generated: dict[str, list[str]] = {name: [] for name in ACCOUNTS}
        self.streams: dict[str, int] = dict.fromkeys(ACCOUNTS, 0)
        self.corrections = 0
        # Deliveries of the current state still owed: refused, or struck before the commit.
        self.owed: set[Key] = set()
        self._refused_seen = 0
        self._struck_seen = 0
        self._taken_seen = 0

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coroutine)

    def account(self, name: str) -> FakeAccount:
        return self.fake.accounts[name]

    # -- set-up and tear-down --------------------------------------------------------------

    @initialize(seed=st.integers(0, 10_000), backlog=st.integers(0, 70))
    def start(self, seed: int, backlog: int) -> None:
        self.fake = FakeInfobip(clock=self.clock, rate_limit_per_minute=10_000, seed=seed)
        for name in ACCOUNTS:
            account = self.fake.add_account(name, settle_after=SETTLE)
            logs = account.generate(backlog, within=timedelta(hours=2))
            self.generated[name] = [log.message_id or "" for log in logs]
        self.client = self.fake.in_process_client()
        self.poller = self.new_poller()

    def new_poller(self) -> LogsPoller:
        accounts = [
            Account(name, IN_PROCESS_URL, auth=self.account(name).api_key, throttle=OpenThrottle())
            for name in ACCOUNTS
        ]
        return LogsPoller(
            accounts,
            store=self.store,
            handler=self.handler,
            client=self.client,
            clock=self.clock.now,
            revisit=REVISIT,
            page_size=PAGE_SIZE,
            max_batch=MAX_BATCH,
            fetcher_options={"sleep": no_sleep},
        )

    def teardown(self) -> None:
        try:
            if self.poller is not None:
                self.quiet_drain()
        finally:
            self.run(self.close())
            self.loop.close()

    async def close(self) -> None:
        if self.poller is not None:
            await self.poller.aclose()
        if self.client is not None:
            await self.client.aclose()
        await self.store.aclose()

    def quiet_drain(self) -> None:
        """No more faults or failures: one cycle must deliver everything, the next nothing."""
        for name in ACCOUNTS:
            self.account(name).faults.clear()
        self.handler.passing.clear()
        self.handler.fail_next.clear()
        self.store.armed = None
        self.clock.advance(SETTLE + timedelta(seconds=1))
        results = self.poll_once()
        assert set(results) == set(ACCOUNTS), results
        for name, result in results.items():
            assert result.ok, (name, result.error)
        self.check_nothing_lost(ACCOUNTS)
        again = self.poll_once()
        assert all(r.ok and r.delivered == 0 for r in again.values()), again
        for name in ACCOUNTS:
            # The archive holds every log in its latest state (a correction of the times or
            # the duration alone is no new state, so it is not written again).
            truth = {key_of(name, log) for log in self.account(name).logs}
            archived = {key_of(name, log) for log in self.run(self.store.archived(name))}
            assert archived == truth

    # -- what happens to the provider ------------------------------------------------------

    @rule(name=st.sampled_from(ACCOUNTS), n=st.integers(1, 15))
    def calls_arrive(self, name: str, n: int) -> None:
        """New calls, sent within the last minute: some arrive behind the checkpoint."""
        logs = self.account(name).generate(n, within=timedelta(minutes=1))
        self.generated[name].extend(log.message_id or "" for log in logs)

    @rule(name=st.sampled_from(ACCOUNTS), per_minute=st.integers(1, 3))
    def traffic_starts(self, name: str, per_minute: int) -> None:
        if self.streams[name] < 2:
            self.account(name).traffic(per_minute / 60)
            self.streams[name] += 1

    @rule(name=st.sampled_from(ACCOUNTS))
    def traffic_stops(self, name: str) -> None:
        self.account(name).stop_traffic()

    @rule(
        name=st.sampled_from(ACCOUNTS),
        pick=st.integers(0, 10_000),
        what=st.sampled_from(["settles", "duration", "price"]),
    )
    def call_changes(self, name: str, pick: int, what: str) -> None:
        """A call settles, or one field of it is corrected (a pending call stays pending).

        Only calls sent within the revisit window change: a change older than that is, by
        the poller's contract, not seen. A settling or a new price makes a state never seen
        before; a new duration alone is no new state (nothing to deliver).
        """
        account = self.account(name)
        recent = self.clock.now() - REVISIT
        candidates = [
            log
            for log in account.logs
            if log.message_id in self.generated[name]
            and log.sent_at is not None
            and log.sent_at >= recent
        ]
        if not candidates:
            return
        log = candidates[pick % len(candidates)]
        self.corrections += 1
        changes: dict[str, Any] = {
            "settles": {
                "status": DELIVERED,
                "error": NO_ERROR,
                "done_at": self.clock.now(),
                "duration": self.corrections,
                "price": Price(Decimal("0.01"), "EUR"),
            },
            "duration": {"duration": 1000 + self.corrections},
            "price": {"price": Price(Decimal(10**6 + self.corrections).scaleb(-7), "EUR")},
        }[what]
        account.update(log.message_id or "", **changes)

    @rule(seconds=st.integers(1, 300), then_poll=st.booleans())
    def time_passes(self, seconds: int, then_poll: bool) -> None:
        """Time passes, and often a cycle follows, as in `run()`."""
        self.clock.advance(timedelta(seconds=seconds))
        if then_poll:
            self.cycle()

    @rule(name=st.sampled_from(ACCOUNTS), faults=st.lists(FAULTS, min_size=1, max_size=8))
    def provider_fails(self, name: str, faults: list[Fault]) -> None:
        """Faults for the next requests; more than the fetcher's tries fail a cycle."""
        self.account(name).script(*faults)

    # -- what happens to the poller --------------------------------------------------------

    @rule(
        name=st.sampled_from(ACCOUNTS),
        after=st.integers(0, 2),
        n=st.integers(1, 3),
        then_poll=st.booleans(),
    )
    def handler_fails(self, name: str, after: int, n: int, then_poll: bool) -> None:
        """The handler fails `n` calls of an account after `after` more succeed (so a batch
        mid-walk can fail)."""
        self.handler.passing[name], self.handler.fail_next[name] = after, n
        if then_poll:
            self.cycle()

    @rule(kind=st.sampled_from(["crash", "error"]), skip=st.integers(0, 1))
    def commit_struck(self, kind: str, skip: int) -> None:
        """In this cycle (or a later one), a non-empty batch after `skip` more is taken by
        the handler, then not committed."""
        self.store.armed, self.store.skip = kind, skip
        self.cycle()

    @rule()
    def restart(self) -> None:
        """A clean restart: a new poller on the same store."""
        assert self.poller is not None
        self.run(self.poller.aclose())
        self.poller = self.new_poller()

    @rule()
    def cycle(self) -> None:
        results = self.poll_once()
        for result in results.values():
            event(f"a cycle {'succeeded' if result.ok else 'failed'}")
        self.check_nothing_lost([name for name, r in results.items() if r.ok])

    def poll_once(self) -> dict[str, AccountResult]:
        assert self.poller is not None
        armed = self.store.armed
        taken_before = len(self.handler.taken)
        calls_before, attempts_before = self.handler.calls, self.store.attempts
        try:
            results = self.run(self.poller.run_once())
        except SimulatedCrash:
            # The process died after the handler took the batch: a new one takes over.
            assert armed == "crash"
            assert self.store.armed is None
            event("a process crashed between the handler and the commit")
            self.run(self.poller.aclose())
            self.poller = self.new_poller()
            results = {}
        if armed is not None and self.store.armed is None:
            # A struck commit must have come after the handler took that very batch.
            struck = self.store.struck[-1]
            assert Counter(self.handler.taken[taken_before:]) >= Counter(struck)
        # Each batch the handler took was then committed (or struck): else the poller
        # commits by a path this store does not wrap, and the strikes test nothing.
        assert self.handler.calls - calls_before == self.store.attempts - attempts_before
        self.account_deliveries()
        return results

    # -- the model's bookkeeping and checks --------------------------------------------------

    def account_deliveries(self) -> None:
        """Fold the handler's and the store's records since the last step into `owed`."""
        for key in self.handler.taken[self._taken_seen :]:
            self.owed.discard(key)
        self._taken_seen = len(self.handler.taken)
        self.owed.update(self.handler.refused[self._refused_seen :])
        self._refused_seen = len(self.handler.refused)
        for batch in self.store.struck[self._struck_seen :]:
            self.owed.update(batch)
        self._struck_seen = len(self.store.struck)

    def allowance(self) -> Counter[Key]:
        """How often each delivery may be repeated: once per crash that struck it in flight."""
        return Counter(key for batch in self.store.struck for key in batch)

    def check_nothing_lost(self, names: Sequence[str]) -> None:
        """After an account's successful cycle, each of its logs was taken in its state now."""
        taken = set(self.handler.taken)
        for name in names:
            current = {key_of(name, log) for log in self.account(name).logs}
            lost = current - taken
            assert not lost, (
                f"{name}: {len(lost)} logs never delivered in their state: {sorted(lost)[:3]}"
            )
            owed = {key for key in self.owed if key[0] == name} & current
            assert not owed, f"{name}: not offered again after a failure: {sorted(owed)[:3]}"

    @invariant()
    def nothing_delivered_twice(self) -> None:
        allowed = self.allowance()
        counts = Counter(self.handler.taken)
        twice = {key: n for key, n in counts.items() if n > 1 + allowed[key]}
        assert not twice, f"delivered more often than crashes allow: {list(twice.items())[:3]}"

    @invariant()
    def final_never_followed_by_pending(self) -> None:
        final: set[tuple[str, str]] = set()
        for account, message_id, state in self.handler.taken:
            if state[0]:  # final
                final.add((account, message_id))
            else:
                assert (account, message_id) not in final, f"{message_id}: pending after final"


PollerModel.TestCase.settings = settings(
    max_examples=40,
    stateful_step_count=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestPollerModel = PollerModel.TestCase
