"""How a poller stops, within a stated time whatever its handler does.

`stop()`, `aclose()` and a first cancellation give the cycles in flight `grace` seconds to
finish, a handler call among them to return and be committed. When the grace is over they
are cancelled: a handler call is cancelled too, its batch stays uncommitted and is offered
again by the next cycle. A second cancellation, or one after `stop()`, skips the grace. A
handler that swallows its cancellation is abandoned after `ABANDON_WAIT` and logged, so no
path waits on user code without a bound. `Shutdown` keeps that state for one poller.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

logger = logging.getLogger("infobip_voicelogs")

#: Seconds a shutdown (cancellation, `stop()`, `aclose()`) gives the cycles in flight, and a
#: handler call in particular, to finish and commit before they are cancelled.
DEFAULT_SHUTDOWN_GRACE = 5.0
#: After the grace, how long a cancelled handler may take to unwind before it is abandoned.
ABANDON_WAIT = 1.0
# What a cut-short cycle may take beyond ABANDON_WAIT to unwind (its own bookkeeping).
_UNWIND_MARGIN = 0.5


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class Shutdown:
    """The stop request, the grace's deadline, and the cycles and handler calls in flight."""

    def __init__(self, grace: float) -> None:
        if not 0 <= grace < float("inf"):
            raise ValueError("shutdown_grace must be a finite number of seconds >= 0")
        self.grace = float(grace)
        #: Set by `stop()`; cleared when `run()` returns.
        self.stopping = asyncio.Event()
        #: When the grace of a `stop()` ends, on the loop's clock.
        self.deadline: float | None = None
        self._cycling: set[asyncio.Task[Any]] = set()  # tasks inside a cycle right now
        self._cut: set[asyncio.Task[Any]] = set()  # cycles cancelled after the grace
        self._cycle_of: dict[asyncio.Future[Any], asyncio.Task[Any]] = {}  # handler -> cycle
        self._sleepers: set[asyncio.Future[None]] = set()  # `sleep` calls, woken by `stop`

    def stop(self) -> None:
        """Ask the loops to end; the grace starts now (or when `supervise` starts)."""
        if self.stopping.is_set():
            return
        self.stopping.set()
        for waiter in self._sleepers:
            _wake(waiter)
        with contextlib.suppress(RuntimeError):  # no running loop: supervise starts the clock
            self.deadline = asyncio.get_running_loop().time() + self.grace

    def reset(self) -> None:
        """`run()` returned: a later `run()` starts afresh."""
        self.stopping.clear()
        self.deadline = None

    async def sleep(self, delay: float | None) -> None:
        """Sleep `delay` seconds, or until `stop()`."""
        if self.stopping.is_set():
            return
        # One future and one timer: every account sleeps once per cycle, and `wait_for`
        # would make a task, an event waiter and a cancellation of each.
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        timer = None if delay is None else loop.call_later(delay, _wake, waiter)
        self._sleepers.add(waiter)
        try:
            await waiter
        finally:
            self._sleepers.discard(waiter)
            if timer is not None:
                timer.cancel()

    async def until_stopped_or(self, other: asyncio.Future[Any]) -> None:
        """Wait until `stop()` or `other` is done, whichever comes first."""
        stopped = asyncio.ensure_future(self.stopping.wait())
        either: set[asyncio.Future[Any]] = {other, stopped}
        try:
            await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()

    # -- cycles ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def cycle(self, task: asyncio.Task[Any]) -> Iterator[None]:
        """Count `task` as a cycle in flight while the block runs."""
        self._cycling.add(task)
        try:
            yield
        finally:
            self._cycling.discard(task)
            self._cut.discard(task)

    def was_cut(self, task: asyncio.Task[Any]) -> bool:
        """Whether `task`'s cancellation came from the grace ending, and from nothing else.

        If so, it is consumed (`uncancel`): the cycle reports it as its own failure instead
        of raising a cancellation into a caller who did not cancel.
        """
        if task not in self._cut or task.cancelling() > 1:
            return False
        task.uncancel()
        return True

    def others(self) -> set[asyncio.Task[Any]]:
        """The cycles in flight, but the caller's own (`aclose` from a handler)."""
        me = asyncio.current_task()
        mine = {me, self._cycle_of.get(me)} if me is not None else set()
        return self._cycling - mine

    async def supervise(self, tasks: set[asyncio.Task[None]]) -> None:
        """Wait for `run()`'s loops to end; pass cancellations on to them; keep the grace."""
        loop = asyncio.get_running_loop()
        stopped = asyncio.ensure_future(self.stopping.wait())
        pending, cancelled = set(tasks), False
        try:
            while pending:
                if stopped.done() and self.deadline is None:
                    self.deadline = loop.time() + self.grace  # stop() came before run()
                left = None if self.deadline is None else self.deadline - loop.time()
                if left is not None and left <= 0:
                    await self.cut_short(pending)  # the grace is over
                    break
                watch = pending if stopped.done() else pending | {stopped}
                try:
                    done, _ = await asyncio.wait(
                        watch, timeout=left, return_when=asyncio.FIRST_COMPLETED
                    )
                except asyncio.CancelledError:
                    # The first: each handler in flight gets the grace. A second: at once.
                    cancelled = True
                    for task in pending:
                        task.cancel()
                    continue
                pending -= done
        finally:
            stopped.cancel()
        if cancelled:
            raise asyncio.CancelledError
        for task in tasks:  # the loops catch every Exception: anything else is a bug
            if task.done() and not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]

    async def wind_down(self, cycles: set[asyncio.Task[Any]]) -> None:
        """Wait for `cycles` until the shutdown deadline, then cut them short."""
        loop = asyncio.get_running_loop()
        deadline = self.deadline if self.deadline is not None else loop.time() + self.grace
        try:
            _, pending = await asyncio.wait(cycles, timeout=max(0.0, deadline - loop.time()))
        except asyncio.CancelledError:
            for task in cycles:  # aclose itself cancelled: no more grace for anyone
                task.cancel()
            raise
        if pending:
            await self.cut_short(pending)

    async def cut_short(self, tasks: set[asyncio.Task[Any]]) -> None:
        """Cancel `tasks` after the grace, and wait (boundedly) for them to unwind."""
        for task in tasks:
            self._cut.add(task)
            task.cancel()
        _, stuck = await asyncio.wait(tasks, timeout=ABANDON_WAIT + _UNWIND_MARGIN)
        for task in stuck:
            logger.error("%s did not stop after its cancellation; abandoned", task.get_name())

    # -- a handler call --------------------------------------------------------------------

    async def hand_over(
        self, name: str, size: int, hand_over: Callable[[], Awaitable[None]]
    ) -> None:
        """Run `hand_over()` (the handler, then the commit) so that a cancellation of the
        cycle gives it the grace instead of interrupting it mid-batch."""
        task = asyncio.ensure_future(hand_over())
        cycle = asyncio.current_task()
        if cycle is not None:
            self._cycle_of[task] = cycle
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            await self._finish_or_abandon(name, task, size)
            raise
        finally:
            self._cycle_of.pop(task, None)

    async def _finish_or_abandon(self, name: str, task: asyncio.Future[None], size: int) -> None:
        """A cycle was cancelled while its handler ran: grant the grace, then cancel it.

        A cancellation after `stop()` is the second request to stop (the first one's grace
        is kept by whoever stopped): the handler is cancelled at once.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (0.0 if self.stopping.is_set() else self.grace)
        with contextlib.suppress(asyncio.CancelledError):  # cancelled again: no more grace
            await asyncio.wait({task}, timeout=max(0.0, deadline - loop.time()))
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait({task}, timeout=ABANDON_WAIT)
        extra = {"account": name}
        if not task.done():
            logger.error(
                "account %s: the handler ignored its cancellation and was abandoned;"
                " its batch of %d logs will be offered again",
                name,
                size,
                extra={**extra, "outcome": "handler_abandoned"},
            )
        elif task.cancelled():
            logger.warning(
                "account %s: the handler was cancelled at shutdown; its batch of %d logs"
                " will be offered again",
                name,
                size,
                extra={**extra, "outcome": "handler_cancelled"},
            )
        elif task.exception() is not None:
            logger.error(
                "account %s: handing over a batch failed while the poller was cancelled;"
                " it will be offered again",
                name,
                exc_info=task.exception(),
                extra={**extra, "outcome": "handler_failed"},
            )
