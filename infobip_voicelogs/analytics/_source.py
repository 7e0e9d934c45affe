"""The archive read for numbers: one connection to a SQLite file or a PostgreSQL schema.

Analytics reads the archive (the `voice_logs` table, or the `voice_log_costs` view: one row
per message, its cost and country) with plain SQL, streamed in chunks. A store of an older
layout is migrated first (as opening it with its store would); a missing store is an
error, and nothing is created.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import queue
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import quote

from ..errors import InvalidQueryError, StoreError
from ..store import SCHEMA_VERSION
from ..store.kit import migrate, utc_text

Kind = Literal["sqlite", "postgres"]
_Chunk = TypeVar("_Chunk", list[tuple[Any, ...]], bytes)


class Window:
    """Which messages to read: sent in `[since, until]`, of the given accounts (all if none)."""

    __slots__ = ("accounts", "since", "until")

    def __init__(
        self,
        since: datetime | None = None,
        until: datetime | None = None,
        accounts: Sequence[str] = (),
    ) -> None:
        for name, value in (("since", since), ("until", until)):
            if value is not None and value.utcoffset() is None:
                raise InvalidQueryError(name, f"{value.isoformat()} has no timezone offset")
        if since is not None and until is not None and since > until:
            raise InvalidQueryError(
                "since", f"{since.isoformat()} is after until ({until.isoformat()})"
            )
        self.since, self.until = since, until
        self.accounts = tuple(dict.fromkeys(accounts))


def _is_postgres(target: str) -> bool:
    head = target.strip().split("://", 1)[0].lower()
    return head.startswith("postgres") or ("=" in target and "://" not in target)


class Archive:
    """A read connection to the archive of a `SqliteStore` file or a `PostgresStore` schema.

    `target` is a SQLite path or a PostgreSQL URL / connection string (`postgresql://...`
    or `host=... dbname=...`); `schema` is the PostgreSQL schema of the store's tables.
    """

    def __init__(self, target: str | os.PathLike[str], *, schema: str = "public") -> None:
        text = os.fspath(target)
        self.kind: Kind = "postgres" if _is_postgres(text) else "sqlite"
        self._connection: Any
        self._path = text
        if self.kind == "sqlite":
            self._connection = _open_sqlite(text)
            self.view, self._mark = "voice_log_costs", "?"
            self.table = "voice_logs"
        else:
            from ..postgres.kit import quote_ident

            self._connection = _open_postgres(text, schema)
            self.view, self._mark = f"{quote_ident(schema)}.voice_log_costs", "%s"
            self.table = f"{quote_ident(schema)}.voice_logs"
            self._schema = quote_ident(schema)

    def __enter__(self) -> Archive:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection."""
        self._connection.close()

    def where(self, window: Window) -> tuple[str, list[Any]]:
        """The `WHERE` clause (maybe empty) and parameters of a window over the view."""
        clauses: list[str] = []
        params: list[Any] = []
        for op, when in ((">=", window.since), ("<=", window.until)):
            if when is not None:
                clauses.append(f"sent_at {op} {self._mark}")
                params.append(utc_text(when) if self.kind == "sqlite" else when)
        if window.accounts:
            clauses.append(f"account IN ({', '.join([self._mark] * len(window.accounts))})")
            params.extend(window.accounts)
        return (" WHERE " + " AND ".join(clauses) if clauses else ""), params

    def check_accounts(self, window: Window) -> None:
        """Refuse a window naming an account the store has never seen (`InvalidQueryError`)."""
        if not window.accounts:
            return
        tables = "voice_logs" if self.kind == "sqlite" else f"{self._schema}.voice_logs"
        checkpoints = tables.replace("voice_logs", "checkpoints")
        known = {
            row[0]
            for row in self.fetch(
                f"SELECT DISTINCT account FROM {tables} UNION SELECT account FROM {checkpoints}"
            )
        }
        unknown = [name for name in window.accounts if name not in known]
        if unknown:
            listed = ", ".join(repr(name) for name in unknown)
            raise InvalidQueryError(
                "accounts",
                f"unknown account {listed}: the store has no messages or checkpoint for it",
            )

    def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Every row of a small query (aggregates)."""
        with _errors(self.kind):
            cursor = self._connection.cursor()
            try:
                cursor.execute(sql, params)
                return list(cursor.fetchall())
            finally:
                cursor.close()

    def fetch_each(self, jobs: Sequence[Sequence[tuple[str, Sequence[Any]]]]) -> list[list[Any]]:
        """The rows of several small queries (aggregates), in order.

        Each job is a list of statements run in order on one connection; its rows are those
        of its last `SELECT`. On SQLite each job runs on its own read connection in its own
        thread: the aggregation runs in SQLite's C code without the GIL, so they share the
        cores.
        """
        if self.kind != "sqlite":
            return [self._run(self._connection, job) for job in jobs]

        def one(job: Sequence[tuple[str, Sequence[Any]]]) -> list[Any]:
            connection = sqlite3.connect(f"file:{quote(self._path)}?mode=ro", uri=True)
            try:
                return self._run(connection, job)
            finally:
                connection.close()

        with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
            return list(pool.map(one, jobs))

    def _run(self, connection: Any, job: Sequence[tuple[str, Sequence[Any]]]) -> list[Any]:
        rows: list[Any] = []
        with _errors(self.kind):
            cursor = connection.cursor()
            try:
                for sql, params in job:
                    cursor.execute(sql, params)
                    if cursor.description is not None:
                        rows = list(cursor.fetchall())
                return rows
            finally:
                cursor.close()

    def stream(
        self, sql: str, params: Sequence[Any] = (), *, chunk: int = 50_000
    ) -> Iterator[list[tuple[Any, ...]]]:
        """The rows of a large query in chunks of at most `chunk` rows (a server-side cursor
        on PostgreSQL, so neither side holds the whole result)."""
        with _errors(self.kind):
            if self.kind == "sqlite":
                cursor = self._connection.cursor()
            else:
                cursor = self._connection.cursor(name="voicelogs_export")
                cursor.itersize = chunk
            try:
                cursor.execute(sql, params)
                yield from _read_ahead(lambda: cursor.fetchmany(chunk))
            finally:
                with contextlib.suppress(Exception):  # a generator closed after its connection
                    cursor.close()

    def json_chunks(
        self, columns: Sequence[str], where: str, params: Sequence[Any], *, chunk: int
    ) -> Iterator[bytes]:
        """SQLite: the rows of `columns` over the table, as newline-delimited JSON objects
        keyed `c0`, `c1`, ..., one `bytes` of at most `chunk` rows at a time.

        SQLite writes each chunk whole in its C code (`json_object`, `group_concat`) without
        the GIL: no Python object per value. The chunks follow the table's storage order
        (its rowid, never an index), all in one read transaction (one snapshot).
        """
        line = ", ".join(f"'c{i}', {column}" for i, column in enumerate(columns))
        condition = where.replace(" WHERE ", " AND ", 1)
        sql = (
            "SELECT CAST(group_concat(line, char(10)) AS BLOB), max(id) FROM ("
            f"SELECT rowid AS id, json_object({line}) AS line FROM {self.table} NOT INDEXED "
            f"WHERE rowid > ?{condition} ORDER BY rowid LIMIT ?)"
        )
        connection = self._connection
        last: list[Any] = [None]

        def read() -> bytes:
            start = -(2**63) if last[0] is None else last[0]
            text, last[0] = connection.execute(sql, (start, *params, chunk)).fetchone()
            return b"" if text is None else bytes(text)

        with _errors(self.kind):
            connection.execute("BEGIN")
            try:
                yield from _read_ahead(read)
            finally:
                with contextlib.suppress(Exception):  # a generator closed after its connection
                    connection.execute("COMMIT")

    def csv_copy(
        self, columns: Sequence[str], where: str, params: Sequence[Any], *, chunk: int
    ) -> Iterator[bytes]:
        """PostgreSQL: the rows of `columns` over the table as CSV (`COPY ... TO STDOUT`),
        one `bytes` of at most `chunk` rows at a time; timestamps in ISO style, UTC.

        The server sends each row in a message of its own, so a chunk ends with a row.
        """
        with _errors(self.kind):
            self._connection.execute("SET DateStyle = 'ISO, YMD'")
            cursor = self._connection.cursor()
            try:
                with cursor.copy(
                    f"COPY (SELECT {', '.join(columns)} FROM {self.table}{where}) "
                    "TO STDOUT (FORMAT csv)",
                    params,
                ) as copy:
                    rows = iter(copy)

                    def read() -> bytes:
                        return b"".join(itertools.islice(rows, chunk))

                    yield from _read_ahead(read)
            finally:
                with contextlib.suppress(Exception):
                    cursor.close()


class _errors:
    """Database errors as `StoreError`s naming what failed."""

    def __init__(self, kind: Kind) -> None:
        self.kind = kind

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, _: Any) -> None:
        if exc is None or isinstance(exc, StoreError | InvalidQueryError):
            return
        if isinstance(exc, sqlite3.Error) or type(exc).__module__.startswith("psycopg"):
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise StoreError(f"cannot read the archive ({self.kind}): {first}") from exc


def _read_ahead(read: Callable[[], _Chunk]) -> Iterator[_Chunk]:
    """The chunks `read()` returns until an empty one, the next read while this is used.

    A reader thread fetches chunk n+1 while the caller converts and writes chunk n (Arrow,
    compression and the file writes release the GIL): two cores instead of one, and at
    most two chunks held beside the one in use.
    """
    chunks: queue.Queue[Any] = queue.Queue(maxsize=2)
    stop = threading.Event()

    def reader() -> None:
        try:
            while not stop.is_set():
                rows = read()
                chunks.put(rows)
                if not rows:
                    return
        except BaseException as exc:
            chunks.put(exc)

    thread = threading.Thread(target=reader, name="voicelogs-read-ahead", daemon=True)
    thread.start()
    try:
        while True:
            item = chunks.get()
            if isinstance(item, BaseException):
                raise item
            if not item:
                return
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a reader waiting on a full queue, then wait for it
            with contextlib.suppress(queue.Empty):
                chunks.get(timeout=0.05)
        thread.join()


def _open_sqlite(path: str) -> sqlite3.Connection:
    if not Path(path).is_file():
        raise StoreError(f"no store at {path!r}: the file does not exist")
    try:
        connection = sqlite3.connect(
            f"file:{quote(path)}?mode=ro", uri=True, check_same_thread=False
        )
        version = connection.execute("PRAGMA user_version").fetchone()[0]
    except sqlite3.Error as exc:
        raise StoreError(f"{path!r} is not a SQLite store: {exc}") from None
    if version == 0:
        connection.close()
        raise StoreError(f"{path!r} is not an infobip-voicelogs store (it has no archive)")
    if version != SCHEMA_VERSION:  # older: migrated as SqliteStore would; newer: refused
        connection.close()
        writer = sqlite3.connect(path, isolation_level=None)
        try:
            migrate(writer, path)
        finally:
            writer.close()
        connection = sqlite3.connect(
            f"file:{quote(path)}?mode=ro", uri=True, check_same_thread=False
        )
    return connection


def _open_postgres(dsn: str, schema: str) -> Any:
    try:
        import psycopg

        from ..postgres import SCHEMA_VERSION as PG_VERSION
        from ..postgres.kit import migrate as pg_migrate
    except ImportError:
        raise StoreError(
            "a PostgreSQL store needs the postgres extra: pip install 'infobip-voicelogs[postgres]'"
        ) from None
    with _errors("postgres"):
        connection = psycopg.connect(dsn, autocommit=True, connect_timeout=10)
    try:
        with _errors("postgres"):
            connection.execute("SET TIME ZONE 'UTC'")
            row = connection.execute(
                "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace"
                " n ON n.oid = c.relnamespace WHERE n.nspname = %s"
                " AND c.relname = 'voicelogs_schema')",
                (schema,),
            ).fetchone()
            if row is None or not row[0]:
                raise StoreError(f"no infobip-voicelogs store in the PostgreSQL schema {schema!r}")
            version = connection.execute(
                f"SELECT version FROM {_quote(schema)}.voicelogs_schema"
            ).fetchone()
        if version is None or version[0] != PG_VERSION:
            _run_async(_migrate_postgres(dsn, schema, pg_migrate))
        connection.autocommit = False  # a named (server-side) cursor needs a transaction
        return connection
    except BaseException:
        connection.close()
        raise


def _quote(schema: str) -> str:
    from ..postgres.kit import quote_ident

    return quote_ident(schema)


async def _migrate_postgres(dsn: str, schema: str, pg_migrate: Any) -> None:
    import psycopg

    with _errors("postgres"):
        connection = await psycopg.AsyncConnection.connect(dsn, connect_timeout=10)
        async with connection:
            await pg_migrate(connection, schema)


def _run_async(coro: Any) -> None:
    """Run a coroutine to its end from synchronous code, even under a running event loop."""
    failure: list[BaseException] = []

    def target() -> None:
        try:
            asyncio.run(coro)
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=target, name="voicelogs-migrate")
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
