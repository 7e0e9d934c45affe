"""An event loop whose clock jumps: when nothing is ready, it moves to the next timer at once.

`bench/reports.py` runs an hour of polling (every `asyncio.sleep`, timeout and
`loop.time()` of the poller) in well under a second of real time with it. Only the
in-process transports are used, so nothing waits on a socket; while a worker thread
(`run_in_executor`: `SqliteStore`'s calls) is busy the loop waits for it in real time and
the clock stands, so no timer fires early.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

__all__ = ["VirtualTimeLoop"]


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """`asyncio.SelectorEventLoop` on virtual time, starting at 0."""

    def __init__(self) -> None:
        super().__init__()
        self._virtual = 0.0
        self._busy = 0
        real_select = self._selector.select

        def select(timeout: float | None = None) -> Any:
            if self._busy or timeout is None:
                return real_select(timeout)  # a thread's answer, or the self-pipe, wakes it
            ready = real_select(0)
            if not ready and timeout > 0:
                self._virtual += timeout  # nothing to do until the next timer: go there
            return ready

        self._selector.select = select  # type: ignore[method-assign]

    def time(self) -> float:
        return self._virtual

    def run_in_executor(
        self, executor: Executor | None, func: Callable[..., Any], *args: Any
    ) -> asyncio.Future[Any]:
        future = super().run_in_executor(executor, func, *args)
        self._busy += 1
        future.add_done_callback(self._done)
        return future

    def _done(self, future: asyncio.Future[Any]) -> None:
        self._busy -= 1
