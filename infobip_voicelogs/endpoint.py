"""The endpoint's address: which base URLs may receive credentials, and the query string.

`validate_base_url` is public: the fetcher, the poller's accounts and the CLI's accounts
file all refuse the same base URLs with the same messages, before any connection.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from urllib.parse import quote

import httpx

__all__ = [
    "LOGS_PATH",
    "REPORTS_PATH",
    "logs_url",
    "query_string",
    "reports_url",
    "validate_base_url",
    "with_client_params",
]

#: The path of the voice message logs endpoint below an account's base URL.
LOGS_PATH = "/tts/3/logs"
#: The path of the voice delivery reports kept for pulling (calls sent without a notifyUrl).
REPORTS_PATH = "/voice/1/reports"


def validate_base_url(base_url: str, *, allow_insecure: bool = False) -> str:
    """The account's base URL, checked and without a trailing slash; `ValueError` if unsafe.

    Refused: anything but an `https://` (or `http://`) URL with a host, a URL carrying a
    user or password, a path (such as the endpoint's own, ``/tts/3/logs``: the library
    adds that), a query or a fragment, and `http://` to a host that is not loopback
    (`localhost`, `127.0.0.0/8`, `::1`) unless ``allow_insecure`` is true: each would put
    a credential where it does not belong, or fail only at the first request. The
    messages never repeat the URL (an API key passed in its place, or a password or token
    inside it, would end up in a log); they name at most its scheme, host and port.

    >>> validate_base_url("https://xyz.api.infobip.com/")
    'https://xyz.api.infobip.com'
    >>> validate_base_url("http://127.0.0.1:8099")
    'http://127.0.0.1:8099'
    >>> validate_base_url("https://user:secret@xyz.api.infobip.com")
    Traceback (most recent call last):
    ValueError: base_url must not carry a user or password: pass credentials as auth
    >>> validate_base_url("https://xyz.api.infobip.com/tts/3/logs")
    Traceback (most recent call last):
    ValueError: base_url must not carry a path: pass the account's address alone, https://xyz.api.infobip.com
    """
    try:
        url = httpx.URL(base_url)
    except (httpx.InvalidURL, TypeError):
        url = httpx.URL()
    if url.scheme not in ("https", "http") or not url.host:
        raise ValueError(
            "base_url must be an https:// URL with a host (like https://xyz.api.infobip.com);"
            " check that it was not swapped with the API key"
        )
    if url.userinfo:
        raise ValueError("base_url must not carry a user or password: pass credentials as auth")
    if url.query or url.fragment:
        raise ValueError(f"base_url for {url.host!r} must not carry a query or fragment")
    if url.path not in ("", "/"):
        address = str(url.copy_with(path="/")).rstrip("/")
        raise ValueError(
            f"base_url must not carry a path: pass the account's address alone, {address}"
        )
    if url.scheme == "http" and not (allow_insecure or _is_loopback(url.host)):
        raise ValueError(
            f"refusing to send credentials over plain http:// to {url.host!r}; "
            "use https://, or pass allow_insecure=True if you really mean it"
        )
    return str(url).rstrip("/")


def logs_url(base_url: str, *, allow_insecure: bool = False) -> str:
    """The endpoint's URL below ``base_url``, checked by `validate_base_url`."""
    return validate_base_url(base_url, allow_insecure=allow_insecure) + LOGS_PATH


def reports_url(base_url: str, *, allow_insecure: bool = False) -> str:
    """The pull reports endpoint's URL below ``base_url``, checked by `validate_base_url`."""
    return validate_base_url(base_url, allow_insecure=allow_insecure) + REPORTS_PATH


def query_string(params: Mapping[str, str]) -> str:
    """The query string as the provider's reference writes it."""
    # httpx would write ':' and ',' as %3A and %2C; the provider's reference shows them bare
    # (`sentSince=2015-02-22T17:42:05.390%2B01:00`, `bulkId=a,b`), and '+' must be %2B.
    return "&".join(f"{key}={quote(value, safe=':,')}" for key, value in params.items())


def with_client_params(url: str, extra: httpx.QueryParams) -> str:
    """`url` with a shared client's default parameters after its own, none repeated."""
    if not extra:
        return url
    own = set(httpx.URL(url).params.keys())
    added = httpx.QueryParams([(k, v) for k, v in extra.multi_items() if k not in own])
    if not added:
        return url
    return f"{url}{'&' if '?' in url else '?'}{added}"


def _is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
