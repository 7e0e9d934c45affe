"""Realistic logs and their lives: sent `PENDING`, later final, all decided by a seed.

A `LogLife` holds how a log looks while pending, how it ends and when it changes;
the fake shows whichever state its clock says. Logs that keep arriving (`Traffic`)
are computed from the clock instead of stored: log number `k` of a stream arrives
at `start + k / rate`, and everything about it comes from `Random(f"{seed}:{k}")`,
so moving the clock produces exactly the logs that would have arrived, and two
fakes with the same seed agree on every log.
"""

from __future__ import annotations

import math
import random
import uuid
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta
from decimal import Decimal

import attrs

from .._time import MILLISECOND, floor_ms
from ..models import ErrorInfo, GeneralStatus, Price, Status, VoiceLog

__all__ = ["DEFAULT_OUTCOMES", "LogLife", "LogMaker", "Traffic"]

#: How logs end unless an account says otherwise: most calls are answered.
DEFAULT_OUTCOMES: Mapping[GeneralStatus, float] = {
    GeneralStatus.DELIVERED: 0.8,
    GeneralStatus.UNDELIVERABLE: 0.1,
    GeneralStatus.EXPIRED: 0.05,
    GeneralStatus.REJECTED: 0.05,
}

# The provider's vocabulary, as its logs spell it.
PENDING = Status(1, "PENDING", 26, "PENDING_ACCEPTED", "Message accepted, pending for delivery.")
FINAL_STATUS = {
    GeneralStatus.DELIVERED: Status(
        3, "DELIVERED", 5, "DELIVERED_TO_HANDSET", "Message delivered to handset"
    ),
    GeneralStatus.UNDELIVERABLE: Status(
        2, "UNDELIVERABLE", 9, "UNDELIVERABLE_NOT_DELIVERED", "Message sent not delivered"
    ),
    GeneralStatus.EXPIRED: Status(4, "EXPIRED", 15, "EXPIRED_EXPIRED", "Message expired"),
    GeneralStatus.REJECTED: Status(5, "REJECTED", 6, "REJECTED_NETWORK", "Network is forbidden"),
}
NO_ERROR = ErrorInfo(0, "OK", 0, "NO_ERROR", "No Error", False)
FAILURES = {
    GeneralStatus.UNDELIVERABLE: (
        ErrorInfo(
            1,
            "HANDSET_ERRORS",
            5003,
            "EC_VOICE_NO_ANSWER",
            "User was notified, but did not answer call",
            True,
        ),
        ErrorInfo(1, "HANDSET_ERRORS", 5486, "EC_BUSY_HERE", "User busy", True),
    ),
    GeneralStatus.EXPIRED: (
        ErrorInfo(
            1,
            "HANDSET_ERRORS",
            5480,
            "EC_TEMPORARILY_UNAVAILABLE",
            "Callee is currently unavailable",
            False,
        ),
    ),
    GeneralStatus.REJECTED: (
        ErrorInfo(3, "OPERATOR_ERRORS", 5403, "EC_FORBIDDEN", "Destination is forbidden", True),
    ),
}

# Destinations by network: (number prefix, mccmnc), so the two agree like real logs.
NETWORKS = (
    ("4179", "22801"),
    ("4176", "22802"),
    ("38591", "21901"),
    ("49151", "26201"),
    ("447700", "23410"),
)
SENDERS = ("41793026700", "38516000000", "InfoVoice")
TEXTS = (
    "Your verification code is {code}.",
    "Your appointment is confirmed for {code}.",
    "Test voice message {code}.",
)
NUMBER_LENGTH = 11
#: The longest answered call, in seconds.
MAX_DURATION = 90


def random_uuid(rng: random.Random) -> str:
    """A version-4 UUID string drawn from `rng`, so ids repeat for a seed."""
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


@attrs.frozen
class LogLife:
    """A log's whole life: how it looks until `settles_at`, and after.

    A log injected as it is (`FakeAccount.add_logs`) has no `final` and never changes.
    """

    #: The log while it is not final (or forever, if `final` is `None`).
    pending: VoiceLog
    #: Tie-breaker among logs sent in the same millisecond: the higher, the newer.
    order: tuple[int, int]
    #: The log once final.
    final: VoiceLog | None = None
    #: When the log becomes `final`.
    settles_at: datetime | None = None

    @property
    def sent_at(self) -> datetime:
        """When the log was sent."""
        assert self.pending.sent_at is not None  # every log the fake holds has one
        return self.pending.sent_at

    def at(self, now: datetime) -> VoiceLog:
        """The log as the provider shows it at `now`."""
        if self.final is not None and self.settles_at is not None and now >= self.settles_at:
            return self.final
        return self.pending


@attrs.frozen
class LogMaker:
    """Makes realistic logs for one account: its price, currency, outcomes and settling delay.

    Attributes:
        price_per_second: What a second of call costs once the log is final.
        currency: The price's currency.
        settle_after: The longest a log stays `PENDING`; each log settles after a
            seeded delay between half of this and all of it.
        outcomes: How likely each final status group is.
    """

    price_per_second: Decimal = Decimal("0.01")
    currency: str = "EUR"
    settle_after: timedelta = timedelta(seconds=30)
    outcomes: Mapping[GeneralStatus, float] = DEFAULT_OUTCOMES

    def life(
        self,
        rng: random.Random,
        sent_at: datetime,
        order: tuple[int, int],
        *,
        bulk_id: str,
        settle_after: timedelta | None = None,
    ) -> LogLife:
        """One log's life, drawn from `rng`: sent at `sent_at` (to the millisecond)."""
        sent_at = floor_ms(sent_at)
        prefix, mccmnc = rng.choice(NETWORKS)
        digits = "".join(rng.choice("0123456789") for _ in range(NUMBER_LENGTH - len(prefix)))
        pending = VoiceLog(
            bulk_id=bulk_id,
            message_id=random_uuid(rng),
            to=prefix + digits,
            from_=rng.choice(SENDERS),
            text=rng.choice(TEXTS).format(code=rng.randint(1000, 9999)),
            sent_at=sent_at,
            duration=0,
            mccmnc=mccmnc,
            price=Price(Decimal("0"), self.currency),
            status=PENDING,
            error=NO_ERROR,
        )
        span = settle_after if settle_after is not None else self.settle_after
        settles_at = floor_ms(sent_at + span * rng.uniform(0.5, 1.0))
        group = rng.choices(list(self.outcomes), weights=list(self.outcomes.values()))[0]
        final = attrs.evolve(pending, done_at=settles_at, status=FINAL_STATUS[group])
        if group is GeneralStatus.DELIVERED:
            # The call rang, was answered and ended by `settles_at`: it lasted whole seconds,
            # at most 90 and never longer than from its sending to its end.
            longest = min(MAX_DURATION, int((settles_at - sent_at).total_seconds()))
            final = attrs.evolve(
                final,
                duration=rng.randint(1, longest) if longest >= 1 else 0,
                price=Price(self.price_per_second, self.currency),
            )
        else:
            # A call that did not connect lasts 0 s; a rejected one is not charged at all.
            charged = Decimal("0") if group is GeneralStatus.REJECTED else self.price_per_second
            final = attrs.evolve(
                final, error=rng.choice(FAILURES[group]), price=Price(charged, self.currency)
            )
        return LogLife(pending, order, final, settles_at)


@attrs.frozen
class Traffic:
    """A stream of logs arriving at a steady rate, computed lazily from the clock.

    Log `k` is sent at `start + k / rate_per_second` (to the millisecond; at more than
    1000 a second several share a millisecond), until `until` if set. Three
    consecutive logs share a bulk id.
    """

    rate_per_second: float
    start: datetime
    seed: str
    #: Which stream of its account this is, for ordering logs of equal millisecond.
    stream: int
    #: The longest a log of this stream stays pending (the account's default if `None`).
    settle_after: timedelta | None = None
    #: When the stream stops (inclusive); it runs for ever if `None`.
    until: datetime | None = None

    BULK_SIZE = 3

    def __attrs_post_init__(self) -> None:
        if not self.rate_per_second > 0:
            raise ValueError("a traffic rate must be above 0")

    def arrival(self, k: int) -> datetime:
        """When log number `k` is sent."""
        return floor_ms(self.start + timedelta(microseconds=round(k * 1e6 / self.rate_per_second)))

    def indexes(self, low: datetime, high: datetime) -> range:
        """The numbers of the logs sent in `[low, high]`, in increasing order."""
        if self.until is not None:
            high = min(high, self.until)
        if high < self.arrival(0) or high < low:  # log 0's time is cut to the millisecond
            return range(0)
        first = max(0, math.ceil((low - self.start).total_seconds() * self.rate_per_second) - 1)
        while self.arrival(first) < low:
            first += 1
        # Times are cut to the millisecond, so every log sent before `high` + 1 ms shows as
        # `high` or earlier: above 1000 a second, several of them.
        reach = (high + MILLISECOND - self.start).total_seconds()
        last = math.floor(reach * self.rate_per_second) + 1
        while last >= first and self.arrival(last) > high:
            last -= 1
        return range(first, last + 1)

    def life(self, k: int, maker: LogMaker) -> LogLife:
        """The life of log number `k`: the same for every call and every fake with this seed."""
        bulk_id = random_uuid(random.Random(f"{self.seed}:bulk:{k // self.BULK_SIZE}"))
        rng = random.Random(f"{self.seed}:{k}")
        return maker.life(
            rng, self.arrival(k), (self.stream, k), bulk_id=bulk_id, settle_after=self.settle_after
        )

    def newest_first(
        self, low: datetime, high: datetime, now: datetime, maker: LogMaker
    ) -> Iterator[LogLife]:
        """The lives of the logs sent in `[low, high]` by `now`, newest first, one by one."""
        # A log's sent time is cut to the millisecond, so one sent 0.4 ms after `now`
        # would pass `high`; it has not been sent yet, so stop at the last one that has.
        arrived = math.floor((now - self.start).total_seconds() * self.rate_per_second + 1e-9)
        for k in reversed(self.indexes(low, high)):
            if k <= arrived:
                yield self.life(k, maker)
