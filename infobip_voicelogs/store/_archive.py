"""The archive's rows read back as logs: one mapping for every store that keeps the archive.

Both stores give the `voice_logs` table the same columns; they differ only in how a
timestamp comes back (SQLite: text; PostgreSQL: a `timestamptz`), which the caller says.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

from ..models import ErrorInfo, Price, Status, VoiceLog

__all__ = ["log_from_row"]


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
