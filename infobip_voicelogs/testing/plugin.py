"""The pytest plugin shipped with the package: fixtures that give a test a ready fake.

Registered as the `pytest11` entry point `infobip_voicelogs`, so installing the
package makes the fixtures available everywhere; or load it by hand with
`pytest -p infobip_voicelogs.testing.plugin`. It imports the fake only when a test
asks for a fixture, and never needs uvicorn.

- `fake_clock`: a standing `FakeClock` at the real time the test started.
- `fake_infobip`: a `FakeInfobip` on that clock, seed 0, default limits.
- `fake_account`: an account named `"test"` with API key `"test-api-key"`.
- `fake_time`: a `FakeTime` at 0 that moves `fake_clock` with it, for a `TokenBucket`.
- `fake_pusher`: makes `fake_account` push its delivery reports:
  `pusher = fake_pusher("http://127.0.0.1:8000/reports/test", faults=PushFaults(drop=0.1))`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from . import FakeAccount, FakeClock, FakeInfobip, FakeTime, ReportPusher

__all__ = ["fake_account", "fake_clock", "fake_infobip", "fake_pusher", "fake_time"]


@pytest.fixture
def fake_clock() -> FakeClock:
    """A `FakeClock` standing at the test's start; move it with `advance` or `set`."""
    from .clock import FakeClock

    return FakeClock()


@pytest.fixture
def fake_infobip(fake_clock: FakeClock) -> FakeInfobip:
    """A `FakeInfobip` on `fake_clock`, seeded 0, with no accounts yet."""
    from .fake import FakeInfobip

    return FakeInfobip(clock=fake_clock, seed=0)


@pytest.fixture
def fake_account(fake_infobip: FakeInfobip) -> FakeAccount:
    """An account `"test"` of `fake_infobip`, API key `"test-api-key"`, with no logs yet."""
    return fake_infobip.add_account("test", api_key="test-api-key")


@pytest.fixture
def fake_time(fake_clock: FakeClock) -> FakeTime:
    """A `FakeTime` at 0 that moves `fake_clock` by what it sleeps (so the fake's window slides)."""
    from .virtual_time import FakeTime

    return FakeTime(clock=fake_clock)


@pytest.fixture
def fake_pusher(fake_account: FakeAccount) -> Callable[..., ReportPusher]:
    """Makes `fake_account` push its reports: `fake_pusher(url, **options)` returns the
    account's `ReportPusher` (options as `FakeAccount.push_reports`)."""

    def make(url: str, **options: Any) -> ReportPusher:
        return fake_account.push_reports(url, **options)

    return make
