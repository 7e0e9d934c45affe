"""No configured secret leaves through an error, a repr or a log line, whatever raised it.

The property: for generated secrets of every kind the library holds, and faults injected on
every path a fetch can take (a transport raising with the header in its text, the provider
echoing the key in its error body, the fake provider's faults, respx), the secret never
appears in the exception's text, repr or traceback, in a retry hook's reason, nor in any log
record as a handler formats it.
"""

from __future__ import annotations

import asyncio
import base64
import io
import logging
import string
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import httpx
import orjson
import pytest
import respx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from infobip_voicelogs import (
    ApiKeyAuth,
    BasicAuth,
    BearerAuth,
    IbssoAuth,
    InfobipError,
    LogsFetcher,
    RetryEvent,
    TokenBucket,
)
from infobip_voicelogs.reports import BasicCredentials, HeaderSecret, HmacSignature
from infobip_voicelogs.testing import FakeInfobip, Fault
from infobip_voicelogs.testing.fake import IN_PROCESS_URL

BASE = "https://xyz.api.infobip.com"

#: Secrets a header can carry as they are: printable ASCII, no whitespace at either end.
SECRETS = st.text(
    alphabet=string.ascii_letters + string.digits + string.punctuation + " ",
    min_size=8,
    max_size=40,
).filter(lambda s: s == s.strip())

SCHEMES = ("App", "Basic", "IBSSO", "Bearer")


def auth_for(scheme: str, secret: str) -> httpx.Auth:
    return {
        "App": lambda: ApiKeyAuth(secret),
        "Basic": lambda: BasicAuth("alice", secret),
        "IBSSO": lambda: IbssoAuth(secret),
        "Bearer": lambda: BearerAuth(secret),
    }[scheme]()


def forms_of(scheme: str, secret: str) -> list[str]:
    """What must never show: the secret, and for Basic the header that encodes it."""
    if scheme == "Basic":
        return [secret, base64.b64encode(f"alice:{secret}".encode()).decode()]
    return [secret]


@contextmanager
def every_log_line() -> Iterator[io.StringIO]:
    """Every record of every logger at DEBUG, formatted with its traceback, as a user's
    root handler would write it."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield out
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)


async def no_sleep(seconds: float) -> None:
    """Retries wait for nothing here: the test counts what they say, not how long."""


# -- the faults, one per path ---------------------------------------------------------------

RAISED = (
    httpx.ConnectError,
    httpx.ReadError,
    httpx.RemoteProtocolError,
    httpx.LocalProtocolError,
    httpx.ReadTimeout,
    RuntimeError,
)


def raising_transport(kind: type[Exception], secret: str) -> httpx.MockTransport:
    """A transport whose failure quotes the request's header and the secret, as h11 does."""

    def handler(request: httpx.Request) -> httpx.Response:
        header = request.headers["Authorization"]
        raise kind(f"Illegal header value b'{header} ' (secret={secret!r})")

    return httpx.MockTransport(handler)


def echoing_transport(status: int, secret: str) -> httpx.MockTransport:
    """A provider that echoes the credential in its error body (some do)."""

    def handler(request: httpx.Request) -> httpx.Response:
        header = request.headers["Authorization"]
        body = {
            "requestError": {
                "serviceException": {
                    "messageId": f"BAD_{secret}",
                    "text": f"refused {header}; key {secret}",
                }
            }
        }
        return httpx.Response(status, content=orjson.dumps(body), headers={"Retry-After": "0"})

    return httpx.MockTransport(handler)


FAKE_FAULTS = (
    Fault.reset(),
    Fault.truncate(),
    Fault.malformed(),
    Fault.status(500),
    Fault.status(503),
    Fault.status(429, retry_after=0),
)


def fake_for(scheme: str, secret: str, fault: Fault) -> FakeInfobip:
    fake = FakeInfobip(rate_limit_per_minute=10_000, seed=1)
    credential = {
        "App": {"api_key": secret},
        "Basic": {"basic": ("alice", secret)},
        "IBSSO": {"ibsso_token": secret},
        "Bearer": {"bearer_token": secret},
    }[scheme]
    account = fake.add_account("acme", **credential)  # type: ignore[arg-type]
    account.script(*[fault] * 6)
    return fake


async def fetch_failing(
    scheme: str, secret: str, path: str, choice: int
) -> tuple[BaseException | None, list[RetryEvent]]:
    """One fetch along ``path`` with fault number ``choice``: what it raised, and its retries."""
    events: list[RetryEvent] = []
    # A generous bucket: the test counts what the tries say, it does not wait for slots.
    options: dict[str, object] = {
        "on_retry": events.append,
        "sleep": no_sleep,
        "throttle": TokenBucket(1e6, 1000),
    }
    auth = auth_for(scheme, secret)
    raised: BaseException | None = None
    if path == "transport":
        transport = raising_transport(RAISED[choice % len(RAISED)], secret)
        client = httpx.AsyncClient(transport=transport)
        base = BASE
    elif path == "echo":
        transport = echoing_transport((401, 400, 429, 500, 503)[choice % 5], secret)
        client = httpx.AsyncClient(transport=transport)
        base = BASE
    elif path == "fake":
        client = fake_for(
            scheme, secret, FAKE_FAULTS[choice % len(FAKE_FAULTS)]
        ).in_process_client()
        base = IN_PROCESS_URL
    else:  # respx, in front of the fetcher's own client
        client = None
        base = BASE
    try:
        async with LogsFetcher(base, auth, client=client, **options) as fetcher:  # type: ignore[arg-type]
            if path == "respx":
                with respx.mock:
                    kind = RAISED[choice % len(RAISED)]
                    respx.get(f"{BASE}/tts/3/logs").mock(
                        side_effect=lambda request: (_ for _ in ()).throw(
                            kind(f"{request.headers['Authorization']} / {secret}")
                        )
                    )
                    await fetcher.fetch()
            else:
                await fetcher.fetch()
    except Exception as exc:
        raised = exc
    finally:
        if client is not None:
            await client.aclose()
    return raised, events


@settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(
    secret=SECRETS,
    scheme=st.sampled_from(SCHEMES),
    path=st.sampled_from(("transport", "echo", "fake", "respx")),
    choice=st.integers(min_value=0, max_value=29),
)
def test_no_secret_leaves_through_an_error_a_hook_or_a_log_line(
    secret: str, scheme: str, path: str, choice: int
) -> None:
    with every_log_line() as logged:
        raised, events = asyncio.run(fetch_failing(scheme, secret, path, choice))
    assert raised is not None, "every path fails"
    if not isinstance(raised, RuntimeError):
        assert isinstance(raised, InfobipError)
    shown = "\n".join(
        [
            str(raised),
            repr(raised),
            "".join(traceback.format_exception(raised)),
            *(event.reason for event in events),
            logged.getvalue(),
        ]
    )
    for form in forms_of(scheme, secret):
        assert form not in shown


# -- every holder of a secret registers it ------------------------------------------------


def holders(secret: str) -> list[Callable[[], object]]:
    """Each way of giving the library a secret, as a factory of the object that holds it."""
    return [
        lambda: ApiKeyAuth(secret),
        lambda: BasicAuth("alice", secret),
        lambda: IbssoAuth(secret),
        lambda: BearerAuth(secret),
        lambda: BasicCredentials("infobip", secret),
        lambda: HmacSignature("X-Signature", secret),
        lambda: HeaderSecret("X-Token", secret.encode()),
    ]


@settings(max_examples=30, deadline=None)
@given(secret=SECRETS, which=st.integers(min_value=0, max_value=6))
def test_a_library_log_line_never_shows_a_held_secret(secret: str, which: int) -> None:
    holder = holders(secret)[which]()
    try:
        raise ValueError(f"something quoted {secret!r}")
    except ValueError as exc:
        error = exc
    with every_log_line() as logged:
        logging.getLogger("infobip_voicelogs").warning("saw %s", secret, exc_info=error)
        logging.getLogger("infobip_voicelogs.store").error("child saw %s", secret)
    text = logged.getvalue()
    assert "WARNING infobip_voicelogs saw ****" in text
    assert "child saw ****" in text
    assert secret not in text
    del holder


def test_a_secret_is_forgotten_with_its_last_holder() -> None:
    secret = "rotated-out-token-1234"
    holder = BearerAuth(secret)
    with every_log_line() as logged:
        logging.getLogger("infobip_voicelogs").warning("token %s", secret)
    assert secret not in logged.getvalue()
    del holder
    with every_log_line() as logged:
        logging.getLogger("infobip_voicelogs").warning("token %s", secret)
    assert secret in logged.getvalue()


def test_a_postgres_password_is_registered_by_the_store() -> None:
    pytest.importorskip("psycopg")
    from infobip_voicelogs.postgres import PostgresStore

    store = PostgresStore("postgresql://voice:pg-s3cret-pass@127.0.0.1:1/logs")
    with every_log_line() as logged:
        logging.getLogger("infobip_voicelogs").warning("dsn password pg-s3cret-pass")
    assert "pg-s3cret-pass" not in logged.getvalue()
    del store


def test_a_redis_password_is_registered_by_the_bucket() -> None:
    redis = pytest.importorskip("redis.asyncio")
    from infobip_voicelogs.redis import RedisBucket

    client = redis.Redis.from_url("redis://:rd-s3cret-pass@127.0.0.1:1/0")
    bucket = RedisBucket(client, key="acct")
    with every_log_line() as logged:
        logging.getLogger("infobip_voicelogs").warning("redis said rd-s3cret-pass")
    assert "rd-s3cret-pass" not in logged.getvalue()
    del bucket


# -- secrets a header cannot carry are refused when given ----------------------------------


@pytest.mark.parametrize("bad", [" pass-w0rd-xyz", "pass-w0rd-xyz ", "pass-w0rd-xyz\n"])
@pytest.mark.parametrize(
    "make",
    [
        lambda s: BasicCredentials("infobip", s),
        lambda s: HmacSignature("X-Signature", s),
        lambda s: HeaderSecret("X-Token", s),
    ],
)
def test_a_reports_secret_with_surrounding_whitespace_is_refused_without_echoing_it(
    bad: str, make: Callable[[str], object]
) -> None:
    with pytest.raises(ValueError, match="whitespace") as caught:
        make(bad)
    assert "pass-w0rd-xyz" not in str(caught.value)


def test_a_header_secret_must_be_printable_ascii_but_bytes_are_taken_as_given() -> None:
    with pytest.raises(ValueError, match="printable ASCII"):
        HeaderSecret("X-Token", "tok\x07en-value")
    HmacSignature("X-Signature", b" raw secret bytes ")  # whitespace meant: bytes say so
