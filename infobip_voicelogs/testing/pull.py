"""The fake provider's pull side: the reports of calls sent without a notify URL, kept for
`GET /voice/1/reports` and handed out once each.

```python
account = fake.add_account("acme", pull_share=1.0)    # no call of acme has a notify URL
account.generate(20, settle_after=timedelta(0))
# ... a client pulls ...
account.pull.returned_ids   # what reached a client
account.pull.lost_ids       # consumed by a pull whose answer was lost (a fault after the work)
```

Like the logs, the kept reports follow the fake's clock: a call's report is kept from the
moment its call settles. Whether a call was sent with a notify URL is decided per call,
from the account's seed and the message id, with the account's ``pull_share``: the same
for every fake built with the same seed. The pusher (`ReportPusher`) pushes only the other
calls' reports; the logs show every call either way.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import attrs

from ..reports import VoiceReport
from .faults import Fault
from .pusher import report_of
from .query import BadQuery, _limit

if TYPE_CHECKING:
    from .account import FakeAccount

__all__ = ["REPORTS_PATH", "Pull", "PullBox", "PullQuery", "parse_pull"]

#: The path of the pull endpoint the fake serves.
REPORTS_PATH = "/voice/1/reports"
# Before any call: the first look keeps every report of the calls settled so far.
_DAWN = datetime.min.replace(tzinfo=UTC)


@attrs.frozen
class PullQuery:
    """A pull request's parameters: at most `limit` reports, of one bulk or one message."""

    limit: int
    bulk_id: str | None = None
    message_id: str | None = None

    def matches(self, report: VoiceReport) -> bool:
        """Whether the pull may return `report`."""
        return (self.bulk_id is None or report.bulk_id == self.bulk_id) and (
            self.message_id is None or report.message_id == self.message_id
        )


def parse_pull(params: Mapping[str, str]) -> PullQuery:
    """Read a pull's parameters (`limit`, default 50, at most 1000; `bulkId`; `messageId`);
    `BadQuery` if refused."""
    ids = {}
    for name in ("bulkId", "messageId"):
        value = params.get(name)
        if value is not None and not value.strip():
            raise BadQuery(f"Invalid value for parameter {name}: {value!r}")
        ids[name] = value
    return PullQuery(_limit(params.get("limit")), ids["bulkId"], ids["messageId"])


@attrs.frozen
class Pull:
    """One pull the fake answered with reports taken: the ground truth of who got what."""

    #: When it arrived, on the fake's clock.
    at: datetime
    #: Its index in `FakeInfobip.journal`.
    request: int
    #: The message ids of the reports it took, in the order of the answer.
    message_ids: tuple[str, ...]
    #: `False` when the answer never reached the client whole (a fault after the work:
    #: `Fault.status(..., after_work=True)`, `Fault.reset(after_work=True)`, a truncated
    #: or malformed body): its reports are gone from the pull channel.
    answered: bool
    #: The fault the request got, if any.
    fault: Fault | None = None


class PullBox:
    """The reports one fake account keeps for pulling, and every pull that took some.

    Made by `FakeAccount` (as ``account.pull``); thread-safe like the account.
    """

    def __init__(self, account: FakeAccount, share: float) -> None:
        if not 0.0 <= share <= 1.0:
            raise ValueError(f"pull_share is a share of calls, 0 to 1, not {share!r}")
        #: The share of calls sent without a notify URL: their reports wait here.
        self.share = share
        #: Every pull that took reports, oldest first.
        self.pulls: list[Pull] = []
        self._account = account
        self._seed = f"{account.seed}:pull"
        self._kept: dict[str, VoiceReport] = {}  # in the order the calls settled
        self._collected: set[str] = set()  # every message whose report was ever kept
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"PullBox({self._account.name!r}, share={self.share!r})"

    def keeps(self, message_id: str) -> bool:
        """Whether the call `message_id` was sent without a notify URL (its report waits
        here, and is never pushed)."""
        return self.share > 0 and random.Random(f"{self._seed}:{message_id}").random() < self.share

    @property
    def waiting(self) -> list[VoiceReport]:
        """The reports a pull would return now, oldest settled first."""
        with self._lock:
            self._collect()
            return list(self._kept.values())

    @property
    def returned_ids(self) -> set[str]:
        """The message ids of the reports that reached a client."""
        return {i for pull in self.pulls if pull.answered for i in pull.message_ids}

    @property
    def lost_ids(self) -> set[str]:
        """The message ids of the reports taken by a pull whose answer was lost."""
        return {i for pull in self.pulls if not pull.answered for i in pull.message_ids}

    def take(
        self, query: PullQuery, *, request: int, answered: bool, fault: Fault | None = None
    ) -> list[VoiceReport]:
        """Hand out the reports `query` asks for, oldest first: they are gone from here.

        `request` and `answered` are recorded in `pulls` (a pull that took nothing is not).
        """
        with self._lock:
            self._collect()
            taken: list[VoiceReport] = []
            for report in self._kept.values():
                if len(taken) >= query.limit:
                    break
                if query.matches(report):
                    taken.append(report)
            for report in taken:
                del self._kept[str(report.message_id)]
            if taken:
                ids = tuple(str(report.message_id) for report in taken)
                self.pulls.append(Pull(self._account.clock.now(), request, ids, answered, fault))
        return taken

    def _collect(self) -> None:
        """Keep the reports of the calls settled by now and not kept before (none is
        pushed), a call added to the past by `generate` included."""
        now = self._account.clock.now()
        for final in self._account.settling(_DAWN, now):
            message_id = final.message_id
            assert message_id is not None
            if message_id not in self._collected and self.keeps(message_id):
                self._kept[message_id] = report_of(final)
                self._collected.add(message_id)
