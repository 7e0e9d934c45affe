"""Polling many accounts into one stream that loses nothing and repeats nothing.

The provider keeps a log for 48 hours and changes its status after it is first seen.
`LogsPoller` walks each account's recent window on every cycle, compares what it finds with
fingerprints of what it delivered before, and hands the handler only the logs that are new
or whose state changed; it delivers the reports that receivers record in the store's
inbox, and pulls reports for the accounts that ask for it, through the same core.
`_records` holds what it is given and keeps (`Account`, `AccountStatus`); what a hand-over
gives back (`AccountResult`, `LeaseState`) is the delivery core's; whether a sighting is
new, changed or stale is `infobip_voicelogs.state`'s decision (`fingerprint` is
re-exported from there).

The way from `run()` to the handler (every store leases, so there is one way; what to
hand over and the hand-over itself are the delivery core's, `infobip_voicelogs.delivery`):

1. `LogsPoller.run` (`_poller`) claims once (`LeaseKeeper.claim`), delivers the reports
   waiting in the store's inbox, then runs a loop per account, a claim loop, a flush
   loop, a prune loop and the inbox watch (`InboxWatch`) under `Shutdown.supervise`.
2. An account's loop waits while the account is not held, else calls `_cycle`: one cycle
   per account at a time (its lock), one of `max_concurrency` slots, the lease read then.
   An account that pulls its reports (`Account.pull_reports`) pulls first, records each
   pulled batch in the inbox and has the core deliver it (`_pull`); its logs are walked
   every `reconcile`.
3. `Walk.cycle` (`_cycle`) walks `[checkpoint - revisit, now]` and gives every `max_batch`
   logs, and the rest at the end, to `DeliveryCore.logs`: the new and changed logs
   (`state.compare`), then, with no claim in flight, the lease checked and marked busy,
   the handler and `LeaseStore.commit_leased` (fenced) as one unit under the account's
   hand-over lock. The inbox watch calls `DeliveryCore.inbox` for a held account as soon
   as the store says a batch was recorded; the same lock keeps the two from overlapping.
   The checkpoint is read once per lease (`Checkpoints`); a quiet end (nothing to hand
   over) only queues it, and the flush loop sends every queued one in one
   `LeaseStore.advance` once a claim period.
4. `_record` turns the result into the account's `AccountStatus` (`next_status`) and its
   next due time; a `LeaseLostError` hands the account back to the keeper.

Reconciliation: each claim (`_claim`) also reads, in one `ReportStore.report_activity`
call, when each account's delivery reports last arrived (and a delivery from the inbox
marks them arrived at once). An account whose last report is within `reconcile` of now
when a cycle starts, or that pulls its reports, is reconciling: that cycle's first final
states (`AccountResult.settled`) count as `webhook_lost` (no report brought them, or
`compare` would have called them `SAME`), and its logs are due again `reconcile` later
instead of `interval`. Only this process's core commits the account's states while it
holds the lease, so the per-lease filter of fingerprints (`Checkpoints.prints`) is the
store's.

Shutdown rules (`_shutdown`): `stop()`, `aclose()` and a first cancellation give the
cycles in flight `shutdown_grace`; a hand-over in flight finishes and commits within it,
else it is cancelled and its batch offered again; a second cancellation skips the grace;
a handler that ignores its cancellation is abandoned after `ABANDON_WAIT`. Then the leases
are released (bounded), the fetchers closed, never the caller's client or store.
"""

from ..delivery import (
    ABANDON_WAIT,
    DEFAULT_CLAIM_INTERVAL,
    DEFAULT_LEASE_TTL,
    DEFAULT_SHUTDOWN_GRACE,
    AccountResult,
    Handler,
    LeaseState,
    new_owner_id,
)
from ..state import fingerprint
from ._poller import DEFAULT_RECONCILE, PRUNE_MARGIN, LogsPoller
from ._records import AUTH_BACKOFF_FACTOR, MAX_BACKOFF, Account, AccountStatus

__all__ = [
    "ABANDON_WAIT",
    "AUTH_BACKOFF_FACTOR",
    "DEFAULT_CLAIM_INTERVAL",
    "DEFAULT_LEASE_TTL",
    "DEFAULT_RECONCILE",
    "DEFAULT_SHUTDOWN_GRACE",
    "MAX_BACKOFF",
    "PRUNE_MARGIN",
    "Account",
    "AccountResult",
    "AccountStatus",
    "Handler",
    "LeaseState",
    "LogsPoller",
    "fingerprint",
    "new_owner_id",
]
