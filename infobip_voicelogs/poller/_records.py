"""What the poller is given and keeps per account: `Account` and `AccountStatus`."""

from __future__ import annotations

import warnings
from datetime import datetime
from typing import Any

import attrs
import httpx

from ..codec import Format
from ..delivery import AccountResult, LeaseState, detached
from ..errors import AuthenticationError, LeaseLostError
from ..fetcher import FetcherStats, Throttle

#: The longest an account in trouble is left alone between attempts.
MAX_BACKOFF = 3600.0
#: A refused credential will not heal by itself soon: back off this many times longer.
AUTH_BACKOFF_FACTOR = 10


@attrs.frozen
class Account:
    """One provider account to poll.

    `auth` is an `httpx.Auth` or an API key string; it never appears in the repr.

    >>> Account("eu-1", "https://xyz.api.infobip.com", auth="secret")
    Account(name='eu-1', base_url='https://xyz.api.infobip.com', format='json', pull_reports=False)
    """

    name: str
    base_url: str
    auth: httpx.Auth | str = attrs.field(repr=False)
    throttle: Throttle | None = attrs.field(default=None, repr=False, eq=False)
    format: Format = "json"
    allow_insecure: bool = attrs.field(default=False, repr=False)
    #: Pull the account's delivery reports (`GET /voice/1/reports`) every cycle: for calls
    #: sent without a ``notifyUrl``. Each pulled batch is recorded in the store's inbox
    #: before anything else and delivered with source ``"report"``; the logs are then
    #: walked every ``reconcile`` only, for what no report brought.
    pull_reports: bool = False


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
