"""FakeInfobip in-process: credentials, filters, formats, error bodies, rate limit, retention."""

from __future__ import annotations

import asyncio
import email.utils
from datetime import datetime, timedelta, timezone

import httpx
import pytest
from conftest import START

from infobip_voicelogs import GeneralStatus, Status, VoiceLog, decode_logs
from infobip_voicelogs.codec import decode_error
from infobip_voicelogs.testing import FakeClock, FakeInfobip, Fault

PATH = "/tts/3/logs"


@pytest.fixture
def fake(clock: FakeClock) -> FakeInfobip:
    return FakeInfobip(clock=clock, seed=7)


def raw_client(fake: FakeInfobip, **headers: str) -> httpx.AsyncClient:
    """The plainest way in: httpx's own ASGI transport."""
    transport = httpx.ASGITransport(app=fake)
    return httpx.AsyncClient(transport=transport, base_url="http://fake", headers=headers)


def log_at(message_id: str, sent_at: datetime, **fields: object) -> VoiceLog:
    status = Status(3, "DELIVERED", 5, "DELIVERED_TO_HANDSET")
    values: dict[str, object] = {"message_id": message_id, "sent_at": sent_at, "status": status}
    values.update(fields)
    return VoiceLog(**values)  # type: ignore[arg-type]


def ids(response: httpx.Response) -> list[str | None]:
    assert response.status_code == 200, response.text
    return [
        log.message_id for log in decode_logs(response.content, response.headers["content-type"])
    ]


# -- credentials ---------------------------------------------------------------------------


async def test_each_account_sees_only_its_own_logs(fake: FakeInfobip) -> None:
    acme = fake.add_account("acme", api_key="acme-key")
    zeta = fake.add_account("zeta", api_key="zeta-key")
    acme.add_logs([log_at("a1", START - timedelta(minutes=1))])
    zeta.add_logs([log_at("z1", START - timedelta(minutes=2))])

    async with raw_client(fake, Authorization="App acme-key") as client:
        assert ids(await client.get(PATH)) == ["a1"]
    async with raw_client(fake, Authorization="App zeta-key") as client:
        assert ids(await client.get(PATH)) == ["z1"]
    assert [entry.account for entry in fake.journal] == ["acme", "zeta"]


@pytest.mark.parametrize(
    "authorization",
    [
        "App the-key",
        "app the-key",  # the scheme is case-insensitive, as in HTTP
        "Basic dXNlcjpwYXNz",  # user:pass
        "IBSSO sso-token",
        "Bearer oauth-token",
    ],
)
async def test_every_configured_credential_names_the_account(
    fake: FakeInfobip, authorization: str
) -> None:
    fake.add_account(
        "acme",
        api_key="the-key",
        basic=("user", "pass"),
        ibsso_token="sso-token",
        bearer_token="oauth-token",
    )
    async with raw_client(fake, Authorization=authorization) as client:
        response = await client.get(PATH)
    assert response.status_code == 200
    assert fake.journal[-1].account == "acme"


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "App wrong"},
        {"Authorization": "Basic !!!"},
        {"Authorization": "Bearer the-key"},
    ],
)
async def test_unknown_credentials_get_401_with_the_provider_body(
    fake: FakeInfobip, headers: dict[str, str]
) -> None:
    fake.add_account("acme", api_key="the-key")
    async with raw_client(fake, **headers) as client:
        response = await client.get(PATH)
    assert response.status_code == 401
    error = decode_error(response.content, response.headers["content-type"])
    assert error.message_id == "UNAUTHORIZED"
    assert fake.journal[-1].account is None


def test_credentials_stay_out_of_reprs(fake: FakeInfobip) -> None:
    account = fake.add_account("acme", api_key="s3cret-key", bearer_token="s3cret-token")
    assert "s3cret" not in repr(account) + repr(fake)
    assert account.api_key == "s3cret-key"


def test_two_accounts_cannot_share_a_credential(fake: FakeInfobip) -> None:
    fake.add_account("acme", api_key="same")
    with pytest.raises(ValueError, match="credentials"):
        fake.add_account("zeta", api_key="same")


async def test_other_paths_and_methods_are_404(fake: FakeInfobip) -> None:
    fake.add_account("acme", api_key="k")
    async with raw_client(fake, Authorization="App k") as client:
        for response in (await client.get("/sms/1/logs"), await client.post(PATH)):
            assert response.status_code == 404
            assert decode_error(response.content, "application/json").message_id == "NOT_FOUND"


# -- filters, limit and order --------------------------------------------------------------


@pytest.fixture
async def acme(fake: FakeInfobip) -> httpx.AsyncClient:
    account = fake.add_account("acme", api_key="k")
    account.add_logs(
        [
            log_at(
                "m1",
                START - timedelta(minutes=5),
                bulk_id="b1",
                from_="A",
                to="41790000001",
                mccmnc="22801",
            ),
            log_at(
                "m2",
                START - timedelta(minutes=4),
                bulk_id="b1",
                from_="B",
                to="41790000002",
                mccmnc="22802",
            ),
            log_at(
                "m3",
                START - timedelta(minutes=3),
                bulk_id="b2",
                from_="A",
                to="41790000001",
                mccmnc="21901",
                status=Status(2, "UNDELIVERABLE", 9, "UNDELIVERABLE_NOT_DELIVERED"),
            ),
            log_at(
                "m4",
                START - timedelta(minutes=2),
                bulk_id="b3",
                from_="B",
                to="41790000003",
                mccmnc="22801",
            ),
        ]
    )
    return raw_client(fake, Authorization="App k")


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({}, ["m4", "m3", "m2", "m1"]),
        ({"from": "A"}, ["m3", "m1"]),
        ({"to": "41790000001"}, ["m3", "m1"]),
        ({"bulkId": "b1"}, ["m2", "m1"]),
        ({"bulkId": "b1,b3"}, ["m4", "m2", "m1"]),
        ({"messageId": "m1,m3,unknown"}, ["m3", "m1"]),
        ({"generalStatus": "UNDELIVERABLE"}, ["m3"]),
        ({"generalStatus": "delivered", "from": "B"}, ["m4", "m2"]),
        ({"mcc": "228"}, ["m4", "m2", "m1"]),
        ({"mcc": "228", "mnc": "01"}, ["m4", "m1"]),
        ({"limit": "2"}, ["m4", "m3"]),
    ],
)
async def test_filters_and_limit(
    acme: httpx.AsyncClient, params: dict[str, str], expected: list[str]
) -> None:
    async with acme:
        assert ids(await acme.get(PATH, params=params)) == expected


async def test_sent_since_and_until_are_inclusive_at_the_millisecond(
    acme: httpx.AsyncClient,
) -> None:
    plus_one = timezone(timedelta(hours=1))
    since = (START - timedelta(minutes=4)).astimezone(plus_one)  # m2's sent time, in +01:00
    until = START - timedelta(minutes=3)  # m3's
    params = {
        "sentSince": since.strftime("%Y-%m-%dT%H:%M:%S.000+01:00"),
        "sentUntil": until.strftime("%Y-%m-%dT%H:%M:%S.000+00:00"),
    }
    async with acme:
        assert ids(await acme.get(PATH, params=params)) == ["m3", "m2"]


async def test_an_unencoded_plus_in_a_timestamp_is_tolerated(acme: httpx.AsyncClient) -> None:
    # Form encoding reads a literal `+` as a space; a careless client sends one anyway.
    since = (START - timedelta(minutes=2)).strftime("%Y-%m-%dT%H:%M:%S.000+00:00")
    async with acme:
        response = await acme.get(f"{PATH}?sentSince={since}")
    assert ids(response) == ["m4"]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"sentSince": "yesterday"}, "sentSince"),
        ({"sentUntil": "2026-03-01"}, "sentUntil"),
        ({"sentSince": "2026-03-01T12:00:00.000"}, "sentSince"),  # no offset
        ({"limit": "1001"}, "limit"),
        ({"limit": "0"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"generalStatus": "LOST"}, "generalStatus"),
        ({"mcc": "2x8"}, "mcc"),
    ],
)
async def test_a_refused_parameter_is_400_naming_it(
    acme: httpx.AsyncClient, params: dict[str, str], field: str
) -> None:
    async with acme:
        response = await acme.get(PATH, params=params)
    assert response.status_code == 400
    error = decode_error(response.content, response.headers["content-type"])
    assert error.message_id == "BAD_REQUEST"
    assert error.text is not None
    assert field in error.text


async def test_limit_defaults_to_50_and_reaches_1000(fake: FakeInfobip) -> None:
    account = fake.add_account("acme", api_key="k")
    account.generate(1200, within=timedelta(hours=2))
    async with raw_client(fake, Authorization="App k") as client:
        assert len(ids(await client.get(PATH))) == 50
        page = ids(await client.get(PATH, params={"limit": "1000"}))
    assert page == [log.message_id for log in account.logs[:1000]]


async def test_results_are_newest_first(fake: FakeInfobip) -> None:
    account = fake.add_account("acme", api_key="k")
    account.generate(300, within=timedelta(hours=5))
    async with raw_client(fake, Authorization="App k") as client:
        response = await client.get(PATH, params={"limit": "300"})
    logs = decode_logs(response.content, "application/json")
    sent = [log.sent_at for log in logs]
    assert sent == sorted(sent, reverse=True)  # type: ignore[type-var]
    assert logs == account.logs


# -- formats and error shapes --------------------------------------------------------------


@pytest.mark.parametrize(
    ("accept", "media"),
    [
        ("application/xml", "application/xml"),
        ("text/xml", "application/xml"),
        ("application/json", "application/json"),
        ("application/json;q=0.5, application/xml", "application/xml"),
        ("application/xml;q=0.1, application/json;q=0.9", "application/json"),
        ("*/*", "application/json"),
    ],
)
async def test_the_body_format_follows_accept(fake: FakeInfobip, accept: str, media: str) -> None:
    account = fake.add_account("acme", api_key="k")
    account.generate(3, within=timedelta(minutes=30))
    async with raw_client(fake, Authorization="App k", Accept=accept) as client:
        response = await client.get(PATH)
    assert response.headers["content-type"].startswith(media)
    assert decode_logs(response.content, response.headers["content-type"]) == account.logs


async def test_errors_come_in_xml_too(fake: FakeInfobip) -> None:
    async with raw_client(fake, Authorization="App nobody", Accept="application/xml") as client:
        response = await client.get(PATH)
    assert response.content.startswith(b"<ApiException>")
    assert (
        decode_error(response.content, response.headers["content-type"]).message_id
        == "UNAUTHORIZED"
    )


async def test_the_newer_error_shape_by_configuration(clock: FakeClock) -> None:
    fake = FakeInfobip(clock=clock, error_shape="new")
    async with raw_client(fake, Authorization="App nobody") as client:
        response = await client.get(PATH)
    assert b"errorCode" in response.content
    assert decode_error(response.content, "application/json").message_id == "E401"


# -- the rate limit ------------------------------------------------------------------------


async def test_a_burst_up_to_the_limit_passes_then_429(clock: FakeClock) -> None:
    fake = FakeInfobip(clock=clock, rate_limit_per_minute=10)
    fake.add_account("acme", api_key="k")
    async with raw_client(fake, Authorization="App k") as client:
        statuses = [(await client.get(PATH)).status_code for _ in range(12)]
        refused = await client.get(PATH)
    assert statuses == [200] * 10 + [429] * 2
    assert decode_error(refused.content, "application/json").message_id == "TOO_MANY_REQUESTS"
    assert "retry-after" not in refused.headers  # the provider documents none


async def test_the_window_slides_on_the_fake_clock(clock: FakeClock) -> None:
    fake = FakeInfobip(clock=clock, rate_limit_per_minute=4)
    fake.add_account("acme", api_key="k")
    async with raw_client(fake, Authorization="App k") as client:

        async def status_after(seconds: float) -> int:
            clock.advance(timedelta(seconds=seconds))
            return (await client.get(PATH)).status_code

        # Requests at t = 0, 20, 40, 50 pass; at 55 the window holds four; at 60 the first left.
        assert [await status_after(s) for s in (0, 20, 20, 10, 5)] == [200, 200, 200, 200, 429]
        assert await status_after(5) == 200
        assert await status_after(0) == 429


@pytest.mark.parametrize("style", ["seconds", "http-date"])
async def test_retry_after_by_configuration(clock: FakeClock, style: str) -> None:
    fake = FakeInfobip(clock=clock, rate_limit_per_minute=2, retry_after=style)  # type: ignore[arg-type]
    fake.add_account("acme", api_key="k")
    async with raw_client(fake, Authorization="App k") as client:
        await client.get(PATH)
        clock.advance(timedelta(seconds=15))
        await client.get(PATH)
        refused = await client.get(PATH)
    assert refused.status_code == 429
    expected = "45" if style == "seconds" else "Sun, 01 Mar 2026 12:01:00 GMT"
    assert refused.headers["retry-after"] == expected


async def test_an_http_date_retry_after_is_never_too_early(clock: FakeClock) -> None:
    clock.advance(timedelta(milliseconds=900))  # between whole seconds
    fake = FakeInfobip(clock=clock, rate_limit_per_minute=1, retry_after="http-date")
    fake.add_account("acme", api_key="k")
    async with raw_client(fake, Authorization="App k") as client:
        await client.get(PATH)
        refused = await client.get(PATH)
        when = email.utils.parsedate_to_datetime(refused.headers["retry-after"])
        clock.advance(when - clock.now())  # come back exactly when told
        assert (await client.get(PATH)).status_code == 200


async def test_each_account_has_its_own_window(clock: FakeClock) -> None:
    fake = FakeInfobip(clock=clock, rate_limit_per_minute=3)
    fake.add_account("acme", api_key="a")
    fake.add_account("zeta", api_key="z", rate_limit_per_minute=1)
    async with (
        raw_client(fake, Authorization="App a") as acme,
        raw_client(fake, Authorization="App z") as zeta,
    ):
        assert [(await acme.get(PATH)).status_code for _ in range(4)] == [200, 200, 200, 429]
        assert [(await zeta.get(PATH)).status_code for _ in range(2)] == [200, 429]


async def test_concurrent_requests_admit_exactly_the_limit(fake: FakeInfobip) -> None:
    account = fake.add_account("acme", api_key="k")
    account.generate(100, within=timedelta(hours=1))
    async with raw_client(fake, Authorization="App k") as client:
        responses = await asyncio.gather(*(client.get(PATH) for _ in range(300)))
    statuses = [response.status_code for response in responses]
    assert statuses.count(200) == 120
    assert statuses.count(429) == 180
    assert len(fake.requests(account)) == 300


# -- retention and the journal -------------------------------------------------------------


async def test_logs_are_kept_48_hours_on_the_fake_clock(
    fake: FakeInfobip, clock: FakeClock
) -> None:
    account = fake.add_account("acme", api_key="k")
    account.add_logs([log_at("old", START - timedelta(hours=47)), log_at("new", START)])
    async with raw_client(fake, Authorization="App k") as client:
        assert ids(await client.get(PATH)) == ["new", "old"]
        clock.advance(timedelta(hours=1, milliseconds=1))
        assert ids(await client.get(PATH)) == ["new"]
    assert [log.message_id for log in account.logs] == ["new"]


async def test_the_journal_records_every_request(fake: FakeInfobip, clock: FakeClock) -> None:
    fake.add_account("acme", api_key="k")
    async with raw_client(fake, Authorization="App k") as client:
        await client.get(PATH, params={"bulkId": "b1,b2", "limit": "5"})
        clock.advance(timedelta(seconds=3))
        await client.get("/elsewhere")
    first, second = fake.journal
    assert (first.at, first.account, first.path, first.status) == (START, "acme", PATH, 200)
    assert first.query == {"bulkId": "b1,b2", "limit": "5"}
    assert (second.at, second.path, second.status) == (
        START + timedelta(seconds=3),
        "/elsewhere",
        404,
    )
    assert first.fault is None


async def test_a_request_given_up_during_a_delay_is_journaled_in_arrival_order(
    fake: FakeInfobip,
) -> None:
    account = fake.add_account("acme", api_key="k")
    account.script(Fault.delay(5.0))
    async with raw_client(fake, Authorization="App k") as client:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.05):  # the client gives up while the fake waits
                await client.get(PATH, params={"limit": "1"})
        await client.get(PATH, params={"limit": "2"})
    first, second = fake.journal
    assert (first.query["limit"], first.status, first.fault) == ("1", None, Fault.delay(5.0))
    assert (second.query["limit"], second.status) == ("2", 200)


async def test_added_logs_are_found_by_their_own_wire_timestamp(fake: FakeInfobip) -> None:
    account = fake.add_account("acme", api_key="k")
    sent = START - timedelta(minutes=5) + timedelta(microseconds=123_456)  # finer than the wire
    account.add_logs([log_at("m1", sent, done_at=sent)])
    wire = "2026-03-01T11:55:00.123+00:00"
    async with raw_client(fake, Authorization="App k") as client:
        found = await client.get(PATH, params={"sentSince": wire, "sentUntil": wire})
    assert ids(found) == ["m1"]
    assert [log.sent_at for log in account.logs] == [sent.replace(microsecond=123_000)]


async def test_lifespan_messages_are_answered(fake: FakeInfobip) -> None:
    incoming = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent: list[str] = []

    async def receive() -> dict[str, str]:
        return incoming.pop(0)

    async def send(message: dict[str, str]) -> None:
        sent.append(message["type"])

    await fake({"type": "lifespan"}, receive, send)  # type: ignore[arg-type]
    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]


def test_general_status_enum_matches_the_wire() -> None:
    # The fake's statuses decode to the library's groups (a guard for the vocabulary).
    fake = FakeInfobip(clock=FakeClock(START))
    account = fake.add_account("acme", settle_after=timedelta(0))
    groups = {log.general_status for log in account.generate(200, within=timedelta(hours=1))}
    assert groups == {
        GeneralStatus.DELIVERED,
        GeneralStatus.UNDELIVERABLE,
        GeneralStatus.EXPIRED,
        GeneralStatus.REJECTED,
    }
