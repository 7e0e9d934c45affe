"""What a hand-over gives back (`AccountResult`), whether this process holds an account
(`LeaseState`), and the handler's type: the records the poller and the receiver share.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING

import attrs

from ..models import VoiceLog

if TYPE_CHECKING:
    pass

#: A handler receives an account's name and its batch: new and changed logs, oldest first.
Handler = Callable[[str, list[VoiceLog]], Awaitable[None]]


@attrs.frozen
class AccountResult:
    """What one cycle did for one account.

    Attributes:
        delivered: Logs handed to the handler (`new + changed`); in a failed cycle, those
            of the batches it committed before the failure.
        new: Logs never delivered before.
        changed: Logs delivered before whose state has changed.
        error: The exception that failed the cycle (fetch, handler or store), or `None`;
            its tracebacks are cleared once the poller has logged it (see `detached`).
        newest_sent_at: The newest `sent_at` among the logs delivered (and committed).
        settled: Logs delivered in their message's first final state (`DELIVERED`,
            `UNDELIVERABLE`, ...; no final state stored before, from a log or a report): in
            a reconciliation cycle, the states the account's delivery reports never brought.
        reports: Delivery reports taken from the store's inbox (delivered, or not because
            their state was known): the account's reports flow.
    """

    delivered: int = 0
    new: int = 0
    changed: int = 0
    error: Exception | None = None
    newest_sent_at: datetime | None = None
    settled: int = 0
    reports: int = 0

    @property
    def ok(self) -> bool:
        """Whether the cycle succeeded."""
        return self.error is None


class LeaseState(enum.Enum):
    """Whether this process may poll an account, as far as it knows."""

    #: This process holds the account's lease (with a `SqliteStore`: once it has claimed).
    HELD = "held"
    #: The last claim, which worked and is still trusted, did not give it: another live
    #: owner holds it (or will at its next claim). Not this process's concern.
    ELSEWHERE = "elsewhere"
    #: No claim has answered yet, or the last that did is too old to trust (the store is
    #: unreachable): nobody here knows who polls it. See `AccountStatus.claims_failing_since`.
    UNKNOWN = "unknown"


def add_results(one: AccountResult, other: AccountResult) -> AccountResult:
    """Two batches' results as one (their errors aside: the caller sets the cycle's)."""
    dates = [d for d in (one.newest_sent_at, other.newest_sent_at) if d is not None]
    return AccountResult(
        delivered=one.delivered + other.delivered,
        new=one.new + other.new,
        changed=one.changed + other.changed,
        newest_sent_at=max(dates, default=None),
        settled=one.settled + other.settled,
        reports=one.reports + other.reports,
    )


def detached(error: Exception) -> Exception:
    """`error` with the tracebacks of it and its cause/context chain cleared, in place.

    A traceback holds the frames that raised, and with them every local: a cycle's whole
    batch, a response body. An error kept for the status must keep none of that alive.
    """
    seen: set[int] = set()
    chain: list[BaseException | None] = [error]
    while chain:
        link = chain.pop()
        if link is None or id(link) in seen:
            continue
        seen.add(id(link))
        link.__traceback__ = None
        chain += (link.__cause__, link.__context__)
        if isinstance(link, BaseExceptionGroup):
            chain += link.exceptions
    return error
