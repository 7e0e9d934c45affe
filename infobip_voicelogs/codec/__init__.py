"""The wire: voice logs and error bodies from and to JSON (orjson + cattrs) and XML (lxml).

```python
logs = decode_logs(response.content, response.headers["content-type"])
body = encode_logs(logs, "json")      # {"results":[...]} exactly as the provider writes it
```

Decoding accepts every variant the provider has been seen to send (see `docs/codec.md`):
offsets `+0100`, `+01:00` or `Z`, with or without milliseconds; `pricePerSecond` or
`pricePerMessage`; `mccmnc` or `mccMnc`; absent or null optional fields; unknown fields;
any XML root element. Money is a `Decimal` exactly as written, never a float. Anything
else raises `DecodeError` saying where (`results[3].sentAt: 'yesterday' is not a
timestamp`), never a raw orjson, lxml or cattrs exception.

XML is parsed hardened: no entity expansion, no DTD, no network, no huge trees, and a
body with a DOCTYPE is refused outright.
"""

# Inside, one module per concern, each importing only those listed before it:
# `_timestamps`, `_media_types`, `_wire` (which models, their wire names and older spellings),
# `_readers` (one wire value each), `_codegen` (the generated fast hooks), `_convert` (the
# converters and the precise error path), `_json`, `_xml` and `_error_bodies`.

from __future__ import annotations

import inspect
from collections.abc import Iterable

from .._time import format_wire_timestamp
from ..models import VoiceLog
from ._error_bodies import ErrorBody, decode_error, encode_error
from ._json import decode_json, encode_json, encode_ndjson
from ._media_types import Format, format_of, media_type
from ._timestamps import parse_wire_timestamp
from ._xml import decode_xml, encode_xml

# In reading order, which the reference page follows (docs/codec.md: members_order).
__all__ = [  # noqa: RUF022
    "Format",
    "ErrorBody",
    "parse_wire_timestamp",
    "format_wire_timestamp",
    "media_type",
    "format_of",
    "decode_logs",
    "encode_logs",
    "encode_ndjson",
    "decode_error",
    "encode_error",
]


def decode_logs(body: bytes, content_type: str) -> list[VoiceLog]:
    """Decode a `GET /tts/3/logs` response body into logs, newest first as sent.

    `content_type` is the response's `Content-Type` header (parameters allowed).
    Raises `DecodeError`, saying what and where, for anything that is not a logs body.

    >>> decode_logs(b'{"results":[{"messageId":"m1","price":{"pricePerSecond":0.1,'
    ...             b'"currency":"EUR"}}]}', "application/json")[0].price
    Price(per_second=Decimal('0.1'), currency='EUR')
    """
    if format_of(content_type) == "json":
        return decode_json(body)
    return decode_xml(body)


def encode_logs(logs: Iterable[VoiceLog], fmt: Format) -> bytes:
    """Encode logs as the provider would send them; `decode_logs` reads them back equal.

    JSON is `{"results":[...]}` with timestamps like `2015-02-23T17:40:31.773+0100`,
    prices as JSON numbers written exactly as the `Decimal`, and absent fields omitted;
    XML is `<smsLogsResponse><results><result>...`. Raises `ValueError` for what the wire
    cannot carry: a naive datetime, a non-finite price, or (XML) a control character.
    """
    if fmt == "json":
        return encode_json(logs)
    return encode_xml(logs)


# Public names say they live here, as httpx's do: in reprs, `help()` and pickles.
for _name in __all__:
    _public = globals()[_name]
    if inspect.isclass(_public) or inspect.isfunction(_public):
        _public.__module__ = __name__
del _name, _public
