"""`FakeInfobip`: an ASGI application that behaves like the provider's `GET /tts/3/logs`
and `GET /voice/1/reports`.

A raw ASGI app (no framework): `await fake(scope, receive, send)`. It serves the logs
of its accounts, told apart by their credentials, with the provider's filters, limit,
ordering, formats, error bodies, rate limit and 48-hour retention, and with faults
on demand; and the reports of the calls sent without a notify URL, each to one pull
only, on the same rate limit. Every request is written to `fake.journal`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import secrets
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import attrs
import httpx

from ..codec import Format, encode_logs
from ..models import GeneralStatus
from ..reports import encode_reports
from .account import FakeAccount
from .clock import Clock, SystemClock
from .faults import Fault
from .pull import REPORTS_PATH, parse_pull
from .query import BadQuery, parse_query, query_dict
from .responses import ErrorShape, Response, RetryAfterStyle, error_response, negotiate
from .traffic import DEFAULT_OUTCOMES
from .transport import FakeTransport

__all__ = [
    "IN_PROCESS_URL",
    "LOGS_PATH",
    "REPORTS_PATH",
    "TRANSPORT_EXTENSION",
    "FakeInfobip",
    "JournalEntry",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

#: The logs' path; the fake also serves the pull reports' (`REPORTS_PATH`).
LOGS_PATH = "/tts/3/logs"
#: The base URL of `in_process_client`; nothing resolves it, the transport is the app.
IN_PROCESS_URL = "https://fake-infobip.test"
#: The scope extension under which `serve` hands the app its connection, so a
#: reset or a truncation can really drop it.
TRANSPORT_EXTENSION = "infobip_voicelogs.transport"


# Faults that spoil an answer already made: a pull's reports were taken, and are lost.
_SPOILING = frozenset({"truncate", "malformed"})


@attrs.frozen
class _Request:
    """One authenticated request to answer: whose, to which endpoint, and its journal index."""

    account: FakeAccount
    endpoint: str
    params: dict[str, str]
    fmt: Format
    index: int


@attrs.frozen
class JournalEntry:
    """One request the fake received, as tests count and check them."""

    #: When it arrived, on the fake's clock.
    at: datetime
    #: The account its credentials name, or `None` if they name none.
    account: str | None
    method: str
    path: str
    #: The query parameters, percent-decoded.
    query: Mapping[str, str] = attrs.field(hash=False)
    #: The status answered, or `None` when the connection was dropped.
    status: int | None
    #: The fault this request got, if any.
    fault: Fault | None


class FakeInfobip:
    """The provider, faked: an ASGI app for `GET /tts/3/logs` and `GET /voice/1/reports`,
    with accounts and faults.

    >>> from datetime import timedelta
    >>> from infobip_voicelogs.testing import FakeClock, FakeInfobip
    >>> fake = FakeInfobip(clock=FakeClock())
    >>> account = fake.add_account("acme")
    >>> len(account.generate(120, within=timedelta(hours=3)))
    120
    >>> # async with fake.in_process_client(account) as client:
    >>> #     response = await client.get("/tts/3/logs", params={"limit": 10})

    Args:
        rate_limit_per_minute: Requests each account may make in any 60-second window
            (the provider's documented 120); more get a 429.
        clock: Where the fake's time comes from; real time by default, a `FakeClock`
            to move it in a test.
        retry_after: Whether a rate-limit 429 carries `Retry-After`, and how:
            `"none"` (as documented), `"seconds"` or `"http-date"`.
        error_shape: The error body shape: `"old"` (`requestError.serviceException`)
            or `"new"` (`errorCode`).
        seed: Makes generated logs, traffic and random faults reproducible.
    """

    def __init__(
        self,
        *,
        rate_limit_per_minute: int = 120,
        clock: Clock | None = None,
        retry_after: RetryAfterStyle = "none",
        error_shape: ErrorShape = "old",
        seed: int | str = 0,
    ) -> None:
        #: The fake's clock.
        self.clock: Clock = clock if clock is not None else SystemClock()
        #: The default per-account limit of requests in any 60-second window.
        self.rate_limit_per_minute = rate_limit_per_minute
        #: How a rate-limit 429 writes `Retry-After` (`"none"` sends none).
        self.retry_after: RetryAfterStyle = retry_after
        #: The error body shape, `"old"` or `"new"`.
        self.error_shape: ErrorShape = error_shape
        #: Every request received, oldest first.
        self.journal: list[JournalEntry] = []
        self._seed = seed
        self._accounts: dict[str, FakeAccount] = {}
        self._credentials: dict[tuple[str, str], FakeAccount] = {}

    def __repr__(self) -> str:
        return f"FakeInfobip(accounts={list(self._accounts)!r})"

    # -- accounts --------------------------------------------------------------------------

    def add_account(
        self,
        name: str,
        *,
        api_key: str | None = None,
        basic: tuple[str, str] | None = None,
        ibsso_token: str | None = None,
        bearer_token: str | None = None,
        rate_limit_per_minute: int | None = None,
        price_per_second: Decimal = Decimal("0.01"),
        currency: str = "EUR",
        settle_after: timedelta = timedelta(seconds=30),
        outcomes: Mapping[GeneralStatus, float] = DEFAULT_OUTCOMES,
        pull_share: float = 0.0,
    ) -> FakeAccount:
        """Add an account; its requests are recognised by any of its credentials.

        Args:
            api_key: Accepted as `App <key>`; a random one if omitted (see `account.api_key`).
            basic: (user, password) accepted as `Basic` credentials.
            ibsso_token: Accepted as `IBSSO <token>`.
            bearer_token: Accepted as `Bearer <token>`.
            rate_limit_per_minute: This account's limit, if not the fake's.
            price_per_second: The price of a final log.
            currency: The price's currency.
            settle_after: The longest a new log stays `PENDING`.
            outcomes: How likely each final status group is, e.g.
                `{GeneralStatus.DELIVERED: 0.9, GeneralStatus.EXPIRED: 0.1}`.
            pull_share: The share of calls sent without a notify URL (0 to 1; 1.0: a
                pulling account): their reports are kept for `GET /voice/1/reports`
                (`account.pull`) and never pushed. Decided per call by the seed.
        """
        if name in self._accounts:
            raise ValueError(f"there is already an account named {name!r}")
        key = api_key if api_key is not None else secrets.token_urlsafe(24)
        credentials = [("app", key)]
        if basic is not None:
            credentials.append(("basic", f"{basic[0]}:{basic[1]}"))
        if ibsso_token is not None:
            credentials.append(("ibsso", ibsso_token))
        if bearer_token is not None:
            credentials.append(("bearer", bearer_token))
        if any(credential in self._credentials for credential in credentials):
            raise ValueError(f"account {name!r} reuses another account's credentials")
        account = FakeAccount(
            name,
            api_key=key,
            clock=self.clock,
            seed=self._seed,
            rate_limit_per_minute=rate_limit_per_minute or self.rate_limit_per_minute,
            price_per_second=price_per_second,
            currency=currency,
            settle_after=settle_after,
            outcomes=outcomes,
            pull_share=pull_share,
        )
        self._accounts[name] = account
        self._credentials.update(dict.fromkeys(credentials, account))
        return account

    @property
    def accounts(self) -> Mapping[str, FakeAccount]:
        """The accounts by name."""
        return dict(self._accounts)

    def requests(self, account: FakeAccount | str | None = None) -> list[JournalEntry]:
        """The journal, or only the requests of one account (by object or name)."""
        if account is None:
            return list(self.journal)
        name = account if isinstance(account, str) else account.name
        return [entry for entry in self.journal if entry.account == name]

    def in_process_client(
        self, account: FakeAccount | None = None, **kwargs: Any
    ) -> httpx.AsyncClient:
        """An `httpx.AsyncClient` wired to this app in-process, no sockets.

        It sends `App <key>` for `account` if given; keyword arguments go to
        `httpx.AsyncClient` (e.g. `timeout=`). Its transport is a `FakeTransport`, so
        faults look as they would over a network: a reset or a truncated body raises
        an `httpx.TransportError`, a delay past the read timeout `httpx.ReadTimeout`.

        >>> async with fake.in_process_client(account) as client:  # doctest: +SKIP
        ...     response = await client.get("/tts/3/logs")
        """
        headers = dict(kwargs.pop("headers", None) or {})
        if account is not None:
            headers.setdefault("Authorization", f"App {account.api_key}")
        return httpx.AsyncClient(
            transport=FakeTransport(self), base_url=IN_PROCESS_URL, headers=headers, **kwargs
        )

    # -- ASGI ------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI connection: `http` requests, and `lifespan` for servers."""
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
        elif scope["type"] == "http":
            await self._http(scope, receive, send)
        else:  # a websocket: the provider has none
            await send({"type": "websocket.close", "code": 1000})

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = {
            name.decode("latin-1").lower(): value.decode("latin-1")
            for name, value in scope.get("headers", [])
        }
        fmt = negotiate(headers.get("accept"))
        params = query_dict(scope.get("query_string", b""))
        account = self._identify(headers.get("authorization"))
        arrived = self.clock.now()
        method, path = scope["method"], scope["path"]
        fault: Fault | None = None
        response: Response | None = None
        name = account.name if account is not None else None
        # Recorded on arrival, in arrival order; the answer is filled in once known, and a
        # request abandoned meanwhile (a client timing out during a delay) stays recorded.
        entry = JournalEntry(arrived, name, method, path, params, None, None)
        index = len(self.journal)
        self.journal.append(entry)
        endpoint = path.rstrip("/")
        try:
            if method != "GET" or endpoint not in (LOGS_PATH, REPORTS_PATH):
                response = error_response(404, fmt, self.error_shape, text=f"Not found: {path}")
            elif account is None:
                response = error_response(401, fmt, self.error_shape)
            else:
                fault = account.faults.take()
                request = _Request(account, endpoint, params, fmt, index)
                response = await self._answer(request, fault)
        finally:
            status = response.status if response is not None else None
            self.journal[index] = attrs.evolve(entry, status=status, fault=fault)
        await _deliver(response, fault, scope, receive, send)

    async def _answer(self, request: _Request, fault: Fault | None) -> Response | None:
        """The answer the provider gives, or `None` for a dropped connection."""
        if fault is not None and fault.kind in ("status", "reset") and not fault.after_work:
            return self._spoiled(fault, request.fmt)
        if fault is not None and fault.kind == "delay":
            await asyncio.sleep(fault.seconds)
        now = self.clock.now()
        wait = request.account.admit(now)
        if wait is not None:
            retry = (self.retry_after, wait, now) if self.retry_after != "none" else None
            return error_response(429, request.fmt, self.error_shape, retry_after=retry)
        try:
            if request.endpoint == REPORTS_PATH:
                response = self._pull(request, fault)
            else:
                query = parse_query(request.params)
                response = Response(
                    200, encode_logs(request.account.select(query), request.fmt), request.fmt
                )
        except BadQuery as exc:
            return error_response(400, request.fmt, self.error_shape, text=str(exc))
        if fault is not None and fault.after_work:
            return self._spoiled(fault, request.fmt)
        return response

    def _pull(self, request: _Request, fault: Fault | None) -> Response:
        """Take the reports a pull asks for: each is handed out once, whatever the answer."""
        query = parse_pull(request.params)
        lost = fault is not None and (fault.after_work or fault.kind in _SPOILING)
        reports = request.account.pull.take(
            query, request=request.index, answered=not lost, fault=fault
        )
        return Response(200, encode_reports(reports, request.fmt), request.fmt)

    def _spoiled(self, fault: Fault, fmt: Format) -> Response | None:
        """A `status` fault's error answer, or `None` (a dropped connection) for a `reset`."""
        if fault.kind == "reset":
            return None
        assert fault.status_code is not None
        retry = None
        if fault.retry_after is not None:
            style = "seconds" if self.retry_after == "none" else self.retry_after
            retry = (style, timedelta(seconds=fault.retry_after), self.clock.now())
        return error_response(fault.status_code, fmt, self.error_shape, retry_after=retry)

    def _identify(self, authorization: str | None) -> FakeAccount | None:
        scheme, _, credential = (authorization or "").strip().partition(" ")
        scheme, credential = scheme.lower(), credential.strip()
        if scheme == "basic":
            try:
                credential = base64.b64decode(credential, validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                return None
        return self._credentials.get((scheme, credential))


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _deliver(
    response: Response | None, fault: Fault | None, scope: Scope, receive: Receive, send: Send
) -> None:
    """Send `response`, spoiled as `fault` says; `None` drops the connection."""
    connection = (scope.get("extensions") or {}).get(TRANSPORT_EXTENSION)
    if response is None:
        if connection is None:
            # No handle on the connection (in-process, or a server other than `serve`):
            # an exception is the only way to say "no answer".
            raise ConnectionResetError("FakeInfobip dropped the connection (Fault.reset)")
        connection.abort()
        await _until_disconnected(receive)
        return
    body = response.body
    kind = fault.kind if fault is not None else None
    if kind == "malformed":
        # A complete, well-framed body that no JSON or XML parser accepts.
        middle = len(body) // 2
        body = body[:middle] + b"\x00<<not json or xml>>" + body[middle:]
    declared = len(body)
    if kind == "truncate":
        body = body[: len(body) // 2]
    headers = attrs.evolve(response, body=body).raw_headers(declared)
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    if kind == "truncate" and connection is not None:
        # Over a socket: send half, then hang up, as a proxy dying mid-body does.
        await send({"type": "http.response.body", "body": body, "more_body": True})
        connection.close()
        await _until_disconnected(receive)
        return
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def _until_disconnected(receive: Receive) -> None:
    """Wait until the server has seen the connection go, so it adds no answer of its own."""
    try:
        async with asyncio.timeout(5):
            while (await receive())["type"] != "http.disconnect":
                pass
    except TimeoutError:
        pass
