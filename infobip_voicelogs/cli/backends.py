"""What a command runs on beyond one process: the store (SQLite or PostgreSQL) and, later,
the shared rate limit. Optional extras are imported only when asked for, and a missing
one is a usage error naming what to install."""

from __future__ import annotations

from typing import Any

from ..store import CheckpointStore, SqliteStore
from .common import fail

__all__ = ["is_postgres_url", "open_store", "redacted"]

_POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def is_postgres_url(spec: str) -> bool:
    """Whether `--store` names a PostgreSQL database rather than a SQLite file."""
    return spec.strip().lower().startswith(_POSTGRES_SCHEMES)


def redacted(spec: str) -> str:
    """A store's name fit for a message: a URL's password replaced by ``***``."""
    if not is_postgres_url(spec):
        return spec
    scheme, _, rest = spec.partition("://")
    userinfo, at, host = rest.rpartition("@")
    if not at:
        return spec
    user = userinfo.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in userinfo else spec


def open_store(spec: str, *, archive: bool, **options: Any) -> CheckpointStore:
    """`SqliteStore(spec)` for a path, `PostgresStore(spec)` for a ``postgresql://`` URL."""
    if not is_postgres_url(spec):
        return SqliteStore(spec, archive=archive)
    try:
        from ..postgres import PostgresStore
    except ImportError as exc:
        fail(str(exc))
    return PostgresStore(spec, archive=archive, **options)
