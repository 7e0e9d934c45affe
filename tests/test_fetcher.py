"""`LogsFetcher` against exact HTTP (respx), a simulated provider, and a real loopback socket."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import pickle
import warnings
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from email.utils import format_datetime

import attrs
import httpx
import pytest
import respx
from hypothesis import given, settings
from hypothesis import strategies as st

from infobip_voicelogs import (
    ApiError,
    AuthenticationError,
    BearerAuth,
    DecodeError,
    FetcherStats,
    GeneralStatus,
    IncompleteWindowWarning,
    InfobipError,
    InvalidQueryError,
    LogsFetcher,
    LogsQuery,
    RateLimitError,
    RetentionWarning,
    RetryEvent,
    ServerError,
    TokenBucket,
    TransportError,
    VoiceLog,
    __version__,
)
from infobip_voicelogs.codec import Format, encode_error, encode_logs, media_type

BASE = "https://xyz.api.infobip.com"
LOGS_URL = f"{BASE}/tts/3/logs"
API_KEY = "003026bbc133714df1834b8638bb496e-8f4b3d9a"
CET = timezone(timedelta(hours=1))
NOW = datetime.now(UTC).replace(microsecond=0)

# -- helpers ----------------------------------------------------------------------------------


class Sleeps(list[float]):
    """An injected sleep between retries: records each wait, returns at once."""

    async def __call__(self, seconds: float) -> None:
        self.append(seconds)


@attrs.define
class FakeThrottle:
    """A throttle that never waits (it reports ``wait`` seconds) and records what it hears."""

    wait: float = 0.0
    acquired: int = 0
    successes: int = 0
    cuts: int = 0
    cooldowns: list[float] = attrs.Factory(list)

    async def acquire(self) -> float:
        self.acquired += 1
        return self.wait

    def on_success(self) -> None:
        self.successes += 1

    def on_rate_limited(self) -> None:
        self.cuts += 1

    def cooldown(self, seconds: float) -> None:
        self.cooldowns.append(seconds)


def log_at(sent_at: datetime | None, message_id: str) -> VoiceLog:
    return VoiceLog(bulk_id="bulk-1", message_id=message_id, to="41793026727", sent_at=sent_at)


def logs_body(logs: list[VoiceLog], fmt: Format = "json") -> httpx.Response:
    return httpx.Response(
        200, content=encode_logs(logs, fmt), headers={"Content-Type": media_type(fmt)}
    )


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


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def throttle() -> FakeThrottle:
    return FakeThrottle()


@pytest.fixture
def fetcher(sleeps: Sleeps, throttle: FakeThrottle) -> LogsFetcher:
    return LogsFetcher(BASE, API_KEY, throttle=throttle, sleep=sleeps)


@pytest.fixture
def logs_route(respx_mock: respx.MockRouter) -> respx.Route:
    return respx_mock.get(host="xyz.api.infobip.com", path="/tts/3/logs")


# -- what goes on the wire --------------------------------------------------------------------


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
        b"&sentSince=2015-02-22T17:42:05.390%2B01:00&limit=100"
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


@pytest.mark.parametrize("value", [0, -1, float("inf"), float("nan"), True, "30"])
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


# -- refusing to leak the key -----------------------------------------------------------------


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
    assert ours.query == b"bulkId=a,b&sentSince=2026-11-26T10:00:00.000%2B01:00&limit=10&trace=1"
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


# -- failures ---------------------------------------------------------------------------------


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


# -- Retry-After and the throttle -------------------------------------------------------------


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


# -- sharing and life cycle -------------------------------------------------------------------


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


# -- secrets ----------------------------------------------------------------------------------


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


# -- iter_logs: a simulated provider ----------------------------------------------------------


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


def ids(logs: list[VoiceLog]) -> list[str]:
    return [str(log.message_id) for log in logs]


def expected(logs: list[VoiceLog], since: datetime, until: datetime) -> list[VoiceLog]:
    """The logs of ``[since, until]``, newest first: what a walk must yield."""
    dated = [log for log in logs if log.sent_at is not None and since <= log.sent_at <= until]
    return sorted(dated, key=sent, reverse=True)


async def walk(fetcher: LogsFetcher, **kwargs: object) -> list[VoiceLog]:
    return [log async for log in fetcher.iter_logs(**kwargs)]  # type: ignore[arg-type]


T0 = (NOW - timedelta(hours=1)).replace(microsecond=0)


def ms(n: int) -> datetime:
    return T0 + timedelta(milliseconds=n)


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
    assert request.url.query == (
        b"sentSince=2026-11-26T09:59:59.999%2B01:00&sentUntil=2026-11-26T11:00:00.251%2B01:00"
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


# -- a real socket: truncation as the wire does it --------------------------------------------


@contextlib.asynccontextmanager
async def loopback_server(
    serve: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
) -> AsyncIterator[str]:
    """Serve raw HTTP on a free loopback port, for what no mock transport can do."""
    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield f"http://127.0.0.1:{port}"
        server.close()  # drop the connections still open, not wait for them


@pytest.fixture
async def truncating_server() -> Iterator[str]:  # type: ignore[misc]
    """A loopback server that promises 1,000 bytes, sends 20 and hangs up."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
            b'{"results": [{"mess'
        )
        await writer.drain()
        writer.close()

    async with loopback_server(serve) as url:
        yield url


@pytest.fixture
async def trickling_server() -> Iterator[str]:  # type: ignore[misc]
    """A loopback server that answers a byte every 50 ms: never idle long enough to time out."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n")
        writer.write(b"Content-Length: 100000\r\n\r\n")
        with contextlib.suppress(ConnectionError):
            for _ in range(100_000):
                writer.write(b" ")
                await writer.drain()
                await asyncio.sleep(0.05)
        writer.close()

    async with loopback_server(serve) as url:
        yield url


async def test_a_trickled_answer_fails_the_try_at_its_deadline(
    trickling_server: str, respx_mock: respx.MockRouter
) -> None:
    respx_mock.route(host="127.0.0.1").pass_through()
    sleeps = Sleeps()
    async with LogsFetcher(
        trickling_server,
        API_KEY,
        throttle=FakeThrottle(),
        sleep=sleeps,
        max_attempts=2,
        timeout=0.3,  # each byte comes well within it...
        deadline=0.4,  # ...but the answer as a whole never does
    ) as fetcher:
        with pytest.raises(TransportError, match=r"within 0\.4 s"):
            await fetcher.fetch()
    assert fetcher.stats.requests == 2  # retried, then given up
    assert len(sleeps) == 1


async def test_a_hook_raising_for_status_on_a_real_socket_is_still_a_typed_error(
    respx_mock: respx.MockRouter,
) -> None:
    respx_mock.route(host="127.0.0.1").pass_through()
    body = encode_error("E503", "down for maintenance", "json")

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        await writer.drain()
        writer.close()

    async def raise_for_status(response: httpx.Response) -> None:
        response.raise_for_status()  # httpx closes the response before we see it

    async with (
        loopback_server(serve) as url,
        httpx.AsyncClient(event_hooks={"response": [raise_for_status]}) as client,
    ):
        fetcher = LogsFetcher(
            url, API_KEY, throttle=FakeThrottle(), client=client, sleep=Sleeps(), max_attempts=2
        )
        with pytest.raises(ServerError) as caught:
            await fetcher.fetch()
    assert caught.value.status_code == 503
    assert fetcher.stats.requests == 2  # retried like any 503


async def test_a_page_body_beyond_the_limit_is_refused_not_read_whole(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from infobip_voicelogs import fetcher as fetcher_module

    monkeypatch.setattr(fetcher_module, "MAX_BODY_BYTES", 2_000)
    page = encode_logs([log_at(ms(n), f"m{n}") for n in range(100)], "json")
    assert len(page) > 2_000
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(200, content=page, headers={"Content-Type": "application/json"})

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        fetcher = LogsFetcher(BASE, API_KEY, throttle=FakeThrottle(), client=client)
        with pytest.raises(DecodeError, match="larger than 2,000 bytes"):
            await fetcher.fetch()
    assert len(calls) == 1  # not retried: the same page would be as large again


async def test_only_the_start_of_a_huge_error_body_is_read(sleeps: Sleeps) -> None:
    huge = encode_error("E500", "x" * 200_000, "json")

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(500, content=huge, headers={"Content-Type": "application/json"})

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        fetcher = LogsFetcher(
            BASE, API_KEY, throttle=FakeThrottle(), client=client, sleep=sleeps, max_attempts=1
        )
        with pytest.raises(ServerError) as caught:
            await fetcher.fetch()
    assert caught.value.status_code == 500  # typed by its status, whatever its body


async def test_a_truncated_body_on_the_wire_is_a_retried_transport_error(
    truncating_server: str, respx_mock: respx.MockRouter
) -> None:
    respx_mock.route(host="127.0.0.1").pass_through()
    sleeps = Sleeps()
    async with LogsFetcher(
        truncating_server, API_KEY, throttle=FakeThrottle(), sleep=sleeps, max_attempts=3
    ) as fetcher:
        with pytest.raises(TransportError, match="RemoteProtocolError"):
            await fetcher.fetch()
    assert fetcher.stats.requests == 3
    assert len(sleeps) == 2


# -- against the fake provider ----------------------------------------------------------------


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
