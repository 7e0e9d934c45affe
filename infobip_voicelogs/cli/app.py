"""The typer application: its global options and its commands, registered here.

The commands live in their own modules and know nothing of the application; what they
share (exit codes, `fail`, `run`, time parsing) is in `common`.
"""

from __future__ import annotations

import logging
import sys
import warnings
from typing import Any, TextIO

import typer
from rich.text import Text
from typer.core import TyperGroup

from ..__about__ import __version__
from ..errors import VoiceLogsWarning
from . import demo, export, fetch, poll, report, simulate
from .common import GlobalOptions, stderr

__all__ = ["app"]

# Options of the application that a user may also write after the command's name.
_HOISTED = ("--debug",)


class _Group(TyperGroup):
    """The command group, taking `--debug` wherever it is written (before ``--``)."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:  # typer's own click
        end = args.index("--") if "--" in args else len(args)
        hoisted = [arg for arg in args[:end] if arg in _HOISTED]
        rest = [arg for arg in args[:end] if arg not in _HOISTED] + args[end:]
        return super().parse_args(ctx, [*dict.fromkeys(hoisted), *rest])


app = typer.Typer(
    name="infobip-voicelogs",
    help="Read Infobip voice message logs: fetch, poll many accounts, or try a fake provider.",
    cls=_Group,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Plain help: rich markup would take `[[account]]` in a help text for a tag and eat it.
    rich_markup_mode=None,
)


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"infobip-voicelogs {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    ctx: typer.Context,
    debug: bool = typer.Option(
        False, "--debug", help="Show tracebacks and debug logging (before or after the command)."
    ),
    version: bool = typer.Option(
        False,
        "--version",
        callback=_show_version,
        is_eager=True,
        help="Print the version and exit.",
    ),
) -> None:
    ctx.obj = GlobalOptions(debug=debug)
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if not debug:
        warnings.showwarning = _warning_line


def _warning_line(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
    **_: Any,
) -> None:
    """The library's warnings as one line on stderr, without the source line that warned."""
    if not issubclass(category, VoiceLogsWarning):
        _default_showwarning(message, category, filename, lineno, file, line)
        return
    stderr.print(Text.assemble(("warning: ", "yellow"), str(message)), soft_wrap=True)


_default_showwarning = warnings.showwarning

for command in (demo.demo, fetch.fetch, simulate.simulate, export.export, report.report):
    app.command()(command)
app.command(epilog=poll.EPILOG)(poll.poll)
