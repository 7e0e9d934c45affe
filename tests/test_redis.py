"""RedisBucket against a real redis-server: several OS processes, 429s, outages, cancellation.

The server is started per session on a free 127.0.0.1 port (tests/redis_server.py); the
tests skip without the binary and fail without it under CI=true. Times asserted are Redis's
own (`TIME`), and bounds are on counts, with margins for a loaded machine.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("redis")

import redis.asyncio as aioredis
from redis_server import RedisServer

from infobip_voicelogs import (
    ApiKeyAuth,
    BasicAuth,
    BearerAuth,
    IbssoAuth,
    InfobipError,
    LogsFetcher,
    ThrottleUnavailableError,
)
from infobip_voicelogs.redis import DEFAULT_HEADROOM, RedisBucket, bucket_key
from infobip_voicelogs.testing import IN_PROCESS_URL, FakeInfobip, Fault

pytestmark = pytest.mark.redis

WORKER = Path(__file__).with_name("redis_worker.py")


@pytest.fixture
async def client(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_server.url)
    yield client
    await client.aclose()


@pytest.fixture
def key() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


async def redis_time(client: aioredis.Redis) -> int:
    seconds, micros = await client.time()
    return int(seconds) * 1_000_000 + int(micros)


async def run_workers(*specs: dict[str, Any]) -> list[dict[str, Any]]:
    """Run one OS process per spec at once; their JSON results, in order."""

    async def one(spec: dict[str, Any]) -> dict[str, Any]:
        process = await asyncio.create_subprocess_exec(
            sys.executable, str(WORKER), json.dumps(spec), stdout=subprocess.PIPE
        )
        async with asyncio.timeout(60):
            out, _ = await process.communicate()
        assert process.returncode == 0
        result: dict[str, Any] = json.loads(out)
        return result

    return list(await asyncio.gather(*(one(spec) for spec in specs)))


def most_in_any_window(times: list[int], window_us: int) -> int:
    times = sorted(times)
    best, start = 0, 0
    for end, t in enumerate(times):
        while t - times[start] >= window_us:
            start += 1
        best = max(best, end - start + 1)
    return best


# -- the import and the key --------------------------------------------------------------------


def test_import_without_redis_names_the_extra() -> None:
    code = (
        "import sys; sys.modules['redis'] = None\n"
        "try:\n    import infobip_voicelogs.redis\n"
        "except ImportError as e:\n    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "pip install 'infobip-voicelogs[redis]'" in out.stdout


def test_bucket_key_is_stable_and_never_holds_the_credential() -> None:
    secret = "s3cr3t-api-key-0123456789"
    key = bucket_key("https://xyz.api.infobip.com", secret)
    assert key == bucket_key("HTTPS://XYZ.api.infobip.com:443/", ApiKeyAuth(secret))
    assert key.startswith("acct-")
    assert secret not in key
    assert secret[:8] not in key
    assert key != bucket_key("https://xyz.api.infobip.com", secret + "x")
    assert key != bucket_key("https://abc.api.infobip.com", secret)
    for auth in (IbssoAuth(secret), BearerAuth(secret)):
        derived = bucket_key("https://xyz.api.infobip.com", auth)
        assert secret not in derived
        assert derived != key
    # Basic: by username, so a changed password keeps the bucket; the password never shows.
    basic = bucket_key("https://x.test", BasicAuth("alice", secret))
    assert basic == bucket_key("https://x.test", BasicAuth("alice", "another"))
    assert secret not in basic


def test_bucket_key_refuses_what_it_cannot_identify() -> None:
    import httpx

    with pytest.raises(TypeError, match="key="):
        bucket_key("https://x.test", httpx.BasicAuth("u", "p"))
    with pytest.raises(ValueError, match="absolute URL"):
        bucket_key("x.test", "key")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"rate": 0},
        {"rate": float("nan")},
        {"burst": 0},
        {"min_rate": 5.0},
        {"on_unavailable": "ignore"},
        {"fallback_share": 0},
        {"timeout": -1},
        {"idle_ttl": 0},
    ],
)
def test_bad_arguments_raise_value_error(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):  # each message names its argument
        RedisBucket("redis://127.0.0.1:1/0", key="k", **kwargs)


# -- one process -------------------------------------------------------------------------------


async def test_slots_are_spaced_by_the_rate(client: aioredis.Redis, key: str) -> None:
    bucket = RedisBucket(client, key=key, rate=20.0)
    times: list[int] = []

    async def caller() -> None:
        await bucket.acquire()
        times.append(await redis_time(client))

    await asyncio.gather(*(caller() for _ in range(30)))
    # 30 grants at 20/s span at least 29 intervals; no 0.5 s holds more than 10 + 1.
    assert max(times) - min(times) >= 29 * 50_000 - 20_000
    assert most_in_any_window(times, 500_000) <= 12
    await bucket.aclose()
    assert await client.ping()  # a shared client is left open


async def test_buckets_share_one_client_and_pool(client: aioredis.Redis) -> None:
    buckets = [RedisBucket(client, key=f"share-{i}", rate=100.0) for i in range(50)]
    await asyncio.gather(*(b.acquire() for b in buckets))
    assert {id(b.client) for b in buckets} == {id(client)}
    for bucket in buckets:
        await bucket.aclose()
    assert await client.ping()


async def test_cancelled_sleeper_gives_back_the_last_slot(client: aioredis.Redis, key: str) -> None:
    bucket = RedisBucket(client, key=key, rate=1.0)
    await bucket.acquire()
    tat_after_first = await client.hget(bucket.key, "tat")
    sleeper = asyncio.create_task(bucket.acquire())
    await asyncio.sleep(0.2)  # booked, sleeping
    assert await client.hget(bucket.key, "tat") != tat_after_first
    sleeper.cancel()
    with pytest.raises(asyncio.CancelledError):
        await sleeper
    await bucket.aclose()  # waits for the give-back
    assert await client.hget(bucket.key, "tat") == tat_after_first


async def test_cancelled_sleeper_not_last_leaves_a_hole_the_next_caller_takes(
    client: aioredis.Redis, key: str
) -> None:
    bucket = RedisBucket(client, key=key, rate=1.0)
    await bucket.acquire()
    first = asyncio.create_task(bucket.acquire())
    await asyncio.sleep(0.1)
    second = asyncio.create_task(bucket.acquire())
    await asyncio.sleep(0.1)
    tat = await client.hget(bucket.key, "tat")
    first.cancel()  # not the last slot: it cannot be taken back, so it is left as a hole
    await asyncio.gather(first, return_exceptions=True)
    for _ in range(100):
        if await client.hget(bucket.key, "holes"):
            break
        await asyncio.sleep(0.01)
    assert await client.hget(bucket.key, "holes")
    third = asyncio.create_task(bucket.acquire())  # takes the hole, ahead of the schedule
    for _ in range(100):
        if not await client.hget(bucket.key, "holes"):
            break
        await asyncio.sleep(0.01)
    assert not await client.hget(bucket.key, "holes")
    assert await client.hget(bucket.key, "tat") == tat  # the schedule did not grow
    await asyncio.gather(second, third)
    await bucket.aclose()


async def test_state_expires_when_idle(client: aioredis.Redis, key: str) -> None:
    bucket = RedisBucket(client, key=key, rate=10.0, idle_ttl=1.0)
    await bucket.acquire()
    ttl = await client.pttl(bucket.key)
    assert 0 < ttl <= 1_200
    for _ in range(40):  # up to 2 s
        if not await client.exists(bucket.key):
            break
        await asyncio.sleep(0.05)
    assert not await client.exists(bucket.key)
    await bucket.acquire()  # a fresh hash, a fresh epoch
    assert await client.exists(bucket.key)
    await bucket.aclose()


async def test_script_flush_is_survived(client: aioredis.Redis, key: str) -> None:
    bucket = RedisBucket(client, key=key, rate=2.0)
    await bucket.acquire()
    await client.script_flush()
    waited = await bucket.acquire()  # reloaded by hash, and the schedule was kept
    assert waited > 0.3
    assert await client.hget(bucket.key, "seq") == b"2"
    await bucket.aclose()


async def test_cooldown_holds_this_process_at_once(client: aioredis.Redis, key: str) -> None:
    bucket = RedisBucket(client, key=key, rate=50.0)
    await bucket.acquire()
    bucket.cooldown(0.6)  # written in the background; the next call carries it too
    start = await redis_time(client)
    await bucket.acquire()
    assert await redis_time(client) - start >= 550_000
    await bucket.aclose()


# -- several OS processes ----------------------------------------------------------------------


async def test_processes_share_one_rate(redis_server: RedisServer, key: str) -> None:
    spec = {"url": redis_server.url, "key": key, "rate": 10.0, "grants": 10}
    results = await run_workers(spec, spec, spec, spec)
    times = [t for result in results for t in result["grants"]]
    assert len(times) == 40
    # 40 grants at 10/s take at least 3.9 s of Redis time, never more than 10 (+1) a second.
    assert max(times) - min(times) >= 3_900_000 - 100_000
    assert most_in_any_window(times, 1_000_000) <= 12
    assert all(len(result["grants"]) == 10 for result in results)


async def test_a_429_in_one_process_cools_the_others_and_cuts_once(
    redis_server: RedisServer, client: aioredis.Redis, key: str
) -> None:
    common = {"url": redis_server.url, "key": key, "rate": 10.0, "barrier": 4}
    # Four processes each take a slot; then three of them report a 429 for it, one of them
    # with a 1.5 s cooldown, and the fourth keeps asking.
    reporter = {**common, "report_429": True}
    cooler = {**reporter, "cooldown": 1.5}
    asker = {**common, "grants": 6}
    before = await redis_time(client)
    results = await run_workers(reporter, reporter, cooler, asker)
    barrier_passed = max(result["grants"][0] for result in results)
    later = results[3]["grants"][1:]
    # Nobody went during the pause (margin: grants booked just before it was set).
    assert all(t >= barrier_passed + 1_400_000 for t in later[1:])
    assert later[-1] - before >= 1_500_000
    # Three reports of one episode: one cut, 10 -> 7, then growth back from there.
    assert 7.0 <= results[3]["rate"] < 10.0
    # The rate cut from was the paced one: 10/s less the headroom the fleet keeps.
    wmax = float(await client.hget(f"infobip-voicelogs:{key}", "wmax") or 0)
    assert wmax == pytest.approx(10.0 * (1 - DEFAULT_HEADROOM))


async def test_cut_once_per_episode_then_again_after_a_success(
    client: aioredis.Redis, key: str
) -> None:
    # Three "processes" (buckets on their own clients) report 429s of one episode.
    port = client.connection_pool.connection_kwargs["port"]
    clients = [aioredis.Redis.from_url(f"redis://127.0.0.1:{port}/0") for _ in range(3)]
    buckets = [RedisBucket(c, key=key, rate=100.0) for c in clients]
    for bucket in buckets:
        await bucket.acquire()
    for bucket in buckets:
        bucket.on_rate_limited()
    for bucket in buckets:
        await bucket.aclose()
    probe = RedisBucket(client, key=key, rate=100.0)
    await probe.acquire()
    assert probe.rate == pytest.approx(100.0 * (1 - DEFAULT_HEADROOM) * 0.7, rel=0.01)
    # A slot granted after the cut succeeds; a later 429 is a new episode: cut again.
    probe.on_success()
    await probe.acquire()
    probe.on_rate_limited()
    await probe.aclose()
    again = RedisBucket(client, key=key, rate=100.0)
    await again.acquire()
    assert again.rate < 70.0 * 0.75
    await again.aclose()
    for c in clients:
        await c.aclose()


# -- outages -----------------------------------------------------------------------------------


async def test_outage_falls_back_locally_warns_once_and_returns(
    own_redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="infobip_voicelogs")
    bucket = RedisBucket(own_redis_server.url, key="outage", rate=50.0, fallback_share=2)
    await bucket.acquire()
    bucket.on_success()
    own_redis_server.stop()
    for _ in range(10):
        await bucket.acquire()  # local bucket at 25/s: never an error, never a hang
    assert not bucket.available
    assert bucket.rate == pytest.approx(50.0 * (1 - DEFAULT_HEADROOM) / 2)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "unavailable" in warnings[0].getMessage()
    own_redis_server.start()
    bucket.cooldown(3.0)  # a 429 during the outage: held locally, kept for Redis
    await asyncio.sleep(1.1)  # Redis is tried again at most once a second
    await bucket.acquire()  # tries Redis, carrying the cooldown, and waits it out
    assert bucket.available
    assert any("answers again" in r.getMessage() for r in caplog.records)
    check = aioredis.Redis.from_url(own_redis_server.url)
    # The cooldown seen during the outage reached Redis with the first call that answered.
    assert float(await check.hget(bucket.key, "cool") or 0) > await redis_time(check) - 1e6
    await check.aclose()
    await bucket.aclose()


async def test_outage_raises_when_asked_and_recovers(own_redis_server: RedisServer) -> None:
    bucket = RedisBucket(own_redis_server.url, key="raise", rate=50.0, on_unavailable="raise")
    await bucket.acquire()
    own_redis_server.stop()
    with pytest.raises(ThrottleUnavailableError) as caught:
        await bucket.acquire()
    assert isinstance(caught.value, InfobipError)
    assert f"127.0.0.1:{own_redis_server.port}" in str(caught.value)
    with pytest.raises(ThrottleUnavailableError):  # at once, until the next probe
        await bucket.acquire()
    own_redis_server.start()
    for _ in range(200):
        try:
            await bucket.acquire()
            break
        except ThrottleUnavailableError:
            await asyncio.sleep(0.02)
    assert bucket.available
    await bucket.aclose()


async def test_a_hung_redis_costs_at_most_the_timeout(
    client: aioredis.Redis, redis_server: RedisServer, key: str
) -> None:
    bucket = RedisBucket(redis_server.url, key=key, rate=50.0, timeout=0.1)
    await bucket.acquire()
    # Redis stops answering for 1.5 s (as during a failover), then answers again.
    await client.execute_command("CLIENT", "PAUSE", "1500", "ALL")
    answered = asyncio.create_task(client.ping())
    await bucket.acquire()  # falls back while Redis is silent
    assert not bucket.available
    assert not answered.done()  # returned well before Redis answered anyone
    assert await answered
    await bucket.aclose()


async def test_no_credential_in_messages(
    own_redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    url = f"redis://:hunter2-password@127.0.0.1:{own_redis_server.port}/0"
    bucket = RedisBucket(url, key="secret", on_unavailable="raise")
    own_redis_server.stop()
    with pytest.raises(ThrottleUnavailableError) as caught:  # the server has no password
        await bucket.acquire()
    assert "hunter2" not in str(caught.value)
    assert "hunter2" not in repr(bucket)
    assert "hunter2" not in caplog.text
    await bucket.aclose()


# -- a shared client under cancellation ----------------------------------------------------------


async def test_cancellation_under_load_never_crosses_replies(redis_server: RedisServer) -> None:
    # Waves of callers on a shared client with a small pool, cut off by timeouts as short
    # as a round trip: while queued for a connection, while sending and while reading.
    # (With redis-py's disconnect-on-cancel disabled, this test sees ~1,800 crossed replies.)
    pool = aioredis.BlockingConnectionPool.from_url(redis_server.url, max_connections=4)
    client = aioredis.Redis.from_pool(pool)
    rng = random.Random(11)
    buckets = [RedisBucket(client, key=f"cancel-{i}", rate=1e6, burst=1000) for i in range(4)]
    mismatches: list[tuple[str, Any]] = []
    cut_off = 0

    async def echo(token: str) -> None:
        reply = await client.echo(token)
        if reply != token.encode():
            mismatches.append((token, reply))

    async def one(i: int) -> None:
        nonlocal cut_off
        work = echo(f"{i}-{uuid.uuid4().hex}") if i % 3 else buckets[i % 4].acquire()
        try:
            async with asyncio.timeout(rng.choice([0.0001, 0.0003, 0.001, 1.0])):
                await work
        except TimeoutError:
            cut_off += 1

    for _ in range(300):
        await asyncio.gather(*(one(i) for i in range(8)))
    assert cut_off > 50  # many calls were cut off
    # Whatever was cut off, no connection went back to the pool with a reply unread.
    await asyncio.gather(*(echo(f"after-{i}") for i in range(200)))
    assert mismatches == []
    for bucket in buckets:
        await bucket.aclose()
    await client.aclose()


# -- with the fetcher --------------------------------------------------------------------------


async def test_fetcher_uses_the_bucket_and_a_429_reaches_redis(
    client: aioredis.Redis, key: str
) -> None:
    fake = FakeInfobip()
    account = fake.add_account("acme", api_key="acme-key")
    account.script(Fault.status(429, retry_after=0.3))
    bucket = RedisBucket(client, key=key, rate=20.0)
    async with fake.in_process_client() as http:
        fetcher = LogsFetcher(IN_PROCESS_URL, "acme-key", throttle=bucket, client=http)
        assert await fetcher.fetch() == []
        for _ in range(3):
            await fetcher.fetch()
    assert [e.status for e in fake.requests("acme")] == [429, 200, 200, 200, 200]
    await bucket.aclose()
    other = RedisBucket(client, key=key, rate=20.0)  # another process's view
    await other.acquire()
    assert other.rate < 20.0  # cut by the 429, growing back
    await other.aclose()


async def test_fetcher_does_not_retry_an_unavailable_throttle(
    own_redis_server: RedisServer,
) -> None:
    fake = FakeInfobip()
    fake.add_account("acme", api_key="acme-key")
    bucket = RedisBucket(own_redis_server.url, key="k", on_unavailable="raise")
    own_redis_server.stop()
    async with fake.in_process_client() as http:
        fetcher = LogsFetcher(IN_PROCESS_URL, "acme-key", throttle=bucket, client=http)
        with pytest.raises(ThrottleUnavailableError):
            await fetcher.fetch()
    assert fake.requests("acme") == []
    await bucket.aclose()


def test_the_fleet_paces_itself_a_headroom_under_the_limit() -> None:
    url = "redis://127.0.0.1:9/0"  # nothing connects until a call
    assert RedisBucket(url, key="k").configured_rate == 2.0
    assert RedisBucket(url, key="k").rate == pytest.approx(2.0 * (1 - DEFAULT_HEADROOM))
    assert RedisBucket(url, key="k", rate=10.0, headroom=0).rate == 10.0
    for bad in (-0.1, 0.5, float("nan"), True):
        with pytest.raises(ValueError, match="headroom"):
            RedisBucket(url, key="k", headroom=bad)


# -- the fast path: the common acquire through a smaller script --------------------------------


async def test_a_quiet_acquire_is_one_script_call(
    client: aioredis.Redis, key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    bucket = RedisBucket(client, key=key, rate=1000.0, burst=1000)
    for _ in range(2):  # both scripts loaded, the hash made
        await bucket.acquire()
    shas: list[str] = []
    evalsha = client.evalsha

    async def counted(sha: str, *args: Any) -> Any:
        shas.append(sha)
        return await evalsha(sha, *args)

    monkeypatch.setattr(client, "evalsha", counted)
    for _ in range(20):
        await bucket.acquire()
    assert len(shas) == 20  # one round trip each, never a fast try and then the full one
    assert len(set(shas)) == 1  # all through the fast script
    await bucket.aclose()


async def test_a_cooldown_from_another_process_stops_the_fast_path(
    client: aioredis.Redis, key: str
) -> None:
    bucket = RedisBucket(client, key=key, rate=1000.0, burst=1000)
    other = RedisBucket(client, key=key, rate=1000.0, burst=1000)
    for _ in range(3):
        await bucket.acquire()
    other.cooldown(0.3)
    await other.aclose()  # writes the cooldown to Redis
    before = await redis_time(client)
    await bucket.acquire()
    assert await redis_time(client) - before >= 250_000
    await bucket.aclose()


async def test_a_rate_cut_elsewhere_is_honoured_by_the_next_acquire(
    client: aioredis.Redis, key: str
) -> None:
    bucket = RedisBucket(client, key=key, rate=20.0)
    await bucket.acquire()
    await client.hset(bucket.key, "rate", "2")  # as a cut long ago leaves it
    await bucket.acquire()
    # The full script ran: it grew the rate back along its curve and wrote it.
    assert float(await client.hget(bucket.key, "rate")) == pytest.approx(19.8)
    await bucket.aclose()
