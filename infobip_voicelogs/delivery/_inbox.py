"""When the holder delivers the inbox: at once when woken, and by a regular look otherwise.

A receiver (or a pull) records a batch of reports in the store's inbox and the store wakes
its watchers (`InboxStore.watch_inbox`: in the process for SQLite, by PostgreSQL's
`LISTEN`/`NOTIFY` across processes). `InboxWatch` turns each wake-up into a drain of that
account's inbox through the `DeliveryCore`, if this process holds the account. A lost
wake-up (a dropped listener connection, a receiver in another process on a SQLite file)
only delays: every `look_every` seconds one indexed query asks which held accounts have
entries waiting. A drain that fails is tried again at a later look, backing off.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection

from ..errors import LeaseLostError
from ..store import InboxStore
from ._core import DeliveryCore
from ._leases import LeaseKeeper
from ._records import AccountResult
from ._shutdown import Shutdown

logger = logging.getLogger("infobip_voicelogs")

#: Seconds between two looks at the inbox when no wake-up came (the fallback).
DEFAULT_LOOK_EVERY = 1.0
#: The most accounts whose inboxes are delivered at the same moment.
DEFAULT_MAX_DRAINS = 16
# The longest a failing account's inbox is left before it is tried again.
_MAX_BACKOFF = 60.0


class InboxWatch:
    """Drains each held account's inbox when the store says a batch arrived, or a look finds one.

    One drain per account at a time; a wake-up during a drain makes it look once more.
    """

    def __init__(
        self,
        store: InboxStore,
        core: DeliveryCore,
        leases: LeaseKeeper,
        shutdown: Shutdown,
        *,
        look_every: float = DEFAULT_LOOK_EVERY,
        max_concurrency: int = DEFAULT_MAX_DRAINS,
        on_lost: Callable[[str], None] | None = None,
        on_result: Callable[[str, AccountResult], None] | None = None,
    ) -> None:
        self._store = store
        self._core = core
        self._leases = leases
        self._shutdown = shutdown
        self._look_every = look_every
        self._on_lost = on_lost
        self._on_result = on_result
        self._woken: set[str] = set()
        self._wake = asyncio.Event()
        self._look_now = True
        self._draining: dict[str, asyncio.Task[None]] = {}
        self._again: set[str] = set()
        self._failures: dict[str, tuple[int, float]] = {}  # account: (in a row, retry at)
        # Drains in flight at once: a burst over many accounts waits here, not in the
        # store's pool.
        self._slots = asyncio.Semaphore(max_concurrency)

    def woken(self, account: str) -> None:
        """A batch was recorded for `account` (the store's wake-up, called on the loop)."""
        self._woken.add(account)
        self._wake.set()

    def look(self) -> None:
        """Look at every held account's inbox at once (new leases were claimed)."""
        self._look_now = True
        self._wake.set()

    async def deliver_now(self, accounts: Collection[str]) -> None:
        """Deliver what waits in these accounts' inboxes, those held here, and return when
        done (a poller's start, a `run_once`): the drains `run` would start, awaited."""
        for name in await self._waiting({a for a in accounts if self._leases.held(a)}):
            self._start(name)
        drains = set(self._draining.values())
        if drains:
            await asyncio.wait(drains)

    async def run(self) -> None:
        """Until the shutdown: drain what wake-ups and looks find; then let the drains end."""
        loop = asyncio.get_running_loop()
        unsubscribe = self._store.watch_inbox(self.woken)
        next_look = loop.time()
        try:
            while not self._shutdown.stopping.is_set():
                await self._until_woken(max(0.0, next_look - loop.time()))
                if self._shutdown.stopping.is_set():
                    break
                self._wake.clear()
                names, self._woken = self._woken, set()
                if self._look_now or loop.time() >= next_look:
                    self._look_now = False
                    next_look = loop.time() + self._look_every
                    names |= await self._waiting()
                for name in names:
                    self._start(name)
        finally:
            unsubscribe()
            drains = set(self._draining.values())
            if drains:
                await self._shutdown.wind_down(drains)

    async def _until_woken(self, within: float) -> None:
        """Wait for a wake-up, the shutdown, or `within` seconds."""
        woken = asyncio.ensure_future(self._wake.wait())
        stopped = asyncio.ensure_future(self._shutdown.stopping.wait())
        try:
            await asyncio.wait({woken, stopped}, timeout=within, return_when="FIRST_COMPLETED")
        finally:
            woken.cancel()
            stopped.cancel()

    async def _waiting(self, held: Collection[str] | None = None) -> set[str]:
        """The held accounts (or these) with entries waiting (a failure is logged: the next
        look retries)."""
        held = self._leases.holding() if held is None else held
        if not held:
            return set()
        try:
            return await self._store.inbox_accounts(held)
        except Exception as exc:
            logger.warning(
                "looking at the inbox failed (%s: %s); trying again in %g s",
                type(exc).__name__,
                exc,
                self._look_every,
                extra={"outcome": "inbox_look_failed"},
            )
            return set()

    def _start(self, name: str) -> None:
        if name in self._draining:
            self._again.add(name)
            return
        failed = self._failures.get(name)
        if failed is not None and asyncio.get_running_loop().time() < failed[1]:
            return  # backing off: a later look tries again
        if self._leases.held(name) is None:
            return  # another process holds it, and delivers it
        task = asyncio.create_task(self._drain(name), name=f"infobip-voicelogs inbox {name}")
        self._draining[name] = task

    async def _drain(self, name: str) -> None:
        task = asyncio.current_task()
        assert task is not None
        try:
            with self._shutdown.cycle(task):
                await self._drain_while_woken(name, task)
        finally:
            self._draining.pop(name, None)

    async def _drain_while_woken(self, name: str, task: asyncio.Task[None]) -> None:
        while True:
            self._again.discard(name)
            lease = self._leases.held(name)
            if lease is None:
                return
            try:
                async with self._slots:
                    result = await self._core.inbox(lease)
            except asyncio.CancelledError:
                if self._shutdown.was_cut(task):
                    return  # the entries stay: the next holder delivers them
                raise
            except LeaseLostError:
                if self._on_lost is not None:
                    self._on_lost(name)
                return
            except Exception as exc:
                self._failed(name, exc)
                return
            self._failures.pop(name, None)
            if self._on_result is not None and result.reports:
                self._on_result(name, result)
            if name not in self._again:
                return

    def _failed(self, name: str, exc: Exception) -> None:
        loop = asyncio.get_running_loop()
        in_a_row = self._failures.get(name, (0, 0.0))[0] + 1
        delay = min(self._look_every * 2 ** min(in_a_row, 10), _MAX_BACKOFF)
        self._failures[name] = (in_a_row, loop.time() + delay)
        logger.warning(
            "account %s: delivering its reports failed (%s: %s); the batch stays in the"
            " inbox, next attempt in %.0f s",
            name,
            type(exc).__name__,
            exc,
            delay,
            extra={"account": name, "outcome": type(exc).__name__},
        )
