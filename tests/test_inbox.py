"""The inbox of report batches, and the fenced commit that consumes it, on both stores.

A receiver records each batch (`record_reports`) and answers; the account's holder reads
the inbox, hands the states over and commits them with the consumed entries in one fenced
transaction (`commit_leased(inbox=..., reports=..., known=...)`). Wake-ups tell the holder
at once: in-process for both stores, across processes for PostgreSQL (`LISTEN`/`NOTIFY`).
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import attrs
import psycopg
import pytest
from pg_server import PgBouncer, PostgresCluster
from test_postgres import RoundTrips
from test_reports_flow import report_of as report_of_call
from test_store import NOON, Clock, delivered, voice_log

from infobip_voicelogs import CheckpointStore, LeaseLostError, SqliteStore, StoreError
from infobip_voicelogs.postgres import PostgresStore
from infobip_voicelogs.postgres._pool import LISTENER_NAME
from infobip_voicelogs.reports import VoiceReport
from infobip_voicelogs.store import Delivered, InboxEntry, InboxStore, Lease, LeaseStore
from infobip_voicelogs.store._local import solo_leases

Store = Any  # SqliteStore | PostgresStore
AT = datetime(2026, 11, 26, 12, 0, 0, 123_456, tzinfo=UTC)
#: The bound of every wait for a wake-up: generous, only hit when one never comes.
WAKE_BOUND = 10.0


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """An archiving store of each kind."""
    if request.param == "sqlite":
        opened: Store = SqliteStore(tmp_path / "voicelogs.db", archive=True, clock=Clock(NOON))
    else:
        opened = PostgresStore(request.getfixturevalue("postgres_dsn"), archive=True)
    async with opened:
        yield opened


Rows = Callable[..., Awaitable[list[tuple[Any, ...]]]]


@pytest.fixture
def rows(request: pytest.FixtureRequest, store: Store) -> Rows:
    """Runs one query (`?` placeholders) on the store's database, as any SQL client would."""

    async def read(query: str, *params: Any) -> list[tuple[Any, ...]]:
        if isinstance(store, SqliteStore):
            with contextlib.closing(sqlite3.connect(store.path)) as db:
                return [tuple(row) for row in db.execute(query, params)]
        dsn = request.getfixturevalue("postgres_dsn")
        async with await psycopg.AsyncConnection.connect(dsn) as db:
            cursor = await db.execute(query.replace("?", "%s"), params)
            return [tuple(row) for row in await cursor.fetchall()]

    return read


async def leased(store: Store, account: str = "eu-1") -> Lease:
    lease: Lease = (await store.lease("me", [account], lease_ttl=30))[account]
    return lease


class Wakes:
    """A `watch_inbox` callback that records each account it hears and can be awaited."""

    def __init__(self) -> None:
        self.accounts: list[str] = []
        self._heard = asyncio.Event()

    def __call__(self, account: str) -> None:
        self.accounts.append(account)
        self._heard.set()

    async def next(self) -> list[str]:
        """Wait (bounded) until something was heard since the last call; return all heard."""
        await asyncio.wait_for(self._heard.wait(), WAKE_BOUND)
        self._heard.clear()
        return self.accounts


def report_of(message_id: str) -> VoiceReport:
    """A delivered call's report, with the fields only a report has (and no price)."""
    return attrs.evolve(report_of_call(voice_log(message_id)), price=None)


# -- recording and reading -----------------------------------------------------------------


async def test_both_stores_are_inbox_stores(store: Store) -> None:
    assert isinstance(store, InboxStore)
    assert store.inbox_wakes_other_processes is isinstance(store, PostgresStore)


async def test_a_recorded_batch_comes_back_as_recorded_oldest_first(store: Store) -> None:
    bodies = [b'[{"messageId": "m-1"}]', bytes(range(256)), b""]  # opaque: any bytes
    ids = [
        await store.record_reports("eu-1", body, count=n, received_at=AT + timedelta(seconds=n))
        for n, body in enumerate(bodies)
    ]
    other = await store.record_reports("us-1", b"other", count=1, received_at=AT)

    assert ids == sorted(ids)
    assert other > ids[-1]
    entries = await store.inbox("eu-1")
    assert entries == [
        InboxEntry(entry, "eu-1", AT + timedelta(seconds=n), n, body)
        for n, (entry, body) in enumerate(zip(ids, bodies, strict=True))
    ]
    assert all(type(e.body) is bytes and e.received_at.tzinfo is UTC for e in entries)
    assert await store.inbox("eu-1", limit=2) == entries[:2]
    assert await store.inbox("us-1") == [InboxEntry(other, "us-1", AT, 1, b"other")]
    assert await store.inbox("nobody") == []


async def test_inbox_accounts_names_the_accounts_with_batches_waiting(store: Store) -> None:
    assert await store.inbox_accounts([]) == set()
    assert await store.inbox_accounts(["eu-1", "us-1"]) == set()
    await store.record_reports("eu-1", b"a", count=1, received_at=AT)
    await store.record_reports("eu-1", b"b", count=1, received_at=AT)
    await store.record_reports("ap-1", b"c", count=1, received_at=AT)
    many = [f"acct-{n}" for n in range(1200)]  # beyond one chunk of SQLite's parameters

    assert await store.inbox_accounts(["eu-1", "us-1", "ap-1", *many]) == {"eu-1", "ap-1"}
    assert await store.inbox_accounts({"us-1"}) == set()


async def test_many_recordings_at_once_each_get_their_own_id(store: Store) -> None:
    ids = await asyncio.gather(
        *(store.record_reports("eu-1", b"%d" % n, count=1, received_at=AT) for n in range(50))
    )
    assert len(set(ids)) == 50
    entries = await store.inbox("eu-1", limit=1000)
    assert sorted(ids) == [entry.id for entry in entries]
    assert sorted(entry.body for entry in entries) == sorted(b"%d" % n for n in range(50))


async def test_an_id_is_never_used_twice_even_after_its_entry_was_consumed(store: Store) -> None:
    lease = await leased(store)
    first = await store.record_reports("eu-1", b"a", count=1, received_at=AT)
    await store.commit_leased(lease, checkpoint=None, delivered=[], inbox=[first])
    assert await store.inbox("eu-1") == []

    second = await store.record_reports("eu-1", b"b", count=1, received_at=AT)
    assert second > first


async def test_a_bad_batch_is_refused_in_one_line_and_nothing_is_recorded(store: Store) -> None:
    with pytest.raises(ValueError, match="naive"):
        await store.record_reports("eu-1", b"x", count=1, received_at=datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="count"):
        await store.record_reports("eu-1", b"x", count=-1, received_at=AT)
    with pytest.raises(ValueError, match="account"):
        await store.record_reports("", b"x", count=1, received_at=AT)
    with pytest.raises(TypeError, match="bytes"):
        await store.record_reports("eu-1", "x", count=1, received_at=AT)
    with pytest.raises(ValueError, match="limit"):
        await store.inbox("eu-1", limit=0)
    assert await store.inbox_accounts(["eu-1", ""]) == set()


# -- the fenced commit that consumes it ----------------------------------------------------


async def test_commit_leased_consumes_inbox_entries_with_their_states(store: Store) -> None:
    lease = await leased(store)
    first = await store.record_reports("eu-1", b"a", count=2, received_at=AT)
    second = await store.record_reports("eu-1", b"b", count=1, received_at=AT)
    theirs = await store.record_reports("us-1", b"c", count=1, received_at=AT)
    batch = delivered(voice_log("m-1"), voice_log("m-2"))

    # An id of another account is not this lease's to consume: it stays.
    await store.commit_leased(lease, checkpoint=NOON, delivered=batch, inbox=[first, theirs])

    assert [entry.id for entry in await store.inbox("eu-1")] == [second]
    assert [entry.id for entry in await store.inbox("us-1")] == [theirs]
    assert await store.fingerprints("eu-1", ["m-1", "m-2"]) == {"m-1": "7:None", "m-2": "7:None"}
    assert await store.checkpoint("eu-1") == NOON
    # Consuming an entry already gone is no error: a redelivery after a lost answer.
    await store.commit_leased(lease, checkpoint=None, delivered=[], inbox=[first, second])
    assert await store.inbox("eu-1") == []


async def test_a_lost_lease_consumes_nothing_and_writes_nothing(
    store: Store, request: pytest.FixtureRequest
) -> None:
    lease = await leased(store)
    entry = await store.record_reports("eu-1", b"a", count=1, received_at=AT)
    if isinstance(store, SqliteStore):
        await store.release("me")  # the store's owner is gone: its leases with it
    else:  # stolen: released, then claimed by another process with a higher fence
        await store.release("me", ["eu-1"])
        async with PostgresStore(request.getfixturevalue("postgres_dsn")) as other:
            taken = (await other.lease("thief", ["eu-1"], lease_ttl=30))["eu-1"]
            assert taken.fence == lease.fence + 1

    with pytest.raises(LeaseLostError):
        await store.commit_leased(
            lease,
            checkpoint=NOON,
            delivered=delivered(voice_log("m-1")),
            known=[Delivered(report_of("m-2"), "7:None")],
            inbox=[entry],
            reports=(AT, 1),
        )

    assert [e.id for e in await store.inbox("eu-1")] == [entry]
    assert await store.fingerprints("eu-1", ["m-1", "m-2"]) == {}
    assert await store.checkpoint("eu-1") is None
    assert await store.report_activity(["eu-1"]) == {}
    assert await store.archived() == []


async def test_reports_touch_the_activity_which_never_moves_back(store: Store, rows: Rows) -> None:
    counted = "SELECT reports FROM report_activity WHERE account = ?"
    lease = await leased(store)
    await store.commit_leased(lease, checkpoint=None, delivered=[], reports=(AT, 3))
    assert await store.report_activity(["eu-1"]) == {"eu-1": AT.replace(microsecond=123_000)}

    earlier = AT - timedelta(minutes=5)
    await store.commit_leased(lease, checkpoint=None, delivered=[], reports=(earlier, 2))
    assert await store.report_activity(["eu-1"]) == {"eu-1": AT.replace(microsecond=123_000)}
    later = AT + timedelta(minutes=5)
    await store.commit_leased(lease, checkpoint=None, delivered=[], reports=(later, 1))
    assert await store.report_activity(["eu-1"]) == {"eu-1": later.replace(microsecond=123_000)}
    assert await rows(counted, "eu-1") == [(6,)]

    await store.commit_leased(lease, checkpoint=None, delivered=[])  # no reports: untouched
    assert await rows(counted, "eu-1") == [(6,)]


async def test_known_reports_fill_the_archive_rows_a_log_wrote(store: Store, rows: Rows) -> None:
    lease = await leased(store)
    log = voice_log("m-1")
    await store.commit_leased(lease, checkpoint=None, delivered=[Delivered(log, "7:None")])
    report = report_of("m-1")  # the same state, brought by a report: not handed over again

    await store.commit_leased(
        lease, checkpoint=None, delivered=[], known=[Delivered(report, "7:None")], reports=(AT, 1)
    )

    assert await rows("SELECT source, callback_data, text FROM voice_logs") == [
        ("report", "order 17", "Your code is 1234")
    ]
    assert await store.fingerprints("eu-1", ["m-1"]) == {"m-1": "7:None"}


async def test_without_an_archive_known_reports_write_nothing(tmp_path: Path) -> None:
    plain = SqliteStore(tmp_path / "plain.db")
    async with plain:
        lease = await leased(plain)
        await plain.commit_leased(
            lease, checkpoint=None, delivered=[], known=[Delivered(report_of("m-1"), "7:None")]
        )
        assert await plain.fingerprints("eu-1", ["m-1"]) == {}


async def test_commit_reports_still_commits_a_batch_unfenced(store: Store, rows: Rows) -> None:
    report = Delivered(report_of("m-1"), "7:None")
    await store.commit_reports("eu-1", [report], received_at=AT)
    await store.commit_reports("eu-1", [], received_at=AT, received=2)
    assert await store.fingerprints("eu-1", ["m-1"]) == {"m-1": "7:None"}
    assert await rows("SELECT reports FROM report_activity") == [(3,)]


async def test_a_store_without_an_inbox_refuses_to_consume_one(tmp_path: Path) -> None:
    class Plain:  # a user's CheckpointStore, delegating to a SQLite file
        def __init__(self, inner: SqliteStore) -> None:
            self.inner = inner
            self.checkpoint = inner.checkpoint
            self.fingerprints = inner.fingerprints
            self.commit = inner.commit
            self.prune = inner.prune
            self.aclose = inner.aclose

    async with SqliteStore(tmp_path / "plain.db") as inner:
        plain = Plain(inner)
        assert isinstance(plain, CheckpointStore)
        wrapped = solo_leases(plain)
        assert isinstance(wrapped, LeaseStore)
        assert not isinstance(wrapped, InboxStore)
        lease = await leased(wrapped)
        with pytest.raises(TypeError, match="no inbox"):
            await wrapped.commit_leased(lease, checkpoint=NOON, delivered=[], inbox=[1])
        with pytest.raises(TypeError, match="no inbox"):
            await wrapped.commit_leased(lease, checkpoint=NOON, delivered=[], reports=(AT, 1))
        assert await inner.checkpoint("eu-1") is None
        await wrapped.commit_leased(lease, checkpoint=NOON, delivered=[], inbox=(), known=())
        assert await inner.checkpoint("eu-1") == NOON


# -- wake-ups ------------------------------------------------------------------------------


async def test_a_recording_wakes_this_process_s_watchers(store: Store) -> None:
    first, second = Wakes(), Wakes()
    unsubscribe = store.watch_inbox(first)
    store.watch_inbox(second)

    await store.record_reports("eu-1", b"a", count=1, received_at=AT)
    assert "eu-1" in await first.next()
    assert "eu-1" in await second.next()

    unsubscribe()
    unsubscribe()  # again: nothing
    await store.record_reports("us-1", b"b", count=1, received_at=AT)
    assert "us-1" in await second.next()
    assert "us-1" not in first.accounts


async def test_watch_inbox_needs_a_callable(store: Store) -> None:
    with pytest.raises(TypeError, match="callable"):
        store.watch_inbox("not a function")


# -- migration from version 2 --------------------------------------------------------------


async def test_a_version_2_sqlite_file_migrates_to_the_inbox(tmp_path: Path) -> None:
    from infobip_voicelogs.store import SCHEMA_VERSION, _schema

    path = tmp_path / "v2.db"
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as db:
        for migration in _schema._MIGRATIONS[:2]:
            for statement in migration:
                db.execute(statement)
        db.execute("PRAGMA user_version = 2")
        db.execute("INSERT INTO checkpoints VALUES ('eu-1', '2026-12-01T12:00:00.000000Z', 'x')")

    async with SqliteStore(path) as store:
        assert await store.checkpoint("eu-1") == datetime(2026, 12, 1, 12, tzinfo=UTC)
        entry = await store.record_reports("eu-1", b"a", count=1, received_at=AT)
        assert [e.id for e in await store.inbox("eu-1")] == [entry]

    with contextlib.closing(sqlite3.connect(path)) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
        assert SCHEMA_VERSION >= 3


# -- PostgreSQL: one round trip, wake-ups across processes ---------------------------------


@pytest.mark.postgres
async def test_a_recording_and_a_whole_hand_over_are_one_round_trip_each(
    pg_cluster: PostgresCluster, postgres_dsn: str
) -> None:
    counter = RoundTrips(pg_cluster.port)
    server = await asyncio.start_server(counter.client, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    database = postgres_dsn.rsplit("/", 1)[1]
    dsn = f"postgresql://postgres@127.0.0.1:{port}/{database}?sslmode=disable"
    async with PostgresStore(dsn, archive=True, max_size=1) as store:
        lease = await leased(store)  # connects and migrates
        before = counter.count
        entry = await store.record_reports("eu-1", b"a", count=2, received_at=AT)
        assert counter.count - before == 1
        before = counter.count
        await store.commit_leased(
            lease,
            checkpoint=NOON,
            delivered=delivered(voice_log("m-1")),
            known=[Delivered(report_of("m-2"), "7:None")],
            inbox=[entry],
            reports=(AT, 2),
        )
        assert counter.count - before == 1
        before = counter.count
        assert await store.inbox_accounts(["eu-1"]) == set()
        assert counter.count - before == 1
    server.close()


async def listeners(dsn: str) -> list[int]:
    """The pids of the stores' listening connections that have run their LISTEN."""
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as db:
        cursor = await db.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s "
            "AND datname = current_database() AND query LIKE 'LISTEN%%' AND state = 'idle'",
            (LISTENER_NAME,),
        )
        return [int(pid) for (pid,) in await cursor.fetchall()]


async def until_listening(dsn: str, count: int = 1, *, not_: Collection[int] = ()) -> list[int]:
    """Wait (bounded) until `count` listeners (none of the pids `not_`) listen; their pids."""
    for _ in range(200):
        pids = [pid for pid in await listeners(dsn) if pid not in not_]
        if len(pids) >= count:
            return pids
        await asyncio.sleep(0.05)
    raise AssertionError(f"{count} listener(s) did not start within the bound")


@pytest.mark.postgres
async def test_a_recording_keeps_a_large_body_byte_for_byte(postgres_dsn: str) -> None:
    body = bytes(range(256)) * 4096 + b"\x00'\\$$"  # every byte value, quotes, 1 MB
    async with PostgresStore(postgres_dsn) as store:
        entry = await store.record_reports("eu-1", body, count=1, received_at=AT)
        [stored] = await store.inbox("eu-1")
    assert (stored.id, stored.body, stored.received_at) == (entry, body, AT)


@pytest.mark.postgres
async def test_a_recording_blocked_on_a_lock_ends_at_its_timeout_and_leaks_nothing(
    postgres_dsn: str,
) -> None:
    async with PostgresStore(postgres_dsn, timeout=1.0, max_size=1) as store:
        await store.record_reports("eu-1", b"a", count=1, received_at=AT)  # migrated
        async with await psycopg.AsyncConnection.connect(postgres_dsn) as other:
            await other.execute("LOCK TABLE report_inbox IN ACCESS EXCLUSIVE MODE")
            with pytest.raises(StoreError, match=r"record a batch.*within 1 s"):
                await store.record_reports("eu-1", b"b", count=1, received_at=AT)
            # Cancelled on the server: nothing waits there any more for the lock.
            waiting = await other.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
            )
            assert await waiting.fetchone() == (0,)
            await other.rollback()
        # The store's one connection is usable, and only the first batch was recorded.
        await store.record_reports("eu-1", b"c", count=1, received_at=AT)
        assert [e.body for e in await store.inbox("eu-1")] == [b"a", b"c"]


@pytest.mark.postgres
async def test_a_recording_in_one_process_wakes_the_watchers_of_another(
    postgres_dsn: str,
) -> None:
    async with (
        PostgresStore(postgres_dsn) as receiver,
        PostgresStore(postgres_dsn) as holder,
    ):
        wakes = Wakes()
        holder.watch_inbox(wakes)
        await until_listening(postgres_dsn)

        await receiver.record_reports("eu-1", b"a", count=1, received_at=AT)
        assert await wakes.next() == ["eu-1"]
        await receiver.record_reports("us-1", b"b", count=1, received_at=AT)
        assert (await wakes.next())[-1] == "us-1"


@pytest.mark.postgres
async def test_the_listener_survives_a_dropped_connection(postgres_dsn: str) -> None:
    async with (
        PostgresStore(postgres_dsn) as receiver,
        PostgresStore(postgres_dsn) as holder,
    ):
        wakes = Wakes()
        holder.watch_inbox(wakes)
        [first] = await until_listening(postgres_dsn)
        async with await psycopg.AsyncConnection.connect(postgres_dsn, autocommit=True) as db:
            await db.execute("SELECT pg_terminate_backend(%s)", (first,))

        await until_listening(postgres_dsn, not_=[first])  # reconnected, listening again
        await receiver.record_reports("eu-1", b"a", count=1, received_at=AT)
        assert await wakes.next() == ["eu-1"]


@pytest.mark.postgres
async def test_two_schemas_on_one_database_do_not_wake_each_other(postgres_dsn: str) -> None:
    async with (
        PostgresStore(postgres_dsn, schema="tenant_a") as a,
        PostgresStore(postgres_dsn, schema="tenant_b") as b,
        PostgresStore(postgres_dsn, schema="tenant_a") as a_holder,
        PostgresStore(postgres_dsn, schema="tenant_b") as b_holder,
    ):
        heard_by_a, heard_by_b = Wakes(), Wakes()
        a_holder.watch_inbox(heard_by_a)
        b_holder.watch_inbox(heard_by_b)
        await until_listening(postgres_dsn, 2)

        # One channel, heard in commit order: when a listener hears its schema's later
        # recording, it has passed over the other schema's earlier one.
        await b.record_reports("eu-1", b"b", count=1, received_at=AT)
        await a.record_reports("us-1", b"a", count=1, received_at=AT)
        await b.record_reports("ap-1", b"b", count=1, received_at=AT)
        assert await heard_by_a.next() == ["us-1"]
        for _ in range(2):  # one wake-up each, perhaps heard in one go
            if heard_by_b.accounts != ["eu-1", "ap-1"]:
                await heard_by_b.next()
        assert heard_by_b.accounts == ["eu-1", "ap-1"]
        assert await a.inbox_accounts(["eu-1", "us-1", "ap-1"]) == {"us-1"}


@pytest.mark.postgres
async def test_the_listener_ends_with_the_last_watcher_and_with_aclose(postgres_dsn: str) -> None:
    store = PostgresStore(postgres_dsn)
    first, second = store.watch_inbox(Wakes()), store.watch_inbox(Wakes())
    [pid] = await until_listening(postgres_dsn)  # one connection for both watchers
    first()
    assert await listeners(postgres_dsn) == [pid]
    second()
    for _ in range(200):  # bounded: the connection closes as its task ends
        if not await listeners(postgres_dsn):
            break
        await asyncio.sleep(0.05)
    assert await listeners(postgres_dsn) == []

    unsubscribe = store.watch_inbox(Wakes())
    [old] = await until_listening(postgres_dsn)
    unsubscribe()
    wakes = Wakes()  # subscribed while the last listener is still ending: a new one starts
    store.watch_inbox(wakes)
    await until_listening(postgres_dsn, not_=[pid, old])
    await store.record_reports("eu-1", b"a", count=1, received_at=AT)
    assert "eu-1" in await wakes.next()
    await store.aclose()
    assert await listeners(postgres_dsn) == []
    store.watch_inbox(Wakes())  # after aclose: no listener starts
    await asyncio.sleep(0)
    assert await listeners(postgres_dsn) == []


@pytest.mark.postgres
async def test_an_unreachable_listener_logs_once_per_outage_and_keeps_trying(
    postgres_dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    attempts = 0

    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal attempts
        attempts += 1
        writer.close()

    server = await asyncio.start_server(refuse, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    secret = "s3cret-listen-pw"
    listen_dsn = f"postgresql://postgres:{secret}@127.0.0.1:{port}/x?sslmode=disable"
    async with PostgresStore(postgres_dsn, listen_dsn=listen_dsn) as store:
        store.watch_inbox(Wakes())
        for _ in range(400):  # bounded: 0.5 s, then 1 s between attempts
            if attempts >= 3:
                break
            await asyncio.sleep(0.025)
        assert attempts >= 3
        # The inbox itself works meanwhile: the listener is only the fast path.
        await store.record_reports("eu-1", b"a", count=1, received_at=AT)
        assert await store.inbox_accounts(["eu-1"]) == {"eu-1"}
    server.close()
    warnings = [r for r in caplog.records if "not listening" in r.getMessage()]
    assert len(warnings) == 1
    assert secret not in caplog.text


@pytest.mark.postgres
async def test_behind_a_pgbouncer_the_listener_goes_to_listen_dsn(
    pg_cluster: PostgresCluster, postgres_dsn: str
) -> None:
    bouncer = PgBouncer(pg_cluster)
    try:
        database = postgres_dsn.rsplit("/", 1)[1]
        async with (
            PostgresStore(bouncer.dsn(database)) as receiver,
            PostgresStore(bouncer.dsn(database), listen_dsn=postgres_dsn) as holder,
        ):
            wakes = Wakes()
            holder.watch_inbox(wakes)
            await until_listening(postgres_dsn)
            await receiver.record_reports("eu-1", b"a", count=1, received_at=AT)
            assert await wakes.next() == ["eu-1"]
    finally:
        bouncer.stop()


@pytest.mark.postgres
async def test_a_version_2_postgres_schema_migrates_to_the_inbox(postgres_dsn: str) -> None:
    from infobip_voicelogs.postgres import SCHEMA_VERSION, _schema

    async with await psycopg.AsyncConnection.connect(postgres_dsn, autocommit=True) as db:
        await db.execute(
            "CREATE TABLE public.voicelogs_schema (one boolean PRIMARY KEY DEFAULT true "
            "CHECK (one), version integer NOT NULL)"
        )
        for migration in _schema._MIGRATIONS[:2]:
            for statement in migration:
                await db.execute(statement.format(s='"public"'))
        await db.execute("INSERT INTO public.voicelogs_schema (version) VALUES (2)")
        await db.execute("INSERT INTO checkpoints VALUES ('eu-1', %s, now())", (NOON,))

    async with PostgresStore(postgres_dsn) as store:
        assert await store.checkpoint("eu-1") == NOON
        entry = await store.record_reports("eu-1", b"a", count=1, received_at=AT)
        assert [e.id for e in await store.inbox("eu-1")] == [entry]

    async with await psycopg.AsyncConnection.connect(postgres_dsn) as db:
        cursor = await db.execute("SELECT version FROM public.voicelogs_schema")
        assert await cursor.fetchone() == (SCHEMA_VERSION,)
        assert SCHEMA_VERSION >= 3
