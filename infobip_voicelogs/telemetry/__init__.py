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
a reader collects, so a request pays a dictionary increment for them. Histograms go through
the SDK at a few microseconds each, so a request records one (decode time); the throttle
wait is recorded only for tries that waited (every try is counted by ``throttle.acquired``).

The functions in the last sections are for the poller, the fleet's leases and the Redis
bucket; each is safe to call whether or not OpenTelemetry is installed.
"""

from __future__ import annotations

import contextvars
import logging
import time
import warnings
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from types import TracebackType
from typing import Any

from . import _instruments
from ._instruments import (
    _ACQUIRED,
    _COOLDOWNS,
    _CYCLE_TIME,
    _DECODE_TIME,
    _DELIVERED,
    _FAILURES,
    _FENCED,
    _FETCHES,
    _LAST_OK,
    _LEASES,
    _LEASES_LOST,
    _LOGS,
    _PAGES,
    _RATE_LIMITED,
    _REDIS_ERRORS,
    _REDIS_FALLBACKS,
    _REPORT_BATCHES,
    _REPORTS,
    _REPORTS_LOST,
    _REPORTS_REJECTED,
    _RETRIES,
    _THROTTLE_WAIT,
    _TRACER,
    ACCOUNT,
    ENABLED,
    NAME,
    _attrs,
    _event,
    _named,
    _tracing,
    status_class,
    watch_throttle,
)

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
    "reports_lost",
    "reports_received",
    "reports_rejected",
    "watch_throttle",
]


def configure(*, account_names: bool = False) -> None:
    """Set what the instruments record.

    Args:
        account_names: Add the account's name as the ``account`` attribute of every
            measurement and span (off by default: with thousands of accounts it multiplies
            every series by thousands). A fetcher's name is its ``account=`` argument, or
            the one set by `account` / the poller around the call.
    """
    _instruments.account_names = bool(account_names)


def current_account() -> str | None:
    """The account name set for the running task (by `account`, a fetcher or the poller)."""
    return ACCOUNT.get()


@contextmanager
def account(name: str) -> Iterator[None]:
    """Attribute the fetches, retries and logs inside the block to account ``name``.

    ```python
    with telemetry.account("eu-shop"):
        await fetcher.fetch()
    ```
    """
    token = ACCOUNT.set(name)
    try:
        yield
    finally:
        ACCOUNT.reset(token)


class _AccountFilter(logging.Filter):
    """Gives every record of the library's logger an ``account`` field: the running task's."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "account"):
            record.account = ACCOUNT.get()
        return True


logging.getLogger("infobip_voicelogs").addFilter(_AccountFilter())


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
            self._token = ACCOUNT.set(self._account)
        if _tracing():
            name = _named(ACCOUNT.get())
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
        if ENABLED:
            self._record(exc_type, exc, tb)
        if self._token is not None:
            ACCOUNT.reset(self._token)

    def _record(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        name = _named(ACCOUNT.get())
        failed = exc_type is not None and issubclass(exc_type, Exception)
        if exc_type is None:
            _FETCHES.add((("account", name), ("outcome", "ok")))
        else:
            outcome = "error" if failed else "cancelled"
            _FETCHES.add(
                (("account", name), ("outcome", outcome), ("error.type", exc_type.__name__))
            )
        if self._span is not None:
            if failed:
                assert exc_type is not None
                span = _instruments.trace_api.get_current_span()
                span.set_attribute("error.type", exc_type.__name__)
                span.set_status(_instruments.trace_api.StatusCode.ERROR, exc_type.__name__)
            self._span.__exit__(exc_type, exc, tb)


def throttle_waited(seconds: float) -> None:
    """One try waited ``seconds`` for the throttle (0.0 when a slot was free)."""
    key = (("account", _named(ACCOUNT.get())),)
    _ACQUIRED.add(key)
    if seconds > 0.0:  # the common free slot costs a dict increment, not a histogram record
        _THROTTLE_WAIT.record(seconds, _attrs(*key))
        _event("throttle.wait", {"seconds": seconds})


def decoded(logs: int, seconds: float) -> None:
    """One page of ``logs`` logs was decoded in ``seconds``."""
    key = (("account", _named(ACCOUNT.get())),)
    _PAGES.add(key)
    _LOGS.add(key, logs)
    _DECODE_TIME.record(seconds, _attrs(*key))
    _event("decode", {"logs": logs, "seconds": seconds})


def rate_limited() -> None:
    """A 429 response arrived."""
    _RATE_LIMITED.add((("account", _named(ACCOUNT.get())),))


def retried(status: int | None, attempt: int, wait: float) -> None:
    """Try ``attempt`` failed with ``status`` (`None`: transport) and is retried after ``wait``."""
    reason = "408" if status == 408 else status_class(status)
    _RETRIES.add((("account", _named(ACCOUNT.get())), ("reason", reason)))
    _event("retry", {"attempt": attempt, "reason": reason, "wait": wait})


def cooldown_started(seconds: float) -> None:
    """A throttle started (or extended) a cooldown of ``seconds``."""
    _COOLDOWNS.add((("account", _named(ACCOUNT.get())),))
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
        self._token = ACCOUNT.set(self._account)
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
            ACCOUNT.reset(self._token)


def record_cycle(
    account: str,
    *,
    seconds: float,
    outcome: str,
    new: int,
    changed: int,
    consecutive_failures: int,
    held: bool = True,
    **deprecated: Any,
) -> None:
    """Record one finished poll cycle of ``account``.

    Args:
        seconds: How long the cycle took.
        outcome: ``"ok"`` or the failing exception's class name (low cardinality).
        new: Logs delivered as new; ``changed``: as changed.
        consecutive_failures: The account's failed cycles in a row, after this one.
        held: Whether this process still holds the account. The lag gauge is the seconds
            since the last ``"ok"`` cycle of an account held, read at collection.

    ``newest_sent_at=`` (the lag's input before 16) is accepted and ignored, with a
    `DeprecationWarning`: the lag measures the poller now, not the traffic.
    """
    _deprecated_newest(deprecated)
    name = _named(account)
    _CYCLE_TIME.record(seconds, _attrs(("account", name), ("outcome", outcome)))
    if new:
        _DELIVERED.add((("account", name), ("kind", "new")), new)
    if changed:
        _DELIVERED.add((("account", name), ("kind", "changed")), changed)
    if outcome == "ok" and held:
        _LAST_OK[account] = time.monotonic()
    _FAILURES[account] = consecutive_failures
    account_held(account, held)


def _deprecated_newest(deprecated: dict[str, Any]) -> None:
    unknown = set(deprecated) - {"newest_sent_at"}
    if unknown:
        raise TypeError(f"record_cycle() got unexpected keyword arguments: {sorted(unknown)}")
    if deprecated:
        warnings.warn(
            "record_cycle(newest_sent_at=...) is deprecated and ignored: poll.lag is the time"
            " since the account's last cycle that worked",
            DeprecationWarning,
            stacklevel=3,
        )


def account_held(account: str, held: bool) -> None:
    """Whether this process holds ``account`` now: the lag series exists only while it does.

    Gained, the lag counts from now until the account's first cycle that works; shed (or
    its lease unknown), the series is dropped: another process polls it, or nobody can tell.
    """
    if held:
        _LAST_OK.setdefault(account, time.monotonic())
    else:
        _LAST_OK.pop(account, None)


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


# -- the reports receiver side (called by ReportsReceiver) --------------------------------------


def reports_received(account: str, reports: int) -> None:
    """A batch of ``reports`` reports for ``account`` was delivered and answered 200."""
    key = (("account", _named(account)),)
    _REPORT_BATCHES.add(key)
    _REPORTS.add(key, reports)


def reports_rejected(account: str | None, reason: str) -> None:
    """A report POST was refused; ``reason`` is low-cardinality (``"unauthorized"``, ...).

    Pass ``account=None`` for a name the receiver does not know: the path is the sender's
    text, and a metric attribute must not let anyone grow the series.
    """
    _REPORTS_REJECTED.add((("account", _named(account)), ("reason", reason)))


def reports_lost(account: str, states: int) -> None:
    """A reconciliation cycle found ``states`` final states of ``account`` no report brought."""
    _REPORTS_LOST.add((("account", _named(account)),), states)


if not ENABLED:  # chosen once: without the API, these calls do nothing at all

    def _noop(*_args: Any, **_kwargs: Any) -> None:
        return None

    throttle_waited = decoded = rate_limited = retried = cooldown_started = _noop
    record_cycle = account_held = leases_held = lease_lost = batch_fenced = _noop
    redis_fallback = redis_error = _noop
    reports_received = reports_rejected = reports_lost = _noop
