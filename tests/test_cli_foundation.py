"""The editors' CLI on a temporary database: commands work, bad input fails cleanly and writes nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.fixtures.cli import cli_env, ok, run


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return cli_env(tmp_path)


def stories_json(env: dict[str, str], *extra: str) -> list[dict[str, object]]:
    return json.loads(ok(env, "stories", "list", "--json", *extra))


def test_queue_workflow(env: dict[str, str]) -> None:
    ok(
        env,
        "articles",
        "add",
        "--url",
        "https://news.example.com/a",
        "--title",
        "Budget passes",
        "--section",
        "Politics",
        "--published",
        "2026-11-27 18:00",
    )
    ok(env, "stories", "add", "--article", "1", "--status", "ready", "--blurb", "MPs voted *late*.")
    ok(env, "stories", "add", "--url", "https://news.example.com/a")  # a stored article by URL
    ok(
        env,
        "stories",
        "add",
        "--url",
        "https://example.org/r",
        "--headline",
        "Report",
        "--section",
        "Politics",
        "--date",
        "2026-11-30",
        "--embargo",
        "2026-11-30 05:00",
        "--expires",
        "2026-11-30 12:00",
    )
    ok(env, "stories", "move", "3", "--to", "1")
    ok(env, "stories", "edit", "2", "--headline", "Budget: what next", "--status", "ready")
    ok(env, "stories", "drop", "1")

    listed = stories_json(env, "--date", "2026-11-30")
    assert [(s["id"], s["headline"], s["position"]) for s in listed] == [
        (3, "Report", 1),
        (2, "Budget: what next", 2),
    ]
    report = next(s for s in listed if s["id"] == 3)
    assert report["embargo_until"] == "2026-11-30T05:00:00+00:00"  # GMT in November
    articles = json.loads(ok(env, "articles", "list", "--json"))
    assert articles[0]["published_at"] == "2026-11-27T18:00:00+00:00"


def test_subscriber_commands(env: dict[str, str], tmp_path: Path) -> None:
    ok(env, "subscribers", "add", "Ada@Example.com", "--name", "Ada")
    code, out = run(env, "subscribers", "add", "ada@example.com")
    assert code == 1 and "already on the list" in out
    ok(env, "subscribers", "unsubscribe", "ada@example.com")
    assert "already unsubscribed" in ok(env, "subscribers", "unsubscribe", "ada@example.com")
    f = tmp_path / "list.csv"
    f.write_text("email,name\nada@example.com,Ada\nbo@example.com,Bo\n", encoding="utf-8")
    out = ok(env, "subscribers", "import", str(f))
    assert "kept suppressed" in out
    listed = json.loads(ok(env, "subscribers", "list", "--json"))
    assert {(s["email"], s["status"]) for s in listed} == {
        ("Ada@example.com", "unsubscribed"),
        ("bo@example.com", "active"),
    }
    export = tmp_path / "out.csv"
    ok(env, "subscribers", "export", str(export))
    assert export.read_text(encoding="utf-8").startswith("email,name,status")
    ok(env, "subscribers", "delete", "bo@example.com", "--yes")
    assert len(json.loads(ok(env, "subscribers", "list", "--json"))) == 1


BAD_INPUTS = [
    (("subscribers", "add", "a@b.c\r\nBcc: x@y.z"), "email: must be a single address"),
    (("subscribers", "add", "not-an-address"), "email:"),
    (("stories", "add", "--url", "javascript:alert(1)", "--headline", "x"), "url: must start with http"),
    (("stories", "add", "--url", "data:text/html,hi", "--headline", "x"), "url: must start with http"),
    (
        ("stories", "add", "--url", "https://example.org/a", "--headline", "Two\nlines"),
        "headline: must be one line",
    ),
    (
        ("stories", "add", "--url", "https://example.org/a", "--headline", "nul\x00here"),
        "headline: contains control",
    ),
    (
        ("stories", "add", "--url", "https://example.org/a", "--headline", "x" * 301),
        "headline: is 301 characters",
    ),
    (
        ("subscribers", "add", "a@example.com", "--name", "Ann\r\nBcc: x@example.com"),
        "name: must be one line",
    ),
    (("stories", "add", "--article", "42"), "article: no article with id 42"),
    (("stories", "edit", "42", "--status", "ready"), "story: no story with id 42"),
    (("stories", "move", "42", "--to", "1"), "story: no story with id 42"),
    (
        ("stories", "add", "--url", "https://example.org/a", "--headline", "x", "--date", "30/11/2026"),
        "--date: '30/11/2026' is not a date",
    ),
    (
        ("stories", "add", "--url", "https://example.org/a", "--headline", "x", "--embargo", "tomorrow"),
        "--embargo: 'tomorrow' is not a date and time",
    ),
    (
        (
            "stories",
            "add",
            "--url",
            "https://example.org/a",
            "--headline",
            "x",
            "--embargo",
            "2026-11-30 09:00",
            "--expires",
            "2026-11-30 08:00",
        ),
        "embargo: the embargo must end before the story expires",
    ),
    (
        ("stories", "add", "--url", "https://example.org/a", "--headline", "x", "--status", "used"),
        "status: must be draft or ready",
    ),
    (("subscribers", "import", "/nonexistent/list.csv"), "no such file"),
    (("articles", "import", "/nonexistent/a.jsonl"), "no such file"),
    (("subscribers", "unsubscribe", "nobody@example.com"), "email: nobody@example.com is not on the list"),
    (  # Rich markup in what was typed is printed as it is, not read as markup
        ("stories", "add", "--url", "https://example.org/a", "--headline", "x", "--status", "[/b]"),
        "status: must be draft or ready (got '[/b]')",
    ),
]


@pytest.mark.parametrize(("args", "message"), BAD_INPUTS, ids=[m for _, m in BAD_INPUTS])
def test_bad_input_fails_cleanly_and_writes_nothing(
    env: dict[str, str], args: tuple[str, ...], message: str
) -> None:
    code, out = run(env, *args)
    assert code == 1
    assert message in out
    assert "Traceback" not in out
    assert stories_json(env, "--all") == []
    assert json.loads(ok(env, "subscribers", "list", "--json")) == []


def test_bad_setting_is_named(env: dict[str, str]) -> None:
    code, out = run({**env, "BRIEFING_TIMEZONE": "Mars/Olympus"}, "stories", "list")
    assert code == 1 and "BRIEFING_TIMEZONE: unknown time zone 'Mars/Olympus'" in out


def test_article_import_upserts_by_url_and_reports_lines(env: dict[str, str], tmp_path: Path) -> None:
    f = tmp_path / "a.jsonl"
    f.write_text(
        '{"url": "https://news.example.com/1", "title": "One"}\n'
        "not json\n"
        '{"url": "ftp://news.example.com/2", "title": "Two"}\n'
        '{"url": "https://news.example.com/1", "title": "One, updated"}\n',
        encoding="utf-8",
    )
    code, out = run(env, "articles", "import", str(f))
    assert code == 1
    assert "line 2" in out and "not valid JSON" in out
    assert "line 3" in out and "url: must start with http" in out
    articles = json.loads(ok(env, "articles", "list", "--json"))
    assert [(a["url"], a["title"]) for a in articles] == [("https://news.example.com/1", "One, updated")]


def test_every_command_help_has_an_example(env: dict[str, str]) -> None:
    import typer.main

    from briefing.cli import app as root

    group = typer.main.get_command(root)
    missing = []

    def walk(cmd: object, path: list[str]) -> None:
        sub = getattr(cmd, "commands", None)
        if sub:
            for name, child in sub.items():
                walk(child, [*path, name])
            return
        out = ok(env, *path, "--help")
        if "Example:" not in out:
            missing.append(" ".join(path))

    walk(group, [])
    assert missing == []
