"""The state of one message: its fingerprint, whether it is final, and what a sighting changes.

This module is the one place that decides about states, for logs and for delivery reports
alike: both carry `status`, `error` and `price` (`HasState`), and a log and a report that
agree on those three are the same state.

```python
change = compare(stored, log)        # stored: the fingerprint kept from before, or None
if change in (Change.NEW, Change.CHANGED):
    deliver(log)
    store(fingerprint(log))
```

A fingerprint is `"2f:<hex>"` for a final state and `"2p:<hex>"` otherwise, so a store
can tell finality from the stored text alone (`fingerprint LIKE '2f:%'`). The digest
covers a canonical form of the state, never its spelling:

- the status: its group id, its id and its name casefolded (not the group's name, its
  description or its action, which only say the same in other words);
- the error: its group id, id, name casefolded and `permanent`; an error that says "no
  error" (group 0, id 0: the provider's `OK` / `NO_ERROR`) is the same as no error;
- the price: the amount with trailing zeros dropped (`0.010` is `0.01`) and the currency
  in upper case;
- nothing else: not `done_at`, `duration` or any time, so `Z` or `+0100`, JSON or XML,
  a log or a report of one state all have one fingerprint.

Version 1 fingerprints (24 hex digits, which stores hold from earlier releases) are still
understood: `compare` checks them against the version 1 digest of the item, so an
unchanged log stays `SAME` without a migration, and the value is replaced by a version 2
one the next time a changed state is committed.
"""

from __future__ import annotations

import enum
import hashlib
from decimal import Decimal
from typing import Protocol

from .models import ErrorInfo, Price, Status

__all__ = [
    "FINAL_PREFIX",
    "PENDING_PREFIX",
    "Change",
    "HasState",
    "compare",
    "fingerprint",
    "is_final",
]

#: The start of a version 2 fingerprint of a final state (DELIVERED, UNDELIVERABLE, ...).
FINAL_PREFIX = "2f:"
#: The start of a version 2 fingerprint of a state that can still change.
PENDING_PREFIX = "2p:"

# 16 bytes: two states colliding by chance is out of reach for any archive's lifetime.
_DIGEST_BYTES = 16
_V1_DIGEST_BYTES = 12
# Separators no field's canonical text contains: between parts, and within one.
_PART, _FIELD = "\x1f", "\x1e"


class HasState(Protocol):
    """What has a message's state: a `VoiceLog`, or a delivery report of the same shape."""

    @property
    def status(self) -> Status | None:
        """Where the message stands, if the provider said."""

    @property
    def error(self) -> ErrorInfo | None:
        """The provider's error, if any (a "no error" error counts as none)."""

    @property
    def price(self) -> Price | None:
        """What the message costs, once known."""


class Change(enum.Enum):
    """What a sighting of a message means beside the state delivered before (`compare`)."""

    #: Never delivered before: deliver it.
    NEW = "new"
    #: The same state as delivered before: nothing to deliver.
    SAME = "same"
    #: A different state: deliver it, and store its fingerprint.
    CHANGED = "changed"
    #: A state that can still change, seen after a final one: an older copy, never delivered.
    STALE = "stale"


def is_final(item: HasState) -> bool:
    """Whether the message's state can no longer change by itself.

    `DELIVERED`, `UNDELIVERABLE`, `EXPIRED` and `REJECTED` are final; `ACCEPTED`,
    `PENDING`, a status group this library does not know, and no status at all are not.
    """
    status = item.status
    group = status.group if status is not None else None
    return group is not None and group.is_final


def fingerprint(item: HasState) -> str:
    """The canonical fingerprint (version 2) of the message's state: `2f:` or `2p:` + hex.

    Two items have one fingerprint exactly when their status, error and price are the
    same state, however spelled (see the module's docstring for what counts).
    """
    parts = (_status_text(item.status), _error_text(item.error), _price_text(item.price))
    digest = hashlib.blake2b(_PART.join(parts).encode(), digest_size=_DIGEST_BYTES)
    return (FINAL_PREFIX if is_final(item) else PENDING_PREFIX) + digest.hexdigest()


def compare(stored: str | None, item: HasState) -> Change:
    """What `item` means beside the fingerprint `stored` for its message (`None`: none yet).

    - `NEW` when nothing is stored; `SAME` when the state is the one stored.
    - `STALE` when the stored state is final and the item's is not: a final state is
      never replaced by one that can still change (a late copy of an older state).
    - `CHANGED` otherwise. Between two different final states the one seen later wins:
      the provider corrects a state (a `DELIVERED` log whose price or error is filled in
      later, or a status it revised), and the correction is delivered as a change.

    A stored version 1 fingerprint (24 hex digits) is compared with the item's version 1
    digest: `SAME` if equal, else `CHANGED` (a version 1 value does not say whether it was
    final, so it is never `STALE`). Any other stored text is unknown: `CHANGED`.
    """
    if stored is None:
        return Change.NEW
    if _is_v1(stored):
        return Change.SAME if stored == _fingerprint_v1(item) else Change.CHANGED
    current = fingerprint(item)
    if stored == current:
        return Change.SAME
    if stored.startswith(FINAL_PREFIX) and not current.startswith(FINAL_PREFIX):
        return Change.STALE
    return Change.CHANGED


# -- the canonical form --------------------------------------------------------------------


def _status_text(status: Status | None) -> str:
    if status is None:
        return "-"
    return _FIELD.join((str(status.group_id), str(status.id), status.name.casefold()))


def _error_text(error: ErrorInfo | None) -> str:
    if error is None or _says_no_error(error):
        return "-"
    permanent = "" if error.permanent is None else str(int(error.permanent))
    fields = (str(error.group_id), str(error.id), error.name.casefold(), permanent)
    return _FIELD.join(fields)


def _says_no_error(error: ErrorInfo) -> bool:
    """The provider's "no error": group 0 (`OK`), id 0 (`NO_ERROR`)."""
    return error.group_id == 0 and error.id == 0


def _price_text(price: Price | None) -> str:
    if price is None:
        return "-"
    return f"{_amount_text(price.per_second)}{_FIELD}{price.currency.upper()}"


def _amount_text(amount: Decimal) -> str:
    """One text per value: `0.010`, `0.01` and `1E-2` are all `1e-2`; every zero is `0`.

    Done on the digits, not by `Decimal.normalize`, which rounds to the context's 28 digits.
    """
    if amount.is_finite() and amount == 0:
        return "0"
    sign, digits, exponent = amount.as_tuple()
    if not isinstance(exponent, int):  # only NaN and infinities have a letter here
        return str(amount)
    text = "".join(map(str, digits)).rstrip("0")
    exponent += len(digits) - len(text)
    return f"{'-' if sign else ''}{text}e{exponent}"


# -- version 1, as stores hold it from earlier releases ------------------------------------


def _is_v1(stored: str) -> bool:
    return len(stored) == 2 * _V1_DIGEST_BYTES and all(c in "0123456789abcdef" for c in stored)


def _fingerprint_v1(item: HasState) -> str:
    """The version 1 digest, exactly as `poller` wrote it (spelling-sensitive, times too).

    Kept only to recognise stored values: a report has no `done_at` or `duration`, which
    read as absent.
    """
    status, error, price = item.status, item.error, item.price
    done_at = getattr(item, "done_at", None)
    duration = getattr(item, "duration", None)
    parts = (
        _v1_parts(status, "group_id", "group_name", "id", "name", "description", "action"),
        done_at.isoformat() if done_at is not None else "",
        "" if duration is None else str(duration),
        "" if price is None else f"{price.per_second.normalize()} {price.currency}",
        _v1_parts(error, "group_id", "group_name", "id", "name", "description", "permanent"),
    )
    return hashlib.blake2b("\x1f".join(parts).encode(), digest_size=_V1_DIGEST_BYTES).hexdigest()


def _v1_parts(obj: object, *names: str) -> str:
    if obj is None:
        return "-"
    return "\x1e".join("" if (v := getattr(obj, name)) is None else repr(v) for name in names)
