"""Error bodies: what the provider says when it refuses a request, in either of its shapes."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any, Literal

import attrs
import orjson
from lxml import etree

from ..errors import DecodeError
from ._media_types import Format, format_of
from ._xml import parse_xml, xml_tree, xml_value

_ERROR_TEXT_CHARS = 200


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


# -- reading -------------------------------------------------------------------------------


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
        document = orjson.loads(body) if fmt == "json" else xml_value(parse_xml(body))
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


# -- writing -------------------------------------------------------------------------------


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
    xml_tree(root, document)
    return etree.tostring(root, encoding="UTF-8", xml_declaration=False)
