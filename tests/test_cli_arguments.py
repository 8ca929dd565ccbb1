"""Arguments the database or the terminal cannot take are refused by name, before anything is written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.fixtures.cli import cli_env, ok, run

TOO_BIG = "9223372036854775808"  # 2**63: one past the largest SQLite INTEGER / PostgreSQL BIGINT
FAR_TOO_BIG = "99999999999999999999"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    env = cli_env(tmp_path)
    ok(env, "stories", "add", "--url", "https://news.example.com/a", "--headline", "Budget passes")
    return env


def stories(env: dict[str, str]) -> list[dict[str, object]]:
    return json.loads(ok(env, "stories", "list", "--json", "--all"))


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (("stories", "edit", TOO_BIG, "--headline", "x"), "story_id"),
        (("stories", "edit", FAR_TOO_BIG, "--headline", "x"), "story_id"),
        (("stories", "edit", "0", "--headline", "x"), "story_id"),
        (("stories", "move", TOO_BIG, "--to", "1"), "story_id"),
        (("stories", "move", "1", "--to", FAR_TOO_BIG), "--to"),
        (("stories", "ready", "1", TOO_BIG), "story_ids"),
        (("stories", "drop", FAR_TOO_BIG), "story_id"),
        (("stories", "add", "--article", TOO_BIG), "--article"),
        (
            ("stories", "add", "--url", "https://example.org/b", "--headline", "B", "--position", TOO_BIG),
            "--position",
        ),
        (("editions", "list", "--limit", FAR_TOO_BIG), "--limit"),
        (("subscribers", "list", "--limit", FAR_TOO_BIG), "--limit"),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, tuple) else v,
)
def test_ids_beyond_64_bits_are_refused_naming_the_argument(
    env: dict[str, str], args: tuple[str, ...], named: str
) -> None:
    before = stories(env)
    code, out = run(env, *args)
    assert code != 0 and named in out and "Traceback" not in out
    assert stories(env) == before


def test_a_feed_named_by_a_huge_number_is_simply_not_found(env: dict[str, str]) -> None:
    for name in (FAR_TOO_BIG, "\u00b2"):  # "²" counts as a digit for str.isdigit, not for int()
        code, out = run(env, "feeds", "remove", name)
        assert code == 1 and "no feed named or numbered" in out


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (("stories", "add", "--url", "https://example.org/b", "--headline", "\udcff\udcfe"), "--headline"),
        (("stories", "add", "--url=https://example.org/\udcff", "--headline", "B"), "--url"),
        (("subscribers", "add", "reader@example.com", "--name", "Ad\udce9"), "--name"),
        (("subscribers", "add", "\udcffreader@example.com"), "the argument after 'add'"),
        (("stories", "edit", "1", "--blurb", "caf\udce9"), "--blurb"),
    ],
    ids=["headline", "url=", "name", "email", "blurb"],
)
def test_arguments_that_are_not_utf8_are_refused_before_anything_is_written(
    env: dict[str, str], args: tuple[str, ...], named: str
) -> None:
    before = stories(env)
    code, out = run(env, *args)
    assert code == 2 and named in out and "not valid UTF-8" in out
    assert stories(env) == before
    assert json.loads(ok(env, "subscribers", "list", "--json")) == []


@pytest.mark.parametrize("since", ["99999999999d", "999999999d", "99999999999999999999"])
def test_since_out_of_range_is_a_clear_error(env: dict[str, str], since: str) -> None:
    code, out = run(env, "articles", "list", "--since", since)
    assert code == 1 and "--since" in out


def test_files_to_write_are_checked_before_the_import(env: dict[str, str], tmp_path: Path) -> None:
    f = tmp_path / "list.csv"
    f.write_text("email\nnot-an-address\nada@example.com\n", encoding="utf-8")
    code, out = run(env, "subscribers", "import", str(f), "--rejects", str(tmp_path / "no" / "r.csv"))
    assert code == 1 and "--rejects" in out and "does not exist" in out
    assert json.loads(ok(env, "subscribers", "list", "--json")) == []  # refused before the first row
    code, out = run(env, "subscribers", "export", str(tmp_path))
    assert code == 1 and "is a folder" in out
    code, out = run(env, "subscribers", "export", str(tmp_path / "out.csv"), "--status", "actve")
    assert code == 1 and "--status: unknown status 'actve'" in out
    assert not (tmp_path / "out.csv").exists()


def test_a_file_that_is_not_a_database_is_one_clear_line(tmp_path: Path) -> None:
    bogus = tmp_path / "cli.db"
    bogus.write_bytes(b"this is a spreadsheet, not a database " * 10)
    code, out = run(cli_env(tmp_path), "stories", "list")
    assert code == 1 and out.strip() == "error: database: file is not a database"
