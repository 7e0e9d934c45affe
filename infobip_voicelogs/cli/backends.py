"""What a command runs on beyond one process: the store (SQLite or PostgreSQL) and each
account's rate limit shared through Redis. Optional extras are imported only when asked
for, and a missing one is a usage error naming what to install."""

from __future__ import annotations

from typing import Any

import attrs

from ..defaults import DEFAULT_RATE
from ..poller import Account
from ..store import CheckpointStore, SqliteStore
from ..throttle import TokenBucket
from .common import fail

__all__ = ["SharedRates", "is_postgres_url", "open_store", "redacted"]

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


class SharedRates:
    """`--redis`: one Redis client (one pool) for a `RedisBucket` per account.

    Every process started with the same accounts file and Redis URL shares each account's
    limit: the bucket's key is derived from the account's base URL and key (`bucket_key`),
    never from its name in this file, and its rate is the account's `rate` (default 2/s).
    """

    def __init__(self, url: str) -> None:
        try:
            import redis.asyncio as aioredis

            from ..redis import RedisBucket, bucket_key
        except ImportError as exc:
            fail(str(exc) if "infobip" in str(exc) else f"--redis needs the redis extra: {exc}")
        # A blocking pool: a full pool waits (briefly) instead of failing as if Redis were down.
        pool = aioredis.BlockingConnectionPool.from_url(url, max_connections=32, timeout=0.25)
        self._client = aioredis.Redis.from_pool(pool)
        self._bucket, self._key = RedisBucket, bucket_key
        self._buckets: list[Any] = []

    def share(self, accounts: list[Account]) -> list[Account]:
        """The accounts, each with a `RedisBucket` at its rate instead of its own bucket."""
        shared = []
        for account in accounts:
            throttle = account.throttle
            rate = throttle.configured_rate if isinstance(throttle, TokenBucket) else DEFAULT_RATE
            bucket = self._bucket(
                self._client, key=self._key(account.base_url, account.auth), rate=rate
            )
            self._buckets.append(bucket)
            shared.append(attrs.evolve(account, throttle=bucket))
        return shared

    async def aclose(self) -> None:
        """Close every bucket (flushing its feedback), then the shared client."""
        for bucket in self._buckets:
            await bucket.aclose()
        await self._client.aclose()
