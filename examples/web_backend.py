"""A web backend that awaits the library inside a request, one fetcher per account.

A plain ASGI app (any framework does the same in its lifespan hook): the fetchers, their
throttles and their connection pool are made once at start-up and shared by every
request, so concurrent requests for one account queue politely on its 2 requests/s.

    python examples/web_backend.py     # calls the app in-process and prints the answers

Serve it for real with `uvicorn examples.web_backend:app` after pointing ACCOUNTS at your
accounts.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import MutableMapping
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs

import httpx

from infobip_voicelogs import AuthenticationError, InfobipError, LogsFetcher, LogsQuery
from infobip_voicelogs.testing import FakeInfobip
from infobip_voicelogs.testing.fake import IN_PROCESS_URL

# The demo's provider: a fake with one account. In production: your accounts' URLs and keys.
FAKE = FakeInfobip(seed=3)
SHOP = FAKE.add_account("shop")
SHOP.generate(200, within=timedelta(hours=2), settle_after=timedelta(0))
ACCOUNTS = {"shop": (IN_PROCESS_URL, SHOP.api_key)}

fetchers: dict[str, LogsFetcher] = {}


async def startup() -> None:
    client = FAKE.in_process_client()  # in production: httpx.AsyncClient(), shared by all
    for name, (base_url, key) in ACCOUNTS.items():
        fetchers[name] = LogsFetcher(base_url, key, client=client)


async def shutdown() -> None:
    for fetcher in fetchers.values():
        await fetcher.aclose()


async def logs_endpoint(query: dict[str, list[str]]) -> tuple[int, Any]:
    """GET /logs?account=shop&status=DELIVERED&limit=10"""
    fetcher = fetchers.get(query.get("account", [""])[0])
    if fetcher is None:
        return 404, {"error": "no such account"}
    try:
        logs = await fetcher.fetch(
            LogsQuery(
                general_status=query.get("status", [None])[0],
                limit=int(query.get("limit", ["10"])[0]),
            )
        )
    except ValueError as exc:  # InvalidQueryError, or a limit that is not a number
        return 400, {"error": str(exc)}
    except AuthenticationError:
        return 502, {"error": "the provider refused our credentials"}
    except InfobipError as exc:  # rate limited past retries, provider down, ...
        return 503, {"error": type(exc).__name__}
    return 200, [{"id": log.message_id, "to": log.to, "status": log.general_status} for log in logs]


async def app(scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await startup()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return
    status, payload = (404, {"error": "not found"})
    if scope["path"] == "/logs":
        status, payload = await logs_endpoint(parse_qs(scope["query_string"].decode()))
    body = json.dumps(payload).encode()
    headers = [(b"content-type", b"application/json")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def main() -> None:
    await startup()  # what the server's lifespan does
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://backend") as web:
            answers = await asyncio.gather(
                web.get("/logs", params={"account": "shop", "status": "DELIVERED", "limit": 3}),
                web.get("/logs", params={"account": "shop", "limit": 2}),
                web.get("/logs", params={"account": "shop", "limit": 5000}),
                web.get("/logs", params={"account": "nobody"}),
            )
            for answer in answers:
                print(answer.status_code, answer.json())
    finally:
        await shutdown()


if __name__ == "__main__":
    asyncio.run(main())
