"""Credentials: each scheme's `Authorization` header, and secrets that never show."""

from __future__ import annotations

import base64
from collections.abc import Callable

import httpx
import pytest

from infobip_voicelogs import ApiKeyAuth, BasicAuth, BearerAuth, IbssoAuth, LogsFetcher
from infobip_voicelogs.auth import auth_from

SECRET = "s3cr3t-0f-the-acc0unt"


async def authorization_sent(auth: httpx.Auth) -> str:
    """The `Authorization` header a request made with ``auth`` carries on the wire."""
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["Authorization"])
        return httpx.Response(200)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        await client.get("https://xyz.api.infobip.com/tts/3/logs", auth=auth)
    assert len(seen) == 1
    return seen[0]


@pytest.mark.parametrize(
    ("auth", "header"),
    [
        (ApiKeyAuth(SECRET), f"App {SECRET}"),
        (IbssoAuth(SECRET), f"IBSSO {SECRET}"),
        (BearerAuth(SECRET), f"Bearer {SECRET}"),
        (
            BasicAuth("alice", SECRET),
            "Basic " + base64.b64encode(f"alice:{SECRET}".encode()).decode(),
        ),
    ],
)
async def test_each_scheme_sets_the_providers_header(auth: httpx.Auth, header: str) -> None:
    assert await authorization_sent(auth) == header


async def test_a_string_is_an_api_key() -> None:
    auth = auth_from(SECRET)
    assert isinstance(auth, ApiKeyAuth)
    assert await authorization_sent(auth) == f"App {SECRET}"


def test_an_auth_object_is_used_as_given() -> None:
    bearer = BearerAuth(SECRET)
    assert auth_from(bearer) is bearer


@pytest.mark.parametrize(
    ("auth", "shown"),
    [
        (ApiKeyAuth(SECRET), "ApiKeyAuth(key='****')"),
        (IbssoAuth(SECRET), "IbssoAuth(token='****')"),
        (BearerAuth(SECRET), "BearerAuth(token='****')"),
        (BasicAuth("alice", SECRET), "BasicAuth(username='alice', password='****')"),
    ],
)
def test_repr_masks_the_secret(auth: httpx.Auth, shown: str) -> None:
    assert repr(auth) == shown
    assert SECRET not in str(auth)
    assert SECRET not in f"{auth!r} {auth!s}"


def test_a_tuple_is_refused_without_echoing_it() -> None:
    with pytest.raises(TypeError, match="not tuple") as caught:
        auth_from(("alice", SECRET))  # type: ignore[arg-type]
    assert SECRET not in str(caught.value)


@pytest.mark.parametrize(
    "bad", ["", "   ", f"{SECRET}\r\nX-Injected: 1", f"{SECRET}\x07", f"{SECRET}é", f"{SECRET}\t"]
)
def test_an_unusable_key_is_refused_without_echoing_it(bad: str) -> None:
    with pytest.raises(ValueError, match="key") as caught:
        ApiKeyAuth(bad)
    assert SECRET not in str(caught.value)


@pytest.mark.parametrize("bad", [f"{SECRET} ", f" {SECRET}", f"{SECRET}  "])
@pytest.mark.parametrize(
    "make",
    [
        lambda s: LogsFetcher("https://xyz.api.infobip.com", auth=s),
        ApiKeyAuth,
        IbssoAuth,
        BearerAuth,
        lambda s: BasicAuth("alice", s),
    ],
)
def test_a_secret_with_surrounding_whitespace_is_refused_in_one_line_without_echoing_it(
    bad: str, make: Callable[[str], object]
) -> None:
    with pytest.raises(ValueError, match="leading or trailing whitespace") as caught:
        make(bad)
    assert SECRET not in str(caught.value)
    assert "\n" not in str(caught.value)


def test_basic_auth_refuses_a_colon_in_the_username() -> None:
    with pytest.raises(ValueError, match="username"):
        BasicAuth("al:ice", SECRET)
