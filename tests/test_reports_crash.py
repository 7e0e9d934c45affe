"""A receiver as a real process (uvicorn, `tests/reports/app.py`) on SQLite and PostgreSQL:
killed inside its handler (after the batch was recorded and answered 200), and refusing
what it must refuse.

The fake provider's pusher POSTs to it over loopback HTTP; what the receiver's handler was
given is read back from the file it records to, and the archive from the store itself.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from pg_server import free_port

sys.path.insert(0, str(Path(__file__).parent / "reports"))

from app import state_of
from process import ReceiverProcess, read_record, receiver_process

from infobip_voicelogs import SqliteStore
from infobip_voicelogs.postgres import PostgresStore
from infobip_voicelogs.reports import encode_reports
from infobip_voicelogs.testing import FakeClock, FakeInfobip, PushBasic, PushFaults, report_of

Store = SqliteStore | PostgresStore

USER, PASSWORD = "ib-reports", "s3cret-of-the-test"


@pytest.fixture(params=["sqlite", "postgres"])
def store_spec(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """What `VOICELOGS_STORE` says: a SQLite file of the test's, or a fresh database."""
    if request.param == "sqlite":
        return f"sqlite:{tmp_path / 'voicelogs.db'}"
    return str(request.getfixturevalue("postgres_dsn"))


@pytest.fixture
async def store(store_spec: str) -> AsyncIterator[Store]:
    """The same store the receiver process writes, opened by the test to read it."""
    opened: Store
    if store_spec.startswith("sqlite:"):
        opened = SqliteStore(store_spec.removeprefix("sqlite:"), archive=True)
    else:
        opened = PostgresStore(store_spec, archive=True)
    async with opened:
        yield opened


def receiver_env(store_spec: str, tmp_path: Path, **more: str) -> dict[str, str]:
    return {
        "VOICELOGS_STORE": store_spec,
        "VOICELOGS_ACCOUNTS": "acme,globex",
        "VOICELOGS_USER": USER,
        "VOICELOGS_PASSWORD": PASSWORD,
        "VOICELOGS_RECORD": str(tmp_path / "record.ndjson"),
        **more,
    }


async def wait_for_file(path: Path, process: ReceiverProcess, seconds: float = 30.0) -> None:
    """Until ``path`` exists (the handler's signal), bounded; the process must stay up."""
    async with asyncio.timeout(seconds):
        while not path.exists():  # noqa: ASYNC240 (a stat, between sleeps)
            assert process.process.poll() is None, "the receiver exited"
            await asyncio.sleep(0.02)


async def test_a_receiver_killed_in_its_handler_hands_the_batch_over_again_after_a_restart(
    store_spec: str, store: Store, tmp_path: Path
) -> None:
    clock = FakeClock()
    fake = FakeInfobip(clock=clock, seed=11)
    account = fake.add_account("acme")
    account.traffic(1.0, settle_after=timedelta(seconds=20))
    port = free_port()
    blocked = tmp_path / "in-handler"
    record = tmp_path / "record.ndjson"
    first = ReceiverProcess(
        port,
        receiver_env(store_spec, tmp_path, VOICELOGS_BLOCK_FILE=str(blocked)),
        tmp_path / "1.log",
    )
    try:
        first.wait_ready()
        async with httpx.AsyncClient(timeout=30.0) as client:
            pusher = account.push_reports(
                f"{first.url}/acme",
                auth=PushBasic(USER, PASSWORD),
                faults=PushFaults(max_retries=3, retry_backoff=timedelta(seconds=5)),
                client=client,
            )
            clock.advance(timedelta(seconds=40))
            async with asyncio.timeout(30):
                sent = await pusher.step()  # answered once recorded, before any handler ran
            await wait_for_file(blocked, first)
            handed_over = read_record(record)
            assert handed_over, "the handler recorded the batch before blocking"
            first.kill()  # inside the handler: nothing of the batch was committed
            assert sent == pusher.stats.accepted == len(handed_over)
            assert pusher.stats.retried == 0
            ids = {line["message_id"] for line in handed_over}
            assert await store.fingerprints("acme", ids) == {}
            assert await store.inbox_accounts(["acme", "globex"]) == {"acme"}

            # Restarted: its holder delivers what the inbox kept, with no POST at all.
            with receiver_process(port, receiver_env(store_spec, tmp_path), tmp_path / "2.log"):
                async with asyncio.timeout(30):
                    while await store.inbox_accounts(["acme"]):  # noqa: ASYNC110 (another process delivers)
                        await asyncio.sleep(0.05)
    finally:
        first.kill()

    assert pusher.stats.given_up == 0
    again = read_record(record)[len(handed_over) :]
    # Handed over twice (the killed process's handler, then the restarted one's), committed once.
    assert again == handed_over
    archived = [log for log in await store.archived("acme") if log.message_id in ids]
    assert sorted(str(log.message_id) for log in archived) == sorted(ids)
    states = {line["message_id"]: line["state"] for line in handed_over}
    assert {str(log.message_id): state_of(log) for log in archived} == states
    assert set(await store.fingerprints("acme", ids)) == ids


async def test_wrong_credentials_an_oversized_and_a_malformed_body_deliver_nothing(
    store_spec: str, store: Store, tmp_path: Path
) -> None:
    clock = FakeClock()
    fake = FakeInfobip(clock=clock, seed=3)
    account = fake.add_account("acme")
    logs = account.generate(600, settle_after=timedelta(0))
    reports = [report_of(log) for log in logs]
    good = encode_reports(reports[:10], "json")
    big = encode_reports(reports, "json")
    limit = 64 * 1024
    assert len(good) < limit < len(big)
    env = receiver_env(store_spec, tmp_path, VOICELOGS_MAX_BODY=str(limit))
    json_type = {"content-type": "application/json"}

    with receiver_process(free_port(), env, tmp_path / "receiver.log") as receiver:
        async with httpx.AsyncClient(base_url=receiver.url, timeout=30.0) as client:
            right = httpx.BasicAuth(USER, PASSWORD)
            wrong = await client.post(
                "/acme", content=good, headers=json_type, auth=httpx.BasicAuth(USER, "guess")
            )
            unsigned = await client.post("/acme", content=good, headers=json_type)
            oversized = await client.post("/acme", content=big, headers=json_type, auth=right)
            malformed = await client.post(
                "/acme", content=good[:-40], headers=json_type, auth=right
            )
            # The same process takes a good batch for another account: the refusals above
            # were refusals, not a receiver that delivers nothing at all.
            accepted = await client.post("/globex", content=good, headers=json_type, auth=right)
            async with asyncio.timeout(30):  # recorded, answered: then handed over
                while await store.inbox_accounts(["acme", "globex"]):  # noqa: ASYNC110 (another process delivers)
                    await asyncio.sleep(0.05)

    assert (wrong.status_code, unsigned.status_code) == (401, 401)
    assert oversized.status_code == 413
    assert malformed.status_code == 400
    assert accepted.status_code == 200
    for answer in (wrong, unsigned, oversized, malformed):
        assert PASSWORD not in answer.text
    record = read_record(tmp_path / "record.ndjson")
    assert {line["account"] for line in record} == {"globex"}
    assert len(record) == 10
    ids = [str(log.message_id) for log in logs]
    assert await store.fingerprints("acme", ids) == {}
    assert await store.archived("acme") == []
    assert set(await store.report_activity(["acme", "globex"])) == {"globex"}
    assert PASSWORD not in (tmp_path / "receiver.log").read_text()
