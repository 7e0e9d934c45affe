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

Then the cost of the OpenTelemetry metrics (docs/observability.md), each row's fetch()/bare
against the same ratio without opentelemetry installed (a child process that cannot import
it): with the API and no meter provider (target: no measurable difference), and with an SDK
`MeterProvider` and an `InMemoryMetricReader` set globally (target: <= 1.05x).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
if "--row-without-otel" in sys.argv:
    sys.modules["opentelemetry"] = None  # type: ignore[assignment]  # as if not installed

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
METRICS_TARGET = 1.05


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
    verdicts.append(await telemetry_rows(rounds, per_round))
    print("PASS" if all(verdicts) else "OVER TARGET")


async def telemetry_rows(rounds: int, per_round: int) -> bool:
    """The metrics rows; True if within their targets."""
    child = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, __file__, "--row-without-otel", str(rounds), str(per_round)],
        capture_output=True,
        text=True,
        check=True,
    )
    rows = {"without opentelemetry": json.loads(child.stdout)}
    rows["API, no provider"] = await measure(50, rounds, per_round)

    from opentelemetry import metrics
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    from infobip_voicelogs import telemetry

    metrics.set_meter_provider(MeterProvider(metric_readers=[InMemoryMetricReader()]))
    rows["SDK metrics on"] = await measure(50, rounds, per_round)
    telemetry.configure(account_names=True)
    rows["SDK metrics on, account names"] = await measure(50, rounds, per_round)
    telemetry.configure(account_names=False)

    base = rows["without opentelemetry"]["ratio"]
    print()
    print("metrics, 50-log page: fetch() CPU us, fetch()/bare, and that ratio over the same")
    print("ratio without opentelemetry installed")
    print(f"{'':<31} {'fetch()':>8} {'fetch()/bare':>13} {'vs without':>11}")
    for name, r in rows.items():
        print(f"{name:<31} {r['fetch']:>8.1f} {r['ratio']:>13.3f} {r['ratio'] / base:>11.3f}")
    on = rows["SDK metrics on"]["ratio"] / base
    print(f"target: SDK metrics on <= {METRICS_TARGET}x of without")
    return on <= METRICS_TARGET


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few seconds, for CI smoke")
    parser.add_argument("--row-without-otel", nargs=2, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.row_without_otel:
        rounds, per_round = args.row_without_otel
        print(json.dumps(asyncio.run(measure(50, rounds, per_round))))
    elif args.quick:
        asyncio.run(run(rounds=6, per_round=100))
    else:
        asyncio.run(run(rounds=25, per_round=300))


if __name__ == "__main__":
    main()
