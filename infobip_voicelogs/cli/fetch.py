"""`infobip-voicelogs fetch`: one account's logs, one page or a whole time window.

The command reads its options into a `FetchPlan` (every check before anything connects,
each failure one line and exit 2), then runs it: one page, or a walk printed in batches.
"""

from __future__ import annotations

from contextlib import aclosing
from datetime import datetime
from typing import Any

import attrs
import typer
from rich.status import Status

from .._time import utc_now
from ..auth import auth_from
from ..codec import Format
from ..endpoint import validate_base_url
from ..fetcher import LogsFetcher
from ..models import MAX_PAGE_SIZE, GeneralStatus, LogsQuery, VoiceLog
from ..poller import Account
from ..retry import RetryEvent
from .backends import SharedRates, check_redis_url
from .common import fail, parse_when, run, stderr
from .output import LogWriter, OutputFormat

__all__ = ["FetchPlan", "fetch"]

# A walk prints its logs in batches of this many, so memory stays flat on long windows.
_BATCH = 500


_STATUSES = ", ".join(s.value.lower() for s in GeneralStatus)
_STATUS_METAVAR = "<" + _STATUSES.replace(", ", "|") + ">"


def _general_status(value: str) -> GeneralStatus:
    """`--status`, any case. Parsed here, so that a wrong value is click's plain one line
    (typer's own enum conversion may go through pydantic: "Value error, ...")."""
    try:
        return GeneralStatus(value.upper())
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not one of {_STATUSES}") from None


@attrs.frozen
class FetchPlan:
    """What one `fetch` run asks for, checked: the account, the window or page, the filters.

    ``since`` set means a walk of ``[since, until or now]``; else one page of ``limit``.
    """

    account: Account
    now: datetime
    since: datetime | None
    until: datetime | None
    filters: dict[str, Any] = attrs.field(repr=False)
    limit: int | None
    page_size: int
    redis_url: str | None = attrs.field(repr=False)


def fetch(
    ctx: typer.Context,
    base_url: str = typer.Option(
        ..., "--base-url", envvar="INFOBIP_BASE_URL", help="Your account's base URL."
    ),
    api_key: str = typer.Option(
        ...,
        "--api-key",
        envvar="INFOBIP_API_KEY",
        help="API key (better: INFOBIP_API_KEY).",
        show_default=False,
    ),
    since: str | None = typer.Option(
        None, help="Walk every log sent since then: ISO 8601 with offset, or a span like 2h."
    ),
    until: str | None = typer.Option(None, help="End of the window (default now)."),
    sender: str | None = typer.Option(None, "--from", help="Sender id."),
    to: str | None = typer.Option(None, "--to", help="Destination number."),
    bulk_id: list[str] = typer.Option([], "--bulk-id", help="Bulk id (repeatable)."),
    message_id: list[str] = typer.Option([], "--message-id", help="Message id (repeatable)."),
    status: GeneralStatus | None = typer.Option(
        None,
        "--status",
        parser=_general_status,
        metavar=_STATUS_METAVAR,
    ),
    limit: int | None = typer.Option(
        None,
        min=1,
        help="At most this many logs, the newest: the one page's size (default 50, at most "
        f"{MAX_PAGE_SIZE}), or with --since where the walk stops (default: the whole window).",
    ),
    page_size: int = typer.Option(MAX_PAGE_SIZE, min=1, max=MAX_PAGE_SIZE, help="With --since."),
    mcc: str | None = typer.Option(None, help="Mobile country code."),
    mnc: str | None = typer.Option(None, help="Mobile network code."),
    output: OutputFormat = typer.Option(
        OutputFormat.auto, "--format", help="auto: a table on a terminal, NDJSON when piped."
    ),
    xml: bool = typer.Option(False, "--xml", help="Ask the provider for XML instead of JSON."),
    allow_insecure: bool = typer.Option(
        False,
        "--allow-insecure",
        help="Allow http:// to a non-loopback host (sends your key in clear).",
    ),
    redis_url: str | None = typer.Option(
        None,
        "--redis",
        envvar="INFOBIP_REDIS_URL",
        help="Share the account's rate limit with every process using this Redis "
        "(redis://, rediss:// or unix://).",
        show_default=False,
    ),
) -> None:
    """Fetch one account's voice logs: one page, or with --since every log of a window."""
    now = utc_now()
    since_at = parse_when(since, option="--since", now=now) if since else None
    if since_at is None and limit is not None and limit > MAX_PAGE_SIZE:
        fail(f"--limit: one page holds at most {MAX_PAGE_SIZE} logs; add --since to walk more")
    if redis_url:
        _check_redis(redis_url)
    plan = FetchPlan(
        account=_account(base_url, api_key, xml=xml, allow_insecure=allow_insecure),
        now=now,
        since=since_at,
        until=parse_when(until, option="--until", now=now) if until else None,
        filters={
            "from_": sender,
            "to": to,
            "bulk_ids": tuple(bulk_id),
            "message_ids": tuple(message_id),
            "general_status": status,
            "mcc": mcc,
            "mnc": mnc,
        },
        limit=limit,
        page_size=page_size,
        redis_url=redis_url or None,
    )
    writer = LogWriter(output)
    run(_run(plan, writer), ctx)
    stderr.print(f"{writer.written} logs", highlight=False)


# -- reading the options: each failure is one line naming the option, exit 2 ----------------


def _check_redis(redis_url: str) -> None:
    try:
        check_redis_url(redis_url)
    except ValueError as exc:
        fail(str(exc))


def _account(base_url: str, api_key: str, *, xml: bool, allow_insecure: bool) -> Account:
    """The account the options name; its base URL and key checked (never echoed)."""
    try:
        url = validate_base_url(base_url, allow_insecure=allow_insecure)
    except ValueError as exc:  # the messages name no secret, at most the host
        message = str(exc).replace("allow_insecure=True", "--allow-insecure")
        fail(
            f"--base-url{message[8:]}"
            if message.startswith("base_url ")
            else f"--base-url: {message}"
        )
    try:
        auth = auth_from(api_key)
    except ValueError as exc:  # names the parameter, never the value
        fail(f"--api-key: {exc}")
    fmt: Format = "xml" if xml else "json"
    return Account("fetch", url, auth=auth, format=fmt, allow_insecure=allow_insecure)


# -- running the plan ---------------------------------------------------------------------


async def _run(plan: FetchPlan, writer: LogWriter) -> None:
    """Run ``plan`` into ``writer``, on a Redis-shared rate if it names one."""
    shared = SharedRates(plan.redis_url) if plan.redis_url else None
    try:
        account = shared.share([plan.account])[0] if shared else plan.account
        async with _fetcher(account) as fetcher:
            if plan.since is None:
                await _one_page(fetcher, plan, writer)
            else:
                await _walk(fetcher, plan, plan.since, writer)
    finally:
        if shared is not None:
            await shared.aclose()


def _fetcher(account: Account) -> LogsFetcher:
    return LogsFetcher(
        account.base_url,
        account.auth,
        format=account.format,
        throttle=account.throttle,
        allow_insecure=account.allow_insecure,
        on_retry=_say_retry,
    )


def _say_retry(event: RetryEvent) -> None:
    """A wait the user can see: an unreachable host is retried for seconds, never silently."""
    stderr.print(
        f"try {event.attempt} failed ({event.reason}); retrying in {event.wait:.1f} s",
        highlight=False,
        markup=False,
        soft_wrap=True,
    )


async def _one_page(fetcher: LogsFetcher, plan: FetchPlan, writer: LogWriter) -> None:
    query = LogsQuery(sent_until=plan.until, limit=plan.limit, **plan.filters)
    writer.write(await fetcher.fetch(query))


async def _walk(fetcher: LogsFetcher, plan: FetchPlan, since: datetime, writer: LogWriter) -> None:
    """Every log of the window, newest first, printed in batches; the newest ``limit`` only."""
    walk = fetcher.iter_logs(
        sent_since=since,
        sent_until=plan.until or plan.now,
        # No page beyond what --limit leaves room for.
        page_size=min(plan.page_size, plan.limit or plan.page_size),
        **plan.filters,
    )
    batch: list[VoiceLog] = []
    with Status("fetching…", console=stderr) as progress:
        async with aclosing(walk) as logs:
            async for log in logs:
                batch.append(log)
                if writer.written + len(batch) == plan.limit:
                    break  # the newest `limit` logs of the window
                if len(batch) >= _BATCH:
                    writer.write(batch)
                    batch = []
                    progress.update(f"fetching… {writer.written} logs")
    writer.write(batch)
