"""Delivery reports from and to JSON and XML, on the logs' codec: its readers, its generated
fast hooks, its precise error path, its price quoting and its hardened XML parser.

What differs from a log: three more models (`VoiceCall`, `Ivr`, `VoiceReport`), call
times that may come as epoch milliseconds, a float (`fileDuration`), two shapes (the
decoder tells them apart by their fields) and the XML nesting `<results><results>`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, get_args

import attrs
import cattrs
import orjson
from lxml import etree

from .._time import require_aware
from ..codec import Format, format_of, format_wire_timestamp, parse_wire_timestamp
from ..codec.kit import (
    ALIASES,
    JSON_READERS,
    MODELS,
    XML_READERS,
    Reader,
    add_wire_names,
    amount_number,
    amount_text,
    bad,
    build_converter,
    check_hook,
    fast_hook,
    json_results,
    structure_all,
    xml_dict,
    xml_results,
    xml_tree,
)
from . import _model
from ._model import FLAT_FIELDS, WIRE_NAMES, Ivr, ReportShape, VoiceCall, VoiceReport, wire_dict

for _cls in (Ivr, VoiceCall, VoiceReport):
    attrs.resolve_types(_cls, globalns=vars(_model))
    add_wire_names(_cls, WIRE_NAMES[_cls])
ALIASES[VoiceReport] = (("mccmnc", "mccMnc"),)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
_SHAPES = frozenset(get_args(ReportShape))
# Top-level keys only the flat shape has: a report with one of them and no `voiceCall` is flat.
_FLAT_KEYS = frozenset(WIRE_NAMES[VoiceReport].get(name, name) for name in FLAT_FIELDS)
_XML_FLOAT = re.compile(r"[+-]?\d+(?:\.\d*)?(?:[eE][+-]?\d+)?", re.ASCII)

# -- readers of the values logs do not have ------------------------------------------------


def _from_epoch(ms: int) -> datetime:
    # Integer arithmetic: a float of seconds would blur the milliseconds.
    return _EPOCH + ms * _MS


def _read_time(value: Any) -> datetime:
    """A timestamp string (any offset, made UTC) or epoch milliseconds (the flat JSON's)."""
    if type(value) is int:
        return _from_epoch(value)
    if type(value) is str:
        if value.isascii() and value.removeprefix("-").isdigit():
            return _from_epoch(int(value))
        return parse_wire_timestamp(value).astimezone(UTC)
    raise bad(value, "a timestamp or epoch milliseconds")


def _read_xml_time(value: Any) -> datetime:
    if type(value) is str:
        return _read_time(value.strip())
    raise bad(value, "text")


def _finite(number: float, value: Any) -> float:
    # JSON has no infinity or NaN, and encoding refuses them: a decoded number is finite.
    if math.isfinite(number):
        return number
    raise bad(value, "a finite number")


def _read_float(value: Any) -> float:
    if type(value) is float or type(value) is int:
        try:
            return _finite(float(value), value)
        except OverflowError:  # an integer beyond any float
            raise bad(value, "a finite number") from None
    raise bad(value, "a number")


def _read_xml_float(value: Any) -> float:
    if type(value) is str and _XML_FLOAT.fullmatch(value.strip()):
        return _finite(float(value), value)
    raise bad(value, "a number")


def _read_shape(value: Any) -> str:
    if value in _SHAPES:
        return value  # type: ignore[no-any-return]
    raise bad(value, "a report shape")


def _readers(base: Mapping[type, Reader], time: Reader, number: Reader) -> dict[Any, Reader]:
    return {**base, datetime: time, float: number, ReportShape: _read_shape}


_JSON_READERS = _readers(JSON_READERS, _read_time, _read_float)
_XML_READERS = _readers(XML_READERS, _read_xml_time, _read_xml_float)


# -- the converters ------------------------------------------------------------------------


def _precise(readers: Mapping[Any, Reader], *, xml: bool) -> cattrs.Converter:
    return build_converter(
        readers, xml=xml, precise=True, models=(*MODELS, Ivr, VoiceCall, VoiceReport)
    )


Structure = Callable[[Any, Any], VoiceReport]
# The fields each shape's hook reads; a report with fields of both takes the general hook.
_CURRENT_ONLY = frozenset({"from_", "voice_call"})
_SHAPE_FIELDS = {
    "current": frozenset(a.name for a in attrs.fields(VoiceReport) if a.name not in FLAT_FIELDS),
    "flat": frozenset(a.name for a in attrs.fields(VoiceReport) if a.name not in _CURRENT_ONLY),
}


def _fast_hooks(
    readers: Mapping[Any, Reader], *, xml: bool, hook: Callable[..., Any] = fast_hook
) -> dict[str, Any]:
    """The general hook (`"mixed"`) and one for each shape's fields alone: a report carries
    one shape's fields, about half of them, and its shape's hook skips the other half."""
    hooks = {"mixed": hook(VoiceReport, readers, xml=xml, utc=True)}
    for shape, names in _SHAPE_FIELDS.items():
        hooks[shape] = hook(VoiceReport, readers, xml=xml, only=names, utc=True)
    return hooks


_JSON_FAST: dict[str, Structure] = _fast_hooks(_JSON_READERS, xml=False)
_XML_FAST: dict[str, Structure] = _fast_hooks(_XML_READERS, xml=True)
# The same checks as `_JSON_FAST`, building nothing: `check_json_reports`.
_JSON_CHECK: dict[str, Callable[[Any, Any], bool]] = _fast_hooks(
    _JSON_READERS, xml=False, hook=check_hook
)
_JSON_PRECISE = _precise(_JSON_READERS, xml=False)
_XML_PRECISE = _precise(_XML_READERS, xml=True)


def _mark_shapes(items: list[Any]) -> list[str]:
    """Tell each wire report which shape it is in (`shape` is a field like any other), and
    say which hook reads it: its shape's, or the general one for a report with fields of
    both shapes (or one that is no object, for the general hook to refuse)."""
    flat_keys = _FLAT_KEYS
    kinds = []
    for item in items:
        if type(item) is not dict:
            kinds.append("mixed")
        elif flat_keys.isdisjoint(item):
            item["shape"] = "current"
            kinds.append("current")
        elif "voiceCall" not in item:
            item["shape"] = "flat"
            kinds.append("flat" if "from" not in item else "mixed")
        else:
            item["shape"] = "current"
            kinds.append("mixed")
    return kinds


def _structure(
    items: list[Any],
    fast: Mapping[str, Callable[[Any, Any], Any]],
    precise: cattrs.Converter,
    body: bytes,
) -> list[Any]:
    """The reports of a batch (or, with check hooks, `True` for each); `DecodeError`
    naming the first wrong one and its field."""
    kinds = _mark_shapes(items)

    def each(items: list[Any]) -> list[Any]:
        return [fast[kind](item, VoiceReport) for kind, item in zip(kinds, items, strict=True)]

    return structure_all(VoiceReport, items, each, precise, body)


# -- decoding ------------------------------------------------------------------------------


def decode_reports(body: bytes, content_type: str) -> list[VoiceReport]:
    """Decode a delivery-report POST body (`{"results": [...]}`, either shape, JSON or XML).

    `content_type` is the request's `Content-Type` header (parameters allowed). Each
    report's `shape` says which of the two shapes it came in. Raises `DecodeError`, naming
    the report and the field (`results[2].voiceCall.startTime: ...`), for anything that is
    not a batch of reports, and for a content type that is neither JSON nor XML.

    >>> [r] = decode_reports(b'{"results":[{"messageId":"m1","startTime":1587521910000}]}',
    ...                      "application/json")
    >>> r.shape, r.start_time.isoformat()
    ('flat', '2020-04-22T02:18:30+00:00')
    """
    if format_of(content_type) == "json":
        return _decode_json(body)
    return _decode_xml(body)


def check_json_reports(body: bytes) -> int:
    """How many reports a JSON POST body holds, checked as `decode_reports` decodes it.

    Every report is read and checked as `decode_reports(body, "application/json")` reads
    it, and the same `DecodeError` is raised for the same body; only the `VoiceReport`
    instances are not built. For a caller that keeps the body as it came and decodes it
    later.

    >>> check_json_reports(b'{"results":[{"messageId":"m1","startTime":1587521910000}]}')
    1
    """
    return len(_structure(json_results(body), _JSON_CHECK, _JSON_PRECISE, body))


def _decode_json(body: bytes) -> list[VoiceReport]:
    return _structure(json_results(body), _JSON_FAST, _JSON_PRECISE, body)


def _decode_xml(body: bytes) -> list[VoiceReport]:
    # The provider's example is `<reportResponse><results><results>...`; any root and any
    # item name are read alike, and a repeated element keeps its last value (`xml_dict`).
    items: list[Any] = [_with_empty_calls(xml_dict(item)) for item in xml_results(body)]
    return _structure(items, _XML_FAST, _XML_PRECISE, body)


def _with_empty_calls(item: dict[str, Any]) -> dict[str, Any]:
    # `<voiceCall/>` and `<ivr/>` are models whose every field is optional: empty, they
    # are an empty object (what encoding `VoiceCall()` writes), not a missing one.
    call = item.get("voiceCall")
    if call == "":
        item["voiceCall"] = call = {}
    if type(call) is dict and call.get("ivr") == "":
        call["ivr"] = {}
    return item


# -- encoding ------------------------------------------------------------------------------


def _epoch_ms(value: datetime) -> int:
    require_aware(value, "the wire needs an offset")
    return (value - _EPOCH) // _MS


def encode_reports(
    reports: Iterable[VoiceReport], fmt: Format, *, shape: ReportShape | None = None
) -> bytes:
    """Encode reports as the provider POSTs them; `decode_reports` reads them back equal.

    `shape=None` writes each report in its own `shape`; `"current"` or `"flat"` writes
    all in that one (`VoiceReport.in_shape`). JSON is `{"results":[...]}` with prices as
    JSON numbers written digit for digit and, in the flat shape, the call times as epoch
    milliseconds (as the provider's example); XML is
    `<reportResponse><results><results>...`, times as timestamps. Raises `ValueError` for
    what the wire cannot carry: a naive datetime, a non-finite amount or float, or (XML)
    a control character.
    """
    shaped = [r if shape is None else r.in_shape(shape) for r in reports]
    if fmt == "json":
        items = [
            wire_dict(
                r,
                amount=amount_number,
                time=format_wire_timestamp,
                call_time=_epoch_ms if r.shape == "flat" else None,
            )
            for r in shaped
        ]
        return orjson.dumps({"results": items})
    root = etree.Element("reportResponse")
    results = etree.SubElement(root, "results")
    for report in shaped:
        fields = wire_dict(report, amount=amount_text, time=format_wire_timestamp)
        xml_tree(etree.SubElement(results, "results"), fields)
    return etree.tostring(root, encoding="UTF-8", xml_declaration=False)


def encode_reports_ndjson(reports: Iterable[VoiceReport]) -> bytes:
    r"""Encode reports as NDJSON: one report a line, each in the provider's JSON shape.

    A line is the report in its own `shape`, by wire name, with prices as JSON numbers
    written digit for digit (as `infobip_voicelogs.codec.encode_ndjson` writes a log's, so a
    field has one JSON type in every line) and every time as a timestamp the way the
    provider writes one. Each line decodes with
    `decode_reports(b'{"results":[' + line + b']}', "application/json")`. Raises
    `ValueError` for what JSON cannot carry: a naive datetime or a non-finite number.

    >>> from decimal import Decimal
    >>> from infobip_voicelogs import Price
    >>> encode_reports_ndjson([VoiceReport(message_id="m1", price=Price(Decimal("0.0100"), "EUR"))])
    b'{"messageId":"m1","price":{"pricePerSecond":0.0100,"currency":"EUR"}}\n'
    """
    return b"".join(
        orjson.dumps(wire_dict(r, amount=amount_number, time=format_wire_timestamp)) + b"\n"
        for r in reports
    )
