"""`infobip-voicelogs simulate`: the fake provider over real HTTP, for trying clients by hand."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import typer

from ..testing import FakeInfobip, Fault, running
from .common import fail, run, stderr

__all__ = ["simulate"]


def simulate(
    ctx: typer.Context,
    port: int = typer.Option(8099, min=0, max=65535, help="Port on 127.0.0.1 (0: any free one)."),
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    accounts: int = typer.Option(3, min=1, max=10_000, help="How many accounts."),
    rate: float = typer.Option(1.0, min=0.0, help="New logs per second per account."),
    backlog: int = typer.Option(200, min=0, help="Logs each account has at start."),
    fault_rate: float = typer.Option(
        0.0, min=0.0, max=1.0, help="Probability of a 429/503/reset on a request."
    ),
    rate_limit: int = typer.Option(120, min=1, help="Requests per minute per account."),
    retry_after: str = typer.Option("none", help="429's Retry-After: none, seconds, http-date."),
    seed: int = typer.Option(0, help="Seed for reproducible logs and faults."),
) -> None:
    """Serve the fake provider on 127.0.0.1 and print each account's base URL and API key."""
    if retry_after not in ("none", "seconds", "http-date"):
        fail("--retry-after must be none, seconds or http-date")
    fake = FakeInfobip(
        rate_limit_per_minute=rate_limit,
        retry_after=retry_after,  # type: ignore[arg-type]
        seed=seed,
    )
    for index in range(1, accounts + 1):
        account = fake.add_account(f"account-{index}", api_key=f"fake-key-{seed}-{index}")
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
            async with running(fake, host=host, port=port) as server:
                stderr.print(f"fake provider on {server.base_url} (Ctrl-C stops it)")
                for name, account in fake.accounts.items():
                    # The fake's own keys, printed so that a client can be pointed at it.
                    print(f"{name}\t{server.base_url}\t{account.api_key}", flush=True)
                await asyncio.Event().wait()
        except RuntimeError as exc:  # uvicorn is missing: the message names the extra
            fail(str(exc))
        except OSError as exc:
            fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")

    run(main(), ctx)
