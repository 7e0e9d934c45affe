"""`infobip-voicelogs report`: spend, delivery rates, durations, errors and countries."""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path

import orjson
import typer
from rich.console import Console
from rich.table import Table

from ..analytics import Report
from ..analytics import report as compute_report
from .common import fail, stderr
from .export import ACCOUNTS, SINCE, STORE, UNTIL, refusals, window

__all__ = ["report"]


def report(
    store_spec: str = STORE,
    since: str | None = SINCE,
    until: str | None = UNTIL,
    account: list[str] = ACCOUNTS,
    output: str | None = typer.Option(
        None,
        "--format",
        metavar="<table|json>",
        help="Default: tables on a terminal, JSON when piped.",
    ),
    html: Path | None = typer.Option(
        None, "--html", help="Also write the report as one self-contained HTML page with charts."
    ),
) -> None:
    """Report spend, delivery rates, durations, errors and countries, computed in the database."""
    if output not in (None, "table", "json"):
        fail(f"--format: {output!r} is not one of table, json")
    store, start, end = window(store_spec, since, until)
    with refusals(store):
        figures = compute_report(store.target, since=start, until=end, accounts=account)
    if html is not None:
        try:
            html.write_text(figures.to_html(), encoding="utf-8")
        except OSError as exc:
            fail(f"--html: cannot write {str(html)!r}: {exc.strerror or exc}")
    if figures.empty:
        stderr.print("no data: no archived message in this window")
    fmt = output or ("table" if sys.stdout.isatty() else "json")
    if fmt == "json":
        sys.stdout.write(orjson.dumps(figures.to_dict(), option=orjson.OPT_INDENT_2).decode())
        sys.stdout.write("\n")
    elif not figures.empty:
        _tables(figures, Console())


def _tables(figures: Report, console: Console) -> None:
    days = Table(title="Spend and delivery per account and day (UTC)")
    for name in ("account", "day", "currency", "calls", "final", "delivered", "spend"):
        days.add_column(
            name, justify="right" if name in ("calls", "final", "delivered", "spend") else "left"
        )
    for r in figures.by_account_day:
        days.add_row(
            r.account, _day(r.day), r.currency or "-", str(r.calls), str(r.final),
            str(r.delivered), format(r.spend, "f"),
        )  # fmt: skip
    console.print(days)
    countries = Table(title="Per country (the MCC's)")
    for name in ("country", "currency", "calls", "delivered", "spend"):
        countries.add_column(
            name, justify="right" if name in ("calls", "delivered", "spend") else "left"
        )
    for c in figures.by_country:
        countries.add_row(
            c.country or "unknown", c.currency or "-", str(c.calls), str(c.delivered),
            format(c.spend, "f"),
        )  # fmt: skip
    console.print(countries)
    rates = Table(title="Delivery rate per day (delivered / final)")
    for name in ("day", "calls", "final", "delivered", "rate"):
        rates.add_column(name, justify="left" if name == "day" else "right")
    for d in figures.by_day:
        rate = "-" if d.delivery_rate is None else f"{d.delivery_rate:.1%}"
        rates.add_row(_day(d.day), str(d.calls), str(d.final), str(d.delivered), rate)
    console.print(rates)
    errors = Table(title="Errors")
    for name in ("error group", "error", "count"):
        errors.add_column(name, justify="right" if name == "count" else "left")
    for e in figures.errors:
        errors.add_row(e.error_group or "-", e.error_name or "-", str(e.count))
    console.print(errors)
    durations = Table(title="Call durations")
    durations.add_column("seconds")
    durations.add_column("calls", justify="right")
    for b in figures.durations:
        durations.add_row(f"{b.low}-{b.high}" if b.high is not None else f"{b.low}+", str(b.count))
    console.print(durations)
    totals = ", ".join(f"{format(v, 'f')} {k or '(no price)'}" for k, v in figures.spend().items())
    console.print(f"total spend: {totals}", highlight=False)


def _day(value: datetime | object) -> str:
    return "-" if value is None else str(value)
