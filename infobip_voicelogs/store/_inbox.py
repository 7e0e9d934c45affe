"""The inbox's wake-ups within one process, and the checks of a recorded batch.

Every store that offers `InboxStore` keeps its watchers here: each callback with the event
loop it subscribed from, so a recording (on any thread, any loop) wakes each watcher on its
own loop, after the recording committed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import datetime

from .._time import require_aware


class Watchers:
    """The callbacks of `watch_inbox`, each to be called on the loop it subscribed from."""

    __slots__ = ("_callbacks",)

    def __init__(self) -> None:
        # Keyed by a token of each subscription: one callback may subscribe twice.
        self._callbacks: dict[object, tuple[asyncio.AbstractEventLoop, Callable[[str], None]]] = {}

    def __len__(self) -> int:
        return len(self._callbacks)

    def add(
        self, callback: Callable[[str], None], *, on_empty: Callable[[], None] | None = None
    ) -> Callable[[], None]:
        """Subscribe `callback` (from a running loop); return its unsubscribe function.

        `on_empty` runs when this unsubscription leaves no watcher.
        """
        if not callable(callback):
            raise TypeError(f"watch_inbox needs a callable, not {callback!r}")
        loop = asyncio.get_running_loop()  # RuntimeError outside one: no loop to call on
        token = object()
        self._callbacks[token] = (loop, callback)

        def unsubscribe() -> None:
            gone = self._callbacks.pop(token, None) is not None
            if gone and not self._callbacks and on_empty is not None:
                on_empty()

        return unsubscribe

    def wake(self, account: str) -> None:
        """Schedule every callback with `account` on its own loop (from any thread)."""
        for loop, callback in list(self._callbacks.values()):
            # A loop closed since it subscribed has no one left to wake.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(callback, account)


def check_batch(account: str, body: bytes, count: int, received_at: datetime) -> bytes:
    """The batch's body as `bytes`, after checking what `record_reports` was given.

    `ValueError` (or `TypeError`) in one line for an empty account, a negative count, a
    naive time or a body that is not bytes; nothing is recorded then.
    """
    if not isinstance(account, str) or not account:
        raise ValueError(f"an inbox entry needs a non-empty account name, not {account!r}")
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise ValueError(f"count must be a non-negative int, not {count!r}")
    require_aware(received_at, "the store takes aware datetimes only")
    if not isinstance(body, bytes | bytearray | memoryview):
        raise TypeError(f"an inbox entry's body is bytes, not {type(body).__name__}")
    return bytes(body)
