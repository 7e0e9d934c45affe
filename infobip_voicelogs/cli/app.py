"""The typer application, its global options, and the one place failures become exit codes."""

from __future__ import annotations

import asyncio
import logging
import re
import sys
from collections.abc import Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from ..errors import AuthenticationError, InfobipError, InvalidQueryError

__all__ = [
    "EXIT_API",
    "EXIT_AUTH",
    "EXIT_USAGE",
    "app",
    "fail",
    "parse_span",
    "parse_when",
    "run",
    "stderr",
]

#: Exit codes: 0 success, 2 usage, 3 authentication, 4 any other API or network failure.
EXIT_USAGE = 2
EXIT_AUTH = 3
EXIT_API = 4

T = TypeVar("T")

stderr = Console(stderr=True)
app = typer.Typer(
    name="infobip-voicelogs",
    help="Read Infobip voice message logs: fetch, poll many accounts, or try a fake provider.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
_state = {"debug": False}


@app.callback()
def _main(
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks and debug logging."),
) -> None:
    _state["debug"] = debug
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    """Print one clear error line on stderr and exit with `code`."""
    stderr.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    raise typer.Exit(code)


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a command's coroutine, turning the library's failures into one line and an exit code."""
    try:
        return asyncio.run(coro)
    except (KeyboardInterrupt, asyncio.CancelledError):
        stderr.print("interrupted")
        raise typer.Exit(130) from None
    except InfobipError as exc:
        if _state["debug"]:
            stderr.print_exception()
        if isinstance(exc, InvalidQueryError):
            fail(str(exc), EXIT_USAGE)
        code = EXIT_AUTH if isinstance(exc, AuthenticationError) else EXIT_API
        fail(f"{type(exc).__name__}: {exc}", code)


_SPAN = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhd]?)$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_span(value: str, *, option: str) -> timedelta:
    """A span of time: `90s`, `30m`, `2h`, `1d`, or a bare number of seconds."""
    span = _SPAN.match(value.strip().lower())
    if span is None:
        raise typer.BadParameter(
            f"{value!r} is not a duration like 90s, 30m, 2h", param_hint=option
        )
    amount, unit = span.groups()
    try:
        return timedelta(**{_UNITS[unit or "s"]: float(amount)})
    except OverflowError:
        raise typer.BadParameter(f"{value!r} is longer than any span", param_hint=option) from None


def parse_when(value: str, *, option: str, now: datetime | None = None) -> datetime:
    """A point in time: `now`, a span back from now (`90s`, `30m`, `2h`, `1d`), or ISO 8601.

    An ISO timestamp without an offset is refused rather than guessed.
    """
    now = now or datetime.now(UTC)
    text = value.strip()
    if text.lower() == "now":
        return now
    span = _SPAN.match(text.lower())
    if span and span[2]:  # a span back from now (with its unit: a bare number is no time)
        try:
            return now - parse_span(text, option=option)
        except OverflowError:
            raise typer.BadParameter(
                f"{value!r} reaches back before the year 1", param_hint=option
            ) from None
    try:
        when = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is not a time: use ISO 8601 with an offset, 'now', or a span like 2h",
            param_hint=option,
        ) from None
    if when.utcoffset() is None:
        raise typer.BadParameter(
            f"{value!r} has no timezone offset (add Z or +01:00)", param_hint=option
        )
    return when


# The commands register themselves on `app`.
from . import demo, fetch, poll, simulate  # noqa: E402, F401
