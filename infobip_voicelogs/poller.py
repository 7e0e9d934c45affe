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
import hashlib
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs
import httpx

from .codec import Format
from .errors import AuthenticationError
from .fetcher import LogsFetcher
from .models import MAX_PAGE_SIZE, VoiceLog
from .store import CheckpointStore, Delivered
from .throttle import TokenBucket

__all__ = ["Account", "AccountResult", "AccountStatus", "Handler", "LogsPoller", "fingerprint"]

logger = logging.getLogger("infobip_voicelogs")

#: A handler receives an account's name and its batch: new and changed logs, oldest first.
Handler = Callable[[str, list[VoiceLog]], Awaitable[None]]

#: How long the provider keeps a log.
RETENTION = timedelta(hours=48)
#: Fingerprints are kept this much longer than the retention, for clocks that disagree.
PRUNE_MARGIN = timedelta(hours=1)
#: The longest an account in trouble is left alone between attempts.
MAX_BACKOFF = 3600.0
#: A refused credential will not heal by itself soon: back off this many times longer.
AUTH_BACKOFF_FACTOR = 10


@attrs.frozen
class Account:
    """One provider account to poll.

    `auth` is an `httpx.Auth` or an API key string; it never appears in the repr.

    >>> Account("eu-1", "https://xyz.api.infobip.com", auth="secret")
    Account(name='eu-1', base_url='https://xyz.api.infobip.com', format='json')
    """

    name: str
    base_url: str
    auth: httpx.Auth | str = attrs.field(repr=False)
    throttle: TokenBucket | None = attrs.field(default=None, repr=False, eq=False)
    format: Format = "json"
    allow_insecure: bool = attrs.field(default=False, repr=False)


@attrs.frozen
class AccountResult:
    """What one cycle did for one account.

    Attributes:
        delivered: Logs handed to the handler (`new + changed`); in a failed cycle, those
            of the batches it committed before the failure.
        new: Logs never delivered before.
        changed: Logs delivered before whose state has changed.
        error: The exception that failed the cycle (fetch, handler or store), or `None`.
    """

    delivered: int = 0
    new: int = 0
    changed: int = 0
    error: Exception | None = None

    @property
    def ok(self) -> bool:
        """Whether the cycle succeeded."""
        return self.error is None


@attrs.define
class AccountStatus:
    """Running totals for one account, for dashboards and the CLI's live table."""

    cycles: int = 0
    new: int = 0
    changed: int = 0
    failures: int = 0
    consecutive_failures: int = 0
    last_error: Exception | None = None
    last_polled: datetime | None = None
    next_due: float = 0.0  # on the event loop's clock
    requests: int = 0
    retries: int = 0
    rate_limited: int = 0
    #: Whether this process may poll the account now: always with a store that has no
    #: leases; with a fleet's store, only while this process holds the account's lease.
    held: bool = True


def _add(one: AccountResult, other: AccountResult) -> AccountResult:
    return AccountResult(
        delivered=one.delivered + other.delivered,
        new=one.new + other.new,
        changed=one.changed + other.changed,
    )


def fingerprint(log: VoiceLog) -> str:
    """A short digest of the parts of a log that change after it is first seen.

    Two states of one log have the same fingerprint exactly when status, `done_at`,
    `duration`, `price` and `error` are the same. The digest is built from those fields
    one by one, never from a repr, so it stays the same across releases that add fields
    to the models (a stored fingerprint must not turn every log into a "change").
    """
    status, error, price = log.status, log.error, log.price
    parts = (
        _parts(status, "group_id", "group_name", "id", "name", "description", "action"),
        log.done_at.isoformat() if log.done_at is not None else "",
        "" if log.duration is None else str(log.duration),
        "" if price is None else f"{price.per_second.normalize()} {price.currency}",
        _parts(error, "group_id", "group_name", "id", "name", "description", "permanent"),
    )
    return hashlib.blake2b("\x1f".join(parts).encode(), digest_size=12).hexdigest()


def _parts(obj: object, *names: str) -> str:
    if obj is None:
        return "-"
    return "\x1e".join("" if (v := getattr(obj, name)) is None else repr(v) for name in names)


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
        clock: Returns "now" as an aware datetime (tests and the fake provider move it);
            each `LogsFetcher` gets it too.
        fetcher_options: More keyword arguments for every `LogsFetcher`
            (`max_retry_after`, `on_retry`, ...).
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
        max_attempts: int = 6,
        timeout: float = 30.0,
        clock: Callable[[], datetime] | None = None,
        fetcher_options: Mapping[str, Any] | None = None,
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
        self._page_size = page_size
        self._max_batch = max_batch
        self._slots = asyncio.Semaphore(max_concurrency)
        self._client = client
        self._clock = clock or (lambda: datetime.now(UTC))
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
        self._closed = False

    # Life cycle...

    async def __aenter__(self) -> LogsPoller:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop, let the cycles in flight finish, and close the fetchers this poller opened.

        A client or store the caller gave is not closed. A closed poller polls no more:
        a later cycle reports a `RuntimeError` in its result.
        """
        self.stop()
        self._closed = True
        others = self._cycling - {asyncio.current_task()}  # not itself, from a handler
        if others:
            await asyncio.wait(others)
        fetchers, self._fetchers = self._fetchers, {}
        for name, fetcher in fetchers.items():
            try:
                await fetcher.aclose()
            except Exception:  # close the others all the same
                logger.exception("account %s: closing its fetcher failed", name)

    def stop(self) -> None:
        """Ask `run()` to return once the cycles in flight have finished."""
        self._stopping.set()

    @property
    def interval(self) -> float:
        """Seconds between an account's cycles in `run()`."""
        return self._interval

    @property
    def accounts(self) -> dict[str, Account]:
        """The accounts polled, by name."""
        return dict(self._accounts)

    def status(self) -> dict[str, AccountStatus]:
        """Running totals per account (a live view: do not modify)."""
        return self._status

    # Cycles...

    async def run_once(self) -> dict[str, AccountResult]:
        """Poll every account once, concurrently (an explicit call ignores any back-off).

        Returns each account's result; an account's failure is in its result, never raised.
        Also prunes fingerprints of logs past the provider's retention.
        """
        names = list(self._accounts)
        results = await asyncio.gather(*(self._cycle(name) for name in names))
        await self._prune()
        return dict(zip(names, results, strict=True))

    async def run(self) -> None:
        """Poll every account every `interval` seconds until `stop()` or cancellation.

        Each account keeps its own rhythm, so a slow or failing account delays nobody
        else. On `stop()` the cycles in flight finish; on cancellation, handler calls in
        flight finish and are committed before the cancellation goes on.
        """
        self._stopping.clear()
        async with asyncio.TaskGroup() as group:
            for name in self._accounts:
                group.create_task(self._account_loop(name))
            group.create_task(self._prune_loop())

    async def _account_loop(self, name: str) -> None:
        loop = asyncio.get_running_loop()
        while not self._stopping.is_set():
            await self._cycle(name)
            delay = max(0.0, self._status[name].next_due - loop.time())
            await self._sleep_unless_stopped(delay)

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
        if task is not None:
            self._cycling.add(task)
        try:
            async with self._slots:
                result = await self._poll(name)
        finally:
            if task is not None:
                self._cycling.discard(task)
        self._record(name, result, asyncio.get_running_loop().time())
        return result

    async def _poll(self, name: str) -> AccountResult:
        result = AccountResult()
        try:
            if self._closed:
                raise RuntimeError("the poller is closed")
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
                        batch = await self._hand_over(name, seen, checkpoint=None)
                        result = _add(result, batch)
                        seen = []
            return _add(result, await self._hand_over(name, seen, checkpoint=now))
        except Exception as exc:  # one account's failure is its own, reported not raised
            # What earlier batches delivered (and committed) still counts.
            return attrs.evolve(result, error=exc)

    async def _hand_over(
        self, name: str, seen: Sequence[VoiceLog], *, checkpoint: datetime | None
    ) -> AccountResult:
        """Deliver the new and changed logs among `seen`, then commit them (and `checkpoint`)."""
        batch, new, changed = await self._changes(name, seen)
        if batch:
            logs = [item.log for item in batch]
            logs.reverse()  # oldest first: the order things happened in
            await self._deliver(name, logs, batch, checkpoint)
        elif checkpoint is not None:
            await self._store.commit(name, checkpoint=checkpoint, delivered=())
        return AccountResult(delivered=len(batch), new=new, changed=changed)

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

    async def _deliver(
        self,
        name: str,
        logs: list[VoiceLog],
        batch: list[Delivered],
        checkpoint: datetime | None,
    ) -> None:
        async def hand_over() -> None:
            await self._handler(name, logs)
            await self._store.commit(name, checkpoint=checkpoint, delivered=batch)

        # A cancellation (however many) lets the handler finish and its batch be committed,
        # so the store never lags behind what the handler has taken by more than this one
        # batch; then the cancellation goes on.
        task = asyncio.ensure_future(hand_over())
        cancelled = False
        while not task.done():
            try:
                await asyncio.wait({task})  # cancelling this wait leaves the task running
            except asyncio.CancelledError:
                cancelled = True
        if cancelled:
            if not task.cancelled() and task.exception() is not None:
                logger.error(
                    "account %s: handing over a batch failed while the poller was cancelled;"
                    " it will be offered again",
                    name,
                    exc_info=task.exception(),
                )
            raise asyncio.CancelledError
        task.result()

    def _fetcher(self, name: str) -> LogsFetcher:
        fetcher = self._fetchers.get(name)
        if fetcher is None:
            account = self._accounts[name]
            fetcher = LogsFetcher(
                account.base_url,
                account.auth,
                format=account.format,
                throttle=account.throttle,
                client=self._client,
                allow_insecure=account.allow_insecure,
                **self._fetcher_options,
            )
            self._fetchers[name] = fetcher
        return fetcher

    def _record(self, name: str, result: AccountResult, now: float) -> None:
        status = self._status[name]
        status.cycles += 1
        status.new += result.new
        status.changed += result.changed
        status.last_polled = self._clock()
        fetcher = self._fetchers.get(name)
        if fetcher is not None:
            stats = fetcher.stats
            status.requests, status.retries = stats.requests, stats.retries
            status.rate_limited = stats.rate_limited
        if result.error is None:
            status.consecutive_failures = 0
            status.next_due = now + self._interval
            return
        status.failures += 1
        status.consecutive_failures += 1
        status.last_error = result.error
        backoff = self._interval * 2 ** min(status.consecutive_failures - 1, 10)
        if isinstance(result.error, AuthenticationError):
            backoff *= AUTH_BACKOFF_FACTOR
        status.next_due = now + min(backoff, max(MAX_BACKOFF, self._interval))
        logger.warning(
            "account %s: cycle failed (%s: %s); next attempt in %.0f s",
            name,
            type(result.error).__name__,
            result.error,
            status.next_due - now,
        )
