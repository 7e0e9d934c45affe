"""The live per-account table that `poll` and `demo` draw on stderr."""

from __future__ import annotations

from rich.markup import escape
from rich.table import Table

from ..poller import LogsPoller

__all__ = ["status_table"]


_COLUMNS = ("account", "polled", "new", "changed", "requests", "retries", "429s")


def status_table(poller: LogsPoller, title: str = "accounts", *, reports: bool = False) -> Table:
    """One row per account: cycles, new, changed, requests, retries, 429s, last error; with
    `reports`, also whether its delivery reports flow and how many the webhooks lost."""
    # Paddings collapsed and no outer edge: ten columns fit 80 without cutting a header.
    table = Table(title=title, collapse_padding=True, show_edge=False, pad_edge=False)
    # With reports: one column, so the table still fits 80 columns.
    columns = (*_COLUMNS, *(("reports",) if reports else ()), "state")
    for column in columns:
        left = column in ("account", "state", "reports")
        table.add_column(column, justify="left" if left else "right", no_wrap=left)
    for name, status in sorted(poller.status().items()):
        if status.cycles == 0:
            state = "[dim]starting[/]"
        elif status.consecutive_failures:
            error = status.last_error
            text = f"{type(error).__name__}: {error}" if error else "failing"
            state = f"[red]{escape(text)}[/]"  # the provider's text is data, not markup
        else:
            state = "[green]ok[/]"
        cells = [
            escape(name),
            str(status.cycles),
            str(status.new),
            str(status.changed),
            str(status.requests),
            str(status.retries),
            str(status.rate_limited),
        ]
        if reports:
            cells.append(_reports_cell(status.reports_flowing, status.webhook_lost))
        table.add_row(*cells, state)
    return table


def _reports_cell(flowing: bool, lost: int) -> str:
    """Whether the account's reports flow (its logs only reconcile), and how many final
    states the logs found that no report brought (`webhook_lost`)."""
    state = "[green]on[/]" if flowing else "[dim]off[/]"
    return f"{state} {lost} lost"
