"""What one poller keeps in memory per lease: checkpoints, fingerprints, quiet advances.

A checkpoint is read from the store once per lease: while this process holds an account
under the same fence, nobody else can have written it (every write is fenced), so the
value it last read or wrote is the store's. A new fence (a new claim), a lost lease or a
release drops it, and the next cycle reads it again.

A quiet cycle (nothing to deliver) writes nothing at once: it queues `(lease, now)` here,
and `flush` sends every account's queued time in one `LeaseStore.advance` call, every few
seconds and at shutdown. The flush carries no logs, only how far a window was found to
hold nothing new, so losing one (a crash, a failure, a refusal) only leaves the stored
checkpoint earlier: the next window is wider, and the stored fingerprints keep what it
fetches again from being delivered twice. A refused account's cached checkpoint is
dropped (its lease is gone); a failed flush is queued again, newer times first.

The fingerprints of the account's recent logs are kept the same way, as a filter: a log
whose fingerprint is the one this process last read from the store or committed for it
has nothing new to deliver (under one lease, only this process's delivery core commits
the account's states). Only the other logs of a window are looked up, so a quiet cycle
over logs already delivered makes no store call at all. At most `max(MAX_REMEMBERED,
max_batch)` fingerprints are kept per account, the most recently remembered: memory stays
bounded by the batch size, whatever a window holds; a window larger than that looks up
what fell out.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from datetime import datetime

from ..store import Lease, LeaseStore
from ..store.base import moves_forward

#: The fewest fingerprints kept for one account (about 200 bytes each); more with a larger
#: `max_batch`, so that a batch's own fingerprints always fit.
MAX_REMEMBERED = 2_000

logger = logging.getLogger("infobip_voicelogs")


def _same(a: Lease, b: Lease) -> bool:
    """The same lease: nobody claimed the account between the two."""
    return a.owner == b.owner and a.fence == b.fence


class Checkpoints:
    """Checkpoints cached per lease, and the quiet advances waiting for the next flush."""

    def __init__(self, store: LeaseStore, *, max_batch: int = 1) -> None:
        self._store = store
        # A batch's own fingerprints always fit, and never fewer than MAX_REMEMBERED.
        self._limit = max(MAX_REMEMBERED, max_batch)
        self._known: dict[str, tuple[Lease, datetime | None]] = {}
        self._pending: dict[str, tuple[Lease, datetime]] = {}
        self._prints: dict[str, tuple[Lease, dict[str, str]]] = {}

    async def read(self, lease: Lease) -> datetime | None:
        """The account's checkpoint: cached while `lease` is the one it was read under."""
        known = self._known.get(lease.account)
        if known is not None and _same(known[0], lease):
            return known[1]
        checkpoint = await self._store.checkpoint(lease.account)
        self._known[lease.account] = (lease, checkpoint)
        return checkpoint

    def committed(self, lease: Lease, checkpoint: datetime) -> None:
        """`commit_leased` wrote exactly `checkpoint`: a queued advance is superseded."""
        self._pending.pop(lease.account, None)
        self._known[lease.account] = (lease, checkpoint)

    def quiet(self, lease: Lease, checkpoint: datetime) -> None:
        """A quiet cycle found nothing new up to `checkpoint`: queue it for the next flush."""
        account = lease.account
        self._pending[account] = (lease, checkpoint)
        known = self._known.get(account)
        if known is None or not _same(known[0], lease):
            return  # dropped meanwhile (a refusal): the next cycle reads the store
        if moves_forward(known[1], checkpoint):  # as `advance` moves it
            self._known[account] = (lease, checkpoint)

    def prints(self, lease: Lease) -> Mapping[str, str]:
        """The fingerprints last read or committed for the account's logs under `lease`."""
        known = self._prints.get(lease.account)
        return known[1] if known is not None and _same(known[0], lease) else {}

    def remember(self, lease: Lease, prints: Mapping[str, str]) -> None:
        """These fingerprints are the store's now (read back, or committed) under `lease`.

        The most recently remembered are kept, up to the limit; the oldest fall out.
        """
        known = self._prints.get(lease.account)
        if known is None or not _same(known[0], lease):
            known = self._prints[lease.account] = (lease, {})
        kept = known[1]
        for message_id, print_ in prints.items():
            kept.pop(message_id, None)  # to the end: the most recent
            kept[message_id] = print_
        for _ in range(len(kept) - self._limit):
            del kept[next(iter(kept))]

    def forget(self, account: str) -> None:
        """The lease on `account` is gone: drop what is cached for it and its queued advance."""
        self._known.pop(account, None)
        self._prints.pop(account, None)
        self._pending.pop(account, None)

    def drop_cached(self) -> None:
        """Read every checkpoint again (the queued advances and the fingerprints stay)."""
        self._known.clear()

    def clear(self) -> None:
        """Every lease released: nothing cached is trusted any more."""
        self._known.clear()
        self._prints.clear()
        self._pending.clear()

    async def flush(self, within: float) -> dict[str, Lease]:
        """Send every queued advance in one `advance` call; return the refused leases.

        Bounded by `within` seconds. A failure is logged, not raised, and its advances are queued
        again unless a newer one for the account came meanwhile; a cancellation queues them
        again too. Cycles never wait for a flush: they only add to the queue.
        """
        if not self._pending:
            return {}
        batch, self._pending = self._pending, {}
        sent = False
        try:
            async with asyncio.timeout(within):
                refused = await self._store.advance(list(batch.values()))
            sent = True
        except Exception as exc:
            logger.warning(
                "advancing the checkpoints of %d quiet accounts failed (%s: %s);"
                " trying again at the next flush",
                len(batch),
                type(exc).__name__,
                exc,
                extra={"outcome": "advance_failed"},
            )
            return {}
        finally:
            if not sent:
                for account, entry in batch.items():
                    self._pending.setdefault(account, entry)
        lost = {account: batch[account][0] for account in refused if account in batch}
        for account, lease in lost.items():
            known = self._known.get(account)
            if known is not None and _same(known[0], lease):
                del self._known[account]
            self._prints.pop(account, None)
        return lost
