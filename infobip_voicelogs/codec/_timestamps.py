"""Timestamps as the provider writes them: `2015-02-23T17:40:31.773+0100` and its variants."""

from __future__ import annotations

import re
from datetime import datetime

# The one grammar both decoding paths accept: full date, `T`, time with seconds, an
# optional fraction of 1 to 9 digits, and an offset in whole minutes (`Z`, `+hhmm` or
# `+hh:mm`, minutes 00-59), every digit ASCII. Field ranges (month 13, hour 24, an offset
# of a day) are fromisoformat's to refuse. It is stricter than fromisoformat, which also
# takes a bare date, `17:40`, `+01`, `+01:00:30`, `,773`, `t` or a week date: a time it
# takes must also encode (`format_wire_timestamp`), and `+01:00:30` cannot.
_TIMESTAMP = re.compile(
    r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,9})?(?:Z|[+-]\d\d:?[0-5]\d)", re.ASCII
)

#: The parser the generated hooks inline (after their own cheaper shape check).
fromisoformat = datetime.fromisoformat

# The form the provider writes, `2015-02-23T17:40:31.773+0100`, checked cheaply: its length,
# its separators (`s[4:20:3]`), its offset's sign (`s[23]`) and first minute digit (`s[26]`).
# With those fixed, fromisoformat takes a string only if every other place is an ASCII
# digit, so a string of this shape it takes is in the grammar above: the generated hooks
# inline this check, and send anything else through `parse_wire_timestamp`
# (tests/test_codec.py checks the two agree on every input).
CANONICAL_LENGTH = 28
CANONICAL_SEPARATORS = "--T::."


def canonical_test(name: str) -> str:
    """The source of that check on the string held by variable `name`, for a generated hook."""
    return (
        f"len({name}) == {CANONICAL_LENGTH} and {name}[4:20:3] == {CANONICAL_SEPARATORS!r}"
        f" and {name}[23] in '+-' and {name}[26] < '6'"
    )


def parse_wire_timestamp(s: str) -> datetime:
    """Read a timestamp in any form the provider writes; the result is always aware.

    The form is `yyyy-MM-ddTHH:mm:ss`, an optional fraction of a second (1 to 9 digits;
    those beyond microseconds are dropped) and an offset `+0100`, `+01:00` or `Z` in whole
    minutes. Raises `ValueError` for anything else, such as `17:40+01:00` (no seconds),
    `+01`, `+01:00:30`, a comma before the fraction or ten fraction digits.

    >>> parse_wire_timestamp("2015-02-23T17:40:31.773+0100").isoformat()
    '2015-02-23T17:40:31.773000+01:00'
    """
    if _TIMESTAMP.fullmatch(s) is None:
        raise ValueError(f"{s!r} is not a timestamp")
    # Checked first: fromisoformat alone also takes `2015-02-23` (naive) or `20150223T1740`.
    # It drops fraction digits beyond microseconds by itself.
    return fromisoformat(s)
