"""`infobip-voicelogs poll`: many accounts from a TOML file into a store, until Ctrl-C."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import io
import logging
import os
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import aclosing, suppress
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.live import Live
from rich.markup import escape

from ..codec import encode_ndjson
from ..connections import poller_client
from ..errors import StoreError
from ..health import DEFAULT_LATE_AFTER, HealthServer, install_prometheus
from ..models import VoiceLog
from ..poller import DEFAULT_RECONCILE, DEFAULT_SHUTDOWN_GRACE, Account, LogsPoller
from ..reports import (
    ReportsAuth,
    ReportsReceiver,
    VoiceReport,
    encode_reports_ndjson,
)
from ..store import InboxStore
from .backends import SharedRates, StoreSpec, check_redis_url, open_store, parse_store
from .common import fail, parse_span, run, stderr
from .config import ConfigError, load_accounts
from .live import status_table
from .output import BackgroundWriter, LogWriter, OutputFormat, opening_with
from .reports import ROUTE, as_log, reports_auth
from .reports import serving as serving_reports

__all__ = ["EPILOG", "SERVICE_NAME", "poll"]

#: The OpenTelemetry `service.name` of the metrics `poll --metrics-port` serves.
SERVICE_NAME = "infobip-voicelogs"
#: The garbage collector's first-generation threshold while `poll` runs (CPython's is 700).
GC_THRESHOLD = 20_000

T = TypeVar("T")

#: The end of `poll --help`: the accounts file's format (click keeps a `\b` paragraph as is).
EPILOG = """\b
The accounts file (TOML), one [[account]] table per account:
  [[account]]
  name = "eu-1"
  base_url = "https://xyz.api.infobip.com"
  api_key_env = "INFOBIP_EU1_KEY"  # or api_key = "..." (keep it private)
  format = "json"                   # optional: json or xml
  rate = 2.0                        # optional: requests per second
  allow_insecure = false            # optional: http:// to a remote host
"""


def poll(
    ctx: typer.Context,
    accounts_file: Path = typer.Option(
        ...,
        "--accounts",
        "-a",
        help="TOML file with one [[account]] table per account (format below).",
    ),
    store_spec: str = typer.Option(
        "voicelogs.db",
        "--store",
        envvar="INFOBIP_STORE_URL",
        help="A SQLite file, or a PostgreSQL database that a fleet of poll processes shares: "
        "a postgresql:// URL or a libpq string like 'host=db dbname=voicelogs'.",
    ),
    redis_url: str | None = typer.Option(
        None,
        "--redis",
        envvar="INFOBIP_REDIS_URL",
        help="Share each account's rate limit with every process using this Redis "
        "(redis://, rediss:// or unix://).",
        show_default=False,
    ),
    archive: bool = typer.Option(
        True, "--archive/--no-archive", help="Keep every log's last state."
    ),
    interval: str = typer.Option("60s", help="Time between an account's cycles."),
    backfill: str = typer.Option("48h", help="How far back the first cycle reaches."),
    revisit: str = typer.Option("1h", help="How far back each cycle looks again for changes."),
    once: bool = typer.Option(False, "--once", help="One cycle, then exit."),
    output: OutputFormat = typer.Option(
        OutputFormat.auto,
        "--format",
        help="Also print delivered logs: auto = NDJSON when piped, nothing on a terminal.",
    ),
    live: bool = typer.Option(True, "--live/--no-live", help="Draw the live table on stderr."),
    grace: float = typer.Option(
        DEFAULT_SHUTDOWN_GRACE,
        "--grace",
        min=0,
        help="Seconds a shutdown gives the cycles in flight to finish before cancelling them.",
    ),
    metrics_port: int | None = typer.Option(
        None,
        "--metrics-port",
        min=0,
        max=65535,
        help="Serve /metrics (Prometheus) and /healthz on this port (needs the metrics extra).",
    ),
    metrics_host: str = typer.Option(
        "127.0.0.1", "--metrics-host", help="The address /metrics and /healthz listen on."
    ),
    late_after: float = typer.Option(
        DEFAULT_LATE_AFTER,
        "--late-after",
        min=0.1,
        help="/healthz answers 503 when an account went this many intervals without a poll.",
    ),
    keepalive: bool = typer.Option(
        True,
        "--keepalive/--no-keepalive",
        help="Keep each account's connection open between cycles (off: a TLS handshake per "
        "request, no memory held per account).",
    ),
    reports_port: int | None = typer.Option(
        None,
        "--reports-port",
        min=0,
        max=65535,
        help="Also receive the provider's delivery reports on this port (0: any free one) "
        "at POST /reports/{account}, the account's name in the accounts file.",
        show_default=False,
    ),
    reports_host: str = typer.Option(
        "127.0.0.1", "--reports-host", help="The address the reports receiver listens on."
    ),
    reports_user: str | None = typer.Option(
        None,
        "--reports-user",
        help="Reports authenticate with HTTP Basic: this user, the password from "
        "INFOBIP_REPORTS_PASSWORD.",
        show_default=False,
    ),
    reports_hmac_header: str | None = typer.Option(
        None,
        "--reports-hmac-header",
        help="Reports authenticate with an HMAC of the body in this header, the secret "
        "from INFOBIP_REPORTS_SECRET.",
        show_default=False,
    ),
    reports_hmac_alg: str = typer.Option(
        "sha256", "--reports-hmac-alg", help="The HMAC's algorithm (sha1, sha256, sha512...)."
    ),
    reports_no_auth: bool = typer.Option(
        False,
        "--reports-no-auth",
        help="Reports need no authentication (only behind something that checks them).",
    ),
    reconcile: str = typer.Option(
        f"{DEFAULT_RECONCILE / 60:g}m",
        "--reconcile",
        help="Time between an account's cycles while its reports flow (the logs then "
        "only find what the reports lost).",
    ),
) -> None:
    """Poll many accounts: every new log and every change, once, into the store."""
    plan = _Plan(
        store=_parsed(lambda: parse_store(store_spec)),
        redis_url=_redis(redis_url),
        accounts=_parsed(lambda: load_accounts(accounts_file)),
        archive=archive,
        spans=_spans(interval=interval, backfill=backfill, revisit=revisit, reconcile=reconcile),
        once=once,
        live=live,
        grace=grace,
        keepalive=keepalive,
        metrics=None if metrics_port is None else (metrics_host, metrics_port, late_after),
        reports=_reports_plan(
            reports_host,
            reports_port,
            user=reports_user,
            hmac_header=reports_hmac_header,
            hmac_alg=reports_hmac_alg,
            no_auth=reports_no_auth,
        ),
    )
    delivery = _Delivery(_output(output))
    shutdown = _Shutdown(once=once)
    if plan.metrics is not None:
        _install_metrics()
    # A `--once` run makes no next attempt, nor does one stopping on a signal: their
    # failures (a cycle cut by the shutdown) are logged without announcing one.
    with _without_next_attempt(lambda: once or shutdown.signal is not None):
        run(_main(plan, delivery, shutdown), ctx)


# -- the plan: the options, parsed and checked -----------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Spans:
    """The command's spans of time, in seconds."""

    interval: float
    backfill: float
    revisit: float
    reconcile: float


@dataclasses.dataclass(frozen=True)
class _ReportsPlan:
    """Where and how the delivery reports' receiver listens."""

    host: str
    port: int
    auth: ReportsAuth


@dataclasses.dataclass(frozen=True)
class _Plan:
    """What one `poll` run does: its options, parsed and checked."""

    store: StoreSpec
    accounts: list[Account]
    redis_url: str | None
    archive: bool
    spans: _Spans
    once: bool
    live: bool
    grace: float
    keepalive: bool
    #: ``(host, port, late_after)`` of /metrics and /healthz, if served.
    metrics: tuple[str, int, float] | None
    reports: _ReportsPlan | None


def _parsed(parse: Callable[[], T]) -> T:
    """What `parse` returns; its `ValueError` (a `ConfigError` too) is one line and exit 2."""
    try:
        return parse()
    except (ValueError, ConfigError) as exc:  # ConfigError is one too; named for the reader
        fail(str(exc))


def _redis(url: str | None) -> str | None:
    """`--redis`, checked; `None` when the rates are not shared."""
    if not url:
        return None
    _parsed(lambda: check_redis_url(url))
    return url


def _spans(*, interval: str, backfill: str, revisit: str, reconcile: str) -> _Spans:
    spans = _Spans(
        interval=parse_span(interval, option="--interval").total_seconds(),
        backfill=parse_span(backfill, option="--backfill").total_seconds(),
        revisit=parse_span(revisit, option="--revisit").total_seconds(),
        reconcile=parse_span(reconcile, option="--reconcile").total_seconds(),
    )
    if min(spans.interval, spans.backfill, spans.reconcile) <= 0:
        fail("--interval, --backfill and --reconcile must be positive")
    if spans.revisit < 0:
        fail("--revisit cannot be negative")
    return spans


def _reports_plan(
    host: str,
    port: int | None,
    *,
    user: str | None,
    hmac_header: str | None,
    hmac_alg: str,
    no_auth: bool,
) -> _ReportsPlan | None:
    auth = _reports_auth(
        port, user=user, hmac_header=hmac_header, hmac_alg=hmac_alg, no_auth=no_auth
    )
    if auth is None:
        return None
    assert port is not None
    return _ReportsPlan(host, port, auth)


def _output(output: OutputFormat) -> _Output | None:
    """Where delivered states are printed: stdout unless `auto` on a terminal."""
    if output is OutputFormat.auto and sys.stdout.isatty():
        return None
    return _Output(OutputFormat.ndjson if output is OutputFormat.auto else output)


def _install_metrics() -> None:
    # The SDK's resource reads it as the provider is made: a user's own name wins.
    os.environ.setdefault("OTEL_SERVICE_NAME", SERVICE_NAME)
    try:
        install_prometheus()
    except RuntimeError as exc:
        fail(str(exc))


# -- the run: poll until stopped, then say what was delivered --------------------------------


class _Delivery:
    """The handler of both sources (each item says its own, `item.source`): prints the
    states, if asked, and counts them."""

    def __init__(self, out: _Output | None) -> None:
        self.out = out
        self.delivered = {"log": 0, "report": 0}

    async def __call__(self, account: str, items: Sequence[VoiceLog | VoiceReport]) -> None:
        if self.out is not None:
            await self.out.write(account, items)
        for item in items:
            self.delivered[item.source] += 1

    def text(self, reports: bool) -> str:
        if not reports:
            return f"{self.delivered['log']} logs delivered"
        return f"{self.delivered['log']} logs and {self.delivered['report']} reports delivered"


async def _main(plan: _Plan, delivery: _Delivery, shutdown: _Shutdown) -> None:
    try:
        poller = await _poll_until_stopped(plan, delivery, shutdown)
    except asyncio.CancelledError:
        if shutdown.signal is None:
            raise
        poller = None  # cancelled by a second signal: the store is closed all the same
    finally:
        if delivery.out is not None:
            delivery.out.close()
    # The store's name is the user's text, not markup: `logs[1].db` prints as it is.
    stderr.print(
        f"\nstopped; {delivery.text(plan.reports is not None)}; store {escape(plan.store.shown)}"
    )
    if shutdown.signal is not None:
        raise typer.Exit(128 + shutdown.signal)  # 130 for SIGINT, 143 for SIGTERM
    assert poller is not None
    failing = [name for name, s in poller.status().items() if s.consecutive_failures]
    if plan.once and failing:
        fail(f"accounts failing: {', '.join(sorted(failing))}", 4)


async def _poll_until_stopped(plan: _Plan, delivery: _Delivery, shutdown: _Shutdown) -> LogsPoller:
    """Poll the accounts, their rates shared through Redis when asked."""
    shared = SharedRates(plan.redis_url) if plan.redis_url else None
    try:
        accounts = shared.share(plan.accounts) if shared else plan.accounts
        return await _poll_accounts(plan, accounts, delivery, shutdown)
    finally:
        if shared is not None:
            await shared.aclose()


async def _poll_accounts(
    plan: _Plan, accounts: list[Account], handler: _Delivery, shutdown: _Shutdown
) -> LogsPoller:
    """Open the store, poll the accounts, and serve beside them what was asked for."""
    # Without keep-alive the client is ours to close; with it the poller makes its own.
    urls = [account.base_url for account in accounts]
    client = None if plan.keepalive else poller_client(urls, max_connections=200, keepalive=0)
    spans = plan.spans
    async with (
        aclosing(open_store(plan.store, archive=plan.archive)) as store,
        client if client is not None else contextlib.nullcontext(),
        LogsPoller(
            accounts,
            store=store,
            handler=handler,
            client=client,
            interval=spans.interval,
            backfill=timedelta(seconds=spans.backfill),
            revisit=timedelta(seconds=spans.revisit),
            reconcile=spans.reconcile,
            shutdown_grace=plan.grace,
        ) as poller,
    ):
        try:
            await store.checkpoint(accounts[0].name)  # one that cannot open: a usage error
        except StoreError as exc:
            fail(str(exc))
        shutdown.install(poller, asyncio.current_task())
        async with contextlib.AsyncExitStack() as serving:
            if plan.metrics is not None:
                await _serve_metrics(serving, poller, *plan.metrics)
            if plan.reports is not None:
                receiver = _receiver(accounts, store, plan.reports.auth)
                await _serve_reports(serving, receiver, plan.reports, plan.grace, shutdown)
            await _poll(poller, once=plan.once, live=plan.live, reports=plan.reports is not None)
    return poller


async def _serve_metrics(
    serving: contextlib.AsyncExitStack, poller: LogsPoller, host: str, port: int, late: float
) -> None:
    """Serve /metrics and /healthz while `serving` is open."""
    health = HealthServer(poller, host=host, port=port, late_after=late)
    try:
        await serving.enter_async_context(health)
    except OSError as exc:
        fail(f"cannot serve /metrics on {host}:{port}: {exc}")
    stderr.print(f"/metrics and /healthz on http://{host}:{health.port}")


async def _serve_reports(
    serving: contextlib.AsyncExitStack,
    receiver: ReportsReceiver,
    plan: _ReportsPlan,
    grace: float,
    shutdown: _Shutdown,
) -> None:
    """Serve the reports receiver while `serving` is open; it stops with the poller."""
    try:
        served = await serving.enter_async_context(
            serving_reports(receiver, host=plan.host, port=plan.port, grace=grace)
        )
    except OSError as exc:
        fail(f"cannot serve reports on {plan.host}:{plan.port}: {exc}")
    shutdown.also(served.stop)  # drains beside the poller, in its grace
    stderr.print(f"delivery reports on POST {served.url}{ROUTE}/{{account}}")


def _reports_auth(
    port: int | None, *, user: str | None, hmac_header: str | None, hmac_alg: str, no_auth: bool
) -> ReportsAuth | None:
    """The receiver's authentication, or `None` when no reports are served (no port)."""
    if port is None:
        if user is not None or hmac_header is not None or no_auth:
            fail("--reports-user, --reports-hmac-header and --reports-no-auth need --reports-port")
        return None
    try:
        return reports_auth(
            user=user,
            hmac_header=hmac_header,
            hmac_alg=hmac_alg,
            no_auth=no_auth,
            environ=os.environ,
        )
    except ValueError as exc:  # its message names options and variables, never a secret
        fail(str(exc))


def _receiver(accounts: list[Account], store: object, auth: ReportsAuth) -> ReportsReceiver:
    """The receiver into the poller's store: it records each batch, the poller delivers it."""
    if not isinstance(store, InboxStore):
        fail(f"{type(store).__name__} keeps no delivery reports: use SQLite or PostgreSQL")
    names = [account.name for account in accounts]
    return ReportsReceiver(names, store=store, auth=auth, prefix=ROUTE)


@contextlib.contextmanager
def _without_next_attempt(when: Callable[[], bool]) -> Iterator[None]:
    """The poller's "cycle failed (...); next attempt in N s", without its last clause
    while `when()` is true."""
    clause = "; next attempt in %.0f s"

    def trim(record: logging.LogRecord) -> bool:
        if not when():
            return True
        if isinstance(record.msg, str) and record.msg.endswith(clause) and record.args:
            record.msg = record.msg.removesuffix(clause)
            record.args = tuple(record.args)[:-1]
        return True

    handlers = logging.getLogger().handlers
    for handler in handlers:
        handler.addFilter(trim)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(trim)


class _Output:
    """The delivered logs on stdout: NDJSON lines name their account.

    Written from a thread of its own (`BackgroundWriter`) when stdout is a real file, so
    a reader that stops reading stalls only the handler, which a shutdown then cancels
    after its grace; its batch stays uncommitted and is printed again by the next run.
    """

    def __init__(self, fmt: OutputFormat) -> None:
        self._format = fmt
        self._text = io.StringIO()
        self._writer = LogWriter(fmt, stream=self._text)
        try:
            fd = sys.stdout.fileno()
        except (OSError, ValueError):  # captured (tests, notebooks): write to it directly
            self._background = None
        else:
            sys.stdout.flush()
            self._background = BackgroundWriter(fd)

    async def write(self, account: str, items: Sequence[VoiceLog | VoiceReport]) -> None:
        if self._format is OutputFormat.ndjson:
            data = _ndjson_of(account, items)
        else:
            self._writer.write([as_log(item) for item in items], title=account)
            data = self._text.getvalue().encode()
            self._text.seek(0)
            self._text.truncate()
        if self._background is not None:
            await self._background.write(data)
        else:
            sys.stdout.write(data.decode())
            sys.stdout.flush()

    def close(self) -> None:
        if self._background is not None:
            self._background.close()


def _ndjson_of(account: str, items: Sequence[VoiceLog | VoiceReport]) -> bytes:
    """NDJSON in the provider's shape, each line opening with ``"account"`` and ``"source"``.

    A handler call carries one source's items: the poller's logs or one report batch. Both
    write a field alike in every line (a price is a JSON number, as the provider sends it).
    """
    logs = [item for item in items if isinstance(item, VoiceLog)]
    reports = [item for item in items if isinstance(item, VoiceReport)]
    return opening_with({"account": account, "source": "log"}, encode_ndjson(logs)) + opening_with(
        {"account": account, "source": "report"}, encode_reports_ndjson(reports)
    )


class _Shutdown:
    """Ctrl-C and SIGTERM. The first stops the poller: cycles in flight get the grace to
    finish (`--once`: its cycle is cancelled, and a handler call in flight gets the grace).
    The second cancels at once. The process then exits with 128 + the first signal's number.
    """

    def __init__(self, *, once: bool) -> None:
        self._once = once
        self.signal: int | None = None
        self._count = 0
        self._poller: LogsPoller | None = None
        self._task: asyncio.Task[Any] | None = None
        self._also: list[Callable[[], None]] = []

    def also(self, stop: Callable[[], None]) -> None:
        """Call `stop` too on the first signal (the reports receiver stops accepting)."""
        self._also.append(stop)

    def install(self, poller: LogsPoller, task: asyncio.Task[Any] | None) -> None:
        self._poller, self._task = poller, task
        loop = asyncio.get_running_loop()
        with suppress(NotImplementedError):  # no signal handlers on this platform's loop
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(signum, self._on_signal, signum)

    def _on_signal(self, signum: int) -> None:
        self._count += 1
        if self.signal is None:
            self.signal = signum
        assert self._poller is not None
        if self._count == 1 and not self._once:
            stderr.print(
                f"\nstopping: the cycles in flight get {self._poller.shutdown_grace:g} s"
                " to finish (again to cancel them now)"
            )
            self._poller.stop()
            for stop in self._also:
                stop()
        elif self._task is not None:
            self._task.cancel()


@contextlib.contextmanager
def _polling_gc() -> Iterator[None]:
    """Collect less often while polling; the process's own settings come back afterwards.

    Every account's request in flight is a few dozen live objects (coroutines, futures,
    httpx and httpcore state), and each young collection walks all of them again. A larger
    threshold walks them less often, for at most that many more objects of cyclic garbage
    at a time (docs/performance.md says what the walk costs a quiet cycle). What startup
    made (modules, the accounts, the store) is frozen out of every collection: it lives as
    long as the process.
    """
    before = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(max(GC_THRESHOLD, before[0]), *before[1:])
    try:
        yield
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()


async def _poll(poller: LogsPoller, *, once: bool, live: bool, reports: bool) -> None:
    with _polling_gc():
        await _poll_now(poller, once=once, live=live, reports=reports)


async def _poll_now(poller: LogsPoller, *, once: bool, live: bool, reports: bool) -> None:
    polling = poller.run_once() if once else poller.run()
    if not live:
        await polling
        return
    table = status_table(poller, reports=reports)
    with Live(table, console=stderr, auto_refresh=False) as screen:
        refresher = asyncio.create_task(_refresh(screen, poller, reports))
        try:
            await polling
        finally:
            refresher.cancel()
            screen.update(status_table(poller, reports=reports), refresh=True)


async def _refresh(screen: Live, poller: LogsPoller, reports: bool) -> None:
    while True:
        screen.update(status_table(poller, reports=reports), refresh=True)
        await asyncio.sleep(1.0)
