"""The async GCRA token bucket that decides when one account's next request may go.

```python
bucket = TokenBucket(2.0)              # the provider's documented 120 requests/minute
async with bucket:                     # waits for the next slot, in arrival order
    response = await client.get(url)
```

The bucket is the Generic Cell Rate Algorithm in its "virtual scheduling" form: one number,
the theoretical arrival time (TAT) of the next request, plus a burst tolerance. Each grant
pushes the TAT one emission interval (``1 / rate``) further, so the whole state is a few
floats whatever the number of callers, and every call is O(1).

Callers that cannot go at once wait on a FIFO queue of futures. A single ``loop.call_at``
timer releases the head of the queue at its GCRA time and re-arms itself for the next one:
no polling loop, no task per waiter, and a thousand sleeping waiters cost a thousand futures.

A test may give the bucket its own time (``clock`` and ``sleep``, such as
`infobip_voicelogs.testing.FakeTime`): the timer is then one task that awaits ``sleep``, so
a scripted 429 with ``Retry-After`` runs in no real time at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Protocol

from . import telemetry

__all__ = ["BucketSettings", "TokenBucket", "check_bucket"]

# Adaptive rate, after the CUBIC-based client-side rate limiter of the AWS SDKs' "adaptive"
# retry mode (botocore/retries/adaptive.py, itself after RFC 8312):
#: On a 429 the effective rate is multiplied by this (multiplicative decrease).
ADAPTIVE_BETA = 0.7
#: CUBIC's scale constant C, in (requests/s) per s**3: how fast the rate grows back. A bucket
#: cut from rate W climbs back to W in K = cbrt(W * (1 - beta) / C) seconds (5.3 s for
#: W = 200/s), slowly near W (the last rate known to be too much) and faster beyond it, so the
#: time-averaged rate sits about 8% under the limit it found (1 - (1 - beta) / 4 = 0.925 W).
ADAPTIVE_SCALE = 0.4
#: ...but K lasts at least this many slots at rate W. With C alone, K is 1.1 s at the
#: provider's 2 requests/s: two requests per cycle, one of them a 429. At least 50 slots per
#: cycle keeps 429s to about one request in 45 at any rate (K = 25 s at 2/s, 5 s at 10/s).
ADAPTIVE_MIN_RECOVERY_SLOTS = 50
#: Without an explicit ``min_rate``, a run of 429s cannot cut the rate below this fraction of
#: the configured rate.
DEFAULT_MIN_RATE_FRACTION = 0.1

# asyncio runs a timer whose deadline is within the clock's resolution of now (see
# BaseEventLoop._run_once), so a timer may fire that much early; a slot that close counts as due.
_CLOCK_SLACK = time.get_clock_info("monotonic").resolution
# A timer that fires late (a busy loop) books its grant up to this many intervals in the past,
# so ordinary loop latency does not lower the achieved rate; capped below one interval so
# that even after a long stall a release never puts more than `burst` requests out at once.
_CATCH_UP_INTERVALS = 0.5
# Cancelled waiters stay queued until they reach the head (lazy deletion, O(1) per cancel);
# the queue is compacted once they are this many and more than half of it.
_COMPACT_AT = 64


class _Timer(Protocol):
    """What the bucket needs of its one timer: `asyncio.TimerHandle`, or `_SleepTimer`."""

    def when(self) -> float: ...

    def cancel(self) -> None: ...


class _SleepTimer:
    """The timer of a bucket on injected time: a task that awaits ``sleep`` until ``when``."""

    __slots__ = ("_task", "_when")

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        when: float,
        clock: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]],
        callback: Callable[[], None],
    ) -> None:
        self._when = when

        async def fire() -> None:
            await sleep(max(0.0, when - clock()))
            callback()

        self._task = loop.create_task(fire())

    def when(self) -> float:
        return self._when

    def cancel(self) -> None:
        self._task.cancel()


def check_bucket(rate: float, burst: int, min_rate: float | None) -> float:
    """Check a bucket's settings as every bucket does; return ``min_rate``, defaulted.

    Raises `ValueError` for a rate that is not a finite positive number, a ``burst`` below
    1, or a ``min_rate`` outside ``(0, rate]``; the default is a tenth of ``rate``.
    """
    if not (isinstance(rate, int | float) and math.isfinite(rate) and rate > 0):
        raise ValueError(f"rate must be a finite number of grants per second > 0, not {rate!r}")
    if isinstance(burst, bool) or not isinstance(burst, int) or burst < 1:
        raise ValueError(f"burst must be an int >= 1, not {burst!r}")
    if min_rate is None:
        return rate * DEFAULT_MIN_RATE_FRACTION
    if not (isinstance(min_rate, int | float) and 0 < min_rate <= rate):
        raise ValueError(f"min_rate must be in (0, rate={rate!r}], not {min_rate!r}")
    return min_rate


class BucketSettings:
    """The settings a bucket was made with, read alike from every kind of bucket
    (`TokenBucket` here, `infobip_voicelogs.redis.RedisBucket` across a fleet)."""

    __slots__ = ()

    #: The rate asked for at construction, in grants per second: the adaptive ceiling.
    _configured: float
    _burst: int
    _adaptive: bool

    @property
    def configured_rate(self) -> float:
        """The rate given at construction; adaptive growth never goes above it."""
        return self._configured

    @property
    def burst(self) -> int:
        """How many slots may be granted at once after an idle spell."""
        return self._burst

    @property
    def adaptive(self) -> bool:
        """Whether 429s and successes move the effective rate."""
        return self._adaptive


class TokenBucket(BucketSettings):
    """An asyncio GCRA rate limiter: ``rate`` grants per second, up to ``burst`` at once.

    ```python
    bucket = TokenBucket(rate=2.0, burst=1)
    async with bucket:          # or: waited = await bucket.acquire()
        ...                     # one request
    ```

    Callers get slots in the order they called `acquire` (FIFO), requests are spaced
    ``1 / rate`` seconds apart once the burst allowance is spent, and a caller cancelled
    while waiting consumes no slot. After a 429 the retry layer calls `cooldown` (nobody
    goes before the server's ``Retry-After``) and `on_rate_limited` (the effective rate is
    cut); `on_success` grows it back toward `configured_rate`. With ``adaptive=False`` the
    rate never changes and those two calls do nothing.

    One bucket may be shared by every fetcher of one account, so that they share the
    account's limit. A bucket serves one event loop at a time and is not thread-safe:
    using it from a second loop while callers wait on the first raises `RuntimeError`;
    once idle it moves to the new loop, keeping its state.

    By default the bucket keeps the event loop's time and waits with its timers. A test
    passes ``clock`` (monotonic seconds) and ``sleep`` (a coroutine function) to run it on
    virtual time, e.g. `infobip_voicelogs.testing.FakeTime`; a `LogsFetcher` on such a
    bucket uses the same two for its retry backoff and its ``budget``.
    """

    __slots__ = (
        "__weakref__",  # for the telemetry's rate gauge
        "_adaptive",
        "_burst",
        "_clock",
        "_configured",
        "_cooldown_until",
        "_cubic_c",
        "_cubic_k",
        "_dead",
        "_grants",
        "_grants_at_cut",
        "_injected_clock",
        "_interval",
        "_last_cut",
        "_loop",
        "_min_rate",
        "_queue",
        "_rate",
        "_resuming",
        "_sleep",
        "_succeeded_since_cut",
        "_tat",
        "_timer",
        "_w_max",
        "_waiting",
    )

    #: The effective rate now, and its emission interval ``1 / _rate`` in seconds.
    _rate: float
    _interval: float
    _min_rate: float
    #: Theoretical arrival time: the GCRA clock. Absolute times below are in ``_clock``'s time.
    _tat: float
    #: Nobody is granted a slot before this time (set by `cooldown`).
    _cooldown_until: float
    #: The clock of the loop the bucket is bound to (`time.monotonic` before the first acquire).
    _clock: Callable[[], float]
    _loop: asyncio.AbstractEventLoop | None
    #: Waiters in arrival order: (arrival time, future); cancelled ones are skipped lazily.
    _queue: deque[tuple[float, asyncio.Future[None]]]
    #: Live (not cancelled, not granted) waiters in ``_queue``, and cancelled ones still in it.
    _waiting: int
    _dead: int
    #: Waiters granted a slot whose tasks have not resumed yet: newcomers queue behind them.
    _resuming: int
    #: The one timer that releases the head of the queue, if armed.
    _timer: _Timer | None
    #: The time given at construction (then `_clock` is it, whatever the loop), and the
    #: sleep its timer awaits; `None` for the loop's own time and timers.
    _injected_clock: Callable[[], float] | None
    _sleep: Callable[[float], Awaitable[None]] | None
    #: Grants so far, and their count at the last adaptive cut (to merge a burst of 429s).
    _grants: int
    _grants_at_cut: int
    _succeeded_since_cut: bool
    #: CUBIC state: the rate at the last cut, when it happened, the time to regain it, and
    #: the scale that makes the curve do so.
    _w_max: float
    _last_cut: float
    _cubic_k: float
    _cubic_c: float

    def __init__(
        self,
        rate: float,
        burst: int = 1,
        *,
        adaptive: bool = True,
        min_rate: float | None = None,
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], Awaitable[None]] | None = None,
    ) -> None:
        """Make a bucket granting ``rate`` slots per second, ``burst`` of them at once.

        ``min_rate`` is the floor of adaptive cuts (default: a tenth of ``rate``).
        ``clock`` returns monotonic seconds and ``sleep`` waits that many (for tests;
        ``sleep`` defaults to `asyncio.sleep` when only ``clock`` is given).
        Raises `ValueError` for a rate that is not a finite positive number, a ``burst``
        below 1, a ``min_rate`` outside ``(0, rate]``, or a ``sleep`` without a ``clock``.
        """
        min_rate = check_bucket(rate, burst, min_rate)
        if sleep is not None and clock is None:
            raise ValueError("sleep needs the clock it sleeps on: pass clock= too")
        self._configured = float(rate)
        self._rate = float(rate)
        self._interval = 1.0 / self._rate
        self._burst = burst
        self._adaptive = adaptive
        self._min_rate = float(min_rate)
        self._tat = -math.inf
        self._cooldown_until = -math.inf
        self._injected_clock = clock
        self._sleep = sleep if sleep is not None or clock is None else asyncio.sleep
        self._clock = clock if clock is not None else time.monotonic
        self._loop = None
        self._queue = deque()
        self._waiting = 0
        self._dead = 0
        self._resuming = 0
        self._timer = None
        self._grants = 0
        self._grants_at_cut = -1
        self._succeeded_since_cut = True
        self._w_max = self._rate
        self._last_cut = -math.inf
        self._cubic_k = 0.0
        self._cubic_c = ADAPTIVE_SCALE
        telemetry.watch_throttle(self)

    # -- reading -----------------------------------------------------------------------------

    @property
    def rate(self) -> float:
        """The effective rate in grants per second: `configured_rate` unless cut after 429s."""
        return self._rate

    @property
    def clock(self) -> Callable[[], float] | None:
        """The clock given at construction, or `None` when the bucket keeps the loop's time."""
        return self._injected_clock

    @property
    def sleep(self) -> Callable[[float], Awaitable[None]] | None:
        """The sleep given at construction (with ``clock``), or `None` for the loop's timers."""
        return self._sleep

    @property
    def waiting(self) -> int:
        """How many callers are queued in `acquire` now (cancelled ones not counted)."""
        return self._waiting

    def __repr__(self) -> str:
        return (
            f"TokenBucket(rate={self._rate:g}, configured_rate={self._configured:g}, "
            f"burst={self._burst}, waiting={self._waiting})"
        )

    # -- acquiring ---------------------------------------------------------------------------

    async def acquire(self) -> float:
        """Wait for the next slot, in arrival order; return the seconds spent waiting.

        Returns ``0.0`` at once, without yielding to the event loop, when nobody is queued
        and a slot is free. If the caller is cancelled while waiting, its slot goes to the
        next waiter. Raises `RuntimeError` if callers of another event loop are waiting.
        """
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._bind(loop)
        # The loop's own time(), called as a method, is the cheapest read on the fast path.
        clock = self._injected_clock
        now = loop.time() if clock is None else clock()
        if not self._waiting and not self._resuming and now >= self._due():
            self._grant(now)  # the fast path: no future, no sleep
            return 0.0
        future: asyncio.Future[None] = loop.create_future()
        self._queue.append((now, future))
        self._waiting += 1
        if self._timer is None:
            self._arm()
        try:
            await future
        except asyncio.CancelledError:
            self._forget(future)
            raise
        self._resuming -= 1
        return (loop.time() if clock is None else clock()) - now

    async def __aenter__(self) -> None:
        """``async with bucket:`` is ``await bucket.acquire()``; nothing happens on exit."""
        await self.acquire()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Do nothing: a slot, once used, is spent whatever the request's outcome."""

    # -- feedback from the retry layer -------------------------------------------------------

    def cooldown(self, seconds: float) -> None:
        """Grant nobody, queued or new, a slot for ``seconds`` from now.

        A longer cooldown already in force is kept (the later end wins). When it ends the
        bucket starts empty: callers resume one interval apart, without a burst, since the
        server's own bucket has just said it is empty. Raises `ValueError` for a negative
        or non-finite ``seconds``.
        """
        if not (math.isfinite(seconds) and seconds >= 0):
            raise ValueError(f"cooldown seconds must be finite and >= 0, not {seconds!r}")
        # Queued waiters see the new end when the armed timer fires and re-checks (lazily).
        until = self._now() + seconds
        if until > self._cooldown_until:
            self._cooldown_until = until
            telemetry.cooldown_started(seconds)

    def on_rate_limited(self) -> None:
        """Record a 429: cut the effective rate by `ADAPTIVE_BETA`, not below ``min_rate``.

        The cut applies at once, to waiters already queued too. 429s count as one cut until
        a request succeeds: a burst of in-flight requests refused together, or a server that
        refuses the rest of its minute while the retries wait, says once that the rate was
        too high, not six times. Does nothing when the bucket is not adaptive.
        """
        if not self._adaptive or not self._succeeded_since_cut:
            return
        if self._grants == self._grants_at_cut:
            return
        self._succeeded_since_cut = False
        now = self._now()
        self._w_max = w_max = self._rate
        # CUBIC's K: the time the curve C * (t - K)**3 + W takes to climb from beta*W back to W,
        # and the C that makes it so when K is stretched to the minimum number of slots.
        k = max(
            math.cbrt(w_max * (1 - ADAPTIVE_BETA) / ADAPTIVE_SCALE),
            ADAPTIVE_MIN_RECOVERY_SLOTS / w_max,
        )
        self._cubic_k = k
        self._cubic_c = w_max * (1 - ADAPTIVE_BETA) / k**3
        self._last_cut = now
        self._grants_at_cut = self._grants
        self._set_rate(max(self._min_rate, self._rate * ADAPTIVE_BETA), now)

    def on_success(self) -> None:
        """Record a success: grow the effective rate back toward `configured_rate`.

        Growth follows CUBIC's curve in the time since the last cut: slow near the rate that
        drew the 429, faster beyond it, never above the configured rate. Cheap when the rate
        is already there. Does nothing when the bucket is not adaptive.
        """
        self._succeeded_since_cut = True
        if not self._adaptive or self._rate >= self._configured:
            return
        now = self._now()
        cubic = self._cubic_c * (now - self._last_cut - self._cubic_k) ** 3 + self._w_max
        new_rate = min(self._configured, cubic)
        if new_rate > self._rate:
            self._set_rate(new_rate, now)
            self._arm()  # the head may now be due earlier than the armed timer

    # -- the algorithm -----------------------------------------------------------------------

    def _now(self) -> float:
        """The time on the bucket's clock, binding it to the running loop on first use."""
        if self._loop is None:
            # Outside any loop the bucket keeps time.monotonic until its first acquire().
            with contextlib.suppress(RuntimeError):
                self._bind(asyncio.get_running_loop())
        return self._clock()

    def _due(self) -> float:
        """The earliest time the next slot may be granted."""
        # GCRA: a request conforms once now >= TAT - tau, tau = (burst - 1) intervals.
        return max(self._tat - (self._burst - 1) * self._interval, self._cooldown_until)

    def _grant(self, at: float) -> None:
        """Book one slot granted at (virtual) time ``at``."""
        tau = (self._burst - 1) * self._interval
        # TAT moves one interval past the later of itself and the grant (an idle bucket does
        # not bank credit beyond the burst); a cooldown's end counts as an empty bucket.
        self._tat = max(self._tat, at, self._cooldown_until + tau) + self._interval
        self._grants += 1

    def _release(self) -> None:
        """Timer callback: grant every due waiter at the head of the queue, then re-arm."""
        self._timer = None
        now = self._clock()
        queue = self._queue
        while queue:
            arrived, future = queue[0]
            if future.done():  # cancelled while queued: skipped, it consumes no slot
                queue.popleft()
                self._dead -= 1
                continue
            due = self._due()
            if due > now + _CLOCK_SLACK:
                break  # not yet (a cooldown or a rate cut since the timer was armed)
            queue.popleft()
            self._waiting -= 1
            self._resuming += 1
            # Book the grant when GCRA gave it, not when the loop got round to running this
            # callback (latency must not lower the rate), but catch up half an interval at most.
            self._grant(min(now, max(due, arrived, now - _CATCH_UP_INTERVALS * self._interval)))
            future.set_result(None)
        self._arm()

    def _arm(self) -> None:
        """Make sure the timer fires no later than the head of the queue is due."""
        if not self._waiting:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            return
        due = self._due()
        if self._timer is not None:
            if due >= self._timer.when():
                return  # a later due time is found when the timer fires and re-checks
            self._timer.cancel()
        assert self._loop is not None
        if self._sleep is None:
            self._timer = self._loop.call_at(due, self._release)
        else:
            self._timer = _SleepTimer(self._loop, due, self._clock, self._sleep, self._release)

    def _forget(self, future: asyncio.Future[None]) -> None:
        """A waiter was cancelled: give its slot back, whether or not it had been granted."""
        if future.done() and not future.cancelled():
            # Granted, but the caller was cancelled before it could use the slot: un-book it.
            self._tat -= self._interval
            self._grants -= 1
            self._resuming -= 1
        else:
            future.cancel()
            self._waiting -= 1
            self._dead += 1
            if self._dead >= _COMPACT_AT and 2 * self._dead > len(self._queue):
                self._queue = deque(item for item in self._queue if not item[1].done())
                self._dead = 0
        self._arm()

    def _set_rate(self, rate: float, now: float) -> None:
        """Change the effective rate, keeping the outstanding debt in whole slots."""
        old_interval, self._rate, self._interval = self._interval, rate, 1.0 / rate
        if self._tat > now:
            # The slots already booked ahead of now are re-spaced at the new interval, so a
            # cut also delays waiters already queued, and growth brings them forward.
            self._tat = now + (self._tat - now) * (self._interval / old_interval)

    def _bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Move the bucket to ``loop``, refusing while callers wait on another live loop."""
        old = self._loop
        if old is not None and (self._waiting or self._resuming) and not old.is_closed():
            raise RuntimeError(
                f"this TokenBucket has {self._waiting + self._resuming} callers waiting on "
                "another event loop; a bucket serves one event loop at a time"
            )
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._queue.clear()
        self._waiting = self._dead = self._resuming = 0
        self._loop = loop
        if self._injected_clock is not None:
            return  # the bucket's own time: the same whatever the loop
        # Carry the state over as offsets from now, since each loop may keep its own clock.
        shift = loop.time() - self._clock()
        self._tat += shift
        self._cooldown_until += shift
        self._last_cut += shift
        self._clock = loop.time
