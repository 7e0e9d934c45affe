"""Delivery reports from and to JSON and XML, on the logs' codec: its readers, its generated
fast hooks, its precise error path, its price quoting and its hardened XML parser.

What differs from a log: three more models (`VoiceCall`, `Ivr`, `VoiceReport`), call
times that may come as epoch milliseconds, a float (`fileDuration`), two shapes (the
decoder tells them apart by their fields) and the XML nesting `<results><results>`.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from operator import itemgetter
from typing import Any, get_args

import attrs
import cattrs
import orjson
from lxml import etree

from ..codec import Format, format_of, format_wire_timestamp, parse_wire_timestamp
from ..codec._codegen import _HookBuilder, direct_setters
from ..codec._convert import _describe, _locate, _precise_hook, build_converter
from ..codec._json import _results_of, quote_prices
from ..codec._readers import JSON_READERS, XML_READERS, Reader, bad
from ..codec._timestamps import canonical_test
from ..codec._wire import ALIASES, add_wire_names, amount_text, excerpt, wire_name
from ..codec._xml import _local, parse_xml, xml_dict
from ..errors import DecodeError
from . import _model
from ._model import FLAT_FIELDS, WIRE_NAMES, Ivr, ReportShape, VoiceCall, VoiceReport, wire_dict

__all__ = ["decode_reports", "encode_reports"]

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


def _read_float(value: Any) -> float:
    if type(value) is float or type(value) is int:
        return float(value)
    raise bad(value, "a number")


def _read_xml_float(value: Any) -> float:
    if type(value) is str and _XML_FLOAT.fullmatch(value.strip()):
        return float(value)
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


_FROMISOFORMAT = datetime.fromisoformat


class _ReportHookBuilder(_HookBuilder):
    """The logs' fast-hook writer, with datetimes read by the reports' reader (which takes
    epoch milliseconds too) instead of the logs' inlined `fromisoformat`.

    With `only`, the hook reads just those fields of `VoiceReport` and sets the rest to
    `None`: a report carries one shape's fields, about half of them, and a hook for that
    shape skips the other half's lookups and checks (`_mark_shapes` picks the hook).
    """

    def __init__(
        self, readers: Mapping[Any, Reader], *, xml: bool, only: frozenset[str] | None = None
    ) -> None:
        super().__init__(readers, xml=xml)
        self._only = only

    def _kept(self, cls: type) -> list[attrs.Attribute[Any]] | None:
        if cls is not VoiceReport or self._only is None:
            return None
        return [field for field in attrs.fields(cls) if field.name in self._only]

    def _take_row(self, cls: type, source: str, prefix: str) -> str:
        kept = self._kept(cls)
        if kept is None:
            return super()._take_row(cls, source, prefix)
        wires = [wire_name(cls, field.name) for field in kept]
        getter = self._global(f"{prefix}getter", itemgetter(*wires))
        row, get = self._fresh(f"{prefix}row"), self._fresh(f"{prefix}get")
        take_each = f"{get} = {source}.get; {row} = ({''.join(f'{get}({w!r}), ' for w in wires)})"
        self._line(f"if len({source}) >= {len(wires)}:")
        with self._block():
            self._line("try:")
            with self._block():
                self._line(f"{row} = {getter}({source})")
            self._line("except KeyError:")
            with self._block():
                self._line(take_each)
        self._line("else:")
        with self._block():
            self._line(take_each)
        return row

    def _construct(self, cls: type, row: str, target: str, prefix: str) -> None:
        kept = self._kept(cls)
        if kept is None:
            super()._construct(cls, row, target, prefix)
            return
        values = {field.name: self._fresh(f"{prefix}{field.name}") for field in kept}
        self._line(f"{''.join(f'{value}, ' for value in values.values())}= {row}")
        for field in kept:
            self._field(cls, field, values[field.name], prefix)
        cls_name = self._global(cls.__name__, cls)
        setters = direct_setters(cls)
        if setters is None:
            arguments = ", ".join(f"{name}={value}" for name, value in values.items())
            self._line(f"{target} = {cls_name}({arguments})")
            return
        self._line(f"{target} = new({cls_name})")
        for field, setter in zip(attrs.fields(cls), setters, strict=True):
            setter_name = self._global(f"{prefix}set_{field.name}", setter)
            self._line(f"{setter_name}({target}, {values.get(field.name, 'None')})")

    def _read_timestamp(self, value: str, optional: bool) -> None:
        read = self._global("read_time", self._readers[datetime])
        if self._xml:
            self._read(self._readers[datetime], value, optional, "read_time")
            return
        # Four per report: the provider's own form by the logs' cheap shape check (a
        # regex costs three times as much) and fromisoformat, which together take exactly
        # the grammar (`codec._timestamps`); anything else (epoch milliseconds, other
        # forms, an error to raise) by the reader. `+0000` comes back in UTC already.
        parse = self._global("fromisoformat", _FROMISOFORMAT)
        utc = self._global("UTC", UTC)
        canonical = f"type({value}) is str and {canonical_test(value)}"
        with contextlib.ExitStack() as stack:
            if optional:
                self._line(f"if {value} is not None:")
                stack.enter_context(self._block())
            self._line(f"if {canonical}:")
            with self._block():
                self._line(f"{value} = {parse}({value})")
                self._line(f"if {value}.tzinfo is not {utc}: {value} = {value}.astimezone({utc})")
            self._line(f"else: {value} = {read}({value})")


def _precise(readers: Mapping[type, Reader], *, xml: bool) -> cattrs.Converter:
    typed = {tp: read for tp, read in readers.items() if isinstance(tp, type)}
    converter = build_converter(typed, xml=xml, precise=True)
    # A Literal is no class: cattrs takes its hook by predicate.
    converter.register_structure_hook_func(
        lambda tp: tp == ReportShape, lambda value, _: _read_shape(value)
    )
    for cls in (Ivr, VoiceCall, VoiceReport):  # inner first, as `build_converter` does
        converter.register_structure_hook(cls, _precise_hook(cls, converter))
    return converter


Structure = Callable[[Any, Any], VoiceReport]
# The fields each shape's hook reads; a report with fields of both takes the general hook.
_CURRENT_ONLY = frozenset({"from_", "voice_call"})
_SHAPE_FIELDS = {
    "current": frozenset(a.name for a in attrs.fields(VoiceReport) if a.name not in FLAT_FIELDS),
    "flat": frozenset(a.name for a in attrs.fields(VoiceReport) if a.name not in _CURRENT_ONLY),
}


def _fast_hooks(readers: Mapping[Any, Reader], *, xml: bool) -> dict[str, Structure]:
    """The general hook (`"mixed"`) and one for each shape's fields alone."""
    hooks = {"mixed": _ReportHookBuilder(readers, xml=xml).structure(VoiceReport)}
    for shape, names in _SHAPE_FIELDS.items():
        hooks[shape] = _ReportHookBuilder(readers, xml=xml, only=names).structure(VoiceReport)
    return hooks


_JSON_FAST = _fast_hooks(_JSON_READERS, xml=False)
_XML_FAST = _fast_hooks(_XML_READERS, xml=True)
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
    items: list[Any], fast: dict[str, Structure], precise: cattrs.Converter, body: bytes
) -> list[VoiceReport]:
    """The reports of a batch; `DecodeError` naming the first wrong one and its field."""
    kinds = _mark_shapes(items)
    try:
        return [fast[kind](item, VoiceReport) for kind, item in zip(kinds, items, strict=True)]
    except Exception as exc:  # any failure is re-run precisely just below
        refused = exc
    slow = precise.get_structure_hook(VoiceReport)
    for index, item in enumerate(items):
        try:
            slow(item, VoiceReport)
        except Exception as exc:
            path, leaf = _locate(exc, VoiceReport)
            raise DecodeError(
                _describe(leaf), path=f"results[{index}]{path}", excerpt=excerpt(body)
            ) from exc
    raise DecodeError("the reports do not have the expected shape", excerpt=excerpt(body)) from (
        refused
    )


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


def _decode_json(body: bytes) -> list[VoiceReport]:
    try:
        document = orjson.loads(quote_prices(body))
    except orjson.JSONDecodeError as exc:
        raise DecodeError(f"not valid JSON ({exc.msg})", excerpt=excerpt(body)) from exc
    return _structure(_results_of(document, body), _JSON_FAST, _JSON_PRECISE, body)


def _decode_xml(body: bytes) -> list[VoiceReport]:
    # The provider's example is `<reportResponse><results><results>...`; any root and any
    # item name are read alike, and a repeated element keeps its last value (`xml_dict`).
    root = parse_xml(body)
    results = next((c for c in root if _local(c.tag) == "results"), None)
    if results is None:
        raise DecodeError(f"no <results> under <{_local(root.tag)}>", excerpt=excerpt(body))
    items: list[Any] = [_with_empty_calls(xml_dict(item)) for item in results]
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
    if value.utcoffset() is None:
        raise ValueError(f"{value!r} is naive; the wire needs an offset")
    return (value - _EPOCH) // _MS


def _number(amount: Decimal) -> orjson.Fragment:
    return orjson.Fragment(amount_text(amount))


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
                amount=_number,
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
        _xml_elements(etree.SubElement(results, "results"), fields)
    return etree.tostring(root, encoding="UTF-8", xml_declaration=False)


def _xml_elements(parent: etree._Element, fields: dict[str, Any]) -> None:
    for name, value in fields.items():
        child = etree.SubElement(parent, name)
        if isinstance(value, dict):
            _xml_elements(child, value)
        elif isinstance(value, bool):
            child.text = "true" if value else "false"
        else:
            child.text = str(value)
