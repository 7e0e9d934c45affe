"""A bot that tells a chat channel about every call that failed: a `LogsPoller` in a loop.

Every log that ends UNDELIVERABLE, REJECTED or EXPIRED, or carries an error, is posted to a
chat webhook (Slack, Mattermost, Teams: a JSON POST of ``{"text": ...}``).

- Back-pressure: at most ``BOT_CONCURRENCY`` posts are in flight, and the poller's handler
  waits for its batch's posts; a slow webhook slows the polling instead of piling up
  memory.
- Nothing lost: a post that fails makes the handler raise, so the poller delivers the
  whole batch again on its next attempt (a few alerts may then be posted twice; each names
  its message id).
- Clean shutdown: SIGTERM or Ctrl-C stops the poller once the cycles in flight finish,
  within ``SHUTDOWN_GRACE`` seconds; then the bot exits 0.

    WEBHOOK_URL=https://hooks.example/... python examples/bot.py

Without ``INFOBIP_ACCOUNTS`` (JSON: ``{"name": ["https://xyz.api.infobip.com", "KEY"]}``) it
watches the built-in fake provider, whose calls keep arriving, so it runs as a demo.
Environment: ``POLL_INTERVAL`` (seconds, default 30), ``BOT_CONCURRENCY`` (default 4),
``STORE`` (a SQLite file for checkpoints; default in memory: a restart re-reads 48 hours).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from datetime import timedelta

import httpx

from infobip_voicelogs import Account, GeneralStatus, LogsPoller, SqliteStore, VoiceLog

ALERT_GROUPS = {GeneralStatus.UNDELIVERABLE, GeneralStatus.REJECTED, GeneralStatus.EXPIRED}
#: Seconds a webhook post may take, and the most a shutdown waits for cycles in flight.
POST_TIMEOUT = 10.0
SHUTDOWN_GRACE = 20.0


def is_alert(log: VoiceLog) -> bool:
    """Whether a log is a call worth telling someone about."""
    return log.general_status in ALERT_GROUPS or (log.error is not None and not log.error.ok)


def message(account: str, log: VoiceLog) -> dict[str, str]:
    status = log.status.name if log.status is not None else "UNKNOWN"
    error = f", {log.error.name}" if log.error is not None and not log.error.ok else ""
    return {"text": f"[{account}] call {log.message_id} to {log.to}: {status}{error}"}


class Notifier:
    """Posts alerts to the webhook, at most ``concurrency`` at a time."""

    def __init__(self, client: httpx.AsyncClient, url: str, concurrency: int) -> None:
        self.client = client
        self.url = url
        self.slots = asyncio.Semaphore(concurrency)
        self.posted = 0

    async def post(self, account: str, log: VoiceLog) -> None:
        async with self.slots:
            response = await self.client.post(self.url, json=message(account, log))
            response.raise_for_status()  # an error status fails the batch: redelivered
            self.posted += 1

    async def handler(self, account: str, logs: list[VoiceLog]) -> None:
        """The poller's handler: returns once every alert of the batch is posted."""
        alerts = [log for log in logs if is_alert(log)]
        async with asyncio.TaskGroup() as group:  # one failure cancels the rest, and raises
            for log in alerts:
                group.create_task(self.post(account, log))


def demo_accounts() -> tuple[list[Account], httpx.AsyncClient]:
    from infobip_voicelogs.testing import IN_PROCESS_URL, FakeInfobip

    fake = FakeInfobip(seed=5)
    shop = fake.add_account("shop")
    shop.generate(40, within=timedelta(hours=1), settle_after=timedelta(0))
    shop.traffic(2.0, settle_after=timedelta(seconds=2))
    return [Account("shop", IN_PROCESS_URL, auth=shop.api_key)], fake.in_process_client()


async def main() -> int:
    webhook = os.environ.get("WEBHOOK_URL")
    if not webhook:
        print("set WEBHOOK_URL to the chat webhook to post to", file=sys.stderr)
        return 2
    if "INFOBIP_ACCOUNTS" in os.environ:
        raw = json.loads(os.environ["INFOBIP_ACCOUNTS"])
        accounts = [Account(name, url, auth=key) for name, (url, key) in raw.items()]
        provider = httpx.AsyncClient()
    else:
        accounts, provider = demo_accounts()
    timeout = httpx.Timeout(POST_TIMEOUT)
    async with (
        provider,
        httpx.AsyncClient(timeout=timeout) as chat,
        SqliteStore(os.environ.get("STORE", ":memory:")) as store,
    ):
        notifier = Notifier(chat, webhook, int(os.environ.get("BOT_CONCURRENCY", "4")))
        poller = LogsPoller(
            accounts,
            store=store,
            handler=notifier.handler,
            client=provider,
            interval=float(os.environ.get("POLL_INTERVAL", "30")),
        )
        async with poller:
            stopping = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stopping.set)
            run = asyncio.create_task(poller.run())
            print("watching", ", ".join(a.name for a in accounts), flush=True)
            stop = asyncio.create_task(stopping.wait())
            await asyncio.wait({run, stop}, return_when=asyncio.FIRST_COMPLETED)
            stop.cancel()
            if not run.done():
                poller.stop()  # cycles in flight finish and commit; no new ones start
                try:
                    async with asyncio.timeout(SHUTDOWN_GRACE):
                        await asyncio.shield(run)
                except TimeoutError:
                    run.cancel()  # a webhook that hangs: give up on the batch (redelivered)
                    with contextlib.suppress(asyncio.CancelledError):
                        await run
            if not run.cancelled():
                run.result()  # a poller that failed on its own raises here
    print(f"stopped cleanly after posting {notifier.posted} alerts", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
