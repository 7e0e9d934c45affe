"""Between `VoiceLog`s and PostgreSQL: a batch as one array per column, a row back as a log.

A batch is sent as arrays and turned into rows by `unnest()` on the server: one statement
per table for a whole batch, which is what makes 1,000-log commits fast.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from ..models import ErrorInfo, Price, Status, VoiceLog
from ..store.base import Delivered

__all__ = [
    "archive_arrays",
    "fingerprint_arrays",
    "latest_per_message",
    "log_from_row",
    "utc",
]


def utc(value: datetime, *, milliseconds: bool = False) -> datetime:
    """`value` in UTC, refused if naive; `milliseconds` truncates to the archive's precision."""
    if value.utcoffset() is None:
        raise ValueError(f"{value!r} is naive; the store takes aware datetimes only")
    value = value.astimezone(UTC)
    if milliseconds:
        value = value.replace(microsecond=value.microsecond // 1000 * 1000)
    return value


def _ms(value: datetime | None) -> datetime | None:
    return None if value is None else utc(value, milliseconds=True)


def latest_per_message(delivered: Sequence[Delivered]) -> list[Delivered]:
    """The batch with each message once, its last occurrence winning, as in `SqliteStore`."""
    last: dict[str, Delivered] = {}
    for item in delivered:
        assert item.log.message_id is not None  # Delivered checks it on construction
        last[item.log.message_id] = item
    return list(last.values())


def fingerprint_arrays(batch: Sequence[Delivered]) -> tuple[list[Any], ...]:
    """The message ids, fingerprints and sent times of a batch, one list each."""
    return (
        [item.log.message_id for item in batch],
        [item.fingerprint for item in batch],
        [_ms(item.log.sent_at) for item in batch],
    )


def archive_arrays(batch: Sequence[Delivered]) -> list[list[Any]]:
    """The archive columns of a batch (`_schema.ARCHIVE_ARRAYS` order), one list each."""
    rows = [_archive_row(item.log) for item in batch]
    return [list(column) for column in zip(*rows, strict=True)]


def _archive_row(log: VoiceLog) -> tuple[Any, ...]:
    price, status, error = log.price, log.status, log.error
    group = status.group if status is not None else None
    return (
        log.message_id,
        log.bulk_id,
        log.to,
        log.from_,
        log.text,
        _ms(log.sent_at),
        _ms(log.done_at),
        log.duration,
        log.mccmnc,
        None if price is None else str(price.per_second),  # the exact decimal, as text
        None if price is None else price.currency,
        None if group is None else group.value,
        None if status is None else status.group_name,
        None if status is None else status.group_id,
        None if status is None else status.id,
        None if status is None else status.name,
        None if status is None else status.description,
        None if status is None else status.action,
        None if error is None else error.group_id,
        None if error is None else error.group_name,
        None if error is None else error.id,
        None if error is None else error.name,
        None if error is None else error.description,
        None if error is None else error.permanent,
    )


def log_from_row(row: Mapping[str, Any]) -> VoiceLog:
    """The `VoiceLog` a `voice_logs` row was written from."""
    return VoiceLog(
        bulk_id=row["bulk_id"],
        message_id=row["message_id"],
        to=row["to_number"],
        from_=row["from_sender"],
        text=row["text"],
        sent_at=None if row["sent_at"] is None else utc(row["sent_at"]),
        done_at=None if row["done_at"] is None else utc(row["done_at"]),
        duration=row["duration"],
        mccmnc=row["mccmnc"],
        price=(
            None
            if row["price_per_second"] is None
            else Price(per_second=Decimal(row["price_per_second"]), currency=row["currency"])
        ),
        status=(
            None
            if row["status_id"] is None
            else Status(
                group_id=row["status_group_id"],
                group_name=row["status_group_name"],
                id=row["status_id"],
                name=row["status_name"],
                description=row["status_description"],
                action=row["status_action"],
            )
        ),
        error=(
            None
            if row["error_id"] is None
            else ErrorInfo(
                group_id=row["error_group_id"],
                group_name=row["error_group_name"],
                id=row["error_id"],
                name=row["error_name"],
                description=row["error_description"],
                permanent=row["error_permanent"],
            )
        ),
    )
