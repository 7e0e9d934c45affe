"""`PostgresStore`: one PostgreSQL database for a fleet of pollers (the `postgres` extra).

Checkpoints, fingerprints and the archive that every poller process shares, and fenced
leases that give each account to one process at a time. Install with
`pip install 'infobip-voicelogs[postgres]'` (psycopg 3 and psycopg_pool).

```python
from infobip_voicelogs.postgres import PostgresStore

store = PostgresStore("postgresql://voicelogs@db.internal/voicelogs", archive=True)
```
"""

try:
    import psycopg  # noqa: F401
    import psycopg_pool  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised in a venv without the extra
    raise ImportError(
        "infobip_voicelogs.postgres needs psycopg 3 and psycopg_pool: "
        "pip install 'infobip-voicelogs[postgres]'"
    ) from exc

from ._schema import SCHEMA_VERSION
from .store import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_SIZE,
    DEFAULT_POOL_TIMEOUT,
    DEFAULT_TIMEOUT,
    PostgresStore,
)

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_IDLE_TIMEOUT",
    "DEFAULT_MAX_SIZE",
    "DEFAULT_POOL_TIMEOUT",
    "DEFAULT_TIMEOUT",
    "SCHEMA_VERSION",
    "PostgresStore",
]

PostgresStore.__module__ = __name__
