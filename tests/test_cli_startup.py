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
# metrics, the browser for screenshots, the scheduler, the database and the settings.
HEAVY = (
    "fastapi",
    "starlette",
    "uvicorn",
    "mjml",
    "css_inline",
    "feedparser",
    "alembic",
    "dkim",
    "argon2",
    "httpx",
    "prometheus_client",
    "playwright",
    "apscheduler",
    "sqlalchemy",
    "sqlmodel",
    "pydantic_settings",
    "jinja2",
)
# `status` opens the database and builds the edition setup as every dated command does (so it still
# checks the templates, the secret key and the DKIM settings): the ORM, the settings and the renderer
# are honest there. The web framework, feeds, HTTP, metrics, passwords, the scheduler and, on a
# database already at the newest schema, Alembic are not.
NOT_FOR_STATUS = (
    "fastapi",
    "starlette",
    "uvicorn",
    "feedparser",
    "alembic",
    "dkim",
    "argon2",
    "httpx",
    "prometheus_client",
    "playwright",
    "apscheduler",
    "aiosmtpd",
)

EVERY_HELP = """
import json, sys
import click
from typer.main import get_command
from briefing.cli import app

def every_help(command, ctx):
    command.get_help(ctx)
    if isinstance(command, click.Group):
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            every_help(sub, click.Context(sub, info_name=name, parent=ctx))

root = get_command(app)
every_help(root, click.Context(root, info_name="briefing"))
print(json.dumps(sorted(sys.modules)))
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
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


def _loaded(modules: list[str], names: tuple[str, ...]) -> list[str]:
    return [name for name in names if name in modules]


def test_help_of_every_command_loads_none_of_the_heavy_libraries() -> None:
    modules = json.loads(_python(EVERY_HELP))
    assert "briefing.cli.subscribers" in modules  # every group was built
    assert _loaded(modules, HEAVY) == []


def test_status_reads_the_database_without_the_web_framework_or_alembic(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'briefing.db'}"
    upgrade(make_engine(url))
    env = {
        "BRIEFING_DATABASE_URL": url,
        "BRIEFING_SECRET_KEY": "startup-test-key-0123456789abcdef",
        "BRIEFING_TIMEZONE": "Europe/London",
        "BRIEFING_NOW": "2026-11-29T12:00:00+00:00",
    }
    result = json.loads(_python(RUN_COMMAND, "status", "--json", env=env, cwd=tmp_path))
    assert result["code"] == 1  # a new install: no scheduler has run yet, which status reports
    assert "sqlalchemy" in result["modules"]  # it did read the database
    assert _loaded(result["modules"], NOT_FOR_STATUS) == []


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
