"""The poller's health: the pure judgement, and the HTTP server that serves it and /metrics."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from infobip_voicelogs import (
    Account,
    LogsPoller,
    ServerError,
    SqliteStore,
    StoreError,
    VoiceLog,
)
from infobip_voicelogs.health import (
    MAX_REQUEST_BYTES,
    STOP_TIMEOUT,
    HealthServer,
    poller_health,
)
from infobip_voicelogs.poller import AccountStatus, LeaseState
from infobip_voicelogs.testing import IN_PROCESS_URL, FakeClock, FakeInfobip

REPO = Path(__file__).resolve().parents[1]
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def judge(statuses: dict[str, AccountStatus], *, after: float, loop_time: float = 0.0):  # type: ignore[no-untyped-def]
    return poller_health(
        statuses,
        interval=60.0,
        started=T0,
        now=T0 + timedelta(seconds=after),
        loop_time=loop_time,
    )


def test_accounts_polled_within_three_intervals_are_healthy() -> None:
    statuses = {"a": AccountStatus(cycles=3, last_polled=T0 + timedelta(seconds=100))}
    assert judge(statuses, after=280).status_code == 200
    late = judge(statuses, after=281)
    assert late.status_code == 503
    assert list(late.body["late"]) == ["a"]
    assert late.body["status"] == "late"


def test_an_account_never_polled_counts_from_the_start() -> None:
    statuses = {"new": AccountStatus()}
    assert judge(statuses, after=179).ok
    late = judge(statuses, after=200)
    assert "never polled since start" in late.body["late"]["new"]


def test_backing_off_for_a_known_reason_is_healthy_until_the_attempt_is_overdue() -> None:
    failing = AccountStatus(
        cycles=5,
        failures=5,
        consecutive_failures=5,
        last_error=ServerError(503, None, "busy"),
        last_polled=T0,
        next_due=1000.0,  # backoff: the next attempt is far ahead on the loop's clock
    )
    healthy = judge({"f": failing}, after=900, loop_time=100.0)
    assert healthy.ok
    assert healthy.body["backing_off"]["f"]["consecutive_failures"] == 5
    assert "ServerError" in healthy.body["backing_off"]["f"]["last_error"]
    stuck = judge({"f": failing}, after=2000, loop_time=1000.0 + 181)
    assert not stuck.ok
    assert "overdue" in stuck.body["late"]["f"]


def test_an_account_held_elsewhere_is_never_late() -> None:
    theirs = AccountStatus(lease=LeaseState.ELSEWHERE)
    statuses = {"theirs": theirs, "mine": AccountStatus(last_polled=T0)}
    result = judge(statuses, after=10_000)
    assert list(result.body["late"]) == ["mine"]
    assert result.body["accounts"] == {
        "ok": 0,
        "backing_off": 0,
        "elsewhere": 1,
        "unknown": 0,
        "late": 1,
    }


def test_claims_failing_longer_than_the_lease_ttl_is_unhealthy_with_the_reason() -> None:
    since = T0 + timedelta(seconds=100)
    unknown = AccountStatus(lease=LeaseState.UNKNOWN, claims_failing_since=since)
    statuses = {"a": unknown, "b": unknown}
    # Within the ttl the leases may still be trusted and the next claim may work.
    within = poller_health(
        statuses, interval=60.0, started=T0, now=since + timedelta(seconds=15), loop_time=0.0
    )
    assert within.ok
    assert within.body["accounts"]["unknown"] == 2
    past = poller_health(
        statuses, interval=60.0, started=T0, now=since + timedelta(seconds=16), loop_time=0.0
    )
    assert past.status_code == 503
    assert past.body["status"] == "claims_failing"
    assert "longer than the lease ttl (15 s)" in past.body["claims"]
    # Elsewhere with claims that work is a healthy standby, however long.
    standby = {"a": AccountStatus(lease=LeaseState.ELSEWHERE)}
    assert judge(standby, after=100_000).ok


@pytest.fixture
def fake() -> FakeInfobip:
    return FakeInfobip(seed=1)


class _StoreDown(SqliteStore):
    """A store whose claims all fail, as with the database down or a rotated password."""

    async def lease(self, *args: object, **kwargs: object) -> dict[str, object]:  # type: ignore[override]
        raise StoreError("could not connect to the lease table: password authentication failed")


async def test_healthz_answers_503_once_the_claims_failed_longer_than_the_lease_ttl(
    fake: FakeInfobip,
) -> None:
    fake.add_account("a", api_key="ka")

    async def handler(account: str, logs: list[VoiceLog]) -> None:
        pass

    account = Account("a", IN_PROCESS_URL, auth="ka")
    async with (
        fake.in_process_client() as client,
        _StoreDown(":memory:") as store,
        LogsPoller(
            [account],
            store=store,
            handler=handler,
            client=client,
            lease_ttl=timedelta(seconds=0.4),
            claim_interval=0.2,
        ) as poller,
        HealthServer(poller) as server,
    ):
        runner = asyncio.create_task(poller.run())
        try:
            for _ in range(200):  # bounded: 503 comes about 0.4 s after the first claim
                if not server.health().ok:
                    break
                await asyncio.sleep(0.02)
            health = server.health()
            assert health.status_code == 503
            assert health.body["status"] == "claims_failing"
            assert health.body["accounts"]["unknown"] == 1
            assert poller.status()["a"].lease is LeaseState.UNKNOWN
            assert poller.status()["a"].cycles == 0  # nothing polled on an unknown lease
        finally:
            poller.stop()
            await runner


async def _raw(port: int, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    answer = await reader.read()
    writer.close()
    return answer


async def test_the_server_serves_a_real_pollers_health(tmp_path: Path) -> None:
    clock = FakeClock(T0)
    fake = FakeInfobip(clock=clock, seed=4)
    shop = fake.add_account("shop")
    shop.generate(20, within=timedelta(hours=1))
    delivered: list[VoiceLog] = []

    async def handler(_account: str, logs: list[VoiceLog]) -> None:
        delivered.extend(logs)

    async with (
        fake.in_process_client() as client,
        SqliteStore(tmp_path / "s.db") as store,
        LogsPoller(
            [Account("shop", IN_PROCESS_URL, auth=shop.api_key)],
            store=store,
            handler=handler,
            client=client,
            clock=clock.now,
            interval=60.0,
        ) as poller,
        HealthServer(poller, clock=clock.now) as server,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as http,
    ):
        await poller.run_once()
        assert len(delivered) == 20
        ok = await http.get("/healthz")
        assert ok.status_code == 200
        assert ok.json()["accounts"]["ok"] == 1
        clock.advance(timedelta(minutes=10))
        late = await http.get("/healthz")
        assert late.status_code == 503
        assert late.headers["content-type"] == "application/json"
        assert "shop" in late.json()["late"]
        assert (await http.get("/nothing")).status_code == 404
        assert (await http.post("/healthz")).status_code == 405
        huge = await _raw(server.port, b"GET /healthz HTTP/1.1\r\nX: " + b"a" * MAX_REQUEST_BYTES)
        assert huge.startswith(b"HTTP/1.1 431 ")
        garbage = await _raw(server.port, b"hello\r\n\r\n")
        assert garbage.startswith(b"HTTP/1.1 400 ")


async def test_the_server_stops_in_bounded_time_with_idle_clients_connected() -> None:
    class Idle:
        interval = 60.0

        def status(self) -> dict[str, AccountStatus]:
            return {}

    async with asyncio.timeout(STOP_TIMEOUT + 5):
        server = HealthServer(Idle())
        async with server:
            port = server.port
            idle = [await asyncio.open_connection("127.0.0.1", port) for _ in range(3)]
            await asyncio.sleep(0)
        for reader, writer in idle:
            assert await reader.read() == b""  # closed by the server, no answer
            writer.close()
        with pytest.raises(OSError):
            await asyncio.open_connection("127.0.0.1", port)


def test_metrics_serves_the_library_instruments_in_prometheus_text() -> None:
    # A process has one meter provider: this runs in its own, as the CLI would.
    script = """
import asyncio, httpx
from datetime import timedelta
from infobip_voicelogs import LogsFetcher
from infobip_voicelogs.health import HealthServer, install_prometheus
from infobip_voicelogs.testing import IN_PROCESS_URL, FakeInfobip
install_prometheus()
fake = FakeInfobip(seed=1)
fake.add_account("a", api_key="k").generate(7, within=timedelta(hours=1))
class Idle:
    interval = 60.0
    def status(self): return {}
async def main():
    async with fake.in_process_client() as client:
        await LogsFetcher(IN_PROCESS_URL, "k", client=client).fetch()
    async with HealthServer(Idle()) as server:
        async with httpx.AsyncClient() as http:
            r = await http.get(f"http://127.0.0.1:{server.port}/metrics")
    print(r.status_code, r.headers["content-type"])
    print(r.text)
asyncio.run(main())
"""
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    status_line, text = result.stdout.split("\n", 1)
    assert status_line.startswith("200 text/plain")
    metric_lines = [line for line in text.splitlines() if not line.startswith("#")]
    assert any(
        line.startswith("infobip_voicelogs_logs_decoded") and line.endswith(" 7.0")
        for line in metric_lines
    ), text
    waits = "infobip_voicelogs_throttle_acquired_total"
    assert any(line.startswith(waits) for line in metric_lines)
    assert '="k"' not in text  # never the credential


async def test_healthz_names_a_handlers_error_by_its_type_not_its_text(tmp_path: Path) -> None:
    clock = FakeClock(T0)
    fake = FakeInfobip(clock=clock, seed=4)
    shop = fake.add_account("shop")
    shop.generate(3, within=timedelta(hours=1))

    async def handler(_account: str, logs: list[VoiceLog]) -> None:
        raise ValueError("customer 4711 (jane@example.com) has no row\n" + "x" * 5000)

    async with (
        fake.in_process_client() as client,
        SqliteStore(tmp_path / "s.db") as store,
        LogsPoller(
            [Account("shop", IN_PROCESS_URL, auth=shop.api_key)],
            store=store,
            handler=handler,
            client=client,
            clock=clock.now,
            interval=60.0,
        ) as poller,
        HealthServer(poller, clock=clock.now) as server,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as http,
    ):
        await poller.run_once()
        body = (await http.get("/healthz")).json()
    said = body["backing_off"]["shop"]["last_error"]
    assert said.startswith("ValueError")
    assert "jane@example.com" not in said
    assert "x" * 50 not in said


def test_healthz_quotes_the_first_line_of_the_librarys_own_errors_briefly() -> None:
    def said(error: Exception) -> str:
        failing = AccountStatus(
            cycles=1, consecutive_failures=1, last_error=error, last_polled=T0, next_due=1e9
        )
        text = judge({"f": failing}, after=10).body["backing_off"]["f"]["last_error"]
        assert isinstance(text, str)
        return text

    assert said(ServerError(503, None, "busy")) == "ServerError: HTTP 503: busy"
    long = said(StoreError("cannot commit: disk full\n  at line 2\n" + "y" * 900))
    assert long == "StoreError: cannot commit: disk full"
    longest = said(StoreError("z" * 900))
    assert longest.startswith("StoreError: zzz")
    assert longest.endswith("...")
    assert len(longest) < 230


async def test_beyond_max_connections_a_connection_is_closed_unanswered() -> None:
    class Idle:
        interval = 60.0

        def status(self) -> dict[str, AccountStatus]:
            return {}

    async with HealthServer(Idle(), max_connections=2) as server:
        idle = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(2)]
        for _ in range(20):  # until the server took both
            await asyncio.sleep(0)
        try:
            extra = await _raw(server.port, b"GET /healthz HTTP/1.1\r\n\r\n")
        except ConnectionResetError:
            extra = b""
        assert extra == b""
        # The two in hand are still served.
        for reader, writer in idle:
            writer.write(b"GET /healthz HTTP/1.1\r\n\r\n")
            assert (await reader.read()).startswith(b"HTTP/1.1 200 ")
        for _reader, writer in idle:
            writer.close()
        assert (await _raw(server.port, b"GET /healthz HTTP/1.1\r\n\r\n")).startswith(
            b"HTTP/1.1 200 "
        )
    with pytest.raises(ValueError, match="max_connections"):
        HealthServer(Idle(), max_connections=0)
