"""Timestamps as the provider writes them: `2015-02-23T17:40:31.773+0100` and its variants."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from .._time import format_offset

__all__ = ["format_wire_timestamp", "fromisoformat", "parse_wire_timestamp"]

# Full date, time with seconds, optional fraction, and an offset: fromisoformat alone would
# also take a bare date or a naive time, which the provider never means.
_TIMESTAMP = re.compile(
    r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,9})?(?:Z|[+-]\d\d:?\d\d)", re.ASCII
)

#: The parser the generated hooks inline (after their own cheaper shape check).
fromisoformat = datetime.fromisoformat


def parse_wire_timestamp(s: str) -> datetime:
    """Read a timestamp in any form the provider writes; the result is always aware.

    Accepts offsets `+0100`, `+01:00` and `Z`, with or without a fraction of a second
    (digits beyond microseconds are dropped). Raises `ValueError` for anything else.

    >>> parse_wire_timestamp("2015-02-23T17:40:31.773+0100").isoformat()
    '2015-02-23T17:40:31.773000+01:00'
    """
    if _TIMESTAMP.fullmatch(s) is None:
        raise ValueError(f"{s!r} is not a timestamp")
    # Checked first: fromisoformat alone also takes `2015-02-23` (naive) or `20150223T1740`.
    # It drops fraction digits beyond microseconds by itself.
    return fromisoformat(s)


def format_wire_timestamp(dt: datetime) -> str:
    """Write an aware datetime the way the provider's responses do: ms and `+hhmm`.

    Sub-millisecond digits are dropped (the wire has none). Raises `ValueError` for a
    naive datetime or an offset that is not a whole number of minutes.

    >>> from datetime import datetime, timedelta, timezone
    >>> format_wire_timestamp(datetime(2015, 2, 23, 17, 40, 31, 773000,
    ...                                tzinfo=timezone(timedelta(hours=1))))
    '2015-02-23T17:40:31.773+0100'
    """
    offset = dt.utcoffset()
    if offset is None:
        raise ValueError(f"{dt!r} is naive; the wire needs an offset")
    if offset % timedelta(minutes=1):
        raise ValueError(f"{dt!r} has an offset the wire cannot write (seconds)")
    return (
        f"{dt.year:04d}-{dt.month:02d}-{dt.day:02d}T{dt.hour:02d}:{dt.minute:02d}:"
        f"{dt.second:02d}.{dt.microsecond // 1000:03d}{format_offset(offset, colon=False)}"
    )
