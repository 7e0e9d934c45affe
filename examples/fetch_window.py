"""Fetch every log of the last six hours, once each, and count them by status.

Runs against the built-in fake provider, so it needs no account:

    python examples/fetch_window.py

Against the real provider, drop the fake and give `LogsFetcher` your base URL and key.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta

from infobip_voicelogs import LogsFetcher, LogsQuery
from infobip_voicelogs.testing import FakeInfobip
from infobip_voicelogs.testing.fake import IN_PROCESS_URL


async def main() -> None:
    fake = FakeInfobip(seed=1)
    account = fake.add_account("shop")
    account.generate(2_500, within=timedelta(hours=12), settle_after=timedelta(0))

    async with (
        fake.in_process_client() as client,
        LogsFetcher(IN_PROCESS_URL, auth=account.api_key, client=client) as fetcher,
    ):
        newest = await fetcher.fetch(LogsQuery(limit=5))
        print(f"newest: {[log.message_id for log in newest]}")

        now = fake.clock.now()
        by_status: Counter[str] = Counter()
        async for log in fetcher.iter_logs(sent_since=now - timedelta(hours=6), sent_until=now):
            by_status[log.general_status or "unknown"] += 1
        print(f"last 6 hours: {sum(by_status.values())} logs in {fetcher.stats.requests} requests")
        for status, count in by_status.most_common():
            print(f"  {status:<14} {count}")


if __name__ == "__main__":
    asyncio.run(main())
