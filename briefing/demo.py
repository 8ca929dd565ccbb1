"""`make demo`: the main job end to end on embedded defaults, in a throwaway folder `demo/`.

It builds a fresh demo database from the sample data shipped with the package, starts the local
SMTP server on a free loopback port, previews the next edition and sends it to the sample
subscribers over real SMTP, through the same functions the CLI and the scheduler use.
"""

from __future__ import annotations

import json
import mailbox
import shutil
import sys
from pathlib import Path

import sqlalchemy as sa

from briefing import wiring
from briefing.cli.common import console, show, styled
from briefing.cli.editions import print_preflight
from briefing.cli.send import print_report
from briefing.cli.stories import print_queue
from briefing.config import load_settings
from briefing.db import make_engine, session_scope, upgrade
from briefing.domain import Clock
from briefing.mail.devsmtp import DevSmtpServer
from briefing.service import editions as edition_service
from briefing.service import feeds as feed_service
from briefing.service import queue as queue_service
from briefing.service import stories as story_service
from briefing.service import subscribers as subscriber_service
from briefing.wiring import edition_setup, transport

SAMPLE_DIR = Path(__file__).parent / "sample_data"
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


def main(folder: Path = ROOT / "demo") -> int:
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    db_path = folder / "briefing.db"
    maildir = folder / "maildir"
    database_url = f"sqlite:///{db_path}"
    engine = make_engine(database_url)
    upgrade(engine)
    clock = wiring.clock(load_settings(_env_file=None))
    load_sample_data(engine, ROOT, clock)

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
        setup = edition_setup(settings)
        day = edition_service.default_edition_date(setup.plan, clock.now())

        with session_scope(engine) as session:
            queue = queue_service.queue_view(
                session, setup.plan, setup.compose, now=clock.now(), edition_date=day, newsletter_id=1
            )
        print_queue(queue)

        result = edition_service.preview(engine, setup, day, clock=clock)
        paths = edition_service.write_preview(result, folder / "preview")
        console.print()
        show(styled(f"Edition of {day}", "bold"), ": ", result.prepared.rendered.subject)
        print_preflight(result.prepared.report)

        console.print(
            f"\nSending over SMTP to the local server at {server.url} "
            "(with --force, because the demo runs outside the 06:00 send window)."
        )
        mail = transport(settings, clock)
        try:
            outcome = edition_service.send_edition(engine, setup, day, mail, force=True, clock=clock)
        finally:
            mail.close()
        if outcome.report is not None:
            print_report(outcome.report)
        console.print(outcome.message)
        received = len(mailbox.Maildir(str(maildir), create=False))

    console.print(f"\nThe SMTP server received {received} messages; they are in {maildir}/new")
    console.print(f"Preview: {paths['html']}  (text: {paths['text']}, message: {paths['eml']})")
    console.print(f"Demo database: {db_path}")
    console.print(
        f"Try: BRIEFING_DATABASE_URL={database_url} BRIEFING_SECRET_KEY={DEMO_SECRET} "
        ".venv/bin/briefing editions show " + day.isoformat()
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
