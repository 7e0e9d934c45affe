"""The library's defaults: every number that shapes a fetcher's or a poller's behaviour.

Only the standard library and nothing of ours, so every layer (models, retry, fetcher,
poller, CLI) can read its defaults from here without importing another layer. Each name
stays importable from the module that used to define it (`fetcher`, `retry`, `models`).

>>> from infobip_voicelogs.defaults import DEFAULT_RATE, MAX_PAGE_SIZE
>>> DEFAULT_RATE * 60, MAX_PAGE_SIZE
(120.0, 1000)
"""

from __future__ import annotations

__all__ = [
    "CONNECT_TIMEOUT",
    "DEFAULT_DEADLINE",
    "DEFAULT_MAX_ATTEMPTS",
    "DEFAULT_MAX_RETRY_AFTER",
    "DEFAULT_RATE",
    "DEFAULT_TIMEOUT",
    "MAX_PAGE_SIZE",
    "MAX_PULL_LIMIT",
]

#: Requests per second per account: the provider's documented 120 requests per minute.
DEFAULT_RATE = 2.0
#: Seconds for each read, write and pool wait; connecting gets at most `CONNECT_TIMEOUT`.
DEFAULT_TIMEOUT = 30.0
#: The most seconds a connection may take to open (less when the timeout is shorter).
CONNECT_TIMEOUT = 10.0
#: The longest one try may take in all: connecting, sending, waiting and reading the body.
DEFAULT_DEADLINE = 120.0
#: Tries per request in all, the first one included.
DEFAULT_MAX_ATTEMPTS = 6
#: The longest `Retry-After` (seconds) worth waiting for; a longer one raises at once.
DEFAULT_MAX_RETRY_AFTER = 60.0
#: The largest `limit` the provider accepts (the sibling SMS endpoint documents 1000).
MAX_PAGE_SIZE = 1000
#: The largest `limit` a report pull asks for: none is documented for voice; the sibling
#: SMS reports allow 1000, and a pull's reports exist nowhere else once answered, so
#: larger answers would only put more at risk of one lost response.
MAX_PULL_LIMIT = 1000
