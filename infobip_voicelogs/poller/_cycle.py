"""One account's cycle: walk its window and give the delivery core each batch of logs.

The window is `[checkpoint - revisit, now]` (the first time `[now - backfill, now]`), never
reaching past the provider's 48-hour retention. The walk holds at most `max_batch` logs:
each full batch, and the rest at the end with the new checkpoint, goes to
`DeliveryCore.logs`, which hands over what the stored fingerprints do not know and
commits it. A quiet cycle (nothing to deliver) reads no fingerprints and commits nothing:
its checkpoint is queued in `Checkpoints` and flushed with other accounts' in one `advance`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from datetime import datetime, timedelta

import attrs

from .._time import RETENTION
from ..delivery import AccountResult, Checkpoints, DeliveryCore, LeaseKeeper, add_results
from ..fetcher import LogsFetcher
from ..models import VoiceLog
from ..store import Lease

logger = logging.getLogger("infobip_voicelogs")


@attrs.define
class Walk:
    """How every cycle of one poller walks, delivers and commits: the owner of those settings.

    `LogsPoller` validates them and keeps no copy: `backfill`, `revisit`, `page_size` and
    `max_batch` are read here only. What to deliver of each batch, and the hand-over, are
    the `DeliveryCore`'s.
    """

    core: DeliveryCore
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
            seen: list[VoiceLog] = []  # at most `max_batch`: memory bounded, whatever the window
            async with contextlib.aclosing(walk):
                async for log in walk:
                    seen.append(log)
                    if len(seen) % self.page_size == 0:
                        # Shed (or lapsed) mid-walk: stop fetching now, the holder walks it.
                        self.leases.check(lease)
                    if len(seen) >= self.max_batch:
                        # A batch mid-walk keeps the checkpoint where it was: if a later
                        # batch fails, the next cycle walks the same window and, by the
                        # fingerprints just committed, offers only what this one did not.
                        batch = await self.core.logs(lease, seen, checkpoint=None)
                        result = add_results(result, batch)
                        seen = []
            last = await self.core.logs(lease, seen, checkpoint=now)
            return add_results(result, last)
        except Exception as exc:  # one account's failure is its own, reported not raised
            # What earlier batches delivered (and committed) still counts.
            return attrs.evolve(result, error=exc)

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
