"""`RedisBucket`: one account's `TokenBucket`, shared by every process and host through Redis."""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Coroutine
from contextvars import ContextVar
from types import TracebackType
from typing import Any, Literal

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

from .. import telemetry
from ..errors import ThrottleUnavailableError
from ..throttle import BucketSettings, TokenBucket, check_bucket
from ._link import UNAVAILABLE, link_of, now
from ._script import FAST_ACQUIRE, SCRIPT

#: Every key the buckets write starts with this.
DEFAULT_PREFIX = "infobip-voicelogs:"
#: The longest a request waits for Redis (seconds) before the outage policy applies.
DEFAULT_TIMEOUT = 0.25
#: An account's state stays this long (seconds) after its last booked slot or cooldown.
DEFAULT_IDLE_TTL = 600.0
#: Connections of the client a bucket makes from a URL; more callers queue for one.
POOL_SIZE = 32
#: The documented limit: 120 requests a minute.
DEFAULT_RATE = 2.0
#: The fleet paces itself this fraction under ``rate``. At exactly the limit, request n+120
#: leaves 60.000 s after request n and, against a provider counting any 60-second window,
#: is refused whenever it travels faster than request n did (about half the time once the
#: window is full); 1% under leaves 0.6 s a minute for that jitter.
DEFAULT_HEADROOM = 0.01

OutagePolicy = Literal["local", "raise"]

# The slot of the current task: (bucket, epoch, slot number), read by on_success and
# on_rate_limited, which the fetcher calls in the task that acquired.
_SLOT: ContextVar[tuple[RedisBucket, str, int] | None] = ContextVar(
    "infobip_voicelogs_redis_slot", default=None
)


class RedisBucket(BucketSettings):
    """An account's rate limit shared by every process and host: a GCRA bucket in Redis.

    ```python
    bucket = RedisBucket("redis://127.0.0.1:6379/0", key="eu-1", rate=2.0)
    async with bucket, LogsFetcher(base_url, auth, throttle=bucket) as fetcher:
        logs = await fetcher.fetch()
    ```

    Each `acquire` makes one script call that reserves the account's next slot, in the order
    Redis ran the calls, and sleeps locally until it; a caller that had to wait makes a
    second, short call when it wakes, to learn whether a cooldown set meanwhile pushed its
    slot back. A 429 anywhere (`cooldown`, `on_rate_limited`) pauses and slows the account
    for the whole fleet; these are applied to this process at once and written to Redis
    by a background task. `on_success` costs no call: the next call carries it.

    Args:
        redis: A `redis.asyncio.Redis` client (many buckets may share one, and its pool;
            the bucket never closes it) or a URL (the bucket makes a client and closes it
            in `aclose`).
        key: The account's name in Redis, under ``prefix``; `bucket_key` derives one.
        rate: The account's limit in requests per second, for the whole fleet: the fleet
            paces itself at ``rate * (1 - headroom)``, never above.
        burst: Slots granted at once after an idle spell.
        adaptive: Whether 429s cut the fleet's rate and successes grow it back.
        min_rate: The floor of adaptive cuts (default: a tenth of ``rate``).
        on_unavailable: ``"local"`` (fall back to a local `TokenBucket` while Redis is
            unavailable) or ``"raise"`` (`ThrottleUnavailableError`).
        fallback_share: The local bucket runs at ``rate / fallback_share``: set it to the
            number of processes sharing the account, if you know it.
        timeout: The longest a call waits for Redis, in seconds.
        prefix: Prepended to ``key``.
        idle_ttl: Seconds an idle account's state is kept.
        headroom: The fraction under ``rate`` the fleet paces itself at (default 1%), so
            that requests spread over processes and networks never cross the provider's
            per-minute line with their timing jitter; 0 paces at ``rate`` exactly.
    """

    __slots__ = (
        "__weakref__",
        "_adaptive",
        "_burst",
        "_client",
        "_closed",
        "_config",
        "_configured",
        "_epoch",
        "_fallback",
        "_fast",
        "_flusher",
        "_key",
        "_last_seq",
        "_link",
        "_ok_seq",
        "_owns_client",
        "_pending_cool",
        "_pending_cut",
        "_policy",
        "_rate",
        "_script",
        "_tasks",
        "_timeout",
    )

    def __init__(
        self,
        redis: aioredis.Redis | str,
        *,
        key: str,
        rate: float = DEFAULT_RATE,
        burst: int = 1,
        adaptive: bool = True,
        min_rate: float | None = None,
        on_unavailable: OutagePolicy = "local",
        fallback_share: float = 1.0,
        timeout: float = DEFAULT_TIMEOUT,
        prefix: str = DEFAULT_PREFIX,
        idle_ttl: float = DEFAULT_IDLE_TTL,
        headroom: float = DEFAULT_HEADROOM,
    ) -> None:
        """Make a bucket; raises `ValueError` for an argument out of range (nothing connects)."""
        floor = check_bucket(rate, burst, min_rate)
        if not (isinstance(headroom, int | float) and 0 <= headroom < 0.5):
            raise ValueError(f"headroom must be a fraction in [0, 0.5), not {headroom!r}")
        if not isinstance(key, str) or not key:
            raise ValueError("key must be a non-empty string")
        if on_unavailable not in ("local", "raise"):
            raise ValueError(f"on_unavailable must be 'local' or 'raise', not {on_unavailable!r}")
        for name, value in (("fallback_share", fallback_share), ("timeout", timeout)):
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite number > 0, not {value!r}")
        if not (math.isfinite(idle_ttl) and idle_ttl >= 1):
            raise ValueError(f"idle_ttl must be at least 1 second, not {idle_ttl!r}")
        self._owns_client = isinstance(redis, str)
        if isinstance(redis, str):
            # No retries of its own (the outage policy decides), sockets bounded too, and
            # callers beyond the pool queue for a connection instead of failing at once.
            pool = aioredis.BlockingConnectionPool.from_url(
                redis,
                max_connections=POOL_SIZE,
                timeout=timeout,
                socket_timeout=timeout,
                socket_connect_timeout=timeout,
                retry=Retry(NoBackoff(), 0),
            )
            redis = aioredis.Redis.from_pool(pool)
        self._client = redis
        self._link = link_of(redis)
        self._script = redis.register_script(SCRIPT)
        self._fast = redis.register_script(FAST_ACQUIRE)
        self._key = prefix + key
        self._configured = float(rate)
        paced = float(rate) * (1 - headroom)  # the ceiling the fleet grows back to
        self._rate = paced
        self._burst = burst
        self._adaptive = adaptive
        floor = min(float(floor), paced)
        self._config = f"{paced!r} {burst} {floor!r} {int(adaptive)} {int(idle_ttl * 1000)}"
        self._policy = on_unavailable
        self._timeout = timeout
        self._fallback = TokenBucket(
            paced / fallback_share, burst, adaptive=adaptive, min_rate=floor / fallback_share
        )
        self._epoch = "-"
        self._ok_seq = 0
        self._last_seq = 0
        self._pending_cool: float | None = None
        self._pending_cut: int | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False

    # -- reading -----------------------------------------------------------------------------

    @property
    def key(self) -> str:
        """The Redis key of the account's state (prefix included)."""
        return self._key

    @property
    def rate(self) -> float:
        """The effective rate: the fleet's as last read from Redis; the local one in an outage."""
        return self._fallback.rate if self._link.down_since is not None else self._rate

    @property
    def available(self) -> bool:
        """Whether Redis answered the last call made to it through this bucket's client."""
        return self._link.down_since is None

    @property
    def client(self) -> aioredis.Redis:
        """The Redis client: pass it to the next bucket to share its connection pool."""
        return self._client

    def __repr__(self) -> str:
        state = "redis" if self.available else f"unavailable, {self._policy}"
        return (
            f"RedisBucket(key={self._key!r}, redis={self._link.where!r}, rate={self.rate:g}, "
            f"configured_rate={self._configured:g}, burst={self._burst}, state={state!r})"
        )

    # -- acquiring ---------------------------------------------------------------------------

    async def acquire(self) -> float:
        """Wait for the account's next slot across the fleet; return the seconds waited.

        If the caller is cancelled while it sleeps, its slot is given back when it is still
        the last one reserved (nothing was reserved after it), else it goes unused. While
        Redis is unavailable the outage policy applies: a local bucket, or
        `ThrottleUnavailableError`; a call waits for Redis at most ``timeout`` seconds.
        """
        if self._closed:
            raise ThrottleUnavailableError(f"RedisBucket {self._key!r} is closed")
        loop = asyncio.get_running_loop()
        start = loop.time()
        link = self._link
        if link.down_since is not None and (start < link.next_probe or link.probing):
            return await self._unavailable(None, start)
        probe, link.probing = link.down_since is not None, link.down_since is not None
        try:
            reply = await self._call("acquire")
        except UNAVAILABLE as exc:
            self._went_down(exc)
            return await self._unavailable(exc, start)
        finally:
            if probe:
                link.probing = False
        wait, seq, slot, shift = self._booked(reply)
        if wait > 0:
            await self._sleep(wait, seq, slot, shift, self._epoch)
        return loop.time() - start

    async def __aenter__(self) -> RedisBucket:
        """``async with bucket:`` closes it at the end (it does **not** acquire a slot)."""
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close the bucket (see `aclose`)."""
        await self.aclose()

    async def aclose(self) -> None:
        """Write pending feedback (bounded by the timeout), end background work, close.

        Closes the Redis client only if the bucket made it from a URL. Idempotent.
        """
        if self._closed:
            return
        self._closed = True
        if self._flusher is not None:
            await asyncio.wait({self._flusher})  # each of its calls is bounded by the timeout
        if self._pending() and self._link.down_since is None:
            with contextlib.suppress(*UNAVAILABLE):
                await self._call("feedback")
        if self._tasks:
            await asyncio.wait(set(self._tasks))
        if self._owns_client:
            await self._client.aclose()

    async def _sleep(self, wait: int, seq: int, slot: int, shift: int, epoch: str) -> None:
        """Sleep until the slot; on waking, ask whether a cooldown pushed it back."""
        try:
            while wait > 0:
                await asyncio.sleep(wait / 1e6)
                # A slot of a hash since lost (expired, or Redis restarted) is booked anew.
                op = "confirm" if epoch == self._epoch else "acquire"
                try:
                    reply = await self._call(op, slot, shift)
                except UNAVAILABLE as exc:
                    self._went_down(exc)
                    return  # the slot was ours: go, rather than wait for Redis
                wait, booked, slot, shift = self._booked(reply)
                if booked:  # a new slot, in the hash's new epoch
                    seq, epoch = booked, self._epoch
        except asyncio.CancelledError:
            if epoch == self._epoch:
                self._spawn(self._call("release", seq, shift, slot))
            raise

    def _booked(self, reply: list[str]) -> tuple[int, int, int, int]:
        """Read a script's answer: (wait µs, slot number or 0, slot time µs, shift µs)."""
        wait, seq, slot, shift = (int(x) for x in reply[:4])
        if seq:
            self._last_seq = seq
            _SLOT.set((self, self._epoch, seq))
        return wait, seq, slot, shift

    async def _unavailable(self, exc: BaseException | None, start: float) -> float:
        if self._policy == "raise":
            since = self._link.down_since or start
            cause = f": {type(exc).__name__}: {exc}" if exc is not None else ""
            raise ThrottleUnavailableError(
                f"Redis at {self._link.where} is unavailable (for {start - since:.1f} s"
                f"{cause}); cannot reserve a slot for {self._key!r}"
            ) from exc
        telemetry.redis_fallback(self._key)
        await self._fallback.acquire()
        return asyncio.get_running_loop().time() - start

    # -- feedback from the retry layer -------------------------------------------------------

    def cooldown(self, seconds: float) -> None:
        """Grant nobody in the fleet a slot for ``seconds`` from now.

        Applies to this process at once (its next calls carry it, its sleepers learn it when
        they wake); a background task writes it to Redis for the other processes. The later
        end wins. Raises `ValueError` for a negative or non-finite ``seconds``.
        """
        self._fallback.cooldown(seconds)  # validates
        end = now() + seconds
        self._pending_cool = max(self._pending_cool or end, end)
        self._flush_soon()

    def on_rate_limited(self) -> None:
        """Record a 429 for this task's slot: the fleet's rate is cut once per episode.

        Several processes reporting 429s for slots granted before the last cut, or before
        any slot granted after it succeeded, cut once. Does nothing when not adaptive.
        """
        if not self._adaptive:
            return
        self._fallback.on_rate_limited()
        slot = _SLOT.get()
        seq = slot[2] if slot is not None and slot[0] is self else self._last_seq
        if seq and (slot is None or slot[1] == self._epoch):
            self._pending_cut = max(self._pending_cut or 0, seq)
            self._flush_soon()

    def on_success(self) -> None:
        """Record a success: no call now; the next one tells Redis, letting the rate grow."""
        slot = _SLOT.get()
        if slot is not None and slot[0] is self and slot[1] == self._epoch:
            self._ok_seq = max(self._ok_seq, slot[2])
        if self._link.down_since is not None:
            self._fallback.on_success()

    # -- talking to Redis --------------------------------------------------------------------

    async def _call(self, op: str, a: int = 0, b: int = 0, c: int = 0) -> list[str]:
        """Run the script once, carrying the pending feedback; at most ``timeout`` seconds."""
        cool, cut = self._pending_cool, self._pending_cut
        # A cancelled or timed-out command makes redis-py drop its connection (it never
        # goes back to the pool with a reply unread); the tests check this under load.
        async with asyncio.timeout(self._timeout):
            answer = b""
            if op == "acquire" and cool is None and cut is None and self._epoch != "-":
                answer = await self._run(self._fast, f"{self._epoch} {self._ok_seq}")
            if not answer:  # anything but the common case: the full script
                cool_us = max(int((cool - now()) * 1e6), -1) if cool is not None else -1
                call = f"{op} {self._epoch} {self._ok_seq} {cool_us} {cut or -1} {a} {b} {c}"
                answer = await self._run(self._script, call)
        reply = (answer.decode() if isinstance(answer, bytes) else str(answer)).split()
        if self._pending_cool == cool:
            self._pending_cool = None
        if self._pending_cut == cut:
            self._pending_cut = None
        epoch = reply[4]
        if epoch != self._epoch:  # a new hash (first call, expiry, a restarted Redis)
            self._epoch, self._ok_seq, self._pending_cut = epoch, 0, None
        self._rate = float(reply[5])
        self._link.came_back()
        return reply

    async def _run(self, script: AsyncScript, call: str) -> Any:
        try:
            return await self._client.evalsha(script.sha, 1, self._key, self._config, call)
        except NoScriptError:  # after SCRIPT FLUSH or a restart: load it again, once
            script.sha = await self._client.script_load(script.script)
            return await self._client.evalsha(script.sha, 1, self._key, self._config, call)

    def _pending(self) -> bool:
        return self._pending_cool is not None or self._pending_cut is not None

    def _flush_soon(self) -> None:
        """Write the pending feedback in the background: one task at a time, coalescing."""
        if self._closed or (self._flusher is not None and not self._flusher.done()):
            return  # the running task loops until nothing is pending
        if self._link.down_since is not None:
            return  # the next probe carries it
        with contextlib.suppress(RuntimeError):  # no running loop: the next call carries it
            self._flusher = asyncio.get_running_loop().create_task(self._flush())

    async def _flush(self) -> None:
        while self._pending():
            try:
                await self._call("feedback")
            except UNAVAILABLE as exc:
                self._went_down(exc)
                return

    def _spawn(self, call: Coroutine[Any, Any, Any]) -> None:
        """Run a best-effort call in the background, tracked until `aclose`."""

        async def quietly() -> None:
            with contextlib.suppress(*UNAVAILABLE):
                await call

        task = asyncio.get_running_loop().create_task(quietly())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _went_down(self, exc: BaseException) -> None:
        if self._policy == "local":
            then = f"buckets fall back to local ones (this one at {self._fallback.rate:g}/s)"
        else:
            then = "acquire() raises ThrottleUnavailableError"
        self._link.went_down(exc, then)
