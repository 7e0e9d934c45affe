"""`ReportsReceiver`: the ASGI application that takes the provider's report POSTs.

```python
auth = BasicCredentials("ib", password)
receiver = ReportsReceiver({"eu-shop"}, store=store, handler=handler, auth=auth)
app.mount("/reports", receiver)        # FastAPI / Starlette: POST /reports/eu-shop
uvicorn.run(receiver)                  # or on its own:       POST /eu-shop
```

One request, in the order its checks run (each answers at once, reading no further):
fewer than ``max_concurrent`` requests are in hand (503 with `Retry-After`); the headers
authenticate (401, the same answer for an unknown account, see below); the method is
POST (405 once authenticated, else 401); the content type is JSON or XML (415); the
declared length is within ``max_body`` (413); the body arrives within ``read_timeout``
(408) and within ``max_body`` (413); an HMAC matches the raw body (401); the body
decodes (400); ``deliver`` returns (503 with `Retry-After` if it raised or overran
``deliver_timeout``); then 200. So a batch is acknowledged only once it is durable.

A client without a secret learns nothing of the accounts: with one `ReportsAuth` for
every account, a path naming no account is checked like a known one (the same 401s, 413s,
408s, body read and HMAC) and answered 404 only once authenticated; with a mapping, it is
the 401 of missing credentials at once. Every 401 is one answer, whose `WWW-Authenticate`
challenge is the receiver's, the same for every account (none when their schemes differ).

With ``store=``, delivering is recording: the batch goes into the store's inbox in one
statement, and the account's holder (the poller, or this receiver's own `InboxHolder`
when given a ``handler``) hands its new and changed states over through the delivery
core, after the 200.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .. import telemetry
from .._time import seconds, utc_now
from ..codec import Format, format_of, media_type
from ..delivery import DEFAULT_LEASE_TTL, InboxHolder
from ..errors import DecodeError
from ..store import InboxStore
from . import _http
from ._auth import ReportsAuth
from ._codec import check_json_reports, decode_reports
from ._http import BodyRefused, Receive, Scope, Send
from ._inbox import decode_inbox, encode_inbox
from ._model import VoiceReport

if TYPE_CHECKING:
    from datetime import timedelta

#: Takes ``(account, reports)``: a batch of new and changed states, in the batch's order.
#: A handler typed ``Sequence[VoiceLog | VoiceReport]`` serves the poller too.
ReportHandler = Callable[[str, list[VoiceReport]], Awaitable[object]]

logger = logging.getLogger("infobip_voicelogs")

#: Largest body accepted: a batch of 2,000 reports (the provider's maximum) is about 2 MB.
DEFAULT_MAX_BODY = 4 * 1024 * 1024
#: Seconds a client has to send the whole body.
DEFAULT_READ_TIMEOUT = 10.0
#: Seconds ``deliver`` may take before the batch is answered 503.
DEFAULT_DELIVER_TIMEOUT = 30.0
#: Seconds the provider is asked to wait (`Retry-After`) before retrying a batch answered 503.
DEFAULT_RETRY_AFTER = 10
#: Requests handled at once (reading, checking, delivering); beyond them, 503 unread.
DEFAULT_MAX_CONCURRENT = 32
#: Bodies larger than this are verified and decoded in a worker thread, off the event loop.
_THREAD_THRESHOLD = 256 * 1024

#: Takes ``(account, reports)``; returns once the reports are handed over and committed.
Deliver = Callable[[str, Sequence[VoiceReport]], Awaitable[object]]

# A batch that decoded: its reports, or only how many (a JSON body recorded as it came).
_Batch = list[VoiceReport] | int
# How a decoded batch is taken: the account, the batch and the body as it came.
_Take = Callable[[str, _Batch, bytes], Awaitable[object]]

_ALLOW = [(b"allow", b"POST")]
_CLOSE = [(b"connection", b"close")]


class ReportsReceiver:
    """An ASGI application that receives the provider's delivery reports, one batch a POST.

    ```python
    # Beside a poller on the same store: record each batch; the poller delivers it.
    receiver = ReportsReceiver({"eu-shop"}, store=store, auth=auth)
    # In a process that does not poll: record, and deliver through its own holder.
    receiver = ReportsReceiver({"eu-shop"}, store=store, auth=auth, handler=handler)
    ```

    Args:
        accounts: The account names it receives for: ``POST {root}/{account}`` for each; any
            other name is refused like a request without credentials (401), or, with one
            `ReportsAuth` for all and the right credentials, 404.
        store: The poller's store (`SqliteStore`, `PostgresStore`): each batch is recorded
            in its inbox (one statement) and answered 200 once that committed. The
            account's holder delivers it: the `LogsPoller` that holds the account, woken
            at once, or this receiver when given a ``handler``. If recording fails the
            answer is 503 with `Retry-After`, and the provider sends the batch again.
        handler: ``await handler(account, reports)`` with a batch's new and changed states
            (never a state the store already has, from a report or a log), after the 200:
            the receiver then holds its accounts' leases as a poller does (several worker
            processes share them out; with SQLite one process delivers) and delivers their
            inboxes through the delivery core, starting at its first request or at the
            server's lifespan startup (a mounted app gets no lifespan events: call
            `aclose` from the application's own shutdown). If the handler raises, the
            batch stays in the inbox and is offered again. Give no handler where a
            `LogsPoller` runs on the same store and accounts: the poller delivers. The
            same handler may serve `LogsPoller` (type it ``Sequence[VoiceLog |
            VoiceReport]``; `item.source` tells which).
        lease_ttl: With a ``handler``: seconds (or a `timedelta`) the receiver's leases
            last unless renewed, as `LogsPoller`'s.
        clock: Gives the time a batch is received (the store's report activity, which the
            poller reads to know whose reports flow); tests move it.
        deliver: The low-level alternative to ``store``:
            ``await deliver(account, reports)`` with the decoded batch (never empty). It
            must hand the reports to the handler and commit them to the store before it
            returns: the 200 that follows tells the provider it may forget them. If it
            raises (or overruns ``deliver_timeout``) the answer is 503 with `Retry-After`,
            so the provider sends the batch again; a redelivered batch is delivered again,
            and telling it from a new one is the deliverer's (the store's) business. This is
            the low-level seam: a store and a handler wire into it.
        auth: How the provider authenticates (`BasicCredentials`, `HmacSignature`,
            `HeaderSecret`); there is no default, and no authentication is `NoAuth()`.
            A mapping gives each account its own (each provider account has its own
            subscription, so its own secret); it must name every account.
        prefix: A path before the account, e.g. ``"/reports"`` when served on its own
            rather than mounted (a mount's path arrives as the ASGI ``root_path``).
        max_body: Largest body accepted, in bytes (413 beyond it).
        read_timeout: Seconds the whole body may take to arrive (408 beyond them).
        deliver_timeout: Seconds ``deliver`` may take (503 beyond them).
        retry_after: The `Retry-After` seconds of a 503.
        max_concurrent: Requests handled at once, from their headers to their answer; a
            request beyond them is answered 503 with `Retry-After` and nothing of it read,
            so the memory bodies take is bounded by ``max_concurrent * max_body``.

    Raises:
        TypeError: ``auth`` is not a `ReportsAuth` or a mapping of them (``None`` included),
            ``accounts`` is one string, not exactly one of ``deliver`` and ``store`` is
            given, a ``handler`` comes without a ``store``, or the store keeps no inbox.
        ValueError: No account, or a limit that is not positive.
    """

    def __init__(
        self,
        accounts: Iterable[str],
        *,
        store: InboxStore | None = None,
        handler: ReportHandler | None = None,
        deliver: Deliver | None = None,
        auth: ReportsAuth | Mapping[str, ReportsAuth],
        clock: Callable[[], datetime] = utc_now,
        prefix: str = "",
        max_body: int = DEFAULT_MAX_BODY,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
        deliver_timeout: float = DEFAULT_DELIVER_TIMEOUT,
        retry_after: int = DEFAULT_RETRY_AFTER,
        max_concurrent: int = DEFAULT_MAX_CONCURRENT,
        lease_ttl: float | timedelta = DEFAULT_LEASE_TTL,
    ) -> None:
        if isinstance(accounts, str):
            raise TypeError("accounts must be a collection of names, not one string")
        self.accounts = frozenset(accounts)
        if not self.accounts or not all(isinstance(a, str) and a for a in self.accounts):
            raise ValueError("accounts must be one or more non-empty names")
        self._auths = _auth_per_account(auth, self.accounts)
        if min(max_body, read_timeout, deliver_timeout, retry_after, max_concurrent) <= 0:
            raise ValueError(
                "max_body, read_timeout, deliver_timeout, retry_after and max_concurrent"
                " must be > 0"
            )
        self._stranger = _stranger_auth(self._auths)
        self._challenge = _common_challenge(self._auths.values())
        self.auth = auth
        """What was given as ``auth``: one `ReportsAuth`, or a mapping of them by account."""
        self.prefix = prefix.rstrip("/")
        self.max_body = max_body
        self.read_timeout = read_timeout
        self.deliver_timeout = deliver_timeout
        self.retry_after = retry_after
        self.max_concurrent = max_concurrent
        self._in_hand = 0
        self._holder: InboxHolder | None = None
        if handler is not None:
            if store is None:
                raise TypeError("a handler= needs the store= the receiver records into")
            ttl = seconds(lease_ttl)
            self._holder = InboxHolder(
                store,
                handler,
                self.accounts,
                decode=decode_inbox,
                lease_ttl=ttl,
                claim_interval=ttl / 3,
            )
        self._deliver = _deliverer(store, deliver, clock)
        # Recording keeps a JSON body as it came: checking that it decodes is enough.
        self._count_only = store is not None

    def __repr__(self) -> str:
        return f"ReportsReceiver(accounts={len(self.accounts)}, auth={self.auth!r})"

    async def aclose(self) -> None:
        """Stop delivering (with a ``handler``): hand-overs in flight get the shutdown grace,
        then the leases go back. Recording goes on; a later request starts delivering again.
        """
        if self._holder is not None:
            await self._holder.aclose()

    def auth_of(self, account: str) -> ReportsAuth:
        """How the POSTs for ``account`` authenticate (`KeyError` for an unknown account)."""
        return self._auths[account]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The ASGI entry point: HTTP requests and lifespan messages."""
        holder = self._holder
        if scope["type"] == "lifespan":
            start = None if holder is None else holder.start
            await _http.lifespan(receive, send, startup=start, shutdown=self.aclose)
            return
        if scope["type"] != "http":
            return  # a websocket: not accepted, so the server refuses it
        if holder is not None and not holder.running:
            holder.start()  # mounted, so no lifespan startup: the first request starts it
        started = False

        async def tracked(message: _http.Message) -> None:
            nonlocal started
            started = True
            await send(message)

        try:
            await self._handle(scope, receive, tracked)
        except Exception:  # never a traceback to the client; the log has it
            logger.exception("reports: the receiver failed on a request")
            if not started:
                await _refuse(tracked, None, 500, "internal", "internal error")

    async def _handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Until the body is read, every refusal closes the connection: the server would
        # otherwise read (and discard) the rest of the body to keep the connection alive.
        if self._in_hand >= self.max_concurrent:
            busy = [(b"retry-after", str(self.retry_after).encode()), *_CLOSE]
            return await _refuse(send, None, 503, "busy", "too many requests at once", busy)
        self._in_hand += 1
        try:
            return await self._admit(scope, receive, send)
        finally:
            self._in_hand -= 1

    async def _admit(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Authenticate and bound one request, then `_take` it (a known account's)."""
        name = self._account_of(scope)
        known = name is not None and name in self.accounts
        # An unknown name is the sender's text: never a metric attribute (None below).
        account = name if known else None
        auth = self._auths[name] if known and name is not None else self._stranger
        headers = _http.headers_of(scope)
        if not auth.check_headers(headers):
            return await self._unauthorized(send, auth, account, _CLOSE)
        if scope["method"] != "POST":
            # Only a client that proves it holds the secret learns the path takes POSTs.
            if not auth.check_body(headers, b""):
                return await self._unauthorized(send, auth, account, _CLOSE)
            if not known:
                return await _refuse(send, None, 404, "not_found", "no such account", _CLOSE)
            return await _refuse(send, account, 405, "method", "only POST", _ALLOW + _CLOSE)
        fmt = _format_of(headers)
        if fmt is None:
            return await _refuse(send, account, 415, "media_type", "not JSON or XML", _CLOSE)
        try:
            declared = _http.declared_length(headers)
            if declared is not None and declared > self.max_body:
                raise BodyRefused(413, "body too large")
            body = await _http.read_body(receive, limit=self.max_body, seconds=self.read_timeout)
        except BodyRefused as refused:
            if refused.status:
                reason = _REASONS[refused.status]
                await _refuse(send, account, refused.status, reason, str(refused), _CLOSE)
            return None
        if account is None:
            if not await _off_loop(body, auth.check_body, headers, body):
                return await self._unauthorized(send, auth, None)
            return await _refuse(send, None, 404, "not_found", "no such account")
        await self._take(send, account, auth, headers, body, fmt)
        return None

    async def _take(
        self,
        send: Send,
        account: str,
        auth: ReportsAuth,
        headers: dict[bytes, bytes],
        body: bytes,
        fmt: Format,
    ) -> None:
        """Verify, decode and deliver one whole body, and answer."""
        verdict = await _off_loop(
            body, _verify_and_decode, auth, headers, body, fmt, self._count_only
        )
        if verdict is None:
            return await self._unauthorized(send, auth, account)
        if isinstance(verdict, DecodeError):
            # Only where: the excerpt is the sender's text and belongs in no answer or log.
            where = verdict.path or "body"
            logger.info("reports: a batch for %s does not decode at %s", account, where)
            message = f"does not decode at {where}"
            return await _refuse(send, account, 400, "malformed", message)
        count = verdict if isinstance(verdict, int) else len(verdict)
        if count:
            try:
                async with asyncio.timeout(self.deliver_timeout):
                    await self._deliver(account, verdict, body)
            except Exception as error:
                # One line a failure; the traceback only where debug records are shown.
                logger.warning(
                    "reports: %d reports for %s were not taken (%s: %s); answered 503",
                    count,
                    account,
                    type(error).__name__,
                    error,
                    exc_info=logger.isEnabledFor(logging.DEBUG),
                )
                retry = [(b"retry-after", str(self.retry_after).encode())]
                return await _refuse(send, account, 503, "delivery_failed", "retry later", retry)
        telemetry.reports_received(account, count)
        await _http.respond(send, 200, {"received": count})
        return None

    async def _unauthorized(
        self,
        send: Send,
        auth: ReportsAuth,
        account: str | None,
        headers: Sequence[tuple[bytes, bytes]] = (),
    ) -> None:
        """The one 401: its challenge is the receiver's, never ``auth``'s own.

        So the answer is the same for every account, known or not, and tells no one which
        names the receiver serves or how each authenticates.
        """
        challenge = self._challenge
        extra = [(b"www-authenticate", challenge.encode())] if challenge else []
        await _refuse(send, account, 401, "unauthorized", "unauthorized", [*extra, *headers])

    def _account_of(self, scope: Scope) -> str | None:
        """The account the path names, or `None` for a path that names none."""
        path = _route_path(scope)
        if self.prefix:
            if not path.startswith(self.prefix + "/"):
                return None
            path = path[len(self.prefix) :]
        name = path[1:].rstrip("/") if path.startswith("/") else ""
        return name if name and "/" not in name else None


_REASONS = {400: "bad_length", 408: "timeout", 413: "too_large"}


def _deliverer(
    store: InboxStore | None, deliver: Deliver | None, clock: Callable[[], datetime]
) -> _Take:
    """``deliver`` as given, or recording into ``store``'s inbox: exactly one of the two."""
    if deliver is not None:
        if store is not None:
            raise TypeError("give either deliver= or store=, not both")
        given = deliver

        async def hand(account: str, batch: _Batch, raw: bytes) -> None:
            assert not isinstance(batch, int)  # without a store, every batch is decoded
            await given(account, batch)

        return hand
    if store is None:
        raise TypeError("a receiver needs store= (or, low-level, deliver=)")
    if not isinstance(store, InboxStore):
        raise TypeError(
            f"{type(store).__name__} keeps no inbox of delivery reports (no record_reports):"
            " use SqliteStore or PostgresStore"
        )
    inbox = store

    async def record(account: str, batch: _Batch, raw: bytes) -> None:
        # A JSON body that decodes is kept as it came, checked but not decoded (the holder
        # decodes it the same way); an XML one is decoded and kept as the reports' JSON.
        if isinstance(batch, int):
            body, count = raw, batch
        else:
            body, count = encode_inbox(batch), len(batch)
        await inbox.record_reports(account, body, count=count, received_at=clock())

    return record


class _Nobody(ReportsAuth):
    """The auth of a path naming no account when accounts differ in theirs: refuses all."""

    __slots__ = ()

    def check_headers(self, headers: Mapping[bytes, bytes]) -> bool:
        return False


def _stranger_auth(auths: Mapping[str, ReportsAuth]) -> ReportsAuth:
    """How a path naming no account is checked: like every account, when they share one.

    Then nothing the receiver answers tells a stranger whether a name exists; only a client
    holding the secret learns that a name is unknown (404).
    """
    shared = set(map(id, auths.values()))
    return next(iter(auths.values())) if len(shared) == 1 else _Nobody()


def _common_challenge(auths: Iterable[ReportsAuth]) -> str | None:
    """The `WWW-Authenticate` of every 401: the accounts' challenge if all share it."""
    challenges = {auth.challenge for auth in auths}
    return challenges.pop() if len(challenges) == 1 else None


def _auth_per_account(
    auth: ReportsAuth | Mapping[str, ReportsAuth], accounts: frozenset[str]
) -> dict[str, ReportsAuth]:
    """Each account's `ReportsAuth`, checked: none missing, none that is not one."""
    if isinstance(auth, ReportsAuth):
        return dict.fromkeys(accounts, auth)
    if not isinstance(auth, Mapping):
        raise TypeError("auth must be a ReportsAuth; for none at all, say auth=NoAuth()")
    missing = sorted(accounts - auth.keys())
    if missing:
        raise ValueError(f"auth names no ReportsAuth for {', '.join(missing)}")
    if not all(isinstance(auth[a], ReportsAuth) for a in accounts):
        raise TypeError("every auth of the mapping must be a ReportsAuth (NoAuth() for none)")
    return {a: auth[a] for a in accounts}


async def _refuse(
    send: Send,
    account: str | None,
    status: int,
    reason: str,
    message: str,
    headers: Sequence[tuple[bytes, bytes]] = (),
) -> None:
    """Answer an error: counted by reason, and a body that says no more than ``message``."""
    telemetry.reports_rejected(account, reason)
    await _http.respond(send, status, {"error": reason, "message": message}, headers)


def _route_path(scope: Scope) -> str:
    """The path below the mount point: servers and Starlette put ``root_path`` in ``path``."""
    path: str = scope.get("path", "")
    root: str = scope.get("root_path", "")
    if root and path.startswith(root) and path[len(root) : len(root) + 1] in ("", "/"):
        return path[len(root) :]
    return path


def _format_of(headers: dict[bytes, bytes]) -> Format | None:
    try:
        return format_of(headers.get(b"content-type", b"").decode("latin-1"))
    except DecodeError:
        return None


def _verify_and_decode(
    auth: ReportsAuth, headers: dict[bytes, bytes], body: bytes, fmt: Format, count_only: bool
) -> _Batch | DecodeError | None:
    """The batch, its `DecodeError`, or `None` when the body fails authentication.

    With `count_only`, a JSON batch is checked as it would decode (every report, every
    field) and only its count comes back: the body is kept as it came.
    """
    if not auth.check_body(headers, body):
        return None
    try:
        if count_only and fmt == "json":
            return check_json_reports(body)
        return _decode(body, fmt)
    except DecodeError as error:
        return error


async def _off_loop(body: bytes, work: Callable[..., Any], *args: Any) -> Any:
    """``work(*args)``, in a worker thread for a large body so the loop keeps serving."""
    if len(body) > _THREAD_THRESHOLD:
        return await asyncio.to_thread(work, *args)
    return work(*args)


def _decode(body: bytes, fmt: Format) -> list[VoiceReport]:
    return decode_reports(body, media_type(fmt))
