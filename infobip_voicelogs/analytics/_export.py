"""`export`: every archived message in its last state, one row each, as CSV, NDJSON or Parquet.

Rows are read in chunks and written as they come, so memory stays flat whatever the size
of the archive. Money stays exact: decimal text in CSV and NDJSON, `decimal128` in Parquet.
"""

from __future__ import annotations

import csv
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import IO, Any, Literal

import orjson

from ..errors import InvalidQueryError
from ..store.kit import mcc_countries
from ._columns import COLUMNS, READ
from ._source import Archive, Window

ExportFormat = Literal["csv", "ndjson", "parquet"]

_MCC, _COUNTRY = COLUMNS.index("mccmnc"), COLUMNS.index("country")
_SENT, _DONE, _PRICE, _COST, _PERMANENT = (
    COLUMNS.index(c) for c in ("sent_at", "done_at", "price_per_second", "cost", "error_permanent")
)
_EXTENSIONS: dict[str, ExportFormat] = {
    ".csv": "csv", ".ndjson": "ndjson", ".jsonl": "ndjson", ".parquet": "parquet", ".pq": "parquet",
}  # fmt: skip


def format_of(out: str | os.PathLike[str], given: str | None = None) -> ExportFormat:
    """The format to write: `given`, else the one of `out`'s extension (`InvalidQueryError`)."""
    if given is not None:
        if given not in ("csv", "ndjson", "parquet"):
            raise InvalidQueryError(
                "format", f"unknown format {given!r}: use csv, ndjson or parquet"
            )
        return given  # type: ignore[return-value]
    if os.fspath(out) == "-":
        return "csv"
    suffix = Path(out).suffix.lower()
    if suffix not in _EXTENSIONS:
        raise InvalidQueryError(
            "format",
            f"cannot tell the format of {os.fspath(out)!r} from its extension: "
            "name it .csv, .ndjson or .parquet, or give the format",
        )
    return _EXTENSIONS[suffix]


def export(
    store: str | os.PathLike[str],
    out: str | os.PathLike[str] | IO[str],
    *,
    format: ExportFormat | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    accounts: Sequence[str] = (),
    schema: str = "public",
    chunk: int = 10_000,
) -> int:
    """Write every archived message sent in `[since, until]` to `out`; the number of rows.

    `store` is a `SqliteStore` file or a PostgreSQL URL / connection string (with its
    `schema`). `out` is a path (`"-"`: stdout) or an open text stream (CSV or NDJSON);
    the format is `format`, else the path's extension. A file is written whole or not at
    all: rows go to `<out>.part`, renamed when complete. Parquet needs the `parquet` extra.

    >>> export("voicelogs.db", "july.parquet", since=july, until=august)  # doctest: +SKIP
    120344

    Raises:
        InvalidQueryError: `since` after `until`, an unknown account or format.
        StoreError: no store there, or one that cannot be read.
    """
    window = Window(since, until, accounts)
    stream = out if not isinstance(out, str | os.PathLike) else None
    fmt = format_of("-" if stream is not None else out, format)  # type: ignore[arg-type]
    if fmt == "parquet":
        if stream is not None or os.fspath(out) == "-":  # type: ignore[arg-type]
            raise InvalidQueryError("format", "Parquet is written to a file, not to a stream")
        from ._parquet import parquet_writer, read_tables  # fails early, naming the extra
    with Archive(store, schema=schema) as archive:
        archive.check_accounts(window)
        where, params = archive.where(window)
        # In storage order: a sort would cost more than the rest of the export.
        sql = f"SELECT {', '.join(READ)} FROM {archive.table}{where}"
        chunks = (_rows(batch, archive.kind) for batch in archive.stream(sql, params, chunk=chunk))
        if stream is not None:
            return _write_text(fmt, chunks, stream)
        if os.fspath(out) == "-":  # type: ignore[arg-type]
            return _write_text(fmt, chunks, sys.stdout)
        path = Path(out)  # type: ignore[arg-type]
        part = path.with_name(path.name + ".part")
        try:
            if fmt == "parquet":
                written = parquet_writer(part, read_tables(archive, where, params, chunk=chunk))
            else:
                with part.open("w", encoding="utf-8", newline="") as file:
                    written = _write_text(fmt, chunks, file)
            part.replace(path)
        finally:
            part.unlink(missing_ok=True)
        return written


def _rows(batch: list[tuple[Any, ...]], kind: str) -> list[list[Any]]:
    """A chunk as rows of COLUMNS: times as aware UTC datetimes, money as `Decimal`."""
    prices: dict[Any, Decimal] = {}
    countries = mcc_countries()
    rows = []
    for raw in batch:
        row = list(raw)
        mccmnc = row[_MCC]
        row[_COUNTRY] = None if mccmnc is None else countries.get(mccmnc[:3])
        price, seconds = row[_PRICE], row[_COST]
        if price is not None:
            exact = prices.get(price)
            if exact is None:
                exact = prices[price] = Decimal(price)
            row[_PRICE] = exact
            row[_COST] = None if seconds is None else exact * seconds
        else:
            row[_COST] = None
        if kind == "sqlite":
            for i in (_SENT, _DONE):
                if row[i] is not None:
                    row[i] = datetime.fromisoformat(row[i])
            if row[_PERMANENT] is not None:
                row[_PERMANENT] = bool(row[_PERMANENT])
        rows.append(row)
    return rows


def _text(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return value


def _csv_value(value: Any) -> Any:
    if value is None:
        return ""
    if value is True or value is False:
        return "true" if value else "false"
    return _text(value)


def _write_text(fmt: ExportFormat, chunks: Iterable[list[list[Any]]], file: IO[str]) -> int:
    written = 0
    if fmt == "csv":
        writer = csv.writer(file, lineterminator="\n")
        writer.writerow(COLUMNS)
        for rows in chunks:
            writer.writerows([_csv_value(v) for v in row] for row in rows)
            written += len(rows)
    else:
        for rows in chunks:
            file.write(
                "".join(
                    orjson.dumps(
                        dict(zip(COLUMNS, map(_text, row), strict=True)),
                        option=orjson.OPT_APPEND_NEWLINE,
                    ).decode()
                    for row in rows
                )
            )
            written += len(rows)
    file.flush()
    return written


def iter_rows(
    store: str | os.PathLike[str],
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    accounts: Sequence[str] = (),
    schema: str = "public",
) -> Iterator[dict[str, Any]]:
    """The rows `export` writes, as dicts of Python values (`Decimal`, aware `datetime`)."""
    window = Window(since, until, accounts)
    with Archive(store, schema=schema) as archive:
        archive.check_accounts(window)
        where, params = archive.where(window)
        sql = f"SELECT {', '.join(READ)} FROM {archive.table}{where}"
        for batch in archive.stream(sql, params):
            for row in _rows(batch, archive.kind):
                yield dict(zip(COLUMNS, row, strict=True))
