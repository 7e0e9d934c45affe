"""The fake's logs: generated, injected and arriving, each living PENDING → final by seed."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from conftest import START
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from infobip_voicelogs import GeneralStatus, decode_logs
from infobip_voicelogs.reports import ReportShape
from infobip_voicelogs.testing import FakeClock, FakeInfobip, report_of

FINAL = {
    GeneralStatus.DELIVERED,
    GeneralStatus.UNDELIVERABLE,
    GeneralStatus.EXPIRED,
    GeneralStatus.REJECTED,
}


@pytest.fixture
def fake(clock: FakeClock) -> FakeInfobip:
    return FakeInfobip(clock=clock, seed=11)


# -- the clock -----------------------------------------------------------------------------


def test_a_fake_clock_stands_still_until_moved() -> None:
    clock = FakeClock(START)
    assert clock.now() == clock.now() == START
    clock.advance(timedelta(hours=49))
    assert clock.now() == START + timedelta(hours=49)
    clock.set(START)
    assert clock.now() == START


def test_a_fake_clock_wants_aware_times() -> None:
    with pytest.raises(ValueError, match="timezone"):
        FakeClock(datetime(2026, 3, 1))
    with pytest.raises(ValueError, match="timezone"):
        FakeClock(START).set(datetime(2026, 3, 1))


def test_a_ticking_clock_moves_with_real_time_and_jumps() -> None:
    clock = FakeClock(START, ticking=True)
    before = clock.now()
    time.sleep(0.01)
    assert clock.now() > before
    clock.advance(timedelta(days=1))
    assert clock.now() > START + timedelta(days=1)


def test_the_default_clock_is_real_time() -> None:
    before = datetime.now(UTC)
    now = FakeInfobip().clock.now()
    assert before <= now <= datetime.now(UTC)


# -- generated logs ------------------------------------------------------------------------


def test_generate_makes_realistic_logs_within_the_span(fake: FakeInfobip) -> None:
    account = fake.add_account("acme")
    logs = account.generate(200, within=timedelta(hours=2))
    assert logs == account.logs
    assert len({log.message_id for log in logs}) == 200
    for log in logs:
        assert log.sent_at is not None
        assert START - timedelta(hours=2) <= log.sent_at <= START
        assert log.sent_at.microsecond % 1000 == 0  # milliseconds, like the provider
        assert log.to
        assert log.to.isdigit()
        assert log.mccmnc
        assert log.from_
        assert log.text
        assert log.bulk_id
        assert log.price
        assert log.status
        assert log.error
    sent = [log.sent_at for log in logs]
    assert sent == sorted(sent, reverse=True)  # type: ignore[type-var]


def test_many_logs_can_share_one_millisecond(fake: FakeInfobip) -> None:
    account = fake.add_account("acme")
    logs = account.generate(1500, within=timedelta(hours=1), same_millisecond=True)
    assert len({log.sent_at for log in logs}) == 1
    assert len({log.message_id for log in logs}) == 1500


def test_a_log_settles_from_pending_to_a_final_state(fake: FakeInfobip, clock: FakeClock) -> None:
    account = fake.add_account("acme", settle_after=timedelta(minutes=10))
    pending = account.generate(300, within=timedelta(0))
    assert {log.general_status for log in pending} == {GeneralStatus.PENDING}
    assert all(log.done_at is None and log.duration == 0 for log in pending)
    assert all(log.price is not None and log.price.per_second == 0 for log in pending)

    clock.advance(timedelta(minutes=7, seconds=30))
    halfway = {log.general_status for log in account.logs}
    assert GeneralStatus.PENDING in halfway
    assert halfway & FINAL

    clock.advance(timedelta(minutes=2, seconds=30))
    final = account.logs
    assert {log.general_status for log in final} == FINAL
    assert [log.message_id for log in final] == [log.message_id for log in pending]
    for log in final:
        assert log.done_at is not None
        assert log.sent_at is not None
        assert (
            log.sent_at + timedelta(minutes=5) <= log.done_at <= log.sent_at + timedelta(minutes=10)
        )
        assert log.error is not None
        assert log.price is not None
        if log.general_status is GeneralStatus.DELIVERED:
            assert log.error.ok
            assert log.error.id == 0
            assert log.duration is not None
            assert log.duration > 0
            assert log.price.per_second == Decimal("0.01")
        else:
            assert not log.error.ok
            assert log.error.id >= 5000
            assert log.error.permanent is not None
            assert log.duration == 0


def test_outcomes_and_prices_are_configurable(fake: FakeInfobip) -> None:
    account = fake.add_account(
        "acme",
        settle_after=timedelta(0),
        outcomes={GeneralStatus.EXPIRED: 1.0},
        price_per_second=Decimal("0.035"),
        currency="USD",
    )
    logs = account.generate(20, within=timedelta(hours=1))
    assert {log.general_status for log in logs} == {GeneralStatus.EXPIRED}
    assert {log.price for log in logs} == {logs[0].price}
    assert logs[0].price is not None
    assert logs[0].price.currency == "USD"


def test_the_same_seed_makes_the_same_logs(clock: FakeClock) -> None:
    def world(seed: int) -> list[object]:
        account = FakeInfobip(clock=clock, seed=seed).add_account("acme")
        return list(account.generate(50, within=timedelta(hours=1)))

    assert world(1) == world(1)
    assert world(1) != world(2)


def test_update_changes_an_injected_log(fake: FakeInfobip) -> None:
    account = fake.add_account("acme", settle_after=timedelta(hours=1))
    log = account.generate(1, within=timedelta(minutes=1))[0]
    assert log.message_id is not None
    changed = account.update(log.message_id, duration=42)
    assert account.logs == [changed]
    assert changed.duration == 42
    with pytest.raises(KeyError):
        account.update("unknown", duration=1)


# -- traffic -------------------------------------------------------------------------------


def test_traffic_arrives_as_the_clock_moves(fake: FakeInfobip, clock: FakeClock) -> None:
    account = fake.add_account("acme")
    account.traffic(2.0)
    assert len(account.logs) == 1  # log 0 arrives at the start
    clock.advance(timedelta(seconds=10))
    logs = account.logs
    assert len(logs) == 21
    sent = [log.sent_at for log in logs]
    assert sent == sorted(sent, reverse=True)  # type: ignore[type-var]
    assert sent[0] == START + timedelta(seconds=10)


def test_traffic_settles_after_its_delay(fake: FakeInfobip, clock: FakeClock) -> None:
    account = fake.add_account("acme")
    account.traffic(1.0, settle_after=timedelta(seconds=30))
    clock.advance(timedelta(minutes=5))
    logs = account.logs
    assert {log.general_status for log in logs[:15]} == {GeneralStatus.PENDING}
    assert {log.general_status for log in logs[31:]} <= FINAL
    first = logs[-1]
    clock.advance(timedelta(minutes=1))
    assert account.logs[-1].message_id == first.message_id
    assert account.logs[-1] == first  # a final log no longer changes


def test_traffic_is_the_same_for_the_same_seed_however_the_clock_moves() -> None:
    def ground_truth(steps: list[timedelta]) -> list[object]:
        clock = FakeClock(START)
        account = FakeInfobip(clock=clock, seed=3).add_account("acme")
        account.traffic(5.0)
        for step in steps:
            clock.advance(step)
        return list(account.logs)

    in_one_jump = ground_truth([timedelta(minutes=10)])
    in_small_steps = ground_truth([timedelta(seconds=7)] * 85 + [timedelta(seconds=5)])
    assert in_one_jump == in_small_steps
    assert len(in_one_jump) == 3001


async def test_traffic_is_computed_lazily(fake: FakeInfobip, clock: FakeClock) -> None:
    account = fake.add_account("acme")
    account.traffic(50.0)
    clock.advance(timedelta(hours=40))  # 7.2 million logs have arrived; none is stored
    async with fake.in_process_client(account) as client:
        response = await client.get("/tts/3/logs", params={"limit": 5})
    newest = decode_logs(response.content, "application/json")
    assert [log.sent_at for log in newest] == [
        START + timedelta(hours=40) - timedelta(milliseconds=20 * i) for i in range(5)
    ]


def test_fast_traffic_shares_milliseconds(fake: FakeInfobip, clock: FakeClock) -> None:
    account = fake.add_account("acme")
    account.traffic(4000.0)
    clock.advance(timedelta(milliseconds=2))
    logs = account.logs
    assert len(logs) == 9
    assert len({log.sent_at for log in logs}) == 3


def test_stopped_traffic_stops_arriving_but_settles(fake: FakeInfobip, clock: FakeClock) -> None:
    account = fake.add_account("acme", settle_after=timedelta(seconds=30))
    account.traffic(1.0)
    clock.advance(timedelta(seconds=9))
    account.stop_traffic()
    clock.advance(timedelta(minutes=5))
    logs = account.logs
    assert len(logs) == 10
    assert {log.general_status for log in logs} <= FINAL


def test_traffic_and_stored_logs_merge_newest_first(fake: FakeInfobip, clock: FakeClock) -> None:
    account = fake.add_account("acme")
    account.generate(30, within=timedelta(minutes=1))
    account.traffic(1.0, start=START - timedelta(minutes=1))
    logs = account.logs
    assert len(logs) == 91
    sent = [log.sent_at for log in logs]
    assert sent == sorted(sent, reverse=True)  # type: ignore[type-var]


def test_traffic_ages_out_after_48_hours(fake: FakeInfobip, clock: FakeClock) -> None:
    account = fake.add_account("acme")
    account.traffic(1 / 3600, until=START + timedelta(hours=10))  # one an hour, eleven in all
    clock.advance(timedelta(hours=50))
    assert len(account.logs) == 9  # the ones of hours 0 and 1 are gone


async def test_transitions_are_visible_over_the_wire(fake: FakeInfobip, clock: FakeClock) -> None:
    account = fake.add_account("acme")
    account.traffic(2.0, settle_after=timedelta(seconds=20))
    clock.advance(timedelta(seconds=10))
    async with fake.in_process_client(account) as client:
        pending = await client.get("/tts/3/logs", params={"generalStatus": "PENDING", "limit": 100})
        clock.advance(timedelta(seconds=30))
        later = await client.get("/tts/3/logs", params={"generalStatus": "PENDING", "limit": 100})
        everything = await client.get("/tts/3/logs", params={"limit": 100})
    assert len(decode_logs(pending.content, "application/json")) == 21
    still_pending = [log for log in account.logs if log.general_status is GeneralStatus.PENDING]
    assert decode_logs(later.content, "application/json") == still_pending
    assert 0 < len(still_pending) < 40
    assert len(decode_logs(everything.content, "application/json")) == 81


@pytest.mark.parametrize("rate", [5000.0, 1.0])
@pytest.mark.parametrize("offset_us", [0, 700])
async def test_every_arrived_log_is_found_by_its_own_millisecond(
    rate: float, offset_us: int
) -> None:
    # Above 1000 a second several logs share a millisecond, and a start between
    # milliseconds cuts log 0's time below it: a query for exactly that millisecond must
    # still find them all.
    start = START + timedelta(microseconds=offset_us)
    clock = FakeClock(start)
    fake = FakeInfobip(clock=clock, seed=11)
    account = fake.add_account("acme", api_key="k", rate_limit_per_minute=10**6)
    account.traffic(rate, settle_after=timedelta(0))
    clock.advance(timedelta(seconds=3))
    by_ms: dict[datetime, int] = {}
    for log in account.logs:
        assert log.sent_at is not None
        by_ms[log.sent_at] = by_ms.get(log.sent_at, 0) + 1
    async with fake.in_process_client(account) as client:
        for at in [*sorted(by_ms)[:: max(1, len(by_ms) // 20)], min(by_ms)]:
            wire = at.isoformat(timespec="milliseconds")
            response = await client.get(
                "/tts/3/logs", params={"sentSince": wire, "sentUntil": wire, "limit": "1000"}
            )
            got = decode_logs(response.content, response.headers["content-type"])
            assert len(got) == by_ms[at], at


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32),
    settle_ms=st.integers(0, 200_000),
    rate=st.floats(0.5, 50.0),
    shape=st.sampled_from(["current", "flat"]),
)
def test_every_generated_call_starts_before_it_is_answered_and_ends_after(
    seed: int, settle_ms: int, rate: float, shape: ReportShape
) -> None:
    clock = FakeClock(START)
    account = FakeInfobip(clock=clock, seed=seed).add_account("acme")
    settle = timedelta(milliseconds=settle_ms)
    account.generate(40, within=timedelta(minutes=10), settle_after=settle)
    account.traffic(rate, settle_after=settle)
    clock.advance(timedelta(seconds=5) + settle)
    finals = [log for log in account.logs if log.done_at is not None]
    assert len(finals) >= 40
    for log in finals:
        report = report_of(log, shape)
        call = report.voice_call if shape == "current" else report
        assert call is not None
        start, answer, end = call.start_time, call.answer_time, call.end_time
        assert start is not None
        assert end is not None
        assert start <= end
        assert call.duration == log.duration
        if log.general_status is GeneralStatus.DELIVERED:
            assert answer is not None
            assert start <= answer <= end
            assert timedelta(seconds=call.duration or 0) == end - answer
        else:
            assert answer is None
            assert call.duration == 0
