"""`infobip-voicelogs poll`: many accounts from a TOML file into a store, until Ctrl-C."""

from __future__ import annotations

import asyncio
import signal
import sys
from contextlib import suppress
from datetime import timedelta
from pathlib import Path
from typing import Any

import typer
from rich.live import Live

from ..errors import StoreError
from ..models import VoiceLog
from ..poller import LogsPoller
from ..store import SqliteStore
from .common import fail, parse_span, run, stderr
from .config import ConfigError, load_accounts
from .live import status_table
from .output import LogWriter, OutputFormat

__all__ = ["poll"]


def poll(
    ctx: typer.Context,
    accounts_file: Path = typer.Option(
        ..., "--accounts", "-a", help="TOML file with one [[account]] table per account."
    ),
    store_path: Path = typer.Option(Path("voicelogs.db"), "--store", help="SQLite store file."),
    archive: bool = typer.Option(
        True, "--archive/--no-archive", help="Keep every log's last state."
    ),
    interval: str = typer.Option("60s", help="Time between an account's cycles."),
    backfill: str = typer.Option("48h", help="How far back the first cycle reaches."),
    revisit: str = typer.Option("1h", help="How far back each cycle looks again for changes."),
    once: bool = typer.Option(False, "--once", help="One cycle, then exit."),
    output: OutputFormat = typer.Option(
        OutputFormat.auto,
        "--format",
        help="Also print delivered logs: auto = NDJSON when piped, nothing on a terminal.",
    ),
    live: bool = typer.Option(True, "--live/--no-live", help="Draw the live table on stderr."),
) -> None:
    """Poll many accounts: every new log and every change, once, into the store."""
    try:
        accounts = load_accounts(accounts_file)
    except ConfigError as exc:
        fail(str(exc))
    seconds = {
        "interval": parse_span(interval, option="--interval").total_seconds(),
        "backfill": parse_span(backfill, option="--backfill").total_seconds(),
        "revisit": parse_span(revisit, option="--revisit").total_seconds(),
    }
    if min(seconds["interval"], seconds["backfill"]) <= 0 or seconds["revisit"] < 0:
        fail("--interval and --backfill must be positive, --revisit not negative")
    printing = output is not OutputFormat.auto or not sys.stdout.isatty()
    writer = LogWriter(OutputFormat.ndjson if output is OutputFormat.auto else output)

    delivered = 0

    async def handler(account: str, logs: list[VoiceLog]) -> None:
        nonlocal delivered
        if printing:
            writer.write(logs)
        delivered += len(logs)

    async def main() -> None:
        async with (
            SqliteStore(store_path, archive=archive) as store,
            LogsPoller(
                accounts,
                store=store,
                handler=handler,
                interval=seconds["interval"],
                backfill=timedelta(seconds=seconds["backfill"]),
                revisit=timedelta(seconds=seconds["revisit"]),
            ) as poller,
        ):
            try:
                await store.accounts()  # a store that cannot be opened is a usage error
            except StoreError as exc:
                fail(str(exc))
            _on_signals(poller, asyncio.current_task())
            polling = poller.run_once() if once else poller.run()
            if live:
                with Live(status_table(poller), console=stderr, auto_refresh=False) as screen:
                    refresher = asyncio.create_task(_refresh(screen, poller))
                    try:
                        await polling
                    finally:
                        refresher.cancel()
                        screen.update(status_table(poller), refresh=True)
            else:
                await polling
        failing = [name for name, s in poller.status().items() if s.consecutive_failures]
        stderr.print(f"\nstopped; {delivered} logs delivered; store {store_path}")
        if once and failing:
            fail(f"accounts failing: {', '.join(sorted(failing))}", 4)

    run(main(), ctx)


def _on_signals(poller: LogsPoller, task: asyncio.Task[Any] | None) -> None:
    """First Ctrl-C or SIGTERM: finish the cycles in flight. Second: cancel them.

    Cancelled, the poller still lets a handler call in flight finish and commits it.
    """
    presses = 0

    def on_signal() -> None:
        nonlocal presses
        presses += 1
        if presses == 1:
            stderr.print("\nstopping once the cycles in flight finish (again to cancel them)")
            poller.stop()
        elif task is not None:
            task.cancel()

    loop = asyncio.get_running_loop()
    with suppress(NotImplementedError):  # no signal handlers on this platform's loop
        loop.add_signal_handler(signal.SIGINT, on_signal)
        loop.add_signal_handler(signal.SIGTERM, on_signal)


async def _refresh(screen: Live, poller: LogsPoller) -> None:
    while True:
        screen.update(status_table(poller), refresh=True)
        await asyncio.sleep(1.0)
