"""`briefing init` on a new install: a database and a secret key, so the first preview just works.

The key goes into .env in the working directory (where the settings read it), and never replaces
one already configured: an existing .env keeps every byte it had, at most gaining the key line.
"""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from briefing.config import load_settings
from tests.fixtures.cli import cli_env, ok, run

KEY = "BRIEFING_SECRET_KEY"


@pytest.fixture
def newsroom(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A fresh folder as the working directory, and an environment with no key in it."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(KEY, raising=False)
    return cli_env(tmp_path)


def key_in(path: Path) -> str:
    return load_settings(_env_file=path).secret_key.get_secret_value()


def test_a_new_install_gets_a_key_and_can_preview_at_once(newsroom: dict[str, str]) -> None:
    env = newsroom
    code, before = run(env, "preview", "--date", "2026-11-30")
    assert code != 0 and KEY in before  # what a new install hit before `init` wrote the key
    out = ok(env, "init")
    assert "Wrote .env with a new BRIEFING_SECRET_KEY" in out and "Database ready" in out
    env_file = Path(".env")
    key = key_in(env_file)
    assert len(key) >= 40 and key not in out, "a fresh key, never printed"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    ok(
        env,
        "stories",
        "add",
        "--url",
        "https://example.org/a",
        "--headline",
        "First story",
        "--status",
        "ready",
    )
    out = ok(env, "preview", "--date", "2026-11-30", "--out", "preview")
    assert "First story" in Path("preview/briefing.txt").read_text(encoding="utf-8"), out


def test_an_existing_env_without_a_key_gains_one_line(newsroom: dict[str, str]) -> None:
    original = b"# our settings\nBRIEFING_NEWSLETTER_NAME=The Early Edition"  # no newline at the end
    Path(".env").write_bytes(original)
    out = ok(newsroom, "init")
    assert "Added a new BRIEFING_SECRET_KEY to the end of .env" in out
    written = Path(".env").read_bytes()
    assert written.startswith(original + b"\n") and written.count(KEY.encode()) == 1
    settings = load_settings(_env_file=Path(".env"))
    assert settings.newsletter_name == "The Early Edition" and settings.secret_key.get_secret_value()


def test_an_empty_key_copied_from_the_example_is_filled_by_the_appended_line(
    newsroom: dict[str, str],
) -> None:
    original = b"BRIEFING_SECRET_KEY=\nBRIEFING_TIMEZONE=Europe/London\n"
    Path(".env").write_bytes(original)
    ok(newsroom, "init")
    assert Path(".env").read_bytes().startswith(original)
    assert key_in(Path(".env")), "the appended key wins over the empty one above it"


def test_an_existing_key_is_never_replaced(newsroom: dict[str, str]) -> None:
    original = b"BRIEFING_SECRET_KEY=the-key-our-links-are-signed-with\n"
    Path(".env").write_bytes(original)
    out = ok(newsroom, "init")
    assert "BRIEFING_SECRET_KEY is already set in .env; it is left as it is." in out
    assert Path(".env").read_bytes() == original
    ok(newsroom, "init")
    assert Path(".env").read_bytes() == original, "running it again changes nothing"


def test_a_key_in_the_environment_needs_no_env_file(newsroom: dict[str, str]) -> None:
    out = ok({**newsroom, KEY: "from-the-service-manager"}, "init")
    assert "BRIEFING_SECRET_KEY is set in the environment; .env is left as it is." in out
    assert not Path(".env").exists()


def test_an_empty_key_in_the_environment_is_refused_before_anything_is_written(
    newsroom: dict[str, str],
) -> None:
    code, out = run({**newsroom, KEY: ""}, "init")
    assert code == 1 and "BRIEFING_SECRET_KEY: is set but empty in the environment" in out
    assert not Path(".env").exists() and not Path("cli.db").exists()


def test_an_unreadable_env_is_named_not_a_traceback(newsroom: dict[str, str]) -> None:
    Path(".env").mkdir()
    code, out = run(newsroom, "init")
    assert code == 1 and out.startswith("error: .env: cannot") and "Is a directory" in out, out


def test_help_shows_an_example(newsroom: dict[str, str]) -> None:
    out = ok(newsroom, "init", "--help")
    assert "Example: briefing init" in out and "BRIEFING_SECRET_KEY" in out
