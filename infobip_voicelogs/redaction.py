"""Redaction: the credentials this process holds, kept out of every message the library writes.

```python
register(auth, "003026bbc133714df1834b8638bb496e")     # done by each class that takes a secret
scrub("Illegal header value b'App 003026bbc133714df1834b8638bb496e '")
# "Illegal header value b'App **** '"
```

The classes that hold a secret register it when they are made: the API key, password and
tokens of `auth` (and the Basic header they make), the password of a PostgreSQL connection
string and of a Redis client, and the receiver's report secrets. A secret stays registered
while one of its owners lives. Three things read the registry:

- `scrub`: a text with every registered secret replaced by ``****``;
- `scrub_exception`: the same, in place, over an exception and its cause and context chain
  (string arguments, string attributes, notes), applied where the library raises;
- `RedactingFilter`: on the library's logger, so every record of ``infobip_voicelogs`` and
  its children (message, arguments, traceback) reaches a handler scrubbed.

It is the second line of defence: the first is that the library never puts a secret in a
message. A secret shorter than `MIN_LENGTH` characters is not registered: replacing every
``abc`` of every message would make them unreadable, and so short a secret protects little.
A secret cut in two (a truncated excerpt) is not recognised.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import weakref
from collections.abc import Iterable
from urllib.parse import quote

__all__ = [
    "MASK",
    "MIN_LENGTH",
    "RedactingFilter",
    "register",
    "scrub",
    "scrub_exception",
]

#: What a secret is replaced by.
MASK = "****"
#: Secrets shorter than this are not scrubbed (see the module's docstring).
MIN_LENGTH = 4

_lock = threading.Lock()
#: Each registered spelling of a secret, with how many live owners registered it.
_counts: dict[str, int] = {}
#: The spellings, longest first (a Basic header before the password inside it); rebuilt on change.
_ordered: tuple[str, ...] = ()


def _spellings(secret: str | bytes) -> set[str]:
    """The ways ``secret`` may be written into a message: as is, as a bytes or str repr
    writes it (h11 quotes the header as bytes), and percent-encoded (in a URL)."""
    found: set[str] = set()
    if isinstance(secret, bytes):
        found.add(repr(secret)[2:-1])
        try:
            secret = secret.decode()
        except UnicodeDecodeError:
            return {s for s in found if len(s) >= MIN_LENGTH}
    found |= {secret, repr(secret)[1:-1], quote(secret, safe="")}
    if secret.isascii():
        found.add(repr(secret.encode())[2:-1])
    return {s for s in found if len(s) >= MIN_LENGTH}


def register(owner: object, *secrets: str | bytes) -> None:
    """Scrub ``secrets`` from every message while ``owner`` lives.

    ``owner`` is the object holding them (it must support weak references); a secret
    registered by several owners stays until the last is gone.
    """
    spellings: set[str] = set()
    for secret in secrets:
        spellings |= _spellings(secret)
    if not spellings:
        return
    with _lock:
        for spelling in spellings:
            _counts[spelling] = _counts.get(spelling, 0) + 1
        _reorder()
    weakref.finalize(owner, _release, frozenset(spellings)).atexit = False


def _release(spellings: Iterable[str]) -> None:
    with _lock:
        for spelling in spellings:
            left = _counts.get(spelling, 0) - 1
            if left > 0:
                _counts[spelling] = left
            else:
                _counts.pop(spelling, None)
        _reorder()


def _reorder() -> None:
    global _ordered
    _ordered = tuple(sorted(_counts, key=len, reverse=True))


def scrub(text: str) -> str:
    """``text`` with every registered secret replaced by `MASK`.

    >>> class Holder: ...
    >>> holder = Holder()
    >>> register(holder, "s3cret-token")
    >>> scrub("refused: Bearer s3cret-token")
    'refused: Bearer ****'
    """
    for secret in _ordered:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def scrub_exception(exc: BaseException) -> BaseException:
    """``exc``, with every registered secret scrubbed from it and its chain, in place.

    Its string arguments, string attributes and notes, and those of its ``__cause__``,
    ``__context__``, exception arguments and group members, so that ``str``, ``repr``
    and a printed traceback show no secret. Attributes kept outside ``__dict__`` by a
    C type (`OSError.strerror`) are left as they are.
    """
    if not _ordered:
        return exc
    seen: set[int] = set()
    chain: list[object] = [exc]
    while chain:
        link = chain.pop()
        if not isinstance(link, BaseException) or id(link) in seen:
            continue
        seen.add(id(link))
        chain += (link.__cause__, link.__context__, *link.args)
        if isinstance(link, BaseExceptionGroup):
            chain += link.exceptions
        _scrub_one(link)
    return exc


def _scrub_one(exc: BaseException) -> None:
    args = tuple(scrub(a) if isinstance(a, str) else a for a in exc.args)
    # A type that refuses an assignment keeps that text: nothing more can be done here.
    if args != exc.args:
        with contextlib.suppress(AttributeError, TypeError):
            exc.args = args
    for name, value in list(getattr(exc, "__dict__", {}).items()):
        if isinstance(value, str) and (clean := scrub(value)) != value:
            with contextlib.suppress(AttributeError, TypeError):
                setattr(exc, name, clean)
    notes = getattr(exc, "__notes__", None)
    if isinstance(notes, list):
        notes[:] = [scrub(n) if isinstance(n, str) else n for n in notes]


class RedactingFilter(logging.Filter):
    """Scrubs a record's message, arguments, traceback and stack text; drops nothing.

    On the ``infobip_voicelogs`` logger, and on a handler of it that every record of its
    children passes before it reaches the root's handlers.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if not _ordered:
            return True
        message = record.getMessage()
        clean = scrub(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and record.exc_info[1] is not None:
            scrub_exception(record.exc_info[1])
        if record.exc_text:
            record.exc_text = scrub(record.exc_text)
        if record.stack_info:
            record.stack_info = scrub(record.stack_info)
        return True


class _Redactor(logging.Handler):
    """Writes nothing: scrubs the records of the library's child loggers on their way up."""

    def __init__(self) -> None:
        super().__init__(logging.NOTSET)
        self.addFilter(RedactingFilter())

    def emit(self, record: logging.LogRecord) -> None:
        """Nothing to write: the filter did the work."""


_LOGGER = logging.getLogger("infobip_voicelogs")
_LOGGER.addFilter(RedactingFilter())  # its own records, whatever handler the user adds to it
_LOGGER.addHandler(_Redactor())  # its children's, before the root's handlers see them
