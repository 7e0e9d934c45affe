"""`LogsFetcher`: what goes on the wire, how failures are typed and retried, and its secrets.

Window walks (`iter_logs`) are in test_window.py; real sockets in test_fetcher_wire.py.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import pickle
from datetime import UTC, datetime, timedelta, timezone
from email.utils import format_datetime
from typing import Any

import httpx
import pytest
import respx
from conftest import API_KEY, BASE, NOW, FakeThrottle, Sleeps, ids, log_at, logs_body, ms

from infobip_voicelogs import (
    ApiError,
    AuthenticationError,
    BearerAuth,
    BudgetExceededError,
    DecodeError,
    FetcherStats,
    GeneralStatus,
    InfobipError,
    InvalidQueryError,
    LogsFetcher,
    LogsQuery,
    RateLimitError,
    RetryEvent,
    ServerError,
    TokenBucket,
    TransportError,
    __version__,
    validate_base_url,
)
from infobip_voicelogs.codec import Format, encode_error, media_type
from infobip_voicelogs.testing import FakeTime

LOGS_URL = f"{BASE}/tts/3/logs"
CET = timezone(timedelta(hours=1))

# -- helpers -------------------------------------------------------------------------------


def error_response(
    status: int,
    message_id: str = "E",
    text: str = "t",
    *,
    fmt: Format = "json",
    retry_after: str | None = None,
) -> httpx.Response:
    headers = {"Content-Type": media_type(fmt)}
    if retry_after is not None:
        headers["Retry-After"] = retry_after
    body = encode_error(message_id, text, fmt)
    return httpx.Response(status, content=body, headers=headers)


# -- what goes on the wire -----------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["json", "xml"])
async def test_headers_name_the_key_the_format_and_the_library(
    logs_route: respx.Route, sleeps: Sleeps, fmt: Format
) -> None:
    logs_route.return_value = logs_body([log_at(NOW, "m1")], fmt)
    async with LogsFetcher(BASE, API_KEY, format=fmt, throttle=FakeThrottle()) as fetcher:
        [log] = await fetcher.fetch()
    assert log.message_id == "m1"
    request = logs_route.calls.last.request
    assert request.headers["Authorization"] == f"App {API_KEY}"
    assert request.headers["Accept"] == f"application/{fmt}"
    assert (
        request.headers["User-Agent"]
        == f"infobip-voicelogs/{__version__} httpx/{httpx.__version__}"
    )


async def test_any_httpx_auth_is_used(logs_route: respx.Route) -> None:
    logs_route.return_value = logs_body([])
    async with LogsFetcher(BASE, BearerAuth("tok"), throttle=FakeThrottle()) as fetcher:
        await fetcher.fetch()
    assert logs_route.calls.last.request.headers["Authorization"] == "Bearer tok"


async def test_the_query_string_is_written_as_the_provider_documents_it(
    fetcher: LogsFetcher, logs_route: respx.Route
) -> None:
    logs_route.return_value = logs_body([])
    await fetcher.fetch(
        LogsQuery(
            bulk_ids=["1dece649", "bafdeb3d"],
            general_status=GeneralStatus.DELIVERED,
            sent_since=datetime(2015, 2, 22, 17, 42, 5, 390000, tzinfo=CET),
            limit=100,
            from_="Info Bip",
        )
    )
    assert logs_route.calls.last.request.url.query == (
        b"from=Info%20Bip&bulkId=1dece649,bafdeb3d&generalStatus=DELIVERED"
        b"&sentSince=2015-02-22T16:42:05.390%2B00:00&limit=100"  # the instant, in UTC
    )


async def test_no_query_means_no_query_string(
    fetcher: LogsFetcher, logs_route: respx.Route
) -> None:
    logs_route.return_value = logs_body([])
    assert await fetcher.fetch() == []
    assert str(logs_route.calls.last.request.url) == LOGS_URL


async def test_timeouts_are_finite_by_default(logs_route: respx.Route) -> None:
    logs_route.return_value = logs_body([])
    async with LogsFetcher(BASE, API_KEY, throttle=FakeThrottle()) as fetcher:
        await fetcher.fetch()
    timeout = logs_route.calls.last.request.extensions["timeout"]
    assert timeout == {"connect": 10.0, "read": 30.0, "write": 30.0, "pool": 30.0}


async def test_durations_take_a_timedelta_as_they_take_seconds(
    logs_route: respx.Route, sleeps: Sleeps
) -> None:
    logs_route.side_effect = [
        error_response(503, retry_after="90"),
        logs_body([]),
        error_response(503, retry_after="150"),
    ]
    fetcher = LogsFetcher(
        BASE,
        API_KEY,
        throttle=FakeThrottle(),
        sleep=sleeps,
        timeout=timedelta(seconds=5),
        deadline=timedelta(minutes=1),
        max_retry_after=timedelta(minutes=2),
    )
    await fetcher.fetch()  # a Retry-After of 90 s is within two minutes: waited
    assert logs_route.calls.last.request.extensions["timeout"]["read"] == 5.0
    assert 90.0 <= sleeps[0] <= 90.25
    with pytest.raises(ServerError):  # 150 s is not: raised at once
        await fetcher.fetch()
    assert logs_route.call_count == 3


@pytest.mark.parametrize(
    "value", [0, -1, float("inf"), float("nan"), True, "30", timedelta(0), timedelta(seconds=-1)]
)
@pytest.mark.parametrize("argument", ["timeout", "deadline"])
def test_timeouts_must_be_finite_positive_numbers(argument: str, value: object) -> None:
    with pytest.raises(ValueError, match=argument):
        LogsFetcher(BASE, API_KEY, **{argument: value})  # type: ignore[arg-type]


async def test_the_timeout_also_applies_on_a_shared_client_without_one(
    logs_route: respx.Route,
) -> None:
    logs_route.return_value = logs_body([])
    async with httpx.AsyncClient(timeout=None) as client:
        fetcher = LogsFetcher(BASE, API_KEY, throttle=FakeThrottle(), client=client, timeout=5.0)
        await fetcher.fetch()
    assert logs_route.calls.last.request.extensions["timeout"]["read"] == 5.0


# -- refusing to leak the key --------------------------------------------------------------


@pytest.mark.parametrize(
    "base_url", ["http://api.infobip.com", "http://10.0.0.1:8080", "ftp://xyz.api.infobip.com"]
)
def test_plain_http_to_a_remote_host_is_refused_before_connecting(
    respx_mock: respx.MockRouter, base_url: str
) -> None:
    with pytest.raises(ValueError, match="https://"):
        LogsFetcher(base_url, API_KEY)
    assert respx_mock.calls.call_count == 0


@pytest.mark.parametrize(
    "base_url",
    ["http://localhost:8000", "http://127.0.0.1", "http://127.8.9.10:1", "http://[::1]:9"],
)
def test_plain_http_to_loopback_is_allowed(base_url: str) -> None:
    assert LogsFetcher(base_url, API_KEY)


@pytest.mark.parametrize(
    ("base_url", "secret"),
    [
        (API_KEY, API_KEY),  # the arguments swapped
        ("https://user:pa55word@xyz.api.infobip.com", "pa55word"),
        ("https://xyz.api.infobip.com/?token=t0ken", "t0ken"),
    ],
)
def test_a_bad_base_url_is_refused_without_repeating_it(base_url: str, secret: str) -> None:
    with pytest.raises(ValueError) as caught:
        LogsFetcher(base_url, "another-key")
    assert secret not in str(caught.value)
    assert secret not in repr(caught.value)


@pytest.mark.parametrize(
    ("base_url", "checked"),
    [
        ("https://xyz.api.infobip.com", "https://xyz.api.infobip.com"),
        ("https://xyz.api.infobip.com/", "https://xyz.api.infobip.com"),
        ("https://XYZ.api.infobip.com:443/", "https://xyz.api.infobip.com"),
        ("http://127.0.0.1:8099/", "http://127.0.0.1:8099"),
    ],
)
def test_validate_base_url_gives_the_base_without_a_trailing_slash(
    base_url: str, checked: str
) -> None:
    assert validate_base_url(base_url) == checked


def test_validate_base_url_permits_plain_http_only_when_asked() -> None:
    with pytest.raises(ValueError, match="allow_insecure"):
        validate_base_url("http://10.0.0.1:8080")
    assert validate_base_url("http://10.0.0.1:8080", allow_insecure=True) == "http://10.0.0.1:8080"


@pytest.mark.parametrize(
    ("base_url", "secret"),
    [
        (API_KEY, API_KEY),
        ("https://user:pa55word@xyz.api.infobip.com", "pa55word"),
        ("https://xyz.api.infobip.com/?token=t0ken", "t0ken"),
        ("https://xyz.api.infobip.com/#fr4gment", "fr4gment"),
        ("http://api.infobip.com/s3cret-path", "s3cret-path"),
        ("https://xyz.api.infobip.com/s3cret-path", "s3cret-path"),
        ("", ""),
    ],
)
def test_validate_base_url_refuses_what_the_fetcher_refuses_in_the_same_words(
    base_url: str, secret: str
) -> None:
    with pytest.raises(ValueError) as direct:
        validate_base_url(base_url)
    with pytest.raises(ValueError) as via_fetcher:
        LogsFetcher(base_url, "another-key")
    assert str(direct.value) == str(via_fetcher.value)
    if secret:
        assert secret not in str(direct.value)
        assert secret not in repr(direct.value)


async def test_a_shared_clients_default_params_do_not_replace_the_query() -> None:
    seen: list[httpx.URL] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url)
        return logs_body([])

    transport = httpx.MockTransport(handler)
    async with httpx.AsyncClient(transport=transport, params={"trace": "1", "limit": "7"}) as c:
        fetcher = LogsFetcher(BASE, API_KEY, throttle=FakeThrottle(), client=c)
        since = datetime(2026, 11, 26, 10, 0, tzinfo=CET)
        await fetcher.fetch(LogsQuery(sent_since=since, limit=10, bulk_ids=("a", "b")))
        await fetcher.fetch()
    ours, bare = seen
    # Exactly as the fetcher writes it, and the client's own params after it, none repeated.
    assert ours.query == b"bulkId=a,b&sentSince=2026-11-26T09:00:00.000%2B00:00&limit=10&trace=1"
    assert bare.params == httpx.QueryParams({"trace": "1", "limit": "7"})


@pytest.mark.parametrize("status", [429, 503, 400])
async def test_an_event_hook_raising_for_status_is_translated_and_retried(
    status: int, sleeps: Sleeps
) -> None:
    answers = [error_response(status, "E", "no"), logs_body([log_at(ms(1), "m1")])]

    def handler(request: httpx.Request) -> httpx.Response:
        return answers.pop(0)

    async def raise_for_status(response: httpx.Response) -> None:
        response.raise_for_status()

    hooks = {"response": [raise_for_status]}
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler), event_hooks=hooks) as c:
        fetcher = LogsFetcher(BASE, API_KEY, throttle=FakeThrottle(), client=c, sleep=sleeps)
        if status == 400:
            with pytest.raises(ApiError) as caught:
                await fetcher.fetch()
            assert caught.value.status_code == 400  # typed, and not retried
        else:
            assert ids(await fetcher.fetch()) == ["m1"]  # retried like any other


def test_errors_pickle_and_copy_with_their_attributes() -> None:
    errors: list[Exception] = [
        ApiError(400, "BAD", "bad", retry_after=3.0, validation_errors={"limit": ("x",)}),
        RateLimitError(429, "E429", "slow", retry_after=5),
        DecodeError("oops", path="results[0]", excerpt="{"),
        InvalidQueryError("limit", "must be at most 1000"),
        TransportError("reset"),
    ]
    for error in errors:
        for twin in (pickle.loads(pickle.dumps(error)), copy.copy(error)):
            assert type(twin) is type(error)
            assert str(twin) == str(error)
            assert vars(twin) == vars(error)


async def test_allow_insecure_permits_plain_http(respx_mock: respx.MockRouter) -> None:
    route = respx_mock.get("http://api.infobip.com/tts/3/logs").mock(return_value=logs_body([]))
    async with LogsFetcher(
        "http://api.infobip.com", API_KEY, allow_insecure=True, throttle=FakeThrottle()
    ) as fetcher:
        await fetcher.fetch()
    assert route.call_count == 1


# -- failures ------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["json", "xml"])
@pytest.mark.parametrize("shape", ["old", "new"])
@pytest.mark.parametrize(
    ("status", "error_class", "tries"),
    [
        (400, ApiError, 1),
        (401, AuthenticationError, 1),
        (403, AuthenticationError, 1),
        (404, ApiError, 1),
        (408, ApiError, 6),
        (429, RateLimitError, 6),
        (500, ServerError, 6),
        (501, ServerError, 1),
        (502, ServerError, 6),
        (503, ServerError, 6),
        (504, ServerError, 6),
    ],
)
async def test_error_statuses_map_to_the_error_tree(
    fetcher: LogsFetcher,
    logs_route: respx.Route,
    sleeps: Sleeps,
    fmt: Format,
    shape: str,
    status: int,
    error_class: type[ApiError],
    tries: int,
) -> None:
    body = encode_error("SOME_ID", "what went wrong", fmt, shape=shape)  # type: ignore[arg-type]
    logs_route.return_value = httpx.Response(
        status,
        content=body,
        headers={"Content-Type": media_type(fmt)},
    )
    with pytest.raises(error_class) as caught:
        await fetcher.fetch()
    assert type(caught.value) is error_class
    assert (caught.value.status_code, caught.value.message_id, caught.value.text) == (
        status,
        "SOME_ID",
        "what went wrong",
    )
    assert logs_route.call_count == tries
    assert len(sleeps) == tries - 1
    assert fetcher.stats.requests == tries
    assert fetcher.stats.retries == tries - 1


async def test_a_400_carries_the_providers_field_errors(
    fetcher: LogsFetcher, logs_route: respx.Route
) -> None:
    logs_route.return_value = httpx.Response(
        400,
        json={
            "errorCode": "E400",
            "description": "Request cannot be processed.",
            "violations": [{"property": "limit", "violation": "must be at most 1000"}],
        },
    )
    with pytest.raises(ApiError) as caught:
        await fetcher.fetch()
    assert caught.value.validation_errors == {"limit": ("must be at most 1000",)}
    assert "limit: must be at most 1000" in str(caught.value)


async def test_an_unreadable_error_body_still_gives_the_status(
    fetcher: LogsFetcher, logs_route: respx.Route
) -> None:
    logs_route.return_value = httpx.Response(401, text="<html>nope</html>")
    with pytest.raises(AuthenticationError) as caught:
        await fetcher.fetch()
    assert caught.value.status_code == 401


async def test_a_200_that_does_not_decode_is_not_retried(
    fetcher: LogsFetcher, logs_route: respx.Route, sleeps: Sleeps
) -> None:
    logs_route.return_value = httpx.Response(
        200,
        content=b'{"results": [{"sentAt": "yester',
        headers={"Content-Type": "application/json"},
    )
    with pytest.raises(DecodeError):
        await fetcher.fetch()
    assert logs_route.call_count == 1
    assert sleeps == []


@pytest.mark.parametrize(
    "failure",
    [
        httpx.ConnectError("[Errno 111] Connection refused"),
        httpx.ConnectTimeout("timed out"),
        httpx.ReadTimeout("timed out"),
        httpx.ReadError("[Errno 104] Connection reset by peer"),
        httpx.RemoteProtocolError("peer closed connection without sending complete message body"),
    ],
)
async def test_transport_failures_are_retried_then_raised_typed(
    fetcher: LogsFetcher, logs_route: respx.Route, sleeps: Sleeps, failure: httpx.HTTPError
) -> None:
    logs_route.side_effect = failure
    with pytest.raises(TransportError) as caught:
        await fetcher.fetch()
    assert caught.value.__cause__ is failure
    assert type(failure).__name__ in str(caught.value)
    assert logs_route.call_count == 6
    assert len(sleeps) == 5


async def test_a_transient_failure_then_success(
    fetcher: LogsFetcher, logs_route: respx.Route, throttle: FakeThrottle
) -> None:
    logs_route.side_effect = [
        httpx.ReadError("reset"),
        error_response(503),
        logs_body([log_at(NOW, "m1")]),
    ]
    assert [log.message_id for log in await fetcher.fetch()] == ["m1"]
    assert fetcher.stats == FetcherStats(requests=3, retries=2, rate_limited=0, throttle_wait=0.0)
    assert throttle.acquired == 3  # every try waits for its slot
    assert throttle.successes == 1


# -- Retry-After and the throttle ----------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "low", "high"),
    [
        ("3", 3.0, 3.25),
        ("0", 0.0, 0.25),
        ("2.5", 2.5, 2.75),
        ("<HTTP date 20 s from now>", 15.0, 20.25),  # less what the test itself takes
        ("not-a-number", 0.0, 0.5),  # unreadable: first backoff step
    ],
)
async def test_retry_after_in_every_form_sets_the_wait(
    fetcher: LogsFetcher,
    logs_route: respx.Route,
    sleeps: Sleeps,
    throttle: FakeThrottle,
    header: str,
    low: float,
    high: float,
) -> None:
    if header.startswith("<HTTP date"):
        header = format_datetime(datetime.now(UTC) + timedelta(seconds=20), usegmt=True)
    logs_route.side_effect = [
        error_response(429, "TOO_MANY_REQUESTS", retry_after=header),
        logs_body([]),
    ]
    await fetcher.fetch()
    [wait] = sleeps
    assert low <= wait <= high
    # The whole account waits with the retrier, and its rate is cut.
    assert throttle.cooldowns == [wait]
    assert throttle.cuts == 1
    assert fetcher.stats.rate_limited == 1


async def test_a_retry_after_too_long_raises_at_once(
    fetcher: LogsFetcher, logs_route: respx.Route, sleeps: Sleeps
) -> None:
    logs_route.return_value = error_response(429, "TOO_MANY_REQUESTS", retry_after="3600")
    with pytest.raises(RateLimitError) as caught:
        await fetcher.fetch()
    assert caught.value.retry_after == 3600.0
    assert caught.value.message_id == "TOO_MANY_REQUESTS"
    assert logs_route.call_count == 1
    assert sleeps == []


async def test_max_retry_after_is_configurable(logs_route: respx.Route, sleeps: Sleeps) -> None:
    logs_route.side_effect = [error_response(503, retry_after="90"), logs_body([])]
    fetcher = LogsFetcher(
        BASE, API_KEY, throttle=FakeThrottle(), sleep=sleeps, max_retry_after=120.0
    )
    await fetcher.fetch()
    assert 90.0 <= sleeps[0] <= 90.25


async def test_a_429_cuts_a_real_bucket_shared_by_the_account(logs_route: respx.Route) -> None:
    bucket = TokenBucket(1000.0, burst=10)
    logs_route.return_value = error_response(429, retry_after="0")
    first = LogsFetcher(BASE, API_KEY, throttle=bucket, max_attempts=1)
    second = LogsFetcher(BASE, API_KEY, throttle=bucket)
    assert second.throttle is bucket
    with pytest.raises(RateLimitError):
        await first.fetch()
    assert bucket.rate < bucket.configured_rate  # the other fetcher slows down too


async def test_the_default_throttle_is_the_documented_limit() -> None:
    throttle = LogsFetcher(BASE, API_KEY).throttle
    assert isinstance(throttle, TokenBucket)
    assert (throttle.rate, throttle.burst, throttle.adaptive) == (2.0, 1, True)


async def test_stats_count_throttle_waits_and_429s(logs_route: respx.Route, sleeps: Sleeps) -> None:
    logs_route.side_effect = [error_response(429), error_response(429), logs_body([])]
    fetcher = LogsFetcher(BASE, API_KEY, throttle=FakeThrottle(wait=0.5), sleep=sleeps)
    await fetcher.fetch()
    assert fetcher.stats == FetcherStats(requests=3, retries=2, rate_limited=2, throttle_wait=1.5)


async def test_on_retry_sees_every_retry(logs_route: respx.Route, sleeps: Sleeps) -> None:
    events: list[RetryEvent] = []
    logs_route.side_effect = [error_response(429, "TOO_MANY_REQUESTS"), logs_body([])]
    fetcher = LogsFetcher(
        BASE, API_KEY, throttle=FakeThrottle(), sleep=sleeps, on_retry=events.append
    )
    await fetcher.fetch()
    [event] = events
    assert (event.attempt, event.status_code, event.wait) == (1, 429, sleeps[0])
    assert "TOO_MANY_REQUESTS" in event.reason


async def test_max_attempts_one_means_no_retry(logs_route: respx.Route, sleeps: Sleeps) -> None:
    logs_route.return_value = error_response(503)
    fetcher = LogsFetcher(BASE, API_KEY, throttle=FakeThrottle(), sleep=sleeps, max_attempts=1)
    with pytest.raises(ServerError):
        await fetcher.fetch()
    assert logs_route.call_count == 1


# -- sharing and life cycle ----------------------------------------------------------------


async def test_one_fetcher_serves_many_tasks(
    fetcher: LogsFetcher, logs_route: respx.Route, throttle: FakeThrottle
) -> None:
    logs_route.return_value = logs_body([log_at(NOW, "m1")])
    results = await asyncio.gather(*(fetcher.fetch() for _ in range(200)))
    assert all(len(logs) == 1 for logs in results)
    assert fetcher.stats.requests == throttle.acquired == 200


async def test_a_callers_client_is_never_closed(logs_route: respx.Route) -> None:
    logs_route.return_value = logs_body([])
    async with httpx.AsyncClient() as client:
        async with LogsFetcher(BASE, API_KEY, client=client, throttle=FakeThrottle()) as fetcher:
            await fetcher.fetch()
        assert not client.is_closed
        await LogsFetcher(BASE, API_KEY, client=client, throttle=FakeThrottle()).fetch()


async def test_its_own_client_is_closed_on_exit(logs_route: respx.Route) -> None:
    logs_route.return_value = logs_body([])
    async with LogsFetcher(BASE, API_KEY, throttle=FakeThrottle()) as fetcher:
        await fetcher.fetch()
    with pytest.raises(RuntimeError):
        await fetcher.fetch()


# -- secrets -------------------------------------------------------------------------------


async def test_the_api_key_never_shows(
    logs_route: respx.Route, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    events: list[RetryEvent] = []
    fetcher = LogsFetcher(
        BASE, API_KEY, throttle=FakeThrottle(), sleep=Sleeps(), on_retry=events.append
    )
    shown = [repr(fetcher), repr(fetcher.stats)]
    outcomes: list[httpx.Response | Exception] = [
        error_response(401, "UNAUTHORIZED", "Invalid login details"),
        error_response(429, "TOO_MANY_REQUESTS", fmt="xml"),
        httpx.ConnectError("refused"),
        httpx.Response(200, content=b"{", headers={"Content-Type": "application/json"}),
    ]
    for outcome in outcomes:
        if isinstance(outcome, Exception):
            logs_route.mock(side_effect=outcome)
        else:
            logs_route.mock(return_value=outcome)
        with pytest.raises(InfobipError) as caught:
            await fetcher.fetch()
        error: BaseException | None = caught.value
        while error is not None:  # the whole chain, httpx's own exceptions included
            shown += [str(error), repr(error)]
            error = error.__cause__ or error.__context__
    shown += [repr(event) for event in events]
    shown += [record.getMessage() for record in caplog.records]
    assert events  # the 429 and the transport failure were retried (and shown)
    assert caplog.records
    assert not [text for text in shown if API_KEY in text]


# -- against the fake provider -------------------------------------------------------------


async def test_faults_of_the_fake_provider_are_retried_and_counted() -> None:
    from infobip_voicelogs.testing import IN_PROCESS_URL, FakeClock, FakeInfobip, Fault

    fake = FakeInfobip(clock=FakeClock())
    account = fake.add_account("acme")
    account.generate(10)
    account.script(Fault.status(429, retry_after=1), Fault.reset(), Fault.truncate())
    sleeps = Sleeps()
    async with fake.in_process_client() as client:
        fetcher = LogsFetcher(
            IN_PROCESS_URL, account.api_key, client=client, throttle=FakeThrottle(), sleep=sleeps
        )
        assert ids(await fetcher.fetch()) == ids(account.logs)
        account.script(Fault.malformed())
        with pytest.raises(DecodeError):
            await fetcher.fetch()
    assert fetcher.stats.requests == 5
    assert fetcher.stats.retries == 3
    assert fetcher.stats.rate_limited == 1
    assert 1.0 <= sleeps[0] <= 1.25


# -- the budget: one bound on the throttle wait, every try and every backoff --------------


def virtual_fetcher(time: FakeTime, **kwargs: Any) -> LogsFetcher:
    """A fetcher whose throttle (2/s, burst 1), backoff and budget all run on ``time``."""
    bucket = TokenBucket(2.0, burst=1, adaptive=False, clock=time.now, sleep=time.sleep)
    return LogsFetcher(BASE, API_KEY, throttle=bucket, **kwargs)


async def test_a_budget_bounds_the_throttle_the_tries_and_the_backoff_together(
    logs_route: respx.Route,
) -> None:
    time = FakeTime()
    started: list[float] = []

    def failing(request: httpx.Request) -> httpx.Response:
        started.append(time.now())
        return error_response(503)

    logs_route.side_effect = failing
    fetcher = virtual_fetcher(time, max_attempts=1000)
    with pytest.raises(BudgetExceededError) as caught:
        await fetcher.fetch(budget=4.0)
    error = caught.value
    assert isinstance(error, TimeoutError)
    assert isinstance(error, InfobipError)
    assert isinstance(error.__cause__, ServerError)
    assert started
    assert all(at < 4.0 for at in started)  # no try started past the budget
    assert error.tries == logs_route.call_count == len(started) < 1000
    # Virtual time moves only in the throttle's waits and the backoff: the parts add up.
    assert error.throttle_wait > 0
    assert error.backoff > 0
    assert error.throttle_wait + error.try_time + error.backoff == pytest.approx(error.spent)
    assert error.spent <= 4.0 + 1e-9  # a wait that would overrun it is not waited
    assert "budget of 4 s ran out" in str(error)
    assert "HTTP 503" in str(error)  # the last error
    assert API_KEY not in str(error)


async def test_a_retry_after_longer_than_what_is_left_raises_at_once(
    logs_route: respx.Route,
) -> None:
    time = FakeTime()
    logs_route.return_value = error_response(429, "TOO_MANY_REQUESTS", retry_after="30")
    fetcher = virtual_fetcher(time, budget=timedelta(seconds=10))
    with pytest.raises(RateLimitError) as caught:
        await fetcher.fetch()
    assert logs_route.call_count == 1
    assert time.sleeps == []  # nothing waited: the first slot is free
    assert any("10 s budget" in note for note in caught.value.__notes__)


async def test_a_per_call_budget_replaces_the_fetchers(logs_route: respx.Route) -> None:
    time = FakeTime()
    logs_route.side_effect = [error_response(503, retry_after="2")] * 2 + [logs_body([])] * 2
    fetcher = virtual_fetcher(time, budget=1.0)
    with pytest.raises(ServerError):  # the fetcher's 1 s leaves no room for a 2 s wait
        await fetcher.fetch()
    assert logs_route.call_count == 1
    assert await fetcher.fetch(budget=None) == []  # no bound: waited 2 s, tried again
    assert logs_route.call_count == 3
    assert await fetcher.fetch(budget=5) == []
    assert max(time.sleeps) >= 2.0


async def test_a_try_is_cut_to_what_is_left_of_the_budget(logs_route: respx.Route) -> None:
    tries: list[httpx.Request] = []

    async def hangs(request: httpx.Request) -> httpx.Response:
        tries.append(request)
        await asyncio.sleep(60)
        raise AssertionError("the budget should have cut this try")

    logs_route.side_effect = hangs
    fetcher = LogsFetcher(BASE, API_KEY, throttle=FakeThrottle(), budget=0.2)
    with pytest.raises(BudgetExceededError, match="during try 1") as caught:
        await fetcher.fetch()
    assert caught.value.tries == len(tries) == 1
    assert isinstance(caught.value.__cause__, TransportError)
    assert "xyz.api.infobip.com" in str(caught.value.__cause__)


async def test_a_throttle_wait_longer_than_the_budget_sends_nothing(
    logs_route: respx.Route,
) -> None:
    time = FakeTime()
    fetcher = virtual_fetcher(time, budget=1.0)
    fetcher.throttle.cooldown(30.0)  # as after another caller's 429
    with pytest.raises(BudgetExceededError, match="before try 1") as caught:
        await fetcher.fetch()
    assert logs_route.call_count == 0
    assert caught.value.tries == 0
    assert caught.value.throttle_wait >= 1.0


async def test_iter_logs_bounds_each_pages_request(logs_route: respx.Route) -> None:
    time = FakeTime()
    pages = [[log_at(ms(9), "a"), log_at(ms(8), "b")], [log_at(ms(7), "c"), log_at(ms(6), "d")]]
    logs_route.side_effect = [logs_body(page) for page in pages] + [logs_body([])]
    fetcher = virtual_fetcher(time)
    walk = fetcher.iter_logs(sent_since=ms(0), sent_until=ms(10), page_size=2, budget=0.6)
    assert [log.message_id async for log in walk] == ["a", "b", "c", "d"]
    assert time.now() >= 1.0  # three pages at 2/s: more than one budget in all, each within it


@pytest.mark.parametrize("budget", [0, -1.0, float("nan"), float("inf"), timedelta(0)])
async def test_a_budget_must_be_a_positive_finite_duration(budget: object) -> None:
    with pytest.raises(ValueError, match="budget"):
        LogsFetcher(BASE, API_KEY, budget=budget)  # type: ignore[arg-type]
    fetcher = LogsFetcher(BASE, API_KEY, throttle=FakeThrottle())
    with pytest.raises(ValueError, match="budget"):
        await fetcher.fetch(budget=budget)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="budget"):
        fetcher.iter_logs(sent_since=NOW - timedelta(hours=1), budget=budget)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="budget"):
        LogsFetcher(BASE, API_KEY, budget="5")  # type: ignore[arg-type]


def test_a_budget_error_pickles_with_its_accounting() -> None:
    error = BudgetExceededError("ran out", budget=5.0, spent=5.1, tries=2, backoff=1.5)
    restored = pickle.loads(pickle.dumps(error))
    assert (restored.budget, restored.spent, restored.tries, restored.backoff) == (5, 5.1, 2, 1.5)
    assert str(restored) == "ran out"


# -- an unreachable host -------------------------------------------------------------------


async def test_a_refused_connection_names_the_host_and_each_retry_is_logged(
    logs_route: respx.Route, sleeps: Sleeps, caplog: pytest.LogCaptureFixture
) -> None:
    logs_route.side_effect = httpx.ConnectError("[Errno 111] Connection refused")
    fetcher = LogsFetcher(BASE, API_KEY, throttle=FakeThrottle(), sleep=sleeps)
    with (
        caplog.at_level(logging.INFO, logger="infobip_voicelogs"),
        pytest.raises(TransportError) as caught,
    ):
        await fetcher.fetch()
    message = str(caught.value)
    assert message.startswith("could not connect to xyz.api.infobip.com: ConnectError")
    assert "Connection refused" in message
    retries = [r.getMessage() for r in caplog.records if "retrying" in r.getMessage()]
    assert len(retries) == 5
    assert all("could not connect to xyz.api.infobip.com" in line for line in retries)
    assert all(API_KEY not in r.getMessage() for r in caplog.records)


async def test_a_closed_port_fails_naming_host_and_port() -> None:
    import socket

    with socket.socket() as probe:  # a port that nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with LogsFetcher(
        f"http://127.0.0.1:{port}", API_KEY, throttle=FakeThrottle(), max_attempts=1
    ) as fetcher:
        with pytest.raises(TransportError, match=rf"could not connect to 127\.0\.0\.1:{port}"):
            await fetcher.fetch()


async def test_a_throttle_wait_on_real_time_is_cut_at_the_budget(logs_route: respx.Route) -> None:
    bucket = TokenBucket(2.0)
    fetcher = LogsFetcher(BASE, API_KEY, throttle=bucket, budget=0.2)
    bucket.cooldown(60.0)
    with pytest.raises(BudgetExceededError, match="waiting for the throttle") as caught:
        await fetcher.fetch()
    assert logs_route.call_count == 0
    assert caught.value.tries == 0
    assert caught.value.throttle_wait > 0
    assert bucket.waiting == 0  # the waiter gave its place back
