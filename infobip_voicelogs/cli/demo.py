"""`infobip-voicelogs demo`: the whole library against the built-in fake provider, no account.

Three fake accounts produce traffic whose logs settle from `PENDING` to a final status;
one answers with 429s and 503s now and then, another drops connections and truncates
bodies. A `LogsPoller` polls them into a temporary archive with a live table, then the
demo proves what it promises: the archive equals the fake's ground truth, nothing is
missing, and no log state was delivered twice.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections import Counter
from datetime import timedelta
from pathlib import Path

import attrs
import typer
from rich.console import Console
from rich.live import Live

from ..models import VoiceLog
from ..poller import Account, LogsPoller, fingerprint
from ..store import SqliteStore
from ..testing import FakeClock, FakeInfobip, Fault
from ..testing.fake import IN_PROCESS_URL
from .common import fail, run, stderr
from .live import status_table

__all__ = ["DemoReport", "demo", "run_demo"]

#: How long a demo log stays PENDING at most.
SETTLE = timedelta(seconds=6)
#: The demo's accounts: name, logs per second, faults by probability.
_ACCOUNTS: tuple[tuple[str, float, dict[Fault, float]], ...] = (
    ("eu-shop", 6.0, {}),
    ("us-clinic", 3.0, {Fault.status(429): 0.15, Fault.status(503): 0.1}),
    ("ap-bank", 4.0, {Fault.reset(): 0.1, Fault.truncate(): 0.1, Fault.status(502): 0.05}),
)


@attrs.frozen
class DemoReport:
    """What the demo saw and the check it made."""

    logs: int  # logs in the fake's ground truth
    archived: int  # logs in the archive
    missing: int  # ground-truth logs absent from the archive or in another state there
    extra: int  # archived logs the ground truth does not have in that state
    doubled: int  # (log, state) pairs the handler received more than once
    deliveries: int  # logs handed to the handler in all: new ones and later changes of them
    new: int  # deliveries of a log the poller had not seen before
    changed: int  # deliveries of a log seen before, in a new state
    retries: int
    rate_limited: int

    @property
    def ok(self) -> bool:
        """Whether the archive is exactly the ground truth and nothing was delivered twice."""
        return self.missing == self.extra == self.doubled == 0


async def run_demo(
    seconds: float = 20.0,
    *,
    interval: float = 1.0,
    console: Console | None = None,
    store_path: Path | None = None,
    seed: int = 7,
) -> DemoReport:
    """Run the demo for `seconds` and return its report (the CLI's `demo` prints it)."""
    clock = FakeClock(ticking=True)
    fake = FakeInfobip(clock=clock, seed=seed)
    accounts = []
    for name, rate, faults in _ACCOUNTS:
        fake_account = fake.add_account(name, settle_after=SETTLE)
        fake_account.generate(150, within=timedelta(hours=2), settle_after=SETTLE)
        fake_account.traffic(rate, settle_after=SETTLE)
        if faults:
            fake_account.random_faults(faults, seed=seed)
        accounts.append(Account(name, IN_PROCESS_URL, auth=fake_account.api_key))

    seen: Counter[tuple[str, str]] = Counter()

    async def handler(account: str, logs: list[VoiceLog]) -> None:
        for log in logs:
            seen[(log.message_id or "", fingerprint(log))] += 1

    with tempfile.TemporaryDirectory(prefix="voicelogs-demo-") as tmp:
        path = store_path or Path(tmp) / "demo.db"
        async with (
            fake.in_process_client() as client,
            SqliteStore(path, archive=True) as store,
            LogsPoller(
                accounts,
                store=store,
                handler=handler,
                interval=interval,
                client=client,
                clock=clock.now,
                max_attempts=8,
            ) as poller,
        ):
            with Live(
                status_table(poller, "polling the fake provider"),
                console=console or stderr,
                auto_refresh=False,
                transient=False,
            ) as screen:
                runner = asyncio.create_task(poller.run())
                loop = asyncio.get_running_loop()
                deadline = loop.time() + seconds
                while (left := deadline - loop.time()) > 0:
                    title = f"polling the fake provider: {left:.0f} s left"
                    screen.update(status_table(poller, title), refresh=True)
                    await asyncio.sleep(min(0.5, left))
                poller.stop()
                await runner
                # Let the last logs settle (on the fake's clock: instantly), calm the
                # faults, and take one last cycle so the archive can be compared.
                for fake_account in fake.accounts.values():
                    fake_account.stop_traffic()
                    fake_account.faults.clear()
                clock.advance(SETTLE + timedelta(seconds=1))
                await poller.run_once()
                screen.update(status_table(poller, "polled the fake provider"), refresh=True)
            report = await _check(fake, store, poller, seen)
    return report


async def _check(
    fake: FakeInfobip, store: SqliteStore, poller: LogsPoller, seen: Counter[tuple[str, str]]
) -> DemoReport:
    missing = extra = logs = archived = 0
    for name, fake_account in fake.accounts.items():
        truth = set(fake_account.logs)
        kept = set(await store.archived(name))
        logs += len(truth)
        archived += len(kept)
        missing += len(truth - kept)
        extra += len(kept - truth)
    totals = poller.status().values()
    return DemoReport(
        logs=logs,
        archived=archived,
        missing=missing,
        extra=extra,
        doubled=sum(count - 1 for count in seen.values() if count > 1),
        deliveries=sum(seen.values()),
        new=sum(s.new for s in totals),
        changed=sum(s.changed for s in totals),
        retries=sum(s.retries for s in totals),
        rate_limited=sum(s.rate_limited for s in totals),
    )


def demo(
    ctx: typer.Context,
    seconds: float = typer.Option(20.0, min=1.0, help="How long to poll."),
    interval: float = typer.Option(1.0, min=0.1, help="Seconds between an account's cycles."),
) -> None:
    """Poll three fake accounts with faults, then check the archive against the ground truth."""
    report = run(run_demo(seconds, interval=interval), ctx)
    stderr.print(
        f"\n{report.deliveries} deliveries: {report.new} new logs and {report.changed} "
        f"changes of a log already delivered (PENDING, then its final status); "
        f"{report.retries} retries, {report.rate_limited} 429s absorbed.\n"
        f"The archive holds {report.archived} distinct logs, each in its last state, "
        f"of {report.logs} in the fake.",
        highlight=False,
    )
    verdict = f"missing {report.missing}, doubled {report.doubled}, extra {report.extra}"
    if not report.ok:
        fail(f"check failed: {verdict}", 4)
    stderr.print(f"[bold green]check passed:[/] {verdict}: the archive equals the ground truth.")
