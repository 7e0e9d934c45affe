"""The window walk behind `LogsFetcher.iter_logs`: every log of a time window once, newest first.

The provider pages by time only: a page is the newest ``limit`` logs with ``sentSince <=
sentAt <= sentUntil`` (or ``<`` on either side: the reference does not say). So the walk
moves ``sentUntil`` backwards a page at a time, with a cursor and a small memory:

- ``until`` is the newest millisecond not yet finished: every log newer than it has been
  yielded, and of the logs sent at ``until`` exactly, those whose identities are in
  ``seen`` (only that one millisecond's, never the whole walk's).
- A page asks for ``sentSince = since - 1 ms`` and ``sentUntil = until + 1 ms``, so that an
  inclusive and an exclusive server both return everything in ``[since, until]``; once a
  log comes back at exactly the ``sentUntil`` sent, the server has shown that its bounds
  are inclusive, and from then on the walk asks for ``sentUntil = until`` itself, so the
  millisecond above stops crowding the pages.
- A page shorter than the page size ends the walk: the server had no more in the bounds.
- A full page whose logs all share the millisecond ``until`` and bring nothing new is a
  crowded millisecond (more logs than a page holds): the walk asks for it one status group
  at a time, warns `IncompleteWindowWarning` for what it still cannot reach, and steps one
  millisecond down.

Termination: a page shorter than the page size ends the walk, and every full page does
one of four things, each of which can happen only finitely often: it ends the walk
(`Step.STOP`); it moves ``until`` strictly back (to the page's oldest millisecond, or one
millisecond down after a crowded one), and ``until`` never goes below ``since``; it adds
at least one identity to ``seen`` (or to the undated logs met) without moving ``until``,
and the server holds finitely many logs; or it proves the bounds inclusive, which happens
once. So the walk ends whatever a server answers, even one that ignores its bounds.

See docs/fetching.md for the rules as a user meets them.
"""

from __future__ import annotations

import enum
import logging
import warnings
from collections.abc import AsyncGenerator, Awaitable, Callable
from datetime import datetime

from ._time import MILLISECOND, floor_ms
from .errors import IncompleteWindowWarning
from .models import GeneralStatus, LogsQuery, VoiceLog

__all__ = ["Step", "WindowWalk"]

logger = logging.getLogger("infobip_voicelogs")

#: One request for a page of logs (`LogsFetcher.fetch`: throttled, retried, typed).
Fetch = Callable[[LogsQuery], Awaitable[list[VoiceLog]]]


class Step(enum.Enum):
    """What a full page tells the walk to do next (`WindowWalk` decides after each page)."""

    #: Ask for the next page: the cursor moved, `seen` grew, or the bounds proved inclusive.
    NEXT = "next"
    #: End the walk: the server shows it cannot be paged further (the walk has warned).
    STOP = "stop"
    #: The page is one millisecond holding more logs than a page: split it by status group.
    DENSE = "dense"


class WindowWalk:
    """The state of one walk over ``[base.sent_since, base.sent_until]``.

    ``fetch`` sends one query; ``base`` is the validated query of the walk (its bounds, its
    page size as ``limit``, and the filters sent with every page). Its bounds are in UTC
    (`LogsQuery` converts them), so the walk's millisecond steps are steps in time: in a
    zone's repeated hour, local arithmetic would drop `fold` and land an hour off.

    ```python
    walk = WindowWalk(fetcher.fetch, LogsQuery(sent_since=since, sent_until=until, limit=1000))
    async for log in walk.run():
        ...
    ```
    """

    def __init__(self, fetch: Fetch, base: LogsQuery) -> None:
        if base.sent_since is None or base.sent_until is None or base.limit is None:
            raise ValueError("a window walk needs sent_since, sent_until and limit")
        self.fetch = fetch
        self.base = base
        self.since: datetime = base.sent_since
        self.page_size: int = base.limit
        self.until = floor_ms(base.sent_until)
        self.seen: set[object] = set()
        self.inclusive = False  # proven only by a log at exactly the sent sentUntil
        self.undated: set[object] = set()

    async def run(self) -> AsyncGenerator[VoiceLog, None]:
        """Every log of the window once, newest first (warning for what paging cannot reach)."""
        while self.until >= self.since:
            bound = self.until if self.inclusive else self.until + MILLISECOND
            page = await self.fetch(
                self.base.replace(sent_since=self.since - MILLISECOND, sent_until=bound)
            )
            fresh = [log for log in page if self._is_new(log)]
            for log in fresh:
                yield log
            if len(page) < self.page_size:
                return  # the server had no more in the bounds: the window is done
            step = self._advance(page, fresh, bound)
            if step is Step.DENSE:
                # Ask for the crowded millisecond a status group at a time, then step one
                # millisecond down, which the next bound (until + 1 ms if exclusive, until
                # if inclusive) reaches without skipping any.
                async for log in self._split_dense(bound):
                    yield log
                self.until -= MILLISECOND
                self.seen = set()
            elif step is Step.STOP:
                return

    # -- deciding after a page -------------------------------------------------------------

    def _is_new(self, log: VoiceLog) -> bool:
        """Whether ``log`` belongs to the window and has not been yielded; records it if so."""
        sent_at = log.sent_at
        if sent_at is None:
            undated = _identity(log)
            if undated in self.undated:
                return False
            self.undated.add(undated)
            return True
        if sent_at < self.since or sent_at > self.until:
            return False
        if sent_at == self.until:
            key = _identity(log)
            if key in self.seen:
                return False
            self.seen.add(key)
        return True

    def _advance(self, page: list[VoiceLog], fresh: list[VoiceLog], bound: datetime) -> Step:
        """Move the cursor after a full page, and say what comes next."""
        dated = [log.sent_at for log in page if log.sent_at is not None]
        if not dated:
            if fresh:
                return Step.NEXT  # ask again: the same page brings nothing new next time
            _warn_incomplete(f"a full page of {len(page)} logs without sentAt", len(fresh))
            return Step.STOP
        # A log at exactly the sentUntil we sent proves the server's bounds inclusive: from
        # now on ask for `until` itself, so the millisecond above stops crowding the pages.
        learned = not self.inclusive and bound in dated
        self.inclusive = self.inclusive or learned
        oldest = min(dated)
        if oldest < self.until:
            # Everything in (oldest, until] was on this page; the logs at `oldest` were too,
            # but more may share that millisecond: remember which we have.
            self.until = oldest
            self.seen = {_identity(log) for log in page if log.sent_at == oldest}
            return Step.NEXT
        if fresh or learned:
            return Step.NEXT  # ask again: a larger `seen`, or the tighter inclusive bound
        if max(dated) > self.until:
            _warn_incomplete("the provider ignores sentUntil", len(self.seen))
            return Step.STOP
        return Step.DENSE

    # -- a crowded millisecond -------------------------------------------------------------

    async def _split_dense(self, bound: datetime) -> AsyncGenerator[VoiceLog, None]:
        """The logs of the crowded millisecond `until`, asked for one status group at a time.

        Each group gets one page: a group that alone fills it may still hide logs, and so
        does a walk already filtered by status, or a server that ignores the filter.
        """
        if self.base.general_status is not None:
            _warn_incomplete(
                f"at least {self.page_size} logs were sent at {self.until.isoformat()}",
                len(self.seen),
            )
            return
        since = self.until if self.inclusive else self.until - MILLISECOND
        crowded = []
        for group in GeneralStatus:
            query = self.base.replace(sent_since=since, sent_until=bound, general_status=group)
            page = await self.fetch(query)
            here = [log for log in page if log.sent_at == self.until]
            if any(log.general_status is not group for log in here):
                _warn_incomplete(
                    f"at least {self.page_size} logs were sent at {self.until.isoformat()} "
                    "and the provider ignores generalStatus",
                    len(self.seen),
                )
                return
            for log in here:
                key = _identity(log)
                if key not in self.seen:
                    self.seen.add(key)
                    yield log
            if len(page) >= self.page_size and len(here) == len(page):
                crowded.append(group.value)
        if crowded:
            _warn_incomplete(
                f"at least {self.page_size} logs each of {', '.join(crowded)} were sent at "
                f"{self.until.isoformat()}",
                len(self.seen),
            )


def _identity(log: VoiceLog) -> object:
    """What tells two copies of one log apart from two logs: its message id, else itself."""
    return log.message_id if log.message_id is not None else log


def _warn_incomplete(what: str, yielded: int) -> None:
    message = (
        f"{what}: paging cannot get past them; {yielded} of them were yielded and any "
        "others of that millisecond may be missing (narrow the walk with a filter, e.g. "
        "to or bulk ids, to reach them)"
    )
    # Logged too, every time: a warning is shown once per place, and a poller walks again.
    logger.warning("incomplete window: %s", message)
    # Level 4: past this function, the step that warns and the walk, to the caller's loop.
    warnings.warn(message, IncompleteWindowWarning, stacklevel=4)
