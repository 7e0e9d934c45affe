"""`infobip-voicelogs fetch`: one account's logs, one page or a whole time window."""

from __future__ import annotations

from contextlib import aclosing
from typing import Any

import typer
from rich.status import Status

from .._time import utc_now
from ..auth import auth_from
from ..endpoint import validate_base_url
from ..fetcher import LogsFetcher
from ..models import MAX_PAGE_SIZE, GeneralStatus, LogsQuery, VoiceLog
from ..poller import Account
from ..retry import RetryEvent
from .backends import SharedRates, check_redis_url
from .common import fail, parse_when, run, stderr
from .output import LogWriter, OutputFormat

__all__ = ["fetch"]

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
    window_start = parse_when(since, option="--since", now=now) if since else None
    window_end = parse_when(until, option="--until", now=now) if until else None
    filters: dict[str, Any] = {
        "from_": sender,
        "to": to,
        "bulk_ids": tuple(bulk_id),
        "message_ids": tuple(message_id),
        "general_status": status,
        "mcc": mcc,
        "mnc": mnc,
    }
    if window_start is None and limit is not None and limit > MAX_PAGE_SIZE:
        fail(f"--limit: one page holds at most {MAX_PAGE_SIZE} logs; add --since to walk more")
    writer = LogWriter(output)
    if redis_url:
        try:
            check_redis_url(redis_url)
        except ValueError as exc:
            fail(str(exc))
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
        auth_from(api_key)
    except ValueError as exc:
        fail(f"--api-key: {exc}")
    account = Account("fetch", url, auth=api_key, allow_insecure=allow_insecure)

    async def main() -> None:
        shared = SharedRates(redis_url) if redis_url else None
        try:
            await fetch_with(shared.share([account])[0] if shared else account)
        finally:
            if shared is not None:
                await shared.aclose()

    def say_retry(event: RetryEvent) -> None:
        # A wait the user can see: an unreachable host is retried for seconds, never silently.
        stderr.print(
            f"try {event.attempt} failed ({event.reason}); retrying in {event.wait:.1f} s",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )

    async def fetch_with(account: Account) -> None:
        fetcher = LogsFetcher(
            account.base_url,
            api_key,
            format="xml" if xml else "json",
            throttle=account.throttle,
            allow_insecure=allow_insecure,
            on_retry=say_retry,
        )
        async with fetcher:
            if window_start is None:
                query = LogsQuery(sent_until=window_end, limit=limit, **filters)
                writer.write(await fetcher.fetch(query))
                return
            batch: list[VoiceLog] = []
            walk = fetcher.iter_logs(
                sent_since=window_start,
                sent_until=window_end or now,
                # No page beyond what --limit leaves room for.
                page_size=min(page_size, limit or page_size),
                **filters,
            )
            with Status("fetching…", console=stderr) as progress:
                async with aclosing(walk) as logs:
                    async for log in logs:
                        batch.append(log)
                        if writer.written + len(batch) == limit:
                            break  # the newest `limit` logs of the window
                        if len(batch) >= _BATCH:
                            writer.write(batch)
                            batch = []
                            progress.update(f"fetching… {writer.written} logs")
            writer.write(batch)

    run(main(), ctx)
    stderr.print(f"{writer.written} logs", highlight=False)
