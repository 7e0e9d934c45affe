"""The fast structuring hooks: straight-line Python written per class, the way cattrs does.

The function written here takes all of an object's fields out of its dict in one
`itemgetter` call (one `get` each when some are missing), checks each by an inline type
test or one reader call, inlines the nested classes, shares equal prices, statuses and
errors between logs, and writes the instance's slots directly: none of the per-field and
per-`X | None` calls of cattrs's generic hooks (docs/performance.md has the numbers).
Any failure just raises: the precise cattrs hooks (`_convert`) then say where and why.

The same writer serves every wire model: the logs' and the delivery reports'. A model of
several shapes gets a hook per shape that reads only that shape's fields (`only`), and a
model whose times may come as epoch milliseconds and are kept in UTC asks for `utc`.

The source is registered in `linecache` under a name of its own, so a traceback through
a generated function shows its lines, as it does for cattrs's own generated code. The
precise path respells older field names with the same generated lines (`respeller`).
For `VoiceLog` from JSON it begins:

    def structure_VoiceLog(wire, _=None):
        if type(wire) is not dict: raise bad(wire, 'an object')
        if 'mccMnc' in wire and wire.get('mccmnc') is None:
            wire = {**wire, 'mccmnc': wire['mccMnc']}
        if len(wire) >= 12:
            try:
                row = getter(wire)
        ...
        bulk_id, message_id, to, from_, text, sent_at, ..., = row
        if type(bulk_id) is not str and bulk_id is not None: raise bad(bulk_id, 'str')
"""

from __future__ import annotations

import contextlib
import linecache
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from operator import itemgetter
from types import MemberDescriptorType
from typing import Any, TypeVar

import attrs

from ..models import ErrorInfo, Price, Status
from ._readers import TYPE_CHECKS, Reader, bad, optional_reader
from ._timestamps import canonical_test, fromisoformat
from ._wire import ALIASES, split_optional, wire_name

T = TypeVar("T")

# What a cached JSON value must be to be the same wire value as its key: a price is quoted
# text (a bare number, left by an escaped key, is read afresh: `1` and `1.0` differ).
_RAW_JSON_TYPES: dict[type, type] = {int: int, bool: bool, Decimal: str, datetime: str}

# Classes whose instances the fast hooks share between logs, and how many of each to keep.
_SHARED = (Price, Status, ErrorInfo)
_SHARED_CACHE_SIZE = 1024


def fast_hook(
    cls: type[T],
    readers: Mapping[Any, Reader],
    *,
    xml: bool,
    only: frozenset[str] | None = None,
    utc: bool = False,
) -> Callable[[Any, Any], T]:
    """A generated function that structures a wire dict as a `cls`, or raises.

    `readers` has one reader per field type (`_readers`). With `only`, the hook reads just
    those fields of `cls` and leaves the others at their defaults: a hook for one shape of
    a model. With `utc`, every datetime comes out in UTC, and its reader may take more than
    text (epoch milliseconds), so the inline check of the provider's form tests the type
    first.
    """
    return _HookBuilder(readers, xml=xml, only=only, utc=utc).structure(cls)


def check_hook(
    cls: type,
    readers: Mapping[Any, Reader],
    *,
    xml: bool,
    only: frozenset[str] | None = None,
    utc: bool = False,
) -> Callable[[Any, Any], bool]:
    """A generated function that checks a wire dict as `fast_hook` would structure it.

    The same lines as `fast_hook`'s (every field read and checked the same way, so both
    accept and refuse alike), without building the instances: it returns `True`, or
    raises as `fast_hook` would. For a caller that keeps the wire form and needs only to
    know that it decodes.
    """
    return _HookBuilder(readers, xml=xml, only=only, utc=utc, build=False).structure(cls)


def respeller(cls: type) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """A function that copies each older spelling of a field to the current one, where that
    is absent or null, into a new dict (the argument is never changed).

    It is the lines the fast hooks inline, compiled alone, so both paths respell alike.
    """
    return _HookBuilder({}, xml=False).respeller(cls)


def direct_setters(cls: type) -> list[Callable[[Any, Any], None]] | None:
    """The slot setters that build `cls` without its `__init__`, if that builds the same.

    An attrs frozen class's `__init__` sets each slot through `object.__setattr__`; writing
    the slots through their descriptors does the same for less, but only for a class whose
    `__init__` does nothing else: no validator, converter, default factory, init hook or
    cached hash. Anything else gets `None`, and the generated code then calls the class.
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


def _register_source(source: str, description: str) -> str:
    """Keep generated source where tracebacks look for it; return its unique file name."""
    filename = f"<infobip_voicelogs generated {description}>"
    copy = 1
    while filename in linecache.cache:
        copy += 1
        filename = f"<infobip_voicelogs generated {description} #{copy}>"
    # No modification time: linecache.checkcache() then leaves the entry alone.
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    return filename


class _HookBuilder:
    """Writes one generated function: its lines of source and the globals they use.

    `structure` and `respeller` each write and compile one function; the private methods
    are the steps of structuring an object, one each. A nested class's steps are written
    inside its parent's, its names prefixed with the field's (`price_row`), and every name
    is checked to be fresh, so a field called `type` or `row` cannot shadow another.
    """

    def __init__(
        self,
        readers: Mapping[Any, Reader],
        *,
        xml: bool,
        only: frozenset[str] | None = None,
        utc: bool = False,
        build: bool = True,
    ) -> None:
        self._readers = readers
        self._build = build
        self._xml = xml
        self._only = only
        self._utc = utc
        self._top: type | None = None  # the class `structure` writes for; `only` is its
        self._lines: list[str] = []
        self._indent = ""
        # Everything the function uses is a global of its own namespace: 3.11 caches those
        # lookups, where keyword defaults would be filled in from a dict on every call.
        self._globals: dict[str, Any] = {
            "bad": bad,
            "dict": dict,
            "fromisoformat": fromisoformat,
            "KeyError": KeyError,
            "len": len,
            "new": object.__new__,
            "type": type,
        }
        self._taken = set(self._globals)

    def structure(self, cls: type[T]) -> Callable[[Any, Any], T]:
        """Write, compile and return the function that structures a `cls`."""
        self._top = cls
        function = self._fresh(f"structure_{cls.__name__}")
        wire, built = self._fresh("wire"), self._fresh("built")
        self._taken.add("_")
        self._line(f"def {function}({wire}, _=None):")
        with self._block():
            self._object(cls, source=wire, target=built, prefix="")
            self._line(f"return {built}")
        fmt = "xml" if self._xml else "json"
        subset = "" if self._only is None else f", {len(self._only)} fields"
        verb = "structure" if self._build else "check"
        return self._compile(function, f"{verb} {cls.__qualname__} ({fmt}{subset})")

    def respeller(self, cls: type) -> Callable[[dict[str, Any]], dict[str, Any]]:
        """Write, compile and return the function that respells a `cls`'s wire dict."""
        function, wire = self._fresh(f"respell_{cls.__name__}"), self._fresh("wire")
        self._line(f"def {function}({wire}):")
        with self._block():
            self._respell(cls, wire)
            self._line(f"return {wire}")
        return self._compile(function, f"respell {cls.__qualname__}")

    def _compile(self, function: str, description: str) -> Callable[..., Any]:
        source = "".join(f"{line}\n" for line in self._lines)
        filename = _register_source(source, description)
        namespace = dict(self._globals)
        exec(compile(source, filename, "exec"), namespace)
        return namespace[function]  # type: ignore[no-any-return]

    # -- one object ------------------------------------------------------------------------

    def _fields(self, cls: type) -> list[attrs.Attribute[Any]]:
        """The fields of `cls` the hook reads: every one, or `only`'s of the top class."""
        fields = list(attrs.fields(cls))
        if cls is not self._top or self._only is None:
            return fields
        return [field for field in fields if field.name in self._only]

    def _object(self, cls: type, *, source: str, target: str, prefix: str) -> None:
        """Structure the dict in variable `source` as a `cls` into variable `target`."""
        fields = self._fields(cls)
        self._require_dict(source)
        self._respell(cls, source)
        row = self._take_row(cls, source, prefix)
        if cls not in _SHARED:
            self._construct(cls, row, target, prefix)
            return
        # A page repeats a handful of prices, statuses and errors: look the raw wire
        # values up first and share the (frozen) object built from them before.
        cache = self._look_up_shared(fields, row, target, prefix)
        with self._block():
            self._construct(cls, row, target, prefix)
            self._line(f"if len({cache}) < {_SHARED_CACHE_SIZE}: {cache}[{row}] = {target}")

    def _require_dict(self, source: str) -> None:
        self._line(f"if type({source}) is not dict: raise bad({source}, 'an object')")

    def _respell(self, cls: type, source: str) -> None:
        """Copy each older spelling the provider sent to the current one, if that is unset."""
        for old, current in ALIASES.get(cls, ()):
            # Inline, not a call: the newer spec and the XML example use the older names,
            # so a whole page may take this path.
            self._line(f"if {old!r} in {source} and {source}.get({current!r}) is None:")
            with self._block():
                self._line(f"{source} = {{**{source}, {current!r}: {source}[{old!r}]}}")

    def _take_row(self, cls: type, source: str, prefix: str) -> str:
        """Take every field's wire value into a tuple; return the tuple's variable."""
        wires = [wire_name(cls, field.name) for field in self._fields(cls)]
        getter = self._global(f"{prefix}getter", itemgetter(*wires))
        row, get = self._fresh(f"{prefix}row"), self._fresh(f"{prefix}get")
        # itemgetter of one key returns the value itself, not a 1-tuple.
        take_all = f"{getter}({source})" if len(wires) > 1 else f"({getter}({source}),)"
        # Missing fields (a pending log has no price yet) cost a `get` each instead.
        gets = "".join(f"{get}({wire!r}), " for wire in wires)
        take_each = f"{get} = {source}.get; {row} = ({gets})"
        self._line(f"if len({source}) >= {len(wires)}:")
        with self._block():
            self._line("try:")
            with self._block():
                self._line(f"{row} = {take_all}")
            self._line("except KeyError:")
            with self._block():
                self._line(take_each)
        self._line("else:")
        with self._block():
            self._line(take_each)
        return row

    def _look_up_shared(
        self, fields: Sequence[attrs.Attribute[Any]], row: str, target: str, prefix: str
    ) -> str:
        """Fetch a shared instance into `target` and open the block that builds a new one.

        Equal keys can still differ in type where JSON has numbers (`true == 1 == 1.0`),
        so a hit re-checks the raw type of every field that is not a string; strings equal
        only strings, and XML has only strings. Returns the cache's name.
        """
        cache: dict[tuple[Any, ...], Any] = {}
        cache_name = self._global(f"{prefix}cache", cache)
        cache_get = self._global(f"{prefix}cache_get", cache.get)
        misses = [f"{target} is None"]
        for index, field in enumerate(fields):
            base, optional = split_optional(field.type)
            if not self._xml and base is not str:
                raw = _RAW_JSON_TYPES[base]
                wrong = f"type({row}[{index}]) is not {self._global(raw.__name__, raw)}"
                misses.append(f"({row}[{index}] is not None and {wrong})" if optional else wrong)
        self._line(f"{target} = {cache_get}({row})")
        self._line(f"if {' or '.join(misses)}:")
        return cache_name

    def _construct(self, cls: type, row: str, target: str, prefix: str) -> None:
        """Unpack the row, read each field, and build the instance into `target`.

        A field the hook does not read (`only`) gets its default.
        """
        fields = self._fields(cls)
        values = {field.name: self._fresh(f"{prefix}{field.name}") for field in fields}
        self._line(f"{''.join(f'{value}, ' for value in values.values())}= {row}")
        for field in fields:
            self._field(cls, field, values[field.name], prefix)
        if not self._build:  # checked: `True` stands for the instance (and in the caches)
            self._line(f"{target} = True")
            return
        cls_name = self._global(cls.__name__, cls)
        setters = direct_setters(cls)
        if setters is None:
            arguments = ", ".join(f"{field.alias}={values[field.name]}" for field in fields)
            self._line(f"{target} = {cls_name}({arguments})")
            return
        self._line(f"{target} = new({cls_name})")
        for field, setter in zip(attrs.fields(cls), setters, strict=True):
            value = values.get(field.name) or self._default(field, prefix)
            self._line(f"{self._global(f'{prefix}set_{field.name}', setter)}({target}, {value})")

    def _default(self, field: attrs.Attribute[Any], prefix: str) -> str:
        """The source of the default of a field the hook does not read."""
        if field.default is attrs.NOTHING:
            raise TypeError(f"{field.name} has no default: a hook cannot leave it unread")
        if field.default is None:
            return "None"
        return self._global(f"{prefix}default_{field.name}", field.default)

    # -- one field -------------------------------------------------------------------------

    def _field(self, cls: type, field: attrs.Attribute[Any], value: str, prefix: str) -> None:
        """Check or convert the wire value in variable `value`, in place."""
        base, optional = split_optional(field.type)
        if not optional:
            self._line(f"if {value} is None: raise KeyError({wire_name(cls, field.name)!r})")
        if attrs.has(base):
            self._line(f"if {value} is not None:")
            with self._block():
                self._object(base, source=value, target=value, prefix=f"{prefix}{field.name}_")
        elif self._readers[base] in TYPE_CHECKS:
            self._check_type(base, value, optional)
        elif base is datetime:  # two per log: worth inlining the reader
            self._read_timestamp(value, optional)
        else:
            self._read(self._readers[base], value, optional, f"{prefix}read_{field.name}")

    def _check_type(self, base: type, value: str, optional: bool) -> None:
        # The type first: it passes far more often than the value is absent.
        absent = f" and {value} is not None" if optional else ""
        wrong = f"type({value}) is not {self._global(base.__name__, base)}{absent}"
        self._line(f"if {wrong}: raise bad({value}, {base.__name__!r})")

    def _read_timestamp(self, value: str, optional: bool) -> None:
        # The provider's own form by a cheap shape check and fromisoformat, which together
        # take exactly what the grammar does (see `_timestamps`); anything else through the
        # format's reader, which the precise path uses too, so both paths accept and refuse
        # the same. XML text is stripped first, and a blank optional one is absent.
        if self._xml:
            self._line(f"if {value} is not None: {value} = {value}.strip()")
            if optional:
                self._line(f"if not {value}: {value} = None")
        read = self._global("read_time", self._readers[datetime])
        canonical = canonical_test(value)
        if self._utc and not self._xml:  # the reader takes numbers too: `len` must not see one
            canonical = f"type({value}) is str and {canonical}"
        with contextlib.ExitStack() as stack:
            if optional:
                self._line(f"if {value} is not None:")
                stack.enter_context(self._block())
            if self._utc:
                utc = self._global("UTC", UTC)
                self._line(f"if {canonical}:")
                with self._block():
                    self._line(f"{value} = fromisoformat({value})")
                    self._line(
                        f"if {value}.tzinfo is not {utc}: {value} = {value}.astimezone({utc})"
                    )
            else:
                self._line(f"if {canonical}: {value} = fromisoformat({value})")
            self._line(f"else: {value} = {read}({value})")

    def _read(self, read: Reader, value: str, optional: bool, reader_name: str) -> None:
        if optional and not self._xml:
            # JSON's absent value is only null: test it inline rather than in a wrapper.
            reader = self._global(reader_name, read)
            self._line(f"if {value} is not None: {value} = {reader}({value})")
            return
        if optional:  # in XML an empty element is absent too: the wrapper knows
            read = optional_reader(read, xml=True)
        self._line(f"{value} = {self._global(reader_name, read)}({value})")

    # -- writing ---------------------------------------------------------------------------

    def _line(self, text: str) -> None:
        self._lines.append(f"{self._indent}{text}")

    @contextlib.contextmanager
    def _block(self) -> Iterator[None]:
        """Indent the lines written inside, as the body of the line before."""
        self._indent += "    "
        try:
            yield
        finally:
            self._indent = self._indent[:-4]

    def _fresh(self, wanted: str) -> str:
        """A name no other in the function has: `wanted`, else `wanted_2`, `wanted_3`..."""
        name, copy = wanted, 1
        while name in self._taken:
            copy += 1
            name = f"{wanted}_{copy}"
        self._taken.add(name)
        return name

    def _global(self, wanted: str, value: Any) -> str:
        """The name of a global holding `value`: a new one, unless it holds it already."""
        if self._globals.get(wanted) is value:
            return wanted
        name = self._fresh(wanted)
        self._globals[name] = value
        return name
