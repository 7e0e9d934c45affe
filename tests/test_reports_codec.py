"""Delivery reports on the wire: both shapes, JSON and XML, the provider's quirks, round trips."""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from infobip_voicelogs import DecodeError, ErrorInfo, GeneralStatus, Price, Status
from infobip_voicelogs.codec import media_type
from infobip_voicelogs.reports import (
    Ivr,
    VoiceCall,
    VoiceReport,
    _codec,
    decode_reports,
    encode_reports,
    encode_reports_ndjson,
)

# The provider's examples (api/REPORTS.md), as its documentation shows them...

CURRENT_JSON = b"""{"results":[{
  "bulkId":"BULK-ID-123-xyz","messageId":"MESSAGE-ID-123-xyz","from":"385333444",
  "to":"385777888","sentAt":"2018-06-25T13:38:14.730+0000","mccMnc":"21901",
  "callbackData":"DLR callback data",
  "voiceCall":{"feature":"Voice-message","startTime":"2018-06-25T13:38:15.000+0000",
    "answerTime":"2018-06-25T13:38:20.000+0000","endTime":"2018-06-25T13:38:25.000+0000",
    "duration":5,"chargedDuration":6,"fileDuration":4.5,"dtmfCodes":"1,2",
    "answeredBy":"HUMAN","callRecordingFileId":"rec-1","direction":"OUTBOUND",
    "ivr":{"scenarioId":"sc-1","scenarioName":"Greeting","collectedDtmfs":"{\\"menu\\":\\"1\\"}",
      "collectedMappedDtmfs":"{}","spokenInput":"{}","matchedSpokenInput":"{}"}},
  "price":{"pricePerSecond":0.0100,"currency":"EUR"},
  "status":{"groupId":3,"groupName":"DELIVERED","id":5,"name":"DELIVERED_TO_HANDSET",
    "description":"Message delivered to handset"},
  "error":{"groupId":0,"groupName":"OK","id":5000,"name":"VOICE_ANSWERED",
    "description":"Call answered by human","permanent":true}}]}"""

FLAT_JSON = b"""{"results":[{
  "bulkId":"8c20f086-d82b-48cc-b2b3-3ca5f7aca9fb","messageId":"ff4804ef-6ab6-4abd-984d",
  "to":"41793026727","sentAt":"2020-04-22T02:18:29.213+0000",
  "doneAt":"2020-04-22T02:18:50.123+0000","startTime":1587521910000,
  "answerTime":1587521915000,"endTime":1587521930000,"duration":15,"fileDuration":9.4,
  "mccMnc":"22801","callbackData":"Some callback data","dtmfCodes":"","dtmfCodesAsJson":null,
  "transcribedAudioFileUrl":null,"recordedAudioFileUrl":"https://example.com/rec.wav",
  "scenarioId":null,"scenarioName":null,
  "price":{"pricePerSecond":0.01,"currency":"EUR"},
  "status":{"groupId":3,"groupName":"DELIVERED","id":5,"name":"DELIVERED_TO_HANDSET",
    "description":"Message delivered to handset"},
  "error":{"groupId":0,"groupName":"Ok","id":0,"name":"NO_ERROR","description":"No Error",
    "permanent":false}}]}"""

FLAT_XML = b"""<?xml version="1.0" encoding="UTF-8"?>
<reportResponse>
  <results>
    <results>
      <bulkId>8c20f086-d82b-48cc-b2b3-3ca5f7aca9fb</bulkId>
      <messageId>ff4804ef-6ab6-4abd-984d</messageId>
      <to>41793026727</to>
      <sentAt>2020-04-22T02:18:28.000+0000</sentAt>
      <doneAt>2020-04-22T02:18:50.123+0000</doneAt>
      <startTime>2020-04-22T02:18:30.000+0000</startTime>
      <duration>15</duration>
      <mccMnc>22801</mccMnc>
      <dtmfCodes></dtmfCodes>
      <sentAt>2020-04-22T02:18:29.213+0000</sentAt>
      <price><pricePerSecond>0.0100</pricePerSecond><currency>EUR</currency></price>
      <status><groupId>3</groupId><groupName>DELIVERED</groupName><id>5</id>
        <name>DELIVERED_TO_HANDSET</name></status>
    </results>
    <results>
      <messageId>second</messageId>
      <status><groupId>1</groupId><groupName>PENDING</groupName><id>26</id>
        <name>PENDING_ACCEPTED</name></status>
    </results>
  </results>
</reportResponse>"""


def test_current_shape_example_decodes_every_field() -> None:
    [report] = decode_reports(CURRENT_JSON, "application/json")

    assert report.shape == "current"
    assert report.message_id == "MESSAGE-ID-123-xyz"
    assert report.from_ == "385333444"
    assert report.sent_at == datetime(2018, 6, 25, 13, 38, 14, 730000, tzinfo=UTC)
    assert report.mcc_mnc == "21901"
    assert report.callback_data == "DLR callback data"
    assert report.voice_call == VoiceCall(
        feature="Voice-message",
        start_time=datetime(2018, 6, 25, 13, 38, 15, tzinfo=UTC),
        answer_time=datetime(2018, 6, 25, 13, 38, 20, tzinfo=UTC),
        end_time=datetime(2018, 6, 25, 13, 38, 25, tzinfo=UTC),
        duration=5,
        charged_duration=6,
        file_duration=4.5,
        dtmf_codes="1,2",
        answered_by="HUMAN",
        call_recording_file_id="rec-1",
        direction="OUTBOUND",
        ivr=Ivr("sc-1", "Greeting", '{"menu":"1"}', "{}", "{}", "{}"),
    )
    assert report.price == Price(Decimal("0.0100"), "EUR")
    assert str(report.price.per_second) == "0.0100"  # exactly as written, never a float
    assert report.general_status is GeneralStatus.DELIVERED
    assert report.error == ErrorInfo(
        0, "OK", 5000, "VOICE_ANSWERED", "Call answered by human", permanent=True
    )
    assert report.done_at is None  # the current shape has none


def test_flat_shape_example_reads_epoch_millisecond_call_times() -> None:
    [report] = decode_reports(FLAT_JSON, "application/json")

    assert report.shape == "flat"
    assert report.voice_call is None
    assert report.start_time == datetime(2020, 4, 22, 2, 18, 30, tzinfo=UTC)
    assert report.answer_time == datetime(2020, 4, 22, 2, 18, 35, tzinfo=UTC)
    assert report.end_time == datetime(2020, 4, 22, 2, 18, 50, tzinfo=UTC)
    assert report.done_at == datetime(2020, 4, 22, 2, 18, 50, 123000, tzinfo=UTC)
    assert (report.duration, report.file_duration) == (15, 9.4)
    assert report.recorded_audio_file_url == "https://example.com/rec.wav"
    assert report.error is not None
    assert report.error.ok


def test_every_time_is_aware_utc_whichever_form_it_came_in() -> None:
    body = b'{"results":[{"sentAt":"2020-04-22T04:18:29.213+0200","startTime":"1587521910000"}]}'

    [report] = decode_reports(body, "application/json")

    assert report.sent_at is not None
    assert report.sent_at.tzinfo is UTC
    assert report.sent_at == datetime(2020, 4, 22, 2, 18, 29, 213000, tzinfo=UTC)
    assert report.start_time == datetime(2020, 4, 22, 2, 18, 30, tzinfo=UTC)


def test_dtmf_codes_nothing_pressed_and_collect_never_ran_are_kept_apart() -> None:
    body = (
        b'{"results":[{"messageId":"a","voiceCall":{"dtmfCodes":""}},'
        b'{"messageId":"b","voiceCall":{"dtmfCodes":null}},{"messageId":"c","dtmfCodes":""}]}'
    )

    a, b, c = decode_reports(body, "application/json")

    assert a.voice_call == VoiceCall(dtmf_codes="")
    assert b.voice_call == VoiceCall(dtmf_codes=None)
    assert c.dtmf_codes == ""
    for fmt in ("json", "xml"):
        again = decode_reports(encode_reports([a, b, c], fmt), media_type(fmt))
        assert [r.voice_call for r in again[:2]] == [a.voice_call, b.voice_call]
        assert again[2].dtmf_codes == ""


def test_xml_example_nested_results_and_a_repeated_scalar_takes_its_last_value() -> None:
    first, second = decode_reports(FLAT_XML, "application/xml;charset=UTF-8")

    assert first.shape == "flat"
    assert first.sent_at == datetime(2020, 4, 22, 2, 18, 29, 213000, tzinfo=UTC)
    assert first.start_time == datetime(2020, 4, 22, 2, 18, 30, tzinfo=UTC)
    assert first.dtmf_codes == ""
    assert first.price == Price(Decimal("0.0100"), "EUR")
    assert second.message_id == "second"
    assert second.general_status is GeneralStatus.PENDING


def test_xml_is_indifferent_to_the_root_and_item_names_and_to_namespaces() -> None:
    body = (
        b'<a:anything xmlns:a="urn:x"><a:results><item><messageId>m</messageId>'
        b"<voiceCall><duration> 7 </duration><ivr/></voiceCall></item>"
        b"<result><messageId>n</messageId><endTime>1587521930000</endTime></result>"
        b"</a:results></a:anything>"
    )

    m, n = decode_reports(body, "text/xml")

    assert m.voice_call == VoiceCall(duration=7, ivr=Ivr())
    assert n.end_time == datetime(2020, 4, 22, 2, 18, 50, tzinfo=UTC)


def test_unknown_fields_are_ignored_and_mccmnc_is_read_in_either_spelling() -> None:
    body = b'{"results":[{"messageId":"m","mccmnc":"22801","novel":{"x":1},"voiceCall":{"y":2}}]}'

    [report] = decode_reports(body, "application/json")

    assert report == VoiceReport(message_id="m", mcc_mnc="22801", voice_call=VoiceCall())


@pytest.mark.parametrize(
    ("body", "where"),
    [
        (
            b'{"results":[{},{"voiceCall":{"startTime":"yesterday"}}]}',
            "results[1].voiceCall.startTime",
        ),
        (b'{"results":[{"duration":"long"}]}', "results[0].duration"),
        (
            b'{"results":[{"voiceCall":{"ivr":{"scenarioId":3}}}]}',
            "results[0].voiceCall.ivr.scenarioId",
        ),
        (
            b'{"results":[{"voiceCall":{"fileDuration":"9.4"}}]}',
            "results[0].voiceCall.fileDuration",
        ),
        (b'{"results":[{"price":{"currency":"EUR"}}]}', "results[0].price"),
        (b'{"results":[{"status":{"groupId":true}}]}', "results[0].status.groupId"),
        (b'{"results":[{"startTime":1.5}]}', "results[0].startTime"),
        (b'{"results":[3]}', "results[0]"),
        (b'{"results":{}}', "results"),
    ],
)
def test_a_malformed_json_batch_names_the_report_and_the_field(body: bytes, where: str) -> None:
    with pytest.raises(DecodeError) as caught:
        decode_reports(body, "application/json")
    with pytest.raises(DecodeError) as checked:
        _codec.check_json_reports(body)

    assert caught.value.path == where
    assert (checked.value.path, str(checked.value)) == (where, str(caught.value))


@pytest.mark.parametrize(
    ("body", "where"),
    [
        (
            b"<r><results><results><duration>x</duration></results></results></r>",
            "results[0].duration",
        ),
        (
            b"<r><results><x/><x><voiceCall><fileDuration>nan</fileDuration></voiceCall></x></results></r>",
            "results[1].voiceCall.fileDuration",
        ),
        (b"<r><results><x><price>1</price></x></results></r>", "results[0].price"),
    ],
)
def test_a_malformed_xml_batch_names_the_report_and_the_field(body: bytes, where: str) -> None:
    with pytest.raises(DecodeError) as caught:
        decode_reports(body, "application/xml")

    assert caught.value.path == where


@pytest.mark.parametrize("number", ["1e999", "-1e999", "1E400", " 1e999 "])
@pytest.mark.parametrize("nested", [True, False])
def test_a_file_duration_beyond_any_float_is_refused_in_xml_as_in_json(
    number: str, nested: bool
) -> None:
    # A float that overflows to infinity could not be encoded again: refused, naming it.
    field = f"<fileDuration>{number}</fileDuration>"
    inner = f"<voiceCall>{field}</voiceCall>" if nested else f"<messageId>m</messageId>{field}"
    xml = f"<r><results><x>{inner}</x></results></r>".encode()
    call = f'{{"fileDuration":{number}}}'
    json_body = (
        f'{{"results":[{{"voiceCall":{call}}}]}}'
        if nested
        else f'{{"results":[{{"messageId":"m","fileDuration":{number}}}]}}'
    ).encode()
    where = "results[0].voiceCall.fileDuration" if nested else "results[0].fileDuration"

    with pytest.raises(DecodeError, match="not a finite number") as from_xml:
        decode_reports(xml, "application/xml")
    with pytest.raises(DecodeError):
        decode_reports(json_body, "application/json")

    assert from_xml.value.path == where


def test_the_largest_file_duration_a_float_holds_is_read() -> None:
    call = b"<voiceCall><fileDuration>1.5e308</fileDuration></voiceCall>"
    body = b"<r><results><x>" + call + b"</x></results></r>"

    [report] = decode_reports(body, "application/xml")

    assert report.voice_call is not None
    assert report.voice_call.file_duration == 1.5e308
    assert decode_reports(encode_reports([report], "xml"), "application/xml") == [report]


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        (b"{", "application/json", "not valid JSON"),
        (b"[]", "application/json", "expected an object"),
        (b"<r><x/></r>", "application/xml", "no <results>"),
        (b"<r>", "application/xml", "not well-formed"),
        (
            b'<!DOCTYPE r [<!ENTITY e "boom">]><r><results><x><to>&e;</to></x></results></r>',
            "application/xml",
            "DOCTYPE",
        ),
        (
            b'<!DOCTYPE r [<!ENTITY e SYSTEM "file:///etc/passwd">]><r><results><x><to>&e;</to>'
            b"</x></results></r>",
            "application/xml",
            "DOCTYPE",
        ),
        (b"{}", "text/plain", "neither JSON nor XML"),
    ],
)
def test_a_body_that_is_no_batch_is_a_decode_error(
    body: bytes, content_type: str, message: str
) -> None:
    with pytest.raises(DecodeError, match=message) as caught:
        decode_reports(body, content_type)

    assert "root:" not in str(caught.value)  # no external entity was ever read


def test_to_dict_is_json_ready_in_the_reports_own_shape() -> None:
    current, flat = (
        decode_reports(CURRENT_JSON, "application/json")[0],
        decode_reports(FLAT_JSON, "application/json")[0],
    )

    as_dict = current.to_dict()

    assert as_dict["voiceCall"]["startTime"] == "2018-06-25T13:38:15.000+0000"
    assert as_dict["price"] == {"pricePerSecond": "0.0100", "currency": "EUR"}
    assert "shape" not in as_dict
    assert flat.to_dict()["startTime"] == "2020-04-22T02:18:30.000+0000"
    for report in (current, flat):
        body = json.dumps({"results": [report.to_dict()]}).encode()
        [again] = decode_reports(body, "application/json")
        assert again == report
        assert again.shape == report.shape


def test_flat_json_writes_call_times_as_epoch_milliseconds_as_the_provider_does() -> None:
    [flat] = decode_reports(FLAT_JSON, "application/json")

    written = json.loads(encode_reports([flat], "json"))["results"][0]

    assert (written["startTime"], written["endTime"]) == (1587521910000, 1587521930000)
    assert written["sentAt"] == "2020-04-22T02:18:29.213+0000"
    assert b'"pricePerSecond":0.01,' in encode_reports([flat], "json")


def test_in_shape_moves_the_call_between_the_top_and_voice_call() -> None:
    [current] = decode_reports(CURRENT_JSON, "application/json")

    flat = current.in_shape("flat")

    assert flat.shape == "flat"
    assert (flat.voice_call, flat.from_) == (None, None)
    assert flat.start_time == current.voice_call.start_time  # type: ignore[union-attr]
    assert (flat.scenario_id, flat.scenario_name) == ("sc-1", "Greeting")
    back = flat.in_shape("current")
    assert back.voice_call == VoiceCall(
        start_time=flat.start_time,
        answer_time=flat.answer_time,
        end_time=flat.end_time,
        duration=5,
        file_duration=4.5,
        dtmf_codes="1,2",
        ivr=Ivr("sc-1", "Greeting"),
    )
    assert current.in_shape("current") is current


def test_encoding_refuses_what_the_wire_cannot_carry() -> None:
    with pytest.raises(ValueError, match="naive"):
        encode_reports([VoiceReport(sent_at=datetime(2020, 1, 1))], "json")
    with pytest.raises(ValueError, match="not a number"):
        encode_reports([VoiceReport(voice_call=VoiceCall(file_duration=float("nan")))], "json")
    with pytest.raises(ValueError):
        encode_reports([VoiceReport(callback_data="\x00")], "xml")


# Properties...

xml_text = st.text(
    st.characters(
        blacklist_categories=("Cs",), blacklist_characters="\ufffe\uffff", min_codepoint=0x20
    )
    | st.sampled_from("\t\n"),
    max_size=20,
)
maybe = lambda strategy: st.none() | strategy  # noqa: E731


@st.composite
def aware_datetimes(draw: st.DrawFn) -> datetime:
    naive = draw(st.datetimes(datetime(1971, 1, 1), datetime(2100, 1, 1)))
    minutes = draw(st.integers(-23 * 60 - 59, 23 * 60 + 59))
    moment = naive.replace(microsecond=naive.microsecond // 1000 * 1000)  # the wire has ms
    return moment.replace(tzinfo=timezone(timedelta(minutes=minutes)))


times = maybe(aware_datetimes())
ints = maybe(st.integers(-(2**31), 2**31))
floats = maybe(st.floats(allow_nan=False, allow_infinity=False))
texts = maybe(xml_text)
prices = maybe(
    st.builds(Price, st.decimals(allow_nan=False, allow_infinity=False, places=None), xml_text)
)
statuses = maybe(
    st.builds(Status, st.integers(0, 5), xml_text, st.integers(0, 99), xml_text, texts)
)
errors = maybe(
    st.builds(
        ErrorInfo,
        st.integers(0, 9),
        xml_text,
        st.integers(0, 2**31),
        xml_text,
        texts,
        maybe(st.booleans()),
    )
)
calls = st.builds(
    VoiceCall,
    texts,
    times,
    times,
    times,
    ints,
    ints,
    floats,
    texts,
    texts,
    texts,
    texts,
    maybe(st.builds(Ivr, texts, texts, texts, texts, texts, texts)),
)
common = {
    "bulk_id": texts,
    "message_id": texts,
    "to": texts,
    "sent_at": times,
    "mcc_mnc": texts,
    "callback_data": texts,
    "price": prices,
    "status": statuses,
    "error": errors,
}
current_reports = st.builds(
    VoiceReport, **common, from_=texts, voice_call=maybe(calls), shape=st.just("current")
)
flat_reports = st.builds(
    VoiceReport,
    **common,
    done_at=times,
    start_time=times,
    answer_time=times,
    end_time=times,
    duration=ints,
    file_duration=floats,
    dtmf_codes=texts,
    dtmf_codes_as_json=texts,
    transcribed_audio_file_url=texts,
    recorded_audio_file_url=texts,
    scenario_id=texts,
    scenario_name=texts,
    shape=st.just("flat"),
)
reports = current_reports | flat_reports
formats = st.sampled_from(["json", "xml"])


@given(st.lists(reports, max_size=4), formats)
@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
def test_round_trip_of_any_reports_in_their_own_shapes(
    original: list[VoiceReport], fmt: str
) -> None:
    body = encode_reports(original, fmt)  # type: ignore[arg-type]

    assert decode_reports(body, media_type(fmt)) == original  # type: ignore[arg-type]


@given(st.lists(reports, max_size=4), formats, st.sampled_from(["current", "flat"]))
@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow])
def test_encoding_in_a_shape_is_decoding_the_reports_in_that_shape(
    original: list[VoiceReport], fmt: str, shape: str
) -> None:
    body = encode_reports(original, fmt, shape=shape)  # type: ignore[arg-type]

    decoded = decode_reports(body, media_type(fmt))  # type: ignore[arg-type]

    assert decoded == [r.in_shape(shape) for r in original]  # type: ignore[arg-type]


@given(reports)
@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow])
def test_to_dict_round_trips_through_any_json_library(report: VoiceReport) -> None:
    body = json.dumps({"results": [report.to_dict()]}).encode()

    assert decode_reports(body, "application/json") == [report]


def test_ndjson_writes_a_price_as_a_number_digit_for_digit_as_the_logs_lines_do() -> None:
    report = VoiceReport(message_id="m1", price=Price(Decimal("0.0100"), "EUR"))

    [line] = encode_reports_ndjson([report]).splitlines()

    assert b'"pricePerSecond":0.0100,' in line
    assert json.loads(line, parse_float=Decimal)["price"]["pricePerSecond"] == Decimal("0.0100")


@given(st.lists(reports, max_size=4))
@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow])
def test_each_ndjson_line_decodes_as_the_report(original: list[VoiceReport]) -> None:
    lines = encode_reports_ndjson(original).splitlines()

    decoded = [decode_reports(b'{"results":[' + line + b"]}", "application/json") for line in lines]

    assert decoded == [[report] for report in original]


@given(st.binary(max_size=300), st.sampled_from(["application/json", "application/xml"]))
@settings(max_examples=300)
def test_arbitrary_bytes_raise_nothing_but_decode_error(body: bytes, content_type: str) -> None:
    with contextlib.suppress(DecodeError):  # and any other exception fails the test
        decode_reports(body, content_type)


def _verdict(decode: Any, body: bytes) -> object:
    """How many reports `decode` finds in `body`, or where and why it refuses it."""
    try:
        found = decode(body)
    except DecodeError as error:
        return (error.path, str(error))
    return found if isinstance(found, int) else len(found)


@given(st.sampled_from([CURRENT_JSON, FLAT_JSON]), st.data())
@settings(max_examples=300)
def test_mutated_batches_raise_nothing_but_decode_error(body: bytes, data: st.DataObject) -> None:
    start = data.draw(st.integers(0, len(body)))
    end = data.draw(st.integers(start, min(len(body), start + 20)))
    insert = data.draw(st.sampled_from([b'"', b"{", b"}", b"null", b"1", b"[]", b'""', b"-1e999"]))
    mutated = body[:start] + insert + body[end:]

    decoded = _verdict(lambda b: decode_reports(b, "application/json"), mutated)

    # Checking without building accepts and refuses exactly what decoding does.
    assert _verdict(_codec.check_json_reports, mutated) == decoded


@given(st.lists(reports, max_size=4), st.sampled_from([None, "current", "flat"]))
@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow])
def test_checking_a_json_batch_counts_what_decoding_finds(
    original: list[VoiceReport], shape: str | None
) -> None:
    body = encode_reports(original, "json", shape=shape)  # type: ignore[arg-type]

    assert _codec.check_json_reports(body) == len(original)


wire_times = (
    st.builds(lambda dt: dt.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "+0000", aware_datetimes())
    | st.builds(datetime.isoformat, aware_datetimes())
    | st.builds(
        lambda dt: dt.isoformat(timespec="seconds").replace("+00:00", "Z"), aware_datetimes()
    )
    | st.integers(-(2**45), 2**45)
    | st.from_regex(r"\A[0-9T:.+\-Z ]{0,30}\Z")
    | st.text(max_size=30)
    | st.floats()
    | st.booleans()
)


def _through(structure: Any, item: dict[str, Any]) -> Any:
    try:
        return structure(item, VoiceReport)
    except Exception:
        return "refused"


@given(wire_times, st.sampled_from(["sentAt", "startTime"]), st.booleans())
@settings(max_examples=300)
def test_the_fast_and_the_precise_path_agree_on_every_time(
    value: object, field: str, nested: bool
) -> None:
    item: dict[str, Any] = {"voiceCall": {field: value}} if nested else {field: value}
    item["shape"] = "current"
    precise = _codec._JSON_PRECISE.get_structure_hook(VoiceReport)

    [kind] = _codec._mark_shapes([item])
    fast = _codec._JSON_FAST[kind]

    assert _through(fast, dict(item)) == _through(precise, dict(item))
    assert _through(_codec._JSON_FAST["mixed"], dict(item)) == _through(precise, dict(item))
    checked = _through(_codec._JSON_CHECK[kind], dict(item))
    assert (checked == "refused") == (_through(precise, dict(item)) == "refused")


def test_a_report_with_fields_of_both_shapes_keeps_them_all() -> None:
    body = (
        b'{"results":[{"messageId":"a","voiceCall":{"duration":3},"doneAt":1587521930000},'
        b'{"messageId":"b","from":"385","endTime":1587521930000},'
        b'{"messageId":"c","from":"385","voiceCall":{"duration":4}}]}'
    )

    a, b, c = decode_reports(body, "application/json")

    end = datetime(2020, 4, 22, 2, 18, 50, tzinfo=UTC)
    assert (a.shape, a.voice_call, a.done_at) == ("current", VoiceCall(duration=3), end)
    assert (b.shape, b.from_, b.end_time) == ("flat", "385", end)
    assert (c.shape, c.from_, c.voice_call) == ("current", "385", VoiceCall(duration=4))
