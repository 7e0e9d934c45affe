"""The store's own connection pool: bounded, PgBouncer-safe, and able to say why it is empty.

A pool connects in the background, so a call that finds no connection only learns "no
connection within N seconds". `ConnectFailures` remembers the last failed attempt, so that
the `StoreError` can say *why* (refused, unknown host, password rejected) as well.
"""

from __future__ import annotations

from typing import Any, Self

import psycopg
from psycopg_pool import AsyncConnectionPool

__all__ = ["ConnectFailures", "make_pool"]


class ConnectFailures:
    """The last connection error of a pool, kept for the error message of a timed-out call."""

    def __init__(self) -> None:
        self.last: str | None = None

    def connection_class(self) -> type[psycopg.AsyncConnection[Any]]:
        """An `AsyncConnection` class that records its failures here."""
        failures = self

        class RecordingConnection(psycopg.AsyncConnection[Any]):
            @classmethod
            async def connect(cls, *args: Any, **kwargs: Any) -> Self:
                try:
                    connection = await super().connect(*args, **kwargs)
                except psycopg.Error as exc:
                    failures.last = str(exc).strip() or type(exc).__name__
                    raise
                failures.last = None
                return connection

        return RecordingConnection


def make_pool(
    dsn: str,
    *,
    failures: ConnectFailures,
    min_size: int,
    max_size: int,
    connect_timeout: int,
    pool_timeout: float,
) -> AsyncConnectionPool[Any]:
    """A closed pool for `dsn`; the caller opens it inside its event loop."""
    return AsyncConnectionPool(
        dsn,
        open=False,
        name="infobip-voicelogs",
        connection_class=failures.connection_class(),
        min_size=min_size,
        max_size=max_size,
        timeout=pool_timeout,
        check=AsyncConnectionPool.check_connection,  # a restart's dead sockets, found first
        kwargs={
            "autocommit": True,
            "prepare_threshold": None,  # no server-side prepared statements: PgBouncer-safe
            "connect_timeout": connect_timeout,
            "application_name": "infobip-voicelogs",
            # A peer gone without a word (host lost, partition) is noticed within ~1 min.
            "keepalives": 1,
            "keepalives_idle": 30,
            "keepalives_interval": 10,
            "keepalives_count": 3,
        },
    )
