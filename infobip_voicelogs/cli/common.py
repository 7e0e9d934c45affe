"""What every command shares: exit codes, the one place failures become them, and parsing times.

Nothing here imports a command or the application, so the commands import this module and
`app` imports the commands: the imports go one way.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Coroutine
from datetime import datetime, timedelta
from typing import Any, NoReturn, TypeVar

import attrs
import typer
from rich.console import Console
from rich.markup import escape

from .. import redaction
from .._time import utc_now
from ..errors import AuthenticationError, InfobipError, InvalidQueryError

__all__ = [
    "EXIT_API",
    "EXIT_AUTH",
    "EXIT_USAGE",
    "GlobalOptions",
    "fail",
    "global_options",
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


class _StatusConsole(Console):
    """A console whose lines stay whole when it does not write to a terminal.

    Rich wraps at 80 columns when the stream is a file or a pipe; a status line written to a
    log file or a CI log is then cut in two, and no longer greps whole. On a terminal it
    wraps to the terminal's width as usual; tables (the live table) keep their width.
    """

    def print(self, *objects: Any, soft_wrap: bool | None = None, **kwargs: Any) -> None:
        if soft_wrap is None and not self.is_terminal:
            soft_wrap = True
        super().print(*objects, soft_wrap=soft_wrap, **kwargs)


#: Where status lines, warnings and errors go.
stderr: Console = _StatusConsole(stderr=True)


@attrs.frozen
class GlobalOptions:
    """What the options before the command say; typer's context carries it (``ctx.obj``)."""

    #: Show tracebacks and debug logging.
    debug: bool = False


def global_options(ctx: typer.Context) -> GlobalOptions:
    """The global options of the run that ``ctx`` belongs to (their defaults if none were read)."""
    found = ctx.find_object(GlobalOptions)
    return found if found is not None else GlobalOptions()


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    """Print one clear error line on stderr and exit with `code`; no configured secret shows."""
    # soft_wrap: one line whatever the terminal's width, so that it greps and pastes whole.
    line = escape(redaction.scrub(message))
    stderr.print(f"[bold red]error:[/] {line}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def run(coro: Coroutine[Any, Any, T], ctx: typer.Context) -> T:
    """Run a command's coroutine, turning the library's failures into one line and an exit code.

    ``ctx`` is the command's context: with ``--debug`` a failure shows its traceback too.
    """
    try:
        return asyncio.run(coro)
    except (KeyboardInterrupt, asyncio.CancelledError):
        stderr.print("interrupted")
        raise typer.Exit(130) from None
    except InfobipError as exc:
        redaction.scrub_exception(exc)
        if global_options(ctx).debug:
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
    now = now or utc_now()
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
