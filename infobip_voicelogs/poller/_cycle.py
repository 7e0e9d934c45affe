"""One account's cycle: walk its window, find what is new or changed, hand it over, commit.

The window is `[checkpoint - revisit, now]` (the first time `[now - backfill, now]`), never
reaching past the provider's 48-hour retention. What the handler gets is what the stored
fingerprints do not already know; the checkpoint and the fingerprints are written only
after the handler returned, so a crash at any point repeats at most the batch in flight.
Every store leases, so every cycle runs on a lease and every commit is `commit_leased`.
A quiet cycle (nothing to deliver) reads no fingerprints and commits nothing: its
checkpoint is queued in `Checkpoints` and flushed with other accounts' in one `advance`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

import attrs

from .._time import RETENTION
from ..fetcher import LogsFetcher
from ..models import VoiceLog
from ..state import FINAL_PREFIX, Change, compare, fingerprint
from ..store import Delivered, Lease, LeaseStore
from ._checkpoints import Checkpoints
from ._leases import LeaseKeeper
from ._records import AccountResult, Handler, add_results
from ._shutdown import Shutdown

__all__ = ["Walk"]

logger = logging.getLogger("infobip_voicelogs")


@attrs.define
class Walk:
    """How every cycle of one poller walks, delivers and commits: the owner of those settings.

    `LogsPoller` validates them and keeps no copy: `backfill`, `revisit`, `page_size` and
    `max_batch` are read here only.
    """

    store: LeaseStore
    handler: Handler
    shutdown: Shutdown
    leases: LeaseKeeper
    checkpoints: Checkpoints
    clock: Callable[[], datetime]
    backfill: timedelta
    revisit: timedelta
    page_size: int
    max_batch: int

    async def cycle(self, name: str, fetcher: LogsFetcher, lease: Lease) -> AccountResult:
        """One cycle of account `name` on `lease`; its failure is in the result, never raised."""
        result = AccountResult()
        try:
            now = self.clock()
            since = await self._window_start(lease, now)
            walk = fetcher.iter_logs(sent_since=since, sent_until=now, page_size=self.page_size)
            seen: list[VoiceLog] = []
            window: set[str] = set()  # the message ids of the whole walk
            async with contextlib.aclosing(walk):
                async for log in walk:
                    seen.append(log)
                    if log.message_id is not None:
                        window.add(log.message_id)
                    if len(seen) % self.page_size == 0:
                        # Shed (or lapsed) mid-walk: stop fetching now, the holder walks it.
                        self.leases.check(lease)
                    if len(seen) >= self.max_batch:
                        # A batch mid-walk keeps the checkpoint where it was: if a later
                        # batch fails, the next cycle walks the same window and, by the
                        # fingerprints just committed, offers only what this one did not.
                        batch = await self._hand_over(name, lease, seen, checkpoint=None)
                        result = add_results(result, batch)
                        seen = []
            last = await self._hand_over(name, lease, seen, checkpoint=now)
            self.checkpoints.keep_window(lease, window)
            return add_results(result, last)
        except Exception as exc:  # one account's failure is its own, reported not raised
            # What earlier batches delivered (and committed) still counts.
            return attrs.evolve(result, error=exc)

    async def _hand_over(
        self,
        name: str,
        lease: Lease,
        seen: Sequence[VoiceLog],
        *,
        checkpoint: datetime | None,
    ) -> AccountResult:
        """Deliver the new and changed logs among `seen`, then commit them (and `checkpoint`)."""
        batch, new, changed, finals = await self._changes(lease, seen)
        if not batch:
            if checkpoint is not None:
                # Nothing for the handler: no claim to wait for, the lease only checked
                # locally, the fenced write batched with other quiet accounts'.
                self.leases.check(lease)
                self.checkpoints.quiet(lease, checkpoint)
            return AccountResult()
        # No claim in flight, then busy in the same step as the lease is checked: a claim
        # sent from now on will not shed the account while the handler has its batch.
        await self.leases.settled()
        self.leases.check(lease)
        with self.leases.handing_over(name):
            # Only logs here (the poller commits no reports): the filter says so to the types.
            logs = [item.item for item in batch if isinstance(item.item, VoiceLog)]
            logs.reverse()  # oldest first: the order things happened in
            committed = {item.item.message_id or "": item.fingerprint for item in batch}

            async def hand_over() -> None:
                await self.handler(name, logs)
                await self.store.commit_leased(lease, checkpoint=checkpoint, delivered=batch)
                self.checkpoints.remember(lease, committed)
                if checkpoint is not None:
                    self.checkpoints.committed(lease, checkpoint)

            await self.shutdown.hand_over(name, len(logs), hand_over)
        dated = [item.item.sent_at for item in batch if item.item.sent_at is not None]
        return AccountResult(
            delivered=len(batch),
            new=new,
            changed=changed,
            newest_sent_at=max(dated, default=None),
            settled=finals,
        )

    async def _window_start(self, lease: Lease, now: datetime) -> datetime:
        name = lease.account
        checkpoint = await self.checkpoints.read(lease)  # read once per lease
        since = now - self.backfill if checkpoint is None else checkpoint - self.revisit
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
        self, lease: Lease, seen: Sequence[VoiceLog]
    ) -> tuple[list[Delivered], int, int, int]:
        """The new and changed logs among `seen`, and how many are new, changed, and first
        final states (no final one stored before, from a log or a report: while the
        account's reports flow, each is one no report brought).
        """
        name = lease.account
        tracked = {log.message_id: log for log in seen if log.message_id is not None}
        untracked = len(seen) - sum(1 for log in seen if log.message_id is not None)
        if untracked:
            logger.warning(
                "account %s: %d logs without a messageId cannot be tracked and were skipped",
                name,
                untracked,
                extra={"account": name, "outcome": "untracked"},
            )
        # What this process knows the store holds filters first: only the other logs are
        # looked up (none at all in a quiet window of logs already delivered).
        cached = self.checkpoints.prints(lease)
        prints = {message_id: fingerprint(log) for message_id, log in tracked.items()}
        unsure = [message_id for message_id, p in prints.items() if cached.get(message_id) != p]
        if not unsure:
            return [], 0, 0, 0
        known = await self.store.fingerprints(name, unsure)
        batch: list[Delivered] = []
        settled: dict[str, str] = {}  # nothing to deliver: remembered as the store's answer
        new = changed = finals = 0
        for message_id in unsure:
            log = tracked[message_id]
            stored = known.get(message_id)
            change = compare(stored, log)
            if change is Change.NEW:
                new += 1
            elif change is Change.CHANGED:
                changed += 1
            else:  # the same state, or an older copy of one finally settled: nothing new
                settled[message_id] = prints[message_id]
                continue
            batch.append(Delivered(log, prints[message_id]))
            # A correction of a final state (a report's, say) is a change, not a lost report.
            final = prints[message_id].startswith(FINAL_PREFIX)
            if final and not (stored or "").startswith(FINAL_PREFIX):
                finals += 1
        self.checkpoints.remember(lease, settled)
        return batch, new, changed, finals
