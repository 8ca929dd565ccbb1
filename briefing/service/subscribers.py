"""Use cases for the list: sign-up and confirm, unsubscribe and resubscribe, add, import, export, erase.

Every door (the readers' pages, the admin page, the CLI) calls these, so a rule such as "an
unsubscribe keeps its first timestamp" or "a bounced address stays bounced" holds whichever door
was used. An import streams in batches and never re-activates an address that left; an export
neutralises spreadsheet formulas. Functions that take a session or connection leave the commit
to the caller's unit of work, so a web page can answer 2xx only once the change is durable;
an import commits per batch itself, so a crash keeps whole batches.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import IO

import sqlalchemy as sa
from sqlmodel import Session

from briefing import files, inputs
from briefing.db import session_scope
from briefing.domain import (
    SubscriberData,
    SubscriberInput,
    SubscriberStatus,
)
from briefing.errors import InvalidInput, TokenInvalid
from briefing.links import LinkSigner
from briefing.service import confirmations
from briefing.service.confirmations import ConfirmationMail, ConfirmClaim
from briefing.store import subscribers as subscriber_store
from briefing.store.subscribers import LinkState

IMPORT_BATCH = 1000


@dataclass(slots=True)
class SubscriberImportReport:
    counts: subscriber_store.ImportCounts = field(default_factory=subscriber_store.ImportCounts)
    rejected_sample: list[files.Rejected] = field(default_factory=list)
    rejected_file: Path | None = None

    SAMPLE = 20


def import_subscribers(
    engine: sa.Engine,
    path: Path,
    *,
    status: SubscriberStatus = SubscriberStatus.ACTIVE,
    source: str = "import",
    rejects_to: Path | None = None,
    progress: Callable[[int], None] | None = None,
    now: datetime,
) -> SubscriberImportReport:
    """Stream a CSV into the list in batches, one transaction per batch.

    The whole file's encoding and header are checked before the first row is written, and each
    batch is all-or-nothing, so a crash leaves whole batches, never a half-written row.
    Suppressed addresses (unsubscribed, bounced, complained) are never re-activated.
    """
    if status not in (SubscriberStatus.ACTIVE, SubscriberStatus.PENDING):
        raise InvalidInput("must be active or pending", field="status")
    report = SubscriberImportReport()
    rows = files.read_subscriber_csv(path, progress=progress)
    reject_handle: IO[str] | None = None
    reject_writer = None
    try:
        with Session(engine) as probe:
            first_new_id = subscriber_store.next_id(probe)
        batch: list[SubscriberInput] = []
        for row in rows:
            if row.rejected is not None:
                report.counts.rejected += 1
                if len(report.rejected_sample) < report.SAMPLE:
                    report.rejected_sample.append(row.rejected)
                if rejects_to is not None:
                    if reject_handle is None:
                        reject_handle = rejects_to.open("w", encoding="utf-8", newline="")
                        reject_writer = files.csv.writer(reject_handle, lineterminator="\r\n")
                        reject_writer.writerow(["line", "reason", "row"])
                    assert reject_writer is not None
                    reject_writer.writerow(
                        [files.safe_cell(v) for v in (row.line, row.rejected.reason, row.rejected.raw)]
                    )
                continue
            assert row.value is not None
            batch.append(row.value)
            if len(batch) >= IMPORT_BATCH:
                _import_batch(engine, batch, status, source, first_new_id, report.counts, now)
                batch = []
        _import_batch(engine, batch, status, source, first_new_id, report.counts, now)
    finally:
        if reject_handle is not None:
            reject_handle.close()
            report.rejected_file = rejects_to
    return report


def _import_batch(
    engine: sa.Engine,
    batch: list[SubscriberInput],
    status: SubscriberStatus,
    source: str,
    first_new_id: int,
    counts: subscriber_store.ImportCounts,
    now: datetime,
) -> None:
    if not batch:
        return
    with session_scope(engine) as session:
        subscriber_store.import_batch(
            session, batch, status=status, source=source, first_new_id=first_new_id, counts=counts, now=now
        )


def subscriber_input(email: str, name: str = "") -> SubscriberInput:
    """Check what a person typed before anything is stored: one address, a one-line name."""
    return SubscriberInput(
        email=inputs.email_address(email), name=inputs.one_line(name, field="name", max_len=inputs.MAX_NAME)
    )


def add_subscriber(
    session: Session,
    email: str,
    name: str = "",
    *,
    status: SubscriberStatus = SubscriberStatus.ACTIVE,
    now: datetime,
) -> SubscriberData:
    return subscriber_store.add_subscriber(session, subscriber_input(email, name), status=status, now=now)


def subscriber_by_email(session: Session, email: str) -> SubscriberData:
    return subscriber_store.get_by_email(session, inputs.email_address(email))


def unsubscribe(session: Session, subscriber_id: int, *, now: datetime) -> tuple[SubscriberData, bool]:
    """The unsubscribe every door but the one-click link uses; returns (subscriber, changed).

    Idempotent, so a second request keeps the first timestamp; a bounced or complained address
    keeps its status, because that status says more than "unsubscribed" does.
    """
    return subscriber_store.unsubscribe(session, subscriber_id, now=now)


def unsubscribe_email(session: Session, email: str, *, now: datetime) -> tuple[SubscriberData, bool]:
    found = subscriber_by_email(session, email)
    return unsubscribe(session, found.id, now=now)


def delete_subscriber_email(session: Session, email: str) -> SubscriberData:
    found = subscriber_by_email(session, email)
    subscriber_store.delete_subscriber(session, found.id)
    return found


EXPORT_HEADER = ("email", "name", "status", "source", "created_at", "confirmed_at", "unsubscribed_at")


def export_subscribers(engine: sa.Engine, handle: IO[str], *, status: str | None = None) -> int:
    """Write CSV that is safe to open in a spreadsheet; streams in batches."""
    with Session(engine) as session:
        return files.write_csv(handle, EXPORT_HEADER, _export_rows(session, status))


def _export_rows(session: Session, status: str | None) -> Iterator[Iterable[object]]:
    for s in subscriber_store.iter_subscribers(session, status=status):
        yield (
            s.email,
            s.name,
            s.status,
            s.source,
            _iso(s.created_at),
            _iso(s.confirmed_at),
            _iso(s.unsubscribed_at),
        )


def _iso(value: datetime | None) -> str:
    return value.isoformat() if value else ""


# --------------------------------------------------------------------------- double opt-in


class Confirmation(StrEnum):
    """What a confirm link does for the reader it names; the values name the page to show."""

    ASK = "ask"  # the link is good: the page asks for the POST that confirms
    DONE = "done"  # that POST has just activated the address
    ALREADY = "already"  # active already: nothing to confirm
    STALE = "stale"  # the state the link was bound to has passed (for example, unsubscribed again)


def register(
    session: Session, signer: LinkSigner, item: SubscriberInput, *, source: str = "web", now: datetime
) -> ConfirmationMail | None:
    """Sign-up: a new address becomes pending; returns the confirmation that is due, if any.

    An address already on the list keeps its state (asking is not confirming), and the caller
    answers the same way whatever comes back, so the form cannot tell who is on the list.
    """
    found = subscriber_store.find_by_email(session, item.email)
    greet = confirmations.greeting(found)
    if found is None:
        try:
            with session.begin_nested():
                found = subscriber_store.add_subscriber(
                    session, item, status=SubscriberStatus.PENDING, source=source, now=now
                )
        except sa.exc.IntegrityError:  # the same address, submitted twice at once
            found = subscriber_store.find_by_email(session, item.email)
    state = subscriber_store.link_state(session, found.id) if found is not None else None
    if state is None:
        return None
    token = confirmations.make_token(signer, state, now=now)
    return None if token is None else ConfirmationMail(item.email, token, greet)


def _confirm_link_state(session: Session, claim: ConfirmClaim) -> LinkState:
    state = subscriber_store.link_state(session, claim.subscriber_id)
    if state is None:
        raise TokenInvalid("this confirmation link is not valid")
    return state


def _judge(claim: ConfirmClaim, state: LinkState) -> Confirmation:
    if state.subscriber.status == SubscriberStatus.ACTIVE:
        return Confirmation.ALREADY
    return Confirmation.ASK if confirmations.still_valid(claim, state) else Confirmation.STALE


def confirmation_state(session: Session, claim: ConfirmClaim) -> Confirmation:
    """What confirming would do, without doing it: mail scanners open every link they see."""
    return _judge(claim, _confirm_link_state(session, claim))


def confirm(session: Session, claim: ConfirmClaim, *, now: datetime) -> Confirmation:
    """Activate the address if the link still stands for what the reader asked for.

    A pending address becomes active; one that had unsubscribed or bounced and asked again comes
    back only with the link made for that request, so replaying an older link changes nothing.
    """
    state = _confirm_link_state(session, claim)
    verdict = _judge(claim, state)
    if verdict is not Confirmation.ASK:
        return verdict
    if state.subscriber.status == SubscriberStatus.PENDING:
        subscriber_store.confirm(session, claim.subscriber_id, now=now)
    else:
        subscriber_store.set_status(session, claim.subscriber_id, SubscriberStatus.ACTIVE, now=now)
    return Confirmation.DONE


def renew_confirmation(
    session: Session, signer: LinkSigner, claim: ConfirmClaim, *, now: datetime
) -> ConfirmationMail | None:
    """A fresh link for an expired one, only while the old one would still have been honoured."""
    state = subscriber_store.link_state(session, claim.subscriber_id)
    if state is None or not confirmations.still_valid(claim, state):
        return None
    token = confirmations.make_token(signer, state, now=now)
    if token is None:
        return None
    return ConfirmationMail(state.subscriber.email, token, confirmations.greeting(state.subscriber))


# --------------------------------------------------------------------------- readers' links


def unsubscribe_link_state(session: Session, subscriber_id: int, version: int) -> LinkState:
    """Any token version up to the current one may unsubscribe: an opt-out link must keep working."""
    state = subscriber_store.link_state(session, subscriber_id)
    if state is None or version > state.token_version:
        raise TokenInvalid("this link is not valid")
    return state


def current_link_state(session: Session, subscriber_id: int, version: int) -> LinkState:
    """The reader a link names, if the link is of the current version.

    Anything but opting out (preferences, undoing an unsubscribe) needs the current version, so
    a revoked link cannot resubscribe anyone.
    """
    state = subscriber_store.link_state(session, subscriber_id)
    if state is None or version != state.token_version:
        raise TokenInvalid("this link is not valid")
    return state


def unsubscribe_by_link(conn: sa.Connection, subscriber_id: int, version: int, *, now: datetime) -> LinkState:
    """The RFC 8058 one-click unsubscribe, on a plain connection because providers POST it in bulk.

    The store's Core statements keep the rule of `unsubscribe`: idempotent, first timestamp kept,
    bounced and complained left as they are.
    """
    state = subscriber_store.unsubscribe_by_link(conn, subscriber_id, version, now=now)
    if state is None:
        raise TokenInvalid("this link is not valid")
    return state


def unsubscribe_from_preferences(
    session: Session, subscriber_id: int, version: int, *, now: datetime
) -> LinkState:
    """The preferences page's opt-out: the same `unsubscribe` as the admin page and the CLI."""
    state = current_link_state(session, subscriber_id, version)
    data, _ = unsubscribe(session, state.subscriber.id, now=now)
    return replace(state, subscriber=data)


def resubscribe(session: Session, subscriber_id: int, version: int, *, now: datetime) -> LinkState:
    """Undo an unsubscribe from a reader's link (the unsubscribe page's or the preferences page's).

    Only an unsubscribed address comes back: active stays active, and bounced or complained
    addresses need the subscribe form (and its confirmation) to show the mailbox wants us again.
    """
    state = current_link_state(session, subscriber_id, version)
    if state.subscriber.status != SubscriberStatus.UNSUBSCRIBED:
        return state
    data = subscriber_store.set_status(session, state.subscriber.id, SubscriberStatus.ACTIVE, now=now)
    return replace(state, subscriber=data)
