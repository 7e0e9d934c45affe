"""The pytest plugin: its fixtures work in a fresh pytest run, with or without uvicorn."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

USER_TESTS = textwrap.dedent(
    """
    import asyncio
    from datetime import timedelta

    from infobip_voicelogs.testing import Fault


    def test_fixtures_give_a_ready_fake(fake_infobip, fake_account, fake_clock):
        assert fake_infobip.clock is fake_clock
        assert fake_infobip.accounts == {"test": fake_account}
        assert fake_account.api_key == "test-api-key"


    def test_moving_the_clock_ages_logs_out(fake_account, fake_clock):
        fake_account.generate(10, within=timedelta(hours=1))
        fake_clock.advance(timedelta(hours=49))
        assert fake_account.logs == []


    def test_a_scripted_fault_over_the_in_process_client(fake_infobip, fake_account):
        fake_account.script(Fault.status(503))

        async def two_requests():
            async with fake_infobip.in_process_client(fake_account) as client:
                return [(await client.get("/tts/3/logs")).status_code for _ in range(2)]

        assert asyncio.run(two_requests()) == [503, 200]
    """
)

# Makes `import uvicorn` fail in the child, as on a machine without the extra.
WITHOUT_UVICORN = "import sys; sys.modules['uvicorn'] = None\n"
PROOF_OF_NO_UVICORN = textwrap.dedent(
    """
    import pytest


    def test_uvicorn_is_really_missing():
        with pytest.raises(ImportError):
            import uvicorn  # noqa: F401
    """
)


def plugin_installed() -> bool:
    return any(
        entry.value == "infobip_voicelogs.testing.plugin"
        for entry in importlib.metadata.entry_points(group="pytest11")
    )


def run_pytest(tmp_path: Path, *, hide_uvicorn: bool) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_user.py").write_text(USER_TESTS)
    (tmp_path / "sitecustomize.py").write_text(WITHOUT_UVICORN if hide_uvicorn else "")
    if hide_uvicorn:
        (tmp_path / "test_proof.py").write_text(PROOF_OF_NO_UVICORN)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO)])}
    # Installed, the package registers the plugin itself (the pytest11 entry point);
    # from a bare checkout the user would name it with -p.
    load = [] if plugin_installed() else ["-p", "infobip_voicelogs.testing.plugin"]
    command = [
        sys.executable,
        "-m",
        "pytest",
        *load,
        "-p",
        "no:cacheprovider",
        "-q",
        ".",
    ]
    return subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.mark.parametrize("hide_uvicorn", [False, True], ids=["with-uvicorn", "without-uvicorn"])
def test_the_plugin_fixtures_work_in_a_users_suite(tmp_path: Path, hide_uvicorn: bool) -> None:
    result = run_pytest(tmp_path, hide_uvicorn=hide_uvicorn)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{4 if hide_uvicorn else 3} passed" in result.stdout


def test_loading_the_plugin_imports_no_uvicorn() -> None:
    code = "import sys, infobip_voicelogs.testing.plugin; print('uvicorn' in sys.modules)"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"
