"""The retry policy: what to retry, how long to wait, and who hears about it.

```python
policy = RetryPolicy(max_attempts=6, throttle=bucket, on_retry=print)
logs = await policy.call(send_one_request)   # retried per the rules below
```

Every number that shapes the behaviour is on this screen. The policy is a tenacity
`AsyncRetrying` composed of small named parts, so it reads like its spec:

- retry (`is_retryable`): HTTP 408, 429, 500, 502, 503, 504 and a `TransportError`
  (connect, read, timeout, reset, truncated body, a resolver's temporary failure); never
  400, 401, 403, 404, any other status, a complete body that fails to decode
  (`DecodeError`), nor a `TransportError` that would only repeat (``retryable`` false:
  a host name that does not exist, a header the HTTP layer refuses to send);
- wait (`RetryWait`): the server's `Retry-After` plus a little positive jitter when it
  sent one, else exponential backoff with full jitter; a `Retry-After` longer than
  ``max_retry_after`` is not waited for: the error is raised at once;
- stop: after ``max_attempts`` tries in all (the first one included);
- reraise: the last typed error surfaces (`RateLimitError`, `ServerError`, `TransportError`),
  never tenacity's `RetryError`;
- before each sleep: a 429 is told to the throttle (`cooldown` for the wait, and
  `on_rate_limited`), so every caller of the account backs off together; the retry is
  logged at INFO on the ``infobip_voicelogs`` logger and handed to ``on_retry``;
- budget (`Budget`, optional, per call): a wait that would not leave time for another
  try is not waited: a `Retry-After` that long raises its error at once, a backoff that
  long raises `BudgetExceededError` (the last error as its cause).
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import math
import random
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol, TypeVar

import attrs
import tenacity

from . import redaction, telemetry
from ._time import seconds
from .defaults import DEFAULT_MAX_ATTEMPTS, DEFAULT_MAX_RETRY_AFTER
from .errors import ApiError, BudgetExceededError, RateLimitError, TransportError

__all__ = [
    "BACKOFF_BASE",
    "BACKOFF_CAP",
    "DEFAULT_MAX_ATTEMPTS",
    "DEFAULT_MAX_RETRY_AFTER",
    "RETRYABLE_STATUSES",
    "RETRY_AFTER_JITTER",
    "Budget",
    "RateLimitListener",
    "RetryEvent",
    "RetryPolicy",
    "RetryWait",
    "backoff_ceiling",
    "budget_seconds",
    "is_retryable",
    "parse_retry_after",
    "retry_after_of",
]

#: Backoff without `Retry-After`: the n-th retry waits uniform(0, min(CAP, BASE * 2**(n-1))).
BACKOFF_BASE = 0.5
BACKOFF_CAP = 30.0
#: Added to a `Retry-After`: uniform(0, RETRY_AFTER_JITTER) seconds, so the callers the server
#: refused together do not all come back in the same instant.
RETRY_AFTER_JITTER = 0.25
#: The statuses worth another try: timeout, rate limit, and the transient server failures.
RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})

logger = logging.getLogger("infobip_voicelogs")

T = TypeVar("T")


class RateLimitListener(Protocol):
    """What the policy tells about a 429: the throttle's feedback half (`TokenBucket` is one).

    Both calls return at once; a shared throttle (`RedisBucket`) schedules its own write.
    """

    def cooldown(self, seconds: float) -> None:
        """Hold every caller of the account for ``seconds``."""

    def on_rate_limited(self) -> None:
        """Cut the account's request rate."""


@attrs.frozen
class RetryEvent:
    """One retry about to happen, as the ``on_retry`` hook sees it.

    Attributes:
        attempt: The number of the try that failed (1 for the first).
        reason: What went wrong, e.g. ``"HTTP 429: TOO_MANY_REQUESTS"`` or
            ``"ConnectError: [Errno 111] Connection refused"``; never a credential.
        wait: Seconds until the next try.
        status_code: The HTTP status, or `None` for a transport failure.
    """

    attempt: int
    reason: str
    wait: float
    status_code: int | None = None


# The predicates: each answers one question...


def is_retryable(
    exc: BaseException, max_retry_after: float | timedelta = DEFAULT_MAX_RETRY_AFTER
) -> bool:
    """Whether another try may succeed where this one failed.

    A transport failure or a 408/429/500/502/503/504 may; anything else may not, and
    neither may a transport failure that would only repeat (``retryable`` false), nor a
    retryable status whose `Retry-After` exceeds ``max_retry_after`` (seconds or a
    `timedelta`: the caller gets the error now rather than hanging).

    >>> is_retryable(RateLimitError(429)), is_retryable(ApiError(404))
    (True, False)
    >>> is_retryable(RateLimitError(429, retry_after=3600.0))
    False
    >>> is_retryable(TransportError("no such host", retryable=False))
    False
    """
    if isinstance(exc, TransportError):
        return exc.retryable
    if not isinstance(exc, ApiError) or exc.status_code not in RETRYABLE_STATUSES:
        return False
    demand = retry_after_of(exc)
    return demand is None or demand <= seconds(max_retry_after)


def retry_after_of(exc: BaseException) -> float | None:
    """The seconds the server asked us to wait before trying again, if it said.

    >>> retry_after_of(RateLimitError(429, retry_after=2.0)), retry_after_of(TransportError())
    (2.0, None)
    """
    return exc.retry_after if isinstance(exc, ApiError) else None


_DELTA_SECONDS = re.compile(r"\d+(\.\d+)?")


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Read a `Retry-After` header: delay seconds or an HTTP date; `None` if absent or unreadable.

    A date in the past means "now" (0.0). ``now`` is for tests.

    >>> parse_retry_after("120"), parse_retry_after("1.5"), parse_retry_after("soon")
    (120.0, 1.5, None)
    >>> parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT",
    ...                   now=datetime(2015, 10, 21, 7, 28, 0, tzinfo=UTC))
    10.0
    """
    if value is None:
        return None
    value = value.strip()
    if _DELTA_SECONDS.fullmatch(value):
        seconds = float(value)
        return seconds if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT; a zone-less one is read as such
        when = when.replace(tzinfo=UTC)
    current = now if now is not None else datetime.now(UTC)
    return max(0.0, (when - current).total_seconds())


def backoff_ceiling(retry_number: int) -> float:
    """The most the n-th retry (1-based) waits without `Retry-After`: BASE*2**(n-1), capped.

    >>> [backoff_ceiling(n) for n in (1, 2, 3, 8, 50)]
    [0.5, 1.0, 2.0, 30.0, 30.0]
    """
    # min() before the power would overflow: 2**1000 is fine for int, not for float.
    exponent = min(retry_number - 1, 64)
    return min(BACKOFF_CAP, BACKOFF_BASE * 2.0**exponent)


@attrs.frozen
class RetryWait:
    """The wait strategy: `Retry-After` plus a little jitter, else full-jitter backoff.

    Full jitter (a uniform draw in ``[0, ceiling]``) spreads the retries of many callers
    that failed together, which is what an overloaded server needs. ``uniform`` is the
    random source, replaceable for tests.
    """

    uniform: Callable[[float, float], float] = random.uniform

    def for_error(self, exc: BaseException, retry_number: int) -> float:
        """Seconds to wait after ``exc`` before retry number ``retry_number`` (1-based)."""
        demand = retry_after_of(exc)
        if demand is not None:
            return demand + self.uniform(0.0, RETRY_AFTER_JITTER)
        return self.uniform(0.0, backoff_ceiling(retry_number))

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        """tenacity's wait protocol."""
        return self.for_error(_failure(retry_state), retry_state.attempt_number)


def _failure(retry_state: tenacity.RetryCallState) -> BaseException:
    outcome = retry_state.outcome
    assert outcome is not None  # only failures are retried
    assert outcome.failed
    exc = outcome.exception()
    assert exc is not None
    return exc


def _describe(exc: BaseException) -> str:
    # ApiError's str is "HTTP 429: MESSAGE_ID: text"; TransportError's names the httpx failure.
    # Scrubbed: the hook and the log line may see an error no boundary has scrubbed yet.
    return redaction.scrub(str(exc)) or type(exc).__name__


def _sleep(seconds: float) -> Awaitable[None]:
    return asyncio.sleep(seconds)


# The budget: one call's time, and where it went...


def budget_seconds(value: float | timedelta | None) -> float | None:
    """A ``budget`` argument as seconds: a number or a `timedelta`; `None` is no bound.

    >>> budget_seconds(15), budget_seconds(timedelta(minutes=1)), budget_seconds(None)
    (15.0, 60.0, None)
    """
    if value is None:
        return None
    seconds = value.total_seconds() if isinstance(value, timedelta) else value
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        raise TypeError(f"budget must be seconds or a timedelta, not {value!r}")
    if not (math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"budget must be a finite number of seconds > 0, not {value!r}")
    return float(seconds)


@attrs.define(eq=False)
class Budget:
    """The time one call may take in all (throttle waits, tries, backoff), and where it went.

    Made per call by `Budget.start`; the fetcher books its throttle wait and its tries
    here, the policy its backoff, and `exceeded` turns the account into the error.
    """

    seconds: float
    clock: Callable[[], float]
    started: float
    #: Seconds waited for the throttle, spent in tries, and slept between tries.
    throttle_wait: float = 0.0
    try_time: float = 0.0
    backoff: float = 0.0
    #: Tries started.
    tries: int = 0
    #: The error of the last try that failed, the cause of a `BudgetExceededError`.
    last_error: BaseException | None = None
    #: The wait the budget refused (it left no time for another try), if it refused one.
    refused_wait: float | None = None

    @classmethod
    def start(cls, seconds: float, clock: Callable[[], float]) -> Budget:
        """A budget of ``seconds`` from now on ``clock`` (monotonic seconds)."""
        return cls(seconds, clock, clock())

    def spent(self) -> float:
        """Seconds since the call began."""
        return self.clock() - self.started

    def remaining(self) -> float:
        """Seconds left (negative once overspent)."""
        return self.seconds - (self.clock() - self.started)

    def exceeded(self, when: str, cause: BaseException | None = None) -> BudgetExceededError:
        """The error for a budget that ran out ``when`` (e.g. "waiting for the throttle")."""
        cause = cause if cause is not None else self.last_error
        spent = self.spent()
        message = (
            f"the budget of {self.seconds:g} s ran out {when}, after {spent:.2f} s: "
            f"{self.throttle_wait:.2f} s throttle wait, {self.tries} "
            f"{'try' if self.tries == 1 else 'tries'} {self.try_time:.2f} s, "
            f"{self.backoff:.2f} s backoff"
        )
        if cause is not None:
            message += f"; last error: {_describe(cause)}"
        error = BudgetExceededError(
            message,
            budget=self.seconds,
            spent=spent,
            throttle_wait=self.throttle_wait,
            tries=self.tries,
            try_time=self.try_time,
            backoff=self.backoff,
        )
        error.__cause__ = cause  # as `raise ... from cause` would, at the raise site
        error.__suppress_context__ = cause is not None
        return error

    def stop(self, retry_state: tenacity.RetryCallState) -> bool:
        """tenacity's stop protocol: stop when the coming wait leaves no time for a try."""
        wait = retry_state.upcoming_sleep
        if wait < self.remaining():
            return False
        self.refused_wait = wait
        return True

    def timed(
        self, sleep: Callable[[float], Awaitable[None]]
    ) -> Callable[[float], Awaitable[None]]:
        """``sleep``, booking the time it took as backoff."""

        async def timed_sleep(seconds: float) -> None:
            started = self.clock()
            try:
                await sleep(seconds)
            finally:
                self.backoff += self.clock() - started

        return timed_sleep

    def refusal(self, exc: BaseException) -> BaseException:
        """What to raise after a refused wait: the error itself if the server set the wait
        (`Retry-After`, which it would only repeat), else `BudgetExceededError`."""
        left = max(0.0, self.remaining())
        demand = retry_after_of(exc)
        if demand is None:
            return self.exceeded(f"before try {self.tries + 1}", exc)
        exc.add_note(
            f"not retried: Retry-After {demand:g} s is more than the {left:.2f} s left "
            f"of the {self.seconds:g} s budget"
        )
        return exc


class _BudgetStop(tenacity.stop.stop_base):
    """`Budget.stop` in the shape tenacity combines (`stop_any`)."""

    def __init__(self, budget: Budget) -> None:
        self.budget = budget

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        return self.budget.stop(retry_state)


@attrs.define(eq=False)
class RetryPolicy:
    """A retry policy for one account: the rules above, with its throttle and hook.

    ```python
    policy = RetryPolicy(throttle=bucket, on_retry=lambda e: print(e.attempt, e.wait))
    result = await policy.call(fetch_page, params)
    ```

    ``sleep`` is the coroutine function that waits between tries (tests pass one that
    records the waits and returns at once). The policy is safe to share among tasks:
    each `call` runs on its own copy of the tenacity state.
    """

    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    #: Seconds; a `timedelta` is taken too.
    max_retry_after: float = attrs.field(default=DEFAULT_MAX_RETRY_AFTER, converter=seconds)
    throttle: RateLimitListener | None = None
    on_retry: Callable[[RetryEvent], object] | None = None
    sleep: Callable[[float], Awaitable[None]] = _sleep
    wait: RetryWait = attrs.field(factory=RetryWait)
    _template: tenacity.AsyncRetrying = attrs.field(init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        if isinstance(self.max_attempts, bool) or not isinstance(self.max_attempts, int):
            raise TypeError("max_attempts must be an int")
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, not {self.max_attempts}")
        if not (math.isfinite(self.max_retry_after) and self.max_retry_after >= 0):
            raise ValueError(f"max_retry_after must be finite and >= 0, not {self.max_retry_after}")
        self._template = tenacity.AsyncRetrying(
            stop=tenacity.stop_after_attempt(self.max_attempts),
            retry=tenacity.retry_if_exception(self._should_retry),
            wait=self.wait,
            before_sleep=self._before_sleep,
            sleep=self.sleep,
            reraise=True,
        )

    async def call(
        self, fn: Callable[..., Awaitable[T]], *args: object, budget: Budget | None = None
    ) -> T:
        """Await ``fn(*args)``, retrying per the policy; raise the last error if it never succeeds.

        A 429 that is not retried (the last attempt, or a `Retry-After` too long to wait
        for) is still told to the throttle, so the account's other callers slow down.
        With a ``budget``, a wait that leaves no time for another try is not waited
        (`Budget.refusal`), and the waits are booked on it; ``fn`` books its own tries.
        """
        # Only an `Exception` is an outcome to decide on: a cancellation, KeyboardInterrupt or
        # SystemExit goes straight through, never retried, never told to the throttle.
        try:
            # The first try runs outside tenacity: most calls succeed, and tenacity's
            # per-call bookkeeping would cost more than the request's own Python work.
            return await fn(*args)
        except Exception as exc:
            if budget is not None:
                budget.last_error = exc
            if not self._should_retry(exc):
                self._give_up(exc)
                raise
            replay: list[BaseException] = [exc]

        async def attempt() -> T:
            if replay:  # tenacity's attempt 1 is the try that already failed: replay it
                raise replay.pop()
            try:
                return await fn(*args)
            except Exception as exc:
                if budget is not None:
                    budget.last_error = exc
                raise

        # tenacity keeps per-call state on the AsyncRetrying object: one copy per call.
        if budget is None:
            retrying = self._template.copy()
        else:
            # The attempt count first: `stop_any` stops at the first yes, and only the
            # budget's own yes records a refused wait.
            retrying = self._template.copy(
                stop=tenacity.stop_any(
                    tenacity.stop_after_attempt(self.max_attempts), _BudgetStop(budget)
                ),
                sleep=budget.timed(self.sleep),
            )
        try:
            return await retrying(attempt)
        except Exception as exc:
            self._give_up(exc)
            if budget is None or budget.refused_wait is None or exc is not budget.last_error:
                raise
            refusal = budget.refusal(exc)
            if refusal is exc:
                raise
            raise refusal from exc

    def _give_up(self, exc: BaseException) -> None:
        if isinstance(exc, RateLimitError):
            self._rate_limited(exc, wait=None)

    def _should_retry(self, exc: BaseException) -> bool:
        # tenacity hands every outcome to this predicate, BaseExceptions too: never retry those.
        return isinstance(exc, Exception) and is_retryable(exc, self.max_retry_after)

    def _before_sleep(self, retry_state: tenacity.RetryCallState) -> None:
        exc = _failure(retry_state)
        wait = retry_state.upcoming_sleep
        if isinstance(exc, RateLimitError):
            self._rate_limited(exc, wait=wait)
        status = exc.status_code if isinstance(exc, ApiError) else None
        event = RetryEvent(retry_state.attempt_number, _describe(exc), wait, status)
        logger.info(
            "retrying in %.2fs after attempt %d of %d failed: %s",
            wait,
            event.attempt,
            self.max_attempts,
            event.reason,
            extra={"account": telemetry.current_account(), "outcome": "retry"},
        )
        telemetry.retried(status, event.attempt, wait)
        if self.on_retry is not None:
            self.on_retry(event)

    def _rate_limited(self, exc: RateLimitError, *, wait: float | None) -> None:
        """Tell the throttle: every caller of the account holds off, and the rate is cut."""
        if self.throttle is None:
            return
        if wait is None:
            # Not retried: still hold the others for what the server asked, if we'd wait that.
            demand = exc.retry_after
            wait = demand if demand is not None and demand <= self.max_retry_after else None
        if wait is not None:
            self.throttle.cooldown(wait)
        self.throttle.on_rate_limited()
