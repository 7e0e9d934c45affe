"""The one place where a message's state reaches the handler: decide, hand over, commit.

Every source feeds it: a walk of the logs (`DeliveryCore.logs`, a batch at a time) and the
batches of reports recorded in the store's inbox by a receiver or a pull
(`DeliveryCore.inbox`). Whatever the source, one hand-over per account runs at a time (a
lock per account): the sightings are compared with the stored fingerprints
(`state.compare`), the new and changed states go to the handler, and once it returned
they are committed, with the inbox entries they came from, in one fenced transaction. So
each state reaches the handler once, a final state is never followed by an older one,
and nothing is lost: what was not committed is offered again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ..errors import DecodeError
from ..models import VoiceLog
from ..state import FINAL_PREFIX, Change, compare, fingerprint
from ..store import Delivered, InboxEntry, InboxStore, Item, Lease, LeaseStore
from ._checkpoints import Checkpoints
from ._leases import LeaseKeeper
from ._records import AccountResult, add_results
from ._shutdown import Shutdown

if TYPE_CHECKING:
    from ..reports import VoiceReport

logger = logging.getLogger("infobip_voicelogs")

#: Takes ``(account, items)``: a batch of new and changed states, logs or reports.
AnyHandler = Callable[[str, list[Any]], Awaitable[object]]
#: Turns an inbox entry's body back into its reports (the receiver's codec).
DecodeInbox = Callable[[bytes], Sequence["VoiceReport"]]


class DeliveryCore:
    """Hands each account's new and changed states to the handler, one hand-over at a time.

    Built by the account's holder (a `LogsPoller`, or a `ReportsReceiver` given a handler)
    over the store it leases from; `logs` and `inbox` may be called concurrently for one
    account, and their hand-overs run one after the other in the order they got the lock.
    """

    def __init__(
        self,
        store: LeaseStore,
        handler: AnyHandler,
        *,
        shutdown: Shutdown,
        leases: LeaseKeeper,
        checkpoints: Checkpoints,
        max_batch: int,
        decode: DecodeInbox | None = None,
    ) -> None:
        self._store = store
        self._inbox = store if isinstance(store, InboxStore) else None
        self._handler = handler
        self._shutdown = shutdown
        self._leases = leases
        self._checkpoints = checkpoints
        self._max_batch = max_batch
        # Entries read at once: enough for a hand-over of batches of 100 (the provider's
        # usual size), few enough that memory follows `max_batch` whatever their size.
        self._entries_read = max(1, min(100, max_batch // 100))
        self._decode = decode
        self._turns: dict[str, asyncio.Lock] = {}

    def _turn(self, account: str) -> asyncio.Lock:
        turn = self._turns.get(account)
        if turn is None:
            turn = self._turns[account] = asyncio.Lock()
        return turn

    # -- the logs --------------------------------------------------------------------------

    async def logs(
        self, lease: Lease, seen: Sequence[VoiceLog], *, checkpoint: datetime | None
    ) -> AccountResult:
        """Deliver the new and changed logs among `seen`, then commit them (and `checkpoint`).

        A quiet batch (nothing to deliver) only queues `checkpoint` for the next batched
        advance. `LeaseLostError` if the lease is gone before the hand-over.
        """
        async with self._turn(lease.account):
            batch, new, changed, finals = await self._log_changes(lease, seen)
            if not batch:
                if checkpoint is not None:
                    # Nothing for the handler: the lease only checked locally, the fenced
                    # write batched with other quiet accounts'.
                    self._leases.check(lease)
                    self._checkpoints.quiet(lease, checkpoint)
                return AccountResult()
            logs = [item.item for item in batch]
            logs.reverse()  # oldest first: the order things happened in
            await self._hand_over(lease, logs, batch, checkpoint=checkpoint)
        dated = [item.item.sent_at for item in batch if item.item.sent_at is not None]
        return AccountResult(
            delivered=len(batch),
            new=new,
            changed=changed,
            newest_sent_at=max(dated, default=None),
            settled=finals,
        )

    async def _log_changes(
        self, lease: Lease, seen: Sequence[VoiceLog]
    ) -> tuple[list[Delivered], int, int, int]:
        """The new and changed logs among `seen`, and how many are new, changed, and first
        final states (no final one stored before, from a log or a report: while the
        account's reports flow, each is one no report brought).
        """
        name = lease.account
        tracked = {log.message_id: log for log in seen if log.message_id is not None}
        if len(tracked) < len(seen):
            _untracked(name, sum(1 for log in seen if log.message_id is None), "logs")
        # What this process knows the store holds filters first: only the other logs are
        # looked up (none at all in a quiet window of logs already delivered).
        cached = self._checkpoints.prints(lease)
        prints = {message_id: fingerprint(log) for message_id, log in tracked.items()}
        unsure = [message_id for message_id, p in prints.items() if cached.get(message_id) != p]
        if not unsure:
            return [], 0, 0, 0
        known = await self._store.fingerprints(name, unsure)
        batch: list[Delivered] = []
        settled: dict[str, str] = {}  # nothing to deliver: remembered as the store's answer
        new = changed = finals = 0
        for message_id in unsure:
            stored = known.get(message_id)
            change = compare(stored, tracked[message_id])
            if change is Change.NEW:
                new += 1
            elif change is Change.CHANGED:
                changed += 1
            else:  # the same state, or an older copy of one finally settled: nothing new
                settled[message_id] = prints[message_id]
                continue
            batch.append(Delivered(tracked[message_id], prints[message_id]))
            # A correction of a final state (a report's, say) is a change, not a lost report.
            if prints[message_id].startswith(FINAL_PREFIX) and not (stored or "").startswith(
                FINAL_PREFIX
            ):
                finals += 1
        self._checkpoints.remember(lease, settled)
        return batch, new, changed, finals

    # -- the inbox -------------------------------------------------------------------------

    async def inbox(self, lease: Lease) -> AccountResult:
        """Deliver every batch of reports waiting in the account's inbox, oldest first.

        Each hand-over takes whole entries up to `max_batch` reports (at least one entry),
        hands their new and changed states over and commits them with the entries
        consumed, in one transaction. Returns when the inbox is empty; raises what a
        hand-over raised (the entries stay, and are offered again).
        """
        total = AccountResult()
        if self._inbox is None or self._decode is None:
            return total
        while True:
            async with self._turn(lease.account):
                self._leases.check(lease)
                waiting = await self._inbox.inbox(lease.account, limit=self._entries_read)
                entries = self._take(waiting)
                if not entries:
                    return total
                result = await self._deliver_entries(lease, entries)
            total = add_results(total, result)

    def _take(self, entries: list[InboxEntry]) -> list[InboxEntry]:
        """The oldest entries whose reports fit in `max_batch` (at least one)."""
        taken: list[InboxEntry] = []
        size = 0
        for entry in entries:
            if taken and size + entry.count > self._max_batch:
                break
            taken.append(entry)
            size += entry.count
        return taken

    async def _deliver_entries(self, lease: Lease, entries: list[InboxEntry]) -> AccountResult:
        assert self._decode is not None
        account = lease.account
        reports: list[VoiceReport] = []
        for entry in entries:
            try:
                reports.extend(self._decode(entry.body))
            except DecodeError as error:  # recorded by a version that wrote otherwise
                logger.error(
                    "account %s: an inbox entry of %d reports does not decode (%s); dropped:"
                    " the logs bring its states",
                    account,
                    entry.count,
                    error.path or "body",
                    extra={"account": account, "outcome": "inbox_undecodable"},
                )
        batch, same, new, changed = await self._report_changes(account, reports)
        activity = (max(e.received_at for e in entries), sum(e.count for e in entries))
        ids = [entry.id for entry in entries]
        items = [item.item for item in batch]
        await self._hand_over(lease, items, batch, known=same, inbox=ids, reports=activity)
        return AccountResult(delivered=len(batch), new=new, changed=changed, reports=len(reports))

    async def _report_changes(
        self, account: str, reports: Sequence[VoiceReport]
    ) -> tuple[list[Delivered], list[Delivered], int, int]:
        """The batch's new and changed states, one per message in the batch's order; the
        reports of states already stored (`SAME`, one per message); how many new, changed.
        """
        tracked = [r for r in reports if r.message_id is not None]
        if len(tracked) < len(reports):
            _untracked(account, len(reports) - len(tracked), "reports")
        ids = list(dict.fromkeys(r.message_id for r in tracked if r.message_id is not None))
        stored = await self._store.fingerprints(account, ids) if ids else {}
        current: dict[str, str | None] = dict(stored)
        chosen: dict[str, Delivered] = {}
        same: dict[str, Delivered] = {}
        for report in tracked:
            message_id = report.message_id
            assert message_id is not None
            # Against the stored state, then against the batch's own earlier reports: a
            # batch that holds DELIVERED and a late PENDING of one message keeps DELIVERED.
            change = compare(current.get(message_id), report)
            if change in (Change.NEW, Change.CHANGED):
                current[message_id] = print_ = fingerprint(report)
                chosen.pop(message_id, None)  # the latest state, at its place in the batch
                chosen[message_id] = Delivered(report, print_)
            elif change is Change.SAME and message_id not in chosen:
                same[message_id] = Delivered(report, fingerprint(report))
        new = sum(1 for m in chosen if stored.get(m) is None)
        known = [s for m, s in same.items() if m not in chosen]
        return list(chosen.values()), known, new, len(chosen) - new

    # -- the hand-over ---------------------------------------------------------------------

    async def _hand_over(
        self,
        lease: Lease,
        items: list[Item],
        batch: list[Delivered],
        *,
        checkpoint: datetime | None = None,
        known: Sequence[Delivered] = (),
        inbox: Sequence[int] = (),
        reports: tuple[datetime, int] | None = None,
    ) -> None:
        """The handler with `items` (none: no call), then one fenced commit of it all."""
        name = lease.account
        # No claim in flight, then busy in the same step as the lease is checked: a claim
        # sent from now on will not shed the account while the handler has its batch.
        await self._leases.settled()
        self._leases.check(lease)
        committed = {item.item.message_id or "": item.fingerprint for item in batch}

        # Only what the inbox adds is passed beyond the protocol's first form, so a store
        # written for it (logs only) still takes every batch of logs.
        extra: dict[str, Any] = {}
        if inbox or reports is not None or known:
            extra = {"known": known, "inbox": inbox, "reports": reports}

        async def commit() -> None:
            await self._store.commit_leased(lease, checkpoint=checkpoint, delivered=batch, **extra)
            self._checkpoints.remember(lease, committed)
            if checkpoint is not None:
                self._checkpoints.committed(lease, checkpoint)

        with self._leases.handing_over(name):
            if not items:  # a batch of duplicates: consumed and counted, nobody called
                await commit()
                return

            async def hand_over() -> None:
                await self._handler(name, items)
                await commit()

            await self._shutdown.hand_over(name, len(items), hand_over)


def _untracked(account: str, count: int, what: str) -> None:
    logger.warning(
        "account %s: %d %s without a messageId cannot be tracked and were skipped",
        account,
        count,
        what,
        extra={"account": account, "outcome": "untracked"},
    )
