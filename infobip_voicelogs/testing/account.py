"""One fake provider account: its credentials, its logs, its traffic, its faults, its limit."""

from __future__ import annotations

import bisect
import collections
import heapq
import random
import threading
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import attrs

from .._time import floor_ms
from ..models import GeneralStatus, VoiceLog
from .clock import Clock
from .faults import Fault, FaultPlan
from .pull import PullBox
from .query import LogFilter
from .traffic import DEFAULT_OUTCOMES, LogLife, LogMaker, Traffic, random_uuid

if TYPE_CHECKING:
    from .pusher import ReportPusher

__all__ = ["RATE_WINDOW", "RETENTION", "FakeAccount"]

#: How long the provider keeps logs. Written here again on purpose, not imported from the
#: library's `_time`: the fake is the oracle the client is tested against, so its idea of
#: the provider's rules must not change when the client's does.
RETENTION = timedelta(hours=48)
#: The window of the provider's rate limit ("120 requests per minute").
RATE_WINDOW = timedelta(seconds=60)
#: How many logs of one `generate` call share a bulk id.
BULK_SIZE = 10


def _newest_key(life: LogLife) -> tuple[datetime, tuple[int, int]]:
    return (life.sent_at, life.order)


class FakeAccount:
    """A provider account inside a `FakeInfobip`; make one with `FakeInfobip.add_account`.

    It holds the ground truth the fake serves: logs given to it (`generate`, `add_logs`)
    and logs that keep arriving (`traffic`), each shown in its state at the fake's now.

    >>> account = fake.add_account("acme", api_key="test-key")   # doctest: +SKIP
    >>> account.generate(100, within=timedelta(hours=2))         # doctest: +SKIP
    >>> account.script(Fault.status(429), Fault.reset())          # doctest: +SKIP

    The repr shows the name only: credentials never appear in it.
    """

    def __init__(
        self,
        name: str,
        *,
        api_key: str,
        clock: Clock,
        seed: int | str,
        rate_limit_per_minute: int,
        price_per_second: Decimal = Decimal("0.01"),
        currency: str = "EUR",
        settle_after: timedelta = timedelta(seconds=30),
        outcomes: Mapping[GeneralStatus, float] = DEFAULT_OUTCOMES,
        pull_share: float = 0.0,
    ) -> None:
        if rate_limit_per_minute < 1:
            raise ValueError("rate_limit_per_minute must be at least 1")
        #: The account's name, as the journal records it.
        self.name = name
        self._api_key = api_key
        self._clock = clock
        self._seed = f"{seed}:{name}"
        #: At most this many requests are answered in any 60-second window.
        self.rate_limit_per_minute = rate_limit_per_minute
        self._maker = LogMaker(price_per_second, currency, settle_after, dict(outcomes))
        self._rng = random.Random(self._seed)
        self._sequence = 0
        self._lives: list[LogLife] = []  # oldest first, by (sent_at, order)
        self._traffic: list[Traffic] = []
        self._admitted: collections.deque[datetime] = collections.deque()
        self._lock = threading.RLock()
        #: The faults this account's requests get: see `script` and `random_faults`.
        self.faults = FaultPlan(self._seed)
        #: The reports of the calls sent without a notify URL (a ``pull_share`` of them),
        #: kept for `GET /voice/1/reports`, and the ground truth of every pull.
        self.pull = PullBox(self, pull_share)

    def __repr__(self) -> str:
        return f"FakeAccount({self.name!r})"

    @property
    def api_key(self) -> str:
        """The API key a client sends as `Authorization: App <key>`."""
        return self._api_key

    # -- logs ------------------------------------------------------------------------------

    def generate(
        self,
        n: int,
        *,
        within: timedelta = timedelta(hours=1),
        same_millisecond: bool = False,
        settle_after: timedelta | None = None,
    ) -> list[VoiceLog]:
        """Add `n` realistic logs sent within `within` before the fake's now; newest first.

        Each log starts `PENDING` and settles after a seeded delay of at most
        `settle_after` (the account's default if `None`; `timedelta(0)` for logs final
        at once). With `same_millisecond` all `n` share one sent time, as a burst does
        at the provider: the case that tests a client's paging.

        Returns the new logs as they stand now.
        """
        if n < 0 or within < timedelta(0):
            raise ValueError("generate needs n >= 0 and a non-negative span")
        now = self._clock.now()
        with self._lock:
            if same_millisecond:
                times = [now - within * self._rng.random()] * n
            else:
                times = sorted(now - within * self._rng.random() for _ in range(n))
            bulk_id = ""
            new: list[LogLife] = []
            for index, sent_at in enumerate(times):
                if index % BULK_SIZE == 0:
                    bulk_id = random_uuid(self._rng)
                life = self._maker.life(
                    self._rng,
                    sent_at,
                    self._next_order(),
                    bulk_id=bulk_id,
                    settle_after=settle_after,
                )
                new.append(life)
            self._insert(new)
        return [life.at(now) for life in reversed(new)]

    def add_logs(self, logs: Iterable[VoiceLog]) -> None:
        """Add logs as given; they never change unless you `update` them.

        Every log needs an aware `sent_at`. Its `sent_at` and `done_at` are cut to the
        millisecond, as the wire carries them, so a query for a log's own timestamp finds
        it. Logs of equal `sent_at` are served in the reverse order of adding (the last
        added counts as newest).
        """
        lives = []
        for log in logs:
            if log.sent_at is None or log.sent_at.utcoffset() is None:
                raise ValueError(f"log {log.message_id!r} needs an aware sent_at")
            done_at = None if log.done_at is None else floor_ms(log.done_at)
            log = attrs.evolve(log, sent_at=floor_ms(log.sent_at), done_at=done_at)
            lives.append(LogLife(log, self._next_order()))
        with self._lock:
            self._insert(lives)

    def update(self, message_id: str, **changes: Any) -> VoiceLog:
        """Change a log given by `generate` or `add_logs`, as the provider would; it stays so.

        >>> account.update(log.message_id, status=...)  # doctest: +SKIP
        """
        now = self._clock.now()
        with self._lock:
            for index, life in enumerate(self._lives):
                if life.pending.message_id == message_id:
                    log = attrs.evolve(life.at(now), **changes)
                    if log.sent_at != life.sent_at:
                        raise ValueError("update cannot move a log in time; add a new one")
                    self._lives[index] = LogLife(log, life.order)
                    return log
        raise KeyError(message_id)

    def traffic(
        self,
        rate_per_second: float,
        *,
        settle_after: timedelta | None = None,
        start: datetime | None = None,
        until: datetime | None = None,
    ) -> Traffic:
        """Make logs keep arriving at `rate_per_second` from `start` (the fake's now).

        Nothing runs in the background: the logs are computed from the clock, so
        moving it forward makes the logs that would have arrived appear, each moving
        from `PENDING` to its final state after its delay. Logs of a stream are the
        same for every fake built with the same seed.
        """
        with self._lock:
            stream = Traffic(
                rate_per_second,
                start if start is not None else self._clock.now(),
                f"{self._seed}:traffic:{len(self._traffic)}",
                len(self._traffic) + 1,
                settle_after,
                until,
            )
            self._traffic.append(stream)
        return stream

    def stop_traffic(self) -> None:
        """Stop every traffic stream at the fake's now; the logs already sent stay and settle."""
        now = self._clock.now()
        with self._lock:
            self._traffic = [
                t if t.until is not None and t.until <= now else attrs.evolve(t, until=now)
                for t in self._traffic
            ]

    @property
    def logs(self) -> list[VoiceLog]:
        """The ground truth: every retained log in its current state, newest first."""
        return self.select(LogFilter(), limit=None)

    def select(self, query: LogFilter, *, limit: int | None = -1) -> list[VoiceLog]:
        """The logs a request with `query` gets now: filtered, newest first, at most `limit`.

        `limit=-1` takes the query's limit; `None` means no limit.
        """
        now = self._clock.now()
        cap = query.limit if limit == -1 else limit
        low = now - RETENTION
        if query.sent_since is not None:
            low = max(low, query.sent_since)
        high = now if query.sent_until is None else min(now, query.sent_until)
        found: list[VoiceLog] = []
        with self._lock:
            for life in self._newest_first(low, high, now):
                log = life.at(now)
                if query.matches(log):
                    found.append(log)
                    if cap is not None and len(found) >= cap:
                        break
        return found

    # -- delivery reports ------------------------------------------------------------------

    @property
    def clock(self) -> Clock:
        """The fake's clock, which this account's logs and reports follow."""
        return self._clock

    @property
    def seed(self) -> str:
        """The account's seed: everything random about it derives from this."""
        return self._seed

    def settling(self, after: datetime, until: datetime) -> list[VoiceLog]:
        """The final logs of the calls sent by now that settle in `(after, until]`,
        in the order they settle."""
        now = self._clock.now()
        with self._lock:
            lives = [
                life
                for life in self._newest_first(now - RETENTION, now, now)
                if life.final is not None
                and life.settles_at is not None
                and after < life.settles_at <= until
            ]
        lives.sort(key=lambda life: (life.settles_at, life.order))
        return [life.final for life in lives if life.final is not None]

    def push_reports(self, url: str, **options: Any) -> ReportPusher:
        """Give this account a notify URL: each call's report is POSTed there as it settles
        (but for the calls sent without one, whose reports wait in `pull`).

        Keyword arguments go to `ReportPusher` (`fmt`, `shape`, `auth`, `faults`,
        `batch_size`, `client`, `app`). Reports go only when `await pusher.step()` is
        called, for the calls that settled by the fake's clock since the last step.
        """
        from .pusher import ReportPusher

        return ReportPusher(self, url, **options)

    # -- faults ----------------------------------------------------------------------------

    def script(self, *faults: Fault) -> None:
        """Queue faults: the next requests of this account get them, one each, in order.

        >>> account.script(Fault.status(429), Fault.none(), Fault.reset())  # doctest: +SKIP
        """
        self.faults.script(faults)

    def random_faults(
        self, probabilities: Mapping[Fault, float], *, seed: int | str | None = None
    ) -> None:
        """Give each request (after the script) a fault with these probabilities, seeded.

        >>> account.random_faults({Fault.status(503): 0.1, Fault.reset(): 0.05})  # doctest: +SKIP
        """
        self.faults.randomly(probabilities, seed)

    # -- the rate limit --------------------------------------------------------------------

    def admit(self, now: datetime) -> timedelta | None:
        """Count a request against the limit: `None` if it may pass, else the wait for a slot.

        A sliding window: a request passes when fewer than `rate_limit_per_minute`
        requests passed in the 60 seconds before it. Refused requests do not count.
        """
        with self._lock:
            while self._admitted and self._admitted[0] <= now - RATE_WINDOW:
                self._admitted.popleft()
            if len(self._admitted) >= self.rate_limit_per_minute:
                return self._admitted[0] + RATE_WINDOW - now
            self._admitted.append(now)
            return None

    # -- internals -------------------------------------------------------------------------

    def _next_order(self) -> tuple[int, int]:
        with self._lock:
            self._sequence += 1
            return (0, self._sequence)

    def _insert(self, lives: list[LogLife]) -> None:
        for life in lives:
            bisect.insort(self._lives, life, key=_newest_key)

    def _newest_first(self, low: datetime, high: datetime, now: datetime) -> Iterator[LogLife]:
        start = bisect.bisect_left(self._lives, low, key=lambda life: life.sent_at)
        end = bisect.bisect_right(self._lives, high, key=lambda life: life.sent_at)
        stored = (self._lives[i] for i in range(end - 1, start - 1, -1))
        streams = [t.newest_first(low, high, now, self._maker) for t in self._traffic]
        return heapq.merge(stored, *streams, key=_newest_key, reverse=True)
