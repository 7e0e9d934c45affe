"""Polling 1,000 accounts in one process: cycle time, CPU and peak memory.

    python bench/poll.py            # 1,000 accounts, a backfill cycle and three steady ones
    python bench/poll.py --quick    # 100 accounts, a smoke run of a few seconds

Every account lives in one in-process `FakeInfobip` (no sockets) and gets one page per
cycle: the first cycle is the backfill, each later one brings a few new logs and a few
status changes, after the fake's clock moved a minute. The poller archives into SQLite.
Beside it, in the same run, the bare floor: the same requests made with the same
client and decoded with `decode_logs`, with no poller, store or throttle. The fake's own
work (building and encoding the pages) is inside both numbers.

Targets (issue 4): under 10 s a cycle on one core, under 150 MB peak RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import resource
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from infobip_voicelogs import Account, LogsPoller, SqliteStore, TokenBucket, VoiceLog, decode_logs
from infobip_voicelogs.testing import FakeClock, FakeInfobip
from infobip_voicelogs.testing.fake import IN_PROCESS_URL

TARGET_CYCLE_S = 10.0
TARGET_RSS_MB = 150.0


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def build_fake(accounts: int, backlog: int) -> tuple[FakeInfobip, FakeClock, list[Account]]:
    clock = FakeClock()
    fake = FakeInfobip(clock=clock, seed=1)
    polled = []
    for index in range(accounts):
        name = f"account-{index:04d}"
        account = fake.add_account(name, settle_after=timedelta(seconds=90))
        account.generate(backlog, within=timedelta(hours=1), settle_after=timedelta(seconds=90))
        account.traffic(0.05, settle_after=timedelta(seconds=90))  # 3 new logs a minute
        # Each account at the documented 2 requests/s, as in production.
        polled.append(Account(name, IN_PROCESS_URL, auth=account.api_key, throttle=TokenBucket(2)))
    return fake, clock, polled


async def bare_floor(fake: FakeInfobip, accounts: list[Account]) -> float:
    """The same one-page requests, made and decoded with no poller: the floor."""
    async with fake.in_process_client() as client:
        started = time.perf_counter()
        for account in accounts:
            response = await client.get(
                "/tts/3/logs",
                params={"limit": "1000"},
                headers={"Authorization": f"App {account.auth}"},
            )
            decode_logs(response.content, response.headers["content-type"])
        return time.perf_counter() - started


async def run(accounts: int, backlog: int, cycles: int) -> int:
    fake, clock, polled = build_fake(accounts, backlog)
    delivered = 0

    async def handler(account: str, logs: list[VoiceLog]) -> None:
        nonlocal delivered
        delivered += len(logs)

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        async with (
            fake.in_process_client() as client,
            SqliteStore(Path(tmp) / "bench.db", archive=True) as store,
            LogsPoller(
                polled, store=store, handler=handler, client=client, clock=clock.now
            ) as poller,
        ):
            for cycle in range(cycles):
                before = delivered
                wall, cpu = time.perf_counter(), time.process_time()
                report = await poller.run_once()
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                failed = sum(1 for result in report.values() if not result.ok)
                rows.append((cycle, wall, cpu, delivered - before, failed))
                clock.advance(timedelta(minutes=1))
        floor = await bare_floor(fake, polled)

    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}; {accounts:,} accounts, backlog {backlog} logs each"
    )
    print(f"{'cycle':<12} {'wall s':>8} {'CPU s':>8} {'logs':>8} {'failed':>7} {'vs bare':>8}")
    for cycle, wall, cpu, logs, failed in rows:
        label = "backfill" if cycle == 0 else f"steady {cycle}"
        print(f"{label:<12} {wall:>8.2f} {cpu:>8.2f} {logs:>8,} {failed:>7} {wall / floor:>7.2f}x")
    print(f"{'bare floor':<12} {floor:>8.2f} {'':>8} {'':>8} {'':>7} {1:>7.2f}x")
    worst = max(wall for _, wall, _, _, _ in rows[1:] or rows)
    rss = peak_rss_mb()
    print(f"peak RSS {rss:.0f} MB")
    verdicts = {
        f"steady cycle < {TARGET_CYCLE_S:.0f} s": worst < TARGET_CYCLE_S,
        f"peak RSS < {TARGET_RSS_MB:.0f} MB": rss < TARGET_RSS_MB,
        "no account failed": all(failed == 0 for *_, failed in rows),
    }
    print(
        "Targets: " + ", ".join(f"{k}: {'met' if ok else 'MISSED'}" for k, ok in verdicts.items())
    )
    return 0 if verdicts["no account failed"] else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100 accounts, two cycles")
    parser.add_argument("--accounts", type=int, default=None)
    parser.add_argument("--backlog", type=int, default=30, help="logs per account at start")
    args = parser.parse_args()
    accounts = args.accounts or (100 if args.quick else 1000)
    cycles = 2 if args.quick else 4
    raise SystemExit(asyncio.run(run(accounts, args.backlog, cycles)))


if __name__ == "__main__":
    main()
