"""The fake provider's sense of time: real time by default, or a clock a test moves.

Everything time-based in the fake reads its clock: log arrivals and status changes,
the 48-hour retention and the 60-second rate-limit window. Slow-response faults are
the exception: they sleep in real time, because the client's timeout runs on it.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta
from typing import Protocol, runtime_checkable

from .._time import floor_ms, utc_now

__all__ = ["Clock", "FakeClock", "SystemClock"]


@runtime_checkable
class Clock(Protocol):
    """Anything with a `now()` that returns an aware datetime."""

    def now(self) -> datetime:
        """The current time, timezone-aware."""
        ...


class SystemClock:
    """The real time, in UTC: the fake's default clock."""

    def now(self) -> datetime:
        """The current real time, in UTC."""
        return utc_now()

    def __repr__(self) -> str:
        return "SystemClock()"


class FakeClock:
    """A clock a test controls: it stands still until moved, so hours pass instantly.

    >>> from datetime import UTC
    >>> clock = FakeClock(datetime(2026, 1, 1, 12, 0, tzinfo=UTC))
    >>> clock.advance(timedelta(hours=49))
    >>> clock.now()
    datetime.datetime(2026, 1, 3, 13, 0, tzinfo=datetime.timezone.utc)

    Args:
        start: Where the clock starts; the real time now (to the millisecond) if omitted.
        ticking: If true the clock also moves with real time from `start`, and
            `advance`/`set` jump it. A standing clock (the default) keeps tests
            deterministic; a ticking one lets real sleeps (a client honouring
            `Retry-After`) slide the rate-limit window.
    """

    __slots__ = ("_base", "_lock", "_started", "ticking")

    def __init__(self, start: datetime | None = None, *, ticking: bool = False) -> None:
        if start is None:
            start = floor_ms(utc_now())
        if start.utcoffset() is None:
            raise ValueError("FakeClock needs an aware datetime; give it a timezone")
        self._base = start
        self._started = time.monotonic()
        self._lock = threading.Lock()
        #: Whether the clock moves with real time between jumps.
        self.ticking = ticking

    def now(self) -> datetime:
        """The clock's current time."""
        with self._lock:
            if not self.ticking:
                return self._base
            return self._base + timedelta(seconds=time.monotonic() - self._started)

    def advance(self, delta: timedelta) -> None:
        """Move the clock forward by `delta` (a negative delta moves it back)."""
        with self._lock:
            self._base += delta

    def set(self, when: datetime) -> None:
        """Put the clock at `when` (an aware datetime)."""
        if when.utcoffset() is None:
            raise ValueError("FakeClock needs an aware datetime; give it a timezone")
        with self._lock:
            self._base = when
            self._started = time.monotonic()

    def __repr__(self) -> str:
        return f"FakeClock({self.now().isoformat()!r}, ticking={self.ticking})"
