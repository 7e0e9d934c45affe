"""export and report over 1,000,000 archived messages, in SQLite and in PostgreSQL.

    python bench/analytics.py            # 1,000,000 messages in each store
    python bench/analytics.py --quick    # 50,000: a smoke run

Fills each archive directly (executemany into SQLite, COPY into PostgreSQL: 10 accounts, 30
days, the fake's networks and prices), then measures, each in a fresh process so its peak
RSS is its own: `export` to Parquet (rows/s, peak RSS), `report` (the JSON figures, wall
time), and beside them DuckDB computing `by_account_day` over the Parquet export, for
reference. Starts its own throwaway PostgreSQL cluster (fsync off, as in the tests); prints
a line and skips PostgreSQL when its server binaries or psycopg are missing.

Targets: export >= 200,000 rows/s with peak RSS <= 300 MB; report <= 3 s.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sqlite3
import subprocess
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.pg_server import PostgresCluster, missing_reason  # noqa: E402

TARGET_ROWS_PER_S = 200_000
TARGET_RSS_MB = 300
TARGET_REPORT_S = 3.0
COLUMNS = (
    "account", "message_id", "bulk_id", "to_number", "from_sender", "sent_at", "done_at",
    "duration", "mccmnc", "price_per_second", "currency", "status_group", "status_name",
    "error_group_name", "error_name", "error_permanent", "source", "first_seen_at", "updated_at",
)  # fmt: skip
NETWORKS = ("22801", "22802", "21901", "26201", "23410", "310260", "20801", "72405")
OUTCOMES = (
    ("DELIVERED", "DELIVERED_TO_HANDSET", "OK", "NO_ERROR", 0.8),
    ("UNDELIVERABLE", "UNDELIVERABLE_NOT_DELIVERED", "HANDSET_ERRORS", "EC_VOICE_NO_ANSWER", 0.1),
    ("REJECTED", "REJECTED_DESTINATION", "OPERATOR_ERRORS", "EC_FORBIDDEN", 0.05),
    ("PENDING", "PENDING_ENROUTE", "OK", "NO_ERROR", 0.05),
)
START = datetime(2026, 1, 1, tzinfo=UTC)


def rows(n: int) -> list[tuple[Any, ...]]:
    """`n` archive rows: 10 accounts over 30 days, each account with its price and currency."""
    rng = random.Random(7)
    weights = [o[4] for o in OUTCOMES]
    out = []
    for i in range(n):
        account = f"acct-{i % 10}"
        sent = START + timedelta(
            seconds=rng.randrange(30 * 86400), milliseconds=rng.randrange(1000)
        )
        group, status, error_group, error, _ = rng.choices(OUTCOMES, weights)[0]
        delivered = group == "DELIVERED"
        at = sent.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        done = (
            (sent + timedelta(seconds=40)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        )
        out.append((
            account, f"m-{i:09d}", f"b-{i // 3:09d}", f"4179{i:07d}", "InfoVoice", at, done,
            rng.randint(1, 90) if delivered else 0, rng.choice(NETWORKS),
            f"0.01{i % 10}5", "EUR" if i % 10 < 7 else "USD", group, status, error_group, error,
            0 if error == "NO_ERROR" else 1, "log", at, at,
        ))  # fmt: skip
    return out


def fill_sqlite(path: Path, data: list[tuple[Any, ...]]) -> None:
    import asyncio

    from infobip_voicelogs import SqliteStore

    async def create() -> None:
        async with SqliteStore(path, archive=True) as store:
            await store.accounts()  # opens the file: the tables of this version

    asyncio.run(create())
    with sqlite3.connect(path) as db:
        db.executemany(
            f"INSERT INTO voice_logs ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})",
            data,
        )


def fill_postgres(dsn: str, data: list[tuple[Any, ...]]) -> None:
    import asyncio

    import psycopg

    from infobip_voicelogs.postgres import PostgresStore

    async def create() -> None:
        async with PostgresStore(dsn, archive=True) as store:
            await store.accounts()  # connects: the tables of this version

    asyncio.run(create())
    permanent = COLUMNS.index("error_permanent")
    with psycopg.connect(dsn) as db, db.cursor() as cursor:
        with cursor.copy(f"COPY voice_logs ({', '.join(COLUMNS)}) FROM STDIN") as copy:
            for row in data:
                row = list(row)
                row[permanent] = bool(row[permanent])
                copy.write_row(row)
        db.execute("ANALYZE voice_logs")


# Each measurement runs in its own interpreter: its peak RSS is its own, imports included.
_CHILD = """
import json, sys, time
sys.path.insert(0, {root!r})
from infobip_voicelogs.analytics import export, report
task, store, out = sys.argv[1:4]
start = time.perf_counter()
if task == "export":
    n = export(store, out)
elif task == "report":
    n = len(json.dumps(report(store).to_dict()))
else:
    import duckdb
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    n = len(con.execute(
        "SELECT account, CAST(sent_at AS DATE) AS day, currency, count(*) AS calls, "
        "count(*) FILTER (WHERE status_group IN ('DELIVERED','UNDELIVERABLE','EXPIRED','REJECTED')) AS final, "
        "count(*) FILTER (WHERE status_group = 'DELIVERED') AS delivered, sum(cost) AS spend "
        "FROM read_parquet(?) GROUP BY ALL", [out]).fetchall())
elapsed = time.perf_counter() - start
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec from the forked parent.
hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM"))
print(json.dumps({{"n": n, "s": elapsed, "rss_mb": hwm / 1024}}))
"""


def measure(task: str, store: str, out: str) -> dict[str, float]:
    code = _CHILD.format(root=str(ROOT))
    done = subprocess.run(
        [sys.executable, "-c", code, task, store, out], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"{task} failed:\n{done.stderr[-3000:]}")
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def bench(name: str, store: str, tmp: Path, n: int) -> list[str]:
    out = str(tmp / f"{name}.parquet")
    exported = measure("export", store, out)
    assert exported["n"] == n, exported
    reported = measure("report", store, out)
    duck = measure("duckdb", store, out)
    rate = n / exported["s"]
    verdict = (
        rate >= TARGET_ROWS_PER_S
        and exported["rss_mb"] <= TARGET_RSS_MB
        and reported["s"] <= TARGET_REPORT_S
    )
    return [
        f"{name:<11} {rate:>14,.0f} {exported['rss_mb']:>13,.0f} {reported['s']:>12.2f} "
        f"{duck['s']:>18.2f}   {'met' if verdict else 'MISSED'}"
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="50,000 messages: a smoke run")
    parser.add_argument("--messages", type=int, default=None)
    args = parser.parse_args()
    n = args.messages or (50_000 if args.quick else 1_000_000)
    data = rows(n)
    lines = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "archive.db"
        fill_sqlite(path, data)
        reason = missing_reason()
        if reason is None:
            try:
                import psycopg  # noqa: F401
            except ImportError:
                reason = "psycopg is not installed"
        cluster = PostgresCluster.start() if reason is None else None
        try:
            dsn = ""
            if cluster is not None:
                dsn = cluster.create_database("analytics")
                fill_postgres(dsn, data)
            del data  # the measurements run in fresh processes, beside an idle parent
            lines += bench("SQLite", str(path), Path(tmp), n)
            if cluster is not None:
                lines += bench("PostgreSQL", dsn, Path(tmp), n)
            else:
                lines.append(f"PostgreSQL  skipped: {reason}")
        finally:
            if cluster is not None:
                cluster.stop()
    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}; {n:,} archived messages"
    )
    print(
        f"{'store':<11} {'export rows/s':>14} {'export RSS MB':>13} {'report s':>12} "
        f"{'DuckDB by_day s':>18}   targets"
    )
    print("\n".join(lines))
    print(
        f"Targets: export >= {TARGET_ROWS_PER_S:,} rows/s and RSS <= {TARGET_RSS_MB} MB, "
        f"report <= {TARGET_REPORT_S:.0f} s (DuckDB over the Parquet export: for reference)"
    )


if __name__ == "__main__":
    main()
