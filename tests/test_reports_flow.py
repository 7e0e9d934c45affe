"""One stream: delivery reports and polled logs through one store to one kind of handler.

Each test runs on `SqliteStore` and on `PostgresStore`: a receiver (`ReportsReceiver` with
`store=`) records each batch in the store's inbox, and a poller (`LogsPoller`) on the same
store delivers both the inbox and the logs to one handler, as an application serving both
would. What the handler sees is the contract: each state once, whichever source brought it
first, and a final state never followed by an older one.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import attrs
import httpx
import orjson
import psycopg
import pytest
from pg_server import PostgresCluster
from psycopg.rows import dict_row
from test_postgres import RoundTrips

from infobip_voicelogs import (
    Account,
    AccountResult,
    ErrorInfo,
    LogsPoller,
    Price,
    SqliteStore,
    Status,
    TokenBucket,
    VoiceLog,
    telemetry,
)
from infobip_voicelogs.postgres import SCHEMA_VERSION as PG_SCHEMA_VERSION
from infobip_voicelogs.postgres import PostgresStore
from infobip_voicelogs.reports import (
    NoAuth,
    ReportsReceiver,
    VoiceCall,
    VoiceReport,
    encode_reports,
)
from infobip_voicelogs.state import fingerprint
from infobip_voicelogs.store import SCHEMA_VERSION as SQLITE_SCHEMA_VERSION
from infobip_voicelogs.store import Delivered
from infobip_voicelogs.telemetry import _instruments
from infobip_voicelogs.testing import FakeClock, FakeInfobip, PushFaults
from infobip_voicelogs.testing.fake import IN_PROCESS_URL

Store = SqliteStore | PostgresStore
Item = VoiceLog | VoiceReport

PENDING = Status(1, "PENDING", 26, "PENDING_ACCEPTED", "Message accepted, pending")
DELIVERED = Status(3, "DELIVERED", 5, "DELIVERED_TO_HANDSET", "Message delivered")
NO_ERROR = ErrorInfo(0, "OK", 0, "NO_ERROR", "No Error", False)
PRICE = Price(Decimal("0.0100"), "EUR")


async def no_sleep(seconds: float) -> None:
    """Retries wait for nothing here: the tests count, they do not time."""


class Stream:
    """One handler for both sources, as the docs show it: it records every item it is given."""

    def __init__(self) -> None:
        self.items: list[tuple[str, str, str, str]] = []  # account, source, id, fingerprint
        self.fail_next = 0

    async def __call__(self, account: str, items: Sequence[Item]) -> None:
        if self.fail_next:
            self.fail_next -= 1
            raise RuntimeError("the application's database is down")
        self.items += [(account, i.source, i.message_id or "", fingerprint(i)) for i in items]

    def seen(self) -> list[tuple[str, str]]:
        """(source, message id) of each item handed over, in order."""
        return [(source, message_id) for _, source, message_id, _ in self.items]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def fake(clock: FakeClock) -> FakeInfobip:
    fake = FakeInfobip(clock=clock, rate_limit_per_minute=10_000, seed=5)
    fake.add_account("acme")
    fake.add_account("globex")
    return fake


@pytest.fixture(params=["sqlite", "postgres"])
async def store(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
) -> AsyncIterator[Store]:
    if request.param == "sqlite":
        opened: Store = SqliteStore(tmp_path / "voicelogs.db", archive=True, clock=clock.now)
    else:
        opened = PostgresStore(request.getfixturevalue("postgres_dsn"), archive=True)
    async with opened:
        yield opened


@pytest.fixture
def stream() -> Stream:
    return Stream()


@pytest.fixture
async def receiver(
    store: Store, stream: Stream, clock: FakeClock
) -> AsyncIterator[httpx.AsyncClient]:
    """A client POSTing to a receiver that records into `store` (the poller delivers)."""
    app = ReportsReceiver({"acme", "globex"}, store=store, auth=NoAuth(), clock=clock.now)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://receiver") as client:
        yield client


@pytest.fixture
async def poller_for(
    fake: FakeInfobip, store: Store, stream: Stream, clock: FakeClock
) -> AsyncIterator[Callable[..., LogsPoller]]:
    async with fake.in_process_client() as client:

        def make(**options: Any) -> LogsPoller:
            accounts = [
                Account(name, IN_PROCESS_URL, auth=a.api_key, throttle=TokenBucket(1e6, 1000))
                for name, a in fake.accounts.items()
            ]
            settings: dict[str, Any] = {
                "store": store,
                "handler": stream,
                "client": client,
                "clock": clock.now,
                "fetcher_options": {"sleep": no_sleep},
                **options,
            }
            return LogsPoller(accounts, **settings)

        yield make


Deliver = Callable[[], Awaitable[dict[str, AccountResult]]]


@pytest.fixture
def deliver(poller_for: Callable[..., LogsPoller]) -> Deliver:
    """One `run_once` of a poller on the store: the inbox's reports, then the logs."""

    async def run() -> dict[str, AccountResult]:
        async with poller_for() as poller:
            return await poller.run_once()

    return run


def log(message_id: str, fake: FakeInfobip, status: Status = DELIVERED) -> VoiceLog:
    """A log sent a minute ago, in `status` (priced and without error once delivered)."""
    final = status is DELIVERED
    return VoiceLog(
        bulk_id="bulk-1",
        message_id=message_id,
        to="41793026727",
        from_="385333444",
        text="Your code is 1234",
        sent_at=fake.clock.now() - timedelta(minutes=1),
        done_at=fake.clock.now() if final else None,
        duration=10 if final else None,
        mccmnc="22801",
        price=PRICE if final else None,
        status=status,
        error=NO_ERROR,
    )


def report_of(entry: VoiceLog, status: Status | None = None) -> VoiceReport:
    """The report of `entry`'s call, in the current shape: same state, the call's own fields."""
    assert entry.sent_at is not None
    return VoiceReport(
        bulk_id=entry.bulk_id,
        message_id=entry.message_id,
        from_=entry.from_,
        to=entry.to,
        sent_at=entry.sent_at,
        mcc_mnc=entry.mccmnc,
        callback_data="order 17",
        voice_call=VoiceCall(
            start_time=entry.sent_at + timedelta(seconds=1),
            end_time=entry.sent_at + timedelta(seconds=11),
            duration=10,
            charged_duration=12,
            answered_by="HUMAN",
        ),
        price=entry.price,
        status=status or entry.status,
        error=entry.error,
    )


async def post(client: httpx.AsyncClient, account: str, *reports: VoiceReport) -> int:
    body = encode_reports(reports, "json")
    response = await client.post(
        f"/{account}", content=body, headers={"content-type": "application/json"}
    )
    return response.status_code


RowOf = Callable[[str], Any]


@pytest.fixture
def row_of(request: pytest.FixtureRequest, store: Store) -> RowOf:
    """The archive's row of a message, by column (raw SQL: the columns beyond `VoiceLog`)."""
    query = "SELECT * FROM voice_logs WHERE message_id = "

    async def read(message_id: str) -> dict[str, Any]:
        if isinstance(store, SqliteStore):
            with contextlib.closing(sqlite3.connect(store.path)) as db:
                db.row_factory = sqlite3.Row
                return dict(db.execute(query + "?", (message_id,)).fetchone())
        dsn = request.getfixturevalue("postgres_dsn")
        async with await psycopg.AsyncConnection.connect(dsn) as db:
            cursor = db.cursor(row_factory=dict_row)
            await cursor.execute(query + "%s", (message_id,))
            found = await cursor.fetchone()
            assert found is not None
            return dict(found)

    return read


# -- the merge rules -----------------------------------------------------------------------


async def test_a_state_a_report_delivered_is_not_delivered_again_by_the_poll(
    fake: FakeInfobip,
    receiver: httpx.AsyncClient,
    poller_for: Callable[..., LogsPoller],
    stream: Stream,
) -> None:
    settled = log("m-1", fake)
    fake.accounts["acme"].add_logs([settled])

    assert await post(receiver, "acme", report_of(settled)) == 200
    async with poller_for() as poller:
        results = await poller.run_once()

    assert results["acme"].ok
    assert results["acme"].delivered == 0
    assert stream.seen() == [("report", "m-1")]


async def test_a_state_a_poll_delivered_is_not_delivered_again_by_a_late_report(
    fake: FakeInfobip,
    receiver: httpx.AsyncClient,
    poller_for: Callable[..., LogsPoller],
    deliver: Deliver,
    stream: Stream,
    row_of: RowOf,
) -> None:
    settled = log("m-1", fake)
    fake.accounts["acme"].add_logs([settled])
    async with poller_for() as poller:
        await poller.run_once()

    assert await post(receiver, "acme", report_of(settled)) == 200
    await deliver()
    assert stream.seen() == [("log", "m-1")]
    # Not handed over, but the report's own fields join the log's in the archive.
    row = await row_of("m-1")
    assert (row["text"], row["callback_data"]) == ("Your code is 1234", "order 17")
    assert row["charged_duration"] == 12


async def test_a_log_still_pending_after_its_report_said_delivered_is_not_delivered(
    fake: FakeInfobip,
    store: Store,
    receiver: httpx.AsyncClient,
    poller_for: Callable[..., LogsPoller],
    stream: Stream,
    row_of: RowOf,
) -> None:
    lagging = log("m-1", fake, status=PENDING)
    fake.accounts["acme"].add_logs([lagging])
    assert await post(receiver, "acme", report_of(log("m-1", fake))) == 200

    async with poller_for() as poller:
        stale = await poller.run_once()  # the logs lag behind: still PENDING
        fake.accounts["acme"].update("m-1", status=DELIVERED, price=PRICE)
        caught_up = await poller.run_once()  # now the same state as the report's

    assert stale["acme"].delivered == caught_up["acme"].delivered == 0
    assert stream.seen() == [("report", "m-1")]
    row = await row_of("m-1")
    assert (row["status_name"], row["source"]) == ("DELIVERED_TO_HANDSET", "report")


async def test_the_archive_keeps_what_each_source_brought(
    fake: FakeInfobip,
    store: Store,
    receiver: httpx.AsyncClient,
    poller_for: Callable[..., LogsPoller],
    stream: Stream,
    row_of: RowOf,
) -> None:
    pending = log("m-1", fake, status=PENDING)
    fake.accounts["acme"].add_logs([pending])
    async with poller_for() as poller:
        await poller.run_once()  # the log: its text, no call
        assert await post(receiver, "acme", report_of(log("m-1", fake))) == 200
        lagging = await poller.run_once()  # the log still PENDING: older than the report
        fake.accounts["acme"].update("m-1", status=DELIVERED, price=PRICE)
        caught_up = await poller.run_once()  # the report's state: the same

    assert lagging["acme"].delivered == caught_up["acme"].delivered == 0
    assert stream.seen() == [("log", "m-1"), ("report", "m-1")]
    row = await row_of("m-1")
    assert row["text"] == "Your code is 1234"  # the log's, which the report lacks
    assert row["status_name"] == "DELIVERED_TO_HANDSET"  # the report's, newer
    assert (row["source"], row["callback_data"], row["charged_duration"]) == (
        "report",
        "order 17",
        12,
    )
    assert row["answered_by"] == "HUMAN"
    assert row["call_started_at"] is not None
    assert str(row["price_per_second"]) == "0.0100"  # text in SQLite, numeric in PostgreSQL
    report = row["report"]
    report = report if isinstance(report, dict) else orjson.loads(report)  # jsonb / text
    assert report["callbackData"] == "order 17"
    assert report["voiceCall"]["chargedDuration"] == 12


async def test_a_redelivered_batch_hands_nothing_over_and_still_counts_as_activity(
    fake: FakeInfobip,
    clock: FakeClock,
    store: Store,
    receiver: httpx.AsyncClient,
    deliver: Deliver,
    stream: Stream,
) -> None:
    reports = [report_of(log(f"m-{n}", fake)) for n in range(3)]
    assert await post(receiver, "acme", *reports) == 200
    await deliver()
    first = await store.report_activity(["acme", "globex"])
    clock.advance(timedelta(seconds=30))
    assert await post(receiver, "acme", *reports) == 200  # the provider's retry
    await deliver()

    assert sorted(stream.seen()) == [("report", f"m-{n}") for n in range(3)]
    later = await store.report_activity(["acme", "globex"])
    assert set(first) == set(later) == {"acme"}
    assert later["acme"] - first["acme"] == timedelta(seconds=30)
    assert await store.inbox_accounts(["acme", "globex"]) == set()


async def test_a_batch_of_one_message_twice_keeps_its_final_state(
    fake: FakeInfobip, store: Store, receiver: httpx.AsyncClient, deliver: Deliver, stream: Stream
) -> None:
    settled = log("m-1", fake)
    # Reordered by the provider's retries: DELIVERED, then a late PENDING of the same call.
    assert await post(receiver, "acme", report_of(settled), report_of(settled, PENDING)) == 200
    await deliver()

    assert stream.items == [("acme", "report", "m-1", fingerprint(settled))]
    assert await store.fingerprints("acme", ["m-1"]) == {"m-1": fingerprint(settled)}


async def test_two_batches_of_one_message_never_hand_over_an_older_state_after_a_newer(
    fake: FakeInfobip, store: Store, receiver: httpx.AsyncClient, deliver: Deliver, stream: Stream
) -> None:
    settled = log("m-1", fake)
    # Two POSTs in flight at once: the final state, and a late PENDING of the same call.
    codes = await asyncio.gather(
        post(receiver, "acme", report_of(settled)),
        post(receiver, "acme", report_of(settled, PENDING)),
    )
    assert codes == [200, 200]
    await deliver()

    assert stream.items == [("acme", "report", "m-1", fingerprint(settled))]


async def test_a_receiver_answers_before_the_handler_runs_and_a_failing_handler_loses_nothing(
    fake: FakeInfobip,
    store: Store,
    receiver: httpx.AsyncClient,
    deliver: Deliver,
    stream: Stream,
) -> None:
    reports = [report_of(log(f"m-{n}", fake)) for n in range(2)]
    stream.fail_next = 1

    assert await post(receiver, "acme", *reports) == 200  # durable: recorded, not handled
    assert stream.items == []
    await deliver()  # the handler raises: nothing committed, the batch stays in the inbox
    assert await store.fingerprints("acme", ["m-0", "m-1"]) == {}
    assert await store.report_activity(["acme"]) == {}
    assert await store.inbox_accounts(["acme"]) == {"acme"}

    await deliver()
    assert await post(receiver, "acme", *reports) == 200  # the provider's retry: no news
    await deliver()
    assert sorted(stream.seen()) == [("report", "m-0"), ("report", "m-1")]
    assert await store.inbox_accounts(["acme"]) == set()


async def test_a_failing_store_answers_503(
    fake: FakeInfobip, store: Store, stream: Stream, clock: FakeClock
) -> None:
    app = ReportsReceiver({"acme"}, store=store, auth=NoAuth(), clock=clock.now)
    await store.aclose()  # every call of a closed store fails
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://r") as client:
        assert await post(client, "acme", report_of(log("m-1", fake))) == 503


def test_a_receiver_takes_deliver_or_a_store(store: Store, stream: Stream) -> None:
    with pytest.raises(TypeError, match="not both"):
        ReportsReceiver({"acme"}, store=store, deliver=stream, auth=NoAuth())
    with pytest.raises(TypeError, match="needs store="):
        ReportsReceiver({"acme"}, auth=NoAuth())
    with pytest.raises(TypeError, match="needs the store="):
        ReportsReceiver({"acme"}, handler=stream, deliver=stream, auth=NoAuth())
    with pytest.raises(TypeError, match="keeps no inbox"):
        ReportsReceiver({"acme"}, store=object(), auth=NoAuth())  # type: ignore[arg-type]


def test_delivered_keeps_its_old_name_and_says_its_source() -> None:
    entry = VoiceLog(message_id="m-1")
    record = Delivered(entry, "2p:00")
    assert record.log is record.item is entry
    assert record.source == "log"
    assert Delivered(VoiceReport(message_id="m-2"), "2p:00").source == "report"
    assert VoiceLog.source == "log"
    assert VoiceReport.source == "report"
    with pytest.raises(ValueError, match="report needs a message_id"):
        Delivered(VoiceReport(), "2p:00")


# -- reconciliation ------------------------------------------------------------------------


async def test_while_reports_flow_the_logs_are_polled_at_the_reconcile_interval(
    fake: FakeInfobip,
    clock: FakeClock,
    receiver: httpx.AsyncClient,
    poller_for: Callable[..., LogsPoller],
) -> None:
    assert await post(receiver, "acme", report_of(log("m-1", fake))) == 200
    async with poller_for(
        interval=0.01, reconcile=timedelta(hours=1), claim_interval=0.05
    ) as poller:
        task = asyncio.create_task(poller.run())
        async with asyncio.timeout(20):
            while poller.status()["globex"].cycles < 5:  # noqa: ASYNC110 (no event to wait on)
                await asyncio.sleep(0.01)
        poller.stop()
        await task
        status = poller.status()

    assert status["acme"].reports_flowing
    assert not status["globex"].reports_flowing
    assert status["acme"].cycles == 1  # due again in an hour: the reports bring the rest
    assert status["acme"].requests == 1
    assert status["globex"].requests >= 5


async def test_an_account_whose_reports_stop_goes_back_to_the_interval(
    fake: FakeInfobip,
    clock: FakeClock,
    receiver: httpx.AsyncClient,
    poller_for: Callable[..., LogsPoller],
) -> None:
    assert await post(receiver, "acme", report_of(log("m-1", fake))) == 200
    async with poller_for(interval=30, reconcile=600) as poller:
        assert poller.reconcile == 600.0
        await poller.run_once()
        flowing = poller.status()["acme"]
        loop_now = asyncio.get_running_loop().time()
        assert flowing.reports_flowing
        assert 500 < flowing.next_due - loop_now <= 600

        clock.advance(timedelta(minutes=11))  # no report for longer than `reconcile`
        await poller.run_once()
        stopped = poller.status()["acme"]
        assert not stopped.reports_flowing
        assert stopped.next_due - asyncio.get_running_loop().time() <= 30


async def test_final_states_a_reconciliation_finds_are_counted_as_lost_webhooks(
    fake: FakeInfobip,
    receiver: httpx.AsyncClient,
    poller_for: Callable[..., LogsPoller],
    stream: Stream,
) -> None:
    brought, lost, pending = log("m-1", fake), log("m-2", fake), log("m-3", fake, PENDING)
    # A final state a report brought, which the logs then correct (the price filled in).
    corrected = log("m-4", fake)
    fake.accounts["acme"].add_logs([brought, lost, pending, corrected])
    before = sum(_instruments._REPORTS_LOST.counts.values())
    unpriced = attrs.evolve(report_of(corrected), price=None)
    assert await post(receiver, "acme", report_of(brought), unpriced) == 200

    async with poller_for() as poller:
        results = await poller.run_once()
        status = poller.status()

    # m-2 (its report never came), m-3 (not final yet), m-4 (a correction, a change).
    assert (results["acme"].new, results["acme"].changed) == (2, 1)
    assert status["acme"].webhook_lost == 1  # only a first final state is a lost report
    assert status["acme"].reports_flowing
    assert status["globex"].webhook_lost == 0
    assert not status["globex"].reports_flowing
    assert sorted(stream.seen()[:2]) == [("report", "m-1"), ("report", "m-4")]
    assert sorted(stream.seen()[2:]) == [("log", "m-2"), ("log", "m-3"), ("log", "m-4")]
    if telemetry.ENABLED:
        assert sum(_instruments._REPORTS_LOST.counts.values()) - before == 1


async def test_outside_reconciliation_nothing_is_counted_as_lost(
    fake: FakeInfobip, poller_for: Callable[..., LogsPoller]
) -> None:
    fake.accounts["acme"].add_logs([log("m-1", fake)])
    async with poller_for() as poller:
        results = await poller.run_once()
        status = poller.status()["acme"]
    assert results["acme"].settled == 1
    assert status.webhook_lost == 0  # no reports flow: the logs are the only source
    assert not status.reports_flowing


async def test_a_store_without_reports_polls_every_interval(
    fake: FakeInfobip, store: Store, poller_for: Callable[..., LogsPoller]
) -> None:
    from infobip_voicelogs.store import CheckpointStore

    class Plain:  # a CheckpointStore of a user's own: no report_activity
        def __init__(self, inner: Store) -> None:
            self.checkpoint = inner.checkpoint
            self.fingerprints = inner.fingerprints
            self.commit = inner.commit
            self.prune = inner.prune
            self.aclose = inner.aclose

    plain = Plain(store)
    assert isinstance(plain, CheckpointStore)
    async with poller_for(store=plain, interval=30) as poller:
        await poller.run_once()
        status = poller.status()["acme"]
    assert not status.reports_flowing
    assert status.next_due - asyncio.get_running_loop().time() <= 30


# -- schema version 2: stores of version 1 migrate, their data intact ----------------------


def v1_row(message_id: str) -> tuple[Any, ...]:
    """A `voice_logs` row as version 1 wrote it (no report columns)."""
    return (
        "acme", message_id, "bulk-1", "41793026727", "385333444", "Your code is 1234",
        "2026-12-01T12:00:00.000Z", None, None, "22801", None, None, "PENDING", "PENDING",
        1, 26, "PENDING_ACCEPTED", None, None, None, None, None, None, None, None,
        "2026-12-01T12:00:01.000Z", "2026-12-01T12:00:01.000Z",
    )  # fmt: skip


async def test_a_version_1_sqlite_file_migrates_and_keeps_its_data(
    tmp_path: Path, fake: FakeInfobip
) -> None:
    from infobip_voicelogs.store import _schema

    path = tmp_path / "v1.db"
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as db:
        for statement in _schema._MIGRATIONS[0]:
            db.execute(statement)
        db.execute("PRAGMA user_version = 1")
        db.execute(f"INSERT INTO voice_logs VALUES ({', '.join('?' * 27)})", v1_row("m-1"))
        db.execute(
            "INSERT INTO fingerprints VALUES ('acme', 'm-1', ?, '2026-12-01T12:00:00.000Z', "
            "'2026-12-01T12:00:01.000Z')",
            ("2p:" + "0" * 32,),
        )
        db.execute("INSERT INTO checkpoints VALUES ('acme', '2026-12-01T12:00:00.000000Z', 'x')")

    async with SqliteStore(path, archive=True) as store:
        [kept] = await store.archived()
        assert (kept.message_id, kept.text) == ("m-1", "Your code is 1234")
        assert kept.status is not None
        assert kept.status.name == "PENDING_ACCEPTED"
        assert await store.fingerprints("acme", ["m-1"]) == {"m-1": "2p:" + "0" * 32}
        assert await store.checkpoint("acme") is not None
        settled = report_of(log("m-1", fake))
        await store.commit_reports(
            "acme", [Delivered(settled, fingerprint(settled))], received_at=fake.clock.now()
        )
        assert set(await store.report_activity(["acme"])) == {"acme"}
        [merged] = await store.archived()
        assert merged.text == "Your code is 1234"  # the log's text, kept under the report
        assert merged.status == DELIVERED

    with contextlib.closing(sqlite3.connect(path)) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (SQLITE_SCHEMA_VERSION,)
        assert db.execute("SELECT source, callback_data FROM voice_logs").fetchone() == (
            "report",
            "order 17",
        )


@pytest.mark.postgres
async def test_a_version_1_postgres_schema_migrates_and_keeps_its_data(
    postgres_dsn: str, fake: FakeInfobip
) -> None:
    from infobip_voicelogs.postgres import _schema

    async with await psycopg.AsyncConnection.connect(postgres_dsn, autocommit=True) as db:
        await db.execute(
            "CREATE TABLE public.voicelogs_schema (one boolean PRIMARY KEY DEFAULT true "
            "CHECK (one), version integer NOT NULL)"
        )
        for statement in _schema._MIGRATIONS[0]:
            await db.execute(statement.format(s='"public"'))
        await db.execute("INSERT INTO public.voicelogs_schema (version) VALUES (1)")
        await db.execute(
            f"INSERT INTO public.voice_logs VALUES ({', '.join(['%s'] * 27)})",
            v1_row("m-1"),
        )

    async with PostgresStore(postgres_dsn, archive=True) as store:
        [kept] = await store.archived()
        assert (kept.message_id, kept.text) == ("m-1", "Your code is 1234")
        assert kept.status is not None
        assert kept.status.name == "PENDING_ACCEPTED"
        settled = report_of(log("m-1", fake))
        await store.commit_reports(
            "acme", [Delivered(settled, fingerprint(settled))], received_at=fake.clock.now()
        )
        [merged] = await store.archived()
        assert (merged.text, merged.status) == ("Your code is 1234", DELIVERED)

    async with await psycopg.AsyncConnection.connect(postgres_dsn) as db:
        cursor = await db.execute("SELECT version FROM public.voicelogs_schema")
        assert await cursor.fetchone() == (PG_SCHEMA_VERSION,)
        cursor = await db.execute("SELECT source, report->>'callbackData' FROM voice_logs")
        assert await cursor.fetchone() == ("report", "order 17")


# -- the whole stream: lossy pushes, lagging logs, reconciliation --------------------------


async def test_lossy_reports_and_reconciling_logs_lose_nothing_and_repeat_nothing(
    fake: FakeInfobip,
    clock: FakeClock,
    store: Store,
    stream: Stream,
    poller_for: Callable[..., LogsPoller],
) -> None:
    acme = fake.accounts["acme"]
    acme.traffic(0.5, settle_after=timedelta(seconds=30))
    receiver = ReportsReceiver(
        {"acme", "globex"}, store=store, handler=stream, auth=NoAuth(), clock=clock.now
    )
    faults = PushFaults(drop=0.1, duplicate=0.05, reorder=0.05, log_lag=timedelta(seconds=20))
    pusher = acme.push_reports("http://receiver/acme", app=receiver, faults=faults)
    reconcile = timedelta(minutes=10)
    async with poller_for(reconcile=reconcile) as poller:
        for step in range(240):  # 20 minutes of the fake's time, a push step every 5 s
            if step % 120 == 0:
                await poller.run_once()  # the reconciliation's cadence
            clock.advance(timedelta(seconds=5))
            await pusher.step()
        acme.stop_traffic()
        clock.advance(timedelta(minutes=2))  # every call settled, every report due
        await pusher.step()
        await poller.run_once()
        status = poller.status()["acme"]

    truth = {log.message_id: fingerprint(log) for log in acme.logs}
    assert len(truth) > 400
    assert all(fp.startswith("2f:") for fp in truth.values())
    delivered = Counter((m, fp) for _, _, m, fp in stream.items)
    # Nothing lost: every call's final state reached the handler, from one source or the other.
    assert set(truth.items()) <= set(delivered)
    # Nothing repeated: no state twice, though reports were duplicated and reordered.
    assert max(delivered.values()) == 1
    # Nothing regressed: after a message's final state, nothing else of it.
    final_seen: set[str] = set()
    for _, _, message_id, fp in stream.items:
        assert message_id not in final_seen, f"{message_id} went on after its final state"
        if fp.startswith("2f:"):
            final_seen.add(message_id)
    # The logs found what the webhooks lost, and counted each.
    from_logs = {m for _, source, m, fp in stream.items if source == "log" and fp[:3] == "2f:"}
    assert pusher.stats.dropped > 0
    assert pusher.stats.dropped_ids <= from_logs
    assert status.reports_flowing
    assert status.webhook_lost == len(from_logs)
    assert status.cycles == 3


@pytest.mark.postgres
async def test_each_reports_call_of_postgres_store_is_one_round_trip(
    pg_cluster: PostgresCluster, postgres_dsn: str, fake: FakeInfobip
) -> None:
    counter = RoundTrips(pg_cluster.port)
    server = await asyncio.start_server(counter.client, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    database = postgres_dsn.rsplit("/", 1)[1]
    dsn = f"postgresql://postgres@127.0.0.1:{port}/{database}?sslmode=disable"
    reports = [report_of(log(f"m-{n}", fake)) for n in range(3)]
    batch = [Delivered(r, fingerprint(r)) for r in reports]
    async with PostgresStore(dsn, archive=True, max_size=1) as store:
        await store.accounts()  # connects and migrates
        calls: list[Callable[[], Any]] = [
            lambda: store.commit_reports("acme", batch[:2], received_at=fake.clock.now()),
            lambda: store.commit_reports(
                "acme", batch[2:], received_at=fake.clock.now(), known=batch[:2]
            ),
            lambda: store.commit_reports("acme", [], received_at=fake.clock.now(), received=3),
            lambda: store.report_activity(["acme", "globex"]),
        ]
        for call in calls:
            before = counter.count
            await call()
            assert counter.count - before == 1, call
        assert set(await store.report_activity(["acme", "globex"])) == {"acme"}
    server.close()


def test_health_judges_an_account_whose_reports_flow_by_the_reconcile_interval() -> None:
    from datetime import UTC, datetime

    from infobip_voicelogs.health import poller_health
    from infobip_voicelogs.poller import AccountStatus

    t0 = datetime(2026, 3, 1, 12, tzinfo=UTC)
    statuses = {
        "flowing": AccountStatus(cycles=1, last_polled=t0, reports_flowing=True),
        "polled": AccountStatus(cycles=1, last_polled=t0),
    }

    def judge(after: float) -> Any:
        now = t0 + timedelta(seconds=after)
        return poller_health(
            statuses, interval=60, reconcile=600, started=t0, now=now, loop_time=after
        )

    assert judge(180).ok
    assert list(judge(181).body["late"]) == ["polled"]  # three intervals
    assert list(judge(1801).body["late"]) == ["flowing", "polled"]  # three reconciles
