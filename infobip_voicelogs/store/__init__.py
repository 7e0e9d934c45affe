"""Where the poller keeps its place: checkpoints, fingerprints, and the archive of logs.

`CheckpointStore` is the protocol the poller is written against; `SqliteStore` is the
default implementation, one SQLite file for one process. `LeaseStore` adds the fenced
leases a fleet of pollers needs; `infobip_voicelogs.postgres.PostgresStore` implements both.
"""

from ..errors import LeaseLostError, StoreError
from .base import CheckpointStore, Delivered, Lease, LeaseStore
from .sqlite import DEFAULT_BUSY_TIMEOUT, SCHEMA_VERSION, SqliteStore

__all__ = [
    "DEFAULT_BUSY_TIMEOUT",
    "SCHEMA_VERSION",
    "CheckpointStore",
    "Delivered",
    "Lease",
    "LeaseLostError",
    "LeaseStore",
    "SqliteStore",
    "StoreError",
]
