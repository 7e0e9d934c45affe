"""The Parquet side of `export` (pyarrow, the `parquet` extra): one row group per chunk."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

try:
    import pyarrow as pa
    import pyarrow.parquet as pq
except ImportError:  # pragma: no cover - depends on the install
    raise ImportError(
        "writing Parquet needs the parquet extra: pip install 'infobip-voicelogs[parquet]'"
    ) from None

from ..errors import StoreError

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


def parquet_writer(path: Path, chunks: Iterable[list[list[Any]]]) -> int:
    """Write the chunks (rows of `COLUMNS`) to `path` as Parquet; the number of rows."""
    written = 0
    with pq.ParquetWriter(path, SCHEMA, compression="zstd") as writer:
        for rows in chunks:
            columns = list(zip(*rows, strict=True))
            try:
                arrays = [
                    pa.array(values, field.type)
                    for values, field in zip(columns, SCHEMA, strict=True)
                ]
            except pa.ArrowInvalid as exc:
                raise StoreError(f"a value does not fit the Parquet schema: {exc}") from None
            writer.write_table(pa.Table.from_arrays(arrays, schema=SCHEMA))
            written += len(rows)
        if written == 0:  # the header alone: the schema, no row group
            writer.write_table(SCHEMA.empty_table())
    return written
