"""`infobip-voicelogs demo`: the whole library against the built-in fake provider, no account.

Four fake accounts produce traffic whose logs settle from `PENDING` to a final status;
one answers with 429s and 503s now and then, another drops connections and truncates
bodies. Three push their delivery reports: each call's report is POSTed, HMAC-signed, to
a `ReportsReceiver` that the demo serves with uvicorn on 127.0.0.1, with a share of the
reports dropped and some duplicated or reordered on the way; the receiver records each
batch in the store's inbox and the poller delivers it. The fourth sends its calls with no
notify URL and the poller pulls its reports (`Account(..., pull_reports=True)`). A
`LogsPoller` polls the logs into the same temporary archive, through the same handler:
while an account's reports flow its logs are only reconciled, and they find the reports
that never came. Then the demo proves what it promises against the fake's ground truth:
every call in the archive in its last state, every final state delivered exactly once (by
a pushed report, a pulled one or the logs), none missing, and no final state followed by
an older one.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import tempfile
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta
from pathlib import Path

import attrs
import httpx
import typer
from rich.console import Console
from rich.live import Live

from ..models import VoiceLog
from ..poller import Account, LogsPoller
from ..reports import HmacSignature, ReportsReceiver, VoiceReport
from ..state import fingerprint, is_final
from ..store import SqliteStore
from ..testing import FakeClock, FakeInfobip, Fault, PushFaults, PushHmac, ReportPusher
from ..testing.fake import IN_PROCESS_URL
from .common import fail, run, stderr
from .live import status_table
from .reports import ROUTE, serving

__all__ = ["REPORT_FAULTS", "DemoReport", "demo", "run_demo"]

#: How long a demo log stays PENDING at most.
SETTLE = timedelta(seconds=6)
#: The demo's accounts: name, logs per second, faults by probability, whether it pulls
#: its reports (its calls have no notify URL) instead of having them pushed.
_ACCOUNTS: tuple[tuple[str, float, dict[Fault, float], bool], ...] = (
    ("eu-shop", 6.0, {}, False),
    ("us-clinic", 3.0, {Fault.status(429): 0.15, Fault.status(503): 0.1}, False),
    ("ap-bank", 4.0, {Fault.reset(): 0.1, Fault.truncate(): 0.1, Fault.status(502): 0.05}, False),
    # Faults before the work only: a pull they hit took nothing, and is simply tried again.
    ("sa-telco", 3.0, {Fault.status(503): 0.1}, True),
)
#: What happens to the reports on their way: a tenth lost, a few twice or late.
REPORT_FAULTS = PushFaults(drop=0.1, duplicate=0.03, reorder=0.03, reorder_by=timedelta(seconds=3))
#: Real seconds between two rounds of the fake's report POSTs.
_PUSH_EVERY = 0.2


@attrs.frozen
class DemoReport:
    """What the demo saw and the check it made."""

    logs: int  # logs in the fake's ground truth
    archived: int  # logs in the archive
    missing: int  # ground-truth logs absent from the archive or in another state there
    extra: int  # archived logs the ground truth does not have in that state
    doubled: int  # (log, state) pairs the handler received more than once
    deliveries: int  # states handed to the handler in all: new ones and later changes
    new: int  # deliveries of a log the poller had not seen before
    changed: int  # deliveries of a log seen before, in a new state
    retries: int
    rate_limited: int
    #: Final states the handler received from a report (pushed or pulled), and from the logs.
    final_by_report: int = 0
    final_by_log: int = 0
    #: Of `final_by_report`, those whose report reached the poller by a pull.
    final_by_pull: int = 0
    #: Reports the fake handed out to the poller's pulls.
    reports_pulled: int = 0
    #: Calls settled while the reports were pushed, and the reports the way lost of them
    #: (dropped or given up by the pusher, or taken by a pull whose answer was lost).
    reported_calls: int = 0
    reports_lost: int = 0
    #: The sum of the live table's per-account "lost": final states the logs found before
    #: any report brought them. An upper bound of `reports_lost`: a late report counts too.
    logs_first: int = 0
    #: Of the lost reports, the calls whose final state reached the handler all the same
    #: (by the logs: a dropped report never came).
    lost_found: int = 0
    #: Messages whose final state the handler received, and then an older one.
    regressed: int = 0
    #: Ground-truth final states the handler never received.
    final_missing: int = 0

    @property
    def ok(self) -> bool:
        """Whether the archive is the ground truth, each final state came exactly once, no
        final state was followed by an older one, and the logs found every lost report."""
        faults = (self.missing, self.extra, self.doubled, self.regressed, self.final_missing)
        return not any(faults) and self.lost_found == self.reports_lost


class _Seen:
    """What the handler received, per message: each state's source, in order."""

    def __init__(self) -> None:
        self.states: dict[tuple[str, str], list[tuple[str, str, bool]]] = defaultdict(list)

    async def __call__(self, account: str, items: Sequence[VoiceLog | VoiceReport]) -> None:
        for item in items:
            key = (account, item.message_id or "")
            self.states[key].append((item.source, fingerprint(item), is_final(item)))


async def run_demo(
    seconds: float = 20.0,
    *,
    interval: float = 1.0,
    reconcile: float | None = None,
    console: Console | None = None,
    store_path: Path | None = None,
    seed: int = 7,
) -> DemoReport:
    """Run the demo for `seconds` and return its report (the CLI's `demo` prints it).

    `reconcile` (default: 5 intervals) is how often an account whose reports flow has its
    logs polled.
    """
    clock = FakeClock(ticking=True)
    fake = FakeInfobip(clock=clock, seed=seed)
    accounts = []
    for name, rate, faults, pulls in _ACCOUNTS:
        share = 1.0 if pulls else 0.0
        fake_account = fake.add_account(name, settle_after=SETTLE, pull_share=share)
        fake_account.generate(150, within=timedelta(hours=2), settle_after=SETTLE)
        fake_account.traffic(rate, settle_after=SETTLE)
        if faults:
            fake_account.random_faults(faults, seed=seed)
        key = fake_account.api_key
        accounts.append(Account(name, IN_PROCESS_URL, auth=key, pull_reports=pulls))
    seen = _Seen()
    secret = secrets.token_hex(16)  # the demo's own: shown nowhere
    view = console or stderr
    with tempfile.TemporaryDirectory(prefix="voicelogs-demo-") as tmp:
        path = store_path or Path(tmp) / "demo.db"
        async with (
            fake.in_process_client() as client,
            SqliteStore(path, archive=True) as store,
            LogsPoller(
                accounts,
                store=store,
                handler=seen,
                interval=interval,
                reconcile=reconcile if reconcile is not None else 5 * interval,
                client=client,
                clock=clock.now,
                max_attempts=8,
            ) as poller,
        ):
            receiver = ReportsReceiver(  # records each batch; the poller delivers it
                fake.accounts,
                store=store,
                auth=HmacSignature("X-Signature", secret),
                clock=clock.now,
                prefix=ROUTE,
            )
            async with _pushing(fake, receiver, secret) as pushers:
                with Live(
                    status_table(poller, "polling the fake provider", reports=True),
                    console=view,
                    auto_refresh=False,
                    transient=False,
                ) as screen:
                    await _poll_for(seconds, poller, screen)
                    await _settle(fake, clock, pushers, poller)
                    title = "polled the fake provider"
                    screen.update(status_table(poller, title, reports=True), refresh=True)
            report = await _check(fake, store, poller, seen, pushers)
    return report


@contextlib.asynccontextmanager
async def _pushing(
    fake: FakeInfobip, receiver: ReportsReceiver, secret: str
) -> AsyncIterator[list[ReportPusher]]:
    """The receiver served over real HTTP, and each account's reports pushed to it."""
    async with (
        serving(receiver, host="127.0.0.1", port=0, grace=5.0) as served,
        httpx.AsyncClient(timeout=10.0, trust_env=False) as client,  # loopback: no proxy
    ):
        pushers = [
            account.push_reports(
                f"{served.url}{ROUTE}/{name}",
                auth=PushHmac(secret),
                faults=REPORT_FAULTS,
                client=client,
            )
            for name, account in fake.accounts.items()
        ]
        tasks = [asyncio.create_task(pusher.run(_PUSH_EVERY)) for pusher in pushers]
        try:
            yield pushers
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


async def _poll_for(seconds: float, poller: LogsPoller, screen: Live) -> None:
    """Poll (and receive, beside it) for `seconds`, redrawing the table twice a second."""
    runner = asyncio.create_task(poller.run())
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while (left := deadline - loop.time()) > 0:
        title = f"polling the fake provider: {left:.0f} s left"
        screen.update(status_table(poller, title, reports=True), refresh=True)
        await asyncio.sleep(min(0.5, left))
    poller.stop()
    await runner


async def _settle(
    fake: FakeInfobip, clock: FakeClock, pushers: list[ReportPusher], poller: LogsPoller
) -> None:
    """Stop the traffic, let every call settle (on the fake's clock: instantly), calm the
    faults, send the reports still due, and take one last cycle to compare the archive."""
    for fake_account in fake.accounts.values():
        fake_account.stop_traffic()
        fake_account.faults.clear()
    clock.advance(SETTLE + REPORT_FAULTS.reorder_by + timedelta(seconds=1))
    for pusher in pushers:
        await pusher.step()
    await poller.run_once()


async def _check(
    fake: FakeInfobip,
    store: SqliteStore,
    poller: LogsPoller,
    seen: _Seen,
    pushers: list[ReportPusher],
) -> DemoReport:
    missing = extra = logs = archived = final_missing = 0
    for name, fake_account in fake.accounts.items():
        # A state is its status, error and price: a report's copy of a log's state is it.
        truth = {(log.message_id, fingerprint(log)) for log in fake_account.logs}
        kept = {(log.message_id, fingerprint(log)) for log in await store.archived(name)}
        logs += len(truth)
        archived += len(kept)
        missing += len(truth - kept)
        extra += len(kept - truth)
        for message_id, state in truth:
            finals = [fp for _, fp, final in seen.states[(name, message_id or "")] if final]
            final_missing += state not in finals
    lost = {
        (pusher.account.name, message_id)
        for pusher in pushers
        for message_id in pusher.stats.dropped_ids | pusher.stats.given_up_ids
    }
    lost |= {(name, i) for name, account in fake.accounts.items() for i in account.pull.lost_ids}
    # The handler cannot tell a pulled report from a pushed one: the fake knows which
    # calls' reports a pull handed out.
    pulled = {
        (name, i) for name, account in fake.accounts.items() for i in account.pull.returned_ids
    }
    by_source: Counter[str] = Counter()
    lost_found = regressed = by_pull = 0
    for key, states in seen.states.items():
        finals = [source for source, _, final in states if final]
        by_source.update(finals)
        by_pull += finals.count("report") if key in pulled else 0
        # A report given up after its retries may still have been committed (an answer
        # that timed out): any source counts, though a dropped one can only be the logs.
        lost_found += key in lost and bool(finals)
        first_final = next((i for i, (_, _, final) in enumerate(states) if final), None)
        regressed += first_final is not None and not all(f for *_, f in states[first_final:])
    counts = Counter((key, fp) for key, states in seen.states.items() for _, fp, _ in states)
    totals = poller.status().values()
    return DemoReport(
        logs=logs,
        archived=archived,
        missing=missing,
        extra=extra,
        doubled=sum(count - 1 for count in counts.values() if count > 1),
        deliveries=sum(counts.values()),
        # From the handler's view, whichever source brought a state: a message's first
        # state is new, each later one a change.
        new=len(seen.states),
        changed=sum(counts.values()) - len(seen.states),
        retries=sum(s.retries for s in totals),
        rate_limited=sum(s.rate_limited for s in totals),
        final_by_report=by_source["report"],
        final_by_log=by_source["log"],
        final_by_pull=by_pull,
        reports_pulled=len(pulled),
        reported_calls=sum(pusher.stats.settled for pusher in pushers),
        reports_lost=len(lost),
        lost_found=lost_found,
        regressed=regressed,
        final_missing=final_missing,
        logs_first=sum(s.webhook_lost for s in totals),
    )


def demo(
    ctx: typer.Context,
    seconds: float = typer.Option(20.0, min=1.0, help="How long to poll."),
    interval: float = typer.Option(1.0, min=0.1, help="Seconds between an account's cycles."),
) -> None:
    """Poll four fake accounts with faults, receive three's lossy delivery reports over
    HTTP and pull the fourth's, then check every delivered state against the ground truth."""
    report = run(run_demo(seconds, interval=interval), ctx)
    stderr.print(
        f"\n{report.deliveries} deliveries: {report.new} new logs and {report.changed} "
        f"changes of a log already delivered (PENDING, then its final status); "
        f"{report.retries} retries, {report.rate_limited} 429s absorbed.\n"
        f"{report.reported_calls} calls settled while their reports were pushed, and "
        f"{report.reports_pulled} reports were pulled; the way lost {report.reports_lost} "
        f"reports, and the logs found {report.lost_found} of them.\n"
        f'The table\'s "lost" ({report.logs_first} in all) counts the final states the '
        f"logs found before any report: an upper bound, as a late report counts too.\n"
        f"The archive holds {report.archived} distinct logs, each in its last state, "
        f"of {report.logs} in the fake.",
        highlight=False,
    )
    pushed = report.final_by_report - report.final_by_pull
    verdict = (
        f"{pushed} final states by pushed report, {report.final_by_pull} by pulled report, "
        f"{report.final_by_log} by the logs; "
        f"missing {report.final_missing + report.missing}, doubled {report.doubled}, "
        f"regressed {report.regressed}, extra {report.extra}"
    )
    if not report.ok:
        fail(f"check failed: {verdict}", 4)
    stderr.print(
        f"[bold green]check passed:[/] {verdict}: every final state delivered once.",
        highlight=False,
    )
