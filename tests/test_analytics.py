"""export and report over an archive the store wrote from the fake provider's logs.

The ground truth is computed here with `Decimal` from the fake's own logs; the figures
must equal it to the last digit, on SQLite and on a real PostgreSQL.
"""

from __future__ import annotations

import csv
import io
import sqlite3
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import attrs
import orjson
import pytest

from infobip_voicelogs import SqliteStore, VoiceLog
from infobip_voicelogs.analytics import COLUMNS, country_of_mcc, export, iter_rows, report
from infobip_voicelogs.errors import InvalidQueryError, StoreError
from infobip_voicelogs.models import Price
from infobip_voicelogs.store import Delivered
from infobip_voicelogs.testing import FakeInfobip
from infobip_voicelogs.testing.clock import FakeClock

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
FINAL = {"DELIVERED", "UNDELIVERABLE", "EXPIRED", "REJECTED"}
PRICES = {"eu-1": (Decimal("0.0125"), "EUR"), "us-1": (Decimal("0.013"), "USD")}


def fake_logs() -> dict[str, list[VoiceLog]]:
    """Three days of settled logs for two accounts, and a few odd ones: no price, an
    unknown MCC, no MCC, a price with many decimals."""
    fake = FakeInfobip(clock=FakeClock(NOW), seed=7)
    logs = {}
    for name, (price, currency) in PRICES.items():
        account = fake.add_account(name, price_per_second=price, currency=currency)
        logs[name] = account.generate(120, within=timedelta(days=3), settle_after=timedelta(0))
    odd = logs["eu-1"]
    odd[0] = attrs.evolve(odd[0], price=None)
    odd[1] = attrs.evolve(odd[1], mccmnc="99901")
    odd[2] = attrs.evolve(odd[2], mccmnc=None)
    odd[3] = attrs.evolve(odd[3], price=Price(Decimal("0.000123456789"), "EUR"), duration=7)
    return logs


LOGS = fake_logs()


def cost(log: VoiceLog) -> Decimal | None:
    if log.price is None or log.duration is None:
        return None
    return log.price.per_second * log.duration


def truth_by_account_day(logs: dict[str, list[VoiceLog]]) -> list[dict[str, Any]]:
    rows: dict[tuple[Any, ...], dict[str, Any]] = {}
    for account, account_logs in logs.items():
        for log in account_logs:
            assert log.sent_at is not None
            assert log.status is not None
            currency = None if log.price is None else log.price.currency
            key = (account, log.sent_at.date().isoformat(), currency)
            row = rows.setdefault(
                key, {"calls": 0, "final": 0, "delivered": 0, "spend": Decimal(0)}
            )
            row["calls"] += 1
            row["final"] += log.status.group.value in FINAL
            row["delivered"] += log.status.group.value == "DELIVERED"
            row["spend"] += cost(log) or 0
    return [
        {"account": a, "day": d, "currency": c, **v, "spend": v["spend"]}
        for (a, d, c), v in sorted(rows.items(), key=lambda kv: str(kv[0]))
    ]


async def archive(store: Any, logs: dict[str, list[VoiceLog]]) -> None:
    for account, account_logs in logs.items():
        delivered = [Delivered(log, fingerprint=f"2f:{log.message_id}") for log in account_logs]
        await store.commit(account, checkpoint=NOW, delivered=delivered)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The target of a store holding LOGS: a SQLite path or a PostgreSQL DSN."""
    if request.param == "sqlite":
        target = str(tmp_path / "voicelogs.db")
        async with SqliteStore(target, archive=True) as opened:
            await archive(opened, LOGS)
    else:
        from infobip_voicelogs.postgres import PostgresStore

        target = request.getfixturevalue("postgres_dsn")
        async with PostgresStore(target, archive=True) as opened:
            await archive(opened, LOGS)
    return target


def decimal_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**row, "spend": Decimal(row["spend"])} for row in rows]


def sort_key(row: dict[str, Any]) -> str:
    return str((row["account"], row["day"], row["currency"]))


async def test_json_report_equals_the_truth_to_the_last_digit(store: str) -> None:
    figures = report(store).to_dict()

    got = sorted(decimal_rows(figures["by_account_day"]), key=sort_key)
    assert got == sorted(truth_by_account_day(LOGS), key=sort_key)
    total = sum((cost(log) or 0 for logs in LOGS.values() for log in logs), Decimal(0))
    assert sum(Decimal(r["spend"]) for r in figures["by_account_day"]) == total
    # the odd price's cost keeps all its digits
    assert any(
        r["spend"].endswith("3") for r in figures["by_account_day"] if r["account"] == "eu-1"
    )


async def test_report_by_country_and_errors(store: str) -> None:
    figures = report(store).to_dict()

    countries: dict[tuple[Any, Any], list[Any]] = {}
    errors: Counter[tuple[Any, Any]] = Counter()
    for log in (log for logs in LOGS.values() for log in logs):
        currency = None if log.price is None else log.price.currency
        row = countries.setdefault((country_of_mcc(log.mccmnc), currency), [0, 0, Decimal(0)])
        row[0] += 1
        row[1] += log.status is not None and log.status.group.value == "DELIVERED"
        row[2] += cost(log) or 0
        if log.error is not None and log.error.name not in (None, "NO_ERROR"):
            errors[(log.error.group_name, log.error.name)] += 1
    got = {
        (r["country"], r["currency"]): [r["calls"], r["delivered"], Decimal(r["spend"])]
        for r in figures["by_country"]
    }
    assert got == countries
    assert {None, "CH", "DE"} <= {country for country, _ in got}
    assert {(e["error_group"], e["error_name"]): e["count"] for e in figures["errors"]} == errors
    counts = [e["count"] for e in figures["errors"]]
    assert counts == sorted(counts, reverse=True)
    assert sum(b["count"] for b in figures["durations"]) == sum(map(len, LOGS.values()))


def truth_rows(logs: dict[str, list[VoiceLog]]) -> dict[str, dict[str, Any]]:
    return {
        log.message_id: {"account": account, "cost": cost(log), "log": log}
        for account, account_logs in logs.items()
        for log in account_logs
        if log.message_id is not None
    }


def check_rows(rows: list[dict[str, Any]], logs: dict[str, list[VoiceLog]]) -> None:
    """Rows (as text, the CSV/NDJSON way) against the fake's logs, value by value."""
    truth = truth_rows(logs)
    assert len(rows) == len(truth)
    assert {row["message_id"] for row in rows} == set(truth)
    for row in rows:
        want = truth[row["message_id"]]
        log: VoiceLog = want["log"]
        assert row["account"] == want["account"]
        assert (Decimal(row["cost"]) if row["cost"] else None) == want["cost"]
        price = Decimal(row["price_per_second"]) if row["price_per_second"] else None
        assert price == (None if log.price is None else log.price.per_second)
        assert row["to"] == log.to
        assert row["from"] == log.from_
        assert log.sent_at is not None
        assert datetime.fromisoformat(row["sent_at"]) == log.sent_at
        assert row["sent_at"].endswith("Z")
        assert (row["country"] or None) == country_of_mcc(log.mccmnc)
    total = sum((Decimal(r["cost"]) for r in rows if r["cost"]), Decimal(0))
    assert total == sum((w["cost"] or 0 for w in truth.values()), Decimal(0))


async def test_csv_export_rows_and_sums(store: str, tmp_path: Path) -> None:
    out = tmp_path / "messages.csv"
    assert export(store, out) == sum(map(len, LOGS.values()))
    with out.open(newline="") as file:
        reader = csv.DictReader(file)
        assert tuple(reader.fieldnames or ()) == COLUMNS
        check_rows(list(reader), LOGS)


async def test_ndjson_export_rows_and_sums(store: str, tmp_path: Path) -> None:
    out = tmp_path / "messages.ndjson"
    export(store, out)
    rows = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert all(tuple(row) == COLUMNS for row in rows)
    assert all(isinstance(row["cost"], str | None) for row in rows)
    check_rows(rows, LOGS)


async def test_parquet_export_rows_and_sums(store: str, tmp_path: Path) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    out = tmp_path / "messages.parquet"
    export(store, out)
    table = pq.read_table(out)
    assert tuple(table.schema.names) == COLUMNS
    assert str(table.schema.field("sent_at").type) == "timestamp[ms, tz=UTC]"
    assert str(table.schema.field("cost").type).startswith("decimal128")
    rows = [
        {
            k: (
                format(v, "f")
                if isinstance(v, Decimal)
                else v.isoformat().replace("+00:00", "Z")
                if isinstance(v, datetime)
                else v
            )
            for k, v in row.items()
        }
        for row in table.to_pylist()
    ]
    check_rows(rows, LOGS)


async def test_parquet_export_equals_the_rows_value_by_value(store: str, tmp_path: Path) -> None:
    """Parquet (read by Arrow from the database's own text) and `iter_rows` (Python objects)
    agree on every value, awkward text included, over several chunks of a window."""
    pq = pytest.importorskip("pyarrow.parquet")
    awkward = [
        attrs.evolve(log, from_=sender, to=to, bulk_id=bulk)
        for log, sender, to, bulk in zip(
            LOGS["us-1"][:4],
            ['Info, "Voice"\nline two', "l'apostrophe", "ünïcødé 📞", ""],
            ["", "NULL", "a\r\nb", '"'],
            ["NULL", "", None, "x,y"],
            strict=True,
        )
    ]
    if store.startswith("postgres"):
        from infobip_voicelogs.postgres import PostgresStore

        async with PostgresStore(store, archive=True) as opened:
            await archive(opened, {"odd-1": awkward})
    else:
        async with SqliteStore(store, archive=True) as opened:
            await archive(opened, {"odd-1": awkward})
    window: dict[str, Any] = {
        "since": NOW - timedelta(days=2),
        "until": NOW,
        "accounts": ["eu-1", "odd-1"],
    }
    out = tmp_path / "window.parquet"
    written = export(store, out, chunk=7, **window)
    table = pq.read_table(out)
    assert table.num_rows == written
    assert pq.ParquetFile(out).metadata.num_row_groups > 2
    want = sorted(iter_rows(store, **window), key=lambda row: row["message_id"])
    got = sorted(table.to_pylist(), key=lambda row: row["message_id"])
    assert got == want
    odd = [row for row in got if row["account"] == "odd-1"]
    assert {row["from"] for row in odd} >= {'Info, "Voice"\nline two', "ünïcødé 📞", ""}
    assert {row["to"] for row in odd} >= {"", "NULL", "a\r\nb", '"'}
    assert {row["bulk_id"] for row in odd} >= {"NULL", "", None}


async def test_filters_hold(store: str) -> None:
    since = NOW - timedelta(days=1)
    until = NOW - timedelta(hours=6)
    rows = list(iter_rows(store, since=since, until=until, accounts=["us-1"]))
    want = [
        log for log in LOGS["us-1"] if log.sent_at is not None and since <= log.sent_at <= until
    ]
    assert 0 < len(rows) == len(want)
    assert {r["account"] for r in rows} == {"us-1"}
    figures = report(store, since=since, until=until, accounts=["us-1"]).to_dict()
    window = {"us-1": want}
    assert sorted(decimal_rows(figures["by_account_day"]), key=sort_key) == sorted(
        truth_by_account_day(window), key=sort_key
    )


async def test_bad_inputs(store: str, tmp_path: Path) -> None:
    with pytest.raises(InvalidQueryError, match=r"since: .* is after until"):
        report(store, since=NOW, until=NOW - timedelta(hours=1))
    with pytest.raises(InvalidQueryError, match="unknown account 'nope'"):
        export(store, tmp_path / "x.csv", accounts=["eu-1", "nope"])
    assert not (tmp_path / "x.csv").exists()
    with pytest.raises(InvalidQueryError, match="extension"):
        export(store, tmp_path / "x.txt")


async def test_empty_window_exports_the_header_and_reports_no_data(store: str) -> None:
    out = io.StringIO()
    assert export(store, out, format="csv", since=NOW + timedelta(days=1)) == 0
    assert out.getvalue() == ",".join(COLUMNS) + "\n"
    figures = report(store, since=NOW + timedelta(days=1))
    assert figures.empty
    assert "No data" in figures.to_html()


def test_a_missing_store_is_an_error_and_no_file_is_created(tmp_path: Path) -> None:
    missing = tmp_path / "nope.db"
    with pytest.raises(StoreError, match="does not exist"):
        report(missing)
    assert not missing.exists()


def test_an_older_sqlite_store_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:  # a version-2 file: the tables of that version
        from infobip_voicelogs.store import _schema

        for statement in (*_schema._MIGRATIONS[0], *_schema._MIGRATIONS[1]):
            db.execute(statement)
        db.execute(
            "INSERT INTO voice_logs (account, message_id, sent_at, duration, price_per_second, "
            "currency, status_group, mccmnc, first_seen_at, updated_at) VALUES ('a', 'm1', "
            "'2026-03-01T10:00:00.000Z', 30, '0.0125', 'EUR', 'DELIVERED', '22801', "
            "'2026-03-01T10:00:00.000Z', '2026-03-01T10:00:00.000Z')"
        )
        db.execute("PRAGMA user_version = 2")
    figures = report(path).to_dict()
    assert figures["by_account_day"] == [
        {"account": "a", "day": "2026-03-01", "currency": "EUR", "calls": 1, "final": 1,
         "delivered": 1, "spend": "0.3750"}
    ]  # fmt: skip
    assert figures["by_country"][0]["country"] == "CH"


def test_a_newer_sqlite_store_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA user_version = 999")
    with pytest.raises(StoreError, match="schema version 999"):
        report(path)


@pytest.mark.postgres
async def test_postgres_money_is_numeric_and_old_text_prices_are_migrated(
    postgres_dsn: str,
) -> None:
    import psycopg

    from infobip_voicelogs.postgres import PostgresStore, _schema

    with psycopg.connect(postgres_dsn, autocommit=True) as db:  # a version-2 schema
        db.execute("CREATE TABLE voicelogs_schema (one boolean PRIMARY KEY DEFAULT true, "
                   "version integer NOT NULL)")  # fmt: skip
        for statement in (*_schema._MIGRATIONS[0], *_schema._MIGRATIONS[1]):
            db.execute(statement.format(s='"public"'))
        db.execute("INSERT INTO voicelogs_schema (version) VALUES (2)")
        db.execute(
            "INSERT INTO voice_logs (account, message_id, sent_at, duration, price_per_second,"
            " currency, first_seen_at, updated_at) VALUES ('a', 'm1', now(), 3, '0.01250', "
            "'EUR', now(), now())"
        )
    rows = list(iter_rows(postgres_dsn))  # migrates
    assert rows[0]["price_per_second"] == Decimal("0.01250")
    assert str(rows[0]["price_per_second"]) == "0.01250"  # the scale kept
    with psycopg.connect(postgres_dsn) as db:
        kind = db.execute(
            "SELECT data_type FROM information_schema.columns WHERE table_name = 'voice_logs' "
            "AND column_name = 'price_per_second'"
        ).fetchone()
        assert kind == ("numeric",)
        spend = db.execute("SELECT SUM(duration * price_per_second) FROM voice_logs").fetchone()
        assert spend == (Decimal("0.03750"),)
    async with PostgresStore(postgres_dsn, archive=True) as opened:  # the writer still writes
        await archive(opened, {"b": LOGS["eu-1"][:5]})
        back = {log.message_id: log for log in await opened.archived("b")}
    assert [back[log.message_id].price for log in LOGS["eu-1"][:5]] == [
        log.price for log in LOGS["eu-1"][:5]
    ]


def test_countries_come_from_the_itu_list() -> None:
    assert country_of_mcc("22801") == "CH"
    assert country_of_mcc("310260") == "US"
    assert country_of_mcc("23410") == "GB"
    assert country_of_mcc("99999") is None
    from infobip_voicelogs.store._countries import mcc_countries

    assert len(mcc_countries()) > 200


# -- the command line ------------------------------------------------------------------------


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> str:
    target = str(tmp_path / "voicelogs.db")
    async with SqliteStore(target, archive=True) as opened:
        await archive(opened, LOGS)
    return target


def invoke(*args: str) -> Any:
    from typer.testing import CliRunner

    from infobip_voicelogs.cli.app import app

    runner = CliRunner(env={"COLUMNS": "250", "TERMINAL_WIDTH": "250"})
    return runner.invoke(app, list(args))


def test_cli_report_json_is_the_api_report(sqlite_store: str) -> None:
    result = invoke("report", "--store", sqlite_store, "--format", "json")
    assert result.exit_code == 0, result.output
    assert orjson.loads(result.stdout) == report(sqlite_store).to_dict()


def test_cli_report_tables_and_html(sqlite_store: str, tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    result = invoke("report", "--store", sqlite_store, "--format", "table", "--html", str(page))
    assert result.exit_code == 0, result.output
    assert "Spend and delivery per account and day" in result.stdout
    assert "total spend:" in result.stdout
    assert page.read_text().count('<svg class="chart"') == 5


def test_cli_export_to_stdout_and_to_a_file(sqlite_store: str, tmp_path: Path) -> None:
    result = invoke("export", "--store", sqlite_store, "--out", "-", "--account", "us-1")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == ",".join(COLUMNS)
    assert len(lines) == 1 + len(LOGS["us-1"])
    out = tmp_path / "all.ndjson"
    result = invoke("export", "--store", sqlite_store, "--out", str(out))
    assert result.exit_code == 0, result.output
    assert len(out.read_bytes().splitlines()) == sum(map(len, LOGS.values()))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--since", "2026-03-10T00:00Z", "--until", "2026-03-09T00:00Z"), "is after until"),
        (("--account", "eu-1", "--account", "ghost"), "unknown account 'ghost'"),
    ],
)
@pytest.mark.parametrize("command", ["report", "export"])
def test_cli_bad_input_is_one_line_and_exit_2(
    sqlite_store: str, tmp_path: Path, command: str, args: tuple[str, ...], message: str
) -> None:
    out = ("--out", str(tmp_path / "x.csv")) if command == "export" else ()
    result = invoke(command, "--store", sqlite_store, *out, *args)
    assert result.exit_code == 2
    assert message in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "x.csv").exists()


@pytest.mark.parametrize("command", ["report", "export"])
def test_cli_missing_store_is_exit_2_and_creates_nothing(tmp_path: Path, command: str) -> None:
    missing = tmp_path / "missing.db"
    out = ("--out", str(tmp_path / "x.csv")) if command == "export" else ()
    result = invoke(command, "--store", str(missing), *out)
    assert result.exit_code == 2
    assert "does not exist" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not missing.exists()


def test_cli_empty_window_is_exit_0_with_no_data(sqlite_store: str) -> None:
    result = invoke("report", "--store", sqlite_store, "--since", "2030-01-01T00:00Z")
    assert result.exit_code == 0
    assert "no data" in result.stderr
    result = invoke("export", "--store", sqlite_store, "--out", "-", "--since", "2030-01-01T00:00Z")
    assert result.exit_code == 0
    assert result.stdout == ",".join(COLUMNS) + "\n"
    assert "no data" in result.stderr


# -- the HTML page in a real browser -----------------------------------------------------------

# Added to the page for the test only: it reports what the browser drew and fetched.
CHECKER = """
const charts = [...document.querySelectorAll("svg.chart")].map((svg) => {
  const box = svg.getBoundingClientRect();
  const marks = [...svg.querySelectorAll("rect, path, circle")].filter((m) => {
    const b = m.getBBox(); return b.width > 0 || b.height > 0; }).length;
  return {name: svg.dataset.chart, width: box.width, height: box.height, marks};
});
const fetched = performance.getEntriesByType("resource").map((entry) => entry.name);
document.body.setAttribute("data-check", JSON.stringify({charts, fetched}));
"""


def chromium() -> str:
    import os
    import shutil

    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true and no chromium to check the HTML report in (apt: chromium)")
        pytest.skip("no chromium on PATH (Debian's package: chromium)")
    return found


def test_html_report_renders_every_chart_offline_in_a_real_browser(
    sqlite_store: str, tmp_path: Path
) -> None:
    import base64
    import hashlib
    import html
    import subprocess

    browser = chromium()
    page = report(sqlite_store).to_html()
    assert "<script" not in page
    assert "default-src 'none'" in page  # the page itself forbids every request
    digest = base64.b64encode(hashlib.sha256(CHECKER.encode()).digest()).decode()
    checked = page.replace(
        "default-src 'none';", f"default-src 'none'; script-src 'sha256-{digest}';"
    ).replace("</body>", f"<script>{CHECKER}</script></body>")
    path = tmp_path / "report.html"
    path.write_text(checked, encoding="utf-8")
    done = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--enable-logging=stderr", "--v=0", f"--user-data-dir={tmp_path / 'profile'}",
         "--dump-dom", path.as_uri()],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    consoled = [line for line in done.stderr.splitlines() if ":CONSOLE" in line]
    assert consoled == []  # no console error, no blocked request
    found = html.unescape(done.stdout.split('data-check="', 1)[1].split('"', 1)[0])
    check = orjson.loads(found)
    assert check["fetched"] == []
    names = [chart["name"] for chart in check["charts"]]
    assert names == ["spend", "delivery", "durations", "errors", "countries"]
    for chart in check["charts"]:
        assert chart["width"] > 300, chart
        assert chart["height"] > 100, chart
        assert chart["marks"] > 0, chart


# -- the docs' recipes -----------------------------------------------------------------------

DOCS = Path(__file__).resolve().parents[1] / "docs" / "analytics.md"


def recipes(language: str) -> list[str]:
    """The fenced blocks of `language` in docs/analytics.md that run against a store."""
    import re

    blocks = re.findall(rf"```{language}\n(.*?)```", DOCS.read_text(encoding="utf-8"), re.S)
    return [b for b in blocks if re.search(r"\b(STORE|DSN|PARQUET)\b|^-- (sqlite|postgresql)", b)]


def run_recipes(store: str, tmp_path: Path) -> list[str]:
    import warnings

    kind = "sqlite" if "=" not in store and "://" not in store else "postgresql"
    ran = []
    for block in recipes("python"):
        if ("DSN" in block) != (kind == "postgresql"):
            continue
        names: dict[str, Any] = {"PARQUET": str(tmp_path / "recipe.parquet")}
        names["STORE" if kind == "sqlite" else "DSN"] = store
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # "without a warning"
            exec(compile(block, str(DOCS), "exec"), names)
        ran.append(block)
    return ran


def sql_spend(store: str) -> dict[tuple[str, str], Decimal]:
    for block in recipes("sql"):
        if block.startswith("-- sqlite") and "://" not in store:
            with sqlite3.connect(store) as db:
                rows = db.execute(block).fetchall()
        elif block.startswith("-- postgresql") and "://" in store:
            import psycopg

            with psycopg.connect(store) as db:
                rows = db.execute(block).fetchall()
        else:
            continue
        return {(str(day), currency): Decimal(spend) for day, currency, spend, _ in rows}
    raise AssertionError("no SQL recipe for this store")


async def test_the_docs_recipes_run_and_agree(store: str, tmp_path: Path) -> None:
    pytest.importorskip("pandas")
    pytest.importorskip("duckdb")
    ran = run_recipes(store, tmp_path)
    assert len(ran) == (2 if "://" not in store else 1)
    logs = LOGS
    if "://" not in store:  # SQLite's nano-units leave out a price with more than 9 decimals
        logs = {
            account: [
                log for log in account_logs
                if log.price is None or -log.price.per_second.as_tuple().exponent <= 9  # type: ignore[operator]
            ]
            for account, account_logs in LOGS.items()
        }  # fmt: skip
    truth: dict[tuple[str, str], Decimal] = {}
    for row in truth_by_account_day(logs):
        if row["currency"] is not None:
            key = (row["day"], row["currency"])
            truth[key] = truth.get(key, Decimal(0)) + row["spend"]
    assert sql_spend(store) == truth
