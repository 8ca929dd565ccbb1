"""What the `briefing` command loads before it does anything: only what the command uses.

`briefing --help` builds every command, so a command module that imports the web framework or the
renderer at its top makes every start pay for it. These tests run the command in a fresh
interpreter and look at `sys.modules` afterwards: what was imported, not how long it took.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from alembic import command

from briefing.db import (
    alembic_config,
    current_revision,
    head_revision,
    make_engine,
    plain_head_revision,
    upgrade,
)
from tests.fixtures.db import postgres_url_or_skip, reset_postgres

ROOT = Path(__file__).resolve().parent.parent

# Libraries no help text needs: the web app, the renderer, feeds, DKIM, migrations, passwords, HTTP,
# metrics, the browser for screenshots, the scheduler, the database and the settings; nor the two
# rich modules typer's help renderer imports for Markdown help and pretty tracebacks.
HEAVY = (
    "fastapi",
    "starlette",
    "uvicorn",
    "mjml",
    "css_inline",
    "nh3",
    "feedparser",
    "alembic",
    "dkim",
    "cryptography",
    "argon2",
    "httpx",
    "prometheus_client",
    "playwright",
    "apscheduler",
    "sqlalchemy",
    "sqlmodel",
    "pydantic_settings",
    "jinja2",
    "markdown_it",
    "pygments",
)
# `status` reads the settings and the database (the ORM and the settings are honest there) and
# builds only the send calendar: not the renderer, the link signer or the DKIM key; nor the web
# framework, feeds, HTTP, metrics, passwords, the scheduler or, on a database already at the
# newest schema, Alembic.
NOT_FOR_STATUS = (
    "fastapi",
    "starlette",
    "uvicorn",
    "mjml",
    "css_inline",
    "jinja2",
    "nh3",
    "markdown_it",
    "feedparser",
    "alembic",
    "dkim",
    "cryptography",
    "itsdangerous",
    "argon2",
    "httpx",
    "prometheus_client",
    "playwright",
    "apscheduler",
    "aiosmtpd",
    "pygments",
)

# Typer's groups are its own click's (typer._click), so a group is what lists commands.
EVERY_HELP = """
import json, sys
from typer.main import get_command
from briefing.cli import app

shown = []

def every_help(command, ctx, path):
    command.get_help(ctx)
    shown.append(" ".join(path))
    if hasattr(command, "list_commands"):
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            every_help(sub, sub.make_context(name, [], parent=ctx, resilient_parsing=True), [*path, name])

root = get_command(app)
every_help(root, root.make_context("briefing", [], resilient_parsing=True), [])
print(json.dumps({"shown": shown, "modules": sorted(sys.modules)}))
"""

# `briefing <path> --help` for every command and group as a person types it, one after another in
# one interpreter; after each, the heavy libraries loaded since the one before.
EACH_HELP = """
import contextlib, io, json, sys
from typer.main import get_command
from briefing.cli import app

heavy = json.loads(sys.argv[1])

def paths(command, ctx, path):
    yield path
    if hasattr(command, "list_commands"):
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            sub_ctx = sub.make_context(name, [], parent=ctx, resilient_parsing=True)
            yield from paths(sub, sub_ctx, [*path, name])

root = get_command(app)
report = {}
seen = set()
for path in list(paths(root, root.make_context("briefing", [], resilient_parsing=True), [])):
    shown = io.StringIO()
    with contextlib.redirect_stdout(shown):
        try:
            app([*path, "--help"], prog_name="briefing")
        except SystemExit as exc:
            code = exc.code
    loaded = sorted(name for name in heavy if name in sys.modules and name not in seen)
    seen.update(loaded)
    shown = "Usage:" in shown.getvalue()
    report[" ".join(path) or "(briefing)"] = {"code": code, "shown": shown, "heavy": loaded}
print(json.dumps(report))
"""

RUN_COMMAND = """
import json, sys
from briefing.cli import app
try:
    app(sys.argv[1:], prog_name="briefing")
except SystemExit as exc:
    code = exc.code
print(json.dumps({"code": code, "modules": sorted(sys.modules)}))
"""


def _python(code: str, *args: str, env: dict[str, str] | None = None, cwd: Path = ROOT) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


def _loaded(modules: list[str], names: tuple[str, ...]) -> list[str]:
    return [name for name in names if name in modules]


def test_help_of_every_command_loads_none_of_the_heavy_libraries() -> None:
    result = json.loads(_python(EVERY_HELP))
    assert {"", "status", "stories", "stories add", "subscribers import"} <= set(result["shown"])
    assert _loaded(result["modules"], HEAVY) == []


def test_each_command_typed_with_help_shows_it_and_loads_none_of_the_heavy_libraries() -> None:
    report = json.loads(_python(EACH_HELP, json.dumps(HEAVY)))
    assert {"(briefing)", "status", "send", "stories", "stories add", "subscribers import"} <= set(report)
    assert {path: r for path, r in report.items() if r["code"] != 0 or not r["shown"]} == {}
    assert {path: r["heavy"] for path, r in report.items() if r["heavy"]} == {}


def _status_env(tmp_path: Path) -> dict[str, str]:
    url = f"sqlite:///{tmp_path / 'briefing.db'}"
    upgrade(make_engine(url))
    return {
        "BRIEFING_DATABASE_URL": url,
        "BRIEFING_SECRET_KEY": "startup-test-key-0123456789abcdef",
        "BRIEFING_TIMEZONE": "Europe/London",
        "BRIEFING_NOW": "2026-11-29T12:00:00+00:00",
    }


@pytest.mark.parametrize("args", [["status"], ["status", "--json"], ["calendar"]])
def test_status_and_calendar_read_the_database_without_the_renderer_the_web_or_alembic(
    tmp_path: Path, args: list[str]
) -> None:
    result = json.loads(_python(RUN_COMMAND, *args, env=_status_env(tmp_path), cwd=tmp_path))
    # A new install: no scheduler has run yet, which status reports with exit 1; calendar just lists.
    assert result["code"] == (0 if args == ["calendar"] else 1)
    assert "sqlalchemy" in result["modules"]  # it did read the database
    assert "briefing.service.setup" not in result["modules"]  # no edition setup was built
    assert _loaded(result["modules"], NOT_FOR_STATUS) == []


def test_status_needs_no_secret_key_to_answer(tmp_path: Path) -> None:
    """A monitor asks about dates and the ledger; only the commands that sign links need the key."""
    env = {**os.environ, **_status_env(tmp_path), "BRIEFING_SECRET_KEY": ""}
    done = subprocess.run(
        [sys.executable, "-m", "briefing.cli", "status", "--json"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=120,
        check=False,
    )
    assert (done.returncode, done.stderr) == (1, "")
    report = json.loads(done.stdout)
    assert report["next_send"]["edition_date"] == "2026-11-30"
    assert any("no scheduler has ever run" in p for p in report["problems"]), report["problems"]


def test_the_calendar_alone_is_the_one_the_edition_setup_holds(tmp_path: Path) -> None:
    """status and calendar take the light path; it must see the same days, skips included."""
    from briefing import wiring
    from briefing.config import load_settings
    from briefing.db import session_scope
    from briefing.service import schedule as schedule_service

    url = f"sqlite:///{tmp_path / 'briefing.db'}"
    engine = make_engine(url)
    try:
        upgrade(engine)
        settings = load_settings(
            database_url=url, secret_key="startup-test-key-0123456789abcdef", skip_dates="2026-12-24"
        )
        when = datetime(2026, 11, 29, 12, tzinfo=UTC)
        with session_scope(engine) as session:
            schedule_service.skip_date(session, date(2026, 12, 25), "Christmas Day", now=when)
        plan = wiring.send_plan_now(settings, engine)
        assert plan.skip_dates == {date(2026, 12, 24), date(2026, 12, 25)}
        assert plan == wiring.edition_setup_now(settings, engine).plan
    finally:
        engine.dispose()


def test_the_plain_reading_of_the_versions_finds_alembics_head() -> None:
    assert plain_head_revision() is not None
    assert plain_head_revision() == head_revision()


def _version(folder: Path, name: str, revision: str, down: str | None) -> None:
    parent = "None" if down is None else f"'{down}'"
    (folder / f"{name}.py").write_text(
        f"revision: str = '{revision}'\ndown_revision: Union[str, None] = {parent}\n", encoding="utf-8"
    )


def test_versions_that_branch_or_read_oddly_are_left_to_alembic(tmp_path: Path) -> None:
    _version(tmp_path, "a", "0001", None)
    _version(tmp_path, "b", "0002", "0001")
    assert plain_head_revision(tmp_path) == "0002"
    _version(tmp_path, "c", "0003", "0001")  # a second head
    assert plain_head_revision(tmp_path) is None
    (tmp_path / "c.py").write_text("revision = '0003'\ndown_revision = ('0001', '0002')\n", encoding="utf-8")
    assert plain_head_revision(tmp_path) is None  # a merge


UPGRADE = """
import json, sys
from briefing.db import make_engine, upgrade
upgrade(make_engine(sys.argv[1]))
print(json.dumps("alembic" in sys.modules))
"""


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'briefing.db'}"
    url = postgres_url_or_skip()
    reset_postgres(url)
    return url


def test_a_current_schema_is_checked_without_alembic_and_an_older_one_upgraded(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        assert json.loads(_python(UPGRADE, database_url)) is True  # a new database: Alembic creates it
        assert current_revision(engine) == head_revision()
        assert json.loads(_python(UPGRADE, database_url)) is False  # already current: one query
        config = alembic_config(database_url)
        with engine.begin() as conn:  # a database left behind by the release before
            config.attributes["connection"] = conn
            command.downgrade(config, "-1")
        assert current_revision(engine) != head_revision()
        assert json.loads(_python(UPGRADE, database_url)) is True
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()
