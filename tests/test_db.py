"""The schema: migrations match the models, timestamps stay UTC, SQLite runs with the right pragmas."""

from __future__ import annotations

import sqlite3
import threading
from datetime import UTC, date, datetime, timedelta, timezone

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
