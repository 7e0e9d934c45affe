"""`bucket_key`: one account's name in Redis, derived from where and how it is reached."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from ..auth import BasicAuth, auth_from

if TYPE_CHECKING:  # an annotation only: the credential is read through `auth`
    import httpx

_DEFAULT_PORTS = {"http": 80, "https": 443}
# Changing how the key is derived would split every fleet mid-upgrade: versioned.
_DOMAIN = b"infobip-voicelogs/bucket-key/v1\x00"


def bucket_key(base_url: str, auth: httpx.Auth | str) -> str:
    """A stable bucket key for the account that ``auth`` reaches at ``base_url``.

    Processes that name one account differently (or not at all) still share its bucket:
    the key is a hash of the normalised base URL (scheme and host lower-cased, default
    port and trailing slash dropped) and the credential's identity, never the credential
    itself. An API key string and `ApiKeyAuth` of the same key give the same key; a
    `BasicAuth` is identified by its username (its password may change, and a short
    password must not be guessable from a hash); `IbssoAuth` and `BearerAuth` by their
    token, which changes when the token is renewed: for those, name the account yourself.

    >>> bucket_key("https://xyz.api.infobip.com/", "my-secret-key")
    'acct-ec7fc5edc00ec4dace837f0637ff3a12'
    >>> bucket_key("HTTPS://XYZ.api.infobip.com:443", "my-secret-key")
    'acct-ec7fc5edc00ec4dace837f0637ff3a12'

    Raises `TypeError` for an `httpx.Auth` that is not one of this library's classes
    (name the account yourself), `ValueError` for a base URL without a scheme and host.
    """
    parts = urlsplit(base_url.strip())
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    if not scheme or not host:
        raise ValueError("base_url must be an absolute URL such as https://xyz.api.infobip.com")
    port = parts.port if parts.port not in (None, _DEFAULT_PORTS.get(scheme)) else None
    where = f"{scheme}://{host}{f':{port}' if port else ''}{parts.path.rstrip('/')}"
    resolved = auth_from(auth)
    if isinstance(resolved, BasicAuth):
        who = f"Basic user {resolved.username}"
    else:
        header = getattr(resolved, "_header", None)  # our classes keep their header private
        if not isinstance(header, str):
            raise TypeError(
                f"cannot derive a bucket key from a {type(resolved).__name__}: "
                "pass key= with a name for the account"
            )
        who = header
    digest = hashlib.sha256(_DOMAIN + f"{where}\x00{who}".encode()).hexdigest()
    return f"acct-{digest[:32]}"
