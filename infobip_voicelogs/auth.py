"""Credentials: `httpx.Auth` classes that set the provider's `Authorization` header.

```python
fetcher = LogsFetcher(base_url, ApiKeyAuth("my-key"))   # Authorization: App my-key
fetcher = LogsFetcher(base_url, "my-key")                # the same: a string is an API key
```

The provider accepts four schemes: `App <api-key>`, `Basic <base64(user:password)>`,
`IBSSO <token>` and `Bearer <oauth2-token>`. Each class builds its header once and
keeps it private; its repr shows `'****'` in place of the secret, so a credential
never reaches a log line, a traceback or an exception message through these objects.

A secret the header cannot carry as it is (empty, leading or trailing whitespace, a
control character, a character that is not ASCII) is refused when the object is made,
in one line that names the parameter and never the value: sent, it would fail every
request instead. Each object registers its secret with `redaction`, so it is scrubbed
from the library's messages and log lines whatever writes it there.
"""

from __future__ import annotations

import base64
from collections.abc import Generator

import httpx

from . import redaction

__all__ = ["ApiKeyAuth", "BasicAuth", "BearerAuth", "IbssoAuth", "auth_from", "check_secret"]

_MASK = "'****'"


def check_secret(what: str, value: object) -> str:
    """``value`` if a header can carry it as it is; else `ValueError` naming ``what`` only.

    >>> check_secret("key", "my-key ")
    Traceback (most recent call last):
    ValueError: key has leading or trailing whitespace, which a header cannot carry: strip it
    """
    # The message names the parameter, never the value: it may be the secret itself.
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{what} must be a non-empty string")
    # A header carries printable ASCII: anything else would fail each request, not here.
    if not value.isascii():
        raise ValueError(f"{what} contains a character a header cannot carry (not ASCII)")
    if not value.isprintable():
        raise ValueError(f"{what} contains a control character, which a header cannot carry")
    if value != value.strip():
        raise ValueError(
            f"{what} has leading or trailing whitespace, which a header cannot carry: strip it"
        )
    return value


class _HeaderAuth(httpx.Auth):
    """An `Authorization` header built once and set on every request."""

    __slots__ = ("_header",)

    def __init__(self, scheme: str, credential: str, *secrets: str) -> None:
        self._header = f"{scheme} {credential}"
        redaction.register(self, credential, *secrets)

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        """Set the header and send the request once (no challenge round trip)."""
        request.headers["Authorization"] = self._header
        yield request


class ApiKeyAuth(_HeaderAuth):
    """An API key, sent as `Authorization: App <key>` (the provider's most common scheme).

    >>> ApiKeyAuth("003026bbc133714df1834b8638bb496e-8f4b3d9a")
    ApiKeyAuth(key='****')
    """

    __slots__ = ()

    def __init__(self, key: str) -> None:
        super().__init__("App", check_secret("key", key))

    def __repr__(self) -> str:
        return f"ApiKeyAuth(key={_MASK})"


class BasicAuth(_HeaderAuth):
    """A username and password, sent as `Authorization: Basic <base64(user:password)>`.

    The username is not a secret and shows in the repr; the password never does.

    >>> BasicAuth("alice", "s3cret")
    BasicAuth(username='alice', password='****')
    """

    __slots__ = ("username",)

    def __init__(self, username: str, password: str) -> None:
        if not isinstance(username, str) or not username or ":" in username:
            raise ValueError("username must be a non-empty string without ':'")
        check_secret("password", password)
        self.username = username
        token = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
        super().__init__("Basic", token, password)

    def __repr__(self) -> str:
        return f"BasicAuth(username={self.username!r}, password={_MASK})"


class IbssoAuth(_HeaderAuth):
    """A session token (from `POST /auth/1/session`), sent as `Authorization: IBSSO <token>`.

    >>> IbssoAuth("2f9b4d6b-...")
    IbssoAuth(token='****')
    """

    __slots__ = ()

    def __init__(self, token: str) -> None:
        super().__init__("IBSSO", check_secret("token", token))

    def __repr__(self) -> str:
        return f"IbssoAuth(token={_MASK})"


class BearerAuth(_HeaderAuth):
    """An OAuth 2 access token, sent as `Authorization: Bearer <token>`.

    >>> BearerAuth("eyJhbGciOi...")
    BearerAuth(token='****')
    """

    __slots__ = ()

    def __init__(self, token: str) -> None:
        super().__init__("Bearer", check_secret("token", token))

    def __repr__(self) -> str:
        return f"BearerAuth(token={_MASK})"


def auth_from(value: httpx.Auth | str) -> httpx.Auth:
    """The `httpx.Auth` for a fetcher's `auth` argument: a string is an API key.

    >>> auth_from("my-key")
    ApiKeyAuth(key='****')
    >>> auth_from(BearerAuth("t"))
    BearerAuth(token='****')
    """
    if isinstance(value, httpx.Auth):
        return value
    if isinstance(value, str):
        return ApiKeyAuth(value)
    # Name the type only: the value may be a (user, password) tuple.
    raise TypeError(f"auth must be an httpx.Auth or an API key string, not {type(value).__name__}")
