"""Writing logs out: NDJSON (the wire's JSON, a log a line), CSV, or a table for people."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import enum
import os
import queue
import sys
import threading
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import IO, Any

import orjson
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..codec import encode_ndjson
from ..models import VoiceLog

__all__ = [
    "CSV_COLUMNS",
    "BackgroundWriter",
    "LogWriter",
    "OutputFormat",
    "opening_with",
    "resolve_format",
]


class OutputFormat(enum.StrEnum):
    """How `fetch` and `poll` print logs."""

    auto = "auto"
    ndjson = "ndjson"
    csv = "csv"
    table = "table"


def resolve_format(chosen: OutputFormat, stream: IO[Any] | None = None) -> OutputFormat:
    """`auto` is a table on a terminal and NDJSON when piped."""
    if chosen is not OutputFormat.auto:
        return chosen
    stream = stream or sys.stdout
    return OutputFormat.table if stream.isatty() else OutputFormat.ndjson


CSV_COLUMNS = (
    "message_id",
    "bulk_id",
    "sent_at",
    "done_at",
    "from",
    "to",
    "status_group",
    "status_name",
    "duration",
    "price_per_second",
    "currency",
    "error_name",
    "error_permanent",
    "mccmnc",
    "text",
)


def _iso(value: datetime | None) -> str:
    return "" if value is None else value.isoformat(timespec="milliseconds")


def csv_row(log: VoiceLog) -> list[str]:
    """A log as one CSV row, in the order of `CSV_COLUMNS`."""
    status, price, error = log.status, log.price, log.error
    values: list[Any] = [
        log.message_id,
        log.bulk_id,
        _iso(log.sent_at),
        _iso(log.done_at),
        log.from_,
        log.to,
        status.group_name if status else None,
        status.name if status else None,
        log.duration,
        f"{price.per_second:f}" if price else None,  # 0.0000001, never 1E-7
        price.currency if price else None,
        error.name if error else None,
        error.permanent if error else None,
        log.mccmnc,
        log.text,
    ]
    return ["" if value is None else str(value) for value in values]


def opening_with(fields: dict[str, str], ndjson: bytes) -> bytes:
    r"""NDJSON lines of objects, each with `fields` put first (`{"account": ...}`).

    >>> opening_with({"source": "log"}, b'{"messageId":"m1"}\n{}\n')
    b'{"source":"log","messageId":"m1"}\n{"source":"log"}\n'
    """
    opening = orjson.dumps(fields)[:-1]  # `{"source":"log"`, the object left open
    return b"".join(
        opening + (b"}\n" if line == b"{}" else b"," + line[1:] + b"\n")
        for line in ndjson.splitlines()
    )


class LogWriter:
    """Writes batches of logs to a stream in one format; a table is printed per batch."""

    def __init__(self, fmt: OutputFormat, stream: IO[str] | None = None) -> None:
        self._stream = stream or sys.stdout
        self._format = resolve_format(fmt, self._stream)
        self._csv: Any = None
        self.written = 0

    def write(self, logs: Iterable[VoiceLog], *, title: str | None = None) -> None:
        """Write a batch of logs (NDJSON and CSV stream; a table is drawn per batch)."""
        logs = list(logs)
        self.written += len(logs)
        if self._format is OutputFormat.ndjson:
            if logs:
                self._stream.write(encode_ndjson(logs).decode())
        elif self._format is OutputFormat.csv:
            if self._csv is None:
                self._csv = csv.writer(self._stream, lineterminator="\n")
                self._csv.writerow(CSV_COLUMNS)
            self._csv.writerows(csv_row(log) for log in logs)
        else:
            console = Console(file=self._stream)
            console.print(_table(logs, title, console.width))
        self._stream.flush()


# Narrower than this, the table leaves out the sender and the error, writes the status's
# group only and the time without its year: every log stays on one line of 80 columns.
_WIDE = 120


def _table(logs: list[VoiceLog], title: str | None, width: int) -> Table:
    """One line per log, whatever the width: cells are cut (with …), never folded."""
    wide = width >= _WIDE
    columns = ["sent at (UTC)", "message id", "to", "status", "sec", "price"]
    if wide:
        columns[2:2] = ["from"]
        columns.append("error")
    rows = [_cells(log, wide=wide) for log in logs]
    table = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    needed = [
        max([len(column), *(len(row[i]) for row in rows)]) for i, column in enumerate(columns)
    ]
    # What the free-form cells may share: the width less the fixed cells and two spaces
    # between columns (rich drops a whole column rather than cut one too little).
    free = [column in ("message id", "from", "error") for column in columns]
    room = width - 1 - 2 * len(columns) - sum(n for n, f in zip(needed, free, strict=True) if not f)
    waiting = sum(free)
    for column, need, squeezable in zip(columns, needed, free, strict=True):
        cut = None
        if squeezable:  # the message id first: it names the log
            waiting -= 1
            cut = max(min(need, 8), min(need, room - 8 * waiting))
            room -= cut
        table.add_column(
            column,
            no_wrap=True,
            overflow="ellipsis",
            min_width=min(need, 8) if squeezable else need,
            max_width=cut,
            justify="right" if column in ("sec", "price") else "left",
        )
    for row in rows:
        # The provider's text is data, not markup: `[/]` in a field must print as it is.
        table.add_row(*(Text(cell) for cell in row))
    return table


def _cells(log: VoiceLog, *, wide: bool) -> list[str]:
    status, price, error = log.status, log.price, log.error
    when = "%Y-%m-%d %H:%M:%S" if wide else "%m-%d %H:%M:%S"
    if status is None:
        shown = ""
    else:
        shown = f"{status.group_name}/{status.name}" if wide else status.group_name or ""
    cells = [
        log.sent_at.astimezone(UTC).strftime(when) if log.sent_at else "",
        log.message_id or "",
        log.to or "",
        shown,
        "" if log.duration is None else str(log.duration),
        f"{price.per_second:f} {price.currency}" if price else "",
    ]
    if wide:
        cells[2:2] = [log.from_ or ""]
        cells.append("" if error is None or error.ok else error.name or "")
    return cells


class BackgroundWriter:
    """Writes bytes to a file descriptor from a thread of its own, so that a reader that has
    stopped reading (a full pipe) blocks that thread and never the event loop.

    ``await writer.write(data)`` returns once the bytes are written, and is cancellable:
    a shutdown does not wait for a stuck reader longer than its grace. The thread is a
    daemon and writes with `os.write` on its own copy of the descriptor, never through
    `sys.stdout`, so the interpreter can exit while it is stuck.
    """

    def __init__(self, fd: int) -> None:
        self._fd = os.dup(fd)
        self._jobs: queue.SimpleQueue[tuple[bytes, Callable[[OSError | None], None]] | None]
        self._jobs = queue.SimpleQueue()
        self._thread = threading.Thread(
            target=self._work, name="infobip-voicelogs-output", daemon=True
        )
        self._thread.start()

    async def write(self, data: bytes) -> None:
        """Write all of ``data``; raise the `OSError` (e.g. `BrokenPipeError`) if it failed."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()

        def settle(error: OSError | None) -> None:
            if not done.done():
                if error is None:
                    done.set_result(None)
                else:
                    done.set_exception(error)

        def report(error: OSError | None) -> None:  # on the writer thread
            with contextlib.suppress(RuntimeError):  # the loop has closed: nobody waits
                loop.call_soon_threadsafe(settle, error)

        self._jobs.put((data, report))
        await done

    def close(self) -> None:
        """Let the thread end after the writes queued; a thread stuck writing is left alone."""
        self._jobs.put(None)

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            data, report = job
            view = memoryview(data)
            try:
                while view:
                    view = view[os.write(self._fd, view) :]
            except OSError as exc:
                report(exc)
            else:
                report(None)
        os.close(self._fd)
