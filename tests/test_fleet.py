"""A fleet of poller processes on one PostgreSQL: real OS processes, real signals.

Each test starts `tests/fleet/worker.py` processes polling the same accounts of one fake
provider (served over HTTP from this process) into one database, then reads what each
process reported and what the archive holds. Bounds are counts and generous waits: the
takeover times themselves are measured by `bench/fleet.py`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import fake_in_a_thread

from infobip_voicelogs._time import utc_now
from infobip_voicelogs.testing import FakeInfobip, FakeServer

pytestmark = pytest.mark.postgres

WORKER = Path(__file__).parent / "fleet" / "worker.py"
ROOT = Path(__file__).parents[1]
LEASE_TTL = 4.0
CLAIM_INTERVAL = 0.5
WAIT = 60.0  # the longest any condition below is waited for: a hang guard, not a bound


@pytest.fixture(scope="module")
def fake() -> FakeInfobip:
    fake = FakeInfobip(rate_limit_per_minute=1_000_000, seed=11)
    for n in range(30):
        fake.add_account(f"acct-{n:02d}").generate(
            20, within=timedelta(hours=1), settle_after=timedelta(0)
        )
    return fake


@pytest.fixture(scope="module")
def server(fake: FakeInfobip) -> Iterator[FakeServer]:
    """The fake served by uvicorn on 127.0.0.1 from a thread, as a real provider would be."""
    with fake_in_a_thread(fake) as server:
        yield server


class Fleet:
    """Worker processes and what they reported."""

    def __init__(self, tmp_path: Path, config: dict[str, Any]) -> None:
        self.tmp_path = tmp_path
        self.config_path = tmp_path / "fleet.json"
        self.config_path.write_text(json.dumps(config))
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, owner: str) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.processes[owner] = subprocess.Popen(
            [sys.executable, str(WORKER), str(self.config_path), owner, str(self.out(owner))],
            env=env,
            stderr=(self.tmp_path / f"{owner}.err").open("wb"),
        )

    def out(self, owner: str) -> Path:
        return self.tmp_path / f"{owner}.ndjson"

    def events(self, owner: str) -> list[dict[str, Any]]:
        path = self.out(owner)
        if not path.exists():
            return []
        lines = path.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.endswith("}")]

    def last(self, owner: str, key: str) -> Any:
        found = [event[key] for event in self.events(owner) if key in event]
        return found[-1] if found else None

    def held(self, owner: str) -> set[str]:
        return set(self.last(owner, "held") or ())

    def delivered(self) -> Counter[tuple[str, str]]:
        return Counter(
            (event["batch"], message_id)
            for owner in self.processes
            for event in self.events(owner)
            if "batch" in event
            for message_id in event["ids"]
        )

    def wait_for(self, what: str, condition: Callable[[], bool]) -> None:
        deadline = time.monotonic() + WAIT
        while not condition():
            for owner, process in self.processes.items():
                code = process.poll()
                if code is not None and code != -signal.SIGKILL and owner in self.alive:
                    err = (self.tmp_path / f"{owner}.err").read_text()
                    pytest.fail(
                        f"worker {owner} exited with {code} while waiting for {what}:\n{err}"
                    )
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.1)

    @property
    def alive(self) -> set[str]:
        return {owner for owner, p in self.processes.items() if p.poll() is None}

    def stop(self, owner: str) -> int:
        process = self.processes[owner]
        process.send_signal(signal.SIGTERM)
        return process.wait(WAIT)

    def close(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGCONT)
                process.kill()
            process.wait()


@pytest.fixture
def make_fleet(
    tmp_path: Path, server: FakeServer, fake: FakeInfobip, postgres_dsn: str
) -> Iterator[Callable[..., Fleet]]:
    fleets: list[Fleet] = []

    def make(accounts: int = 30, **overrides: Any) -> Fleet:
        config = {
            "dsn": postgres_dsn,
            "interval": 0.5,
            "lease_ttl": LEASE_TTL,
            "claim_interval": CLAIM_INTERVAL,
            "accounts": [
                {"name": name, "base_url": server.base_url, "key": fake.accounts[name].api_key}
                for name in sorted(fake.accounts)[:accounts]
            ],
            **overrides,
        }
        fleets.append(fleet := Fleet(tmp_path, config))
        return fleet

    yield make
    for fleet in fleets:
        fleet.close()


def truth(fake: FakeInfobip, accounts: int = 30) -> Counter[tuple[str, str]]:
    names = sorted(fake.accounts)[:accounts]
    return Counter(
        (name, log.message_id or "") for name in names for log in fake.accounts[name].logs
    )


def archive_rows(dsn: str) -> Counter[tuple[str, str]]:
    import psycopg

    with psycopg.connect(dsn) as connection:
        rows = connection.execute("SELECT account, message_id FROM voice_logs").fetchall()
    return Counter((account, message_id) for account, message_id in rows)


def disjoint(fleet: Fleet, owners: list[str]) -> bool:
    held = [fleet.held(owner) for owner in owners]
    return sum(len(h) for h in held) == len(set().union(*held))


def test_three_pollers_split_the_accounts_and_deliver_each_log_once(
    make_fleet: Callable[..., Fleet], fake: FakeInfobip, postgres_dsn: str
) -> None:
    fleet = make_fleet()
    owners = ["a", "b", "c"]
    for owner in owners:
        fleet.start(owner)
    fleet.wait_for("every account polled", lambda: set(fleet.delivered()) == set(truth(fake)))
    fleet.wait_for(
        "an even split", lambda: sorted(len(fleet.held(o)) for o in owners) == [10, 10, 10]
    )
    assert disjoint(fleet, owners)
    for owner in owners:
        assert fleet.stop(owner) == 0
    assert fleet.delivered() == truth(fake)  # every log once, none twice
    assert archive_rows(postgres_dsn) == truth(fake)


def test_a_killed_poller_s_accounts_are_taken_over(
    make_fleet: Callable[..., Fleet], fake: FakeInfobip, postgres_dsn: str
) -> None:
    fleet = make_fleet()
    for owner in ("a", "b", "c"):
        fleet.start(owner)
    fleet.wait_for("an even split", lambda: all(len(fleet.held(o)) == 10 for o in "abc"))
    orphans = fleet.held("c")
    cycles_before = {o: dict(fleet.last(o, "cycles")) for o in "ab"}
    fleet.processes["c"].kill()  # SIGKILL: no release, its leases must lapse

    def taken_over() -> bool:
        cycles = {o: fleet.last(o, "cycles") for o in "ab"}
        polled = {
            name for o in "ab" for name, n in cycles[o].items() if n > cycles_before[o].get(name, 0)
        }
        return orphans <= polled

    fleet.wait_for("the dead poller's accounts polled by the others", taken_over)
    fleet.wait_for(
        "the survivors split all 30",
        lambda: fleet.held("a") | fleet.held("b") == set(fake.accounts),
    )
    assert disjoint(fleet, ["a", "b"])
    assert fleet.stop("a") == fleet.stop("b") == 0
    assert archive_rows(postgres_dsn) == truth(fake)  # exactly once, whatever crashed


def test_a_paused_holder_s_commit_is_refused_after_takeover(
    make_fleet: Callable[..., Fleet], fake: FakeInfobip, postgres_dsn: str
) -> None:
    # One account, a slow handler: the holder is paused (SIGSTOP) inside its handler, past
    # its lease; the other process takes the account over and delivers the batch; when the
    # first wakes up (SIGCONT), its commit must be refused and write nothing.
    fleet = make_fleet(accounts=1, handler_delay=1.0)
    fleet.start("a")
    fleet.wait_for("a handler call in flight", lambda: fleet.last("a", "entered") is not None)
    fleet.processes["a"].send_signal(signal.SIGSTOP)
    fleet.start("b")
    fleet.wait_for("b delivering the batch", lambda: any("batch" in e for e in fleet.events("b")))
    fleet.processes["a"].send_signal(signal.SIGCONT)
    fleet.wait_for("a's refused commit", lambda: (fleet.last("a", "lost") or 0) >= 1)
    assert fleet.stop("a") == fleet.stop("b") == 0
    assert archive_rows(postgres_dsn) == truth(fake, 1)
    # The batch reached a handler twice (a's, then b's): at least once, as promised.
    assert set(fleet.delivered()) == set(truth(fake, 1))


def record_reports(dsn: str, account: str, reports: list[Any]) -> None:
    """What a receiver process does with a batch: record it in the store's inbox."""
    import asyncio

    from infobip_voicelogs.postgres import PostgresStore
    from infobip_voicelogs.reports import encode_inbox

    async def record() -> None:
        async with PostgresStore(dsn) as store:
            await store.record_reports(
                account, encode_inbox(reports), count=len(reports), received_at=utc_now()
            )

    asyncio.run(record())


def inbox_waiting(dsn: str) -> int:
    import psycopg

    with psycopg.connect(dsn) as connection:
        [(count,)] = connection.execute("SELECT count(*) FROM report_inbox").fetchall()
    return int(count)


def test_a_paused_holder_s_report_batch_is_handed_over_by_the_next_and_never_committed_twice(
    make_fleet: Callable[..., Fleet], fake: FakeInfobip, postgres_dsn: str
) -> None:
    # The holder is paused (SIGSTOP) inside its handler with a batch of reports from the
    # inbox, past its lease; the other process takes the account over and hands the batch
    # over; when the first wakes up, its commit (which would consume the entry) is refused.
    from infobip_voicelogs import Status
    from infobip_voicelogs.reports import VoiceReport

    fleet = make_fleet(accounts=1, handler_delay=1.0)
    name = sorted(fake.accounts)[0]
    fleet.start("a")
    fleet.wait_for("the logs delivered", lambda: set(fleet.delivered()) == set(truth(fake, 1)))
    delivered = Status(3, "DELIVERED", 5, "DELIVERED_TO_HANDSET", "Message delivered")
    reports = [VoiceReport(message_id=f"report-only-{n}", status=delivered) for n in range(7)]
    record_reports(postgres_dsn, name, reports)
    fleet.wait_for(
        "a handing the reports over",
        lambda: any(e.get("size") == len(reports) for e in fleet.events("a")),
    )
    fleet.processes["a"].send_signal(signal.SIGSTOP)
    fleet.start("b")
    ids = {str(r.message_id) for r in reports}
    fleet.wait_for(
        "b handing the reports over",
        lambda: any("batch" in e and set(e["ids"]) == ids for e in fleet.events("b")),
    )
    fleet.processes["a"].send_signal(signal.SIGCONT)
    fleet.wait_for("a's refused commit", lambda: (fleet.last("a", "lost") or 0) >= 1)
    assert inbox_waiting(postgres_dsn) == 0
    assert fleet.stop("a") == fleet.stop("b") == 0
    archived = archive_rows(postgres_dsn)
    assert all(archived[(name, message_id)] == 1 for message_id in ids)
    by_b = Counter(i for e in fleet.events("b") if "batch" in e for i in e["ids"] if i in ids)
    assert by_b == Counter(ids)  # b handed each over once; a's was the batch in flight


def test_a_joining_poller_takes_a_share_without_restarts(
    make_fleet: Callable[..., Fleet], fake: FakeInfobip
) -> None:
    fleet = make_fleet(accounts=20)
    fleet.start("a")
    fleet.start("b")
    fleet.wait_for("two halves", lambda: sorted(len(fleet.held(o)) for o in "ab") == [10, 10])
    fleet.start("c")
    fleet.wait_for("three shares", lambda: sorted(len(fleet.held(o)) for o in "abc") == [6, 7, 7])
    assert disjoint(fleet, ["a", "b", "c"])
    # A clean stop releases at once: the others take its accounts within a claim or two.
    assert fleet.stop("c") == 0
    fleet.wait_for("two halves again", lambda: sorted(len(fleet.held(o)) for o in "ab") == [10, 10])


def test_a_joining_poller_gets_its_share_of_accounts_that_never_idle(
    make_fleet: Callable[..., Fleet], fake: FakeInfobip, postgres_dsn: str
) -> None:
    # 12 accounts whose cycles run back to back (4 requests/s each, interval ~0): a claim
    # never finds one idle. Shedding drains instead: an account over its holder's share is
    # shed at the next claim unless its batch is in a handler, so the joiner's second claim
    # finds its share free. Nothing may be delivered twice meanwhile.
    period = 1.0
    fleet = make_fleet(accounts=12, interval=0.001, rate=4.0, burst=1, claim_interval=period)
    fleet.start("a")
    fleet.start("b")
    fleet.wait_for("two halves", lambda: sorted(len(fleet.held(o)) for o in "ab") == [6, 6])
    fleet.wait_for("every account polled", lambda: set(fleet.delivered()) == set(truth(fake, 12)))
    fleet.start("c")
    fleet.wait_for("c's first claim", lambda: fleet.last("c", "known") is True)
    first_claim = next(e["t"] for e in fleet.events("c") if e.get("known"))
    for name in sorted(fake.accounts)[:12]:  # news while the accounts change hands
        fake.accounts[name].generate(3, within=timedelta(seconds=30), settle_after=timedelta(0))
    fleet.wait_for("c holding its share", lambda: len(fleet.held("c")) >= 4)
    got_share = next(e["t"] for e in fleet.events("c") if len(e.get("held") or ()) >= 4)
    # Two claim periods, plus one for the 0.1 s reports and a loaded machine's scheduling.
    assert got_share - first_claim <= 3 * period
    fleet.wait_for("three shares", lambda: sorted(len(fleet.held(o)) for o in "abc") == [4, 4, 4])
    assert disjoint(fleet, ["a", "b", "c"])
    fleet.wait_for("the news delivered", lambda: set(fleet.delivered()) == set(truth(fake, 12)))
    for owner in "abc":
        assert fleet.stop(owner) == 0
    assert fleet.delivered() == truth(fake, 12)  # every log once, none twice
    assert archive_rows(postgres_dsn) == truth(fake, 12)


def test_the_fleet_rides_out_a_postgres_restart(
    make_fleet: Callable[..., Fleet], fake: FakeInfobip, pg_cluster: Any, postgres_dsn: str
) -> None:
    fleet = make_fleet(accounts=10)
    fleet.start("a")
    fleet.start("b")
    fleet.wait_for("every account polled", lambda: set(fleet.delivered()) == set(truth(fake, 10)))
    pg_cluster.restart()
    for name in sorted(fake.accounts)[:10]:  # news the fleet can only deliver once recovered
        fake.accounts[name].generate(3, within=timedelta(seconds=30), settle_after=timedelta(0))
    fleet.wait_for(
        "the news delivered after the restart",
        lambda: set(fleet.delivered()) == set(truth(fake, 10)),
    )
    assert fleet.alive == {"a", "b"}
    assert fleet.stop("a") == fleet.stop("b") == 0
    assert archive_rows(postgres_dsn) == truth(fake, 10)
