"""What the poller needs from a store: the `CheckpointStore` protocol and its `Delivered` record.

A store remembers, per account, how far the poller has delivered (the checkpoint) and a
fingerprint of every recently delivered log, so a log is handed over again only when its
state changed. Both are written in one atomic `commit` after the handler returned, which is
what makes delivery at-least-once across crashes and exactly-once in normal operation.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

import attrs

from ..models import VoiceLog

__all__ = ["CheckpointStore", "Delivered"]


def _has_message_id(instance: Delivered, attribute: attrs.Attribute[Any], value: VoiceLog) -> None:
    # The message id is a delivered log's identity in the store; without it nothing can be kept.
    if value.message_id is None:
        raise ValueError("a delivered log needs a message_id: it is the log's key in the store")


@attrs.frozen
class Delivered:
    """A log the handler has taken, with the fingerprint of the state it was taken in.

    The poller builds these after the handler returned and passes them to
    `CheckpointStore.commit`; next cycle, a log whose fingerprint differs from the stored
    one has changed and is delivered again.

    >>> Delivered(VoiceLog(message_id="m-1"), fingerprint="3f2a9c").log.message_id
    'm-1'
    """

    #: The log as delivered; its `message_id` is not `None`.
    log: VoiceLog = attrs.field(validator=_has_message_id)
    #: A short digest of the log's mutable state, computed by the poller.
    fingerprint: str


@runtime_checkable
class CheckpointStore(Protocol):
    """Where the poller keeps its checkpoints, fingerprints and (optionally) an archive.

    `SqliteStore` is the default implementation, for one process. Every method is a
    coroutine; an implementation may be called by many accounts' coroutines at once.

    ```python
    checkpoint = await store.checkpoint("eu-1")            # None on the first run
    known = await store.fingerprints("eu-1", ["m-1", "m-2"])
    await store.commit("eu-1", checkpoint=now, delivered=[Delivered(log, fp)])
    ```
    """

    async def checkpoint(self, account: str) -> datetime | None:
        """The account's checkpoint as an aware UTC datetime, or `None` if it has none yet."""
        ...

    async def fingerprints(self, account: str, message_ids: Collection[str]) -> dict[str, str]:
        """The stored fingerprints of these messages by message id; unknown ids are absent."""
        ...

    async def commit(
        self, account: str, *, checkpoint: datetime | None, delivered: Sequence[Delivered]
    ) -> None:
        """Record a delivered batch in one transaction: all of it or, on any error, none.

        Upserts the fingerprints (keyed by account and message id), upserts the archive rows
        if the store archives (the last state wins), and sets the account's checkpoint to
        exactly `checkpoint`: whether it may move backwards is the poller's decision.
        `checkpoint=None` leaves the checkpoint as it is (a batch in the middle of a walk).
        """
        ...

    async def prune(self, *, before: datetime) -> int:
        """Forget the fingerprints of logs sent before `before`; return how many were dropped."""
        ...

    async def aclose(self) -> None:
        """Finish the work in flight and release the store; calling it again does nothing."""
        ...
