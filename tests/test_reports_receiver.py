"""`ReportsReceiver`: every answer it gives, and what it hands over (or not) for each."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import logging
import socket
from collections.abc import AsyncIterator, Sequence
from typing import Any

import httpx
import orjson
import pytest
import uvicorn
from fastapi import FastAPI
from hypothesis import given
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.routing import Mount

from infobip_voicelogs import telemetry
from infobip_voicelogs.reports import (
    BasicCredentials,
    HeaderSecret,
    HmacSignature,
    NoAuth,
    ReportsAuth,
    ReportsReceiver,
)
from infobip_voicelogs.reports._receiver import DEFAULT_MAX_BODY
from infobip_voicelogs.telemetry import _instruments

PASSWORD = "pa55-w0rd-of-the-provider"
SECRET = "hmac-shared-secret-42"
BASIC = BasicCredentials("infobip", PASSWORD)
JSON = {"content-type": "application/json"}


def report(message_id: str, status: str = "DELIVERED", group_id: int = 3) -> dict[str, Any]:
    """One report in the provider's current (nested) shape."""
    return {
        "bulkId": "bulk-1",
        "messageId": message_id,
        "from": "385333444",
        "to": "41793026727",
        "sentAt": "2026-12-01T13:38:14.730+0000",
        "mccMnc": "22801",
        "callbackData": "order 17",
        "voiceCall": {
            "feature": "Voice-message",
            "startTime": "2026-12-01T13:38:15.000+0000",
            "answerTime": "2026-12-01T13:38:20.000+0000",
            "endTime": "2026-12-01T13:38:30.000+0000",
            "duration": 10,
            "chargedDuration": 10,
            "fileDuration": 9.5,
        },
        "price": {"pricePerSecond": 0.01, "currency": "EUR"},
        "status": {"groupId": group_id, "groupName": status, "id": 5, "name": f"{status}_OK"},
        "error": {"groupId": 0, "groupName": "OK", "id": 5000, "name": "VOICE_ANSWERED"},
    }


def batch(*message_ids: str) -> bytes:
    return orjson.dumps({"results": [report(m) for m in message_ids]})


def basic(username: str = "infobip", password: str = PASSWORD) -> dict[str, str]:
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {**JSON, "authorization": f"Basic {token}"}


class Deliveries:
    """A ``deliver`` that records each call; ``fail`` makes the next calls raise."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[str]]] = []
        self.fail: Exception | None = None
        self.gate: asyncio.Event | None = None
        self.entered = asyncio.Event()

    async def __call__(self, account: str, reports: Sequence[Any]) -> None:
        self.entered.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        self.calls.append((account, [r.message_id for r in reports]))


@pytest.fixture
def deliveries() -> Deliveries:
    return Deliveries()


def receiver_for(deliveries: Deliveries, auth: ReportsAuth = BASIC, **options: Any) -> Any:
    return ReportsReceiver({"acme", "globex"}, deliver=deliveries, auth=auth, **options)


@contextlib.asynccontextmanager
async def client_of(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://receiver") as client:
        yield client


@pytest.fixture
async def client(deliveries: Deliveries) -> AsyncIterator[httpx.AsyncClient]:
    async with client_of(receiver_for(deliveries)) as client:
        yield client


def rejected(reason: str) -> float:
    """How many POSTs were refused for ``reason`` so far, over every account attribute."""
    counts = _instruments._REPORTS_REJECTED.counts
    return sum(v for k, v in counts.items() if ("reason", reason) in k)


# -- raw ASGI: what was read of the body -------------------------------------------------------


class Wire:
    """An ASGI ``receive``/``send`` pair that counts the body chunks the app pulled."""

    def __init__(self, chunks: Sequence[bytes], *, stall: bool = False) -> None:
        self.chunks = list(chunks)
        self.pulled = 0
        self.stall = stall
        self.sent: list[dict[str, Any]] = []

    async def receive(self) -> dict[str, Any]:
        if self.pulled == len(self.chunks):
            if self.stall:
                await asyncio.Event().wait()  # a client that never sends the rest
            return {"type": "http.disconnect"}
        self.pulled += 1
        more = self.pulled < len(self.chunks)
        return {"type": "http.request", "body": self.chunks[self.pulled - 1], "more_body": more}

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)

    @property
    def status(self) -> int | None:
        starts = [m for m in self.sent if m["type"] == "http.response.start"]
        return starts[0]["status"] if starts else None


def scope(path: str = "/acme", headers: dict[str, str] | None = None, **extra: Any) -> Any:
    raw = [(k.lower().encode(), v.encode()) for k, v in (headers or basic()).items()]
    return {"type": "http", "method": "POST", "path": path, "headers": raw, **extra}


# -- 200 ---------------------------------------------------------------------------------------


async def test_a_batch_is_answered_200_only_after_deliver_returned(
    deliveries: Deliveries, client: httpx.AsyncClient
) -> None:
    deliveries.gate = asyncio.Event()
    answer = asyncio.create_task(client.post("/acme", content=batch("m1", "m2"), headers=basic()))
    await deliveries.entered.wait()
    await asyncio.sleep(0)
    assert not answer.done()  # deliver has not returned: no answer yet
    deliveries.gate.set()
    response = await answer
    assert response.status_code == 200
    assert response.json() == {"received": 2}
    assert deliveries.calls == [("acme", ["m1", "m2"])]


async def test_an_xml_batch_is_delivered(deliveries: Deliveries, client: httpx.AsyncClient) -> None:
    body = (
        b"<reportResponse><results><results><messageId>x1</messageId>"
        b"<sentAt>2026-12-01T13:38:14.730+0000</sentAt>"
        b"<status><groupId>3</groupId><groupName>DELIVERED</groupName>"
        b"<id>5</id><name>DELIVERED_TO_HANDSET</name></status>"
        b"</results></results></reportResponse>"
    )
    headers = {**basic(), "content-type": "application/xml; charset=UTF-8"}
    response = await client.post("/globex", content=body, headers=headers)
    assert response.status_code == 200
    assert deliveries.calls == [("globex", ["x1"])]


async def test_a_redelivered_batch_is_handed_over_again_and_answered_200(
    deliveries: Deliveries, client: httpx.AsyncClient
) -> None:
    # Telling a redelivery from a new batch is the store's business: the receiver delivers.
    for _ in range(2):
        response = await client.post("/acme", content=batch("m1"), headers=basic())
        assert response.status_code == 200
    assert deliveries.calls == [("acme", ["m1"]), ("acme", ["m1"])]


async def test_an_empty_batch_is_answered_200_without_a_delivery(
    deliveries: Deliveries, client: httpx.AsyncClient
) -> None:
    response = await client.post("/acme", content=b'{"results": []}', headers=basic())
    assert (response.status_code, response.json()) == (200, {"received": 0})
    assert deliveries.calls == []


async def test_a_batch_of_2000_reports_is_taken_off_the_event_loop(
    deliveries: Deliveries, client: httpx.AsyncClient
) -> None:
    ids = [f"m{i}" for i in range(2000)]
    body = batch(*ids)
    assert len(body) > 256 * 1024  # past the size that is verified and decoded in a thread
    response = await client.post("/acme", content=body, headers=basic())
    assert response.json() == {"received": 2000}
    assert deliveries.calls == [("acme", ids)]


async def test_delivered_batches_and_reports_are_counted(deliveries: Deliveries) -> None:
    if not telemetry.ENABLED:
        pytest.skip("opentelemetry-api is not installed")
    reports, batches = _instruments._REPORTS.counts, _instruments._REPORT_BATCHES.counts
    before = (sum(reports.values()), sum(batches.values()))
    async with client_of(receiver_for(deliveries)) as client:
        await client.post("/acme", content=batch("a", "b", "c"), headers=basic())
        await client.post("/acme", content=b"{", headers=basic())  # refused: not counted
    assert (sum(reports.values()), sum(batches.values())) == (before[0] + 3, before[1] + 1)


# -- 503: nothing acknowledged that was not committed -------------------------------------------


async def test_a_failed_delivery_answers_503_with_retry_after_and_the_retry_is_taken(
    deliveries: Deliveries, client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    deliveries.fail = RuntimeError("database is locked")
    response = await client.post("/acme", content=batch("m1"), headers=basic())
    assert response.status_code == 503
    assert response.headers["retry-after"] == "10"
    assert "database is locked" not in response.text  # the cause goes to the log only
    assert "RuntimeError" in caplog.text
    deliveries.fail = None  # the provider retries once the store is back
    response = await client.post("/acme", content=batch("m1"), headers=basic())
    assert response.status_code == 200
    assert deliveries.calls == [("acme", ["m1"])]


async def test_a_delivery_that_overruns_its_timeout_answers_503(deliveries: Deliveries) -> None:
    deliveries.gate = asyncio.Event()  # never set: a store that hangs
    receiver = receiver_for(deliveries, deliver_timeout=0.01, retry_after=3)
    async with client_of(receiver) as client:
        response = await client.post("/acme", content=batch("m1"), headers=basic())
    assert (response.status_code, response.headers["retry-after"]) == (503, "3")
    assert deliveries.calls == []


# -- 400: a body that does not decode hands nothing over ----------------------------------------


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b'{"results": [{"messageId": "m1"}', "application/json"),  # truncated
        (b"[1, 2]", "application/json"),  # not an object
        (b'{"results": [{"messageId": "m1", "sentAt": "yesterday"}]}', "application/json"),
        (b"<reportResponse><results>", "application/xml"),  # truncated
        (
            b'<!DOCTYPE r [<!ENTITY e SYSTEM "file:///etc/passwd">]><r><results>&e;</results></r>',
            "application/xml",
        ),
    ],
    ids=["truncated-json", "json-array", "bad-time", "truncated-xml", "xml-entity"],
)
async def test_a_body_that_does_not_decode_answers_400_and_delivers_nothing(
    deliveries: Deliveries, client: httpx.AsyncClient, body: bytes, content_type: str
) -> None:
    headers = {**basic(), "content-type": content_type}
    response = await client.post("/acme", content=body, headers=headers)
    assert response.status_code == 400
    assert response.json()["error"] == "malformed"
    assert deliveries.calls == []
    assert not deliveries.entered.is_set()


async def test_a_batch_with_one_bad_report_delivers_none_of_it(
    deliveries: Deliveries, client: httpx.AsyncClient
) -> None:
    reports = [report("good"), {**report("bad"), "sentAt": "not a time"}]
    body = orjson.dumps({"results": reports})
    response = await client.post("/acme", content=body, headers=basic())
    assert response.status_code == 400
    assert "results[1]" in response.json()["message"]
    assert deliveries.calls == []


async def test_a_content_length_that_is_not_a_number_answers_400(deliveries: Deliveries) -> None:
    wire = Wire([batch("m1")])
    headers = {**basic(), "content-length": "12abc"}
    await receiver_for(deliveries)(scope(headers=headers), wire.receive, wire.send)
    assert (wire.status, wire.pulled) == (400, 0)


# -- 401 ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "Basic " + base64.b64encode(f"infobip:{PASSWORD}x".encode()).decode(),  # wrong password
        "Basic " + base64.b64encode(f"someone:{PASSWORD}".encode()).decode(),  # wrong user
        "Basic " + base64.b64encode(PASSWORD.encode()).decode(),  # no colon
        "Basic !!!not-base64!!!",
        "Bearer " + PASSWORD,
        "Basic",
    ],
    ids=["missing", "wrong-password", "wrong-user", "no-colon", "garbage", "bearer", "empty"],
)
async def test_basic_refuses_wrong_credentials_with_401_before_reading_the_body(
    deliveries: Deliveries, authorization: str | None
) -> None:
    headers = dict(JSON) if authorization is None else {**JSON, "authorization": authorization}
    wire = Wire([batch("m1")])
    before = rejected("unauthorized")
    await receiver_for(deliveries)(scope(headers=headers), wire.receive, wire.send)
    start = wire.sent[0]
    assert start["status"] == 401
    assert (b"www-authenticate", b'Basic realm="reports", charset="UTF-8"') in start["headers"]
    assert wire.pulled == 0  # the body was never read
    assert deliveries.calls == []
    if telemetry.ENABLED:
        assert rejected("unauthorized") == before + 1


async def test_basic_accepts_a_non_ascii_password(deliveries: Deliveries) -> None:
    receiver = receiver_for(deliveries, auth=BasicCredentials("infobip", "pässwörd"))
    async with client_of(receiver) as client:
        response = await client.post(
            "/acme", content=batch("m1"), headers=basic(password="pässwörd")
        )
    assert response.status_code == 200


def signed(body: bytes, algorithm: str = "sha256", *, encoding: str = "hex") -> str:
    digest = hmac.digest(SECRET.encode(), body, algorithm)
    if encoding == "hex":
        return digest.hex()
    if encoding == "HEX":
        return digest.hex().upper()
    if encoding == "prefixed":
        return f"{algorithm}={digest.hex()}"
    if encoding == "base64":
        return base64.b64encode(digest).decode()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")  # url-safe, unpadded


@pytest.mark.parametrize("algorithm", ["md5", "sha1", "sha224", "sha256", "sha384", "sha512"])
@pytest.mark.parametrize("encoding", ["hex", "HEX", "prefixed", "base64", "base64url"])
async def test_hmac_accepts_each_algorithm_in_hex_or_base64(
    deliveries: Deliveries, algorithm: str, encoding: str
) -> None:
    auth = HmacSignature("X-Infobip-Signature", SECRET, algorithm=algorithm)
    body = batch("m1")
    headers = {**JSON, "x-infobip-signature": signed(body, algorithm, encoding=encoding)}
    async with client_of(receiver_for(deliveries, auth=auth)) as client:
        response = await client.post("/acme", content=body, headers=headers)
    assert response.status_code == 200
    assert deliveries.calls == [("acme", ["m1"])]


@pytest.mark.parametrize(
    "case", ["wrong-secret", "tampered", "other-algorithm", "garbage", "empty"]
)
async def test_hmac_refuses_a_wrong_signature_with_401_and_delivers_nothing(
    deliveries: Deliveries, case: str
) -> None:
    auth = HmacSignature("X-Signature", SECRET)
    body = batch("m1")
    signature = {
        "wrong-secret": hmac.new(b"other", body, hashlib.sha256).hexdigest(),
        "tampered": signed(body.replace(b"m1", b"m2")),
        "other-algorithm": signed(body, "sha512"),
        "garbage": "not a signature at all",
        "empty": "",
    }[case]
    async with client_of(receiver_for(deliveries, auth=auth)) as client:
        response = await client.post(
            "/acme", content=body, headers={**JSON, "x-signature": signature}
        )
    assert response.status_code == 401
    assert "www-authenticate" not in response.headers
    assert deliveries.calls == []


@given(
    body=st.binary(max_size=512),
    algorithm=st.sampled_from(["md5", "sha1", "sha224", "sha256", "sha384", "sha512"]),
    encoding=st.sampled_from(["hex", "HEX", "prefixed", "base64", "base64url"]),
    flip=st.integers(min_value=0),
)
def test_hmac_accepts_exactly_the_bodies_it_signs(
    body: bytes, algorithm: str, encoding: str, flip: int
) -> None:
    auth = HmacSignature("X-Signature", SECRET, algorithm=algorithm)
    headers = {b"x-signature": signed(body, algorithm, encoding=encoding).encode()}
    assert auth.check_body(headers, body)
    if body:  # any one byte changed, and the signature no longer holds
        at = flip % len(body)
        changed = body[:at] + bytes([body[at] ^ 0x01]) + body[at + 1 :]
        assert not auth.check_body(headers, changed)
    assert not auth.check_body(headers, body + b" ")


async def test_hmac_is_checked_before_the_body_is_decoded(deliveries: Deliveries) -> None:
    auth = HmacSignature("X-Signature", SECRET)
    headers = {**JSON, "x-signature": "00" * 32}
    async with client_of(receiver_for(deliveries, auth=auth)) as client:
        response = await client.post("/acme", content=b"{not json", headers=headers)
    assert response.status_code == 401  # not 400: an unauthenticated body is never parsed


async def test_hmac_without_its_header_is_refused_before_the_body_is_read(
    deliveries: Deliveries,
) -> None:
    auth = HmacSignature("X-Signature", SECRET)
    wire = Wire([batch("m1")])
    await receiver_for(deliveries, auth=auth)(scope(headers=dict(JSON)), wire.receive, wire.send)
    assert (wire.status, wire.pulled) == (401, 0)


@pytest.mark.parametrize(
    ("value", "status"), [(SECRET, 200), (SECRET + "x", 401), ("", 401), (None, 401)]
)
async def test_a_header_secret_is_checked_before_the_body_is_read(
    deliveries: Deliveries, value: str | None, status: int
) -> None:
    auth = HeaderSecret("X-Webhook-Token", SECRET)
    headers = dict(JSON) if value is None else {**JSON, "x-webhook-token": value}
    wire = Wire([batch("m1")])
    await receiver_for(deliveries, auth=auth)(scope(headers=headers), wire.receive, wire.send)
    assert wire.status == status
    assert wire.pulled == (1 if status == 200 else 0)


async def test_a_secret_being_rotated_accepts_the_new_and_the_old(
    deliveries: Deliveries,
) -> None:
    old, new = HmacSignature("X-Signature", "old-secret"), HmacSignature("X-Signature", "new")
    rotating = HmacSignature("X-Signature", ("new", "old-secret"))
    body = batch("m1")
    async with client_of(receiver_for(deliveries, auth=rotating)) as client:
        statuses = [
            (
                await client.post("/acme", content=body, headers={**JSON, "x-signature": s})
            ).status_code
            for s in (new.sign(body), old.sign(body), signed(body))
        ]
    assert statuses == [200, 200, 401]
    assert rotating.sign(body) == new.sign(body)
    tokens = HeaderSecret("X-Token", [SECRET, "older"])
    assert tokens.check_headers({b"x-token": b"older"})
    assert not tokens.check_headers({b"x-token": b"oldest"})


async def test_no_authentication_only_when_chosen(deliveries: Deliveries) -> None:
    with pytest.raises(TypeError, match="NoAuth"):
        ReportsReceiver({"acme"}, deliver=deliveries, auth=None)  # type: ignore[arg-type]
    async with client_of(receiver_for(deliveries, auth=NoAuth())) as client:
        response = await client.post("/acme", content=batch("m1"), headers=JSON)
    assert response.status_code == 200


async def test_each_account_may_have_its_own_auth(deliveries: Deliveries) -> None:
    globex = HmacSignature("X-Signature", SECRET)
    receiver = receiver_for(deliveries, auth={"acme": BASIC, "globex": globex})
    body = batch("m1")
    async with client_of(receiver) as client:
        acme = await client.post("/acme", content=body, headers=basic())
        crossed = await client.post("/globex", content=body, headers=basic())
        signed_in = await client.post(
            "/globex", content=body, headers={**JSON, "x-signature": signed(body)}
        )
    assert [r.status_code for r in (acme, crossed, signed_in)] == [200, 401, 200]
    assert "www-authenticate" not in crossed.headers  # globex's scheme has no challenge
    assert deliveries.calls == [("acme", ["m1"]), ("globex", ["m1"])]
    assert receiver.auth_of("globex") is globex


def test_an_auth_mapping_must_cover_every_account(deliveries: Deliveries) -> None:
    with pytest.raises(ValueError, match="globex"):
        receiver_for(deliveries, auth={"acme": BASIC})
    with pytest.raises(TypeError, match="NoAuth"):
        receiver_for(deliveries, auth={"acme": BASIC, "globex": None})


@pytest.mark.parametrize(
    "make",
    [
        lambda: HmacSignature("X-Signature", SECRET, algorithm="sha3_256"),
        lambda: HmacSignature("X-Signature", ""),
        lambda: HmacSignature("bad header", SECRET),
        lambda: BasicCredentials("a:b", PASSWORD),
        lambda: HeaderSecret("X-Token", b""),
        lambda: HeaderSecret("X-Token", ()),
        lambda: HmacSignature("X-Signature", [SECRET, ""]),
    ],
    ids=[
        "algorithm",
        "empty-secret",
        "header-name",
        "colon-user",
        "empty-header-secret",
        "no-secret",
        "one-empty-of-two",
    ],
)
def test_auth_refuses_a_bad_configuration_without_naming_the_secret(make: Any) -> None:
    with pytest.raises(ValueError) as raised:
        make()
    assert SECRET not in str(raised.value)
    assert PASSWORD not in str(raised.value)


async def test_no_secret_in_a_repr_an_answer_or_a_log_line(
    deliveries: Deliveries, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="infobip_voicelogs")
    auths: list[ReportsAuth] = [
        BASIC,
        HmacSignature("X-Signature", SECRET),
        HeaderSecret("X-Token", SECRET),
    ]
    for auth in auths:
        receiver = receiver_for(deliveries, auth=auth)
        assert SECRET not in repr(receiver)
        assert PASSWORD not in repr(receiver)
        async with client_of(receiver) as client:
            for headers in (basic(password=PASSWORD + "!"), {**JSON, "x-token": SECRET + "!"}):
                response = await client.post("/acme", content=b"{", headers=headers)
                assert response.status_code == 401
                assert SECRET not in response.text
                assert PASSWORD not in response.text
    assert SECRET not in caplog.text
    assert PASSWORD not in caplog.text


# -- 404, 405, 415 -----------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/", "/unknown", "/acme/extra", "/acmex", ""])
async def test_an_unknown_account_or_path_answers_404(
    deliveries: Deliveries, client: httpx.AsyncClient, path: str
) -> None:
    before = _instruments._REPORTS_REJECTED.counts.copy()
    response = await client.post(path or "/", content=batch("m1"), headers=basic())
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"
    assert deliveries.calls == []
    # The unknown name is the sender's text: it never becomes a metric attribute.
    new_keys = set(_instruments._REPORTS_REJECTED.counts) - set(before)
    assert all(("account", "unknown") not in key for key in new_keys)


async def test_a_trailing_slash_names_the_same_account(
    deliveries: Deliveries, client: httpx.AsyncClient
) -> None:
    response = await client.post("/acme/", content=batch("m1"), headers=basic())
    assert response.status_code == 200


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH", "OPTIONS"])
async def test_a_method_other_than_post_answers_405_with_allow(
    deliveries: Deliveries, client: httpx.AsyncClient, method: str
) -> None:
    response = await client.request(method, "/acme", headers=basic())
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert deliveries.calls == []


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
async def test_a_body_neither_json_nor_xml_answers_415_unread(
    deliveries: Deliveries, content_type: str | None
) -> None:
    headers = {k: v for k, v in basic().items() if k != "content-type"}
    if content_type is not None:
        headers["content-type"] = content_type
    wire = Wire([batch("m1")])
    await receiver_for(deliveries)(scope(headers=headers), wire.receive, wire.send)
    assert (wire.status, wire.pulled) == (415, 0)


# -- 413, 408: bounded in size and in time -------------------------------------------------------


async def test_a_declared_oversized_body_answers_413_without_reading_it(
    deliveries: Deliveries,
) -> None:
    wire = Wire([b"x" * 1024] * 100)
    headers = {**basic(), "content-length": str(100 * 1024)}
    await receiver_for(deliveries, max_body=4096)(scope(headers=headers), wire.receive, wire.send)
    assert (wire.status, wire.pulled) == (413, 0)


async def test_a_chunked_oversized_body_answers_413_after_reading_just_past_the_limit(
    deliveries: Deliveries,
) -> None:
    wire = Wire([b"x" * 1024] * 100)  # no content-length: counted as it arrives
    before = rejected("too_large")
    await receiver_for(deliveries, max_body=4096)(scope(), wire.receive, wire.send)
    assert wire.status == 413
    assert rejected("too_large") == before + (1 if telemetry.ENABLED else 0)
    assert wire.pulled == 5  # 4 chunks fit, the 5th crosses the limit: the other 95 never read
    assert deliveries.calls == []


async def test_a_body_of_exactly_the_limit_is_taken(deliveries: Deliveries) -> None:
    body = batch("m1")
    receiver = receiver_for(deliveries, max_body=len(body))
    async with client_of(receiver) as client:
        assert (await client.post("/acme", content=body, headers=basic())).status_code == 200
        too_big = body + b" "
        assert (await client.post("/acme", content=too_big, headers=basic())).status_code == 413
    assert deliveries.calls == [("acme", ["m1"])]


async def test_a_body_that_stalls_answers_408(deliveries: Deliveries) -> None:
    wire = Wire([batch("m1")[:20]], stall=True)
    receiver = receiver_for(deliveries, read_timeout=0.05)

    async def receive() -> dict[str, Any]:
        message = await wire.receive()
        message["more_body"] = True  # the client promised more and sends nothing
        return message

    await receiver(scope(), receive, wire.send)
    assert wire.status == 408
    assert deliveries.calls == []


async def test_a_client_gone_mid_body_gets_no_answer_and_delivers_nothing(
    deliveries: Deliveries,
) -> None:
    body = batch("m1")
    wire = Wire([body[:10], body[10:20]])

    async def receive() -> dict[str, Any]:
        message = await wire.receive()
        message["more_body"] = True  # then http.disconnect
        return message

    await receiver_for(deliveries)(scope(), receive, wire.send)
    assert wire.sent == []
    assert deliveries.calls == []


# -- the ASGI envelope -------------------------------------------------------------------------


async def test_lifespan_messages_are_answered(deliveries: Deliveries) -> None:
    inbox = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return inbox.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await receiver_for(deliveries)({"type": "lifespan"}, receive, send)
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]


class _Broken(ReportsAuth):
    def check_headers(self, headers: Any) -> bool:
        raise KeyError("a bug with a secret: " + SECRET)


async def test_a_bug_answers_500_without_a_traceback(
    deliveries: Deliveries, caplog: pytest.LogCaptureFixture
) -> None:
    async with client_of(receiver_for(deliveries, auth=_Broken())) as client:
        response = await client.post("/acme", content=batch("m1"), headers=JSON)
    assert response.status_code == 500
    assert response.json() == {"error": "internal", "message": "internal error"}
    assert "Traceback" not in response.text
    assert SECRET not in response.text
    assert "KeyError" in caplog.text  # the log keeps it for the operator


async def test_mounted_under_fastapi_and_starlette(deliveries: Deliveries) -> None:
    fastapi = FastAPI()
    fastapi.mount("/hooks/reports", receiver_for(deliveries))
    starlette = Starlette(routes=[Mount("/reports", app=receiver_for(deliveries))])
    for app, path in ((fastapi, "/hooks/reports"), (starlette, "/reports")):
        async with client_of(app) as client:
            response = await client.post(f"{path}/acme", content=batch("m1"), headers=basic())
            assert response.status_code == 200
            missing = await client.post(f"{path}/nobody", content=batch("m1"), headers=basic())
            assert missing.status_code == 404
    assert deliveries.calls == [("acme", ["m1"]), ("acme", ["m1"])]


async def test_a_prefix_serves_it_on_its_own(deliveries: Deliveries) -> None:
    async with client_of(receiver_for(deliveries, prefix="/reports/")) as client:
        ok = await client.post("/reports/acme", content=batch("m1"), headers=basic())
        bare = await client.post("/acme", content=batch("m1"), headers=basic())
    assert (ok.status_code, bare.status_code) == (200, 404)


def test_a_receiver_needs_accounts_and_positive_limits(deliveries: Deliveries) -> None:
    with pytest.raises(ValueError, match="accounts"):
        ReportsReceiver([], deliver=deliveries, auth=NoAuth())
    with pytest.raises(ValueError, match="max_body"):
        ReportsReceiver(["a"], deliver=deliveries, auth=NoAuth(), max_body=0)
    with pytest.raises(TypeError, match="one string"):
        ReportsReceiver("acme", deliver=deliveries, auth=NoAuth())


# -- over real uvicorn --------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def served(app: Any, **options: Any) -> AsyncIterator[str]:
    """``app`` served by uvicorn on a free loopback port while the block runs."""
    # A long keep-alive: a connection the server closes, it closes on purpose.
    config = uvicorn.Config(
        app, lifespan="on", log_level="warning", timeout_keep_alive=60, **options
    )
    server = uvicorn.Server(config)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        async with asyncio.timeout(10):
            while not server.started:
                if task.done():
                    task.result()  # uvicorn failed to start: its error, not a timeout
                await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await task
        sock.close()


async def test_over_uvicorn_a_batch_is_delivered_and_refusals_hold(
    deliveries: Deliveries,
) -> None:
    auth = HmacSignature("X-Signature", SECRET, algorithm="sha512")
    body = batch("m1", "m2")
    receiver = receiver_for(deliveries, auth=auth, max_body=64 * 1024)
    async with served(receiver) as url, httpx.AsyncClient(base_url=url) as client:
        good = {**JSON, "x-signature": signed(body, "sha512")}
        ok = await client.post("/acme", content=body, headers=good)
        wrong = await client.post("/acme", content=body, headers={**JSON, "x-signature": "0"})
        big = await client.post("/acme", content=b"x" * (65 * 1024), headers=good)
        bad = await client.post(
            "/acme", content=b"{", headers={**JSON, "x-signature": signed(b"{", "sha512")}
        )
        again = await client.post("/acme", content=body, headers=good)  # the server lives on
    assert [r.status_code for r in (ok, wrong, big, bad, again)] == [200, 401, 413, 400, 200]
    assert deliveries.calls == [("acme", ["m1", "m2"])] * 2


async def test_over_uvicorn_refusals_come_before_the_body_is_sent(deliveries: Deliveries) -> None:
    """A client that sends only headers and a first kilobyte gets its 401 or 413, then EOF."""
    async with served(receiver_for(deliveries, max_body=64 * 1024)) as url:
        host, port = url.removeprefix("http://").split(":")
        for headers, status in (
            ({**basic(), "content-length": str(10 * 1024 * 1024)}, b"413"),
            ({**basic(password="wrong"), "content-length": "2048"}, b"401"),
        ):
            reader, writer = await asyncio.open_connection(host, int(port))
            head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
            writer.write(f"POST /acme HTTP/1.1\r\nhost: x\r\n{head}\r\n".encode() + b"x" * 1024)
            async with asyncio.timeout(10):  # bounds a hang, asserts nothing about speed
                status_line = await reader.readline()
                assert status_line.split()[1] == status
                await reader.read()  # the server closes: it reads none of the rest
            writer.close()
    assert deliveries.calls == []


async def test_behind_a_proxy_that_strips_a_prefix_uvicorns_root_path_is_honoured(
    deliveries: Deliveries,
) -> None:
    async with (
        served(receiver_for(deliveries), root_path="/hooks") as url,
        httpx.AsyncClient(base_url=url) as client,
    ):
        response = await client.post("/acme", content=batch("m1"), headers=basic())
    assert response.status_code == 200
    assert deliveries.calls == [("acme", ["m1"])]


# -- what a client without a secret learns: nothing ------------------------------------------


def answer_of(wire: Wire) -> tuple[int, list[tuple[bytes, bytes]], bytes, int]:
    """Everything a client sees of an answer: status, headers, body, and what was read."""
    start, body = wire.sent
    return start["status"], sorted(start["headers"]), body["body"], wire.pulled


async def ask(receiver: Any, path: str, headers: dict[str, str], method: str = "POST") -> Any:
    wire = Wire([batch("m1")])
    await receiver(scope(path, headers, method=method), wire.receive, wire.send)
    return answer_of(wire)


@pytest.mark.parametrize(
    "auth",
    [
        BASIC,
        HeaderSecret("X-Token", SECRET),
        {"acme": BASIC, "globex": HeaderSecret("X-Token", SECRET)},
    ],
    ids=["basic", "header-secret", "one-per-account"],
)
async def test_an_unknown_account_and_a_wrong_method_are_answered_like_missing_credentials(
    deliveries: Deliveries, auth: Any
) -> None:
    receiver = receiver_for(deliveries, auth=auth)
    none = dict(JSON)
    wrong = {**basic(password="wrong"), "x-token": "wrong"}
    answers = [
        await ask(receiver, "/acme", none),
        await ask(receiver, "/acme", wrong),
        await ask(receiver, "/unknown", none),
        await ask(receiver, "/unknown", wrong),
        await ask(receiver, "/", none),
        await ask(receiver, "/acme/extra", wrong),
        await ask(receiver, "/acme", none, method="GET"),
        await ask(receiver, "/globex", wrong, method="DELETE"),
        await ask(receiver, "/unknown", none, method="GET"),
    ]
    status, headers, body, pulled = answers[0]
    assert (status, pulled) == (401, 0)
    assert orjson.loads(body) == {"error": "unauthorized", "message": "unauthorized"}
    assert all(answer == answers[0] for answer in answers)
    challenges = [v for k, v in headers if k == b"www-authenticate"]
    # One scheme for all: its challenge on every 401; schemes that differ: none on any.
    basic_challenge = b'Basic realm="reports", charset="UTF-8"'
    assert challenges == ([basic_challenge] if auth is BASIC else [])
    assert deliveries.calls == []


async def test_once_authenticated_a_client_learns_the_method_and_unknown_names(
    deliveries: Deliveries,
) -> None:
    receiver = receiver_for(deliveries)
    status, headers, _, _ = await ask(receiver, "/acme", basic(), method="GET")
    assert (status, dict(headers)[b"allow"]) == (405, b"POST")
    assert (await ask(receiver, "/unknown", basic()))[0] == 404
    assert (await ask(receiver, "/unknown", basic(), method="PUT"))[0] == 404
    # Per-account secrets: no secret proves anything about a name it is not for.
    mapped = receiver_for(
        deliveries, auth={"acme": BASIC, "globex": BasicCredentials("infobip", "other")}
    )
    assert (await ask(mapped, "/unknown", basic()))[0] == 401
    assert deliveries.calls == []


async def test_with_an_hmac_an_unknown_account_is_read_and_checked_like_a_known_one(
    deliveries: Deliveries,
) -> None:
    """A stranger with a made-up signature sees the same 401 (after the same body) anywhere."""
    receiver = receiver_for(deliveries, auth=HmacSignature("X-Signature", SECRET))
    junk = {**JSON, "x-signature": "00" * 32}
    known, unknown = await ask(receiver, "/acme", junk), await ask(receiver, "/unknown", junk)
    assert known == unknown
    assert (known[0], known[3]) == (401, 1)  # read, then refused: as a known account's
    big = {**junk, "content-length": str(DEFAULT_MAX_BODY + 1)}
    assert await ask(receiver, "/acme", big) == await ask(receiver, "/unknown", big)
    plain = {"content-type": "text/plain", "x-signature": "00" * 32}
    assert await ask(receiver, "/acme", plain) == await ask(receiver, "/unknown", plain)
    # A method other than POST is 405 only to a client that signs the empty body.
    assert (await ask(receiver, "/acme", junk, method="GET"))[0] == 401
    empty_signed = {"x-signature": signed(b"")}
    assert (await ask(receiver, "/acme", empty_signed, method="GET"))[0] == 405
    assert (await ask(receiver, "/unknown", empty_signed, method="GET"))[0] == 404
    good = {**JSON, "x-signature": signed(batch("m1"))}
    assert (await ask(receiver, "/unknown", good))[0] == 404
    assert (await ask(receiver, "/acme", good))[0] == 200
    assert deliveries.calls == [("acme", ["m1"])]


# -- 503 busy: a bounded number of requests in hand ---------------------------------------------


async def test_beyond_max_concurrent_a_request_is_answered_503_unread(
    deliveries: Deliveries,
) -> None:
    deliveries.gate = asyncio.Event()
    receiver = receiver_for(deliveries, max_concurrent=2, retry_after=7)
    # One waits for the rest of its body, one for its delivery.
    stalled = [Wire([b'{"results": ['], stall=True), Wire([batch("m1")])]

    async def trickle() -> dict[str, Any]:
        message = await stalled[0].receive()
        message["more_body"] = True  # the client promised more and sends nothing
        return message

    held = [
        asyncio.create_task(receiver(scope(), trickle, stalled[0].send)),
        asyncio.create_task(receiver(scope(), stalled[1].receive, stalled[1].send)),
    ]
    await deliveries.entered.wait()
    assert stalled[0].pulled == 1
    # A third, known account or not, credentials or not, is refused before anything is read.
    for path, headers in (("/acme", basic()), ("/unknown", dict(JSON))):
        wire = Wire([batch("m2")])
        await receiver(scope(path, headers), wire.receive, wire.send)
        status, answer_headers, body, pulled = answer_of(wire)
        assert (status, pulled) == (503, 0)
        assert dict(answer_headers)[b"retry-after"] == b"7"
        assert dict(answer_headers)[b"connection"] == b"close"
        assert orjson.loads(body)["error"] == "busy"
    deliveries.gate.set()
    await held[1]
    held[0].cancel()
    await asyncio.gather(*held, return_exceptions=True)
    # Once they are done, requests are taken again.
    wire = Wire([batch("m3")])
    await receiver(scope(), wire.receive, wire.send)
    assert (stalled[1].status, wire.status) == (200, 200)
    assert deliveries.calls == [("acme", ["m1"]), ("acme", ["m3"])]


def test_max_concurrent_must_be_positive(deliveries: Deliveries) -> None:
    with pytest.raises(ValueError, match="max_concurrent"):
        receiver_for(deliveries, max_concurrent=0)
