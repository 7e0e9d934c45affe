"""How `PostgresStore` talks to the server: one bounded transaction per call, on a pool.

Every call borrows a connection, runs one transaction in one round trip (one simple-query
message of several statements) and gives the connection back, with its limits set `LOCAL`
to that transaction: no session state survives a call, so a transaction-pooling PgBouncer
may hand the next call any server connection. Every psycopg error becomes a `StoreError`
naming the operation and the cause, never the password.

A pool connects in the background, so a call that finds no connection only learns "no
connection within N seconds". `ConnectFailures` remembers the last failed attempt, so that
the `StoreError` can say *why* (refused, unknown host, password rejected) as well; so the
pool's own warning per failed attempt ("error connecting in ...") is left out of the logs
unless they show debug records: a server that is down is one line per failed call.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, Self, TypeVar

import psycopg
from psycopg import AsyncClientCursor, AsyncConnection
from psycopg.conninfo import conninfo_to_dict
from psycopg.pq import TransactionStatus
from psycopg.rows import AsyncRowFactory
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from .. import redaction
from ..errors import StoreError
from ._rows import Document, DocumentDumper
from ._schema import migrate

T = TypeVar("T")

#: One statement of a call and its parameters.
Statement = tuple[str, Any]

IDLE = TransactionStatus.IDLE
# Both server-side limits of a call, set LOCAL to its transaction.
_LIMITS = (
    "SELECT set_config('statement_timeout', %s, true), "
    "set_config('idle_in_transaction_session_timeout', %s, true)"
)

#: Seconds to establish one connection (libpq's `connect_timeout`).
DEFAULT_CONNECT_TIMEOUT = 5.0
#: Seconds a call waits for a free pooled connection (also while the server is down).
DEFAULT_POOL_TIMEOUT = 10.0
#: Seconds the first call waits for the first connection (at most `pool_timeout`): a store
#: pointed at a server that is not there fails its first call this soon, not 10 s later.
DEFAULT_STARTUP_TIMEOUT = 5.0
#: Seconds a call's statements may run on the server (`statement_timeout`), and the call's
#: bound once it has a connection.
DEFAULT_TIMEOUT = 30.0
#: Seconds a transaction may sit idle between its statements before the server ends it
#: (`idle_in_transaction_session_timeout`): a poller paused mid-commit (SIGSTOP, a long
#: GC) then stops holding its lease row locked, so others can take the account over.
DEFAULT_IDLE_TIMEOUT = 10.0
#: Connections the store's own pool opens at most.
DEFAULT_MAX_SIZE = 10
#: The name of every pool the store makes (and of no pool a caller gives it).
_POOL_NAME = "infobip-voicelogs"
#: The listening connection's `application_name`, as `pg_stat_activity` shows it.
LISTENER_NAME = "infobip-voicelogs-listener"


class Connector:
    """The pool (given or made on first use), the schema migration, and one call's transaction.

    `label()` names the store in error messages.
    """

    def __init__(
        self,
        dsn_or_pool: str | AsyncConnectionPool[Any],
        *,
        schema: str,
        label: Callable[[], str],
        min_size: int,
        max_size: int,
        connect_timeout: float,
        pool_timeout: float,
        timeout: float,
        idle_timeout: float,
        listen_dsn: str | None = None,
    ) -> None:
        self._schema = schema
        self._label = label
        self._pool_timeout = pool_timeout
        self._startup_timeout = min(pool_timeout, DEFAULT_STARTUP_TIMEOUT)
        self._timeout = timeout
        # Both server-side limits in milliseconds, set LOCAL in every transaction.
        self._limits = (str(math.ceil(timeout * 1000)), str(math.ceil(idle_timeout * 1000)))
        self._secrets: list[str] = []
        if isinstance(dsn_or_pool, AsyncConnectionPool):
            self._pool: AsyncConnectionPool[Any] | None = dsn_or_pool
            self._dsn = ""
            self._owns_pool = False
            self._where = f"pool {dsn_or_pool.name!r}"
        else:
            self._pool = None
            self._dsn = dsn_or_pool
            self._owns_pool = True
            self._where = self._read_dsn(dsn_or_pool)
        self._listen_dsn = listen_dsn
        if listen_dsn is not None:
            self._read_dsn(listen_dsn)  # refused now if malformed; its password kept out
        self._min_size, self._max_size = min_size, max(max_size, min_size)
        self._connect_timeout = max(2, math.ceil(connect_timeout))  # libpq takes whole seconds
        self._failures = ConnectFailures()
        self._migrated = False
        self._opening: asyncio.Lock | None = None
        self._closed = False
        self._in_flight = 0
        self._idle: asyncio.Event | None = None

    def _read_dsn(self, dsn: str) -> str:
        """Where `dsn` points (never its password, which is kept for scrubbing)."""
        try:
            params = conninfo_to_dict(dsn)
        except psycopg.Error:
            # libpq's message quotes the string, password and all: not repeated here.
            raise StoreError(
                "not a PostgreSQL connection string (neither a postgresql:// URL nor "
                "key=value pairs that libpq can read)"
            ) from None
        if params.get("password"):
            self._secrets.append(str(params["password"]))
            redaction.register(self, *self._secrets)
        shown = ("host", "port", "dbname", "user")  # never the password
        return " ".join(f"{key}={params[key]}" for key in shown if key in params)

    async def connect_listener(self) -> AsyncConnection[Any]:
        """A connection of its own, outside the pool, for `LISTEN` (autocommit, bounded).

        To `listen_dsn` if given, else where the pool connects, with the pool's settings.
        """
        settings = connection_settings(self._connect_timeout)
        async with asyncio.timeout(self._connect_timeout + 1):
            if self._listen_dsn is not None:
                conninfo = self._listen_dsn
            elif self._owns_pool:
                conninfo = self._dsn
            else:  # a given pool: where and how it connects (each may be computed)
                assert self._pool is not None
                conninfo = await _value(self._pool.conninfo)
                given = self._pool.kwargs
                settings.update((await _value(given) if given is not None else None) or {})
            settings.update(autocommit=True, application_name=LISTENER_NAME)
            return await psycopg.AsyncConnection.connect(conninfo, **settings)

    def describe(self, exc: BaseException) -> str:
        """`exc` in one line for a log, without any password of the connection strings."""
        text = one_line(str(exc))
        return self._scrub(f"{type(exc).__name__}: {text}" if text else type(exc).__name__)

    @property
    def where(self) -> str:
        """Host, port, database and user of the connection string (or the pool's name)."""
        return self._where

    @property
    def closed(self) -> bool:
        """Whether `aclose` was called."""
        return self._closed

    async def aclose(self) -> None:
        """Let the calls already made finish, then close the pool if it is ours."""
        self._closed = True
        if self._in_flight:
            self._idle = self._idle or asyncio.Event()
            await self._idle.wait()
        if self._owns_pool and self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close(timeout=self._pool_timeout)

    async def run(
        self,
        operation: str,
        statements: Sequence[Statement],
        *,
        row_factory: AsyncRowFactory[Any] | None = None,
    ) -> list[list[Any]]:
        """Run `statements` as one transaction in one round trip; return each one's rows.

        The transaction's limits and the statements go to the server as one simple-query
        message: one round trip, and one implicit transaction, all or nothing (an error
        rolls back what ran and skips the rest). The pool does not check a
        connection before lending it (that was a round trip of its own); a call whose
        connection turns out broken (a restart, a dropped socket) is tried once more on
        another, after the pool checked its idle ones. Trying again is safe even if the
        first try was applied before its answer was lost: every statement of the store is
        idempotent (upserts of the same values, forward-only moves, fenced claims that
        renew what they already hold).
        """
        async with self._call(operation):
            pool = await self._ready()
            for attempt in range(2):
                async with pool.connection(timeout=self._pool_timeout) as connection:
                    try:
                        return await self._send(connection, statements, row_factory)
                    except psycopg.OperationalError:
                        # Broken before anything came back: give it back (the pool drops
                        # a closed connection) and try once more on a checked one.
                        if attempt or not connection.closed:
                            raise
                await pool.check()
        raise AssertionError("unreachable")  # pragma: no cover

    async def run_one(self, operation: str, sql: str, params: Any) -> list[Any]:
        """Run one statement on its own (its own transaction); return its rows.

        For a call whose work is a single statement holding no row lock, such as an insert
        into a table no one locks: the parameters are bound on the server (a large `bytes`
        goes as it is, not quoted into the text of the query), so the statement costs
        both sides less than `run`'s one message. No limits are set on the transaction:
        the call is bounded on the client by `timeout` once it has a connection, and a
        statement still running then is cancelled on the server. Errors, the closed
        store and the retry on a broken connection are as `run`'s.
        """
        async with self._call(operation):
            pool = await self._ready()
            for attempt in range(2):
                async with pool.connection(timeout=self._pool_timeout) as connection:
                    try:
                        return await self._send_one(connection, operation, sql, params)
                    except psycopg.OperationalError:
                        if attempt or not connection.closed:
                            raise
                await pool.check()
        raise AssertionError("unreachable")  # pragma: no cover

    async def _send_one(
        self, connection: AsyncConnection[Any], operation: str, sql: str, params: Any
    ) -> list[Any]:
        """One statement, bound on the server, committed before this returns."""
        try:
            try:
                async with asyncio.timeout(self._timeout):
                    # Never prepared: a given pool may be eager to, and PgBouncer forbids it.
                    cursor = await connection.execute(sql, params, prepare=False)
                    rows = await cursor.fetchall() if cursor.description else []
                    if not connection.autocommit:  # then psycopg began a transaction first
                        await connection.commit()
                    return rows
            except TimeoutError:
                # psycopg cancelled the statement on the server when the bound passed.
                raise StoreError(
                    f"{self._label()}: cannot {operation}: no answer within "
                    f"{self._timeout:g} s (statement timeout)"
                ) from None
        except BaseException:
            if not connection.closed and connection.info.transaction_status != IDLE:
                with contextlib.suppress(psycopg.Error):
                    await connection.rollback()
            raise

    async def _send(
        self,
        connection: AsyncConnection[Any],
        statements: Sequence[Statement],
        row_factory: AsyncRowFactory[Any] | None,
    ) -> list[list[Any]]:
        """One transaction, sent as one simple-query message: one round trip."""
        # Bound on the client (psycopg quotes each value; our JSON is dollar-quoted), so that
        # the limits and the statements fit one message. The server runs a message of
        # several statements as one implicit transaction, and only once it has the whole
        # message: a client paused while sending it (SIGSTOP, a long GC) holds no lock,
        # where a pipeline sent piecewise could hold a lease row until the client woke.
        cursor: AsyncClientCursor[Any] = (
            AsyncClientCursor(connection, row_factory=row_factory)
            if row_factory is not None
            else AsyncClientCursor(connection)
        )
        cursor.adapters.register_dumper(Document, DocumentDumper)  # this cursor's only
        parts = [cursor.mogrify(_LIMITS, self._limits)]
        parts += [cursor.mogrify(sql, params) for sql, params in statements]
        try:
            await cursor.execute(";\n".join(parts), prepare=False)
            results: list[list[Any]] = []
            while cursor.nextset():  # the first result is the limits'
                results.append(await cursor.fetchall() if cursor.description else [])
            if not connection.autocommit:  # then psycopg began a transaction first
                await connection.commit()
            return results
        except BaseException:
            # On a connection that is not autocommit, an error leaves psycopg's transaction
            # aborted: end it here, so the pool gets the connection back idle.
            if not connection.closed and connection.info.transaction_status != IDLE:
                with contextlib.suppress(psycopg.Error):
                    await connection.rollback()
            raise

    @contextlib.asynccontextmanager
    async def _call(self, operation: str) -> AsyncIterator[None]:
        """One bounded call: every error a `StoreError` naming `operation`, `aclose` waiting."""
        if self._closed:
            raise StoreError(f"{self._label()}: cannot {operation}: the store is closed")
        self._in_flight += 1
        try:
            async with asyncio.timeout(self._pool_timeout + self._timeout):
                yield
        except PoolTimeout:
            raise StoreError(self._scrub(self._unreachable(operation))) from None
        except psycopg.Error as exc:
            cause = one_line(str(exc)) or type(exc).__name__
            raise StoreError(f"{self._label()}: cannot {operation}: {self._scrub(cause)}") from None
        except TimeoutError:
            raise StoreError(
                f"{self._label()}: cannot {operation}: no answer within "
                f"{self._pool_timeout + self._timeout:g} s"
            ) from None
        finally:
            self._in_flight -= 1
            if not self._in_flight and self._idle is not None:
                self._idle.set()

    async def _ready(self) -> AsyncConnectionPool[Any]:
        """The pool, opened and the schema migrated on first use."""
        if self._migrated and self._pool is not None:
            return self._pool
        self._opening = self._opening or asyncio.Lock()
        async with self._opening:
            if self._pool is None:
                self._pool = make_pool(
                    self._dsn,
                    failures=self._failures,
                    min_size=self._min_size,
                    max_size=self._max_size,
                    connect_timeout=self._connect_timeout,
                    pool_timeout=self._pool_timeout,
                )
                await self._pool.open(wait=False)
            if not self._migrated:
                async with self._pool.connection(timeout=self._startup_timeout) as connection:
                    await migrate(connection, self._schema)
                self._migrated = True
        return self._pool

    def _unreachable(self, operation: str) -> str:
        """No connection in time: that it could not connect, to where, and why, in one line."""
        why = self._failures.last
        if why is None:
            why = f"no connection attempt finished (each may take {self._connect_timeout} s)"
        return (
            f"cannot {operation}: could not connect to PostgreSQL at {self._where} within"
            f" {self._pool_timeout:g} s: {why}"
        )

    def _scrub(self, text: str) -> str:
        """`text` without any password of the connection string."""
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text


class ConnectFailures:
    """The last connection error of a pool, kept for the error message of a timed-out call."""

    def __init__(self) -> None:
        self.last: str | None = None

    def connection_class(self) -> type[psycopg.AsyncConnection[Any]]:
        """An `AsyncConnection` class that records its failures here."""
        failures = self

        class RecordingConnection(_Recording):
            @classmethod
            async def connect(cls, *args: Any, **kwargs: Any) -> Self:
                try:
                    connection = await super().connect(*args, **kwargs)
                except psycopg.Error as exc:
                    failures.last = _connect_cause(exc)
                    raise
                failures.last = None
                _OUTAGE.reported = False
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
        name=_POOL_NAME,
        connection_class=failures.connection_class(),
        min_size=min_size,
        max_size=max_size,
        timeout=pool_timeout,
        # No check before each loan (a round trip of its own): `Connector.run` finds a
        # restart's dead sockets on use and retries once after `pool.check()`.
        kwargs=connection_settings(connect_timeout),
    )


def connection_settings(connect_timeout: int) -> dict[str, Any]:
    """The settings of every connection the store opens (its pool's and its listener's)."""
    return {
        "autocommit": True,
        "prepare_threshold": None,  # no server-side prepared statements: PgBouncer-safe
        "connect_timeout": connect_timeout,
        "application_name": "infobip-voicelogs",
        # A peer gone without a word (host lost, partition) is noticed within ~1 min.
        "keepalives": 1,
        "keepalives_idle": 30,
        "keepalives_interval": 10,
        "keepalives_count": 3,
    }


async def _value(given: T | Callable[[], T] | Callable[[], Awaitable[T]]) -> T:
    """A pool's setting: the value itself, or what its function returns (awaited if need be)."""
    if not callable(given):
        return given
    value = given()
    return await value if inspect.isawaitable(value) else value


def one_line(text: str) -> str:
    """libpq's message on one line (it puts hints on lines of their own, tab-indented)."""
    return " ".join(text.split())


class _QuietConnectErrors(logging.Filter):
    """Drops the pool's warning per failed connection attempt of our own pools.

    Each failed call's `StoreError` already carries the last attempt's cause; the pool
    would repeat it at every reconnection attempt, a screenful a minute while a server is
    down. Kept when the logger shows debug records.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if logging.getLogger(record.name).isEnabledFor(logging.DEBUG):
            return True
        args = record.args if isinstance(record.args, tuple) else ()
        if record.msg == "error connecting in %r: %s":
            return args[:1] != (_POOL_NAME,)
        if record.msg == "discarding broken connection: %s" and args:
            if not isinstance(args[0], _Recording):
                return True
            # One line per outage, not one per pooled connection: the rest say nothing new.
            if _OUTAGE.reported:
                return False
            _OUTAGE.reported = True
            record.msg, record.args = _DROPPED, ()
        return True


class _Outage:
    """Whether the pools' broken connections were reported since a connection last worked."""

    reported = False


_OUTAGE = _Outage()
_DROPPED = (
    "PostgreSQL connections found broken (a server restart or a network failure): "
    "dropped, reconnecting"
)


class _Recording(psycopg.AsyncConnection[Any]):
    """The connections of our own pools (`ConnectFailures.connection_class` subclasses it)."""


logging.getLogger("psycopg.pool").addFilter(_QuietConnectErrors())


def _connect_cause(exc: psycopg.Error) -> str:
    """Why libpq could not connect, without the "connection to server at ... failed" it
    repeats per address: the store's message says where already.

    >>> _connect_cause(psycopg.OperationalError(
    ...     'connection failed: connection to server at "127.0.0.1", port 5 failed: '
    ...     "Connection refused\\n\\tIs the server running on that host?"))
    'Connection refused (Is the server running on that host?)'
    """
    text = str(exc).strip()
    if " failed: " in text:
        text = text.rsplit(" failed: ", 1)[1]
    first, _, hint = text.partition("\n")
    first, hint = one_line(first), one_line(hint)
    cause = f"{first} ({hint})" if hint else first
    return cause or type(exc).__name__
