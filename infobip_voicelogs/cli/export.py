"""`infobip-voicelogs export`: every archived message, one row each, as CSV, NDJSON or Parquet."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import datetime

import typer

from ..analytics import export as export_rows
from ..analytics import format_of
from ..errors import InvalidQueryError, StoreError
from .backends import StoreSpec, parse_store
from .common import fail, parse_when, stderr

__all__ = ["ACCOUNTS", "SINCE", "STORE", "UNTIL", "export", "refusals", "window"]

# The options `export` and `report` share: which archive, which messages of it.
STORE = typer.Option(
    ...,
    "--store",
    help="The store: a SQLite file, or a postgresql:// URL or libpq connection string.",
)
SINCE = typer.Option(
    None, help="Only messages sent since then: ISO 8601 with offset, 'now', or a span like 2d."
)
UNTIL = typer.Option(None, help="Only messages sent until then (same forms).")
ACCOUNTS = typer.Option([], "--account", help="Only this account (repeatable).")


def window(
    store_spec: str, since: str | None, until: str | None
) -> tuple[StoreSpec, datetime | None, datetime | None]:
    """`--store`, `--since` and `--until` read (the times with fetch's syntax: ISO 8601,
    `now`, a span like 2h); a bad one is one line and exit 2."""
    try:
        store = parse_store(store_spec)
    except ValueError as exc:
        fail(str(exc))
    start = parse_when(since, option="--since") if since else None
    end = parse_when(until, option="--until") if until else None
    return store, start, end


@contextlib.contextmanager
def refusals(store: StoreSpec) -> Iterator[None]:
    """What the archive refuses (a window or an account) or fails at: one line, exit 2,
    the store shown without its password."""
    try:
        yield
    except InvalidQueryError as exc:
        fail(str(exc))
    except StoreError as exc:
        fail(str(exc).replace(store.target, store.shown))


def export(
    store_spec: str = STORE,
    out: str = typer.Option(
        ..., "--out", help="The file to write; - writes CSV or NDJSON to stdout."
    ),
    output: str | None = typer.Option(
        None,
        "--format",
        metavar="<csv|ndjson|parquet>",
        help="Default: from --out's extension (.csv, .ndjson, .parquet).",
    ),
    since: str | None = SINCE,
    until: str | None = UNTIL,
    account: list[str] = ACCOUNTS,
) -> None:
    """Export every archived message in its last state, one row each, with its cost and country."""
    store, start, end = window(store_spec, since, until)
    try:
        with refusals(store):
            written = export_rows(
                store.target, out, format=format_of(out, output), since=start, until=end,
                accounts=account,
            )  # fmt: skip
    except ImportError as exc:  # the parquet extra
        fail(str(exc))
    if written == 0:
        stderr.print("no data: no archived message in this window (the file has the header only)")
    elif out != "-":
        stderr.print(f"{written} messages written to {out}", highlight=False)
