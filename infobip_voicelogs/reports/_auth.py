"""How the receiver checks that a POST comes from the provider.

```python
BasicCredentials("infobip", password)                  # Authorization: Basic ...
HmacSignature("X-Signature", secret, algorithm="sha256")  # an HMAC of the raw body
HeaderSecret("X-Webhook-Token", token)                 # a static secret header
NoAuth()                                               # nothing: only when chosen explicitly
```

Every comparison is constant-time (`hmac.compare_digest` over bytes). A check that needs
only the headers runs before the body is read; the HMAC runs on the bounded body before it
is decoded. Each class keeps its secret private and shows `'****'` for it in its repr, so a
secret never reaches a log line, a traceback or an error body through these objects, and
registers it with `redaction`, so it is scrubbed from the library's messages and log lines.

A secret given as text with leading or trailing whitespace is refused when the object is
made (a pasted secret that never matches would refuse every report): strip it, or pass
bytes if the whitespace is meant. `HeaderSecret`'s text must also be printable ASCII, as
the header that carries it is.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping, Sequence

from .. import redaction

#: The HMAC algorithms the provider offers for its webhook signatures.
ALGORITHMS = frozenset({"md5", "sha1", "sha224", "sha256", "sha384", "sha512"})

_MASK = "'****'"

#: The request's headers as the receiver sees them: lower-case name to the first value.
Headers = Mapping[bytes, bytes]


def _secret_bytes(what: str, value: object, *, in_header: bool = False) -> bytes:
    """A secret as bytes; `ValueError` naming ``what``, never the value (it is the secret)."""
    if isinstance(value, str):
        if value != value.strip():
            raise ValueError(
                f"{what} has leading or trailing whitespace: strip it (or pass bytes if meant)"
            )
        if in_header and not (value.isascii() and value.isprintable()):
            raise ValueError(f"{what} must be printable ASCII, as the header carrying it is")
        value = value.encode()
    if not isinstance(value, bytes) or not value:
        raise ValueError(f"{what} must be a non-empty string or bytes")
    return value


def _secrets(value: object, *, in_header: bool = False) -> tuple[bytes, ...]:
    """One secret, or several while one is rotated out: each non-empty."""
    many = value if isinstance(value, list | tuple) else (value,)
    if not many:
        raise ValueError("secret must name at least one secret")
    return tuple(_secret_bytes("secret", one, in_header=in_header) for one in many)


def _header_name(name: object) -> bytes:
    if not isinstance(name, str) or not name or not name.isascii() or " " in name:
        raise ValueError("header must be a non-empty ASCII header name")
    return name.lower().encode("ascii")


class ReportsAuth:
    """How a `ReportsReceiver` authenticates the provider: a base class to subclass.

    `check_headers` runs before the body is read and `check_body` on the whole (bounded)
    body before it is decoded; the request is refused with 401 unless both return true.
    """

    __slots__ = ("__weakref__",)  # the redaction registry holds its secrets while it lives

    #: The `WWW-Authenticate` value sent with a 401, if the scheme has one.
    challenge: str | None = None

    def check_headers(self, headers: Headers) -> bool:
        """Whether the headers alone are acceptable (the default: yes)."""
        return True

    def check_body(self, headers: Headers, body: bytes) -> bool:
        """Whether the headers and the raw body together are acceptable (the default: yes)."""
        return True


class NoAuth(ReportsAuth):
    """Accept every POST: for a receiver that something in front of it already protects.

    A receiver has no default authentication; this says "none" on purpose.

    >>> NoAuth()
    NoAuth()
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return "NoAuth()"


class BasicCredentials(ReportsAuth):
    """HTTP Basic: the username and password set in the provider's subscription.

    The username shows in the repr, the password never does.

    >>> BasicCredentials("infobip", "s3cret")
    BasicCredentials(username='infobip', password='****')
    """

    __slots__ = ("_password", "_username", "username")

    challenge = 'Basic realm="reports", charset="UTF-8"'

    def __init__(self, username: str, password: str | bytes) -> None:
        if not isinstance(username, str) or not username or ":" in username:
            raise ValueError("username must be a non-empty string without ':'")
        self.username = username
        self._username = username.encode()
        self._password = _secret_bytes("password", password)
        redaction.register(self, self._password)

    def check_headers(self, headers: Headers) -> bool:
        """Whether `Authorization` carries this username and password."""
        scheme, _, token = headers.get(b"authorization", b"").strip().partition(b" ")
        if scheme.lower() != b"basic":
            return False
        try:
            decoded = base64.b64decode(token.strip(), validate=True)
        except (binascii.Error, ValueError):
            return False
        user, colon, password = decoded.partition(b":")
        # Both compared, whatever the first says: the time spent tells nothing.
        same_user = hmac.compare_digest(user, self._username)
        same_password = hmac.compare_digest(password, self._password)
        return bool(colon) and same_user and same_password

    def __repr__(self) -> str:
        return f"BasicCredentials(username={self.username!r}, password={_MASK})"


#: One secret, or a sequence of them: any one is accepted, so a secret can be rotated.
Secrets = str | bytes | Sequence[str | bytes]


class HeaderSecret(ReportsAuth):
    """A static secret the provider sends in a header of its choice (a "custom header").

    ``secret`` may be several secrets (``(new, old)``): any one is accepted, so the
    provider's setting can change to the new one while the old one still works.

    >>> HeaderSecret("X-Webhook-Token", "s3cret")
    HeaderSecret(header='X-Webhook-Token', secret='****')
    """

    __slots__ = ("_name", "_secrets", "header")

    def __init__(self, header: str, secret: Secrets) -> None:
        self._name = _header_name(header)
        self.header = header
        self._secrets = _secrets(secret, in_header=True)
        redaction.register(self, *self._secrets)

    def check_headers(self, headers: Headers) -> bool:
        """Whether the header carries one of the secrets."""
        given = headers.get(self._name)
        if given is None:
            return False
        # Every secret compared, so the time spent does not say which one matched.
        matches = [hmac.compare_digest(given.strip(), one) for one in self._secrets]
        return any(matches)

    def __repr__(self) -> str:
        return f"HeaderSecret(header={self.header!r}, secret={_MASK})"


class HmacSignature(ReportsAuth):
    """An HMAC of the raw body with a shared secret, carried in the header ``header``.

    The signature is accepted as hex (either case) or base64 (standard or URL-safe, padded
    or not), optionally behind the algorithm's name and ``=`` (``sha256=...``, as GitHub
    sends it). A request without the header is refused before its body is read.
    ``secret`` may be several secrets (``(new, old)``), any one accepted, for a rotation.

    >>> HmacSignature("X-Signature", "s3cret", algorithm="sha512")
    HmacSignature(header='X-Signature', secret='****', algorithm='sha512')
    """

    __slots__ = ("_name", "_prefix", "_secrets", "_size", "algorithm", "header")

    def __init__(self, header: str, secret: Secrets, *, algorithm: str = "sha256") -> None:
        if algorithm not in ALGORITHMS:
            raise ValueError(f"algorithm must be one of {', '.join(sorted(ALGORITHMS))}")
        self._name = _header_name(header)
        self.header = header
        self.algorithm = algorithm
        self._prefix = f"{algorithm}=".encode()
        self._size = hashlib.new(algorithm).digest_size
        self._secrets = _secrets(secret)
        redaction.register(self, *self._secrets)

    def check_headers(self, headers: Headers) -> bool:
        """Whether the signature header is there at all (its value is checked on the body)."""
        return bool(headers.get(self._name, b"").strip())

    def check_body(self, headers: Headers, body: bytes) -> bool:
        """Whether the header's signature is the HMAC of ``body`` with one of the secrets."""
        value = headers.get(self._name, b"").strip()
        given = _signature_bytes(value, self._prefix, self._size)
        if given is None:
            return False
        # compare_digest on unequal lengths returns at once, but the length is no secret.
        matches = [hmac.compare_digest(given, self._digest(one, body)) for one in self._secrets]
        return any(matches)

    def sign(self, body: bytes) -> str:
        """The hex signature of ``body`` with the first secret: what the provider sends."""
        return self._digest(self._secrets[0], body).hex()

    def _digest(self, secret: bytes, body: bytes) -> bytes:
        return hmac.digest(secret, body, self.algorithm)

    def __repr__(self) -> str:
        return (
            f"HmacSignature(header={self.header!r}, secret={_MASK}, algorithm={self.algorithm!r})"
        )


_HEX_DIGITS = frozenset(b"0123456789abcdefABCDEF")


def _signature_bytes(value: bytes, prefix: bytes, size: int) -> bytes | None:
    """The digest of ``size`` bytes a header's value carries; `None` if neither hex nor base64.

    Hex is told from base64 by its length, since a short base64 text may use hex digits only.

    >>> _signature_bytes(b"sha1=00ff", b"sha1=", 2)
    b'\\x00\\xff'
    >>> _signature_bytes(b"AP8", b"sha1=", 2)
    b'\\x00\\xff'
    """
    if value[: len(prefix)].lower() == prefix:
        value = value[len(prefix) :]
    if len(value) == 2 * size and _HEX_DIGITS.issuperset(value):
        return bytes.fromhex(value.decode("ascii"))
    text = value.replace(b"-", b"+").replace(b"_", b"/").rstrip(b"=")
    try:
        return base64.b64decode(text + b"=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None


# hashlib names every algorithm above; checked once so a typo in ALGORITHMS fails at import.
assert all(name in hashlib.algorithms_guaranteed for name in ALGORITHMS)
