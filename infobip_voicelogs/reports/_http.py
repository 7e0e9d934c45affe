"""The receiver's ASGI plumbing: the request's headers, its bounded body, a JSON answer.

Nothing here knows about reports; `_receiver` decides what to answer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any

import orjson

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class BodyRefused(Exception):
    """The body was not read to its end: too large (413), too slow (408) or abandoned (0)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def headers_of(scope: Scope) -> dict[bytes, bytes]:
    """The request's headers, lower-case name to the first value (ASGI names are lower-case)."""
    found: dict[bytes, bytes] = {}
    for name, value in scope.get("headers", ()):
        found.setdefault(bytes(name).lower(), bytes(value))
    return found


def declared_length(headers: dict[bytes, bytes]) -> int | None:
    """The `Content-Length`, `None` without one; `BodyRefused(400)` if it is not a number."""
    value = headers.get(b"content-length")
    if value is None:
        return None
    if not value.strip().isdigit():
        raise BodyRefused(400, "bad content length")
    return int(value)


async def read_body(receive: Receive, *, limit: int, seconds: float) -> bytes:
    """The whole body, read chunk by chunk: at most ``limit`` bytes within ``seconds``.

    Stops reading at the first chunk past the limit (413) or at the deadline (408), so a
    huge or trickling body costs no more than the limit and the timeout. A client gone
    mid-body raises `BodyRefused(0)`: there is no one left to answer.
    """
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(seconds):
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise BodyRefused(0, "client disconnected")
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > limit:
                    raise BodyRefused(413, "body too large")
                if chunk:
                    chunks.append(chunk)
                if not message.get("more_body", False):
                    return b"".join(chunks)
    except TimeoutError:
        raise BodyRefused(408, "body not received in time") from None


async def respond(
    send: Send,
    status: int,
    payload: dict[str, Any],
    headers: Sequence[tuple[bytes, bytes]] = (),
) -> None:
    """Send ``payload`` as a small JSON answer with ``status`` and the extra ``headers``."""
    body = orjson.dumps(payload)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def lifespan(
    receive: Receive,
    send: Send,
    *,
    startup: Callable[[], object] | None = None,
    shutdown: Callable[[], Awaitable[object]] | None = None,
) -> None:
    """Answer the server's lifespan messages, calling `startup` and `shutdown` on the way."""
    while True:
        message = await receive()
        kind = message["type"]
        if kind == "lifespan.startup":
            if startup is not None:
                startup()
            await send({"type": "lifespan.startup.complete"})
        elif kind == "lifespan.shutdown":
            if shutdown is not None:
                await shutdown()
            await send({"type": "lifespan.shutdown.complete"})
            return
