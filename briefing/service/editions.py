"""Use cases for an edition: preview, the preview files, holds, notes, expiry and its state.

The edition's content as of its send time lives in `service.edition_content`; the test copy, the
dry run and the real send in `service.send`. Their names are re-exported here, so every door keeps
calling `editions.preview`, `editions.send_edition` and the rest. Preview, test send and the real
send all build messages through `service.setup.MailFactory`, from the same rendered (or frozen)
content, so what editors approved is what readers get.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import sqlalchemy as sa
from sqlmodel import Session

from briefing import calendar as cal
from briefing import inputs
from briefing.domain import Clock, EditionData, EditionStatus, LedgerCounts, Recipient
from briefing.edition.sections import VariantRenders, variant_key
from briefing.errors import NotFound
from briefing.newsletter import REGULAR
from briefing.reader_copy import personalise
from briefing.service.edition_content import Prepared, featured_urls, judged_at, prepare
from briefing.service.send import DRY_RUN_LISTED, DryRun, SendOutcome, dry_run, send_edition, send_test
from briefing.service.setup import EditionSetup, MailFactory, sample_recipient
from briefing.store import deliveries as ledger
from briefing.store import editions as edition_store
from briefing.store import subscribers as subscriber_store
from briefing.store import subscriptions as subscription_store

__all__ = [
    "DRY_RUN_LISTED",
    "DryRun",
    "Prepared",
    "Preview",
    "SendOutcome",
    "default_edition_date",
    "dry_run",
    "edition_counts",
    "expire_if_unsent",
    "featured_urls",
    "hold",
    "judged_at",
    "prepare",
    "preview",
    "send_edition",
    "send_test",
    "set_note",
    "write_preview",
]


# --------------------------------------------------------------------------- preview


@dataclass(frozen=True, slots=True)
class Preview:
    prepared: Prepared
    html: str
    text: str
    eml: bytes
    recipient: Recipient


def preview(
    engine: sa.Engine,
    setup: EditionSetup,
    edition_date: date,
    *,
    clock: Clock,
    as_email: str = "",
    kind: str = REGULAR,
) -> Preview:
    """The exact message one reader (or a sample reader) would get, without touching the ledger.

    Judged at the same moment as the send (`edition_content.judged_at`); a frozen edition shows
    its frozen copy. A reader who left sections out is shown the rendering of their set, as the
    send builds it.
    """
    with Session(engine) as session:
        prepared = prepare(session, setup, edition_date, now=clock.now(), kind=kind)
        rendered = prepared.rendered
        sub = subscriber_store.find_by_email(session, as_email) if as_email else None
        if as_email and sub is None:
            raise NotFound(f"{as_email} is not on the list", field="--as")
        if sub is not None:
            chosen = subscription_store.find(session, sub.id, setup.newsletter.id)
            if chosen is not None and chosen.excluded_sections:
                key = variant_key(chosen.excluded_sections)
                rendered = VariantRenders(setup.renderer, prepared.briefing, known={"": rendered}).get(key)
        factory = MailFactory(
            setup, edition_date, rendered.subject, rendered.html, rendered.text, clock, kind=kind
        )
        if sub is not None:
            recipient = factory.recipient(sub.id, sub.email, sub.name)
        else:
            recipient = sample_recipient(setup)
    html, text = personalise(rendered, recipient)
    eml, _ = factory.message(recipient)
    return Preview(prepared=prepared, html=html, text=text, eml=eml, recipient=recipient)


def write_preview(result: Preview, out_dir: Path) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "html": out_dir / "briefing.html",
        "text": out_dir / "briefing.txt",
        "eml": out_dir / "briefing.eml",
    }
    # Written under a temporary name and renamed over the old file: a symlink planted at briefing.txt
    # is replaced, never followed, and no file is left half-written.
    for kind, data in (("html", result.html.encode()), ("text", result.text.encode()), ("eml", result.eml)):
        fd, temp = tempfile.mkstemp(dir=out_dir, prefix=f".{paths[kind].name}.")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.chmod(temp, 0o644)
            os.replace(temp, paths[kind])
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise
    return paths


# --------------------------------------------------------------------------- editions' state


def edition_counts(
    session: Session, edition_date: date, *, newsletter_id: int, kind: str = REGULAR
) -> tuple[EditionData, LedgerCounts, int]:
    edition = edition_store.get_edition(session, edition_date, newsletter_id=newsletter_id, kind=kind)
    return edition, ledger.counts(session, edition.id), ledger.ambiguous_count(session, edition.id)


def set_note(
    session: Session, edition_date: date, note: str, *, newsletter_id: int, now: datetime
) -> EditionData:
    """The editor's note for one day (Markdown); empty removes it. Only before the edition is frozen."""
    edition = edition_store.ensure_edition(session, edition_date, newsletter_id=newsletter_id, now=now)
    text = inputs.multi_line(note, field="note", max_len=2000)
    return edition_store.set_note(session, edition.id, text, now=now)


def hold(
    session: Session, edition_date: date, held: bool, *, newsletter_id: int, now: datetime
) -> EditionData:
    edition = edition_store.ensure_edition(session, edition_date, newsletter_id=newsletter_id, now=now)
    return edition_store.set_hold(session, edition.id, held, now=now)


def expire_if_unsent(
    session: Session, edition_date: date, reason: str, *, newsletter_id: int, now: datetime
) -> EditionData | None:
    edition = edition_store.ensure_edition(session, edition_date, newsletter_id=newsletter_id, now=now)
    if edition.status in (EditionStatus.SCHEDULED, EditionStatus.HELD):
        return edition_store.set_status(session, edition.id, EditionStatus.EXPIRED, error=reason, now=now)
    return None


def default_edition_date(plan: cal.SendPlan, now: datetime) -> date:
    """Today's edition while its window is open, otherwise the next one."""
    previous = cal.previous_send_time(now, plan, plan.max_lateness)
    if previous is not None:
        return previous.edition_date
    return cal.next_send_times(now, plan, 1)[0].edition_date
