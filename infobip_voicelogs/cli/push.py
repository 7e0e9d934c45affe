"""`simulate --push-reports`: the fake accounts' delivery reports POSTed to a receiver.

`push_auth` turns the `--push-*` options and the environment into the credentials the
fake sends: Basic (`--push-user`, the password in `INFOBIP_REPORTS_PASSWORD`) or an HMAC
(`--push-hmac-header`, the secret in `INFOBIP_REPORTS_SECRET`), the same variables that
`poll --reports-port` reads, so one shell's environment serves both. A secret never comes
from the command line, where `ps` and the shell's history would show it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

import httpx

from ..testing import PushBasic, PushHmac
from .reports import PASSWORD_ENV, SECRET_ENV, env_secret, header_name, user_name

__all__ = ["HMAC_ALGORITHMS", "check_push_base", "push_auth", "push_url"]

#: The HMAC algorithms the provider offers for its report subscriptions.
HMAC_ALGORITHMS = ("md5", "sha1", "sha224", "sha256", "sha384", "sha512")


def push_url(base: str, account: str) -> str:
    """Where `account`'s reports go: ``{base}/{account}``, as `poll --reports-port` serves."""
    return f"{base.rstrip('/')}/{account}"


def check_push_base(base: str) -> str:
    """The `--push-reports` URL, or `ValueError` with a one-line message."""
    try:
        url = httpx.URL(base)
    except (httpx.InvalidURL, TypeError):
        url = httpx.URL()
    if url.scheme not in ("http", "https") or not url.host or url.query or url.fragment:
        raise ValueError(
            "--push-reports must be an http:// or https:// URL without a query, like "
            "http://127.0.0.1:8080/reports"
        )
    return base


def push_auth(
    *, user: str | None, hmac_header: str | None, hmac_alg: str, environ: Mapping[str, str]
) -> PushBasic | PushHmac | None:
    """The fake's credentials for its POSTs: Basic, HMAC, or none (neither option given).

    Raises `ValueError` with a one-line message naming the option or the variable; the
    message never holds a secret.
    """
    if user is not None and hmac_header is not None:
        raise ValueError("give at most one of --push-user and --push-hmac-header")
    if user is not None:
        return PushBasic(user_name(user, "--push-user"), env_secret(environ, PASSWORD_ENV))
    if hmac_header is not None:
        header = header_name(hmac_header, "--push-hmac-header")
        if hmac_alg not in HMAC_ALGORITHMS or not hasattr(hashlib, hmac_alg):
            raise ValueError(f"--push-hmac-alg must be one of {', '.join(HMAC_ALGORITHMS)}")
        return PushHmac(env_secret(environ, SECRET_ENV), header, hmac_alg)
    return None
