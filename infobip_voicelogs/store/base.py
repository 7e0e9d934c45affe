"""What the poller needs from a store: the `CheckpointStore` protocol and its `Delivered` record.

A store remembers, per account, how far the poller has delivered (the checkpoint) and a
fingerprint of every recently delivered log, so a log is handed over again only when its
state changed. Both are written in one atomic `commit` after the handler returned, which is
what makes delivery at-least-once across crashes and exactly-once in normal operation.

A store may also offer `ReportStore`: the delivery reports' side of the same tables, so a
state delivered by a report is not delivered again by a poll, and the reverse. Both
`SqliteStore` and `PostgresStore` do.

A store may also offer `LeaseStore`: each account leased to one process at a time, and
commits fenced so that a process which lost its lease writes nothing. `SqliteStore` does,
for one process; the poller wraps a store that does not, so it has one commit path.

A store may also offer `InboxStore`: a durable inbox of report batches. The reports
receiver records each batch (one statement) and answers at once; the account's lease
holder reads the inbox, hands the new states over, and consumes the entries in the same
fenced transaction as the states' fingerprints (`LeaseStore.commit_leased(inbox=...)`).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Collection, Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeAlias, runtime_checkable

import attrs

from .._time import require_aware
from ..models import VoiceLog

if TYPE_CHECKING:  # the store reads a report's fields; `reports` imports the store
    from ..reports import VoiceReport

__all__ = [
    "CheckpointStore",
    "Delivered",
    "InboxEntry",
    "InboxStore",
    "Item",
    "Lease",
    "LeaseStore",
    "ReportStore",
    "latest_checkpoints",
    "lease_ttl_of",
    "moves_forward",
]

#: What a store keeps the state of: a log (the poller's) or a delivery report (the receiver's).
Item: TypeAlias = "VoiceLog | VoiceReport"


def _has_message_id(instance: Delivered, attribute: attrs.Attribute[Any], value: Item) -> None:
    # The message id is an item's identity in the store; without it nothing can be kept.
    if value.message_id is None:
        raise ValueError(
            f"a delivered {value.source} needs a message_id: it is the key in the store"
        )


@attrs.frozen
class Delivered:
    """A log or a report the handler has taken, with the fingerprint of its state.

    The poller (or the reports receiver) builds these after the handler returned and
    passes them to the store's commit; next time, a state whose fingerprint differs from
    the stored one has changed and is delivered again. The fingerprints span both sources
    (`infobip_voicelogs.state`): a log and a report of one state have one fingerprint.

    >>> Delivered(VoiceLog(message_id="m-1"), fingerprint="2p:3f2a9c").item.message_id
    'm-1'
    """

    #: The log or report as delivered; its `message_id` is not `None`.
    item: Item = attrs.field(validator=_has_message_id)
    #: The fingerprint of the item's state (`state.fingerprint`).
    fingerprint: str

    @property
    def log(self) -> Item:
        """The item, by its name from before reports (`Delivered(log, fp).log`)."""
        return self.item

    @property
    def source(self) -> Literal["log", "report"]:
        """Where the state came from: `"log"` or `"report"`."""
        return self.item.source


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
    leases = await store.lease(me, accounts, lease_ttl=20.0, busy=polling_now)
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
        lease_ttl: float | None = None,
        busy: Collection[str] = (),
        ttl: float | None = None,
    ) -> dict[str, Lease]:
        """Renew, shed and claim leases in one transaction; return every lease `owner` holds.

        Records `owner` as alive for `lease_ttl` seconds; renews its leases on `accounts` (same
        fence, expiring `lease_ttl` seconds from the database's now) and releases those it holds
        on accounts no longer listed; computes the fair share, `ceil(len(accounts) / live
        owners)`; releases leases above the share (never one in `busy`, the accounts being
        polled right now); claims free or expired leases up to the share, bumping each
        fence. Accounts never seen before are added. `ttl` is the deprecated spelling of
        `lease_ttl` (implementations read both through `lease_ttl_of`).
        """
        ...

    async def release(self, owner: str, accounts: Collection[str] | None = None) -> None:
        """Give up these leases of `owner` at once, so others may claim them now.

        `None` releases every lease of `owner` and marks the owner gone (a clean shutdown).
        """
        ...

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
        """`commit`, but only while `lease` still holds: its owner, same fence, not expired.

        The check and the writes are one transaction, the lease row locked first; if the
        lease expired or passed to another process, nothing is written and
        `LeaseLostError` is raised.

        A hand-over of reports adds, in the same transaction: `known`, reports of states
        the store already has (not handed over), written like `delivered` when the store
        archives (their fields fill the row a log of the same state wrote), else nothing of
        them; `inbox`, the ids of the account's `InboxEntry`s this hand-over consumed,
        deleted; `reports=(received_at, count)`, the account's `report_activity` touched
        as `ReportStore.commit_reports` does. A store without an inbox raises `TypeError`
        when given `inbox` or `reports`.
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


@runtime_checkable
class ReportStore(Protocol):
    """The delivery reports' side of a store: the same fingerprints, reports' activity.

    The delivery core commits reports through `LeaseStore.commit_leased` (fenced, with
    the inbox entries they came from); `commit_reports` is the same write unfenced, for
    code that delivers reports on its own. The poller reads `report_activity` to know
    which accounts' reports flow (and polls those more slowly).

    ```python
    known = await store.fingerprints("eu-1", [r.message_id for r in batch])
    await store.commit_reports("eu-1", [Delivered(report, fp)], received_at=now, received=2)
    flowing = await store.report_activity(["eu-1", "us-1"])   # {"eu-1": last report time}
    ```
    """

    async def fingerprints(self, account: str, message_ids: Collection[str]) -> dict[str, str]:
        """The stored fingerprints of these messages by message id; unknown ids are absent."""
        ...

    async def commit_reports(
        self,
        account: str,
        delivered: Sequence[Delivered],
        *,
        received_at: datetime,
        received: int | None = None,
        known: Sequence[Delivered] = (),
    ) -> None:
        """Record a batch of reports in one transaction: all of it or, on any error, none.

        Upserts the fingerprints (a final one never replaced by a non-final one), the
        archive rows if the store archives (keeping what the other source brought), and
        touches the account's `report_activity`: `last_report_at = received_at`, and
        `reports` grows by `received` (default: `len(delivered)`). An empty `delivered`
        still touches the activity: a batch of duplicates says the reports flow.
        `known` are reports of states the store already has (not handed over): with an
        archive they are written the same way, so their own fields (`callback_data`, the
        call) fill the row a log of the same state wrote; without one, nothing of them.
        """
        ...

    async def report_activity(self, accounts: Collection[str]) -> dict[str, datetime]:
        """When each of these accounts last committed reports (aware UTC); absent: never."""
        ...


@attrs.frozen
class InboxEntry:
    """A batch of reports recorded by a receiver (or a pull), waiting for the account's holder.

    The store keeps the batch as the recorder encoded it and never reads it: the holder
    decodes `body`, hands the new states over and consumes the entry by its `id`
    (`LeaseStore.commit_leased(..., inbox=[entry.id])`).

    >>> from datetime import UTC
    >>> InboxEntry(7, "eu-1", datetime(2026, 1, 1, tzinfo=UTC), count=2, body=b"[]").count
    2
    """

    #: Increasing in recording order per store; never reused.
    id: int
    #: The account the batch was reported for.
    account: str
    #: When the batch was received (aware UTC).
    received_at: datetime
    #: How many reports the batch holds.
    count: int
    #: The batch, as the recorder encoded it (opaque to the store).
    body: bytes


@runtime_checkable
class InboxStore(Protocol):
    """A durable inbox of report batches, read by each account's lease holder.

    A receiver records each batch in one statement and answers the provider once it is
    committed; the account's holder is woken (`watch_inbox`), reads the waiting entries
    oldest first, delivers them, and deletes them in the fenced commit of their states
    (`LeaseStore.commit_leased(inbox=...)`). Wake-ups are hints: one may be lost (a
    connection drop) or come twice, so a holder also looks (`inbox_accounts`) now and then.

    ```python
    entry_id = await store.record_reports("eu-1", body, count=3, received_at=now)
    unsubscribe = store.watch_inbox(lambda account: wake(account))
    for entry in await store.inbox("eu-1"):
        ...  # decode entry.body, deliver, then commit_leased(..., inbox=[entry.id])
    waiting = await store.inbox_accounts(["eu-1", "us-1"])   # {"eu-1"}
    ```
    """

    #: Whether `watch_inbox` also hears batches recorded by other processes (PostgreSQL:
    #: `LISTEN`/`NOTIFY`) or only this process's (SQLite).
    inbox_wakes_other_processes: bool

    async def record_reports(
        self, account: str, body: bytes, *, count: int, received_at: datetime
    ) -> int:
        """Record a batch durably (committed when this returns) in one statement; return its id.

        Wakes the account's holder. Safe to call from many requests at once.
        """
        ...

    async def inbox(self, account: str, *, limit: int = 100) -> list[InboxEntry]:
        """The account's waiting entries, oldest first (by id), at most `limit` of them."""
        ...

    async def inbox_accounts(self, accounts: Collection[str]) -> set[str]:
        """Which of these accounts have entries waiting: one cheap indexed query."""
        ...

    def watch_inbox(self, callback: Callable[[str], None]) -> Callable[[], None]:
        """Call `callback(account)` on the event loop whenever a batch is recorded.

        Call it from a running event loop: the callbacks run on that loop. Returns the
        function that unsubscribes (calling it again does nothing).
        """
        ...


def moves_forward(stored: datetime | None, at: datetime) -> bool:
    """Whether a checkpoint at `stored` (`None`: none yet) moves to `at`: forward only.

    >>> from datetime import UTC
    >>> moves_forward(None, datetime(2024, 1, 1, tzinfo=UTC))
    True
    >>> moves_forward(datetime(2024, 1, 2, tzinfo=UTC), datetime(2024, 1, 1, tzinfo=UTC))
    False
    """
    return stored is None or at > stored


def latest_checkpoints(
    checkpoints: Iterable[tuple[Lease, datetime]],
) -> dict[str, tuple[Lease, datetime]]:
    """What `LeaseStore.advance` writes: each account once, at its latest time, under the
    lease given last with that time. `ValueError` for a naive datetime, before any write.

    >>> from datetime import UTC
    >>> early, late = datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 1, 2, tzinfo=UTC)
    >>> lease = Lease("acme", owner="p1", fence=3, expires_at=late)
    >>> latest_checkpoints([(lease, late), (lease, early)]) == {"acme": (lease, late)}
    True
    """
    latest: dict[str, tuple[Lease, datetime]] = {}
    for lease, at in checkpoints:
        require_aware(at, "the store takes aware datetimes only")
        given = latest.get(lease.account)
        if given is None or at >= given[1]:
            latest[lease.account] = (lease, at)
    return latest


def lease_ttl_of(lease_ttl: float | None, ttl: float | None) -> float:
    """The lease time a `LeaseStore.lease` call gave: `lease_ttl`, or its old spelling `ttl`.

    `ttl=` still works and warns (`DeprecationWarning`): the poller, the lease keeper and
    the stores call the one concept `lease_ttl`.
    """
    if ttl is not None:
        warnings.warn(
            "LeaseStore.lease(ttl=...) is deprecated: pass lease_ttl=...",
            DeprecationWarning,
            stacklevel=3,
        )
        if lease_ttl is None:
            lease_ttl = ttl
    if lease_ttl is None:
        raise TypeError("lease() needs lease_ttl, the seconds a lease lasts unless renewed")
    return lease_ttl
