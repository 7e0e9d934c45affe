"""One process at a time polls a store file: an exclusive `flock` on a file beside it.

`SqliteStore` leases every account to its one live owner with fence 0, which is right for
one process and wrong for two: two processes polling one SQLite file would each read the
same fingerprints and deliver every log twice. So while a poller holds its leases, the store
also holds an exclusive, non-blocking `flock(2)` on `<file>-poller.lock`, named after the
file the path resolves to (symbolic links and `..` followed, a relative path made absolute),
so every spelling of one file takes one lock; a second store on the same file (in another
process, or in this one) is refused with a `StoreError` that says
who holds it, and gets it once the holder releases, closes or dies: the kernel drops the lock
with the holder's last descriptor, a SIGKILL included, so a restarted poller takes over at
once and a stale lock file means nothing.

Only polling takes the claim. Reading the archive, the receiver's `commit_reports` and plain
`commit` calls do not: SQLite serializes several writers on one file by itself.

Where the lock cannot be had for reasons other than a holder (no `fcntl` on this platform, a
directory the process cannot write), there is nothing to detect with: the claim is skipped,
and the store works as before.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os

from ..errors import StoreError

try:
    import fcntl
except ImportError:  # pragma: no cover - not on Windows
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger("infobip_voicelogs.store")

#: Appended to the database file's name to name its lock file.
LOCK_SUFFIX = "-poller.lock"


class FileClaim:
    """This process's claim to poll from one database file (see the module docstring)."""

    __slots__ = ("_fd", "_path")

    def __init__(self, path: str) -> None:
        self._path = path
        self._fd: int | None = None

    @property
    def _lock_path(self) -> str | None:
        """The lock file beside the file ``path`` resolves to now; `None` for no file."""
        if self._path in ("", ":memory:"):
            return None
        return os.path.realpath(self._path) + LOCK_SUFFIX

    def acquire(self) -> None:
        """Take the claim if it is free; `StoreError` if another store holds it.

        Does nothing when it is held already, or when there is nothing to lock with.
        """
        lock_path = self._lock_path
        if self._fd is not None or lock_path is None or fcntl is None:
            return
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            # No lock file, no detection: the database's own errors speak for the store.
            logger.debug("no poller lock at %r: %s", lock_path, exc.strerror)
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _read_holder(fd)
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES):
                raise StoreError(
                    f"another poller ({holder}) polls the store at {self._path!r}: two"
                    " processes polling one SQLite file would deliver every log twice. This"
                    " one takes over when that one stops; a fleet needs PostgresStore"
                ) from None
            logger.debug("no poller lock at %r: %s", lock_path, exc.strerror)
            return
        with contextlib.suppress(OSError):  # who holds it, for the message above; best effort
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        """Give the claim up (closing the descriptor drops the lock). Idempotent."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


def _read_holder(fd: int) -> str:
    with contextlib.suppress(OSError, UnicodeDecodeError):
        text = os.pread(fd, 64, 0).decode("ascii").strip()
        if text.startswith("pid ") and text[4:].isdigit():
            return text
    return "pid unknown"
