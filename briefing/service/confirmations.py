"""Double opt-in: which addresses get a confirmation link, what the link binds to, and the email itself.

A confirm token names the subscriber, the state they were in when the link was made and the
address it was sent to: "s<id>.p.<tag>" for a pending address, "s<id>.u<microseconds>.<tag>" /
"s<id>.b<microseconds>.<tag>" / "s<id>.c<microseconds>.<tag>" for an address that had unsubscribed,
bounced or complained and asked again (the number is the row's `updated_at`). The tag is
`LinkSigner.address_tag` of the row's id and address key, so the address itself never travels
in the URL. Confirming acts only while the row still has
that address and that state still holds, so:
* a link kept by a reader whose row was erased never confirms anyone else (consent is the
  mailbox owner's, not whoever holds the id later);
* a pending address is confirmed by any of its links (it cannot have unsubscribed yet);
* a link is dead once the reader is active and later unsubscribes again: unsubscribing moves the
  status and `updated_at`, so replaying an old confirm link never resubscribes anyone;
* a suppressed address that signs up again stays suppressed until its owner confirms (a fresh
  double opt-in: typing someone's address into the form never undoes their suppression);
* a blocklisted address gets no link at all: the newsroom decided never to mail it.

The use cases that act on a link (sign-up, confirm, a fresh link) are in
`briefing.service.subscribers`; this module holds the rules they share and is free of sessions.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid

from briefing.domain import Clock, SubscriberData, SubscriberStatus
from briefing.errors import BriefingError, TokenInvalid
from briefing.links import LinkSigner, confirm_url, preferences_url
from briefing.mail.headers import clean_header_text, format_address
from briefing.mail.transport import Outcome, Transport
from briefing.service.setup import EditionSetup
from briefing.store.subscribers import LinkState

log = logging.getLogger("briefing.service.confirmations")

# Links minted before the address tag ("s<id>.p") no longer match: they lived a week at most.
_SUBJECT_RE = re.compile(r"s([1-9][0-9]{0,18})\.(p|[ubc][0-9]{1,20})\.([A-Za-z0-9_-]{16})")
# Far longer than any confirm max_age: reading an expired link's payload after its signature checks out.
_EVER = timedelta(days=36500)


@dataclass(frozen=True, slots=True)
class ConfirmClaim:
    subscriber_id: int
    marker: str  # "p", or "u"/"b"/"c" followed by updated_at in microseconds
    address_tag: str  # LinkSigner.address_tag of the id and the address the link was sent to


CONFIRM = "confirm"  # a double opt-in link
PREFERENCES = "preferences"  # an address already confirmed asked for another newsletter: its own page


@dataclass(frozen=True, slots=True)
class ConfirmationMail:
    """A confirmation that is due: sent after the reader's page has gone out, never before the commit.

    An address that confirmed once and signs up for another newsletter gets its preferences link
    instead (`purpose` PREFERENCES): only its owner can choose, so typing it into a form adds
    nobody to anything. `newsletter_ids` are the newsletters the sign-up asked for (the email names them).
    """

    to_address: str
    token: str
    greeting: str = ""
    purpose: str = CONFIRM
    newsletter_ids: tuple[int, ...] = ()


def _micros(moment: datetime) -> int:
    return int(moment.timestamp() * 1_000_000)


def marker_for(state: LinkState) -> str | None:
    """The state a new confirm link binds to, or None when this address gets no link."""
    status = state.subscriber.status
    if status == SubscriberStatus.PENDING:
        return "p"
    if status == SubscriberStatus.UNSUBSCRIBED:
        return f"u{_micros(state.updated_at)}"
    if status == SubscriberStatus.BOUNCED:
        return f"b{_micros(state.updated_at)}"
    if status == SubscriberStatus.COMPLAINED:  # asked again on the form: only their confirming counts
        return f"c{_micros(state.updated_at)}"
    return None  # active: nothing to confirm; blocklisted: never mailed


def make_token(signer: LinkSigner, state: LinkState, *, now: datetime) -> str | None:
    """A confirm token stamped with `now` (its age counts from then), or None when no link is due."""
    marker = marker_for(state)
    if marker is None:
        return None
    sid = state.subscriber.id
    tag = signer.address_tag(sid, state.email_key)
    return signer.confirm_token(f"s{sid}.{marker}.{tag}", now=now)


def read_token(
    signer: LinkSigner, token: str, max_age: timedelta, *, now: datetime, ignore_expiry: bool = False
) -> ConfirmClaim:
    """TokenExpired when older than max_age at `now` (unless ignore_expiry); TokenInvalid for the rest."""
    value = signer.read_confirm(token, _EVER if ignore_expiry else max_age, now=now)
    match = _SUBJECT_RE.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise TokenInvalid("this confirmation link is not valid")
    return ConfirmClaim(int(match.group(1)), match.group(2), match.group(3))


def sent_to(signer: LinkSigner, claim: ConfirmClaim, state: LinkState) -> bool:
    """Does the row the link names still have the address the link was sent to?"""
    return signer.address_tag_matches(claim.address_tag, state.subscriber.id, state.email_key)


def still_valid(claim: ConfirmClaim, state: LinkState) -> bool:
    """Would confirming now honour what the reader asked for when the link was made?

    The caller has checked `sent_to` first: this judges the state, not whose link it is.
    """
    status = state.subscriber.status
    if claim.marker == "p":
        return status == SubscriberStatus.PENDING
    if status == SubscriberStatus.PENDING:
        return True  # a pending address confirms with any genuine link of its own
    return claim.marker == marker_for(state)


def greeting(subscriber: SubscriberData | None) -> str:
    """A name for the confirmation email only if the reader once confirmed it themselves.

    Anyone can type any name next to any address; greeting with it would let strangers put their
    words into a mail we send to someone else.
    """
    if subscriber is None or subscriber.confirmed_at is None:
        return ""
    return subscriber.name


def build_email(
    setup: EditionSetup,
    to_address: str,
    link: str,
    first_name: str = "",
    *,
    purpose: str = CONFIRM,
    now: datetime,
) -> bytes:
    """The confirmation message, dated `now`: one link, no per-recipient list headers (no list yet).

    The preferences-link message uses the same templates, which tell the two apart by the link
    (`/preferences/` in it), and gets its own subject here.
    """
    mail = setup.mailing
    content = setup.renderer.render_confirmation(setup.compose, link, first_name=first_name)
    subject = content.subject
    if purpose == PREFERENCES:
        subject = f"You already get news from {setup.compose.site_name}: choose your newsletters here"
    msg = EmailMessage(policy=SMTP)
    msg["From"] = format_address(mail.from_name, mail.from_address)
    msg["To"] = to_address
    msg["Subject"] = clean_header_text(subject)
    msg["Date"] = format_datetime(now.replace(microsecond=0))
    msg["Message-ID"] = make_msgid(domain=mail.domain)
    if mail.reply_to:
        msg["Reply-To"] = mail.reply_to
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(content.text, cte="quoted-printable")
    msg.add_alternative(content.html, subtype="html", cte="quoted-printable")
    data = msg.as_bytes(policy=SMTP)
    if setup.dkim is not None:
        data = setup.dkim.sign(data, now=now)
    return data


def send_confirmation(
    setup: EditionSetup, transport: Transport, due: ConfirmationMail, *, clock: Clock
) -> bool:
    """Send one confirmation; failures are logged, never raised (the reader's page was already sent).

    It runs after the page has gone out, so the message is dated when it is built, on the app's clock.
    """
    try:
        base = setup.mailing.public_base_url
        link = (
            preferences_url(base, due.token) if due.purpose == PREFERENCES else confirm_url(base, due.token)
        )
        data = build_email(setup, due.to_address, link, due.greeting, purpose=due.purpose, now=clock.now())
        result = transport.send(setup.mailing.from_address, due.to_address, data)
    except (BriefingError, OSError) as exc:
        log.warning("confirmation email not sent: %s", exc)
        return False
    if result.outcome is not Outcome.ACCEPTED:
        log.warning("confirmation email refused: %s %s", result.code or "", result.reply)
        return False
    return True
