"""One OS process of a fleet sharing a `RedisBucket`, run by tests/test_redis.py.

    python tests/redis_worker.py '{"url": ..., "key": ..., "rate": 10, "grants": 20}'

Prints one JSON line: the Redis time (µs) at which each of its grants returned, and the
bucket's rate at the end. With "barrier": n, it first waits until n workers have each
acquired one slot, then reports a 429 for it ("report_429") and/or a cooldown.
"""

from __future__ import annotations

import asyncio
import json
import sys

import redis.asyncio as aioredis

from infobip_voicelogs.redis import RedisBucket


async def redis_time(client: aioredis.Redis) -> int:
    seconds, micros = await client.time()
    return int(seconds) * 1_000_000 + int(micros)


async def main(spec: dict[str, object]) -> dict[str, object]:
    client = aioredis.Redis.from_url(str(spec["url"]))
    bucket = RedisBucket(client, key=str(spec["key"]), rate=float(spec["rate"]))  # type: ignore[arg-type]
    grants: list[int] = []
    try:
        barrier = int(spec.get("barrier", 0))  # type: ignore[call-overload]
        if barrier:
            await bucket.acquire()
            grants.append(await redis_time(client))
            await client.incr(f"{spec['key']}:barrier")
            while int(await client.get(f"{spec['key']}:barrier") or 0) < barrier:  # noqa: ASYNC110
                await asyncio.sleep(0.01)  # other processes: no Event to wait on
            if spec.get("report_429"):
                bucket.on_rate_limited()
            if spec.get("cooldown"):
                bucket.cooldown(float(spec["cooldown"]))  # type: ignore[arg-type]
        for _ in range(int(spec.get("grants", 0))):  # type: ignore[call-overload]
            await bucket.acquire()
            grants.append(await redis_time(client))
            bucket.on_success()
    finally:
        await bucket.aclose()  # writes pending feedback
        await client.aclose()
    return {"grants": grants, "rate": bucket.rate}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(json.loads(sys.argv[1])))))
