"""The instruments and their in-process state; `infobip_voicelogs.telemetry` is the API.

Counters are plain integers here, read by observable instruments when a reader collects;
gauges read live state (throttles, per-account lag) the same way. Without
``opentelemetry-api`` nothing here touches OpenTelemetry.
"""

from __future__ import annotations

import contextvars
import math
import time
import weakref
from collections.abc import Iterable
from typing import Any

from ..__about__ import __version__

try:
    from opentelemetry import metrics as _metrics
    from opentelemetry import trace as _trace
except ImportError:  # the `otel` extra is not installed: everything below is a no-op
    _metrics = None  # type: ignore[assignment]
    _trace = None  # type: ignore[assignment]

#: The tracing API module, or `None` without the extra.
trace_api: Any = _trace

#: Whether ``opentelemetry-api`` is importable (decided once, at import).
ENABLED = _metrics is not None

NAME = "infobip_voicelogs"
_THROTTLE_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_DECODE_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5)
_CYCLE_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)

#: Whether the ``account`` attribute is recorded (`telemetry.configure`).
account_names = False
#: The account the running task works for (set by a fetcher, `telemetry.account`, a cycle).
ACCOUNT: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "infobip_voicelogs_account", default=None
)

# -- attributes ------------------------------------------------------------------------------

_ATTRS: dict[tuple[Any, ...], dict[str, str]] = {}


def _attrs(*pairs: tuple[str, str | None]) -> dict[str, str]:
    """The attribute dict for these (name, value) pairs, built once per combination."""
    found = _ATTRS.get(pairs)
    if found is None:
        found = _ATTRS[pairs] = {k: v for k, v in pairs if v is not None}
    return found


def _named(name: str | None) -> str | None:
    return name if account_names else None


def status_class(status: int | None) -> str:
    """A status as a low-cardinality label: ``"429"`` stays itself, others become ``"5xx"``...

    >>> status_class(429), status_class(503), status_class(404), status_class(None)
    ('429', '5xx', '4xx', 'transport')
    """
    if status is None:
        return "transport"
    return "429" if status == 429 else f"{status // 100}xx"


# -- counters kept in-process ------------------------------------------------------------------


class _Tally:
    """Counts per attribute set, read by an observable counter at collection time."""

    __slots__ = ("counts",)

    def __init__(self) -> None:
        self.counts: dict[tuple[tuple[str, str | None], ...], float] = {}

    def add(self, key: tuple[tuple[str, str | None], ...], amount: float = 1) -> None:
        counts = self.counts
        counts[key] = counts.get(key, 0) + amount

    def observe(self, _options: Any = None) -> Iterable[Any]:
        # list() copies the items in one step: a reader may collect from another thread.
        items = list(self.counts.items())
        return [_metrics.Observation(value, _attrs(*key)) for key, value in items]


_FETCHES = _Tally()  # by account, outcome, error.type
_ACQUIRED = _Tally()  # throttle slots, one per try
_RATE_LIMITED = _Tally()  # 429 responses
_RETRIES = _Tally()  # by reason
_COOLDOWNS = _Tally()
_PAGES = _Tally()
_LOGS = _Tally()
_DELIVERED = _Tally()  # by kind: new or changed
_LEASES_LOST = _Tally()
_FENCED = _Tally()
_REDIS_FALLBACKS = _Tally()
_REDIS_ERRORS = _Tally()
_REPORT_BATCHES = _Tally()  # accepted report batches
_REPORTS = _Tally()  # reports in accepted batches
_REPORTS_REJECTED = _Tally()  # refused report POSTs, by reason
_REPORTS_LOST = _Tally()  # final states the logs found that no report brought

# Gauges' state: per account (or per throttle) values read at collection time.
# Throttles by id: (weak reference, account name). A plain dict rather than a WeakKeyDictionary,
# whose iteration a reader's thread could see change under it; list(dict.values()) is one step.
_THROTTLES: dict[int, tuple[weakref.ref[Any], str | None]] = {}
# Accounts held here: time.monotonic() of the last cycle that worked (or of the gain).
_LAST_OK: dict[str, float] = {}
_FAILURES: dict[str, int] = {}
_LEASES = [0]


def watch_throttle(bucket: Any, account: str | None = None) -> None:
    """Report ``bucket.rate`` as the adaptive-rate gauge while the bucket lives.

    `TokenBucket` registers itself; a fetcher given ``account=`` names its throttle.
    A bucket that cannot be weakly referenced is skipped.
    """
    if not ENABLED:
        return
    key = id(bucket)
    found = _THROTTLES.get(key)
    if found is not None and found[0]() is bucket:
        if account is not None:
            _THROTTLES[key] = (found[0], account)
        return
    try:
        # The callback runs when the bucket dies, before its id can be reused.
        ref = weakref.ref(bucket, lambda _ref, key=key: _THROTTLES.pop(key, None))  # type: ignore[misc]
    except TypeError:
        return
    _THROTTLES[key] = (ref, account)


def _per_account(values: dict[str, float], pick: Any) -> Iterable[Any]:
    """One observation per account when names are on, else the ``pick`` (min/max) of all."""
    if not values:
        return []
    if account_names:
        return [_metrics.Observation(v, _attrs(("account", k))) for k, v in values.items()]
    return [_metrics.Observation(pick(values.values()))]


def _observe_rates(_options: Any) -> Iterable[Any]:
    named: dict[str, float] = {}
    rates = []
    for ref, name in list(_THROTTLES.values()):
        rate = getattr(ref(), "rate", None)  # gone, or a throttle without a rate: skipped
        if not isinstance(rate, int | float):
            continue
        rates.append(rate)
        if name is not None:
            named[name] = min(rate, named.get(name, math.inf))
    if account_names and named:
        return _per_account(named, min)
    return [_metrics.Observation(min(rates))] if rates else []


def _observe_lag(_options: Any) -> Iterable[Any]:
    now = time.monotonic()
    lags = {k: max(0.0, now - v) for k, v in list(_LAST_OK.items())}
    return _per_account(lags, max)


def _observe_failures(_options: Any) -> Iterable[Any]:
    return _per_account({k: float(v) for k, v in list(_FAILURES.items())}, max)


def _observe_leases(_options: Any) -> Iterable[Any]:
    return [_metrics.Observation(_LEASES[0])]


class _Null:
    """Stands in for a histogram when OpenTelemetry is not installed."""

    def record(self, amount: float, attributes: Any = None) -> None:
        pass


_THROTTLE_WAIT: Any = _Null()
_DECODE_TIME: Any = _Null()
_CYCLE_TIME: Any = _Null()
_TRACER: Any = None

if ENABLED:
    _meter = _metrics.get_meter(NAME, __version__)
    _TRACER = _trace.get_tracer(NAME, __version__)
    _THROTTLE_WAIT = _meter.create_histogram(
        f"{NAME}.throttle.wait",
        unit="s",
        description="Time a try waited for the account's throttle, when it had to wait.",
        explicit_bucket_boundaries_advisory=_THROTTLE_BUCKETS,
    )
    _DECODE_TIME = _meter.create_histogram(
        f"{NAME}.decode.duration",
        unit="s",
        description="Time to decode one page of logs (count: pages decoded).",
        explicit_bucket_boundaries_advisory=_DECODE_BUCKETS,
    )
    _CYCLE_TIME = _meter.create_histogram(
        f"{NAME}.poll.cycle.duration",
        unit="s",
        description="Time one account's poll cycle took, by outcome.",
        explicit_bucket_boundaries_advisory=_CYCLE_BUCKETS,
    )
    for _name, _unit, _tally, _text in (
        ("fetch.outcomes", "{fetch}", _FETCHES, "fetch() calls by outcome and error class."),
        ("throttle.acquired", "{slot}", _ACQUIRED, "Throttle slots taken, one per try."),
        ("rate_limited", "{response}", _RATE_LIMITED, "HTTP 429 responses received."),
        ("retries", "{retry}", _RETRIES, "Tries retried, by reason (429, 5xx, 408, transport)."),
        ("throttle.cooldowns", "{cooldown}", _COOLDOWNS, "Cooldowns started after a 429."),
        ("pages.decoded", "{page}", _PAGES, "Pages of logs decoded."),
        ("logs.decoded", "{log}", _LOGS, "Logs decoded."),
        ("poll.delivered", "{log}", _DELIVERED, "Logs handed to the poller's handler, by kind."),
        ("lease.lost", "{lease}", _LEASES_LOST, "Account leases lost to another process."),
        ("batch.fenced", "{batch}", _FENCED, "Batches refused because the lease was lost."),
        ("redis.fallbacks", "{fallback}", _REDIS_FALLBACKS, "Throttle decisions made locally."),
        ("redis.errors", "{error}", _REDIS_ERRORS, "Errors talking to Redis, by class."),
        ("reports.batches", "{batch}", _REPORT_BATCHES, "Report batches delivered (200)."),
        ("reports.received", "{report}", _REPORTS, "Reports in the batches delivered."),
        ("reports.rejected", "{batch}", _REPORTS_REJECTED, "Report POSTs refused, by reason."),
        ("reports.lost", "{state}", _REPORTS_LOST, "Final states the logs found, no report."),
    ):
        _meter.create_observable_counter(f"{NAME}.{_name}", [_tally.observe], _unit, _text)
    for _name, _unit, _callback, _text in (
        ("throttle.rate", "{request}/s", _observe_rates, "Effective (adaptive) throttle rate."),
        ("poll.lag", "s", _observe_lag, "Since the last cycle that worked."),
        ("poll.consecutive_failures", "{cycle}", _observe_failures, "Failed cycles in a row."),
        ("leases.held", "{lease}", _observe_leases, "Account leases this process holds."),
    ):
        _meter.create_observable_gauge(f"{NAME}.{_name}", [_callback], _unit, _text)

# A span costs microseconds even when it records nothing: start one only once a tracer
# provider is set. The API keeps it in a module global; if a release renames that, trace.
_TRACING_PROBE = _trace is not None and hasattr(_trace, "_TRACER_PROVIDER")


def _tracing() -> bool:
    if not _TRACING_PROBE:
        return _trace is not None
    return _trace._TRACER_PROVIDER is not None


def _event(name: str, attributes: dict[str, Any]) -> None:
    """Add an event to the current span, if one is recording."""
    if _tracing():
        span = _trace.get_current_span()
        if span.is_recording():
            span.add_event(name, attributes)
