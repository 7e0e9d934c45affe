"""A throwaway PostgreSQL cluster for the tests and the benchmarks: initdb, start, stop.

Debian's server binaries live in /usr/lib/postgresql/<major>/bin and refuse to run as root,
so as root the cluster is made and run by the `postgres` user in a directory it owns.
Durability is off (`fsync`, `synchronous_commit`, `full_page_writes`): the cluster lives
as long as one test run.

```python
with PostgresCluster.start() as cluster:
    dsn = cluster.create_database("t1")
```
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Self

__all__ = ["BIN", "PASSWORD_ROLE", "PgBouncer", "PostgresCluster", "free_port", "missing_reason"]

#: Where Debian's postgresql-15 package puts the server binaries (PG_BIN overrides it).
BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))
USER = "postgres"
#: A role that must authenticate with a password (create it with `sql`); every other
#: role of the cluster is trusted from 127.0.0.1.
PASSWORD_ROLE = "voicelogs_secret"


def missing_reason() -> str | None:
    """Why no cluster can be started here, or None if one can."""
    for tool in ("initdb", "pg_ctl"):
        if not (BIN / tool).exists():
            return f"PostgreSQL server binaries not found ({BIN / tool} is missing)"
    if os.geteuid() == 0:
        try:
            import pwd

            pwd.getpwnam(USER)
        except KeyError:
            return f"running as root and there is no {USER!r} user to run PostgreSQL as"
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class PostgresCluster:
    """One initdb'ed data directory and its server on a free 127.0.0.1 port."""

    def __init__(self, root: Path, port: int) -> None:
        self.root = root
        self.port = port
        self.data = root / "data"
        self.log = root / "server.log"

    # -- life cycle ------------------------------------------------------------------------

    @classmethod
    def start(cls) -> Self:
        """initdb a new cluster in a temporary directory and start it; raise if that fails."""
        reason = missing_reason()
        if reason is not None:
            raise RuntimeError(reason)
        root = Path(tempfile.mkdtemp(prefix="voicelogs-pg-"))
        cluster = cls(root, free_port())
        try:
            if os.geteuid() == 0:
                shutil.chown(root, USER)
            cluster._run(
                BIN / "initdb",
                "-D", cluster.data,
                "-U", USER,
                "-A", "trust",
                "-E", "UTF8",
                "--no-sync",
                "--locale=C",
            )  # fmt: skip
            with open(cluster.data / "postgresql.conf", "a") as conf:
                conf.write(
                    "\nlisten_addresses = '127.0.0.1'\n"
                    f"port = {cluster.port}\n"
                    f"unix_socket_directories = '{root}'\n"
                    "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
                    "max_connections = 200\nshared_buffers = 64MB\n"
                )
            # One role must give a password, for the tests that keep it out of errors.
            hba = cluster.data / "pg_hba.conf"
            hba.write_text(
                f"host all {PASSWORD_ROLE} 127.0.0.1/32 scram-sha-256\n" + hba.read_text()
            )
            cluster._pg_ctl("start")
        except BaseException:
            cluster.stop()
            raise
        return cluster

    def _pg_ctl(self, action: str) -> None:
        args: list[str | os.PathLike[str]] = [BIN / "pg_ctl", action, "-D", self.data, "-w"]
        args += ["-t", "60", "-m", "fast"] if action != "start" else ["-t", "60"]
        if action in ("start", "restart"):
            args += ["-l", self.log]
        self._run(*args)

    def restart(self) -> None:
        """Stop the server (fast: every connection dropped) and start it again."""
        self._pg_ctl("restart")

    def stop_server(self) -> None:
        """Stop the server, keeping the data: `start_server` brings it back."""
        self._pg_ctl("stop")

    def start_server(self) -> None:
        """Start the server of a cluster stopped with `stop_server`."""
        self._pg_ctl("start")

    def stop(self) -> None:
        """Stop the server if it runs and delete the cluster's directory."""
        if (self.data / "postmaster.pid").exists():
            with contextlib.suppress(RuntimeError):
                self._pg_ctl("stop")
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- databases -------------------------------------------------------------------------

    def dsn(self, database: str = "postgres") -> str:
        """The libpq URL of a database of this cluster."""
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str | None = None) -> str:
        """Create a fresh database (a random name by default) and return its DSN."""
        name = name or f"t_{uuid.uuid4().hex[:12]}"
        self.sql(f'CREATE DATABASE "{name}"')
        return self.dsn(name)

    def sql(self, statement: str, database: str = "postgres") -> str:
        """Run one statement with psql; return its unaligned output."""
        done = self._run(
            BIN / "psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
            "-h", "127.0.0.1", "-p", str(self.port), "-U", USER, "-d", database,
            "-c", statement,
        )  # fmt: skip
        return done.stdout.strip()

    def _run(self, *args: str | os.PathLike[str]) -> subprocess.CompletedProcess[str]:
        command = [os.fspath(arg) for arg in args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", USER, "--", *command]
        try:
            return subprocess.run(
                command, check=True, capture_output=True, text=True, timeout=120, cwd=self.root
            )
        except subprocess.CalledProcessError as exc:
            log = self.log.read_text()[-2000:] if self.log.exists() else ""
            raise RuntimeError(
                f"{' '.join(command[-4:])} failed: {exc.stderr.strip()}\n{log}"
            ) from exc


class PgBouncer:
    """A PgBouncer in transaction pooling mode in front of a cluster, with two server
    connections per database: consecutive transactions of one client land on different
    server connections, as they do in production.
    """

    BINARY = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"

    def __init__(self, cluster: PostgresCluster) -> None:
        self.port = free_port()
        self.root = cluster.root / f"pgbouncer-{self.port}"
        self.root.mkdir()
        (self.root / "users.txt").write_text(f'"{USER}" ""\n')
        (self.root / "pgbouncer.ini").write_text(
            "[databases]\n"
            f"* = host=127.0.0.1 port={cluster.port}\n"
            "[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {self.port}\nunix_socket_dir =\n"
            f"auth_type = trust\nauth_file = {self.root / 'users.txt'}\n"
            "pool_mode = transaction\ndefault_pool_size = 2\nmax_client_conn = 200\n"
            f"logfile = {self.root / 'pgbouncer.log'}\n"
        )
        if os.geteuid() == 0:
            shutil.chown(self.root, USER)
        command = [self.BINARY, os.fspath(self.root / "pgbouncer.ini")]
        if os.geteuid() == 0:
            command = ["runuser", "-u", USER, "--", *command]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = 100
        while deadline:  # until it listens: bounded
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            if self.process.poll() is not None:
                error = self.process.stderr.read() if self.process.stderr else b""
                raise RuntimeError(f"pgbouncer exited: {error!r}")
            deadline -= 1
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("pgbouncer did not listen within 5 s")

    def dsn(self, database: str) -> str:
        """The URL of a database of the cluster, through this PgBouncer."""
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{database}"

    def stop(self) -> None:
        """Stop this PgBouncer (the one process it started)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


@contextlib.contextmanager
def cluster_or_none() -> Iterator[PostgresCluster | None]:
    """A started cluster, or None when the binaries are missing; stopped on exit."""
    if missing_reason() is not None:
        yield None
        return
    cluster = PostgresCluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()
