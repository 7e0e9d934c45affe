"""`simulate --push-reports`: the fake provider as a real process, pushing its reports to a
real receiver (a `ReportsReceiver` under uvicorn), authenticated; and `--pull-share`."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from typer.testing import CliRunner

from infobip_voicelogs import GeneralStatus, LogsFetcher, LogsQuery
from infobip_voicelogs.cli.app import app
from infobip_voicelogs.cli.reports import serving
from infobip_voicelogs.reports import (
    BasicCredentials,
    HmacSignature,
    ReportsAuth,
    ReportsReceiver,
    VoiceReport,
)

pytest.importorskip("uvicorn")

ROOT = Path(__file__).parents[1]
PASSWORD = "hunter2-push-password"
SECRET = "hunter2-push-secret"
ACCOUNTS = ("account-1", "account-2")
#: Bounds on waiting for the processes: generous, never reached when things work.
STARTED = 60.0
ARRIVED = 60.0


class Received:
    """The receiver's deliveries, by account, and a way to wait for enough of them."""

    def __init__(self) -> None:
        self.reports: dict[str, list[VoiceReport]] = {name: [] for name in ACCOUNTS}
        self._changed = asyncio.Event()

    async def deliver(self, account: str, reports: Sequence[VoiceReport]) -> None:
        self.reports[account].extend(reports)
        self._changed.set()

    async def until(self, each: int) -> None:
        """Wait until every account has delivered at least ``each`` reports."""
        async with asyncio.timeout(ARRIVED):
            while min(len(r) for r in self.reports.values()) < each:
                self._changed.clear()
                await self._changed.wait()


@asynccontextmanager
async def simulate(*args: str, **env: str) -> AsyncIterator[dict[str, tuple[str, str]]]:
    """A `simulate --port 0` process; yields each account's (base URL, API key)."""
    command = [sys.executable, "-c", "from infobip_voicelogs.cli import main; main()"]
    process = await asyncio.create_subprocess_exec(
        *command,
        "simulate",
        "--port",
        "0",
        "--accounts",
        str(len(ACCOUNTS)),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
    )
    assert process.stdout is not None
    try:
        endpoints = {}
        async with asyncio.timeout(STARTED):
            while len(endpoints) < len(ACCOUNTS):
                line = (await process.stdout.readline()).decode()
                assert line, "simulate ended before printing its accounts"
                name, base_url, key = line.strip().split("\t")
                endpoints[name] = (base_url, key)
        yield endpoints
    finally:
        process.terminate()
        await asyncio.wait_for(process.wait(), STARTED)


@asynccontextmanager
async def receiver(auth: ReportsAuth, received: Received) -> AsyncIterator[str]:
    """A receiver for `ACCOUNTS` on a free port; yields the URL to push to."""
    app = ReportsReceiver(ACCOUNTS, deliver=received.deliver, auth=auth, prefix="/reports")
    async with serving(app, host="127.0.0.1", port=0, grace=1.0) as served:
        yield f"{served.url}/reports"


async def final_states(endpoint: tuple[str, str]) -> dict[str, GeneralStatus]:
    """The simulated account's final calls, from its logs endpoint."""
    base_url, key = endpoint
    async with LogsFetcher(base_url, key) as fetcher:
        logs = await fetcher.fetch(LogsQuery(limit=1000))
    return {str(log.message_id): log.general_status for log in logs if log.done_at is not None}


SPEEDY = ("--rate", "20", "--backlog", "0", "--settle-after", "0.5")


@pytest.mark.parametrize(
    ("options", "env", "auth"),
    [
        (
            ("--push-user", "ib"),
            {"INFOBIP_REPORTS_PASSWORD": PASSWORD},
            BasicCredentials("ib", PASSWORD),
        ),
        (
            ("--push-hmac-header", "X-Signature", "--push-hmac-alg", "sha512"),
            {"INFOBIP_REPORTS_SECRET": SECRET},
            HmacSignature("X-Signature", SECRET, algorithm="sha512"),
        ),
    ],
    ids=["basic", "hmac"],
)
async def test_simulate_pushes_each_accounts_reports_to_a_receiver_authenticated(
    options: tuple[str, ...], env: dict[str, str], auth: ReportsAuth
) -> None:
    received = Received()
    async with (
        receiver(auth, received) as url,
        simulate(*SPEEDY, "--push-reports", url, *options, **env) as endpoints,
    ):
        await received.until(each=5)
        arrived = {name: list(reports) for name, reports in received.reports.items()}
        finals = {name: await final_states(endpoints[name]) for name in ACCOUNTS}
    for name in ACCOUNTS:
        for report in arrived[name]:  # each one a call of this account, as it ended
            assert finals[name][str(report.message_id)] is report.status.group  # type: ignore[union-attr]
            call = report.voice_call
            assert call is not None
            assert call.start_time is not None
            assert call.end_time is not None
            assert call.start_time <= (call.answer_time or call.start_time) <= call.end_time


async def test_simulate_keeps_a_pull_shares_reports_for_the_pull_endpoint() -> None:
    received = Received()
    async with (
        receiver(BasicCredentials("ib", PASSWORD), received) as url,
        simulate(
            *SPEEDY,
            "--pull-share",
            "1",
            "--push-reports",
            url,
            "--push-user",
            "ib",
            INFOBIP_REPORTS_PASSWORD=PASSWORD,
        ) as endpoints,
    ):
        base_url, key = endpoints["account-1"]
        pulled: list[VoiceReport] = []
        async with LogsFetcher(base_url, key) as fetcher:
            async with asyncio.timeout(ARRIVED):
                while len(pulled) < 5:
                    pulled += await fetcher.pull_reports(limit=1000)
        finals = await final_states(endpoints["account-1"])
    assert {str(r.message_id) for r in pulled} <= set(finals)
    assert len({r.message_id for r in pulled}) == len(pulled)  # each once
    assert received.reports == {name: [] for name in ACCOUNTS}  # none pushed


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--push-user", "ib"], "need --push-reports"),
        (["--push-reports", "ftp://x", "--push-user", "ib"], "--push-reports must be"),
        (
            ["--push-reports", "http://127.0.0.1:1/r", "--push-user", "ib"],
            "INFOBIP_REPORTS_PASSWORD",
        ),
        (
            [
                "--push-reports",
                "http://127.0.0.1:1/r",
                "--push-user",
                "a",
                "--push-hmac-header",
                "X",
            ],
            "at most one",
        ),
        (
            [
                "--push-reports",
                "http://127.0.0.1:1/r",
                "--push-hmac-header",
                "X",
                "--push-hmac-alg",
                "crc",
            ],
            "--push-hmac-alg",
        ),
        (
            ["--push-reports", "http://127.0.0.1:1/r", "--push-user", "a:b"],
            "--push-user must be a non-empty name without ':'",
        ),
        (
            ["--push-reports", "http://127.0.0.1:1/r", "--push-hmac-header", "X Sig"],
            "--push-hmac-header must be an HTTP header name",
        ),
    ],
)
def test_bad_push_options_are_one_line_and_name_no_secret(args: list[str], message: str) -> None:
    runner = CliRunner(env={"INFOBIP_REPORTS_SECRET": SECRET, "INFOBIP_REPORTS_PASSWORD": ""})
    result = runner.invoke(app, ["simulate", *args])
    assert result.exit_code != 0
    assert message in result.output
    assert SECRET not in result.output
