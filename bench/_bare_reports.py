"""The baseline of `bench/reports.py`'s receiver section: a bare Starlette endpoint.

    VOICELOGS_STORE=sqlite:/tmp/x.db python -m uvicorn --app-dir bench _bare_reports:app

What a user would write by hand: `POST /{account}`, the body decoded with orjson, and
the same rows our store writes for a batch without the archive (one fingerprint row per
report and the account's `report_activity`) in one transaction, with psycopg (a pool as
large as `PostgresStore`'s) or sqlite3 (one connection, on a worker thread, WAL and
``synchronous = NORMAL`` as `SqliteStore` sets). No authentication, no dedup against the
stored states, no handler: the least a receiver does.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

SPEC = os.environ["VOICELOGS_STORE"]
POOL_SIZE = 10  # PostgresStore's default max_size

PG_FINGERPRINTS = (
    "INSERT INTO fingerprints (account, message_id, fingerprint, sent_at, updated_at) "
    "SELECT %s, m, f, s::timestamptz, now() FROM json_to_recordset(%s::json) "
    "AS b (m text, f text, s text) ON CONFLICT (account, message_id) DO UPDATE SET "
    "fingerprint = excluded.fingerprint, sent_at = excluded.sent_at, updated_at = now()"
)
PG_ACTIVITY = (
    "INSERT INTO report_activity (account, last_report_at, reports) VALUES (%s, now(), %s) "
    "ON CONFLICT (account) DO UPDATE SET reports = report_activity.reports + excluded.reports,"
    " last_report_at = excluded.last_report_at"
)
SQLITE_FINGERPRINTS = (
    "INSERT INTO fingerprints (account, message_id, fingerprint, sent_at, updated_at) "
    "VALUES (?, ?, ?, ?, ?) ON CONFLICT (account, message_id) DO UPDATE SET "
    "fingerprint = excluded.fingerprint, sent_at = excluded.sent_at, "
    "updated_at = excluded.updated_at"
)
SQLITE_ACTIVITY = (
    "INSERT INTO report_activity (account, last_report_at, reports) VALUES (?, ?, ?) "
    "ON CONFLICT (account) DO UPDATE SET reports = report_activity.reports + excluded.reports,"
    " last_report_at = excluded.last_report_at"
)


def rows_of(body: bytes) -> list[dict[str, Any]]:
    """Each report's id, a fingerprint of its state, its sent time."""
    rows = []
    for report in orjson.loads(body)["results"]:
        status, error, price = (
            report.get("status") or {},
            report.get("error") or {},
            report.get("price") or {},
        )
        state = f"{status.get('id')}|{error.get('id')}|{price.get('pricePerSecond')}"
        rows.append({"m": report["messageId"], "f": state, "s": report.get("sentAt")})
    return rows


class Postgres:
    def __init__(self) -> None:
        from psycopg_pool import AsyncConnectionPool

        self.pool = AsyncConnectionPool(SPEC, min_size=POOL_SIZE, max_size=POOL_SIZE, open=False)

    async def write(self, account: str, rows: list[dict[str, Any]]) -> None:
        async with self.pool.connection() as connection, connection.transaction():
            await connection.execute(PG_FINGERPRINTS, (account, orjson.dumps(rows).decode()))
            await connection.execute(PG_ACTIVITY, (account, len(rows)))


class Sqlite:
    def __init__(self) -> None:
        self.db = sqlite3.connect(SPEC.removeprefix("sqlite:"), check_same_thread=False)
        self.db.execute("PRAGMA journal_mode = WAL")
        self.db.execute("PRAGMA synchronous = NORMAL")
        self.lock = asyncio.Lock()

    def _write(self, account: str, rows: list[dict[str, Any]]) -> None:
        now = datetime.now(UTC).isoformat()
        with self.db:
            self.db.executemany(
                SQLITE_FINGERPRINTS, [(account, r["m"], r["f"], r["s"], now) for r in rows]
            )
            self.db.execute(SQLITE_ACTIVITY, (account, now, len(rows)))

    async def write(self, account: str, rows: list[dict[str, Any]]) -> None:
        async with self.lock:
            await asyncio.to_thread(self._write, account, rows)


database = Sqlite() if SPEC.startswith("sqlite:") else Postgres()


async def take(request: Request) -> Response:
    rows = rows_of(await request.body())
    await database.write(request.path_params["account"], rows)
    return Response(orjson.dumps({"received": len(rows)}), media_type="application/json")


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    if isinstance(database, Postgres):
        await database.pool.open(wait=True)
    yield
    if isinstance(database, Postgres):
        await database.pool.close()


app = Starlette(routes=[Route("/{account}", take, methods=["POST"])], lifespan=lifespan)
