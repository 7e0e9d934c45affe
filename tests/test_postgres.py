"""PostgresStore against a real PostgreSQL: the store's contract, the archive, and leases.

The `CheckpointStore` behaviour is checked on `SqliteStore` and `PostgresStore` alike
through one parametrized fixture; leases are checked with several stores, each with its
own pool, as several poller processes would hold them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import attrs
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pg_server import PASSWORD_ROLE, PgBouncer, PostgresCluster, free_port
from psycopg_pool import AsyncConnectionPool
from test_store import (
    ABSENT,
    CET,
    DELIVERED,
    NOON,
    UNDELIVERABLE,
    Clock,
    delivered,
    documented_queries,
    voice_log,
    voice_logs,
)

from infobip_voicelogs import (
    CheckpointStore,
    Delivered,
    Lease,
    LeaseLostError,
    LeaseStore,
    Price,
    SqliteStore,
    StoreError,
    VoiceLog,
)
from infobip_voicelogs.postgres import SCHEMA_VERSION, PostgresStore

pytestmark = pytest.mark.postgres

Store = SqliteStore | PostgresStore


@pytest.fixture(params=["sqlite", "postgres"])
async def store(
    request: pytest.FixtureRequest, tmp_path: Path, clock: Clock
) -> AsyncIterator[Store]:
    """An archiving store of each kind, its `first_seen_at` and `updated_at` from `clock`."""
    if request.param == "sqlite":
        opened: Store = SqliteStore(tmp_path / "voicelogs.db", archive=True, clock=clock)
    else:
        dsn = request.getfixturevalue("postgres_dsn")
        opened = PostgresStore(dsn, archive=True, clock=clock)
    async with opened:
        yield opened


@pytest.fixture
def clock() -> Clock:
    return Clock(NOON)


@pytest.fixture
async def pg(postgres_dsn: str) -> AsyncIterator[PostgresStore]:
    async with PostgresStore(postgres_dsn, archive=True) as store:
        yield store


async def sql(dsn: str, statement: str, *params: Any) -> list[tuple[Any, ...]]:
    """Run one statement as any PostgreSQL client would, beside the store."""
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as connection:
        cursor = await connection.execute(statement, params or None)
        return await cursor.fetchall() if cursor.description else []


# -- the CheckpointStore contract, on both stores ------------------------------------------


async def test_both_stores_are_lease_stores(store: Store) -> None:
    # SqliteStore leases too, for one process (fence 0): the poller has one commit path.
    assert isinstance(store, CheckpointStore)
    assert isinstance(store, LeaseStore)


async def test_checkpoints_are_kept_per_account_exactly_in_utc(store: Store) -> None:
    assert await store.checkpoint("eu-1") is None
    given_at = datetime(2026, 11, 26, 13, 0, 0, 123_456, tzinfo=CET)
    await store.commit("eu-1", checkpoint=given_at, delivered=[])
    await store.commit("us-1", checkpoint=NOON + timedelta(minutes=5), delivered=[])
    await store.commit("us-1", checkpoint=NOON - timedelta(hours=1), delivered=[])  # backwards
    await store.commit("eu-1", checkpoint=None, delivered=delivered(voice_log("m-1")))

    checkpoint = await store.checkpoint("eu-1")
    assert checkpoint == given_at
    assert checkpoint is not None
    assert checkpoint.tzinfo is UTC
    assert await store.accounts() == {"eu-1": given_at, "us-1": NOON - timedelta(hours=1)}


async def test_naive_datetimes_are_refused_before_anything_is_written(store: Store) -> None:
    with pytest.raises(ValueError, match="naive"):
        await store.commit("eu-1", checkpoint=datetime(2026, 11, 26), delivered=[])
    naive = voice_log("m-1", sent_at=datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="naive"):
        await store.commit("eu-1", checkpoint=NOON, delivered=delivered(naive))
    with pytest.raises(ValueError, match="naive"):
        await store.prune(before=datetime(2026, 11, 26))
    assert await store.accounts() == {}


async def test_fingerprints_answer_for_known_messages_and_follow_changes(store: Store) -> None:
    await store.commit(
        "eu-1", checkpoint=NOON, delivered=delivered(voice_log("m-1"), voice_log("m-2"))
    )
    await store.commit("us-1", checkpoint=NOON, delivered=delivered(voice_log("m-3")))
    done = voice_log("m-2", status=DELIVERED, duration=12)
    await store.commit("eu-1", checkpoint=NOON, delivered=delivered(done))

    assert await store.fingerprints("eu-1", ["m-1", "m-2", "m-3", "unknown"]) == {
        "m-1": "7:None",
        "m-2": "5:12",
    }
    assert await store.fingerprints("us-1", {"m-1", "m-3"}) == {"m-3": "7:None"}
    assert await store.fingerprints("eu-1", []) == {}


async def test_thousands_of_fingerprints_at_once(store: Store) -> None:
    logs = [voice_log(f"m-{n}", duration=n) for n in range(2500)]
    await store.commit("eu-1", checkpoint=NOON, delivered=delivered(*logs))

    known = await store.fingerprints("eu-1", [f"m-{n}" for n in range(3000)])

    assert known == {f"m-{n}": f"7:{n}" for n in range(2500)}


async def test_a_message_twice_in_one_batch_keeps_its_last_state(store: Store) -> None:
    first, last = voice_log("m-1"), voice_log("m-1", status=DELIVERED, duration=3)
    await store.commit("eu-1", checkpoint=NOON, delivered=delivered(first, voice_log("m-2"), last))

    assert await store.fingerprints("eu-1", ["m-1"]) == {"m-1": "5:3"}
    assert await store.archived() == [last, voice_log("m-2")]


FINAL, NOT_FINAL, V1 = "2f:" + "a" * 16, "2p:" + "b" * 16, "c" * 24


async def test_a_final_fingerprint_is_never_replaced_by_a_non_final_one(store: Store) -> None:
    settled, stale = voice_log("m-1", status=DELIVERED, duration=12), voice_log("m-1")
    await store.commit("eu-1", checkpoint=NOON, delivered=[Delivered(stale, V1)])
    await store.commit("eu-1", checkpoint=NOON, delivered=[Delivered(settled, FINAL)])
    # A late page with the log still pending, new style and old: fingerprint and archive stay.
    await store.commit("eu-1", checkpoint=NOON, delivered=[Delivered(stale, NOT_FINAL)])
    await store.commit("eu-1", checkpoint=NOON, delivered=[Delivered(stale, V1)])
    assert await store.fingerprints("eu-1", ["m-1"]) == {"m-1": FINAL}
    assert await store.archived() == [settled]

    # A final state may still replace a final one (a correction), and non-final moves on.
    corrected = voice_log("m-1", status=DELIVERED, duration=13)
    await store.commit(
        "eu-1",
        checkpoint=NOON,
        delivered=[Delivered(corrected, "2f:" + "d" * 16), Delivered(voice_log("m-2"), V1)],
    )
    await store.commit("eu-1", checkpoint=NOON, delivered=[Delivered(voice_log("m-2"), NOT_FINAL)])
    assert await store.fingerprints("eu-1", ["m-1", "m-2"]) == {
        "m-1": "2f:" + "d" * 16,
        "m-2": NOT_FINAL,
    }
    assert await store.archived() == [corrected, voice_log("m-2")]


async def test_a_commit_that_fails_midway_leaves_nothing_of_its_batch(store: Store) -> None:
    await store.commit("eu-1", checkpoint=NOON, delivered=delivered(voice_log("m-1")))
    batch = [
        voice_log("m-1", status=DELIVERED, duration=30),
        voice_log("m-2"),
        voice_log("m-3", duration=2**70),  # no 64-bit integer holds it
    ]

    with pytest.raises((OverflowError, StoreError)):
        await store.commit(
            "eu-1", checkpoint=NOON + timedelta(minutes=1), delivered=delivered(*batch)
        )

    assert await store.checkpoint("eu-1") == NOON
    assert await store.fingerprints("eu-1", ["m-1", "m-2", "m-3"]) == {"m-1": "7:None"}
    assert await store.archived() == [voice_log("m-1")]
    # ... and the next commit goes through.
    await store.commit("eu-1", checkpoint=NOON, delivered=delivered(voice_log("m-3", duration=9)))
    assert await store.fingerprints("eu-1", ["m-3"]) == {"m-3": "7:9"}


async def test_the_archive_keeps_the_last_state_exact_prices_and_utc(
    store: Store, clock: Clock
) -> None:
    await store.commit("eu-1", checkpoint=NOON, delivered=delivered(voice_log("m-1")))
    clock.now = NOON + timedelta(minutes=10)
    final = voice_log(
        "m-1",
        sent_at=datetime(2026, 11, 26, 13, 0, 31, 773_999, tzinfo=CET),  # kept to the ms
        status=DELIVERED,
        done_at=NOON + timedelta(seconds=40),
        duration=31,
        price=Price(Decimal("0.000123456789012345678901234567890"), "EUR"),
        error=ABSENT,
    )
    await store.commit("eu-1", checkpoint=NOON, delivered=delivered(final))

    [back] = await store.archived()
    assert back == attrs.evolve(final, sent_at=NOON + timedelta(seconds=31, milliseconds=773))
    assert back.price is not None
    assert str(back.price.per_second) == "0.000123456789012345678901234567890"
    assert back.sent_at is not None
    assert back.sent_at.tzinfo is UTC


async def test_archived_is_newest_first_and_filters_by_account(store: Store) -> None:
    old = voice_log("m-old", sent_at=NOON - timedelta(hours=30))
    new = voice_log("m-new", sent_at=NOON)
    undated = voice_log("m-undated", sent_at=None)
    other = voice_log("m-other", sent_at=NOON - timedelta(hours=1))
    await store.commit("eu-1", checkpoint=NOON, delivered=delivered(old, undated, new))
    await store.commit("us-1", checkpoint=NOON, delivered=delivered(other))

    assert await store.archived("eu-1") == [new, old, undated]
    assert await store.archived() == [new, other, old, undated]


async def test_prune_forgets_old_fingerprints_only(store: Store, clock: Clock) -> None:
    old = voice_log("m-old", sent_at=NOON - timedelta(hours=50))
    recent = voice_log("m-recent", sent_at=NOON - timedelta(hours=1))
    undated = voice_log("m-undated", sent_at=None)
    clock.now = NOON - timedelta(hours=60)  # an undated log ages from when it was committed
    await store.commit("eu-1", checkpoint=NOON, delivered=delivered(old, recent, undated))

    assert await store.prune(before=NOON - timedelta(hours=49)) == 2
    ids = ["m-old", "m-recent", "m-undated"]
    assert set(await store.fingerprints("eu-1", ids)) == {"m-recent"}
    assert len(await store.archived()) == 3  # the archive keeps every log
    assert await store.prune(before=NOON - timedelta(hours=49)) == 0


async def test_two_hundred_accounts_commit_at_once(store: Store) -> None:
    async def poll_cycle(n: int) -> None:
        account = f"acct-{n:03d}"
        logs = [voice_log(f"{account}/m-{k}", duration=k) for k in range(5)]
        assert await store.fingerprints(account, [log.message_id or "" for log in logs]) == {}
        await store.commit(
            account, checkpoint=NOON + timedelta(seconds=n), delivered=delivered(*logs)
        )

    await asyncio.gather(*(poll_cycle(n) for n in range(200)))

    assert await store.accounts() == {
        f"acct-{n:03d}": NOON + timedelta(seconds=n) for n in range(200)
    }
    assert len(await store.archived()) == 1000


async def test_a_closed_store_says_so(store: Store) -> None:
    await store.commit("eu-1", checkpoint=NOON, delivered=[])
    await store.aclose()
    await store.aclose()  # again: nothing happens

    with pytest.raises(StoreError, match="closed"):
        await store.checkpoint("eu-1")
    assert "closed" in repr(store)


async def test_aclose_lets_the_calls_already_made_finish(store: Store) -> None:
    commits = [
        asyncio.create_task(
            store.commit(f"acct-{n}", checkpoint=NOON, delivered=delivered(voice_log(f"m-{n}")))
        )
        for n in range(20)
    ]
    await asyncio.sleep(0)  # every task has started its commit

    await store.aclose()

    await asyncio.gather(*commits)  # none failed


# -- the archive in PostgreSQL -------------------------------------------------------------


def without_nul(log: VoiceLog) -> bool:
    """Whether no text of the log holds a NUL, which PostgreSQL text cannot store."""

    def texts(value: object) -> list[str]:
        if isinstance(value, str):
            return [value]
        if isinstance(value, dict):
            return [t for item in value.values() for t in texts(item)]
        return []

    return not any("\x00" in text for text in texts(attrs.asdict(log)))


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    logs=st.lists(voice_logs.filter(without_nul), max_size=8, unique_by=lambda log: log.message_id)
)
def test_any_voice_log_comes_back_from_postgres_equal(
    postgres_dsn: str, logs: list[VoiceLog]
) -> None:
    account = uuid.uuid4().hex

    async def round_trip() -> list[VoiceLog]:
        async with PostgresStore(postgres_dsn, archive=True, min_size=0) as store:
            await store.commit(account, checkpoint=NOON, delivered=delivered(*logs))
            return await store.archived(account)

    back = asyncio.run(round_trip())

    assert sorted(back, key=_by_id) == sorted(logs, key=_by_id)


def _by_id(log: VoiceLog) -> str:
    return log.message_id or ""


async def test_text_that_looks_like_quoting_comes_back_as_written(pg: PostgresStore) -> None:
    # Calls are bound on the client and JSON documents sent dollar-quoted ($d$...$d$).
    tricky = "it's $d$ $d1$ $$ \\ \\' \" -- ; SELECT 1/0; \u00e9\u4e2d\U0001f600"
    log = voice_log("m-$d$", text=tricky, to="$d2$")
    await pg.commit("eu-'1$d$", checkpoint=NOON, delivered=delivered(log))
    assert await pg.archived("eu-'1$d$") == [log]
    assert set(await pg.fingerprints("eu-'1$d$", ["m-$d$"])) == {"m-$d$"}


async def test_first_seen_and_updated_come_from_the_database_clock(postgres_dsn: str) -> None:
    async with PostgresStore(postgres_dsn, archive=True) as store:
        await store.commit("eu-1", checkpoint=NOON, delivered=delivered(voice_log("m-1")))
        await store.commit("eu-1", checkpoint=NOON, delivered=delivered(voice_log("m-1")))
    [(first, updated, database_now)] = await sql(
        postgres_dsn, "SELECT first_seen_at, updated_at, now() FROM voice_logs"
    )
    assert first < updated <= database_now


def documented_postgres_queries() -> dict[str, str]:
    """Each example query of docs/archive.md by title, in its PostgreSQL form where it has one."""
    text = (Path(__file__).resolve().parent.parent / "docs" / "archive.md").read_text()
    queries = {block.splitlines()[0]: block for block in documented_queries()}
    for block in re.findall(r"```postgresql\n(.*?)```", text, flags=re.DOTALL):
        queries[block.splitlines()[0].removesuffix(" (PostgreSQL)")] = block
    return queries


async def test_the_documented_queries_answer_the_same_on_postgres(postgres_dsn: str) -> None:
    async with PostgresStore(postgres_dsn, archive=True) as store:
        eu = [
            voice_log("eu-a", status=DELIVERED, duration=30, price=Price(Decimal("0.01"), "EUR")),
            voice_log("eu-b", status=DELIVERED, duration=10, price=Price(Decimal("0.02"), "EUR")),
            voice_log("eu-c", status=UNDELIVERABLE, error=ABSENT),
            voice_log("eu-d", sent_at=NOON - timedelta(hours=5)),
        ]
        us = [voice_log("us-a", status=DELIVERED, duration=5, price=Price(Decimal("0.5"), "USD"))]
        await store.commit("eu-1", checkpoint=NOON, delivered=delivered(*eu))
        await store.commit("us-1", checkpoint=NOON, delivered=delivered(*us))
    queries = documented_postgres_queries()
    assert len(queries) >= 8
    answers = {title: await sql(postgres_dsn, query) for title, query in queries.items()}

    assert answers["-- logs per account and status group"] == [
        ("eu-1", "DELIVERED", 2),
        ("eu-1", "PENDING", 1),
        ("eu-1", "UNDELIVERABLE", 1),
        ("us-1", "DELIVERED", 1),
    ]
    assert [row[0] for row in answers["-- one account, one day"]] == [
        "eu-a",
        "eu-b",
        "eu-c",
        "eu-d",
    ]
    assert [(a, c, float(cost)) for a, c, cost in answers["-- what each account spent"]] == [
        ("eu-1", "EUR", pytest.approx(0.5)),
        ("us-1", "USD", pytest.approx(2.5)),
    ]
    assert [(row[1], row[4]) for row in answers["-- permanent failures"]] == [
        ("eu-c", "EC_ABSENT_SUBSCRIBER")
    ]
    assert [row[1] for row in answers["-- still not final"]] == ["eu-d"]
    assert [(str(day), n, d) for day, n, d in answers["-- logs per day"]] == [("2026-11-26", 5, 3)]


# -- schema, pool and failures -------------------------------------------------------------


def test_importing_without_the_extra_names_it() -> None:
    code = (
        "import sys; sys.modules['psycopg'] = None\n"
        "try:\n    import infobip_voicelogs.postgres\n"
        "except ImportError as e:\n    print(e)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "pip install 'infobip-voicelogs[postgres]'" in done.stdout


async def test_many_stores_migrating_at_once_make_one_schema(postgres_dsn: str) -> None:
    stores = [PostgresStore(postgres_dsn, schema="fleet") for _ in range(8)]
    try:
        await asyncio.gather(
            *(s.commit(f"a{n}", checkpoint=NOON, delivered=[]) for n, s in enumerate(stores))
        )
    finally:
        await asyncio.gather(*(s.aclose() for s in stores))

    assert await sql(postgres_dsn, "SELECT version FROM fleet.voicelogs_schema") == [
        (SCHEMA_VERSION,)
    ]
    assert await sql(postgres_dsn, "SELECT count(*) FROM fleet.checkpoints") == [(8,)]
    assert await sql(postgres_dsn, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'") == [
        (0,)
    ]


async def test_a_role_without_create_rights_uses_a_schema_made_by_another(
    pg_cluster: PostgresCluster, postgres_dsn: str
) -> None:
    async with PostgresStore(postgres_dsn, schema="voicelogs") as owner:
        await owner.accounts()  # the owner's role creates the schema and its tables
    database = postgres_dsn.rsplit("/", 1)[1]
    role = f"app_{uuid.uuid4().hex[:8]}"
    pg_cluster.sql(f"CREATE ROLE {role} LOGIN")
    pg_cluster.sql(
        f"GRANT USAGE ON SCHEMA voicelogs TO {role}; "
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA voicelogs TO {role}",
        database=database,
    )
    app_dsn = postgres_dsn.replace("postgresql://postgres@", f"postgresql://{role}@")

    async with PostgresStore(app_dsn, schema="voicelogs", archive=True) as app:
        [lease] = (await app.lease("a", ["eu-1"], lease_ttl=30)).values()
        await app.commit_leased(lease, checkpoint=NOON, delivered=delivered(voice_log("m-1")))
        assert await app.archived() == [voice_log("m-1")]
    async with PostgresStore(app_dsn, schema="elsewhere") as cannot:
        with pytest.raises(StoreError, match="permission denied"):
            await cannot.accounts()


async def test_a_schema_of_a_newer_version_is_refused_clearly(postgres_dsn: str) -> None:
    async with PostgresStore(postgres_dsn) as store:
        await store.accounts()
    await sql(postgres_dsn, "UPDATE voicelogs_schema SET version = version + 1")

    async with PostgresStore(postgres_dsn) as newer:
        with pytest.raises(StoreError, match=f"schema version {SCHEMA_VERSION + 1}.*upgrade"):
            await newer.checkpoint("eu-1")


async def test_a_given_pool_is_used_without_prepared_statements_and_left_open(
    postgres_dsn: str,
) -> None:
    kwargs = {"autocommit": True, "prepare_threshold": 0}  # even a pool eager to prepare
    async with AsyncConnectionPool(postgres_dsn, min_size=1, max_size=1, kwargs=kwargs) as pool:
        async with PostgresStore(pool, archive=True) as store:
            for n in range(5):
                await store.commit(
                    "eu-1", checkpoint=NOON, delivered=delivered(voice_log(f"m-{n}"))
                )
                await store.fingerprints("eu-1", ["m-1"])
            await store.lease("me", ["eu-1"], lease_ttl=5)
        assert not pool.closed
        async with pool.connection() as connection:  # the one connection the store used
            cursor = await connection.execute(
                "SELECT count(*) FROM pg_prepared_statements", prepare=False
            )
            assert await cursor.fetchone() == (0,)
            # Timeouts were SET LOCAL: nothing lingers on the session for the next borrower.
            cursor = await connection.execute("SHOW statement_timeout", prepare=False)
            assert await cursor.fetchone() == ("0",)
            cursor = await connection.execute(
                "SHOW idle_in_transaction_session_timeout", prepare=False
            )
            assert await cursor.fetchone() == ("0",)


async def test_a_connection_killed_between_calls_is_replaced_on_use(postgres_dsn: str) -> None:
    async with PostgresStore(postgres_dsn, archive=True, max_size=1) as store:
        await store.commit("eu-1", checkpoint=NOON, delivered=delivered(voice_log("m-1")))
        for round_ in range(3):  # the pool lends without a check: the call itself recovers
            killed = await sql(
                postgres_dsn,
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = 'infobip-voicelogs' AND datname = current_database()",
            )
            assert killed == [(True,)]
            at = NOON + timedelta(minutes=round_)
            await store.commit("eu-1", checkpoint=at, delivered=delivered(voice_log("m-2")))
            assert await store.checkpoint("eu-1") == at
        assert [log.message_id for log in await store.archived()] == ["m-1", "m-2"]


async def test_a_given_pool_without_autocommit_still_commits_each_call(postgres_dsn: str) -> None:
    async with AsyncConnectionPool(postgres_dsn, min_size=1, max_size=1) as pool:
        async with PostgresStore(pool, archive=True) as store:
            [lease] = (await store.lease("me", ["eu-1"], lease_ttl=30)).values()
            await store.commit_leased(lease, checkpoint=NOON, delivered=delivered(voice_log("m-1")))
            assert await store.advance([(lease, NOON + timedelta(minutes=1))]) == set()
            stale = attrs.evolve(lease, fence=lease.fence + 1)
            with pytest.raises(LeaseLostError):
                await store.commit_leased(stale, checkpoint=NOON, delivered=[])
        async with pool.connection() as connection:  # every call ended its transaction
            assert connection.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    rows = await sql(postgres_dsn, "SELECT checkpoint FROM checkpoints")
    assert rows == [(NOON + timedelta(minutes=1),)]
    assert await sql(postgres_dsn, "SELECT message_id FROM voice_logs") == [("m-1",)]


class RoundTrips:
    """A TCP proxy in front of the server counting round trips: the client speaking again
    after the server answered."""

    def __init__(self, port: int) -> None:
        self.port, self.count = port, 0

    async def client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.port)
        answered = True

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter, up: bool) -> None:
            nonlocal answered
            while data := await source.read(65536):
                if up and answered:
                    self.count += 1
                answered = not up
                sink.write(data)
                await sink.drain()
            sink.close()

        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(
                pipe(reader, up_writer, True),
                pipe(up_reader, writer, False),
                return_exceptions=True,
            )


async def test_every_call_is_one_round_trip(pg_cluster: PostgresCluster, postgres_dsn: str) -> None:
    counter = RoundTrips(pg_cluster.port)
    server = await asyncio.start_server(counter.client, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    database = postgres_dsn.rsplit("/", 1)[1]
    dsn = f"postgresql://postgres@127.0.0.1:{port}/{database}?sslmode=disable"
    async with PostgresStore(dsn, archive=True, max_size=1) as store:
        [lease] = (await store.lease("me", ["eu-1"], lease_ttl=30)).values()  # connects, migrates
        logs = delivered(voice_log("m-1"), voice_log("m-2"))
        calls: list[Callable[[], Any]] = [
            lambda: store.lease("me", ["eu-1", "us-1"], lease_ttl=30),
            lambda: store.checkpoint("eu-1"),
            lambda: store.fingerprints("eu-1", ["m-1", "m-2"]),
            lambda: store.commit("eu-1", checkpoint=NOON, delivered=logs),
            lambda: store.commit_leased(lease, checkpoint=NOON, delivered=logs),
            lambda: store.advance([(lease, NOON + timedelta(minutes=1))]),
            lambda: store.release("me", ["us-1"]),
            lambda: store.accounts(),
        ]
        for call in calls:
            before = counter.count
            await call()
            assert counter.count - before == 1, call
    server.close()


async def test_errors_never_show_the_password(pg_cluster: PostgresCluster) -> None:
    pg_cluster.sql(f"DROP ROLE IF EXISTS {PASSWORD_ROLE}")
    pg_cluster.sql(f"CREATE ROLE {PASSWORD_ROLE} LOGIN PASSWORD 'right-one'")
    secret = "Wr0ng-s3cret-9f8e7d"
    dsn = f"postgresql://{PASSWORD_ROLE}:{secret}@127.0.0.1:{pg_cluster.port}/postgres"

    async with PostgresStore(dsn, pool_timeout=2.0) as store:
        with pytest.raises(StoreError) as caught:
            await store.checkpoint("eu-1")
        shown = [str(caught.value), repr(caught.value), repr(store), str(caught.value.__cause__)]
    assert "cannot read a checkpoint" in str(caught.value)
    assert "password authentication failed" in str(caught.value)  # why, not only "no connection"
    assert all(secret not in text for text in shown)


def test_a_malformed_connection_string_is_refused_without_repeating_it() -> None:
    with pytest.raises(StoreError, match="not a PostgreSQL connection string") as caught:
        PostgresStore("host=db password=s3cret junk")
    assert "s3cret" not in str(caught.value)


async def test_a_call_blocked_on_a_lock_ends_at_its_timeout_and_leaks_nothing(
    postgres_dsn: str,
) -> None:
    async with PostgresStore(postgres_dsn, timeout=1.0, max_size=1) as store:
        [lease] = (await store.lease("a", ["eu-1"], lease_ttl=60)).values()
        async with await psycopg.AsyncConnection.connect(postgres_dsn) as other:
            # Another client holds the lease row: the fenced commit must wait for it ...
            await other.execute("SELECT * FROM leases WHERE account = 'eu-1' FOR UPDATE")
            with pytest.raises(StoreError, match="statement timeout"):
                await store.commit_leased(lease, checkpoint=NOON, delivered=[])

            # ... and a cancelled call leaves the store's one connection usable.
            blocked = asyncio.create_task(store.commit_leased(lease, checkpoint=NOON, delivered=[]))
            await asyncio.sleep(0.2)
            blocked.cancel()
            with pytest.raises(asyncio.CancelledError):
                await blocked
            await other.rollback()

        await store.commit_leased(lease, checkpoint=NOON, delivered=[])
        assert await store.accounts() == {"eu-1": NOON}


async def test_an_unreachable_server_fails_each_call_with_a_store_error(
    pg_cluster: PostgresCluster,
) -> None:
    port = free_port()
    dsn = f"postgresql://postgres:pw-xyz@127.0.0.1:{port}/postgres"  # nobody listens
    async with PostgresStore(dsn, pool_timeout=1.0, connect_timeout=2) as store:
        for _ in range(2):
            with pytest.raises(StoreError, match=r"cannot lease accounts.*refused") as caught:
                await store.lease("me", ["eu-1"], lease_ttl=5)
            said = str(caught.value)
            assert "pw-xyz" not in said
            # That it could not connect, to where, and why, in one line and plain words.
            assert said.startswith(
                "cannot lease accounts: could not connect to PostgreSQL at"
                f" host=127.0.0.1 port={port} dbname=postgres user=postgres within 1 s: "
                "Connection refused"
            )
            assert "\n" not in said
            assert "couldn't get a connection" not in said


async def test_a_restart_fails_calls_while_down_and_loses_nothing(
    pg_cluster: PostgresCluster, postgres_dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="psycopg")
    async with PostgresStore(postgres_dsn, archive=True, pool_timeout=1.0, max_size=4) as store:
        # Several pooled connections, all broken by each restart below.
        await asyncio.gather(*(store.checkpoint(f"warm-{n}") for n in range(4)))
        await store.commit("eu-1", checkpoint=NOON, delivered=delivered(voice_log("m-1")))

        await asyncio.to_thread(pg_cluster.stop_server)
        try:
            with pytest.raises(StoreError, match="cannot commit a batch"):
                await store.commit("eu-1", checkpoint=NOON, delivered=delivered(voice_log("m-2")))
            with pytest.raises(StoreError):
                await store.checkpoint("eu-1")
        finally:
            await asyncio.to_thread(pg_cluster.start_server)

        # Back: the pool reconnects by itself (a bounded number of tries, never a restart).
        for attempt in range(20):
            try:
                await store.commit("eu-1", checkpoint=NOON, delivered=delivered(voice_log("m-2")))
                break
            except StoreError:
                assert attempt < 19
                await asyncio.sleep(0.5)
        await asyncio.to_thread(pg_cluster.restart)  # every pooled connection dropped at once
        for attempt in range(20):
            try:
                await store.commit("eu-1", checkpoint=NOON, delivered=delivered(voice_log("m-3")))
                break
            except StoreError:
                assert attempt < 19
                await asyncio.sleep(0.5)

        assert [log.message_id for log in await store.archived()] == ["m-1", "m-2", "m-3"]
        assert await store.checkpoint("eu-1") == NOON
    # The pool's noise: one line per outage (two restarts here), not one per connection.
    pool_lines = [r.getMessage() for r in caplog.records if r.name.startswith("psycopg")]
    assert not [line for line in pool_lines if "discarding broken connection" in line]
    assert len([line for line in pool_lines if "found broken" in line]) <= 2


@pytest.fixture
def pgbouncer(pg_cluster: PostgresCluster) -> Iterator[PgBouncer]:
    """A PgBouncer in transaction pooling mode in front of the session's cluster."""
    if not Path(PgBouncer.BINARY).exists():
        pytest.skip("pgbouncer is not installed (apt-get install pgbouncer)")
    bouncer = PgBouncer(pg_cluster)
    try:
        yield bouncer
    finally:
        bouncer.stop()


async def test_everything_works_through_a_transaction_pooling_pgbouncer(
    pgbouncer: PgBouncer, postgres_dsn: str
) -> None:
    dsn = pgbouncer.dsn(postgres_dsn.rsplit("/", 1)[1])
    # Two server connections behind many client ones: any session state, a session
    # advisory lock or a server-side prepared statement would surface on another client.
    stores = [PostgresStore(dsn, archive=True, max_size=4) for _ in range(3)]
    try:

        async def poller(n: int, store: PostgresStore) -> None:
            owner = f"p{n}"
            for round_ in range(6):
                leases = await store.lease(owner, ACCOUNTS, lease_ttl=30)
                for account, lease in leases.items():
                    logs = [voice_log(f"{account}/{round_}/{k}") for k in range(3)]
                    ids = [log.message_id or "" for log in logs]
                    assert await store.fingerprints(account, ids) == {}
                    await store.commit_leased(lease, checkpoint=NOON, delivered=delivered(*logs))
            await store.release(owner)

        await asyncio.gather(*(poller(n, store) for n, store in enumerate(stores)))
        archived = await stores[0].archived()
    finally:
        await asyncio.gather(*(store.aclose() for store in stores))

    ids = [log.message_id for log in archived]
    assert len(ids) == len(set(ids))  # no log written twice
    assert {message_id.split("/")[0] for message_id in ids if message_id} == set(ACCOUNTS)


# -- leases --------------------------------------------------------------------------------


@pytest.fixture
async def fleet(postgres_dsn: str) -> AsyncIterator[Callable[[], PostgresStore]]:
    """Makes stores on one database, each with its own pool: one per poller process."""
    made: list[PostgresStore] = []

    def make() -> PostgresStore:
        made.append(PostgresStore(postgres_dsn, archive=True, max_size=2))
        return made[-1]

    yield make
    await asyncio.gather(*(store.aclose() for store in made))


ACCOUNTS = [f"acct-{n:02d}" for n in range(30)]


async def test_a_lone_owner_claims_everything_and_renews_with_the_same_fence(
    fleet: Callable[[], PostgresStore],
) -> None:
    store = fleet()
    first = await store.lease("a", ACCOUNTS, lease_ttl=30)
    again = await store.lease("a", ACCOUNTS, lease_ttl=30)

    assert sorted(first) == ACCOUNTS
    assert all(lease == Lease(name, "a", 1, lease.expires_at) for name, lease in first.items())
    assert {name: lease.fence for name, lease in again.items()} == dict.fromkeys(ACCOUNTS, 1)
    assert all(again[name].expires_at > first[name].expires_at for name in ACCOUNTS)
    assert all(lease.expires_at.tzinfo is UTC for lease in again.values())


async def test_three_owners_split_thirty_accounts_and_a_fourth_gets_a_share(
    fleet: Callable[[], PostgresStore],
) -> None:
    owners = {name: fleet() for name in ("a", "b", "c")}
    held: dict[str, dict[str, Lease]] = {}
    for _ in range(3):  # claim periods: the first one in sheds after the others joined
        for name, store in owners.items():
            held[name] = await store.lease(name, ACCOUNTS, lease_ttl=30)
    assert {name: len(leases) for name, leases in held.items()} == {"a": 10, "b": 10, "c": 10}
    assert sorted(a for leases in held.values() for a in leases) == ACCOUNTS

    owners["d"] = fleet()
    for _ in range(3):
        for name, store in owners.items():
            held[name] = await store.lease(name, ACCOUNTS, lease_ttl=30)
    sizes = {name: len(leases) for name, leases in held.items()}
    assert all(size <= 8 for size in sizes.values())  # ceil(30 / 4)
    assert sizes["d"] >= 6
    assert sorted(a for leases in held.values() for a in leases) == ACCOUNTS


async def test_racing_owners_never_hold_one_account_twice(
    fleet: Callable[[], PostgresStore], postgres_dsn: str
) -> None:
    seen: dict[tuple[str, int], set[str]] = {}
    last_fence: dict[tuple[str, str], int] = {}

    async def owner(name: str) -> None:
        store = fleet()
        for round_ in range(12):
            leases = await store.lease(name, ACCOUNTS, lease_ttl=0.2 if round_ % 3 else 30)
            for account, lease in leases.items():
                seen.setdefault((account, lease.fence), set()).add(name)
                # What one owner observes of an account's fence never goes down.
                assert lease.fence >= last_fence.get((name, account), 0)
                last_fence[(name, account)] = lease.fence
            if round_ % 4 == 3:
                await store.release(name, list(leases)[:3])

    await asyncio.gather(*(owner(f"owner-{n}") for n in range(8)))

    assert all(len(holders) == 1 for holders in seen.values()), seen
    rows = await sql(postgres_dsn, "SELECT account, fence FROM leases")
    assert all(fence >= max(f for (a, f) in seen if a == account) for account, fence in rows)


async def test_an_expired_lease_passes_to_another_with_a_higher_fence(
    fleet: Callable[[], PostgresStore],
) -> None:
    a, b = fleet(), fleet()
    [old] = (await a.lease("a", ["eu-1"], lease_ttl=2.0)).values()
    assert await b.lease("b", ["eu-1"], lease_ttl=30) == {}  # held, and "a" counts as alive

    for _ in range(300):  # until the database's clock passes the lease: bounded
        taken = await b.lease("b", ["eu-1"], lease_ttl=30)
        if taken:
            break
        await asyncio.sleep(0.05)
    assert taken["eu-1"].fence == old.fence + 1
    assert taken["eu-1"].expires_at > old.expires_at

    with pytest.raises(LeaseLostError, match="eu-1"):
        await a.commit_leased(old, checkpoint=NOON, delivered=delivered(voice_log("m-1")))
    assert (
        await a.lease("a", ["eu-1"], lease_ttl=30) == {}
    )  # share: ceil(1 / 2) = 1, but b holds it


async def test_a_lapsed_lease_cannot_commit_even_if_nobody_took_it(
    fleet: Callable[[], PostgresStore], postgres_dsn: str
) -> None:
    store = fleet()
    [lease] = (await store.lease("a", ["eu-1"], lease_ttl=0.2)).values()
    for _ in range(100):
        [(lapsed,)] = await sql(postgres_dsn, "SELECT expires_at <= now() FROM leases")
        if lapsed:
            break
        await asyncio.sleep(0.05)

    with pytest.raises(LeaseLostError):
        await store.commit_leased(lease, checkpoint=NOON, delivered=delivered(voice_log("m-1")))
    assert await store.accounts() == {}


async def test_a_stale_holder_writes_nothing_after_its_lease_passed_on(
    fleet: Callable[[], PostgresStore],
) -> None:
    a, b = fleet(), fleet()
    [old] = (await a.lease("a", ["eu-1"], lease_ttl=30)).values()
    await a.commit_leased(old, checkpoint=NOON, delivered=delivered(voice_log("m-1")))
    await a.release("a", ["eu-1"])  # as if a paused past its lease and b took over
    [new] = (await b.lease("b", ["eu-1"], lease_ttl=30)).values()
    newer = voice_log("m-1", status=DELIVERED, duration=20)
    await b.commit_leased(
        new, checkpoint=NOON + timedelta(minutes=1), delivered=delivered(newer, voice_log("m-2"))
    )

    stale = [voice_log("m-1", status=UNDELIVERABLE), voice_log("m-2"), voice_log("m-3")]
    with pytest.raises(LeaseLostError, match="fence 1"):
        await a.commit_leased(
            old, checkpoint=NOON + timedelta(hours=1), delivered=delivered(*stale)
        )

    assert new.fence == old.fence + 1
    assert await a.checkpoint("eu-1") == NOON + timedelta(minutes=1)
    assert await a.fingerprints("eu-1", ["m-1", "m-2", "m-3"]) == {"m-1": "5:20", "m-2": "7:None"}
    assert await a.archived() == [newer, voice_log("m-2")]


async def test_released_leases_are_claimed_by_others_at_once(
    fleet: Callable[[], PostgresStore],
) -> None:
    a, b = fleet(), fleet()
    assert sorted(await a.lease("a", ["x", "y"], lease_ttl=30)) == ["x", "y"]
    assert await b.lease("b", ["x", "y"], lease_ttl=30) == {}  # share 1, nothing free

    await a.release("a", ["x"])
    assert sorted(await b.lease("b", ["x", "y"], lease_ttl=30)) == ["x"]

    await a.release("a")  # gone: b's share is both now
    assert sorted(await b.lease("b", ["x", "y"], lease_ttl=30)) == ["x", "y"]


async def test_an_owner_never_sheds_the_accounts_it_is_polling(
    fleet: Callable[[], PostgresStore],
) -> None:
    a, b = fleet(), fleet()
    four = ["w", "x", "y", "z"]
    await a.lease("a", four, lease_ttl=30)
    await b.lease("b", four, lease_ttl=30)

    assert sorted(await a.lease("a", four, lease_ttl=30, busy=four)) == four
    kept = await a.lease("a", four, lease_ttl=30, busy={"z"})
    assert len(kept) == 2
    assert "z" in kept
    assert len(await b.lease("b", four, lease_ttl=30)) == 2


async def test_leases_on_accounts_no_longer_listed_are_released(
    fleet: Callable[[], PostgresStore],
) -> None:
    a, b = fleet(), fleet()
    await a.lease("a", ["x", "y"], lease_ttl=30)
    assert sorted(await a.lease("a", ["x"], lease_ttl=30)) == ["x"]
    assert sorted(await b.lease("b", ["y"], lease_ttl=30)) == ["y"]


async def test_leases_and_fences_survive_a_restart_of_postgres(
    fleet: Callable[[], PostgresStore], pg_cluster: PostgresCluster
) -> None:
    store = fleet()
    before = await store.lease("a", ["x", "y"], lease_ttl=60)

    await asyncio.to_thread(pg_cluster.restart)
    for attempt in range(20):  # the pool reconnects: a bounded number of tries
        try:
            after = await store.lease("a", ["x", "y"], lease_ttl=60)
            break
        except StoreError:
            assert attempt < 19
            await asyncio.sleep(0.5)

    assert {a: lease.fence for a, lease in after.items()} == {"x": 1, "y": 1}
    await store.commit_leased(after["x"], checkpoint=NOON, delivered=[])
    await store.commit_leased(before["y"], checkpoint=NOON, delivered=[])  # same fence: valid
    assert await store.accounts() == {"x": NOON, "y": NOON}


CHILD = """
import asyncio, sys
from datetime import UTC, datetime
from infobip_voicelogs import Delivered, VoiceLog
from infobip_voicelogs.postgres import PostgresStore

async def main(dsn, accounts):
    async with PostgresStore(dsn, archive=True) as store:
        n = 0
        while True:  # a poller that commits as fast as it can, until it is killed
            leases = await store.lease("child", accounts, lease_ttl=1.0)
            print(max(lease.fence for lease in leases.values()), flush=True)
            for account, lease in leases.items():
                n += 1
                log = VoiceLog(message_id=f"child-{n}", sent_at=datetime.now(UTC))
                await store.commit_leased(
                    lease, checkpoint=datetime.now(UTC), delivered=[Delivered(log, "f")]
                )

asyncio.run(main(sys.argv[1], sys.argv[2:]))
"""


async def test_a_killed_holder_s_accounts_pass_to_another_process(
    fleet: Callable[[], PostgresStore], postgres_dsn: str
) -> None:
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CHILD, postgres_dsn, *ACCOUNTS, stdout=subprocess.PIPE
    )
    try:
        assert child.stdout is not None
        fence = int(await asyncio.wait_for(child.stdout.readline(), timeout=30))
        await asyncio.wait_for(child.stdout.readline(), timeout=30)  # mid-stream of commits
        child.kill()  # SIGKILL: no release, a transaction perhaps cut in the middle
    finally:
        if child.returncode is None:
            child.kill()
        await child.wait()

    store = fleet()
    held: dict[str, Lease] = {}
    for _ in range(100):  # bounded: the child's 1 s leases lapse by the database's clock
        held = await store.lease("survivor", ACCOUNTS, lease_ttl=30)
        if len(held) == len(ACCOUNTS):
            break
        await asyncio.sleep(0.1)
    assert sorted(held) == ACCOUNTS
    assert all(lease.fence > fence for lease in held.values())
    await store.commit_leased(held[ACCOUNTS[0]], checkpoint=NOON, delivered=[])


async def test_lease_arguments_are_checked(fleet: Callable[[], PostgresStore]) -> None:
    store = fleet()
    with pytest.raises(ValueError, match="ttl"):
        await store.lease("a", ["x"], lease_ttl=0)
    with pytest.raises(ValueError, match="owner"):
        await store.lease("", ["x"], lease_ttl=5)


def test_a_lease_is_plain_data() -> None:
    lease = Lease("eu-1", "host:1:abcd", 3, datetime(2026, 1, 1, tzinfo=UTC))
    assert lease == Lease("eu-1", "host:1:abcd", 3, datetime(2026, 1, 1, tzinfo=UTC))
    assert issubclass(LeaseLostError, StoreError)
    assert Delivered(voice_log("m-1"), "f").log.message_id == "m-1"


# -- advance: quiet cycles' checkpoints, batched and fenced ---------------------------------


async def test_advance_moves_held_checkpoints_forward_in_one_call(
    fleet: Callable[[], PostgresStore],
) -> None:
    store = fleet()
    leases = await store.lease("a", ACCOUNTS, lease_ttl=30)
    await store.commit_leased(leases["acct-00"], checkpoint=NOON, delivered=[])
    later = NOON + timedelta(minutes=1)

    refused = await store.advance(
        [(lease, later) for lease in leases.values()]
        + [(leases["acct-01"], NOON + timedelta(minutes=2))]  # twice: the latest wins
    )
    assert refused == set()
    expected = dict.fromkeys(ACCOUNTS, later) | {"acct-01": NOON + timedelta(minutes=2)}
    assert await store.accounts() == expected

    # Never back: an earlier time leaves the checkpoint where it is.
    assert await store.advance([(leases["acct-00"], NOON)]) == set()
    assert (await store.checkpoint("acct-00")) == later
    assert await store.advance([]) == set()
    with pytest.raises(ValueError, match="naive"):
        await store.advance([(leases["acct-00"], datetime(2026, 1, 1))])


async def test_advance_refuses_lost_leases_and_writes_nothing_for_them(
    fleet: Callable[[], PostgresStore], postgres_dsn: str
) -> None:
    a, b = fleet(), fleet()
    held = await a.lease("a", ["x", "y", "z"], lease_ttl=30)
    await a.release("a", ["x"])
    [taken] = (await b.lease("b", ["x"], lease_ttl=30)).values()  # x passed on, fence bumped
    await sql(
        postgres_dsn, "UPDATE leases SET expires_at = now() - interval '1 s' WHERE account = 'y'"
    )
    stale_fence = attrs.evolve(held["z"], fence=held["z"].fence - 1)
    later = NOON + timedelta(minutes=1)

    refused = await a.advance(
        [(held["x"], later), (held["y"], later), (stale_fence, later), (held["z"], later)]
    )
    assert refused == {"x", "y"}  # z moves by its true lease; its stale twin is dropped
    assert await a.accounts() == {"z": later}
    assert await b.advance([(taken, later)]) == set()
    assert await a.accounts() == {"x": later, "z": later}


async def test_a_fenced_out_advance_with_a_stale_fence_alone_is_refused(
    fleet: Callable[[], PostgresStore],
) -> None:
    store = fleet()
    [lease] = (await store.lease("a", ["x"], lease_ttl=30)).values()
    assert await store.advance([(attrs.evolve(lease, fence=lease.fence + 1), NOON)]) == {"x"}
    assert await store.accounts() == {}


async def test_a_fenced_commit_keeps_a_final_fingerprint_and_checks_every_write(
    fleet: Callable[[], PostgresStore], postgres_dsn: str
) -> None:
    store = fleet()
    [lease] = (await store.lease("a", ["x"], lease_ttl=30)).values()
    settled = voice_log("m-1", status=DELIVERED, duration=4)
    await store.commit_leased(lease, checkpoint=NOON, delivered=[Delivered(settled, FINAL)])
    await store.commit_leased(
        lease, checkpoint=NOON, delivered=[Delivered(voice_log("m-1"), NOT_FINAL)]
    )
    assert await store.fingerprints("x", ["m-1"]) == {"m-1": FINAL}
    assert await store.archived() == [settled]

    await store.release("a", ["x"])
    with pytest.raises(LeaseLostError):
        await store.commit_leased(
            lease, checkpoint=NOON + timedelta(hours=1), delivered=delivered(voice_log("m-2"))
        )
    assert await store.accounts() == {"x": NOON}
    assert await store.fingerprints("x", ["m-2"]) == {}
