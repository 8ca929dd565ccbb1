"""The editions page's bounce and complaint rates: the values in the HTML, and the chart in Chromium.

The chart is inline SVG made on the server (the page's CSP allows no script and no inline style).
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from briefing.db import session_scope
from briefing.mail.transport import MemoryTransport
from briefing.store import editions as edition_store
from briefing.web.app import create_app
from tests.fixtures.clock import ManualClock
from tests.fixtures.ledger_copies import FAILED, SENT_AT, add_readers, record_event, send_copies
from tests.fixtures.newsroom import EDITION
from tests.fixtures.web import (
    EDITOR_EMAIL,
    PASSWORD,
    add_editor,
    free_port,
    start_live_server,
    web_settings_for,
)


def thirty_one_editions(engine: sa.Engine) -> date:
    """31 editions to 4 readers; every edition's one complaint, and a hard refusal on even days."""
    r = add_readers(engine, [f"r{i}@example.com" for i in range(4)])
    newest = EDITION - timedelta(days=1)
    for n in range(31):
        day = newest - timedelta(days=30 - n)
        edition_id = send_copies(engine, day, {"r0@example.com": (FAILED, 550)} if n % 2 == 0 else {})
        record_event(engine, r["r1@example.com"], edition_id, "complaint")
    return newest


def test_the_editions_page_shows_each_editions_rates_and_a_chart_of_the_last_30(
    editor_client: TestClient, sqlite_engine: sa.Engine
) -> None:
    newest = thirty_one_editions(sqlite_engine)
    page = editor_client.get("/editor/editions")
    assert page.status_code == 200
    html = page.text
    row = html[html.index(f'href="/editor/editions/{newest.isoformat()}"') :]
    row = row[: row.index("</tr>")]
    assert '<td class="num bad" data-rate="hard">1 <span class="muted">(25.00%)</span></td>' in row
    assert '<td class="num" data-rate="soft">0 <span class="muted">(0%)</span></td>' in row
    assert '<td class="num bad" data-rate="complaint">1 <span class="muted">(25.00%)</span></td>' in row
    chart = html[html.index("<svg") : html.index("</svg>")]
    assert 'data-editions="30"' in chart
    assert chart.count('<rect class="bar"') == 3 * 30  # hard, soft and complaint strips
    assert chart.count('class="limit"') == 2  # the hard-bounce and complaint limits
    oldest_shown = (newest - timedelta(days=29)).isoformat()
    assert f"<title>{oldest_shown}: 0 hard bounces of 4 copies sent (0%)</title>" in chart
    assert f"<title>{newest.isoformat()}: 1 hard bounce of 4 copies sent (25.00%)</title>" in chart
    assert f"{(newest - timedelta(days=30)).isoformat()}:" not in chart  # the 31st is listed, not charted
    assert "style=" not in chart and "<script" not in html

    detail = editor_client.get(f"/editor/editions/{newest.isoformat()}")
    assert detail.status_code == 200
    assert '<dd data-rate="hard">1 <span class="muted">(25.00%)</span></dd>' in detail.text
    assert '<dd data-rate="complaint">1 <span class="muted">(25.00%)</span></dd>' in detail.text
    assert "<dt>Copies sent</dt><dd>4</dd>" in detail.text


def test_the_editions_page_without_a_send_has_no_chart(
    editor_client: TestClient, sqlite_engine: sa.Engine
) -> None:
    with session_scope(sqlite_engine) as session:
        edition_store.ensure_edition(session, EDITION, newsletter_id=1, now=SENT_AT)
    page = editor_client.get("/editor/editions")
    assert page.status_code == 200
    assert "<svg" not in page.text and EDITION.isoformat() in page.text
    assert page.text.count('<td class="num muted">—</td>') == 3


@pytest.mark.browser
@pytest.mark.timeout(120)
def test_the_rate_chart_renders_in_a_browser(
    browser: Any, sqlite_url: str, sqlite_engine: sa.Engine, web_clock: ManualClock
) -> None:
    thirty_one_editions(sqlite_engine)
    add_editor(sqlite_engine)
    port = free_port()
    settings = web_settings_for(sqlite_url, public_base_url=f"http://127.0.0.1:{port}")
    live = start_live_server(
        create_app(settings, engine=sqlite_engine, transport=MemoryTransport(), clock=web_clock), port
    )
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        context.set_default_timeout(15_000)
        page = context.new_page()
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type in ("error", "warning") else None)
        page.goto(f"{live.url}/editor/editions")
        page.fill("#email", EDITOR_EMAIL)
        page.fill("#password", PASSWORD)
        page.click("button:has-text('Sign in')")
        page.goto(f"{live.url}/editor/editions")
        chart = page.locator("svg.rate-chart")
        chart.wait_for()
        box = chart.bounding_box()
        assert box is not None and box["width"] > 400 and box["height"] > 150
        assert page.locator("svg.rate-chart g.strip").count() == 3
        assert page.locator("svg.rate-chart rect.bar").count() == 90
        heights = page.eval_on_selector_all(
            "svg.rate-chart g.strip[data-kind='hard'] rect.bar", "bars => bars.map(b => b.getBBox().height)"
        )
        assert len(heights) == 30 and sum(1 for h in heights if h > 0) == 15  # the even days' refusals
        fill = page.eval_on_selector(
            "svg.rate-chart g.strip[data-kind='complaint'] rect.bar", "b => getComputedStyle(b).fill"
        )
        assert fill == "rgb(106, 27, 154)"
        assert not [e for e in errors if "Content Security Policy" in e], errors
    finally:
        context.close()
        live.stop()
