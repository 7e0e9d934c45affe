"""The two body formats, and how `Accept` and `Content-Type` headers name them."""

from __future__ import annotations

from typing import Literal

from ..errors import DecodeError

#: The two body formats the provider speaks.
Format = Literal["json", "xml"]


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
