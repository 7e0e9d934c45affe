"""Serving the fake over real HTTP with uvicorn (the `simulate` extra).

`serve` blocks, for a command line; `running` is an async context manager that serves
on a free port of the current event loop, for tests over real sockets. Both use a
uvicorn HTTP protocol that hands the app its connection, so `Fault.reset()` and
`Fault.truncate()` really drop it. uvicorn is imported only when called.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import socket
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import attrs

from .account import FakeAccount
from .fake import TRANSPORT_EXTENSION, FakeInfobip

if TYPE_CHECKING:
    import uvicorn

__all__ = ["FakeServer", "running", "serve"]


@attrs.frozen
class FakeServer:
    """A fake being served: where to reach it, and with what credentials."""

    fake: FakeInfobip
    #: `http://host:port`, the base URL for every account.
    base_url: str

    def endpoint(self, account: FakeAccount | str) -> tuple[str, str]:
        """(base URL, API key) of an account, to configure a client with."""
        if isinstance(account, str):
            account = self.fake.accounts[account]
        return self.base_url, account.api_key


def serve(
    fake: FakeInfobip, host: str = "127.0.0.1", port: int = 8099, *, log_level: str = "warning"
) -> None:
    """Serve `fake` on `host:port` until interrupted (blocking).

    Raises `RuntimeError` naming the extra to install when uvicorn is missing.
    """
    server = _server(fake, log_level)
    server.config.host, server.config.port = host, port
    server.run()


@contextlib.asynccontextmanager
async def running(
    fake: FakeInfobip, host: str = "127.0.0.1", port: int = 0, *, log_level: str = "warning"
) -> AsyncIterator[FakeServer]:
    """Serve `fake` on this event loop while the block runs; port 0 picks a free one.

    >>> async with running(fake) as server:  # doctest: +SKIP
    ...     base_url, api_key = server.endpoint(account)
    """
    server = _server(fake, log_level)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    bound_port = sock.getsockname()[1]
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()  # the server failed to start: raise its error
                raise RuntimeError("uvicorn stopped before it started")
            await asyncio.sleep(0.01)
        url_host = f"[{host}]" if family == socket.AF_INET6 else host
        yield FakeServer(fake, f"http://{url_host}:{bound_port}")
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await task
        sock.close()


def _server(fake: FakeInfobip, log_level: str) -> uvicorn.Server:
    try:
        import uvicorn
    except ImportError:
        raise RuntimeError(
            "serving the fake over HTTP needs uvicorn: pip install 'infobip-voicelogs[simulate]'"
        ) from None
    protocol = _connection_aware_protocol()
    config = uvicorn.Config(fake, http=protocol, lifespan="on", log_level=log_level)
    return uvicorn.Server(config)


@functools.cache
def _connection_aware_protocol() -> type[Any]:
    """uvicorn's h11 protocol, passing each request its connection in a scope extension."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class ConnectionAwareH11Protocol(H11Protocol):
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            app = self.app

            async def with_connection(scope: Any, receive: Any, send: Any) -> None:
                extensions = {**(scope.get("extensions") or {}), TRANSPORT_EXTENSION: transport}
                await app({**scope, "extensions": extensions}, receive, send)

            self.app = with_connection

    return ConnectionAwareH11Protocol
