"""Polling many accounts into one stream that loses nothing and repeats nothing.

The provider keeps a log for 48 hours and changes its status after it is first seen.
`LogsPoller` walks each account's recent window on every cycle, compares what it
finds with fingerprints of what it delivered before, and hands the handler only the
logs that are new or whose state changed. The checkpoint and the fingerprints are
written to the store only after the handler returned, so a crash at any point
repeats at most the batch in flight and never skips one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import attrs
import httpx

from .. import telemetry
from .._time import RETENTION, utc_now
from ..defaults import DEFAULT_MAX_ATTEMPTS, DEFAULT_TIMEOUT, MAX_PAGE_SIZE
from ..errors import AuthenticationError, LeaseLostError
from ..fetcher import LogsFetcher, Throttle
from ..models import VoiceLog
from ..store import CheckpointStore, Delivered, Lease, LeaseStore
from ._leases import DEFAULT_CLAIM_INTERVAL, DEFAULT_LEASE_TTL, LeaseKeeper, new_owner_id
from ._records import Account, AccountResult, AccountStatus, Handler, add_results, fingerprint

__all__ = [
    "ABANDON_WAIT",
    "AUTH_BACKOFF_FACTOR",
    "DEFAULT_SHUTDOWN_GRACE",
    "MAX_BACKOFF",
    "PRUNE_MARGIN",
    "LogsPoller",
]

logger = logging.getLogger("infobip_voicelogs")

#: Fingerprints are kept this much longer than the retention, for clocks that disagree.
PRUNE_MARGIN = timedelta(hours=1)
#: The longest an account in trouble is left alone between attempts.
MAX_BACKOFF = 3600.0
#: A refused credential will not heal by itself soon: back off this many times longer.
AUTH_BACKOFF_FACTOR = 10
#: Seconds a shutdown (cancellation, `stop()`, `aclose()`) gives the cycles in flight, and a
#: handler call in particular, to finish and commit before they are cancelled.
DEFAULT_SHUTDOWN_GRACE = 5.0
#: After the grace, how long a cancelled handler may take to unwind before it is abandoned.
ABANDON_WAIT = 1.0
# What a cut-short cycle may take beyond ABANDON_WAIT to unwind (its own bookkeeping).
_UNWIND_MARGIN = 0.5


class LogsPoller:
    """Polls many accounts concurrently and delivers every new log, and every change, once.

    ```python
    store = SqliteStore("voicelogs.db", archive=True)

    async def handler(account: str, logs: list[VoiceLog]) -> None:
        ...  # raise to have the same logs offered again next cycle

    async with LogsPoller(accounts, store=store, handler=handler, interval=60) as poller:
        report = await poller.run_once()  # {account name: AccountResult}
        await poller.run()  # every `interval` seconds until stop() or cancellation
    ```

    Each cycle walks `[checkpoint - revisit, now]` of each account (the first
    `[now - backfill, now]`) with `LogsFetcher.iter_logs`. Accounts run concurrently and
    one account's failure is reported and backed off without stalling the others.
    The store is the caller's: the poller never closes it.

    Args:
        accounts: The accounts to poll; names must be unique.
        store: Where checkpoints, fingerprints (and the archive) live.
        handler: `await handler(account_name, logs)` with each batch, oldest log first.
            If it raises, the batch is offered again next cycle.
        interval: Seconds between an account's cycles in `run()`.
        backfill: How far back an account's first cycle reaches (at most 48 hours).
        revisit: How far back before the checkpoint each cycle looks again, to see
            status changes of logs already delivered. Cover the time your logs take to
            settle: a change after that is not seen.
        page_size: Logs per request while walking a window.
        max_batch: The most logs one handler call gets. A window holding more (a big
            backfill) is handed over in several batches as the walk goes, newest batch
            first, so memory stays bounded; each batch is committed once its handler
            call returned.
        max_concurrency: Accounts polled at the same moment.
        client: An `httpx.AsyncClient` shared by every account's fetcher (not closed).
        max_attempts: Tries per request, passed to each `LogsFetcher`.
        timeout: Seconds per request, passed to each `LogsFetcher`.
        shutdown_grace: Seconds that a shutdown (`stop()`, `aclose()`, a first
            cancellation) gives the cycles in flight, and a handler call in particular, to
            finish and commit; then they are cancelled, and a batch whose handler was
            cancelled is offered again next time. A second cancellation skips the grace.
        clock: Returns "now" as an aware datetime (tests and the fake provider move it);
            each `LogsFetcher` gets it too.
        fetcher_options: More keyword arguments for every `LogsFetcher`
            (`max_retry_after`, `on_retry`, ...).
        throttle_factory: Makes the throttle of each account that has none of its own
            (`Account.throttle is None`), e.g. a `RedisBucket` per account on one shared
            Redis client; `None` gives each a `TokenBucket` at the documented rate.
        lease_ttl: With a store that leases accounts (`LeaseStore`, e.g. `PostgresStore`):
            seconds a lease lasts unless renewed. A dead process's accounts pass to the
            others within ``lease_ttl + claim_interval``.
        claim_interval: Seconds between two claims, each renewing the leases held (at most
            half of ``lease_ttl``).
        owner: This process's id in the lease table (default: host, pid and a random
            suffix). Ignored without a `LeaseStore`.

    With a `LeaseStore` (see "Running a fleet" in the docs) every process is given the same
    accounts and polls only those it holds a lease on; each batch is committed only if
    the lease still holds (a fence), else it is counted in `AccountStatus.lost_leases`,
    logged, and left to the new holder.
    """

    def __init__(
        self,
        accounts: Iterable[Account],
        *,
        store: CheckpointStore,
        handler: Handler,
        interval: float = 60.0,
        backfill: timedelta = RETENTION,
        revisit: timedelta = timedelta(hours=1),
        page_size: int = 1000,
        max_batch: int = 5000,
        max_concurrency: int = 200,
        client: httpx.AsyncClient | None = None,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        timeout: float = DEFAULT_TIMEOUT,
        shutdown_grace: float = DEFAULT_SHUTDOWN_GRACE,
        clock: Callable[[], datetime] | None = None,
        fetcher_options: Mapping[str, Any] | None = None,
        throttle_factory: Callable[[Account], Throttle] | None = None,
        lease_ttl: float = DEFAULT_LEASE_TTL,
        claim_interval: float = DEFAULT_CLAIM_INTERVAL,
        owner: str | None = None,
    ) -> None:
        self._accounts: dict[str, Account] = {}
        for account in accounts:
            if account.name in self._accounts:
                raise ValueError(f"two accounts are named {account.name!r}")
            self._accounts[account.name] = account
        if interval <= 0:
            raise ValueError("interval must be positive")
        if backfill <= timedelta(0) or revisit < timedelta(0):
            raise ValueError("backfill must be positive and revisit not negative")
        self._store = store
        self._handler = handler
        self._interval = interval
        self._backfill = min(backfill, RETENTION)
        self._revisit = revisit
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be between 1 and {MAX_PAGE_SIZE}")
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        if not 0 <= shutdown_grace < float("inf"):
            raise ValueError("shutdown_grace must be a finite number of seconds >= 0")
        self._grace = float(shutdown_grace)
        self._page_size = page_size
        self._max_batch = max_batch
        self._slots = asyncio.Semaphore(max_concurrency)
        self._client = client
        self._clock = clock or utc_now
        self._fetcher_options: dict[str, Any] = {
            "max_attempts": max_attempts,
            "timeout": timeout,
            "clock": self._clock,
            **(fetcher_options or {}),
        }
        self._fetchers: dict[str, LogsFetcher] = {}
        self._status = {name: AccountStatus() for name in self._accounts}
        self._stopping = asyncio.Event()
        self._cycling: set[asyncio.Task[Any]] = set()  # tasks inside a cycle right now
        self._cut: set[asyncio.Task[Any]] = set()  # cycles cancelled after the grace
        self._polling: set[str] = set()  # accounts inside a cycle right now
        self._cycle_of: dict[asyncio.Future[Any], asyncio.Task[Any]] = {}  # handler -> cycle
        self._deadline: float | None = None  # when the shutdown grace ends (loop time)
        self._closed = False
        self._throttle_factory = throttle_factory
        self._fleet: LeaseKeeper | None = None
        if isinstance(store, LeaseStore):
            self._fleet = LeaseKeeper(
                store,
                list(self._accounts),
                owner=owner or new_owner_id(),
                ttl=lease_ttl,
                period=claim_interval,
            )
            # Held only once claimed: until then another process may be polling them.
            self._status = {name: AccountStatus(held=False) for name in self._accounts}

    # -- life cycle ------------------------------------------------------------------------

    async def __aenter__(self) -> LogsPoller:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop, give the cycles in flight the shutdown grace, and close the fetchers opened.

        Cycles still running when the grace ends are cancelled; a handler call among them
        is cancelled too, its batch stays uncommitted and is offered again by the next
        cycle. So `aclose` returns within ``shutdown_grace`` plus `ABANDON_WAIT` (a
        handler that ignores its cancellation is abandoned, and logged). A client or store
        the caller gave is not closed. A closed poller polls no more: a later cycle reports
        a `RuntimeError` in its result, and `run()` raises it.
        """
        self.stop()
        self._closed = True
        me = asyncio.current_task()
        # Not the cycle that is calling aclose from its own handler: it finishes after us.
        others = self._cycling - {me, self._cycle_of.get(me) if me is not None else None}
        try:
            if others:
                await self._wind_down(others)
            if self._fleet is not None and self._fleet.holding():
                await self._fleet.release()
                self._mark_held()
        finally:
            fetchers, self._fetchers = self._fetchers, {}
            for name, fetcher in fetchers.items():
                try:
                    await fetcher.aclose()
                except Exception:  # close the others all the same
                    logger.exception(
                        "account %s: closing its fetcher failed",
                        name,
                        extra={"account": name, "outcome": "close_failed"},
                    )

    def stop(self) -> None:
        """Ask `run()` to return: cycles in flight get the shutdown grace, then are cancelled.

        Called before `run()` starts, it is remembered: that `run()` returns at once.
        """
        if self._stopping.is_set():
            return
        self._stopping.set()
        with contextlib.suppress(RuntimeError):  # no running loop: run() starts the clock
            self._deadline = asyncio.get_running_loop().time() + self._grace

    @property
    def interval(self) -> float:
        """Seconds between an account's cycles in `run()`."""
        return self._interval

    @property
    def shutdown_grace(self) -> float:
        """Seconds a shutdown gives the cycles in flight before cancelling them."""
        return self._grace

    @property
    def accounts(self) -> dict[str, Account]:
        """The accounts polled, by name."""
        return dict(self._accounts)

    def status(self) -> dict[str, AccountStatus]:
        """Each account's running totals, as frozen snapshots taken now."""
        return dict(self._status)

    # -- cycles ----------------------------------------------------------------------------

    async def run_once(self) -> dict[str, AccountResult]:
        """Poll every account once, concurrently (an explicit call ignores any back-off).

        Returns each account's result; an account's failure is in its result, never raised.
        With a `LeaseStore`, it first claims, then polls (and returns) only the accounts
        this process holds.
        Also prunes fingerprints of logs past the provider's retention. Cancelled, each
        handler call in flight gets the shutdown grace to finish and commit.
        """
        names = list(self._accounts)
        if self._fleet is not None:
            await self._claim(self._fleet)
            names = [name for name in names if self._fleet.held(name) is not None]
        results = await asyncio.gather(*(self._cycle(name) for name in names))
        await self._prune()
        return dict(zip(names, results, strict=True))

    async def run(self) -> None:
        """Poll every account every `interval` seconds until `stop()` or cancellation.

        Each account keeps its own rhythm, so a slow or failing account delays nobody
        else. On `stop()` (or a first cancellation) the cycles in flight get
        ``shutdown_grace`` seconds to finish, a handler call to return and be committed;
        then they are cancelled and what they had not committed is offered again next time.
        A second cancellation cancels them at once. Raises `RuntimeError` once closed.
        """
        if self._closed:
            raise RuntimeError("the poller is closed")
        tasks = {
            asyncio.create_task(self._account_loop(name), name=f"infobip-voicelogs poll {name}")
            for name in self._accounts
        }
        tasks.add(asyncio.create_task(self._prune_loop(), name="infobip-voicelogs prune"))
        if self._fleet is not None:
            await self._claim(self._fleet)  # before the loops look for their leases
            tasks.add(
                asyncio.create_task(self._lease_loop(self._fleet), name="infobip-voicelogs lease")
            )
        try:
            await self._supervise(tasks)
        finally:
            self._stopping.clear()
            self._deadline = None
            if self._fleet is not None:
                await self._fleet.release()  # the others may take the accounts at once
                self._mark_held()

    async def _supervise(self, tasks: set[asyncio.Task[None]]) -> None:
        """Wait for the loops to end; pass cancellations on to them; keep the grace."""
        loop = asyncio.get_running_loop()
        stopped = asyncio.ensure_future(self._stopping.wait())
        pending, cancelled = set(tasks), False
        try:
            while pending:
                if stopped.done() and self._deadline is None:
                    self._deadline = loop.time() + self._grace  # stop() came before run()
                left = None if self._deadline is None else self._deadline - loop.time()
                if left is not None and left <= 0:
                    await self._cut_short(pending)  # the grace is over
                    break
                watch = pending if stopped.done() else pending | {stopped}
                try:
                    done, _ = await asyncio.wait(
                        watch, timeout=left, return_when=asyncio.FIRST_COMPLETED
                    )
                except asyncio.CancelledError:
                    # The first: each handler in flight gets the grace. A second: at once.
                    cancelled = True
                    for task in pending:
                        task.cancel()
                    continue
                pending -= done
        finally:
            stopped.cancel()
        if cancelled:
            raise asyncio.CancelledError
        for task in tasks:  # the loops catch every Exception: anything else is a bug
            if task.done() and not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]

    async def _wind_down(self, cycles: set[asyncio.Task[Any]]) -> None:
        """Wait for `cycles` until the shutdown deadline, then cut them short."""
        loop = asyncio.get_running_loop()
        deadline = self._deadline if self._deadline is not None else loop.time() + self._grace
        try:
            _, pending = await asyncio.wait(cycles, timeout=max(0.0, deadline - loop.time()))
        except asyncio.CancelledError:
            for task in cycles:  # aclose itself cancelled: no more grace for anyone
                task.cancel()
            raise
        if pending:
            await self._cut_short(pending)

    async def _cut_short(self, tasks: set[asyncio.Task[Any]]) -> None:
        """Cancel `tasks` after the grace, and wait (boundedly) for them to unwind."""
        for task in tasks:
            self._cut.add(task)  # `_cycle` reports this cancellation as the cycle's failure
            task.cancel()
        _, stuck = await asyncio.wait(tasks, timeout=ABANDON_WAIT + _UNWIND_MARGIN)
        for task in stuck:
            logger.error("%s did not stop after its cancellation; abandoned", task.get_name())

    async def _account_loop(self, name: str) -> None:
        loop = asyncio.get_running_loop()
        fleet = self._fleet
        while not self._stopping.is_set():
            if fleet is not None and fleet.held(name) is None:
                await self._wait_for_lease(fleet)  # another process polls it meanwhile
                continue
            await self._cycle(name)
            delay = max(0.0, self._status[name].next_due - loop.time())
            await self._sleep_unless_stopped(delay)

    async def _wait_for_lease(self, fleet: LeaseKeeper) -> None:
        stopped = asyncio.ensure_future(self._stopping.wait())
        either: set[asyncio.Future[Any]] = {fleet.changed(), stopped}
        try:
            await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()

    async def _lease_loop(self, fleet: LeaseKeeper) -> None:
        while not self._stopping.is_set():
            await self._claim(fleet)
            await self._sleep_unless_stopped(fleet.period)

    async def _claim(self, fleet: LeaseKeeper) -> None:
        """One claim: renew, shed, claim; mark which accounts this process holds now."""
        busy = {name for name in self._accounts if self._in_cycle(name)}
        try:
            gained, lost = await fleet.refresh(busy)
        except Exception as exc:  # the store is down: keep what we trust, claim again later
            logger.warning(
                "claiming accounts failed (%s: %s); trying again in %g s",
                type(exc).__name__,
                exc,
                fleet.period,
            )
        else:
            for name in lost:
                telemetry.lease_lost(name)
            if gained or lost:
                logger.info(
                    "leases: %d accounts gained, %d lost; this poller holds %d",
                    len(gained),
                    len(lost),
                    len(fleet.holding()),
                )
        self._mark_held()
        telemetry.leases_held(len(fleet.holding()))

    def _mark_held(self) -> None:
        holding = self._fleet.holding() if self._fleet is not None else None
        for name, status in self._status.items():
            held = holding is None or name in holding
            if status.held is not held:
                self._status[name] = attrs.evolve(status, held=held)

    def _in_cycle(self, name: str) -> bool:
        return name in self._polling

    async def _prune_loop(self) -> None:
        while not self._stopping.is_set():
            await self._sleep_unless_stopped(max(self._interval, 300.0))
            if not self._stopping.is_set():
                await self._prune()

    async def _prune(self) -> None:
        try:
            await self._store.prune(before=self._clock() - RETENTION - PRUNE_MARGIN)
        except Exception:  # pruning is housekeeping: a failure must not stop the polling
            logger.exception("pruning old fingerprints failed; trying again later")

    async def _sleep_unless_stopped(self, delay: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=delay)

    async def _cycle(self, name: str) -> AccountResult:
        task = asyncio.current_task()
        assert task is not None
        self._cycling.add(task)
        started = asyncio.get_running_loop().time()
        try:
            with telemetry.cycle_span(name):
                async with self._slots:
                    lease = None
                    if self._fleet is not None:
                        await self._fleet.settled()
                        lease = self._fleet.held(name)
                    # Marked busy in the same step as the lease is read: a claim sent from
                    # now on will not shed this account while it is polled.
                    self._polling.add(name)
                    result = await self._poll(name, lease)
        except asyncio.CancelledError:
            # Cut short by aclose() or stop() after the grace, and by nothing else: that is
            # this cycle's failure, reported in its result, not a cancellation of the caller.
            if task not in self._cut or task.cancelling() > 1:
                raise
            task.uncancel()
            result = AccountResult(
                error=RuntimeError(
                    "the poller shut down before the cycle finished; "
                    "what it had not committed is offered again next time"
                )
            )
        finally:
            self._cycling.discard(task)
            self._polling.discard(name)
            self._cut.discard(task)
        now = asyncio.get_running_loop().time()
        self._record(name, result, now)
        status = self._status[name]
        telemetry.record_cycle(
            name,
            seconds=now - started,
            outcome="ok" if result.error is None else type(result.error).__name__,
            new=result.new,
            changed=result.changed,
            newest_sent_at=status.newest_sent_at,
            consecutive_failures=status.consecutive_failures,
        )
        return result

    async def _poll(self, name: str, lease: Lease | None) -> AccountResult:
        result = AccountResult()
        try:
            if self._closed:
                raise RuntimeError("the poller is closed")
            if self._fleet is not None and lease is None:
                raise LeaseLostError(f"this poller holds no lease on account {name!r}")
            now = self._clock()
            since = await self._window_start(name, now)
            walk = self._fetcher(name).iter_logs(
                sent_since=since, sent_until=now, page_size=self._page_size
            )
            seen: list[VoiceLog] = []
            async with contextlib.aclosing(walk):
                async for log in walk:
                    seen.append(log)
                    if len(seen) >= self._max_batch:
                        # A batch mid-walk keeps the checkpoint where it was: if a later
                        # batch fails, the next cycle walks the same window and, by the
                        # fingerprints just committed, offers only what this one did not.
                        batch = await self._hand_over(name, lease, seen, checkpoint=None)
                        result = add_results(result, batch)
                        seen = []
            last = await self._hand_over(name, lease, seen, checkpoint=now)
            return add_results(result, last)
        except Exception as exc:  # one account's failure is its own, reported not raised
            # What earlier batches delivered (and committed) still counts.
            return attrs.evolve(result, error=exc)

    async def _hand_over(
        self,
        name: str,
        lease: Lease | None,
        seen: Sequence[VoiceLog],
        *,
        checkpoint: datetime | None,
    ) -> AccountResult:
        """Deliver the new and changed logs among `seen`, then commit them (and `checkpoint`)."""
        batch, new, changed = await self._changes(name, seen)
        if lease is not None:
            self._check_lease(lease)
        if batch:
            logs = [item.log for item in batch]
            logs.reverse()  # oldest first: the order things happened in
            await self._deliver(name, logs, self._committer(name, lease, batch, checkpoint))
        elif checkpoint is not None:
            await self._committer(name, lease, (), checkpoint)()
        dated = [item.log.sent_at for item in batch if item.log.sent_at is not None]
        return AccountResult(
            delivered=len(batch),
            new=new,
            changed=changed,
            newest_sent_at=max(dated, default=None),
        )

    def _check_lease(self, lease: Lease) -> None:
        """Refuse to hand a batch over on a lease this process can no longer trust.

        The walk may have taken longer than the lease (a slow provider, a paused process):
        the handler must not get logs that the new holder delivers too. The commit is
        fenced in any case; this only keeps the duplicates to a batch already in a handler.
        """
        assert self._fleet is not None
        now = self._fleet.held(lease.account)
        if now is None or now.fence != lease.fence:
            raise LeaseLostError(
                f"the lease on account {lease.account!r} lapsed or passed to another poller"
                " before its batch was handed over"
            )

    def _committer(
        self,
        name: str,
        lease: Lease | None,
        batch: Sequence[Delivered],
        checkpoint: datetime | None,
    ) -> Callable[[], Any]:
        """The commit of one batch: fenced by the cycle's lease when the store leases."""
        if lease is None:
            return lambda: self._store.commit(name, checkpoint=checkpoint, delivered=batch)
        store = self._store
        assert isinstance(store, LeaseStore)
        return lambda: store.commit_leased(lease, checkpoint=checkpoint, delivered=batch)

    async def _window_start(self, name: str, now: datetime) -> datetime:
        checkpoint = await self._store.checkpoint(name)
        since = now - self._backfill if checkpoint is None else checkpoint - self._revisit
        oldest = now - RETENTION
        if checkpoint is not None and checkpoint < oldest:
            # Logs sent between the checkpoint and `oldest` were never seen, and are gone.
            # (A revisit reaching past `oldest` loses nothing: those logs were delivered.)
            logger.warning(
                "account %s was last polled at %s, beyond the provider's 48-hour retention:"
                " logs sent before %s may be lost",
                name,
                checkpoint.isoformat(),
                oldest.isoformat(),
                extra={"account": name, "outcome": "beyond_retention"},
            )
        return min(max(since, oldest), now)

    async def _changes(
        self, name: str, seen: Sequence[VoiceLog]
    ) -> tuple[list[Delivered], int, int]:
        tracked = {log.message_id: log for log in seen if log.message_id is not None}
        untracked = sum(1 for log in seen if log.message_id is None)
        if untracked:
            logger.warning(
                "account %s: %d logs without a messageId cannot be tracked and were skipped",
                name,
                untracked,
                extra={"account": name, "outcome": "untracked"},
            )
        known = await self._store.fingerprints(name, tracked.keys())
        batch: list[Delivered] = []
        new = changed = 0
        for message_id, log in tracked.items():
            digest = fingerprint(log)
            before = known.get(message_id)
            if before == digest:
                continue
            if before is None:
                new += 1
            else:
                changed += 1
            batch.append(Delivered(log, digest))
        return batch, new, changed

    async def _deliver(self, name: str, logs: list[VoiceLog], commit: Callable[[], Any]) -> None:
        async def hand_over() -> None:
            await self._handler(name, logs)
            await commit()

        # The handler runs in a task of its own, so that cancelling this cycle can give it
        # the shutdown grace to finish and commit, instead of interrupting it mid-batch.
        task = asyncio.ensure_future(hand_over())
        cycle = asyncio.current_task()
        if cycle is not None:
            self._cycle_of[task] = cycle
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            await self._finish_or_abandon(name, task, len(logs))
            raise
        finally:
            self._cycle_of.pop(task, None)

    async def _finish_or_abandon(self, name: str, task: asyncio.Future[None], size: int) -> None:
        """A cycle was cancelled while its handler ran: grant the grace, then cancel it.

        A cancellation after `stop()` is the second request to stop (the first one's grace
        is kept by whoever stopped): the handler is cancelled at once.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (0.0 if self._stopping.is_set() else self._grace)
        with contextlib.suppress(asyncio.CancelledError):  # cancelled again: no more grace
            await asyncio.wait({task}, timeout=max(0.0, deadline - loop.time()))
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait({task}, timeout=ABANDON_WAIT)
        if not task.done():
            logger.error(
                "account %s: the handler ignored its cancellation and was abandoned;"
                " its batch of %d logs will be offered again",
                name,
                size,
                extra={"account": name, "outcome": "handler_abandoned"},
            )
        elif task.cancelled():
            logger.warning(
                "account %s: the handler was cancelled at shutdown; its batch of %d logs"
                " will be offered again",
                name,
                size,
                extra={"account": name, "outcome": "handler_cancelled"},
            )
        elif task.exception() is not None:
            logger.error(
                "account %s: handing over a batch failed while the poller was cancelled;"
                " it will be offered again",
                name,
                exc_info=task.exception(),
                extra={"account": name, "outcome": "handler_failed"},
            )

    def _fetcher(self, name: str) -> LogsFetcher:
        fetcher = self._fetchers.get(name)
        if fetcher is None:
            account = self._accounts[name]
            fetcher = LogsFetcher(
                account.base_url,
                account.auth,
                format=account.format,
                throttle=self._throttle_for(account),
                client=self._client,
                allow_insecure=account.allow_insecure,
                account=name,
                **self._fetcher_options,
            )
            self._fetchers[name] = fetcher
        return fetcher

    def _throttle_for(self, account: Account) -> Throttle | None:
        if account.throttle is not None or self._throttle_factory is None:
            return account.throttle
        return self._throttle_factory(account)

    def _record(self, name: str, result: AccountResult, now: float) -> None:
        before = self._status[name]
        stats = self._fetchers[name].stats if name in self._fetchers else None
        changes: dict[str, Any] = {
            "cycles": before.cycles + 1,
            "new": before.new + result.new,
            "changed": before.changed + result.changed,
            "last_polled": self._clock(),
        }
        if result.newest_sent_at is not None and (
            before.newest_sent_at is None or result.newest_sent_at > before.newest_sent_at
        ):
            changes["newest_sent_at"] = result.newest_sent_at
        if stats is not None:
            changes.update(
                requests=stats.requests, retries=stats.retries, rate_limited=stats.rate_limited
            )
        if result.error is None:
            changes.update(consecutive_failures=0, next_due=now + self._interval)
            self._status[name] = attrs.evolve(before, **changes)
            return
        if isinstance(result.error, LeaseLostError) and self._fleet is not None:
            # Not this account's failure: another process holds it now and delivers the
            # batch this one could not commit (fenced: nothing of it was written here).
            self._fleet.forget(name)
            telemetry.batch_fenced(name)
            changes.update(lost_leases=before.lost_leases + 1, held=False, last_error=result.error)
            self._status[name] = attrs.evolve(before, **changes)
            logger.warning(
                "account %s: its lease passed to another poller; the batch in flight was not"
                " committed here, and the new holder delivers it again",
                name,
                extra={"account": name, "outcome": "lease_lost"},
            )
            return
        failures = before.consecutive_failures + 1
        backoff = self._interval * 2 ** min(failures - 1, 10)
        if isinstance(result.error, AuthenticationError):
            backoff *= AUTH_BACKOFF_FACTOR
        next_due = now + min(backoff, max(MAX_BACKOFF, self._interval))
        changes.update(
            failures=before.failures + 1,
            consecutive_failures=failures,
            last_error=result.error,
            next_due=next_due,
        )
        self._status[name] = attrs.evolve(before, **changes)
        logger.warning(
            "account %s: cycle failed (%s: %s); next attempt in %.0f s",
            name,
            type(result.error).__name__,
            result.error,
            next_due - now,
            extra={"account": name, "outcome": type(result.error).__name__},
        )
