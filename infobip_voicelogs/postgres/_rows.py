"""Between `VoiceLog`s and PostgreSQL: a batch as one JSON document, a row back as a log.

A batch goes to the server as one JSON array of objects, turned into rows there by
`json_to_recordset()`: one parameter and one statement for 1,000 logs. orjson writes the
document in about a millisecond; psycopg's text dumping of 25 arrays took ten times that.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
from psycopg.adapt import Dumper

from .._time import floor_ms, require_aware
from ..errors import StoreError
from ..store.base import Delivered
from ..store.kit import archive_values


class Document(str):
    """A JSON text of the store's own making (orjson's), sent to the server dollar-quoted.

    Calls are bound on the client; libpq's escaping of a 1,000-log batch (half a megabyte)
    costs about 3 ms, where a dollar-quoted literal needs no escaping at all: only a tag
    that does not occur in the text.
    """


class DocumentDumper(Dumper):
    """Quotes a `Document` as `$d$...$d$`, with a tag the text does not contain."""

    def dump(self, obj: Any) -> bytes:
        return str(obj).encode(self._codec())

    def quote(self, obj: Any) -> bytes:
        text, n = str(obj), 0
        tag = "$d$"
        while tag in text:  # never in orjson's output in practice, but never trusted
            n += 1
            tag = f"$d{n}$"
        return f"{tag}{text}{tag}".encode(self._codec())

    def _codec(self) -> str:
        return self.connection.info.encoding if self.connection is not None else "utf-8"


def utc(value: datetime, *, milliseconds: bool = False) -> datetime:
    """`value` in UTC, refused if naive; `milliseconds` truncates to the archive's precision."""
    require_aware(value, "the store takes aware datetimes only")
    value = value.astimezone(UTC)
    return floor_ms(value) if milliseconds else value


def _aware(value: datetime | None) -> datetime | None:
    # Sent as written, offset and all; the server truncates to milliseconds.
    if value is not None:
        require_aware(value, "the store takes aware datetimes only")
    return value


def latest_per_message(delivered: Sequence[Delivered]) -> list[Delivered]:
    """The batch with each message once, its last occurrence winning, as in `SqliteStore`."""
    last: dict[str, Delivered] = {}
    for item in delivered:
        assert item.item.message_id is not None  # Delivered checks it on construction
        last[item.item.message_id] = item
    return list(last.values())


def batch_document(batch: Sequence[Delivered], *, archive: bool) -> Document:
    """The batch as the JSON array `_schema.BATCH_FIELDS` reads; naive datetimes refused."""
    rows = [_archive_row(item) if archive else _fingerprint_row(item) for item in batch]
    try:
        return Document(orjson.dumps(rows).decode())
    except orjson.JSONEncodeError as exc:  # an integer beyond 64 bits, a lone surrogate
        raise StoreError(f"cannot commit a batch: a value cannot be stored: {exc}") from None


def _fingerprint_row(item: Delivered) -> dict[str, Any]:
    log = item.item
    return {
        "message_id": log.message_id,
        "fingerprint": item.fingerprint,
        "sent_at": _aware(log.sent_at),
    }


def _archive_row(item: Delivered) -> dict[str, Any]:
    values = archive_values(item.item)
    for column, value in values.items():
        if isinstance(value, datetime):
            values[column] = _aware(value)
    values["fingerprint"] = item.fingerprint
    return values
