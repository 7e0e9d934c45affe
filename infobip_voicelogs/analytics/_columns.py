"""The columns of an export, and what each is read from in the archive's table."""

from __future__ import annotations

#: The columns of an export, in order (CSV header, Parquet schema, NDJSON keys).
COLUMNS = (
    "account", "message_id", "bulk_id", "from", "to", "sent_at", "done_at", "duration",
    "charged_duration", "mccmnc", "country", "price_per_second", "currency", "cost",
    "status_group", "status_name", "error_group", "error_name", "error_permanent", "source",
    "callback_data",
)  # fmt: skip
# What is read from the archive's table, in COLUMNS' order: the same definitions as the
# `voice_log_costs` view, with the country (a look-up in the MCC list) and the cost (price
# x seconds, exact: SQLite has no decimal type) computed by the export, column by column.
READ = tuple(
    {
        "from": "from_sender",
        "to": "to_number",
        "country": "NULL",
        "cost": "COALESCE(charged_duration, duration)",
        "error_group": "error_group_name",
    }.get(c, c)
    for c in COLUMNS
)
