"""What a command runs on beyond one process: the store (SQLite or PostgreSQL) and each
account's rate limit shared through Redis. Optional extras are imported only when asked
for, and a missing one is a usage error naming what to install.

Both are named by strings a user types, so both are checked up front: a `--store` or
`--redis` that no backend could use is one line naming the option and the forms it
accepts, exit 2, before anything connects.
"""

from __future__ import annotations

import re
from typing import Any, Literal
from urllib.parse import urlsplit

import attrs

from ..defaults import DEFAULT_RATE
from ..poller import Account
from ..store import CheckpointStore, SqliteStore
from ..throttle import TokenBucket
from .common import fail

__all__ = ["SharedRates", "StoreSpec", "check_redis_url", "open_store", "parse_store"]

# `postgresql+psycopg://` is SQLAlchemy's spelling of the same URL; the driver part goes.
_POSTGRES_SCHEMES = {"postgresql", "postgres", "postgresql+psycopg", "postgresql+psycopg2"}
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://(.*)$", re.DOTALL)
# A `key=value` token anywhere: what a libpq connection string is made of, and no file name.
_KEY_VALUE = re.compile(r"(?:^|\s)[A-Za-z_]+\s*=")
_STORE_FORMS = (
    "a SQLite file path, a postgresql:// URL (also postgres://, postgresql+psycopg://), "
    "or a libpq connection string like 'host=db dbname=voicelogs'"
)
# The fields a printed connection string shows first, in this order.
_SHOWN_FIRST = ("host", "port", "dbname", "user")
_REDIS_SCHEMES = ("redis", "rediss", "unix")


@attrs.frozen
class StoreSpec:
    """What `--store` names: a SQLite file or a PostgreSQL connection string.

    ``target`` is what the store is opened with; ``shown`` is fit for a message, built from
    the parsed fields with the password (from the URL's userinfo, ``?password=`` or a
    ``password=`` pair) replaced by ``***``.
    """

    kind: Literal["sqlite", "postgres"]
    target: str = attrs.field(repr=False)
    shown: str


def parse_store(spec: str) -> StoreSpec:
    """Read `--store`; `ValueError` (naming the option, never the password) if unusable."""
    text = spec.strip()
    url = _URL.match(text)
    if url is not None:
        scheme, rest = url[1].lower(), url[2]
        if scheme not in _POSTGRES_SCHEMES:
            raise ValueError(f"--store: {scheme}:// is no store: give {_STORE_FORMS}")
        return _postgres(f"postgresql://{rest}")
    if _KEY_VALUE.search(text):
        return _postgres(text)
    if not text:
        raise ValueError(f"--store is empty: give {_STORE_FORMS}")
    return StoreSpec("sqlite", text, text)


def _postgres(dsn: str) -> StoreSpec:
    try:
        from psycopg import Error
        from psycopg.conninfo import conninfo_to_dict, make_conninfo
    except ImportError:
        raise ValueError(
            "--store names a PostgreSQL database, which needs the postgres extra: "
            "pip install 'infobip-voicelogs[postgres]'"
        ) from None
    try:
        fields = conninfo_to_dict(dsn)
    except Error:
        # libpq's message quotes the string, password and all: not repeated here.
        raise ValueError(
            "--store looks like a PostgreSQL connection string but libpq cannot read it "
            f"(a SQLite file name has no '=' or '://'): give {_STORE_FORMS}"
        ) from None
    if "password" in fields:
        fields["password"] = "***"
    ordered = {key: fields[key] for key in _SHOWN_FIRST if key in fields} | fields
    return StoreSpec("postgres", dsn, make_conninfo("", **ordered))


def open_store(spec: StoreSpec, *, archive: bool, **options: Any) -> CheckpointStore:
    """`SqliteStore` for a file, `PostgresStore` for a connection string."""
    if spec.kind == "sqlite":
        return SqliteStore(spec.target, archive=archive)
    try:
        from ..postgres import PostgresStore
    except ImportError as exc:
        fail(str(exc))
    return PostgresStore(spec.target, archive=archive, **options)


def check_redis_url(url: str) -> str:
    """`--redis`, checked: `ValueError` naming the option and the schemes it accepts."""
    problem = (
        "--redis must be a Redis URL: redis://host:port/db, rediss://host:port/db (TLS) "
        "or unix:///path/to/redis.sock"
    )
    try:
        parts = urlsplit(url.strip())
        port_ok = parts.port is None or parts.port > 0
    except ValueError:  # a bad port or bracket: the URL is not repeated, it may hold a password
        raise ValueError(problem) from None
    scheme = parts.scheme.lower()
    located = bool(parts.path) if scheme == "unix" else bool(parts.hostname)
    if scheme not in _REDIS_SCHEMES or not located or not port_ok:
        raise ValueError(problem)
    return url.strip()


class SharedRates:
    """`--redis`: one Redis client (one pool) for a `RedisBucket` per account.

    Every process started with the same accounts file and Redis URL shares each account's
    limit: the bucket's key is derived from the account's base URL and key (`bucket_key`),
    never from its name in this file, and its rate is the account's `rate` (default 2/s).
    """

    def __init__(self, url: str) -> None:
        try:
            # Ours first: its ImportError names the extra to install.
            from ..redis import RedisBucket, bucket_key
        except ImportError as exc:
            fail(f"--redis: {exc}")
        import redis.asyncio as aioredis

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
