"""The inbox's wake-ups between processes: one `LISTEN` connection per store.

Every recording notifies `INBOX_CHANNEL` in its own transaction, with the payload
`schema + "\\n" + account`; each store that has watchers keeps one connection of its own
listening there and wakes its watchers for its own schema's accounts. A notification is a
hint, never the record: one sent while the connection is down is lost, and the holder's
periodic look at the inbox finds the batch a little later. So an outage reconnects with a
bounded backoff and is logged once, not once per attempt.

`LISTEN` needs a session of its own: behind a PgBouncer in transaction pooling mode it is
silently lost (the server connection goes to other clients between transactions), so the
store takes a `listen_dsn` that reaches PostgreSQL directly.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg

from ._schema import INBOX_CHANNEL

logger = logging.getLogger("infobip_voicelogs")

#: Seconds before the first reconnection attempt after the listening connection failed.
FIRST_RETRY = 0.5
#: Seconds between reconnection attempts at most (the backoff doubles up to this).
LAST_RETRY = 30.0
# Seconds `stop_and_wait` gives the listening task to end once cancelled.
_STOP_GRACE = 5.0


class Listener:
    """One background task holding one `LISTEN` connection, reconnecting when it drops.

    `connect()` opens an autocommit connection (bounded by the caller's connect timeout);
    `wake(account)` is called for each recording of `schema`; `describe(exc)` words an
    error for the log without any password.
    """

    def __init__(
        self,
        *,
        connect: Callable[[], Awaitable[psycopg.AsyncConnection[Any]]],
        schema: str,
        wake: Callable[[str], None],
        label: Callable[[], str],
        describe: Callable[[BaseException], str],
    ) -> None:
        self._connect = connect
        self._schema = schema
        self._wake = wake
        self._label = label
        self._describe = describe
        self._task: asyncio.Task[None] | None = None
        self._ending: set[asyncio.Task[None]] = set()  # cancelled, not yet ended

    @property
    def running(self) -> bool:
        """Whether the listening task runs (connected or reconnecting)."""
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        """Start listening, from the running loop, unless the task already runs."""
        if not self.running:
            self._task = asyncio.get_running_loop().create_task(
                self._listen(), name="infobip-voicelogs-inbox-listener"
            )

    def stop(self) -> None:
        """Cancel the listening task (its connection closes as it ends); `start` makes anew."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            self._ending.add(task)
            task.add_done_callback(self._ending.discard)

    async def stop_and_wait(self) -> None:
        """Cancel the listening task and wait (at most a few seconds) until it ended."""
        self.stop()
        loop = asyncio.get_running_loop()
        ending = {task for task in self._ending if task.get_loop() is loop}
        if ending:
            await asyncio.wait(ending, timeout=_STOP_GRACE)

    async def _listen(self) -> None:
        delay, down = FIRST_RETRY, False
        while True:
            try:
                async with await self._connect() as connection:
                    await connection.execute(f"LISTEN {INBOX_CHANNEL}")
                    if down:
                        logger.info("%s: listening for recorded reports again", self._label())
                        down = False
                    delay = FIRST_RETRY
                    async for note in connection.notifies():
                        schema, _, account = note.payload.partition("\n")
                        if schema == self._schema and account:
                            self._wake(account)
            except Exception as exc:  # psycopg.Error, OSError, TimeoutError: never fatal
                if not down:  # one line per outage, not per attempt
                    logger.warning(
                        "%s: not listening for recorded reports (%s); trying again every "
                        "%g s at most, and until then holders find new batches by looking",
                        self._label(),
                        self._describe(exc),
                        LAST_RETRY,
                    )
                    down = True
            await asyncio.sleep(delay)
            delay = min(delay * 2, LAST_RETRY)
