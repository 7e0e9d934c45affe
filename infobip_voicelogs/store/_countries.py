"""Which country a Mobile Country Code belongs to, from the ITU-T E.212 list shipped beside it.

`mcc_countries.csv` names its source and date in its header. The stores keep the same
list as a table (`mcc_countries`), so the archive's views and SQL join on it.
"""

from __future__ import annotations

import csv
import functools
from collections.abc import Mapping
from importlib.resources import files
from types import MappingProxyType


@functools.cache
def mcc_countries() -> Mapping[str, str]:
    """Every listed MCC (three digits) and its ISO 3166-1 alpha-2 country code."""
    text = files(__package__).joinpath("mcc_countries.csv").read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    table = {row["mcc"]: row["country"] for row in csv.DictReader(lines)}
    for mcc, country in table.items():  # the values go into SQL text: checked here
        if not (len(mcc) == 3 and mcc.isdigit() and len(country) == 2 and country.isalpha()):
            raise ValueError(f"mcc_countries.csv: bad row {mcc},{country}")
    return MappingProxyType(table)


def country_of_mcc(mccmnc: str | None) -> str | None:
    """The ISO country code of an MCC or MCC+MNC (`"22801"` -> `"CH"`), None when unknown.

    >>> country_of_mcc("26201"), country_of_mcc("999"), country_of_mcc(None)
    ('DE', None, None)
    """
    if mccmnc is None:
        return None
    return mcc_countries().get(mccmnc[:3])


def mcc_countries_values() -> str:
    """The list as the rows of an SQL `VALUES` clause (checked digits and letters only)."""
    return ", ".join(f"('{mcc}', '{country}')" for mcc, country in mcc_countries().items())
