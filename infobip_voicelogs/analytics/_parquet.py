"""The Parquet side of `export` (pyarrow, the `parquet` extra): one row group per chunk."""

from __future__ import annotations

import decimal
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

try:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pcsv
    import pyarrow.json as pj
    import pyarrow.parquet as pq
except ImportError:  # pragma: no cover - depends on the install
    raise ImportError(
        "writing Parquet needs the parquet extra: pip install 'infobip-voicelogs[parquet]'"
    ) from None

from ..errors import StoreError
from ..store.kit import mcc_countries
from ._columns import COLUMNS, READ
from ._source import Archive

_TIME = pa.timestamp("ms", tz="UTC")
#: Prices are exact to 12 decimals, costs to the same scale (a price with more decimals is
#: refused, never rounded).
_FIELDS: list[tuple[str, pa.DataType]] = [
        ("account", pa.string()), ("message_id", pa.string()), ("bulk_id", pa.string()),
        ("from", pa.string()), ("to", pa.string()), ("sent_at", _TIME), ("done_at", _TIME),
        ("duration", pa.int64()), ("charged_duration", pa.int64()), ("mccmnc", pa.string()),
        ("country", pa.string()), ("price_per_second", pa.decimal128(28, 12)),
        ("currency", pa.string()), ("cost", pa.decimal128(38, 12)),
        ("status_group", pa.string()), ("status_name", pa.string()),
        ("error_group", pa.string()), ("error_name", pa.string()),
        ("error_permanent", pa.bool_()), ("source", pa.string()), ("callback_data", pa.string()),
]  # fmt: skip
SCHEMA = pa.schema(_FIELDS)
# The product of a price and a count of seconds, before it is cast (exactly) to the cost's
# type: Arrow sizes a product's precision as the sum of both, so the price goes narrower.
_WIDE = pa.decimal128(18, 12)


def parquet_writer(path: Path, tables: Iterable[pa.Table]) -> int:
    """Write `tables` (of `read_tables`) to `path`, one row group each; the number of rows."""
    written = 0
    with pq.ParquetWriter(path, SCHEMA, compression="zstd") as writer:
        for table in tables:
            writer.write_table(table)
            written += table.num_rows
        if written == 0:  # the header alone: the schema, no row group
            writer.write_table(SCHEMA.empty_table())
    return written


def read_tables(
    archive: Archive, where: str, params: Sequence[Any], *, chunk: int
) -> Iterator[pa.Table]:
    """The archive's rows in the window as tables of `SCHEMA`, of about `chunk` rows each.

    No Python object is made per value: SQLite writes each chunk as JSON text and
    PostgreSQL streams CSV (`COPY`), which Arrow parses in C++, on threads, while the
    database prepares the next chunk. Arrow then parses the timestamps and prices and
    computes each cost as a `decimal128` product, and looks the countries up, column by
    column.
    """
    try:
        if archive.kind == "sqlite":
            schema = pa.schema(
                [(f"c{i}", _SQLITE_RAW.get(c, pa.string())) for i, c in enumerate(_RAW)]
            )
            options = pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="error")
            for text in archive.json_chunks(_RAW_SQL, where, params, chunk=chunk):
                yield _table(pj.read_json(_buffer(text), parse_options=options))
            return
        read = pcsv.ReadOptions(column_names=[f"c{i}" for i in range(len(_RAW))])
        convert = pcsv.ConvertOptions(
            column_types={f"c{i}": _POSTGRES_RAW.get(c, pa.string()) for i, c in enumerate(_RAW)},
            null_values=[""],  # COPY's NULL; an empty text is quoted ("")
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,
            true_values=["t"],
            false_values=["f"],
        )
        parse = pcsv.ParseOptions(newlines_in_values=True)
        for text in archive.csv_copy(_RAW_SQL, where, params, chunk=chunk):
            yield _table(
                pcsv.read_csv(
                    _buffer(text),
                    read_options=read,
                    parse_options=parse,
                    convert_options=convert,
                )
            )
    except (pa.ArrowInvalid, decimal.InvalidOperation) as exc:
        first = str(exc).strip().splitlines()[0]
        raise StoreError(f"a value does not fit the Parquet schema: {first}") from None


# The columns read: those of an export but the country (looked up here), the cost read as
# the seconds it is the price of.
_RAW = tuple(name for name in COLUMNS if name != "country")
_RAW_SQL = tuple(READ[COLUMNS.index(name)] for name in _RAW)
_SECONDS = ("duration", "charged_duration", "cost")
_SQLITE_RAW = {**dict.fromkeys(_SECONDS, pa.int64()), "error_permanent": pa.int64()}
_POSTGRES_RAW = {**dict.fromkeys(_SECONDS, pa.int64()), "error_permanent": pa.bool_()}


def _buffer(data: bytes) -> Any:
    """`data` for Arrow's readers to parse in place (their stubs name files only)."""
    return pa.py_buffer(data)


def _table(raw: pa.Table) -> pa.Table:
    """Raw columns (`_RAW`, as read) as a table of `SCHEMA`."""
    columns = dict(zip(_RAW, raw.columns, strict=True))
    arrays: list[Any] = []
    for field in SCHEMA:
        if field.name == "country":
            mcc = pc.utf8_slice_codeunits(columns["mccmnc"], 0, 3)
            arrays.append(_COUNTRY_NAMES.take(pc.index_in(mcc, value_set=_COUNTRY_MCCS)))
        elif field.name == "cost":
            prices = arrays[SCHEMA.get_field_index("price_per_second")].cast(_WIDE)
            seconds = columns["cost"].cast(pa.decimal128(19, 0))
            arrays.append(pc.multiply(prices, seconds).cast(field.type))
        elif field.type == _TIME:
            # via microseconds: a finer time is cut to the millisecond, never refused
            arrays.append(columns[field.name].cast(_MICROS).cast(_TIME, safe=False))
        else:
            arrays.append(columns[field.name].cast(field.type))
    return pa.Table.from_arrays(arrays, schema=SCHEMA)


_MICROS = pa.timestamp("us", tz="UTC")
_COUNTRY_MCCS = pa.array(list(mcc_countries()), pa.string())
_COUNTRY_NAMES = pa.array(list(mcc_countries().values()), pa.string())
