"""What the CLI prints is data: text that looks like Rich markup or emoji codes prints as typed.

Each command here stores the text first, so a crash while printing would come after the write;
the tests check both that the command succeeds and that the stored value shows up literally.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from briefing.cli.common import plain
from briefing.db import make_engine
from briefing.service import api_tokens as api_token_service
from tests.fixtures.cli import cli_env, ok, run
from tests.fixtures.clock import T0

pytestmark = pytest.mark.timeout(60)

MARKUP = ["[/]", "[/x]", "[bold]", "[link=file:///etc/passwd]x[/link]", ":smile: [red]"]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return cli_env(tmp_path)


def test_subscriber_names_that_look_like_markup_print_as_typed(env: dict[str, str]) -> None:
    for i, name in enumerate(MARKUP):
        ok(env, "subscribers", "add", f"reader{i}@example.com", "--name", name)
    out = ok(env, "subscribers", "list")
    for name in MARKUP:
        assert name in out


def test_article_titles_and_headlines_that_look_like_markup_print_as_typed(env: dict[str, str]) -> None:
    for i, title in enumerate(MARKUP, start=1):
        out = ok(env, "articles", "add", "--url", f"https://news.example.com/{i}", "--title", title)
        assert f"Stored article {i}: {title}" in out
    listed = ok(env, "articles", "list")
    for title in MARKUP:
        assert title in listed
    assert "[/x]" in ok(env, "stories", "add", "--article", "2", "--lead")
    assert "Updated story 1: [link=file:///etc/passwd]x[/link]" in ok(
        env, "stories", "edit", "1", "--headline", "[link=file:///etc/passwd]x[/link]"
    )
    ok(env, "stories", "add", "--url", "https://example.org/r", "--headline", "[/x]", "--section", "[bold]")
    queue = ok(env, "stories", "list")
    assert "[link=file:///etc/passwd]x[/link]" in queue and "[bold]" in queue and "(lead)" in queue
    assert "Dropped story 2: [/x]" in ok(env, "stories", "drop", "2")
    assert sorted(s["headline"] for s in json.loads(ok(env, "stories", "list", "--json", "--all"))) == [
        "[/x]",
        "[link=file:///etc/passwd]x[/link]",
    ]


def test_an_api_token_whose_name_looks_like_markup_still_shows_its_secret(
    env: dict[str, str], tmp_path: Path
) -> None:
    out = ok(env, "api-tokens", "create", "ops[/x]")
    assert "Created token ops[/x]." in out
    secret = out.strip().splitlines()[-1]
    engine = make_engine(env["BRIEFING_DATABASE_URL"])
    try:
        found = api_token_service.authenticate(engine, secret, now=T0)
    finally:
        engine.dispose()
    assert found is not None and found.name == "ops[/x]"
    assert "ops[/x]" in ok(env, "api-tokens", "list")
    assert "Revoked token ops[/x]." in ok(env, "api-tokens", "revoke", "ops[/x]")


def test_rejected_import_rows_are_reported_as_typed_and_the_good_rows_kept(
    env: dict[str, str], tmp_path: Path
) -> None:
    f = tmp_path / "list.csv"
    f.write_text(
        "email,name\n[/x]@example.com,A\nada@example.com,[/x]\n[bold],B\nbo@example.com,Bo\n",
        encoding="utf-8",
    )
    code, out = run(env, "subscribers", "import", str(f))
    assert code == 1
    assert "line 2: email:" in out and "[/x]@example.com" in out
    assert "line 4: email:" in out and "'[bold]'" in out
    assert "The other rows were imported." in out
    listed = json.loads(ok(env, "subscribers", "list", "--json"))
    assert sorted((s["email"], s["name"]) for s in listed) == [
        ("ada@example.com", "[/x]"),
        ("bo@example.com", "Bo"),
    ]


class _Busy(BaseHTTPRequestHandler):
    """A feed host whose HTTP reason phrase is hostile text."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.send_response(503, "Busy [/x] [bold]")
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture
def busy_feed_host() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Busy)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/feed.xml"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def test_a_feed_error_that_looks_like_markup_prints_as_sent(env: dict[str, str], busy_feed_host: str) -> None:
    ok(env, "feeds", "add", busy_feed_host, "--name", "busy[/x]", "--allow-private")
    code, out = run(env, "feeds", "poll", "busy[/x]")
    assert code == 1
    assert "Busy [/x] [bold]" in out and "busy[/x]" in out
    listed = ok(env, "feeds", "list")
    assert "Busy [/x] [bold]" in listed and "busy[/x]" in listed


def test_plain_shows_control_characters_and_keeps_ordinary_text() -> None:
    assert plain("Caf\u00e9 [/x] :smile:\tok\nnext") == "Caf\u00e9 [/x] :smile:\tok\nnext"
    assert plain("a\x1b[2Jb\rc\x00") == "a\\x1b[2Jb\\x0dc\\x00"
    assert plain("evil\u202etxt.exe \udcff") == "evil\\u202etxt.exe \\udcff"
    assert plain("two\nlines", one_line=True) == "two\\nlines"
    assert plain(None) == "" and plain(42) == "42"
