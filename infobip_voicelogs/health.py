"""A poller's health, and the small HTTP server behind ``poll --metrics-port``.

```python
async with HealthServer(poller, port=9464) as server:   # 127.0.0.1:9464
    await poller.run()        # GET /healthz -> 200 or 503 (JSON), GET /metrics -> Prometheus
```

`poller_health` is a pure function of `LogsPoller.status()`: an account is late when it has
not been polled within ``late_after`` intervals (counted from the server's start for an
account never polled), unless it is backing off after failures with its next attempt still
on schedule, or another process of the fleet holds it. Once this process's claims have
failed for longer than the lease ttl it polls nothing it can trust, whatever the accounts
say, and the answer is 503 with that reason. `/metrics` serves whatever the
OpenTelemetry Prometheus exporter collects: the application installs it (this module's
`install_prometheus`, or its own SDK set-up); the library itself only uses the API.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Protocol, Self

import attrs
import orjson

from .errors import InfobipError
from .poller import DEFAULT_LEASE_TTL, AccountStatus, LeaseState

__all__ = [
    "DEFAULT_LATE_AFTER",
    "DEFAULT_MAX_CONNECTIONS",
    "Health",
    "HealthServer",
    "install_prometheus",
    "poller_health",
]

#: An account is late once this many intervals passed without a poll.
DEFAULT_LATE_AFTER = 3.0
#: The most a request's head may be, and the seconds a client has to send it.
MAX_REQUEST_BYTES = 8 * 1024
READ_TIMEOUT = 5.0
#: Seconds to write an answer, and for `HealthServer` to stop in all.
WRITE_TIMEOUT = 5.0
STOP_TIMEOUT = 5.0
#: How much of an account's last error the health body quotes.
MAX_ERROR_TEXT = 200
#: Connections served at once; one beyond them is closed at once, unread and unanswered.
DEFAULT_MAX_CONNECTIONS = 16

logger = logging.getLogger("infobip_voicelogs")


class PollerView(Protocol):
    """What the health check reads of a poller (`LogsPoller` is one)."""

    @property
    def interval(self) -> float: ...

    def status(self) -> Mapping[str, AccountStatus]: ...


def _lease_ttl(poller: PollerView) -> float:
    # A view without leases of its own (a test's, an older one) gets the default's judgement.
    ttl = getattr(poller, "lease_ttl", DEFAULT_LEASE_TTL)
    return float(ttl) if isinstance(ttl, int | float) else DEFAULT_LEASE_TTL


def _reconcile(poller: PollerView) -> float | None:
    # A view without reconciliation (a test's, an older one): every account by `interval`.
    reconcile = getattr(poller, "reconcile", None)
    return float(reconcile) if isinstance(reconcile, int | float) else None


@attrs.frozen
class Health:
    """The answer of ``/healthz``: ``status_code`` 200 or 503, and a JSON-ready ``body``."""

    status_code: int
    body: dict[str, Any]

    @property
    def ok(self) -> bool:
        """Whether every account the process holds is on time."""
        return self.status_code == 200


def _error_text(error: Exception | None) -> str | None:
    """The error's type and a short reason: its first line, for the library's own errors.

    Anything else (a handler's exception, a driver's) may carry whatever its author put in
    it, a customer's data or a connection string: the body names its type only, and the
    poller's log has the rest.
    """
    if error is None:
        return None
    name = type(error).__name__
    if not isinstance(error, InfobipError):
        return f"{name} (not the library's: its text is in the log)"
    reason = str(error).strip().split("\n", 1)[0]
    if len(reason) > MAX_ERROR_TEXT:
        reason = reason[: MAX_ERROR_TEXT - 3] + "..."
    return f"{name}: {reason}" if reason else name


def poller_health(
    statuses: Mapping[str, AccountStatus],
    *,
    interval: float,
    started: datetime,
    now: datetime,
    loop_time: float,
    late_after: float = DEFAULT_LATE_AFTER,
    lease_ttl: float = DEFAULT_LEASE_TTL,
    reconcile: float | None = None,
) -> Health:
    """Judge a poller from its accounts' status.

    Args:
        statuses: `LogsPoller.status()`.
        interval: `LogsPoller.interval`, in seconds.
        started: When the poller started (an account never polled counts from here).
        now: The time now, on the poller's clock (aware).
        loop_time: The event loop's time now (`next_due` is on that clock).
        late_after: How many intervals may pass without a poll.
        lease_ttl: `LogsPoller.lease_ttl`: how long claims may fail before it is unhealthy.
        reconcile: `LogsPoller.reconcile`: an account whose delivery reports flow
            (`AccountStatus.reports_flowing`) is polled that often, and judged by it.

    An account is ``ok`` when polled within ``late_after * interval`` (``late_after *
    reconcile`` while its reports flow); ``backing_off`` when
    its last cycles failed and its next attempt is not overdue by more than that; ``elsewhere``
    when another live process holds it (never late); ``unknown`` when no claim has answered
    lately (`LeaseState.UNKNOWN`); ``late`` otherwise. Any late account makes the answer 503,
    and so do claims failing for longer than ``lease_ttl`` (``claims`` in the body says
    since when); the body names each late and backing-off account and why.

    >>> from datetime import timedelta
    >>> t0 = datetime(2026, 1, 1, tzinfo=UTC)
    >>> fresh = AccountStatus(cycles=1, last_polled=t0)
    >>> poller_health({"a": fresh}, interval=60, started=t0, now=t0, loop_time=0).status_code
    200
    >>> later = t0 + timedelta(minutes=10)
    >>> poller_health({"a": fresh}, interval=60, started=t0, now=later, loop_time=600).body["late"]
    {'a': 'not polled for 600 s (limit 180 s)'}
    """
    limit = late_after * interval
    late: dict[str, str] = {}
    backing_off: dict[str, dict[str, Any]] = {}
    counts = {"ok": 0, "backing_off": 0, "elsewhere": 0, "unknown": 0, "late": 0}
    failing_since: datetime | None = None
    for name, status in statuses.items():
        if status.lease is not LeaseState.HELD:
            counts[status.lease.value] += 1
            since = status.claims_failing_since
            if since is not None and (failing_since is None or since < failing_since):
                failing_since = since
            continue
        if status.consecutive_failures > 0:
            overdue = loop_time - status.next_due
            detail = {
                "consecutive_failures": status.consecutive_failures,
                "last_error": _error_text(status.last_error),
                "next_attempt_in": round(max(0.0, -overdue), 3),
            }
            if overdue <= limit:
                counts["backing_off"] += 1
                backing_off[name] = detail
                continue
            late[name] = (
                f"next attempt overdue by {overdue:.0f} s after "
                f"{status.consecutive_failures} failed cycles ({detail['last_error']})"
            )
            counts["late"] += 1
            continue
        since = status.last_polled or started
        idle = (now - since).total_seconds()
        # While its reports flow, an account is polled every `reconcile`, on purpose.
        allowed = late_after * reconcile if status.reports_flowing and reconcile else limit
        if idle <= allowed:
            counts["ok"] += 1
            continue
        what = "not polled" if status.last_polled is not None else "never polled since start"
        late[name] = f"{what} for {idle:.0f} s (limit {allowed:.0f} s)"
        counts["late"] += 1
    claims = _claims_failing(failing_since, now=now, lease_ttl=lease_ttl)
    verdict = "claims_failing" if claims is not None else "late" if late else "ok"
    body: dict[str, Any] = {
        "status": verdict,
        "interval": interval,
        "late_after_seconds": limit,
        "accounts": counts,
        "late": late,
        "backing_off": backing_off,
    }
    if claims is not None:
        body["claims"] = claims
    return Health(503 if verdict != "ok" else 200, body)


def _claims_failing(since: datetime | None, *, now: datetime, lease_ttl: float) -> str | None:
    """The reason to answer 503 when claims have failed longer than a lease lasts, or None."""
    if since is None:
        return None
    failing = (now - since).total_seconds()
    if failing <= lease_ttl:
        return None  # the leases held may still be trusted, and the next claim may work
    return (
        f"claiming leases has failed for {failing:.0f} s, longer than the lease ttl"
        f" ({lease_ttl:g} s): no account is polled here (the store is unreachable, or"
        " another poller holds its SQLite file; the poller's log has the claims' error)"
    )


# -- Prometheus ----------------------------------------------------------------------------


def install_prometheus() -> None:
    """Install an OpenTelemetry SDK `MeterProvider` exporting to Prometheus, process-wide.

    For applications (the CLI's ``poll --metrics-port``), never the library: it needs the
    ``metrics`` extra and raises `RuntimeError` naming it when missing. A second call, or a
    provider already installed elsewhere, leaves things as they are.
    """
    try:
        from opentelemetry import metrics
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from opentelemetry.sdk.metrics import MeterProvider
    except ImportError as exc:
        raise RuntimeError(
            "serving /metrics needs the metrics extra: pip install 'infobip-voicelogs[metrics]'"
        ) from exc
    global _installed
    if _installed:
        return
    _installed = True
    metrics.set_meter_provider(MeterProvider(metric_readers=[PrometheusMetricReader()]))


_installed = False


def _prometheus_text() -> tuple[int, bytes, str]:
    try:
        from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
    except ImportError:
        text = b"metrics need: pip install 'infobip-voicelogs[metrics]'\n"
        return 501, text, "text/plain; charset=utf-8"
    return 200, generate_latest(REGISTRY), CONTENT_TYPE_LATEST


# -- the server ----------------------------------------------------------------------------

_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed"}
_REASONS |= {431: "Request Header Fields Too Large", 501: "Not Implemented"}
_REASONS |= {503: "Service Unavailable"}


class HealthServer:
    """Serves ``/healthz`` and ``/metrics`` for one poller, as an async context manager.

    Args:
        poller: What to judge (`LogsPoller`).
        host: The address to bind: loopback unless told otherwise.
        port: The TCP port; 0 picks a free one (see `port`).
        late_after: Intervals an account may go without a poll (see `poller_health`).
        clock: "Now" as an aware datetime, on the poller's clock (default: real UTC time).
        max_connections: Connections served at once (see below).

    Entering binds and starts serving; leaving stops accepting, cancels the requests in
    flight and returns within `STOP_TIMEOUT` seconds. Each request may send at most
    `MAX_REQUEST_BYTES` of head within `READ_TIMEOUT` seconds; each connection answers one
    request and closes. At most ``max_connections`` are served at once: one more is closed
    at once, nothing of it read and nothing answered (a probe counts that as a failure).
    """

    def __init__(
        self,
        poller: PollerView,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        late_after: float = DEFAULT_LATE_AFTER,
        clock: Callable[[], datetime] | None = None,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
    ) -> None:
        if not late_after > 0:
            raise ValueError(f"late_after must be > 0 intervals, not {late_after!r}")
        if max_connections < 1:
            raise ValueError(f"max_connections must be >= 1, not {max_connections!r}")
        self._max_connections = max_connections
        self._poller = poller
        self._host = host
        self._port = port
        self._late_after = late_after
        self._clock = clock or (lambda: datetime.now(UTC))
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[Any]] = set()
        self._started = self._clock()

    @property
    def port(self) -> int:
        """The port bound (useful with ``port=0``)."""
        if self._server is None:
            raise RuntimeError("the server is not running")
        return int(self._server.sockets[0].getsockname()[1])

    def health(self) -> Health:
        """The poller's health now."""
        return poller_health(
            self._poller.status(),
            interval=self._poller.interval,
            started=self._started,
            now=self._clock(),
            loop_time=asyncio.get_running_loop().time(),
            late_after=self._late_after,
            lease_ttl=_lease_ttl(self._poller),
            reconcile=_reconcile(self._poller),
        )

    async def __aenter__(self) -> Self:
        self._started = self._clock()
        self._server = await asyncio.start_server(
            self._handle, self._host, self._port, limit=MAX_REQUEST_BYTES
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for task in list(self._handlers):
            task.cancel()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(STOP_TIMEOUT):
                await asyncio.gather(*self._handlers, return_exceptions=True)
                await server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        if len(self._handlers) >= self._max_connections:
            writer.transport.abort()  # no answer: writing one could wait on a client
            return
        self._handlers.add(task)
        try:
            status, body, content_type = await self._answer(reader)
            head = (
                f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
                f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
                "Cache-Control: no-store\r\nConnection: close\r\n\r\n"
            )
            writer.write(head.encode("ascii") + body)
            async with asyncio.timeout(WRITE_TIMEOUT):
                await writer.drain()
        except (ConnectionError, TimeoutError):
            pass  # the client went away or stalled: nothing to tell it
        except Exception:
            logger.exception("the health server failed to answer a request")
        finally:
            self._handlers.discard(task)
            writer.close()

    async def _answer(self, reader: asyncio.StreamReader) -> tuple[int, bytes, str]:
        text = "text/plain; charset=utf-8"
        try:
            async with asyncio.timeout(READ_TIMEOUT):
                head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError:
            return 431, b"request head too large\n", text
        except (asyncio.IncompleteReadError, TimeoutError):
            return 400, b"incomplete request\n", text
        parts = head.split(b"\r\n", 1)[0].split(b" ")
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
            return 400, b"bad request line\n", text
        method, target = parts[0], parts[1].split(b"?", 1)[0]
        if target not in (b"/healthz", b"/metrics"):
            return 404, b"try /healthz or /metrics\n", text
        if method != b"GET":
            return 405, b"GET only\n", text
        if target == b"/metrics":
            # Collecting thousands of series takes a while: off the loop the pollers run on.
            return await asyncio.to_thread(_prometheus_text)
        health = self.health()
        return health.status_code, orjson.dumps(health.body), "application/json"
