"""The fake provider's push side: each call's delivery report POSTed to a notify URL.

```python
pusher = account.push_reports("http://127.0.0.1:8000/reports/acme", auth=PushHmac("secret"),
                              faults=PushFaults(drop=0.1, duplicate=0.02, reorder=0.02))
clock.advance(timedelta(minutes=1))
await pusher.step()          # POSTs the reports of the calls that settled meanwhile
pusher.stats.dropped         # the ground truth a test checks its receiver against
```

Nothing runs by itself: like the logs, the reports follow the fake's clock. Each `step()`
finds the calls whose report falls due up to the clock's now, and POSTs every report due,
in batches, with the faults asked for. Every random choice comes from the account's seed
and the message's id, so a run repeats exactly. A report that was not answered 2xx is
tried again after a backoff (on the fake's clock), then given up, as the provider does.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import heapq
import hmac
import random
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import attrs
import httpx

from ..codec import Format, media_type
from ..models import GeneralStatus, VoiceLog
from ..reports import ReportShape, VoiceCall, VoiceReport, encode_reports

if TYPE_CHECKING:
    from .account import FakeAccount

__all__ = ["PushBasic", "PushFaults", "PushHmac", "PushStats", "ReportPusher", "report_of"]

#: The most reports one POST carries unless told otherwise (the provider's default bucket).
DEFAULT_BATCH_SIZE = 100
#: How long a POST may take, in real seconds, before it counts as failed.
POST_TIMEOUT = 10.0


@attrs.frozen
class PushBasic:
    """HTTP Basic credentials the fake sends with each POST (never shown in a repr)."""

    user: str
    password: str = attrs.field(repr=False)

    def headers(self, body: bytes) -> dict[str, str]:
        """The `Authorization` header for any body."""
        token = base64.b64encode(f"{self.user}:{self.password}".encode()).decode("ascii")
        return {"Authorization": f"Basic {token}"}


@attrs.frozen
class PushHmac:
    """An HMAC of each raw body with a shared secret, hex digest in `header`."""

    secret: str = attrs.field(repr=False)
    header: str = "X-Signature"
    algorithm: str = "sha256"

    def headers(self, body: bytes) -> dict[str, str]:
        """The signature header of `body`."""
        digest = hmac.new(self.secret.encode(), body, getattr(hashlib, self.algorithm))
        return {self.header: digest.hexdigest()}


def _share(instance: Any, attribute: attrs.Attribute[Any], value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{attribute.name} is a share of reports, 0 to 1, not {value!r}")


def _not_negative(instance: Any, attribute: attrs.Attribute[Any], value: timedelta) -> None:
    if value < timedelta(0):
        raise ValueError(f"{attribute.name} cannot be negative")


@attrs.frozen
class PushFaults:
    """What goes wrong on the way, each a share of reports (0 to 1) or a duration.

    Attributes:
        drop: Reports never sent at all (the webhook loss the logs must make up for).
        duplicate: Reports sent twice, the copy `duplicate_after` later.
        reorder: Reports held back by up to `reorder_by`, so later ones overtake them.
        delay: How long after its call settles every report goes.
        log_lag: How long the log keeps showing the call as not final after its report
            went: the report goes `log_lag` before the log changes.
        max_retries: Tries after a failed POST (a non-2xx or no answer) before a report
            is given up; `retry_backoff` doubles after each.
    """

    drop: float = attrs.field(default=0.0, validator=_share)
    duplicate: float = attrs.field(default=0.0, validator=_share)
    reorder: float = attrs.field(default=0.0, validator=_share)
    delay: timedelta = attrs.field(default=timedelta(0), validator=_not_negative)
    log_lag: timedelta = attrs.field(default=timedelta(0), validator=_not_negative)
    duplicate_after: timedelta = attrs.field(default=timedelta(seconds=2), validator=_not_negative)
    reorder_by: timedelta = attrs.field(default=timedelta(seconds=10), validator=_not_negative)
    max_retries: int = attrs.field(default=3, validator=attrs.validators.ge(0))
    retry_backoff: timedelta = attrs.field(default=timedelta(seconds=1), validator=_not_negative)


@attrs.define
class PushStats:
    """What the pusher did, counted per report copy: the ground truth for a test."""

    #: Calls whose report fell due (each counted once, whatever became of it); a call
    #: sent without a notify URL has none (its report waits for a pull).
    settled: int = 0
    #: Report copies POSTed, every try counted.
    sent: int = 0
    #: Report copies answered 2xx.
    accepted: int = 0
    #: Reports never sent (`PushFaults.drop`).
    dropped: int = 0
    #: Extra copies scheduled (`PushFaults.duplicate`).
    duplicated: int = 0
    #: Reports held back to arrive out of order (`PushFaults.reorder`).
    reordered: int = 0
    #: Report copies tried again after a failed POST.
    retried: int = 0
    #: Report copies abandoned after the last retry.
    given_up: int = 0
    #: POST requests made.
    posts: int = 0
    #: The message ids of the reports dropped, and of those given up.
    dropped_ids: set[str] = attrs.field(factory=set)
    given_up_ids: set[str] = attrs.field(factory=set)
    #: The message ids of the reports accepted at least once.
    accepted_ids: set[str] = attrs.field(factory=set)


@attrs.frozen(order=True)
class _Due:
    at: datetime
    sequence: int
    report: VoiceReport = attrs.field(order=False)
    tries: int = attrs.field(default=0, order=False)


def report_of(log: VoiceLog, shape: ReportShape = "current") -> VoiceReport:
    """The delivery report of a call whose log is `log`, in `shape`: same state, plus the
    call's times and the sender's `callbackData`, as the provider would push it."""
    answered = log.general_status is GeneralStatus.DELIVERED
    duration = log.duration or 0
    end = log.done_at
    call = VoiceCall(
        feature="Voice-message",
        start_time=log.sent_at,
        answer_time=end - timedelta(seconds=duration) if answered and end else None,
        end_time=end,
        duration=duration,
        charged_duration=duration,
        file_duration=float(duration),
        dtmf_codes="",
        answered_by="HUMAN" if answered else None,
        direction="OUTBOUND",
    )
    report = VoiceReport(
        bulk_id=log.bulk_id,
        message_id=log.message_id,
        from_=log.from_,
        to=log.to,
        sent_at=log.sent_at,
        mcc_mnc=log.mccmnc,
        callback_data=f"order:{log.message_id}",
        voice_call=call,
        price=log.price,
        status=log.status,
        error=log.error,
    )
    if shape == "flat":
        return attrs.evolve(report.in_shape("flat"), done_at=log.done_at)
    return report


class ReportPusher:
    """POSTs one fake account's delivery reports to a notify URL; make one with
    `FakeAccount.push_reports`.

    Posting goes through `client` (an `httpx.AsyncClient` of the caller's, e.g. to a
    receiver served by uvicorn), or through `app` (any ASGI app, in-process via
    `httpx.ASGITransport`), or else a fresh client per `step()`. The repr never shows
    credentials.
    """

    def __init__(
        self,
        account: FakeAccount,
        url: str,
        *,
        fmt: Format = "json",
        shape: ReportShape = "current",
        auth: PushBasic | PushHmac | None = None,
        faults: PushFaults | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        client: httpx.AsyncClient | None = None,
        app: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if client is not None and app is not None:
            raise ValueError("give a client or an app, not both")
        self.account = account
        self.url = url
        self.fmt: Format = fmt
        self.shape: ReportShape = shape
        self.auth = auth
        self.faults = faults if faults is not None else PushFaults()
        self.batch_size = batch_size
        #: What the pusher did so far.
        self.stats = PushStats()
        self._client = client
        self._app = app
        self._headers = dict(headers or {})
        self._seed = f"{account.seed}:push"
        self._queue: list[_Due] = []
        self._sequence = 0
        # Reports fall due for calls settling after this moment (of the report's clock).
        self._seen_until = account.clock.now()

    def __repr__(self) -> str:
        return f"ReportPusher({self.account.name!r}, {self.url!r}, fmt={self.fmt!r})"

    @property
    def pending(self) -> int:
        """Report copies waiting for their time (delayed, held back, or to retry)."""
        return len(self._queue)

    async def step(self) -> int:
        """Schedule the reports of calls settled by the clock's now, and POST all that are
        due, in batches of `batch_size`. Returns how many report copies were POSTed."""
        now = self.account.clock.now()
        self._schedule(now)
        posted = 0
        due: list[_Due] = []
        while self._queue and self._queue[0].at <= now:
            due.append(heapq.heappop(self._queue))
        if not due:
            return 0
        async with self._session() as client:
            for start in range(0, len(due), self.batch_size):
                batch = due[start : start + self.batch_size]
                await self._post(client, batch, now)
                posted += len(batch)
        return posted

    async def run(self, every: float = 0.2) -> None:
        """Step every `every` real seconds until cancelled: for a ticking or system clock.

        Each POST is bounded by the client's timeout (`POST_TIMEOUT` for the pusher's own).
        """
        while True:
            await self.step()
            await asyncio.sleep(every)

    # -- scheduling ------------------------------------------------------------------------

    def _schedule(self, now: datetime) -> None:
        """Queue the report of each call that settled since the last step, faults applied."""
        faults = self.faults
        lag = faults.log_lag
        # A report goes `log_lag` before its log turns final: look that far ahead.
        settled = self.account.settling(self._seen_until + lag, now + lag)
        if lag:
            # A call placed since the last step that settles within `lag` of it: its
            # report time passed before the call was there to see; it goes now, late.
            early = self.account.settling(self._seen_until, self._seen_until + lag)
            settled += [f for f in early if f.sent_at and f.sent_at > self._seen_until]
        self._seen_until = now
        keeps = self.account.pull.keeps
        for final in settled:
            assert final.message_id is not None
            assert final.done_at is not None
            if keeps(final.message_id):  # sent without a notify URL: its report is pulled
                continue
            rng = random.Random(f"{self._seed}:{final.message_id}")
            self.stats.settled += 1
            if rng.random() < faults.drop:
                self.stats.dropped += 1
                self.stats.dropped_ids.add(final.message_id)
                continue
            at = final.done_at - lag + faults.delay
            if rng.random() < faults.reorder:
                self.stats.reordered += 1
                at += faults.reorder_by * rng.uniform(0.5, 1.0)
            report = report_of(final, self.shape)
            self._push(at, report)
            if rng.random() < faults.duplicate:
                self.stats.duplicated += 1
                self._push(at + faults.duplicate_after, report)

    def _push(self, at: datetime, report: VoiceReport, tries: int = 0) -> None:
        self._sequence += 1
        heapq.heappush(self._queue, _Due(at, self._sequence, report, tries))

    # -- posting ---------------------------------------------------------------------------

    def _session(self) -> Any:
        if self._client is not None:
            return _Borrowed(self._client)
        transport = httpx.ASGITransport(app=self._app) if self._app is not None else None
        return httpx.AsyncClient(transport=transport, timeout=POST_TIMEOUT)

    async def _post(self, client: httpx.AsyncClient, batch: list[_Due], now: datetime) -> None:
        body = encode_reports([due.report for due in batch], self.fmt)
        headers = {**self._headers, "Content-Type": media_type(self.fmt)}
        if self.auth is not None:
            headers.update(self.auth.headers(body))
        self.stats.posts += 1
        self.stats.sent += len(batch)
        try:
            response = await client.post(self.url, content=body, headers=headers)
            ok = response.is_success
        except httpx.HTTPError:
            ok = False
        if ok:
            self.stats.accepted += len(batch)
            self.stats.accepted_ids.update(str(due.report.message_id) for due in batch)
            return
        for due in batch:
            if due.tries >= self.faults.max_retries:
                self.stats.given_up += 1
                self.stats.given_up_ids.add(str(due.report.message_id))
                continue
            self.stats.retried += 1
            wait = self.faults.retry_backoff * (2**due.tries)
            self._push(now + wait, due.report, due.tries + 1)


class _Borrowed:
    """A caller's client as an async context manager that leaves it open."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self._client = client

    async def __aenter__(self) -> httpx.AsyncClient:
        return self._client

    async def __aexit__(self, *exc: object) -> None:
        return None
