"""OpenTelemetry metrics and spans for the library, behind the optional ``otel`` extra.

```python
from infobip_voicelogs import telemetry
telemetry.configure(account_names=True)   # opt in to the `account` attribute (default: off)
# ...then install an OpenTelemetry SDK MeterProvider / TracerProvider as usual.
```

The library depends on ``opentelemetry-api`` only, and only when it is installed: without it
every function here is a no-op chosen once at import. With the API but no provider set, the
instruments are the API's no-op proxies and no span is started. The application chooses the
SDK and its exporters (see docs/observability.md, which lists every instrument).

Counters are kept as plain integers in this process and read by observable instruments when
a reader collects, so a request pays a dictionary increment for them; only the two
histograms (throttle wait, decode time) are recorded synchronously.

The functions in the last sections are for the poller, the fleet's leases and the Redis
bucket; each is safe to call whether or not OpenTelemetry is installed.
"""

from __future__ import annotations

import contextvars
import math
import weakref
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

from .__about__ import __version__

try:
    from opentelemetry import metrics as _metrics
    from opentelemetry import trace as _trace
except ImportError:  # the `otel` extra is not installed: everything below is a no-op
    _metrics = None  # type: ignore[assignment]
    _trace = None  # type: ignore[assignment]

__all__ = [
    "ENABLED",
    "account",
    "batch_fenced",
    "configure",
    "current_account",
    "cycle_span",
    "lease_lost",
    "leases_held",
    "record_cycle",
    "redis_error",
    "redis_fallback",
    "watch_throttle",
]

#: Whether ``opentelemetry-api`` is importable (decided once, at import).
ENABLED = _metrics is not None

NAME = "infobip_voicelogs"
_THROTTLE_BUCKETS = (0.0, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_DECODE_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5)
_CYCLE_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)

_account_names = False
_ACCOUNT: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "infobip_voicelogs_account", default=None
)


def configure(*, account_names: bool = False) -> None:
    """Set what the instruments record.

    Args:
        account_names: Add the account's name as the ``account`` attribute of every
            measurement and span (off by default: with thousands of accounts it multiplies
            every series by thousands). A fetcher's name is its ``account=`` argument, or
            the one set by `account` / the poller around the call.
    """
    global _account_names
    _account_names = bool(account_names)


def current_account() -> str | None:
    """The account name set for the running task (by `account`, a fetcher or the poller)."""
    return _ACCOUNT.get()


@contextmanager
def account(name: str) -> Iterator[None]:
    """Attribute the fetches, retries and logs inside the block to account ``name``.

    ```python
    with telemetry.account("eu-shop"):
        await fetcher.fetch()
    ```
    """
    token = _ACCOUNT.set(name)
    try:
        yield
    finally:
        _ACCOUNT.reset(token)


# -- attributes ------------------------------------------------------------------------------

_ATTRS: dict[tuple[Any, ...], dict[str, str]] = {}


def _attrs(*pairs: tuple[str, str | None]) -> dict[str, str]:
    """The attribute dict for these (name, value) pairs, built once per combination."""
    found = _ATTRS.get(pairs)
    if found is None:
        found = _ATTRS[pairs] = {k: v for k, v in pairs if v is not None}
    return found


def _named(name: str | None) -> str | None:
    return name if _account_names else None


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

# Gauges' state: per account (or per throttle) values read at collection time.
_THROTTLES: weakref.WeakKeyDictionary[Any, str | None] = weakref.WeakKeyDictionary()
_NEWEST: dict[str, datetime] = {}
_FAILURES: dict[str, int] = {}
_LEASES = [0]


def watch_throttle(bucket: Any, account: str | None = None) -> None:
    """Report ``bucket.rate`` as the adaptive-rate gauge while the bucket lives.

    `TokenBucket` registers itself; a fetcher given ``account=`` names its throttle.
    A bucket that cannot be weakly referenced is skipped.
    """
    if not ENABLED:
        return
    try:
        if account is not None or bucket not in _THROTTLES:
            _THROTTLES[bucket] = account
    except TypeError:
        pass


def _per_account(values: dict[str, float], pick: Any) -> Iterable[Any]:
    """One observation per account when names are on, else the ``pick`` (min/max) of all."""
    if not values:
        return []
    if _account_names:
        return [_metrics.Observation(v, _attrs(("account", k))) for k, v in values.items()]
    return [_metrics.Observation(pick(values.values()))]


def _observe_rates(_options: Any) -> Iterable[Any]:
    named: dict[str, float] = {}
    rates = []
    for bucket, name in list(_THROTTLES.items()):
        rate = float(bucket.rate)
        rates.append(rate)
        if name is not None:
            named[name] = min(rate, named.get(name, math.inf))
    if _account_names and named:
        return _per_account(named, min)
    return [_metrics.Observation(min(rates))] if rates else []


def _observe_lag(_options: Any) -> Iterable[Any]:
    now = datetime.now(UTC)
    lags = {k: max(0.0, (now - v).total_seconds()) for k, v in list(_NEWEST.items())}
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
        description="Time each try waited for the account's throttle (0 when a slot was free).",
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
    ):
        _meter.create_observable_counter(f"{NAME}.{_name}", [_tally.observe], _unit, _text)
    for _name, _unit, _callback, _text in (
        ("throttle.rate", "{request}/s", _observe_rates, "Effective (adaptive) throttle rate."),
        ("poll.lag", "s", _observe_lag, "Now minus the newest delivered log's sentAt."),
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


# -- the fetcher, retry and throttle side ------------------------------------------------------


class FetchSpan:
    """``with FetchSpan(account):`` around one `LogsFetcher.fetch`: its span and its outcome."""

    __slots__ = ("_account", "_span", "_token")

    def __init__(self, account: str | None) -> None:
        self._account = account
        self._token: contextvars.Token[str | None] | None = None
        self._span: Any = None

    def __enter__(self) -> None:
        if self._account is not None:
            self._token = _ACCOUNT.set(self._account)
        if _tracing():
            name = _named(_ACCOUNT.get())
            self._span = _TRACER.start_as_current_span(
                f"{NAME}.fetch",
                attributes=_attrs(("account", name)),
                record_exception=False,
                set_status_on_exception=False,
            )
            self._span.__enter__()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        name = _named(_ACCOUNT.get())
        if exc_type is None:
            _FETCHES.add((("account", name), ("outcome", "ok")))
        else:
            outcome = "error" if issubclass(exc_type, Exception) else "cancelled"
            _FETCHES.add(
                (("account", name), ("outcome", outcome), ("error.type", exc_type.__name__))
            )
        if self._span is not None:
            if exc_type is not None:
                span = _trace.get_current_span()
                span.set_attribute("error.type", exc_type.__name__)
                span.set_status(_trace.StatusCode.ERROR, exc_type.__name__)
            self._span.__exit__(exc_type, exc, tb)
        if self._token is not None:
            _ACCOUNT.reset(self._token)


def throttle_waited(seconds: float) -> None:
    """One try waited ``seconds`` for the throttle (0.0 when a slot was free)."""
    _THROTTLE_WAIT.record(seconds, _attrs(("account", _named(_ACCOUNT.get()))))
    if seconds > 0.0:
        _event("throttle.wait", {"seconds": seconds})


def decoded(logs: int, seconds: float) -> None:
    """One page of ``logs`` logs was decoded in ``seconds``."""
    key = (("account", _named(_ACCOUNT.get())),)
    _PAGES.add(key)
    _LOGS.add(key, logs)
    _DECODE_TIME.record(seconds, _attrs(*key))
    _event("decode", {"logs": logs, "seconds": seconds})


def rate_limited() -> None:
    """A 429 response arrived."""
    _RATE_LIMITED.add((("account", _named(_ACCOUNT.get())),))


def retried(status: int | None, attempt: int, wait: float) -> None:
    """Try ``attempt`` failed with ``status`` (`None`: transport) and is retried after ``wait``."""
    reason = "408" if status == 408 else status_class(status)
    _RETRIES.add((("account", _named(_ACCOUNT.get())), ("reason", reason)))
    _event("retry", {"attempt": attempt, "reason": reason, "wait": wait})


def cooldown_started(seconds: float) -> None:
    """A throttle started (or extended) a cooldown of ``seconds``."""
    _COOLDOWNS.add((("account", _named(_ACCOUNT.get())),))
    _event("throttle.cooldown", {"seconds": seconds})


# -- the poller side (called by LogsPoller) ----------------------------------------------------


def cycle_span(account: str) -> AbstractContextManager[Any]:
    """``with cycle_span(name):`` around one account's poll cycle.

    Starts the span ``infobip_voicelogs.poll.cycle`` (when a tracer provider is set) and
    attributes everything inside (fetches, retries, log records) to ``account``.
    """
    return _CycleSpan(account)


class _CycleSpan:
    __slots__ = ("_account", "_span", "_token")

    def __init__(self, account: str) -> None:
        self._account = account
        self._span: Any = None
        self._token: contextvars.Token[str | None] | None = None

    def __enter__(self) -> None:
        self._token = _ACCOUNT.set(self._account)
        if _tracing():
            self._span = _TRACER.start_as_current_span(
                f"{NAME}.poll.cycle", attributes=_attrs(("account", _named(self._account)))
            )
            self._span.__enter__()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._span is not None:
            self._span.__exit__(exc_type, exc, tb)
        if self._token is not None:
            _ACCOUNT.reset(self._token)


def record_cycle(
    account: str,
    *,
    seconds: float,
    outcome: str,
    new: int,
    changed: int,
    newest_sent_at: datetime | None,
    consecutive_failures: int,
) -> None:
    """Record one finished poll cycle of ``account``.

    Args:
        seconds: How long the cycle took.
        outcome: ``"ok"`` or the failing exception's class name (low cardinality).
        new: Logs delivered as new; ``changed``: as changed.
        newest_sent_at: The newest `sentAt` of any log delivered for the account so far
            (`None` if none yet); the lag gauge is "now minus this", read at collection.
        consecutive_failures: The account's failed cycles in a row, after this one.
    """
    name = _named(account)
    _CYCLE_TIME.record(seconds, _attrs(("account", name), ("outcome", outcome)))
    if new:
        _DELIVERED.add((("account", name), ("kind", "new")), new)
    if changed:
        _DELIVERED.add((("account", name), ("kind", "changed")), changed)
    if newest_sent_at is not None:
        _NEWEST[account] = newest_sent_at
    _FAILURES[account] = consecutive_failures


def leases_held(n: int) -> None:
    """This process now holds ``n`` account leases."""
    _LEASES[0] = n


def lease_lost(account: str) -> None:
    """The lease of ``account`` passed to another process (expired or taken)."""
    _LEASES_LOST.add((("account", _named(account)),))


def batch_fenced(account: str) -> None:
    """A batch of ``account`` was refused by the store's fence (the lease had moved on)."""
    _FENCED.add((("account", _named(account)),))


# -- the Redis bucket side (called by RedisBucket) ---------------------------------------------


def redis_fallback(key: str) -> None:
    """A `RedisBucket` for Redis key ``key`` decided locally because Redis did not answer.

    The key is recorded (as ``redis.key``) only with ``configure(account_names=True)``.
    """
    _REDIS_FALLBACKS.add((("redis.key", _named(key)),))


def redis_error(kind: str) -> None:
    """An error talking to Redis; ``kind`` is low-cardinality, e.g. the exception class name."""
    _REDIS_ERRORS.add((("error.type", kind),))


if not ENABLED:  # chosen once: without the API, these calls do nothing at all

    def _noop(*_args: Any, **_kwargs: Any) -> None:
        return None

    throttle_waited = decoded = rate_limited = retried = cooldown_started = _noop
    record_cycle = leases_held = lease_lost = batch_fenced = _noop
    redis_fallback = redis_error = _noop
