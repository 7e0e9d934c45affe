"""`LogsFetcher.iter_logs` and the walk behind it (`infobip_voicelogs.window`).

Against a simulated provider whose bounds are inclusive or exclusive, with logs that
crowd one millisecond, and against the fake provider.
"""

from __future__ import annotations

import asyncio
import warnings
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

import httpx
import pytest
import respx
from conftest import API_KEY, BASE, NOW, T0, FakeThrottle, ids, log_at, logs_body, ms
from hypothesis import given, settings
from hypothesis import strategies as st

from infobip_voicelogs import (
    IncompleteWindowWarning,
    InvalidQueryError,
    LogsFetcher,
    LogsQuery,
    RetentionWarning,
    VoiceLog,
)
from infobip_voicelogs.window import Step, WindowWalk

CET = timezone(timedelta(hours=1))

# -- iter_logs: a simulated provider -------------------------------------------------------


def provider(
    logs: list[VoiceLog], *, inclusive: bool, requests: list[httpx.Request] | None = None
) -> Callable[[httpx.Request], httpx.Response]:
    """A provider holding ``logs``: newest first within sentSince/sentUntil, up to limit.

    Logs of one millisecond come in a fixed order (by message id), as a database would
    give them; logs without a sentAt come with every page, as a careless server might.
    """
    dated = sorted(
        (log for log in logs if log.sent_at is not None),
        key=lambda log: (log.sent_at, log.message_id),
        reverse=True,
    )
    undated = [log for log in logs if log.sent_at is None]

    def within(value: datetime, since: datetime, until: datetime) -> bool:
        if inclusive:
            return since <= value <= until
        return since < value < until

    def handler(request: httpx.Request) -> httpx.Response:
        if requests is not None:
            requests.append(request)
        params = request.url.params
        since = datetime.fromisoformat(params["sentSince"])
        until = datetime.fromisoformat(params["sentUntil"])
        limit = int(params.get("limit", "50"))
        found = [log for log in dated if within(log.sent_at, since, until)]  # type: ignore[arg-type]
        return logs_body((found + undated)[:limit])

    return handler


def burst(at: datetime, count: int, prefix: str) -> list[VoiceLog]:
    """``count`` logs sent in the same millisecond."""
    return [log_at(at, f"{prefix}-{n:04d}") for n in range(count)]


def sent(log: VoiceLog) -> datetime:
    assert log.sent_at is not None
    return log.sent_at


def expected(logs: list[VoiceLog], since: datetime, until: datetime) -> list[VoiceLog]:
    """The logs of ``[since, until]``, newest first: what a walk must yield."""
    dated = [log for log in logs if log.sent_at is not None and since <= log.sent_at <= until]
    return sorted(dated, key=sent, reverse=True)


async def walk(fetcher: LogsFetcher, **kwargs: object) -> list[VoiceLog]:
    return [log async for log in fetcher.iter_logs(**kwargs)]  # type: ignore[arg-type]


@pytest.fixture
def straddling_logs() -> list[VoiceLog]:
    """Logs every few ms, some ms holding several logs that straddle page boundaries."""
    logs: list[VoiceLog] = []
    for n in range(0, 200, 3):
        logs += burst(ms(n), 1 + (n % 4), f"at{n}")  # 1 to 4 logs per millisecond
    return logs


@pytest.mark.parametrize("inclusive", [True, False], ids=["inclusive", "exclusive"])
@pytest.mark.parametrize("page_size", [5, 7, 50])
async def test_every_log_of_the_window_once_newest_first(
    logs_route: respx.Route,
    straddling_logs: list[VoiceLog],
    inclusive: bool,
    page_size: int,
) -> None:
    logs_route.side_effect = provider(straddling_logs, inclusive=inclusive)
    fetcher = LogsFetcher(BASE, API_KEY, throttle=FakeThrottle())
    since, until = ms(9), ms(150)  # both bounds fall on a millisecond holding logs
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no IncompleteWindowWarning: no ms holds a page
        got = await walk(fetcher, sent_since=since, sent_until=until, page_size=page_size)
    want = expected(straddling_logs, since, until)
    assert len(got) == len({log.message_id for log in got})  # no repeats
    assert {log.message_id for log in got} == {log.message_id for log in want}  # no losses
    assert [log.sent_at for log in got] == [log.sent_at for log in want]  # newest first


@pytest.mark.parametrize("inclusive", [True, False], ids=["inclusive", "exclusive"])
async def test_a_millisecond_holding_exactly_a_page_loses_nothing(
    logs_route: respx.Route, straddling_logs: list[VoiceLog], inclusive: bool
) -> None:
    logs_route.side_effect = provider(straddling_logs, inclusive=inclusive)
    fetcher = LogsFetcher(BASE, API_KEY, throttle=FakeThrottle())
    # Some milliseconds hold 4 logs: paging cannot tell "exactly 4" from "more than 4", so
    # it may warn, but it still yields every log once.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IncompleteWindowWarning)
        got = await walk(fetcher, sent_since=ms(0), sent_until=ms(200), page_size=4)
    want = expected(straddling_logs, ms(0), ms(200))
    assert sorted(log.message_id for log in got) == sorted(log.message_id for log in want)  # type: ignore[type-var]


@settings(max_examples=300, deadline=None)
@given(
    counts=st.lists(st.integers(0, 6), min_size=1, max_size=30),
    page_size=st.integers(1, 8),
    inclusive=st.booleans(),
    window=st.tuples(st.integers(-2, 32), st.integers(-2, 32)).map(sorted),
)
def test_any_window_any_density_any_bounds(
    counts: list[int], page_size: int, inclusive: bool, window: list[int]
) -> None:
    """Terminates; never repeats; loses only logs of a millisecond holding a page or more,
    and then says so."""
    logs = [log for n, count in enumerate(counts) for log in burst(ms(n), count, f"at{n}")]
    requests: list[httpx.Request] = []
    transport = httpx.MockTransport(provider(logs, inclusive=inclusive, requests=requests))
    since, until = ms(window[0]), ms(window[1])

    async def run() -> list[VoiceLog]:
        async with httpx.AsyncClient(transport=transport) as client:
            fetcher = LogsFetcher(BASE, API_KEY, throttle=FakeThrottle(), client=client)
            return await walk(fetcher, sent_since=since, sent_until=until, page_size=page_size)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = asyncio.run(run())
    warned = any(w.category is IncompleteWindowWarning for w in caught)
    want = expected(logs, since, until)
    got_ids = ids(got)
    assert len(got_ids) == len(set(got_ids))
    assert set(got_ids) <= set(ids(want))
    assert [sent(log) for log in got] == sorted((sent(log) for log in got), reverse=True)
    # Only a millisecond holding a page or more can hide logs from paging.
    reachable = {
        str(log.message_id)
        for log in want
        if counts[(sent(log) - T0) // timedelta(milliseconds=1)] < page_size
    }
    assert reachable <= set(got_ids)
    if len(got) < len(want):
        assert warned
    assert len(requests) <= 4 * (len(logs) + 2)


async def test_the_first_page_asks_a_millisecond_wider_each_side(logs_route: respx.Route) -> None:
    requests: list[httpx.Request] = []
    logs_route.side_effect = provider([], inclusive=True, requests=requests)
    since = datetime(2026, 11, 26, 10, 0, 0, 0, tzinfo=CET)
    until = datetime(2026, 11, 26, 11, 0, 0, 250_700, tzinfo=CET)
    fetcher = LogsFetcher(BASE, API_KEY, throttle=FakeThrottle(), clock=lambda: until)
    assert await walk(fetcher, sent_since=since, sent_until=until, page_size=10) == []
    [request] = requests
    assert request.url.query == (  # the same instants, sent in UTC
        b"sentSince=2026-11-26T08:59:59.999%2B00:00&sentUntil=2026-11-26T10:00:00.251%2B00:00"
        b"&limit=10"
    )


@pytest.mark.parametrize("inclusive", [True, False], ids=["inclusive", "exclusive"])
async def test_more_logs_in_one_millisecond_than_a_page_warns_and_terminates(
    logs_route: respx.Route, inclusive: bool
) -> None:
    page = 10
    dense = burst(ms(100), 3 * page, "dense")
    around = burst(ms(101), 3, "above") + burst(ms(99), 3, "below") + burst(ms(50), 2, "old")
    requests: list[httpx.Request] = []
    logs_route.side_effect = provider(dense + around, inclusive=inclusive, requests=requests)
    fetcher = LogsFetcher(BASE, API_KEY, throttle=FakeThrottle())
    # These logs have no status, as if the server ignored generalStatus: the walk cannot
    # split the millisecond by status group, and says so.
    with pytest.warns(IncompleteWindowWarning, match=r"at least 10 logs .* 10 of them") as caught:
        got = await walk(fetcher, sent_since=ms(0), sent_until=ms(200), page_size=page)
    assert len([w for w in caught if w.category is IncompleteWindowWarning]) == 1
    ids = [log.message_id for log in got]
    assert len(ids) == len(set(ids))
    # Everything outside the dense millisecond arrives, the millisecond below it included.
    assert set(ids) >= {log.message_id for log in around}
    assert len([i for i in ids if i and i.startswith("dense")]) == page
    assert len(requests) <= 7  # a bounded number of pages, not a loop


async def test_a_window_of_only_a_dense_millisecond_terminates(logs_route: respx.Route) -> None:
    logs_route.side_effect = provider(burst(ms(5), 30, "dense"), inclusive=True)
    fetcher = LogsFetcher(BASE, API_KEY, throttle=FakeThrottle())
    with pytest.warns(IncompleteWindowWarning):
        got = await walk(fetcher, sent_since=ms(5), sent_until=ms(5), page_size=10)
    assert len(got) == 10


async def test_logs_without_sent_at_come_once(logs_route: respx.Route) -> None:
    undated = [log_at(None, "undated-1"), log_at(None, "undated-2")]
    dated = [log_at(ms(n), f"m{n}") for n in range(20)]
    logs_route.side_effect = provider(dated + undated, inclusive=True)
    fetcher = LogsFetcher(BASE, API_KEY, throttle=FakeThrottle())
    got = await walk(fetcher, sent_since=ms(0), sent_until=ms(19), page_size=5)
    assert sorted(ids(got)) == sorted([f"m{n}" for n in range(20)] + ["undated-1", "undated-2"])


async def test_filters_are_sent_with_every_page(logs_route: respx.Route) -> None:
    requests: list[httpx.Request] = []
    logs_route.side_effect = provider([], inclusive=True, requests=requests)
    fetcher = LogsFetcher(BASE, API_KEY, throttle=FakeThrottle())
    await walk(fetcher, sent_since=ms(0), general_status="delivered", to="41793026727")
    assert requests[0].url.params["generalStatus"] == "DELIVERED"
    assert requests[0].url.params["to"] == "41793026727"
    assert requests[0].url.params["limit"] == "1000"


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"sent_since": datetime(2026, 1, 1)}, InvalidQueryError),  # naive
        ({"sent_since": ms(5), "sent_until": ms(1)}, InvalidQueryError),
        ({"sent_since": ms(0), "page_size": 0}, InvalidQueryError),
        ({"sent_since": ms(0), "page_size": 1001}, InvalidQueryError),
        ({"sent_since": ms(0), "mcc": "2x"}, InvalidQueryError),
        ({"sent_since": ms(0), "limit": 10}, InvalidQueryError),  # page_size is the walk's
        ({"sent_since": ms(0), "colour": "blue"}, TypeError),
    ],
)
def test_a_bad_walk_fails_at_the_call(kwargs: dict[str, object], error: type[Exception]) -> None:
    fetcher = LogsFetcher(BASE, API_KEY, throttle=FakeThrottle())
    with pytest.raises(error):
        fetcher.iter_logs(**kwargs)  # type: ignore[arg-type]


def test_a_window_beyond_the_retention_warns() -> None:
    fetcher = LogsFetcher(BASE, API_KEY, throttle=FakeThrottle())
    with pytest.warns(RetentionWarning, match="48-hour"):
        fetcher.iter_logs(sent_since=NOW - timedelta(hours=49))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fetcher.iter_logs(sent_since=NOW - timedelta(hours=47))


async def test_the_window_and_the_retention_follow_the_fetchers_clock(
    logs_route: respx.Route,
) -> None:
    then = datetime(2020, 2, 3, 12, 0, tzinfo=UTC)
    requests: list[httpx.Request] = []
    logs_route.side_effect = provider([], inclusive=True, requests=requests)
    fetcher = LogsFetcher(BASE, API_KEY, throttle=FakeThrottle(), clock=lambda: then)

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an hour before its "now" is well inside 48 hours
        assert await walk(fetcher, sent_since=then - timedelta(hours=1)) == []
    with pytest.warns(RetentionWarning):
        fetcher.iter_logs(sent_since=then - timedelta(hours=49))

    [request] = requests
    assert b"sentUntil=2020-02-03T12:00:00.001%2B00:00" in request.url.query


# -- the walk itself -----------------------------------------------------------------------


def walk_of(
    pages: list[list[VoiceLog]], *, page_size: int, since: int = 0, until: int = 100
) -> tuple[WindowWalk, list[LogsQuery]]:
    """A walk over ``[ms(since), ms(until)]`` whose fetch answers ``pages`` in turn (the last
    one again when they run out), and the queries it was sent."""
    queries: list[LogsQuery] = []

    async def fetch(query: LogsQuery) -> list[VoiceLog]:
        queries.append(query)
        return pages[min(len(queries), len(pages)) - 1]

    base = LogsQuery(sent_since=ms(since), sent_until=ms(until), limit=page_size)
    return WindowWalk(fetch, base), queries


def test_a_walk_needs_both_bounds_and_a_page_size() -> None:
    async def fetch(query: LogsQuery) -> list[VoiceLog]:
        raise AssertionError("never sent")

    with pytest.raises(ValueError, match="sent_since, sent_until and limit"):
        WindowWalk(fetch, LogsQuery(sent_since=ms(0), limit=10))
    with pytest.raises(ValueError, match="sent_since, sent_until and limit"):
        WindowWalk(fetch, LogsQuery(sent_since=ms(0), sent_until=ms(5)))


@pytest.mark.parametrize(
    ("page", "step", "until"),
    [
        # older logs than the cursor: it moves back to the oldest, which it keeps
        ([log_at(ms(100), "a"), log_at(ms(90), "b")], Step.NEXT, 90),
        # one crowded millisecond at the cursor, nothing new: split it by status
        ([log_at(ms(100), "a"), log_at(ms(100), "b")], Step.DENSE, 100),
        # a page newer than the bound sent: the server ignores sentUntil, give up
        ([log_at(ms(150), "a"), log_at(ms(140), "b")], Step.STOP, 100),
        # a full page without a sentAt, nothing new in it: give up
        ([log_at(None, "a"), log_at(None, "b")], Step.STOP, 100),
    ],
)
def test_each_full_page_tells_the_walk_its_next_step(
    page: list[VoiceLog], step: Step, until: int
) -> None:
    walk, _ = walk_of([page], page_size=2)
    walk.seen = {"a", "b"}
    walk.undated = {"a", "b"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IncompleteWindowWarning)
        assert walk._advance(page, [], ms(101)) is step
    assert walk.until == ms(until)


async def test_a_provider_that_ignores_sent_until_ends_the_walk_with_a_warning() -> None:
    newer = [log_at(ms(150), "a"), log_at(ms(140), "b")]  # always, whatever was asked
    walk, queries = walk_of([newer], page_size=2)
    with pytest.warns(IncompleteWindowWarning, match="ignores sentUntil"):
        got = [log async for log in walk.run()]
    assert got == []
    assert len(queries) == 1


async def test_a_page_proving_the_bounds_inclusive_tightens_the_next_bound() -> None:
    # The first page holds a log at exactly the sentUntil sent (until + 1 ms): the server
    # is inclusive, so the next page asks for `until` itself.
    first = [log_at(ms(101), "above"), log_at(ms(100), "a")]
    walk, queries = walk_of([first, [log_at(ms(100), "a")]], page_size=2)
    got = [log async for log in walk.run()]
    assert ids(got) == ["a"]
    assert [query.sent_until for query in queries] == [ms(101), ms(100)]
    assert walk.inclusive


# -- against the fake provider -------------------------------------------------------------


@pytest.mark.parametrize("page_size", [50, 28, 20])
async def test_a_window_walk_on_the_fake_provider(page_size: int) -> None:
    from infobip_voicelogs.testing import IN_PROCESS_URL, FakeClock, FakeInfobip

    clock = FakeClock()
    fake = FakeInfobip(clock=clock)
    account = fake.add_account("acme")
    account.generate(400, within=timedelta(hours=3))
    account.generate(30, within=timedelta(hours=1), same_millisecond=True)
    since, until = clock.now() - timedelta(hours=2), clock.now()
    async with fake.in_process_client() as client:
        fetcher = LogsFetcher(
            IN_PROCESS_URL, account.api_key, client=client, throttle=FakeThrottle()
        )
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            got = await walk(fetcher, sent_since=since, sent_until=until, page_size=page_size)
    want = expected(account.logs, since, until)
    warned = len([w for w in caught if w.category is IncompleteWindowWarning])
    assert len(got) == len(set(ids(got)))
    assert set(ids(got)) <= set(ids(want))
    if page_size > 30:
        assert ids(got) == ids(want)  # newest first, in the provider's own order
        assert warned == 0
        return
    # 30 logs share a millisecond: more than a page, so the walk asks for them a status
    # group at a time. Only a group that alone fills a page can hide logs, and it is named.
    dense_ms = Counter(log.sent_at for log in want).most_common(1)[0][0]
    groups = Counter(log.general_status for log in want if log.sent_at == dense_ms)
    crowded = {group for group, count in groups.items() if count >= page_size}
    lost = {log.message_id for log in want} - set(ids(got))
    assert all(log.general_status in crowded for log in want if log.message_id in lost)
    assert len(lost) <= sum(groups[group] - page_size for group in crowded)
    assert warned == (1 if crowded else 0)


# -- time zones: a walk's bounds are instants, whatever zone they are given in --------------


async def test_a_berlin_time_in_the_repeated_hour_skips_no_log(logs_route: respx.Route) -> None:
    from zoneinfo import ZoneInfo

    # 2026-10-25 02:30 happens twice in Berlin: fold=1 is the second, in CET (01:30 UTC).
    # An hour earlier, at 00:30 UTC, is the first (fold=0, CEST): a walk that did its
    # arithmetic in Berlin time would have asked for sentUntil an hour early.
    until = datetime(2026, 10, 25, 2, 30, fold=1, tzinfo=ZoneInfo("Europe/Berlin"))
    since = datetime(2026, 10, 25, 0, 0, tzinfo=UTC)
    logs = [log_at(since + timedelta(minutes=m), f"m{m:03d}") for m in range(0, 91, 5)]
    requests: list[httpx.Request] = []
    logs_route.side_effect = provider(logs, inclusive=True, requests=requests)
    fetcher = LogsFetcher(
        BASE, API_KEY, throttle=FakeThrottle(), clock=lambda: since + timedelta(hours=2)
    )
    got = await walk(fetcher, sent_since=since, sent_until=until, page_size=4)
    assert ids(got) == ids(expected(logs, since, datetime(2026, 10, 25, 1, 30, tzinfo=UTC)))
    assert len(got) == 19
    first = requests[0].url.params["sentUntil"]
    assert first == "2026-10-25T01:30:00.001+00:00"  # the right instant, written in UTC
