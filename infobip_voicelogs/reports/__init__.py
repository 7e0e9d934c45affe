"""Delivery reports: the provider's pushes of what became of each call (`docs/reports.md`).

```python
reports = decode_reports(request_body, request.headers["content-type"])
body = encode_reports(reports, "xml", shape="flat")   # as the provider would POST them
auth = BasicCredentials("ib", pw)
receiver = ReportsReceiver({"eu-shop"}, store=store, handler=handler, auth=auth)
```

Decoding accepts both shapes (the current nested `voiceCall` one and the older flat
one) in JSON and XML, call times as timestamps or epoch milliseconds, any XML root and
item names; anything else is a `DecodeError` naming the report and the field. The XML
path is the logs' hardened one: no DOCTYPE, no entities, no network, no huge trees.

`ReportsReceiver` is an ASGI application that takes the provider's report POSTs; the
`ReportsAuth` classes beside it say how it authenticates them. Given the poller's store,
it records each batch in the store's inbox and the account's holder delivers it into the
same stream (`infobip_voicelogs.delivery`): each state once, whichever source brought it
first.
"""

from __future__ import annotations

import inspect

from ._auth import BasicCredentials, HeaderSecret, HmacSignature, NoAuth, ReportsAuth
from ._codec import decode_reports, encode_reports, encode_reports_ndjson
from ._inbox import decode_inbox, encode_inbox
from ._model import Ivr, ReportShape, VoiceCall, VoiceReport
from ._receiver import Deliver, ReportHandler, ReportsReceiver

__all__ = [
    "BasicCredentials",
    "Deliver",
    "HeaderSecret",
    "HmacSignature",
    "Ivr",
    "NoAuth",
    "ReportHandler",
    "ReportShape",
    "ReportsAuth",
    "ReportsReceiver",
    "VoiceCall",
    "VoiceReport",
    "decode_inbox",
    "decode_reports",
    "encode_inbox",
    "encode_reports",
    "encode_reports_ndjson",
]

# Public names say they live here, as httpx's do: in reprs, `help()` and pickles.
for _name in __all__:
    _public = globals()[_name]
    if inspect.isclass(_public) or inspect.isfunction(_public):
        _public.__module__ = __name__
del _name, _public
