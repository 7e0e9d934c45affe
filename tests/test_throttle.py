"""TokenBucket: FIFO slots at 1/rate, burst, cancellation, cooldown, adaptive rate.

Every test runs on a virtual clock: an event loop whose `time()` stands still while there is
work to do and jumps straight to the next timer when there is none (like trio's MockClock
with autojump, or `looptime`). Times asserted below are virtual, exact and instant to reach.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from infobip_voicelogs import TokenBucket

T = TypeVar("T")


# -- the virtual clock ---------------------------------------------------------------------


class _AutojumpSelector(selectors.DefaultSelector):
    """A selector that, instead of sleeping until the next timer, moves the clock there."""

    def __init__(self, loop: VirtualClockLoop) -> None:
        super().__init__()
        self._loop = loop

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = super().select(0)
        if ready or timeout == 0:
            return ready
        if (
            timeout is None
        ):  # nothing ready, no timer: every task waits on something that never comes
            raise RuntimeError("virtual clock: deadlock, no timer is scheduled")
        self._loop.now += timeout  # asyncio computed timeout = next timer - now
        return []


class VirtualClockLoop(asyncio.SelectorEventLoop):
    """An event loop on virtual time: idle moments take no wall-clock time at all."""

    def __init__(self) -> None:
        self.now = 0.0
        super().__init__(_AutojumpSelector(self))

    def time(self) -> float:
        return self.now


def run(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run ``main()`` to completion on a fresh virtual-clock loop starting at t=0."""
    loop = VirtualClockLoop()
    try:
        return loop.run_until_complete(main())
    finally:
        loop.close()


def now() -> float:
    return asyncio.get_running_loop().time()


async def at(t: float, coro: Awaitable[T]) -> T:
    """Await ``coro`` starting at virtual time ``t``."""
    await asyncio.sleep(t - now())
    return await coro


def hog_loop(start: float, *, until: float, then: Callable[[], object] = lambda: None) -> None:
    """At ``start``, run a callback that keeps the loop busy until ``until`` (a CPU hog),
    then calls ``then()``: what it starts runs before any timer that fell due meanwhile."""
    loop = asyncio.get_running_loop()
    assert isinstance(loop, VirtualClockLoop)

    def hog() -> None:
        loop.now = max(loop.now, until)
        then()

    loop.call_at(start, hog)


# -- basics --------------------------------------------------------------------------------


def test_a_free_slot_is_granted_at_once_then_callers_are_spaced_at_one_over_rate() -> None:
    async def main() -> list[tuple[float, float]]:
        bucket = TokenBucket(rate=4.0)
        return [(await bucket.acquire(), now()) for _ in range(4)]

    # (seconds waited, time granted): the first goes at once, the rest 0.25 s apart.
    waited, granted = zip(*run(main), strict=True)
    assert waited == pytest.approx((0.0, 0.25, 0.25, 0.25))
    assert granted == pytest.approx((0.0, 0.25, 0.5, 0.75))


def test_fifo_with_1000_waiters_release_in_arrival_order_at_exact_spacing() -> None:
    async def main() -> tuple[list[int], list[float], int]:
        bucket = TokenBucket(rate=200.0)
        granted: list[tuple[int, float]] = []

        async def caller(i: int) -> None:
            await bucket.acquire()
            granted.append((i, now()))

        tasks = [asyncio.create_task(caller(i)) for i in range(1000)]
        await asyncio.sleep(0)  # every task has called acquire(): 999 are queued
        queued = bucket.waiting
        await asyncio.gather(*tasks)
        return [i for i, _ in granted], [t for _, t in granted], queued

    order, times, queued = run(main)
    assert queued == 999
    assert order == list(range(1000))
    assert times == pytest.approx([i / 200 for i in range(1000)])


def test_burst_grants_that_many_at_once_then_spaces_the_rest() -> None:
    async def main() -> list[float]:
        bucket = TokenBucket(rate=10.0, burst=3)
        times: list[float] = []

        async def caller() -> None:
            await bucket.acquire()
            times.append(now())

        await asyncio.gather(*(caller() for _ in range(6)))
        await asyncio.sleep(10)  # idle long enough to refill the whole burst, and no more
        await asyncio.gather(*(caller() for _ in range(4)))
        return times

    assert run(main) == pytest.approx([0, 0, 0, 0.1, 0.2, 0.3, 10.3, 10.3, 10.3, 10.4])


def test_async_with_takes_a_slot() -> None:
    async def main() -> list[float]:
        bucket = TokenBucket(rate=2.0)
        times = []
        for _ in range(3):
            async with bucket:
                times.append(now())
        return times

    assert run(main) == pytest.approx([0.0, 0.5, 1.0])


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        ((0,), {}),
        ((-1.0,), {}),
        ((float("nan"),), {}),
        ((float("inf"),), {}),
        ((1.0,), {"burst": 0}),
        ((1.0,), {"burst": 1.5}),
        ((1.0,), {"min_rate": 0}),
        ((1.0,), {"min_rate": 2.0}),
    ],
)
def test_bad_arguments_are_refused(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"rate|burst"):
        TokenBucket(*args, **kwargs)


def test_bad_cooldown_is_refused() -> None:
    bucket = TokenBucket(1.0)
    for seconds in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="cooldown"):
            bucket.cooldown(seconds)


def test_properties_and_repr() -> None:
    bucket = TokenBucket(2.0, burst=3)
    assert (bucket.rate, bucket.configured_rate, bucket.burst, bucket.waiting) == (2.0, 2.0, 3, 0)
    assert bucket.adaptive
    assert repr(bucket) == "TokenBucket(rate=2, configured_rate=2, burst=3, waiting=0)"


# -- cancellation --------------------------------------------------------------------------


def test_a_cancelled_waiter_gives_its_slot_to_the_next() -> None:
    async def main() -> tuple[dict[str, float], int]:
        bucket = TokenBucket(rate=1.0)
        await bucket.acquire()  # t=0; the next slots are 1, 2, 3
        granted: dict[str, float] = {}

        async def caller(name: str) -> None:
            await bucket.acquire()
            granted[name] = now()

        a, b, c = (asyncio.create_task(caller(n)) for n in "abc")
        await asyncio.sleep(0.5)
        b.cancel()  # b held slot 2
        await asyncio.sleep(0)
        waiting = bucket.waiting
        await asyncio.gather(a, c, b, return_exceptions=True)
        return granted, waiting

    granted, waiting = run(main)
    assert waiting == 2
    assert granted == pytest.approx({"a": 1.0, "c": 2.0})  # c moved up into b's slot


def test_cancelling_the_head_moves_everyone_up() -> None:
    async def main() -> list[float]:
        bucket = TokenBucket(rate=1.0)
        await bucket.acquire()
        head = asyncio.create_task(bucket.acquire())
        rest = [asyncio.create_task(at(0.1, bucket.acquire())) for _ in range(3)]
        await asyncio.sleep(0.5)
        head.cancel()
        await asyncio.gather(*rest)
        return [now()]

    assert run(main) == pytest.approx([3.0])  # the last of three goes at 3, not 4


def test_a_waiter_timed_out_by_asyncio_timeout_consumes_no_slot() -> None:
    async def main() -> list[float]:
        bucket = TokenBucket(rate=1.0)
        await bucket.acquire()
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.5):
                await bucket.acquire()
        await bucket.acquire()
        return [now()]

    assert run(main) == pytest.approx([1.0])


def test_a_waiter_cancelled_after_its_grant_but_before_it_ran_gives_the_slot_back() -> None:
    async def main() -> dict[str, float]:
        bucket = TokenBucket(rate=1.0, burst=2)
        await bucket.acquire()
        await bucket.acquire()  # the burst is spent: the next two slots are due at 1 and 2
        granted: dict[str, float] = {}
        victim: asyncio.Task[None]

        async def canceller() -> None:
            await bucket.acquire()
            granted["canceller"] = now()
            victim.cancel()  # its slot is granted, but it has not run since

        async def caller(name: str) -> None:
            await bucket.acquire()
            granted[name] = now()

        first = asyncio.create_task(canceller())
        victim = asyncio.create_task(caller("victim"))
        follower = asyncio.create_task(caller("follower"))
        # The loop is busy from 0.5 to 2.5, so one release grants two slots at once (the burst).
        hog_loop(0.5, until=2.5)
        await asyncio.gather(first, victim, follower, return_exceptions=True)
        assert victim.cancelled()
        return granted

    # The follower's slot was 3; it went in the victim's, as soon as the loop could.
    assert run(main) == pytest.approx({"canceller": 2.5, "follower": 2.5})


def test_many_cancelled_waiters_are_compacted_and_the_rest_keep_their_order() -> None:
    async def main() -> tuple[list[int], int]:
        bucket = TokenBucket(rate=1.0)
        await bucket.acquire()
        order: list[int] = []

        async def caller(i: int) -> None:
            await bucket.acquire()
            order.append(i)

        tasks = [asyncio.create_task(caller(i)) for i in range(500)]
        await asyncio.sleep(0.5)
        for i, task in enumerate(tasks):
            if i % 10:
                task.cancel()
        await asyncio.sleep(0)
        waiting = bucket.waiting
        await asyncio.gather(*tasks, return_exceptions=True)
        return order, waiting

    order, waiting = run(main)
    assert waiting == 50
    assert order == list(range(0, 500, 10))


def test_a_busy_loop_neither_lets_a_newcomer_overtake_nor_loses_slots() -> None:
    async def main() -> list[tuple[str, float]]:
        bucket = TokenBucket(rate=1.0)
        await bucket.acquire()
        granted: list[tuple[str, float]] = []

        async def caller(name: str) -> None:
            await bucket.acquire()
            granted.append((name, now()))

        waiter = asyncio.create_task(caller("waiter"))  # due at 1
        tasks = [waiter]
        # A callback hogs the loop until 1.5 and starts a newcomer, which calls acquire()
        # before the bucket's timer (due at 1) gets to run.
        hog_loop(0.5, until=1.5, then=lambda: tasks.append(asyncio.create_task(caller("new"))))
        await asyncio.sleep(1)
        await asyncio.gather(*tasks)
        return granted

    # The waiter goes first though late; its slot is booked at 1, so the newcomer's is 2, not 2.5.
    names, times = zip(*run(main), strict=True)
    assert names == ("waiter", "new")
    assert times == pytest.approx((1.5, 2.0))


def test_after_a_long_stall_the_queue_resumes_one_slot_at_a_time() -> None:
    async def main() -> list[float]:
        bucket = TokenBucket(rate=10.0)
        times: list[float] = []

        async def caller() -> None:
            await bucket.acquire()
            times.append(now())

        tasks = [asyncio.create_task(caller()) for _ in range(5)]
        hog_loop(0.05, until=1.0)  # the slots due at 0.1 ... 0.9 pass while the loop is stuck
        await asyncio.gather(*tasks)
        return times

    # Not all four overdue waiters at once at 1.0: a burst of 1 stays a burst of 1.
    assert run(main) == pytest.approx([0.0, 1.0, 1.05, 1.15, 1.25])


def test_a_newcomer_never_overtakes_a_granted_waiter_that_has_not_resumed_yet() -> None:
    async def main() -> list[str]:
        bucket = TokenBucket(rate=1.0)
        await bucket.acquire()
        order: list[str] = []

        async def caller(name: str, arrive: float = 0.0) -> None:
            await at(arrive, bucket.acquire())
            order.append(name)

        waiter = asyncio.create_task(caller("waiter"))  # due at 1
        newcomer = asyncio.create_task(caller("newcomer", arrive=0.9))
        hog_loop(0.5, until=1.05)  # then, in one loop iteration: the newcomer's timer, the
        hog_loop(1.01, until=3.0)  # bucket's (granting the waiter), and a stall to t=3
        await asyncio.gather(waiter, newcomer)
        return order

    # The newcomer's acquire() runs first, at t=3, when a slot is free: it still queues.
    assert run(main) == ["waiter", "newcomer"]


# -- cooldown ------------------------------------------------------------------------------


def test_cooldown_holds_queued_and_new_callers_then_resumes_without_a_burst() -> None:
    async def main() -> list[tuple[str, float]]:
        bucket = TokenBucket(rate=10.0, burst=5)
        granted: list[tuple[str, float]] = []

        async def caller(name: str) -> None:
            await bucket.acquire()
            granted.append((name, now()))

        for _ in range(5):
            await bucket.acquire()  # t=0: the burst is spent
        queued = [asyncio.create_task(caller(f"q{i}")) for i in range(2)]
        await asyncio.sleep(0.01)
        bucket.cooldown(2.0)  # until t=2.01
        bucket.cooldown(0.5)  # a shorter one does not shorten it
        late = asyncio.create_task(at(1.0, caller("new")))
        await asyncio.gather(*queued, late)
        return granted

    granted = run(main)
    assert [name for name, _ in granted] == ["q0", "q1", "new"]
    assert [t for _, t in granted] == pytest.approx([2.01, 2.11, 2.21])


def test_cooldown_on_an_idle_bucket_delays_the_next_caller() -> None:
    async def main() -> float:
        bucket = TokenBucket(rate=100.0)
        bucket.cooldown(3.0)  # before any acquire
        return await bucket.acquire()

    assert run(main) == pytest.approx(3.0)


def test_a_cooldown_set_outside_any_loop_counts_from_when_it_was_set() -> None:
    bucket = TokenBucket(rate=100.0)
    bucket.cooldown(3.0)  # no loop yet: the bucket keeps time.monotonic until its first acquire

    async def main() -> float:
        return await bucket.acquire()

    assert 2.9 < run(main) <= 3.0


# -- adaptive rate -------------------------------------------------------------------------


def test_a_429_cuts_the_rate_and_successes_grow_it_back_to_the_configured_rate_only() -> None:
    async def main() -> list[float]:
        bucket = TokenBucket(rate=10.0)
        await bucket.acquire()
        bucket.on_rate_limited()
        cut = bucket.rate
        bucket.on_rate_limited()  # no slot granted since the cut: same burst of 429s
        rates = [cut, bucket.rate]
        while now() < 10.0:  # recovery takes 50 slots at the old rate: 5 s
            await bucket.acquire()
            bucket.on_success()
            rates.append(bucket.rate)
        return rates

    rates = run(main)
    assert rates[:2] == pytest.approx([7.0, 7.0])
    assert rates == sorted(rates)  # successes never lower it
    assert rates[-1] == 10.0


def test_cuts_stop_at_min_rate() -> None:
    async def main() -> float:
        bucket = TokenBucket(rate=10.0, min_rate=4.0)
        for _ in range(10):
            await bucket.acquire()
            bucket.on_success()  # each 429 follows a success: a fresh episode each time
            await bucket.acquire()
            bucket.on_rate_limited()
        return bucket.rate

    assert run(main) == 4.0


def test_429s_without_a_success_between_them_cut_once() -> None:
    async def main() -> list[float]:
        bucket = TokenBucket(rate=2.0)
        rates = []
        for _ in range(6):  # one request refused on every try, as a server refusing the
            await bucket.acquire()  # rest of its minute does while the retries wait
            bucket.on_rate_limited()
            rates.append(bucket.rate)
        await bucket.acquire()
        bucket.on_success()
        await bucket.acquire()
        bucket.on_rate_limited()  # after a success: a new episode, a new cut
        rates.append(bucket.rate)
        return rates

    rates = run(main)
    assert rates[:6] == pytest.approx([1.4] * 6)
    assert rates[6] < 1.4


def test_a_cut_delays_waiters_already_queued() -> None:
    async def main() -> float:
        bucket = TokenBucket(rate=10.0)
        await bucket.acquire()  # next slot at 0.1
        bucket.on_rate_limited()  # 7/s: that slot moves to 1/7
        await bucket.acquire()
        return now()

    assert run(main) == pytest.approx(1 / 7)


def test_a_non_adaptive_bucket_ignores_429s_and_successes() -> None:
    bucket = TokenBucket(rate=10.0, adaptive=False)
    bucket.on_rate_limited()
    bucket.on_success()
    assert bucket.rate == 10.0


@pytest.mark.parametrize(
    ("limit", "configured", "horizon"),
    [(10.0, 20.0, 120.0), (2.0, 4.0, 300.0), (100.0, 110.0, 60.0)],
)
def test_adaptive_rate_settles_just_under_a_servers_real_limit(
    limit: float, configured: float, horizon: float
) -> None:
    """A bucket set above an account's real limit (a strict GCRA on the server), 8 callers."""

    async def main() -> tuple[int, int, list[float]]:
        bucket = TokenBucket(rate=configured)
        server_tat = 0.0
        ok = refused = 0
        rates: list[float] = []

        async def worker() -> None:
            nonlocal server_tat, ok, refused
            while now() < horizon:
                await bucket.acquire()
                t = now()
                if t < server_tat - 1e-9:  # the server's own limiter: 429
                    bucket.on_rate_limited()
                    if t >= horizon / 2:
                        refused += 1
                else:
                    server_tat = max(server_tat, t) + 1 / limit
                    bucket.on_success()
                    if t >= horizon / 2:
                        ok += 1
                await asyncio.sleep(0.02)  # the round trip

        async def sample() -> None:
            while now() < horizon:
                await asyncio.sleep(0.5)
                if now() >= horizon / 2:
                    rates.append(bucket.rate)

        await asyncio.gather(*(worker() for _ in range(8)), sample())
        return ok, refused, rates

    ok, refused, rates = run(main)
    accepted_rate = ok / (horizon / 2)
    assert 0.85 * limit <= accepted_rate <= limit  # just under the real limit...
    assert refused <= 0.04 * ok  # ...with few 429s on the way (about one per CUBIC cycle)...
    assert max(rates) < 1.3 * limit  # ...and the rate never strays back toward 20/s
    assert min(rates) >= 0.7 * 0.7 * limit


# -- one loop at a time --------------------------------------------------------------------


def test_a_bucket_moves_to_a_new_loop_once_idle_keeping_its_schedule() -> None:
    bucket = TokenBucket(rate=1.0)

    async def take_two() -> float:
        await bucket.acquire()
        await bucket.acquire()
        return now()

    assert run(take_two) == pytest.approx(1.0)

    async def next_one() -> float:
        return await bucket.acquire()  # on a fresh loop at t=0, still one interval after t=1

    assert run(next_one) == pytest.approx(1.0)


def test_using_a_bucket_from_a_second_loop_while_callers_wait_raises() -> None:
    bucket = TokenBucket(rate=1.0)
    first = VirtualClockLoop()
    second = VirtualClockLoop()
    try:
        first.run_until_complete(bucket.acquire())
        waiter = first.create_task(bucket.acquire())
        first.run_until_complete(asyncio.sleep(0.1))
        assert bucket.waiting == 1
        with pytest.raises(RuntimeError, match="another event loop"):
            second.run_until_complete(bucket.acquire())
        first.run_until_complete(waiter)
    finally:
        first.close()
        second.close()


# -- properties ----------------------------------------------------------------------------


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rate=st.sampled_from([0.5, 1.0, 3.0, 10.0, 250.0]),
    burst=st.integers(1, 5),
    # (arrival tick, cancel after this many ticks or never): ticks of 0.05 s make arrivals,
    # cancellations and grants collide often, where ordering bugs live.
    callers=st.lists(
        st.tuples(st.integers(0, 60), st.none() | st.integers(0, 20)), min_size=1, max_size=60
    ),
    cooldowns=st.lists(st.tuples(st.integers(0, 60), st.integers(0, 20)), max_size=3),
    # (start tick, ticks the loop stays busy): callbacks that hog the loop, making timers late.
    hogs=st.lists(st.tuples(st.integers(0, 60), st.integers(1, 30)), max_size=3),
)
def test_no_window_sees_more_than_burst_plus_rate_times_length_and_grants_keep_arrival_order(
    rate: float,
    burst: int,
    callers: list[tuple[int, int | None]],
    cooldowns: list[tuple[int, int]],
    hogs: list[tuple[int, int]],
) -> None:
    tick = 0.05

    async def main() -> tuple[list[int], list[int], list[float]]:
        bucket = TokenBucket(rate, burst, adaptive=False)
        loop = asyncio.get_running_loop()
        arrivals: list[int] = []
        grants: list[tuple[int, float]] = []

        async def caller(i: int, arrive: int) -> None:
            await asyncio.sleep(arrive * tick)
            arrivals.append(i)
            await bucket.acquire()
            grants.append((i, now()))

        tasks = [asyncio.create_task(caller(i, arrive)) for i, (arrive, _) in enumerate(callers)]
        for (arrive, cancel_after), task in zip(callers, tasks, strict=True):
            if cancel_after is not None:
                loop.call_at((arrive + cancel_after) * tick, task.cancel)
        for start, length in cooldowns:
            loop.call_at(start * tick, bucket.cooldown, length * tick)
        for start, length in hogs:
            hog_loop(start * tick, until=(start + length) * tick)
        await asyncio.gather(*tasks, return_exceptions=True)
        return arrivals, [i for i, _ in grants], [t for _, t in grants]

    arrivals, granted, times = run(main)
    # Grants keep arrival order (cancelled callers drop out, nobody overtakes).
    position = {i: n for n, i in enumerate(arrivals)}
    assert granted == sorted(granted, key=position.__getitem__)
    # Every caller not cancelled got a slot.
    cancelled_early = {i for i, (_, c) in enumerate(callers) if c is not None}
    assert set(range(len(callers))) - cancelled_early <= set(granted)
    # GCRA's bound: any closed window [times[i], times[j]] holds at most burst + length*rate
    # grants. (Not checked when the loop stalls: tasks granted before a stall resume after it,
    # together, and no throttle can help that.)
    if not hogs:
        for i in range(len(times)):
            for j in range(i, len(times)):
                assert j - i + 1 <= burst + (times[j] - times[i]) * rate + 1e-6


# -- injected time (a user's test): no event-loop clock involved ---------------------------


async def test_an_injected_clock_and_sleep_space_the_grants_without_real_time() -> None:
    from infobip_voicelogs.testing import FakeTime

    time = FakeTime(start=100.0)
    bucket = TokenBucket(2.0, burst=1, adaptive=False, clock=time.now, sleep=time.sleep)
    assert bucket.clock == time.now
    assert bucket.sleep == time.sleep
    granted: list[tuple[int, float]] = []

    async def caller(n: int) -> None:
        await bucket.acquire()
        granted.append((n, time.now()))

    await asyncio.gather(*(caller(n) for n in range(5)))
    assert [n for n, _ in granted] == [0, 1, 2, 3, 4]  # FIFO, as on the loop's clock
    assert [at - 100.0 for _, at in granted] == pytest.approx([0.0, 0.5, 1.0, 1.5, 2.0])
    assert sum(time.sleeps) == pytest.approx(2.0)


async def test_an_injected_clock_honours_a_cooldown_and_cancellation() -> None:
    from infobip_voicelogs.testing import FakeTime

    time = FakeTime()
    bucket = TokenBucket(2.0, clock=time.now, sleep=time.sleep)
    await bucket.acquire()
    bucket.cooldown(30.0)  # the retry layer after a 429 with Retry-After: 30
    waited = await bucket.acquire()
    assert waited >= 30.0
    assert time.now() >= 30.0
    granted_at = time.now()
    # A waiter cancelled while sleeping on the injected time consumes no slot.
    blocked = asyncio.ensure_future(bucket.acquire())
    await asyncio.sleep(0)
    blocked.cancel()
    with pytest.raises(asyncio.CancelledError):
        await blocked
    await bucket.acquire()
    assert time.now() == pytest.approx(granted_at + 0.5)  # the next slot, not the one after
    assert bucket.waiting == 0


def test_a_sleep_needs_its_clock() -> None:
    from infobip_voicelogs.testing import FakeTime

    with pytest.raises(ValueError, match="clock"):
        TokenBucket(2.0, sleep=FakeTime().sleep)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rate=st.floats(min_value=0.5, max_value=500.0),
    burst=st.integers(min_value=1, max_value=5),
    callers=st.integers(min_value=1, max_value=40),
)
def test_on_injected_time_a_crowd_gets_the_burst_then_one_slot_per_interval(
    rate: float, burst: int, callers: int
) -> None:
    from infobip_voicelogs.testing import FakeTime

    async def main() -> list[float]:
        time = FakeTime()
        bucket = TokenBucket(rate, burst=burst, adaptive=False, clock=time.now, sleep=time.sleep)
        granted: list[float] = []

        async def caller() -> None:
            await bucket.acquire()
            granted.append(time.now())

        await asyncio.gather(*(caller() for _ in range(callers)))
        return granted

    granted = asyncio.run(main())
    expected = [max(0, n - burst + 1) / rate for n in range(callers)]
    assert granted == pytest.approx(expected, rel=1e-9, abs=1e-9)
