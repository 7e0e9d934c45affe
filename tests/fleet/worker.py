"""One poller process of a fleet, for the fleet tests and the fleet benchmark.

    python tests/fleet/worker.py CONFIG.json OWNER OUT.ndjson

CONFIG holds the DSN, the accounts (name, base URL, key) and the timings. The process polls
until SIGTERM (a clean stop: leases released) and writes one JSON line per event to OUT:
`{"batch": account, "ids": [...]}` for every batch handed to its handler, and every 0.1 s
`{"held": [...], "known": bool, "cycles": {account: n}, "lost": n}` from
`LogsPoller.status()` ("known": a claim has answered, so each lease is held or elsewhere).
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

from infobip_voicelogs import Account, LogsPoller, TokenBucket, VoiceLog
from infobip_voicelogs.poller import LeaseState
from infobip_voicelogs.postgres import PostgresStore
from infobip_voicelogs.reports import VoiceReport


async def main(config: dict[str, Any], owner: str, out_path: Path) -> None:
    out = out_path.open("a", buffering=1, encoding="utf-8")

    def emit(event: dict[str, Any]) -> None:
        out.write(json.dumps({"t": time.time(), **event}) + "\n")

    handler_delay = float(config.get("handler_delay", 0.0))

    async def handler(account: str, logs: list[VoiceLog | VoiceReport]) -> None:
        emit({"entered": account, "size": len(logs)})
        if handler_delay:
            await asyncio.sleep(handler_delay)
        emit({"batch": account, "ids": [log.message_id for log in logs]})

    # Requests/s per account: a low rate (and burst) keeps every cycle busy, back to back.
    rate, burst = float(config.get("rate", 50.0)), int(config.get("burst", 5))
    accounts = [
        Account(a["name"], a["base_url"], auth=a["key"], throttle=TokenBucket(rate, burst))
        for a in config["accounts"]
    ]
    async with (
        PostgresStore(config["dsn"], archive=True) as store,
        LogsPoller(
            accounts,
            store=store,
            handler=handler,
            interval=config["interval"],
            lease_ttl=config["lease_ttl"],
            claim_interval=config["claim_interval"],
            owner=owner,
            shutdown_grace=1.0,
        ) as poller,
    ):
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, poller.stop)

        async def report() -> None:
            while True:
                status = poller.status()
                emit(
                    {
                        "held": sorted(n for n, s in status.items() if s.held),
                        "known": any(s.lease is not LeaseState.UNKNOWN for s in status.values()),
                        "cycles": {n: s.cycles for n, s in status.items() if s.cycles},
                        "lost": sum(s.lost_leases for s in status.values()),
                    }
                )
                await asyncio.sleep(0.1)

        reporter = asyncio.create_task(report())
        try:
            await poller.run()
        finally:
            reporter.cancel()
    emit({"stopped": owner})
    out.close()


if __name__ == "__main__":
    asyncio.run(main(json.loads(Path(sys.argv[1]).read_text()), sys.argv[2], Path(sys.argv[3])))
