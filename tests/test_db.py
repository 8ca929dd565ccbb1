"""The schema: migrations match the models, timestamps stay UTC, SQLite runs with the right pragmas."""

from __future__ import annotations

import sqlite3
import threading
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlmodel import Session, SQLModel, col, select

from briefing.db import current_revision, head_revision, make_engine, upgrade
from briefing.models import Article, Edition, Subscriber

NOW = datetime(2026, 11, 28, 6, 0, tzinfo=UTC)


def test_models_and_migrations_agree(engine: sa.Engine) -> None:
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(ctx, SQLModel.metadata)
    assert diff == []
    assert current_revision(engine) == head_revision()


def test_upgrade_twice_is_harmless(engine: sa.Engine) -> None:
    upgrade(engine)
    assert current_revision(engine) == head_revision()


def test_timestamps_round_trip_as_utc(engine: sa.Engine) -> None:
    london_summer = datetime(2026, 3, 30, 6, 0, tzinfo=timezone(timedelta(hours=1)))
    with Session(engine) as s:
        s.add(
            Article(
                url="https://news.example.com/a",
                title="A",
                published_at=london_summer,
                created_at=NOW,
                updated_at=NOW,
            )
        )
        s.commit()
    with Session(engine) as s:
        stored = s.exec(select(Article)).one().published_at
    assert stored == london_summer
    assert stored is not None and stored.tzinfo is not None and stored.utcoffset() == timedelta(0)
    assert stored.hour == 5


def test_naive_datetimes_are_refused(sqlite_engine: sa.Engine) -> None:
    with Session(sqlite_engine) as s:
        s.add(
            Article(
                url="https://news.example.com/b",
                title="B",
                published_at=datetime(2026, 1, 1, 6, 0),
                created_at=NOW,
                updated_at=NOW,
            )
        )
        with pytest.raises(sa.exc.StatementError, match="naive datetime"):
            s.commit()


def test_unique_keys(engine: sa.Engine) -> None:
    with Session(engine) as s:
        s.add(Edition(edition_date=date(2026, 11, 30), created_at=NOW, updated_at=NOW))
        s.commit()
        s.add(Edition(edition_date=date(2026, 11, 30), created_at=NOW, updated_at=NOW))
        with pytest.raises(sa.exc.IntegrityError):
            s.commit()
        s.rollback()
        s.add(Subscriber(email="a@example.com", email_key="a@example.com", created_at=NOW, updated_at=NOW))
        s.commit()
        s.add(Subscriber(email="A@example.com", email_key="a@example.com", created_at=NOW, updated_at=NOW))
        with pytest.raises(sa.exc.IntegrityError):
            s.commit()


def test_sqlite_pragmas(sqlite_engine: sa.Engine) -> None:
    with sqlite_engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 5000


def test_a_locked_database_is_waited_for(sqlite_url: str) -> None:
    """A second writer waits on busy_timeout while another holds the write lock, then commits.

    No sleeps: the holder keeps the lock until the writer has begun its transaction (BEGIN
    IMMEDIATE is the statement that queues on the lock), and a connection without a busy timeout
    shows the lock was really held meanwhile.
    """
    engine = make_engine(sqlite_url)
    upgrade(engine)
    other = make_engine(sqlite_url)
    held = threading.Event()
    writer_waiting = threading.Event()
    release = threading.Event()
    errors: list[BaseException] = []

    @sa.event.listens_for(engine, "before_cursor_execute")
    def _seen(conn: object, cursor: object, statement: str, *args: object) -> None:
        if statement == "BEGIN IMMEDIATE":
            writer_waiting.set()

    def hold_write_lock() -> None:
        with other.begin() as conn:  # BEGIN IMMEDIATE: the write lock
            conn.execute(
                sa.insert(Article).values(
                    url="https://news.example.com/x",
                    title="X",
                    created_at=NOW,
                    updated_at=NOW,
                    guid="",
                    summary="",
                    author="",
                    section="",
                    image_url="",
                    image_alt="",
                    source="manual",
                )
            )
            held.set()
            release.wait(30)

    def write() -> None:
        try:
            with Session(engine) as s:
                s.add(Article(url="https://news.example.com/y", title="Y", created_at=NOW, updated_at=NOW))
                s.commit()
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    holder = threading.Thread(target=hold_write_lock)
    holder.start()
    assert held.wait(30)
    impatient = sqlite3.connect(
        sa.engine.make_url(sqlite_url).database or "", timeout=0, isolation_level=None
    )
    with pytest.raises(sqlite3.OperationalError, match="database is locked"):
        impatient.execute("BEGIN IMMEDIATE")  # the lock is held: without a busy timeout, refused at once
    impatient.close()
    writer = threading.Thread(target=write)
    writer.start()
    assert writer_waiting.wait(30)
    assert writer.is_alive()  # it cannot have committed: the holder still has the lock
    release.set()
    holder.join(30)
    writer.join(30)
    assert not writer.is_alive() and errors == []
    with Session(engine) as s:
        assert [a.url for a in s.exec(select(Article).order_by(col(Article.id))).all()] == [
            "https://news.example.com/x",
            "https://news.example.com/y",
        ]


# --------------------------------------------------------------------------- ids and the 0004 upgrade

_ROWS_AT_0003 = (
    "INSERT INTO subscriber (id, email, email_key, name, status, source, soft_bounce_count,"
    " token_version, attributes, created_at, updated_at) VALUES"
    " (1, 'a@example.com', 'a@example.com', 'Ada', 'active', '', 0, 1, '{}', :t, :t),"
    " (5, 'b@example.com', 'b@example.com', '', 'unsubscribed', '', 2, 3, '{\"x\": \"y\"}', :t, :t)",
    "INSERT INTO edition (id, edition_date, status, held, note, subject, preheader, html_template,"
    " text_template, story_ids, featured_urls, snapshot_size, sent_count, failed_count, last_error,"
    " created_at, updated_at) VALUES (1, '2026-11-30', 'sent', false, '', 'S', '', '', '', '[]', '[]',"
    " 2, 2, 0, '', :t, :t)",
    "INSERT INTO delivery (id, edition_id, subscriber_id, email, status, attempts, lease_owner,"
    " smtp_reply, message_id, was_ambiguous, updated_at) VALUES"
    " (7, 1, 5, 'b@example.com', 'sent', 1, '', '250 ok', '<m1@example.com>', false, :t),"
    " (8, 1, 1, 'a@example.com', 'sent', 1, '', '250 ok', '<m2@example.com>', false, :t)",
    "INSERT INTO editor (id, email, password_hash, role, active, created_at) VALUES"
    " (3, 'e@example.com', 'hash', 'admin', true, :t)",
    "INSERT INTO api_token (id, name, token_hash, created_at) VALUES (2, 'cms', :h, :t)",
)
_TABLES_AT_0003 = ("subscriber", "edition", "delivery", "editor", "api_token")


def _rows(conn: sa.Connection, table: str) -> list[tuple[object, ...]]:
    return [tuple(r) for r in conn.exec_driver_sql(f"SELECT * FROM {table} ORDER BY 1").all()]


def test_upgrade_to_0004_keeps_every_row_and_id(db_url: str) -> None:
    engine = make_engine(db_url)
    upgrade(engine, "0003")
    with engine.begin() as conn:
        for statement in _ROWS_AT_0003:
            conn.execute(sa.text(statement), {"t": "2026-11-28 06:00:00", "h": "f" * 64})
        before = {table: _rows(conn, table) for table in _TABLES_AT_0003}

    upgrade(engine)

    with engine.connect() as conn:
        # Later revisions append columns (0009: the newsletter of editions and copies); the rows
        # written at 0003 must come through with every value they had.
        after = {
            table: [row[: len(before[table][0])] if before[table] else row for row in _rows(conn, table)]
            for table in _TABLES_AT_0003
            if table != "editor"
        }
        after["editor"] = _rows(conn, "editor")
        epochs = conn.exec_driver_sql("SELECT id, session_epoch FROM editor").all()
    assert after["editor"] == [(*row, 0) for row in before["editor"]]
    del after["editor"], before["editor"]
    assert after == before, "the ledger rows of a recreated subscriber table must survive"
    assert [tuple(r) for r in epochs] == [(3, 0)]
    assert current_revision(engine) == head_revision()
    engine.dispose()


def test_ids_are_never_reused_after_the_newest_row_is_deleted(engine: sa.Engine) -> None:
    """Ids are in reader links, session cookies and tokens: the next row must not inherit one."""

    def subscriber(tag: str) -> dict[str, object]:
        return {
            "email": tag,
            "email_key": tag,
            "name": "",
            "status": "active",
            "source": "",
            "soft_bounce_count": 0,
            "token_version": 1,
            "attributes": {},
            "created_at": NOW,
            "updated_at": NOW,
        }

    def editor(tag: str) -> dict[str, object]:
        return {"email": tag, "password_hash": "h", "role": "editor", "active": True, "created_at": NOW}

    def api_token(tag: str) -> dict[str, object]:
        return {"name": tag, "token_hash": tag, "created_at": NOW}

    for name, values in (("subscriber", subscriber), ("editor", editor), ("api_token", api_token)):
        table = SQLModel.metadata.tables[name]
        _insert(engine, table, values(f"first-{name}@example.com"))
        newest = _insert(engine, table, values(f"second-{name}@example.com"))
        with engine.begin() as conn:
            conn.execute(sa.delete(table).where(table.c.id == newest))
        later = _insert(engine, table, values(f"third-{name}@example.com"))
        assert later > newest, f"{name} gave a deleted id to a new row"


def _insert(engine: sa.Engine, table: sa.Table, values: dict[str, object]) -> int:
    with engine.begin() as conn:
        key = conn.execute(sa.insert(table).values(**values)).inserted_primary_key
    assert key is not None
    return int(key[0])


def _sqlite_schema(url: str) -> dict[str, object]:
    """Every table as SQLite sees it: columns, AUTOINCREMENT, indexes (by columns) and foreign keys."""
    engine = sa.create_engine(url)
    schema: dict[str, object] = {}
    with engine.connect() as conn:
        tables = conn.exec_driver_sql(
            "SELECT name, sql FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            " AND name != 'alembic_version'"
        ).all()
        for name, sql in tables:
            indexes = set()
            for index in conn.exec_driver_sql(f"PRAGMA index_list('{name}')").all():
                columns = tuple(c[2] for c in conn.exec_driver_sql(f"PRAGMA index_info('{index[1]}')").all())
                label = "" if index[1].startswith("sqlite_autoindex") else index[1]
                indexes.add((label, bool(index[2]), columns))
            schema[name] = (
                sorted(tuple(c[1:]) for c in conn.exec_driver_sql(f"PRAGMA table_info('{name}')").all()),
                "AUTOINCREMENT" in sql.upper(),
                indexes,
                sorted(
                    tuple(f[2:]) for f in conn.exec_driver_sql(f"PRAGMA foreign_key_list('{name}')").all()
                ),
            )
    engine.dispose()
    return schema


def test_create_all_and_the_migrations_build_the_same_sqlite_schema(tmp_path: Path) -> None:
    created, migrated = f"sqlite:///{tmp_path / 'created.db'}", f"sqlite:///{tmp_path / 'migrated.db'}"
    SQLModel.metadata.create_all(sa.create_engine(created))
    upgrade(make_engine(migrated))

    by_create_all, by_migrations = _sqlite_schema(created), _sqlite_schema(migrated)
    assert by_migrations == by_create_all
    for table in ("subscriber", "editor", "api_token"):
        assert by_migrations[table][1] is True, f"{table} ids must never be reused"  # type: ignore[index]
