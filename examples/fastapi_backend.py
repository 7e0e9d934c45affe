"""A FastAPI backend that awaits the library inside its requests, one fetcher per account.

The fetchers and the one `httpx.AsyncClient` (and connection pool) they share are made in
the app's lifespan and used by every request, so concurrent requests for one account queue
politely on its 2 requests/s. Each request of ours spends at most `REQUEST_BUDGET` seconds
on the provider, throttle waits and retries included (the fetcher's ``budget``). A bad
query is a 422, a provider that asks us to wait longer than that is a 503 with its
`Retry-After`, a refused credential is a 502, a provider too slow for the budget is a 504.

    python examples/fastapi_backend.py     # serves a fake provider in-process, prints answers

For real: `INFOBIP_ACCOUNTS='{"shop": ["https://xyz.api.infobip.com", "KEY"]}' \\
uvicorn examples.fastapi_backend:app --workers 4`. With several workers (or hosts) each has
its own throttle, and together they would exceed an account's limit: set `REDIS_URL` and
every process shares each account's bucket through Redis (`pip install
'infobip-voicelogs[redis]'`).
"""

from __future__ import annotations

import asyncio
import json
import math
import os
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Annotated, Any

import httpx
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse, Response

from infobip_voicelogs import (
    AuthenticationError,
    BudgetExceededError,
    InfobipError,
    InvalidQueryError,
    LogsFetcher,
    LogsQuery,
    RateLimitError,
    encode_logs,
)

#: The most one request of ours spends on the provider: throttle waits, tries and backoff.
#: A `Retry-After` longer than what is left is passed on to our caller as a 503 at once.
REQUEST_BUDGET = 10.0


def create_app(
    accounts: Mapping[str, tuple[str, str]],
    *,
    client: Callable[[], httpx.AsyncClient] = httpx.AsyncClient,
    redis_url: str | None = None,
    budget: float = REQUEST_BUDGET,
) -> FastAPI:
    """The app for ``accounts`` (name -> (base URL, API key)); ``client`` makes the shared
    HTTP client, ``redis_url`` switches every account's throttle to a Redis-shared bucket,
    ``budget`` is the seconds one request may spend on the provider."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        redis = None
        if redis_url:
            # Imported only when asked for: the redis extra is optional.
            from redis.asyncio import Redis

            from infobip_voicelogs.redis import RedisBucket

            redis = Redis.from_url(redis_url)
        async with client() as shared:
            app.state.fetchers = {
                name: LogsFetcher(
                    base_url,
                    key,
                    client=shared,  # the fetcher then never closes it: we do, below
                    throttle=(
                        RedisBucket(redis, key=f"infobip-voicelogs:{name}", rate=2.0)
                        if redis is not None
                        else None  # a local TokenBucket at 2 requests/s
                    ),
                    budget=budget,  # every fetch() of a request ends within it
                    account=name,  # names the account in metrics (if opted in) and logs
                )
                for name, (base_url, key) in accounts.items()
            }
            try:
                yield
            finally:
                if redis is not None:
                    await redis.aclose()

    app = FastAPI(title="voice logs", lifespan=lifespan)

    @app.exception_handler(InvalidQueryError)
    async def invalid_query(_request: Request, exc: InvalidQueryError) -> JSONResponse:
        detail = [{"loc": ["query", exc.field], "msg": str(exc), "type": "value_error"}]
        return JSONResponse({"detail": detail}, status_code=422)

    @app.exception_handler(RateLimitError)
    async def rate_limited(_request: Request, exc: RateLimitError) -> JSONResponse:
        retry_after = math.ceil(exc.retry_after) if exc.retry_after is not None else 1
        return JSONResponse(
            {"detail": "the provider's rate limit for this account is used up; try later"},
            status_code=503,
            headers={"Retry-After": str(retry_after)},
        )

    @app.exception_handler(BudgetExceededError)
    async def too_slow(_request: Request, exc: BudgetExceededError) -> JSONResponse:
        # The message says where the time went (throttle, tries, backoff): for our log only.
        return JSONResponse({"detail": "the provider did not answer in time"}, status_code=504)

    @app.exception_handler(AuthenticationError)
    async def refused(_request: Request, _exc: AuthenticationError) -> JSONResponse:
        return JSONResponse({"detail": "the provider refused our credentials"}, status_code=502)

    @app.exception_handler(InfobipError)
    async def provider_failed(_request: Request, exc: InfobipError) -> JSONResponse:
        return JSONResponse({"detail": f"the provider failed: {type(exc).__name__}"}, 502)

    @app.get("/accounts/{name}/logs")
    async def logs(
        name: str,
        request: Request,
        status: Annotated[str | None, Query(description="PENDING, DELIVERED, ...")] = None,
        limit: Annotated[int, Query()] = 50,
        since: Annotated[datetime | None, Query(description="ISO 8601 with offset")] = None,
        until: Annotated[datetime | None, Query()] = None,
    ) -> Response:
        fetcher: LogsFetcher | None = request.app.state.fetchers.get(name)
        if fetcher is None:
            raise HTTPException(404, f"no account named {name!r}")
        # LogsQuery validates (InvalidQueryError -> 422 above): limit, aware times, order.
        query = LogsQuery(general_status=status, limit=limit, sent_since=since, sent_until=until)
        # The provider's own JSON shape, written by the library's encoder in one go.
        return Response(
            encode_logs(await fetcher.fetch(query), "json"), 200, None, "application/json"
        )

    @app.get("/accounts/{name}/logs/{message_id}")
    async def one_log(name: str, message_id: str, request: Request) -> dict[str, Any]:
        fetcher: LogsFetcher | None = request.app.state.fetchers.get(name)
        if fetcher is None:
            raise HTTPException(404, f"no account named {name!r}")
        found = await fetcher.fetch(LogsQuery(message_ids=message_id, limit=1))
        if not found:
            raise HTTPException(404, f"no log {message_id!r} in the last 48 hours")
        # One log as data, which FastAPI serialises as it is: the provider's JSON shape,
        # with the price as exact text ("0.01") and absent fields left out.
        return found[0].to_dict()

    return app


def _accounts_from_env() -> dict[str, tuple[str, str]]:
    raw = json.loads(os.environ.get("INFOBIP_ACCOUNTS", "{}"))
    return {name: (url, key) for name, (url, key) in raw.items()}


#: For `uvicorn examples.fastapi_backend:app`.
app = create_app(_accounts_from_env(), redis_url=os.environ.get("REDIS_URL"))


async def main() -> None:
    from infobip_voicelogs.testing import IN_PROCESS_URL, FakeInfobip, Fault

    fake = FakeInfobip(seed=3)  # the demo's provider; in production, your accounts
    shop = fake.add_account("shop")
    shop.generate(200, within=timedelta(hours=2), settle_after=timedelta(0))
    demo = create_app({"shop": (IN_PROCESS_URL, shop.api_key)}, client=fake.in_process_client)
    async with demo.router.lifespan_context(demo):  # what uvicorn does at start and stop
        transport = httpx.ASGITransport(app=demo)
        async with httpx.AsyncClient(transport=transport, base_url="http://backend") as web:
            answers = list(
                await asyncio.gather(
                    web.get("/accounts/shop/logs", params={"status": "DELIVERED", "limit": 3}),
                    web.get("/accounts/shop/logs", params={"limit": 5000}),
                    web.get("/accounts/nobody/logs"),
                )
            )
            shop.script(Fault.status(429, retry_after=30))  # more than we'd wait in a request
            answers.append(await web.get("/accounts/shop/logs"))
    for answer in answers:
        body: Any = answer.json()
        if answer.status_code == 200:
            body = [log["status"]["groupName"] for log in body["results"]]
        retry_after = answer.headers.get("retry-after")
        print(answer.status_code, body, *([f"Retry-After: {retry_after}"] if retry_after else []))


if __name__ == "__main__":
    asyncio.run(main())
