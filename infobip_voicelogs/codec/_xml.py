"""XML: one hardened lxml parse, a walk into dicts, then the same converters as JSON."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

import attrs
from lxml import etree

from .._time import format_wire_timestamp
from ..errors import DecodeError
from ..models import VoiceLog
from ._convert import build_converter, each_by, structure_all
from ._readers import XML_READERS
from ._wire import amount_text, excerpt, wire_name

#: Structures the logs of an XML page, once walked into dicts.
XML = build_converter(XML_READERS, xml=True, precise=False)
#: Used only after the fast path failed, to say exactly where and why.
XML_PRECISE = build_converter(XML_READERS, xml=True, precise=True)

_NIL = "{http://www.w3.org/2001/XMLSchema-instance}nil"

# -- parsing -------------------------------------------------------------------------------

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


def parse_xml(body: bytes) -> etree._Element:
    """Parse untrusted XML: no DOCTYPE (so no entities to expand or fetch), no network."""
    try:
        root = etree.fromstring(body, _parser())
    except (etree.XMLSyntaxError, ValueError) as exc:
        raise DecodeError(f"not well-formed XML ({exc})", excerpt=excerpt(body)) from exc
    docinfo: Any = root.getroottree().docinfo  # lxml-stubs lack `doctype`
    if docinfo.doctype or docinfo.internalDTD is not None:
        # The provider never sends one; a DOCTYPE is how entity attacks come in.
        raise DecodeError("XML with a DOCTYPE is refused", excerpt=excerpt(body))
    return root


# -- walking into dicts --------------------------------------------------------------------


def local_name(tag: str) -> str:
    """A tag without its namespace: `{urn:x}results` is `results`."""
    return tag.rpartition("}")[2] if tag[0] == "{" else tag


def xml_value(element: etree._Element) -> Any:
    """An element as a value: a dict if it has children, else its text (`None` if nil)."""
    if len(element):
        return xml_dict(element)
    if element.get(_NIL) == "true":
        return None
    return element.text or ""


def xml_dict(element: etree._Element) -> dict[str, Any]:
    """An element's children as a dict: nested ones as dicts, leaves as their text.

    The hardened parser drops comments and PIs and refuses entities, so every child is an
    element. An empty leaf is `""`, or `None` with `xsi:nil="true"`; a repeated name keeps
    the last. This is the general walk; `_xml_items` is the same, unrolled for speed.
    """
    fields: dict[str, Any] = {}
    for child in element:
        tag = child.tag
        if tag[0] == "{":  # namespaces are rare: strip them only when there is one
            tag = local_name(tag)
        fields[tag] = xml_dict(child) if len(child) else (child.text or _empty_or_nil(child))
    return fields


def _empty_or_nil(element: etree._Element) -> str | None:
    return None if element.get(_NIL) == "true" else ""


def _xml_items(results: etree._Element, body: bytes) -> list[dict[str, Any]]:
    """`[xml_dict(result) for result in results]`, faster on a page of logs.

    Every element costs lxml a proxy object, so the walk is most of an XML decode. This
    one has the logs' two levels unrolled, and skips the namespace test when the body
    declares none (an undeclared prefix is a parse error, so no tag can start with `{`).
    """
    if b"xmlns" in body:
        return [xml_dict(result) for result in results]
    items = []
    for result in results:
        fields: dict[str, Any] = {}
        for child in result:
            if len(child):
                inner: dict[str, Any] = {}
                for leaf in child:
                    if len(leaf):
                        inner[leaf.tag] = xml_dict(leaf)
                    else:
                        text = leaf.text
                        inner[leaf.tag] = text if text is not None else _empty_or_nil(leaf)
                fields[child.tag] = inner
            else:
                text = child.text
                fields[child.tag] = text if text is not None else _empty_or_nil(child)
        items.append(fields)
    return items


def xml_results(body: bytes) -> etree._Element:
    """The `<results>` element under the root of an XML body (any root, any namespace);
    `DecodeError` for a body that is not hardened-parseable XML or has none."""
    root = parse_xml(body)
    results = next(
        (c for c in root if isinstance(c.tag, str) and local_name(c.tag) == "results"), None
    )
    if results is None:
        raise DecodeError(f"no <results> under <{local_name(root.tag)}>", excerpt=excerpt(body))
    return results


def decode_xml(body: bytes) -> list[VoiceLog]:
    """The logs of an XML body: the `<result>`s of the root's `<results>`, any root."""
    items = _xml_items(xml_results(body), body)
    return structure_all(VoiceLog, items, _STRUCTURE_LOGS, XML_PRECISE, body)


_STRUCTURE_LOGS = each_by(XML, VoiceLog)


# -- writing -------------------------------------------------------------------------------


def encode_xml(logs: Iterable[VoiceLog]) -> bytes:
    """`<smsLogsResponse><results><result>...` as the provider writes it."""
    root = etree.Element("smsLogsResponse")
    results = etree.SubElement(root, "results")
    for log in logs:
        _xml_fields(etree.SubElement(results, "result"), log)
    return etree.tostring(root, encoding="UTF-8", xml_declaration=False)


def _xml_fields(parent: etree._Element, obj: Any) -> None:
    cls = type(obj)
    for field in attrs.fields(cls):
        value = getattr(obj, field.name)
        if value is None:
            continue
        child = etree.SubElement(parent, wire_name(cls, field.name))
        if attrs.has(type(value)):
            _xml_fields(child, value)
        else:
            child.text = _xml_text(value)


def _xml_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return format_wire_timestamp(value)
    if isinstance(value, Decimal):
        return amount_text(value)
    return str(value)


def xml_tree(parent: etree._Element, fields: Mapping[str, Any]) -> None:
    """Write `fields` as children of `parent`: a mapping as nested elements, a bool as
    `true`/`false`, anything else as its text (`xml_dict` reads it back)."""
    for name, value in fields.items():
        child = etree.SubElement(parent, name)
        if isinstance(value, Mapping):
            xml_tree(child, value)
        elif isinstance(value, bool):
            child.text = "true" if value else "false"
        else:
            child.text = str(value)
