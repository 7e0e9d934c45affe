"""The data: a voice log as the provider reports it, and the query that asks for logs.

Everything here is a frozen, slotted attrs class: immutable, hashable, comparable,
with a readable repr. Reading the wire lives in `codec`; this module parses nothing. It
only names each field's wire spelling (its `wire` metadata, which the codec reads too)
and writes a model as a plain dict in that shape (`to_dict`). Datetimes are always
timezone-aware.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, ClassVar, Literal

import attrs

from ._time import format_offset, format_wire_timestamp
from .defaults import MAX_PAGE_SIZE
from .errors import InvalidQueryError

__all__ = [
    "MAX_PAGE_SIZE",
    "ErrorInfo",
    "GeneralStatus",
    "LogsQuery",
    "Price",
    "Status",
    "VoiceLog",
    "format_query_timestamp",
]


class GeneralStatus(enum.StrEnum):
    """The status group of a voice message: the provider's `generalStatus`.

    The value is the wire name, so `GeneralStatus("DELIVERED") is GeneralStatus.DELIVERED`.
    """

    ACCEPTED = "ACCEPTED"
    PENDING = "PENDING"
    UNDELIVERABLE = "UNDELIVERABLE"
    DELIVERED = "DELIVERED"
    EXPIRED = "EXPIRED"
    REJECTED = "REJECTED"

    @property
    def is_final(self) -> bool:
        """Whether a log in this group can still change (`ACCEPTED` and `PENDING` can)."""
        return self not in (GeneralStatus.ACCEPTED, GeneralStatus.PENDING)


# The provider's status group ids, for a status whose group name is unusual.
_GROUP_BY_ID = {
    0: GeneralStatus.ACCEPTED,
    1: GeneralStatus.PENDING,
    2: GeneralStatus.UNDELIVERABLE,
    3: GeneralStatus.DELIVERED,
    4: GeneralStatus.EXPIRED,
    5: GeneralStatus.REJECTED,
}


#: The metadata key of a field's wire name, where it differs from the Python name.
WIRE = "wire"


def _wire_dict(model: Any) -> dict[str, Any]:
    """`model`'s fields by wire name, absent (`None`) ones left out, values JSON can hold."""
    out: dict[str, Any] = {}
    for field in attrs.fields(type(model)):
        value = getattr(model, field.name)
        if value is not None:
            out[field.metadata.get(WIRE, field.name)] = _wire_value(value)
    return out


def _wire_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return format_wire_timestamp(value)
    if isinstance(value, Decimal):
        # Text, digit for digit: a JSON number would become a float in most readers.
        if not value.is_finite():
            raise ValueError(f"{value} is not an amount the wire can carry")
        return str(value)
    if attrs.has(type(value)):
        return _wire_dict(value)
    return value


@attrs.frozen
class Price:
    """What a voice message costs: a money amount per second of call, never a float.

    >>> Price(Decimal("0.01"), "EUR")
    Price(per_second=Decimal('0.01'), currency='EUR')
    """

    per_second: Decimal = attrs.field(metadata={WIRE: "pricePerSecond"})
    currency: str

    def to_dict(self) -> dict[str, Any]:
        """The price in the provider's shape, the amount as exact text.

        >>> Price(Decimal("0.010"), "EUR").to_dict()
        {'pricePerSecond': '0.010', 'currency': 'EUR'}
        """
        return _wire_dict(self)


@attrs.frozen
class Status:
    """Where a message stands: its status group and the detailed status within it."""

    group_id: int = attrs.field(metadata={WIRE: "groupId"})
    group_name: str = attrs.field(metadata={WIRE: "groupName"})
    id: int
    name: str
    description: str | None = None
    action: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The status in the provider's shape; `description` and `action` left out if `None`.

        >>> Status(3, "DELIVERED", 5, "DELIVERED_TO_HANDSET").to_dict()
        {'groupId': 3, 'groupName': 'DELIVERED', 'id': 5, 'name': 'DELIVERED_TO_HANDSET'}
        """
        return _wire_dict(self)

    @property
    def group(self) -> GeneralStatus | None:
        """The status group as a `GeneralStatus`, or `None` for a group this library does not know.

        >>> Status(3, "DELIVERED", 5, "DELIVERED_TO_HANDSET").group
        <GeneralStatus.DELIVERED: 'DELIVERED'>
        """
        try:
            return GeneralStatus(self.group_name.upper())
        except ValueError:
            return _GROUP_BY_ID.get(self.group_id)


@attrs.frozen
class ErrorInfo:
    """The provider's error for a message; group `OK` (or `Ok`) means no error."""

    group_id: int = attrs.field(metadata={WIRE: "groupId"})
    group_name: str = attrs.field(metadata={WIRE: "groupName"})
    id: int
    name: str
    description: str | None = None
    permanent: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        """The error in the provider's shape; `description` and `permanent` left out if `None`."""
        return _wire_dict(self)

    @property
    def ok(self) -> bool:
        """Whether this is the provider's "no error" (group `OK`, whatever its case)."""
        return self.group_name.upper() == "OK"


@attrs.frozen
class VoiceLog:
    """One sent voice message, as `GET /tts/3/logs` reports it.

    A log is not final when first seen: a `PENDING` log later becomes `DELIVERED`,
    `UNDELIVERABLE`, `EXPIRED` or `REJECTED`, and its `done_at`, `duration`, `price`
    and `error` change with it. `message_id` is its identity. Fields the provider left
    out are `None`. `source` is `"log"` (a delivery report's is `"report"`), so one
    handler serving the poller and the reports receiver can tell the two apart.
    """

    #: Where this state came from: the logs endpoint (a class constant, not a field).
    source: ClassVar[Literal["log"]] = "log"

    bulk_id: str | None = attrs.field(default=None, metadata={WIRE: "bulkId"})
    message_id: str | None = attrs.field(default=None, metadata={WIRE: "messageId"})
    to: str | None = None
    from_: str | None = attrs.field(default=None, metadata={WIRE: "from"})
    text: str | None = None
    sent_at: datetime | None = attrs.field(default=None, metadata={WIRE: "sentAt"})
    done_at: datetime | None = attrs.field(default=None, metadata={WIRE: "doneAt"})
    duration: int | None = None
    mccmnc: str | None = None
    price: Price | None = None
    status: Status | None = None
    error: ErrorInfo | None = None

    @property
    def general_status(self) -> GeneralStatus | None:
        """The log's status group, if the provider gave a status this library knows."""
        return self.status.group if self.status is not None else None

    def to_dict(self) -> dict[str, Any]:
        """The log as a plain dict in the provider's JSON shape, ready for `json.dumps`.

        Keys are the wire names (`messageId`, `sentAt`, `price.pricePerSecond`, ...);
        fields that are `None` are left out, as the provider leaves them out. Times are
        text as the provider writes them (`2015-02-23T17:40:31.773+0100`, milliseconds),
        money is exact text (`"0.010"`, never a float), the rest is str, int or bool.
        `decode_logs` reads `{"results": [log.to_dict()]}` back as an equal log (times to
        the millisecond). Raises `ValueError` for what the wire cannot carry: a naive
        time, an offset with seconds, a non-finite amount.

        >>> VoiceLog(message_id="m1", price=Price(Decimal("0.01"), "EUR")).to_dict()
        {'messageId': 'm1', 'price': {'pricePerSecond': '0.01', 'currency': 'EUR'}}
        """
        return _wire_dict(self)


def format_query_timestamp(value: datetime) -> str:
    """Write an aware datetime the way the provider's query parameters want it.

    The form is `yyyy-MM-dd'T'HH:mm:ss.SSS±hh:mm`, milliseconds truncated:

    >>> from datetime import timezone, timedelta
    >>> format_query_timestamp(datetime(2015, 2, 22, 17, 42, 5, 390123,
    ...                                 tzinfo=timezone(timedelta(hours=1))))
    '2015-02-22T17:42:05.390+01:00'
    """
    offset = value.utcoffset()
    if offset is None:
        raise InvalidQueryError("timestamp", f"{value!r} is naive; give it a timezone")
    # isoformat would write microseconds (the incumbent client's bug); the provider wants ms.
    base = value.strftime("%Y-%m-%dT%H:%M:%S")
    millis = value.microsecond // 1000
    return f"{base}.{millis:03d}{format_offset(offset, colon=True)}"


# -- LogsQuery: validation at the edge -----------------------------------------------------


def _ids(value: str | Iterable[str] | None) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    return tuple(value)


def _status(value: GeneralStatus | str | None) -> GeneralStatus | None:
    if value is None or isinstance(value, GeneralStatus):
        return value
    try:
        return GeneralStatus(str(value).upper())
    except ValueError:
        names = ", ".join(s.value for s in GeneralStatus)
        raise InvalidQueryError(
            "general_status", f"{value!r} is not a status group (one of {names})"
        ) from None


def _check_ids(
    instance: LogsQuery, attribute: attrs.Attribute[Any], value: tuple[str, ...]
) -> None:
    for item in value:
        if not isinstance(item, str) or not item.strip():
            raise InvalidQueryError(attribute.name, f"{item!r} is not a non-empty id")
        if "," in item:
            raise InvalidQueryError(attribute.name, f"{item!r} contains a comma; pass ids apart")


def _to_utc(value: Any) -> Any:
    # Arithmetic on a zoned time ignores `fold`: one millisecond before 02:30 fold=1 in
    # Berlin's repeated hour is 02:29:59.999 fold=0, an hour earlier. In UTC it is exact.
    # Anything else is left as given, for the validator to name.
    if isinstance(value, datetime) and value.utcoffset() is not None:
        return value.astimezone(UTC)
    return value


def _check_aware(instance: LogsQuery, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is None:
        return
    if not isinstance(value, datetime):
        raise InvalidQueryError(attribute.name, f"{value!r} is not a datetime")
    if value.utcoffset() is None:
        raise InvalidQueryError(attribute.name, f"{value!r} is naive; give it a timezone")


def _check_text(instance: LogsQuery, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is None:
        return
    if not isinstance(value, str) or not value.strip():
        raise InvalidQueryError(attribute.name, f"{value!r} is not a non-empty string")


def _check_digits(instance: LogsQuery, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is None:
        return
    if not isinstance(value, str) or not value.isascii() or not value.isdigit():
        raise InvalidQueryError(attribute.name, f"{value!r} must be digits only")


def _check_limit(instance: LogsQuery, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidQueryError("limit", f"{value!r} is not an integer")
    if not 1 <= value <= MAX_PAGE_SIZE:
        raise InvalidQueryError("limit", f"{value} is outside 1..{MAX_PAGE_SIZE}")


@attrs.frozen(kw_only=True)
class LogsQuery:
    """A validated request for logs: the query parameters of `GET /tts/3/logs`.

    Every field is optional; without any the provider returns the newest 50 logs of the
    last 48 hours. Construction validates and raises `InvalidQueryError` (a `ValueError`)
    naming the bad field. `sent_since` and `sent_until` are kept in UTC: an aware time in
    any zone (a `zoneinfo` time in a repeated hour too, by its `fold`) is converted on
    construction, so the walk's arithmetic never lands an hour off.

    >>> from datetime import datetime, timezone
    >>> q = LogsQuery(general_status="delivered", limit=100,
    ...               sent_since=datetime(2026, 11, 26, tzinfo=timezone.utc))
    >>> q.to_params()
    {'generalStatus': 'DELIVERED', 'sentSince': '2026-11-26T00:00:00.000+00:00', 'limit': '100'}
    """

    from_: str | None = attrs.field(default=None, validator=_check_text)
    to: str | None = attrs.field(default=None, validator=_check_text)
    bulk_ids: tuple[str, ...] = attrs.field(default=(), converter=_ids, validator=_check_ids)
    message_ids: tuple[str, ...] = attrs.field(default=(), converter=_ids, validator=_check_ids)
    general_status: GeneralStatus | None = attrs.field(default=None, converter=_status)
    sent_since: datetime | None = attrs.field(
        default=None, converter=_to_utc, validator=_check_aware
    )
    sent_until: datetime | None = attrs.field(
        default=None, converter=_to_utc, validator=_check_aware
    )
    limit: int | None = attrs.field(default=None, validator=_check_limit)
    mcc: str | None = attrs.field(default=None, validator=_check_digits)
    mnc: str | None = attrs.field(default=None, validator=_check_digits)

    def __attrs_post_init__(self) -> None:
        if (
            self.sent_since is not None
            and self.sent_until is not None
            and self.sent_since > self.sent_until
        ):
            raise InvalidQueryError(
                "sent_since",
                f"{self.sent_since.isoformat()} is after sent_until {self.sent_until.isoformat()}",
            )

    def replace(self, **changes: Any) -> LogsQuery:
        """A copy with some fields changed, validated again."""
        return attrs.evolve(self, **changes)

    def to_params(self) -> dict[str, str]:
        """The query string parameters, in the provider's wire form.

        Id lists are joined with commas, the status group is written by name and
        timestamps as `yyyy-MM-dd'T'HH:mm:ss.SSS±hh:mm` (httpx percent-encodes `+`).
        """
        params: dict[str, str] = {}
        if self.from_ is not None:
            params["from"] = self.from_
        if self.to is not None:
            params["to"] = self.to
        if self.bulk_ids:
            params["bulkId"] = ",".join(self.bulk_ids)
        if self.message_ids:
            params["messageId"] = ",".join(self.message_ids)
        if self.general_status is not None:
            params["generalStatus"] = self.general_status.value
        if self.sent_since is not None:
            params["sentSince"] = format_query_timestamp(self.sent_since)
        if self.sent_until is not None:
            params["sentUntil"] = format_query_timestamp(self.sent_until)
        if self.limit is not None:
            params["limit"] = str(self.limit)
        if self.mcc is not None:
            params["mcc"] = self.mcc
        if self.mnc is not None:
            params["mnc"] = self.mnc
        return params
