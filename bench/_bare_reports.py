"""The baseline of `bench/reports.py`'s receiver section: a bare Starlette endpoint.

    VOICELOGS_STORE=sqlite:/tmp/x.db python -m uvicorn --app-dir bench _bare_reports:app

What a user would write by hand: `POST /{account}`, the body decoded with orjson, and
the same row our receiver writes for a batch (one row of the store's inbox: the account,
the time, the count and the body) in one statement, with psycopg (a pool as large as
`PostgresStore`'s) or sqlite3 (one connection, on a worker thread, WAL and ``synchronous
= NORMAL`` as `SqliteStore` sets). No authentication, no validation beyond JSON, no
wake-up: the least a receiver that records and answers does.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

SPEC = os.environ["VOICELOGS_STORE"]
POOL_SIZE = 10  # PostgresStore's default max_size

PG_INBOX = "INSERT INTO report_inbox (account, received_at, count, body) VALUES (%s, now(), %s, %s)"
SQLITE_INBOX = "INSERT INTO report_inbox (account, received_at, count, body) VALUES (?, ?, ?, ?)"


def count_of(body: bytes) -> int:
    """How many reports the batch holds (decoding it as JSON, as a check)."""
    return len(orjson.loads(body)["results"])


class Postgres:
    def __init__(self) -> None:
        from psycopg_pool import AsyncConnectionPool

        self.pool = AsyncConnectionPool(SPEC, min_size=POOL_SIZE, max_size=POOL_SIZE, open=False)

    async def write(self, account: str, count: int, body: bytes) -> None:
        async with self.pool.connection() as connection:
            await connection.execute(PG_INBOX, (account, count, body))


class Sqlite:
    def __init__(self) -> None:
        self.db = sqlite3.connect(SPEC.removeprefix("sqlite:"), check_same_thread=False)
        self.db.execute("PRAGMA journal_mode = WAL")
        self.db.execute("PRAGMA synchronous = NORMAL")
        self.lock = asyncio.Lock()

    def _write(self, account: str, count: int, body: bytes) -> None:
        now = datetime.now(UTC).isoformat()
        with self.db:
            self.db.execute(SQLITE_INBOX, (account, now, count, body))

    async def write(self, account: str, count: int, body: bytes) -> None:
        async with self.lock:
            await asyncio.to_thread(self._write, account, count, body)


database = Sqlite() if SPEC.startswith("sqlite:") else Postgres()


async def take(request: Request) -> Response:
    body = await request.body()
    count = count_of(body)
    await database.write(request.path_params["account"], count, body)
    return Response(orjson.dumps({"received": count}), media_type="application/json")


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    if isinstance(database, Postgres):
        await database.pool.open(wait=True)
    yield
    if isinstance(database, Postgres):
        await database.pool.close()


app = Starlette(routes=[Route("/{account}", take, methods=["POST"])], lifespan=lifespan)
