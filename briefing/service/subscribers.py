"""Use cases for the list: sign-up and confirm, unsubscribe and resubscribe, add, import, export, erase.

Every door (the readers' pages, the admin page, the CLI) calls these, so a rule such as "an
unsubscribe keeps its first timestamp" or "a bounced address stays bounced" holds whichever door
was used. Import, suppression lists and export live in `briefing.service.subscriber_files`
(re-exported here). Functions that take a session or connection leave the commit to the
caller's unit of work, so a web page can answer 2xx only once the change is durable.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from enum import StrEnum

import sqlalchemy as sa
from sqlmodel import Session

from briefing import inputs
from briefing.domain import SubscriberData, SubscriberInput, SubscriberStatus
from briefing.errors import InvalidInput, NotFound, TokenInvalid
from briefing.links import LinkSigner
from briefing.newsletter import PRIMARY_ID, check_slug
from briefing.service import confirmations
from briefing.service.confirmations import ConfirmationMail, ConfirmClaim

# The list's files have their own module; every door still finds them here.
from briefing.service.subscriber_files import (  # noqa: F401
    EXPORT_HEADER,
    SubscriberImportReport,
    export_subscribers,
    import_subscribers,
    suppress_addresses,
)
from briefing.store import subscribers as subscriber_store
from briefing.store import subscriptions as subscription_store
from briefing.store.subscribers import LinkState


def subscriber_input(email: str, name: str = "", *, allow_smtputf8: bool = False) -> SubscriberInput:
    """Check what a person typed before anything is stored: one address we can mail, a one-line name.

    `allow_smtputf8` says whether the relay takes addresses with non-ASCII before the @; without
    it such an address could be stored but never delivered, so it is refused here.
    """
    return SubscriberInput(
        email=inputs.email_address(email, allow_smtputf8=allow_smtputf8),
        name=inputs.one_line(name, field="name", max_len=inputs.MAX_NAME),
    )


def add_subscriber(
    session: Session,
    email: str,
    name: str = "",
    *,
    status: SubscriberStatus = SubscriberStatus.ACTIVE,
    allow_smtputf8: bool = False,
    now: datetime,
) -> SubscriberData:
    item = subscriber_input(email, name, allow_smtputf8=allow_smtputf8)
    return subscriber_store.add_subscriber(session, item, status=status, now=now)


def subscriber_by_email(session: Session, email: str) -> SubscriberData:
    """Find a row by address, whichever form it was stored in.

    Finding is not accepting: an address that needs SMTPUTF8 is looked up even when sign-up would
    refuse it, so one stored before can still be unsubscribed or erased, and an internationalised
    domain is tried as typed and in its ASCII form.
    """
    typed = inputs.email_address(email, allow_smtputf8=True)
    found = subscriber_store.find_by_email(session, typed)
    if found is None and typed.rpartition("@")[0].isascii():
        found = subscriber_store.find_by_email(session, inputs.email_address(typed))
    return found if found is not None else subscriber_store.get_by_email(session, typed)


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


# --------------------------------------------------------------------------- double opt-in


class Confirmation(StrEnum):
    """What a confirm link does for the reader it names; the values name the page to show."""

    ASK = "ask"  # the link is good: the page asks for the POST that confirms
    DONE = "done"  # that POST has just activated the address
    ALREADY = "already"  # active already: nothing to confirm
    STALE = "stale"  # the state the link was bound to has passed (for example, unsubscribed again)


def register(
    session: Session,
    signer: LinkSigner,
    item: SubscriberInput,
    *,
    newsletter_ids: Sequence[int] = (PRIMARY_ID,),
    source: str = "web",
    now: datetime,
) -> ConfirmationMail | None:
    """Sign-up for some newsletters: returns the email that is due, if any.

    Double opt-in happens once per address. A new address becomes pending on the newsletters
    asked for; they take effect when it confirms. An address already on the list keeps its state
    (asking is not confirming), and the caller answers the same way whatever comes back, so the
    form cannot tell who is on the list. A pending address gets those newsletters added and a
    link. One that unsubscribed, bounced or complained gets them added and a fresh double
    opt-in: a link bound to its present state, and it stays suppressed until that link is
    confirmed, so a stranger typing it into the form undoes nothing. An active address is not
    changed at all: if it asked for a newsletter it is not on, it gets its preferences link, so
    only its owner can add one. A blocklisted address gets no email and no change.
    """
    wanted = tuple(sorted(set(newsletter_ids)))
    found = subscriber_store.find_by_email(session, item.email)
    greet = confirmations.greeting(found)
    if found is None:
        try:
            with session.begin_nested():
                found = subscriber_store.add_subscriber(
                    session,
                    item,
                    status=SubscriberStatus.PENDING,
                    source=source,
                    newsletter_ids=wanted,
                    now=now,
                )
        except sa.exc.IntegrityError:  # the same address, submitted twice at once
            found = subscriber_store.find_by_email(session, item.email)
    state = subscriber_store.link_state(session, found.id) if found is not None else None
    if state is None:
        return None
    status = state.subscriber.status
    if status == SubscriberStatus.ACTIVE:
        on = {s.newsletter_id for s in subscription_store.of_reader(session, state.subscriber.id) if s.active}
        if set(wanted) <= on:
            return None
        link = signer.preferences_token(state.subscriber.id, state.token_version)
        return ConfirmationMail(item.email, link, greet, confirmations.PREFERENCES, wanted)
    token = confirmations.make_token(signer, state, now=now)
    if token is None:  # blocklisted
        return None
    subscription_store.subscribe(session, [state.subscriber.id], wanted, now=now)
    return ConfirmationMail(item.email, token, greet, confirmations.CONFIRM, wanted)


def _confirm_link_state(session: Session, signer: LinkSigner, claim: ConfirmClaim) -> LinkState:
    """The row a confirm link names, if it still has the address the link was sent to.

    Anything else answers as a link that was never minted: the page must not tell a stranger
    that an id was erased or now belongs to someone else.
    """
    state = subscriber_store.link_state(session, claim.subscriber_id)
    if state is None or not confirmations.sent_to(signer, claim, state):
        raise TokenInvalid("this confirmation link is not valid")
    return state


def _judge(claim: ConfirmClaim, state: LinkState) -> Confirmation:
    if state.subscriber.status == SubscriberStatus.ACTIVE:
        return Confirmation.ALREADY
    return Confirmation.ASK if confirmations.still_valid(claim, state) else Confirmation.STALE


def confirmation_state(session: Session, signer: LinkSigner, claim: ConfirmClaim) -> Confirmation:
    """What confirming would do, without doing it: mail scanners open every link they see."""
    return _judge(claim, _confirm_link_state(session, signer, claim))


def confirm(session: Session, signer: LinkSigner, claim: ConfirmClaim, *, now: datetime) -> Confirmation:
    """Activate the address if the link still stands for what the reader asked for.

    A pending address becomes active; one that had unsubscribed or bounced and asked again comes
    back only with the link made for that request, so replaying an older link changes nothing.
    """
    state = _confirm_link_state(session, signer, claim)
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
    if state is None or not confirmations.sent_to(signer, claim, state):
        return None
    if not confirmations.still_valid(claim, state):
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


def unsubscribe_by_link(
    conn: sa.Connection, subscriber_id: int, version: int, *, newsletter_id: int = PRIMARY_ID, now: datetime
) -> LinkState:
    """The RFC 8058 one-click unsubscribe from one newsletter, on a plain connection (providers POST
    it in bulk). A link without a newsletter is from before there were several: the first one.

    The reader leaves that newsletter only; when it was their last, the address is unsubscribed
    by the rule of `unsubscribe`: idempotent, first timestamp kept, bounced and complained left
    as they are.
    """
    state = subscriber_store.unsubscribe_by_link(
        conn, subscriber_id, version, newsletter_id=newsletter_id, now=now
    )
    if state is None:
        raise TokenInvalid("this link is not valid")
    return state


def link_newsletter(conn: sa.Connection, slug: str | None) -> subscription_store.NewsletterRef:
    """The newsletter a reader's link names by `?list=`; none named means the first one."""
    wanted = (slug or "").strip().lower()
    if not wanted:
        found = subscription_store.newsletter_ref(conn, newsletter_id=PRIMARY_ID)
    else:
        try:  # a value no slug can have is never sent to the database (PostgreSQL refuses a NUL)
            found = subscription_store.newsletter_ref(conn, slug=check_slug(wanted))
        except InvalidInput:
            found = None
    if found is None:
        raise NotFound(f"there is no newsletter {wanted[:40]!r}", field="list")
    return found


def is_on(session: Session, subscriber_id: int, newsletter_id: int) -> bool:
    found = subscription_store.find(session, subscriber_id, newsletter_id)
    return found is not None and found.active


def leave_everything(session: Session, subscriber_id: int, version: int, *, now: datetime) -> LinkState:
    """Leave every newsletter: the address is unsubscribed and so is each of its subscriptions.

    An opt-out, so any link version up to the current one may do it (as the one-click link can).
    """
    state = unsubscribe_link_state(session, subscriber_id, version)
    data, _ = unsubscribe(session, state.subscriber.id, now=now)
    subscription_store.leave_all(session, state.subscriber.id, now=now)
    return replace(state, subscriber=data)


def unsubscribe_from_preferences(
    session: Session, subscriber_id: int, version: int, *, now: datetime
) -> LinkState:
    """The preferences page's "leave everything", for the current link version only."""
    current_link_state(session, subscriber_id, version)
    return leave_everything(session, subscriber_id, version, now=now)


def resubscribe(
    session: Session, subscriber_id: int, version: int, *, newsletter_id: int | None = None, now: datetime
) -> LinkState:
    """Undo an unsubscribe from a reader's link (the unsubscribe page's or the preferences page's).

    `newsletter_id` (the unsubscribe page's) puts the reader back on that newsletter; without it
    (the preferences page's "subscribe again") they get back what they last left, or the first
    newsletter. An unsubscribed address comes back, an active one stays active; bounced or
    complained addresses need the subscribe form (and its confirmation) to show the mailbox
    wants us again, so they are left as they are.
    """
    state = current_link_state(session, subscriber_id, version)
    sid, status = state.subscriber.id, state.subscriber.status
    if status not in (SubscriberStatus.ACTIVE, SubscriberStatus.PENDING, SubscriberStatus.UNSUBSCRIBED):
        return state
    if newsletter_id is not None:
        subscription_store.subscribe(session, [sid], [newsletter_id], now=now)
    elif status == SubscriberStatus.UNSUBSCRIBED and not subscription_store.has_active(session, sid):
        if not subscription_store.restore_last_left(session, sid, now=now):
            subscription_store.subscribe(session, [sid], [PRIMARY_ID], now=now)
    if status != SubscriberStatus.UNSUBSCRIBED:
        return state
    data = subscriber_store.set_status(session, sid, SubscriberStatus.ACTIVE, now=now)
    return replace(state, subscriber=data)
