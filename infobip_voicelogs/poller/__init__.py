"""Polling many accounts into one stream that loses nothing and repeats nothing.

The provider keeps a log for 48 hours and changes its status after it is first seen.
`LogsPoller` walks each account's recent window on every cycle, compares what it finds with
fingerprints of what it delivered before, and hands the handler only the logs that are new
or whose state changed. `_poller` is the class and its life cycle; `_cycle` one account's
walk, hand-over and commit; `_shutdown` how it stops within a bound; `_leases` a fleet's
share of the accounts; `_records` what it is given and gives back (`Account`,
`AccountResult`, `AccountStatus`, `fingerprint`).
"""

from ._leases import DEFAULT_CLAIM_INTERVAL, DEFAULT_LEASE_TTL, new_owner_id
from ._poller import PRUNE_MARGIN, LogsPoller
from ._records import (
    AUTH_BACKOFF_FACTOR,
    MAX_BACKOFF,
    Account,
    AccountResult,
    AccountStatus,
    Handler,
    LeaseState,
    fingerprint,
)
from ._shutdown import ABANDON_WAIT, DEFAULT_SHUTDOWN_GRACE

__all__ = [
    "ABANDON_WAIT",
    "AUTH_BACKOFF_FACTOR",
    "DEFAULT_CLAIM_INTERVAL",
    "DEFAULT_LEASE_TTL",
    "DEFAULT_SHUTDOWN_GRACE",
    "MAX_BACKOFF",
    "PRUNE_MARGIN",
    "Account",
    "AccountResult",
    "AccountStatus",
    "Handler",
    "LeaseState",
    "LogsPoller",
    "fingerprint",
    "new_owner_id",
]
