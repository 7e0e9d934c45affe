"""Where the poller keeps its place: checkpoints, fingerprints, and the archive of logs.

`CheckpointStore` is the protocol a store must offer; `SqliteStore` is the default
implementation, one SQLite file for one process. `LeaseStore` adds the fenced leases the
poller commits through: `infobip_voicelogs.postgres.PostgresStore` shares them among a
fleet, `SqliteStore` grants every account to its one poller (fence 0), and the poller
wraps a `CheckpointStore` without leases to do the same. `ReportStore` is the delivery
reports' side of the same tables, and `InboxStore` the inbox of report batches waiting
for their account's holder (`SqliteStore` and `PostgresStore` offer both).
"""

from ..errors import LeaseLostError, StoreError
from ._local import solo_leases
from .base import (
    CheckpointStore,
    Delivered,
    InboxEntry,
    InboxStore,
    Item,
    Lease,
    LeaseStore,
    ReportStore,
)
from .sqlite import DEFAULT_BUSY_TIMEOUT, SCHEMA_VERSION, SqliteStore

__all__ = [
    "DEFAULT_BUSY_TIMEOUT",
    "SCHEMA_VERSION",
    "CheckpointStore",
    "Delivered",
    "InboxEntry",
    "InboxStore",
    "Item",
    "Lease",
    "LeaseLostError",
    "LeaseStore",
    "ReportStore",
    "SqliteStore",
    "StoreError",
    "solo_leases",
]
