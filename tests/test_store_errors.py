"""The store as an error boundary: real locks, full disks, read-only and corrupt files.

Every failure of SQLite comes out of `SqliteStore` as a `StoreError` that names the
operation, the file and the cause; a failed call changes nothing, and the store works
again once the cause is gone. Nothing here mocks sqlite3: the conditions are made for real
(another connection's lock, a tiny filesystem, a file-size limit, an unprivileged process,
garbage bytes), in child processes where only a process of its own can hold them.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from infobip_voicelogs import (
    Account,
    Delivered,
    LogsPoller,
    SqliteStore,
    StoreError,
    TokenBucket,
    VoiceLog,
)
from infobip_voicelogs.testing import FakeClock, FakeInfobip
from infobip_voicelogs.testing.fake import IN_PROCESS_URL

NOON = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
NOBODY = 65534  # the conventional unprivileged uid and gid
CHILD_TIMEOUT = 60.0  # seconds for one answer from a child process: generous, never reached


def batch(prefix: str, count: int, *, text_size: int = 20) -> list[Delivered]:
    """`count` logs to commit, each with `text_size` characters of text (to fill a disk)."""
    return [
        Delivered(
            VoiceLog(
                message_id=f"{prefix}-{i}",
                sent_at=NOON + timedelta(seconds=i),
                text="x" * text_size,
            ),
            fingerprint="f",
        )
        for i in range(count)
    ]


def assert_plain(error: StoreError, *words: str) -> None:
    """One line that says what failed and why, chained to sqlite3's own error."""
    message = str(error)
    assert "\n" not in message
    assert "Traceback" not in message
    for word in words:
        assert word in message, f"{word!r} is not in {message!r}"
    assert isinstance(error.__cause__, sqlite3.Error)


# -- a database locked by another connection ---------------------------------------------


async def test_a_write_lock_held_elsewhere_fails_the_commit_and_nothing_else(
    tmp_path: Path,
) -> None:
    path = tmp_path / "voicelogs.db"
    async with SqliteStore(path, busy_timeout=0.05) as store:
        await store.commit("eu-1", checkpoint=NOON, delivered=batch("a", 3))
        other = sqlite3.connect(path, isolation_level=None)
        try:
            other.execute("BEGIN EXCLUSIVE")
            later = NOON + timedelta(minutes=1)
            with pytest.raises(StoreError) as caught:
                await store.commit("eu-1", checkpoint=later, delivered=batch("b", 3))
            assert_plain(
                caught.value,
                "cannot commit 3 logs of 'eu-1' to the store at",
                str(path),
                "the database is locked by another connection (waited 0.05 s)",
                "SQLITE_BUSY",
            )
            # WAL mode: readers go on while another connection writes.
            assert await store.checkpoint("eu-1") == NOON
            with pytest.raises(StoreError, match=r"cannot prune the fingerprints in .*locked"):
                await store.prune(before=NOON + timedelta(days=3))
        finally:
            other.execute("ROLLBACK")
            other.close()

        await store.commit("eu-1", checkpoint=later, delivered=batch("b", 3))
        assert await store.checkpoint("eu-1") == later
        ids = [f"{p}-{i}" for p in "ab" for i in range(3)]
        assert len(await store.fingerprints("eu-1", ids)) == 6


async def test_a_store_first_opened_under_a_lock_opens_once_it_is_released(
    tmp_path: Path,
) -> None:
    path = tmp_path / "voicelogs.db"
    async with SqliteStore(path) as first:
        await first.commit("eu-1", checkpoint=NOON, delivered=[])
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN EXCLUSIVE")
        async with SqliteStore(path, busy_timeout=0.05) as store:
            with pytest.raises(StoreError) as caught:
                await store.accounts()
            assert_plain(caught.value, "cannot open the store at", "locked", "SQLITE_BUSY")
            other.execute("ROLLBACK")
            assert await store.accounts() == {"eu-1": NOON}
    finally:
        other.close()


# -- a corrupt file ---------------------------------------------------------------------


async def test_garbage_bytes_are_refused_at_open_and_a_good_file_is_then_used(
    tmp_path: Path,
) -> None:
    path = tmp_path / "voicelogs.db"
    path.write_bytes(random.Random(9).randbytes(16384))
    async with SqliteStore(path) as store:
        with pytest.raises(StoreError) as caught:
            await store.checkpoint("eu-1")
        assert_plain(
            caught.value,
            f"cannot open the store at {str(path)!r}",
            "the file is not a database or is corrupt",
            "SQLITE_NOTADB",
        )
        with pytest.raises(StoreError, match="not a database"):  # every call, not just one
            await store.commit("eu-1", checkpoint=NOON, delivered=[])
        assert path.read_bytes()[:16] != b"SQLite format 3\x00"  # the garbage stays as it was

        path.unlink()  # the operator moves the bad file away: a fresh store starts
        await store.commit("eu-1", checkpoint=NOON, delivered=batch("a", 2))
        assert await store.checkpoint("eu-1") == NOON


async def test_a_database_with_its_pages_overwritten_is_reported_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "voicelogs.db"
    async with SqliteStore(path, archive=True) as store:
        await store.commit("eu-1", checkpoint=NOON, delivered=batch("a", 200))
    with path.open("r+b") as file:  # keep the 100-byte header, scramble everything after it
        size = file.seek(0, os.SEEK_END)
        file.seek(100)
        file.write(random.Random(4).randbytes(size - 100))

    async with SqliteStore(path, archive=True) as store:
        with pytest.raises(StoreError) as caught:
            await store.archived("eu-1")
        assert_plain(caught.value, str(path), "the file is not a database or is corrupt")


# -- a full disk ------------------------------------------------------------------------


def _mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, capture_output=True, timeout=30)


def _unmount(directory: Path) -> None:
    done = subprocess.run(["umount", str(directory)], capture_output=True, timeout=30)
    if done.returncode:  # still busy: detach it now, the kernel frees it when unused
        subprocess.run(["umount", "-l", str(directory)], capture_output=True, timeout=30)


@functools.cache
def why_no_mount() -> str | None:
    """Why this machine cannot mount a filesystem for a test, or `None` when it can."""
    with tempfile.TemporaryDirectory() as directory:
        try:
            _mount("-t", "tmpfs", "-o", "size=64k", "tmpfs", directory)
        except (OSError, subprocess.CalledProcessError) as exc:
            detail = getattr(exc, "stderr", None) or str(exc)
            return f"cannot mount a filesystem here (needs root and CAP_SYS_ADMIN): {detail!r}"
        _unmount(Path(directory))
    return None


@contextlib.contextmanager
def mounted(directory: Path, *args: str) -> Iterator[Path]:
    """`mount *args directory`, undone after the block; skips when this machine cannot mount."""
    reason = why_no_mount()
    if reason is not None:
        pytest.skip(reason)
    directory.mkdir(exist_ok=True)
    _mount(*args, str(directory))
    try:
        yield directory
    finally:
        _unmount(directory)


def fill(directory: Path) -> Path:
    """Write a file into `directory` until its filesystem has no byte left."""
    filler = directory / "filler"
    with filler.open("wb", buffering=0) as file:
        with contextlib.suppress(OSError):  # ENOSPC: full, as wanted
            while True:
                file.write(b"\0" * 4096)
        with contextlib.suppress(OSError):
            while True:
                file.write(b"\0")
    return filler


async def test_a_full_disk_fails_the_commit_whole_and_the_next_one_succeeds(
    tmp_path: Path,
) -> None:
    with mounted(tmp_path / "disk", "-t", "tmpfs", "-o", "size=512k", "tmpfs") as disk:
        path = disk / "voicelogs.db"
        async with SqliteStore(path, archive=True) as store:
            await store.commit("eu-1", checkpoint=NOON, delivered=batch("a", 5))
            filler = fill(disk)
            later = NOON + timedelta(minutes=1)

            with pytest.raises(StoreError) as caught:
                await store.commit(
                    "eu-1", checkpoint=later, delivered=batch("b", 300, text_size=400)
                )
            assert_plain(
                caught.value,
                "cannot commit 300 logs of 'eu-1' to the store at",
                str(path),
                "the disk is full",
                "SQLITE_FULL",
            )
            assert await store.checkpoint("eu-1") == NOON  # nothing of the batch was written
            assert len(await store.archived("eu-1")) == 5

            filler.unlink()
            await store.commit("eu-1", checkpoint=later, delivered=batch("b", 300, text_size=400))
            assert await store.checkpoint("eu-1") == later
            assert len(await store.archived("eu-1")) == 305


# -- a child process that uses a store, for limits only a process of its own can have ------

_CHILD = r"""
import asyncio, json, os, resource, signal, sys
from datetime import datetime, timedelta, timezone
from infobip_voicelogs import Delivered, SqliteStore, StoreError, VoiceLog

NOON = datetime(2026, 11, 26, 12, 0, tzinfo=timezone.utc)
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # past the size limit: an error, not a kill

def batch(prefix, count, text_size):
    return [Delivered(VoiceLog(message_id=f"{prefix}-{i}", sent_at=NOON, text="x" * text_size),
                      fingerprint="f") for i in range(count)]

async def warm_up():  # every module the store will import, imported while we still may
    async with SqliteStore(":memory:", archive=True) as store:
        await store.commit("eu-1", checkpoint=NOON, delivered=batch("w", 1, 1))
        await store.checkpoint("eu-1"), await store.archived("eu-1")

if len(sys.argv) > 2:  # drop root only now: the interpreter lives where nobody may not read
    asyncio.run(warm_up())
    uid = int(sys.argv[2])
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)

async def main(path):
    async with SqliteStore(path, archive=True, busy_timeout=0.05) as store:
        for line in sys.stdin:
            command, *args = line.split()
            try:
                if command == "commit":
                    prefix, count, minutes, size = args[0], *map(int, args[1:])
                    await store.commit("eu-1", checkpoint=NOON + timedelta(minutes=minutes),
                                       delivered=batch(prefix, count, size))
                    answer = {"ok": None}
                elif command == "state":
                    checkpoint = await store.checkpoint("eu-1")
                    answer = {"ok": [None if checkpoint is None else checkpoint.isoformat(),
                                     len(await store.archived("eu-1"))]}
                elif command == "limit":
                    limit = (int(args[0]), resource.RLIM_INFINITY)
                    resource.setrlimit(resource.RLIMIT_FSIZE, limit)
                    answer = {"ok": None}
                elif command == "unlimit":
                    resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY,) * 2)
                    answer = {"ok": None}
            except StoreError as exc:
                cause = exc.__cause__
                answer = {"error": str(exc), "cause": type(cause).__name__,
                          "code": getattr(cause, "sqlite_errorname", None)}
            print(json.dumps(answer), flush=True)

asyncio.run(main(sys.argv[1]))
"""


class Child:
    """A process of its own that runs a `SqliteStore` on `path`, one command per line."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    @classmethod
    @contextlib.asynccontextmanager
    async def running(cls, path: Path, *, as_uid: int | None = None) -> AsyncIterator[Child]:
        """Start it on `path`, as the user `as_uid` once its imports are done, if given."""
        env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "HOME": str(path.parent)}
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _CHILD,
            str(path),
            *([] if as_uid is None else [str(as_uid)]),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
        try:
            yield cls(process)
            assert process.stdin is not None
            process.stdin.close()
            await asyncio.wait_for(process.wait(), CHILD_TIMEOUT)
            assert process.stderr is not None
            errors = (await process.stderr.read()).decode()
            assert process.returncode == 0, errors
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()

    async def ask(self, *command: object) -> dict[str, Any]:
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write((" ".join(map(str, command)) + "\n").encode())
        await self.process.stdin.drain()
        line = await asyncio.wait_for(self.process.stdout.readline(), CHILD_TIMEOUT)
        if not line:
            assert self.process.stderr is not None
            pytest.fail(f"the child died: {(await self.process.stderr.read()).decode()}")
        answer: dict[str, Any] = json.loads(line)
        return answer


async def test_a_file_size_limit_fails_the_commit_whole_and_the_next_one_succeeds(
    tmp_path: Path,
) -> None:
    path = tmp_path / "voicelogs.db"
    async with Child.running(path) as child:
        assert await child.ask("commit", "a", 5, 0, 20) == {"ok": None}
        await child.ask("limit", 256 * 1024)

        failed = await child.ask("commit", "b", 1000, 1, 400)
        assert failed["cause"] == "OperationalError"
        assert failed["code"].startswith("SQLITE_IOERR")
        assert "cannot commit 1000 logs of 'eu-1' to the store at" in failed["error"]
        assert "a file size limit" in failed["error"]
        assert "\n" not in failed["error"]
        assert await child.ask("state") == {"ok": [NOON.isoformat(), 5]}

        await child.ask("unlimit")
        assert await child.ask("commit", "b", 1000, 1, 400) == {"ok": None}
        assert await child.ask("state") == {"ok": [(NOON + timedelta(minutes=1)).isoformat(), 1005]}


# -- a read-only file -------------------------------------------------------------------


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory an unprivileged process can write in (pytest's own are private to us)."""
    directory = Path(tempfile.mkdtemp(prefix="voicelogs-ro-"))
    directory.chmod(0o777)
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


async def test_a_read_only_file_fails_writes_and_serves_reads(shared_dir: Path) -> None:
    path = shared_dir / "voicelogs.db"
    async with SqliteStore(path, archive=True) as store:
        await store.commit("eu-1", checkpoint=NOON, delivered=batch("a", 5))
    # Root ignores permission bits, so the store runs as nobody on a file that root owns.
    as_root = os.geteuid() == 0
    path.chmod(0o644 if as_root else 0o444)

    async with Child.running(path, as_uid=NOBODY if as_root else None) as child:
        assert await child.ask("state") == {"ok": [NOON.isoformat(), 5]}
        failed = await child.ask("commit", "b", 3, 1, 20)
        assert failed == {
            "error": f"cannot commit 3 logs of 'eu-1' to the store at {str(path)!r}: "
            "the file is read-only [SQLITE_READONLY]",
            "cause": "OperationalError",
            "code": "SQLITE_READONLY",
        }
        assert await child.ask("state") == {"ok": [NOON.isoformat(), 5]}

        # The cause goes away; the same store, reopening its file, writes again.
        if as_root:
            os.chown(path, NOBODY, NOBODY)
        else:
            path.chmod(0o644)
        assert await child.ask("commit", "b", 3, 1, 20) == {"ok": None}
        assert await child.ask("state") == {"ok": [(NOON + timedelta(minutes=1)).isoformat(), 8]}


async def test_a_read_only_filesystem_fails_every_call_until_it_is_writable(
    tmp_path: Path,
) -> None:
    directory = tmp_path / "data"
    directory.mkdir()
    path = directory / "voicelogs.db"
    async with SqliteStore(path) as store:
        await store.commit("eu-1", checkpoint=NOON, delivered=[])
    with mounted(directory, "--bind", str(directory)):
        _mount("-o", "remount,ro,bind", str(directory))
        async with SqliteStore(path) as store:
            with pytest.raises(StoreError) as caught:
                await store.checkpoint("eu-1")
            # A WAL database cannot even be read without writing its -shm file beside it.
            assert_plain(
                caught.value,
                f"cannot open the store at {str(path)!r}",
                "the file or its directory is read-only",
                "SQLITE_CANTOPEN",
            )
            _mount("-o", "remount,rw,bind", str(directory))
            assert await store.checkpoint("eu-1") == NOON


# -- the poller, through its public API ----------------------------------------------------


async def no_sleep(seconds: float) -> None:
    """Retries wait for nothing here: these tests count, they do not time."""


class Recorder:
    """A handler that remembers the message ids it was given, per account, per call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[str]]] = []

    async def __call__(self, account: str, logs: list[VoiceLog]) -> None:
        self.calls.append((account, [log.message_id or "" for log in logs]))

    def ids(self, account: str) -> list[str]:
        return sorted(i for name, ids in self.calls if name == account for i in ids)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def fake(clock: FakeClock) -> FakeInfobip:
    fake = FakeInfobip(clock=clock, rate_limit_per_minute=10_000, seed=5)
    for name in ("acme", "globex"):
        fake.add_account(name).generate(40, within=timedelta(hours=1), settle_after=timedelta(0))
    return fake


@pytest.fixture
async def client(fake: FakeInfobip) -> AsyncIterator[httpx.AsyncClient]:
    async with fake.in_process_client() as client:
        yield client


def poller_for(
    fake: FakeInfobip, client: httpx.AsyncClient, clock: FakeClock, store: SqliteStore
) -> tuple[LogsPoller, Recorder]:
    handler = Recorder()
    accounts = [
        # A generous bucket: these tests count requests, they do not wait for slots.
        Account(name, IN_PROCESS_URL, auth=account.api_key, throttle=TokenBucket(1e6, 1000))
        for name, account in fake.accounts.items()
    ]
    poller = LogsPoller(
        accounts,
        store=store,
        handler=handler,
        client=client,
        clock=clock.now,
        fetcher_options={"sleep": no_sleep},
    )
    return poller, handler


async def test_a_locked_store_fails_each_account_and_loses_nothing(
    fake: FakeInfobip, client: httpx.AsyncClient, clock: FakeClock, tmp_path: Path
) -> None:
    path = tmp_path / "voicelogs.db"
    async with SqliteStore(path, busy_timeout=0.05) as store:
        await store.accounts()  # the file exists before the other connection locks it
        poller, handler = poller_for(fake, client, clock, store)
        async with poller:
            other = sqlite3.connect(path, isolation_level=None)
            try:
                other.execute("BEGIN EXCLUSIVE")
                failed = await poller.run_once()
            finally:
                other.execute("ROLLBACK")
                other.close()
            assert await store.accounts() == {}  # nothing committed
            retried = await poller.run_once()
            settled = await poller.run_once()

        for name in ("acme", "globex"):
            assert isinstance(failed[name].error, StoreError)
            assert "locked by another connection" in str(failed[name].error)
            assert failed[name].delivered == 0
            assert poller.status()[name].failures == 1
            assert retried[name].ok
            assert retried[name].new == 40
            assert settled[name].ok
            assert settled[name].delivered == 0
            # Offered while the store was locked, and again after: the same 40 logs, twice.
            expected = sorted(log.message_id or "" for log in fake.accounts[name].logs)
            assert handler.ids(name) == sorted(expected * 2)
        assert set(await store.accounts()) == {"acme", "globex"}


async def test_a_store_that_cannot_open_fails_each_account_before_its_handler(
    fake: FakeInfobip, client: httpx.AsyncClient, clock: FakeClock, tmp_path: Path
) -> None:
    path = tmp_path / "voicelogs.db"
    path.write_bytes(random.Random(2).randbytes(8192))
    async with SqliteStore(path) as store:
        poller, handler = poller_for(fake, client, clock, store)
        async with poller:
            failed = await poller.run_once()
            path.unlink()
            recovered = await poller.run_once()

    for name in ("acme", "globex"):
        error = failed[name].error
        assert isinstance(error, StoreError)
        assert "not a database or is corrupt" in str(error)
        assert recovered[name].ok
        assert recovered[name].new == 40
    assert len(handler.calls) == 2  # one batch per account, after the store came back
