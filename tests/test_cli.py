"""The `infobip-voicelogs` command, through typer's runner, against the fake over real HTTP."""

from __future__ import annotations

import asyncio
import io
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from conftest import fake_in_a_thread
from typer.testing import CliRunner

from infobip_voicelogs import Price, SqliteStore, VoiceLog, decode_logs
from infobip_voicelogs.cli.app import app
from infobip_voicelogs.cli.config import ConfigError, load_accounts
from infobip_voicelogs.cli.demo import run_demo
from infobip_voicelogs.testing import FakeClock, FakeInfobip, FakeServer

KEY = "cli-test-key"


@pytest.fixture(scope="module")
def fake() -> FakeInfobip:
    fake = FakeInfobip(clock=FakeClock(), rate_limit_per_minute=10_000, seed=5)
    fake.add_account("acme", api_key=KEY).generate(
        320, within=timedelta(hours=6), settle_after=timedelta(0)
    )
    fake.add_account("globex", api_key="globex-key").generate(
        40, within=timedelta(hours=1), settle_after=timedelta(0)
    )
    return fake


@pytest.fixture(scope="module")
def server(fake: FakeInfobip) -> Iterator[FakeServer]:
    """The fake served by uvicorn on 127.0.0.1 from a thread, as a real provider would be."""
    with fake_in_a_thread(fake) as server:
        yield server


@pytest.fixture
def runner() -> CliRunner:
    # Wide enough that rich never folds an error message across lines.
    return CliRunner(env={"COLUMNS": "250", "TERMINAL_WIDTH": "250"})


def parse_ndjson(text: str) -> list[VoiceLog]:
    lines = [line for line in text.splitlines() if line.startswith("{")]
    return decode_logs(b'{"results":[' + ",".join(lines).encode() + b"]}", "application/json")


def test_fetch_prints_the_newest_page_as_ndjson(
    runner: CliRunner, server: FakeServer, fake: FakeInfobip
) -> None:
    result = runner.invoke(
        app, ["fetch", "--base-url", server.base_url, "--api-key", KEY, "--format", "ndjson"]
    )
    assert result.exit_code == 0, result.output
    assert parse_ndjson(result.stdout) == fake.accounts["acme"].logs[:50]


def test_fetch_walks_a_window_from_the_environment(
    runner: CliRunner, server: FakeServer, fake: FakeInfobip
) -> None:
    now = fake.clock.now()
    since = now - timedelta(hours=4)
    result = runner.invoke(
        app,
        [
            "fetch",
            "--since",
            since.isoformat(),
            "--until",
            now.isoformat(),
            "--page-size",
            "50",
            "--format",
            "ndjson",
        ],
        env={"INFOBIP_BASE_URL": server.base_url, "INFOBIP_API_KEY": KEY},
    )
    assert result.exit_code == 0, result.output
    expected = [log for log in fake.accounts["acme"].logs if log.sent_at and log.sent_at >= since]
    assert parse_ndjson(result.stdout) == expected
    assert len(expected) > 100  # several pages


def test_fetch_as_csv_with_filters(runner: CliRunner, server: FakeServer) -> None:
    result = runner.invoke(
        app,
        [
            *("fetch", "--base-url", server.base_url, "--api-key", KEY),
            *("--status", "delivered", "--limit", "5", "--format", "csv"),
        ],
    )
    assert result.exit_code == 0, result.output
    rows = result.stdout.strip().splitlines()
    assert rows[0].startswith("message_id,bulk_id,sent_at")
    assert 1 <= len(rows) - 1 <= 5
    assert all(",DELIVERED," in row for row in rows[1:])


def test_fetch_with_a_refused_key_exits_3_without_showing_it(
    runner: CliRunner, server: FakeServer
) -> None:
    result = runner.invoke(
        app, ["fetch", "--base-url", server.base_url, "--api-key", "wrong-secret"]
    )
    assert result.exit_code == 3
    assert "AuthenticationError" in result.output
    assert "wrong-secret" not in result.output
    assert "Traceback" not in result.output


def test_debug_shows_the_traceback_for_this_run_only(runner: CliRunner, server: FakeServer) -> None:
    args = ["fetch", "--base-url", server.base_url, "--api-key", "wrong-secret"]
    debugged = runner.invoke(app, ["--debug", *args])
    assert debugged.exit_code == 3
    assert "Traceback" in debugged.output
    assert "AuthenticationError" in debugged.output
    assert "wrong-secret" not in debugged.output
    # The flag lives in the run's context, not in the process: the next run has none.
    plain = runner.invoke(app, args)
    assert plain.exit_code == 3
    assert "Traceback" not in plain.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", "yesterday"], "not a time"),
        (["--since", "2026-01-01T00:00:00"], "no timezone"),
        (["--limit", "0"], "greater than or equal to 1"),
        (["--mcc", "12a"], "mcc"),
        (["--status", "sent"], "'sent' is not one of accepted, pending, undeliverable"),
    ],
)
def test_fetch_refuses_bad_options_with_exit_2(
    runner: CliRunner, server: FakeServer, args: list[str], message: str
) -> None:
    result = runner.invoke(app, ["fetch", "--base-url", server.base_url, "--api-key", KEY, *args])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Value error" not in result.output  # typer's pydantic path, when installed


def test_fetch_needs_an_account(runner: CliRunner) -> None:
    result = runner.invoke(app, ["fetch"], env={"INFOBIP_BASE_URL": "", "INFOBIP_API_KEY": ""})
    assert result.exit_code == 2


def test_fetch_refuses_plain_http_to_a_remote_host(runner: CliRunner) -> None:
    result = runner.invoke(app, ["fetch", "--base-url", "http://api.infobip.com", "--api-key", KEY])
    assert result.exit_code == 2
    assert KEY not in result.output


@pytest.mark.parametrize(
    "args",
    [
        ["--base-url", KEY, "--api-key", "k2"],  # swapped with the key
        ["--base-url", "https://user:pw@x.test", "--api-key", KEY],
        ["--base-url", "https://x.test", "--api-key", "a\nb"],
        ["--base-url", "https://x.test", "--api-key", KEY, "--since", "800000d"],
        ["--base-url", "https://x.test", "--api-key", KEY, "--since", "1e300s"],
    ],
)
def test_fetch_refuses_a_bad_account_or_span_with_one_line_and_exit_2(
    runner: CliRunner, args: list[str]
) -> None:
    result = runner.invoke(app, ["fetch", *args])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert KEY not in result.output
    assert "pw" not in result.output.replace("https://", "")


def test_a_table_prints_the_providers_text_as_text(monkeypatch: pytest.MonkeyPatch) -> None:
    from infobip_voicelogs.cli.output import LogWriter, OutputFormat

    monkeypatch.setenv("COLUMNS", "250")  # no folding

    stream = io.StringIO()
    price = Price(Decimal("1E-7"), "EUR")
    LogWriter(OutputFormat.table, stream=stream).write(
        [VoiceLog(message_id="[/]", to="[red]x[/red]", price=price)]
    )
    assert "[/]" in stream.getvalue()
    assert "[red]x[/red]" in stream.getvalue()
    assert "0.0000001 EUR" in stream.getvalue()


def test_csv_writes_prices_in_plain_notation() -> None:
    from infobip_voicelogs.cli.output import LogWriter, OutputFormat

    stream = io.StringIO()
    LogWriter(OutputFormat.csv, stream=stream).write(
        [VoiceLog(message_id="m1", price=Price(Decimal("1E-7"), "EUR"))]
    )
    assert "0.0000001,EUR" in stream.getvalue()


def write_accounts(path: Path, server: FakeServer, *, extra: str = "") -> Path:
    path.write_text(
        f"""
[[account]]
name = "acme"
base_url = "{server.base_url}"
api_key_env = "ACME_KEY"

[[account]]
name = "globex"
base_url = "{server.base_url}"
api_key = "globex-key"
format = "xml"
rate = 5.0
{extra}
""",
        encoding="utf-8",
    )
    return path


def test_poll_once_archives_every_account(
    runner: CliRunner, server: FakeServer, fake: FakeInfobip, tmp_path: Path
) -> None:
    accounts = write_accounts(tmp_path / "accounts.toml", server)
    store_path = tmp_path / "logs.db"
    args = ["poll", "-a", str(accounts), "--store", str(store_path), "--once", "--no-live"]
    result = runner.invoke(app, [*args, "--format", "ndjson"], env={"ACME_KEY": KEY})
    assert result.exit_code == 0, result.output
    delivered = parse_ndjson(result.stdout)
    truth = fake.accounts["acme"].logs + fake.accounts["globex"].logs
    assert sorted(log.message_id or "" for log in delivered) == sorted(
        log.message_id or "" for log in truth
    )

    async def archived() -> list[VoiceLog]:
        async with SqliteStore(store_path) as store:
            return await store.archived()

    assert set(asyncio.run(archived())) == set(truth)
    again = runner.invoke(app, [*args, "--format", "ndjson"], env={"ACME_KEY": KEY})
    assert again.exit_code == 0, again.output
    assert parse_ndjson(again.stdout) == []  # nothing repeats on the same store


def test_poll_without_keepalive_delivers_the_same(
    runner: CliRunner, server: FakeServer, fake: FakeInfobip, tmp_path: Path
) -> None:
    accounts = write_accounts(tmp_path / "accounts.toml", server)
    args = ["poll", "-a", str(accounts), "--store", str(tmp_path / "logs.db"), "--once"]
    result = runner.invoke(
        app, [*args, "--no-live", "--no-keepalive", "--format", "ndjson"], env={"ACME_KEY": KEY}
    )
    assert result.exit_code == 0, result.output
    truth = fake.accounts["acme"].logs + fake.accounts["globex"].logs
    assert len(parse_ndjson(result.stdout)) == len(truth)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such file"),
        ("[[account]\nname=", "not valid TOML"),
        ("# nothing yet", "no [[account]] tables"),
        ("archive = true\n[[account]]\nname='a'\nbase_url='https://x'\napi_key='k'", "archive"),
        ("title = 'no accounts'", "unknown top-level key(s) title"),
        ("[[account]]\nname = 'a'\nbase_url = 'https://x.test'", "exactly one of api_key"),
        ("[[account]]\nname = 'a'\nbase_url = 'ftp://x'\napi_key = 'k'", "base_url"),
        ("[[account]]\nname = 'a'\nbase_url = 'https://x'\napi_key_env = 'NOPE_KEY'", "NOPE_KEY"),
        ("[[account]]\nname = 'a'\nbase_url = 'https://x'\napi_key = 'k'\ncolour = 1", "colour"),
        (
            "[[account]]\nname = 'a'\nbase_url = 'https://x'\napi_key = 'k'\narchive = true",
            "known: allow_insecure, api_key",
        ),
        ("[[account]]\nname = 'a'\nbase_url = 'https://x'\napi_key = 'k'\nrate = -1", "rate"),
        ("[[account]]\nname = 'a'\nbase_url = 'https://x'\napi_key = 'k'\nrate = nan", "rate"),
        ("[[account]]\nname = 'a'\nbase_url = 'https://x'\napi_key = 'k'\nrate = inf", "rate"),
        (
            "[[account]]\nname = 'a'\nbase_url = 'http://example.com'\napi_key = 'k'",
            "refusing to send credentials over plain http://",
        ),
        (
            "[[account]]\nname = 'a'\nbase_url = 'http://example.com'\napi_key = 'k'",
            "set allow_insecure = true",
        ),
        ('[[account]]\nname = "a"\nbase_url = "https://x"\napi_key = "k\\u0007"', "control"),
        (
            "[[account]]\nname = 'a'\nbase_url = 'https://x'\napi_key = 'k'\nformat = 'csv'",
            "format",
        ),
        (
            "[[account]]\nname='a'\nbase_url='https://x'\napi_key='k'\n" * 2,
            "unique, repeated: a",
        ),
    ],
)
def test_poll_with_a_bad_accounts_file_exits_2(
    runner: CliRunner, tmp_path: Path, content: str | None, message: str
) -> None:
    path = tmp_path / "accounts.toml"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    result = runner.invoke(app, ["poll", "-a", str(path), "--once", "--no-live"], env={})
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output


def test_accounts_file_keeps_keys_out_of_errors(tmp_path: Path) -> None:
    path = tmp_path / "a.toml"
    path.write_text(
        "[[account]]\nname='a'\nbase_url='https://x'\napi_key='top-secret'\nformat='csv'"
    )
    with pytest.raises(ConfigError) as caught:
        load_accounts(path, environ={})
    assert "top-secret" not in str(caught.value)


def test_a_key_given_as_its_variables_name_is_not_repeated(tmp_path: Path) -> None:
    path = tmp_path / "a.toml"
    path.write_text("[[account]]\nname='a'\nbase_url='https://x'\napi_key_env='sk-live-0123abc'")
    with pytest.raises(ConfigError, match="must name an environment variable") as caught:
        load_accounts(path, environ={})
    assert "sk-live-0123abc" not in str(caught.value)


def test_poll_with_a_store_that_cannot_be_opened_exits_2(
    runner: CliRunner, server: FakeServer, tmp_path: Path
) -> None:
    accounts = write_accounts(tmp_path / "accounts.toml", server)
    store = tmp_path / "no-such-directory" / "s.db"
    result = runner.invoke(
        app,
        ["poll", "-a", str(accounts), "--store", str(store), "--once", "--no-live"],
        env={"ACME_KEY": KEY},
    )
    assert result.exit_code == 2, result.output
    assert "cannot open the store" in result.output
    assert "Traceback" not in result.output


def test_poll_once_reports_a_failing_account_with_exit_4(
    runner: CliRunner, server: FakeServer, tmp_path: Path
) -> None:
    accounts = write_accounts(tmp_path / "accounts.toml", server)
    result = runner.invoke(
        app,
        ["poll", "-a", str(accounts), "--store", str(tmp_path / "s.db"), "--once", "--no-live"],
        env={"ACME_KEY": "revoked"},
    )
    assert result.exit_code == 4
    assert "acme" in result.output
    assert "revoked" not in result.output


async def test_demo_checks_the_archive_against_the_ground_truth() -> None:
    report = await run_demo(3.0, interval=0.5)
    assert report.ok, report
    assert report.logs > 500  # the backfill of four accounts, plus traffic
    assert report.archived == report.logs
    assert report.deliveries >= report.logs
    assert report.new == report.logs  # each log once as new, then as changed
    assert report.new + report.changed == report.deliveries
    # Both sources delivered final states, each once: the logs made up for the lost reports.
    assert report.final_by_report > 0
    assert report.final_by_report + report.final_by_log == report.logs
    # The pulling account's reports were pulled, and delivered: each pulled report's
    # final state reached the handler from that report, or earlier from the logs.
    assert report.reports_pulled > 0
    assert 0 < report.final_by_pull <= report.reports_pulled
    assert report.final_by_report - report.final_by_pull > 0  # pushed ones too
    assert report.reported_calls > 0
    assert report.lost_found == report.reports_lost
    assert report.doubled == report.regressed == report.final_missing == 0


async def test_demo_fails_its_check_when_a_lost_report_is_never_found(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The check can fail: with a reconciliation interval longer than the run and no last
    cycle, the logs never look again, and the reports the way lost stay missing."""
    from infobip_voicelogs.cli import demo as demo_module

    async def no_last_cycle(fake: FakeInfobip, clock: FakeClock, pushers: Any, _: Any) -> None:
        for account in fake.accounts.values():
            account.stop_traffic()
        clock.advance(demo_module.SETTLE + timedelta(seconds=15))
        for pusher in pushers:
            await pusher.step()

    monkeypatch.setattr(demo_module, "_settle", no_last_cycle)
    report = await run_demo(3.0, interval=0.5, reconcile=3600)
    assert report.reports_lost > 0
    assert report.lost_found < report.reports_lost
    assert report.final_missing > 0
    assert not report.ok


def test_the_live_table_keeps_every_header_whole_in_80_columns(runner: CliRunner) -> None:
    narrow = {"COLUMNS": "80", "TERMINAL_WIDTH": "80"}
    result = runner.invoke(app, ["demo", "--seconds", "1", "--interval", "0.5"], env=narrow)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    [header] = [line for line in lines if line.strip("┃ ").startswith("account ")]
    assert header.replace("┃", " ").split() == [
        *("account", "polled", "new", "changed", "requests", "retries", "429s"),
        *("reports", "state"),
    ]
    table = [line for line in lines if any(edge in line for edge in "│┃━")]
    assert len(table) > 4
    assert max(len(line) for line in table) <= 80


def test_status_lines_stay_whole_when_stderr_is_a_file(tmp_path: Path) -> None:
    """Rich wraps at 80 columns when its stream is no terminal: the CLI's status lines must
    not, so that a log file or a CI log keeps each one on one line."""
    command = [sys.executable, "-c", "from infobip_voicelogs.cli import main; main()"]
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "TERMINAL_WIDTH")}
    env["PYTHONPATH"] = str(Path(__file__).parents[1])
    log = tmp_path / "stderr.log"
    with log.open("w") as stderr:
        done = subprocess.run(
            [*command, "demo", "--seconds", "1", "--interval", "0.5"],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            env=env,
            timeout=120,
        )
    lines = log.read_text().splitlines()
    assert done.returncode == 0, lines
    [settled] = [line for line in lines if "calls settled while" in line]
    assert len(settled) > 80
    assert settled.endswith("of them."), lines
    [verdict] = [line for line in lines if "check passed" in line]
    assert verdict.endswith("every final state delivered once."), lines


def test_demo_command(runner: CliRunner) -> None:
    result = runner.invoke(app, ["demo", "--seconds", "2", "--interval", "0.5"])
    assert result.exit_code == 0, result.output
    assert "check passed" in result.output
    # Deliveries count changes too; the archive counts distinct logs: the verdict says so.
    assert re.search(r"\d+ deliveries: \d+ new logs and \d+ changes", result.output)
    assert re.search(r"The archive holds \d+ distinct logs", result.output)
    verdict = re.search(
        r"check passed: (\d+) final states by pushed report, (\d+) by pulled report, "
        r"(\d+) by the logs; missing 0, doubled 0, regressed 0, extra 0",
        " ".join(result.output.split()),
    )
    assert verdict is not None, result.output
    assert all(int(count) > 0 for count in verdict.groups())
    text = " ".join(result.output.split())
    lost = re.search(r"lost (\d+) reports, and the logs found (\d+) of them", text)
    assert lost is not None
    assert lost[1] == lost[2]
    # The table's per-account "lost" is an upper bound of what the way lost: it says so.
    bound = re.search(r'The table\'s "lost" \((\d+) in all\) .* an upper bound', text)
    assert bound is not None, result.output
    assert int(bound[1]) >= int(lost[1])


def test_simulate_serves_the_fake_over_http() -> None:
    command = [sys.executable, "-c", "from infobip_voicelogs.cli import main; main()"]
    process = subprocess.Popen(
        [*command, "simulate", "--port", "0", "--accounts", "2", "--backlog", "30", "--rate", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])},
    )
    try:
        assert process.stdout is not None
        lines = [process.stdout.readline() for _ in range(2)]
        names, base_urls, keys = zip(
            *(line.rstrip("\n").split("\t") for line in lines), strict=True
        )
        assert names == ("account-1", "account-2")
        assert base_urls[0].startswith("http://127.0.0.1:")
        response = httpx.get(
            f"{base_urls[0]}/tts/3/logs",
            headers={"Authorization": f"App {keys[1]}"},
            params={"limit": 100},
        )
        assert response.status_code == 200
        assert len(decode_logs(response.content, response.headers["content-type"])) == 30
    finally:
        process.terminate()
        process.wait(10)


def test_when_parsing_accepts_spans_and_refuses_naive_times() -> None:
    from infobip_voicelogs.cli.common import parse_when

    now = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
    assert parse_when("2h", option="--since", now=now) == now - timedelta(hours=2)
    assert parse_when("now", option="--since", now=now) == now
    assert parse_when("2026-11-27T10:00:00Z", option="--since", now=now).utcoffset() == timedelta(0)
    with pytest.raises(Exception, match="no timezone"):
        parse_when("2026-11-27T10:00:00", option="--since", now=now)


def test_spans_for_interval_backfill_and_revisit() -> None:
    from infobip_voicelogs.cli.common import parse_span

    assert parse_span("90", option="--interval") == timedelta(seconds=90)
    assert parse_span("30m", option="--revisit") == timedelta(minutes=30)
    assert parse_span("1.5h", option="--backfill") == timedelta(hours=1.5)
    for bad in ("-5s", "inf", "soon", ""):
        with pytest.raises(Exception, match="not a duration"):
            parse_span(bad, option="--interval")


def test_poll_refuses_a_bad_interval_with_exit_2(runner: CliRunner, tmp_path: Path) -> None:
    path = tmp_path / "a.toml"
    path.write_text("[[account]]\nname='a'\nbase_url='https://x.test'\napi_key='k'\n")
    result = runner.invoke(app, ["poll", "-a", str(path), "--interval", "soon", "--no-live"])
    assert result.exit_code == 2
    assert "not a duration" in result.output


def checkpoints(store_path: Path) -> dict[str, datetime]:
    async def read() -> dict[str, datetime]:
        async with SqliteStore(store_path) as store:
            return await store.accounts()

    return asyncio.run(read())


@pytest.mark.parametrize(
    ("signals", "grace", "code"),
    [
        ([signal.SIGTERM], "0.2", 143),  # the grace runs out, then the handler is cancelled
        ([signal.SIGINT, signal.SIGINT], "3600", 130),  # the second Ctrl-C does not wait
    ],
    ids=["sigterm", "second-ctrl-c"],
)
def test_poll_exits_on_signals_while_its_output_is_stuck(
    server: FakeServer,
    fake: FakeInfobip,
    tmp_path: Path,
    signals: list[signal.Signals],
    grace: str,
    code: int,
) -> None:
    accounts = write_accounts(tmp_path / "accounts.toml", server)
    store_path = tmp_path / "logs.db"
    command = [sys.executable, "-c", "from infobip_voicelogs.cli import main; main()"]
    args = ["poll", "-a", str(accounts), "--store", str(store_path), "--no-live"]
    env = {**os.environ, "ACME_KEY": KEY, "PYTHONPATH": str(Path(__file__).parents[1])}
    # Nobody reads stdout past its first line: acme's batch (320 logs) fills the pipe and
    # its handler call never returns, as with a downstream that hangs.
    process = subprocess.Popen(
        [*command, *args, "--format", "ndjson", "--grace", grace],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().startswith(b'{"account":')
        for number in signals:
            time.sleep(0.5)  # pacing only: two signals sent at once may arrive as one
            process.send_signal(number)
        assert process.wait(60) == code  # bounded: no hang, whatever the handler does
        assert process.stderr is not None
        stderr = process.stderr.read().decode()
    finally:
        process.kill()
        process.wait()
    if code == 143:  # the cut cycle is logged, without a next attempt that will not come
        assert "the poller shut down before the cycle finished" in stderr
    assert "next attempt" not in stderr
    assert "acme" not in checkpoints(store_path)  # its batch was never committed...

    again = subprocess.run(
        [*command, *args, "--once", "--format", "ndjson"],
        capture_output=True,
        env=env,
        timeout=120,
        check=True,
    )
    lines = [orjson.loads(line) for line in again.stdout.splitlines()]
    acme = {line["messageId"] for line in lines if line["account"] == "acme"}
    assert acme == {log.message_id for log in fake.accounts["acme"].logs}  # ...so offered again


def test_a_second_poll_on_one_sqlite_file_delivers_nothing_and_takes_over_after_a_sigkill(
    tmp_path: Path,
) -> None:
    fake = FakeInfobip(clock=FakeClock(), rate_limit_per_minute=10_000, seed=11)
    acme = fake.add_account("acme", api_key=KEY)
    first_logs = {log.message_id for log in acme.generate(60, settle_after=timedelta(0))}
    command = [sys.executable, "-c", "from infobip_voicelogs.cli import main; main()"]
    env = {**os.environ, "ACME_KEY": KEY, "PYTHONPATH": str(Path(__file__).parents[1])}
    processes: list[subprocess.Popen[bytes]] = []
    lines: list[queue.SimpleQueue[tuple[str, dict[str, Any]] | None]] = []

    def start(name: str, server: FakeServer) -> subprocess.Popen[bytes]:
        accounts = tmp_path / "accounts.toml"
        accounts.write_text(
            f'[[account]]\nname = "acme"\nbase_url = "{server.base_url}"\n'
            'api_key_env = "ACME_KEY"\n',
            encoding="utf-8",
        )
        args = ["poll", "-a", str(accounts), "--store", str(tmp_path / "one.db")]
        process = subprocess.Popen(
            [*command, *args, "--no-live", "--format", "ndjson", "--interval", "1s"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        taken: queue.SimpleQueue[tuple[str, dict[str, Any]] | None] = queue.SimpleQueue()

        def read() -> None:
            assert process.stdout is not None
            for line in process.stdout:
                taken.put((name, orjson.loads(line)))
            taken.put(None)

        threading.Thread(target=read, daemon=True).start()
        processes.append(process)
        lines.append(taken)
        return process

    def take(source: queue.SimpleQueue[tuple[str, dict[str, Any]] | None], n: int) -> set[str]:
        ids = set()
        for _ in range(n):
            item = source.get(timeout=60)
            assert item is not None, "the poller ended early"
            ids.add(item[1]["messageId"])
        return ids

    with fake_in_a_thread(fake) as server:
        try:
            first = start("first", server)
            assert take(lines[0], len(first_logs)) == first_logs
            second = start("second", server)
            # The second is refused while the first holds the file, and says so.
            assert second.stderr is not None
            os.set_blocking(second.stderr.fileno(), False)
            said = b""
            deadline = time.monotonic() + 60
            while b"another poller" not in said and time.monotonic() < deadline:
                time.sleep(0.2)
                said += second.stderr.read() or b""
            assert f"another poller (pid {first.pid})".encode() in said
            assert lines[1].empty()  # it delivered nothing
            # A one-off run meanwhile polls nothing either, and fails saying why.
            args = ["poll", "-a", str(tmp_path / "accounts.toml")]
            args += ["--store", str(tmp_path / "one.db"), "--once", "--no-live"]
            once = subprocess.run(
                [*command, *args, "--format", "ndjson"],
                capture_output=True,
                env=env,
                timeout=60,
            )
            assert once.returncode == 4, once.stderr
            assert once.stdout == b""
            assert f"another poller (pid {first.pid})" in once.stderr.decode()
            assert "accounts failing: acme" in once.stderr.decode()
            first.send_signal(signal.SIGKILL)
            first.wait(10)
            news = {log.message_id for log in acme.generate(20, within=timedelta(seconds=30))}
            # The second takes over the file and delivers what is new, and only that.
            assert take(lines[1], len(news)) == news
            time.sleep(2.5)  # two more cycles: nothing of the first one's comes again
            assert lines[1].empty()
        finally:
            for process in processes:
                process.kill()
                process.wait()


@pytest.mark.postgres
def test_poll_once_into_postgres_from_the_environment(
    runner: CliRunner, server: FakeServer, fake: FakeInfobip, tmp_path: Path, postgres_dsn: str
) -> None:
    accounts = write_accounts(tmp_path / "accounts.toml", server)
    args = ["poll", "-a", str(accounts), "--once", "--no-live", "--format", "ndjson"]
    env = {"ACME_KEY": KEY, "INFOBIP_STORE_URL": postgres_dsn}
    result = runner.invoke(app, args, env=env)
    assert result.exit_code == 0, result.output
    lines = [orjson.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    truth = {
        (name, log.message_id) for name in ("acme", "globex") for log in fake.accounts[name].logs
    }
    assert {(line["account"], line["messageId"]) for line in lines} == truth

    async def archived() -> set[tuple[str, str | None]]:
        from infobip_voicelogs.postgres import PostgresStore

        async with PostgresStore(postgres_dsn) as store:
            return {
                (name, log.message_id)
                for name in ("acme", "globex")
                for log in await store.archived(name)
            }

    assert asyncio.run(archived()) == truth
    again = runner.invoke(app, args, env=env)
    assert again.exit_code == 0, again.output
    assert not [line for line in again.stdout.splitlines() if line.startswith("{")]


def test_poll_with_an_unreachable_postgres_exits_2_without_its_password(
    runner: CliRunner, server: FakeServer, tmp_path: Path
) -> None:
    pytest.importorskip("psycopg")
    accounts = write_accounts(tmp_path / "accounts.toml", server)
    url = "postgresql://voicelogs:hunter2-secret@127.0.0.1:9/voicelogs?connect_timeout=2"
    result = runner.invoke(
        app,
        ["poll", "-a", str(accounts), "--store", url, "--once", "--no-live"],
        env={"ACME_KEY": KEY},
    )
    assert result.exit_code == 2, result.output
    assert "hunter2-secret" not in result.output


def test_poll_serves_metrics_and_health_then_stops_on_sigterm(
    server: FakeServer, tmp_path: Path
) -> None:
    pytest.importorskip("opentelemetry.exporter.prometheus")
    accounts = write_accounts(tmp_path / "accounts.toml", server)
    command = [sys.executable, "-c", "from infobip_voicelogs.cli import main; main()"]
    args = ["poll", "-a", str(accounts), "--store", str(tmp_path / "logs.db"), "--no-live"]
    env = {**os.environ, "ACME_KEY": KEY, "PYTHONPATH": str(Path(__file__).parents[1])}
    process = subprocess.Popen(
        [*command, *args, "--metrics-port", "0", "--interval", "1s"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )
    try:
        assert process.stderr is not None
        line = process.stderr.readline()
        assert "/metrics and /healthz on http://127.0.0.1:" in line, line
        base = line.split(" on ", 1)[1].strip()
        for _ in range(100):  # until both accounts have had a cycle
            health = httpx.get(f"{base}/healthz", timeout=5)
            metrics = httpx.get(f"{base}/metrics", timeout=5).text
            if health.status_code == 200 and "infobip_voicelogs_poll_delivered" in metrics:
                break
            time.sleep(0.2)
        assert health.status_code == 200, health.text
        assert "infobip_voicelogs_poll_delivered" in metrics
        assert 'service_name="infobip-voicelogs"' in metrics  # the CLI's resource
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 143
    finally:
        process.kill()
        process.wait()


@pytest.mark.redis
def test_poll_and_fetch_share_each_accounts_rate_through_redis(
    runner: CliRunner, server: FakeServer, fake: FakeInfobip, tmp_path: Path, redis_server: Any
) -> None:
    import redis

    from infobip_voicelogs.redis import bucket_key

    accounts = write_accounts(tmp_path / "accounts.toml", server)
    env = {"ACME_KEY": KEY, "INFOBIP_REDIS_URL": redis_server.url}
    args = ["poll", "-a", str(accounts), "--store", str(tmp_path / "logs.db"), "--once"]
    result = runner.invoke(app, [*args, "--no-live", "--format", "ndjson"], env=env)
    assert result.exit_code == 0, result.output
    client = redis.Redis.from_url(redis_server.url)
    stored = {key.decode() for key in client.keys("infobip-voicelogs:*")}
    # Keyed by where and with what each account is reached, never by its name in the file.
    for name in ("acme", "globex"):
        key = bucket_key(server.base_url, fake.accounts[name].api_key)
        assert any(key in item for item in stored), (key, stored)
    assert not any(secret in "".join(stored) for secret in (KEY, "globex-key"))

    fetched = runner.invoke(
        app,
        ["fetch", "--base-url", server.base_url, "--format", "ndjson", "--redis", redis_server.url],
        env={"INFOBIP_API_KEY": KEY},
    )
    assert fetched.exit_code == 0, fetched.output
    assert len(parse_ndjson(fetched.stdout)) == 50  # the provider's default page
    client.close()


# -- what a newcomer types: store strings, URLs, help, flags -------------------------------


@pytest.mark.parametrize(
    ("spec", "target"),
    [
        ("host=db dbname=v password=s3cret-pw", "host=db dbname=v password=s3cret-pw"),
        ("postgresql+psycopg://u:s3cret-pw@db:5432/v", "postgresql://u:s3cret-pw@db:5432/v"),
        ("postgres://u@db/v?password=s3cret-pw", "postgresql://u@db/v?password=s3cret-pw"),
        ("postgresql://u:s3cret-pw@db/v?password=s3cret-pw", None),
    ],
)
def test_store_strings_are_read_by_psycopg_and_shown_without_the_password(
    spec: str, target: str | None
) -> None:
    pytest.importorskip("psycopg")
    from infobip_voicelogs.cli.backends import parse_store

    store = parse_store(spec)
    assert store.kind == "postgres"
    assert target is None or store.target == target
    assert "s3cret-pw" not in store.shown
    assert "s3cret-pw" not in repr(store)
    assert "password=***" in store.shown
    assert "host=db" in store.shown


@pytest.mark.parametrize("path", ["voicelogs.db", "/data/a=b/voicelogs.db", "C:\\logs\\v.db"])
def test_a_file_name_is_a_sqlite_store(path: str) -> None:
    from infobip_voicelogs.cli.backends import parse_store

    assert parse_store(path).kind == "sqlite"
    assert parse_store(path).target == path


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("dbname=v passwd=hunter2-secret", "libpq cannot read it"),
        ("voicelogs.db mode=rw", "libpq cannot read it"),
        ("mysql://u:hunter2-secret@db/v", "--store: mysql:// is no store"),
        ("sqlite:///voicelogs.db", "--store: sqlite:// is no store"),
    ],
)
def test_poll_refuses_a_store_that_looks_like_a_connection_string(
    runner: CliRunner,
    server: FakeServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    spec: str,
    message: str,
) -> None:
    pytest.importorskip("psycopg")
    accounts = write_accounts(tmp_path / "accounts.toml", server)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    result = runner.invoke(
        app,
        ["poll", "-a", str(accounts), "--store", spec, "--once", "--no-live"],
        env={"ACME_KEY": KEY},
    )
    assert os.listdir(cwd) == []  # no SQLite file made of it
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "hunter2-secret" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def cli_in_a_subprocess(args: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    """The command in a process of its own: its real stderr, logging and warnings."""
    return subprocess.run(
        [sys.executable, "-c", "from infobip_voicelogs.cli import main; main()", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env, "PYTHONPATH": str(Path(__file__).parents[1])},
        timeout=60,
    )


def test_an_unreachable_postgres_store_is_one_line_without_pool_warnings(
    server: FakeServer, tmp_path: Path
) -> None:
    pytest.importorskip("psycopg")
    accounts = write_accounts(tmp_path / "accounts.toml", server)
    store = "host=127.0.0.1 port=9 dbname=voicelogs user=v password=hunter2-secret"
    done = cli_in_a_subprocess(
        ["poll", "-a", str(accounts), "--store", store, "--once", "--no-live"], ACME_KEY=KEY
    )
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2, done.stderr
    assert len(lines) == 1, done.stderr
    assert "cannot" in lines[0]
    assert "host=127.0.0.1 port=9" in lines[0]
    assert "refused" in lines[0].lower()  # the last connection attempt's cause
    assert "psycopg.pool" not in done.stderr
    assert "hunter2-secret" not in done.stderr + done.stdout


@pytest.mark.parametrize("command", ["fetch", "poll"])
@pytest.mark.parametrize(
    "url", ["localhost:6379", "http://127.0.0.1:6379", "redis://", "redis://h:99999", "unix://"]
)
def test_a_redis_url_without_a_redis_scheme_is_one_line_and_exit_2(
    runner: CliRunner, server: FakeServer, tmp_path: Path, command: str, url: str
) -> None:
    accounts = write_accounts(tmp_path / "accounts.toml", server)
    args = {
        "fetch": ["fetch", "--base-url", server.base_url, "--api-key", KEY],
        "poll": ["poll", "-a", str(accounts), "--store", str(tmp_path / "s.db"), "--once"],
    }[command]
    result = runner.invoke(app, [*args, "--redis", url], env={"ACME_KEY": KEY})
    assert result.exit_code == 2, result.output
    assert result.output.strip().splitlines() == [
        "error: --redis must be a Redis URL: redis://host:port/db, rediss://host:port/db (TLS) "
        "or unix:///path/to/redis.sock"
    ]


def test_redis_urls_that_redis_py_takes_are_accepted() -> None:
    from infobip_voicelogs.cli.backends import check_redis_url

    for url in ("redis://127.0.0.1:6379/0", "rediss://:pw@cache.internal", "unix:///tmp/r.sock"):
        assert check_redis_url(url) == url


def test_redis_without_its_extra_names_the_pip_line(tmp_path: Path) -> None:
    code = (
        "import sys; sys.modules['redis'] = None\n"
        "from infobip_voicelogs.cli import main\n"
        "sys.argv = ['infobip-voicelogs', 'fetch', '--base-url', 'http://127.0.0.1:9',"
        " '--api-key', 'k', '--redis', 'redis://127.0.0.1:9']\n"
        "main()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])},
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert "pip install 'infobip-voicelogs[redis]'" in done.stderr
    assert "Traceback" not in done.stderr


def every_command() -> list[tuple[str, Any]]:
    """(name, click command) for the application and each of its commands."""
    import typer.main

    group = typer.main.get_command(app)
    commands = getattr(group, "commands", {})
    return [("", group), *sorted(commands.items())]


def test_every_help_text_prints_whole(runner: CliRunner) -> None:
    """No help text loses a word to markup (rich once ate `[[account]]`)."""
    for name, command in every_command():
        result = runner.invoke(app, [*([name] if name else []), "--help"])
        assert result.exit_code == 0, result.output
        shown = " ".join(result.output.split())
        texts = [command.help or "", command.epilog or ""]
        texts += [param.help or "" for param in command.params if hasattr(param, "help")]
        for text in texts:
            for word in text.replace("\b", " ").split():
                assert word in shown, (name, word, text)
    poll_help = runner.invoke(app, ["poll", "--help"]).output
    assert "one [[account]] table per account" in poll_help
    assert 'base_url = "https://xyz.api.infobip.com"' in poll_help  # the epilog's example


def test_docs_list_every_option_that_help_shows() -> None:
    text = (Path(__file__).parents[1] / "docs" / "cli.md").read_text(encoding="utf-8")
    missing = []
    for name, command in every_command():
        for param in command.params:
            for option in [*param.opts, *getattr(param, "secondary_opts", [])]:
                if option.startswith("--") and not re.search(
                    rf"[`/]{re.escape(option)}(?![\w-])", text
                ):
                    missing.append(f"{name or 'global'} {option}")
    assert missing == []


def test_version(runner: CliRunner) -> None:
    from infobip_voicelogs.__about__ import __version__

    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"infobip-voicelogs {__version__}"


def test_debug_after_the_command_works_too(runner: CliRunner, server: FakeServer) -> None:
    args = ["fetch", "--base-url", server.base_url, "--api-key", "wrong-secret", "--debug"]
    result = runner.invoke(app, args)
    assert result.exit_code == 3
    assert "Traceback" in result.output
    assert "wrong-secret" not in result.output


def test_http_to_a_remote_host_names_the_cli_flag(runner: CliRunner) -> None:
    result = runner.invoke(app, ["fetch", "--base-url", "http://example.com", "--api-key", "k"])
    assert result.exit_code == 2
    assert "--allow-insecure" in result.output
    assert "allow_insecure=True" not in result.output


def test_an_unreachable_base_url_says_each_retry_and_names_the_host(runner: CliRunner) -> None:
    import socket

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = runner.invoke(
        app, ["fetch", "--base-url", f"https://127.0.0.1:{port}", "--api-key", "s3cret-key"]
    )
    assert result.exit_code != 0
    lines = result.output.splitlines()
    retries = [line for line in lines if line.startswith("try ") and "retrying in" in line]
    assert len(retries) == 5, result.output  # six tries in all: each wait said as it starts
    assert all(f"127.0.0.1:{port}" in line for line in retries)
    assert f"could not connect to 127.0.0.1:{port}" in lines[-1]
    assert "s3cret" not in result.output


def test_a_walk_beyond_retention_warns_in_one_line(runner: CliRunner, server: FakeServer) -> None:
    args = ["fetch", "--base-url", server.base_url, "--api-key", KEY, "--since", "72h"]
    result = runner.invoke(
        app, [*args, "--limit", "3", "--format", "ndjson"], env={"COLUMNS": "80"}
    )
    assert result.exit_code == 0, result.output
    warned = [line for line in result.output.splitlines() if "retention" in line]
    assert len(warned) == 1, result.output
    assert warned[0].startswith("warning: sent_since")
    assert "RetentionWarning" not in result.output
    assert "warnings.warn" not in result.output  # no source line


def test_limit_bounds_a_walk_to_the_newest_logs(
    runner: CliRunner, server: FakeServer, fake: FakeInfobip
) -> None:
    now = fake.clock.now()
    since = now - timedelta(hours=4)
    args = ["fetch", "--base-url", server.base_url, "--api-key", KEY, "--format", "ndjson"]
    result = runner.invoke(
        app, [*args, "--since", since.isoformat(), "--until", now.isoformat(), "--limit", "7"]
    )
    assert result.exit_code == 0, result.output
    window = [log for log in fake.accounts["acme"].logs if log.sent_at and log.sent_at >= since]
    assert parse_ndjson(result.stdout) == window[:7]
    too_many = runner.invoke(app, [*args, "--limit", "5000"])
    assert too_many.exit_code == 2
    assert "--since" in too_many.output


def test_a_fetch_table_fits_an_80_column_terminal(runner: CliRunner, server: FakeServer) -> None:
    args = ["fetch", "--base-url", server.base_url, "--api-key", KEY, "--limit", "20"]
    result = runner.invoke(app, [*args, "--format", "table"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert "sent at (UTC)" in result.stdout
    assert "price" in result.stdout
    # One line per log: each row opens with its time (MM-DD HH:MM:SS), nothing folds.
    rows = [line for line in lines if re.match(r"^\s*\d\d-\d\d \d\d:\d\d:\d\d\s", line)]
    assert len(rows) == 20


def test_once_does_not_announce_a_next_attempt(server: FakeServer, tmp_path: Path) -> None:
    accounts = write_accounts(tmp_path / "accounts.toml", server)
    store = str(tmp_path / "s.db")
    done = cli_in_a_subprocess(
        ["poll", "-a", str(accounts), "--store", store, "--once", "--no-live"], ACME_KEY="revoked"
    )
    assert done.returncode == 4, done.stderr
    assert "account acme: cycle failed (AuthenticationError" in done.stderr
    assert "next attempt" not in done.stderr
    assert "revoked" not in done.stderr


def test_the_readme_installs_the_docs_extra_that_builds_the_docs() -> None:
    import tomllib

    root = Path(__file__).parents[1]
    project = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    docs = " ".join(project["optional-dependencies"]["docs"])
    assert "mkdocs-material" in docs
    assert "mkdocstrings[python]" in docs
    assert "pip install '.[docs]' && mkdocs serve" in (root / "README.md").read_text("utf-8")


@pytest.mark.postgres
@pytest.mark.parametrize("form", ["libpq", "sqlalchemy"])
def test_poll_into_postgres_named_by_a_libpq_string_or_a_sqlalchemy_url(
    runner: CliRunner,
    server: FakeServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    postgres_dsn: str,
    form: str,
) -> None:
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    fields = conninfo_to_dict(postgres_dsn)
    spec = {  # the cluster trusts local connections: the password is carried, never asked
        "libpq": make_conninfo("", **fields, password="hunter2-secret"),
        "sqlalchemy": postgres_dsn.replace("postgresql://", "postgresql+psycopg://", 1)
        + ("&" if "?" in postgres_dsn else "?")
        + "password=hunter2-secret",
    }[form]
    accounts = write_accounts(tmp_path / "accounts.toml", server)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    args = ["poll", "-a", str(accounts), "--store", spec, "--once", "--no-live"]
    result = runner.invoke(app, [*args, "--format", "ndjson"], env={"ACME_KEY": KEY})
    assert result.exit_code == 0, result.output
    assert os.listdir(cwd) == []  # into PostgreSQL, not into a file of that name
    assert "hunter2-secret" not in result.output
    assert "password=***" in result.output  # the closing line names the store, redacted


def _error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.strip()]


def test_fetch_refuses_a_key_with_a_trailing_space_in_one_line_without_showing_it(
    runner: CliRunner, server: FakeServer
) -> None:
    key = "cli-s3cret-key-0042 "
    result = runner.invoke(app, ["fetch", "--base-url", server.base_url, "--api-key", key])
    assert result.exit_code == 2
    assert _error_lines(result.output) == [
        "error: --api-key: key has leading or trailing whitespace, which a header cannot "
        "carry: strip it"
    ]
    assert key.strip() not in result.output


def test_fetch_refuses_a_base_url_with_a_path_saying_what_to_pass(runner: CliRunner) -> None:
    url = "https://xyz.api.infobip.com/tts/3/logs"
    result = runner.invoke(app, ["fetch", "--base-url", url, "--api-key", KEY])
    assert result.exit_code == 2
    assert _error_lines(result.output) == [
        "error: --base-url must not carry a path: pass the account's address alone, "
        "https://xyz.api.infobip.com"
    ]


def test_fetch_from_a_host_that_does_not_exist_is_one_try_and_one_line(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The resolver's answer for one name, injected where the OS gives it (no network needed).
    lookups: list[str] = []
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host in ("gone.api.infobip.com", b"gone.api.infobip.com"):  # anyio passes IDNA bytes
            lookups.append(host)
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    result = runner.invoke(
        app, ["fetch", "--base-url", "https://gone.api.infobip.com", "--api-key", KEY]
    )
    assert result.exit_code == 4
    assert len(lookups) == 1  # one try
    assert _error_lines(result.output) == [
        "error: TransportError: no such host gone.api.infobip.com: ConnectError: "
        "[Errno -2] Name or service not known"
    ]
