"""What the fetcher benchmarks serve: one JSON page of n realistic, fully set logs.

A helper, not a benchmark (the leading underscore keeps `nox -s bench` from running it).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from infobip_voicelogs import ErrorInfo, Price, Status, VoiceLog, encode_logs


def page(n: int = 50) -> bytes:
    """A `{"results": [...]}` body of `n` delivered logs, one second apart."""
    start = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    logs = [
        VoiceLog(
            bulk_id="06df139a-7eb5-4a6e-902e-40e892210455",
            message_id=f"1f21d8d7-f306-4f53-9f6e-{i:012d}",
            to="41793026727",
            from_="41793026700",
            text="Test voice message.",
            sent_at=start - timedelta(seconds=i),
            done_at=start - timedelta(seconds=i) + timedelta(seconds=30),
            duration=10,
            mccmnc="22801",
            price=Price(Decimal("0.01"), "EUR"),
            status=Status(3, "DELIVERED", 5, "DELIVERED_TO_HANDSET", "Message delivered"),
            error=ErrorInfo(0, "OK", 0, "NO_ERROR", "No Error", False),
        )
        for i in range(n)
    ]
    return encode_logs(logs, "json")
