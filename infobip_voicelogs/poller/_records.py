"""What the poller is given and gives back: `Account`, `AccountResult`, `AccountStatus`,
and `LeaseState`.
"""

from __future__ import annotations

import enum
import warnings
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import attrs
import httpx

from ..codec import Format
from ..errors import AuthenticationError, LeaseLostError
from ..fetcher import FetcherStats, Throttle
from ..models import VoiceLog

__all__ = [
    "AUTH_BACKOFF_FACTOR",
    "MAX_BACKOFF",
    "Account",
    "AccountResult",
    "AccountStatus",
    "Handler",
    "LeaseState",
    "add_results",
    "detached",
    "next_status",
]

#: The longest an account in trouble is left alone between attempts.
MAX_BACKOFF = 3600.0
#: A refused credential will not heal by itself soon: back off this many times longer.
AUTH_BACKOFF_FACTOR = 10

#: A handler receives an account's name and its batch: new and changed logs, oldest first.
Handler = Callable[[str, list[VoiceLog]], Awaitable[None]]


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
    throttle: Throttle | None = attrs.field(default=None, repr=False, eq=False)
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
        error: The exception that failed the cycle (fetch, handler or store), or `None`;
            its tracebacks are cleared once the poller has logged it (see `detached`).
        newest_sent_at: The newest `sent_at` among the logs delivered (and committed).
        settled: Logs delivered in their message's first final state (`DELIVERED`,
            `UNDELIVERABLE`, ...; no final state stored before, from a log or a report): in
            a reconciliation cycle, the states the account's delivery reports never brought.
    """

    delivered: int = 0
    new: int = 0
    changed: int = 0
    error: Exception | None = None
    newest_sent_at: datetime | None = None
    settled: int = 0

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


@attrs.frozen(init=False)
class AccountStatus:
    """Running totals for one account, for dashboards and the CLI's live table.

    `LogsPoller.status()` returns snapshots: a new one after each cycle, never changed.
    Built with keyword arguments, one per attribute; ``held=`` (before `lease`) still
    works, with a `DeprecationWarning`.
    """

    cycles: int = 0
    new: int = 0
    changed: int = 0
    failures: int = 0
    consecutive_failures: int = 0
    #: The error of the last failed cycle, its tracebacks cleared (so it pins none of the
    #: cycle's frames and batches); `None` again after a cycle that worked.
    last_error: Exception | None = None
    last_polled: datetime | None = None
    next_due: float = 0.0  # on the event loop's clock
    requests: int = 0
    retries: int = 0
    rate_limited: int = 0
    #: Whether this process holds the account's lease, another does, or it cannot know.
    lease: LeaseState = LeaseState.HELD
    #: When (the poller's clock) this process's claims began to fail, while they fail.
    claims_failing_since: datetime | None = None
    #: Cycles cut because the lease lapsed or passed to another process (shed, or the
    #: store unreachable): what they had not committed is left to the holder.
    lost_leases: int = 0
    #: The newest `sent_at` of any log delivered so far.
    newest_sent_at: datetime | None = None
    #: Whether the account's delivery reports flow (its last report, read from the store,
    #: is within `reconcile` of now): then it is polled every `reconcile`, not `interval`.
    reports_flowing: bool = False
    #: Final states that reconciliation cycles found in the logs and no report brought:
    #: the webhooks lost (an upper bound: a report still on its way counts too).
    webhook_lost: int = 0

    def __init__(self, *args: Any, held: bool | None = None, **fields: Any) -> None:
        if held is not None:
            warnings.warn(
                "AccountStatus(held=...) is deprecated: use lease=LeaseState.HELD or"
                " LeaseState.ELSEWHERE",
                DeprecationWarning,
                stacklevel=2,
            )
            fields.setdefault("lease", LeaseState.HELD if held else LeaseState.ELSEWHERE)
        self.__attrs_init__(*args, **fields)

    @property
    def held(self) -> bool:
        """Whether this process may poll the account now (`lease` is `LeaseState.HELD`)."""
        return self.lease is LeaseState.HELD


def add_results(one: AccountResult, other: AccountResult) -> AccountResult:
    """Two batches' results as one (their errors aside: the caller sets the cycle's)."""
    dates = [d for d in (one.newest_sent_at, other.newest_sent_at) if d is not None]
    return AccountResult(
        delivered=one.delivered + other.delivered,
        new=one.new + other.new,
        changed=one.changed + other.changed,
        newest_sent_at=max(dates, default=None),
        settled=one.settled + other.settled,
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


def next_status(
    before: AccountStatus,
    result: AccountResult,
    *,
    now: float,
    polled_at: datetime,
    interval: float,
    stats: FetcherStats | None,
    reconciling: bool = False,
) -> AccountStatus:
    """An account's status after a cycle ended at `now` (event loop time) with `result`.

    A success is due again one `interval` later (the caller passes the reconciliation
    interval while the account's reports flow: `reconciling`, whose final states found
    count as `webhook_lost`). A failure backs off: `interval`, doubling
    with each failure in a row, up to `MAX_BACKOFF` (ten times longer for a refused
    credential). A lost lease is not the account's failure: it is counted and the account
    is no longer held, with no back-off. The error kept is `detached`; a success clears it.
    """
    changes: dict[str, Any] = {
        "cycles": before.cycles + 1,
        "new": before.new + result.new,
        "changed": before.changed + result.changed,
        "last_polled": polled_at,
        "reports_flowing": reconciling,
    }
    if reconciling and result.settled:
        changes["webhook_lost"] = before.webhook_lost + result.settled
    newest = result.newest_sent_at
    if newest is not None and (before.newest_sent_at is None or newest > before.newest_sent_at):
        changes["newest_sent_at"] = newest
    if stats is not None:
        changes.update(
            requests=stats.requests, retries=stats.retries, rate_limited=stats.rate_limited
        )
    error = result.error
    if error is None:
        changes.update(consecutive_failures=0, next_due=now + interval, last_error=None)
    elif isinstance(error, LeaseLostError):
        changes.update(
            lost_leases=before.lost_leases + 1,
            lease=LeaseState.ELSEWHERE,
            last_error=detached(error),
        )
    else:
        failures = before.consecutive_failures + 1
        backoff = interval * 2 ** min(failures - 1, 10)
        if isinstance(error, AuthenticationError):
            backoff *= AUTH_BACKOFF_FACTOR
        changes.update(
            failures=before.failures + 1,
            consecutive_failures=failures,
            last_error=detached(error),
            next_due=now + min(backoff, max(MAX_BACKOFF, interval)),
        )
    return attrs.evolve(before, **changes)
