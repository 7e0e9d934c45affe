"""Polling many accounts into one stream that loses nothing and repeats nothing.

The provider keeps a log for 48 hours and changes its status after it is first seen.
`LogsPoller` walks each account's recent window on every cycle, compares what it finds with
fingerprints of what it delivered before, and hands the handler only the logs that are new
or whose state changed. The records it works with (`Account`, `AccountResult`,
`AccountStatus`, `fingerprint`) live in `_records`; a fleet's leases in `_leases`.
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
    "LogsPoller",
    "fingerprint",
    "new_owner_id",
]
