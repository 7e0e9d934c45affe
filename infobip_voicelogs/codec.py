"""The wire: voice logs and error bodies from and to JSON (orjson + cattrs) and XML (lxml).

```python
logs = decode_logs(response.content, response.headers["content-type"])
body = encode_logs(logs, "json")      # {"results":[...]} exactly as the provider writes it
```

Decoding accepts every variant the provider has been seen to send (see `docs/codec.md`):
offsets `+0100`, `+01:00` or `Z`, with or without milliseconds; `pricePerSecond` or
`pricePerMessage`; `mccmnc` or `mccMnc`; absent or null optional fields; unknown fields;
any XML root element. Money is a `Decimal` exactly as written, never a float. Anything
else raises `DecodeError` saying where (`results[3].sentAt: 'yesterday' is not a
timestamp`), never a raw orjson, lxml or cattrs exception.

XML is parsed hardened: no entity expansion, no DTD, no network, no huge trees, and a
body with a DOCTYPE is refused outright.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from operator import itemgetter
from types import MappingProxyType, MemberDescriptorType
from typing import Any, Literal, TypeVar

import attrs
import cattrs
import orjson
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override
from cattrs.preconf.orjson import make_converter
from lxml import etree

from . import models
from .errors import DecodeError
from .models import ErrorInfo, Price, Status, VoiceLog

__all__ = [
    "ErrorBody",
    "Format",
    "decode_error",
    "decode_logs",
    "encode_error",
    "encode_logs",
    "encode_ndjson",
    "format_of",
    "format_wire_timestamp",
    "media_type",
    "parse_wire_timestamp",
]

#: The two body formats the provider speaks.
Format = Literal["json", "xml"]

T = TypeVar("T")

_EXCERPT_CHARS = 80

# Wire names of the fields whose Python names differ (the rest are spelled the same).
_WIRE_NAMES: dict[type, dict[str, str]] = {
    VoiceLog: {
        "bulk_id": "bulkId",
        "message_id": "messageId",
        "from_": "from",
        "sent_at": "sentAt",
        "done_at": "doneAt",
    },
    Price: {"per_second": "pricePerSecond"},
    Status: {"group_id": "groupId", "group_name": "groupName"},
    ErrorInfo: {"group_id": "groupId", "group_name": "groupName"},
}

# Older spellings the provider still sends, mapped to the one the hooks read.
_ALIASES: dict[type, tuple[tuple[str, str], ...]] = {
    VoiceLog: (("mccMnc", "mccmnc"),),
    Price: (("pricePerMessage", "pricePerSecond"),),
}


# Timestamps...

# Full date, time with seconds, optional fraction, and an offset: fromisoformat alone would
# also take a bare date or a naive time, which the provider never means.
_TIMESTAMP = re.compile(
    r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,9})?(?:Z|[+-]\d\d:?\d\d)", re.ASCII
)


_fromisoformat = datetime.fromisoformat


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
    return _fromisoformat(s)


def format_wire_timestamp(dt: datetime) -> str:
    """Write an aware datetime the way the provider's responses do: ms and `+hhmm`.

    Sub-millisecond digits are dropped (the wire has none). Raises `ValueError` for a
    naive datetime or an offset that is not a whole number of minutes.

    >>> from datetime import timezone
    >>> format_wire_timestamp(datetime(2015, 2, 23, 17, 40, 31, 773000,
    ...                                tzinfo=timezone(timedelta(hours=1))))
    '2015-02-23T17:40:31.773+0100'
    """
    offset = dt.utcoffset()
    if offset is None:
        raise ValueError(f"{dt!r} is naive; the wire needs an offset")
    if offset % timedelta(minutes=1):
        raise ValueError(f"{dt!r} has an offset the wire cannot write (seconds)")
    minutes = int(offset.total_seconds()) // 60
    sign = "+" if minutes >= 0 else "-"
    hours, minutes = divmod(abs(minutes), 60)
    return (
        f"{dt.year:04d}-{dt.month:02d}-{dt.day:02d}T{dt.hour:02d}:{dt.minute:02d}:"
        f"{dt.second:02d}.{dt.microsecond // 1000:03d}{sign}{hours:02d}{minutes:02d}"
    )


# Content types...


def media_type(fmt: Format) -> str:
    """The media type of a format, for `Accept` and `Content-Type` headers.

    >>> media_type("xml")
    'application/xml'
    """
    return "application/json" if fmt == "json" else "application/xml"


def format_of(content_type: str) -> Format:
    """Which format a `Content-Type` header names; `DecodeError` if neither.

    Parameters are ignored; `text/xml` and `+json` / `+xml` suffixes count.

    >>> format_of("application/json;charset=UTF-8")
    'json'
    >>> format_of("application/problem+xml")
    'xml'
    """
    media = content_type.split(";", 1)[0].strip().lower()
    kind, _, subtype = media.partition("/")
    if kind in ("application", "text"):
        if subtype == "json" or subtype.endswith("+json"):
            return "json"
        if subtype == "xml" or subtype.endswith("+xml"):
            return "xml"
    raise DecodeError(f"content type {content_type!r} is neither JSON nor XML")


def _excerpt(body: bytes) -> str:
    return body[:_EXCERPT_CHARS].decode("utf-8", "replace")


# Readers: one per primitive type and format, strict, so a wrong type is an error rather
# than a silent `str(x)`. Each takes a non-None wire value and raises ValueError.


def _bad(value: Any, what: str) -> ValueError:
    shown = repr(value)
    if len(shown) > 40:
        shown = shown[:37] + "..."
    return ValueError(f"{shown} is not {what}")


def _read_str(value: Any) -> str:
    if type(value) is str:
        return value
    raise _bad(value, "a string")


def _read_int(value: Any) -> int:
    if type(value) is int:
        return value
    raise _bad(value, "an integer")


def _read_bool(value: Any) -> bool:
    if type(value) is bool:
        return value
    raise _bad(value, "true or false")


def _decimal(text: str) -> Decimal:
    try:
        amount = Decimal(text)
    except InvalidOperation:
        raise _bad(text, "an amount") from None
    if not amount.is_finite():
        raise _bad(text, "a finite amount")
    return amount


def _read_amount(value: Any) -> Decimal:
    # Prices arrive as strings because `_quote_prices` quoted them before orjson saw them.
    if type(value) is str:
        return _decimal(value)
    if type(value) is int:
        return Decimal(value)
    if type(value) is float:
        # Only an escaped key (`"pricePer\u0053econd"`) escapes the quoting: the shortest
        # repr is what the provider wrote for any amount a float can tell apart.
        return _decimal(repr(value))
    raise _bad(value, "an amount")


def _read_timestamp(value: Any) -> datetime:
    if type(value) is str:
        return parse_wire_timestamp(value)
    raise _bad(value, "a timestamp")


def _xml_leaf(value: Any) -> str:
    if type(value) is str:
        return value.strip()
    raise _bad(value, "text")  # an element with children where a value belongs


def _read_xml_int(value: Any) -> int:
    text = _xml_leaf(value)
    if text.isascii() and text.lstrip("+-").isdigit():
        return int(text)
    raise _bad(value, "an integer")


def _read_xml_bool(value: Any) -> bool:
    text = _xml_leaf(value)
    if text in ("true", "1"):
        return True
    if text in ("false", "0"):
        return False
    raise _bad(value, "true or false")


def _read_xml_amount(value: Any) -> Decimal:
    return _decimal(_xml_leaf(value))


def _read_xml_timestamp(value: Any) -> datetime:
    return parse_wire_timestamp(_xml_leaf(value))


Reader = Callable[[Any], Any]

_JSON_READERS: dict[type, Reader] = {
    str: _read_str,
    int: _read_int,
    bool: _read_bool,
    Decimal: _read_amount,
    datetime: _read_timestamp,
}
# XML leaves are text: typed fields are read out of it. Strings are kept as written.
_XML_READERS: dict[type, Reader] = {
    str: _read_str,
    int: _read_xml_int,
    bool: _read_xml_bool,
    Decimal: _read_xml_amount,
    datetime: _read_xml_timestamp,
}
# Readers that only check a type: the generated hooks inline them as `type(v) is T`.
_TYPE_CHECKS: dict[Reader, type] = {_read_str: str, _read_int: int, _read_bool: bool}


def _optional_reader(read: Reader, *, xml: bool) -> Reader:
    """`None` (and in XML an empty element, `<doneAt/>`) is an absent value."""
    blank_is_none = xml and read is not _read_str

    def read_optional(value: Any) -> Any:
        if value is None or (blank_is_none and type(value) is str and not value.strip()):
            return None
        return read(value)

    return read_optional


# Structure hooks: a fast one generated per class, and a precise one for error messages.

# The models' annotations are strings (PEP 563): resolve them once, here, for the hooks.
for _cls in (Price, Status, ErrorInfo, VoiceLog):
    attrs.resolve_types(_cls, globalns=vars(models))


def _split_optional(tp: Any) -> tuple[Any, bool]:
    args = getattr(tp, "__args__", ())
    if type(None) in args:
        return next(a for a in args if a is not type(None)), True
    return tp, False


# What a cached JSON value must be to be the same wire value as its key: a price is quoted
# text (a bare number, left by an escaped key, is read afresh: `1` and `1.0` differ).
_RAW_JSON_TYPES: dict[type, type] = {int: int, bool: bool, Decimal: str, datetime: str}

# Classes whose instances the fast hooks share between logs, and how many of each to keep.
_SHARED = (Price, Status, ErrorInfo)
_SHARED_CACHE_SIZE = 1024


def _direct_setters(cls: type) -> list[Callable[[Any, Any], None]] | None:
    """The slot setters that build `cls` without its `__init__`, if that builds the same.

    An attrs frozen class's `__init__` sets each slot through `object.__setattr__`. Writing
    the slots through their descriptors does the same a quarter faster (about 0.35 µs a
    log, an eighth of structuring it), but only for a class whose `__init__` does nothing
    else: no validator, converter, default factory, init hook or cached hash. Anything
    else gets `None`, and the generated code then calls the class.
    """
    fields = attrs.fields(cls)
    names = [field.name for field in fields]
    if set(getattr(cls, "__slots__", ())) - {*names, "__weakref__"}:
        return None  # a hidden slot (a cached hash, say) that __init__ would set
    if hasattr(cls, "__attrs_pre_init__") or hasattr(cls, "__attrs_post_init__"):
        return None
    setters = []
    for field in fields:
        descriptor = cls.__dict__.get(field.name)
        if (
            field.validator is not None
            or field.converter is not None
            or not field.init
            or isinstance(field.default, attrs.Factory)  # type: ignore[arg-type]
            or not isinstance(descriptor, MemberDescriptorType)
        ):
            return None
        setters.append(descriptor.__set__)
    return setters


def _fast_hook(
    cls: type[T], readers: Mapping[type, Reader], *, xml: bool
) -> Callable[[Any, Any], T]:
    """Generate straight-line structuring code for `cls`, the way cattrs does, but tighter.

    cattrs's generic hooks cost a call per field and per `X | None`; on a page of logs that
    made decoding 4x slower than pydantic. Here the fields come out of the dict in one
    `itemgetter` call (one `get` each when some are missing), each is checked by an inline
    type test or one reader call, nested classes are inlined, and the instance's slots are
    written directly. Any failure just raises: the precise cattrs hooks then say where
    and why.
    """
    names: dict[str, Any] = {"bad": _bad, "len": len, "KeyError": KeyError, "dict": dict}
    lines = ["def structure(o, _=None):"]
    _emit(cls, "o", "built", "", "    ", lines, names, readers, xml=xml)
    lines.append("    return built")
    # Everything the function uses is a global of its own namespace: 3.11 caches those
    # lookups, where keyword defaults would be filled in from a dict on every call.
    namespace = dict(names)
    exec(compile("\n".join(lines), f"<codec: structure {cls.__name__}>", "exec"), namespace)
    return namespace["structure"]  # type: ignore[no-any-return]


def _emit(
    cls: type,
    src: str,
    dst: str,
    p: str,
    ind: str,
    lines: list[str],
    names: dict[str, Any],
    readers: Mapping[type, Reader],
    *,
    xml: bool,
) -> None:
    """Append the lines that structure the dict in variable `src` as a `cls` into `dst`.

    Every name the lines use starts with `p`, so a nested class's lines can sit inside
    its parent's with a longer prefix.
    """
    fields = attrs.fields(cls)
    wires = [_WIRE_NAMES[cls].get(field.name, field.name) for field in fields]
    values = [f"{p}v{i}" for i in range(len(fields))]
    names[f"{p}cls"] = cls
    names[f"{p}getter"] = itemgetter(*wires)
    # Missing fields (a pending log has no price yet) cost a `get` each instead.
    gets = ", ".join(f"{p}get({wire!r})" for wire in wires)
    lines.append(f"{ind}if type({src}) is not dict: raise bad({src}, 'an object')")
    for alias, wire in _ALIASES.get(cls, ()):
        lines.append(f"{ind}if {alias!r} in {src} and {src}.get({wire!r}) is None:")
        lines.append(f"{ind}    {src} = {{**{src}, {wire!r}: {src}[{alias!r}]}}")
    lines += [
        f"{ind}if len({src}) >= {len(fields)}:",
        f"{ind}    try:",
        f"{ind}        {p}vals = {p}getter({src})",
        f"{ind}    except KeyError:",
        f"{ind}        {p}get = {src}.get; {p}vals = ({gets},)",
        f"{ind}else:",
        f"{ind}    {p}get = {src}.get; {p}vals = ({gets},)",
    ]
    if cls in _SHARED:
        # A page repeats a handful of prices, statuses and errors: look the raw wire values
        # up first and share the (frozen) object built from them before. Equal keys can
        # still differ in type where JSON has numbers (`true == 1 == 1.0`), so a hit
        # re-checks the raw type of every field that is not a string; strings equal only
        # strings, and XML has only strings.
        cache: dict[tuple[Any, ...], Any] = {}
        names[f"{p}cache"] = cache
        names[f"{p}cache_get"] = cache.get
        checks = [f"{dst} is None"]
        for i, field in enumerate(fields):
            base, optional = _split_optional(field.type)
            if not xml and base is not str:
                names[f"{p}r{i}"] = _RAW_JSON_TYPES[base]
                test = f"type({p}vals[{i}]) is not {p}r{i}"
                checks.append(f"({p}vals[{i}] is not None and {test})" if optional else test)
        lines.append(f"{ind}{dst} = {p}cache_get({p}vals)")
        lines.append(f"{ind}if {' or '.join(checks)}:")
        ind += "    "
    lines.append(f"{ind}{', '.join(values)}, = {p}vals")
    for i, field in enumerate(fields):
        base, optional = _split_optional(field.type)
        v = values[i]
        if not optional:
            lines.append(f"{ind}if {v} is None: raise KeyError({wires[i]!r})")
        if attrs.has(base):
            lines.append(f"{ind}if {v} is not None:")
            _emit(base, v, v, f"{p}n{i}_", ind + "    ", lines, names, readers, xml=xml)
        elif readers[base] in _TYPE_CHECKS:
            names[f"{p}t{i}"] = base
            # The type first: it passes far more often than the value is absent.
            absent = f" and {v} is not None" if optional else ""
            failed = f"raise bad({v}, {base.__name__!r})"
            lines.append(f"{ind}if type({v}) is not {p}t{i}{absent}: {failed}")
        elif base is datetime:  # two per log: worth inlining the reader
            # The extended form only (`T` at 10: no bare dates, no `20150223T1740`), and an
            # offset; any other oddity fails fromisoformat, and the precise path says why.
            # XML text is stripped first, and a blank optional one is absent.
            names["fromisoformat"] = _fromisoformat
            inner = ind
            if xml:
                lines.append(f"{ind}if {v} is not None: {v} = {v}.strip()")
                if optional:
                    lines.append(f"{ind}if not {v}: {v} = None")
            if optional:
                lines.append(f"{ind}if {v} is not None:")
                inner += "    "
            lines.append(f"{inner}if {v}[10:11] != 'T': raise bad({v}, 'a timestamp')")
            lines.append(f"{inner}{v} = fromisoformat({v})")
            lines.append(f"{inner}if {v}.tzinfo is None: raise bad({v}, 'a timestamp')")
        elif optional and not xml:
            names[f"{p}f{i}"] = readers[base]
            lines.append(f"{ind}if {v} is not None: {v} = {p}f{i}({v})")
        else:
            read = readers[base]
            names[f"{p}f{i}"] = _optional_reader(read, xml=xml) if optional else read
            lines.append(f"{ind}{v} = {p}f{i}({v})")
    setters = _direct_setters(cls)
    if setters is None:
        lines.append(f"{ind}{dst} = {p}cls({', '.join(values)})")
    else:
        names["new"] = object.__new__
        lines.append(f"{ind}{dst} = new({p}cls)")
        for i, setter in enumerate(setters):
            names[f"{p}s{i}"] = setter
            lines.append(f"{ind}{p}s{i}({dst}, {values[i]})")
    if cls in _SHARED:
        lines.append(f"{ind}if len({p}cache) < {_SHARED_CACHE_SIZE}: {p}cache[{p}vals] = {dst}")


def _precise_hook(cls: type[T], converter: cattrs.Converter) -> Callable[[Any, Any], T]:
    """cattrs's own hook with detailed validation: slow, but its notes say which field."""
    renames = {name: override(rename=wire) for name, wire in _WIRE_NAMES[cls].items()}
    generated = make_dict_structure_fn(
        cls,
        converter,
        _cattrs_detailed_validation=True,
        **renames,  # type: ignore[arg-type]
    )
    aliases = _ALIASES.get(cls, ())

    def structure(obj: Any, _: Any = None) -> T:
        if type(obj) is not dict:
            raise _bad(obj, "an object")
        for alias, wire in aliases:
            if alias in obj and obj.get(wire) is None:
                obj = {**obj, wire: obj[alias]}
        # Null is as absent as missing: cattrs then names a missing required field itself.
        return generated({k: v for k, v in obj.items() if v is not None}, cls)

    return structure


def _converter(*, xml: bool, precise: bool) -> cattrs.Converter:
    """One converter per format, built once at import, with one hook per class."""
    converter = make_converter(detailed_validation=precise)
    readers = _XML_READERS if xml else _JSON_READERS
    for tp, read in readers.items():
        converter.register_structure_hook(tp, _as_hook(read))
        converter.register_structure_hook(tp | None, _as_hook(_optional_reader(read, xml=xml)))
    for cls in (Price, Status, ErrorInfo, VoiceLog):  # inner classes first: hooks look them up
        hook = _precise_hook(cls, converter) if precise else _fast_hook(cls, readers, xml=xml)
        converter.register_structure_hook(cls, hook)
    if not xml:
        converter.register_unstructure_hook(datetime, format_wire_timestamp)
        converter.register_unstructure_hook(Decimal, _decimal_fragment)
        for cls in (Price, Status, ErrorInfo, VoiceLog):
            converter.register_unstructure_hook(cls, _unstructure_hook(cls, converter))
    return converter


def _as_hook(read: Reader) -> Callable[[Any, Any], Any]:
    return lambda value, _: read(value)


def _unstructure_hook(cls: type, converter: cattrs.Converter) -> Callable[[Any], Any]:
    renames = {name: override(rename=wire) for name, wire in _WIRE_NAMES[cls].items()}
    return make_dict_unstructure_fn(
        cls,
        converter,
        _cattrs_omit_if_default=True,
        **renames,  # type: ignore[arg-type]
    )


def _decimal_fragment(amount: Decimal) -> orjson.Fragment:
    if not amount.is_finite():
        raise ValueError(f"{amount} is not an amount the wire can carry")
    # A JSON number written exactly as the Decimal, never through a float.
    return orjson.Fragment(str(amount))


_JSON = _converter(xml=False, precise=False)
_XML = _converter(xml=True, precise=False)
# Used only after the fast path failed, to say exactly where and why.
_JSON_PRECISE = _converter(xml=False, precise=True)
_XML_PRECISE = _converter(xml=True, precise=True)


def _structure_all(
    items: list[Any], fast: cattrs.Converter, precise: cattrs.Converter, body: bytes
) -> list[VoiceLog]:
    structure = fast.get_structure_hook(VoiceLog)
    try:
        return [structure(item, VoiceLog) for item in items]
    except Exception:  # any failure is re-run precisely just below
        pass
    slow = precise.get_structure_hook(VoiceLog)
    for index, item in enumerate(items):
        try:
            slow(item, VoiceLog)
        except Exception as exc:
            path, leaf = _locate(exc, VoiceLog)
            raise DecodeError(
                _describe(leaf), path=f"results[{index}]{path}", excerpt=_excerpt(body)
            ) from exc
    raise DecodeError("the logs do not have the expected shape", excerpt=_excerpt(body))


def _locate(exc: BaseException, cls: type | None) -> tuple[str, BaseException]:
    """Follow cattrs's validation notes down to the first leaf error, naming wire fields."""
    path = ""
    while isinstance(exc, cattrs.ClassValidationError) and exc.exceptions:
        inner = exc.exceptions[0]
        note = next(
            (
                n
                for n in getattr(inner, "__notes__", ())
                if isinstance(n, cattrs.AttributeValidationNote)
            ),
            None,
        )
        if note is None:
            break
        wire = _WIRE_NAMES.get(cls, {}).get(note.name, note.name) if cls else note.name
        path += f".{wire}"
        cls = note.type if attrs.has(note.type) else _inner_class(note.type)
        exc = inner
    if isinstance(exc, KeyError):  # the message names the missing field already
        path = path.rpartition(".")[0]
    return path, exc


def _inner_class(tp: Any) -> type | None:
    for arg in getattr(tp, "__args__", ()):
        if attrs.has(arg):
            return arg
    return None


def _describe(leaf: BaseException) -> str:
    if isinstance(leaf, KeyError):
        return f"missing field {leaf.args[0]!r}"
    if isinstance(leaf, ValueError) and leaf.args:
        return str(leaf.args[0])
    return f"unexpected value ({type(leaf).__name__})"


# JSON...

# A price amount after a price key: quoted, so orjson hands it over as text, not a float.
_PRICE_KEY = rb'"pricePer(?:Second|Message)"\s*:\s*'
_NUMBER = rb"(-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)"
_PRICE_NUMBER = re.compile(b"(" + _PRICE_KEY + b")" + _NUMBER)
# The same, only after an unescaped key. The lookbehind costs the regex its literal-prefix
# scan (5x slower), so it is used only when the body holds an escaped quote before the name.
_UNESCAPED_PRICE_NUMBER = re.compile(rb"((?<!\\)" + _PRICE_KEY + b")" + _NUMBER)


def _quote_prices(body: bytes) -> bytes:
    if b'"pricePer' not in body:
        return body
    pattern = _UNESCAPED_PRICE_NUMBER if b'\\"pricePer' in body else _PRICE_NUMBER
    # split() hands back [text, key, amount, text, key, amount, ..., text]: quoting every
    # third piece and joining is twice as fast as sub() with a function or a template.
    pieces = pattern.split(body)
    pieces[2::3] = [b'"' + amount + b'"' for amount in pieces[2::3]]
    return b"".join(pieces)


def _decode_json(body: bytes) -> list[VoiceLog]:
    try:
        document = orjson.loads(_quote_prices(body))
    except orjson.JSONDecodeError as exc:
        raise DecodeError(f"not valid JSON ({exc.msg})", excerpt=_excerpt(body)) from exc
    return _structure_all(_results_of(document, body), _JSON, _JSON_PRECISE, body)


def _results_of(document: Any, body: bytes) -> list[Any]:
    if type(document) is not dict:
        raise DecodeError("expected an object with 'results'", excerpt=_excerpt(body))
    if "results" not in document:
        raise DecodeError("no 'results' in the body", excerpt=_excerpt(body))
    results = document["results"]
    if results is None:
        return []
    if type(results) is not list:
        raise DecodeError("is not a list", path="results", excerpt=_excerpt(body))
    return results


# XML...

_PARSERS = threading.local()


def _parser() -> etree.XMLParser:
    # lxml parsers must not be shared between threads: one per thread, made once.
    parser: etree.XMLParser | None = getattr(_PARSERS, "parser", None)
    if parser is None:
        parser = etree.XMLParser(
            resolve_entities=False,
            no_network=True,
            load_dtd=False,
            huge_tree=False,
            remove_comments=True,
            remove_pis=True,
        )
        _PARSERS.parser = parser
    return parser


def _parse_xml(body: bytes) -> etree._Element:
    """Parse untrusted XML: no DOCTYPE (so no entities to expand or fetch), no network."""
    try:
        root = etree.fromstring(body, _parser())
    except (etree.XMLSyntaxError, ValueError) as exc:
        raise DecodeError(f"not well-formed XML ({exc})", excerpt=_excerpt(body)) from exc
    docinfo: Any = root.getroottree().docinfo  # lxml-stubs lack `doctype`
    if docinfo.doctype or docinfo.internalDTD is not None:
        # The provider never sends one; a DOCTYPE is how entity attacks come in.
        raise DecodeError("XML with a DOCTYPE is refused", excerpt=_excerpt(body))
    return root


def _local(tag: str) -> str:
    return tag.rpartition("}")[2] if tag[0] == "{" else tag


_NIL = "{http://www.w3.org/2001/XMLSchema-instance}nil"


def _xml_value(element: etree._Element) -> Any:
    if len(element):
        return _xml_dict(element)
    if element.get(_NIL) == "true":
        return None
    return element.text or ""


def _xml_dict(element: etree._Element) -> dict[str, Any]:
    """An element's children as a dict: nested ones as dicts, leaves as their text.

    The hardened parser drops comments and PIs and refuses entities, so every child is an
    element. An empty leaf is `""`, or `None` with `xsi:nil="true"`; a repeated name keeps
    the last. This is the general walk; `_xml_items` is the same, unrolled for speed.
    """
    fields: dict[str, Any] = {}
    for child in element:
        tag = child.tag
        if tag[0] == "{":  # namespaces are rare: strip them only when there is one
            tag = _local(tag)
        fields[tag] = _xml_dict(child) if len(child) else (child.text or _empty_or_nil(child))
    return fields


def _empty_or_nil(element: etree._Element) -> str | None:
    return None if element.get(_NIL) == "true" else ""


def _xml_items(results: etree._Element, body: bytes) -> list[dict[str, Any]]:
    """`[_xml_dict(result) for result in results]`, a fifth faster on a page of logs.

    Every element costs lxml a proxy object, so the walk is most of an XML decode. This
    one has the logs' two levels unrolled, and skips the namespace test when the body
    declares none (an undeclared prefix is a parse error, so no tag can start with `{`).
    """
    if b"xmlns" in body:
        return [_xml_dict(result) for result in results]
    items = []
    for result in results:
        fields: dict[str, Any] = {}
        for child in result:
            if len(child):
                inner: dict[str, Any] = {}
                for leaf in child:
                    if len(leaf):
                        inner[leaf.tag] = _xml_dict(leaf)
                    else:
                        text = leaf.text
                        inner[leaf.tag] = text if text is not None else _empty_or_nil(leaf)
                fields[child.tag] = inner
            else:
                text = child.text
                fields[child.tag] = text if text is not None else _empty_or_nil(child)
        items.append(fields)
    return items


def _decode_xml(body: bytes) -> list[VoiceLog]:
    root = _parse_xml(body)
    results = next((c for c in root if isinstance(c.tag, str) and _local(c.tag) == "results"), None)
    if results is None:
        raise DecodeError(f"no <results> under <{root.tag}>", excerpt=_excerpt(body))
    return _structure_all(_xml_items(results, body), _XML, _XML_PRECISE, body)


# Logs: the public pair...


def decode_logs(body: bytes, content_type: str) -> list[VoiceLog]:
    """Decode a `GET /tts/3/logs` response body into logs, newest first as sent.

    `content_type` is the response's `Content-Type` header (parameters allowed).
    Raises `DecodeError`, saying what and where, for anything that is not a logs body.

    >>> decode_logs(b'{"results":[{"messageId":"m1","price":{"pricePerSecond":0.1,'
    ...             b'"currency":"EUR"}}]}', "application/json")[0].price
    Price(per_second=Decimal('0.1'), currency='EUR')
    """
    if format_of(content_type) == "json":
        return _decode_json(body)
    return _decode_xml(body)


def encode_logs(logs: Iterable[VoiceLog], fmt: Format) -> bytes:
    """Encode logs as the provider would send them; `decode_logs` reads them back equal.

    JSON is `{"results":[...]}` with timestamps like `2015-02-23T17:40:31.773+0100`,
    prices as JSON numbers written exactly as the `Decimal`, and absent fields omitted;
    XML is `<smsLogsResponse><results><result>...`. Raises `ValueError` for what the wire
    cannot carry: a naive datetime, a non-finite price, or (XML) a control character.
    """
    if fmt == "json":
        unstructure = _JSON.get_unstructure_hook(VoiceLog)
        return orjson.dumps({"results": [unstructure(log) for log in logs]})
    root = etree.Element("smsLogsResponse")
    results = etree.SubElement(root, "results")
    for log in logs:
        _xml_fields(etree.SubElement(results, "result"), log)
    return etree.tostring(root, encoding="UTF-8", xml_declaration=False)


def encode_ndjson(logs: Iterable[VoiceLog]) -> bytes:
    """Encode logs as NDJSON: one log a line, each in the provider's JSON shape.

    This is what `infobip-voicelogs fetch --format ndjson` prints; each line decodes with
    `decode_logs(b'{"results":[' + line + b']}', "application/json")`.
    """
    unstructure = _JSON.get_unstructure_hook(VoiceLog)
    return b"".join(orjson.dumps(unstructure(log)) + b"\n" for log in logs)


def _xml_fields(parent: etree._Element, obj: Any) -> None:
    wire_names = _WIRE_NAMES[type(obj)]
    for field in attrs.fields(type(obj)):
        value = getattr(obj, field.name)
        if value is None:
            continue
        child = etree.SubElement(parent, wire_names.get(field.name, field.name))
        if attrs.has(type(value)):
            _xml_fields(child, value)
        else:
            child.text = _xml_text(value)


def _xml_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return format_wire_timestamp(value)
    if isinstance(value, Decimal) and not value.is_finite():
        raise ValueError(f"{value} is not an amount the wire can carry")
    return str(value)


# Error bodies...


def _frozen_errors(value: Mapping[str, Iterable[str]]) -> Mapping[str, tuple[str, ...]]:
    return MappingProxyType({key: tuple(messages) for key, messages in value.items()})


@attrs.frozen
class ErrorBody:
    """What the provider said in an error response: its message id, text and field errors.

    >>> decode_error(b'{"errorCode":"E429","description":"Too many requests"}',
    ...              "application/json")
    ErrorBody(message_id='E429', text='Too many requests', validation_errors=mappingproxy({}))
    """

    message_id: str | None
    text: str | None
    validation_errors: Mapping[str, tuple[str, ...]] = attrs.field(
        factory=dict, converter=_frozen_errors
    )


_ERROR_TEXT_CHARS = 200


def decode_error(body: bytes, content_type: str) -> ErrorBody:
    """Read an error response body of either shape the provider uses; never raises.

    The older shape is `{"requestError":{"serviceException":{"messageId","text"}}}` (XML:
    `<ApiException><requestError><serviceException>...`), the newer one
    `{"errorCode","description","action","violations":[...]}`; both may carry
    `validationErrors`. A body of neither shape gives `ErrorBody(None, excerpt, {})`, the
    excerpt being the start of the body (`None` if it is empty).
    """
    try:
        fmt = format_of(content_type)
    except DecodeError:
        stripped = body.lstrip()
        fmt = "json" if stripped[:1] in (b"{", b"[") else "xml"
    try:
        document = orjson.loads(body) if fmt == "json" else _xml_value(_parse_xml(body))
        found = _error_from(document)
    except Exception:  # an unreadable error body must not hide the error status
        found = None
    if found is not None:
        return found
    text = body[:_ERROR_TEXT_CHARS].decode("utf-8", "replace").strip()
    return ErrorBody(None, text or None, {})


def _error_from(document: Any) -> ErrorBody | None:
    if not isinstance(document, dict):
        return None
    request_error = document.get("requestError")
    if isinstance(request_error, dict):
        # serviceException usually; policyException for some refusals.
        for exception in request_error.values():
            if isinstance(exception, dict):
                return ErrorBody(
                    _text(exception.get("messageId")),
                    _text(exception.get("text")),
                    _validation_errors(exception.get("validationErrors")),
                )
    message_id = _text(document.get("errorCode") or document.get("messageId"))
    text = _text(
        document.get("description") or document.get("errorMessage") or document.get("text")
    )
    if message_id is None and text is None:
        return None
    errors = dict(_validation_errors(document.get("validationErrors")))
    for field, messages in _validation_errors(document.get("violations")).items():
        errors[field] = errors.get(field, ()) + messages
    return ErrorBody(message_id, text, errors)


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, dict | list):
        return None
    return str(value)


def _validation_errors(value: Any) -> dict[str, tuple[str, ...]]:
    """`{"field": ["msg", ...]}` or `[{"property": "field", "violation": "msg"}, ...]`."""
    errors: dict[str, list[str]] = {}
    if isinstance(value, dict):
        for field, messages in value.items():
            if isinstance(messages, dict):  # XML: <field><message>...</message></field>
                messages = list(messages.values())
            items = messages if isinstance(messages, list) else [messages]
            errors.setdefault(str(field), []).extend(str(m) for m in items if m is not None)
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, dict):
                field = item.get("property") or item.get("field") or ""
                message = item.get("violation") or item.get("message") or ""
                errors.setdefault(str(field), []).append(str(message))
    return {field: tuple(messages) for field, messages in errors.items()}


def encode_error(
    message_id: str, text: str, fmt: Format, *, shape: Literal["old", "new"] = "old"
) -> bytes:
    """Write an error body as the provider does, for the fake provider and tests.

    >>> encode_error("TOO_MANY_REQUESTS", "Slow down", "json")
    b'{"requestError":{"serviceException":{"messageId":"TOO_MANY_REQUESTS","text":"Slow down"}}}'
    """
    if shape == "old":
        document: dict[str, Any] = {
            "requestError": {"serviceException": {"messageId": message_id, "text": text}}
        }
    else:
        document = {"errorCode": message_id, "description": text}
    if fmt == "json":
        return orjson.dumps(document)
    root = etree.Element("ApiException")
    _xml_tree(root, document)
    return etree.tostring(root, encoding="UTF-8", xml_declaration=False)


def _xml_tree(parent: etree._Element, document: Mapping[str, Any]) -> None:
    for key, value in document.items():
        child = etree.SubElement(parent, key)
        if isinstance(value, Mapping):
            _xml_tree(child, value)
        else:
            child.text = str(value)
