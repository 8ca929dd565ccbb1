"""Engine, sessions and schema upgrades.

SQLite gets WAL (the scheduler and the web app share the file), enforced foreign keys and a busy
timeout, so a second writer waits instead of failing with "database is locked".
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlmodel import Session, create_engine

from briefing.errors import ConfigError

if TYPE_CHECKING:
    from datetime import datetime

    from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 10_000


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def _sqlite_begin(conn: sa.Connection) -> None:
    # Take the write lock at BEGIN so two writers queue on busy_timeout instead of deadlocking
    # on a read-to-write upgrade (which SQLite answers with an immediate SQLITE_BUSY).
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def make_engine(url: str, *, echo: bool = False) -> sa.Engine:
    """Create an engine with the pragmas and pool settings this project relies on."""
    if url.startswith("sqlite"):
        path = sa.engine.make_url(url).database
        if path and path != ":memory:":
            Path(path).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, echo=echo, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
        sa.event.listen(engine, "connect", _sqlite_pragmas)

        @sa.event.listens_for(engine, "connect")
        def _no_pysqlite_begin(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves

        sa.event.listen(engine, "begin", _sqlite_begin)
        return engine
    if url.startswith("postgresql"):
        return create_engine(url, echo=echo, pool_pre_ping=True)
    raise ConfigError(
        "unsupported database URL (use sqlite:/// or postgresql+psycopg://)", field="database_url"
    )


@contextmanager
def session_scope(engine: sa.Engine) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on any error."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def alembic_config(url: str) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(
    engine: sa.Engine, revision: str = "head", *, newsletter_name: str = "", now: datetime | None = None
) -> None:
    """Create or upgrade the schema; safe to run on every start.

    `newsletter_name` names the first newsletter when a database from before several newsletters
    is carried forward (its slug comes from it); the edges pass BRIEFING_NEWSLETTER_NAME, and
    `now` from their clock for the rows a migration writes (without it, the database's clock).

    A database already at the newest revision is the common case (every command checks), and it
    is answered with one query: Alembic, which takes a tenth of a second to import, is loaded only
    when there is something to apply or the versions cannot be read plainly.
    """
    if revision == "head" and _at_head(engine):
        return
    from alembic import command

    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        cfg.attributes["newsletter_name"] = newsletter_name
        cfg.attributes["now"] = now
        command.upgrade(cfg, revision)


def current_revision(engine: sa.Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


_REVISION = re.compile(r"""^revision(?:\s*:\s*str)?\s*=\s*['"]([^'"]+)['"]\s*$""", re.M)
_DOWN_REVISION = re.compile(r"""^down_revision(?:\s*:\s*[^=]+)?\s*=\s*(?:None|['"]([^'"]+)['"])\s*$""", re.M)


def plain_head_revision(versions: Path = MIGRATIONS_DIR / "versions") -> str | None:
    """The newest revision read from the version files' own lines, without importing Alembic.

    None unless every file states one revision and one parent plainly and the chain has exactly
    one head (a merge or a branch is left to Alembic); tests check it against `head_revision`.
    """
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in versions.glob("*.py"):
        if path.name == "__init__.py":
            continue
        text = path.read_text(encoding="utf-8")
        found, down = _REVISION.findall(text), _DOWN_REVISION.findall(text)
        if len(found) != 1 or len(down) != 1:
            return None
        revisions.add(found[0])
        if down[0]:
            parents.add(down[0])
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 and parents <= revisions else None


def _at_head(engine: sa.Engine) -> bool:
    """Whether the database records exactly the newest revision; False whenever unsure."""
    head = plain_head_revision()
    if head is None:
        return False
    # A database that cannot be reached, is locked or is not a database fails here as it would in Alembic.
    with engine.connect() as conn:
        if not sa.inspect(conn).has_table("alembic_version"):
            return False  # a new database: Alembic creates the schema
        stored = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalars().all()
    return stored == [head]
