"""The schema: migrations match the models, timestamps stay UTC, SQLite runs with the right pragmas."""

from __future__ import annotations

import threading
import time
from datetime import UTC, date, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlmodel import Session, SQLModel, select

from briefing.db import current_revision, head_revision, make_engine, upgrade
from briefing.models import Article, Edition, Subscriber


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
        s.add(Article(url="https://news.example.com/a", title="A", published_at=london_summer))
        s.commit()
    with Session(engine) as s:
        stored = s.exec(select(Article)).one().published_at
    assert stored == london_summer
    assert stored is not None and stored.tzinfo is not None and stored.utcoffset() == timedelta(0)
    assert stored.hour == 5


def test_naive_datetimes_are_refused(sqlite_engine: sa.Engine) -> None:
    with Session(sqlite_engine) as s:
        s.add(Article(url="https://news.example.com/b", title="B", published_at=datetime(2026, 1, 1, 6, 0)))
        with pytest.raises(sa.exc.StatementError, match="naive datetime"):
            s.commit()


def test_unique_keys(engine: sa.Engine) -> None:
    with Session(engine) as s:
        s.add(Edition(edition_date=date(2026, 11, 30)))
        s.commit()
        s.add(Edition(edition_date=date(2026, 11, 30)))
        with pytest.raises(sa.exc.IntegrityError):
            s.commit()
        s.rollback()
        s.add(Subscriber(email="a@example.com", email_key="a@example.com"))
        s.commit()
        s.add(Subscriber(email="A@example.com", email_key="a@example.com"))
        with pytest.raises(sa.exc.IntegrityError):
            s.commit()


def test_sqlite_pragmas(sqlite_engine: sa.Engine) -> None:
    with sqlite_engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 5000


def test_a_locked_database_is_waited_for(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    upgrade(engine)
    other = make_engine(sqlite_url)
    held = threading.Event()

    def hold_write_lock() -> None:
        with other.begin() as conn:  # BEGIN IMMEDIATE: the write lock
            conn.execute(
                sa.insert(Article).values(
                    url="https://news.example.com/x",
                    title="X",
                    created_at=datetime.now(UTC),
                    updated_at=datetime.now(UTC),
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
            time.sleep(1.0)

    t = threading.Thread(target=hold_write_lock)
    t.start()
    held.wait(5)
    started = time.monotonic()
    with Session(engine) as s:
        s.add(Article(url="https://news.example.com/y", title="Y"))
        s.commit()
    waited = time.monotonic() - started
    t.join()
    assert waited >= 0.5
    with Session(engine) as s:
        assert len(s.exec(select(Article)).all()) == 2
