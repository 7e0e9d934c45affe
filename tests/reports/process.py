"""A receiver (`tests/reports/app.py`) as a real uvicorn process on a free loopback port."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
#: How long a receiver process may take to start answering, in real seconds.
START_TIMEOUT = 30.0


class ReceiverProcess:
    """``python -m uvicorn ... app:create`` (or another ``app``) with ``env``; `url` once it
    answers. A ``...:create`` app is a factory."""

    def __init__(
        self,
        port: int,
        env: Mapping[str, str],
        log: Path,
        *,
        app_dir: Path = ROOT / "tests" / "reports",
        app: str = "app:create",
    ) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self._log = log.open("ab")
        self.process = subprocess.Popen(
            [
                sys.executable, "-m", "uvicorn", "--app-dir", str(app_dir),
                *(["--factory"] if app.endswith(":create") else []), app,
                "--host", "127.0.0.1", "--port", str(port),
                "--log-level", "warning", "--no-access-log", "--lifespan", "on",
            ],
            env={**os.environ, "PYTHONPATH": str(ROOT), **env},
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip

    def wait_ready(self) -> None:
        """Until the port answers (any status), or raise with the process's log."""
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the receiver exited with {self.process.returncode}")
            with contextlib.suppress(httpx.TransportError):
                httpx.get(self.url + "/", timeout=1.0)
                return
            time.sleep(0.05)
        raise RuntimeError("the receiver did not start in time")

    def kill(self) -> None:
        """SIGKILL: no shutdown, no cleanup, as a crash."""
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it has not gone within ten seconds."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()


@contextlib.contextmanager
def receiver_process(port: int, env: Mapping[str, str], log: Path) -> Iterator[ReceiverProcess]:
    """A started receiver process, stopped at the end of the block."""
    receiver = ReceiverProcess(port, env, log)
    try:
        receiver.wait_ready()
        yield receiver
    finally:
        receiver.stop()


def read_record(path: Path) -> list[dict[str, str]]:
    """The handler's record: one dict per state handed over, in order."""
    import orjson

    if not path.exists():
        return []
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line]
