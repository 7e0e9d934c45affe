"""How a message's state reaches your handler: one delivery core, fed by every source.

The provider tells what became of a call three ways: the logs (complete for 48 hours),
delivery reports pushed to a ``notifyUrl``, and reports kept for one pull. Every source
ends in `DeliveryCore`, the one piece of code that decides new, changed or stale
(`infobip_voicelogs.state.compare`), hands over and commits; it runs for an account only
in the process that holds the account's lease, one hand-over at a time.

The ways to the handler, and to the commit:

- **Logs.** `LogsPoller` walks an account's window (`poller`'s `Walk`) and gives the core
  each batch of up to ``max_batch`` logs (`DeliveryCore.logs`): the logs the stored
  fingerprints do not know go to the handler, oldest first, then one fenced
  `LeaseStore.commit_leased` writes their fingerprints, archive rows and the checkpoint.
- **Pushed reports.** `ReportsReceiver` authenticates and decodes a POST, records the
  batch in the store's inbox (`InboxStore.record_reports`, one statement) and answers 200
  once that committed. The store wakes the holder (`InboxWatch`: in the process, or by
  PostgreSQL ``NOTIFY`` across processes; a look at the inbox every second otherwise),
  and the holder's core delivers the inbox (`DeliveryCore.inbox`): the batch's new and
  changed states to the handler in the batch's order, then one fenced commit that also
  deletes the entries delivered. The holder is the poller, or, in a process that does
  not poll, the receiver itself when given a handler (`InboxHolder`).
- **Pulled reports.** The poller pulls and records the batch in the inbox before
  anything else, then delivers it as a pushed one.

What it promises: each state of each message reaches the handler once; never a
non-final state after a final one; nothing lost; one account's hand-overs never overlap.
The one exception is the batch in flight when a process dies: it was not committed, so
it is handed over again. Whatever a hand-over raises leaves its batch (and its inbox
entries) to be offered again.

The pieces: `LeaseKeeper` (the leases this process holds, renewed once a claim
period), `Shutdown` (the grace a stop gives hand-overs in flight), `Checkpoints` (what
is cached per lease: checkpoints, recent fingerprints, quiet advances), `DeliveryCore`,
`InboxWatch`, `InboxHolder`; `AccountResult` and `LeaseState` are what they report.
"""

from ._checkpoints import MAX_REMEMBERED, Checkpoints
from ._core import AnyHandler, DecodeInbox, DeliveryCore
from ._holder import InboxHolder
from ._inbox import DEFAULT_LOOK_EVERY, DEFAULT_MAX_DRAINS, InboxWatch
from ._leases import (
    DEFAULT_CLAIM_INTERVAL,
    DEFAULT_LEASE_TTL,
    RELEASE_TIMEOUT,
    LeaseKeeper,
    new_owner_id,
)
from ._records import AccountResult, Handler, LeaseState, add_results, detached
from ._shutdown import ABANDON_WAIT, DEFAULT_SHUTDOWN_GRACE, Shutdown

__all__ = [
    "ABANDON_WAIT",
    "DEFAULT_CLAIM_INTERVAL",
    "DEFAULT_LEASE_TTL",
    "DEFAULT_LOOK_EVERY",
    "DEFAULT_MAX_DRAINS",
    "DEFAULT_SHUTDOWN_GRACE",
    "MAX_REMEMBERED",
    "RELEASE_TIMEOUT",
    "AccountResult",
    "AnyHandler",
    "Checkpoints",
    "DecodeInbox",
    "DeliveryCore",
    "Handler",
    "InboxHolder",
    "InboxWatch",
    "LeaseKeeper",
    "LeaseState",
    "Shutdown",
    "add_results",
    "detached",
    "new_owner_id",
]
