"""Delivery reports: how fast a batch decodes, beside pydantic v2 models of the same shape.

    python bench/reports.py           # a 1,000-report batch, best of 100 interleaved calls
    python bench/reports.py --quick   # a smoke run in a few seconds
    python bench/reports.py --only receiver   # one section (or several: --only decode,receiver)

Section "decode": `decode_reports` on a batch of the current shape (every field set, the
IVR's JSON-in-strings too) and on the same reports in the flat shape (epoch-millisecond
call times), against pydantic v2 models with the same fields, aliases, `Decimal` money
and aware datetimes, validating the same JSON body. The ratio printed is ours / pydantic
(target: at least 1.3x).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import platform
import random
import shutil
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import orjson
import psutil
import pydantic
from pydantic import AliasChoices, BaseModel, ConfigDict, Field

# The repository, this directory, the tests' throwaway PostgreSQL and receiver process.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "reports"))

from _virtual_loop import VirtualTimeLoop

from infobip_voicelogs import (
    Account,
    ErrorInfo,
    LogsPoller,
    Price,
    SqliteStore,
    Status,
    TokenBucket,
    VoiceLog,
)
from infobip_voicelogs.postgres import PostgresStore
from infobip_voicelogs.reports import (
    Ivr,
    NoAuth,
    ReportsReceiver,
    VoiceCall,
    VoiceReport,
    decode_reports,
    encode_reports,
)
from infobip_voicelogs.state import is_final
from infobip_voicelogs.testing import FakeClock, FakeInfobip
from infobip_voicelogs.testing.fake import IN_PROCESS_URL

BENCH = Path(__file__).resolve().parent

Time = pydantic.AwareDatetime | None

# The same shape in pydantic v2.


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)


class PPrice(_Frozen):
    per_second: Decimal = Field(validation_alias=AliasChoices("pricePerSecond", "pricePerMessage"))
    currency: str


class PStatus(_Frozen):
    group_id: int = Field(alias="groupId")
    group_name: str = Field(alias="groupName")
    id: int
    name: str
    description: str | None = None
    action: str | None = None


class PError(_Frozen):
    group_id: int = Field(alias="groupId")
    group_name: str = Field(alias="groupName")
    id: int
    name: str
    description: str | None = None
    permanent: bool | None = None


class PIvr(_Frozen):
    scenario_id: str | None = Field(None, alias="scenarioId")
    scenario_name: str | None = Field(None, alias="scenarioName")
    collected_dtmfs: str | None = Field(None, alias="collectedDtmfs")
    collected_mapped_dtmfs: str | None = Field(None, alias="collectedMappedDtmfs")
    spoken_input: str | None = Field(None, alias="spokenInput")
    matched_spoken_input: str | None = Field(None, alias="matchedSpokenInput")


class PVoiceCall(_Frozen):
    feature: str | None = None
    start_time: Time = Field(None, alias="startTime")
    answer_time: Time = Field(None, alias="answerTime")
    end_time: Time = Field(None, alias="endTime")
    duration: int | None = None
    charged_duration: int | None = Field(None, alias="chargedDuration")
    file_duration: float | None = Field(None, alias="fileDuration")
    dtmf_codes: str | None = Field(None, alias="dtmfCodes")
    answered_by: str | None = Field(None, alias="answeredBy")
    call_recording_file_id: str | None = Field(None, alias="callRecordingFileId")
    direction: str | None = None
    ivr: PIvr | None = None


class PReport(_Frozen):
    bulk_id: str | None = Field(None, alias="bulkId")
    message_id: str | None = Field(None, alias="messageId")
    from_: str | None = Field(None, alias="from")
    to: str | None = None
    sent_at: Time = Field(None, alias="sentAt")
    mcc_mnc: str | None = Field(None, validation_alias=AliasChoices("mccMnc", "mccmnc"))
    callback_data: str | None = Field(None, alias="callbackData")
    voice_call: PVoiceCall | None = Field(None, alias="voiceCall")
    done_at: Time = Field(None, alias="doneAt")
    start_time: datetime | None = Field(None, alias="startTime")  # epoch ms in the flat JSON
    answer_time: datetime | None = Field(None, alias="answerTime")
    end_time: datetime | None = Field(None, alias="endTime")
    duration: int | None = None
    file_duration: float | None = Field(None, alias="fileDuration")
    dtmf_codes: str | None = Field(None, alias="dtmfCodes")
    dtmf_codes_as_json: str | None = Field(None, alias="dtmfCodesAsJson")
    transcribed_audio_file_url: str | None = Field(None, alias="transcribedAudioFileUrl")
    recorded_audio_file_url: str | None = Field(None, alias="recordedAudioFileUrl")
    scenario_id: str | None = Field(None, alias="scenarioId")
    scenario_name: str | None = Field(None, alias="scenarioName")
    price: PPrice | None = None
    status: PStatus | None = None
    error: PError | None = None


class PBatch(BaseModel):
    results: list[PReport]


def make_reports(count: int, seed: int = 7) -> list[VoiceReport]:
    """Realistic reports of the current shape: every field set, varied ids, times, prices."""
    rng = random.Random(seed)
    start = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
    reports = []
    for i in range(count):
        sent = start - timedelta(milliseconds=rng.randrange(48 * 3600 * 1000))
        answered = sent + timedelta(milliseconds=rng.randrange(20_000))
        duration = rng.randrange(1, 120)
        call = VoiceCall(
            feature="Voice-message",
            start_time=sent + timedelta(seconds=1),
            answer_time=answered,
            end_time=answered + timedelta(seconds=duration),
            duration=duration,
            charged_duration=duration + 1,
            file_duration=rng.randrange(100, 9000) / 100,
            dtmf_codes=rng.choice(["", "1", "1,2"]),
            answered_by=rng.choice(["HUMAN", "MACHINE"]),
            call_recording_file_id=f"rec-{i}",
            direction="OUTBOUND",
            ivr=Ivr("sc-1", "Greeting", '{"menu":"1"}', "{}", "{}", "{}"),
        )
        reports.append(
            VoiceReport(
                bulk_id=f"{rng.getrandbits(128):032x}",
                message_id=f"{rng.getrandbits(128):032x}",
                from_="41793026700",
                to=f"4179{rng.randrange(10**7):07d}",
                sent_at=sent,
                mcc_mnc="22801",
                callback_data=f"order-{rng.randrange(10**6)}",
                voice_call=call,
                price=Price(Decimal(rng.randrange(200)).scaleb(-4), "EUR"),
                status=Status(3, "DELIVERED", 5, "DELIVERED_TO_HANDSET", "Message delivered"),
                error=ErrorInfo(0, "OK", 5000, "VOICE_ANSWERED", "Call answered", False),
            )
        )
    return reports


def verdict(met: bool, target: str) -> str:
    """How a measured value stands against its target, as every section prints it."""
    return f"(target {target}: {'met' if met else 'MISSED'})"


def best_time(fn: Callable[[], Any], repeat: int) -> float:
    """The best of `repeat` calls, in CPU time of this process: on a machine shared by
    more runnable processes than cores, wall time counts the others' turns too."""
    best = float("inf")
    for _ in range(repeat):
        started = time.process_time()
        fn()
        best = min(best, time.process_time() - started)
    return best


def section_decode(count: int, rounds: int, repeat: int) -> dict[str, float]:
    reports = make_reports(count)
    bodies = {shape: encode_reports(reports, "json", shape=shape) for shape in ("current", "flat")}
    fns: dict[str, Callable[[], Any]] = {}
    for shape, body in bodies.items():
        fns[f"ours {shape}"] = lambda body=body: decode_reports(body, "application/json")
        fns[f"pydantic {shape}"] = lambda body=body: PBatch.model_validate_json(body).results
    fns["orjson.loads"] = lambda: orjson.loads(bodies["current"])["results"]
    for name, fn in fns.items():  # the same reports out of every contender, or the race is void
        assert len(fn()) == count, name
    assert decode_reports(bodies["current"], "application/json") == reports
    best = dict.fromkeys(fns, float("inf"))
    # One call of each in turn, `rounds * repeat` times: on a shared machine whose load
    # swings by the second, contenders a few milliseconds apart meet the same load.
    for _ in range(rounds * repeat):
        for name, fn in fns.items():
            best[name] = min(best[name], best_time(fn, 1))
    rates = {name: count / seconds for name, seconds in best.items()}
    print(f"\n## decode: a {count:,}-report JSON batch (best of {rounds * repeat}, interleaved)")
    print(f"{'decoder':<18} {'reports/s':>11}")
    for name, rate in rates.items():
        print(f"{name:<18} {rate:>11,.0f}")
    for shape in bodies:
        ratio = rates[f"ours {shape}"] / rates[f"pydantic {shape}"]
        print(
            f"ratio ours/pydantic, {shape} shape: {ratio:.2f}x {verdict(ratio >= 1.3, '>= 1.3x')}"
        )
    return rates


# -- receiver throughput ---------------------------------------------------------------------


def batches(count: int, seed: int) -> list[bytes]:
    """``count`` JSON batches of 100 reports each, every message id new."""
    return [encode_reports(make_reports(100, seed * 100_000 + i), "json") for i in range(count)]


async def post_all(client: httpx.AsyncClient, url: str, bodies: list[bytes], workers: int) -> float:
    """POST every body over ``workers`` connections; the reports per second of wall time."""
    queue = list(reversed(bodies))
    headers = {"content-type": "application/json"}

    async def worker() -> None:
        while queue:
            response = await client.post(url, content=queue.pop(), headers=headers)
            assert response.status_code == 200, (url, response.status_code, response.text)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(workers)))
    return 100 * len(bodies) / (time.perf_counter() - started)


def cpu_seconds(pid: int) -> float:
    """User and system CPU time a process has used so far."""
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


async def migrated(spec: str) -> None:
    """The store's tables, made by the store itself (the bare endpoint writes into them)."""
    store: Any = (
        SqliteStore(spec.removeprefix("sqlite:"))
        if spec.startswith("sqlite:")
        else PostgresStore(spec)
    )
    async with store:
        await store.fingerprints("bench", ["nothing"])


def section_receiver(rounds: int, per_round: int, workers: int) -> dict[str, float]:
    """Ours and the bare endpoint, each one uvicorn process, into SQLite and PostgreSQL."""
    from pg_server import PostgresCluster, free_port, missing_reason
    from process import ReceiverProcess

    reason = missing_reason()
    cluster = PostgresCluster.start() if reason is None else None
    root = Path(tempfile.mkdtemp(prefix="voicelogs-bench-"))
    specs = {"sqlite": lambda name: f"sqlite:{root / name}.db"}
    if cluster is not None:
        specs["postgres"] = cluster.create_database
    processes: dict[str, ReceiverProcess] = {}
    try:
        for backend, spec_of in specs.items():
            for who in ("ours", "bare"):
                spec = spec_of(f"{who}_{backend}")
                asyncio.run(migrated(spec))
                env = {"VOICELOGS_STORE": spec, "VOICELOGS_ACCOUNTS": "acme"}
                env["VOICELOGS_ARCHIVE"] = "0"
                env["VOICELOGS_NO_HANDLER"] = "1"  # recording only: a poller delivers
                log = root / f"{who}-{backend}.log"
                options = {} if who == "ours" else {"app_dir": BENCH, "app": "_bare_reports:app"}
                processes[f"{who} {backend}"] = ReceiverProcess(free_port(), env, log, **options)
        for process in processes.values():
            process.wait_ready()
        rates = dict.fromkeys(processes, 0.0)
        # Reports and CPU seconds of each process over all its rounds: the CPU time comes
        # in clock ticks, too coarse to compare one short round by.
        sent = dict.fromkeys(processes, 0)
        used_cpu = dict.fromkeys(processes, 0.0)

        async def race() -> None:
            limits = httpx.Limits(max_connections=workers, max_keepalive_connections=workers)
            async with httpx.AsyncClient(limits=limits, timeout=60.0) as client:
                for round_ in range(rounds):  # one round of each in turn: the same load
                    for index, (name, process) in enumerate(processes.items()):
                        bodies = batches(per_round, round_ * 10 + index + 1)
                        used = cpu_seconds(process.process.pid)
                        rate = await post_all(client, f"{process.url}/acme", bodies, workers)
                        used = cpu_seconds(process.process.pid) - used
                        rates[name] = max(rates[name], rate)
                        sent[name] += 100 * len(bodies)
                        used_cpu[name] += used

        asyncio.run(race())
        # A quick run can stay below the CPU clock's resolution: no figure then.
        per_cpu = {
            name: sent[name] / used_cpu[name] if used_cpu[name] > 0 else float("nan")
            for name in processes
        }
    finally:
        for process in processes.values():
            process.stop()
        if cluster is not None:
            cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
    print(
        f"\n## receiver: batches of 100 over uvicorn, one process each, {workers} connections "
        f"(best of {rounds} rounds of {per_round} batches, interleaved)"
    )
    print(f"{'receiver':<16} {'reports/s':>10} {'per CPU s':>10}")
    for name, rate in rates.items():
        cpu = per_cpu[name]
        shown = f"{cpu:>10,.0f}" if cpu == cpu else f"{'-':>10}"  # nan: not measurable
        print(f"{name:<16} {rate:>10,.0f} {shown}")
    print(
        "(per CPU s: of the receiver's own process over all its rounds; PostgreSQL's work"
        " is not in it)"
    )
    for backend in specs:
        ratio = rates[f"ours {backend}"] / rates[f"bare {backend}"]
        print(f"ratio ours/bare, {backend}: {ratio:.2f}x {verdict(ratio >= 0.8, '>= 0.8x')}")
    if "postgres" in specs:
        rate = rates["ours postgres"]
        print(f"ours into PostgreSQL: {rate:,.0f} reports/s {verdict(rate >= 10000, '>= 10,000')}")
    else:
        print(f"PostgreSQL skipped: {reason}")
    return rates


# -- freshness ---------------------------------------------------------------------------------


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


@contextlib.asynccontextmanager
async def served(app: Any) -> AsyncIterator[str]:
    """``app`` served by uvicorn in this process on a free loopback port: its base URL."""
    import uvicorn
    from pg_server import free_port

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    serving = asyncio.create_task(server.serve())
    try:
        while not server.started:  # noqa: ASYNC110 (uvicorn offers no event to wait on)
            await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await serving


async def freshness_by_report(seconds: float) -> list[float]:
    """Real time, real HTTP: the fake (on a ticking clock) pushes each report as its call
    settles (`ReportPusher.run`, a step every 50 ms) to a receiver served by uvicorn in this
    process, on SQLite; the handler notes how long ago each call ended, on that clock."""
    clock = FakeClock(ticking=True)
    fake = FakeInfobip(clock=clock, seed=19)
    account = fake.add_account("acme")
    account.traffic(20.0, settle_after=timedelta(seconds=2))
    ages: list[float] = []

    async def handler(name: str, items: Sequence[VoiceReport | VoiceLog]) -> None:
        now = clock.now()
        for item in items:
            if isinstance(item, VoiceReport) and item.voice_call and item.voice_call.end_time:
                ages.append((now - item.voice_call.end_time).total_seconds())

    root = Path(tempfile.mkdtemp(prefix="voicelogs-fresh-"))
    async with SqliteStore(root / "fresh.db") as store:
        receiver = ReportsReceiver({"acme"}, store=store, handler=handler, auth=NoAuth())
        async with served(receiver) as url, httpx.AsyncClient(timeout=10.0) as client:
            pusher = account.push_reports(f"{url}/acme", client=client)
            pushing = asyncio.create_task(pusher.run(every=0.05))
            await asyncio.sleep(seconds)
            pushing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pushing
    shutil.rmtree(root, ignore_errors=True)
    return ages


async def freshness_by_polling(minutes: int) -> list[float]:
    """The fake's clock stands while a cycle runs and moves 60 s between two `run_once`
    calls (the poll interval): a state's age at the handler is the fake time from its
    settling to the poll that found it, plus the real time the cycle took to hand it over."""
    clock = FakeClock()
    fake = FakeInfobip(clock=clock, seed=19, rate_limit_per_minute=100_000)
    account = fake.add_account("acme")
    account.traffic(20.0, settle_after=timedelta(seconds=2))
    ages: list[float] = []
    cycle_started = 0.0

    async def handler(name: str, items: Sequence[VoiceLog | VoiceReport]) -> None:
        took = time.perf_counter() - cycle_started
        now = clock.now()
        for item in items:
            if is_final(item) and item.done_at is not None:
                ages.append((now - item.done_at).total_seconds() + took)

    root = Path(tempfile.mkdtemp(prefix="voicelogs-fresh-"))
    throttle = TokenBucket(1e6, 1000)
    acme = Account("acme", IN_PROCESS_URL, auth=account.api_key, throttle=throttle)
    async with (
        SqliteStore(root / "poll.db", clock=clock.now) as store,
        fake.in_process_client() as client,
        LogsPoller(
            [acme], store=store, handler=handler, client=client, clock=clock.now, interval=60
        ) as poller,
    ):
        await poller.run_once()
        ages.clear()  # the first cycle's backfill is no sample
        for _ in range(minutes):
            clock.advance(timedelta(seconds=60))
            cycle_started = time.perf_counter()
            await poller.run_once()
    shutil.rmtree(root, ignore_errors=True)
    return ages


def section_freshness(report_seconds: float, poll_minutes: int) -> dict[str, float]:
    by_report = asyncio.run(freshness_by_report(report_seconds))
    by_poll = asyncio.run(freshness_by_polling(poll_minutes))
    print("\n## freshness: from a call's settling to its final state at the handler")
    print(f"{'channel':<22} {'states':>7} {'p50 s':>8} {'p99 s':>8}")
    figures = {}
    for name, ages in (("report (real HTTP)", by_report), ("polling every 60 s", by_poll)):
        p50, p99 = percentile(ages, 0.5), percentile(ages, 0.99)
        figures[f"{name} p50"], figures[f"{name} p99"] = p50, p99
        print(f"{name:<22} {len(ages):>7} {p50:>8.3f} {p99:>8.3f}")
    p50 = figures["report (real HTTP) p50"]
    print(f"by report p50: {p50:.3f} s {verdict(p50 < 1.0, '< 1 s')}")
    return figures


# -- from a report's 200 to the handler ------------------------------------------------------


async def handover_latency(deployment: str, batches_sent: int) -> list[float]:
    """Seconds from each batch's 200 to its reports at the handler, over real HTTP.

    ``"one process"``: `poll --reports-port`'s shape, a receiver that records (uvicorn in
    this process) beside a `LogsPoller` that delivers, on SQLite. ``"workers + poller"``:
    two receiver processes that record into PostgreSQL, and a poller in this process that
    delivers, woken by ``NOTIFY``. Batches of 10 reports, every 20 ms.
    """
    from pg_server import PostgresCluster, free_port
    from process import ReceiverProcess

    fake = FakeInfobip(seed=29)
    fake.add_account("acme")
    answered: dict[str, float] = {}
    handed: dict[str, float] = {}

    async def handler(name: str, items: Sequence[VoiceReport | VoiceLog]) -> None:
        now = time.perf_counter()
        for item in items:
            if item.message_id is not None:
                handed.setdefault(item.message_id, now)

    root = Path(tempfile.mkdtemp(prefix="voicelogs-handover-"))
    cluster = PostgresCluster.start() if deployment == "workers + poller" else None
    workers: list[ReceiverProcess] = []
    serving = contextlib.AsyncExitStack()
    try:
        if cluster is None:
            store: Any = SqliteStore(root / "handover.db")
            receiver = ReportsReceiver({"acme"}, store=store, auth=NoAuth())
            urls = [f"{await serving.enter_async_context(served(receiver))}/acme"]
        else:
            dsn = cluster.create_database("handover")
            store = PostgresStore(dsn)
            env = {"VOICELOGS_STORE": dsn, "VOICELOGS_ACCOUNTS": "acme"}
            env["VOICELOGS_NO_HANDLER"] = "1"
            for n in range(2):
                workers.append(ReceiverProcess(free_port(), env, root / f"worker-{n}.log"))
            for worker in workers:
                worker.wait_ready()
            urls = [f"{worker.url}/acme" for worker in workers]
        account = Account("acme", IN_PROCESS_URL, auth=fake.accounts["acme"].api_key)
        async with (
            store,
            fake.in_process_client() as to_fake,
            LogsPoller([account], store=store, handler=handler, client=to_fake) as poller,
            httpx.AsyncClient(timeout=30.0) as client,
        ):
            polling = asyncio.create_task(poller.run())
            await asyncio.sleep(0.5)  # claimed, listening
            headers = {"content-type": "application/json"}
            for n in range(batches_sent):
                reports = make_reports(10, 7_000_000 + n * 10)
                response = await client.post(
                    urls[n % len(urls)], content=encode_reports(reports, "json"), headers=headers
                )
                response.raise_for_status()
                now = time.perf_counter()
                for report in reports:
                    answered[str(report.message_id)] = now
                await asyncio.sleep(0.02)
            async with asyncio.timeout(30):
                while len(handed) < len(answered):  # noqa: ASYNC110 (the handler fills it)
                    await asyncio.sleep(0.01)
            poller.stop()
            await polling
    finally:
        await serving.aclose()
        for worker in workers:
            worker.stop()
        if cluster is not None:
            cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
    return [max(0.0, handed[m] - answered[m]) for m in answered]


def section_handover(batches_sent: int) -> dict[str, float]:
    from pg_server import missing_reason

    deployments = ["one process"]
    reason = missing_reason()
    if reason is None:
        deployments.append("workers + poller")
    print(
        f"\n## from a report's 200 to the handler ({batches_sent} batches of 10, every 20 ms,"
        " real HTTP)"
    )
    print(f"{'deployment':<36} {'reports':>7} {'p50 s':>8} {'p99 s':>8}")
    figures = {}
    for deployment in deployments:
        ages = asyncio.run(handover_latency(deployment, batches_sent))
        p50, p99 = percentile(ages, 0.5), percentile(ages, 0.99)
        figures[f"{deployment} p50"], figures[f"{deployment} p99"] = p50, p99
        label = {
            "one process": "poll --reports-port (SQLite)",
            "workers + poller": "2 receiver workers + poller (PG)",
        }[deployment]
        print(f"{label:<36} {len(ages):>7} {p50:>8.3f} {p99:>8.3f}")
        met = p50 < 0.5 and p99 < 1.0
        print(f"{label}: {verdict(met, 'p50 < 0.5 s, p99 < 1 s')}")
    if reason is not None:
        print(f"PostgreSQL skipped: {reason}")
    return figures


# -- log requests while reports flow -----------------------------------------------------------


class LoopClock:
    """The fake provider's clock and the poller's: a start plus the virtual loop's time."""

    def __init__(self, start: datetime) -> None:
        self.start = start

    def now(self) -> datetime:
        return self.start + timedelta(seconds=asyncio.get_event_loop().time())


async def log_requests(accounts: int, hours: float, *, reports: bool) -> float:
    """Log requests per account-hour at the fake, polling every 60 s, with the reports of
    every call flowing (`reconcile=10m`) or without any; the first 15 minutes are warm-up."""
    clock = LoopClock(datetime(2026, 12, 1, 8, 0, tzinfo=UTC))
    fake = FakeInfobip(clock=clock, seed=23, rate_limit_per_minute=100_000)
    names = [f"a{i}" for i in range(accounts)]
    for name in names:
        # A call a minute: the count is of requests, and the fake computes every call's
        # life at each step (its `settling` scans the 48 hours), so fewer run faster.
        fake.add_account(name).traffic(1 / 60, settle_after=timedelta(seconds=30))
    root = Path(tempfile.mkdtemp(prefix="voicelogs-recon-"))

    async def handler(name: str, items: Sequence[VoiceLog | VoiceReport]) -> None:
        return None

    warm_up, span = timedelta(minutes=15), timedelta(hours=hours)
    async with (
        SqliteStore(root / "recon.db", clock=clock.now) as store,
        fake.in_process_client() as client,
    ):
        receiver = ReportsReceiver(names, store=store, auth=NoAuth(), clock=clock.now)
        pushers = [
            fake.accounts[n].push_reports(f"http://receiver/{n}", app=receiver) for n in names
        ]
        polled = [
            Account(
                n, IN_PROCESS_URL, auth=fake.accounts[n].api_key, throttle=TokenBucket(1e6, 1000)
            )
            for n in names
        ]
        poller = LogsPoller(
            polled, store=store, handler=handler, client=client, clock=clock.now,
            interval=60, reconcile=timedelta(minutes=10),
        )  # fmt: skip

        async def push() -> None:
            while True:
                for pusher in pushers:
                    await pusher.step()
                await asyncio.sleep(15)

        async with poller:
            pushing = asyncio.create_task(push()) if reports else None
            polling = asyncio.create_task(poller.run())
            await asyncio.sleep((warm_up + span).total_seconds())
            poller.stop()
            await polling
            if pushing is not None:
                pushing.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await pushing
    shutil.rmtree(root, ignore_errors=True)
    since = clock.start + warm_up
    counted = [
        r for r in fake.requests() if r.path == "/tts/3/logs" and since <= r.at < since + span
    ]
    return len(counted) / (accounts * hours)


def section_reconcile(accounts: int, hours: float) -> dict[str, float]:
    figures = {}
    for name, reports in (("reports flowing", True), ("polling alone", False)):
        loop = VirtualTimeLoop()
        try:
            figures[name] = loop.run_until_complete(log_requests(accounts, hours, reports=reports))
        finally:
            loop.close()
    print(
        f"\n## log requests per account-hour, poll interval 60 s, reconcile 10 min "
        f"({accounts} accounts, {hours:g} h after 15 min of warm-up, virtual time, "
        "counted at the fake)"
    )
    for name, rate in figures.items():
        print(f"{name:<16} {rate:>7.2f}")
    ratio = figures["reports flowing"] / figures["polling alone"]
    print(f"ratio flowing/alone: {ratio:.3f} {verdict(ratio <= 0.1, '<= 0.1')}")
    return figures


SECTIONS = ("decode", "receiver", "freshness", "handover", "reconcile")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small smoke run")
    parser.add_argument(
        "--only",
        metavar="SECTIONS",
        help=f"run only these sections, comma-separated: {', '.join(SECTIONS)}",
    )
    args = parser.parse_args()
    only = set(args.only.split(",")) if args.only else set(SECTIONS)
    if only - set(SECTIONS):
        parser.error(f"no section {', '.join(sorted(only - set(SECTIONS)))}")
    rounds, repeat = (3, 5) if args.quick else (10, 10)
    print(
        f"{platform.machine()}, Python {platform.python_version()}, "
        f"pydantic {pydantic.VERSION}, orjson {orjson.__version__}"
    )
    sections: list[tuple[Callable[..., Any], dict[str, Any]]] = [
        (section_decode, {"count": 1_000, "rounds": rounds, "repeat": repeat}),
    ]
    if args.quick:
        sections += [
            (section_receiver, {"rounds": 1, "per_round": 10, "workers": 4}),
            (section_freshness, {"report_seconds": 3.0, "poll_minutes": 3}),
            (section_handover, {"batches_sent": 20}),
            (section_reconcile, {"accounts": 2, "hours": 1}),
        ]
    else:
        sections += [
            (section_receiver, {"rounds": 5, "per_round": 100, "workers": 8}),
            (section_freshness, {"report_seconds": 10.0, "poll_minutes": 10}),
            (section_handover, {"batches_sent": 300}),
            (section_reconcile, {"accounts": 5, "hours": 2}),
        ]
    for section, options in sections:
        if section.__name__.removeprefix("section_") not in only:
            continue
        started = time.perf_counter()
        section(**options)
        print(f"({section.__name__} took {time.perf_counter() - started:.1f} s)")


if __name__ == "__main__":
    main()
