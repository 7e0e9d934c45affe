"""`infobip-voicelogs simulate`: the fake provider over real HTTP, for trying clients by hand.

Besides the logs, each fake account keeps the reports of its calls sent without a notify
URL for `GET /voice/1/reports` (`--pull-share`), and with `--push-reports` POSTs the
others' reports to a receiver as the calls end, so `poll --reports-port` can be tried
without writing Python.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from datetime import timedelta

import httpx
import typer

from ..testing import FakeInfobip, Fault, PushFaults, ReportPusher, running
from ..testing.pusher import POST_TIMEOUT
from .common import fail, run, stderr
from .push import check_push_base, push_auth, push_url

__all__ = ["simulate"]

#: Real seconds between two rounds of report POSTs.
PUSH_EVERY = 0.2


def simulate(
    ctx: typer.Context,
    port: int = typer.Option(8099, min=0, max=65535, help="Port on 127.0.0.1 (0: any free one)."),
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    accounts: int = typer.Option(3, min=1, max=10_000, help="How many accounts."),
    rate: float = typer.Option(1.0, min=0.0, help="New logs per second per account."),
    backlog: int = typer.Option(200, min=0, help="Logs each account has at start."),
    settle_after: float = typer.Option(
        30.0, min=0.0, help="The longest a new call stays PENDING, in seconds."
    ),
    fault_rate: float = typer.Option(
        0.0, min=0.0, max=1.0, help="Probability of a 429/503/reset on a request."
    ),
    rate_limit: int = typer.Option(120, min=1, help="Requests per minute per account."),
    retry_after: str = typer.Option("none", help="429's Retry-After: none, seconds, http-date."),
    seed: int = typer.Option(0, help="Seed for reproducible logs and faults."),
    pull_share: float = typer.Option(
        0.0,
        min=0.0,
        max=1.0,
        help="Share of calls sent without a notify URL: their reports wait for "
        "GET /voice/1/reports, and are never pushed.",
    ),
    push_reports: str | None = typer.Option(
        None,
        "--push-reports",
        help="POST each account's delivery reports to URL/{account} as its calls end "
        "(e.g. the URL that poll --reports-port prints).",
    ),
    push_user: str | None = typer.Option(
        None,
        "--push-user",
        help="Push with Basic auth as this user; the password is in INFOBIP_REPORTS_PASSWORD.",
    ),
    push_hmac_header: str | None = typer.Option(
        None,
        "--push-hmac-header",
        help="Push with an HMAC of each body in this header; the "
        "secret is in INFOBIP_REPORTS_SECRET.",
    ),
    push_hmac_alg: str = typer.Option("sha256", "--push-hmac-alg", help="The HMAC's algorithm."),
    push_drop: float = typer.Option(
        0.0, "--push-drop", min=0.0, max=1.0, help="Share of reports never pushed (lost)."
    ),
) -> None:
    """Serve the fake provider on 127.0.0.1 and print each account's base URL and API key."""
    if retry_after not in ("none", "seconds", "http-date"):
        fail("--retry-after must be none, seconds or http-date")
    try:
        if push_reports is None and (push_user or push_hmac_header or push_drop):
            raise ValueError("--push-user, --push-hmac-header and --push-drop need --push-reports")
        base = check_push_base(push_reports) if push_reports is not None else None
        auth = push_auth(
            user=push_user, hmac_header=push_hmac_header, hmac_alg=push_hmac_alg, environ=os.environ
        )
    except ValueError as exc:
        fail(str(exc))
    fake = FakeInfobip(
        rate_limit_per_minute=rate_limit,
        retry_after=retry_after,  # type: ignore[arg-type]
        seed=seed,
    )
    for index in range(1, accounts + 1):
        account = fake.add_account(
            f"account-{index}",
            api_key=f"fake-key-{seed}-{index}",
            settle_after=timedelta(seconds=settle_after),
            pull_share=pull_share,
        )
        account.generate(backlog, within=timedelta(hours=6))
        if rate:
            account.traffic(rate)
        if fault_rate:
            share = fault_rate / 3
            account.random_faults(
                {Fault.status(429): share, Fault.status(503): share, Fault.reset(): share}
            )

    async def main() -> None:
        try:
            async with (
                running(fake, host=host, port=port) as server,
                httpx.AsyncClient(timeout=POST_TIMEOUT) as client,
                contextlib.AsyncExitStack() as pushing,
            ):
                stderr.print(f"fake provider on {server.base_url} (Ctrl-C stops it)")
                if base is not None:
                    faults = PushFaults(drop=push_drop)
                    pushers = [
                        ReportPusher(
                            a, push_url(base, name), auth=auth, faults=faults, client=client
                        )
                        for name, a in fake.accounts.items()
                    ]
                    tasks = [asyncio.create_task(p.run(PUSH_EVERY)) for p in pushers]
                    pushing.push_async_callback(_stop, tasks)
                    stderr.print(f"pushing delivery reports to {push_url(base, '{account}')}")
                for name, account in fake.accounts.items():
                    # The fake's own keys, printed so that a client can be pointed at it.
                    print(f"{name}\t{server.base_url}\t{account.api_key}", flush=True)
                await asyncio.Event().wait()
        except RuntimeError as exc:  # uvicorn is missing: the message names the extra
            fail(str(exc))
        except OSError as exc:
            fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")

    run(main(), ctx)


async def _stop(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel the pushers and wait for them to end (each is at most in one bounded POST)."""
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
