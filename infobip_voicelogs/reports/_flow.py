"""The reports' side of the one stream: a batch of reports through the store and the handler.

`ReportsReceiver(store=..., handler=...)` delivers each batch with `StoreDelivery`, the same
way the poller delivers a page of logs: the stored fingerprints of the batch's messages
are read, each report is compared with its message's (`state.compare`), the new and
changed states go to the handler, and then, only once it returned, they are committed with
the account's report activity (`ReportStore.commit_reports`). The fingerprints are the
ones the poller writes, so a state brought by one source is not delivered again by the
other, and a final state is never followed by an older one.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime

from ..state import Change, compare, fingerprint
from ..store import Delivered, ReportStore
from ._model import VoiceReport

__all__ = ["ReportHandler", "StoreDelivery"]

logger = logging.getLogger("infobip_voicelogs")

#: Takes ``(account, reports)``: the new and changed states of a batch, in the batch's order.
#: A handler typed ``Sequence[VoiceLog | VoiceReport]`` serves the poller too.
ReportHandler = Callable[[str, list[VoiceReport]], Awaitable[object]]


class StoreDelivery:
    """Deliver a batch of reports: what is new to the handler, then all of it to the store.

    A batch that brings nothing new (a redelivery) reaches no handler and is still
    committed: the account's report activity says its reports flow.
    """

    __slots__ = ("_clock", "_handler", "_store")

    def __init__(
        self, store: ReportStore, handler: ReportHandler, clock: Callable[[], datetime]
    ) -> None:
        if not isinstance(store, ReportStore):
            raise TypeError(
                f"{type(store).__name__} keeps no delivery reports (no commit_reports and "
                "report_activity): use SqliteStore or PostgresStore"
            )
        self._store = store
        self._handler = handler
        self._clock = clock

    async def __call__(self, account: str, reports: Sequence[VoiceReport]) -> None:
        """Hand the batch's new states over, then commit them; raise if either fails."""
        received_at = self._clock()
        batch, same = await self._changes(account, reports)
        if batch:
            await self._handler(account, [item.report for item in batch])
        await self._store.commit_reports(
            account,
            [Delivered(item.report, item.fingerprint) for item in batch],
            received_at=received_at,
            received=len(reports),
            # The states a log brought first: their reports still fill the archive's row.
            known=[Delivered(item.report, item.fingerprint) for item in same],
        )

    async def _changes(
        self, account: str, reports: Sequence[VoiceReport]
    ) -> tuple[list[_Change], list[_Change]]:
        """The batch's new and changed states, one per message, in the batch's order; and
        the reports of states already stored (`SAME`), one per message."""
        tracked = [r for r in reports if r.message_id is not None]
        if len(tracked) < len(reports):
            logger.warning(
                "reports: %d reports for %s have no messageId and cannot be tracked; skipped",
                len(reports) - len(tracked),
                account,
                extra={"account": account, "outcome": "untracked"},
            )
        ids = [r.message_id for r in tracked if r.message_id is not None]
        current: dict[str, str | None] = dict(await self._store.fingerprints(account, ids))
        chosen: dict[str, _Change] = {}
        same: dict[str, _Change] = {}
        for report in tracked:
            message_id = report.message_id
            assert message_id is not None
            # Against the stored state, then against this batch's own earlier reports: a
            # batch that holds DELIVERED and a late PENDING of one message keeps DELIVERED.
            change = compare(current.get(message_id), report)
            if change in (Change.NEW, Change.CHANGED):
                current[message_id] = fp = fingerprint(report)
                chosen.pop(message_id, None)  # the latest state, at its place in the batch
                chosen[message_id] = _Change(report, fp)
            elif change is Change.SAME and message_id not in chosen:
                same[message_id] = _Change(report, fingerprint(report))
        return list(chosen.values()), [s for m, s in same.items() if m not in chosen]


class _Change:
    """A report to hand over and the fingerprint of its state."""

    __slots__ = ("fingerprint", "report")

    def __init__(self, report: VoiceReport, fingerprint: str) -> None:
        self.report = report
        self.fingerprint = fingerprint
