"""The query string of `GET /tts/3/logs`, read and checked the way the provider does.

Anything the provider would refuse raises `BadQuery` (the fake answers 400 with its
text); unknown parameters are ignored, as the provider ignores them.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from datetime import datetime

import attrs

from ..codec import parse_wire_timestamp
from ..models import MAX_PAGE_SIZE, GeneralStatus, VoiceLog

__all__ = ["DEFAULT_LIMIT", "BadQuery", "LogFilter", "parse_query", "query_dict"]

#: How many logs the provider returns when the request gives no `limit`.
DEFAULT_LIMIT = 50


class BadQuery(ValueError):
    """A query parameter the provider would refuse; the message is the 400 body's text."""


def query_dict(query_string: bytes) -> dict[str, str]:
    """The query parameters, percent-decoded (the last value of a repeated name wins)."""
    text = query_string.decode("latin-1")
    return dict(urllib.parse.parse_qsl(text, keep_blank_values=True))


@attrs.frozen
class LogFilter:
    """What a request asks for; `matches` says whether a log (in its current state) fits."""

    from_: str | None = None
    to: str | None = None
    bulk_ids: frozenset[str] = frozenset()
    message_ids: frozenset[str] = frozenset()
    general_status: GeneralStatus | None = None
    sent_since: datetime | None = None
    sent_until: datetime | None = None
    mcc: str | None = None
    mnc: str | None = None
    limit: int = DEFAULT_LIMIT

    def matches(self, log: VoiceLog) -> bool:
        """Whether `log` passes every filter but the time bounds (applied by the caller)."""
        mccmnc = log.mccmnc or ""
        return (
            (self.from_ is None or log.from_ == self.from_)
            and (self.to is None or log.to == self.to)
            and (not self.bulk_ids or log.bulk_id in self.bulk_ids)
            and (not self.message_ids or log.message_id in self.message_ids)
            and (self.general_status is None or log.general_status is self.general_status)
            and (self.mcc is None or mccmnc[:3] == self.mcc)
            and (self.mnc is None or mccmnc[3:] == self.mnc)
        )


def parse_query(params: Mapping[str, str]) -> LogFilter:
    """Read the parameters of a logs request into a `LogFilter`; `BadQuery` if refused."""
    return LogFilter(
        from_=params.get("from") or None,
        to=params.get("to") or None,
        bulk_ids=_id_list(params.get("bulkId")),
        message_ids=_id_list(params.get("messageId")),
        general_status=_general_status(params.get("generalStatus")),
        sent_since=_timestamp("sentSince", params.get("sentSince")),
        sent_until=_timestamp("sentUntil", params.get("sentUntil")),
        mcc=_digits("mcc", params.get("mcc")),
        mnc=_digits("mnc", params.get("mnc")),
        limit=_limit(params.get("limit")),
    )


def _id_list(value: str | None) -> frozenset[str]:
    if not value:
        return frozenset()
    return frozenset(item.strip() for item in value.split(",") if item.strip())


def _general_status(value: str | None) -> GeneralStatus | None:
    if not value:
        return None
    try:
        return GeneralStatus(value.upper())
    except ValueError:
        raise BadQuery(f"Invalid value for parameter generalStatus: {value!r}") from None


def _timestamp(name: str, value: str | None) -> datetime | None:
    if value is None or value == "":
        return None
    # An unencoded `+` in a query string reads as a space (form encoding); take it back.
    candidate = value.strip().replace(" ", "+")
    try:
        return parse_wire_timestamp(candidate)
    except ValueError:
        raise BadQuery(
            f"Invalid value for parameter {name}: {value!r}, "
            "expected yyyy-MM-dd'T'HH:mm:ss.SSS±hh:mm"
        ) from None


def _digits(name: str, value: str | None) -> str | None:
    if not value:
        return None
    if not (value.isascii() and value.isdigit()):
        raise BadQuery(f"Invalid value for parameter {name}: {value!r}")
    return value


def _limit(value: str | None) -> int:
    if value is None or value == "":
        return DEFAULT_LIMIT
    try:
        limit = int(value)
    except ValueError:
        raise BadQuery(f"Invalid value for parameter limit: {value!r}") from None
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise BadQuery(f"Invalid value for parameter limit: {limit}, must be 1 to {MAX_PAGE_SIZE}")
    return limit
