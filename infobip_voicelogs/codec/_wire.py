"""The wire's vocabulary: which models it carries, how their fields are spelled there.

Every direction (the generated hooks, cattrs's precise hooks, the JSON and XML writers)
reads the spellings from here, so a field renamed on the wire changes in one place.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import attrs
from cattrs.gen import override

from .. import models
from ..models import ErrorInfo, Price, Status, VoiceLog

#: The classes on the wire, inner ones first: a class's hooks look up those of its fields.
MODELS: tuple[type, ...] = (Price, Status, ErrorInfo, VoiceLog)

# The models' annotations are strings (PEP 563): resolve them once, here, for the hooks.
for _cls in MODELS:
    attrs.resolve_types(_cls, globalns=vars(models))

# Wire names of the fields whose Python names differ (the rest are spelled the same): the
# models declare them (`models.WIRE` metadata), so their `to_dict` and the codec agree.
_WIRE_NAMES: dict[type, dict[str, str]] = {
    cls: {f.name: f.metadata[models.WIRE] for f in attrs.fields(cls) if models.WIRE in f.metadata}
    for cls in MODELS
}

#: Older spellings the provider still sends, each with the current one the hooks read
#: (`_codegen.respeller` copies one to the other).
ALIASES: dict[type, tuple[tuple[str, str], ...]] = {
    VoiceLog: (("mccMnc", "mccmnc"),),
    Price: (("pricePerMessage", "pricePerSecond"),),
}

_EXCERPT_CHARS = 80


def wire_name(cls: type, name: str) -> str:
    """How the field `name` of `cls` is spelled on the wire."""
    return _WIRE_NAMES.get(cls, {}).get(name, name)


def add_wire_names(cls: type, names: dict[str, str]) -> None:
    """Teach every direction the wire names of a model of another layer (the reports')."""
    _WIRE_NAMES[cls] = dict(names)


def renames(cls: type) -> dict[str, Any]:
    """cattrs's overrides that give `cls`'s fields their wire names."""
    return {name: override(rename=wire) for name, wire in _WIRE_NAMES[cls].items()}


def split_optional(tp: Any) -> tuple[Any, bool]:
    """`(T, True)` for `T | None`, `(T, False)` for any other `T`."""
    args = getattr(tp, "__args__", ())
    if type(None) in args:
        return next(a for a in args if a is not type(None)), True
    return tp, False


def amount_text(amount: Decimal) -> str:
    """An amount written exactly as the `Decimal` holds it; `ValueError` if it is not finite."""
    if not amount.is_finite():
        raise ValueError(f"{amount} is not an amount the wire can carry")
    return str(amount)


def excerpt(body: bytes) -> str:
    """The start of a body, as text, for an error message."""
    return body[:_EXCERPT_CHARS].decode("utf-8", "replace")
