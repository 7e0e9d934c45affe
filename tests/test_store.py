"""The checkpoint store, used the way the poller and an archive's reader use it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infobip_voicelogs import (
    CheckpointStore,
    Delivered,
    ErrorInfo,
    GeneralStatus,
    Lease,
    Price,
    SqliteStore,
    Status,
    StoreError,
    VoiceLog,
)
from infobip_voicelogs.store import SCHEMA_VERSION
from infobip_voicelogs.store.base import latest_checkpoints, moves_forward

DOCS = Path(__file__).resolve().parent.parent / "docs" / "archive.md"
NOON = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
CET = timezone(timedelta(hours=1))

PENDING = Status(1, "PENDING", 7, "PENDING_ENROUTE", "Message sent to next instance")
DELIVERED = Status(3, "DELIVERED", 5, "DELIVERED_TO_HANDSET", "Message delivered to handset")
UNDELIVERABLE = Status(2, "UNDELIVERABLE", 9, "UNDELIVERABLE_NOT_DELIVERED", "Not delivered")
NO_ERROR = ErrorInfo(0, "OK", 0, "NO_ERROR", "No Error", permanent=False)
ABSENT = ErrorInfo(1, "HANDSET_ERRORS", 27, "EC_ABSENT_SUBSCRIBER", "Absent", permanent=True)


def voice_log(message_id: str, *, sent_at: datetime | None = NOON, **changes: Any) -> VoiceLog:
    """A pending log as the provider first reports it; `changes` move it on."""
    log = VoiceLog(
        bulk_id="bulk-1",
        message_id=message_id,
        to="41793026727",
        from_="InfoSMS",
        text="Your code is 1234",
        sent_at=sent_at,
        mccmnc="22801",
        status=PENDING,
        error=NO_ERROR,
    )
    return attrs.evolve(log, **changes)


def delivered(*logs: VoiceLog) -> list[Delivered]:
    """Each log with a fingerprint of the fields the poller watches."""
    return [
        Delivered(log, fingerprint=f"{log.status.id if log.status else '-'}:{log.duration}")
        for log in logs
    ]


class Clock:
    """A clock the test moves by hand, for `first_seen_at` and `updated_at`."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    async with SqliteStore(tmp_path / "voicelogs.db") as store:
        yield store


@pytest.fixture
def clock() -> Clock:
    return Clock(NOON)


@pytest.fixture
async def archive(tmp_path: Path, clock: Clock) -> AsyncIterator[SqliteStore]:
    async with SqliteStore(tmp_path / "archive.db", archive=True, clock=clock) as store:
        yield store


@contextlib.contextmanager
def plain_sql(path: Path) -> Iterator[sqlite3.Connection]:
    """The file as any SQLite client sees it, beside the store."""
    connection = sqlite3.connect(path, isolation_level=None)
    connection.row_factory = sqlite3.Row
    try:
        yield connection
    finally:
        connection.close()


# Checkpoints...


async def test_a_sqlite_store_is_a_checkpoint_store(store: SqliteStore) -> None:
    assert isinstance(store, CheckpointStore)


async def test_an_account_has_no_checkpoint_before_its_first_commit(store: SqliteStore) -> None:
    assert await store.checkpoint("eu-1") is None
    assert await store.accounts() == {}


async def test_checkpoints_are_kept_per_account(store: SqliteStore) -> None:
    await store.commit("eu-1", checkpoint=NOON, delivered=[])
    await store.commit("us-1", checkpoint=NOON + timedelta(minutes=5), delivered=[])
    await store.commit("eu-1", checkpoint=NOON + timedelta(minutes=1), delivered=[])

    assert await store.checkpoint("eu-1") == NOON + timedelta(minutes=1)
    assert await store.checkpoint("us-1") == NOON + timedelta(minutes=5)
    assert await store.accounts() == {
        "eu-1": NOON + timedelta(minutes=1),
        "us-1": NOON + timedelta(minutes=5),
    }


async def test_a_checkpoint_comes_back_exactly_as_given_in_utc(store: SqliteStore) -> None:
    given_at = datetime(2026, 11, 26, 13, 0, 0, 123_456, tzinfo=CET)
    await store.commit("eu-1", checkpoint=given_at, delivered=[])

    checkpoint = await store.checkpoint("eu-1")
    assert checkpoint == given_at
    assert checkpoint is not None
    assert checkpoint.tzinfo is UTC


async def test_the_store_sets_the_checkpoint_it_is_given_even_backwards(
    store: SqliteStore,
) -> None:
    await store.commit("eu-1", checkpoint=NOON, delivered=[])
    await store.commit("eu-1", checkpoint=NOON - timedelta(hours=1), delivered=[])
    assert await store.checkpoint("eu-1") == NOON - timedelta(hours=1)


async def test_a_batch_without_a_checkpoint_leaves_it_where_it_was(store: SqliteStore) -> None:
    await store.commit("eu-1", checkpoint=NOON, delivered=())
    await store.commit("eu-1", checkpoint=None, delivered=delivered(voice_log("m-1")))
    await store.commit("us-1", checkpoint=None, delivered=delivered(voice_log("m-2")))

    assert await store.checkpoint("eu-1") == NOON
    assert await store.checkpoint("us-1") is None
    assert set(await store.fingerprints("us-1", ["m-2"])) == {"m-2"}


async def test_naive_datetimes_are_refused_and_nothing_is_written(store: SqliteStore) -> None:
    with pytest.raises(ValueError, match="naive"):
        await store.commit("eu-1", checkpoint=datetime(2026, 11, 26), delivered=[])
    with pytest.raises(ValueError, match="naive"):
        await store.commit(
            "eu-1",
            checkpoint=NOON,
            delivered=delivered(voice_log("m-1", sent_at=datetime(2026, 1, 1))),
        )
    with pytest.raises(ValueError, match="naive"):
        await store.prune(before=datetime(2026, 11, 26))
    assert await store.accounts() == {}


# Fingerprints...


async def test_fingerprints_answers_for_known_messages_only(store: SqliteStore) -> None:
    await store.commit(
        "eu-1", checkpoint=NOON, delivered=delivered(voice_log("m-1"), voice_log("m-2"))
    )
    await store.commit("us-1", checkpoint=NOON, delivered=delivered(voice_log("m-3")))

    assert await store.fingerprints("eu-1", ["m-1", "m-2", "m-3", "unknown"]) == {
        "m-1": "7:None",
        "m-2": "7:None",
    }
    assert await store.fingerprints("us-1", {"m-1", "m-3"}) == {"m-3": "7:None"}
    assert await store.fingerprints("eu-1", []) == {}


async def test_a_later_commit_replaces_a_fingerprint(store: SqliteStore) -> None:
    await store.commit("eu-1", checkpoint=NOON, delivered=delivered(voice_log("m-1")))
    done = voice_log("m-1", status=DELIVERED, duration=12)
    await store.commit("eu-1", checkpoint=NOON, delivered=delivered(done))

    assert await store.fingerprints("eu-1", ["m-1"]) == {"m-1": "5:12"}


async def test_fingerprints_looks_up_thousands_of_ids_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_connect: Callable[..., sqlite3.Connection] = sqlite3.connect

    def connect_like_old_sqlite(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        connection = real_connect(*args, **kwargs)
        connection.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 999)  # before SQLite 3.32
        return connection

    monkeypatch.setattr(sqlite3, "connect", connect_like_old_sqlite)
    store = SqliteStore(tmp_path / "voicelogs.db")
    logs = [voice_log(f"m-{n}", duration=n) for n in range(2500)]
    await store.commit("eu-1", checkpoint=NOON, delivered=delivered(*logs))

    asked = [f"m-{n}" for n in range(3000)]  # 500 of them were never delivered
    known = await store.fingerprints("eu-1", asked)

    assert known == {f"m-{n}": f"7:{n}" for n in range(2500)}
    await store.aclose()


# Commits are atomic...


async def test_a_commit_that_fails_midway_leaves_nothing_of_its_batch(archive: SqliteStore) -> None:
    await archive.commit("eu-1", checkpoint=NOON, delivered=delivered(voice_log("m-1")))
    batch = [
        voice_log("m-1", status=DELIVERED, duration=30),  # a change of a known log
        voice_log("m-2"),
        voice_log("m-3", duration=2**70),  # no SQLite integer holds it: fails in the archive write
    ]

    with pytest.raises(OverflowError):
        await archive.commit(
            "eu-1", checkpoint=NOON + timedelta(minutes=1), delivered=delivered(*batch)
        )

    assert await archive.checkpoint("eu-1") == NOON
    assert await archive.fingerprints("eu-1", ["m-1", "m-2", "m-3"]) == {"m-1": "7:None"}
    assert await archive.archived() == [voice_log("m-1")]


async def test_a_failed_commit_does_not_block_the_next_one(archive: SqliteStore) -> None:
    with pytest.raises(OverflowError):
        await archive.commit(
            "eu-1", checkpoint=NOON, delivered=delivered(voice_log("m-1", duration=2**64))
        )

    await archive.commit("eu-1", checkpoint=NOON, delivered=delivered(voice_log("m-1", duration=9)))

    assert await archive.fingerprints("eu-1", ["m-1"]) == {"m-1": "7:9"}


def test_a_delivered_log_needs_a_message_id() -> None:
    with pytest.raises(ValueError, match="message_id"):
        Delivered(VoiceLog(to="41793026727"), fingerprint="x")


# The archive...


async def test_without_archive_a_commit_keeps_no_logs(store: SqliteStore) -> None:
    await store.commit("eu-1", checkpoint=NOON, delivered=delivered(voice_log("m-1")))
    assert await store.archived() == []


async def test_the_archive_keeps_the_last_state_and_the_first_sighting(
    archive: SqliteStore, clock: Clock
) -> None:
    first = voice_log("m-1")
    await archive.commit("eu-1", checkpoint=NOON, delivered=delivered(first))
    clock.now = NOON + timedelta(minutes=10)
    final = voice_log(
        "m-1",
        status=DELIVERED,
        done_at=NOON + timedelta(seconds=40),
        duration=31,
        price=Price(Decimal("0.0100"), "EUR"),
    )
    await archive.commit("eu-1", checkpoint=NOON, delivered=delivered(final))

    assert await archive.archived() == [final]
    with plain_sql(Path(archive.path)) as db:
        row = db.execute("SELECT first_seen_at, updated_at FROM voice_logs").fetchone()
    assert (row["first_seen_at"], row["updated_at"]) == (
        "2026-11-26T12:00:00.000Z",
        "2026-11-26T12:10:00.000Z",
    )


async def test_archived_is_newest_first_and_filters_by_account(archive: SqliteStore) -> None:
    old = voice_log("m-old", sent_at=NOON - timedelta(hours=30))
    new = voice_log("m-new", sent_at=NOON)
    undated = voice_log("m-undated", sent_at=None)
    other = voice_log("m-other", sent_at=NOON - timedelta(hours=1))
    await archive.commit("eu-1", checkpoint=NOON, delivered=delivered(old, undated, new))
    await archive.commit("us-1", checkpoint=NOON, delivered=delivered(other))

    assert await archive.archived("eu-1") == [new, old, undated]
    assert await archive.archived() == [new, other, old, undated]


async def test_the_archive_keeps_prices_exact_and_times_in_utc(archive: SqliteStore) -> None:
    log = voice_log(
        "m-1",
        sent_at=datetime(2015, 2, 23, 17, 40, 31, 773_000, tzinfo=CET),
        price=Price(Decimal("0.000123456789012345678901234567890"), "EUR"),
    )
    await archive.commit("eu-1", checkpoint=NOON, delivered=delivered(log))

    [back] = await archive.archived()
    assert back == log
    assert back.price is not None
    assert str(back.price.per_second) == "0.000123456789012345678901234567890"
    assert back.sent_at is not None
    assert back.sent_at.tzinfo is UTC


def aware_times() -> st.SearchStrategy[datetime]:
    """Aware datetimes at millisecond precision, the provider's, in a few offsets."""
    zones = st.sampled_from([UTC, CET, timezone(-timedelta(hours=3, minutes=30))])
    return st.datetimes(
        min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=zones
    ).map(lambda d: d.replace(microsecond=d.microsecond // 1000 * 1000))


def optional(strategy: st.SearchStrategy[object]) -> st.SearchStrategy[object]:
    return st.none() | strategy


sqlite_ints = st.integers(min_value=-(2**63), max_value=2**63 - 1)
prices = st.builds(
    Price, per_second=st.decimals(allow_nan=False, allow_infinity=False), currency=st.text()
)
statuses = st.builds(
    Status,
    group_id=sqlite_ints,
    group_name=st.sampled_from([g.value for g in GeneralStatus]) | st.text(),
    id=sqlite_ints,
    name=st.text(),
    description=optional(st.text()),
    action=optional(st.text()),
)
errors = st.builds(
    ErrorInfo,
    group_id=sqlite_ints,
    group_name=st.text(),
    id=sqlite_ints,
    name=st.text(),
    description=optional(st.text()),
    permanent=optional(st.booleans()),
)
voice_logs = st.builds(
    VoiceLog,
    bulk_id=optional(st.text()),
    message_id=st.text(),
    to=optional(st.text()),
    from_=optional(st.text()),
    text=optional(st.text()),
    sent_at=optional(aware_times()),
    done_at=optional(aware_times()),
    duration=optional(sqlite_ints),
    mccmnc=optional(st.text()),
    price=optional(prices),
    status=optional(statuses),
    error=optional(errors),
)


@settings(max_examples=60, deadline=None)
@given(logs=st.lists(voice_logs, max_size=8, unique_by=lambda log: log.message_id))
def test_any_voice_log_comes_back_from_the_archive_equal(logs: list[VoiceLog]) -> None:
    async def round_trip() -> list[VoiceLog]:
        async with SqliteStore(":memory:", archive=True) as store:
            await store.commit("eu-1", checkpoint=NOON, delivered=delivered(*logs))
            return await store.archived()

    back = asyncio.run(round_trip())

    assert sorted(back, key=_by_id) == sorted(logs, key=_by_id)


def _by_id(log: VoiceLog) -> str:
    return log.message_id or ""


# Pruning...


async def test_prune_forgets_old_fingerprints_only(archive: SqliteStore, clock: Clock) -> None:
    old = voice_log("m-old", sent_at=NOON - timedelta(hours=50))
    recent = voice_log("m-recent", sent_at=NOON - timedelta(hours=1))
    undated = voice_log("m-undated", sent_at=None)
    clock.now = NOON - timedelta(hours=60)  # an undated log ages from when it was committed
    await archive.commit("eu-1", checkpoint=NOON, delivered=delivered(old, recent, undated))

    dropped = await archive.prune(before=NOON - timedelta(hours=49))

    assert dropped == 2
    ids = ["m-old", "m-recent", "m-undated"]
    assert set(await archive.fingerprints("eu-1", ids)) == {"m-recent"}
    assert len(await archive.archived()) == 3  # the archive keeps every log
    assert await archive.prune(before=NOON - timedelta(hours=49)) == 0


# Files, closing and versions...


async def test_a_reopened_file_has_the_same_data(tmp_path: Path) -> None:
    path = tmp_path / "voicelogs.db"
    log = voice_log("m-1", status=DELIVERED, duration=12)
    async with SqliteStore(path, archive=True) as store:
        await store.commit("eu-1", checkpoint=NOON, delivered=delivered(log))

    async with SqliteStore(str(path)) as reopened:
        assert await reopened.checkpoint("eu-1") == NOON
        assert await reopened.fingerprints("eu-1", ["m-1"]) == {"m-1": "5:12"}
        assert await reopened.archived() == [log]


async def test_a_memory_store_works_while_it_is_open() -> None:
    async with SqliteStore(":memory:", archive=True) as store:
        await store.commit("eu-1", checkpoint=NOON, delivered=delivered(voice_log("m-1")))
        assert await store.checkpoint("eu-1") == NOON
        assert await store.archived() == [voice_log("m-1")]


async def test_a_closed_store_says_so(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "voicelogs.db")
    await store.commit("eu-1", checkpoint=NOON, delivered=[])
    await store.aclose()
    await store.aclose()  # again: nothing happens

    with pytest.raises(StoreError, match="closed"):
        await store.checkpoint("eu-1")
    with pytest.raises(StoreError, match="closed"):
        await store.commit("eu-1", checkpoint=NOON, delivered=[])
    assert "closed" in repr(store)


async def test_a_store_never_used_closes_without_creating_a_file(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "never.db")
    await store.aclose()
    assert not (tmp_path / "never.db").exists()


async def test_aclose_lets_the_calls_already_made_finish(tmp_path: Path) -> None:
    path = tmp_path / "voicelogs.db"
    store = SqliteStore(path)
    commits = [
        asyncio.create_task(
            store.commit(f"acct-{n}", checkpoint=NOON, delivered=delivered(voice_log(f"m-{n}")))
        )
        for n in range(20)
    ]
    await asyncio.sleep(0)  # every task has handed its commit to the store's thread

    await store.aclose()

    await asyncio.gather(*commits)  # none failed
    async with SqliteStore(path) as reopened:
        assert len(await reopened.accounts()) == 20


async def test_a_file_of_a_newer_schema_is_refused_clearly(tmp_path: Path) -> None:
    path = tmp_path / "voicelogs.db"
    async with SqliteStore(path) as store:
        await store.commit("eu-1", checkpoint=NOON, delivered=[])
    with plain_sql(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")

    async with SqliteStore(path) as newer:
        with pytest.raises(StoreError, match=f"schema version {SCHEMA_VERSION + 1}.*upgrade"):
            await newer.checkpoint("eu-1")


async def test_a_file_that_is_not_a_database_is_refused_clearly(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("not a database, just some text that is long enough to have a header" * 20)

    async with SqliteStore(path) as store:
        with pytest.raises(StoreError, match=r"cannot open the store at .*notes\.txt"):
            await store.checkpoint("eu-1")


async def test_a_missing_directory_is_refused_clearly(tmp_path: Path) -> None:
    async with SqliteStore(tmp_path / "missing" / "voicelogs.db") as store:
        with pytest.raises(StoreError, match="cannot open"):
            await store.accounts()


async def test_the_file_is_in_wal_mode(store: SqliteStore) -> None:
    await store.accounts()
    with plain_sql(Path(store.path)) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


# Many accounts at once...


async def test_two_hundred_accounts_commit_at_once(tmp_path: Path) -> None:
    async with SqliteStore(tmp_path / "voicelogs.db", archive=True) as store:

        async def poll_cycle(n: int) -> None:
            account = f"acct-{n:03d}"
            logs = [voice_log(f"{account}/m-{k}", duration=k) for k in range(5)]
            known = await store.fingerprints(account, [log.message_id or "" for log in logs])
            assert known == {}
            await store.commit(
                account, checkpoint=NOON + timedelta(seconds=n), delivered=delivered(*logs)
            )

        await asyncio.gather(*(poll_cycle(n) for n in range(200)))

        checkpoints = await store.accounts()
        assert checkpoints == {f"acct-{n:03d}": NOON + timedelta(seconds=n) for n in range(200)}
        assert len(await store.archived()) == 1000
        assert await store.fingerprints("acct-123", ["acct-123/m-4", "acct-124/m-4"]) == {
            "acct-123/m-4": "7:4"
        }


async def test_the_store_works_from_one_thread_beside_the_loop(
    store: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: set[int] = set()
    real_connect: Callable[..., sqlite3.Connection] = sqlite3.connect

    def spy_connect(*args: object, **kwargs: object) -> sqlite3.Connection:
        threads.add(threading.get_ident())
        connection = real_connect(*args, **kwargs)
        connection.set_trace_callback(lambda _sql: threads.add(threading.get_ident()))
        return connection

    monkeypatch.setattr(sqlite3, "connect", spy_connect)
    await asyncio.gather(
        *(store.commit(f"a-{n}", checkpoint=NOON, delivered=[]) for n in range(20))
    )

    assert len(threads) == 1
    assert threading.get_ident() not in threads


# The documented SQL...


def documented_queries() -> list[str]:
    """Every ```sql block of docs/archive.md."""
    blocks: list[str] = re.findall(r"```sql\n(.*?)```", DOCS.read_text(), flags=re.DOTALL)
    return blocks


def documented_query(title: str) -> str:
    """The ```sql block of docs/archive.md whose first line is `-- <title>`."""
    [query] = [block for block in documented_queries() if block.startswith(f"-- {title}\n")]
    return query


async def documented_archive(tmp_path: Path) -> Path:
    """An archive like the docs' examples describe: two accounts, one day of traffic."""
    path = tmp_path / "voicelogs.db"
    async with SqliteStore(path, archive=True) as store:
        eu = [
            voice_log("eu-a", status=DELIVERED, duration=30, price=Price(Decimal("0.01"), "EUR")),
            voice_log("eu-b", status=DELIVERED, duration=10, price=Price(Decimal("0.02"), "EUR")),
            voice_log("eu-c", status=UNDELIVERABLE, error=ABSENT),
            voice_log("eu-d", sent_at=NOON - timedelta(hours=5)),
        ]
        us = [voice_log("us-a", status=DELIVERED, duration=5, price=Price(Decimal("0.5"), "USD"))]
        await store.commit("eu-1", checkpoint=NOON, delivered=delivered(*eu))
        await store.commit("us-1", checkpoint=NOON, delivered=delivered(*us))
    return path


async def test_every_documented_query_runs(tmp_path: Path) -> None:
    path = await documented_archive(tmp_path)
    blocks = documented_queries()
    assert len(blocks) >= 5
    with plain_sql(path) as db:
        for block in blocks:
            db.execute(block).fetchall()


async def test_documented_queries_answer_as_described(tmp_path: Path) -> None:
    path = await documented_archive(tmp_path)
    with plain_sql(path) as db:
        by_status = db.execute(documented_query("logs per account and status group")).fetchall()
        one_day = db.execute(documented_query("one account, one day")).fetchall()
        cost = db.execute(documented_query("what each account spent")).fetchall()
        failed = db.execute(documented_query("permanent failures")).fetchall()
        waiting = db.execute(documented_query("still not final")).fetchall()

    assert [tuple(row) for row in by_status] == [
        ("eu-1", "DELIVERED", 2),
        ("eu-1", "PENDING", 1),
        ("eu-1", "UNDELIVERABLE", 1),
        ("us-1", "DELIVERED", 1),
    ]
    assert [row["message_id"] for row in one_day] == ["eu-a", "eu-b", "eu-c", "eu-d"]
    assert [(row["account"], row["currency"], Decimal(row["cost"])) for row in cost] == [
        ("eu-1", "EUR", Decimal("0.5")),
        ("us-1", "USD", Decimal("2.5")),
    ]
    assert [(row["message_id"], row["error_name"]) for row in failed] == [
        ("eu-c", "EC_ABSENT_SUBSCRIBER")
    ]
    assert [row["message_id"] for row in waiting] == ["eu-d"]


async def test_the_documented_spend_query_sums_money_exactly(tmp_path: Path) -> None:
    # Prices whose float sum drifts: 0.0100 and 0.0133 per second over many calls.
    prices = [Decimal("0.0100"), Decimal("0.0133"), Decimal("0.0000001")]
    logs = [
        voice_log(f"m-{n}", duration=7 + n % 50, price=Price(prices[n % 3], "EUR"))
        for n in range(3000)
    ]
    path = tmp_path / "spend.db"
    async with SqliteStore(path, archive=True) as store:
        await store.commit("eu-1", checkpoint=NOON, delivered=delivered(*logs))
    exact = sum((log.duration or 0) * log.price.per_second for log in logs if log.price)
    with plain_sql(path) as db:
        [row] = db.execute(documented_query("what each account spent")).fetchall()
        floating = db.execute(
            "SELECT sum(duration * CAST(price_per_second AS REAL)) FROM voice_logs"
        ).fetchone()[0]

    assert Decimal(row["cost"]) == exact
    assert Decimal(str(floating)) != exact  # what the REAL cast would have answered


def test_event_loops_in_several_threads_share_one_worker(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "shared.db", archive=True)
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def thread(n: int) -> None:
        async def commit_some() -> None:
            start.wait()  # every thread makes its first call at once
            for i in range(10):
                log = VoiceLog(message_id=f"{n}-{i}", sent_at=datetime.now(UTC))
                await store.commit(
                    f"a{n}", checkpoint=datetime.now(UTC), delivered=[Delivered(log, "f")]
                )

        try:
            asyncio.run(commit_some())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=thread, args=(n,)) for n in range(8)]
    for each in threads:
        each.start()
    for each in threads:
        each.join()

    async def check() -> int:
        async with store:
            return len(await store.archived())

    assert errors == []
    assert asyncio.run(check()) == 80


# -- SqliteStore leases, for one process ----------------------------------------------


async def test_sqlite_store_leases_every_account_to_its_one_live_owner(tmp_path: Path) -> None:
    from infobip_voicelogs import LeaseLostError, LeaseStore, StoreError

    async with SqliteStore(tmp_path / "leases.db") as store:
        assert isinstance(store, LeaseStore)
        leases = await store.lease("me", ["a", "b"], lease_ttl=30.0, busy={"a"})
        assert sorted(leases) == ["a", "b"]
        assert {lease.fence for lease in leases.values()} == {0}
        assert all(lease.owner == "me" for lease in leases.values())
        with pytest.raises(StoreError, match="another poller"):
            await store.lease("other", ["a"], lease_ttl=30.0)
        await store.commit_leased(leases["a"], checkpoint=NOON, delivered=[])
        assert await store.checkpoint("a") == NOON
        await store.release("me")
        theirs = await store.lease("other", ["a"], lease_ttl=30.0)
        # The old owner's lease is refused, and nothing of its batch is written.
        with pytest.raises(LeaseLostError):
            await store.commit_leased(
                leases["a"], checkpoint=NOON + timedelta(hours=1), delivered=[]
            )
        assert await store.checkpoint("a") == NOON
        await store.commit_leased(theirs["a"], checkpoint=NOON + timedelta(hours=2), delivered=[])
        assert await store.checkpoint("a") == NOON + timedelta(hours=2)


async def test_a_second_store_on_one_file_cannot_poll_it_until_the_first_lets_go(
    tmp_path: Path,
) -> None:
    from infobip_voicelogs import StoreError

    path = tmp_path / "one.db"
    first, second = SqliteStore(path), SqliteStore(path)
    try:
        await first.lease("me", ["a"], lease_ttl=30.0)
        # Another store on the file (as another process's would be) is refused, and says who
        # holds it; it still reads and writes, only polling is one store's at a time.
        with pytest.raises(StoreError, match=rf"another poller \(pid {os.getpid()}\)") as error:
            await second.lease("you", ["a"], lease_ttl=30.0)
        assert "PostgresStore" in str(error.value)
        await second.commit("a", checkpoint=NOON, delivered=[])
        assert await first.checkpoint("a") == NOON
        # The same owner renewing, and a release of some accounts, keep the claim.
        await first.lease("me", ["a"], lease_ttl=30.0)
        await first.release("me", ["a"])
        with pytest.raises(StoreError, match="another poller"):
            await second.lease("you", ["a"], lease_ttl=30.0)
        await first.release("me")  # gone: the file is free at once
        assert (await second.lease("you", ["a"], lease_ttl=30.0))["a"].owner == "you"
        with pytest.raises(StoreError, match="another poller"):
            await first.lease("me", ["a"], lease_ttl=30.0)
        await second.aclose()  # closing lets go too
        await first.lease("me", ["a"], lease_ttl=30.0)
        with pytest.raises(StoreError, match="closed"):
            await second.lease("you", ["a"], lease_ttl=30.0)
    finally:
        await first.aclose()
        await second.aclose()
    # A store in memory has no file to share.
    async with SqliteStore(":memory:") as one, SqliteStore(":memory:") as other:
        await one.lease("me", ["a"], lease_ttl=30.0)
        await other.lease("you", ["a"], lease_ttl=30.0)


# -- round trips: final fingerprints kept, checkpoints advanced in one transaction ----------


async def test_a_final_fingerprint_and_its_archive_row_outlive_a_stale_page(
    archive: SqliteStore,
) -> None:
    settled, stale = voice_log("m-1", status=DELIVERED, duration=12), voice_log("m-1")
    final, pending, v1 = "2f:" + "a" * 16, "2p:" + "b" * 16, "c" * 24
    await archive.commit("eu-1", checkpoint=NOON, delivered=[Delivered(stale, v1)])
    await archive.commit("eu-1", checkpoint=NOON, delivered=[Delivered(settled, final)])
    for fingerprint in (pending, v1, "2F:" + "e" * 16):  # not final: case counts
        await archive.commit("eu-1", checkpoint=NOON, delivered=[Delivered(stale, fingerprint)])

    assert await archive.fingerprints("eu-1", ["m-1"]) == {"m-1": final}
    assert await archive.archived() == [settled]
    # In one batch too: the final state first, a stale one after it, the final one stays.
    await archive.commit(
        "eu-1",
        checkpoint=NOON,
        delivered=[Delivered(voice_log("m-2", status=DELIVERED), final), Delivered(stale, v1)],
    )
    assert await archive.fingerprints("eu-1", ["m-2"]) == {"m-2": final}


async def test_lease_ttl_is_the_one_name_and_ttl_still_works_with_a_warning(
    store: SqliteStore,
) -> None:
    with pytest.warns(DeprecationWarning, match="lease_ttl"):
        leases = await store.lease("me", ["eu-1"], ttl=30.0)
    assert leases["eu-1"].owner == "me"
    with pytest.raises(TypeError, match="lease_ttl"):
        await store.lease("me", ["eu-1"])


async def test_advance_moves_checkpoints_only_forward_in_one_call(store: SqliteStore) -> None:
    leases = await store.lease("me", ["eu-1", "us-1"], lease_ttl=60.0)

    def lease(account: str) -> Lease:
        return leases[account]

    await store.commit("eu-1", checkpoint=NOON, delivered=[])
    later = NOON + timedelta(seconds=30, microseconds=7)

    refused = await store.advance(
        [(lease("eu-1"), later), (lease("us-1"), NOON), (lease("us-1"), later)]
    )
    assert refused == set()
    assert await store.accounts() == {"eu-1": later, "us-1": later}

    assert await store.advance([(lease("eu-1"), NOON - timedelta(hours=1))]) == set()
    assert await store.checkpoint("eu-1") == later  # never back
    assert await store.advance([]) == set()
    with pytest.raises(ValueError, match="naive"):
        await store.advance([(lease("eu-1"), datetime(2026, 1, 1))])
    assert await store.checkpoint("eu-1") == later
    # A lease that is not the store's live owner's moves nothing.
    stranger = Lease("eu-1", "someone-else", 0, NOON + timedelta(minutes=1))
    assert await store.advance([(stranger, later + timedelta(hours=1))]) == {"eu-1"}
    await store.release("me")
    assert await store.advance([(lease("us-1"), later + timedelta(hours=1))]) == {"us-1"}
    assert await store.accounts() == {"eu-1": later, "us-1": later}


async def test_advance_takes_an_account_given_twice_to_its_latest_time_in_any_order(
    store: SqliteStore,
) -> None:
    leases = await store.lease("me", ["eu-1"], lease_ttl=60.0)
    later = NOON + timedelta(minutes=1)
    assert await store.advance([(leases["eu-1"], later), (leases["eu-1"], NOON)]) == set()
    assert await store.checkpoint("eu-1") == later
    # The lease given last with the latest time decides: a stranger's earlier entry is dropped.
    stranger = Lease("eu-1", "someone-else", 0, NOON + timedelta(minutes=1))
    even_later = later + timedelta(minutes=1)
    assert await store.advance([(stranger, later), (leases["eu-1"], even_later)]) == set()
    assert await store.checkpoint("eu-1") == even_later
    assert await store.advance([(leases["eu-1"], even_later), (stranger, even_later)]) == {"eu-1"}


def test_latest_checkpoints_keeps_each_accounts_latest_time_under_its_last_lease() -> None:
    first = Lease("eu-1", "a", 1, NOON)
    second = Lease("eu-1", "b", 2, NOON)
    other = Lease("us-1", "a", 1, NOON)
    later = NOON + timedelta(seconds=1)
    given = [(first, later), (other, NOON), (second, NOON), (second, later)]
    assert latest_checkpoints(given) == {"eu-1": (second, later), "us-1": (other, NOON)}
    assert latest_checkpoints(list(reversed(given)))["eu-1"] == (first, later)
    assert latest_checkpoints([]) == {}
    with pytest.raises(ValueError, match="naive; the store takes aware datetimes only"):
        latest_checkpoints([(first, NOON), (first, datetime(2026, 1, 1))])
    assert moves_forward(None, NOON)
    assert moves_forward(NOON, later)
    assert not moves_forward(later, NOON)
    assert not moves_forward(NOON, NOON)


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="no symbolic links here")
async def test_every_spelling_of_one_file_takes_one_poller_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A symbolic link, a path through `..` and a relative path all reach one lock."""
    from infobip_voicelogs import StoreError

    (tmp_path / "data").mkdir()
    real = tmp_path / "data" / "one.db"
    (tmp_path / "link.db").symlink_to(real)
    (tmp_path / "linked-dir").symlink_to(tmp_path / "data", target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    spellings = [
        tmp_path / "link.db",
        tmp_path / "data" / ".." / "data" / "one.db",
        "data/one.db",
        tmp_path / "linked-dir" / "one.db",
    ]
    first = SqliteStore(real)
    try:
        await first.lease("me", ["a"], lease_ttl=30.0)
        for spelling in spellings:
            async with SqliteStore(spelling) as other:
                with pytest.raises(StoreError, match="another poller"):
                    await other.lease("you", ["a"], lease_ttl=30.0)
        await first.release("me")
        # The claim taken through a link holds the real file too.
        async with SqliteStore(tmp_path / "link.db") as linked:
            await linked.lease("you", ["a"], lease_ttl=30.0)
            with pytest.raises(StoreError, match="another poller"):
                await first.lease("me", ["a"], lease_ttl=30.0)
    finally:
        await first.aclose()
