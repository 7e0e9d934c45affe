"""This process's share of the accounts: the leases it holds, kept through a `LeaseStore`.

Every store leases (`SqliteStore` and a wrapped `CheckpointStore` grant every account to
their one poller, fence 0), so a lone poller and a fleet take the same path. Once a claim
period the keeper calls `LeaseStore.lease`, which renews what the process holds, sheds
what exceeds its fair share and claims free or expired accounts. The keeper remembers the
answer and, by the event loop's own clock, how long it may trust it: a lease is used only
until `lease_ttl` after the call that renewed it was sent (less a margin), so a process
cut off from the database stops polling before its leases can pass to another.

Shedding drains: only an account whose batch is being handed over (handler, then commit)
is `busy` for a claim, so a claim may shed an account mid-walk; the walk then stops at its
next hand-over (`check`), having delivered nothing the new holder delivers again. An
account never idle is thus shed within one claim period, and nothing is delivered twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import secrets
import socket
from collections.abc import Iterator, Sequence

from .. import telemetry
from ..errors import LeaseLostError
from ..store import Lease, LeaseStore
from ._records import LeaseState, detached

logger = logging.getLogger("infobip_voicelogs")

#: Seconds a lease lasts unless renewed. A dead process's accounts pass to the others within
#: this plus one claim period (20 s by default), and their first cycles follow: well within
#: the 30 s the fleet promises, with three renewals in every lease's lifetime.
DEFAULT_LEASE_TTL = 15.0
#: Seconds between two claims (each also renews the leases held: the heartbeat).
DEFAULT_CLAIM_INTERVAL = 5.0
# A lease is trusted locally until this fraction of its ttl after the renewing call was sent:
# clocks of two hosts run at slightly different rates, and the call itself took time.
_TRUST = 0.9
# The longest one claim may take, as a share of the ttl: a later answer is of no use, the
# leases it renewed having lapsed locally by then (the store has its own, shorter bounds).
_CLAIM_TIMEOUT_SHARE = 1.0
# The longest a release at shutdown may take: the leases lapse by themselves anyway, and a
# shutdown must keep its stated bound.
RELEASE_TIMEOUT = 2.0


def _same_failure(before: Exception, now: Exception) -> bool:
    """Whether a claim failed as the one before it did (the same outage, still on)."""
    return type(before) is type(now) and str(before) == str(now)


def new_owner_id() -> str:
    """A holder id unique to this process: host, pid and a random suffix (pids are reused)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


class LeaseKeeper:
    """The leases one poller process holds, renewed by `refresh` once a claim period."""

    def __init__(
        self,
        store: LeaseStore,
        accounts: Sequence[str],
        *,
        owner: str,
        lease_ttl: float,
        claim_interval: float,
    ) -> None:
        ttl, period = lease_ttl, claim_interval
        if not (math.isfinite(ttl) and ttl > 0):
            raise ValueError(f"lease_ttl must be a finite number of seconds > 0, not {ttl!r}")
        if not (math.isfinite(period) and 0 < period <= ttl / 2):
            raise ValueError(
                f"claim_interval must be > 0 and at most half of lease_ttl ({ttl:g} s), "
                f"not {period!r}: a lease must be renewed at least twice in its lifetime"
            )
        self.owner = owner
        self.lease_ttl = ttl
        self.claim_interval = period
        #: Loop time of the first failed claim since the last one that worked, or `None`.
        self.failing_since: float | None = None
        #: What the last claim raised (without its traceback), or `None` if it worked.
        self.last_error: Exception | None = None
        self._claimed = False  # a claim has answered since the last release
        self._busy: set[str] = set()  # accounts whose batch is being handed over
        self._store = store
        self._accounts = list(accounts)
        self._leases: dict[str, Lease] = {}
        # Accounts a claim that worked left out since this process last held them: the
        # fleet rebalanced (another poller joined), so a walk cut on one is no failure.
        self._shed: set[str] = set()
        self._trusted_until = -math.inf  # event loop time
        self._changed: asyncio.Future[None] | None = None
        self._in_flight = 0  # claims sent and not answered
        self._quiet: asyncio.Future[None] | None = None  # resolved when none is in flight
        self._sent = 0  # claims sent, numbered from 1
        self._applied = 0  # the number of the newest claim whose answer was applied
        # Leases that lapse by the store's clock are trusted locally for less than their
        # ttl; those that never lapse by time (one process per store) until released.
        self._expire = bool(getattr(store, "leases_expire", True))
        #: Whether this process has claimed since it last released (so has something to free).
        self.registered = False

    def held(self, account: str) -> Lease | None:
        """The lease on `account`, if this process holds one it may still trust."""
        lease = self._leases.get(account)
        if lease is None:
            return None
        if asyncio.get_running_loop().time() >= self._trusted_until:
            return None  # not renewed in time (the store is unreachable): hands off
        return lease

    def holding(self) -> set[str]:
        """The accounts this process may poll now."""
        if asyncio.get_running_loop().time() >= self._trusted_until:
            return set()
        return set(self._leases)

    def state(self, account: str) -> LeaseState:
        """Held here; elsewhere (a claim that worked, and is still trusted, left it out);
        or unknown (no claim has answered yet, or the last that did is too old to trust)."""
        if not self._claimed or asyncio.get_running_loop().time() >= self._trusted_until:
            return LeaseState.UNKNOWN
        return LeaseState.HELD if account in self._leases else LeaseState.ELSEWHERE

    @contextlib.contextmanager
    def handing_over(self, account: str) -> Iterator[None]:
        """Mark `account` busy while the block runs: no claim sheds it meanwhile."""
        self._busy.add(account)
        try:
            yield
        finally:
            self._busy.discard(account)

    def changed(self) -> asyncio.Future[None]:
        """A future resolved at the next change of the leases held (to wait for a lease)."""
        if self._changed is None or self._changed.done():
            self._changed = asyncio.get_running_loop().create_future()
        return self._changed

    async def settled(self) -> None:
        """Return once no claim is in flight: a hand-over must not start on a lease being shed.

        The claim tells the store which accounts are busy when it is sent; a hand-over that
        began while it was in flight could be on an account the store sheds meanwhile.
        """
        while self._in_flight:
            if self._quiet is None or self._quiet.done():
                self._quiet = asyncio.get_running_loop().create_future()
            await asyncio.wait({self._quiet})

    async def refresh(self) -> tuple[set[str], set[str]]:
        """Renew, shed and claim (one store call); return the accounts gained and lost.

        Raises what the store raises (`StoreError`), or `TimeoutError` past the ttl (an answer
        that late is of no use); the leases then stay trusted only until their local deadline.
        An answer that arrives after a newer claim's was applied changes nothing.
        """
        loop = asyncio.get_running_loop()
        before = self.holding()
        sent = loop.time()
        self._sent += 1
        number = self._sent
        self._in_flight += 1
        self.registered = True
        try:
            async with asyncio.timeout(self.lease_ttl * _CLAIM_TIMEOUT_SHARE):
                leases = await self._store.lease(
                    self.owner, self._accounts, lease_ttl=self.lease_ttl, busy=set(self._busy)
                )
        except Exception:
            if self.failing_since is None:
                self.failing_since = sent
            raise
        finally:
            self._in_flight -= 1
            if not self._in_flight and self._quiet is not None and not self._quiet.done():
                self._quiet.set_result(None)
        if number < self._applied:
            return set(), set()  # a newer claim answered first: its leases stand
        self._applied = number
        self._leases = dict(leases)
        self._claimed, self.failing_since = True, None
        self._trusted_until = sent + self.lease_ttl * _TRUST if self._expire else math.inf
        after = set(self._leases)
        gained, lost = after - before, before - after
        self._shed = (self._shed | lost) - after
        if gained or lost:
            self._notify()
        return gained, lost

    async def claim(self) -> set[str]:
        """`refresh`, logged and counted; return the accounts it gained (none if it failed).

        A failure (the store down) is logged, not raised: the leases stay trusted until
        their local deadline, and the next claim tries again.

        One warning per outage: the same failure again is logged at debug level only, and
        the first claim that works after failures says so.
        """
        try:
            gained, lost = await self.refresh()
        except Exception as exc:
            again = self.last_error is not None and _same_failure(self.last_error, exc)
            self.last_error = detached(exc)
            logger.log(
                logging.DEBUG if again else logging.WARNING,
                "claiming accounts failed (%s: %s); trying again every %g s",
                type(exc).__name__,
                exc,
                self.claim_interval,
                extra={"outcome": "claim_failed"},
            )
            gained = set()
        else:
            if self.last_error is not None:
                logger.info("claiming accounts works again", extra={"outcome": "claim_ok"})
            self.last_error = None
            for name in lost:
                telemetry.lease_lost(name)
            if gained or lost:
                logger.info(
                    "leases: %d accounts gained, %d lost; this poller holds %d",
                    len(gained),
                    len(lost),
                    len(self.holding()),
                    extra={"outcome": "leases_changed"},
                )
        telemetry.leases_held(len(self.holding()))
        return gained

    def check(self, lease: Lease) -> None:
        """Refuse (`LeaseLostError`) a batch on a lease this process can no longer trust.

        A walk may take longer than the lease (a slow provider, a paused process): the
        handler must not get logs that the new holder delivers too. The commit is fenced in
        any case; this keeps the duplicates to a batch already inside a handler.
        """
        now = self.held(lease.account)
        if now is None or now.fence != lease.fence:
            raise LeaseLostError(
                f"the lease on account {lease.account!r} lapsed or passed to another poller"
                " before its batch was handed over"
            )

    def was_shed(self, account: str) -> bool:
        """Whether a claim that worked gave `account` up (to another poller) since it was held."""
        return account in self._shed

    def forget(self, account: str) -> None:
        """A commit found the lease gone: stop polling `account` until it is claimed again."""
        if self._leases.pop(account, None) is not None:
            self._notify()

    async def release(self) -> None:
        """Give every lease back at once, so the others may claim them now (bounded, logged)."""
        self._leases, self._shed = {}, set()
        self._claimed, self.failing_since = False, None
        self._notify()
        self.registered = False
        try:
            async with asyncio.timeout(min(RELEASE_TIMEOUT, self.lease_ttl)):
                await self._store.release(self.owner)
        except Exception as exc:  # they lapse by themselves within the ttl
            logger.warning(
                "releasing this poller's leases failed (%s: %s); they lapse within %g s",
                type(exc).__name__,
                exc,
                self.lease_ttl,
            )

    def _notify(self) -> None:
        if self._changed is not None and not self._changed.done():
            self._changed.set_result(None)
        self._changed = None
