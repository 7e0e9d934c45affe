"""The poller at production shape: a TLS host per account, quiet accounts, steady cycles.

    python bench/production.py            # 1,000 accounts, SQLite then PostgreSQL
    python bench/production.py --quick    # 100 accounts (about 2 minutes)
    python bench/production.py --no-keepalive --sqlite-only   # what keep-alive costs in RSS

Each account has its own address of 127.0.0.0/8 (127.0.1.1, 127.0.1.2, ...) and its own
listening socket, served over HTTPS with a certificate from a throwaway CA (`trustme`), by
one server process that answers every request with an empty page (a quiet account) and
counts TLS handshakes (connections made, each after its handshake). The real `poll`
command (a subprocess, an accounts TOML file, ``SSL_CERT_FILE`` pointing at the CA) runs
against them on SQLite and on PostgreSQL (a throwaway cluster with pg_stat_statements) for
`CYCLES` steady cycles after the first two. Per account-cycle it reports the poller's CPU
(psutil), TLS handshakes, PostgreSQL transactions (pg_stat_database) and statements
(pg_stat_statements), and RSS per account. The floor, in the same run: a bare
`httpx.AsyncClient` per host with keep-alive, making the same requests and decoding them.

Targets (issue 18): CPU per quiet account-cycle <= 1.5x the floor on SQLite and <= 2x on
PostgreSQL; <= 0.1 handshakes per account-cycle in steady state; <= 1 PostgreSQL
transaction per account-cycle; RSS <= 300 KB per account at 1,000 accounts; 10,000
accounts at one cycle a minute in <= 0.5 core (projected from the CPU per cycle).

A delay between poller and PostgreSQL (a network namespace with netem) is probed and
reported; the runs themselves use loopback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import signal
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

EMPTY = b'{"results":[]}'
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
    len(EMPTY),
    EMPTY,
)
CYCLES = 5  # steady cycles measured, after the first (backfill) and a settling one
TARGETS = {"sqlite": 1.5, "postgres": 2.0}
TARGET_HANDSHAKES = 0.1
TARGET_XACTS = 1.0
TARGET_RSS_KB = 300.0
TARGET_CORES_10K = 0.5


def address(index: int) -> str:
    return f"127.0.{1 + index // 250}.{1 + index % 250}"


def raise_fd_limit() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# -- the server: one process, a socket per account, counting handshakes ----------------------


class _Counts:
    handshakes = 0
    requests = 0


class _Http(asyncio.Protocol):
    """HTTP/1.1 keep-alive: every request gets the empty page; the control port the counts."""

    def __init__(self, control: bool) -> None:
        self.control, self.buffer = control, b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        if not self.control:
            _Counts.handshakes += 1  # a TLS connection is made once its handshake is done

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while b"\r\n\r\n" in self.buffer:
            _, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
            if self.control:
                body = json.dumps(
                    {"handshakes": _Counts.handshakes, "requests": _Counts.requests}
                ).encode()
                self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body))
                self.transport.write(body)
            else:
                _Counts.requests += 1
                self.transport.write(RESPONSE)


async def serve(accounts: int, port: int, cert: str, key: str) -> None:
    raise_fd_limit()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    loop = asyncio.get_running_loop()
    for index in range(accounts):
        await loop.create_server(lambda: _Http(False), address(index), port, ssl=context)
    control = await loop.create_server(lambda: _Http(True), "127.0.0.1", 0)
    print(control.sockets[0].getsockname()[1], flush=True)
    await asyncio.Event().wait()


# -- the driver ----------------------------------------------------------------------------


def counts(control: int) -> dict[str, int]:
    import http.client

    # http.client, not httpx: no TLS context built per look, little CPU taken from the run.
    connection = http.client.HTTPConnection("127.0.0.1", control, timeout=10)
    try:
        connection.request("GET", "/")
        answer: dict[str, int] = json.loads(connection.getresponse().read())
    finally:
        connection.close()
    return answer


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind((address(0), 0))
        return int(sock.getsockname()[1])


def start_server(accounts: int, tmp: Path) -> tuple[subprocess.Popen[str], int, int]:
    import trustme

    ca = trustme.CA()
    leaf = ca.issue_cert(*(address(i) for i in range(accounts)))
    ca.cert_pem.write_to_path(str(tmp / "ca.pem"))
    leaf.cert_chain_pems[0].write_to_path(str(tmp / "cert.pem"))
    leaf.private_key_pem.write_to_path(str(tmp / "key.pem"))
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(accounts), str(port), str(tmp)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdout is not None
    control = int(server.stdout.readline())
    return server, port, control


def accounts_file(accounts: int, port: int, tmp: Path) -> Path:
    path = tmp / "accounts.toml"
    path.write_text(
        "".join(
            f'[[account]]\nname = "a{i}"\nbase_url = "https://{address(i)}:{port}"\n'
            f'api_key = "key-{i}"\n'
            for i in range(accounts)
        )
    )
    return path


class Postgres:
    """A throwaway cluster with pg_stat_statements, and its counters for one database."""

    def __init__(self) -> None:
        from tests.pg_server import PostgresCluster

        self.cluster = PostgresCluster.start()
        with open(self.cluster.data / "postgresql.conf", "a") as conf:
            conf.write("shared_preload_libraries = 'pg_stat_statements'\n")
        self.cluster.restart()
        self.dsn = self.cluster.create_database("bench")
        self.cluster.sql("CREATE EXTENSION pg_stat_statements")  # read from here

    def counters(self) -> tuple[int, int]:
        """(transactions, statements) of the bench database so far."""
        out = self.cluster.sql(
            "SELECT pg_stat_clear_snapshot(), (SELECT xact_commit + xact_rollback FROM"
            " pg_stat_database WHERE datname = 'bench'), (SELECT coalesce(sum(calls), 0)"
            " FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid"
            " WHERE d.datname = 'bench')"
        )
        _, xacts, statements = out.strip().split("|")
        return int(xacts), int(statements)


def wait_requests(control: int, target: int, timeout: float) -> dict[str, int]:
    deadline = time.monotonic() + timeout
    while True:
        now = counts(control)
        if now["requests"] >= target:
            return now
        if time.monotonic() > deadline:
            raise RuntimeError(f"the poller made {now['requests']} of {target} requests")
        time.sleep(0.2)


def run_poller(
    store: str,
    accounts: int,
    interval: float,
    control: int,
    tmp: Path,
    pg: Postgres | None,
    extra: tuple[str, ...] = (),
) -> dict[str, float]:
    import psutil

    env = {**os.environ, "SSL_CERT_FILE": str(tmp / "ca.pem"), "PYTHONPATH": str(ROOT)}
    log = (tmp / "poller.log").open("ab")
    process = subprocess.Popen(
        [sys.executable, "-c", "from infobip_voicelogs.cli import main; main()", "poll",
         "-a", str(tmp / "accounts.toml"), "--store", store, "--no-live", "--format",
         "ndjson", "--interval", f"{interval}s", "--backfill", "1h", *extra],
        stdout=subprocess.DEVNULL, stderr=log, cwd=ROOT, env=env,
        preexec_fn=raise_fd_limit,
    )  # fmt: skip
    try:
        child = psutil.Process(process.pid)
        base = counts(control)["requests"]
        budget = 60 + 4 * interval
        # Two cycles first: the backfill, then one that settles (pools, leases, caches).
        wait_requests(control, base + 2 * accounts, budget * 2)
        start, cpu0 = counts(control), child.cpu_times()
        pg0 = pg.counters() if pg else (0, 0)
        end = wait_requests(control, start["requests"] + CYCLES * accounts, budget * CYCLES)
        cpu1, rss = child.cpu_times(), child.memory_info().rss
        pg1 = pg.counters() if pg else (0, 0)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    cycles = end["requests"] - start["requests"]
    cpu = (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)
    return {
        "cpu_ms": cpu / cycles * 1e3,
        "handshakes": (end["handshakes"] - start["handshakes"]) / cycles,
        "xacts": (pg1[0] - pg0[0]) / cycles,
        "statements": (pg1[1] - pg0[1]) / cycles,
        "rss_kb": rss / accounts / 1024,
    }


async def floor(accounts: int, port: int, control: int, tmp: Path) -> dict[str, float]:
    """A bare httpx client per host with keep-alive: the same requests, decoded."""
    import httpx

    from infobip_voicelogs import decode_logs

    context = ssl.create_default_context(cafile=str(tmp / "ca.pem"))
    # Kept alive across cycles (httpx's default expiry of 5 s is shorter than a cycle here).
    limits = httpx.Limits(max_keepalive_connections=1, keepalive_expiry=300)
    clients = [httpx.AsyncClient(verify=context, limits=limits) for _ in range(accounts)]
    slots = asyncio.Semaphore(200)
    params = {"sentSince": "2026-01-01T00:00:00.000+0000", "limit": "1000"}

    async def one(i: int) -> None:
        async with slots:
            url = f"https://{address(i)}:{port}/tts/3/logs"
            answer = await clients[i].get(url, params=params, headers={"Authorization": "App k"})
            decode_logs(answer.content, answer.headers["content-type"])

    async def cycle() -> None:
        await asyncio.gather(*(one(i) for i in range(accounts)))

    await cycle()  # connections opened: the handshakes are not the floor's steady cost
    start, cpu = counts(control), time.process_time()
    for _ in range(CYCLES):
        await cycle()
    spent = time.process_time() - cpu
    end = counts(control)
    for client in clients:
        await client.aclose()
    cycles = end["requests"] - start["requests"]
    return {
        "cpu_ms": spent / cycles * 1e3,
        "handshakes": (end["handshakes"] - start["handshakes"]) / cycles,
    }


def netem_probe() -> str:
    """Whether a delayed link to PostgreSQL could be built here (a namespace with netem)."""
    name = f"vlbench{os.getpid()}"
    steps = [
        ["ip", "netns", "add", name],
        ["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"],
        ["ip", "netns", "exec", name, "tc", "qdisc", "add", "dev", "lo", "root", "netem",
         "delay", "1ms"],
    ]  # fmt: skip
    try:
        for step in steps:
            done = subprocess.run(step, capture_output=True, text=True, timeout=10)
            if done.returncode != 0:
                return f"not possible here: `{' '.join(step[:6])}` failed: {done.stderr.strip()}"
        return "possible (namespace + netem work); not run in this version of the bench"
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"not possible here: {exc}"
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=10)


def main(quick: bool, extra: tuple[str, ...], sqlite_only: bool) -> int:
    from tests.pg_server import missing_reason

    raise_fd_limit()
    accounts = 100 if quick else 1000
    interval = 2.0 if quick else 10.0
    with tempfile.TemporaryDirectory() as directory:
        tmp = Path(directory)
        server, port, control = start_server(accounts, tmp)
        accounts_file(accounts, port, tmp)
        rows: dict[str, dict[str, float]] = {}
        try:
            rows["floor"] = asyncio.run(floor(accounts, port, control, tmp))
            rows["sqlite"] = run_poller(
                str(tmp / "voicelogs.db"), accounts, interval, control, tmp, None, extra
            )
            reason = "--sqlite-only" if sqlite_only else missing_reason()
            if reason is None:
                pg = Postgres()
                try:
                    rows["postgres"] = run_poller(
                        pg.dsn, accounts, interval, control, tmp, pg, extra
                    )
                finally:
                    pg.cluster.stop()
            else:
                print(f"PostgreSQL: skipped ({reason})")
        finally:
            server.terminate()
            server.wait(10)
    return report(rows, accounts, interval)


def report(rows: dict[str, dict[str, float]], accounts: int, interval: float) -> int:
    print(f"\n{accounts} accounts, each its own TLS host; {CYCLES} steady quiet cycles every "
          f"{interval:g} s; per account-cycle (machine shared: figures are noisy, ratios are "
          "side by side in one run)")  # fmt: skip
    print(f"{'':10}{'CPU ms':>8}{'x floor':>9}{'TLS hs':>8}{'PG xact':>9}{'PG stmt':>9}"
          f"{'RSS KB/acct':>13}")  # fmt: skip
    base = rows["floor"]["cpu_ms"]
    ok = True
    for name, row in rows.items():
        ratio = row["cpu_ms"] / base
        extra = (
            f"{row.get('xacts', 0):>9.2f}{row.get('statements', 0):>9.2f}"
            f"{row.get('rss_kb', 0):>13.0f}"
        )
        print(f"{name:10}{row['cpu_ms']:>8.2f}{ratio:>9.2f}{row['handshakes']:>8.3f}{extra}")
        if name in TARGETS:
            ok &= ratio <= TARGETS[name] and row["handshakes"] <= TARGET_HANDSHAKES
            cores = row["cpu_ms"] / 1e3 * 10_000 / 60
            print(f"{'':10}10,000 accounts at 1 cycle/min: {cores:.2f} core "
                  f"(target <= {TARGET_CORES_10K})")  # fmt: skip
            ok &= cores <= TARGET_CORES_10K
    if "postgres" in rows:
        ok &= rows["postgres"]["xacts"] <= TARGET_XACTS
    if accounts >= 1000:
        ok &= all(rows[n]["rss_kb"] <= TARGET_RSS_KB for n in TARGETS if n in rows)
    print(f"targets: CPU <= {TARGETS['sqlite']}x floor (SQLite), <= {TARGETS['postgres']}x "
          f"(PostgreSQL); handshakes <= {TARGET_HANDSHAKES}; PG xact <= {TARGET_XACTS}; RSS <= "
          f"{TARGET_RSS_KB:g} KB/account at 1,000")  # fmt: skip
    print(f"delay to PostgreSQL (netns + netem): {netem_probe()}")
    print("all targets met" if ok else "some targets missed")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100 accounts, about 2 minutes")
    parser.add_argument("--no-keepalive", action="store_true", help="poll --no-keepalive")
    parser.add_argument("--sqlite-only", action="store_true", help="skip PostgreSQL")
    parser.add_argument("--serve", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        n, port, tmp = args.serve
        asyncio.run(serve(int(n), int(port), f"{tmp}/cert.pem", f"{tmp}/key.pem"))
    else:
        extra = ("--no-keepalive",) if args.no_keepalive else ()
        sys.exit(main(args.quick, extra, args.sqlite_only))
