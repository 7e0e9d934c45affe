"""`poll --reports-port`: the receiver served by the poll process, over real HTTP."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import attrs
import httpx
import orjson
import pytest
from conftest import fake_in_a_thread
from typer.testing import CliRunner

from infobip_voicelogs import Price, Status
from infobip_voicelogs.cli.app import app
from infobip_voicelogs.reports import VoiceCall, VoiceReport, encode_reports
from infobip_voicelogs.testing import FakeClock, FakeInfobip, FakeServer, PushBasic, PushHmac

KEY = "cli-reports-key"
PASSWORD = "hunter2-reports-password"
SECRET = "hunter2-reports-secret"
ROOT = Path(__file__).parents[1]


@pytest.fixture(scope="module")
def server() -> Iterator[FakeServer]:
    fake = FakeInfobip(clock=FakeClock(), rate_limit_per_minute=10_000, seed=11)
    fake.add_account("acme", api_key=KEY).generate(
        20, within=timedelta(hours=1), settle_after=timedelta(0)
    )
    with fake_in_a_thread(fake) as served:
        yield served


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner(env={"COLUMNS": "250", "TERMINAL_WIDTH": "250"})


def accounts_file(tmp_path: Path, server: FakeServer) -> Path:
    path = tmp_path / "accounts.toml"
    path.write_text(
        f'[[account]]\nname = "acme"\nbase_url = "{server.base_url}"\napi_key_env = "ACME_KEY"\n',
        encoding="utf-8",
    )
    return path


def a_report(message_id: str) -> VoiceReport:
    """A report of a call the logs do not have: new to the store, so it is delivered."""
    sent = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
    return VoiceReport(
        bulk_id="b-1",
        message_id=message_id,
        from_="41793026700",
        to="41793026727",
        sent_at=sent,
        callback_data=f"order:{message_id}",
        voice_call=VoiceCall(
            start_time=sent, end_time=sent + timedelta(seconds=9), duration=9, feature="TTS"
        ),
        price=Price(Decimal("0.010"), "EUR"),
        status=Status(3, "DELIVERED", 5, "DELIVERED_TO_HANDSET", "Message delivered"),
    )


class Poll:
    """A `poll --reports-port 0` process: `base` is its receiver's `http://h:p/reports`."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        command = [sys.executable, "-c", "from infobip_voicelogs.cli import main; main()"]
        self.process = subprocess.Popen(
            [*command, "poll", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(ROOT), **env},
            text=True,
        )
        assert self.process.stderr is not None
        self.stderr = []
        for _ in range(20):  # the receiver's line, after any warning
            line = self.process.stderr.readline()
            self.stderr.append(line)
            if "delivery reports on POST " in line or not line:
                break
        assert "delivery reports on POST http://127.0.0.1:" in line, self.stderr
        self.base = line.split("POST ", 1)[1].strip().removesuffix("/{account}")

    def stop(self) -> tuple[int, str, str]:
        self.process.send_signal(signal.SIGTERM)
        out, err = self.process.communicate(timeout=60)
        return self.process.returncode, out, "".join(self.stderr) + err


@pytest.fixture
def polls() -> Iterator[list[Poll]]:
    started: list[Poll] = []
    yield started
    for poll in started:
        if poll.process.poll() is None:
            poll.process.kill()
            poll.process.wait()


def start(polls: list[Poll], tmp_path: Path, server: FakeServer, *extra: str, **env: str) -> Poll:
    args = ["-a", str(accounts_file(tmp_path, server)), "--store", str(tmp_path / "s.db")]
    args += ["--no-live", "--format", "ndjson", "--interval", "1h", "--reports-port", "0"]
    poll = Poll([*args, *extra], {"ACME_KEY": KEY, **env})
    polls.append(poll)
    return poll


def post(url: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(url, content=body, headers={"Content-Type": "application/json", **headers})


def report_lines(stdout: str) -> list[dict[str, Any]]:
    lines = [orjson.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    return [line for line in lines if line["source"] == "report"]


def test_poll_receives_a_basic_authenticated_report_and_prints_it_as_ndjson(
    polls: list[Poll], server: FakeServer, tmp_path: Path
) -> None:
    poll = start(polls, tmp_path, server, "--reports-user", "ib", INFOBIP_REPORTS_PASSWORD=PASSWORD)
    body = encode_reports([a_report("r-basic-1")], "json")
    url = f"{poll.base}/acme"
    assert post(url, body, PushBasic("ib", "wrong").headers(body)).status_code == 401
    assert post(url, body, {}).status_code == 401
    answer = post(url, body, PushBasic("ib", PASSWORD).headers(body))
    assert answer.status_code == 200, answer.text
    assert post(url, body, PushBasic("ib", PASSWORD).headers(body)).status_code == 200  # again
    # An unknown name is told apart only to a client with the password.
    assert post(f"{poll.base}/nobody", body, {}).status_code == 401
    assert (
        post(f"{poll.base}/nobody", body, PushBasic("ib", PASSWORD).headers(body)).status_code
        == 404
    )
    code, out, err = poll.stop()
    assert code == 143, err
    (line,) = report_lines(out)  # delivered once: the redelivery and the refusals add none
    assert list(line)[:3] == ["account", "source", "bulkId"]
    assert line["account"] == "acme"
    assert line["source"] == "report"
    assert line["messageId"] == "r-basic-1"
    assert line["callbackData"] == "order:r-basic-1"
    assert line["voiceCall"]["duration"] == 9
    assert "startTime" in line["voiceCall"]
    # A price is a JSON number, digit for digit, in a report's line as in a log's.
    assert line["price"] == {"pricePerSecond": 0.01, "currency": "EUR"}
    assert '"price":{"pricePerSecond":0.010,"currency":"EUR"}' in out
    logs = [orjson.loads(x) for x in out.splitlines() if '"source":"log"' in x]
    assert len(logs) == 20
    assert {type(x["price"]["pricePerSecond"]) for x in logs if "price" in x} <= {int, float}
    assert all(list(x)[:2] == ["account", "source"] for x in logs)
    assert "20 logs and 1 reports delivered" in err
    assert PASSWORD not in out + err


def test_poll_receives_an_hmac_signed_report_and_counts_it_in_its_metrics(
    polls: list[Poll], server: FakeServer, tmp_path: Path
) -> None:
    pytest.importorskip("opentelemetry.exporter.prometheus")
    poll = start(
        polls,
        tmp_path,
        server,
        "--reports-hmac-header",
        "X-Hub-Signature",
        "--reports-hmac-alg",
        "sha512",
        "--metrics-port",
        "0",
        INFOBIP_REPORTS_SECRET=SECRET,
    )
    body = encode_reports([a_report("r-hmac-1")], "json")
    url = f"{poll.base}/acme"
    signer = PushHmac(SECRET, header="X-Hub-Signature", algorithm="sha512")
    wrong = PushHmac("not-the-secret", header="X-Hub-Signature", algorithm="sha512")
    assert post(url, body, wrong.headers(body)).status_code == 401
    assert post(url, body, signer.headers(b"another body")).status_code == 401
    assert post(url, body, signer.headers(body)).status_code == 200
    (shown,) = [line for line in poll.stderr if "/metrics and /healthz on " in line]
    metrics = httpx.get(f"{shown.split(' on ', 1)[1].strip()}/metrics", timeout=5).text
    assert "infobip_voicelogs_reports_rejected" in metrics  # the receiver's instruments
    assert "infobip_voicelogs_reports_received" in metrics
    assert SECRET not in metrics
    code, out, err = poll.stop()
    assert code == 143, err
    assert [line["messageId"] for line in report_lines(out)] == ["r-hmac-1"]
    assert SECRET not in out + err


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        ([], {}, "needs exactly one of --reports-user, --reports-hmac-header"),
        (
            ["--reports-user", "ib", "--reports-no-auth"],
            {},
            "(given: --reports-user, --reports-no-auth)",
        ),
        (["--reports-user", "ib"], {}, "INFOBIP_REPORTS_PASSWORD is not set"),
        (["--reports-hmac-header", "X-Sig"], {}, "INFOBIP_REPORTS_SECRET is not set"),
        (
            ["--reports-hmac-header", "X-Sig", "--reports-hmac-alg", "crc32"],
            {"INFOBIP_REPORTS_SECRET": SECRET},
            "--reports-hmac-alg: algorithm must be one of",
        ),
        (
            ["--reports-hmac-header", "X Sig"],
            {"INFOBIP_REPORTS_SECRET": SECRET},
            "--reports-hmac-header must be an HTTP header name",
        ),
        (["--reports-user", "a:b"], {"INFOBIP_REPORTS_PASSWORD": PASSWORD}, "without ':'"),
    ],
)
def test_reports_options_errors_are_one_line_and_exit_2(
    runner: CliRunner, tmp_path: Path, args: list[str], env: dict[str, str], message: str
) -> None:
    accounts = tmp_path / "a.toml"
    accounts.write_text('[[account]]\nname = "a"\nbase_url = "http://127.0.0.1:9"\napi_key = "k"\n')
    result = runner.invoke(
        app,
        [
            "poll",
            "-a",
            str(accounts),
            "--store",
            str(tmp_path / "s.db"),
            "--reports-port",
            "0",
            *args,
        ],
        env=env,
    )
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert len([line for line in result.output.splitlines() if line.strip()]) == 1
    assert SECRET not in result.output
    assert PASSWORD not in result.output
    assert not (tmp_path / "s.db").exists()  # refused before anything opened


def test_reports_auth_without_a_port_and_a_bad_reconcile_exit_2(
    runner: CliRunner, tmp_path: Path
) -> None:
    accounts = tmp_path / "a.toml"
    accounts.write_text('[[account]]\nname = "a"\nbase_url = "http://127.0.0.1:9"\napi_key = "k"\n')
    base = ["poll", "-a", str(accounts), "--store", str(tmp_path / "s.db")]
    result = runner.invoke(app, [*base, "--reports-no-auth"])
    assert result.exit_code == 2
    assert "need --reports-port" in result.output
    for bad in ("0", "soon"):
        result = runner.invoke(app, [*base, "--reconcile", bad])
        assert result.exit_code == 2, result.output
        assert "--reconcile" in result.output


def _declared_oversize(url: str) -> int:
    """The status of a POST that declares a 5 MiB body and sends none of it.

    The receiver answers 413 from the headers alone; a client still sending the body when
    the server closes could see a reset before the answer, so none is sent here.
    """
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    assert parts.hostname is not None
    assert parts.port is not None
    with socket.create_connection((parts.hostname, parts.port), timeout=5) as sock:
        sock.sendall(
            f"POST {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {5 * 1024 * 1024}\r\n\r\n".encode()
        )
        head = sock.recv(4096).decode("latin-1")
    return int(head.split(" ", 2)[1])


def test_poll_without_auth_takes_xml_in_the_flat_shape_and_refuses_bad_bodies(
    polls: list[Poll], server: FakeServer, tmp_path: Path
) -> None:
    poll = start(polls, tmp_path, server, "--reports-no-auth")
    url = f"{poll.base}/acme"
    flat = a_report("r-flat-1").in_shape("flat")
    body = encode_reports([flat], "xml")
    xml = {"Content-Type": "application/xml"}
    assert post(url, b"<reports><report><status>", xml).status_code == 400
    assert _declared_oversize(url) == 413
    assert post(url, body, {"Content-Type": "text/plain"}).status_code == 415
    assert post(url, body, xml).status_code == 200
    code, out, err = poll.stop()
    assert code == 143, err
    (line,) = report_lines(out)  # the refused bodies delivered nothing
    assert line["messageId"] == "r-flat-1"
    assert "voiceCall" not in line  # the flat shape, as it came
    assert line["duration"] == 9
    assert line["callbackData"] == "order:r-flat-1"


def test_a_report_shows_in_a_table_or_csv_through_the_fields_of_a_log() -> None:
    from infobip_voicelogs.cli.reports import as_log

    report = a_report("r-1")
    log = as_log(report)
    assert log.message_id == "r-1"
    assert log.status == report.status
    assert log.price == report.price
    assert log.duration == 9
    assert report.voice_call is not None
    assert log.done_at == report.voice_call.end_time
    assert as_log(report.in_shape("flat")) == attrs.evolve(log, from_=None)  # flat: no from
    assert as_log(log) is log
