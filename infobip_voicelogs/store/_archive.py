"""The archive's rows: one mapping, both ways, for every store that keeps the archive.

Both stores give the `voice_logs` table the same columns; they differ only in how a
timestamp is written and comes back (SQLite: text; PostgreSQL: a `timestamptz`), which
the caller does. A row is written from a log or from a delivery report (`archive_values`):
each fills the columns it has and leaves the others `None`, which the upserts keep
(`COALESCE`), so a row holds what both sources brought.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Protocol

from ..models import ErrorInfo, Price, Status, VoiceLog

if TYPE_CHECKING:
    from ..reports import VoiceReport
    from .base import Item

#: The columns of one state (status, error, price): written whole by the newer state, never
#: merged with an older one's.
ARCHIVE_STATE_COLUMNS = (
    "price_per_second", "currency", "status_group", "status_group_name", "status_group_id",
    "status_id", "status_name", "status_description", "status_action", "error_group_id",
    "error_group_name", "error_id", "error_name", "error_description", "error_permanent",
)  # fmt: skip
#: Every column `archive_values` gives, in the tables' order (`account`, `first_seen_at`
#: and `updated_at` are the store's).
ARCHIVE_VALUE_COLUMNS = (
    "message_id", "bulk_id", "to_number", "from_sender", "text", "sent_at", "done_at",
    "duration", "mccmnc", *ARCHIVE_STATE_COLUMNS, "source", "callback_data",
    "call_started_at", "call_answered_at", "call_ended_at", "charged_duration",
    "answered_by", "report",
)  # fmt: skip


def archive_values(item: Item) -> dict[str, Any]:
    """The archive's columns for a log or a report, datetimes as they are, absent as `None`.

    `report` is the report's `to_dict()` (its every field, in its provider JSON shape);
    the caller stores it as JSON text or `jsonb`.
    """
    price, status, error = item.price, item.status, item.error
    group = status.group if status is not None else None
    values: dict[str, Any] = {
        "message_id": item.message_id,
        "bulk_id": item.bulk_id,
        "to_number": item.to,
        "from_sender": item.from_,
        "sent_at": item.sent_at,
        "done_at": item.done_at,
        "price_per_second": None if price is None else str(price.per_second),  # exact text
        "currency": None if price is None else price.currency,
        "status_group": None if group is None else group.value,
        "status_group_name": None if status is None else status.group_name,
        "status_group_id": None if status is None else status.group_id,
        "status_id": None if status is None else status.id,
        "status_name": None if status is None else status.name,
        "status_description": None if status is None else status.description,
        "status_action": None if status is None else status.action,
        "error_group_id": None if error is None else error.group_id,
        "error_group_name": None if error is None else error.group_name,
        "error_id": None if error is None else error.id,
        "error_name": None if error is None else error.name,
        "error_description": None if error is None else error.description,
        "error_permanent": None if error is None else error.permanent,
        "source": item.source,
    }
    if isinstance(item, VoiceLog):
        values.update(text=item.text, duration=item.duration, mccmnc=item.mccmnc)
    else:
        values.update(_report_values(item))
    return {column: values.get(column) for column in ARCHIVE_VALUE_COLUMNS}


def _report_values(report: VoiceReport) -> dict[str, Any]:
    """A report's own columns: its call (from `voice_call`, or the flat shape's top)."""
    call = report.voice_call
    return {
        "duration": report.duration if call is None else call.duration,
        "mccmnc": report.mcc_mnc,
        "callback_data": report.callback_data,
        "call_started_at": report.start_time if call is None else call.start_time,
        "call_answered_at": report.answer_time if call is None else call.answer_time,
        "call_ended_at": report.end_time if call is None else call.end_time,
        "charged_duration": None if call is None else call.charged_duration,
        "answered_by": None if call is None else call.answered_by,
        "report": report.to_dict(),
    }


class Row(Protocol):
    """A row by column name (`sqlite3.Row`, a psycopg dict row)."""

    def __getitem__(self, column: str, /) -> Any: ...


def log_from_row(row: Row, when: Callable[[Any], datetime]) -> VoiceLog:
    """The `VoiceLog` a `voice_logs` row was written from; `when` reads a stored time."""
    sent_at, done_at, permanent = row["sent_at"], row["done_at"], row["error_permanent"]
    return VoiceLog(
        bulk_id=row["bulk_id"],
        message_id=row["message_id"],
        to=row["to_number"],
        from_=row["from_sender"],
        text=row["text"],
        sent_at=None if sent_at is None else when(sent_at),
        done_at=None if done_at is None else when(done_at),
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
                permanent=None if permanent is None else bool(permanent),
            )
        ),
    )
