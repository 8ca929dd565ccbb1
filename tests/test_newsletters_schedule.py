"""One scheduler for every newsletter: each calendar at its own local time, paused ones never sent,
specials sent by the watch beside the regular edition, and alerts that say whose edition it is.

The in-process tests run the scheduler's jobs on a clock the test sets. The process tests run
`briefing schedule` itself against the SMTP fixture, with its clock pinned by libfaketime through
a timestamp file the test rewrites: the process starts a few seconds before 06:00 in London, and
the test moves its clock to a few seconds before 06:00 in New York once London's edition is out,
so both mornings happen in one process without waiting five hours.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from email import message_from_bytes
from email.policy import default as default_policy
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlmodel import Session

from briefing import wiring
from briefing.config import load_settings
from briefing.db import session_scope
from briefing.domain import SubscriberInput
from briefing.mail.transport import MemoryTransport
from briefing.newsletter import NewsletterData
from briefing.service import every_newsletter
from briefing.service import schedule as schedule_service
from briefing.service import specials as special_service
from briefing.service import stories as story_service
from briefing.service.setup import EditionSetup
from briefing.store import alerts as alert_store
from briefing.store import deliveries as ledger
from briefing.store import editions as edition_store
from briefing.store import newsletters as newsletter_store
from briefing.store import stories as story_store
from briefing.store import subscribers as subscriber_store
from briefing.store import subscriptions as subscription_store
from tests.fixtures.cli import ok
from tests.fixtures.clock import ManualClock
from tests.fixtures.smtp import SmtpTestServer

DAY = date(2026, 11, 30)  # a Monday; London is on GMT and New York on EST
LONDON_SIX = datetime(2026, 11, 30, 6, 0, tzinfo=UTC)
NEW_YORK_SIX = datetime(2026, 11, 30, 11, 0, tzinfo=UTC)
DESK = "desk@example.org"
SECRET = "newsletters-schedule-secret"
SETTINGS = {
    "secret_key": SECRET,
    "timezone": "Europe/London",
    "send_days": "mon-sun",
    "send_time": "06:00",
    "max_lateness": "3h",
    "public_base_url": "https://news.example.com",
    "sender_address": "briefing@news.example.com",
}


# --------------------------------------------------------------------------- a newsroom of several


class Desk:
    """Newsletters, readers and stories on a real database, and the scheduler's own setup factory."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self.settings = load_settings(_env_file=None, **SETTINGS)
        self.base = wiring.edition_setup(self.settings)
        with Session(engine) as s:
            self.first = newsletter_store.primary(s)

    def setup_of(self, newsletter_id: int) -> EditionSetup:
        return wiring.edition_setup_now(self.settings, self.engine, base=self.base, newsletter=newsletter_id)

    def newsletter(self, slug: str, name: str, zone: str, *, paused: bool = False) -> NewsletterData:
        values = {
            "name": name,
            "timezone": zone,
            "send_time": "06:00",
            "send_days": "mon-sun",
            "paused": paused,
        }
        with session_scope(self.engine) as s:
            return newsletter_store.add_newsletter(s, slug, values, now=LONDON_SIX - timedelta(days=1))

    def pause(self, newsletter: NewsletterData, paused: bool = True) -> None:
        with session_scope(self.engine) as s:
            newsletter_store.update_newsletter(s, newsletter.id, {"paused": paused}, now=LONDON_SIX)

    def readers(self, newsletter: NewsletterData, *emails: str) -> list[str]:
        with session_scope(self.engine) as s:
            for email in emails:
                subscriber_store.add_subscriber(
                    s,
                    SubscriberInput(email=email),
                    newsletter_ids=(newsletter.id,),
                    now=LONDON_SIX - timedelta(days=1),
                )
        return list(emails)

    def story(self, newsletter: NewsletterData, headline: str) -> int:
        with session_scope(self.engine) as s:
            story = story_service.add_story(
                s,
                story_service.StoryRequest(
                    url=f"https://news.example.com/{newsletter.slug}/{abs(hash(headline)) % 10_000}",
                    headline=headline,
                    blurb="What happened overnight.",
                    section="News",
                    status="ready",
                    newsletter_id=newsletter.id,
                ),
                now=LONDON_SIX - timedelta(days=1),
            )
        return story.id

    def special(self, newsletter: NewsletterData, story_id: int, send_at: datetime, *, now: datetime) -> str:
        with session_scope(self.engine) as s:
            made = special_service.create_special(
                s,
                self.setup_of(newsletter.id),
                edition_date=DAY,
                subject="Breaking: the port reopens",
                note="The port reopened at dawn.",
                story_ids=[story_id],
                send_at=send_at,
                now=now,
            )
        return made.kind

    def edition(self, newsletter: NewsletterData, kind: str = "regular") -> tuple[str | None, int]:
        """The edition's status and how many copies its ledger holds (None: no edition row yet)."""
        with Session(self.engine) as s:
            found = edition_store.find_edition(s, DAY, newsletter_id=newsletter.id, kind=kind)
            if found is None:
                return None, 0
            return found.status, len(ledger.rows(s, found.id, limit=1000))

    def every_newsletter(self, mail: MemoryTransport, clock: ManualClock) -> every_newsletter.EveryNewsletter:
        return every_newsletter.EveryNewsletter(
            schedule_service.DailyContext(
                engine=self.engine,
                setup=lambda: self.setup_of(self.first.id),
                transport=lambda: mail,
                alert_email=DESK,
                stop=threading.Event(),
                log=logging.getLogger("test.newsletters"),
                clock=clock,
            ),
            newsletters=lambda: wiring.newsletters_now(self.engine),
            setup_of=self.setup_of,
        )


def _header(data: bytes, name: str) -> str:
    return str(message_from_bytes(data, policy=default_policy)[name] or "")


def readers_got(mail: MemoryTransport) -> dict[str, list[str]]:
    """Each reader's copies, by the List-Id they carry."""
    got: dict[str, list[str]] = {}
    for m in mail.messages:
        if m.rcpt != DESK:
            got.setdefault(m.rcpt, []).append(_header(m.data, "List-Id"))
    return got


def alerts(mail: MemoryTransport) -> list[str]:
    return [_header(m.data, "Subject") for m in mail.messages if m.rcpt == DESK]


@pytest.fixture
def desk(sqlite_engine: sa.Engine) -> Desk:
    return Desk(sqlite_engine)


# --------------------------------------------------------------------------- in-process: the watch


def test_the_watch_sends_each_newsletter_at_its_own_six_o_clock_and_never_a_paused_one(desk: Desk) -> None:
    first = desk.first
    us = desk.newsletter("us", "The US Morning", "America/New_York")
    regional = desk.newsletter("regional", "The Regional", "Europe/London", paused=True)
    london = desk.readers(first, "ada@example.com", "bo@example.com")
    new_york = desk.readers(us, "cy@example.net")
    desk.readers(regional, "di@example.org")
    for n in (first, us, regional):
        desk.story(n, f"{n.slug}: the budget passes")
    mail = MemoryTransport()
    clock = ManualClock(LONDON_SIX - timedelta(minutes=1))
    jobs = desk.every_newsletter(mail, clock)

    assert "sent" not in jobs.watch_job() and mail.messages == []  # 05:59 in London
    clock.set(LONDON_SIX + timedelta(minutes=1))
    jobs.watch_job()
    assert readers_got(mail) == {e: ["The Morning Briefing <briefing.news.example.com>"] for e in london}
    assert desk.edition(us) == (None, 0) and desk.edition(regional) == (None, 0)

    clock.set(NEW_YORK_SIX + timedelta(minutes=1))  # 06:01 in New York
    result = jobs.watch_job()
    assert "us: sent" in result and "regional: paused" in result, result
    got = readers_got(mail)
    assert set(got) == {*london, *new_york}, "the paused newsletter's reader got nothing"
    assert all(len(ids) == 1 for ids in got.values()), got
    assert all(ids[0].endswith("<us.news.example.com>") for e, ids in got.items() if e in new_york), got
    assert all("<us.news.example.com>" not in ids[0] for e, ids in got.items() if e in london), got
    assert desk.edition(regional) == (None, 0)
    assert alerts(mail) == []


def test_a_newsletter_added_or_resumed_while_the_scheduler_runs_is_sent_by_the_next_watch(desk: Desk) -> None:
    desk.pause(desk.first)
    evening = desk.newsletter("evening", "The Evening", "Europe/London", paused=True)
    desk.readers(evening, "eve@example.com")
    desk.story(evening, "The evening story")
    mail = MemoryTransport()
    clock = ManualClock(LONDON_SIX + timedelta(minutes=1))
    jobs = desk.every_newsletter(mail, clock)
    assert jobs.watch_job() == "briefing: paused; evening: paused"
    assert "eve@example.com" not in readers_got(mail)

    late = desk.newsletter("late", "The Late Edition", "Europe/London")  # added while it runs
    desk.readers(late, "lou@example.com")
    desk.story(late, "The late story")
    with session_scope(desk.engine) as s:
        newsletter_store.update_newsletter(s, evening.id, {"paused": False}, now=clock.now())
    clock.advance(timedelta(minutes=1))
    result = jobs.watch_job()

    assert "late: sent" in result and "evening: sent" in result, result
    got = readers_got(mail)
    assert got["lou@example.com"] == ["The Late Edition <late.news.example.com>"]
    assert got["eve@example.com"] == ["The Evening <evening.news.example.com>"]
    assert alerts(mail) == []


def test_a_paused_newsletter_s_send_trigger_sends_nothing(desk: Desk) -> None:
    us = desk.newsletter("us", "The US Morning", "America/New_York")
    desk.readers(us, "cy@example.net")
    desk.story(us, "us: the budget passes")
    desk.pause(us)
    mail = MemoryTransport()
    jobs = desk.every_newsletter(mail, ManualClock(NEW_YORK_SIX))

    assert jobs.send_job(us)(DAY, NEW_YORK_SIX) == "paused"
    assert jobs.preflight_job(us)(DAY) == "paused"
    assert mail.messages == [] and desk.edition(us) == (None, 0)


def test_a_special_goes_out_with_the_watch_and_leaves_the_regular_edition_alone(desk: Desk) -> None:
    desk.pause(desk.first)  # only the US newsletter here
    us = desk.newsletter("us", "The US Morning", "America/New_York")
    readers = desk.readers(us, "cy@example.net", "dee@example.net")
    regular_story = desk.story(us, "us: the budget passes")
    breaking = desk.story(us, "us: the port reopens")
    with session_scope(desk.engine) as s:  # one reader takes no specials
        sub = subscriber_store.get_by_email(s, "dee@example.net")
        subscription_store.set_choices(
            s, sub.id, us.id, excluded_sections=(), variant="", specials=False, now=LONDON_SIX
        )
    at = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)  # 03:00 in New York
    kind = desk.special(us, breaking, at, now=at - timedelta(hours=1))
    mail = MemoryTransport()
    clock = ManualClock(at - timedelta(minutes=1))
    jobs = desk.every_newsletter(mail, clock)

    assert kind not in jobs.watch_job() and mail.messages == []
    clock.set(at + timedelta(seconds=20))
    assert f"{kind}: sent" in jobs.watch_job()

    assert desk.edition(us, kind) == ("sent", 1)
    assert [m.rcpt for m in mail.messages] == ["cy@example.net"]
    assert _header(mail.messages[0].data, "Subject") == "Breaking: the port reopens"
    assert desk.edition(us) == (None, 0), "the regular edition of that date is untouched"
    with Session(desk.engine) as s:
        assert story_store.get_story(s, regular_story).status == "ready"

    clock.set(NEW_YORK_SIX + timedelta(minutes=1))  # the regular edition at its own time, to all
    assert "us: sent" in jobs.watch_job()
    assert desk.edition(us) == ("sent", 2)
    assert Counter(m.rcpt for m in mail.messages) == Counter({readers[0]: 2, readers[1]: 1})


def test_a_special_past_its_window_expires_with_one_alert_naming_the_newsletter(desk: Desk) -> None:
    desk.pause(desk.first)  # only the US newsletter here
    us = desk.newsletter("us", "The US Morning", "America/New_York")
    desk.readers(us, "cy@example.net")
    at = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
    kind = desk.special(us, desk.story(us, "us: the port reopens"), at, now=at - timedelta(hours=1))
    mail = MemoryTransport()
    clock = ManualClock(at + timedelta(hours=3, minutes=1))  # the scheduler was down all that time
    jobs = desk.every_newsletter(mail, clock)

    assert f"{kind}: expired" in jobs.watch_job()
    clock.advance(timedelta(minutes=1))
    assert f"{kind}:" not in jobs.watch_job().split("us: ")[1]  # no longer watched once expired

    assert desk.edition(us, kind) == ("expired", 0)
    assert alerts(mail) == [f"[briefing] [The US Morning] The edition of {DAY} ({kind}) expired"]
    with Session(desk.engine) as s:
        [alert] = alert_store.open_alerts(s, [DAY], newsletter_id=us.id)
        assert alert.problem == f"expired:{kind}" and alert_store.open_alerts(s, newsletter_id=1) == []
    breaking = [m for m in mail.messages if _header(m.data, "Subject") == "Breaking: the port reopens"]
    assert breaking == []  # (the regular edition of 06:00 New York went out as usual at 11:01 UTC)


def test_alerts_are_kept_per_newsletter_and_name_any_but_the_first(desk: Desk) -> None:
    first = desk.first
    weekend = desk.newsletter("weekend", "The Weekend Edition", "Europe/London")
    for n in (first, weekend):
        desk.readers(n, f"{n.slug}@example.com")
        desk.story(n, f"{n.slug}: council leader quits over TK")  # a preflight error in both
    mail = MemoryTransport()
    jobs = desk.every_newsletter(mail, ManualClock(LONDON_SIX - timedelta(minutes=30)))

    assert jobs.preflight_job(first)(DAY) == "errors"
    assert jobs.preflight_job(weekend)(DAY) == "errors"
    assert jobs.preflight_job(weekend)(DAY) == "errors"  # told once

    assert alerts(mail) == [
        f"[briefing] Preflight errors in the edition of {DAY}",
        f"[briefing] [The Weekend Edition] Preflight errors in the edition of {DAY}",
    ]
    with Session(desk.engine) as s:
        assert [a.newsletter_id for a in alert_store.open_alerts(s, [DAY])] == [first.id, weekend.id]


# --------------------------------------------------------------------------- the real process


LIBFAKETIME = next(
    (
        p
        for p in (
            "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
            "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
            "/usr/lib/faketime/libfaketime.so.1",
            "/usr/local/lib/faketime/libfaketime.so.1",
        )
        if Path(p).exists()
    ),
    "",
)


class PinnedClock:
    """The scheduler process's clock: libfaketime reads the moment from this file, and runs on from it."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def set(self, moment: datetime) -> None:
        self.path.write_text(f"@{moment.astimezone(UTC):%Y-%m-%d %H:%M:%S}\n", encoding="ascii")

    def env(self) -> dict[str, str]:
        return {
            "LD_PRELOAD": LIBFAKETIME,
            "FAKETIME_TIMESTAMP_FILE": str(self.path),
            "FAKETIME_NO_CACHE": "1",
            "FAKETIME_DONT_FAKE_MONOTONIC": "1",  # waits stay real; only the calendar moves
        }


@pytest.fixture
def pinned(tmp_path: Path) -> PinnedClock:
    if not LIBFAKETIME or not shutil.which("faketime"):
        if os.environ.get("CI"):
            pytest.fail("libfaketime is needed for the scheduler process tests (apt-get install faketime)")
        pytest.skip("libfaketime is not installed (apt-get install faketime)")
    return PinnedClock(tmp_path / "faketime.rc")


@pytest.fixture
def scheduler(sqlite_url: str, tmp_path: Path, pinned: PinnedClock) -> Iterator[Callable[..., object]]:
    from tests.test_schedule_process import Scheduler

    started: list[Scheduler] = []

    def start(smtp_url: str, at: datetime) -> Scheduler:
        pinned.set(at)
        inherited = {
            k: v for k, v in os.environ.items() if k != "LD_PRELOAD" and not k.startswith("FAKETIME")
        }
        env = {
            **inherited,
            **{f"BRIEFING_{k.upper()}": v for k, v in SETTINGS.items()},
            "BRIEFING_DATABASE_URL": sqlite_url,
            "BRIEFING_SMTP_URL": smtp_url,
            **pinned.env(),
        }
        running = Scheduler(env, tmp_path / f"scheduler-{len(started)}.log")
        started.append(running)
        return running

    yield start
    for s in started:
        s.kill()


def _copies(server: SmtpTestServer) -> dict[str, list[str]]:
    got: dict[str, list[str]] = {}
    for m in server.messages:
        for rcpt in m.rcpt_tos:
            got.setdefault(rcpt, []).append(_header(m.data, "List-Id"))
    return got


@pytest.mark.slow
def test_one_scheduler_process_sends_london_and_new_york_each_at_its_own_six_o_clock(
    sqlite_engine: sa.Engine,
    smtp_server: SmtpTestServer,
    scheduler: Callable[..., object],
    pinned: PinnedClock,
    tmp_path: Path,
) -> None:
    from tests.test_schedule_process import Scheduler

    desk = Desk(sqlite_engine)
    first = desk.first
    us = desk.newsletter("us", "The US Morning", "America/New_York")
    paused = desk.newsletter("regional", "The Regional", "Europe/London", paused=True)
    london = desk.readers(first, "ada@example.com", "bo@example.com")
    new_york = desk.readers(us, "cy@example.net", "dee@example.net")
    desk.readers(paused, "di@example.org")
    for n in (first, us, paused):
        desk.story(n, f"{n.slug}: the budget passes")
    breaking = desk.story(first, "The port reopens")
    # An editor makes a special at 05:00 to go at 05:59, London time, with the command.
    env = {f"BRIEFING_{k.upper()}": v for k, v in SETTINGS.items()}
    env |= {"BRIEFING_DATABASE_URL": str(sqlite_engine.url), "BRIEFING_NOW": "2026-11-30T05:00:00+00:00"}
    made = ok(env, "special", "--newsletter", first.slug, "--subject", "The port reopens",
              "--stories", str(breaking), "--at", "05:59", "--date", DAY.isoformat())  # fmt: skip
    assert "special-1" in made, made

    process = scheduler(smtp_server.url(), datetime(2026, 11, 30, 5, 58, 57, tzinfo=UTC))
    assert isinstance(process, Scheduler)
    assert process.wait_for(lambda: desk.edition(first, "special-1")[0] == "sent"), process.output()
    assert desk.edition(first) == (None, 0), "the special left the regular edition of its date alone"
    assert sorted(_copies(smtp_server)) == london

    pinned.set(datetime(2026, 11, 30, 5, 59, 57, tzinfo=UTC))  # three seconds before 06:00 in London
    assert process.wait_for(lambda: desk.edition(first)[0] == "sent"), process.output()
    assert desk.edition(us)[0] is None, "New York's edition waits for 06:00 in New York"

    pinned.set(datetime(2026, 11, 30, 10, 59, 57, tzinfo=UTC))  # three seconds before 06:00 in New York
    assert process.wait_for(lambda: desk.edition(us)[0] == "sent"), process.output()
    assert process.terminate() == 0

    got = _copies(smtp_server)
    assert sorted(got) == sorted([*london, *new_york]), "the paused newsletter's reader got nothing"
    for email in london:  # the special and the regular edition, both of the first newsletter
        assert got[email] == ["The Morning Briefing <briefing.news.example.com>"] * 2, got[email]
    for email in new_york:
        assert got[email] == ["The US Morning <us.news.example.com>"], got[email]
    assert desk.edition(paused) == (None, 0)
    out = process.output()
    assert "[us] sending the edition of 2026-11-30" in out and "[regional]" not in out, out


# --------------------------------------------------------------------------- the worker


def test_a_worker_finishes_every_newsletter_s_sending_edition_and_names_each(
    desk: Desk, smtp_server: SmtpTestServer
) -> None:
    from briefing.service.send import start_sending

    first = desk.first
    us = desk.newsletter("us", "The US Morning", "America/New_York")
    london = desk.readers(first, "ada@example.com")
    new_york = desk.readers(us, "cy@example.net", "dee@example.net")
    desk.story(first, "The budget passes")
    breaking = desk.story(us, "us: the port reopens")
    desk.story(us, "us: the budget passes")
    now = NEW_YORK_SIX + timedelta(seconds=30)
    kind = desk.special(us, breaking, NEW_YORK_SIX, now=NEW_YORK_SIX - timedelta(hours=1))
    for newsletter, which in ((first, "regular"), (us, "regular"), (us, kind)):
        start_sending(desk.engine, desk.setup_of(newsletter.id), DAY, now=now, force=True, kind=which)

    env = {f"BRIEFING_{k.upper()}": v for k, v in SETTINGS.items()}
    env |= {
        "BRIEFING_DATABASE_URL": str(desk.engine.url),
        "BRIEFING_NOW": now.isoformat(),
        "BRIEFING_SMTP_URL": smtp_server.url(),
    }
    out = " ".join(ok(env, "worker", "--once").split())

    assert f"{first.slug} regular edition {DAY}: 1 sent by this worker" in out, out
    assert f"us regular edition {DAY}: 2 sent by this worker" in out, out
    assert f"us {kind} edition {DAY}: 2 sent by this worker" in out, out
    got = _copies(smtp_server)
    assert got == {
        **{e: ["The Morning Briefing <briefing.news.example.com>"] for e in london},
        **{e: ["The US Morning <us.news.example.com>"] * 2 for e in new_york},
    }
