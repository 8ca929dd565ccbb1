"""`make demo`: the main job end to end on embedded defaults, in a throwaway folder `demo/`.

It builds a fresh demo database from the sample data shipped with the package, starts the local
SMTP server on a free loopback port, previews the next edition and sends it to the sample
subscribers over real SMTP, through the same functions the CLI and the scheduler use. A second
newsletter (the Americas edition, 06:00 in New York) goes to the readers who chose it, one reader
gets the briefing without a section they left out, and a breaking-news special edition follows the
morning's regular one on the same day, to the readers who take specials.
"""

from __future__ import annotations

import json
import mailbox
import shutil
import sys
from datetime import UTC, date, datetime, time
from pathlib import Path

import sqlalchemy as sa

from briefing import calendar as cal
from briefing import wiring
from briefing.cli.common import console, show, styled
from briefing.cli.editions import print_preflight
from briefing.cli.send import print_report
from briefing.cli.stories import print_queue
from briefing.config import Settings, load_settings, parse_send_days
from briefing.db import make_engine, session_scope, upgrade
from briefing.domain import Clock
from briefing.mail.devsmtp import DevSmtpServer
from briefing.newsletter import PRIMARY_ID, NewsletterData
from briefing.service import editions as edition_service
from briefing.service import feeds as feed_service
from briefing.service import newsletters as newsletter_service
from briefing.service import preferences as preference_service
from briefing.service import queue as queue_service
from briefing.service import specials as special_service
from briefing.service import stories as story_service
from briefing.service import subscribers as subscriber_service
from briefing.service.setup import EditionSetup
from briefing.store import stories as story_store
from briefing.wiring import templates_dir, transport

SAMPLE_DIR = Path(__file__).parent / "sample_data"
# The second newsletter's readers (from subscribers/example.csv); the last reads only that one.
AMERICAS_READERS = ("ben.ortiz@example.com", "dev.patel@example.net", "farah.haddad@example.org")
AMERICAS_ONLY = "farah.haddad@example.org"
LEAVES_OUT_ECONOMY = "chloe.martin@example.org"  # takes the briefing without its Economy section
NO_SPECIALS = "ada.reader@example.com"  # said no to special editions
AMERICAS_STORIES = (
    "https://news.example.com/2026/11/27/summit-trade-deal",
    "https://news.example.com/2026/11/27/inflation-eases",
    "https://news.example.com/2026/11/26/port-strike-talks",
)
ROOT = Path.cwd()
DEMO_SECRET = "demo-only-secret-not-for-production"


def load_sample_data(engine: sa.Engine, root: Path, clock: Clock) -> None:
    now = clock.now()
    result = feed_service.load_feed_file(engine, SAMPLE_DIR / "feed.xml", name="Example News", clock=clock)
    console.print(f"Loaded {result.added} sample articles through the site's feed (sample_data/feed.xml).")
    with session_scope(engine) as session:
        for raw in json.loads((SAMPLE_DIR / "stories.json").read_text(encoding="utf-8")):
            story_service.add_story(session, story_service.StoryRequest(**raw), now=now)
    subscribers = subscriber_service.import_subscribers(engine, root / "subscribers" / "example.csv", now=now)
    console.print(f"Loaded {subscribers.counts.added} sample subscribers from subscribers/example.csv.")


def set_up_newsletters(engine: sa.Engine, clock: Clock) -> NewsletterData:
    """The morning briefing lets readers choose sections; the Americas edition goes at 06:00 New York."""
    now = clock.now()
    checks = newsletter_service.Checks(
        templates_dir(load_settings(_env_file=None)) / "email", parse_send_days
    )
    with session_scope(engine) as session:
        newsletter_service.edit(
            session, "the-morning-briefing", {"sections_optional": True}, now=now, checks=checks
        )
        americas = newsletter_service.add(
            session,
            "americas",
            {
                "name": "The Morning Briefing: Americas",
                "timezone": "America/New_York",
                "send_time": "06:00",
                "send_days": "mon-fri",
                "section_order": "World,Economy",
            },
            now=now,
            checks=checks,
        )
        for url in AMERICAS_STORIES:
            story_service.add_story(
                session,
                story_service.StoryRequest(article_url=url, status="ready", newsletter_id=americas.id),
                now=now,
            )
        readers = {
            email: subscriber_service.subscriber_by_email(session, email).id
            for email in {*AMERICAS_READERS, LEAVES_OUT_ECONOMY, NO_SPECIALS}
        }
        for email in AMERICAS_READERS:
            preference_service.set_subscription(session, readers[email], americas.id, on=True, now=now)
        preference_service.set_subscription(session, readers[AMERICAS_ONLY], PRIMARY_ID, on=False, now=now)
        preference_service.set_subscription(
            session, readers[LEAVES_OUT_ECONOMY], PRIMARY_ID, on=True, excluded=["Economy"], now=now
        )
        preference_service.set_subscription(
            session, readers[NO_SPECIALS], PRIMARY_ID, on=True, specials=False, now=now
        )
    console.print(
        "Two newsletters: The Morning Briefing (06:00 Europe/London; readers may leave sections out) and "
        "The Morning Briefing: Americas (06:00 America/New_York), each with its own queue and readers."
    )
    return americas


def send_regular(engine: sa.Engine, setup: EditionSetup, settings: Settings, clock: Clock) -> tuple[int, str]:
    """Preview and send one newsletter's next regular edition; returns the ledger size and its date."""
    day = edition_service.default_edition_date(setup.plan, clock.now())
    with session_scope(engine) as session:
        queue = queue_service.queue_view(
            session,
            setup.plan,
            setup.compose,
            now=clock.now(),
            edition_date=day,
            newsletter_id=setup.newsletter.id,
        )
    console.print()
    show(styled(setup.compose.newsletter_name, "bold"))
    print_queue(queue)
    result = edition_service.preview(engine, setup, day, clock=clock)
    show(styled(f"Edition of {day}", "bold"), ": ", result.prepared.rendered.subject)
    print_preflight(result.prepared.report)
    mail = transport(settings, clock)
    try:
        outcome = edition_service.send_edition(engine, setup, day, mail, force=True, clock=clock)
    finally:
        mail.close()
    if outcome.report is not None:
        print_report(outcome.report)
    console.print(outcome.message)
    return outcome.edition.snapshot_size, day.isoformat()


def send_special(engine: sa.Engine, setup: EditionSetup, settings: Settings, clock: Clock, day: str) -> str:
    """A breaking-news special on the day the morning edition went: its own ledger, never the regular's."""
    with session_scope(engine) as session:
        lead = next(
            s for s in story_store.list_stories(session, newsletter_id=PRIMARY_ID, statuses=()) if s.lead
        )
        special = special_service.create_special(
            session,
            setup,
            edition_date=date.fromisoformat(day),
            subject="Breaking: the budget vote is to be held again",
            note="The speaker has ruled the late-night count invalid. **A second vote is set for 14:00.**",
            story_ids=[lead.id],
            send_at=clock.now(),
            now=clock.now(),
        )
    console.print()
    show(styled(f"Special edition {special.kind} of {day}", "bold"), ": ", special.subject)
    mail = transport(settings, clock)
    try:
        outcome = edition_service.send_edition(
            engine, setup, special.edition_date, mail, clock=clock, kind=special.kind
        )
    finally:
        mail.close()
    if outcome.report is not None:
        print_report(outcome.report)
    console.print(outcome.message)
    return special.kind


def left_out_line(copies: list[mailbox.MaildirMessage], kind: str) -> str:
    """Whether the reader who left Economy out got the morning edition without it, and the others with it."""
    economy = "Inflation eases"
    regular = [m for m in copies if "briefing." in str(m["List-Id"]) and kind not in str(m["Message-ID"])]
    theirs = [m for m in regular if LEAVES_OUT_ECONOMY in str(m["To"])]
    others = [m for m in regular if LEAVES_OUT_ECONOMY not in str(m["To"])]
    if theirs and all(economy not in _text(m) for m in theirs) and all(economy in _text(m) for m in others):
        return (
            f"{LEAVES_OUT_ECONOMY} left out Economy: their copy has none of its stories; "
            "the others have them."
        )
    return f"{LEAVES_OUT_ECONOMY}'s copy does not match the sections they chose."


def _text(message: mailbox.MaildirMessage) -> str:
    for part in message.walk():
        if part.get_content_type() == "text/plain":
            payload = part.get_payload(decode=True)
            return payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""
    return ""


def demo_clock(settings: Settings) -> Clock:
    """The next edition's day at 07:30 UTC, running on from there (the clock is an input everywhere)."""
    real = wiring.clock(settings)
    day = cal.next_send_times(real.now(), wiring.send_plan(settings), 1)[0].edition_date
    return wiring.PinnedClock(datetime.combine(day, time(7, 30), tzinfo=UTC))


def main(folder: Path = ROOT / "demo") -> int:
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    db_path = folder / "briefing.db"
    maildir = folder / "maildir"
    database_url = f"sqlite:///{db_path}"
    engine = make_engine(database_url)
    clock = demo_clock(load_settings(_env_file=None))
    upgrade(engine, newsletter_name="The Morning Briefing", now=clock.now())
    console.print(
        f"The demo runs as of {clock.now():%A %d %B %Y, %H:%M} UTC: within the London edition's send window, "
        "so a special can follow the morning edition that same day."
    )
    load_sample_data(engine, ROOT, clock)
    americas = set_up_newsletters(engine, clock)

    with DevSmtpServer(maildir, 0, clock=clock) as server:
        settings = load_settings(
            _env_file=None,
            database_url=database_url,
            smtp_url=server.url,
            secret_key=DEMO_SECRET,
            section_order="Politics,Economy,World,Climate",
            tip_contact="tips@news.example.com",
            support_url="https://news.example.com/support",
            postal_address="Example News, 1 Market Street, Exampletown EX1 2AB",
        )
        morning = wiring.edition_setup_now(settings, engine)
        result = edition_service.preview(
            engine, morning, edition_service.default_edition_date(morning.plan, clock.now()), clock=clock
        )
        paths = edition_service.write_preview(result, folder / "preview")
        console.print(
            f"\nSending over SMTP to the local server at {server.url} "
            "(with --force, because the New York edition is not due until 06:00 there)."
        )
        _, day = send_regular(engine, morning, settings, clock)
        send_regular(
            engine, wiring.edition_setup_now(settings, engine, newsletter=americas.id), settings, clock
        )
        kind = send_special(engine, morning, settings, clock, day)
        copies = list(mailbox.Maildir(str(maildir), create=False))

    by_list: dict[str, int] = {}
    for message in copies:
        key = f"{message['List-Id']}{' (special)' if kind in str(message['Message-ID']) else ''}"
        by_list[key] = by_list.get(key, 0) + 1
    console.print(f"\nThe SMTP server received {len(copies)} messages; they are in {maildir}/new")
    for list_id, count in sorted(by_list.items()):
        console.print(f"  {count} x {list_id}")
    console.print(left_out_line(copies, kind))
    console.print(f"Preview: {paths['html']}  (text: {paths['text']}, message: {paths['eml']})")
    console.print(f"Demo database: {db_path}")
    console.print(
        f"Try: BRIEFING_DATABASE_URL={database_url} BRIEFING_SECRET_KEY={DEMO_SECRET} "
        ".venv/bin/briefing editions list"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
