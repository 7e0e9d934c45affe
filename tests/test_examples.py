"""Every script in examples/ runs, as a user would run it, and says what it should."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EXPECTED = {
    "fetch_window.py": ["newest:", "last 6 hours:", "DELIVERED"],
    "poll_to_archive.py": ["new or changed logs", "archive: eu-shop", "archive: us-clinic"],
    "web_backend.py": ["200 [", "400 {'error': 'limit: 5000 is outside 1..1000'}", "404 {"],
}


def test_every_example_is_checked() -> None:
    assert {path.name for path in (REPO / "examples").glob("*.py")} == set(EXPECTED)


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
