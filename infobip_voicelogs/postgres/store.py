"""`PostgresStore`: checkpoints, fingerprints, the archive and fenced leases in PostgreSQL.

Every call borrows a connection from a psycopg pool, runs one transaction and gives the
connection back: no session state survives a call (no session advisory locks, no server-side
prepared statements, settings only `SET LOCAL`), so the store works the same through a
transaction-pooling PgBouncer. Times that decide leases are the database's `now()`.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, Self

import orjson
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from ..errors import LeaseLostError
from ..models import VoiceLog
from ..store.base import Delivered, InboxEntry, Lease, latest_checkpoints, lease_ttl_of
from ..store.kit import Watchers, check_batch, log_from_row
from ._listener import Listener
from ._pool import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_SIZE,
    DEFAULT_POOL_TIMEOUT,
    DEFAULT_TIMEOUT,
    Connector,
    Statement,
)
from ._rows import Document, batch_document, latest_per_message, utc
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
        listen_dsn: Where `watch_inbox`'s listening connection goes, when the store's own
            connections go through a PgBouncer in transaction pooling mode (which loses
            `LISTEN`): a DSN that reaches PostgreSQL directly. `None`: where the pool goes.
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
        listen_dsn: str | None = None,
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
            listen_dsn=listen_dsn,
        )
        self._run = self._connector.run
        self._watchers = Watchers()
        self._listener = Listener(
            connect=self._connector.connect_listener,
            schema=schema,
            wake=self._watchers.wake,
            label=self.__repr__,
            describe=self._connector.describe,
        )

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
        [rows] = await self._run("read a checkpoint", [(self._sql.checkpoint, (account,))])
        return utc(rows[0][0]) if rows else None

    async def fingerprints(self, account: str, message_ids: Collection[str]) -> dict[str, str]:
        """The stored fingerprints of these messages by message id; unknown ids are absent."""
        ids = list(dict.fromkeys(message_ids))
        if not ids:
            return {}
        [rows] = await self._run(
            "read fingerprints", [(self._sql.fingerprints, (account, _json(ids)))]
        )
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
        await self._run("commit a batch", self._writes(account, checkpoint, delivered))

    async def prune(self, *, before: datetime) -> int:
        """Forget the fingerprints of logs sent before `before`; return how many were dropped.

        The archive is never pruned. A log without `sent_at` counts as sent when its
        fingerprint was last written.
        """
        cutoff = utc(before, milliseconds=True)
        [rows] = await self._run("prune fingerprints", [(self._sql.prune, (cutoff,))])
        return int(rows[0][0])

    async def aclose(self) -> None:
        """Let the calls already made finish, then close the store's own pool.

        A pool given to the store is left open, and `watch_inbox`'s listening connection
        closed. Any call after `aclose` raises `StoreError`; calling it again does nothing.
        """
        await self._listener.stop_and_wait()
        await self._connector.aclose()

    # -- beyond the protocol ---------------------------------------------------------------

    async def archived(self, account: str | None = None) -> list[VoiceLog]:
        """The archived logs, newest first (logs without `sent_at` last), as `VoiceLog`s.

        Each comes back equal to the log last committed. `account=None` means every
        account. For large archives, query the table with SQL.
        """
        where, params = ("WHERE account = %s", (account,)) if account is not None else ("", ())
        [rows] = await self._run(
            "read the archive",
            [(self._sql.archived.format(where=where), params)],
            row_factory=dict_row,
        )
        return [log_from_row(row, utc) for row in rows]

    async def accounts(self) -> dict[str, datetime]:
        """Every account with a checkpoint, mapped to it (aware UTC), in account order."""
        [rows] = await self._run("read the checkpoints", [(self._sql.accounts, None)])
        return {account: utc(checkpoint) for account, checkpoint in rows}

    # -- the ReportStore protocol ----------------------------------------------------------

    async def commit_reports(
        self,
        account: str,
        delivered: Sequence[Delivered],
        *,
        received_at: datetime,
        received: int | None = None,
        known: Sequence[Delivered] = (),
    ) -> None:
        """Record a batch of delivery reports in one transaction and one round trip.

        The same as `SqliteStore.commit_reports`: fingerprints (a final one never replaced
        by a non-final one), archive rows with `archive=True` (a column a report lacks
        keeps what a log brought), and the account's `report_activity` (its last report
        at `received_at`, never moved back; `received` more reports, default
        `len(delivered)`), touched even for an empty batch; `known` written like
        `delivered` (its fields fill the archive's empty columns). Not fenced: any receiver
        process may commit any account's reports. A retry after a lost answer may count
        the batch's reports twice in `reports`; nothing else is counted.
        """
        count = len(delivered) if received is None else received
        writes = self._writes(account, None, delivered, known=known, reports=(received_at, count))
        await self._run("commit a batch of reports", writes)

    async def report_activity(self, accounts: Collection[str]) -> dict[str, datetime]:
        """When each of these accounts last committed reports (aware UTC); never: absent."""
        names = sorted(set(accounts))
        if not names:
            return {}
        [rows] = await self._run(
            "read the report activity", [(self._sql.report_activity, (_json(names),))]
        )
        return {str(account): utc(at) for account, at in rows}

    # -- the InboxStore protocol -----------------------------------------------------------

    #: `watch_inbox` hears every process's recordings in this schema (`LISTEN`/`NOTIFY`).
    inbox_wakes_other_processes = True

    async def record_reports(
        self, account: str, body: bytes, *, count: int, received_at: datetime
    ) -> int:
        """Record a batch of reports in the inbox, committed when this returns; return its id.

        One statement in one round trip, safe from many requests at once, the body sent as
        it is (bound on the server, not quoted into the query). Its transaction also
        notifies every listening store on the database (`watch_inbox`, in this process or
        any other); this store's own watchers are woken at once, without waiting for it.
        The call is bounded by ``timeout`` on the client, and a statement still running
        then is cancelled on the server.
        """
        args = {
            "account": account,
            "body": check_batch(account, body, count, received_at),
            "count": count,
            "received_at": utc(received_at),
            "payload": f"{self._schema}\n{account}",
        }
        rows = await self._connector.run_one(
            "record a batch of reports", self._sql.record_reports, args
        )
        self._watchers.wake(account)
        return int(rows[0][0])

    async def inbox(self, account: str, *, limit: int = 100) -> list[InboxEntry]:
        """The account's waiting entries, oldest first (by id), at most `limit` of them."""
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError(f"limit must be a positive int, not {limit!r}")
        [rows] = await self._run("read the inbox", [(self._sql.inbox, (account, limit))])
        return [
            InboxEntry(int(entry), str(name), utc(at), int(count), bytes(body))
            for entry, name, at, count, body in rows
        ]

    async def inbox_accounts(self, accounts: Collection[str]) -> set[str]:
        """Which of `accounts` have inbox entries waiting: one index probe per account."""
        names = sorted(set(accounts))
        if not names:
            return set()
        [rows] = await self._run(
            "read which accounts have reports waiting",
            [(self._sql.inbox_accounts, (_json(names),))],
        )
        return {str(name) for (name,) in rows}

    def watch_inbox(self, callback: Callable[[str], None]) -> Callable[[], None]:
        """Call `callback(account)` whenever a batch is recorded in this store's schema.

        Call it from a running event loop: `callback` runs on that loop. The first watcher
        starts one listening connection of the store's own (`LISTEN`, outside the pool, to
        `listen_dsn` if given), which hears every process's recordings; the last
        unsubscription, or `aclose`, closes it. A wake-up is a hint: one may come twice,
        and the ones sent while the connection is down are lost (it reconnects with a
        backoff, logging once per outage), so look at `inbox_accounts` now and then too.
        """
        unsubscribe = self._watchers.add(callback, on_empty=self._listener.stop)
        if not self._connector.closed:
            self._listener.start()
        return unsubscribe

    # -- the LeaseStore protocol -----------------------------------------------------------

    async def lease(
        self,
        owner: str,
        accounts: Sequence[str],
        *,
        lease_ttl: float | None = None,
        busy: Collection[str] = (),
        ttl: float | None = None,
    ) -> dict[str, Lease]:
        """Renew, shed and claim leases in one statement; return every lease `owner` holds.

        Records `owner` as alive for `lease_ttl` seconds; renews its leases on `accounts`
        (same fence, expiring `lease_ttl` seconds after the database's now) and releases the ones it
        holds on accounts no longer listed; takes the fair share, `ceil(len(accounts) /
        live owners)`; releases leases above it (never one in `busy`); claims free or
        expired leases up to it with `FOR UPDATE SKIP LOCKED`, each claim bumping the
        account's fence. Accounts never seen are added. (`ttl=` is its deprecated spelling.)
        """
        ttl = lease_ttl_of(lease_ttl, ttl)
        if not owner:
            raise ValueError("a lease owner needs a non-empty id")
        if not ttl > 0:
            raise ValueError(f"ttl must be positive, not {ttl!r}")
        args = {
            "owner": owner,
            "accounts": _json(sorted(set(accounts))),
            "busy": _json(sorted(set(busy))),
            "ttl": ttl,
        }
        [rows] = await self._run("lease accounts", [(self._sql.lease, args)])
        return {
            account: Lease(account, holder, fence, utc(expires_at))
            for account, holder, fence, expires_at in sorted(rows)
        }

    async def release(self, owner: str, accounts: Collection[str] | None = None) -> None:
        """Give up these leases of `owner` at once, so others may claim them now.

        `None` releases every lease of `owner` and marks it gone, so it no longer counts
        in the others' fair share (a clean shutdown).
        """
        args: dict[str, Any] = {"owner": owner}
        if accounts is None:
            statements = [(self._sql.release_all, args), (self._sql.owner_gone, args)]
        elif accounts:
            args["accounts"] = _json(sorted(set(accounts)))
            statements = [(self._sql.release, args)]
        else:
            return
        await self._run("release leases", statements)

    async def commit_leased(
        self,
        lease: Lease,
        *,
        checkpoint: datetime | None,
        delivered: Sequence[Delivered],
        known: Sequence[Delivered] = (),
        inbox: Collection[int] = (),
        reports: tuple[datetime, int] | None = None,
    ) -> None:
        """`commit`, but only while `lease` still holds: same owner, same fence, not expired.

        One transaction in one round trip: the lease row is locked and checked first (by
        the database's now()), then the batch is written as `commit` would, with `known`
        (written like `delivered` with `archive=True`, else nothing of them), the deletion
        of the account's inbox entries `inbox`, and with `reports=(received_at, count)`
        the touch of its `report_activity` (as `commit_reports`). Every statement carries
        the lease check: if the lease expired or passed to another process, nothing is
        written (nor deleted) and `LeaseLostError` is raised.
        """
        check = (self._sql.check_lease, (lease.owner, lease.fence, lease.account))
        writes = self._writes(
            lease.account,
            checkpoint,
            delivered,
            known=known,
            inbox=inbox,
            reports=reports,
            fence=lease,
        )
        [rows, *_] = await self._run("commit a leased batch", [check, *writes])
        if not rows or rows[0][0] is not True:
            # Every write carried the same check, so nothing of the batch was written.
            raise LeaseLostError(
                f"the lease of account {lease.account!r} (fence {lease.fence}) is no "
                f"longer held by {lease.owner!r}: it expired or passed to another poller; "
                "nothing of the batch was written"
            )

    async def advance(self, checkpoints: Sequence[tuple[Lease, datetime]]) -> set[str]:
        """Move each leased account's checkpoint forward to its time, in one statement for all.

        A checkpoint moves only while its lease still holds (same owner, same fence, not
        expired by the database's clock) and only forward: an earlier time than the stored
        checkpoint leaves it. Returns the accounts refused because their lease no longer
        holds; nothing is written for those. An account given twice moves to its latest
        time, under the lease given last with it. A naive datetime raises `ValueError`
        before anything is sent; a failure of the database raises `StoreError`, and then
        nothing moved.
        """
        latest = latest_checkpoints(checkpoints)
        if not latest:
            return set()
        rows = [
            {"account": a, "owner": lease.owner, "fence": lease.fence, "at": utc(at)}
            for a, (lease, at) in sorted(latest.items())
        ]
        batch = Document(orjson.dumps(rows).decode())
        now = None if self._clock is None else utc(self._clock(), milliseconds=True)
        args = {"batch": batch, "now": now}
        [refused] = await self._run("advance checkpoints", [(self._sql.advance, args)])
        return {str(account) for (account,) in refused}

    # -- one call, one transaction ---------------------------------------------------------

    def _writes(
        self,
        account: str,
        checkpoint: datetime | None,
        delivered: Sequence[Delivered],
        *,
        known: Sequence[Delivered] = (),
        inbox: Collection[int] = (),
        reports: tuple[datetime, int] | None = None,
        fence: Lease | None = None,
    ) -> list[Statement]:
        """A hand-over's statements, checked and converted (`ValueError` before any I/O).

        The one commit of `commit`, `commit_leased` and `commit_reports`. With `fence`,
        each statement writes only while that lease holds.
        """
        now = None if self._clock is None else utc(self._clock(), milliseconds=True)
        at = None if checkpoint is None else utc(checkpoint)
        # `known` first: where a message is in both, its delivered state is written last.
        # `known` only fills archive rows: without an archive it has nothing to write.
        written = [*known, *delivered] if self._archive else list(delivered)
        batch = latest_per_message(written)  # one statement cannot upsert a key twice
        sql = self._sql
        args: dict[str, Any] = {"account": account, "now": now}
        if fence is not None:
            args.update(owner=fence.owner, fence=fence.fence)
        writes: list[Statement] = []
        if batch:
            if fence is None:
                upsert = (
                    sql.upsert_fingerprints_and_archive
                    if self._archive
                    else sql.upsert_fingerprints
                )
            else:
                upsert = (
                    sql.fenced_upsert_fingerprints_and_archive
                    if self._archive
                    else sql.fenced_upsert_fingerprints
                )
            writes.append((upsert, {**args, "batch": batch_document(batch, archive=self._archive)}))
        if at is not None:
            upsert = sql.upsert_checkpoint if fence is None else sql.fenced_upsert_checkpoint
            writes.append((upsert, {**args, "checkpoint": at}))
        if reports is not None:
            received_at, count = reports
            touch = sql.touch_report_activity if fence is None else sql.fenced_touch_report_activity
            activity = {"received_at": utc(received_at, milliseconds=True), "received": count}
            writes.append((touch, {**args, **activity}))
        if inbox:
            if fence is None:  # only a holder consumes the inbox
                raise TypeError("inbox entries are consumed by commit_leased only")
            entries = _json([int(entry) for entry in inbox])
            writes.append((sql.fenced_delete_inbox, {**args, "inbox": entries}))
        return writes


def _json(names: list[str] | list[int]) -> Document:
    """A list of names (or ids) as the JSON array the statements read."""
    return Document(orjson.dumps(names).decode())
