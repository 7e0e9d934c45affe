"""The design's public contract: every name users, docs and tests rely on, from one place."""

from __future__ import annotations

import inspect
import typing

import pytest

import infobip_voicelogs

CONTRACT = [
    "LogsFetcher",
    "LogsQuery",
    "VoiceLog",
    "Price",
    "Status",
    "ErrorInfo",
    "GeneralStatus",
    "ApiKeyAuth",
    "BasicAuth",
    "IbssoAuth",
    "BearerAuth",
    "TokenBucket",
    "decode_logs",
    "encode_logs",
    "LogsPoller",
    "Account",
    "SqliteStore",
    "InfobipError",
    "ApiError",
    "AuthenticationError",
    "RateLimitError",
    "ServerError",
    "TransportError",
    "DecodeError",
    "InvalidQueryError",
]


@pytest.mark.parametrize("name", CONTRACT)
def test_contract_name_is_exported(name: str) -> None:
    assert name in infobip_voicelogs.__all__
    assert getattr(infobip_voicelogs, name) is not None


def test_every_exported_name_exists_and_is_documented() -> None:
    for name in infobip_voicelogs.__all__:
        obj = getattr(infobip_voicelogs, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert obj.__doc__, f"{name} has no docstring"


def test_errors_form_one_tree() -> None:
    for name in CONTRACT:
        obj = getattr(infobip_voicelogs, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, infobip_voicelogs.InfobipError)
    assert issubclass(infobip_voicelogs.InvalidQueryError, ValueError)


@pytest.mark.parametrize("name", ["VoiceLog", "Price", "Status", "ErrorInfo", "LogsQuery"])
def test_models_type_hints_resolve(name: str) -> None:
    # Users' converters (cattrs, pydantic, typing.get_type_hints) read these annotations.
    assert typing.get_type_hints(getattr(infobip_voicelogs, name))


def test_fake_provider_lives_in_testing() -> None:
    from infobip_voicelogs.testing import FakeInfobip

    assert "FakeInfobip" not in infobip_voicelogs.__all__
    assert FakeInfobip.__doc__
