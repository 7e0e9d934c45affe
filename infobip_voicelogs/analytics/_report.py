"""`report`: spend, delivery rates, durations, errors and countries, computed in the database.

Each figure is grouped and summed by the database, with the `voice_log_costs` view's
definitions. Spend is grouped by price too, and each group's seconds times its price is
summed here with `Decimal`: a handful of rows, exact on both stores (SQLite has no decimal
type to sum in).
"""

from __future__ import annotations

import decimal
import os
from collections.abc import Iterable, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import attrs

from ._source import Archive, Window

#: The status groups of a message whose outcome is settled.
FINAL_GROUPS = ("DELIVERED", "UNDELIVERABLE", "EXPIRED", "REJECTED")
# Histogram bins of call durations, in seconds: [low, high).
_BINS = (0, 1, 10, 20, 30, 45, 60, 90, 120, 180, 300, 600)
# Exact sums: enough digits for any archive, and an inexact step would raise, not round.
_EXACT = decimal.Context(prec=80, traps=[decimal.Inexact, decimal.Overflow])


def _money(value: Decimal) -> str:
    return format(value, "f")


@attrs.frozen
class AccountDay:
    """One account's messages sent on one UTC day, in one currency (None: no price)."""

    account: str
    day: date | None
    currency: str | None
    #: Messages sent that day.
    calls: int
    #: Those whose status group is final (DELIVERED, UNDELIVERABLE, EXPIRED, REJECTED).
    final: int
    #: Those whose status group is DELIVERED.
    delivered: int
    #: The sum of their cost (price per second x charged, else logged, duration).
    spend: Decimal


@attrs.frozen
class CountryFigures:
    """Messages to one country (ISO code of the MCC; None: unknown) in one currency."""

    country: str | None
    currency: str | None
    calls: int
    delivered: int
    spend: Decimal


@attrs.frozen
class DayFigures:
    """Every selected account's messages of one UTC day: the delivery rate's parts."""

    day: date | None
    calls: int
    final: int
    delivered: int

    @property
    def delivery_rate(self) -> float | None:
        """Delivered over final, None before any message is final."""
        return None if self.final == 0 else self.delivered / self.final


@attrs.frozen
class ErrorCount:
    """How many messages ended with one error (the provider's `NO_ERROR` is none)."""

    error_group: str | None
    error_name: str | None
    count: int


@attrs.frozen
class DurationBin:
    """How many messages had a duration in `[low, high)` seconds (`high` None: no bound)."""

    low: int
    high: int | None
    count: int


@attrs.frozen
class Report:
    """The figures of the archive over one window; `to_dict()` is the JSON report."""

    since: datetime | None
    until: datetime | None
    accounts: tuple[str, ...]
    by_account_day: tuple[AccountDay, ...]
    by_country: tuple[CountryFigures, ...]
    errors: tuple[ErrorCount, ...]
    durations: tuple[DurationBin, ...]

    @property
    def empty(self) -> bool:
        """No message in the window."""
        return not self.by_account_day

    @property
    def by_day(self) -> tuple[DayFigures, ...]:
        """Calls, final and delivered messages per UTC day, over the selected accounts."""
        days: dict[date | None, list[int]] = {}
        for row in self.by_account_day:
            sums = days.setdefault(row.day, [0, 0, 0])
            sums[0] += row.calls
            sums[1] += row.final
            sums[2] += row.delivered
        order = sorted(days, key=lambda d: (d is None, d or date.min))
        return tuple(DayFigures(day, *days[day]) for day in order)

    def spend(self) -> dict[str | None, Decimal]:
        """The total spend per currency."""
        totals: dict[str | None, Decimal] = {}
        for row in self.by_account_day:
            totals[row.currency] = _EXACT.add(totals.get(row.currency, Decimal(0)), row.spend)
        return totals

    def to_html(self, *, title: str = "Voice message analytics") -> str:
        """The report as one self-contained HTML page with SVG charts (nothing to fetch)."""
        from ._html import render_html

        return render_html(self, title=title)

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data: money as exact decimal text, days as YYYY-MM-DD."""
        return {
            "by_account_day": [
                {
                    "account": r.account,
                    "day": _day(r.day),
                    "currency": r.currency,
                    "calls": r.calls,
                    "final": r.final,
                    "delivered": r.delivered,
                    "spend": _money(r.spend),
                }
                for r in self.by_account_day
            ],
            "by_country": [
                {
                    "country": r.country,
                    "currency": r.currency,
                    "calls": r.calls,
                    "delivered": r.delivered,
                    "spend": _money(r.spend),
                }
                for r in self.by_country
            ],
            "errors": [
                {"error_group": e.error_group, "error_name": e.error_name, "count": e.count}
                for e in self.errors
            ],
            "by_day": [
                {
                    "day": _day(d.day),
                    "calls": d.calls,
                    "final": d.final,
                    "delivered": d.delivered,
                    "delivery_rate": d.delivery_rate,
                }
                for d in self.by_day
            ],
            "durations": [{"low": b.low, "high": b.high, "count": b.count} for b in self.durations],
            "spend": [
                {"currency": currency, "spend": _money(total)}
                for currency, total in self.spend().items()
            ],
            "window": {
                "since": None if self.since is None else self.since.isoformat(),
                "until": None if self.until is None else self.until.isoformat(),
                "accounts": list(self.accounts),
            },
        }


def _day(value: date | None) -> str | None:
    return None if value is None else value.isoformat()


def report(
    store: str | os.PathLike[str],
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    accounts: Sequence[str] = (),
    schema: str = "public",
) -> Report:
    """The figures of the messages sent in `[since, until]` (all accounts when none given).

    `store` is a `SqliteStore` file or a PostgreSQL URL / connection string (with its
    `schema`). Every figure is aggregated by the database.

    >>> figures = report("voicelogs.db", since=july, until=august)  # doctest: +SKIP
    >>> figures.spend()  # doctest: +SKIP
    {'EUR': Decimal('1503.2250')}

    Raises:
        InvalidQueryError: `since` after `until`, or an unknown account.
        StoreError: no store there, or one that cannot be read.
    """
    window = Window(since, until, accounts)
    with Archive(store, schema=schema) as archive:
        archive.check_accounts(window)
        where, params = archive.where(window)
        table = archive.table
        failed = " AND " if where else " WHERE "
        groups, errors, durations = archive.fetch_each(
            [
                _groups(archive, where, params),
                [
                    (
                        f"SELECT error_group_name, error_name, count(*) FROM {table}{where}"
                        # The provider's "no error" of a successful call is no error here either.
                        f"{failed}error_name IS NOT NULL AND error_name <> 'NO_ERROR' "
                        "GROUP BY error_group_name, error_name "
                        "ORDER BY count(*) DESC, error_group_name, error_name",
                        params,
                    )
                ],
                [
                    (
                        f"SELECT duration, count(*) FROM {table}{where}{failed}"
                        "duration IS NOT NULL GROUP BY duration",
                        params,
                    )
                ],
            ]
        )
    return Report(
        since=since,
        until=until,
        accounts=window.accounts,
        by_account_day=tuple(
            AccountDay(account, day, currency, *sums)
            for (account, day, currency), sums in _fold(groups, (0, 1, 2), day=1)
        ),
        by_country=tuple(
            CountryFigures(country, currency, calls, delivered, spend)
            for (country, currency), (calls, _, delivered, spend) in _fold(groups, (4, 2))
        ),
        errors=tuple(ErrorCount(*row) for row in errors),
        durations=_histogram(durations),
    )


_FINAL = ", ".join(f"'{group}'" for group in FINAL_GROUPS)
# What each group sums: messages, final ones, delivered ones, and the seconds billed at
# its price (none without a price).
_FINAL_CASE = f"CASE WHEN status_group IN ({_FINAL}) THEN 1 ELSE 0 END"
_DELIVERED_CASE = "CASE WHEN status_group = 'DELIVERED' THEN 1 ELSE 0 END"
_SECONDS_CASE = (
    "CASE WHEN price_per_second IS NOT NULL THEN COALESCE(charged_duration, duration) END"
)


def _groups(archive: Archive, where: str, params: list[Any]) -> list[tuple[str, Sequence[Any]]]:
    """The statements whose last one reads the messages' groups: rows of (account, day,
    currency, price, country, calls, final, delivered, seconds), by_account_day and
    by_country both summed from them.

    PostgreSQL hashes the groups. SQLite's `GROUP BY` would sort every message; its groups
    are summed instead into a temporary table keyed by the group (an upsert per message
    into a table of a few thousand rows, in memory), and the countries are looked up once
    per group. NULL keys are stored as an empty BLOB, a value no archive's text equals
    (a table's key cannot hold NULL and match it again).
    """
    if archive.kind != "sqlite":
        return [
            (
                f"SELECT account, day, currency, price_per_second, country, count(*), "
                f"sum({_FINAL_CASE}), sum({_DELIVERED_CASE}), "
                "sum(CASE WHEN price_per_second IS NOT NULL THEN billed_duration END) "
                f"FROM {archive.view}{where} "
                "GROUP BY account, day, currency, price_per_second, country",
                params,
            )
        ]
    keys = ("account", "substr(sent_at, 1, 10)", "currency", "price_per_second")
    nulled = ", ".join(f"IFNULL({key}, X'')" for key in (*keys, "substr(mccmnc, 1, 3)"))
    return [
        ("PRAGMA temp_store = MEMORY", ()),
        ("DROP TABLE IF EXISTS temp.voicelogs_report_groups", ()),
        (
            "CREATE TABLE temp.voicelogs_report_groups (account, day, currency, price, mcc, "
            "calls, final, delivered, seconds, "
            "PRIMARY KEY (account, day, currency, price, mcc)) WITHOUT ROWID",
            (),
        ),
        (
            f"INSERT INTO temp.voicelogs_report_groups SELECT {nulled}, 1, {_FINAL_CASE}, "
            f"{_DELIVERED_CASE}, {_SECONDS_CASE} FROM {archive.table}"
            f"{where or ' WHERE true'} "  # an upsert's SELECT needs its WHERE
            "ON CONFLICT DO UPDATE SET calls = calls + 1, final = final + excluded.final, "
            "delivered = delivered + excluded.delivered, seconds = CASE "
            "WHEN excluded.seconds IS NULL THEN seconds "
            "ELSE IFNULL(seconds, 0) + excluded.seconds END",
            params,
        ),
        (
            "SELECT NULLIF(g.account, X''), NULLIF(g.day, X''), NULLIF(g.currency, X''), "
            "NULLIF(g.price, X''), c.country, g.calls, g.final, g.delivered, g.seconds "
            "FROM temp.voicelogs_report_groups g "
            "LEFT JOIN main.mcc_countries c ON c.mcc = NULLIF(g.mcc, X'')",
            (),
        ),
        ("DROP TABLE temp.voicelogs_report_groups", ()),
    ]


def _fold(
    rows: Iterable[tuple[Any, ...]], keys: Sequence[int], *, day: int | None = None
) -> list[tuple[tuple[Any, ...], tuple[int, int, int, Decimal]]]:
    """`_groups`' rows summed by the columns at `keys`, over the prices (and the rest).

    The key's item at `day` (SQLite's text, PostgreSQL's date) becomes a `date`; the
    result is sorted by key, None last.
    """
    folded: dict[tuple[Any, ...], list[Any]] = {}
    for row in rows:
        key = tuple(row[i] for i in keys)
        price, (calls, final, delivered, seconds) = row[3], row[5:]
        if day is not None and isinstance(key[day], str):
            key = (*key[:day], date.fromisoformat(key[day]), *key[day + 1 :])
        sums = folded.setdefault(key, [0, 0, 0, Decimal(0)])
        sums[0] += calls
        sums[1] += int(final or 0)
        sums[2] += int(delivered or 0)
        if price is not None and seconds is not None:
            sums[3] = _EXACT.add(sums[3], _EXACT.multiply(Decimal(price), Decimal(int(seconds))))
    order = sorted(folded, key=lambda k: tuple((v is None, "" if v is None else str(v)) for v in k))
    return [
        (key, (folded[key][0], folded[key][1], folded[key][2], folded[key][3])) for key in order
    ]


def _histogram(rows: Iterable[tuple[Any, ...]]) -> tuple[DurationBin, ...]:
    counts = [0] * len(_BINS)
    for duration, count in rows:
        index = sum(1 for low in _BINS if duration >= low) - 1
        counts[max(index, 0)] += count
    return tuple(
        DurationBin(low, _BINS[i + 1] if i + 1 < len(_BINS) else None, counts[i])
        for i, low in enumerate(_BINS)
    )
