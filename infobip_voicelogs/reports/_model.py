"""The data of a delivery report: what the provider POSTs to a `notifyUrl` for each call.

Two shapes exist (`docs/reports.md`): the current one nests the call's details in a
`voiceCall` object, the older flat one puts them at the top with a few fields of its own
(`doneAt`, `dtmfCodesAsJson`, the audio file URLs). `VoiceReport` holds every field of
both, `shape` says which one it came in, and `in_shape` moves the call's details from one
to the other. Like the logs' models, everything is frozen and slotted, datetimes are aware
(UTC), money is a `Decimal`, and a field the provider left out is `None`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar, Literal

import attrs

from ..codec import format_wire_timestamp
from ..codec.kit import amount_text
from ..models import ErrorInfo, GeneralStatus, Price, Status

#: The two shapes of a report: `"current"` (nested `voiceCall`) and `"flat"` (the older one).
ReportShape = Literal["current", "flat"]


@attrs.frozen
class Ivr:
    """The IVR scenario a call ran; the last four fields are JSON documents inside strings."""

    scenario_id: str | None = None
    scenario_name: str | None = None
    collected_dtmfs: str | None = None
    collected_mapped_dtmfs: str | None = None
    spoken_input: str | None = None
    matched_spoken_input: str | None = None


@attrs.frozen
class VoiceCall:
    """The call behind a report of the current shape: its times, durations and keys pressed.

    `dtmf_codes` is `""` when the callee pressed nothing and `None` when the IVR's Collect
    step never ran: the two are kept apart.
    """

    feature: str | None = None
    start_time: datetime | None = None
    answer_time: datetime | None = None
    end_time: datetime | None = None
    duration: int | None = None
    charged_duration: int | None = None
    file_duration: float | None = None
    dtmf_codes: str | None = None
    answered_by: str | None = None
    call_recording_file_id: str | None = None
    direction: str | None = None
    ivr: Ivr | None = None


@attrs.frozen
class VoiceReport:
    """One delivery report: what became of one voice message, as the provider pushed it.

    `message_id` is the identity, the same id the message's log carries. The fields from
    `bulk_id` to `callback_data`, and `price`, `status` and `error`, belong to both shapes;
    `voice_call` only to the current one; `done_at` to `scenario_name` only to the flat one.
    `shape` records which shape the report came in (`encode_reports` writes it back in
    that shape); it is not part of equality, since both shapes can carry the same data.

    >>> from infobip_voicelogs import Status
    >>> delivered = Status(3, "DELIVERED", 5, "DELIVERED_TO_HANDSET")
    >>> VoiceReport(message_id="m1", status=delivered).general_status
    <GeneralStatus.DELIVERED: 'DELIVERED'>
    """

    #: Where this state came from: a pushed delivery report (a log's is `"log"`); a class
    #: constant, not a field.
    source: ClassVar[Literal["report"]] = "report"

    bulk_id: str | None = None
    message_id: str | None = None
    from_: str | None = None
    to: str | None = None
    sent_at: datetime | None = None
    mcc_mnc: str | None = None
    callback_data: str | None = None
    voice_call: VoiceCall | None = None
    done_at: datetime | None = None
    start_time: datetime | None = None
    answer_time: datetime | None = None
    end_time: datetime | None = None
    duration: int | None = None
    file_duration: float | None = None
    dtmf_codes: str | None = None
    dtmf_codes_as_json: str | None = None
    transcribed_audio_file_url: str | None = None
    recorded_audio_file_url: str | None = None
    scenario_id: str | None = None
    scenario_name: str | None = None
    price: Price | None = None
    status: Status | None = None
    error: ErrorInfo | None = None
    shape: ReportShape = attrs.field(default="current", eq=False)

    @property
    def general_status(self) -> GeneralStatus | None:
        """The report's status group, if the provider gave a status this library knows."""
        return self.status.group if self.status is not None else None

    def in_shape(self, shape: ReportShape) -> VoiceReport:
        """This report as the other shape would carry it (itself if it is in `shape`).

        The call's times, durations, keys pressed and IVR scenario move between
        `voice_call` and the top; what the target shape has no field for is left out
        (to the flat shape: `from_`, the call's feature, direction, answering party,
        recording and IVR inputs; to the current one: `done_at`, `dtmf_codes_as_json` and
        the audio file URLs).
        """
        if shape == self.shape:
            return self
        return _to_flat(self) if shape == "flat" else _to_current(self)

    def to_dict(self) -> dict[str, Any]:
        """The report as a dict in the provider's JSON shape, ready for `json.dumps`.

        Wire names (`messageId`, `voiceCall`, `pricePerSecond`), in the report's own
        `shape`; timestamps as the provider writes them (`2018-06-25T13:38:14.730+0000`);
        money as text (`"0.01"`), so no float ever holds it; absent fields left out.

        >>> from decimal import Decimal
        >>> from infobip_voicelogs import Price
        >>> VoiceReport(message_id="m1", price=Price(Decimal("0.0100"), "EUR")).to_dict()
        {'messageId': 'm1', 'price': {'pricePerSecond': '0.0100', 'currency': 'EUR'}}
        """
        return wire_dict(self, amount=amount_text, time=format_wire_timestamp)


# Fields that only one shape has: what `in_shape` moves or leaves out.
_MOVED = ("start_time", "answer_time", "end_time", "duration", "file_duration", "dtmf_codes")
_FLAT_ONLY = (
    "done_at",
    "dtmf_codes_as_json",
    "transcribed_audio_file_url",
    "recorded_audio_file_url",
)
#: The fields of `VoiceReport` that only the flat shape has at its top.
FLAT_FIELDS = (*_MOVED, *_FLAT_ONLY, "scenario_id", "scenario_name")


def _to_flat(report: VoiceReport) -> VoiceReport:
    call = report.voice_call or VoiceCall()
    ivr = call.ivr or Ivr()
    return attrs.evolve(
        report,
        from_=None,
        voice_call=None,
        scenario_id=ivr.scenario_id,
        scenario_name=ivr.scenario_name,
        shape="flat",
        **{name: getattr(call, name) for name in _MOVED},
    )


def _to_current(report: VoiceReport) -> VoiceReport:
    ivr = None
    if report.scenario_id is not None or report.scenario_name is not None:
        ivr = Ivr(scenario_id=report.scenario_id, scenario_name=report.scenario_name)
    moved = {name: getattr(report, name) for name in _MOVED}
    call = None
    if ivr is not None or any(value is not None for value in moved.values()):
        call = VoiceCall(ivr=ivr, **moved)
    cleared = dict.fromkeys(FLAT_FIELDS)
    return attrs.evolve(report, voice_call=call, shape="current", **cleared)


# -- the wire's names ----------------------------------------------------------------------

#: The wire name of each field whose Python name differs (the rest are spelled the same).
WIRE_NAMES: dict[type, dict[str, str]] = {
    Ivr: {
        "scenario_id": "scenarioId",
        "scenario_name": "scenarioName",
        "collected_dtmfs": "collectedDtmfs",
        "collected_mapped_dtmfs": "collectedMappedDtmfs",
        "spoken_input": "spokenInput",
        "matched_spoken_input": "matchedSpokenInput",
    },
    VoiceCall: {
        "start_time": "startTime",
        "answer_time": "answerTime",
        "end_time": "endTime",
        "charged_duration": "chargedDuration",
        "file_duration": "fileDuration",
        "dtmf_codes": "dtmfCodes",
        "answered_by": "answeredBy",
        "call_recording_file_id": "callRecordingFileId",
    },
    VoiceReport: {
        "bulk_id": "bulkId",
        "message_id": "messageId",
        "from_": "from",
        "sent_at": "sentAt",
        "mcc_mnc": "mccMnc",
        "callback_data": "callbackData",
        "voice_call": "voiceCall",
        "done_at": "doneAt",
        "start_time": "startTime",
        "answer_time": "answerTime",
        "end_time": "endTime",
        "file_duration": "fileDuration",
        "dtmf_codes": "dtmfCodes",
        "dtmf_codes_as_json": "dtmfCodesAsJson",
        "transcribed_audio_file_url": "transcribedAudioFileUrl",
        "recorded_audio_file_url": "recordedAudioFileUrl",
        "scenario_id": "scenarioId",
        "scenario_name": "scenarioName",
    },
    Price: {"per_second": "pricePerSecond"},
    Status: {"group_id": "groupId", "group_name": "groupName"},
    ErrorInfo: {"group_id": "groupId", "group_name": "groupName"},
}

#: The top-level call times of the flat shape, which its JSON writes as epoch milliseconds.
FLAT_CALL_TIMES = frozenset({"startTime", "answerTime", "endTime"})


def wire_dict(
    obj: Any,
    *,
    amount: Callable[[Decimal], Any],
    time: Callable[[datetime], Any],
    call_time: Callable[[datetime], Any] | None = None,
) -> dict[str, Any]:
    """A model's set fields by wire name, nested models as dicts (`shape` is not on the wire).

    Each amount goes through `amount` and each datetime through `time`, except a flat
    report's own call times, which go through `call_time` when it is given.
    """
    names = WIRE_NAMES.get(type(obj), {})
    fields: dict[str, Any] = {}
    for field in attrs.fields(type(obj)):
        value = getattr(obj, field.name)
        if value is None or field.name == "shape":
            continue
        wire = names.get(field.name, field.name)
        if attrs.has(type(value)):
            fields[wire] = wire_dict(value, amount=amount, time=time)
        elif isinstance(value, datetime):
            timer = call_time if call_time is not None and wire in FLAT_CALL_TIMES else time
            fields[wire] = timer(value)
        elif isinstance(value, Decimal):
            fields[wire] = amount(value)
        elif isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{wire}: {value} is not a number the wire can carry")
        else:
            fields[wire] = value
    return fields
