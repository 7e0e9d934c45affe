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
import math
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

import attrs
import httpx

from .. import telemetry
from .._time import RETENTION, seconds, utc_now
from ..connections import poller_client
from ..defaults import DEFAULT_MAX_ATTEMPTS, DEFAULT_TIMEOUT, MAX_PAGE_SIZE, MAX_PULL_LIMIT
from ..delivery import (
    DEFAULT_CLAIM_INTERVAL,
    DEFAULT_LEASE_TTL,
    DEFAULT_LOOK_EVERY,
    DEFAULT_MAX_DRAINS,
    DEFAULT_SHUTDOWN_GRACE,
    RELEASE_TIMEOUT,
    AccountResult,
    Checkpoints,
    DeliveryCore,
    Handler,
    InboxWatch,
    LeaseKeeper,
    LeaseState,
    Shutdown,
    add_results,
    new_owner_id,
)
from ..errors import LeaseLostError
from ..fetcher import LogsFetcher, Throttle
from ..reports import VoiceReport, decode_inbox, encode_inbox
from ..store import CheckpointStore, InboxStore, Lease, ReportStore, solo_leases
from ._cycle import Walk
from ._records import Account, AccountStatus, next_status

logger = logging.getLogger("infobip_voicelogs")

#: The most pulls of an account's reports in one cycle (each of up to `MAX_PULL_LIMIT`):
#: a backlog larger than that is pulled on by the next cycles.
MAX_PULLS_PER_CYCLE = 20
#: Fingerprints are kept this much longer than the retention, for clocks that disagree.
PRUNE_MARGIN = timedelta(hours=1)
#: Seconds between the cycles of an account whose delivery reports flow: the logs then only
#: find what the webhooks lost, and 10 minutes is far inside their 48 hours.
DEFAULT_RECONCILE = 600.0


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
            If it raises, the batch is offered again next cycle. One handler typed
            `Sequence[VoiceLog | VoiceReport]` may serve a `ReportsReceiver` on the same
            store too: each state reaches it once, from whichever source came first.
        interval: Seconds (or a `timedelta`) between an account's cycles in `run()`.
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
            `None`: the poller makes one for all its accounts (`connections.poller_client`:
            a small pool per host, one TLS context, each account's connection kept across
            cycles) and closes it in `aclose`.
        max_attempts: Tries per request, passed to each `LogsFetcher`.
        timeout: Seconds per request, passed to each `LogsFetcher`.
        shutdown_grace: Seconds (or a `timedelta`) that a shutdown (`stop()`, `aclose()`, a first
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
        lease_ttl: Seconds (or a `timedelta`) a lease lasts unless renewed. With a fleet's
            store (`PostgresStore`), a dead process's accounts pass to the others within
            ``lease_ttl + claim_interval``.
        claim_interval: Seconds (or a `timedelta`) between two claims, each renewing the
            leases held (at most half of ``lease_ttl``).
        owner: This process's id in the lease table (default: host, pid and a random
            suffix).
        reconcile: Seconds (or a `timedelta`, default 10 minutes) between the cycles of an
            account whose delivery reports flow: its last report, committed by any
            `ReportsReceiver` to the same store (`ReportStore.report_activity`, read once a
            claim period), is within `reconcile` of now. Such a cycle delivers only what
            no report brought; its final states count as `AccountStatus.webhook_lost`
            (and `reports.lost`). An account whose reports stop goes back to `interval`.
            A store without reports: every account is polled every `interval`.
        inbox_look_every: Seconds (or a `timedelta`) between two looks at the store's inbox
            of reports, which only catch a wake-up lost on the way (a receiver records each
            batch there and the store wakes the account's holder). Default: every second
            for a store that wakes this process only (SQLite: a receiver in another process
            is found by the look), every claim period for one whose wake-ups cross
            processes (PostgreSQL's `NOTIFY`).

    Every store leases: `SqliteStore` grants every account to its one poller (and refuses
    a second poller on the same store object), a `CheckpointStore` without leases is
    wrapped to do the same, and with `PostgresStore` (see "Running a fleet" in the docs)
    every process is given the same accounts and polls only those it holds a lease on.
    Each batch is committed only if the lease still holds (a fence), else it is counted
    in `AccountStatus.lost_leases`, logged, and left to the new holder. One account has
    one cycle at a time: a `run_once()` during `run()`, or a second `run()`, waits for
    the cycle in flight of each account before starting its own.
    """

    def __init__(
        self,
        accounts: Iterable[Account],
        *,
        store: CheckpointStore,
        handler: Handler,
        interval: float | timedelta = 60.0,
        backfill: timedelta = RETENTION,
        revisit: timedelta = timedelta(hours=1),
        page_size: int = 1000,
        max_batch: int = 5000,
        max_concurrency: int = 200,
        client: httpx.AsyncClient | None = None,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        timeout: float = DEFAULT_TIMEOUT,
        shutdown_grace: float | timedelta = DEFAULT_SHUTDOWN_GRACE,
        clock: Callable[[], datetime] | None = None,
        fetcher_options: Mapping[str, Any] | None = None,
        throttle_factory: Callable[[Account], Throttle] | None = None,
        lease_ttl: float | timedelta = DEFAULT_LEASE_TTL,
        claim_interval: float | timedelta = DEFAULT_CLAIM_INTERVAL,
        owner: str | None = None,
        reconcile: float | timedelta = DEFAULT_RECONCILE,
        inbox_look_every: float | timedelta | None = None,
    ) -> None:
        self._accounts: dict[str, Account] = {}
        for account in accounts:
            if account.name in self._accounts:
                raise ValueError(f"two accounts are named {account.name!r}")
            self._accounts[account.name] = account
        interval = seconds(interval)
        if interval <= 0:
            raise ValueError("interval must be positive")
        if backfill <= timedelta(0) or revisit < timedelta(0):
            raise ValueError("backfill must be positive and revisit not negative")
        self._store = leasing = solo_leases(store)
        self._interval = interval
        self._reconcile = seconds(reconcile)
        if self._reconcile <= 0:
            raise ValueError("reconcile must be positive")
        # Each account's last delivery report, read from the store once a claim period (a
        # store without reports: nobody's; a failed read keeps the last one).
        self._reports = store if isinstance(store, ReportStore) else None
        self._store_inbox = store if isinstance(store, InboxStore) else None
        # Pulling accounts: when their logs are next walked (loop time), every `reconcile`.
        self._walk_due: dict[str, float] = {}
        self._last_reports: dict[str, datetime] = {}
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be between 1 and {MAX_PAGE_SIZE}")
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        self._slots = asyncio.Semaphore(max_concurrency)
        self._client = client
        self._owns_client = client is None
        self._max_connections = max_concurrency
        self._clock = clock or utc_now
        self._fetcher_options: dict[str, Any] = {
            "max_attempts": max_attempts,
            "timeout": timeout,
            "clock": self._clock,
            **(fetcher_options or {}),
        }
        self._fetchers: dict[str, LogsFetcher] = {}
        # Held only once claimed: until then another process may be polling them.
        unknown = AccountStatus(lease=LeaseState.UNKNOWN)
        self._status = dict.fromkeys(self._accounts, unknown)
        self._shutdown = Shutdown(seconds(shutdown_grace))
        # One cycle per account at a time, whoever asks (run, run_once, a second run).
        self._turns = {name: asyncio.Lock() for name in self._accounts}
        self._closed = False
        self._runs = 0  # run() calls under way: the last to end resets the stop
        self._throttle_factory = throttle_factory
        self._leases = LeaseKeeper(
            leasing,
            list(self._accounts),
            owner=owner or new_owner_id(),
            lease_ttl=seconds(lease_ttl),
            claim_interval=seconds(claim_interval),
        )
        # Checkpoints read once per lease; quiet cycles' advances flushed together once a
        # claim period (one store call for every quiet account). Not once an `interval`:
        # with cycles back to back that would be a flush per cycle again.
        self._checkpoints = Checkpoints(leasing, max_batch=max_batch)
        self._flush_interval = self._leases.claim_interval
        # The one way to the handler, for the logs and for the reports in the store's inbox.
        self._core = DeliveryCore(
            leasing,
            handler,
            shutdown=self._shutdown,
            leases=self._leases,
            checkpoints=self._checkpoints,
            max_batch=max_batch,
            decode=decode_inbox,
        )
        self._inbox = (
            InboxWatch(
                store,
                self._core,
                self._leases,
                self._shutdown,
                look_every=self._look_every(store, inbox_look_every),
                max_concurrency=min(max_concurrency, DEFAULT_MAX_DRAINS),
                on_lost=self._lost,
                on_result=self._reports_delivered,
            )
            if isinstance(store, InboxStore)
            else None
        )
        self._walk = Walk(
            core=self._core,
            leases=self._leases,
            checkpoints=self._checkpoints,
            clock=self._clock,
            backfill=min(backfill, RETENTION),
            revisit=revisit,
            page_size=page_size,
            max_batch=max_batch,
        )

    def _look_every(self, store: object, given: float | timedelta | None) -> float:
        if given is not None:
            return seconds(given)
        if getattr(store, "inbox_wakes_other_processes", False):
            return self._leases.claim_interval
        return DEFAULT_LOOK_EVERY

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
        # Not the cycle that is calling aclose from its own handler: it finishes after us.
        others = self._shutdown.others()
        try:
            if others:
                await self._shutdown.wind_down(others)
            if self._leases.registered:
                await self._flush_and_release()
        finally:
            fetchers, self._fetchers = self._fetchers, {}
            client, owned = self._client, self._owns_client
            if owned:
                self._client = None
            for name, fetcher in fetchers.items():
                try:
                    await fetcher.aclose()
                except Exception:  # close the others all the same
                    logger.exception(
                        "account %s: closing its fetcher failed",
                        name,
                        extra={"account": name, "outcome": "close_failed"},
                    )
            if owned and client is not None:
                await client.aclose()

    def stop(self) -> None:
        """Ask `run()` to return: cycles in flight get the shutdown grace, then are cancelled.

        Called before `run()` starts, it is remembered: that `run()` returns at once.
        """
        self._shutdown.stop()

    @property
    def interval(self) -> float:
        """Seconds between an account's cycles in `run()`."""
        return self._interval

    @property
    def reconcile(self) -> float:
        """Seconds between the cycles of an account whose delivery reports flow."""
        return self._reconcile

    @property
    def lease_ttl(self) -> float:
        """Seconds a lease lasts unless renewed (also how long claims may fail before
        `/healthz` answers 503)."""
        return self._leases.lease_ttl

    @property
    def claim_interval(self) -> float:
        """Seconds between two claims."""
        return self._leases.claim_interval

    @property
    def shutdown_grace(self) -> float:
        """Seconds a shutdown gives the cycles in flight before cancelling them."""
        return self._shutdown.grace

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
        It first claims, then polls (and returns) only the accounts this process holds
        (with a one-process store, all of them once the claim worked). If the claim failed
        (the store unreachable, or another poller holding a SQLite file), every account
        nobody here knows the holder of is returned too, failed with the claim's error, and
        counted in its status as a failed cycle. An account whose
        cycle is in flight (in `run()`) is polled after that cycle ends.
        The leases are renewed every `claim_interval` while the cycles run, so a long one
        (a 48-hour backfill) keeps its lease. Also prunes fingerprints of logs past the
        provider's retention. Cancelled, each handler call in flight gets the shutdown
        grace to finish and commit. Each call reads the checkpoints afresh, and before it
        returns stores the quiet accounts' checkpoints in one `advance` call (a failure
        of that is logged: it only widens the next window).
        """
        # An explicit call sees the store as it is now (a checkpoint set between two calls);
        # `run()` reads each checkpoint once per lease.
        self._checkpoints.drop_cached()
        await self._claim()
        names = [name for name in self._accounts if self._leases.held(name) is not None]
        # A claim that failed leaves the rest unknown, not polled elsewhere: they are this
        # call's failures (the claim's error), so that the caller learns nothing was polled.
        unclaimed = self._unclaimed(names)
        done = asyncio.Event()
        renewing = asyncio.create_task(self._renew_until(done), name="infobip-voicelogs renew")
        try:
            # The reports waiting first: the logs then deliver only what no report brought.
            await self._deliver_inboxes(names)
            results = await asyncio.gather(*(self._cycle(name) for name in names))
        finally:
            done.set()  # a claim in flight finishes (bounded by its own timeout), not cut
            await asyncio.shield(renewing)
        await self._flush(self._leases.lease_ttl)  # what it found, stored before it returns
        await self._prune()
        report = dict(zip(names, results, strict=True))
        now = asyncio.get_running_loop().time()
        for name, result in unclaimed.items():
            self._record(name, result, now, quiet=True)  # the claim's failure is logged once
            report[name] = result
        return {name: report[name] for name in self._accounts if name in report}

    async def _deliver_inboxes(self, names: list[str]) -> None:
        """Deliver the reports waiting in these accounts' inboxes now (failures are logged
        and tried again by the inbox watch)."""
        if self._inbox is not None:
            await self._inbox.deliver_now(names)

    def _reports_delivered(self, name: str, result: AccountResult) -> None:
        """Reports of `name` came through the inbox: its reports flow, as of now."""
        self._last_reports[name] = self._clock()
        if result.delivered:
            status = self._status[name]
            counts: dict[str, Any] = {
                "new": status.new + result.new,
                "changed": status.changed + result.changed,
            }
            self._status[name] = attrs.evolve(status, **counts)

    def _lost(self, name: str) -> None:
        """A delivery of `name`'s reports found its lease gone (fenced: nothing of it was
        written): counted, logged, and the account handed back to the keeper."""
        shed = self._leases.was_shed(name)
        self._leases.forget(name)
        self._checkpoints.forget(name)
        status = self._status[name]
        counted: dict[str, Any] = {"lost_leases": status.lost_leases + 1}
        self._status[name] = attrs.evolve(status, **counted)
        self._mark_leases()
        if not shed:
            telemetry.batch_fenced(name)
            logger.warning(
                "account %s: its lease lapsed or passed to another poller while its reports"
                " were handed over; the new holder delivers them",
                name,
                extra={"account": name, "outcome": "lease_lost"},
            )

    def _unclaimed(self, held: list[str]) -> dict[str, AccountResult]:
        """After a failed claim, a result for each account nobody here knows the holder of."""
        error = self._leases.last_error
        if error is None:
            return {}
        return {
            name: AccountResult(error=error)
            for name in self._accounts
            if name not in held and self._leases.state(name) is LeaseState.UNKNOWN
        }

    async def _renew_until(self, done: asyncio.Event) -> None:
        """Claim every `claim_interval` until `done` (a `run_once` ended)."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), timeout=self._leases.claim_interval)
            if done.is_set():
                return
            await self._claim()

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
        await self._claim()  # before the loops look for their leases
        # The reports waiting first: the first cycles then deliver only what none brought.
        await self._deliver_inboxes(list(self._accounts))
        tasks = {
            asyncio.create_task(self._account_loop(name), name=f"infobip-voicelogs poll {name}")
            for name in self._accounts
        }
        tasks.add(asyncio.create_task(self._prune_loop(), name="infobip-voicelogs prune"))
        tasks.add(asyncio.create_task(self._lease_loop(), name="infobip-voicelogs lease"))
        tasks.add(asyncio.create_task(self._flush_loop(), name="infobip-voicelogs advance"))
        if self._inbox is not None:
            tasks.add(asyncio.create_task(self._inbox.run(), name="infobip-voicelogs inbox"))
        self._runs += 1
        try:
            await self._shutdown.supervise(tasks)
        finally:
            self._runs -= 1
            if not self._runs:  # the last run to end: a stop() ended every one of them
                self._shutdown.reset()
                await self._flush_and_release()  # the others may take the accounts at once

    async def _account_loop(self, name: str) -> None:
        loop = asyncio.get_running_loop()
        leases = self._leases
        while not self._shutdown.stopping.is_set():
            if leases.held(name) is None:
                # Another process polls it meanwhile (or it was shed: drained, it starts no
                # new cycle here): wait for the leases to change.
                await self._shutdown.until_stopped_or(leases.changed())
                continue
            await self._cycle(name)
            delay = max(0.0, self._status[name].next_due - loop.time())
            await self._shutdown.sleep(delay)

    async def _lease_loop(self) -> None:
        while not self._shutdown.stopping.is_set():
            await self._claim()
            await self._shutdown.sleep(self._leases.claim_interval)

    async def _flush_loop(self) -> None:
        while not self._shutdown.stopping.is_set():
            await self._shutdown.sleep(self._flush_interval)
            if not self._shutdown.stopping.is_set():  # else `run` flushes once they ended
                await self._flush(self._leases.lease_ttl)

    async def _flush(self, within: float) -> None:
        """Send the quiet cycles' advances (one store call); hand refused accounts back."""
        refused = await self._checkpoints.flush(within)
        for name, lease in refused.items():
            held = self._leases.held(name)
            if held is not None and held.fence == lease.fence:
                self._leases.forget(name)  # not claimed again meanwhile: it is gone
            telemetry.batch_fenced(name)
        if refused:
            self._mark_leases()
            logger.warning(
                "the checkpoints of %d quiet accounts were refused: their leases lapsed or"
                " passed to another poller (nothing was written for them)",
                len(refused),
                extra={"outcome": "lease_lost"},
            )

    async def _flush_and_release(self) -> None:
        """The cycles have ended: their quiet advances, then every lease (each bounded)."""
        try:
            await self._flush(RELEASE_TIMEOUT)
        finally:  # cancelled meanwhile: the leases are given back all the same
            await self._leases.release()
            self._checkpoints.clear()  # nothing cached under them is trusted afterwards
            self._mark_leases()

    async def _claim(self) -> None:
        """One claim: renew, shed, claim; mark which accounts this process holds now.

        Then whose reports flow, for every account in one store call (see `_flowing`).
        """
        gained = await self._leases.claim()
        self._mark_leases()
        if gained and self._inbox is not None:
            self._inbox.look()  # the accounts gained may have reports waiting
        await self._read_report_activity()

    async def _read_report_activity(self) -> None:
        if self._reports is None:
            return
        try:
            self._last_reports = await self._reports.report_activity(list(self._accounts))
        except Exception as exc:  # a failed read keeps the last one: the next claim reads again
            logger.warning(
                "reading whose delivery reports flow failed (%s: %s); trying again next claim",
                type(exc).__name__,
                exc,
                exc_info=logger.isEnabledFor(logging.DEBUG),
                extra={"outcome": "report_activity_failed"},
            )

    def _flowing(self, name: str) -> bool:
        """Whether the account's last report (any receiver's) is within `reconcile` of now."""
        last = self._last_reports.get(name)
        return last is not None and self._clock() - last < timedelta(seconds=self._reconcile)

    def _mark_leases(self) -> None:
        """Copy the keeper's view into each status, and keep the lag series to held ones."""
        failing = self._leases.failing_since
        since = None
        if failing is not None:  # loop time, on the poller's clock
            ago = asyncio.get_running_loop().time() - failing
            since = self._clock() - timedelta(seconds=ago)
        for name, status in self._status.items():
            state = self._leases.state(name)
            telemetry.account_held(name, state is LeaseState.HELD)
            # The first failure's time stays as first marked (the conversion moves a little).
            failing_since = since and (status.claims_failing_since or since)
            if status.lease is not state or status.claims_failing_since != failing_since:
                changes: dict[str, Any] = {"lease": state, "claims_failing_since": failing_since}
                self._status[name] = attrs.evolve(status, **changes)

    async def _prune_loop(self) -> None:
        while not self._shutdown.stopping.is_set():
            await self._shutdown.sleep(max(self._interval, 300.0))
            if not self._shutdown.stopping.is_set():
                await self._prune()

    async def _prune(self) -> None:
        try:
            await self._store.prune(before=self._clock() - RETENTION - PRUNE_MARGIN)
        except Exception:  # pruning is housekeeping: a failure must not stop the polling
            logger.exception("pruning old fingerprints failed; trying again later")

    async def _cycle(self, name: str) -> AccountResult:
        task = asyncio.current_task()
        assert task is not None
        started = asyncio.get_running_loop().time()
        # Decided once, as the cycle starts. A pulling account's reports always flow.
        pulls = self._accounts[name].pull_reports
        reconciling = pulls or self._flowing(name)
        with self._shutdown.cycle(task):
            try:
                async with self._turns[name]:  # a cycle of this account in flight: after it
                    with telemetry.cycle_span(name):
                        result = await self._poll_in_turn(name)
            except asyncio.CancelledError:
                # Cut short by aclose() or stop() after the grace, and by nothing else: that
                # is this cycle's failure, in its result, not a cancellation of the caller.
                if not self._shutdown.was_cut(task):
                    raise
                result = AccountResult(
                    error=RuntimeError(
                        "the poller shut down before the cycle finished; "
                        "what it had not committed is offered again next time"
                    )
                )
        now = asyncio.get_running_loop().time()
        self._record(name, result, now, reconciling=reconciling, pulls=pulls)
        if reconciling and result.settled:
            telemetry.reports_lost(name, result.settled)
        status = self._status[name]
        telemetry.record_cycle(
            name,
            seconds=now - started,
            outcome="ok" if result.error is None else type(result.error).__name__,
            new=result.new,
            changed=result.changed,
            consecutive_failures=status.consecutive_failures,
            held=status.held,
        )
        return result

    async def _poll_in_turn(self, name: str) -> AccountResult:
        """One cycle once one of the `max_concurrency` slots is free, on the account's lease."""
        async with self._slots:
            if self._closed:
                return AccountResult(error=RuntimeError("the poller is closed"))
            lease = self._leases.held(name)
            if lease is None:  # shed, or the claims fail, while this cycle waited its turn
                return AccountResult(
                    error=LeaseLostError(f"this poller holds no lease on account {name!r}")
                )
            try:
                fetcher = self._fetcher(name)
            except Exception as exc:  # an account no fetcher can be made for: its own failure
                return AccountResult(error=exc)
            if not self._accounts[name].pull_reports:
                return await self._walk.cycle(name, fetcher, lease)
            pulled = await self._pull(name, fetcher, lease)
            loop = asyncio.get_running_loop()
            if pulled.error is not None or loop.time() < self._walk_due.get(name, -math.inf):
                return pulled
            walked = await self._walk.cycle(name, fetcher, lease)
            if walked.error is None:  # the logs again in `reconcile`: what no report brought
                self._walk_due[name] = loop.time() + self._reconcile
            return attrs.evolve(add_results(pulled, walked), error=walked.error)

    async def _pull(self, name: str, fetcher: LogsFetcher, lease: Lease) -> AccountResult:
        """Pull the account's reports until a pull comes back short, record each batch in
        the inbox before anything else, then deliver the inbox; failures in the result."""
        store = self._store_inbox
        if store is None:
            error = TypeError(
                f"account {name!r} pulls reports, but {type(self._store).__name__} keeps no"
                " inbox to record them in: use SqliteStore or PostgresStore"
            )
            return AccountResult(error=error)
        try:
            for _ in range(MAX_PULLS_PER_CYCLE):
                self._leases.check(lease)
                reports = await fetcher.pull_reports(limit=MAX_PULL_LIMIT)
                if reports:
                    await self._record_pulled(store, name, reports)
                if len(reports) < MAX_PULL_LIMIT:
                    break
            return await self._core.inbox(lease)
        except Exception as exc:  # the account's own failure, in its result
            return AccountResult(error=exc)

    async def _record_pulled(
        self, store: InboxStore, name: str, reports: list[VoiceReport]
    ) -> None:
        """Record a pulled batch: these reports exist nowhere else once read."""
        try:
            body = encode_inbox(reports)
            await store.record_reports(name, body, count=len(reports), received_at=self._clock())
        except Exception as exc:
            logger.warning(
                "account %s: %d pulled reports could not be recorded (%s: %s); the pull"
                " channel has no copy: their states come from the logs",
                name,
                len(reports),
                type(exc).__name__,
                exc,
                extra={"account": name, "outcome": "pull_unrecorded"},
            )
            raise

    def _fetcher(self, name: str) -> LogsFetcher:
        fetcher = self._fetchers.get(name)
        if fetcher is None:
            account = self._accounts[name]
            if self._client is None:
                # A small pool per host and one TLS context for all: each account's
                # connection lives across cycles (see `connections`).
                urls = (a.base_url for a in self._accounts.values())
                self._client = poller_client(urls, max_connections=self._max_connections)
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

    def _record(
        self,
        name: str,
        result: AccountResult,
        now: float,
        *,
        reconciling: bool = False,
        quiet: bool = False,
        pulls: bool = False,
    ) -> None:
        fetcher = self._fetchers.get(name)
        before = self._status[name]
        self._status[name] = after = next_status(
            before,
            result,
            now=now,
            polled_at=self._clock(),
            # While its reports flow, the logs only reconcile: what no report brought. A
            # pulling account cycles every interval to pull, and walks every reconcile.
            interval=self._reconcile if reconciling and not pulls else self._interval,
            stats=fetcher.stats if fetcher is not None else None,
            reconciling=reconciling,
        )
        if result.error is None or quiet:
            return
        if isinstance(result.error, LeaseLostError):
            # Not this account's failure: another process holds it now and delivers the
            # batch this one could not commit (fenced: nothing of it was written here).
            self._leases.forget(name)
            self._checkpoints.forget(name)
            self._mark_leases()
            if self._leases.was_shed(name):
                # The fleet rebalanced (a poller joined) mid-walk: nothing was refused.
                logger.info(
                    "account %s: passed to another poller mid-cycle (the fleet rebalanced);"
                    " it walks the account from here",
                    name,
                    extra={"account": name, "outcome": "lease_shed"},
                )
                return
            telemetry.batch_fenced(name)
            logger.warning(
                "account %s: its lease lapsed or passed to another poller (shed, or the"
                " store unreachable); what this cycle had not committed is left to the holder",
                name,
                extra={"account": name, "outcome": "lease_lost"},
            )
            return
        logger.warning(
            "account %s: cycle failed (%s: %s); next attempt in %.0f s",
            name,
            type(result.error).__name__,
            result.error,
            after.next_due - now,
            extra={"account": name, "outcome": type(result.error).__name__},
        )
