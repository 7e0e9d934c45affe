"""Round trips, protocol messages and transactions per `PostgresStore` call, on the wire.

    python bench/store_round_trips.py            # 100 accounts
    python bench/store_round_trips.py --quick    # 20 accounts, no transaction counts

Starts a throwaway PostgreSQL cluster and puts a counting TCP proxy between the store and
the server. Per call it reports *round trips* (times the client spoke again after the
server answered), *messages* (the protocol's Execute and Query messages, so `BEGIN`,
`COMMIT` and an empty pool check count) and *transactions* (`xact_commit +
xact_rollback` of `pg_stat_database`, read after the server flushed its statistics).
Each call is run 20 times on a warm pool and the counts divided. A quiet account-cycle is
shown two ways: as the poller did it before `advance` (checkpoint read, fingerprint read,
fenced commit without logs) and batched (one `advance` per flush for every account).
Prints a line and exits 0 when the PostgreSQL server binaries or psycopg are missing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import struct
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.pg_server import PostgresCluster, missing_reason

REPEAT = 20
NOON = datetime(2026, 11, 26, 12, tzinfo=UTC)


class Counter:
    """A TCP proxy to the server that counts round trips and statements."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.round_trips = 0
        self.statements = 0

    async def serve(self) -> asyncio.Server:
        return await asyncio.start_server(self._client, "127.0.0.1", 0)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.port)
        answered = [True]  # the server spoke since the client last did

        async def upstream() -> None:
            # The startup message has no type byte; every later one does.
            buffer, started = b"", False
            while data := await reader.read(65536):
                if answered[0]:
                    self.round_trips += 1
                    answered[0] = False
                buffer += data
                while True:
                    if not started:
                        if len(buffer) < 4:
                            break
                        (length,) = struct.unpack("!I", buffer[:4])
                        if len(buffer) < length:
                            break
                        buffer, started = buffer[length:], True
                        continue
                    if len(buffer) < 5:
                        break
                    kind, (length,) = buffer[:1], struct.unpack("!I", buffer[1:5])
                    if len(buffer) < length + 1:
                        break
                    self.statements += kind in (b"E", b"Q")
                    buffer = buffer[length + 1 :]
                up_writer.write(data)
                await up_writer.drain()
            up_writer.close()

        async def downstream() -> None:
            while data := await up_reader.read(65536):
                answered[0] = True
                writer.write(data)
                await writer.drain()
            writer.close()

        with contextlib.suppress(asyncio.CancelledError):  # the proxy closing at the end
            await asyncio.gather(upstream(), downstream(), return_exceptions=True)


async def transactions(dsn: str, *, settle: float = 11.0) -> int:
    """The database's committed and rolled-back transactions, once the counts have settled.

    An idle backend's statistics reach the shared view at most once a second and at the
    latest 10 s later (PostgreSQL 15): `settle` waits them out. A backend that exits
    flushes at once, so a caller whose store is closed may pass a shorter `settle`.
    """
    import psycopg

    await asyncio.sleep(settle)
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as connection:
        cursor = await connection.execute(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database "
            "WHERE datname = current_database()"
        )
        row = await cursor.fetchone()
    assert row is not None
    return int(row[0])


async def measure(cluster: PostgresCluster, accounts: int, *, count_transactions: bool) -> None:
    from infobip_voicelogs import Delivered, VoiceLog
    from infobip_voicelogs.postgres import PostgresStore

    counter = Counter(cluster.port)
    server = await counter.serve()
    proxy_port = server.sockets[0].getsockname()[1]
    database = cluster.create_database().rsplit("/", 1)[1]
    dsn = f"postgresql://postgres@127.0.0.1:{proxy_port}/{database}?sslmode=disable"
    direct = cluster.dsn(database)
    names = [f"acct-{n:04d}" for n in range(accounts)]
    store = PostgresStore(dsn, archive=True, max_size=1)
    leases = await store.lease("me", names, lease_ttl=300)
    lease = leases[names[0]]
    logs = [
        Delivered(VoiceLog(message_id=f"m-{n}", sent_at=NOON), f"2p:{n:016x}") for n in range(3)
    ]
    await store.commit_leased(lease, checkpoint=NOON, delivered=logs)
    tick = iter(range(10**9))

    async def quiet_cycle() -> None:
        await store.checkpoint(lease.account)
        await store.fingerprints(lease.account, ["m-0"])  # the window's overlap
        await store.commit_leased(lease, checkpoint=NOON, delivered=[])

    async def advance_all() -> None:
        at = NOON + timedelta(seconds=next(tick))
        await store.advance([(held, at) for held in leases.values()])

    calls: list[tuple[str, Callable[[], Awaitable[object]], int]] = [
        ("checkpoint", lambda: store.checkpoint(lease.account), 1),
        (
            "fingerprints (3 ids)",
            lambda: store.fingerprints(lease.account, ["m-0", "m-1", "m-2"]),
            1,
        ),
        (
            "commit_leased (3 logs)",
            lambda: store.commit_leased(lease, checkpoint=NOON, delivered=logs),
            1,
        ),
        (
            "commit_leased (no logs)",
            lambda: store.commit_leased(lease, checkpoint=NOON, delivered=[]),
            1,
        ),
        (
            f"lease ({accounts} accounts, steady)",
            lambda: store.lease("me", names, lease_ttl=300),
            1,
        ),
        ("quiet cycle, per account (read, read, commit)", quiet_cycle, 1),
        (f"quiet cycle, per account (advance of {accounts})", advance_all, accounts),
    ]
    if not hasattr(store, "advance"):  # an older version of the store
        calls.pop()
    print(f"{'call':52} {'round trips':>11} {'messages':>10} {'transactions':>12}")
    for name, call, per in calls:
        await call()  # warm
        before_tx = await transactions(direct) if count_transactions else 0
        trips, statements = counter.round_trips, counter.statements
        started = time.perf_counter()
        for _ in range(REPEAT):
            await call()
        elapsed = time.perf_counter() - started
        trips, statements = counter.round_trips - trips, counter.statements - statements
        n = REPEAT * per
        if count_transactions:
            after_tx = await transactions(direct)
            tx = f"{(after_tx - before_tx - 1) / n:12.2f}"
        else:
            tx = f"{'-':>12}"
        print(
            f"{name:52} {trips / n:11.2f} {statements / n:10.2f} "
            f"{tx}   ({elapsed / REPEAT * 1000:.2f} ms a call)"
        )
    await store.aclose()
    server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20 accounts")
    args = parser.parse_args()
    reason = missing_reason()
    if reason is not None:
        print(f"skipped: {reason}")
        return
    with PostgresCluster.start() as cluster:
        # The server's transaction counts need 11 s to settle before each read (14 reads):
        # the quick run shows the proxy's counts of round trips and messages only.
        asyncio.run(measure(cluster, 20 if args.quick else 100, count_transactions=not args.quick))
        if args.quick:
            print("(transactions: counted by the full run only; they take 11 s to settle a read)")


if __name__ == "__main__":
    main()
