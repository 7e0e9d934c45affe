"""Leases within one process: every account granted to the store's one live owner, fence 0.

A store that only one process uses (`SqliteStore`, or a user's `CheckpointStore` wrapped by
`solo_leases`) still speaks `LeaseStore`, so the poller has one commit path. There is
nothing to share, so every listed account is granted to the caller, with fence 0. What it
does guard against is two pollers on one store object: a second owner is refused while the
first is alive (it called `lease` within the ttl and has not released), because both would
read the same fingerprints and deliver the same logs. Two *processes* (or two store objects)
on one SQLite file are not seen from here: `SqliteStore` adds a lock on the file for that
(`_file_claim`); sharing accounts between processes needs a fleet's store (`PostgresStore`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Collection, Sequence
from datetime import datetime, timedelta

from .._time import utc_now
from ..errors import LeaseLostError, StoreError
from .base import (
    CheckpointStore,
    Delivered,
    Lease,
    LeaseStore,
    latest_checkpoints,
    lease_ttl_of,
    moves_forward,
)


class LocalLeases:
    """The one live owner of a store object, and the leases it was granted (fence 0)."""

    __slots__ = ("_alive_until", "_owner")

    def __init__(self) -> None:
        self._owner: str | None = None
        self._alive_until = -math.inf  # time.monotonic()

    def lease(self, owner: str, accounts: Sequence[str], *, lease_ttl: float) -> dict[str, Lease]:
        """Grant every account to `owner`; `StoreError` if another owner is alive."""
        if not owner:
            raise ValueError("a lease owner needs a non-empty id")
        if not lease_ttl > 0:
            raise ValueError(f"lease_ttl must be positive, not {lease_ttl!r}")
        now = time.monotonic()
        if self._owner not in (None, owner) and now < self._alive_until:
            raise StoreError(
                "this store already serves another poller (two pollers on one store would"
                " deliver the same logs twice): close it first, or use one store per poller"
            )
        self._owner, self._alive_until = owner, now + lease_ttl
        expires = utc_now() + timedelta(seconds=lease_ttl)
        return {name: Lease(name, owner=owner, fence=0, expires_at=expires) for name in accounts}

    @property
    def owner(self) -> str | None:
        """The owner granted last, until it releases (it may have lapsed since)."""
        return self._owner

    def release(self, owner: str, accounts: Collection[str] | None = None) -> None:
        """`None`: `owner` is gone, another may take the store at once."""
        if accounts is None and self._owner == owner:
            self._owner, self._alive_until = None, -math.inf

    def holds(self, lease: Lease) -> bool:
        """Whether `lease` is the owner's: no other owner has taken the store since.

        Not timed: one process polls the store, so a loop blocked past the ttl (a slow
        synchronous handler) has not let anyone else in, and its commit still holds.
        """
        return lease.owner == self._owner

    def check(self, lease: Lease) -> None:
        """`LeaseLostError` unless `lease` is the live owner's."""
        if not self.holds(lease):
            raise LeaseLostError(
                f"the lease on account {lease.account!r} is gone: this store's owner changed"
            )


class _SoloLeases:
    """A `CheckpointStore` without leases, leased locally (see `solo_leases`)."""

    #: Its leases do not lapse by time: one poller uses the store.
    leases_expire = False

    def __init__(self, store: CheckpointStore) -> None:
        self._store = store
        self._leases = LocalLeases()

    def __repr__(self) -> str:
        return f"solo_leases({self._store!r})"

    async def checkpoint(self, account: str) -> datetime | None:
        return await self._store.checkpoint(account)

    async def fingerprints(self, account: str, message_ids: Collection[str]) -> dict[str, str]:
        return await self._store.fingerprints(account, message_ids)

    async def commit(
        self, account: str, *, checkpoint: datetime | None, delivered: Sequence[Delivered]
    ) -> None:
        await self._store.commit(account, checkpoint=checkpoint, delivered=delivered)

    async def prune(self, *, before: datetime) -> int:
        return await self._store.prune(before=before)

    async def aclose(self) -> None:
        await self._store.aclose()

    async def lease(
        self,
        owner: str,
        accounts: Sequence[str],
        *,
        lease_ttl: float | None = None,
        busy: Collection[str] = (),
        ttl: float | None = None,
    ) -> dict[str, Lease]:
        return self._leases.lease(owner, accounts, lease_ttl=lease_ttl_of(lease_ttl, ttl))

    async def release(self, owner: str, accounts: Collection[str] | None = None) -> None:
        self._leases.release(owner, accounts)

    async def commit_leased(
        self,
        lease: Lease,
        *,
        checkpoint: datetime | None,
        delivered: Sequence[Delivered],
        known: Sequence[Delivered] = (),
        inbox: Collection[int] = (),
        reports: tuple[datetime, int] | None = None,
    ) -> None:
        # A plain store has neither an inbox nor report activity to write to; `known` only
        # fills archive rows of report-keeping stores, so it has nothing to write here.
        if inbox or reports is not None:
            raise TypeError(
                f"{self._store!r} keeps no inbox: commit_leased cannot consume inbox "
                "entries or count reports in it"
            )
        self._leases.check(lease)
        await self._store.commit(lease.account, checkpoint=checkpoint, delivered=delivered)

    async def advance(self, checkpoints: Sequence[tuple[Lease, datetime]]) -> set[str]:
        # A plain store knows no batched advance: one commit per account, forward only.
        refused = set()
        for account, (lease, at) in latest_checkpoints(checkpoints).items():
            if not self._leases.holds(lease):
                refused.add(account)
                continue
            if moves_forward(await self._store.checkpoint(account), at):
                await self._store.commit(account, checkpoint=at, delivered=())
        return refused


def solo_leases(store: CheckpointStore) -> LeaseStore:
    """`store` as a `LeaseStore`: itself if it leases, else wrapped to lease locally."""
    if isinstance(store, LeaseStore):
        return store
    return _SoloLeases(store)
