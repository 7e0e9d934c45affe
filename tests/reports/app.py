"""A receiver process of its own, for the tests and the benchmark: `ReportsReceiver` on a
store, with a handler that records each state it is given to a file (the receiver records
each batch in the store's inbox, answers, then delivers it as the accounts' holder).

- ``VOICELOGS_NO_HANDLER``: ``1`` for a receiver that only records (a poller delivers).
- ``VOICELOGS_LEASE_TTL``: the seconds the receiver's leases last (with a handler).

    python -m uvicorn --app-dir tests/reports --factory app:create --port 8000

Configured by the environment (a process has nothing else):

- ``VOICELOGS_STORE``: ``sqlite:<path>`` or a PostgreSQL DSN.
- ``VOICELOGS_ACCOUNTS``: the account names, comma-separated.
- ``VOICELOGS_RECORD``: a file the handler appends one JSON line to per state handed over,
  ``{"account", "source", "message_id", "state"}`` (absent: the handler records nothing).
- ``VOICELOGS_USER`` and ``VOICELOGS_PASSWORD``: HTTP Basic; absent: `NoAuth()`.
- ``VOICELOGS_MAX_BODY``: the receiver's ``max_body``.
- ``VOICELOGS_CLOCK_FILE``: a file holding the fake provider's now (ISO 8601), which the
  test rewrites as it moves its clock: the receiver's report activity follows it.
- ``VOICELOGS_ARCHIVE``: ``0`` for a store without the archive (fingerprints only).
- ``VOICELOGS_BLOCK_FILE``: the handler, given its first batch, creates this file and then
  blocks for good: the moment between the handler and the commit, for a SIGKILL.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from infobip_voicelogs import SqliteStore, VoiceLog
from infobip_voicelogs._time import utc_now
from infobip_voicelogs.reports import (
    BasicCredentials,
    NoAuth,
    ReportsAuth,
    ReportsReceiver,
    VoiceReport,
)

Item = VoiceLog | VoiceReport
ARCHIVE = os.environ.get("VOICELOGS_ARCHIVE", "1") != "0"


def state_of(item: Item) -> str:
    """What a test compares a delivered state by: status, error and price (the merge rules)."""
    status = item.status.name if item.status else "-"
    error = item.error.name if item.error else "-"
    price = f"{item.price.per_second} {item.price.currency}" if item.price else "-"
    return f"{status}/{error}/{price}"


def record_line(account: str, item: Item) -> bytes:
    """One handled state as a JSON line."""
    line = {
        "account": account,
        "source": item.source,
        "message_id": item.message_id,
        "state": state_of(item),
    }
    return orjson.dumps(line) + b"\n"


class Recorder:
    """The handler: each state to the record file, flushed before it returns (so the
    commit, and the 200, come only after the line is written)."""

    def __init__(self, record: str | None, block: str | None) -> None:
        self._file = open(record, "ab") if record else None  # noqa: SIM115 (the process's life)
        self._block = block

    async def __call__(self, account: str, items: Sequence[Item]) -> None:
        if self._file is not None:
            self._file.write(b"".join(record_line(account, item) for item in items))
            self._file.flush()
        if self._block:
            Path(self._block).touch()  # noqa: ASYNC240 (one tiny file, then it blocks for good)
            await asyncio.Event().wait()  # until the test kills the process


def file_clock(path: str | None) -> Any:
    """The test's fake now, read from ``path`` at each batch; the real time without one."""
    if not path:
        return utc_now

    def now() -> datetime:
        return datetime.fromisoformat(Path(path).read_text().strip())

    return now


def open_store(spec: str) -> Any:
    if spec.startswith("sqlite:"):
        return SqliteStore(spec.removeprefix("sqlite:"), archive=ARCHIVE)
    from infobip_voicelogs.postgres import PostgresStore

    return PostgresStore(spec, archive=ARCHIVE)


class App:
    """The receiver, and the store closed at the server's shutdown (lifespan)."""

    def __init__(self) -> None:
        env = os.environ
        self.store = open_store(env["VOICELOGS_STORE"])
        user = env.get("VOICELOGS_USER")
        auth: ReportsAuth = BasicCredentials(user, env["VOICELOGS_PASSWORD"]) if user else NoAuth()
        options: dict[str, Any] = {}
        if env.get("VOICELOGS_MAX_BODY"):
            options["max_body"] = int(env["VOICELOGS_MAX_BODY"])
        if env.get("VOICELOGS_LEASE_TTL"):
            options["lease_ttl"] = float(env["VOICELOGS_LEASE_TTL"])
        if env.get("VOICELOGS_NO_HANDLER") != "1":
            options["handler"] = Recorder(
                env.get("VOICELOGS_RECORD"), env.get("VOICELOGS_BLOCK_FILE")
            )
        self.receiver = ReportsReceiver(
            env["VOICELOGS_ACCOUNTS"].split(","),
            store=self.store,
            auth=auth,
            clock=file_clock(env.get("VOICELOGS_CLOCK_FILE")),
            **options,
        )

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            return await self.receiver(scope, receive, send)
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.receiver.aclose()  # the hand-overs in flight, then the leases
                await self.store.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return None


def create() -> App:
    """The uvicorn factory (``--factory app:create``)."""
    return App()
