"""Connections for many hosts: one small pool per host, one TLS context for all of them.

Every provider account has a host of its own (``https://<subdomain>.api.infobip.com``),
so a poller of 1,000 accounts talks to 1,000 hosts. One shared httpcore pool cannot keep
a connection alive to each: it closes idle connections once it holds more than its
keep-alive limit (it counts all its connections, not the idle ones), and a large limit
makes it scan every idle connection for each request. `HostTransport` routes each
request to the pool of its host instead, so a request looks at its own host's one or two
connections, and each host's connection lives from one poll cycle to the next.

```python
transport = HostTransport(idle_timeout=300)  # or keepalive=0 for a memory-tight fleet
async with httpx.AsyncClient(transport=transport) as client:
    ...  # every LogsFetcher(..., client=client) of every account shares it
```

`poller_client` builds the client `LogsPoller` uses when it is given none.
"""

from __future__ import annotations

import contextlib
import ssl
import time
import urllib.request
from collections import OrderedDict
from collections.abc import Iterable, Mapping

import httpx

__all__ = [
    "DEFAULT_IDLE_TIMEOUT",
    "MAX_KEEPALIVE_PER_HOST",
    "HostTransport",
    "poller_client",
]

#: Seconds an idle connection (and its host's pool) is kept: five poll intervals of 60 s.
DEFAULT_IDLE_TIMEOUT = 300.0
#: Idle connections kept to one host shared by many accounts (a proxy, a test server).
MAX_KEEPALIVE_PER_HOST = 20

_Origin = tuple[bytes, bytes, int]
_monotonic = time.monotonic  # the idle clock (tests move it)


def _origin(url: httpx.URL) -> _Origin:
    port = url.port or (443 if url.scheme == "https" else 80)
    return url.raw_scheme, url.raw_host, port


class HostTransport(httpx.AsyncBaseTransport):
    """An httpx transport with one small connection pool per (scheme, host, port).

    Pools are made on a host's first request and share one `ssl.SSLContext` (a context
    loads the whole CA bundle: one is made, not one per host).
    A host's pool keeps ``keepalive`` idle connections (more for hosts listed in
    ``keepalive_for``) and closes them after ``idle_timeout`` seconds unused; a pool idle
    that long is dropped with them, so memory follows the hosts in use, not those ever
    seen. ``keepalive=0`` keeps no connection: each request opens (and closes) its own,
    a TLS handshake per request in exchange for no memory held between requests.

    Args:
        keepalive: Idle connections kept per host.
        keepalive_for: Idle connections kept for particular hosts, by URL (only scheme,
            host and port count); capped at `MAX_KEEPALIVE_PER_HOST`.
        idle_timeout: Seconds an idle connection is kept; make it span the poll interval.
        max_connections_per_host: Connections open to one host at once; requests beyond
            it wait for one (bounded by the request's pool timeout).
        verify: An `ssl.SSLContext` to use for every host, or `True` for the default one
            (certifi's CA bundle, or ``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` if set).
    """

    def __init__(
        self,
        *,
        keepalive: int = 1,
        keepalive_for: Mapping[str, int] | None = None,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        max_connections_per_host: int = 100,
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        if keepalive < 0 or max_connections_per_host < 1:
            raise ValueError("keepalive must be >= 0 and max_connections_per_host >= 1")
        if not idle_timeout > 0:
            raise ValueError(f"idle_timeout must be positive, not {idle_timeout!r}")
        self._keepalive = keepalive
        self._keepalive_for = {
            _origin(httpx.URL(url)): max(0, min(count, MAX_KEEPALIVE_PER_HOST))
            for url, count in (keepalive_for or {}).items()
        }
        self._idle_timeout = idle_timeout
        self._max_connections = max_connections_per_host
        self._ssl = httpx.create_ssl_context(verify=verify)
        # Least recently used first: the sweep looks only at the front.
        self._pools: OrderedDict[_Origin, tuple[httpx.AsyncHTTPTransport, float]] = OrderedDict()
        self._closed = False

    @property
    def hosts(self) -> int:
        """Hosts with a pool right now (each holds at most its keep-alive idle connections)."""
        return len(self._pools)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send the request through its host's pool, made on first use."""
        if self._closed:
            raise RuntimeError("the transport is closed")
        now = _monotonic()
        await self._sweep(now)
        origin = _origin(request.url)
        entry = self._pools.pop(origin, None)
        pool = entry[0] if entry is not None else self._open(origin)
        self._pools[origin] = (pool, now)  # most recently used: at the end
        return await pool.handle_async_request(request)

    def _open(self, origin: _Origin) -> httpx.AsyncHTTPTransport:
        keepalive = self._keepalive_for.get(origin, self._keepalive)
        limits = httpx.Limits(
            max_connections=max(self._max_connections, keepalive),
            max_keepalive_connections=keepalive,
            keepalive_expiry=self._idle_timeout,
        )
        # trust_env off: the context is ours, and proxies are poller_client's business.
        return httpx.AsyncHTTPTransport(verify=self._ssl, limits=limits, trust_env=False)

    async def _sweep(self, now: float) -> None:
        """Drop the pools unused for ``idle_timeout``: O(1) per request, amortized."""
        while self._pools:
            origin, (pool, used) = next(iter(self._pools.items()))
            if now - used < self._idle_timeout:
                return
            del self._pools[origin]
            # A response still being read keeps its pool: it goes back to the end. (httpx
            # exposes no count of a transport's busy connections; its httpcore pool does.)
            if any(not c.is_idle() for c in pool._pool.connections):
                self._pools[origin] = (pool, now)
                continue
            await pool.aclose()

    async def aclose(self) -> None:
        """Close every pool and its connections; later requests raise `RuntimeError`."""
        self._closed = True
        # Taken first: a cancellation mid-way leaves no pool behind for a second close.
        pools, self._pools = list(self._pools.values()), OrderedDict()
        for pool, _ in pools:
            with contextlib.suppress(Exception):  # one failed close leaves no other open
                await pool.aclose()


def _proxied() -> bool:
    return any(name in ("http", "https", "all") for name in urllib.request.getproxies())


def poller_client(
    base_urls: Iterable[str],
    *,
    max_connections: int,
    keepalive: int = 1,
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
) -> httpx.AsyncClient:
    """The client a poller makes for its accounts when the caller gives none.

    Each host keeps ``keepalive`` idle connections per account on it (at most
    `MAX_KEEPALIVE_PER_HOST`), so one account per host keeps one connection alive and
    pays one TLS handshake per ``idle_timeout``, not one per cycle. ``keepalive=0``
    keeps none (a handshake per request, no memory held). With a proxy in the
    environment (``HTTPS_PROXY`` ...) every connection goes to the proxy, one host: the
    client is httpx's own, which honours it, with one pool.
    """
    if _proxied():
        limits = httpx.Limits(
            max_connections=max_connections,
            max_keepalive_connections=min(MAX_KEEPALIVE_PER_HOST, max_connections) * keepalive,
            keepalive_expiry=idle_timeout,
        )
        return httpx.AsyncClient(limits=limits)
    accounts_on: dict[_Origin, tuple[str, int]] = {}
    for url in base_urls:
        origin = _origin(httpx.URL(url))
        first, count = accounts_on.get(origin, (url, 0))
        accounts_on[origin] = (first, count + 1)
    transport = HostTransport(
        keepalive=keepalive,
        keepalive_for={url: count * keepalive for url, count in accounts_on.values()},
        idle_timeout=idle_timeout,
        max_connections_per_host=max_connections,
    )
    return httpx.AsyncClient(transport=transport)
