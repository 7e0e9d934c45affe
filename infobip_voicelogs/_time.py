"""Time: the provider's retention, its millisecond precision, and the helpers every layer shares.

Only the standard library: the models, the codec, the fetcher, the poller and the stores all
read their time constants and helpers from here, so each exists once.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

#: How long the provider keeps a log.
RETENTION = timedelta(hours=48)
#: The provider's precision, and the step a window walk moves by.
MILLISECOND = timedelta(milliseconds=1)


def utc_now() -> datetime:
    """Now, as an aware datetime in UTC (the default clock everywhere)."""
    return datetime.now(UTC)


def seconds(value: float | timedelta) -> float:
    """A duration given as seconds or as a `timedelta`, in seconds.

    >>> seconds(timedelta(minutes=1)), seconds(2)
    (60.0, 2.0)
    """
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


def require_aware(value: datetime, why: str) -> timedelta:
    """`value`'s UTC offset; `ValueError` saying it is naive, and `why` that matters, if it
    has none. Every layer that refuses naive datetimes (the wire, the stores) says so here.

    >>> require_aware(datetime(2024, 1, 1, tzinfo=UTC), "the wire needs an offset")
    datetime.timedelta(0)
    >>> require_aware(datetime(2024, 1, 1), "the wire needs an offset")
    Traceback (most recent call last):
    ValueError: datetime.datetime(2024, 1, 1, 0, 0) is naive; the wire needs an offset
    """
    offset = value.utcoffset()
    if offset is None:
        raise ValueError(f"{value!r} is naive; {why}")
    return offset


def floor_ms(value: datetime) -> datetime:
    """`value` with its sub-millisecond digits dropped.

    >>> floor_ms(datetime(2015, 2, 23, 17, 40, 31, 773999, tzinfo=UTC)).microsecond
    773000
    """
    return value.replace(microsecond=value.microsecond - value.microsecond % 1000)


def format_offset(offset: timedelta, *, colon: bool) -> str:
    """A UTC offset in whole minutes as `+hh:mm` (``colon=True``) or `+hhmm`.

    The provider's query parameters want the colon; its responses write none.

    >>> format_offset(timedelta(hours=-5, minutes=-30), colon=True)
    '-05:30'
    >>> format_offset(timedelta(hours=1), colon=False)
    '+0100'
    """
    minutes = int(offset.total_seconds()) // 60
    sign = "+" if minutes >= 0 else "-"
    hours, minutes = divmod(abs(minutes), 60)
    return f"{sign}{hours:02d}{':' if colon else ''}{minutes:02d}"


def format_wire_timestamp(dt: datetime) -> str:
    """Write an aware datetime the way the provider's responses do: ms and `+hhmm`.

    Sub-millisecond digits are dropped (the wire has none). Raises `ValueError` for a
    naive datetime or an offset that is not a whole number of minutes.

    >>> from datetime import datetime, timedelta, timezone
    >>> format_wire_timestamp(datetime(2015, 2, 23, 17, 40, 31, 773000,
    ...                                tzinfo=timezone(timedelta(hours=1))))
    '2015-02-23T17:40:31.773+0100'
    """
    offset = require_aware(dt, "the wire needs an offset")
    if offset % timedelta(minutes=1):
        raise ValueError(f"{dt!r} has an offset the wire cannot write (seconds)")
    return (
        f"{dt.year:04d}-{dt.month:02d}-{dt.day:02d}T{dt.hour:02d}:{dt.minute:02d}:"
        f"{dt.second:02d}.{dt.microsecond // 1000:03d}{format_offset(offset, colon=False)}"
    )
