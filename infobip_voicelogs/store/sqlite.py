"""`SqliteStore`: checkpoints, fingerprints and an optional archive in one SQLite file.

sqlite3 connections belong to the thread that made them, and their calls block. So each
store owns one worker thread (a single-thread executor) holding its one connection: every
call hops there through `loop.run_in_executor`, the event loop never waits on the disk, and
the store's writes are serialized without a lock. The layout of the file and the mapping
of logs to rows live in `_schema`.

The store is an error boundary, as the fetcher is for httpx: every `sqlite3.Error` leaves it
as a `StoreError` naming the operation, the file and the cause in plain words (`_errors`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import sqlite3
import threading
from collections.abc import Callable, Collection, Iterator, Sequence
from datetime import datetime, timedelta
from types import TracebackType
from typing import Self, TypeVar

from .._time import seconds, utc_now
from ..errors import StoreError
from ..models import VoiceLog
from ._archive import log_from_row
from ._file_claim import FileClaim
from ._inbox import Watchers, check_batch
from ._local import LocalLeases
from ._schema import (
    ADVANCE_CHECKPOINT,
    DELETE_INBOX,
    INSERT_INBOX,
    SCHEMA_VERSION,
    TOUCH_REPORT_ACTIVITY,
    UPSERT_ARCHIVE,
    UPSERT_CHECKPOINT,
    UPSERT_FINGERPRINT,
    archive_rows,
    fingerprint_row,
    from_utc_text,
    migrate,
    transaction,
    utc_text,
)
from .base import Delivered, InboxEntry, Lease, latest_checkpoints, lease_ttl_of

__all__ = ["DEFAULT_BUSY_TIMEOUT", "SCHEMA_VERSION", "SqliteStore"]

#: Seconds a write waits for another process's write lock before failing.
DEFAULT_BUSY_TIMEOUT = 5.0
# Ids per `IN (...)` list: far under SQLite's variable limit (999 before 3.32).
_IN_CHUNK = 500
# After these (primary) error codes the connection itself may be stale: opened read-only,
# pointing at a file since replaced or repaired. A file store drops it and opens afresh on
# the next call, so the store works again as soon as the cause is gone.
_STALE_CONNECTION = frozenset(
    {
        sqlite3.SQLITE_CANTOPEN,
        sqlite3.SQLITE_CORRUPT,
        sqlite3.SQLITE_IOERR,
        sqlite3.SQLITE_NOTADB,
        sqlite3.SQLITE_PERM,
        sqlite3.SQLITE_READONLY,
    }
)

T = TypeVar("T")


class SqliteStore:
    """The default `CheckpointStore`: one SQLite file (WAL mode), for one process.

    It is a `LeaseStore` too, for one process: `lease` grants every account to its one
    live owner with fence 0, and refuses (`StoreError`) a second poller on the same store
    object while the first is alive. While a poller holds its leases the store also holds an
    exclusive lock on `<path>-poller.lock`, so a poller in a second process (or on a second
    store object) on the same file is refused too, instead of delivering every log again:
    its claims fail with a `StoreError` naming the holder's pid, and it takes over when the
    holder stops, closes the store or dies (the lock goes with the process, SIGKILL too). A
    fleet that shares accounts between processes needs `PostgresStore`.

    ```python
    async with SqliteStore("voicelogs.db", archive=True) as store:
        async with LogsPoller(accounts, store=store, handler=handler) as poller:
            await poller.run()
        logs = await store.archived("eu-1")   # kept beyond the provider's 48 hours
    ```

    Nothing needs opening: the file and its tables are created on first use. With
    `archive=True` every delivered log is also kept in the `voice_logs` table, one row per
    log, its last state winning; query it with plain SQL (see the archive docs). `":memory:"`
    gives a store that lives as long as the object. Many coroutines may call one store at
    once; their calls run one at a time on the store's worker thread.

    Every failure of the database is a `StoreError` naming the operation, the file and the
    cause (locked by another connection, disk full, read-only, not a database), as are a
    closed store and a file written by a newer version. A failed call changes nothing, and
    the next call works once the cause is gone.

    Args:
        path: The database file (created if missing), or `":memory:"`.
        archive: Whether `commit` also writes the delivered logs to the archive.
        busy_timeout: Seconds (or a `timedelta`) to wait for another process's write lock.
        clock: Gives the current time for `first_seen_at` and `updated_at` (tests move it).
    """

    #: Its leases do not lapse by time: the file lock makes its one poller the only one.
    leases_expire = False

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        archive: bool = False,
        busy_timeout: float | timedelta = DEFAULT_BUSY_TIMEOUT,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._path = os.fspath(path)
        self._archive = archive
        self._busy_timeout = seconds(busy_timeout)
        self._clock = clock
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._connection: sqlite3.Connection | None = None  # touched on the worker thread only
        self._closing: concurrent.futures.Future[None] | None = None
        # Event loops in several threads may make their first call at once: one worker.
        self._lock = threading.Lock()
        self._leases = LocalLeases()
        self._claim = FileClaim(self._path)
        self._watchers = Watchers()

    @property
    def path(self) -> str:
        """The database file, as given."""
        return self._path

    @property
    def archive(self) -> bool:
        """Whether commits also write the archive."""
        return self._archive

    def __repr__(self) -> str:
        state = "closed" if self._closing is not None else "open"
        return f"SqliteStore({self._path!r}, archive={self._archive!r}) <{state}>"

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
        """The account's checkpoint as an aware UTC datetime, or `None` before its first commit."""

        def read(connection: sqlite3.Connection) -> str | None:
            row = connection.execute(
                "SELECT checkpoint FROM checkpoints WHERE account = ?", (account,)
            ).fetchone()
            return None if row is None else str(row[0])

        text = await self._run(f"read the checkpoint of {account!r} from", read)
        return None if text is None else from_utc_text(text)

    async def fingerprints(self, account: str, message_ids: Collection[str]) -> dict[str, str]:
        """The stored fingerprints of `message_ids` in `account`; ids never committed are absent.

        Any number of ids may be asked at once: they are looked up in chunks.
        """
        ids = list(dict.fromkeys(message_ids))

        def read(connection: sqlite3.Connection) -> dict[str, str]:
            found: dict[str, str] = {}
            with transaction(connection, "DEFERRED"):  # one snapshot across the chunks
                for start in range(0, len(ids), _IN_CHUNK):
                    chunk = ids[start : start + _IN_CHUNK]
                    marks = ", ".join("?" * len(chunk))
                    found.update(
                        connection.execute(
                            "SELECT message_id, fingerprint FROM fingerprints "
                            f"WHERE account = ? AND message_id IN ({marks})",
                            (account, *chunk),
                        )
                    )
            return found

        if not ids:
            return {}
        return await self._run(f"read the fingerprints of {account!r} from", read)

    async def commit(
        self, account: str, *, checkpoint: datetime | None, delivered: Sequence[Delivered]
    ) -> None:
        """Record a delivered batch in one transaction: all of it or, on any error, nothing.

        Upserts each log's fingerprint, its archive row when the store archives (the last
        state wins; `first_seen_at` stays, `updated_at` moves), and sets the checkpoint to
        exactly `checkpoint` (`None` leaves it as it is). Datetimes must be aware
        (`ValueError` otherwise). Archive timestamps keep milliseconds, the provider's
        precision; the checkpoint keeps microseconds, so `checkpoint()` returns exactly
        what was committed.
        """
        await self._commit(account, checkpoint, delivered)

    async def prune(self, *, before: datetime) -> int:
        """Forget the fingerprints of logs sent before `before`; return how many were dropped.

        The archive is never pruned: keeping logs is what it is for. A log without `sent_at`
        counts as sent when its fingerprint was last written.
        """
        cutoff = utc_text(before)

        def delete(connection: sqlite3.Connection) -> int:
            with transaction(connection):
                cursor = connection.execute("DELETE FROM fingerprints WHERE sent_at < ?", (cutoff,))
            return cursor.rowcount

        return await self._run("prune the fingerprints in", delete)

    async def aclose(self) -> None:
        """Let the calls already made finish, then close the file. Calling it again does nothing.

        Any call after `aclose` raises `StoreError`.
        """
        self._claim.release()
        with self._lock:
            if self._closing is None:
                if self._executor is None:
                    self._closing = concurrent.futures.Future()
                    self._closing.set_result(None)
                else:
                    # Queued behind every call already made: the executor runs them in order.
                    self._closing = self._executor.submit(self._close_connection)
                    self._executor.shutdown(wait=False)
        # Shielded: a cancelled aclose must not cancel the close itself.
        await asyncio.shield(asyncio.wrap_future(self._closing))

    # -- the LeaseStore protocol, for one process -------------------------------------------

    async def lease(
        self,
        owner: str,
        accounts: Sequence[str],
        *,
        lease_ttl: float | None = None,
        busy: Collection[str] = (),
        ttl: float | None = None,
    ) -> dict[str, Lease]:
        """Grant every account to `owner` (fence 0) for `lease_ttl` seconds, renewed by each call.

        Raises `StoreError` while another owner of this store object is alive (it leased
        within its ttl and has not released), or while another store, in this process or
        another, polls the same file (it holds `<path>-poller.lock`): two pollers on one
        file deliver twice. The lock is this store's until its owner releases or it closes.
        """
        ttl = lease_ttl_of(lease_ttl, ttl)
        if self._closing is not None:
            raise self._closed()
        self._claim.acquire()
        return self._leases.lease(owner, accounts, lease_ttl=ttl)

    async def release(self, owner: str, accounts: Collection[str] | None = None) -> None:
        """`None`: `owner` is gone, and another poller may use the store (or the file) at once."""
        self._leases.release(owner, accounts)
        if self._leases.owner is None:
            self._claim.release()

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
        """`commit`, unless `lease` is not the live owner's (`LeaseLostError`, nothing written).

        In the same transaction: `known` written like `delivered` with `archive=True`
        (else nothing of them), the account's inbox entries `inbox` deleted, and with
        `reports=(received_at, count)` its `report_activity` touched (see `commit_reports`).
        """
        self._leases.check(lease)
        await self._commit(
            lease.account, checkpoint, delivered, known=known, inbox=inbox, reports=reports
        )

    # -- beyond the protocol ---------------------------------------------------------------

    async def archived(self, account: str | None = None) -> list[VoiceLog]:
        """The archived logs, newest first (logs without `sent_at` last), as `VoiceLog`s.

        Each comes back equal to the log last committed (datetimes in UTC, prices exact).
        `account=None` means every account. For large archives, query the table with SQL.
        """
        where, params = ("WHERE account = ?", (account,)) if account is not None else ("", ())

        def read(connection: sqlite3.Connection) -> list[VoiceLog]:
            cursor = connection.execute(
                f"SELECT * FROM voice_logs {where} "
                "ORDER BY sent_at IS NULL, sent_at DESC, account, message_id",
                params,
            )
            cursor.row_factory = sqlite3.Row
            return [log_from_row(row, from_utc_text) for row in cursor]

        return await self._run("read the archive of", read)

    async def accounts(self) -> dict[str, datetime]:
        """Every account with a checkpoint, mapped to it (aware UTC), in account order."""

        def read(connection: sqlite3.Connection) -> list[tuple[str, str]]:
            return connection.execute(
                "SELECT account, checkpoint FROM checkpoints ORDER BY account"
            ).fetchall()

        rows = await self._run("read the accounts of", read)
        return {account: from_utc_text(text) for account, text in rows}

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
        """Record a batch of delivery reports in one transaction: all of it or nothing.

        The fingerprints as `commit` writes them (a final one is never replaced by a
        non-final one, whichever source brought it), the archive rows when the store
        archives (columns a report lacks, such as `text`, keep what a log brought), and
        the account's `report_activity`: its last report at `received_at` (never moved
        back) and `received` more reports (default `len(delivered)`). An empty batch only
        touches the activity: duplicates still say the account's reports flow. `known`
        (reports of states already stored) are written like `delivered`, so with
        `archive=True` their fields fill the row a log of the same state wrote.
        """
        count = len(delivered) if received is None else received
        await self._commit(account, None, delivered, known=known, reports=(received_at, count))

    async def report_activity(self, accounts: Collection[str]) -> dict[str, datetime]:
        """When each of `accounts` last committed reports (aware UTC); never: absent."""
        names = list(dict.fromkeys(accounts))

        def read(connection: sqlite3.Connection) -> dict[str, str]:
            found: dict[str, str] = {}
            with transaction(connection, "DEFERRED"):
                for start in range(0, len(names), _IN_CHUNK):
                    chunk = names[start : start + _IN_CHUNK]
                    marks = ", ".join("?" * len(chunk))
                    found.update(
                        connection.execute(
                            "SELECT account, last_report_at FROM report_activity "
                            f"WHERE account IN ({marks})",
                            chunk,
                        )
                    )
            return found

        if not names:
            return {}
        rows = await self._run("read the report activity of", read)
        return {account: from_utc_text(text) for account, text in rows.items()}

    # -- batched checkpoint advances (LeaseStore.advance) -----------------------------------

    async def advance(self, checkpoints: Sequence[tuple[Lease, datetime]]) -> set[str]:
        """Move each account's checkpoint forward to its time, all in one transaction.

        The `LeaseStore` method, for quiet cycles: an earlier time than the stored
        checkpoint leaves it (a checkpoint never moves back); an account given twice moves
        to its latest time, under the lease given last with it. The accounts whose lease is
        not the store's live owner's are refused (returned) and not written. Datetimes must
        be aware (`ValueError`).
        """
        now = utc_text(self._clock())
        latest = latest_checkpoints(checkpoints)
        refused = {
            account for account, (lease, _) in latest.items() if not self._leases.holds(lease)
        }
        rows = [
            (account, utc_text(at, timespec="microseconds"), now)
            for account, (_, at) in latest.items()
            if account not in refused
        ]

        def write(connection: sqlite3.Connection) -> None:
            with transaction(connection):
                connection.executemany(ADVANCE_CHECKPOINT, rows)

        if rows:
            await self._run(f"advance {len(rows)} checkpoints in", write)
        return refused

    # -- one commit, for commit, commit_leased and commit_reports ---------------------------

    async def _commit(
        self,
        account: str,
        checkpoint: datetime | None,
        delivered: Sequence[Delivered],
        *,
        known: Sequence[Delivered] = (),
        inbox: Collection[int] = (),
        reports: tuple[datetime, int] | None = None,
    ) -> None:
        """Every write of a hand-over in one transaction; arguments checked before any."""
        now = utc_text(self._clock())
        checkpoint_text = (
            None if checkpoint is None else utc_text(checkpoint, timespec="microseconds")
        )
        # `known` first: where a message is in both, its delivered state is written last.
        # `known` only fills archive rows: without an archive it has nothing to write.
        written = [*known, *delivered] if self._archive else list(delivered)
        fingerprint_rows = [fingerprint_row(account, item, now) for item in written]
        archive_params = archive_rows(account, written, now) if self._archive else []
        activity = None if reports is None else (account, utc_text(reports[0]), int(reports[1]))
        consumed = [(account, int(entry)) for entry in inbox]

        def write(connection: sqlite3.Connection) -> None:
            with transaction(connection):
                connection.executemany(UPSERT_FINGERPRINT, fingerprint_rows)
                if archive_params:
                    connection.executemany(UPSERT_ARCHIVE, archive_params)
                if checkpoint_text is not None:
                    connection.execute(UPSERT_CHECKPOINT, (account, checkpoint_text, now))
                if activity is not None:
                    connection.execute(TOUCH_REPORT_ACTIVITY, activity)
                connection.executemany(DELETE_INBOX, consumed)

        what = "reports" if reports is not None else "logs"
        await self._run(f"commit {len(delivered)} {what} of {account!r} to", write)

    # -- the InboxStore protocol -----------------------------------------------------------

    #: `watch_inbox` hears only this store object's recordings: a SQLite file has no
    #: notifications between processes.
    inbox_wakes_other_processes = False

    async def record_reports(
        self, account: str, body: bytes, *, count: int, received_at: datetime
    ) -> int:
        """Record a batch of reports in the inbox, committed when this returns; return its id.

        One statement, safe from many requests at once (they run one at a time on the
        store's worker thread). Wakes this store's `watch_inbox` callbacks after the commit.
        """
        body = check_batch(account, body, count, received_at)
        row = (account, utc_text(received_at, timespec="microseconds"), count, body)

        def write(connection: sqlite3.Connection) -> int:
            with transaction(connection):
                cursor = connection.execute(INSERT_INBOX, row)
            assert cursor.lastrowid is not None
            return cursor.lastrowid

        entry = await self._run(f"record a batch of reports of {account!r} in", write)
        self._watchers.wake(account)
        return entry

    async def inbox(self, account: str, *, limit: int = 100) -> list[InboxEntry]:
        """The account's waiting entries, oldest first (by id), at most `limit` of them."""
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError(f"limit must be a positive int, not {limit!r}")

        def read(connection: sqlite3.Connection) -> list[tuple[int, str, str, int, bytes]]:
            return connection.execute(
                "SELECT id, account, received_at, count, body FROM report_inbox "
                "WHERE account = ? ORDER BY id LIMIT ?",
                (account, limit),
            ).fetchall()

        rows = await self._run(f"read the inbox of {account!r} in", read)
        return [
            InboxEntry(entry, name, from_utc_text(at), count, bytes(body))
            for entry, name, at, count, body in rows
        ]

    async def inbox_accounts(self, accounts: Collection[str]) -> set[str]:
        """Which of `accounts` have inbox entries waiting (one index probe per account)."""
        names = list(dict.fromkeys(accounts))

        def read(connection: sqlite3.Connection) -> set[str]:
            found: set[str] = set()
            with transaction(connection, "DEFERRED"):
                for start in range(0, len(names), _IN_CHUNK):
                    chunk = names[start : start + _IN_CHUNK]
                    marks = ", ".join(["(?)"] * len(chunk))
                    found.update(
                        name
                        for (name,) in connection.execute(
                            f"WITH listed (account) AS (VALUES {marks}) "
                            "SELECT account FROM listed WHERE EXISTS (SELECT 1 FROM "
                            "report_inbox i WHERE i.account = listed.account)",
                            chunk,
                        )
                    )
            return found

        if not names:
            return set()
        return await self._run("read which accounts have reports waiting in", read)

    def watch_inbox(self, callback: Callable[[str], None]) -> Callable[[], None]:
        """Call `callback(account)` after each batch this store object records.

        Call it from a running event loop: `callback` runs on that loop. Returns the
        function that unsubscribes. Recordings by other processes are not heard
        (`inbox_wakes_other_processes` is `False`).
        """
        return self._watchers.add(callback)

    # -- the worker thread -----------------------------------------------------------------

    def _closed(self) -> StoreError:
        return StoreError(f"the store at {self._path!r} is closed")

    async def _run(self, action: str, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run `work` on the worker thread; `action` names it in a `StoreError`."""
        executor = self._executor
        if executor is None or self._closing is not None:
            with self._lock:
                if self._closing is not None:
                    raise self._closed()
                if self._executor is None:
                    self._executor = concurrent.futures.ThreadPoolExecutor(
                        max_workers=1, thread_name_prefix="infobip-voicelogs-sqlite"
                    )
                executor = self._executor
        loop = asyncio.get_running_loop()
        try:
            with self._errors(action):
                return await loop.run_in_executor(executor, self._on_worker, work)
        except RuntimeError:  # submitted as another thread closed the store
            if self._closing is not None:
                raise self._closed() from None
            raise

    def _on_worker(self, work: Callable[[sqlite3.Connection], T]) -> T:
        while True:
            fresh = self._connection is None
            if self._connection is None:
                self._connection = self._open()
            try:
                return work(self._connection)
            except sqlite3.Error as exc:
                # A connection opened before the cause went away (read-only then, say) is no
                # guide to now: a call that failed on a stale one gets one try on a fresh one.
                # Every call is one transaction, whole or absent, so trying again is safe.
                if not self._recover(exc) or fresh:
                    raise

    def _recover(self, exc: sqlite3.Error) -> bool:
        """Leave the connection fit for the next call after `exc`, or drop it (say which)."""
        connection = self._connection
        assert connection is not None
        if connection.in_transaction:  # `transaction` rolled back, unless that failed too
            with contextlib.suppress(sqlite3.Error):
                connection.execute("ROLLBACK")
        stale = connection.in_transaction or _primary_code(exc) in _STALE_CONNECTION
        # An in-memory database lives in its connection: keep it, whatever happened.
        if not stale or self._path in ("", ":memory:"):
            return False
        self._connection = None
        with contextlib.suppress(sqlite3.Error):
            connection.close()
        return True

    def _open(self) -> sqlite3.Connection:
        with self._errors("open"):
            # isolation_level=None: we issue BEGIN/COMMIT ourselves, sqlite3 adds none.
            connection = sqlite3.connect(
                self._path, timeout=self._busy_timeout, isolation_level=None
            )
        try:
            with self._errors("open"):
                connection.execute("PRAGMA journal_mode = WAL")
                # NORMAL in WAL mode: a process crash loses nothing; a power cut may undo the
                # last commits, checkpoint and fingerprints together, so the poller only repeats.
                connection.execute("PRAGMA synchronous = NORMAL")
                migrate(connection, self._path)
        except BaseException:
            connection.close()
            raise
        return connection

    def _close_connection(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with self._errors("close"):
                connection.close()

    # -- errors ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        """Translate sqlite3's errors into a `StoreError` saying what failed, where and why."""
        try:
            yield
        except sqlite3.Error as exc:
            cause = _cause(exc, self._path, self._busy_timeout)
            raise StoreError(f"cannot {action} the store at {self._path!r}: {cause}") from exc


def _primary_code(exc: sqlite3.Error) -> int | None:
    code = getattr(exc, "sqlite_errorcode", None)  # absent on errors sqlite3 itself raises
    # An extended code (SQLITE_IOERR_WRITE, ...) keeps its primary code in the low byte.
    return None if code is None else code & 0xFF


def _cause(exc: sqlite3.Error, path: str, busy_timeout: float) -> str:
    """The cause of `exc` in plain words, by SQLite's error code, with the code's name."""
    code = _primary_code(exc)
    if code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
        words = f"the database is locked by another connection (waited {busy_timeout:g} s)"
    elif code == sqlite3.SQLITE_FULL:
        words = "the disk is full"
    elif code == sqlite3.SQLITE_READONLY:
        words = "the file is read-only"
    elif code in (sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CORRUPT):
        words = "the file is not a database or is corrupt"
    elif code == sqlite3.SQLITE_CANTOPEN:
        words = _cannot_open(path)
    elif code == sqlite3.SQLITE_IOERR:
        words = "the disk failed a read or a write (a file size limit, a full or failing disk)"
    elif code == sqlite3.SQLITE_PERM:
        words = "the operating system denied access to the file"
    elif code == sqlite3.SQLITE_NOMEM:
        words = "out of memory"
    else:  # nothing better to say than SQLite's (or sqlite3's) own words
        words = str(exc) or type(exc).__name__
    name = getattr(exc, "sqlite_errorname", None)
    return f"{words} [{name}]" if name else words


def _cannot_open(path: str) -> str:
    """Why SQLite could not open `path` (or its -wal and -shm files beside it)."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        return f"its directory {directory!r} does not exist"
    # os.access asks the kernel, so it also sees a read-only filesystem, even for root.
    if not os.access(directory, os.W_OK) or (os.path.exists(path) and not os.access(path, os.W_OK)):
        return "the file or its directory is read-only (a WAL database needs both writable)"
    return "the file cannot be opened"
