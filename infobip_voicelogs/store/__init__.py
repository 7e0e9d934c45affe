"""Where the poller keeps its place: checkpoints, fingerprints, and the archive of logs.

`CheckpointStore` is the protocol the poller is written against; `SqliteStore` is the
default implementation, one SQLite file for one process. A Redis implementation for
several processes can follow the same protocol.
"""

from ..errors import StoreError
from .base import CheckpointStore, Delivered
from .sqlite import DEFAULT_BUSY_TIMEOUT, SCHEMA_VERSION, SqliteStore

__all__ = [
    "DEFAULT_BUSY_TIMEOUT",
    "SCHEMA_VERSION",
    "CheckpointStore",
    "Delivered",
    "SqliteStore",
    "StoreError",
]
