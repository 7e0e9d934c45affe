"""The tables of `PostgresStore`, their migrations, and the SQL that writes and leases.

The archive has the same tables, columns and indexes as `SqliteStore`'s file, in native
PostgreSQL types: timestamps are `timestamptz`, `error_permanent` is a `boolean`, prices
are exact `numeric`. The layout is documented for users in `docs/archive.md`; keep the
two in step. A change of layout is a new entry in `_MIGRATIONS` and a new `SCHEMA_VERSION`,
never an edit of an old entry.
"""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection

from ..errors import StoreError
from ..store.kit import ARCHIVE_STATE_COLUMNS, mcc_countries_values

#: The channel every recording notifies, with the payload `schema + "\n" + account`: one
#: channel for every schema of a database, each listener keeping its own schema's.
INBOX_CHANNEL = "voicelogs_inbox"

#: The layout of the tables this version writes (the row of `voicelogs_schema`).
SCHEMA_VERSION = 4

# Each migration takes a schema from the version before it to its own number (index + 1).
# `{s}` is the quoted schema name.
_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE {s}.checkpoints (
            account     text PRIMARY KEY,
            checkpoint  timestamptz NOT NULL,
            updated_at  timestamptz NOT NULL
        )""",
        """CREATE TABLE {s}.fingerprints (
            account     text NOT NULL,
            message_id  text NOT NULL,
            fingerprint text NOT NULL,
            sent_at     timestamptz NOT NULL,
            updated_at  timestamptz NOT NULL,
            PRIMARY KEY (account, message_id)
        )""",
        "CREATE INDEX fingerprints_by_sent_at ON {s}.fingerprints (sent_at)",
        """CREATE TABLE {s}.voice_logs (
            account            text NOT NULL,
            message_id         text NOT NULL,
            bulk_id            text,
            to_number          text,
            from_sender        text,
            text               text,
            sent_at            timestamptz,
            done_at            timestamptz,
            duration           bigint,
            mccmnc             text,
            price_per_second   text,
            currency           text,
            status_group       text,
            status_group_name  text,
            status_group_id    bigint,
            status_id          bigint,
            status_name        text,
            status_description text,
            status_action      text,
            error_group_id     bigint,
            error_group_name   text,
            error_id           bigint,
            error_name         text,
            error_description  text,
            error_permanent    boolean,
            first_seen_at      timestamptz NOT NULL,
            updated_at         timestamptz NOT NULL,
            PRIMARY KEY (account, message_id)
        )""",
        "CREATE INDEX voice_logs_by_account_sent_at ON {s}.voice_logs (account, sent_at)",
        # A lease is free when it has no owner or its time is up; the fence only grows.
        """CREATE TABLE {s}.leases (
            account     text PRIMARY KEY,
            owner       text,
            fence       bigint NOT NULL DEFAULT 0,
            expires_at  timestamptz
        )""",
        "CREATE INDEX leases_by_owner ON {s}.leases (owner)",
        # Every poller process that called lease(), alive until its last call's ttl ran out.
        """CREATE TABLE {s}.lease_owners (
            owner       text PRIMARY KEY,
            alive_until timestamptz NOT NULL
        )""",
    ),
    # 2: delivery reports. The archive keeps a report's own fields; the rows from before
    # came from the logs. `report_activity` says whose reports flow.
    (
        "ALTER TABLE {s}.voice_logs ADD COLUMN source text",
        "UPDATE {s}.voice_logs SET source = 'log'",
        "ALTER TABLE {s}.voice_logs ADD COLUMN callback_data text, "
        "ADD COLUMN call_started_at timestamptz, ADD COLUMN call_answered_at timestamptz, "
        "ADD COLUMN call_ended_at timestamptz, ADD COLUMN charged_duration bigint, "
        "ADD COLUMN answered_by text, ADD COLUMN report jsonb",
        """CREATE TABLE {s}.report_activity (
            account        text PRIMARY KEY,
            last_report_at timestamptz NOT NULL,
            reports        bigint NOT NULL
        )""",
    ),
    # 3: the inbox. A receiver records each batch of reports here; the account's holder
    # deletes it in the commit of its states. An identity: ids grow and are never reused.
    (
        """CREATE TABLE {s}.report_inbox (
            id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            account     text NOT NULL,
            received_at timestamptz NOT NULL,
            count       integer NOT NULL,
            body        bytea NOT NULL
        )""",
        "CREATE INDEX report_inbox_by_account ON {s}.report_inbox (account, id)",
    ),
    # 4: the archive as numbers. Prices become `numeric` (the text of every stored price
    # reads back as the same value and scale); countries of MCCs (the ITU list); one row
    # per message with its country and cost (`voice_log_costs`, see docs/analytics.md).
    (
        "ALTER TABLE {s}.voice_logs ALTER COLUMN price_per_second TYPE numeric "
        "USING price_per_second::numeric",
        "CREATE TABLE {s}.mcc_countries (mcc text PRIMARY KEY, country text NOT NULL)",
        f"INSERT INTO {{s}}.mcc_countries (mcc, country) VALUES {mcc_countries_values()}",
        """CREATE VIEW {s}.voice_log_costs AS
        SELECT v.account, v.message_id, v.bulk_id, v.from_sender AS "from",
            v.to_number AS "to", v.sent_at, v.done_at, v.duration, v.charged_duration,
            v.mccmnc, c.country, v.price_per_second, v.currency,
            v.price_per_second * COALESCE(v.charged_duration, v.duration) AS cost,
            v.status_group, v.status_name, v.error_group_name AS error_group, v.error_name,
            v.error_permanent, v.source, v.callback_data,
            COALESCE(v.charged_duration, v.duration) AS billed_duration,
            CASE WHEN scale(v.price_per_second) <= 9 THEN (v.price_per_second
                * COALESCE(v.charged_duration, v.duration) * 1000000000)::bigint END
                AS cost_nanos,
            (v.sent_at AT TIME ZONE 'UTC')::date AS day
        FROM {s}.voice_logs v LEFT JOIN {s}.mcc_countries c ON c.mcc = left(v.mccmnc, 3)""",
    ),
)
assert len(_MIGRATIONS) == SCHEMA_VERSION


def quote_ident(name: str) -> str:
    """`name` as a PostgreSQL quoted identifier."""
    if not name or "\x00" in name:
        raise ValueError(f"{name!r} is not a usable schema name")
    return '"' + name.replace('"', '""') + '"'


async def migrate(connection: AsyncConnection[Any], schema: str) -> None:
    """Bring `schema` to `SCHEMA_VERSION` in one transaction; refuse a newer one.

    A schema already current is only read, so a role without `CREATE` can use it. Otherwise
    a transaction-scoped advisory lock serializes processes migrating at once (it ends with
    the transaction, so it is safe behind a transaction-pooling PgBouncer).
    """
    s = quote_ident(schema)
    async with connection.transaction():
        version = await _version(connection, schema)
        if version == SCHEMA_VERSION:
            return
        _refuse_newer(schema, version)
        await connection.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
            (f"infobip_voicelogs.schema:{schema}",),
            prepare=False,
        )
        version = await _version(connection, schema)  # again, under the lock
        _refuse_newer(schema, version)
        if version is None:
            await connection.execute(f"CREATE SCHEMA IF NOT EXISTS {s}", prepare=False)
            await connection.execute(
                f"CREATE TABLE {s}.voicelogs_schema (one boolean PRIMARY KEY DEFAULT true "
                "CHECK (one), version integer NOT NULL)",
                prepare=False,
            )
        for target in range((version or 0) + 1, SCHEMA_VERSION + 1):
            for statement in _MIGRATIONS[target - 1]:
                await connection.execute(statement.format(s=s), prepare=False)
        await connection.execute(
            f"INSERT INTO {s}.voicelogs_schema (version) VALUES (%s) "
            "ON CONFLICT (one) DO UPDATE SET version = excluded.version",
            (SCHEMA_VERSION,),
            prepare=False,
        )


async def _version(connection: AsyncConnection[Any], schema: str) -> int | None:
    """The schema's version, 0 for an empty version table, None when there is none."""
    # A query of the catalog, not to_regclass(): its snapshot sees a table that another
    # process committed while we waited for the lock; the catalog cache may not yet.
    cursor = await connection.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n "
        "ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = 'voicelogs_schema')",
        (schema,),
        prepare=False,
    )
    row = await cursor.fetchone()
    if row is None or not row[0]:
        return None
    cursor = await connection.execute(
        f"SELECT version FROM {quote_ident(schema)}.voicelogs_schema", prepare=False
    )
    row = await cursor.fetchone()
    return 0 if row is None else int(row[0])


def _refuse_newer(schema: str, version: int | None) -> None:
    if version is not None and version > SCHEMA_VERSION:
        raise StoreError(
            f"the schema {schema!r} has schema version {version}, but this version of "
            f"infobip-voicelogs knows versions up to {SCHEMA_VERSION}: upgrade the library"
        )


# -- the archive's columns -----------------------------------------------------------------

# Every archive column but `account`, `first_seen_at` and `updated_at` (one value a batch),
# with its type: the record type in which `json_to_recordset()` reads a batch's document.
ARCHIVE_FIELDS: tuple[tuple[str, str], ...] = (
    ("message_id", "text"), ("bulk_id", "text"), ("to_number", "text"),
    ("from_sender", "text"), ("text", "text"), ("sent_at", "timestamptz"),
    ("done_at", "timestamptz"), ("duration", "bigint"), ("mccmnc", "text"),
    ("price_per_second", "numeric"), ("currency", "text"), ("status_group", "text"),
    ("status_group_name", "text"), ("status_group_id", "bigint"), ("status_id", "bigint"),
    ("status_name", "text"), ("status_description", "text"), ("status_action", "text"),
    ("error_group_id", "bigint"), ("error_group_name", "text"), ("error_id", "bigint"),
    ("error_name", "text"), ("error_description", "text"), ("error_permanent", "boolean"),
    ("source", "text"), ("callback_data", "text"), ("call_started_at", "timestamptz"),
    ("call_answered_at", "timestamptz"), ("call_ended_at", "timestamptz"),
    ("charged_duration", "bigint"), ("answered_by", "text"), ("report", "jsonb"),
)  # fmt: skip
# The columns of one state: written whole by the newer state, never merged with an older's.
# Any other column keeps what it held when the new row has none (a report has no `text`).
_TAKE_ON_UPDATE = frozenset({*ARCHIVE_STATE_COLUMNS, "source", "updated_at"})


def _on_update(s: str, column: str) -> str:
    if column in _TAKE_ON_UPDATE:
        return f"{column} = excluded.{column}"
    return f"{column} = COALESCE(excluded.{column}, {s}.voice_logs.{column})"


def _millisecond(name: str, kind: str) -> str:
    # The archive keeps the provider's precision, milliseconds, as SqliteStore does.
    return f"date_trunc('milliseconds', {name})" if kind == "timestamptz" else name


class Statements:
    """Every statement of the store, with its schema filled in once."""

    def __init__(self, schema: str) -> None:
        s = quote_ident(schema)
        columns = [name for name, _ in ARCHIVE_FIELDS]
        fields = [("fingerprint", "text"), *ARCHIVE_FIELDS]
        record = ", ".join(f"{name} {kind}" for name, kind in fields)
        # One batch: its JSON document as rows, and when it is written: the store's clock
        # if it has one, else the transaction's now().
        batch = (
            "batch AS MATERIALIZED (SELECT r.*, COALESCE(%(now)s::timestamptz, now()) AS at "
            f"FROM json_to_recordset(%(batch)s::json) AS r ({record}))"
        )
        # A final state's fingerprint ("2f:...") is never replaced by a non-final one
        # ("2p:..." or an old 24-hex v1 one): a late, stale page cannot undo a settled log.
        keep_final = (
            f"WHERE NOT ({s}.fingerprints.fingerprint LIKE '2f:%%' "
            "AND excluded.fingerprint NOT LIKE '2f:%%')"
        )
        # `{guard}`: TRUE, or the lease check of a fenced commit (its row locked before).
        write_fingerprints = (
            f"INSERT INTO {s}.fingerprints (account, message_id, fingerprint, sent_at, "
            "updated_at) SELECT %(account)s, message_id, fingerprint, "
            # A log without sent_at ages from when it was written, so prune still forgets it.
            "COALESCE(date_trunc('milliseconds', sent_at), at), at FROM batch WHERE {guard} "
            "ON CONFLICT (account, message_id) DO UPDATE SET "
            "fingerprint = excluded.fingerprint, sent_at = excluded.sent_at, "
            f"updated_at = excluded.updated_at {keep_final} RETURNING message_id"
        )
        fingerprints_only = f"WITH {batch} {write_fingerprints}"
        # Both tables from one reading of the document: a data-modifying CTE. The archive
        # row is written only where the fingerprint was (not where a final one was kept).
        with_archive = (
            f"WITH {batch}, fingerprints_written AS ({write_fingerprints}) "
            f"INSERT INTO {s}.voice_logs (account, {', '.join(columns)}, first_seen_at, "
            "updated_at) SELECT %(account)s, "
            + ", ".join(_millisecond(name, kind) for name, kind in ARCHIVE_FIELDS)
            + ", at, at FROM batch "
            "WHERE message_id IN (SELECT message_id FROM fingerprints_written) "
            "ON CONFLICT (account, message_id) DO UPDATE SET "
            # The key and the first sighting stay; see `_on_update` for the others.
             + ", ".join(_on_update(s, c) for c in [*columns[1:], "updated_at"])
        )
        write_checkpoint = (
            f"INSERT INTO {s}.checkpoints (account, checkpoint, updated_at) "
            "SELECT %(account)s, %(checkpoint)s, COALESCE(%(now)s::timestamptz, now()) "
            "WHERE {guard} ON CONFLICT (account) "
            "DO UPDATE SET checkpoint = excluded.checkpoint, updated_at = excluded.updated_at"
        )
        # The fence of commit_leased, in each write: the lease row is locked by
        # `check_lease` earlier in the same transaction, so this sees what it saw.
        fenced = (
            f"EXISTS (SELECT 1 FROM {s}.leases WHERE account = %(account)s "
            "AND owner = %(owner)s AND fence = %(fence)s AND expires_at > now())"
        )
        self.upsert_fingerprints = fingerprints_only.replace("{guard}", "TRUE")
        self.upsert_fingerprints_and_archive = with_archive.replace("{guard}", "TRUE")
        self.upsert_checkpoint = write_checkpoint.replace("{guard}", "TRUE")
        self.fenced_upsert_fingerprints = fingerprints_only.replace("{guard}", fenced)
        self.fenced_upsert_fingerprints_and_archive = with_archive.replace("{guard}", fenced)
        self.fenced_upsert_checkpoint = write_checkpoint.replace("{guard}", fenced)

        # advance(): every account's checkpoint in one statement, only where its lease
        # still holds (rows locked in account order, as claims lock them) and only forward.
        self.advance = (
            "WITH given AS (SELECT * FROM json_to_recordset(%(batch)s::json) "
            "AS g (account text, owner text, fence bigint, at timestamptz)), "
            f"held AS (SELECT g.account, g.at FROM given g JOIN {s}.leases l "
            "ON l.account = g.account AND l.owner = g.owner AND l.fence = g.fence "
            "AND l.expires_at > now() ORDER BY g.account FOR UPDATE OF l), "
            f"moved AS (INSERT INTO {s}.checkpoints (account, checkpoint, updated_at) "
            "SELECT account, at, COALESCE(%(now)s::timestamptz, now()) FROM held "
            "ON CONFLICT (account) DO UPDATE SET checkpoint = excluded.checkpoint, "
            f"updated_at = excluded.updated_at WHERE {s}.checkpoints.checkpoint "
            "< excluded.checkpoint) "
            "SELECT account FROM given WHERE account NOT IN (SELECT account FROM held)"
        )
        # commit_reports(): the account's reports flow; its last report never moves back.
        touch_report_activity = (
            f"INSERT INTO {s}.report_activity (account, last_report_at, reports) "
            "SELECT %(account)s, %(received_at)s::timestamptz, %(received)s::bigint "
            "WHERE {guard} ON CONFLICT (account) DO UPDATE "
            f"SET reports = {s}.report_activity.reports + excluded.reports, last_report_at = "
            f"GREATEST({s}.report_activity.last_report_at, excluded.last_report_at)"
        )
        self.touch_report_activity = touch_report_activity.replace("{guard}", "TRUE")
        self.fenced_touch_report_activity = touch_report_activity.replace("{guard}", fenced)
        # commit_leased(inbox=...): the consumed entries, only the lease's account's.
        delete_inbox = (
            f"DELETE FROM {s}.report_inbox WHERE account = %(account)s AND id IN "
            "(SELECT json_array_elements_text(%(inbox)s::json)::bigint) AND {guard}"
        )
        self.fenced_delete_inbox = delete_inbox.replace("{guard}", fenced)
        # record_reports(): one statement; the NOTIFY goes out when it commits.
        self.record_reports = (
            f"WITH entry AS (INSERT INTO {s}.report_inbox (account, received_at, count, body) "
            "VALUES (%(account)s, %(received_at)s, %(count)s, %(body)s) RETURNING id) "
            f"SELECT id, pg_notify('{INBOX_CHANNEL}', %(payload)s) FROM entry"
        )
        self.inbox = (
            f"SELECT id, account, received_at, count, body FROM {s}.report_inbox "
            "WHERE account = %s ORDER BY id LIMIT %s"
        )
        # One index probe per listed account, however many entries wait.
        self.inbox_accounts = (
            "SELECT a FROM json_array_elements_text(%s::json) AS a WHERE EXISTS "
            f"(SELECT 1 FROM {s}.report_inbox i WHERE i.account = a)"
        )
        self.report_activity = (
            f"SELECT account, last_report_at FROM {s}.report_activity "
            "WHERE account IN (SELECT json_array_elements_text(%s::json))"
        )
        self.checkpoint = f"SELECT checkpoint FROM {s}.checkpoints WHERE account = %s"
        self.accounts = f"SELECT account, checkpoint FROM {s}.checkpoints ORDER BY account"
        self.fingerprints = (
            f"SELECT message_id, fingerprint FROM {s}.fingerprints WHERE account = %s "
            "AND message_id IN (SELECT json_array_elements_text(%s::json))"
        )
        self.prune = (
            f"WITH gone AS (DELETE FROM {s}.fingerprints WHERE sent_at < %s RETURNING 1) "
            "SELECT count(*) FROM gone"
        )
        self.archived = (
            f"SELECT * FROM {s}.voice_logs {{where}} "
            "ORDER BY sent_at IS NULL, sent_at DESC, account, message_id"
        )

        # -- leases: one claim period's transaction, in order ------------------------------
        ttl = "now() + %(ttl)s * interval '1 second'"
        # Account lists arrive as JSON arrays (psycopg's text dumping of a 10,000-name list
        # costs ~12 ms a statement, orjson's well under one) and are read as a set: IN and
        # NOT IN over a subquery hash it, where `= ANY(array)` compared each row with every
        # name (10,000 accounts: up to 0.5 s a claim period instead of ~50 ms).
        listed = "(SELECT json_array_elements_text(%(accounts)s::json))"
        self.lease = _lease_statement(s, listed, ttl)
        self.release = (
            f"UPDATE {s}.leases SET owner = NULL, expires_at = NULL "
            f"WHERE owner = %(owner)s AND account IN {listed}"
        )
        self.release_all = (
            f"UPDATE {s}.leases SET owner = NULL, expires_at = NULL WHERE owner = %(owner)s"
        )
        self.owner_gone = f"DELETE FROM {s}.lease_owners WHERE owner = %(owner)s"
        # The fence check of commit_leased: the row lock keeps a claimer out until we commit.
        self.check_lease = (
            f"SELECT owner = %s AND fence = %s AND expires_at > now() "
            f"FROM {s}.leases WHERE account = %s FOR UPDATE"
        )


def _lease_statement(s: str, listed: str, ttl: str) -> str:
    """The whole claim period of one owner as one statement: a chain of CTEs.

    All parts see one snapshot, the one the statement starts with, so none sees another's
    writes: each works from what the snapshot shows and from the others' RETURNING, and
    no two touch the same row (a row updated twice in one statement is not supported).
    Parameters: owner, accounts (a JSON array), busy (a JSON array), ttl (seconds).
    """
    return f"""
    WITH
    -- This owner is alive until its ttl runs out.
    alive AS (
        INSERT INTO {s}.lease_owners (owner, alive_until) VALUES (%(owner)s, {ttl})
        ON CONFLICT (owner) DO UPDATE SET alive_until = excluded.alive_until
    ),
    -- Forget processes gone for a day; SKIP LOCKED: never wait for one coming back.
    forgotten AS (
        DELETE FROM {s}.lease_owners WHERE owner IN (
            SELECT owner FROM {s}.lease_owners
            WHERE alive_until < now() - interval '1 day' AND owner <> %(owner)s
            FOR UPDATE SKIP LOCKED)
    ),
    -- The live owners, this one included even on its first call (the snapshot predates
    -- `alive`), and the fair share of the listed accounts.
    share AS (
        SELECT ceil(
            (SELECT count(*) FROM {listed} AS a)::numeric
            / (1 + (SELECT count(*) FROM {s}.lease_owners
                    WHERE alive_until > now() AND owner <> %(owner)s))
        )::bigint AS n
    ),
    -- This owner's rows: still listed (kept) or not (released).
    mine AS (
        SELECT account, account IN {listed} AS listed
        FROM {s}.leases WHERE owner = %(owner)s
    ),
    -- Leases above the share are shed: the last accounts in order, never a busy one.
    shed AS (
        SELECT account FROM mine
        WHERE listed AND account NOT IN (SELECT json_array_elements_text(%(busy)s::json))
        ORDER BY account DESC
        LIMIT GREATEST(0, (SELECT count(*) FROM mine WHERE listed) - (SELECT n FROM share))
    ),
    -- Renew the kept ones (same fence, even if the time ran out meanwhile: nobody claimed
    -- them, a claim sets the owner), release the rest, in one pass over this owner's rows.
    renewed AS (
        UPDATE {s}.leases l SET
            owner = CASE WHEN m.listed AND m.account NOT IN (SELECT account FROM shed)
                         THEN l.owner END,
            expires_at = CASE WHEN m.listed AND m.account NOT IN (SELECT account FROM shed)
                              THEN {ttl} END
        FROM mine m WHERE l.account = m.account AND l.owner = %(owner)s
        RETURNING l.account, l.owner, l.fence, l.expires_at
    ),
    -- How many more this owner may claim.
    want AS (
        SELECT GREATEST(0, (SELECT n FROM share)
            - ((SELECT count(*) FROM mine WHERE listed) - (SELECT count(*) FROM shed))) AS n
    ),
    -- Free or expired rows of others, in account order; SKIP LOCKED: rows another process
    -- is claiming or committing right now are not free for us, we take others, never wait.
    free AS (
        SELECT account FROM {s}.leases
        WHERE account IN {listed} AND owner IS DISTINCT FROM %(owner)s
        AND (owner IS NULL OR expires_at IS NULL OR expires_at <= now())
        ORDER BY account LIMIT (SELECT n FROM want) FOR UPDATE SKIP LOCKED
    ),
    claimed AS (
        UPDATE {s}.leases l SET owner = %(owner)s, fence = l.fence + 1, expires_at = {ttl}
        FROM free WHERE l.account = free.account
        RETURNING l.account, l.owner, l.fence, l.expires_at
    ),
    -- Accounts never seen are added, in account order (processes adding the same ones at
    -- once wait for each other in one order, never in a cycle); as many as the share
    -- still allows are added claimed by this owner. A row another process added first is
    -- left to it (DO NOTHING), so two never claim one.
    unseen AS (
        SELECT a AS account, row_number() OVER (ORDER BY a) AS rank
        FROM json_array_elements_text(%(accounts)s::json) AS a
        WHERE NOT EXISTS (SELECT 1 FROM {s}.leases l WHERE l.account = a)
    ),
    added AS (
        INSERT INTO {s}.leases (account, owner, fence, expires_at)
        SELECT account,
            CASE WHEN rank <= room.n THEN %(owner)s END,
            CASE WHEN rank <= room.n THEN 1 ELSE 0 END,
            CASE WHEN rank <= room.n THEN {ttl} END
        FROM unseen, (SELECT (SELECT n FROM want) - (SELECT count(*) FROM free) AS n) AS room
        ORDER BY account
        ON CONFLICT (account) DO NOTHING
        RETURNING account, owner, fence, expires_at
    )
    SELECT account, owner, fence, expires_at FROM renewed WHERE owner IS NOT NULL
    UNION ALL SELECT * FROM claimed
    UNION ALL SELECT * FROM added WHERE owner IS NOT NULL
    """
