"""The codec's parts that another layer builds the codec of its own wire models from.

The delivery reports (`infobip_voicelogs.reports`) are decoded and encoded by the same
code as the logs: the same readers, the same generated fast hooks and precise fallback,
the same price quoting and the same hardened XML parse. This module is where the package
takes them from; users take the codec's public names from `infobip_voicelogs.codec`.
"""

from __future__ import annotations

from ._codegen import check_hook, fast_hook
from ._convert import build_converter, structure_all
from ._json import amount_number, json_results
from ._readers import JSON_READERS, XML_READERS, Reader, bad
from ._wire import ALIASES, MODELS, add_wire_names, amount_text, excerpt, wire_name
from ._xml import xml_dict, xml_results, xml_tree

__all__ = [
    "ALIASES",
    "JSON_READERS",
    "MODELS",
    "XML_READERS",
    "Reader",
    "add_wire_names",
    "amount_number",
    "amount_text",
    "bad",
    "build_converter",
    "check_hook",
    "excerpt",
    "fast_hook",
    "json_results",
    "structure_all",
    "wire_name",
    "xml_dict",
    "xml_results",
    "xml_tree",
]
