"""What `LogsFetcher.fetch()` costs on top of the HTTP call and the decoding it wraps.

    python bench/overhead.py [--quick]

Both sides run in the same process, on the same `httpx.MockTransport` serving the same
50-log JSON page (no network: what is left is our overhead), interleaved in rounds so
that machine noise hits both alike:

- bare:    `await client.get(url, params=...)` + `decode_logs(...)`, as a user would write it
- bare, URL pre-built: the same with the query string already in the URL (what the
  fetcher does), to show the cost of everything else the fetcher adds
- fetch(): `await fetcher.fetch(query)`, i.e. throttle + retry policy + auth + query
  string + headers + error mapping around the same request and decoding.

The fetcher's throttle is a real `TokenBucket`, set so high that it never waits: its cost
is counted, its waiting is not. Target: fetch() / bare <= 1.3.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
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
    decode_logs,
)

BASE = "https://xyz.api.infobip.com"
URL = f"{BASE}/tts/3/logs"
TARGET = 1.3


async def measure(logs_per_page: int, rounds: int, per_round: int) -> dict[str, float]:
    """Median CPU microseconds per call of each path, and the medians of per-round ratios."""
    body = page(logs_per_page)
    headers = {"Content-Type": "application/json"}
    transport = httpx.MockTransport(
        lambda request: httpx.Response(200, content=body, headers=headers)
    )
    query = LogsQuery(general_status="DELIVERED", limit=50)
    params = query.to_params()
    prebuilt = f"{URL}?generalStatus=DELIVERED&limit=50"

    async with httpx.AsyncClient(transport=transport) as client:
        fetcher = LogsFetcher(
            BASE,
            "bench-key",
            client=client,
            throttle=TokenBucket(1e9, burst=1_000_000, adaptive=True),
        )

        async def bare() -> None:
            response = await client.get(URL, params=params)
            decode_logs(response.content, response.headers["content-type"])

        async def bare_prebuilt() -> None:
            response = await client.get(prebuilt)
            decode_logs(response.content, response.headers["content-type"])

        async def wrapped() -> None:
            await fetcher.fetch(query)

        for fn in (bare, bare_prebuilt, wrapped):  # warm up every path
            for _ in range(200):
                await fn()

        # CPU time of this process, not wall time: other processes on a busy machine
        # then slow neither side down. Rounds alternate which side goes first.
        bare_t: list[float] = []
        pre_t: list[float] = []
        fetch_t: list[float] = []
        for n in range(rounds):
            order = [(bare, bare_t), (bare_prebuilt, pre_t), (wrapped, fetch_t)]
            for fn, out in order if n % 2 == 0 else order[::-1]:
                start = time.process_time()
                for _ in range(per_round):
                    await fn()
                out.append((time.process_time() - start) / per_round)

    return {
        "bare": statistics.median(bare_t) * 1e6,
        "pre": statistics.median(pre_t) * 1e6,
        "fetch": statistics.median(fetch_t) * 1e6,
        "ratio": statistics.median([f / b for f, b in zip(fetch_t, bare_t, strict=True)]),
        "ratio_pre": statistics.median([f / b for f, b in zip(fetch_t, pre_t, strict=True)]),
    }


async def run(rounds: int, per_round: int) -> None:
    print("CPU microseconds per call (median of rounds); ratios are medians of per-round ratios")
    print(
        f"{'page':<9} {'bare':>8} {'bare, URL pre-built':>20} {'fetch()':>8}"
        f" {'fetch()/bare':>13} {'fetch()/pre-built':>18}"
    )
    verdicts = []
    for logs_per_page in (50, 1):
        r = await measure(logs_per_page, rounds, per_round)
        print(
            f"{logs_per_page:>3} logs  {r['bare']:>8.1f} {r['pre']:>20.1f} {r['fetch']:>8.1f}"
            f" {r['ratio']:>13.2f} {r['ratio_pre']:>18.2f}"
        )
        if logs_per_page == 50:
            verdicts.append(r["ratio"] <= TARGET)
    print(f"target: fetch()/bare <= {TARGET} on the 50-log page (the 1-log row is for scale)")
    print("PASS" if all(verdicts) else "OVER TARGET")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few seconds, for CI smoke")
    args = parser.parse_args()
    if args.quick:
        asyncio.run(run(rounds=6, per_round=100))
    else:
        asyncio.run(run(rounds=25, per_round=300))


if __name__ == "__main__":
    main()
