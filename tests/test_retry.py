"""The retry policy on its own: predicates, waits, stop, reraise, throttle feedback, hooks."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

import attrs
import pytest
from conftest import Sleeps

from infobip_voicelogs import (
    ApiError,
    AuthenticationError,
    BudgetExceededError,
    DecodeError,
    RateLimitError,
    RetryEvent,
    ServerError,
    TransportError,
)
from infobip_voicelogs.retry import (
    BACKOFF_CAP,
    DEFAULT_MAX_ATTEMPTS,
    RETRY_AFTER_JITTER,
    Budget,
    RetryPolicy,
    RetryWait,
    backoff_ceiling,
    budget_seconds,
    is_retryable,
    parse_retry_after,
)
from infobip_voicelogs.testing import FakeTime

# -- helpers -------------------------------------------------------------------------------


@attrs.define
class Listener:
    """Records what the policy tells the throttle."""

    cooldowns: list[float] = attrs.Factory(list)
    cuts: int = 0

    def cooldown(self, seconds: float) -> None:
        self.cooldowns.append(seconds)

    def on_rate_limited(self) -> None:
        self.cuts += 1


class Flaky:
    """A callable that raises the given errors in turn, then returns ``"ok"``."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


def highest(low: float, high: float) -> float:
    """A `uniform` that always draws the top of the range."""
    return high


# -- predicates ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "retryable"),
    [
        (ApiError(408), True),
        (RateLimitError(429), True),
        (ServerError(500), True),
        (ServerError(502), True),
        (ServerError(503), True),
        (ServerError(504), True),
        (TransportError("ReadTimeout"), True),
        (ApiError(400), False),
        (AuthenticationError(401), False),
        (AuthenticationError(403), False),
        (ApiError(404), False),
        (ServerError(501), False),
        (DecodeError("not JSON"), False),
        (ValueError("a bug"), False),
    ],
)
def test_what_is_retried(exc: BaseException, retryable: bool) -> None:
    assert is_retryable(exc) is retryable


def test_a_retry_after_beyond_the_maximum_is_not_waited_for() -> None:
    assert is_retryable(RateLimitError(429, retry_after=60.0), max_retry_after=60.0)
    assert not is_retryable(RateLimitError(429, retry_after=61.0), max_retry_after=60.0)
    assert not is_retryable(ServerError(503, retry_after=3600.0))


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("0", 0.0),
        ("3", 3.0),
        (" 120 ", 120.0),
        ("1.5", 1.5),
        ("Wed, 21 Oct 2015 07:28:10 GMT", 10.0),
        ("Wednesday, 21-Oct-15 07:28:10 GMT", 10.0),  # RFC 850, still to be accepted
        ("Wed Oct 21 07:28:10 2015", 10.0),  # asctime
        ("Wed, 21 Oct 2015 07:00:00 GMT", 0.0),  # in the past: go now
        ("soon", None),
        ("-5", None),
        ("", None),
        ("inf", None),
        (None, None),
    ],
)
def test_retry_after_forms(header: str | None, seconds: float | None) -> None:
    now = datetime(2015, 10, 21, 7, 28, 0, tzinfo=UTC)
    assert parse_retry_after(header, now=now) == seconds


def test_backoff_doubles_from_half_a_second_to_a_cap() -> None:
    assert [backoff_ceiling(n) for n in range(1, 9)] == [0.5, 1, 2, 4, 8, 16, 30, 30]
    assert backoff_ceiling(10_000) == BACKOFF_CAP


def test_a_retry_after_gets_a_small_positive_jitter() -> None:
    assert RetryWait(uniform=highest).for_error(RateLimitError(429, retry_after=2.0), 1) == (
        2.0 + RETRY_AFTER_JITTER
    )
    assert RetryWait(uniform=lambda lo, hi: lo).for_error(
        RateLimitError(429, retry_after=2.0), 1
    ) == (2.0)


def test_without_retry_after_the_wait_is_full_jitter_up_to_the_ceiling() -> None:
    wait = RetryWait(uniform=highest)
    assert [wait.for_error(ServerError(503), n) for n in (1, 2, 3)] == [0.5, 1.0, 2.0]
    assert RetryWait(uniform=lambda lo, hi: lo).for_error(ServerError(503), 3) == 0.0


# -- the policy ----------------------------------------------------------------------------


async def test_retries_until_success_and_counts_every_try() -> None:
    sleeps = Sleeps()
    flaky = Flaky(ServerError(503), TransportError("ConnectError"))
    assert await RetryPolicy(sleep=sleeps).call(flaky) == "ok"
    assert flaky.calls == 3
    assert len(sleeps) == 2


async def test_max_attempts_counts_the_first_try_and_the_last_typed_error_surfaces() -> None:
    sleeps = Sleeps()
    flaky = Flaky(*[ServerError(503, "E503", f"try {n}") for n in range(1, 10)])
    with pytest.raises(ServerError) as caught:
        await RetryPolicy(max_attempts=4, sleep=sleeps).call(flaky)
    assert flaky.calls == 4
    assert len(sleeps) == 3
    assert caught.value.text == "try 4"


async def test_the_default_is_six_tries() -> None:
    flaky = Flaky(*[TransportError("ReadError")] * 10)
    with pytest.raises(TransportError):
        await RetryPolicy(sleep=Sleeps()).call(flaky)
    assert flaky.calls == DEFAULT_MAX_ATTEMPTS == 6


@pytest.mark.parametrize(
    "error", [ApiError(400), AuthenticationError(401), ApiError(404), DecodeError("bad")]
)
async def test_permanent_failures_are_raised_at_once(error: Exception) -> None:
    sleeps = Sleeps()
    flaky = Flaky(error)
    with pytest.raises(type(error)):
        await RetryPolicy(sleep=sleeps).call(flaky)
    assert flaky.calls == 1
    assert sleeps == []


async def test_waits_follow_retry_after_else_backoff() -> None:
    sleeps = Sleeps()
    policy = RetryPolicy(sleep=sleeps, wait=RetryWait(uniform=highest))
    flaky = Flaky(RateLimitError(429, retry_after=7.0), ServerError(503), ServerError(503))
    await policy.call(flaky)
    # The 2nd and 3rd retries have no Retry-After: backoff ceilings of retries 2 and 3.
    assert sleeps == [7.0 + RETRY_AFTER_JITTER, 1.0, 2.0]


async def test_a_429_is_told_to_the_throttle_with_the_wait() -> None:
    sleeps, listener = Sleeps(), Listener()
    flaky = Flaky(RateLimitError(429, retry_after=2.0), ServerError(503))
    await RetryPolicy(throttle=listener, sleep=sleeps).call(flaky)
    assert listener.cooldowns == [sleeps[0]]  # everyone waits as long as the retrier
    assert listener.cuts == 1  # the 503 is not a rate limit


async def test_a_demand_above_max_retry_after_raises_at_once_without_a_cooldown() -> None:
    sleeps, listener = Sleeps(), Listener()
    flaky = Flaky(RateLimitError(429, "TOO_MANY_REQUESTS", retry_after=3600.0))
    policy = RetryPolicy(throttle=listener, sleep=sleeps, max_retry_after=60.0)
    with pytest.raises(RateLimitError) as caught:
        await policy.call(flaky)
    assert caught.value.retry_after == 3600.0
    assert flaky.calls == 1
    assert sleeps == []
    # Holding every caller for an hour would be the hang we refuse: the rate is cut only.
    assert listener.cooldowns == []
    assert listener.cuts == 1


async def test_a_last_429_still_slows_the_account_down() -> None:
    listener = Listener()
    flaky = Flaky(RateLimitError(429, retry_after=1.0))
    with pytest.raises(RateLimitError):
        await RetryPolicy(max_attempts=1, throttle=listener, sleep=Sleeps()).call(flaky)
    assert listener.cooldowns == [1.0]
    assert listener.cuts == 1


@pytest.mark.parametrize("stopper", [asyncio.CancelledError, KeyboardInterrupt, SystemExit])
@pytest.mark.parametrize("first", [True, False], ids=["first-try", "a-retry"])
async def test_cancellation_and_interrupts_pass_straight_through(
    stopper: type[BaseException], first: bool
) -> None:
    sleeps, listener, events = Sleeps(), Listener(), []
    errors = [stopper()] if first else [RateLimitError(429, retry_after=1.0), stopper()]
    flaky = Flaky(*errors, ServerError(503))
    policy = RetryPolicy(throttle=listener, sleep=sleeps, on_retry=events.append)
    with pytest.raises(stopper):
        await policy.call(flaky)
    assert flaky.calls == len(errors)  # never tried again
    assert len(sleeps) == len(events) == len(errors) - 1
    # Only the 429 before it reached the throttle: the interruption itself told nobody.
    assert listener.cuts == (0 if first else 1)


async def test_on_retry_sees_attempt_reason_wait_and_status() -> None:
    events: list[RetryEvent] = []
    sleeps = Sleeps()
    flaky = Flaky(
        RateLimitError(429, "TOO_MANY_REQUESTS"), TransportError("ReadTimeout: timed out")
    )
    await RetryPolicy(on_retry=events.append, sleep=sleeps).call(flaky)
    assert [(e.attempt, e.reason, e.status_code) for e in events] == [
        (1, "HTTP 429: TOO_MANY_REQUESTS", 429),
        (2, "ReadTimeout: timed out", None),
    ]
    assert [e.wait for e in events] == sleeps


async def test_each_retry_is_logged_at_info(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="infobip_voicelogs")
    await RetryPolicy(sleep=Sleeps()).call(Flaky(ServerError(502, "E502")))
    [record] = [r for r in caplog.records if r.name == "infobip_voicelogs"]
    assert record.levelno == logging.INFO
    assert "attempt 1 of 6" in record.getMessage()
    assert "HTTP 502: E502" in record.getMessage()


async def test_one_policy_serves_many_tasks_at_once() -> None:
    policy = RetryPolicy(sleep=Sleeps())

    async def job() -> int:
        flaky = Flaky(ServerError(503), ServerError(503))
        await asyncio.sleep(0)  # interleave the tasks' attempts
        await policy.call(flaky)
        return flaky.calls

    assert await asyncio.gather(*(job() for _ in range(100))) == [3] * 100


def test_nonsense_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError, match="max_retry_after"):
        RetryPolicy(max_retry_after=float("inf"))


# -- a budget ------------------------------------------------------------------------------


async def test_a_backoff_that_leaves_no_time_for_a_try_raises_budget_exceeded() -> None:
    time = FakeTime()
    budget = Budget.start(2.0, time.now)
    flaky = Flaky(*[ServerError(503)] * 10)
    # Backoff ceilings 0.5, 1, 2, ...: the third wait (2 s) no longer fits what is left.
    policy = RetryPolicy(sleep=time.sleep, wait=RetryWait(uniform=highest))
    with pytest.raises(BudgetExceededError) as caught:
        await policy.call(flaky, budget=budget)
    assert flaky.calls == 3
    assert time.sleeps == [0.5, 1.0]
    assert caught.value.backoff == pytest.approx(1.5)
    assert isinstance(caught.value.__cause__, ServerError)
    assert budget.refused_wait == 2.0


async def test_a_retry_after_that_leaves_no_time_raises_the_error_itself() -> None:
    time = FakeTime()
    limited = RateLimitError(429, retry_after=5.0)
    listener = Listener()
    policy = RetryPolicy(sleep=time.sleep, throttle=listener)
    with pytest.raises(RateLimitError) as caught:
        await policy.call(Flaky(limited), budget=Budget.start(3.0, time.now))
    assert caught.value is limited
    assert time.sleeps == []
    assert listener.cooldowns == [5.0]  # the account's other callers still hold off
    assert "Retry-After 5 s is more than" in caught.value.__notes__[0]


@pytest.mark.parametrize(("value", "seconds"), [(3, 3.0), (0.25, 0.25), (None, None)])
def test_budget_seconds_reads_numbers_and_timedeltas(value: float | None, seconds: float) -> None:
    assert budget_seconds(value) == seconds
    if value is not None:
        assert budget_seconds(timedelta(seconds=value)) == seconds
