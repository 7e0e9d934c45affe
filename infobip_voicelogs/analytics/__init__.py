"""The archive as numbers: `export` (CSV, NDJSON, Parquet) and `report` (figures, JSON, HTML).

Both read a store's archive (a `SqliteStore` file or a `PostgresStore` schema) with the
definitions of its `voice_log_costs` view, one row per message with its cost and country,
and compute in the database; money stays exact (`Decimal`) from the store to the output.

    from infobip_voicelogs.analytics import export, report

    export("voicelogs.db", "messages.parquet")            # one row per message
    figures = report("voicelogs.db", since=monday)        # spend, delivery, errors, ...
    figures.to_dict()                                     # the JSON report
    Path("report.html").write_text(figures.to_html())     # a page that opens offline
"""

from ..store.kit import country_of_mcc
from ._columns import COLUMNS
from ._export import ExportFormat, export, format_of, iter_rows
from ._report import (
    AccountDay,
    CountryFigures,
    DayFigures,
    DurationBin,
    ErrorCount,
    Report,
    report,
)

__all__ = [
    "COLUMNS",
    "AccountDay",
    "CountryFigures",
    "DayFigures",
    "DurationBin",
    "ErrorCount",
    "ExportFormat",
    "Report",
    "country_of_mcc",
    "export",
    "format_of",
    "iter_rows",
    "report",
]

for _public in (AccountDay, CountryFigures, DayFigures, DurationBin, ErrorCount, Report):
    _public.__module__ = __name__
for _function in (export, format_of, iter_rows, report, country_of_mcc):
    _function.__module__ = __name__
