"""Readers: one per primitive type and format, each taking one non-null wire value.

They are strict, so a wrong type is an error rather than a silent `str(x)`, and each
raises `ValueError` saying what the value is not. The generated hooks call them (or
inline the simplest as `type(v) is T`); cattrs's precise hooks call them as hooks.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from ._timestamps import parse_wire_timestamp

Reader = Callable[[Any], Any]


def bad(value: Any, what: str) -> ValueError:
    """The error for a value that is not `what`, showing at most 40 characters of it."""
    shown = repr(value)
    if len(shown) > 40:
        shown = shown[:37] + "..."
    return ValueError(f"{shown} is not {what}")


# -- JSON: values arrive typed -------------------------------------------------------------


def _read_str(value: Any) -> str:
    if type(value) is str:
        return value
    raise bad(value, "a string")


def _read_int(value: Any) -> int:
    if type(value) is int:
        return value
    raise bad(value, "an integer")


def _read_bool(value: Any) -> bool:
    if type(value) is bool:
        return value
    raise bad(value, "true or false")


def _decimal(text: str) -> Decimal:
    try:
        amount = Decimal(text)
    except InvalidOperation:
        raise bad(text, "an amount") from None
    if not amount.is_finite():
        raise bad(text, "a finite amount")
    return amount


def _read_amount(value: Any) -> Decimal:
    # Prices arrive as strings because `quote_prices` quoted them before orjson saw them.
    if type(value) is str:
        return _decimal(value)
    if type(value) is int:
        return Decimal(value)
    if type(value) is float:
        # Only an escaped key (`"pricePer\u0053econd"`) escapes the quoting: the shortest
        # repr is what the provider wrote for any amount a float can tell apart.
        return _decimal(repr(value))
    raise bad(value, "an amount")


def _read_timestamp(value: Any) -> datetime:
    if type(value) is str:
        return parse_wire_timestamp(value)
    raise bad(value, "a timestamp")


# -- XML: every leaf is text ---------------------------------------------------------------


def _xml_leaf(value: Any) -> str:
    if type(value) is str:
        return value.strip()
    raise bad(value, "text")  # an element with children where a value belongs


def _read_xml_int(value: Any) -> int:
    text = _xml_leaf(value)
    if text.isascii() and text.lstrip("+-").isdigit():
        return int(text)
    raise bad(value, "an integer")


def _read_xml_bool(value: Any) -> bool:
    text = _xml_leaf(value)
    if text in ("true", "1"):
        return True
    if text in ("false", "0"):
        return False
    raise bad(value, "true or false")


def _read_xml_amount(value: Any) -> Decimal:
    return _decimal(_xml_leaf(value))


def _read_xml_timestamp(value: Any) -> datetime:
    return parse_wire_timestamp(_xml_leaf(value))


# -- the tables the hooks are built from ---------------------------------------------------

JSON_READERS: Mapping[type, Reader] = {
    str: _read_str,
    int: _read_int,
    bool: _read_bool,
    Decimal: _read_amount,
    datetime: _read_timestamp,
}
# XML leaves are text: typed fields are read out of it. Strings are kept as written.
XML_READERS: Mapping[type, Reader] = {
    str: _read_str,
    int: _read_xml_int,
    bool: _read_xml_bool,
    Decimal: _read_xml_amount,
    datetime: _read_xml_timestamp,
}
#: Readers that only check a type: the generated hooks inline them as `type(v) is T`.
TYPE_CHECKS: Mapping[Reader, type] = {_read_str: str, _read_int: int, _read_bool: bool}


def optional_reader(read: Reader, *, xml: bool) -> Reader:
    """`read` for a `T | None` field: `None` (and in XML an empty element, `<doneAt/>`)
    is an absent value."""
    blank_is_none = xml and read is not _read_str

    def read_optional(value: Any) -> Any:
        if value is None or (blank_is_none and type(value) is str and not value.strip()):
            return None
        return read(value)

    return read_optional
