"""A real `poll` process that pulls reports, killed (SIGKILL) after a pull was answered
and before its batch was recorded: the pulled reports exist nowhere else then, and the
restarted poller brings their states from the logs. Nothing is lost.
"""

from __future__ import annotations

import os
import queue
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
from conftest import fake_in_a_thread

from infobip_voicelogs.testing import FakeClock, FakeInfobip, FakeServer

KEY = "pull-crash-key"
COMMAND = [sys.executable, "-c", "from infobip_voicelogs.cli import main; main()"]

Lines = queue.SimpleQueue[dict[str, Any] | None]


def start_poll(tmp_path: Path, server: FakeServer) -> tuple[subprocess.Popen[bytes], Lines]:
    """`poll` on the store of the test, printing each state it delivers as a JSON line."""
    accounts = tmp_path / "accounts.toml"
    accounts.write_text(
        f'[[account]]\nname = "acme"\nbase_url = "{server.base_url}"\n'
        'api_key_env = "ACME_KEY"\npull_reports = true\n',
        encoding="utf-8",
    )
    env = {**os.environ, "ACME_KEY": KEY, "PYTHONPATH": str(Path(__file__).parents[1])}
    args = ["poll", "-a", str(accounts), "--store", str(tmp_path / "pull.db"), "--no-live"]
    args += ["--format", "ndjson", "--interval", "1s", "--reconcile", "2s"]
    log = (tmp_path / "poll.log").open("ab")
    process = subprocess.Popen([*COMMAND, *args], stdout=subprocess.PIPE, stderr=log, env=env)
    lines: Lines = queue.SimpleQueue()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(orjson.loads(line))
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    return process, lines


def until(condition: Any, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_a_poll_killed_between_a_pulls_answer_and_its_record_loses_nothing(
    tmp_path: Path,
) -> None:
    fake = FakeInfobip(clock=FakeClock(), rate_limit_per_minute=10_000, seed=13)
    acme = fake.add_account("acme", api_key=KEY, pull_share=1.0)
    with fake_in_a_thread(fake) as server:
        first, _ = start_poll(tmp_path, server)
        try:
            # Its first cycle is over (it pulled, found nothing): the store is made.
            until(lambda: any(r.path == "/voice/1/reports" for r in fake.requests()))
            # The store's write lock is the test's now: the next pulled batch cannot be
            # recorded, and the process is killed while it waits to record it.
            lock = sqlite3.connect(tmp_path / "pull.db", timeout=30, isolation_level=None)
            lock.execute("BEGIN IMMEDIATE")
            calls = acme.generate(25, settle_after=timedelta(0))  # their reports wait
            until(lambda: len(acme.pull.returned_ids) == len(calls))
            first.send_signal(signal.SIGKILL)
            first.wait(10)
            lock.execute("ROLLBACK")
            lock.close()
        finally:
            first.kill()
            first.wait()

        second, lines = start_poll(tmp_path, server)
        try:
            delivered: dict[str, str] = {}
            deadline = time.monotonic() + 60
            while len(delivered) < len(calls) and time.monotonic() < deadline:
                line = lines.get(timeout=60)
                assert line is not None, "the poller ended early"
                assert line["messageId"] not in delivered, "a state handed over twice"
                delivered[line["messageId"]] = line["source"]
        finally:
            second.kill()
            second.wait()

    # Every call's final state, each from the logs: the pull channel had lost them all.
    assert set(delivered) == {str(call.message_id) for call in calls}
    assert set(delivered.values()) == {"log"}
    assert set(acme.pull.returned_ids) == set(delivered)
