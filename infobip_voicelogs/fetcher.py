"""`LogsFetcher`: one account's requests to `GET /tts/3/logs`, its pages and time-window walks,
and its pulls of the delivery reports kept at `GET /voice/1/reports`.

```python
async with LogsFetcher("https://xyz.api.infobip.com", auth="API-KEY") as fetcher:
    latest = await fetcher.fetch()                                   # one request
    async for log in fetcher.iter_logs(sent_since=since):            # a whole window
        ...
```

Each request waits for the account's throttle, goes out with the account's credentials,
`Accept` for the chosen format and a `User-Agent` naming this library, and is retried by
the `retry` policy. Failures are translated at one boundary (`_send`) into the library's
error tree; nothing from httpx escapes, and every configured secret is scrubbed from what
a call raises (`redaction`). A ``budget`` (seconds, per fetcher or per call)
bounds the throttle wait, the tries and the backoff of one call together.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import socket
import time
import warnings
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any, Final, Literal, Protocol, Self, TypeVar

import attrs
import httpx

from . import redaction, telemetry
from .__about__ import __version__
from ._time import RETENTION, seconds, utc_now
from .auth import auth_from
from .codec import Format, decode_error, decode_logs, media_type
from .defaults import (
    CONNECT_TIMEOUT,
    DEFAULT_DEADLINE,
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_MAX_RETRY_AFTER,
    DEFAULT_RATE,
    DEFAULT_TIMEOUT,
    MAX_PAGE_SIZE,
    MAX_PULL_LIMIT,
)
from .endpoint import logs_url, query_string, reports_url, with_client_params
from .errors import (
    ApiError,
    AuthenticationError,
    DecodeError,
    InvalidQueryError,
    RateLimitError,
    RetentionWarning,
    ServerError,
    TransportError,
)
from .models import LogsQuery, VoiceLog
from .reports import VoiceReport, decode_reports
from .retry import (
    Budget,
    RateLimitListener,
    RetryEvent,
    RetryPolicy,
    budget_seconds,
    parse_retry_after,
)
from .throttle import TokenBucket
from .window import WindowWalk

__all__ = [
    "DEFAULT_DEADLINE",
    "DEFAULT_RATE",
    "DEFAULT_TIMEOUT",
    "FETCHER_BUDGET",
    "FetcherStats",
    "LogsFetcher",
    "Throttle",
]

#: The largest page body read (decompressed); a page of 1,000 logs is under 1 MiB.
MAX_BODY_BYTES = 32 * 1024 * 1024
#: How much of an error response's body is read: enough for any error the provider writes.
MAX_ERROR_BODY_BYTES = 64 * 1024

USER_AGENT = f"infobip-voicelogs/{__version__} httpx/{httpx.__version__}"
# A window starting right at the retention line, as a poller's does, must not warn because
# a few milliseconds passed between its "now" and this one.
_RETENTION_SLACK = timedelta(minutes=1)


class _Default(enum.Enum):
    """The type of `FETCHER_BUDGET`."""

    FETCHER_BUDGET = "the fetcher's budget"

    def __repr__(self) -> str:
        return "FETCHER_BUDGET"


#: A call's ``budget`` when none is passed: the fetcher's own (``LogsFetcher(budget=...)``).
FETCHER_BUDGET: Final = _Default.FETCHER_BUDGET
#: What a ``budget`` argument takes: seconds, a `timedelta`, or `None` for no bound.
BudgetArg = float | timedelta | None

_Item = TypeVar("_Item")
#: Reads a 200's body (and its `Content-Type`) into what the call returns.
_Decode = Callable[[bytes, str], list[_Item]]


class Throttle(RateLimitListener, Protocol):
    """What a fetcher needs of its throttle (`TokenBucket`, `RedisBucket`; tests, a fake).

    Only `acquire` may wait. The feedback methods (`on_success`, and `cooldown` and
    `on_rate_limited` from `RateLimitListener`) are synchronous and must return at once: a
    networked throttle (`RedisBucket`) applies them in its own process immediately and
    schedules its own, bounded write, so a request never waits on the throttle's network
    to report how the previous one went.
    """

    async def acquire(self) -> float:
        """Wait for the next slot; return the seconds waited."""
        ...

    def on_success(self) -> None:
        """A request got through: the rate may grow back."""


@attrs.frozen
class FetcherStats:
    """A snapshot of what a fetcher has done so far (`LogsFetcher.stats`).

    Attributes:
        requests: HTTP requests sent, retries included.
        retries: Tries that failed and were tried again.
        rate_limited: 429 responses seen, retried or not.
        throttle_wait: Seconds spent waiting for the throttle, summed over requests.
    """

    requests: int = 0
    retries: int = 0
    rate_limited: int = 0
    throttle_wait: float = 0.0


#: What a resolver answers for a name that does not exist (no retry changes that); its
#: temporary failure (EAI_AGAIN) stays retryable.
_NO_SUCH_NAME = frozenset(
    code for code in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", None)) if code is not None
)


@contextmanager
def _transport_errors(host: str) -> Iterator[None]:
    """Translate httpx's request failures (connect, read, timeout, reset, truncation)."""
    try:
        yield
    except httpx.RequestError as exc:
        # The message names the host and the failure, never the request's headers (the
        # credential): a user reads which server could not be reached, and how. A header
        # that h11 refuses quotes itself: the message is scrubbed all the same.
        failure = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        unknown = _no_such_host(exc)
        refused = isinstance(exc, httpx.LocalProtocolError)  # never sent: it would not be
        if unknown:
            what = "no such host"
        elif refused:
            what = "could not send the request to"
        elif isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
            what = "could not connect to"
        else:
            what = "no complete answer from"
        retryable = not (unknown or refused)
        message = redaction.scrub(f"{what} {host}: {failure}")
        raise TransportError(message, retryable=retryable) from exc


def _no_such_host(exc: httpx.RequestError) -> bool:
    """Whether the resolver said the host's name does not exist (not: could not answer now)."""
    if not isinstance(exc, httpx.ConnectError):
        return False
    seen: set[int] = set()
    link: BaseException | None = exc
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        if isinstance(link, socket.gaierror):
            return link.errno in _NO_SUCH_NAME
        link = link.__cause__ or link.__context__
    return False


def _host_of(url: str) -> str:
    """``host[:port]`` of a URL, without any userinfo: what an error may name."""
    parsed = httpx.URL(url)
    return f"{parsed.host}:{parsed.port}" if parsed.port is not None else parsed.host


async def _read_body(response: httpx.Response) -> bytes:
    """The whole body, decompressed, but no more than `MAX_BODY_BYTES` of a page, and only
    the start of an error body (all that is read of it)."""
    limit = MAX_BODY_BYTES if response.is_success else MAX_ERROR_BODY_BYTES
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            if response.is_success:
                raise DecodeError(f"the body is larger than {limit:,} bytes; a page never is")
            break
    return b"".join(chunks)


def _decode_page(body: bytes, content_type: str) -> list[VoiceLog]:
    """A logs page, its size and decoding time recorded."""
    started = time.perf_counter()
    logs = decode_logs(body, content_type)
    telemetry.decoded(len(logs), time.perf_counter() - started)
    return logs


def _pull_params(limit: int | None, bulk_id: str | None, message_id: str | None) -> dict[str, str]:
    """The query of a report pull, each argument checked (`InvalidQueryError`)."""
    params: dict[str, str] = {}
    if limit is not None:
        if not isinstance(limit, int) or isinstance(limit, bool):
            raise InvalidQueryError("limit", f"must be an integer, not {type(limit).__name__}")
        if not 1 <= limit <= MAX_PULL_LIMIT:
            raise InvalidQueryError("limit", f"must be 1 to {MAX_PULL_LIMIT}, not {limit}")
        params["limit"] = str(limit)
    for field, wire, value in (
        ("bulk_id", "bulkId", bulk_id),
        ("message_id", "messageId", message_id),
    ):
        if value is None:
            continue
        if not isinstance(value, str) or not value.strip():
            raise InvalidQueryError(field, f"must be a non-empty string, not {value!r}")
        params[wire] = value
    return params


def _error_for(response: httpx.Response, content: bytes) -> ApiError:
    """The typed error for an error response: class by status, details from either body shape."""
    status = response.status_code
    body = decode_error(content, response.headers.get("content-type", ""))
    retry_after = parse_retry_after(response.headers.get("retry-after"))
    cls: type[ApiError]
    if status in (401, 403):
        cls = AuthenticationError
    elif status == 429:
        cls = RateLimitError
    elif status >= 500:
        cls = ServerError
    else:
        cls = ApiError
    return cls(
        status,
        body.message_id,
        body.text,
        retry_after=retry_after,
        validation_errors=body.validation_errors,
    )


class LogsFetcher:
    """Fetches one account's voice logs: throttled, retried, and typed when it fails.

    ```python
    async with LogsFetcher("https://xyz.api.infobip.com", auth="API-KEY") as fetcher:
        logs = await fetcher.fetch(LogsQuery(general_status="DELIVERED"))
    ```

    Args:
        base_url: The account's base URL (`https://<subdomain>.api.infobip.com`).
            Checked by `validate_base_url` (`ValueError`, before any connection): `http://`
            is refused unless the host is loopback (`localhost`, `127.0.0.0/8`, `::1`) or
            ``allow_insecure`` is true.
        auth: An `httpx.Auth` (`ApiKeyAuth`, `BasicAuth`, `IbssoAuth`, `BearerAuth`) or a
            string API key (sent as `App <key>`).
        format: `"json"` or `"xml"`: the body format asked for with `Accept`.
        throttle: The account's rate limiter; `None` makes a fresh
            `TokenBucket(2.0, burst=1, adaptive=True)`, the documented 120 requests/min.
            Share one bucket among every fetcher of one account.
        max_attempts: Tries per request in all, the first one included. A failure that
            would only repeat (a host name that does not exist, a header the HTTP layer
            refuses to send) is tried once.
        timeout: Seconds (or a `timedelta`) for each read, write and pool wait (connect:
            at most 10 s). It applies to every request, on a shared ``client`` too.
        deadline: Seconds (or a `timedelta`) one try may take in all, body included (at
            least ``timeout``):
            a server that trickles its answer a byte at a time never trips ``timeout``,
            but fails the try here, as a `TransportError` that is retried.
        client: An `httpx.AsyncClient` to share (and its connection pool); the fetcher then
            never closes it. `None` makes one, closed by `aclose`.
        allow_insecure: Permit `http://` to a non-loopback host.
        max_retry_after: The longest `Retry-After` worth waiting for (seconds or a
            `timedelta`); longer raises at once.
        on_retry: Called with a `RetryEvent` before each retry's wait.
        sleep: The coroutine function that waits between tries (for tests). `None` is
            a `TokenBucket` throttle's own ``sleep`` if it was given one
            (`TokenBucket(clock=, sleep=)`, e.g. on `testing.FakeTime`), else `asyncio.sleep`.
        budget: The seconds (or a `timedelta`) one `fetch` may take in all: throttle
            wait, every try and every backoff together. `None`, the default, is no
            bound (each try is still bounded by ``deadline``). A call may pass its own.
            Timed on a `TokenBucket` throttle's ``clock`` if it was given one, else
            `time.monotonic`.
        account: The account's name, for metrics, spans and log records (recorded as an
            attribute only after `telemetry.configure(account_names=True)`).
        clock: Returns "now" as an aware datetime: the default end of an `iter_logs`
            window and what its 48-hour retention check compares with (for tests and
            the fake provider's clock). `None` is the real time in UTC.

    A fetcher is safe to share among many tasks of one event loop: a web backend keeps one
    per account for the life of the process.
    """

    def __init__(
        self,
        base_url: str,
        auth: httpx.Auth | str,
        *,
        format: Format = "json",
        throttle: Throttle | None = None,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        timeout: float | timedelta = DEFAULT_TIMEOUT,
        deadline: float | timedelta = DEFAULT_DEADLINE,
        client: httpx.AsyncClient | None = None,
        allow_insecure: bool = False,
        max_retry_after: float | timedelta = DEFAULT_MAX_RETRY_AFTER,
        on_retry: Callable[[RetryEvent], object] | None = None,
        sleep: Callable[[float], Awaitable[None]] | None = None,
        clock: Callable[[], datetime] | None = None,
        account: str | None = None,
        budget: BudgetArg = None,
    ) -> None:
        if format not in ("json", "xml"):
            raise ValueError(f"format must be 'json' or 'xml', not {format!r}")
        for name, value in (("timeout", timeout), ("deadline", deadline)):
            if not (
                isinstance(value, int | float | timedelta)
                and not isinstance(value, bool)
                and 0 < seconds(value) < float("inf")
            ):
                raise ValueError(
                    f"{name} must be a finite number of seconds > 0 or a timedelta, not {value!r}"
                )
        timeout = seconds(timeout)
        self._deadline = max(seconds(deadline), timeout)
        self._budget = budget_seconds(budget)
        self._url = logs_url(base_url, allow_insecure=allow_insecure)
        self._reports_url = reports_url(base_url, allow_insecure=allow_insecure)
        self._host = _host_of(self._url)
        self._base_url = base_url
        self._auth = auth_from(auth)
        self._format: Format = format
        self._throttle: Throttle = (
            throttle if throttle is not None else TokenBucket(DEFAULT_RATE, burst=1, adaptive=True)
        )
        self._account = account
        telemetry.watch_throttle(self._throttle, account)
        self._timeout = httpx.Timeout(timeout, connect=min(CONNECT_TIMEOUT, timeout))
        self._headers = {"Accept": media_type(format), "User-Agent": USER_AGENT}
        self._on_retry = on_retry
        self._clock = clock or utc_now
        # A bucket on injected time (a test's) lends it to the backoff and the budget.
        bucket = self._throttle if isinstance(self._throttle, TokenBucket) else None
        self._monotonic = (bucket.clock if bucket else None) or time.monotonic
        if sleep is None and bucket is not None:
            sleep = bucket.sleep
        policy_args: dict[str, Any] = {} if sleep is None else {"sleep": sleep}
        self._policy = RetryPolicy(  # validates its arguments: before a client is opened
            max_attempts=max_attempts,
            max_retry_after=max_retry_after,
            throttle=self._throttle,
            on_retry=self._count_retry,
            **policy_args,
        )
        self._owns_client = client is None
        self._client = client if client is not None else httpx.AsyncClient(timeout=self._timeout)
        # Plain counters, bumped only from the event loop's thread: no lock needed.
        self._requests = 0
        self._retries = 0
        self._rate_limited = 0
        self._throttle_wait = 0.0

    # -- life cycle ------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool, unless the caller gave the client (then it is theirs)."""
        if self._owns_client:
            await self._client.aclose()

    def __repr__(self) -> str:
        return (
            f"LogsFetcher(base_url={self._base_url!r}, auth={self._auth!r}, "
            f"format={self._format!r})"
        )

    # -- reading ---------------------------------------------------------------------------

    @property
    def throttle(self) -> Throttle:
        """The account's throttle (pass it to another fetcher of the same account to share it)."""
        return self._throttle

    @property
    def stats(self) -> FetcherStats:
        """What this fetcher has done so far, as a frozen snapshot."""
        return FetcherStats(self._requests, self._retries, self._rate_limited, self._throttle_wait)

    # -- one request -----------------------------------------------------------------------

    async def fetch(
        self,
        query: LogsQuery | None = None,
        *,
        budget: BudgetArg | Literal[_Default.FETCHER_BUDGET] = FETCHER_BUDGET,
    ) -> list[VoiceLog]:
        """One request for logs, newest first; retried per the policy.

        Without a query the provider returns the newest 50 logs of the last 48 hours.
        Raises `AuthenticationError`, `RateLimitError`, `ServerError` or another `ApiError`
        for an error status, `TransportError` when no complete answer came, and
        `DecodeError` when a 200's body is not a logs body (not retried).

        ``budget`` bounds the whole call (seconds or a `timedelta`; `None`: no bound;
        omitted: the fetcher's). A try starts only with time left and is cut to it; a
        wait between tries that leaves no time for one is not waited: after a
        `Retry-After` that long its error is raised at once, else `BudgetExceededError`
        (also a `TimeoutError`), which says where the time went and has the last error
        as its ``__cause__``.
        """
        params = query.to_params() if query is not None else {}
        url = f"{self._url}?{query_string(params)}" if params else self._url
        return await self._call(url, _decode_page, budget)

    async def pull_reports(
        self,
        *,
        limit: int | None = None,
        bulk_id: str | None = None,
        message_id: str | None = None,
        budget: BudgetArg | Literal[_Default.FETCHER_BUDGET] = FETCHER_BUDGET,
    ) -> list[VoiceReport]:
        """One `GET /voice/1/reports`: the delivery reports kept for pulling, each only once.

        ```python
        reports = await fetcher.pull_reports(limit=500)
        await store_them_first(reports)   # these reports exist nowhere else now
        ```

        The provider keeps the reports of calls sent without a ``notifyUrl`` and hands
        each out to one pull only: a second pull never returns it again. ``limit`` (1 to
        1000; the provider's default is 50) caps how many come; ``bulk_id`` and
        ``message_id`` narrow the pull to one bulk or one message. Arguments are checked
        before any request (`InvalidQueryError`).

        The request is the one `fetch` makes: the same throttle (a pull spends the
        account's rate like a logs request), format, retries, ``budget`` and errors. A
        retried pull whose earlier answer was lost (a 5xx or a dropped connection after
        the provider had consumed its reports) does not get those reports again: they
        are gone from this channel, and only the logs (48 hours) still tell their calls'
        states. A 200 whose body does not decode raises `DecodeError` and loses its
        reports the same way.
        """
        params = _pull_params(limit, bulk_id, message_id)
        url = f"{self._reports_url}?{query_string(params)}" if params else self._reports_url
        return await self._call(url, decode_reports, budget)

    async def _call(
        self,
        url: str,
        decode: _Decode[_Item],
        budget: BudgetArg | Literal[_Default.FETCHER_BUDGET],
    ) -> list[_Item]:
        """One request to ``url``, retried per the policy within its budget, decoded."""
        bound = self._budget if budget is FETCHER_BUDGET else budget_seconds(budget)
        with telemetry.FetchSpan(self._account):
            try:
                if bound is None:
                    return await self._policy.call(self._send, url, decode)
                within = Budget.start(bound, self._monotonic)
                return await self._policy.call(self._send, url, decode, within, budget=within)
            except Exception as exc:
                # Whatever raised it (httpx, h11, a shared client's hook or transport, the
                # provider's text): no configured secret leaves in its text or its chain.
                redaction.scrub_exception(exc)
                raise

    async def _acquire_within(self, budget: Budget) -> float:
        """The throttle's wait, cut to what is left of the budget."""
        left = budget.remaining()
        if left <= 0:
            raise budget.exceeded("before the throttle wait")
        started = budget.clock()
        try:
            async with asyncio.timeout(left):
                waited = await self._throttle.acquire()
        except TimeoutError:
            budget.throttle_wait += budget.clock() - started
            raise budget.exceeded("waiting for the throttle") from budget.last_error
        budget.throttle_wait += budget.clock() - started
        return waited

    async def _send(
        self, url: str, decode: _Decode[_Item], budget: Budget | None = None
    ) -> list[_Item]:
        """One try: wait for the throttle, send, and translate the outcome."""
        if budget is None:
            waited = await self._throttle.acquire()
            limit = self._deadline
        else:
            waited = await self._acquire_within(budget)
            left = budget.remaining()
            if left <= 0:  # no try starts past the budget
                raise budget.exceeded(f"before try {budget.tries + 1}")
            limit = min(self._deadline, left)
            budget.tries += 1
            try_started = budget.clock()
        self._throttle_wait += waited
        telemetry.throttle_waited(waited)
        self._requests += 1
        try:
            # A server may trickle its answer and never trip `timeout`: a try has a deadline.
            async with asyncio.timeout(limit):
                with _transport_errors(self._host):
                    response, body = await self._get(url)
        except TimeoutError:
            error = TransportError(f"no complete answer from {self._host} within {limit:g} s")
            if budget is not None and limit < self._deadline:  # cut short by the budget
                raise budget.exceeded(f"during try {budget.tries}", error) from error
            raise error from None
        finally:
            if budget is not None:
                budget.try_time += budget.clock() - try_started
        if response.is_success:
            self._throttle.on_success()
            return decode(body, response.headers.get("content-type", ""))
        if response.status_code == 429:
            self._rate_limited += 1
            telemetry.rate_limited()
        raise _error_for(response, body)

    async def _get(self, url: str) -> tuple[httpx.Response, bytes]:
        """Send one request; its response and body, read whole (a truncated one fails)."""
        request = self._client.build_request(
            "GET", url, headers=self._headers, timeout=self._timeout
        )
        # A client with default `params` would have replaced the whole query string with
        # them: send ours exactly as written, theirs after it. (Without any, the URL is
        # ours already: not parsed a second time.)
        if self._client.params:
            request.url = httpx.URL(with_client_params(url, self._client.params))
        try:
            response = await self._client.send(request, auth=self._auth, stream=True)
        except httpx.HTTPStatusError as exc:
            # A shared client's event hook called raise_for_status(): an error status is
            # ours to translate (and perhaps retry), like any other. httpx has closed the
            # response by then, so its body may be gone: status and headers still tell.
            try:
                return exc.response, await _read_body(exc.response)
            except httpx.StreamError:
                return exc.response, b""
        try:
            return response, await _read_body(response)
        finally:
            await response.aclose()

    def _count_retry(self, event: RetryEvent) -> None:
        self._retries += 1
        if self._on_retry is not None:
            self._on_retry(event)

    # -- a time window ---------------------------------------------------------------------

    def iter_logs(
        self,
        *,
        sent_since: datetime,
        sent_until: datetime | None = None,
        page_size: int = MAX_PAGE_SIZE,
        budget: BudgetArg | Literal[_Default.FETCHER_BUDGET] = FETCHER_BUDGET,
        **filters: Any,
    ) -> AsyncGenerator[VoiceLog, None]:
        """Every log sent in ``[sent_since, sent_until]``, newest first, each exactly once.

        ```python
        async for log in fetcher.iter_logs(sent_since=since, general_status="DELIVERED"):
            ...
        ```

        ``sent_until`` defaults to now; ``filters`` are other `LogsQuery` fields. The
        arguments are validated here, at the call (`InvalidQueryError`). The walk moves
        `sentUntil` backwards a page at a time and is lossless whether the provider's
        bounds are inclusive or exclusive, including logs that share a millisecond across
        a page boundary. If more than ``page_size`` logs share one millisecond, paging
        cannot get past them: the walk warns `IncompleteWindowWarning` and goes on. A
        ``sent_since`` older than the provider's 48-hour retention warns `RetentionWarning`.
        ``budget`` bounds each page's request as it bounds a `fetch` (not the whole walk).
        """
        if budget is not FETCHER_BUDGET:
            budget_seconds(budget)  # validated at the call, as the query is
        if "limit" in filters:
            raise InvalidQueryError("limit", "a walk asks for pages of page_size; pass that")
        now = self._clock()
        until = sent_until if sent_until is not None else now
        base = LogsQuery(sent_since=sent_since, sent_until=until, limit=page_size, **filters)
        if sent_since < now - RETENTION - _RETENTION_SLACK:
            warnings.warn(
                f"sent_since {sent_since.isoformat()} is older than the provider's 48-hour "
                "retention: older logs are gone and will not be returned",
                RetentionWarning,
                stacklevel=2,
            )
        fetch = (
            self.fetch if budget is FETCHER_BUDGET else functools.partial(self.fetch, budget=budget)
        )
        return WindowWalk(fetch, base).run()
