"""What the fake answers with: the body format a client asked for, and the provider's errors."""

from __future__ import annotations

import email.utils
import math
from datetime import UTC, datetime, timedelta
from typing import Literal

import attrs

from ..codec import Format, encode_error, media_type

__all__ = ["ErrorShape", "Response", "RetryAfterStyle", "error_response", "negotiate"]

ErrorShape = Literal["old", "new"]
RetryAfterStyle = Literal["none", "seconds", "http-date"]

# The provider's old-shape message id and text for each error status it sends.
ERRORS: dict[int, tuple[str, str]] = {
    400: ("BAD_REQUEST", "Bad request"),
    401: ("UNAUTHORIZED", "Invalid login details"),
    404: ("NOT_FOUND", "Requested URL not found"),
    408: ("REQUEST_TIMEOUT", "Request timed out"),
    429: ("TOO_MANY_REQUESTS", "Too many requests"),
    500: ("GENERAL_ERROR", "Something went wrong. Please contact support."),
    502: ("BAD_GATEWAY", "Bad gateway"),
    503: ("SERVICE_UNAVAILABLE", "Service unavailable"),
    504: ("GATEWAY_TIMEOUT", "Gateway timeout"),
}

_XML_TYPES = ("application/xml", "text/xml")
_JSON_TYPES = ("application/json", "application/*", "*/*")


@attrs.frozen
class Response:
    """A complete answer: status, body and the headers beyond the content ones."""

    status: int
    body: bytes
    fmt: Format
    headers: tuple[tuple[str, str], ...] = ()

    def raw_headers(self, content_length: int | None = None) -> list[tuple[bytes, bytes]]:
        """The ASGI headers, with `Content-Length` (the body's, unless given)."""
        length = len(self.body) if content_length is None else content_length
        pairs = [("content-type", f"{media_type(self.fmt)};charset=UTF-8")]
        pairs.append(("content-length", str(length)))
        pairs.extend(self.headers)
        return [(name.encode("latin-1"), value.encode("latin-1")) for name, value in pairs]


def negotiate(accept: str | None) -> Format:
    """The body format an `Accept` header prefers: XML only when it ranks XML above JSON."""
    best: Format = "json"
    best_q = -1.0
    for part in (accept or "").split(","):
        media, *params = (piece.strip().lower() for piece in part.split(";"))
        fmt: Format | None = (
            "xml" if media in _XML_TYPES else "json" if media in _JSON_TYPES else None
        )
        if fmt is None:
            continue
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if q > best_q:
            best, best_q = fmt, q
    return best


def error_response(
    status: int,
    fmt: Format,
    shape: ErrorShape,
    *,
    text: str | None = None,
    retry_after: tuple[RetryAfterStyle, timedelta, datetime] | None = None,
) -> Response:
    """The provider's error answer for `status`, in the old or the new body shape.

    `retry_after` is (style, wait, now): the header is written in that style, the
    wait rounded up to whole seconds, a date counted from the fake's `now`.
    """
    message_id, default_text = ERRORS[status]
    if shape == "new":
        message_id = f"E{status}"  # the newer shape's errorCode, like the provider's "E429"
    body = encode_error(message_id, text or default_text, fmt, shape=shape)
    headers: tuple[tuple[str, str], ...] = ()
    if retry_after is not None:
        style, wait, now = retry_after
        seconds = max(1, math.ceil(wait.total_seconds()))
        if style == "seconds":
            headers = (("retry-after", str(seconds)),)
        elif style == "http-date":
            # An HTTP date has whole seconds: round up, so that the date is never earlier
            # than the fake will accept a request again.
            when = (now + timedelta(seconds=seconds)).astimezone(UTC)
            if when.microsecond:
                when = when.replace(microsecond=0) + timedelta(seconds=1)
            headers = (("retry-after", email.utils.format_datetime(when, usegmt=True)),)
    return Response(status, body, fmt, headers)
