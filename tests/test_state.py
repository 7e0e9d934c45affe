"""The state of one message (`infobip_voicelogs.state`): fingerprints, finality, changes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import attrs
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from infobip_voicelogs import ErrorInfo, Price, Status, VoiceLog, decode_logs, encode_logs
from infobip_voicelogs.state import (
    FINAL_PREFIX,
    PENDING_PREFIX,
    Change,
    compare,
    fingerprint,
    is_final,
)
from infobip_voicelogs.state import _fingerprint_v1 as poller_fingerprint_v1

CET = timezone(timedelta(hours=1))

GROUPS = {
    0: "ACCEPTED",
    1: "PENDING",
    2: "UNDELIVERABLE",
    3: "DELIVERED",
    4: "EXPIRED",
    5: "REJECTED",
}
FINAL_GROUPS = {2, 3, 4, 5}

NO_ERROR = ErrorInfo(0, "OK", 0, "NO_ERROR", "No Error", False)


@attrs.frozen
class Report:
    """A delivery report's shape as far as state goes: another kind of item, same state."""

    status: Status | None
    error: ErrorInfo | None
    price: Price | None


# -- strategies ----------------------------------------------------------------------------

names = st.sampled_from(["DELIVERED_TO_HANDSET", "PENDING_ENROUTE", "EC_VOICE_NO_ANSWER", "X"])
statuses = st.builds(
    lambda group, id_, name, description: Status(
        group, GROUPS.get(group, "SOMETHING_NEW"), id_, name, description
    ),
    st.integers(0, 6),
    st.integers(0, 30),
    names,
    st.none() | st.sampled_from(["Message delivered to handset", "Pending"]),
)
errors = st.just(NO_ERROR) | st.builds(
    ErrorInfo,
    st.integers(0, 3),
    st.sampled_from(["OK", "HANDSET_ERRORS", "USER_ERRORS"]),
    st.integers(1, 6000),
    names,
    st.none() | st.just("User was notified, but did not answer call"),
    st.none() | st.booleans(),
)
prices = st.builds(
    Price,
    st.decimals(min_value=0, max_value=10, places=4),
    st.sampled_from(["EUR", "USD"]),
)
moments = st.datetimes(datetime(2020, 1, 1), datetime(2030, 1, 1)).map(
    lambda naive: naive.replace(microsecond=naive.microsecond // 1000 * 1000, tzinfo=UTC)
)
logs = st.builds(
    VoiceLog,
    message_id=st.text("abcdef0123456789", min_size=1, max_size=8),
    sent_at=moments,
    done_at=st.none() | moments,
    duration=st.none() | st.integers(0, 600),
    price=st.none() | prices,
    status=st.none() | statuses,
    error=st.none() | errors,
)


def with_group(log: VoiceLog, group: int) -> VoiceLog:
    status = log.status or Status(0, "ACCEPTED", 0, "X")
    return attrs.evolve(log, status=attrs.evolve(status, group_id=group, group_name=GROUPS[group]))


def respelled(wire: dict[str, object]) -> dict[str, object]:
    """The same log as the provider might serve it another time: in other words only."""
    wire = dict(wire)
    for key in ("sentAt", "doneAt"):  # the moments are UTC: `Z` for `+0000`
        if key in wire:
            wire[key] = str(wire[key]).replace("+0000", "Z")
    if "doneAt" in wire:  # the same instant, at another offset
        done = datetime.fromisoformat(str(wire["doneAt"])).astimezone(CET)
        wire["doneAt"] = done.strftime("%Y-%m-%dT%H:%M:%S.") + f"{done.microsecond // 1000:03d}"
        wire["doneAt"] += "+01:00"
    for key in ("status", "error"):
        if isinstance(part := wire.get(key), dict):
            part = {**part, "groupName": str(part["groupName"]).capitalize()}  # OK -> Ok
            part.pop("description", None)
            wire[key] = part
    if isinstance(price := wire.get("price"), dict):
        amount = Decimal(str(price["pricePerSecond"]))
        wire["price"] = {
            "pricePerSecond": f"{amount:.6f}",
            "currency": str(price["currency"]).lower(),
        }
    return wire


# -- properties ----------------------------------------------------------------------------


@given(logs)
@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow])
def test_a_state_spelled_otherwise_has_the_same_fingerprint(log: VoiceLog) -> None:
    # Z vs +0100, OK vs Ok, a description dropped, 0.01 vs 0.010000, eur vs EUR.
    wire = log.to_dict()
    again = decode_logs(orjson.dumps({"results": [respelled(wire)]}), "application/json")[0]
    assert fingerprint(again) == fingerprint(log)
    assert compare(fingerprint(log), again) is Change.SAME


@given(logs)
@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow])
def test_json_and_xml_of_one_log_have_one_fingerprint(log: VoiceLog) -> None:
    from_json = decode_logs(encode_logs([log], "json"), "application/json")[0]
    xml = encode_logs([log], "xml").replace(b"<groupName>OK<", b"<groupName>Ok<")
    from_xml = decode_logs(xml, "application/xml")[0]
    assert fingerprint(from_json) == fingerprint(from_xml) == fingerprint(log)


@given(logs)
@settings(max_examples=200)
def test_a_stored_version_1_fingerprint_is_the_same_state_for_an_unchanged_log(
    log: VoiceLog,
) -> None:
    stored = poller_fingerprint_v1(log)  # what stores hold from earlier releases
    assert compare(stored, log) is Change.SAME
    later = attrs.evolve(log, duration=(log.duration or 0) + 1)
    assert compare(stored, later) is Change.CHANGED


@given(logs, logs, st.sampled_from(sorted(FINAL_GROUPS)), st.sampled_from([0, 1, 6]))
@settings(max_examples=200)
def test_a_final_state_is_never_replaced_by_one_that_can_still_change(
    final: VoiceLog, later: VoiceLog, group: int, open_group: int
) -> None:
    final = with_group(final, group)
    # A later sighting that can still change: ACCEPTED, PENDING, or no status at all.
    later = attrs.evolve(later, status=None) if open_group == 6 else with_group(later, open_group)
    assert compare(fingerprint(final), later) is Change.STALE
    assert compare(fingerprint(later), final) is Change.CHANGED


@given(logs)
def test_the_prefix_says_whether_the_state_is_final(log: VoiceLog) -> None:
    print_ = fingerprint(log)
    assert print_.startswith(FINAL_PREFIX if is_final(log) else PENDING_PREFIX)
    assert len(print_) == 3 + 32
    assert is_final(log) == (log.status is not None and log.status.group_id in FINAL_GROUPS)


# -- the rules, one by one -----------------------------------------------------------------

DELIVERED = Status(3, "DELIVERED", 5, "DELIVERED_TO_HANDSET", "Message delivered to handset")
PENDING = Status(1, "PENDING", 7, "PENDING_ENROUTE")
EUR = Price(Decimal("0.01"), "EUR")


@pytest.mark.parametrize(
    ("group", "final"),
    [
        ("ACCEPTED", False),
        ("PENDING", False),
        ("DELIVERED", True),
        ("UNDELIVERABLE", True),
        ("EXPIRED", True),
        ("REJECTED", True),
        ("SOMETHING_NEW", False),
    ],
)
def test_which_groups_are_final(group: str, final: bool) -> None:
    status = Status(9, group, 1, "X")  # the name decides; an unknown one is not final
    assert is_final(VoiceLog(status=status)) is final
    assert fingerprint(VoiceLog(status=status)).startswith("2f:" if final else "2p:")


def test_no_status_is_not_final() -> None:
    assert not is_final(VoiceLog())
    assert fingerprint(VoiceLog()).startswith(PENDING_PREFIX)


def test_an_error_that_says_no_error_is_no_error() -> None:
    assert fingerprint(VoiceLog(status=DELIVERED, error=NO_ERROR)) == fingerprint(
        VoiceLog(status=DELIVERED)
    )
    real = ErrorInfo(1, "HANDSET_ERRORS", 5003, "EC_VOICE_NO_ANSWER", permanent=True)
    assert fingerprint(VoiceLog(status=DELIVERED, error=real)) != fingerprint(
        VoiceLog(status=DELIVERED)
    )
    assert fingerprint(VoiceLog(error=real)) != fingerprint(
        VoiceLog(error=attrs.evolve(real, permanent=False))
    )


def test_times_and_wording_are_not_part_of_the_state() -> None:
    log = VoiceLog(
        message_id="m1",
        done_at=datetime(2026, 1, 1, tzinfo=UTC),
        duration=10,
        status=DELIVERED,
        price=EUR,
    )
    reworded = attrs.evolve(
        log,
        done_at=datetime(2026, 1, 1, 1, tzinfo=CET),
        duration=11,
        status=attrs.evolve(DELIVERED, group_name="Delivered", description=None, action="x"),
        price=Price(Decimal("0.0100"), "eur"),
    )
    assert fingerprint(reworded) == fingerprint(log)
    assert fingerprint(attrs.evolve(log, price=Price(Decimal("0.02"), "EUR"))) != fingerprint(log)
    status_renamed = attrs.evolve(DELIVERED, name="DELIVERED_TO_OPERATOR")
    assert fingerprint(attrs.evolve(log, status=status_renamed)) != fingerprint(log)


def test_amounts_are_exact_beyond_the_decimal_context() -> None:
    # Decimal.normalize would round both to 28 digits and make them one state.
    one = Price(Decimal("0.10000000000000000000000000001"), "EUR")
    other = Price(Decimal("0.10000000000000000000000000002"), "EUR")
    assert fingerprint(VoiceLog(price=one)) != fingerprint(VoiceLog(price=other))
    zeros = {fingerprint(VoiceLog(price=Price(Decimal(z), "EUR"))) for z in ("0", "-0", "0.00")}
    assert len(zeros) == 1


def test_a_report_and_a_log_that_agree_are_the_same_state() -> None:
    log = VoiceLog(message_id="m1", done_at=datetime(2026, 1, 1, tzinfo=UTC), status=DELIVERED)
    report = Report(status=DELIVERED, error=NO_ERROR, price=None)
    assert fingerprint(report) == fingerprint(log)
    assert is_final(report)
    assert compare(fingerprint(log), report) is Change.SAME


def test_compare_says_new_same_changed_and_stale() -> None:
    pending = VoiceLog(message_id="m1", status=PENDING)
    delivered = VoiceLog(message_id="m1", status=DELIVERED, price=EUR)
    assert compare(None, pending) is Change.NEW
    assert compare(fingerprint(pending), pending) is Change.SAME
    assert compare(fingerprint(pending), delivered) is Change.CHANGED
    assert compare(fingerprint(delivered), pending) is Change.STALE


def test_a_later_final_state_is_a_correction_and_wins() -> None:
    delivered = VoiceLog(status=DELIVERED)
    priced = VoiceLog(status=DELIVERED, price=EUR)
    expired = VoiceLog(status=Status(4, "EXPIRED", 15, "EXPIRED_EXPIRED"))
    assert compare(fingerprint(delivered), priced) is Change.CHANGED
    assert compare(fingerprint(priced), expired) is Change.CHANGED


def test_unknown_stored_text_is_a_change_never_lost() -> None:
    log = VoiceLog(status=DELIVERED)
    assert compare("3x:whatever", log) is Change.CHANGED
    assert compare("", log) is Change.CHANGED
