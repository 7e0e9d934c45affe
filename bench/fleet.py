"""A fleet of `infobip-voicelogs poll` processes on one PostgreSQL: cycle time and takeover.

    python bench/fleet.py            # 3,000 accounts: 1 process, then 3; a SIGKILL takeover
    python bench/fleet.py --quick    # 150 accounts, a smoke run of about a minute

One fake provider (`infobip-voicelogs simulate`, one process, over HTTP on 127.0.0.1) serves
every account. The pollers are the real command, started the same way (same accounts file,
same `--store postgresql://...`), with the default lease time (15 s) and claim period
(5 s). Everything is read from the database: a full cycle is the time until every account's
checkpoint was written again; takeover is the time from SIGKILL to the first commit of each
account the killed process held (its accounts' checkpoints are written by nobody else).

Targets (issue 12): with 3 processes the steady cycle of 3,000 accounts is under 3 s and at
most 0.5x that of 1 process; takeover at most 30 s (max over the dead process's accounts).
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.pg_server import PostgresCluster, missing_reason  # noqa: E402

COMMAND = [sys.executable, "-c", "from infobip_voicelogs.cli import main; main()"]
TARGET_CYCLE_S = 3.0
TARGET_SPEEDUP = 0.5
TARGET_TAKEOVER_S = 30.0
WAIT_S = 600.0


def start_fake(accounts: int, tmp: Path) -> tuple[subprocess.Popen[str], Path]:
    """`simulate` with `accounts` accounts; the accounts file pointing at it."""
    fake = subprocess.Popen(
        [*COMMAND, "simulate", "--port", "0", "--accounts", str(accounts), "--backlog", "5",
         "--rate", "0.02", "--rate-limit", "100000", "--seed", "7"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT,
    )  # fmt: skip
    assert fake.stdout is not None
    tables = []
    for _ in range(accounts):
        name, base_url, key = fake.stdout.readline().rstrip("\n").split("\t")
        tables.append(f'[[account]]\nname = "{name}"\nbase_url = "{base_url}"\napi_key = "{key}"\n')
    path = tmp / "accounts.toml"
    path.write_text("\n".join(tables), encoding="utf-8")
    return fake, path


def start_poller(accounts_file: Path, dsn: str, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [*COMMAND, "poll", "-a", str(accounts_file), "--store", dsn, "--no-live",
         "--format", "ndjson", "--interval", "1s"],
        stdout=subprocess.DEVNULL, stderr=log.open("ab"), cwd=ROOT,
    )  # fmt: skip


def query(dsn: str, sql: str) -> list[tuple[object, ...]]:
    """Rows of `sql`; none before the first poller has created the schema."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as connection:
        try:
            return connection.execute(sql).fetchall()
        except psycopg.errors.UndefinedTable:
            return []


def count(dsn: str, sql: str) -> int:
    rows = query(dsn, sql)
    return int(rows[0][0]) if rows else 0  # type: ignore[call-overload]


def wait_until(what: str, condition: object, period: float = 0.2) -> float:
    started = time.monotonic()
    while not condition():  # type: ignore[operator]
        if time.monotonic() - started > WAIT_S:
            raise SystemExit(f"gave up waiting for {what}")
        time.sleep(period)
    return time.monotonic() - started


def cpu_seconds(pid: int) -> float:
    """User and system CPU seconds a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def full_cycles(dsn: str, accounts: int, times: int) -> list[float]:
    """Seconds until every account's checkpoint was written again, `times` times over."""
    cycles = []
    for _ in range(times):
        since = datetime.now(UTC)

        def everyone_again(since: datetime = since) -> bool:
            sql = f"SELECT count(*) FROM checkpoints WHERE updated_at > '{since.isoformat()}'"
            return count(dsn, sql) >= accounts

        cycles.append(wait_until("a full cycle", everyone_again, period=0.1))
    return cycles


def fleet(
    accounts_file: Path, cluster: PostgresCluster, accounts: int, processes: int, tmp: Path,
    *, kill: bool, fake_pid: int,
) -> tuple[list[float], list[float], list[float]]:  # fmt: skip
    dsn = cluster.create_database()
    pollers = [start_poller(accounts_file, dsn, tmp / f"poll-{processes}-{n}.log")
               for n in range(processes)]  # fmt: skip
    takeovers: list[float] = []
    try:
        wait_until("every account's first cycle",
                   lambda: count(dsn, "SELECT count(*) FROM checkpoints") == accounts)  # fmt: skip
        if processes > 1:
            share = -(-accounts // processes)
            wait_until("an even split", lambda: all(
                n <= share for (n,) in query(dsn, "SELECT count(*) FROM leases WHERE "
                                                  "expires_at > now() GROUP BY owner")))  # fmt: skip
        pids = [poller.pid for poller in pollers] + [fake_pid]
        cpu_before = [cpu_seconds(pid) for pid in pids]
        cycles = full_cycles(dsn, accounts, 3)
        # CPU seconds per full cycle: each poller's, then the fake provider's.
        spent = [cpu_seconds(pid) - before for pid, before in zip(pids, cpu_before, strict=True)]
        cpu = [seconds / len(cycles) for seconds in spent]
        if kill:
            owners = query(dsn, "SELECT owner, count(*) FROM leases WHERE expires_at > now() "
                                "GROUP BY owner ORDER BY owner")  # fmt: skip
            victim_owner = str(owners[0][0])
            pid = int(victim_owner.split(":")[1])
            orphans = {str(a) for (a,) in query(
                dsn, f"SELECT account FROM leases WHERE owner = '{victim_owner}'")}  # fmt: skip
            victim = next(p for p in pollers if p.pid == pid)
            killed_at = datetime.now(UTC)
            victim.send_signal(signal.SIGKILL)
            victim.wait()
            seen: dict[str, float] = {}

            def all_taken() -> bool:
                for account, updated in query(
                    dsn, f"SELECT account, updated_at FROM checkpoints WHERE updated_at > "
                         f"'{killed_at.isoformat()}'::timestamptz"):  # fmt: skip
                    if account in orphans and account not in seen:
                        seen[str(account)] = (updated - killed_at).total_seconds()  # type: ignore[operator]
                return len(seen) == len(orphans)

            wait_until("the dead poller's accounts taken over", all_taken, period=0.2)
            takeovers = sorted(seen.values())
        return cycles, takeovers, cpu
    finally:
        for poller in pollers:
            if poller.poll() is None:
                poller.send_signal(signal.SIGTERM)
        for poller in pollers:
            try:
                poller.wait(30)
            except subprocess.TimeoutExpired:
                poller.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="150 accounts, a smoke run")
    parser.add_argument("--accounts", type=int, default=None)
    args = parser.parse_args()
    reason = missing_reason()
    if reason is not None:
        print(f"fleet: skipped ({reason})")
        return
    accounts = args.accounts or (150 if args.quick else 3000)
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}; {accounts:,} accounts, one fake provider "
          "over HTTP, pollers with the default lease time and claim period")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp_name, PostgresCluster.start() as cluster:
        tmp = Path(tmp_name)
        fake, accounts_file = start_fake(accounts, tmp)
        try:
            one, _, cpu_one = fleet(
                accounts_file, cluster, accounts, 1, tmp, kill=False, fake_pid=fake.pid
            )
            three, takeovers, cpu_three = fleet(
                accounts_file, cluster, accounts, 3, tmp, kill=True, fake_pid=fake.pid
            )
        finally:
            fake.terminate()
            fake.wait(30)
    t1, t3 = statistics.median(one), statistics.median(three)
    print(f"{'processes':<10} {'full cycles (s)':<28} {'median':>8}")
    print(f"{1:<10} {', '.join(f'{c:.2f}' for c in one):<28} {t1:>8.2f}")
    print(f"{3:<10} {', '.join(f'{c:.2f}' for c in three):<28} {t3:>8.2f}")
    print(f"3 processes vs 1: {t3 / t1:.2f}x")
    for label, cpu in (("1 process", cpu_one), ("3 processes", cpu_three)):
        pollers = ", ".join(f"{c:.2f}" for c in cpu[:-1])
        print(f"CPU s per full cycle, {label}: pollers {pollers}; fake provider {cpu[-1]:.2f}")
    worst = max(takeovers) if takeovers else float("nan")
    print(f"takeover after SIGKILL, {len(takeovers)} accounts: median "
          f"{statistics.median(takeovers):.1f} s, max {worst:.1f} s")  # fmt: skip
    verdicts = {
        f"3-process cycle < {TARGET_CYCLE_S:g} s": t3 < TARGET_CYCLE_S,
        f"3 vs 1 <= {TARGET_SPEEDUP}x": t3 / t1 <= TARGET_SPEEDUP,
        f"takeover <= {TARGET_TAKEOVER_S:g} s": worst <= TARGET_TAKEOVER_S,
    }
    print(
        "Targets: " + ", ".join(f"{k}: {'met' if ok else 'MISSED'}" for k, ok in verdicts.items())
    )


if __name__ == "__main__":
    main()
