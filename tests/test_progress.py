"""The whole edition's progress, across every sender: the numbers, what they cost, and where they show
(`briefing editions show --watch`, `briefing send`'s bar).

The service tests run on SQLite and PostgreSQL. The command tests run the real `briefing` process
and order every step on what it has printed, never on sleeps.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlmodel import Session

from briefing.domain import DeliveryStatus, EditionStatus
from briefing.errors import NotFound
from briefing.service import progress as progress_service
from briefing.service.progress import EditionProgress, LiveSender
from briefing.store import editions as edition_store
from tests.fixtures.clock import T0
from tests.fixtures.newsroom import EDITION, Newsroom, make_setup
from tests.fixtures.processes import BriefingProcess
from tests.fixtures.sending import add_run, beat, finish, remove_run, settle, start_sending
from tests.fixtures.waiting import wait_until

pytest_plugins = ["tests.fixtures.gated_smtp"]
pytestmark = pytest.mark.timeout(120)


def progress_of(engine: sa.Engine, edition_id: int, *, now: Any = T0) -> EditionProgress:
    with Session(engine) as session:
        return progress_service.edition_progress(session, edition_id, now=now)


@pytest.fixture
def sending(newsroom: Newsroom) -> int:
    """An edition of 100 readers, sending since T0, nothing recorded yet."""
    newsroom.readers(100)
    return start_sending(newsroom.engine, EDITION, now=T0)


# --------------------------------------------------------------------------- the numbers


def test_a_sending_edition_adds_up_every_live_sender_and_leaves_out_the_silent(
    engine: sa.Engine, sending: int
) -> None:
    second = timedelta(seconds=1)
    add_run(engine, sending, "a:1:aa", host="a.example.net", pid=11, at=T0 - 60 * second)
    beat(engine, "a:1:aa", at=T0 - 3 * second, sent=30, failed=2, rate=100.0)
    add_run(engine, sending, "b:2:bb", host="b.example.net", pid=22, role="send", at=T0 - 60 * second)
    beat(engine, "b:2:bb", at=T0 - 10 * second, sent=12, skipped=1, rate=50.0)
    add_run(engine, sending, "c:3:cc", host="c.example.net", at=T0 - 90 * second)
    beat(engine, "c:3:cc", at=T0 - 60 * second, sent=5, finished=True)
    add_run(engine, sending, "d:4:dd", host="d.example.net", at=T0 - 90 * second)
    beat(engine, "d:4:dd", at=T0 - 31 * second, sent=3, rate=80.0)  # crashed: silent for 31 s

    p = progress_of(engine, sending)

    assert p.sending and not p.counted
    assert (p.total, p.sent, p.failed, p.skipped) == (100, 50, 2, 1)  # every run's copies, dead or alive
    assert p.remaining == 47
    assert p.rate == 150.0  # only the live runs are sending
    assert p.eta == pytest.approx(47 / 150)
    assert [(s.host, s.pid, s.role, s.sent, s.rate) for s in p.senders] == [
        ("a.example.net", 11, "worker", 30, 100.0),
        ("b.example.net", 22, "send", 12, 50.0),
    ]
    assert [s.silent_for for s in p.senders] == [3.0, 10.0]
    assert p.last_heard == T0 - 3 * second


def test_an_edition_partly_sent_before_runs_kept_tallies_keeps_its_sent_count(
    engine: sa.Engine, sending: int
) -> None:
    with Session(engine) as session, session.begin():
        edition_store.set_counts(session, sending, sent=40, failed=0, now=T0)
    add_run(engine, sending, "a:1:aa", host="a.example.net", at=T0)
    beat(engine, "a:1:aa", at=T0, sent=10, rate=20.0)
    assert progress_of(engine, sending).sent == 40
    beat(engine, "a:1:aa", at=T0, sent=45, rate=20.0)
    assert progress_of(engine, sending).sent == 45


def test_an_edition_no_longer_sending_is_counted_exactly_from_the_ledger(
    engine: sa.Engine, sending: int
) -> None:
    add_run(engine, sending, "a:1:aa", host="a.example.net", at=T0)
    beat(engine, "a:1:aa", at=T0, sent=99, rate=0.0, finished=True)  # a tally that is wrong on purpose
    settle(engine, sending, DeliveryStatus.SENT, 7)
    settle(engine, sending, DeliveryStatus.FAILED, 2)
    settle(engine, sending, DeliveryStatus.SKIPPED, 1)
    finish(engine, sending, EditionStatus.PARTIAL, now=T0)

    p = progress_of(engine, sending)

    assert p.counted and p.status == "partial" and not p.sending
    assert (p.sent, p.failed, p.skipped, p.remaining) == (7, 2, 1, 90)
    assert p.senders == () and p.rate == 0.0
    assert p.eta is None  # copies left and nobody sending them


def test_the_eta_is_zero_once_every_copy_is_out(engine: sa.Engine, sending: int) -> None:
    add_run(engine, sending, "a:1:aa", host="a.example.net", at=T0)
    beat(engine, "a:1:aa", at=T0, sent=98, failed=2, rate=0.0)
    p = progress_of(engine, sending)
    assert p.remaining == 0 and p.eta == 0.0 and p.done == 100


def test_progress_while_sending_never_reads_the_ledger(engine: sa.Engine, sending: int) -> None:
    add_run(engine, sending, "a:1:aa", host="a.example.net", at=T0)
    beat(engine, "a:1:aa", at=T0, sent=10, rate=5.0)
    statements: list[str] = []

    def capture(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(" ".join(statement.lower().split()))

    sa.event.listen(engine, "before_cursor_execute", capture)
    try:
        progress_of(engine, sending)
        while_sending = list(statements)
        statements.clear()
        finish(engine, sending, EditionStatus.SENT, now=T0)
        statements.clear()
        progress_of(engine, sending)
        once_sent = list(statements)
    finally:
        sa.event.remove(engine, "before_cursor_execute", capture)

    assert [s for s in while_sending if "from sender" in s], while_sending
    assert not [s for s in while_sending if "delivery" in s], while_sending
    # The same capture sees the ledger's one grouped count once the edition is no longer sending.
    assert [s for s in once_sent if "from delivery" in s and "count(" in s]


def test_the_progress_of_a_date_without_an_edition_is_not_found(engine: sa.Engine) -> None:
    with Session(engine) as session, pytest.raises(NotFound) as caught:
        progress_service.progress_on(session, EDITION, now=T0)
    assert caught.value.field == "date" and "2026-11-30" in str(caught.value)


def _progress(**changes: Any) -> EditionProgress:
    values: dict[str, Any] = {
        "edition_id": 1,
        "edition_date": EDITION,
        "status": "sending",
        "total": 1000,
        "sent": 300,
        "failed": 0,
        "skipped": 0,
        "ambiguous": 0,
        "rate": 150.0,
        "senders": (
            LiveSender("here.example.net", 7, "send", 2, 100, 100.0, 4.0),
            LiveSender("there.example.net", 8, "worker", 2, 200, 50.0, 1.0),
        ),
        "counted": False,
        "last_heard": T0,
    }
    values.update(changes)
    return EditionProgress(**values)


def test_a_senders_own_live_figures_replace_its_last_heartbeat() -> None:
    p = progress_service.with_live_run(_progress(), host="here.example.net", pid=7, sent=130, rate=120.0)
    assert (p.sent, p.rate) == (330, 170.0)
    # Before its first heartbeat the run has no row: its copies add to the others'.
    p = progress_service.with_live_run(_progress(), host="new.example.net", pid=9, sent=20, rate=10.0)
    assert (p.sent, p.rate) == (320, 160.0)
    # Never more than the edition holds, and exact counts are left alone.
    p = progress_service.with_live_run(_progress(), host="new.example.net", pid=9, sent=5000, rate=1.0)
    assert p.sent == 1000
    exact = _progress(counted=True, status="sent")
    assert progress_service.with_live_run(exact, host="here.example.net", pid=7, sent=999, rate=9.0) == exact


@pytest.mark.parametrize(
    ("seconds", "said"),
    [(None, "unknown"), (0.2, "0 s"), (42.4, "42 s"), (89, "1 min"), (750, "13 min"), (3900, "1 h 05 min")],
)
def test_durations_read_the_way_people_say_them(seconds: float | None, said: str) -> None:
    assert progress_service.duration(seconds) == said


# --------------------------------------------------------------------------- the commands


@pytest.fixture
def commands(tmp_path: Path) -> Iterator[Any]:
    started: list[BriefingProcess] = []

    def factory(database_url: str, *args: str, **env: str) -> BriefingProcess:
        full = {
            **{k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "TTY_COMPATIBLE")},
            "BRIEFING_DATABASE_URL": database_url,
            "BRIEFING_TIMEZONE": "Europe/London",
            "BRIEFING_NOW": T0.isoformat(),
            **env,
        }
        command = BriefingProcess(list(args), full, tmp_path / f"command-{len(started)}.log")
        started.append(command)
        return command

    yield factory
    for command in started:
        command.stop()


@pytest.fixture
def watched(sqlite_engine: sa.Engine) -> int:
    """Ten readers, sending since T0, one worker on another host that has sent nothing yet."""
    Newsroom(sqlite_engine, make_setup()).readers(10)
    edition_id = start_sending(sqlite_engine, EDITION, now=T0)
    # The watch's clock starts at T0 and runs on: a heartbeat 20 s ahead stays live for 50 s.
    add_run(sqlite_engine, edition_id, "w:1:ww", host="worker-1.example.net", at=T0 + timedelta(seconds=20))
    return edition_id


def test_watch_follows_every_sender_until_the_edition_is_sent(
    sqlite_url: str, sqlite_engine: sa.Engine, watched: int, commands: Any
) -> None:
    watch = commands(sqlite_url, "editions", "show", EDITION.isoformat(), "--watch")
    assert watch.says("sending: sent 0 of 10 · 0/s · ETA unknown · 1 sender"), watch.output()

    beat(sqlite_engine, "w:1:ww", at=T0 + timedelta(seconds=20), sent=4, rate=2.0)
    assert watch.says("sending: sent 4 of 10 · 2/s · ETA 3 s · 1 sender"), watch.output()

    settle(sqlite_engine, watched, DeliveryStatus.SENT, 10)
    beat(sqlite_engine, "w:1:ww", at=T0 + timedelta(seconds=20), sent=10, finished=True)
    finish(sqlite_engine, watched, EditionStatus.SENT, now=T0)
    assert watch.process.wait(timeout=30) == 0, watch.output()
    out = watch.output()
    assert "sent: sent 10 of 10 · 0/s · ETA done · 0 senders" in out
    assert "Edition of 2026-11-30: sent" in out and "recipients: 10   sent: 10" in out
    assert out.count("sent 4 of 10") == 1, "a line is printed again only when the numbers change"


def test_ctrl_c_stops_the_watch_quietly(
    sqlite_url: str, sqlite_engine: sa.Engine, watched: int, commands: Any
) -> None:
    watch = commands(sqlite_url, "editions", "show", EDITION.isoformat(), "--watch")
    assert watch.says("sending: sent 0 of 10"), watch.output()
    watch.process.send_signal(signal.SIGINT)
    assert watch.process.wait(timeout=30) == 130, watch.output()
    out = watch.output()
    assert "Traceback" not in out and "error" not in out and "Aborted" not in out
    assert "Edition of" not in out, "stopped watching: nothing more is printed"


def test_watch_ends_when_no_sender_has_reported_for_two_minutes(
    sqlite_url: str, sqlite_engine: sa.Engine, watched: int, commands: Any
) -> None:
    beat(sqlite_engine, "w:1:ww", at=T0 - timedelta(minutes=10), sent=3, rate=1.0)
    watch = commands(sqlite_url, "editions", "show", EDITION.isoformat(), "--watch")
    assert watch.process.wait(timeout=30) == 0, watch.output()
    out = " ".join(watch.output().split())
    assert "No sender is running on the edition of 2026-11-30 (last heard from: 2026-11-29 11:50)" in out
    assert "Edition of 2026-11-30: sending" in out


def test_the_send_bar_shows_the_whole_edition_and_this_senders_share(
    sqlite_url: str, sqlite_engine: sa.Engine, gated_smtp: Any, tmp_path: Path
) -> None:
    from tests.fixtures.gated_smtp import Sender, sender_env  # after pytest has loaded it as a plugin

    room = Newsroom(sqlite_engine, make_setup())
    room.queue_story()
    emails = room.readers(10)
    server = gated_smtp()  # holds every reply until the test opens the gate
    env = {
        **sender_env(sqlite_url, server.url, 2),
        "BRIEFING_NOW": T0.isoformat(),
        "FORCE_COLOR": "1",  # draw the bar although the output is a file
        "COLUMNS": "200",
    }
    send = Sender(env, tmp_path / "send.log")
    try:
        assert wait_until(lambda: server.handler.arrived >= 1, timeout=30), send.output()
        assert send.says("sent 0 of 10 (0 by this sender)"), send.output()
        with Session(sqlite_engine) as session:
            found = edition_store.get_edition(session, EDITION, newsletter_id=1)
        add_run(sqlite_engine, found.id, "o:1:oo", host="other.example.net", at=T0 + timedelta(seconds=20))
        beat(sqlite_engine, "o:1:oo", at=T0 + timedelta(seconds=20), sent=6, rate=40.0)
        assert send.says("sent 6 of 10 (0 by this sender) · 40/s · ETA 0 s"), send.output()

        remove_run(sqlite_engine, "o:1:oo")  # its copies were made up: the real ones are still to send
        server.handler.gate.set()
        assert send.wait(timeout=30) == 0, send.output()
    finally:
        send.kill()
    assert set(server.handler.copies()) == set(emails)
