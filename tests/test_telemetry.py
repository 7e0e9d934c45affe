"""The OpenTelemetry instruments and spans, read back through a real SDK in memory."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from infobip_voicelogs import AuthenticationError, LogsFetcher, TokenBucket, telemetry
from infobip_voicelogs.testing import IN_PROCESS_URL, FakeInfobip, Fault

REPO = Path(__file__).resolve().parents[1]

# A process has one global provider of each kind: installed once, read as deltas.
READER = InMemoryMetricReader()
SPANS = InMemorySpanExporter()
metrics.set_meter_provider(MeterProvider(metric_readers=[READER]))
_tracer_provider = TracerProvider()
_tracer_provider.add_span_processor(SimpleSpanProcessor(SPANS))
trace.set_tracer_provider(_tracer_provider)


def points() -> dict[str, list[Any]]:
    """Every metric's data points now, by instrument name."""
    found: dict[str, list[Any]] = {}
    data = READER.get_metrics_data()
    for resource in data.resource_metrics if data else ():
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                found.setdefault(metric.name, []).extend(metric.data.data_points)
    return found


def value(name: str, **attributes: str) -> float:
    """The sum (counter, gauge) or count (histogram) of ``name``'s points matching attributes."""
    total = 0.0
    for point in points().get(f"infobip_voicelogs.{name}", []):
        if all(point.attributes.get(k) == v for k, v in attributes.items()):
            total += getattr(point, "count", None) or getattr(point, "value", 0)
    return total


@pytest.fixture(autouse=True)
def _account_names() -> Iterator[None]:
    telemetry.configure(account_names=True)
    SPANS.clear()
    yield
    telemetry.configure(account_names=False)


@pytest.fixture
def fake() -> FakeInfobip:
    fake = FakeInfobip(seed=1)
    fake.add_account("acme", api_key="acme-key").generate(30, within=timedelta(hours=1))
    return fake


def fetcher_for(fake: FakeInfobip, client: Any, **options: Any) -> LogsFetcher:
    return LogsFetcher(
        IN_PROCESS_URL,
        "acme-key",
        client=client,
        throttle=TokenBucket(1000.0, burst=100),
        sleep=_no_sleep,
        **options,
    )


async def _no_sleep(_seconds: float) -> None:
    return None


async def test_a_fetch_counts_its_outcome_pages_logs_and_waits(fake: FakeInfobip) -> None:
    before = {
        n: value(n, account="acme")
        for n in ("fetch.outcomes", "pages.decoded", "logs.decoded", "throttle.acquired")
    }
    async with fake.in_process_client() as client:
        logs = await fetcher_for(fake, client, account="acme").fetch()
    assert len(logs) == 30
    assert value("fetch.outcomes", account="acme", outcome="ok") == before["fetch.outcomes"] + 1
    assert value("pages.decoded", account="acme") == before["pages.decoded"] + 1
    assert value("logs.decoded", account="acme") == before["logs.decoded"] + 30
    assert value("throttle.acquired", account="acme") == before["throttle.acquired"] + 1
    assert value("decode.duration", account="acme") >= 1


async def test_429s_retries_and_cooldowns_are_counted(fake: FakeInfobip) -> None:
    fake.accounts["acme"].script(Fault.status(429, retry_after=1), Fault.status(503))
    rate_limited = value("rate_limited", account="acme")
    by_reason = {r: value("retries", account="acme", reason=r) for r in ("429", "5xx")}
    cooldowns = value("throttle.cooldowns", account="acme")
    async with fake.in_process_client() as client:
        await fetcher_for(fake, client, account="acme").fetch()
    assert value("rate_limited", account="acme") == rate_limited + 1
    assert value("retries", account="acme", reason="429") == by_reason["429"] + 1
    assert value("retries", account="acme", reason="5xx") == by_reason["5xx"] + 1
    assert value("throttle.cooldowns", account="acme") == cooldowns + 1
    # The retry after the 429 waited out its cooldown in the throttle: one wait recorded.
    assert value("throttle.wait", account="acme") >= 1

    (span,) = [s for s in SPANS.get_finished_spans() if s.name == "infobip_voicelogs.fetch"]
    events = [event.name for event in span.events]
    assert events.count("retry") == 2
    assert events[-1] == "decode"
    assert span.attributes is not None
    assert span.attributes["account"] == "acme"


async def test_a_failed_fetch_names_its_error_class_and_marks_the_span(fake: FakeInfobip) -> None:
    before = value("fetch.outcomes", outcome="error", **{"error.type": "AuthenticationError"})
    async with fake.in_process_client() as client:
        fetcher = LogsFetcher(IN_PROCESS_URL, "wrong-key", client=client, account="acme")
        with pytest.raises(AuthenticationError):
            await fetcher.fetch()
    after = value("fetch.outcomes", outcome="error", **{"error.type": "AuthenticationError"})
    assert after == before + 1
    (span,) = SPANS.get_finished_spans()
    assert span.status.status_code is trace.StatusCode.ERROR
    assert span.attributes is not None
    assert span.attributes["error.type"] == "AuthenticationError"
    assert "wrong-key" not in str(span.to_json())


async def test_without_opting_in_no_account_attribute_is_recorded(fake: FakeInfobip) -> None:
    telemetry.configure(account_names=False)
    async with fake.in_process_client() as client:
        await fetcher_for(fake, client, account="secret-name").fetch()
    for name, found in points().items():
        for point in found:
            assert "secret-name" not in str(point.attributes), name
    assert all("account" not in (s.attributes or {}) for s in SPANS.get_finished_spans())


async def test_the_poller_context_names_a_fetcher_without_an_account(fake: FakeInfobip) -> None:
    before = value("fetch.outcomes", account="from-cycle")
    async with fake.in_process_client() as client:
        with telemetry.cycle_span("from-cycle"):
            await fetcher_for(fake, client).fetch()
    assert value("fetch.outcomes", account="from-cycle") == before + 1
    spans = {s.name: s for s in SPANS.get_finished_spans()}
    cycle, fetch = spans["infobip_voicelogs.poll.cycle"], spans["infobip_voicelogs.fetch"]
    assert fetch.parent is not None
    assert fetch.parent.span_id == cycle.context.span_id


async def test_the_fetch_span_is_current_while_httpx_sends(fake: FakeInfobip) -> None:
    # What opentelemetry-instrumentation-httpx parents its client span on.
    current: list[int] = []

    async def peek(_request: Any) -> None:
        current.append(trace.get_current_span().get_span_context().span_id)

    async with fake.in_process_client(event_hooks={"request": [peek]}) as client:
        await fetcher_for(fake, client, account="acme").fetch()
    (span,) = SPANS.get_finished_spans()
    assert current == [span.context.span_id]


async def test_the_rate_gauge_follows_an_adaptive_cut() -> None:
    bucket = TokenBucket(10.0)
    telemetry.watch_throttle(bucket, "gauge-acct")
    await bucket.acquire()
    assert value("throttle.rate", account="gauge-acct") == 10.0
    bucket.on_rate_limited()
    assert value("throttle.rate", account="gauge-acct") == pytest.approx(7.0)


def test_the_rate_gauge_forgets_a_bucket_that_is_gone() -> None:
    import gc

    bucket = TokenBucket(3.0)
    telemetry.watch_throttle(bucket, "short-lived")
    assert value("throttle.rate", account="short-lived") == 3.0
    del bucket
    gc.collect()
    assert "short-lived" not in str(points().get("infobip_voicelogs.throttle.rate"))


def test_poller_records_lag_deliveries_failures_and_leases() -> None:
    delivered = value("poll.delivered", account="p1", kind="new")
    telemetry.record_cycle(
        "p1",
        seconds=0.5,
        outcome="ok",
        new=3,
        changed=1,
        consecutive_failures=0,
    )
    telemetry.record_cycle(
        "p1",
        seconds=0.1,
        outcome="ServerError",
        new=0,
        changed=0,
        consecutive_failures=2,
    )
    assert value("poll.delivered", account="p1", kind="new") == delivered + 3
    # The lag measures the poller: seconds since the last cycle that worked, not traffic.
    assert 0 <= value("poll.lag", account="p1") < 60
    telemetry.account_held("p1", False)  # shed: another process polls it, no series here
    lags = points().get("infobip_voicelogs.poll.lag", [])
    assert not [p for p in lags if p.attributes.get("account") == "p1"]
    assert value("poll.consecutive_failures", account="p1") == 2
    assert value("poll.cycle.duration", account="p1", outcome="ServerError") >= 1
    telemetry.leases_held(7)
    lost, fenced = value("lease.lost", account="p1"), value("batch.fenced", account="p1")
    telemetry.lease_lost("p1")
    telemetry.batch_fenced("p1")
    telemetry.redis_error("ConnectionError")
    assert value("leases.held") == 7
    assert value("lease.lost", account="p1") == lost + 1
    assert value("batch.fenced", account="p1") == fenced + 1
    assert value("redis.errors", **{"error.type": "ConnectionError"}) >= 1


async def test_retry_log_records_carry_account_and_outcome(
    fake: FakeInfobip, caplog: pytest.LogCaptureFixture
) -> None:
    fake.accounts["acme"].script(Fault.status(503))
    caplog.set_level(logging.INFO, logger="infobip_voicelogs")
    async with fake.in_process_client() as client:
        await fetcher_for(fake, client, account="acme").fetch()
    (record,) = [r for r in caplog.records if r.getMessage().startswith("retrying")]
    assert record.__dict__["account"] == "acme"
    assert record.__dict__["outcome"] == "retry"


def test_with_the_api_but_no_provider_no_span_is_started() -> None:
    script = """
import asyncio
from datetime import timedelta
from opentelemetry import trace
from infobip_voicelogs import LogsFetcher, telemetry
from infobip_voicelogs.testing import IN_PROCESS_URL, FakeInfobip
assert telemetry.ENABLED
fake = FakeInfobip(seed=1)
fake.add_account("a", api_key="k").generate(3, within=timedelta(hours=1))
seen = []
async def peek(request):
    seen.append(trace.get_current_span().get_span_context().is_valid)
async def main():
    async with fake.in_process_client(event_hooks={"request": [peek]}) as client:
        logs = await LogsFetcher(IN_PROCESS_URL, "k", client=client, account="a").fetch()
    print(len(logs), seen)
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
    assert result.stdout.strip() == "3 [False]"


def test_every_library_record_names_the_account_of_its_task(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="infobip_voicelogs")
    library = logging.getLogger("infobip_voicelogs")
    with telemetry.account("ctx-acct"):
        library.warning("inside")
    library.warning("outside")
    inside, outside = caplog.records[-2:]
    assert inside.__dict__["account"] == "ctx-acct"
    assert outside.__dict__["account"] is None


def test_without_opentelemetry_everything_is_a_no_op() -> None:
    script = """
import sys
sys.modules["opentelemetry"] = None  # as if the otel extra were not installed
import asyncio
from datetime import timedelta
from infobip_voicelogs import LogsFetcher, telemetry
from infobip_voicelogs.testing import IN_PROCESS_URL, FakeInfobip
assert not telemetry.ENABLED
fake = FakeInfobip(seed=1)
fake.add_account("a", api_key="k").generate(5, within=timedelta(hours=1))
async def main():
    async with fake.in_process_client() as client:
        with telemetry.cycle_span("a"):
            logs = await LogsFetcher(IN_PROCESS_URL, "k", client=client, account="a").fetch()
    telemetry.record_cycle("a", seconds=1.0, outcome="ok", new=1, changed=0,
                           consecutive_failures=0)
    telemetry.leases_held(1); telemetry.redis_fallback("k"); telemetry.redis_error("E")
    print(len(logs))
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
    assert result.stdout.strip() == "5"


async def test_a_poller_cycle_is_recorded_as_one_span_with_its_fetches(fake: FakeInfobip) -> None:
    from infobip_voicelogs import Account, LogsPoller, SqliteStore, VoiceLog

    taken: list[VoiceLog] = []

    async def handler(account: str, logs: list[VoiceLog]) -> None:
        taken.extend(logs)

    before = value("poll.delivered", account="acme", kind="new")
    account = Account("acme", IN_PROCESS_URL, auth="acme-key", throttle=TokenBucket(1e3, 100))
    async with (
        fake.in_process_client() as client,
        SqliteStore(":memory:") as store,
        LogsPoller([account], store=store, handler=handler, client=client) as poller,
    ):
        report = await poller.run_once()
        # Held: the lag is the time since its last cycle that worked, not the traffic's age.
        assert 0 <= value("poll.lag", account="acme") < 60
    lags = points().get("infobip_voicelogs.poll.lag", [])
    assert not [p for p in lags if p.attributes.get("account") == "acme"]  # released
    assert report["acme"].ok
    assert value("poll.delivered", account="acme", kind="new") == before + len(taken) == before + 30
    assert value("poll.cycle.duration", account="acme", outcome="ok") >= 1
    newest = max(log.sent_at for log in taken if log.sent_at is not None)
    assert poller.status()["acme"].newest_sent_at == newest
    spans = SPANS.get_finished_spans()
    cycle = next(s for s in spans if s.name == "infobip_voicelogs.poll.cycle")
    fetches = [s for s in spans if s.name == "infobip_voicelogs.fetch"]
    assert fetches
    assert all(s.parent is not None and s.parent.span_id == cycle.context.span_id for s in fetches)


@pytest.mark.redis
async def test_a_redis_outage_counts_errors_and_local_decisions(own_redis_server: Any) -> None:
    from infobip_voicelogs.redis import RedisBucket

    errors, fallbacks = value("redis.errors"), value("redis.fallbacks")
    bucket = RedisBucket(own_redis_server.url, key="otel-outage", rate=100.0)
    await bucket.acquire()  # through Redis: nothing counted
    assert value("redis.errors") == errors
    own_redis_server.stop()
    for _ in range(3):
        await bucket.acquire()  # decided locally, the outage noticed once per probe
    await bucket.aclose()
    assert value("redis.errors") >= errors + 1
    assert value("redis.fallbacks") == fallbacks + 3
