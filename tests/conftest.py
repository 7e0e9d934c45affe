"""What the test files share: fakes that record, canned provider answers, a loopback server.

Fixtures are found by pytest; the helpers are imported by name (`from conftest import
FakeThrottle, Sleeps`), so that one copy serves every file.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import attrs
import httpx
import pytest
import respx
from pg_server import PostgresCluster, missing_reason
from redis_server import RedisServer, find_redis_server

from infobip_voicelogs import LogsFetcher, VoiceLog
from infobip_voicelogs.codec import Format, encode_logs, media_type
from infobip_voicelogs.testing import FakeClock, FakeInfobip, FakeServer, running

# Scripts run as processes of their own (a fleet's pollers), not test modules.
collect_ignore = ["fleet"]

#: An account's base URL, and an API key shaped like the provider's (never a real one).
BASE = "https://xyz.api.infobip.com"
API_KEY = "003026bbc133714df1834b8638bb496e-8f4b3d9a"
#: "Now" for the fetcher's tests: whole seconds, so milliseconds added to it are exact.
NOW = datetime.now(UTC).replace(microsecond=0)
#: The start of the window tests' logs: an hour ago, on a whole second.
T0 = (NOW - timedelta(hours=1)).replace(microsecond=0)
#: Where the fake provider's clock starts in the tests of the fake.
START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

# -- recording fakes -----------------------------------------------------------------------


class Sleeps(list[float]):
    """An injected sleep between retries: records each wait, returns at once."""

    async def __call__(self, seconds: float) -> None:
        self.append(seconds)


@attrs.define
class FakeThrottle:
    """A throttle that never waits (it reports ``wait`` seconds) and records what it hears."""

    wait: float = 0.0
    acquired: int = 0
    successes: int = 0
    cuts: int = 0
    cooldowns: list[float] = attrs.Factory(list)

    async def acquire(self) -> float:
        self.acquired += 1
        return self.wait

    def on_success(self) -> None:
        self.successes += 1

    def on_rate_limited(self) -> None:
        self.cuts += 1

    def cooldown(self, seconds: float) -> None:
        self.cooldowns.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def throttle() -> FakeThrottle:
    return FakeThrottle()


@pytest.fixture
def clock() -> FakeClock:
    """The fake provider's clock, standing at `START` until a test moves it."""
    return FakeClock(START)


# -- the provider's answers, mocked --------------------------------------------------------


def log_at(sent_at: datetime | None, message_id: str) -> VoiceLog:
    """A log sent at ``sent_at`` (or without a sentAt), with just enough else to be one."""
    return VoiceLog(bulk_id="bulk-1", message_id=message_id, to="41793026727", sent_at=sent_at)


def logs_body(logs: list[VoiceLog], fmt: Format = "json") -> httpx.Response:
    """A 200 carrying ``logs`` as the provider writes them."""
    return httpx.Response(
        200, content=encode_logs(logs, fmt), headers={"Content-Type": media_type(fmt)}
    )


def ms(n: int) -> datetime:
    """The ``n``-th millisecond after `T0`."""
    return T0 + timedelta(milliseconds=n)


def ids(logs: list[VoiceLog]) -> list[str]:
    """The logs' message ids, in order."""
    return [str(log.message_id) for log in logs]


@pytest.fixture
def logs_route(respx_mock: respx.MockRouter) -> respx.Route:
    """The logs endpoint of `BASE`, mocked: set its ``return_value`` or ``side_effect``."""
    return respx_mock.get(host="xyz.api.infobip.com", path="/tts/3/logs")


@pytest.fixture
def fetcher(sleeps: Sleeps, throttle: FakeThrottle) -> LogsFetcher:
    """A fetcher of `BASE` that never waits: its retries sleep into ``sleeps``."""
    return LogsFetcher(BASE, API_KEY, throttle=throttle, sleep=sleeps)


# -- a real socket -------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def loopback_server(
    serve: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
) -> AsyncIterator[str]:
    """Serve raw HTTP on a free loopback port, for what no mock transport can do."""
    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield f"http://127.0.0.1:{port}"
        server.close()  # drop the connections still open, not wait for them


# -- real servers ------------------------------------------------------------------------


@contextlib.contextmanager
def fake_in_a_thread(fake: FakeInfobip) -> Iterator[FakeServer]:
    """The fake served by uvicorn on 127.0.0.1 from a thread of its own, as a provider is:
    for other processes (the command line, a fleet's pollers) to reach over HTTP."""
    ready, box = threading.Event(), {}

    async def serve() -> None:
        stop = asyncio.Event()
        box["loop"], box["stop"] = asyncio.get_running_loop(), stop
        async with running(fake) as server:
            box["server"] = server
            ready.set()
            await stop.wait()

    thread = threading.Thread(target=asyncio.run, args=(serve(),), daemon=True)
    thread.start()
    assert ready.wait(10), "the fake did not start"
    try:
        yield box["server"]  # type: ignore[misc]
    finally:
        box["loop"].call_soon_threadsafe(box["stop"].set)  # type: ignore[attr-defined]
        thread.join(10)


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PostgresCluster]:
    """A throwaway PostgreSQL cluster for the whole run (skipped, or failed under CI, if none)."""
    reason = missing_reason()
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and no PostgreSQL to test against: {reason}")
        pytest.skip(reason)
    cluster = PostgresCluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def postgres_dsn(pg_cluster: PostgresCluster) -> str:
    """The DSN of a fresh, empty database of the session's cluster."""
    return pg_cluster.create_database()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One redis-server for the session (skipped without the binary; failed under CI=true)."""
    server = RedisServer(find_redis_server(), tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def own_redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of the test's own, which it may stop and restart."""
    server = RedisServer(find_redis_server(), tmp_path)
    server.start()
    yield server
    server.stop()
