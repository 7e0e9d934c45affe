"""Whether a Redis client answers: one `Link` per client, shared by every bucket on it.

An outage is a property of the connection, not of an account: 1,000 buckets on one client
log one warning when Redis goes, probe it once a second between them, and log once when it
is back.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from .. import redaction, telemetry

#: While Redis is unavailable, one call per client tries it again at most this often (s).
PROBE_INTERVAL = 1.0

# What "Redis is unavailable" looks like: refused, reset, timed out, loading, read-only
# replica during a failover, script errors, ACL refusals. All go to the outage policy.
UNAVAILABLE = (RedisError, OSError, TimeoutError)

logger = logging.getLogger("infobip_voicelogs")


class Link:
    """The state of one client's connection to Redis, as the buckets on it have seen it."""

    __slots__ = ("__weakref__", "down_since", "next_probe", "probing", "where")

    def __init__(self, where: str) -> None:
        #: host:port/db, for messages: never the URL, which may hold a password.
        self.where = where
        #: When the current outage began (loop time), or `None` while Redis answers.
        self.down_since: float | None = None
        #: No call tries Redis before this during an outage.
        self.next_probe = 0.0
        #: A call is trying Redis now: the others do not wait for it.
        self.probing = False

    def went_down(self, exc: BaseException, then: str) -> None:
        """A call failed: note the outage (and warn, once per outage) and delay the next probe."""
        at = now()
        telemetry.redis_error(type(exc).__name__)
        self.next_probe = at + PROBE_INTERVAL
        if self.down_since is not None:
            return
        self.down_since = at
        logger.warning(
            "Redis at %s is unavailable (%s: %s): %s until it answers again",
            self.where,
            type(exc).__name__,
            exc,
            then,
        )

    def came_back(self) -> None:
        """A call succeeded: end the outage, if there was one."""
        if self.down_since is not None:
            logger.info(
                "Redis at %s answers again after %.1f s: buckets share their limits again",
                self.where,
                now() - self.down_since,
            )
            self.down_since = None


_LINKS: weakref.WeakKeyDictionary[aioredis.Redis, Link] = weakref.WeakKeyDictionary()


def link_of(client: aioredis.Redis) -> Link:
    """The `Link` of ``client``, made on first use."""
    link = _LINKS.get(client)
    if link is None:
        kwargs = client.connection_pool.connection_kwargs
        if "path" in kwargs:
            where = f"unix:{kwargs['path']}"
        else:
            where = f"{kwargs.get('host', '?')}:{kwargs.get('port', '?')}/{kwargs.get('db', 0)}"
        link = _LINKS[client] = Link(where)
        if kwargs.get("password"):  # scrubbed from every message while the client lives
            redaction.register(link, str(kwargs["password"]))
    return link


def now() -> float:
    """The running loop's clock (monotonic outside a loop): where local deadlines live."""
    try:
        return asyncio.get_running_loop().time()
    except RuntimeError:
        return time.monotonic()
