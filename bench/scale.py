"""Many accounts on one event loop: can one core keep 1,000 fetchers at their full rate?

    python bench/scale.py [--quick]

One asyncio loop runs 1,000 accounts, each a `LogsFetcher` with its own
`TokenBucket(2.0)` (the provider's documented 120 requests/minute), all sharing one
`httpx.AsyncClient` on an `httpx.MockTransport` (no network: what is measured is the
library, httpx and the decoding). Every account fetches in a loop as fast as its bucket
allows. After a warm-up second, the run counts fetches and CPU seconds
(`time.process_time`) over the measured span.

Target: 2,000 fetches/s (every account at 2/s) on one core, i.e. CPU-s per s < 1.0. Rows
for a 1-log page (what a poller mostly sees between polls) and a full default 50-log page.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _pages import page

from infobip_voicelogs import (
    LogsFetcher,
    LogsQuery,
    TokenBucket,
)

RATE = 2.0  # per account, the documented limit
WARMUP = 1.0


async def run(accounts: int, seconds: float, logs_per_page: int) -> dict[str, float]:
    body = page(logs_per_page)
    headers = {"Content-Type": "application/json"}
    transport = httpx.MockTransport(
        lambda request: httpx.Response(200, content=body, headers=headers)
    )
    query = LogsQuery(limit=50)
    counts = [0] * accounts
    measuring = False
    stop = asyncio.Event()

    async with httpx.AsyncClient(transport=transport) as client:
        fetchers = [
            LogsFetcher(
                f"https://account{n}.api.infobip.com",
                f"key-{n}",
                client=client,
                throttle=TokenBucket(RATE),
            )
            for n in range(accounts)
        ]

        async def account(n: int) -> None:
            fetcher = fetchers[n]
            while not stop.is_set():
                await fetcher.fetch(query)
                if measuring:
                    counts[n] += 1

        tasks = [asyncio.create_task(account(n)) for n in range(accounts)]
        await asyncio.sleep(WARMUP)
        measuring = True
        wall0, cpu0 = time.perf_counter(), time.process_time()
        await asyncio.sleep(seconds)
        measuring = False
        wall = time.perf_counter() - wall0
        cpu = time.process_time() - cpu0
        stop.set()
        await asyncio.gather(*tasks)

    total = sum(counts)
    return {
        "rate": total / wall,
        "target": accounts * RATE,
        "cpu_per_s": cpu / wall,
        "us_per_fetch": cpu / total * 1e6 if total else float("nan"),
        "slowest": min(counts) / wall,
        "wait_s": sum(f.stats.throttle_wait for f in fetchers) / accounts,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few seconds, for CI smoke")
    args = parser.parse_args()
    accounts, seconds, pages = (100, 2.0, [1]) if args.quick else (1000, 10.0, [1, 50])
    print(f"{accounts} accounts x {RATE:g} req/s, {seconds:g} s measured, one event loop")
    print(
        f"{'page':>8} {'fetches/s':>10} {'target':>8} {'achieved':>9} {'slowest acct':>13}"
        f" {'CPU-s/s':>8} {'CPU us/fetch':>13}"
    )
    for logs_per_page in pages:
        r = asyncio.run(run(accounts, seconds, logs_per_page))
        print(
            f"{logs_per_page:>4} log {r['rate']:>10.0f} {r['target']:>8.0f}"
            f" {r['rate'] / r['target']:>8.1%} {r['slowest']:>9.2f} /s"
            f" {r['cpu_per_s']:>8.2f} {r['us_per_fetch']:>13.0f}"
        )


if __name__ == "__main__":
    main()
