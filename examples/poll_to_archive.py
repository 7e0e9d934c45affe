"""Poll two accounts into a SQLite archive and query it with plain SQL.

Runs against the built-in fake provider, so it needs no account:

    python examples/poll_to_archive.py
"""

from __future__ import annotations

import asyncio
import sqlite3
import tempfile
from datetime import timedelta
from pathlib import Path

from infobip_voicelogs import Account, LogsPoller, SqliteStore, VoiceLog
from infobip_voicelogs.testing import FakeClock, FakeInfobip
from infobip_voicelogs.testing.fake import IN_PROCESS_URL


async def main(folder: Path) -> None:
    clock = FakeClock()  # the fake's time; moved below to let logs settle
    fake = FakeInfobip(clock=clock, seed=2)
    accounts = []
    for name in ("eu-shop", "us-clinic"):
        fake_account = fake.add_account(name, settle_after=timedelta(minutes=2))
        fake_account.generate(300, within=timedelta(hours=3), settle_after=timedelta(minutes=2))
        fake_account.traffic(1.0, settle_after=timedelta(minutes=2))
        accounts.append(Account(name, IN_PROCESS_URL, auth=fake_account.api_key))

    async def handler(account: str, logs: list[VoiceLog]) -> None:
        # Your code: a database, a queue, a webhook. Raise and the batch comes again.
        print(f"{account}: {len(logs)} new or changed logs")

    path = folder / "voicelogs.db"
    async with (
        fake.in_process_client() as client,
        SqliteStore(path, archive=True) as store,
        LogsPoller(
            accounts, store=store, handler=handler, client=client, clock=clock.now
        ) as poller,
    ):
        for _ in range(3):
            await poller.run_once()
            clock.advance(timedelta(minutes=5))  # what `interval` does in `run()`

    with sqlite3.connect(path) as db:
        rows = db.execute(
            "SELECT account, status_group, COUNT(*) FROM voice_logs"
            " GROUP BY account, status_group ORDER BY account, status_group"
        ).fetchall()
    for account, group, count in rows:
        print(f"archive: {account:<10} {group:<14} {count}")


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(main(Path(tmp)))
