"""Thirty minutes of the provider's time, both channels at once, against the ground truth.

The fake provider (on a fake clock) places calls on two accounts and pushes each call's
report, at once, to two receivers that run as real uvicorn processes (`tests/reports/app.py`)
on a real PostgreSQL, losing 10% of the reports, doubling 5%, holding 5% back so that
later ones overtake them, its logs lagging 30 s behind its reports. The receivers only
record; two `LogsPoller`s on the same database share the accounts out, deliver the
recorded reports and reconcile the logs every 10 minutes of the fake's time, and every
state a handler is given is one line of the record file. Compared with the fake's own
logs at the end: no call's final state is missing, none is followed by another state,
and none is repeated. Then the same without a poller: two receivers given a handler.
"""

from __future__ import annotations

import asyncio
import sys
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from pg_server import free_port

sys.path.insert(0, str(Path(__file__).parent / "reports"))

from app import Item, record_line, state_of
from process import ReceiverProcess, read_record, receiver_process

from infobip_voicelogs import Account, LogsPoller, TokenBucket
from infobip_voicelogs.postgres import PostgresStore
from infobip_voicelogs.state import is_final
from infobip_voicelogs.testing import (
    FakeClock,
    FakeInfobip,
    PushBasic,
    PushFaults,
    ReportPusher,
)
from infobip_voicelogs.testing.fake import IN_PROCESS_URL

ACCOUNTS = ("acme", "globex")
USER, PASSWORD = "ib-reports", "soak-secret"
RUN = timedelta(minutes=30)
STEP = timedelta(seconds=20)  # the pusher's step: reports settle and go between two
RECONCILE = timedelta(minutes=10)
FAULTS = PushFaults(
    drop=0.10,
    duplicate=0.05,
    reorder=0.05,
    log_lag=timedelta(seconds=30),
    max_retries=3,
    retry_backoff=timedelta(seconds=5),
)


def receiver_env(dsn: str, record: Path, **more: str) -> dict[str, str]:
    """A receiver process's settings: the store, the accounts, Basic auth, the record."""
    return {
        "VOICELOGS_STORE": dsn,
        "VOICELOGS_ACCOUNTS": ",".join(ACCOUNTS),
        "VOICELOGS_USER": USER,
        "VOICELOGS_PASSWORD": PASSWORD,
        "VOICELOGS_RECORD": str(record),
        **more,
    }


def pushing_to(
    fake: FakeInfobip, workers: Sequence[ReceiverProcess], client: httpx.AsyncClient
) -> list[ReportPusher]:
    """A pusher per account and worker: every batch goes to each worker, with the faults."""
    return [
        fake.accounts[name].push_reports(
            f"{worker.url}/{name}", auth=PushBasic(USER, PASSWORD), faults=FAULTS, client=client
        )
        for name in ACCOUNTS
        for worker in workers
    ]


async def no_sleep(seconds: float) -> None:
    """The poller's retries wait for nothing: the fake's clock is the only time here."""


class Appender:
    """The poller's handler: each state to the record file the receiver writes too."""

    def __init__(self, path: Path) -> None:
        self.path = path

    async def __call__(self, account: str, items: Sequence[Item]) -> None:
        with self.path.open("ab") as record:
            record.write(b"".join(record_line(account, item) for item in items))


@pytest.fixture
async def store(postgres_dsn: str) -> AsyncIterator[PostgresStore]:
    async with PostgresStore(postgres_dsn) as opened:
        yield opened


async def test_thirty_minutes_of_lossy_reports_and_lagging_logs_lose_and_regress_nothing(
    postgres_dsn: str, store: PostgresStore, tmp_path: Path
) -> None:
    clock = FakeClock()
    clock_file = tmp_path / "now"
    clock_file.write_text(clock.now().isoformat())
    fake = FakeInfobip(clock=clock, rate_limit_per_minute=100_000, seed=19)
    for name in ACCOUNTS:
        fake.add_account(name).traffic(0.5, settle_after=timedelta(seconds=40))
    record = tmp_path / "record.ndjson"
    env = receiver_env(
        postgres_dsn,
        record,
        VOICELOGS_CLOCK_FILE=str(clock_file),
        VOICELOGS_NO_HANDLER="1",  # the pollers hold the accounts and deliver
    )
    accounts = [
        Account(
            name, IN_PROCESS_URL, auth=fake.accounts[name].api_key, throttle=TokenBucket(1e6, 1000)
        )
        for name in ACCOUNTS
    ]

    def poller(owner: str) -> LogsPoller:
        return LogsPoller(
            accounts,
            store=store,
            handler=Appender(record),
            client=to_fake,
            clock=clock.now,
            reconcile=RECONCILE,
            owner=owner,
            fetcher_options={"sleep": no_sleep},
        )

    with (
        receiver_process(free_port(), env, tmp_path / "receiver-1.log") as first,
        receiver_process(free_port(), env, tmp_path / "receiver-2.log") as second,
    ):
        async with (
            httpx.AsyncClient(timeout=30.0) as to_receiver,
            fake.in_process_client() as to_fake,
            poller("poller-1") as one,
            poller("poller-2") as other,
        ):
            pollers = (one, other)
            # Every batch to both receivers at once: the provider's retries, two workers.
            pushers = pushing_to(fake, (first, second), to_receiver)

            async def tick() -> None:
                clock.advance(STEP)
                clock_file.write_text(clock.now().isoformat())
                await asyncio.gather(*(pusher.step() for pusher in pushers))

            async def reconcile() -> None:
                for each in pollers:  # the accounts are shared out between the two
                    await each.run_once()

            elapsed = timedelta(0)
            while elapsed < RUN:
                if elapsed % RECONCILE == timedelta(0):
                    await reconcile()
                await tick()
                elapsed += STEP
            for name in ACCOUNTS:
                fake.accounts[name].stop_traffic()
            # The last calls settle, their logs catch up, the last retries go or give up.
            while elapsed < RUN + timedelta(minutes=2):
                await tick()
                elapsed += STEP
            assert all(pusher.pending == 0 for pusher in pushers)
            await reconcile()  # the last reconciliation
            statuses = [each.status() for each in pollers]

    lines = read_record(record)
    verdict = check(fake, lines)
    stats = [pusher.stats for pusher in pushers]
    # Not a quiet run: every fault happened, and both sources brought final states.
    assert sum(s.dropped for s in stats) > 100
    assert sum(s.duplicated for s in stats) > 20
    assert sum(s.reordered for s in stats) > 20
    assert verdict["finals"] > 1500
    assert verdict["final by report"] > 0.8 * verdict["finals"]
    assert verdict["final by log"] > 0  # what both receivers' copies lost
    assert all(any(st[name].reports_flowing for st in statuses) for name in ACCOUNTS)
    assert sum(st[name].webhook_lost for st in statuses for name in ACCOUNTS) > 0
    # The contract.
    assert verdict["lost"] == 0
    assert verdict["regressions"] == 0
    assert verdict["duplicates"] == 0


async def test_with_logs_lagging_longer_than_a_call_takes_every_call_s_report_goes() -> None:
    """A call placed and settled between two steps, its report due `log_lag` before it
    settles, so before the step that first sees the call: it still goes (late), once."""
    clock = FakeClock()
    account = FakeInfobip(clock=clock, seed=7).add_account("acme")
    faults = PushFaults(log_lag=timedelta(seconds=30))
    pusher = account.push_reports("http://receiver/acme", app=accept_all, faults=faults)
    # Calls from after the pusher was made (it reports those settling after that), each
    # settling 20 to 40 s after it is placed.
    start = clock.now() + timedelta(seconds=1)
    account.traffic(1.0, settle_after=timedelta(seconds=40), start=start)
    for _ in range(60):
        clock.advance(timedelta(seconds=10))
        if _ == 48:
            account.stop_traffic()
        await pusher.step()

    finals = {str(log.message_id) for log in account.logs if is_final(log)}
    assert len(finals) > 400
    assert pusher.stats.accepted_ids == finals
    assert pusher.stats.sent == pusher.stats.settled == len(finals)


async def accept_all(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """An ASGI receiver that takes every batch."""
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


def check(fake: FakeInfobip, lines: list[dict[str, str]]) -> dict[str, int]:
    """The record against the fake's ground truth (every call's final state)."""
    truth = {
        (name, str(log.message_id)): state_of(log)
        for name, account in fake.accounts.items()
        for log in account.logs
        if is_final(log)
    }
    pairs = Counter((line["account"], line["message_id"], line["state"]) for line in lines)
    final_seen: dict[tuple[str, str], str] = {}
    regressions = 0
    sources: Counter[str] = Counter()
    for line in lines:
        key = (line["account"], line["message_id"])
        if key in final_seen and line["state"] != final_seen[key]:
            regressions += 1  # a final state followed by another one
        if truth.get(key) == line["state"] and key not in final_seen:
            final_seen[key] = line["state"]
            sources[line["source"]] += 1
    return {
        "finals": len(truth),
        "lost": len(truth.keys() - final_seen.keys()),
        "regressions": regressions,
        "duplicates": sum(count - 1 for count in pairs.values()),
        "final by report": sources["report"],
        "final by log": sources["log"],
    }


async def test_two_receiver_workers_with_handlers_share_the_accounts_and_deliver_once(
    postgres_dsn: str, store: PostgresStore, tmp_path: Path
) -> None:
    """No poller: two receiver processes given a handler hold the accounts between them.
    Every batch is POSTed to both at once, with the provider's faults: each accepted
    state reaches one handler once, and none after a final one."""
    clock = FakeClock()
    fake = FakeInfobip(clock=clock, rate_limit_per_minute=100_000, seed=59)
    for name in ACCOUNTS:
        fake.add_account(name).traffic(0.5, settle_after=timedelta(seconds=40))
    record = tmp_path / "record.ndjson"  # both processes append, one write per batch
    env = receiver_env(postgres_dsn, record, VOICELOGS_LEASE_TTL="3")
    with (
        receiver_process(free_port(), env, tmp_path / "a.log") as first,
        receiver_process(free_port(), env, tmp_path / "b.log") as second,
    ):
        async with httpx.AsyncClient(timeout=30.0) as client:
            pushers = pushing_to(fake, (first, second), client)
            for step in range(45):  # 15 minutes of the fake's time
                clock.advance(STEP)
                if step == 30:
                    for name in ACCOUNTS:
                        fake.accounts[name].stop_traffic()
                # The same batch to both workers at once.
                await asyncio.gather(*(pusher.step() for pusher in pushers))
            async with asyncio.timeout(60):  # recorded and answered: then handed over
                while await store.inbox_accounts(ACCOUNTS):  # noqa: ASYNC110 (other processes)
                    await asyncio.sleep(0.05)
            async with await psycopg.AsyncConnection.connect(postgres_dsn) as db:
                cursor = await db.execute(
                    "SELECT DISTINCT owner FROM public.leases WHERE owner IS NOT NULL"
                )
                holders = await cursor.fetchall()
            assert len(holders) == 2, "each worker holds one of the two accounts"

    lines = read_record(record)
    accepted = {
        (name, message_id)
        for pusher, name in zip(pushers, [n for n in ACCOUNTS for _ in (1, 2)], strict=True)
        for message_id in pusher.stats.accepted_ids
    }
    assert len(accepted) > 300
    assert sum(pusher.stats.dropped for pusher in pushers) > 10
    verdict = check(fake, lines)
    assert verdict["regressions"] == 0
    assert verdict["duplicates"] == 0
    delivered = {(line["account"], line["message_id"]) for line in lines}
    assert accepted <= delivered
