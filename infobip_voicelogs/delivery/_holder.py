"""`InboxHolder`: holds accounts' leases and delivers their inboxes, for a process that
does not poll (a web application whose `ReportsReceiver` was given a handler).

It is the poller's delivery without the walk: the same `LeaseKeeper` (so several worker
processes share the accounts out, one holder per account), the same `DeliveryCore` and
`InboxWatch`, the same shutdown rules.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from ..store import CheckpointStore, InboxStore, solo_leases
from ._checkpoints import Checkpoints
from ._core import AnyHandler, DecodeInbox, DeliveryCore
from ._inbox import DEFAULT_LOOK_EVERY, InboxWatch
from ._leases import DEFAULT_CLAIM_INTERVAL, DEFAULT_LEASE_TTL, LeaseKeeper, new_owner_id
from ._shutdown import DEFAULT_SHUTDOWN_GRACE, Shutdown

logger = logging.getLogger("infobip_voicelogs")


class InboxHolder:
    """Claims the accounts it may, and delivers each held account's inbox through the core.

    ```python
    holder = InboxHolder(store, handler, ["eu-shop"], decode=decode_inbox)
    holder.start()          # in the running loop: claims, then delivers as batches arrive
    ...
    await holder.aclose()   # the hand-overs in flight get the grace; the leases go back
    ```
    """

    def __init__(
        self,
        store: InboxStore,
        handler: AnyHandler,
        accounts: Iterable[str],
        *,
        decode: DecodeInbox,
        owner: str | None = None,
        lease_ttl: float = DEFAULT_LEASE_TTL,
        claim_interval: float = DEFAULT_CLAIM_INTERVAL,
        shutdown_grace: float = DEFAULT_SHUTDOWN_GRACE,
        max_batch: int = 5000,
        look_every: float | None = None,
    ) -> None:
        if not isinstance(store, InboxStore) or not isinstance(store, CheckpointStore):
            raise TypeError(
                f"{type(store).__name__} keeps no inbox of reports: use SqliteStore or"
                " PostgresStore"
            )
        leasing = solo_leases(store)
        self.shutdown = Shutdown(shutdown_grace)
        self.leases = LeaseKeeper(
            leasing,
            list(accounts),
            owner=owner or new_owner_id(),
            lease_ttl=lease_ttl,
            claim_interval=claim_interval,
        )
        self._checkpoints = Checkpoints(leasing, max_batch=max_batch)
        self.core = DeliveryCore(
            leasing,
            handler,
            shutdown=self.shutdown,
            leases=self.leases,
            checkpoints=self._checkpoints,
            max_batch=max_batch,
            decode=decode,
        )
        self._watch = InboxWatch(
            store,
            self.core,
            self.leases,
            self.shutdown,
            look_every=look_every if look_every is not None else self._default_look(store),
            on_lost=self._lost,
        )
        self._task: asyncio.Task[None] | None = None

    def _default_look(self, store: InboxStore) -> float:
        """A look a second where only this process is woken; once a claim period where
        the store's wake-ups cross processes (the look then only covers a lost one)."""
        if store.inbox_wakes_other_processes:
            return self.leases.claim_interval
        return DEFAULT_LOOK_EVERY

    @property
    def running(self) -> bool:
        """Whether it claims and delivers now (started, not yet closed)."""
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        """Start claiming and delivering in the running loop; starting twice does nothing."""
        if not self.running:
            self._task = asyncio.create_task(self._run(), name="infobip-voicelogs holder")

    async def aclose(self) -> None:
        """Stop: hand-overs in flight get the shutdown grace, then the leases are released."""
        self.shutdown.stop()
        task, self._task = self._task, None
        if task is not None and not task.done():
            await asyncio.wait({task})

    async def _run(self) -> None:
        tasks = {
            asyncio.create_task(self._claim_loop(), name="infobip-voicelogs holder lease"),
            asyncio.create_task(self._watch.run(), name="infobip-voicelogs holder inbox"),
        }
        try:
            await self.shutdown.supervise(tasks)
        finally:
            await self.leases.release()
            self._checkpoints.clear()
            self.shutdown.reset()

    async def _claim_loop(self) -> None:
        while not self.shutdown.stopping.is_set():
            if await self.leases.claim():
                self._watch.look()  # the accounts gained may have batches waiting
            await self.shutdown.sleep(self.leases.claim_interval)

    def _lost(self, account: str) -> None:
        self.leases.forget(account)
        self._checkpoints.forget(account)
