"""What the poller needs from a store: the `CheckpointStore` protocol and its `Delivered` record.

A store remembers, per account, how far the poller has delivered (the checkpoint) and a
fingerprint of every recently delivered log, so a log is handed over again only when its
state changed. Both are written in one atomic `commit` after the handler returned, which is
what makes delivery at-least-once across crashes and exactly-once in normal operation.

A store may also offer `LeaseStore`: each account leased to one process at a time, and
commits fenced so that a process which lost its lease writes nothing. `SqliteStore` does,
for one process; the poller wraps a store that does not, so it has one commit path.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

import attrs

from ..models import VoiceLog

__all__ = ["CheckpointStore", "Delivered", "Lease", "LeaseStore"]


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


@attrs.frozen
class Lease:
    """The right of one process to poll one account, until `expires_at`.

    Every claim of an account by a new holder bumps its `fence`, so the fence only grows: a
    commit that carries an older fence, or that arrives after the lease expired, is refused
    (`LeaseStore.commit_leased`). Times are the database's, never the host's.

    >>> from datetime import UTC
    >>> Lease("eu-1", owner="poller-a", fence=3, expires_at=datetime(2026, 1, 1, tzinfo=UTC)).fence
    3
    """

    #: The account leased.
    account: str
    #: The holder's id, unique per process (`f"{hostname}:{pid}:{uuid4().hex[:8]}"`).
    owner: str
    #: Bumped by every claim of this account; only grows.
    fence: int
    #: When the lease lapses unless renewed, by the database's clock (aware UTC).
    expires_at: datetime


@runtime_checkable
class LeaseStore(CheckpointStore, Protocol):
    """A `CheckpointStore` that also leases accounts to processes, for a fleet of pollers.

    Every process calls `lease` once a claim period with the same accounts; the store
    records the process as alive, renews what it holds, sheds what exceeds a fair share,
    and claims free or expired accounts up to that share. A batch is then committed with
    `commit_leased`, which writes nothing (`LeaseLostError`) unless the lease still holds.

    ```python
    leases = await store.lease(me, accounts, ttl=20.0, busy=polling_now)
    ...
    await store.commit_leased(leases["eu-1"], checkpoint=now, delivered=batch)
    refused = await store.advance([(leases["us-1"], now)])  # quiet accounts, batched
    await store.release(me)  # at shutdown: the others may claim at once
    ```
    """

    async def lease(
        self,
        owner: str,
        accounts: Sequence[str],
        *,
        ttl: float,
        busy: Collection[str] = (),
    ) -> dict[str, Lease]:
        """Renew, shed and claim leases in one transaction; return every lease `owner` holds.

        Records `owner` as alive for `ttl` seconds; renews its leases on `accounts` (same
        fence, expiring `ttl` seconds from the database's now) and releases those it holds
        on accounts no longer listed; computes the fair share, `ceil(len(accounts) / live
        owners)`; releases leases above the share (never one in `busy`, the accounts being
        polled right now); claims free or expired leases up to the share, bumping each
        fence. Accounts never seen before are added.
        """
        ...

    async def release(self, owner: str, accounts: Collection[str] | None = None) -> None:
        """Give up these leases of `owner` at once, so others may claim them now.

        `None` releases every lease of `owner` and marks the owner gone (a clean shutdown).
        """
        ...

    async def commit_leased(
        self, lease: Lease, *, checkpoint: datetime | None, delivered: Sequence[Delivered]
    ) -> None:
        """`commit`, but only while `lease` still holds: its owner, same fence, not expired.

        The check and the writes are one transaction, the lease row locked first; if the
        lease expired or passed to another process, nothing is written and
        `LeaseLostError` is raised.
        """
        ...

    async def advance(self, checkpoints: Sequence[tuple[Lease, datetime]]) -> set[str]:
        """Move each leased account's checkpoint forward to its time, in one statement for all.

        For quiet cycles (nothing delivered), flushed every few seconds: each checkpoint
        moves to the given time only while its lease still holds (owner, fence, not expired
        by the database's clock) and only forward, never back. Returns the accounts refused
        because their lease no longer holds; nothing is written for those. A refused or
        failed flush only leaves a checkpoint behind, which widens the next window: the
        fingerprints still keep anything from being delivered twice.
        """
        ...
