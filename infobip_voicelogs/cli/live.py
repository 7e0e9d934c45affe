"""The live per-account table that `poll` and `demo` draw on stderr."""

from __future__ import annotations

from rich.markup import escape
from rich.table import Table

from ..poller import LogsPoller

__all__ = ["status_table"]


def status_table(poller: LogsPoller, title: str = "accounts") -> Table:
    """One row per account: cycles, new, changed, requests, retries, 429s, last error."""
    table = Table(title=title)
    for column in ("account", "polled", "new", "changed", "requests", "retries", "429s", "state"):
        table.add_column(column, justify="left" if column in ("account", "state") else "right")
    for name, status in sorted(poller.status().items()):
        if status.cycles == 0:
            state = "[dim]starting[/]"
        elif status.consecutive_failures:
            error = status.last_error
            text = f"{type(error).__name__}: {error}" if error else "failing"
            state = f"[red]{escape(text)}[/]"  # the provider's text is data, not markup
        else:
            state = "[green]ok[/]"
        table.add_row(
            escape(name),
            str(status.cycles),
            str(status.new),
            str(status.changed),
            str(status.requests),
            str(status.retries),
            str(status.rate_limited),
            state,
        )
    return table
