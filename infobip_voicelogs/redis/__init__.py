"""One account's rate limit, shared by every process and host: `RedisBucket` (the `redis` extra).

```python
from infobip_voicelogs.redis import RedisBucket, bucket_key

client = redis.asyncio.Redis.from_url("redis://127.0.0.1:6379/0")  # one pool for all accounts
bucket = RedisBucket(client, key=bucket_key(base_url, api_key), rate=2.0)
async with LogsFetcher(base_url, api_key, throttle=bucket) as fetcher:
    ...
```

Every process that uses one account, on any host, shares one GCRA bucket kept in one Redis
hash and changed only by one Lua script that reads Redis's own clock. Needs redis-py
(`pip install 'infobip-voicelogs[redis]'`) and any Redis 6.2+ or Valkey, no modules.
"""

try:
    import redis.asyncio  # noqa: F401  # the extra's one dependency, checked up front
except ImportError as exc:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError(
        "infobip_voicelogs.redis needs redis-py: pip install 'infobip-voicelogs[redis]'",
        name="redis",
    ) from exc

from ._bucket import (
    DEFAULT_HEADROOM,
    DEFAULT_IDLE_TTL,
    DEFAULT_PREFIX,
    DEFAULT_TIMEOUT,
    OutagePolicy,
    RedisBucket,
)
from ._key import bucket_key
from ._link import PROBE_INTERVAL

__all__ = [
    "DEFAULT_HEADROOM",
    "DEFAULT_IDLE_TTL",
    "DEFAULT_PREFIX",
    "DEFAULT_TIMEOUT",
    "PROBE_INTERVAL",
    "OutagePolicy",
    "RedisBucket",
    "bucket_key",
]
