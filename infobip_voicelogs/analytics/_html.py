"""The report as one self-contained HTML page: charts drawn as inline SVG, no script at all.

SVG written here, rather than a charting library inlined, keeps the page small (tens of KB,
not hundreds), sharp at any zoom, printable, and readable by any browser years from now:
there is no JavaScript to break and nothing to load. A Content-Security-Policy forbids
every request, so the page cannot reach the network even by accident.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import date
from decimal import Decimal
from html import escape
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._report import Report


_W, _H = 720, 260  # a chart's drawing size (the viewBox; the page scales it)
_LEFT, _RIGHT, _TOP, _BOTTOM = 64, 16, 16, 40
_PALETTE = ("#3366cc", "#dc3912", "#ff9900", "#109618", "#990099", "#0099c6", "#dd4477")
_STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px auto;
max-width:780px;color:#222;padding:0 12px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 6px}
.meta{color:#666;margin:0 0 12px}svg.chart{width:100%;height:auto;display:block}
svg text{font:11px system-ui,sans-serif;fill:#444}.axis{stroke:#999;stroke-width:1}
.grid{stroke:#e5e5e5;stroke-width:1}.legend{margin:4px 0 0;font-size:12px}
.legend span{display:inline-block;margin-right:14px}.legend i{display:inline-block;width:10px;
height:10px;margin-right:4px;vertical-align:-1px}.empty{color:#888;font-style:italic}
table{border-collapse:collapse;font-size:13px;margin-top:6px}td,th{padding:2px 10px 2px 0;
text-align:left}td.n{text-align:right;font-variant-numeric:tabular-nums}
"""


def render_html(report: Report, *, title: str = "Voice message analytics") -> str:
    """The report as a self-contained HTML page (a string)."""
    window = report.to_dict()["window"]
    span = f"{window['since'] or 'the first message'} to {window['until'] or 'the last'}"
    who = ", ".join(report.accounts) if report.accounts else "all accounts"
    totals = ", ".join(
        f"{_money(total)} {currency}" for currency, total in report.spend().items() if currency
    )
    calls = sum(day.calls for day in report.by_day)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        # Nothing may be fetched: no script, no font, no image, no connection.
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "style-src 'unsafe-inline'\">",
        '<meta name="viewport" content="width=device-width,initial-scale=1">',
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        f'<p class="meta">Messages sent from {escape(span)}, {escape(who)}: {calls} calls; '
        f"spend {escape(totals or '0')}.</p>",
    ]
    if report.empty:
        parts.append('<p class="empty">No data: the archive has no message in this window.</p>')
    parts += _spend_per_account(report)
    parts += _delivery_rate(report)
    parts += _durations(report)
    parts += _errors(report)
    parts += _countries(report)
    parts.append("</body></html>")
    return "\n".join(parts)


def _money(value: Decimal) -> str:
    return format(value, "f")


def _section(name: str, heading: str, svg: str, legend: str = "") -> list[str]:
    return [f'<section id="{name}"><h2>{escape(heading)}</h2>', svg, legend, "</section>"]


def _svg(name: str, label: str, body: list[str]) -> str:
    return (
        f'<svg class="chart" data-chart="{name}" viewBox="0 0 {_W} {_H}" role="img" '
        f'xmlns="http://www.w3.org/2000/svg"><title>{escape(label)}</title>'
        + "".join(body)
        + "</svg>"
    )


def _ticks(top: float) -> tuple[float, list[float]]:
    """A round upper bound of an axis reaching `top`, and its ticks (four or five)."""
    if top <= 0:
        return 1.0, [0.0, 0.25, 0.5, 0.75, 1.0]
    raw = top / 4
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    count = math.ceil(top / step)
    return step * count, [step * i for i in range(count + 1)]


def _number(value: float) -> str:
    return f"{value:.0f}" if value == int(value) else f"{value:.4g}"


def _frame(bound: float, ticks: list[float], percent: bool = False) -> list[str]:
    body = []
    height = _H - _TOP - _BOTTOM
    for tick in ticks:
        y = _TOP + height - tick / bound * height
        label = f"{tick * 100:.0f}%" if percent else _number(tick)
        body.append(
            f'<line class="grid" x1="{_LEFT}" x2="{_W - _RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>'
        )
        body.append(f'<text x="{_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{label}</text>')
    base = _H - _BOTTOM
    body.append(f'<line class="axis" x1="{_LEFT}" x2="{_W - _RIGHT}" y1="{base}" y2="{base}"/>')
    return body


def _x_labels(labels: Sequence[str], xs: Sequence[float]) -> list[str]:
    every = max(1, math.ceil(len(labels) / 8))  # at most about eight labels, evenly spread
    shown = []
    for i, (label, x) in enumerate(zip(labels, xs, strict=True)):
        if i % every and i != len(labels) - 1:
            continue
        # The outermost labels of a line chart end at the frame rather than run past it.
        anchor = "end" if x >= _W - _RIGHT - 1 else "start" if x <= _LEFT + 1 else "middle"
        y = _H - _BOTTOM + 16
        shown.append(f'<text x="{x:.1f}" y="{y}" text-anchor="{anchor}">{escape(label)}</text>')
    return shown


def _lines(
    name: str, label: str, days: list[date | None], series: dict[str, list[float | None]],
    *, percent: bool = False,
) -> tuple[str, str]:  # fmt: skip
    values = [v for points in series.values() for v in points if v is not None]
    bound, ticks = (1.0, [0, 0.25, 0.5, 0.75, 1.0]) if percent else _ticks(max(values, default=0))
    width, height = _W - _LEFT - _RIGHT, _H - _TOP - _BOTTOM
    step = width / max(len(days) - 1, 1)
    xs = [_LEFT + (i * step if len(days) > 1 else width / 2) for i in range(len(days))]
    body = _frame(bound, ticks, percent)
    legend = []
    for n, (title, points) in enumerate(series.items()):
        colour = _PALETTE[n % len(_PALETTE)]
        coords = [
            (x, _TOP + height - (v / bound) * height)
            for x, v in zip(xs, points, strict=True)
            if v is not None
        ]
        if len(coords) > 1:
            path = " ".join(
                f"{'M' if i == 0 else 'L'}{x:.1f},{y:.1f}" for i, (x, y) in enumerate(coords)
            )
            body.append(f'<path d="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
        body += [f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{colour}"/>' for x, y in coords]
        legend.append(f'<span><i style="background:{colour}"></i>{escape(title)}</span>')
    body += _x_labels([d.isoformat() if d else "?" for d in days], xs)
    return _svg(name, label, body), f'<p class="legend">{"".join(legend)}</p>'


def _bars(name: str, label: str, items: list[tuple[str, float, str]]) -> str:
    """Horizontal bars: (label, value, shown value) each."""
    items = items[:12]
    bound, ticks = _ticks(max((v for _, v, _ in items), default=0))
    height = _H - _TOP - _BOTTOM
    row = height / max(len(items), 1)
    left, width = 170, _W - 170 - 80
    body = []
    for tick in ticks:
        x = left + tick / bound * width
        body.append(
            f'<line class="grid" x1="{x:.1f}" x2="{x:.1f}" y1="{_TOP}" y2="{_H - _BOTTOM}"/>'
        )
    for i, (text, value, shown) in enumerate(items):
        y, w = _TOP + i * row, value / bound * width
        middle = y + row / 2 + 4
        body += [
            f'<text x="{left - 6}" y="{middle:.1f}" text-anchor="end">{escape(_clip(text))}</text>',
            f'<rect x="{left}" y="{y + row * 0.15:.1f}" width="{w:.1f}" '
            f'height="{row * 0.7:.1f}" fill="{_PALETTE[0]}"/>',
            f'<text x="{left + w + 4:.1f}" y="{middle:.1f}">{escape(shown)}</text>',
        ]
    return _svg(name, label, body)


def _clip(text: str, width: int = 22) -> str:
    return text if len(text) <= width else text[: width - 1] + "\u2026"


def _spend_per_account(report: Report) -> list[str]:
    days = sorted({r.day for r in report.by_account_day if r.day is not None})
    series: dict[str, list[float | None]] = {}
    for r in report.by_account_day:
        if r.currency is None or r.day is None:
            continue
        points = series.setdefault(f"{r.account} ({r.currency})", [0.0] * len(days))
        points[days.index(r.day)] = float(r.spend)  # drawn as floats; the figures stay exact
    svg, legend = _lines("spend", "Daily spend per account", list(days), series)
    return _section("spend", "Daily spend per account", svg, legend)


def _delivery_rate(report: Report) -> list[str]:
    by_day = [d for d in report.by_day if d.day is not None]
    rates = [d.delivery_rate for d in by_day]
    svg, _ = _lines(
        "delivery", "Delivery rate per day", [d.day for d in by_day],
        {"delivered / final": rates}, percent=True,
    )  # fmt: skip
    return _section("delivery", "Delivery rate per day (delivered / final)", svg)


def _durations(report: Report) -> list[str]:
    bins = report.durations
    top = max((b.count for b in bins), default=0)
    bound, ticks = _ticks(top)
    width, height = _W - _LEFT - _RIGHT, _H - _TOP - _BOTTOM
    slot = width / len(bins)
    body = _frame(bound, ticks)
    labels, xs = [], []
    for i, b in enumerate(bins):
        h = b.count / bound * height
        x = _LEFT + i * slot
        body.append(
            f'<rect x="{x + 2:.1f}" y="{_TOP + height - h:.1f}" width="{slot - 4:.1f}" '
            f'height="{h:.1f}" fill="{_PALETTE[3]}"><title>{b.count}</title></rect>'
        )
        labels.append(f"{b.low}–{b.high}" if b.high is not None else f"{b.low}+")
        xs.append(x + slot / 2)
    body += _x_labels(labels, xs)
    heading = "Call durations (seconds)"
    return _section("durations", heading, _svg("durations", heading, body))


def _errors(report: Report) -> list[str]:
    items = [(f"{e.error_name or '?'}", float(e.count), str(e.count)) for e in report.errors]
    return _section("errors", "Errors", _bars("errors", "Errors by name", items))


def _countries(report: Report) -> list[str]:
    rows = [r for r in report.by_country if r.currency is not None]
    rows.sort(key=lambda r: r.spend, reverse=True)
    items = [
        (f"{r.country or 'unknown'} ({r.currency})", float(r.spend), _money(r.spend)) for r in rows
    ]
    return _section("countries", "Spend by country", _bars("countries", "Spend by country", items))
