"""`FakeTime`: virtual monotonic time for a test's `TokenBucket` and `LogsFetcher`.

```python
time = FakeTime()
bucket = TokenBucket(2.0, clock=time.now, sleep=time.sleep)
fetcher = LogsFetcher(url, auth=key, throttle=bucket)   # backoff and budget on it too
```

Every sleep returns at once and moves the time forward by what it asked, so a retry after
a 429 with `Retry-After: 30` costs no real time, and ``time.sleeps`` says what was waited.
"""

from __future__ import annotations

import asyncio
import math
from datetime import timedelta

from .clock import FakeClock

__all__ = ["FakeTime"]


class FakeTime:
    """A monotonic clock that only moves when something sleeps on it (or a test advances it).

    >>> time = FakeTime()
    >>> asyncio.run(time.sleep(2.5))
    >>> time.now(), time.sleeps
    (2.5, [2.5])

    Args:
        start: The time it starts at, in seconds.
        clock: A `FakeClock` (the fake provider's) to move by the same amounts, so that
            the provider's rate-limit window slides while the client sleeps.

    Sleeps are not interleaved: a sleep moves the time from *now* by what it asked, so
    two tasks sleeping 1 s each, one after the other, end 2 s later, not 1 s. Time only
    runs ahead of where a real clock would be, never behind it, so a bound checked on it
    (a budget, a rate) is kept in real time too.
    """

    __slots__ = ("_clock", "_now", "sleeps")

    def __init__(self, start: float = 0.0, *, clock: FakeClock | None = None) -> None:
        self._now = float(start)
        self._clock = clock
        #: Every sleep asked for, in seconds, oldest first.
        self.sleeps: list[float] = []

    def now(self) -> float:
        """The current virtual time, in seconds."""
        return self._now

    def advance(self, seconds: float) -> None:
        """Move the time forward by ``seconds`` (and the linked `FakeClock` with it)."""
        if not (math.isfinite(seconds) and seconds >= 0):
            raise ValueError(f"seconds must be finite and >= 0, not {seconds!r}")
        self._now += seconds
        if self._clock is not None:
            self._clock.advance(timedelta(seconds=seconds))

    async def sleep(self, seconds: float) -> None:
        """Record the sleep, move the time by ``seconds`` and yield once to the event loop."""
        seconds = max(0.0, seconds)
        self.sleeps.append(seconds)
        self.advance(seconds)
        await asyncio.sleep(0)  # a cancellation point, as a real sleep is

    def __repr__(self) -> str:
        return f"FakeTime({self._now:g}, sleeps={len(self.sleeps)})"
