"""How a batch of reports is kept in the store's inbox: the receiver's JSON encoding.

The store keeps an inbox entry's body as opaque bytes; the receiver (or a pull) writes
it with `encode_inbox`, and the account's holder reads it back with `decode_inbox`, so
the reports come back equal to those recorded, whatever shape or format they arrived in.
"""

from __future__ import annotations

from collections.abc import Sequence

from ._codec import decode_reports, encode_reports
from ._model import VoiceReport


def encode_inbox(reports: Sequence[VoiceReport]) -> bytes:
    """A batch of reports as an inbox entry's body."""
    return encode_reports(reports, "json")


def decode_inbox(body: bytes) -> list[VoiceReport]:
    """An inbox entry's body as its reports (`DecodeError` if it is not one)."""
    return decode_reports(body, "application/json")
