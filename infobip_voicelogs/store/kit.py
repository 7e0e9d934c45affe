"""The store's parts that another store, or a reader of the stores' tables, builds on.

`infobip_voicelogs.postgres.PostgresStore` keeps the same archive, inbox and countries as
`SqliteStore`: the archive's row mapping, the inbox's wake-ups and batch checks, and the
table of mobile country codes are written once, here, and both stores use them. The
analytics read the SQLite store's tables with its schema helpers. This module is where the
package takes them from; users take the store's public names from `infobip_voicelogs.store`.
"""

from __future__ import annotations

from ._archive import ARCHIVE_STATE_COLUMNS, archive_values, log_from_row
from ._countries import country_of_mcc, mcc_countries, mcc_countries_values
from ._inbox import Watchers, check_batch
from ._schema import migrate, utc_text

__all__ = [
    "ARCHIVE_STATE_COLUMNS",
    "Watchers",
    "archive_values",
    "check_batch",
    "country_of_mcc",
    "log_from_row",
    "mcc_countries",
    "mcc_countries_values",
    "migrate",
    "utc_text",
]
