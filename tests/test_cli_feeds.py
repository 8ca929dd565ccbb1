"""`briefing feeds ...` and `briefing api-tokens ...` on a temporary database, with a local feed file."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest

from tests.fixtures.cli import CLI_NOW, cli_env, ok, run

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return cli_env(tmp_path)


def feed_file(tmp_path: Path) -> Path:
    """Dates relative to the CLI's own clock (BRIEFING_NOW), so `--since 1d` splits them on any day."""
    now = datetime.fromisoformat(CLI_NOW)
    items = [
        ("Fresh story", "fresh", now - timedelta(hours=2)),
        ("Old story", "old", now - timedelta(days=3)),
    ]
    body = "".join(
        f"<item><title>{t}</title><link>https://news.example.com/{slug}</link>"
        f"<pubDate>{format_datetime(when, usegmt=True)}</pubDate><category>World</category></item>"
        for t, slug, when in items
    )
    path = tmp_path / "site.xml"
    path.write_text(
        f'<rss version="2.0"><channel><title>Site</title>{body}</channel></rss>', encoding="utf-8"
    )
    return path


def test_feed_workflow_and_articles_list(env: dict[str, str], tmp_path: Path) -> None:
    path = feed_file(tmp_path)
    out = ok(env, "feeds", "add", str(path), "--name", "site", "--section", "Politics")
    assert "Added feed 1 site" in out
    assert "never polled" in ok(env, "feeds", "list")

    out = ok(env, "feeds", "poll", "site")
    assert "site" in out and "ok" in out
    (listed,) = json.loads(ok(env, "feeds", "list", "--json"))
    assert (listed["last_status"], listed["article_count"], listed["articles_seen"]) == ("ok", 2, 2)
    assert listed["url"] == path.resolve().as_uri()

    recent = json.loads(ok(env, "articles", "list", "--since", "1d", "--not-queued", "--json"))
    assert [(a["title"], a["section"], a["source"]) for a in recent] == [("Fresh story", "Politics", "feed")]
    ok(env, "stories", "add", "--article", str(recent[0]["id"]), "--status", "ready")
    assert json.loads(ok(env, "articles", "list", "--since", "1d", "--not-queued", "--json")) == []
    assert len(json.loads(ok(env, "articles", "list", "--json"))) == 2

    out = ok(env, "feeds", "poll", "site")  # straight away: the minimum interval holds
    assert "skipped" in out and "--force" in out
    out = ok(env, "feeds", "poll", "--all", "--force")
    assert "not-modified" in out
    assert "No feed was due" in ok(env, "feeds", "poll")

    out = ok(env, "feeds", "remove", "site")
    assert "its 2 articles stay stored" in out
    assert len(json.loads(ok(env, "articles", "list", "--json"))) == 2


def test_feed_errors_are_clean(env: dict[str, str], tmp_path: Path) -> None:
    code, out = run(env, "feeds", "add", "ftp://news.example.com/feed")
    assert code == 1 and "only http(s)" in out
    code, out = run(env, "feeds", "add", "http://127.0.0.1:9/feed")
    assert code == 1 and "--allow-private" in out
    code, out = run(env, "feeds", "remove", "nothing")
    assert code == 1 and "no feed named" in out
    broken = tmp_path / "broken.xml"
    broken.write_text("<html><body>Moved</body></html>", encoding="utf-8")
    ok(env, "feeds", "add", str(broken), "--name", "broken")
    code, out = run(env, "feeds", "poll", "broken")
    assert code == 1 and "not an RSS or Atom feed" in out
    assert "not an RSS or Atom feed" in ok(env, "feeds", "list")
    code, out = run(env, "feeds", "poll", "broken", "--all")
    assert code == 1 and "not both" in out


def test_api_tokens(env: dict[str, str]) -> None:
    token = ok(env, "api-tokens", "create", "cms").strip().splitlines()[-1]
    assert token.startswith("brf_")
    code, out = run(env, "api-tokens", "create", "cms")
    assert code == 1 and "exists already" in out
    listed = json.loads(ok(env, "api-tokens", "list", "--json"))
    assert [t["name"] for t in listed] == ["cms"] and token not in json.dumps(listed)
    assert "Revoked token cms" in ok(env, "api-tokens", "revoke", "cms")
    assert "already revoked" in ok(env, "api-tokens", "revoke", "cms")
    code, out = run(env, "api-tokens", "revoke", "nobody")
    assert code == 1 and "no token named" in out


def test_the_old_tokens_name_still_works_but_is_not_listed(env: dict[str, str]) -> None:
    token = ok(env, "tokens", "create", "cms").strip().splitlines()[-1]
    assert token.startswith("brf_")
    assert [t["name"] for t in json.loads(ok(env, "api-tokens", "list", "--json"))] == ["cms"]
    commands = [line.split()[1] for line in ok(env, "--help").splitlines() if line.startswith("│ ")]
    assert "api-tokens" in commands and "tokens" not in commands
