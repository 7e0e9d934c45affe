"""The converters: a fast one per format, a precise one to explain what the fast one refused.

A page is structured by the generated hooks (`_codegen`). Only when one of them raises is
the page run again through cattrs's own hooks with detailed validation, whose notes say
which item and which field, so `DecodeError` reads `results[3].sentAt: 'yesterday' is not
a timestamp`. `structure_all` is that fallback, for the logs and the reports alike.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn
from cattrs.preconf.orjson import make_converter

from ..errors import DecodeError
from ._codegen import fast_hook, respeller
from ._readers import Reader, bad, optional_reader
from ._wire import MODELS, excerpt, renames, wire_name

T = TypeVar("T")


def build_converter(
    readers: Mapping[Any, Reader],
    *,
    xml: bool,
    precise: bool,
    models: Iterable[type] = MODELS,
) -> cattrs.Converter:
    """One converter per format and precision, built once at import, one hook per class.

    `readers` has one reader per field type: a class, or a type such as a `Literal` (its
    hook is found by equality). `models` lists the classes, inner ones first.
    """
    converter = make_converter(detailed_validation=precise)
    for tp, read in readers.items():
        optional = optional_reader(read, xml=xml)
        if isinstance(tp, type):
            converter.register_structure_hook(tp, _as_hook(read))
            converter.register_structure_hook(tp | None, _as_hook(optional))
        else:
            converter.register_structure_hook_func(_equal_to(tp), _as_hook(read))
            converter.register_structure_hook_func(_equal_to(tp | None), _as_hook(optional))
    for cls in models:
        hook: Callable[[Any, Any], Any] = (
            _precise_hook(cls, converter) if precise else fast_hook(cls, readers, xml=xml)
        )
        converter.register_structure_hook(cls, hook)
    return converter


def _as_hook(read: Reader) -> Callable[[Any, Any], Any]:
    return lambda value, _: read(value)


def _equal_to(tp: Any) -> Callable[[Any], bool]:
    return lambda other: bool(other == tp)


def _precise_hook(cls: type[T], converter: cattrs.Converter) -> Callable[[Any, Any], T]:
    """cattrs's own hook with detailed validation: slow, but its notes say which field."""
    generated = make_dict_structure_fn(
        cls,
        converter,
        _cattrs_detailed_validation=True,
        **renames(cls),
    )
    respell = respeller(cls)

    def structure(obj: Any, _: Any = None) -> T:
        if type(obj) is not dict:
            raise bad(obj, "an object")
        obj = respell(obj)
        # Null is as absent as missing: cattrs then names a missing required field itself.
        return generated({k: v for k, v in obj.items() if v is not None}, cls)

    return structure


def structure_all(
    cls: type[T],
    items: list[Any],
    fast: Callable[[list[Any]], list[T]],
    precise: cattrs.Converter,
    body: bytes,
) -> list[T]:
    """Structure a page's results as `cls` instances with `fast`; should it raise, run each
    item through `precise` and raise `DecodeError` naming the first that is wrong."""
    try:
        return fast(items)
    except Exception as exc:  # any failure is re-run precisely just below
        refused = exc
    slow = precise.get_structure_hook(cls)
    for index, item in enumerate(items):
        try:
            slow(item, cls)
        except Exception as exc:
            path, leaf = _locate(exc, cls)
            raise DecodeError(
                _describe(leaf), path=f"results[{index}]{path}", excerpt=excerpt(body)
            ) from exc
    # The two paths disagree, which is a bug: the cause shows the generated line that failed.
    raise DecodeError(
        f"the results do not have the expected shape ({cls.__name__})", excerpt=excerpt(body)
    ) from refused


def each_by(converter: cattrs.Converter, cls: type[T]) -> Callable[[list[Any]], list[T]]:
    """The fast structuring of a page by `converter`'s hook for `cls`, for `structure_all`."""
    structure = converter.get_structure_hook(cls)
    return lambda items: [structure(item, cls) for item in items]


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
        path += f".{wire_name(cls, note.name) if cls else note.name}"
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
