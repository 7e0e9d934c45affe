"""The file's layout and the mapping between logs (and reports) and rows, for `SqliteStore`.

The tables are documented for users in `docs/archive.md`; keep the two in step. A change
of layout is a new entry in `_MIGRATIONS` and a new `SCHEMA_VERSION`, never an edit of an
old entry: files written by earlier versions are migrated forward, step by step.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from .._time import require_aware
from ..errors import StoreError
from ._archive import ARCHIVE_STATE_COLUMNS, ARCHIVE_VALUE_COLUMNS, archive_values
from ._countries import mcc_countries_values
from .base import Delivered, Item

#: The layout of the tables this version writes (`PRAGMA user_version`).
SCHEMA_VERSION = 4

# Each migration takes a file from the version before it to its own number (index + 1).
_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE checkpoints (
            account     TEXT PRIMARY KEY,
            checkpoint  TEXT NOT NULL,
            updated_at  TEXT NOT NULL
        ) WITHOUT ROWID""",
        """CREATE TABLE fingerprints (
            account     TEXT NOT NULL,
            message_id  TEXT NOT NULL,
            fingerprint TEXT NOT NULL,
            sent_at     TEXT NOT NULL,
            updated_at  TEXT NOT NULL,
            PRIMARY KEY (account, message_id)
        ) WITHOUT ROWID""",
        "CREATE INDEX fingerprints_by_sent_at ON fingerprints (sent_at)",
        """CREATE TABLE voice_logs (
            account            TEXT NOT NULL,
            message_id         TEXT NOT NULL,
            bulk_id            TEXT,
            to_number          TEXT,
            from_sender        TEXT,
            text               TEXT,
            sent_at            TEXT,
            done_at            TEXT,
            duration           INTEGER,
            mccmnc             TEXT,
            price_per_second   TEXT,
            currency           TEXT,
            status_group       TEXT,
            status_group_name  TEXT,
            status_group_id    INTEGER,
            status_id          INTEGER,
            status_name        TEXT,
            status_description TEXT,
            status_action      TEXT,
            error_group_id     INTEGER,
            error_group_name   TEXT,
            error_id           INTEGER,
            error_name         TEXT,
            error_description  TEXT,
            error_permanent    INTEGER,
            first_seen_at      TEXT NOT NULL,
            updated_at         TEXT NOT NULL,
            PRIMARY KEY (account, message_id)
        )""",
        "CREATE INDEX voice_logs_by_account_sent_at ON voice_logs (account, sent_at)",
    ),
    # 2: delivery reports. The archive keeps a report's own fields; the rows from before
    # came from the logs. `report_activity` says whose reports flow.
    (
        "ALTER TABLE voice_logs ADD COLUMN source TEXT",
        "UPDATE voice_logs SET source = 'log'",
        "ALTER TABLE voice_logs ADD COLUMN callback_data TEXT",
        "ALTER TABLE voice_logs ADD COLUMN call_started_at TEXT",
        "ALTER TABLE voice_logs ADD COLUMN call_answered_at TEXT",
        "ALTER TABLE voice_logs ADD COLUMN call_ended_at TEXT",
        "ALTER TABLE voice_logs ADD COLUMN charged_duration INTEGER",
        "ALTER TABLE voice_logs ADD COLUMN answered_by TEXT",
        "ALTER TABLE voice_logs ADD COLUMN report TEXT",
        """CREATE TABLE report_activity (
            account        TEXT PRIMARY KEY,
            last_report_at TEXT NOT NULL,
            reports        INTEGER NOT NULL
        ) WITHOUT ROWID""",
    ),
    # 3: the inbox. A receiver records each batch of reports here; the account's holder
    # deletes it in the commit of its states. AUTOINCREMENT: an id is never used twice,
    # even after the newest entry was deleted.
    (
        """CREATE TABLE report_inbox (
            id          INTEGER PRIMARY KEY AUTOINCREMENT,
            account     TEXT NOT NULL,
            received_at TEXT NOT NULL,
            count       INTEGER NOT NULL,
            body        BLOB NOT NULL
        )""",
        "CREATE INDEX report_inbox_by_account ON report_inbox (account, id)",
    ),
    # 4: the archive as numbers. Countries of MCCs (the ITU list), and one row per message
    # with its country and cost (`voice_log_costs`, documented in docs/analytics.md).
    (
        "CREATE TABLE mcc_countries (mcc TEXT PRIMARY KEY, country TEXT NOT NULL) WITHOUT ROWID",
        f"INSERT INTO mcc_countries (mcc, country) VALUES {mcc_countries_values()}",
        # SQLite has no decimal type: the cost is exact in nano-units of the currency
        # (`cost_nanos`, an integer, summed exactly), NULL for a price with more than
        # nine decimals; `cost` is the same as decimal text.
        """CREATE VIEW voice_log_costs AS
        SELECT account, message_id, bulk_id, "from", "to", sent_at, done_at, duration,
            charged_duration, mccmnc, country, price_per_second, currency,
            CASE WHEN cost_nanos IS NOT NULL THEN printf('%d.%09d',
                cost_nanos / 1000000000, cost_nanos % 1000000000) END AS cost,
            status_group, status_name, error_group, error_name, error_permanent, source,
            callback_data, billed_duration, cost_nanos, substr(sent_at, 1, 10) AS day
        FROM (SELECT v.*, v.from_sender AS "from", v.to_number AS "to", c.country,
            v.error_group_name AS error_group,
            COALESCE(v.charged_duration, v.duration) AS billed_duration,
            COALESCE(v.charged_duration, v.duration) * (CASE
                WHEN v.price_per_second GLOB '*[^0-9.]*' OR v.price_per_second GLOB '*.*.*'
                    OR v.price_per_second NOT GLOB '*[0-9]*' THEN NULL
                WHEN instr(v.price_per_second, '.') = 0
                    THEN CAST(v.price_per_second AS INTEGER) * 1000000000
                WHEN length(v.price_per_second) - instr(v.price_per_second, '.') > 9 THEN NULL
                ELSE CAST(substr(v.price_per_second, 1, instr(v.price_per_second, '.') - 1)
                        AS INTEGER) * 1000000000
                    + CAST(substr(substr(v.price_per_second, instr(v.price_per_second, '.') + 1)
                        || '000000000', 1, 9) AS INTEGER)
            END) AS cost_nanos
            FROM voice_logs v LEFT JOIN mcc_countries c ON c.mcc = substr(v.mccmnc, 1, 3))""",
    ),
)
assert len(_MIGRATIONS) == SCHEMA_VERSION

_ARCHIVE_COLUMNS = ("account", *ARCHIVE_VALUE_COLUMNS, "first_seen_at", "updated_at")
# On a conflict: the key and the first sighting stay; the state's columns, the source and
# `updated_at` take the new state's values whole; any other column keeps what it held when
# the new row has none, since a report has no `text` or `done_at` and a log no call times.
_KEEP_ON_UPDATE = {"account", "message_id", "first_seen_at"}
_TAKE_ON_UPDATE = {*ARCHIVE_STATE_COLUMNS, "source", "updated_at"}


def _on_update(column: str) -> str:
    if column in _TAKE_ON_UPDATE:
        return f"{column} = excluded.{column}"
    return f"{column} = COALESCE(excluded.{column}, voice_logs.{column})"


# Rows of `archive_rows`: the archive's columns, then the item's fingerprint. Run after
# UPSERT_FINGERPRINT in the same transaction: a row is updated only where the stored
# fingerprint is now the item's, so not where a final one was kept.
UPSERT_ARCHIVE = (
    f"INSERT INTO voice_logs ({', '.join(_ARCHIVE_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(_ARCHIVE_COLUMNS))}) "
    "ON CONFLICT (account, message_id) DO UPDATE SET "
    + ", ".join(_on_update(c) for c in _ARCHIVE_COLUMNS if c not in _KEEP_ON_UPDATE)
    + " WHERE (SELECT f.fingerprint FROM fingerprints f WHERE f.account = excluded.account "
    "AND f.message_id = excluded.message_id) IS ?"
)
# commit_reports(): the account's reports flow (rows: account, received_at, count).
TOUCH_REPORT_ACTIVITY = (
    "INSERT INTO report_activity (account, last_report_at, reports) VALUES (?, ?, ?) "
    "ON CONFLICT (account) DO UPDATE SET reports = report_activity.reports + excluded.reports, "
    "last_report_at = max(report_activity.last_report_at, excluded.last_report_at)"
)
# A final state's fingerprint ("2f:...") is never replaced by a non-final one ("2p:..."
# or an old 24-hex v1 one): a late, stale page cannot undo a settled log. substr, not
# LIKE: SQLite's LIKE ignores case.
UPSERT_FINGERPRINT = (
    "INSERT INTO fingerprints (account, message_id, fingerprint, sent_at, updated_at) "
    "VALUES (?, ?, ?, ?, ?) ON CONFLICT (account, message_id) DO UPDATE SET "
    "fingerprint = excluded.fingerprint, sent_at = excluded.sent_at, "
    "updated_at = excluded.updated_at "
    "WHERE NOT (substr(fingerprint, 1, 3) = '2f:' AND substr(excluded.fingerprint, 1, 3) <> '2f:')"
)
# advance(): a checkpoint moves only forward (fixed-width text: text order is time order).
ADVANCE_CHECKPOINT = (
    "INSERT INTO checkpoints (account, checkpoint, updated_at) VALUES (?, ?, ?) "
    "ON CONFLICT (account) DO UPDATE SET "
    "checkpoint = excluded.checkpoint, updated_at = excluded.updated_at "
    "WHERE excluded.checkpoint > checkpoints.checkpoint"
)
# record_reports(): one batch into the inbox (rows: account, received_at, count, body).
INSERT_INBOX = "INSERT INTO report_inbox (account, received_at, count, body) VALUES (?, ?, ?, ?)"
# commit_leased(inbox=...): the consumed entries, only the account's own (rows: account, id).
DELETE_INBOX = "DELETE FROM report_inbox WHERE account = ? AND id = ?"
UPSERT_CHECKPOINT = (
    "INSERT INTO checkpoints (account, checkpoint, updated_at) VALUES (?, ?, ?) "
    "ON CONFLICT (account) DO UPDATE SET "
    "checkpoint = excluded.checkpoint, updated_at = excluded.updated_at"
)


@contextlib.contextmanager
def transaction(connection: sqlite3.Connection, mode: str = "IMMEDIATE") -> Iterator[None]:
    """Run the block as one transaction: committed if it returns, rolled back if it raises."""
    # IMMEDIATE takes the write lock up front, so a busy file fails before any work is done.
    connection.execute(f"BEGIN {mode}")
    try:
        yield
        connection.execute("COMMIT")
    except BaseException:
        if connection.in_transaction:
            # A rollback that fails too (a vanished disk) must not hide why the block failed;
            # the connection, still in its transaction, tells the store to drop it.
            with contextlib.suppress(sqlite3.Error):
                connection.execute("ROLLBACK")
        raise


def migrate(connection: sqlite3.Connection, path: str) -> None:
    """Bring the file to `SCHEMA_VERSION`; refuse a file of a newer one with `StoreError`."""
    with transaction(connection):  # read and upgrade under one lock: one process migrates
        version = connection.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"the store at {path!r} has schema version {version}, but this version of "
                f"infobip-voicelogs knows versions up to {SCHEMA_VERSION}: upgrade the library"
            )
        for target in range(version + 1, SCHEMA_VERSION + 1):
            for statement in _MIGRATIONS[target - 1]:
                connection.execute(statement)
            connection.execute(f"PRAGMA user_version = {target}")


# -- between logs, reports and rows ---------------------------------------------------------


def utc_text(value: datetime, *, timespec: str = "milliseconds") -> str:
    """ISO-8601 in UTC with a `Z`, fixed width, so text order is time order."""
    require_aware(value, "the store takes aware datetimes only")
    return value.astimezone(UTC).isoformat(timespec=timespec).removesuffix("+00:00") + "Z"


def from_utc_text(text: str) -> datetime:
    """Read back a stored timestamp as an aware UTC datetime."""
    return datetime.fromisoformat(text).astimezone(UTC)


def fingerprint_row(account: str, item: Delivered, now: str) -> tuple[str, ...]:
    """The `fingerprints` row of a delivered log."""
    log = item.log
    assert log.message_id is not None  # Delivered checks it on construction
    # A log without sent_at ages from when it was written, so prune still forgets it.
    sent_at = now if log.sent_at is None else utc_text(log.sent_at)
    return (account, log.message_id, item.fingerprint, sent_at, now)


def archive_rows(account: str, delivered: Sequence[Delivered], now: str) -> list[tuple[Any, ...]]:
    """The parameters of `UPSERT_ARCHIVE` for a batch: each item's row and its fingerprint."""
    return [(*archive_row(account, item.item, now), item.fingerprint) for item in delivered]


def archive_row(account: str, item: Item, now: str) -> tuple[Any, ...]:
    """The `voice_logs` row of a log or a report, in `_ARCHIVE_COLUMNS` order."""
    values = archive_values(item)
    for column, value in values.items():
        if isinstance(value, datetime):
            values[column] = utc_text(value)
    if values["error_permanent"] is not None:
        values["error_permanent"] = int(values["error_permanent"])
    if values["report"] is not None:
        values["report"] = orjson.dumps(values["report"]).decode()
    # first_seen_at (kept by the upsert when the row exists), updated_at
    return (account, *values.values(), now, now)
