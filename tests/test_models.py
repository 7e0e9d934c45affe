"""The data classes and the validated query, used the way callers use them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from infobip_voicelogs import (
    ErrorInfo,
    GeneralStatus,
    InvalidQueryError,
    LogsQuery,
    Price,
    Status,
    VoiceLog,
)
from infobip_voicelogs.models import format_query_timestamp

CET = timezone(timedelta(hours=1))


def test_empty_query_sends_no_parameters() -> None:
    assert LogsQuery().to_params() == {}


def test_query_wire_form_matches_the_reference_page() -> None:
    query = LogsQuery(
        from_="41793026700",
        to="41793026727",
        bulk_ids=["1dece649", "bafdeb3d"],
        message_ids="07e03aae",
        general_status=GeneralStatus.DELIVERED,
        sent_since=datetime(2015, 2, 22, 17, 42, 5, 390_999, tzinfo=CET),
        sent_until=datetime(2015, 2, 23, 0, 0, tzinfo=UTC),
        limit=1,
        mcc="228",
        mnc="01",
    )
    assert query.to_params() == {
        "from": "41793026700",
        "to": "41793026727",
        "bulkId": "1dece649,bafdeb3d",
        "messageId": "07e03aae",
        "generalStatus": "DELIVERED",
        "sentSince": "2015-02-22T16:42:05.390+00:00",  # the same instant, in UTC
        "sentUntil": "2015-02-23T00:00:00.000+00:00",
        "limit": "1",
        "mcc": "228",
        "mnc": "01",
    }


def test_negative_offsets_are_written_with_their_sign() -> None:
    when = datetime(2026, 1, 1, 8, 30, tzinfo=timezone(-timedelta(hours=3, minutes=30)))
    assert format_query_timestamp(when) == "2026-01-01T08:30:00.000-03:30"
    assert LogsQuery(sent_until=when).to_params()["sentUntil"] == "2026-01-01T12:00:00.000+00:00"


@pytest.mark.parametrize(("fold", "utc_hour"), [(0, 0), (1, 1)])
def test_a_query_time_in_a_repeated_hour_is_the_instant_its_fold_says(
    fold: int, utc_hour: int
) -> None:
    from zoneinfo import ZoneInfo

    # 02:30 on 2026-10-25 happens twice in Berlin: first in CEST (+2), then in CET (+1).
    when = datetime(2026, 10, 25, 2, 30, fold=fold, tzinfo=ZoneInfo("Europe/Berlin"))
    query = LogsQuery(sent_since=when, sent_until=when)
    assert query.sent_since == datetime(2026, 10, 25, utc_hour, 30, tzinfo=UTC)
    assert query.sent_since.tzinfo is UTC
    assert query.replace(limit=5).sent_until == query.sent_since
    assert query.to_params()["sentSince"] == f"2026-10-25T{utc_hour:02d}:30:00.000+00:00"


def test_status_group_accepts_a_name_in_any_case() -> None:
    assert LogsQuery(general_status="pending").general_status is GeneralStatus.PENDING


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 1001}, "limit"),
        ({"limit": True}, "limit"),
        ({"limit": "10"}, "limit"),
        ({"mcc": "22a"}, "mcc"),
        ({"mnc": ""}, "mnc"),
        ({"mnc": "٣"}, "mnc"),  # a digit, but not an ASCII one
        ({"bulk_ids": [""]}, "bulk_ids"),
        ({"message_ids": ["a,b"]}, "message_ids"),
        ({"general_status": "SENT"}, "general_status"),
        ({"sent_since": datetime(2026, 1, 1)}, "sent_since"),  # naive
        ({"sent_until": "2026-01-01"}, "sent_until"),
        ({"from_": "  "}, "from_"),
        (
            {
                "sent_since": datetime(2026, 1, 2, tzinfo=UTC),
                "sent_until": datetime(2026, 1, 1, tzinfo=UTC),
            },
            "sent_since",
        ),
    ],
)
def test_bad_queries_name_the_bad_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidQueryError) as caught:
        LogsQuery(**kwargs)  # type: ignore[arg-type]
    assert caught.value.field == field
    assert str(caught.value).startswith(f"{field}: ")
    assert isinstance(caught.value, ValueError)


def test_replace_validates_again() -> None:
    query = LogsQuery(limit=10)
    assert query.replace(limit=20).limit == 20
    with pytest.raises(InvalidQueryError):
        query.replace(limit=0)


def test_models_are_frozen_and_hashable() -> None:
    log = VoiceLog(message_id="m1", price=Price(Decimal("0.01"), "EUR"))
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        log.message_id = "m2"  # type: ignore[misc]
    assert {log, attrs.evolve(log)} == {log}


@pytest.mark.parametrize(
    ("group_id", "group_name", "expected"),
    [
        (3, "DELIVERED", GeneralStatus.DELIVERED),
        (1, "pending", GeneralStatus.PENDING),
        (2, "SOMETHING_NEW", GeneralStatus.UNDELIVERABLE),  # falls back to the id
        (99, "SOMETHING_NEW", None),
    ],
)
def test_status_group(group_id: int, group_name: str, expected: GeneralStatus | None) -> None:
    status = Status(group_id, group_name, 5, "DELIVERED_TO_HANDSET")
    assert status.group is expected
    assert VoiceLog(status=status).general_status is expected


def test_error_group_ok_in_either_spelling() -> None:
    assert ErrorInfo(0, "OK", 0, "NO_ERROR").ok
    assert ErrorInfo(0, "Ok", 0, "NO_ERROR").ok
    assert not ErrorInfo(1, "HANDSET_ERRORS", 5003, "EC_VOICE_NO_ANSWER").ok


def test_final_status_groups() -> None:
    assert not GeneralStatus.PENDING.is_final
    assert GeneralStatus.DELIVERED.is_final


@given(
    st.datetimes(
        min_value=datetime(2000, 1, 1),
        max_value=datetime(2100, 1, 1),
        timezones=st.builds(
            timezone, st.integers(-14 * 60, 14 * 60).map(lambda m: timedelta(minutes=m))
        ),
    )
)
def test_query_timestamps_parse_back_to_the_same_millisecond(when: datetime) -> None:
    wire = LogsQuery(sent_since=when).to_params()["sentSince"]
    assert len(wire) == len("2015-02-22T17:42:05.390+01:00")
    parsed = datetime.fromisoformat(wire)
    assert parsed == when.replace(microsecond=when.microsecond // 1000 * 1000)
    assert parsed.utcoffset() == timedelta(0)  # every query time is sent in UTC
