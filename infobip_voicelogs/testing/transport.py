"""`FakeTransport`: in-process like `httpx.ASGITransport`, but failing like a network.

`httpx.ASGITransport` ignores timeouts, passes the app's exceptions straight up and
hands over a body shorter than its `Content-Length` without a word. A client under
test should see what it would see over a socket, so this transport wraps it and
translates: a read timeout, a dropped connection and a short body each raise the
`httpx.TransportError` that httpx raises for them on a real connection.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import httpx

if TYPE_CHECKING:  # the fake builds its clients with this transport: no import back
    from .fake import FakeInfobip

__all__ = ["FakeTransport"]


class FakeTransport(httpx.AsyncBaseTransport):
    """An in-process transport to a `FakeInfobip` with network-like failures.

    >>> transport = FakeTransport(fake)  # doctest: +SKIP
    >>> client = httpx.AsyncClient(transport=transport, base_url=IN_PROCESS_URL)  # doctest: +SKIP
    """

    def __init__(self, app: FakeInfobip) -> None:
        self._inner = httpx.ASGITransport(app=app)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Run the request through the app; raise as httpx would over a socket."""
        timeouts = request.extensions.get("timeout", {})
        try:
            async with asyncio.timeout(timeouts.get("read")):
                response = await self._inner.handle_async_request(request)
                body = await response.aread()
        except TimeoutError:
            raise httpx.ReadTimeout("the fake did not answer in time", request=request) from None
        except ConnectionResetError:
            raise httpx.RemoteProtocolError(
                "Server disconnected without sending a response.", request=request
            ) from None
        declared = response.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > len(body):
            raise httpx.RemoteProtocolError(
                "peer closed connection without sending complete message body "
                f"(received {len(body)} bytes, expected {declared})",
                request=request,
            )
        return httpx.Response(
            response.status_code, headers=response.headers, stream=httpx.ByteStream(body)
        )
