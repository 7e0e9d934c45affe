"""The typer application: its global options and its commands, registered here.

The commands live in their own modules and know nothing of the application; what they
share (exit codes, `fail`, `run`, time parsing) is in `common`.
"""

from __future__ import annotations

import logging
import sys

import typer

from . import demo, fetch, poll, simulate
from .common import GlobalOptions

__all__ = ["app"]

app = typer.Typer(
    name="infobip-voicelogs",
    help="Read Infobip voice message logs: fetch, poll many accounts, or try a fake provider.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _main(
    ctx: typer.Context,
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks and debug logging."),
) -> None:
    ctx.obj = GlobalOptions(debug=debug)
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


for command in (demo.demo, fetch.fetch, poll.poll, simulate.simulate):
    app.command()(command)
