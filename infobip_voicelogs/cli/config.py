"""The accounts file of `infobip-voicelogs poll`: TOML, one `[[account]]` table per account.

```toml
[[account]]
name = "eu-1"
base_url = "https://xyz.api.infobip.com"
api_key_env = "INFOBIP_EU1_KEY"   # or api_key = "..." (keep such a file private)
format = "json"                    # optional: json or xml
rate = 2.0                          # optional: requests per second for this account
pull_reports = true                 # optional: pull delivery reports (GET /voice/1/reports)
```
"""

from __future__ import annotations

import math
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..auth import auth_from
from ..endpoint import validate_base_url
from ..poller import Account
from ..throttle import TokenBucket

__all__ = ["ConfigError", "load_accounts"]

# The only top-level key: everything else is an option of the command, not of the file.
_TOP_LEVEL = {"account"}
_KEYS = {
    "name",
    "base_url",
    "api_key",
    "api_key_env",
    "format",
    "rate",
    "allow_insecure",
    "pull_reports",
}
_VARIABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class ConfigError(ValueError):
    """The accounts file is missing, not TOML, or describes an account wrongly."""


def load_accounts(path: Path, environ: Mapping[str, str] | None = None) -> list[Account]:
    """Read the accounts file; every problem is a `ConfigError` naming the file and account."""
    environ = os.environ if environ is None else environ
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot be read ({exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    unknown = sorted(set(document) - _TOP_LEVEL)
    if unknown:
        raise ConfigError(
            f"{path}: unknown top-level key(s) {', '.join(unknown)}: the file holds only "
            "[[account]] tables; the poll command's settings are its options "
            "(--archive/--no-archive, --interval, ...)"
        )
    entries = document.get("account")
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"{path}: no [[account]] tables")
    accounts: list[Account] = []
    for index, entry in enumerate(entries, start=1):
        where = f"{path}: account {index}"
        accounts.append(_account(entry, where, environ))
    names = [account.name for account in accounts]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ConfigError(
            f"{path}: account names must be unique, repeated: {', '.join(duplicates)}"
        )
    return accounts


def _account(entry: Any, where: str, environ: Mapping[str, str]) -> Account:
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: is not a table")
    unknown = sorted(set(entry) - _KEYS)
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(_KEYS))})"
        )
    name = _text(entry, "name", where)
    where = f"{where} ({name})"
    base_url = _text(entry, "base_url", where)
    if ("api_key" in entry) == ("api_key_env" in entry):
        raise ConfigError(f"{where}: give exactly one of api_key and api_key_env")
    if "api_key" in entry:
        key = _text(entry, "api_key", where)
    else:
        variable = _text(entry, "api_key_env", where)
        if not _VARIABLE.fullmatch(variable):  # perhaps the key itself: never repeat it
            raise ConfigError(f"{where}: api_key_env must name an environment variable")
        key = environ.get(variable, "")
        if not key:
            raise ConfigError(f"{where}: environment variable {variable} is not set")
    fmt = entry.get("format", "json")
    if fmt not in ("json", "xml"):
        raise ConfigError(f"{where}: format must be json or xml, not {fmt!r}")
    rate = entry.get("rate")
    if rate is not None and (
        isinstance(rate, bool)
        or not isinstance(rate, int | float)
        or not 0 < rate < math.inf  # nan fails this too
    ):
        raise ConfigError(f"{where}: rate must be a positive number")
    insecure = entry.get("allow_insecure", False)
    if not isinstance(insecure, bool):
        raise ConfigError(f"{where}: allow_insecure must be true or false")
    pull = entry.get("pull_reports", False)
    if not isinstance(pull, bool):
        raise ConfigError(f"{where}: pull_reports must be true or false")
    # What a fetcher would refuse later, at every cycle, is refused here, once.
    try:
        validate_base_url(base_url, allow_insecure=insecure)
        auth_from(key)
    except ValueError as exc:  # the messages name no secret
        message = str(exc).replace("pass allow_insecure=True", "set allow_insecure = true")
        raise ConfigError(f"{where}: {message}") from None
    return Account(
        name,
        base_url,
        auth=key,
        throttle=TokenBucket(float(rate)) if rate is not None else None,
        format=fmt,
        allow_insecure=insecure,
        pull_reports=pull,
    )


def _text(entry: Mapping[str, Any], key: str, where: str) -> str:
    value = entry.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: {key} must be a non-empty string")
    return value.strip()
