"""The delivery-report docs a newcomer copies from: every report body decodes and is
received, and every Python block of the receiver's page runs as written."""

from __future__ import annotations

import base64
import inspect
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest

from infobip_voicelogs.reports import NoAuth, ReportsReceiver, VoiceReport

DOCS = Path(__file__).resolve().parents[1] / "docs"
_BLOCK = re.compile(r"^```(\w+)\n(.*?)^```", re.S | re.M)


def blocks(page: str, language: str) -> list[str]:
    """The page's fenced blocks in `language`, in order, as written."""
    text = (DOCS / page).read_text()
    return [body for lang, body in _BLOCK.findall(text) if lang == language]


def report_bodies() -> list[tuple[str, str]]:
    """Each report POST body on the reports page: (format, body)."""
    found = [("json", b) for b in blocks("reports.md", "json") if '"results"' in b]
    found += [("xml", b) for b in blocks("reports.md", "xml") if "<reportResponse>" in b]
    return found


async def test_every_report_body_in_the_docs_is_received() -> None:
    got: list[tuple[str, list[VoiceReport]]] = []

    async def deliver(account: str, reports: Sequence[VoiceReport]) -> None:
        got.append((account, list(reports)))

    receiver = ReportsReceiver({"eu-shop"}, deliver=deliver, auth=NoAuth(), prefix="/reports")
    transport = httpx.ASGITransport(app=receiver)
    bodies = report_bodies()
    # Both shapes in both formats: current and flat, JSON and XML.
    assert sorted(fmt for fmt, _ in bodies) == ["json", "json", "xml", "xml"]
    async with httpx.AsyncClient(transport=transport, base_url="http://hooks") as client:
        for fmt, body in bodies:
            response = await client.post(
                "/reports/eu-shop",
                content=body.encode(),
                headers={"Content-Type": f"application/{fmt}"},
            )
            assert response.status_code == 200, (fmt, response.text)
            # One report per message id written in the body.
            expected = body.count('"messageId"') if fmt == "json" else body.count("<messageId>")
            assert response.json() == {"received": expected}
    pairs = zip(bodies, got, strict=True)
    shapes = [(fmt, [r.shape for r in reports]) for (fmt, _), (_, reports) in pairs]
    assert sorted(shapes) == [
        ("json", ["current", "current"]),
        ("json", ["flat", "flat"]),
        ("xml", ["current"]),
        ("xml", ["flat"]),
    ]
    for _, reports in got:
        assert all(r.message_id and r.status is not None and r.price is not None for r in reports)


def test_every_python_block_on_the_receiver_page_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each block runs as a reader would paste it (its own imports, nothing else); the
    FastAPI application it builds then receives a report body from the docs and delivers it
    to its handler after the 200, and its lifespan's shutdown closes the receiver."""
    from fastapi.testclient import TestClient

    monkeypatch.chdir(tmp_path)  # the blocks' SQLite files land here
    monkeypatch.setenv("INFOBIP_REPORTS_PASSWORD", "docs-password")
    monkeypatch.setenv("EU_SHOP_API_KEY", "docs-key")
    namespaces: list[dict[str, Any]] = []
    python = blocks("reports-receiver.md", "python")
    assert len(python) >= 2
    for number, source in enumerate(python):
        namespace: dict[str, Any] = {"__name__": f"reports_receiver_block_{number}"}
        exec(compile(source, f"docs/reports-receiver.md block {number}", "exec"), namespace)
        namespaces.append(namespace)
    assert inspect.iscoroutinefunction(namespaces[0]["main"])  # the poller-beside script
    [app_block] = [ns for ns in namespaces if "app" in ns]
    [body] = [b for f, b in report_bodies() if f == "json" and "voiceCall" in b]
    credentials = base64.b64encode(b"infobip:docs-password").decode()
    with TestClient(app_block["app"]) as client:
        response = client.post(
            "/reports/eu-shop",
            content=body.encode(),
            headers={"Content-Type": "application/json", "Authorization": f"Basic {credentials}"},
        )
        assert response.status_code == 200, response.text
        assert response.json() == {"received": 2}
        saved = app_block["saved"]
        for _ in range(400):  # delivered after the 200, by the receiver's own holder
            if len(saved) == 2:
                break
            time.sleep(0.025)
        assert [status for _, _, status in saved] == ["DELIVERED", "UNDELIVERABLE"]
        assert {account for account, _, _ in saved} == {"eu-shop"}
        wrong = client.post("/reports/eu-shop", content=body.encode())
        assert wrong.status_code == 401
    assert len(saved) == 2  # nothing delivered twice, and the shutdown went through
