"""The Parquet side of `export` (pyarrow, the `parquet` extra): one row group per chunk."""

from __future__ import annotations

import decimal
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

try:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq
except ImportError:  # pragma: no cover - depends on the install
    raise ImportError(
        "writing Parquet needs the parquet extra: pip install 'infobip-voicelogs[parquet]'"
    ) from None

from ..errors import StoreError
from ..store._countries import mcc_countries

__all__ = ["SCHEMA", "parquet_writer"]

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
_PRICE = pa.decimal128(28, 12)
# The product of a price and a count of seconds, before it is cast (exactly) to the cost's
# type: Arrow sizes a product's precision as the sum of both, so the price goes narrower.
_WIDE = pa.decimal128(18, 12)


def parquet_writer(path: Path, batches: Iterable[list[tuple[Any, ...]]], kind: str) -> int:
    """Write the archive's rows (`_export._READ`'s columns) to `path`; the number of rows.

    Column by column: Arrow parses the SQLite file's timestamp and price text, and computes
    each cost as a `decimal128` product, so no Python object is made per value.
    """
    written = 0
    countries = mcc_countries()
    with pq.ParquetWriter(path, SCHEMA, compression="zstd") as writer:
        for batch in batches:
            columns = list(zip(*batch, strict=True))
            try:
                writer.write_table(_table(columns, kind, countries))
            except (pa.ArrowInvalid, decimal.InvalidOperation) as exc:
                raise StoreError(f"a value does not fit the Parquet schema: {exc}") from None
            written += len(batch)
        if written == 0:  # the header alone: the schema, no row group
            writer.write_table(SCHEMA.empty_table())
    return written


def _table(columns: list[tuple[Any, ...]], kind: str, countries: Mapping[str, str]) -> pa.Table:
    arrays: list[pa.Array[Any]] = []
    price = _PRICE
    for index, field in enumerate(SCHEMA):
        values = columns[index]
        if field.name == "country":
            mccs = columns[SCHEMA.get_field_index("mccmnc")]
            arrays.append(pa.array([None if m is None else countries.get(m[:3]) for m in mccs]))
        elif field.name == "cost":
            prices = arrays[SCHEMA.get_field_index("price_per_second")].cast(_WIDE)
            seconds = pa.array(values, pa.int64()).cast(pa.decimal128(19, 0))
            arrays.append(pc.multiply(prices, seconds).cast(field.type))
        elif kind == "sqlite" and field.name == "error_permanent":
            arrays.append(pa.array(values, pa.int8()).cast(field.type))
        elif kind == "sqlite" and field.type in (_TIME, price):
            arrays.append(pa.array(values, pa.string()).cast(field.type))
        else:
            arrays.append(pa.array(values, field.type))
    return pa.Table.from_arrays(arrays, schema=SCHEMA)
