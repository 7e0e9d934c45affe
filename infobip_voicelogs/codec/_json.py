"""JSON: orjson under the converters, with prices quoted first so they stay exact."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from typing import Any

import orjson
from cattrs.gen import make_dict_unstructure_fn

from .._time import format_wire_timestamp
from ..errors import DecodeError
from ..models import VoiceLog
from ._convert import build_converter, each_by, structure_all
from ._readers import JSON_READERS
from ._wire import MODELS, amount_text, excerpt, renames

# -- reading -------------------------------------------------------------------------------

# A price amount after a price key: quoted, so orjson hands it over as text, not a float.
_PRICE_KEY = rb'"pricePer(?:Second|Message)"\s*:\s*'
_NUMBER = rb"(-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)"
_PRICE_NUMBER = re.compile(b"(" + _PRICE_KEY + b")" + _NUMBER)
# The same, only after an unescaped key. The lookbehind costs the regex its literal-prefix
# scan, so it is used only when the body holds an escaped quote before the name.
_UNESCAPED_PRICE_NUMBER = re.compile(rb"((?<!\\)" + _PRICE_KEY + b")" + _NUMBER)

#: Structures the logs of a JSON page, and writes them.
JSON = build_converter(JSON_READERS, xml=False, precise=False)
#: Used only after the fast path failed, to say exactly where and why.
JSON_PRECISE = build_converter(JSON_READERS, xml=False, precise=True)


def quote_prices(body: bytes) -> bytes:
    """`body` with every price amount turned into a JSON string, so no float ever holds it."""
    if b'"pricePer' not in body:
        return body
    pattern = _UNESCAPED_PRICE_NUMBER if b'\\"pricePer' in body else _PRICE_NUMBER
    # split() hands back [text, key, amount, text, key, amount, ..., text]: quoting every
    # third piece and joining beats sub() with a function or a template.
    pieces = pattern.split(body)
    pieces[2::3] = [b'"' + amount + b'"' for amount in pieces[2::3]]
    return b"".join(pieces)


def decode_json(body: bytes) -> list[VoiceLog]:
    """The logs of a JSON `{"results": [...]}` body."""
    return structure_all(VoiceLog, json_results(body), _STRUCTURE_LOGS, JSON_PRECISE, body)


_STRUCTURE_LOGS = each_by(JSON, VoiceLog)


def json_results(body: bytes) -> list[Any]:
    """The items of a JSON `{"results": [...]}` body (prices quoted), not yet structured;
    `DecodeError` for anything else."""
    try:
        document = orjson.loads(quote_prices(body))
    except orjson.JSONDecodeError as exc:
        raise DecodeError(f"not valid JSON ({exc.msg})", excerpt=excerpt(body)) from exc
    if type(document) is not dict:
        raise DecodeError("expected an object with 'results'", excerpt=excerpt(body))
    if "results" not in document:
        raise DecodeError("no 'results' in the body", excerpt=excerpt(body))
    results = document["results"]
    if results is None:
        return []
    if type(results) is not list:
        raise DecodeError("is not a list", path="results", excerpt=excerpt(body))
    return results


# -- writing -------------------------------------------------------------------------------


def amount_number(amount: Decimal) -> orjson.Fragment:
    """An amount as a JSON number written exactly as the `Decimal`, never through a float
    (for `orjson.dumps`); `ValueError` if it is not finite."""
    return orjson.Fragment(amount_text(amount))


JSON.register_unstructure_hook(datetime, format_wire_timestamp)
JSON.register_unstructure_hook(Decimal, amount_number)
for _cls in MODELS:  # inner classes first: a class's hook looks its fields' hooks up
    JSON.register_unstructure_hook(
        _cls,
        make_dict_unstructure_fn(
            _cls,
            JSON,
            _cattrs_omit_if_default=True,
            **renames(_cls),
        ),
    )


def encode_json(logs: Iterable[VoiceLog]) -> bytes:
    """`{"results":[...]}` exactly as the provider writes it."""
    unstructure = JSON.get_unstructure_hook(VoiceLog)
    return orjson.dumps({"results": [unstructure(log) for log in logs]})


def encode_ndjson(logs: Iterable[VoiceLog]) -> bytes:
    """Encode logs as NDJSON: one log a line, each in the provider's JSON shape.

    This is what `infobip-voicelogs fetch --format ndjson` prints; each line decodes with
    `decode_logs(b'{"results":[' + line + b']}', "application/json")`.
    """
    unstructure = JSON.get_unstructure_hook(VoiceLog)
    return b"".join(orjson.dumps(unstructure(log)) + b"\n" for log in logs)
