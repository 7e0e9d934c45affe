"""Delivery reports: the push side of the provider's data (see docs/reports.md).

`ReportsReceiver` is an ASGI application that takes the provider's report POSTs; the
classes beside it say how it authenticates them.
"""

from ._auth import BasicCredentials, HeaderSecret, HmacSignature, NoAuth, ReportsAuth
from ._receiver import Deliver, ReportsReceiver

__all__ = [
    "BasicCredentials",
    "Deliver",
    "HeaderSecret",
    "HmacSignature",
    "NoAuth",
    "ReportsAuth",
    "ReportsReceiver",
]
