"""`PostgresStore`: checkpoints, fingerprints, the archive and fenced leases in PostgreSQL.

Every call borrows a connection from a psycopg pool, runs one transaction and gives the
connection back: no session state survives a call (no session advisory locks, no server-side
prepared statements, settings only `SET LOCAL`), so the store works the same through a
transaction-pooling PgBouncer. Times that decide leases are the database's `now()`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, Self

import orjson
from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from ..errors import LeaseLostError
from ..models import VoiceLog
from ..store._archive import log_from_row
from ..store.base import Delivered, Lease
from ._pool import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_SIZE,
    DEFAULT_POOL_TIMEOUT,
    DEFAULT_TIMEOUT,
    Connector,
)
from ._rows import batch_document, latest_per_message, utc
from ._schema import SCHEMA_VERSION, Statements

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_IDLE_TIMEOUT",
    "DEFAULT_MAX_SIZE",
    "DEFAULT_POOL_TIMEOUT",
    "DEFAULT_TIMEOUT",
    "SCHEMA_VERSION",
    "PostgresStore",
]


class PostgresStore:
    """A `CheckpointStore` and `LeaseStore` on PostgreSQL, shared by a fleet of pollers.

    ```python
    from infobip_voicelogs.postgres import PostgresStore

    store = PostgresStore("postgresql://voicelogs@db.internal/voicelogs", archive=True)
    async with LogsPoller(accounts, store=store, handler=handle, interval=60) as poller:
        await poller.run()      # on every host, with the same accounts: they split them
    ```

    The tables (the same archive as `SqliteStore`'s, in native types) are created or
    migrated on first use. Given a DSN, the store makes its own pool (opened on first use,
    closed by `aclose`); given an `AsyncConnectionPool`, it uses it and never closes it
    (make it with `kwargs={"autocommit": True, "prepare_threshold": None}` behind a
    PgBouncer). Every failure of the database is a `StoreError` naming the operation and
    the cause, never the password; every call is bounded (see the `*_timeout` arguments).

    Args:
        dsn_or_pool: A libpq connection string or URL, or an open `AsyncConnectionPool`.
        archive: Whether commits also write the delivered logs to `voice_logs`.
        schema: The PostgreSQL schema holding the tables (created if missing).
        min_size: Connections the own pool keeps open.
        max_size: Connections the own pool opens at most.
        connect_timeout: Seconds to establish one connection (own pool only).
        pool_timeout: Seconds a call waits for a connection before failing.
        timeout: Seconds a call's statements may run (server-side `statement_timeout`).
        idle_timeout: Seconds a call's transaction may sit idle before the server ends it
            (`idle_in_transaction_session_timeout`), releasing its locks.
        clock: Gives `first_seen_at` and `updated_at`; `None` (the default) uses the
            database's `now()`, one clock for the whole fleet.
    """

    def __init__(
        self,
        dsn_or_pool: str | AsyncConnectionPool[Any],
        *,
        archive: bool = False,
        schema: str = "public",
        min_size: int = 1,
        max_size: int = DEFAULT_MAX_SIZE,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        pool_timeout: float = DEFAULT_POOL_TIMEOUT,
        timeout: float = DEFAULT_TIMEOUT,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._archive = archive
        self._schema = schema
        self._sql = Statements(schema)
        self._clock = clock
        self._connector = Connector(
            dsn_or_pool,
            schema=schema,
            label=self.__repr__,
            min_size=min_size,
            max_size=max_size,
            connect_timeout=connect_timeout,
            pool_timeout=pool_timeout,
            timeout=timeout,
            idle_timeout=idle_timeout,
        )
        self._transaction = self._connector.transaction

    @property
    def archive(self) -> bool:
        """Whether commits also write the archive."""
        return self._archive

    @property
    def schema(self) -> str:
        """The PostgreSQL schema holding the tables."""
        return self._schema

    def __repr__(self) -> str:
        state = "closed" if self._connector.closed else "open"
        return (
            f"PostgresStore({self._connector.where}, schema={self._schema!r}, "
            f"archive={self._archive!r}) <{state}>"
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- the CheckpointStore protocol ------------------------------------------------------

    async def checkpoint(self, account: str) -> datetime | None:
        """The account's checkpoint as an aware UTC datetime, or `None` if it has none yet."""
        async with self._transaction("read a checkpoint") as connection:
            cursor = await connection.execute(self._sql.checkpoint, (account,), prepare=False)
            row = await cursor.fetchone()
        return None if row is None else utc(row[0])

    async def fingerprints(self, account: str, message_ids: Collection[str]) -> dict[str, str]:
        """The stored fingerprints of these messages by message id; unknown ids are absent."""
        ids = list(dict.fromkeys(message_ids))
        if not ids:
            return {}
        async with self._transaction("read fingerprints") as connection:
            cursor = await connection.execute(
                self._sql.fingerprints, (account, _json(ids)), prepare=False
            )
            rows = await cursor.fetchall()
        return {str(message_id): str(fingerprint) for message_id, fingerprint in rows}

    async def commit(
        self, account: str, *, checkpoint: datetime | None, delivered: Sequence[Delivered]
    ) -> None:
        """Record a delivered batch in one transaction: all of it or, on any error, nothing.

        The same as `SqliteStore.commit`: fingerprints and (with `archive=True`) archive rows
        upserted, the last state winning, and the checkpoint set to exactly `checkpoint`
        (`None` leaves it). A naive datetime raises `ValueError` before anything is sent; a
        failure of the database raises `StoreError` and writes nothing.
        """
        write = self._prepare(account, checkpoint, delivered)
        async with self._transaction("commit a batch") as connection:
            await write(connection)

    async def prune(self, *, before: datetime) -> int:
        """Forget the fingerprints of logs sent before `before`; return how many were dropped.

        The archive is never pruned. A log without `sent_at` counts as sent when its
        fingerprint was last written.
        """
        cutoff = utc(before, milliseconds=True)
        async with self._transaction("prune fingerprints") as connection:
            cursor = await connection.execute(self._sql.prune, (cutoff,), prepare=False)
        return cursor.rowcount

    async def aclose(self) -> None:
        """Let the calls already made finish, then close the store's own pool.

        A pool given to the store is left open. Any call after `aclose` raises `StoreError`;
        calling it again does nothing.
        """
        await self._connector.aclose()

    # -- beyond the protocol ---------------------------------------------------------------

    async def archived(self, account: str | None = None) -> list[VoiceLog]:
        """The archived logs, newest first (logs without `sent_at` last), as `VoiceLog`s.

        Each comes back equal to the log last committed. `account=None` means every
        account. For large archives, query the table with SQL.
        """
        where, params = ("WHERE account = %s", (account,)) if account is not None else ("", ())
        async with self._transaction("read the archive") as connection:
            cursor = connection.cursor(row_factory=dict_row)
            await cursor.execute(self._sql.archived.format(where=where), params, prepare=False)
            rows = await cursor.fetchall()
        return [log_from_row(row, utc) for row in rows]

    async def accounts(self) -> dict[str, datetime]:
        """Every account with a checkpoint, mapped to it (aware UTC), in account order."""
        async with self._transaction("read the checkpoints") as connection:
            cursor = await connection.execute(self._sql.accounts, prepare=False)
            rows = await cursor.fetchall()
        return {account: utc(checkpoint) for account, checkpoint in rows}

    # -- the LeaseStore protocol -----------------------------------------------------------

    async def lease(
        self,
        owner: str,
        accounts: Sequence[str],
        *,
        ttl: float,
        busy: Collection[str] = (),
    ) -> dict[str, Lease]:
        """Renew, shed and claim leases in one transaction; return every lease `owner` holds.

        Records `owner` as alive for `ttl` seconds; renews its leases on `accounts` (same
        fence, expiring `ttl` seconds after the database's now) and releases the ones it
        holds on accounts no longer listed; takes the fair share, `ceil(len(accounts) /
        live owners)`; releases leases above it (never one in `busy`); claims free or
        expired leases up to it with `FOR UPDATE SKIP LOCKED`, each claim bumping the
        account's fence. Accounts never seen are added.
        """
        if not owner:
            raise ValueError("a lease owner needs a non-empty id")
        if not ttl > 0:
            raise ValueError(f"ttl must be positive, not {ttl!r}")
        listed = sorted(set(accounts))
        args: dict[str, Any] = {"owner": owner, "accounts": _json(listed), "ttl": ttl}
        sql = self._sql
        async with self._transaction("lease accounts") as connection:
            await connection.execute(sql.owner_alive, args, prepare=False)
            await connection.execute(sql.forget_owners, prepare=False)
            if listed:
                await connection.execute(sql.add_accounts, args, prepare=False)
            await connection.execute(sql.release_unlisted, args, prepare=False)
            held = await _leases(connection, sql.renew, args)
            cursor = await connection.execute(sql.live_owners, prepare=False)
            row = await cursor.fetchone()
            live = max(1, int(row[0]) if row is not None else 1)
            share = math.ceil(len(listed) / live)
            excess = len(held) - share
            if excess > 0:
                # Shed the last accounts in order, never one being polled right now.
                sheddable = sorted((a for a in held if a not in busy), reverse=True)[:excess]
                await connection.execute(
                    sql.release, {**args, "accounts": _json(sheddable)}, prepare=False
                )
                for account in sheddable:
                    del held[account]
            want = share - len(held)
            if want > 0:
                held.update(await _leases(connection, sql.claim, {**args, "want": want}))
        return held

    async def release(self, owner: str, accounts: Collection[str] | None = None) -> None:
        """Give up these leases of `owner` at once, so others may claim them now.

        `None` releases every lease of `owner` and marks it gone, so it no longer counts
        in the others' fair share (a clean shutdown).
        """
        args: dict[str, Any] = {"owner": owner}
        async with self._transaction("release leases") as connection:
            if accounts is None:
                await connection.execute(self._sql.release_all, args, prepare=False)
                await connection.execute(self._sql.owner_gone, args, prepare=False)
            elif accounts:
                args["accounts"] = _json(sorted(set(accounts)))
                await connection.execute(self._sql.release, args, prepare=False)

    async def commit_leased(
        self, lease: Lease, *, checkpoint: datetime | None, delivered: Sequence[Delivered]
    ) -> None:
        """`commit`, but only while `lease` still holds: same owner, same fence, not expired.

        One transaction: the lease row is locked and checked first (by the database's
        now()), then the batch is written as `commit` would. If the lease expired or
        passed to another process, nothing is written and `LeaseLostError` is raised.
        """
        write = self._prepare(lease.account, checkpoint, delivered)
        async with self._transaction("commit a leased batch") as connection:
            cursor = await connection.execute(
                self._sql.check_lease, (lease.owner, lease.fence, lease.account), prepare=False
            )
            row = await cursor.fetchone()
            if row is None or row[0] is not True:
                raise LeaseLostError(
                    f"the lease of account {lease.account!r} (fence {lease.fence}) is no "
                    f"longer held by {lease.owner!r}: it expired or passed to another poller; "
                    "nothing of the batch was written"
                )
            await write(connection)

    # -- one call, one transaction ---------------------------------------------------------

    def _prepare(
        self, account: str, checkpoint: datetime | None, delivered: Sequence[Delivered]
    ) -> Callable[[AsyncConnection[Any]], Any]:
        """Check and convert a batch (`ValueError` before any I/O); return its writer."""
        now = None if self._clock is None else utc(self._clock(), milliseconds=True)
        at = None if checkpoint is None else utc(checkpoint)
        batch = latest_per_message(delivered)  # one statement cannot upsert a key twice
        document = batch_document(batch, archive=self._archive) if batch else None
        sql = self._sql
        upsert = sql.upsert_fingerprints_and_archive if self._archive else sql.upsert_fingerprints

        async def write(connection: AsyncConnection[Any]) -> None:
            if document is not None:
                args = {"account": account, "batch": document, "now": now}
                await connection.execute(upsert, args, prepare=False)
            if at is not None:
                await connection.execute(sql.upsert_checkpoint, (account, at, now), prepare=False)

        return write


def _json(names: list[str]) -> str:
    """A list of names as the JSON array the statements read."""
    return orjson.dumps(names).decode()


async def _leases(
    connection: AsyncConnection[Any], statement: str, args: dict[str, Any]
) -> dict[str, Lease]:
    cursor = await connection.execute(statement, args, prepare=False)
    return {
        account: Lease(account, owner, fence, utc(expires_at))
        for account, owner, fence, expires_at in await cursor.fetchall()
    }
