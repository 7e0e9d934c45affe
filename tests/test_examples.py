"""Every script in examples/ runs, as a user would run it, and says what it should."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
EXPECTED = {
    "fetch_window.py": ["newest:", "last 6 hours:", "DELIVERED"],
    "poll_to_archive.py": ["new or changed logs", "archive: eu-shop", "archive: us-clinic"],
    "fastapi_backend.py": [
        "200 ['DELIVERED', 'DELIVERED', 'DELIVERED']",
        "422 {'detail': [{'loc': ['query', 'limit'], 'msg': 'limit: 5000 is outside 1..1000'",
        "404 {'detail': \"no account named 'nobody'\"}",
        "503 {'detail':",
        "Retry-After: 30",
    ],
}
#: Examples that run until told to stop, checked by their own tests below.
SERVICES = {"bot.py"}


def test_every_example_is_checked() -> None:
    assert {path.name for path in (REPO / "examples").glob("*.py")} == set(EXPECTED) | SERVICES


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_runs(name: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, str(REPO / "examples" / name)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    for expected in EXPECTED[name]:
        assert expected in result.stdout


# -- the FastAPI backend, through its ASGI app ----------------------------------------------


def _load(name: str) -> Any:
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        name.removesuffix(".py"), REPO / "examples" / name
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def test_fastapi_backend_shares_one_client_and_maps_errors() -> None:
    from datetime import timedelta

    import httpx

    from infobip_voicelogs.testing import IN_PROCESS_URL, FakeInfobip, Fault

    backend = _load("fastapi_backend.py")
    fake = FakeInfobip(seed=9)
    shop = fake.add_account("shop")
    shop.generate(30, within=timedelta(hours=1), settle_after=timedelta(0))
    made: list[httpx.AsyncClient] = []

    def client() -> httpx.AsyncClient:
        made.append(fake.in_process_client())
        return made[-1]

    app = backend.create_app(
        {"shop": (IN_PROCESS_URL, shop.api_key), "other": (IN_PROCESS_URL, "bad")},
        client=client,
        budget=0.5,
    )
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as web:
            ok = await web.get("/accounts/shop/logs", params={"limit": 7})
            naive = await web.get("/accounts/shop/logs", params={"since": "2026-01-01T00:00:00"})
            refused = await web.get("/accounts/other/logs")
            # Longer than the budget: passed on at once, and the account cools down 30 s...
            shop.script(Fault.status(429, retry_after=30))
            limited = await web.get("/accounts/shop/logs")
            tries = len(fake.requests(shop))
            # ...so the next request spends its budget waiting for the throttle: a 504.
            slow = await web.get("/accounts/shop/logs")
            assert len(fake.requests(shop)) == tries  # nothing was sent past the budget
    assert len(made) == 1  # one pool for every account and request
    assert made[0].is_closed  # ...closed by the lifespan
    assert ok.status_code == 200
    assert len(ok.json()["results"]) == 7
    assert naive.status_code == 422
    assert naive.json()["detail"][0]["loc"] == ["query", "sent_since"]
    assert refused.status_code == 502
    assert "bad" not in refused.text
    assert limited.status_code == 503
    assert limited.headers["retry-after"] == "30"
    assert slow.status_code == 504


async def test_fastapi_backend_serves_one_log_as_data() -> None:
    from datetime import timedelta

    import httpx

    from infobip_voicelogs.testing import IN_PROCESS_URL, FakeInfobip

    backend = _load("fastapi_backend.py")
    fake = FakeInfobip(seed=9)
    shop = fake.add_account("shop")
    shop.generate(10, within=timedelta(hours=1), settle_after=timedelta(0))
    app = backend.create_app(
        {"shop": (IN_PROCESS_URL, shop.api_key)}, client=fake.in_process_client
    )
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as web:
            page = (await web.get("/accounts/shop/logs")).json()["results"]
            priced = next(log for log in page if "price" in log)
            one = await web.get(f"/accounts/shop/logs/{priced['messageId']}")
            missing = await web.get("/accounts/shop/logs/no-such-id")
    assert one.status_code == 200
    # The provider's own shape, but the amount as exact text rather than a JSON number.
    served = one.json()
    text = served["price"].pop("pricePerSecond")
    assert isinstance(text, str)
    assert Decimal(text) == Decimal(str(priced["price"].pop("pricePerSecond")))
    assert served == priced
    assert missing.status_code == 404


@pytest.fixture
def redis_url(tmp_path: Path) -> Any:
    """A throwaway redis-server on a free 127.0.0.1 port (skipped without the binary)."""
    import shutil
    import socket
    import time

    binary = shutil.which("redis-server")
    if binary is None:
        if os.environ.get("CI") == "true":
            pytest.fail("redis-server is not installed")
        pytest.skip("redis-server is not installed")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(200):  # up to ~10 s for the server to accept connections
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                time.sleep(0.05)
        else:
            pytest.fail("redis-server did not start")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        server.terminate()
        server.wait(timeout=10)


async def test_fastapi_backend_shares_each_accounts_limit_through_redis(
    request: pytest.FixtureRequest,
) -> None:
    from datetime import timedelta

    import httpx

    from infobip_voicelogs.testing import IN_PROCESS_URL, FakeInfobip

    pytest.importorskip("infobip_voicelogs.redis", reason="RedisBucket has not landed yet")
    redis_url = request.getfixturevalue("redis_url")  # a server only when it will be used
    backend = _load("fastapi_backend.py")
    fake = FakeInfobip(seed=9)
    shop = fake.add_account("shop")
    shop.generate(10, within=timedelta(hours=1), settle_after=timedelta(0))
    app = backend.create_app(
        {"shop": (IN_PROCESS_URL, shop.api_key)},
        client=fake.in_process_client,
        redis_url=redis_url,
    )
    async with app.router.lifespan_context(app):
        assert type(app.state.fetchers["shop"].throttle).__name__ == "RedisBucket"
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as web:
            answers = [await web.get("/accounts/shop/logs") for _ in range(2)]
    assert [answer.status_code for answer in answers] == [200, 200]


# -- the bot, as a real process that receives SIGTERM ---------------------------------------


class Webhook:
    """A chat webhook on 127.0.0.1: records posts, answers slowly, fails the first ``fail``."""

    def __init__(self, *, delay: float, fail: int) -> None:
        self.delay = delay
        self.fail = fail
        self.posts: list[dict[str, str]] = []
        self.failed: list[dict[str, str]] = []
        self.in_flight = 0
        self.most_in_flight = 0
        self.arrived = asyncio.Event()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:  # keep-alive: httpx reuses the connection
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                body = json.loads(await reader.readexactly(length))
                self.in_flight += 1
                self.most_in_flight = max(self.most_in_flight, self.in_flight)
                await asyncio.sleep(self.delay)
                self.in_flight -= 1
                if self.fail > 0:
                    self.fail -= 1
                    self.failed.append(body)
                    writer.write(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n")
                else:
                    self.posts.append(body)
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                    if len(self.posts) >= 6:
                        self.arrived.set()
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


async def test_bot_posts_alerts_with_back_pressure_and_stops_on_sigterm() -> None:
    hook = Webhook(delay=0.2, fail=1)
    server = await asyncio.start_server(hook.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "WEBHOOK_URL": f"http://127.0.0.1:{port}/hook",
        "POLL_INTERVAL": "0.5",
        "BOT_CONCURRENCY": "2",
    }
    env.pop("INFOBIP_ACCOUNTS", None)
    bot = await asyncio.create_subprocess_exec(
        sys.executable,
        str(REPO / "examples" / "bot.py"),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(90):
            await hook.arrived.wait()
        bot.send_signal(signal.SIGTERM)
        async with asyncio.timeout(60):
            stdout, stderr = await bot.communicate()
    finally:
        if bot.returncode is None:
            bot.kill()
            await bot.wait()
        server.close()
        await server.wait_closed()
    assert bot.returncode == 0, stderr.decode()
    assert "stopped cleanly after posting" in stdout.decode()
    assert hook.most_in_flight <= 2  # back-pressure: never more posts than the bound
    texts = [post["text"] for post in hook.posts]
    assert all(
        any(word in text for word in ("UNDELIVERABLE", "REJECTED", "EXPIRED", "EC_"))
        for text in texts
    ), texts
    # The failed post's batch came again, so its alert was posted after all.
    assert hook.failed[0]["text"] in texts


# -- docs/testing.md: its pytest configuration and its tests run as a user would run them ---


def _blocks(text: str, language: str) -> list[str]:
    """The code blocks of ``language`` in a Markdown text, indented ones (in a list) too."""
    import re
    import textwrap

    pattern = rf"^( *)```{language}\n(.*?)^\1```"
    found = re.findall(pattern, text, flags=re.MULTILINE | re.DOTALL)
    return [textwrap.dedent(body) for _indent, body in found]


def test_the_testing_guides_tests_pass_quietly_under_its_own_config(tmp_path: Path) -> None:
    from importlib.metadata import entry_points

    guide = (REPO / "docs" / "testing.md").read_text()
    [config] = [block for block in _blocks(guide, "toml") if "asyncio_mode" in block]
    tests = [block for block in _blocks(guide, "python") if "def test_" in block]
    assert len(tests) >= 3  # the first test, over HTTP, and the instant 429
    (tmp_path / "pyproject.toml").write_text(config)
    for number, test in enumerate(tests):  # a file each: every block has its own imports
        (tmp_path / f"test_guide_{number}.py").write_text(test)
    # The fixtures come from the installed package's entry point, as they would for a user;
    # a source checkout without the install loads the plugin by hand, as the guide says.
    installed = any(e.name == "infobip_voicelogs" for e in entry_points(group="pytest11"))
    plugin = [] if installed else ["-p", "infobip_voicelogs.testing.plugin"]
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *plugin],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(tests)} passed" in result.stdout
    assert "warning" not in result.stdout.lower()  # the config is quiet
