"""The fuzz suite's judges catch what they are meant to: shown on a small app built to get it wrong.

A fuzz run that passes says something only if its checks fail on a crash, an unescaped value, a
refused input that still wrote, or a GET that changed a table. These tests make each mistake on
purpose and expect the judge to name it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, PlainTextResponse
from fastapi.testclient import TestClient

from tests.fixtures.commands import Outcome, problems
from tests.fixtures.naughty import (
    HOSTILE_TEXT,
    DatabaseTemplate,
    WebTrial,
    changed_tables,
    fingerprint,
    markup_problems,
    naughty_slice,
    naughty_strings,
    shown_as_is,
)

pytestmark = pytest.mark.fuzz


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[sa.Engine]:
    eng = sa.create_engine(f"sqlite:///{tmp_path / 'judged.db'}")
    with eng.begin() as conn:
        conn.exec_driver_sql("PRAGMA journal_mode=WAL")
        conn.exec_driver_sql("CREATE TABLE note (id INTEGER PRIMARY KEY, body TEXT)")
        conn.exec_driver_sql("INSERT INTO note (body) VALUES ('first')")
    yield eng
    eng.dispose()


def careless_app(engine: sa.Engine) -> FastAPI:
    app = FastAPI()

    def write(body: str) -> None:
        with engine.begin() as conn:
            conn.execute(sa.text("INSERT INTO note (body) VALUES (:b)"), {"b": body})

    @app.get("/boom")
    def boom() -> None:
        raise ValueError("'zz' does not appear to be an IPv4 or IPv6 address")

    @app.get("/echo")
    def echo(x: str = "") -> HTMLResponse:
        return HTMLResponse(f"<html><body><p>{x}</p></body></html>")

    @app.post("/refuse")
    async def refuse(request: Request) -> PlainTextResponse:
        write((await request.body()).decode())
        return PlainTextResponse("no", status_code=400)

    @app.get("/count")
    def count() -> PlainTextResponse:
        write("counted")
        return PlainTextResponse("ok")

    return app


def test_web_judge_names_a_crash_an_injection_a_refusal_that_wrote_and_a_writing_get(
    engine: sa.Engine,
) -> None:
    with TestClient(careless_app(engine)) as client:
        trial = WebTrial(client, engine)
        trial.send("boom", "", "GET", "/boom")
        trial.send("echo", "<script>", "GET", "/echo", query={"x": "<script>alert(1)</script>"})
        trial.send("echo", "onerror", "GET", "/echo", query={"x": '"><img src=x onerror=alert(1)>'})
        trial.send("refuse", "x", "POST", "/refuse", content=b"x")
        trial.send("count", "", "GET", "/count")
        trial.send("echo", "plain", "GET", "/echo", query={"x": "plain words"})
    problems_by_target = {target: problem for target, problem in trial.findings.found}
    assert "ValueError: 'zz'" in problems_by_target["boom"]
    assert sorted(p for t, p in trial.findings.found if t == "echo") == [
        "unescaped markup: <img onerror=...> attribute",
        "unescaped markup: <script> element: 'alert(1)'",
    ]
    assert problems_by_target["refuse"] == "POST answered 400 but changed note"
    assert problems_by_target["count"] == "GET answered 200 but changed note"
    assert trial.findings.tried == 6
    with pytest.raises(AssertionError, match="5 distinct failures in 6 inputs"):
        trial.findings.check()


def test_the_template_puts_back_every_row_before_each_input(engine: sa.Engine, tmp_path: Path) -> None:
    saved = DatabaseTemplate(tmp_path / "judged.db")
    saved.save(engine)
    before = fingerprint(engine)
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE note SET body = 'changed'")  # same count, other content
    assert changed_tables(before, fingerprint(engine)) == ["note"]
    saved.restore(engine)
    assert changed_tables(before, fingerprint(engine)) == []


def test_cli_judge_allows_a_usage_error_and_one_error_line_only() -> None:
    assert problems(Outcome(0, "Stored article 3.\n", "", None)) == []
    assert problems(Outcome(2, "", "Usage: briefing ...\n Invalid value for '--limit'\n", None)) == []
    assert problems(Outcome(1, "", "error: --date: not a date\n", None)) == []
    assert problems(Outcome(1, "", "", OverflowError("Python int too large"))) == [
        "OverflowError: Python int too large"
    ]
    assert problems(Outcome(1, "", "error: email: no editor reader@example.com\r\nBcc: x\n", None))
    assert problems(Outcome(1, "Traceback (most recent call last):\n", "", None))
    assert problems(Outcome(3, "", "", None)) == ["exit 3"]
    report = Outcome(1, "Preflight failed (HTML 12 KB).\n", "", None)
    assert problems(report, "Preflight failed") == [] and problems(report) != []


def test_the_naughty_list_comes_from_the_package_and_slices_cover_it() -> None:
    strings = naughty_strings()
    assert "<script>alert(123)</script>" in strings and "" in strings
    covered = {s for start in range(0, len(strings), 5) for s in naughty_slice(5, start)}
    assert covered == set(strings)
    assert markup_problems("<p>&lt;script&gt;alert(1)&lt;/script&gt;</p>") == []
    assert not shown_as_is("line\r\nBcc: x") and shown_as_is("[/x]") and "[/x]" in HOSTILE_TEXT
