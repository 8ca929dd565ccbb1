"""An edition's setup bundle, and the factory that turns it into one reader's message.

`EditionSetup` is everything the edges read from settings, passed inward as plain values. Preview,
test send and the real send all build messages through `MailFactory`, from the same rendered (or
frozen) content, so what editors approved is what readers get.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime

from briefing import calendar as cal
from briefing.domain import Clock, ComposeOptions, Recipient
from briefing.edition.render import Renderer
from briefing.errors import InvalidInput
from briefing.links import LinkSigner, preferences_url, unsubscribe_url
from briefing.mail.dkim import DkimSigner
from briefing.mail.message import MessageTemplate
from briefing.mail.pool import ConnectionPool
from briefing.mail.returnpath import ReturnPath
from briefing.mail.smtp_url import SmtpConfig, parse_smtp_url
from briefing.mail.transport import keep_dot_safe
from briefing.newsletter import PRIMARY_ID, REGULAR, NewsletterData
from briefing.service.delivery import DeliveryPolicy, EnvelopeFrom
from briefing.store.deliveries import Claim

MAIL_PORTS = frozenset({25, 465, 587})  # where a relay listens, also on loopback
SAMPLE_SUBSCRIBER_ID = 2**31 - 1  # no real row has it; a sample's links lead to "not valid"


@dataclass(frozen=True, slots=True)
class Mailing:
    """Who the mail is from and where its links point."""

    from_name: str
    from_address: str
    public_base_url: str
    list_id: str
    unsubscribe_mailto: str
    reply_to: str = ""

    @property
    def domain(self) -> str:
        return self.from_address.rpartition("@")[2].lower()


@dataclass(frozen=True, slots=True)
class EditionSetup:
    """Everything the edges read from settings, passed inward as plain values."""

    compose: ComposeOptions
    renderer: Renderer
    mailing: Mailing
    signer: LinkSigner
    plan: cal.SendPlan
    policy: DeliveryPolicy = field(default_factory=DeliveryPolicy)
    dkim: DkimSigner | None = None
    min_stories: int = 0  # top a thin edition up with recent articles (0 = off)
    return_path: ReturnPath | None = None  # VERP envelope senders when a bounce address is set
    smtputf8: bool = False  # the relay takes SMTPUTF8: copies to addresses with non-ASCII before the @
    # The configured mail reaches readers' inboxes (see `reaches_readers`): the send then refuses
    # reader links that no reader could open.
    reaches_readers: bool = False
    # Whose editions these are: the edges build one setup per newsletter.
    newsletter: NewsletterData = field(default_factory=lambda: NewsletterData(id=PRIMARY_ID, slug="briefing"))


def edition_key(newsletter: NewsletterData, edition_date: date, kind: str = REGULAR) -> str:
    """The edition's part of each copy's Message-ID: unique per newsletter, date and kind.

    The first newsletter's regular editions keep the date alone, as they had before there were
    several, so the Message-IDs of a resumed send match those already sent.
    """
    key = edition_date.isoformat()
    if not newsletter.primary:
        key = f"{key}.{newsletter.slug}"
    return key if kind == REGULAR else f"{key}.{kind}"


def reaches_readers(smtp_url: str) -> bool:
    """Whether mail through this URL lands in readers' inboxes rather than in a rehearsal.

    A rehearsal is a Maildir, memory, or an SMTP server on loopback at a port other than the mail
    ports 25, 465 and 587 (`briefing dev-smtp` listens on 1025, the tests on free high ports). A
    local relay on a mail port (Postfix in front of a provider) passes mail on, so it counts as real.
    A URL that does not parse counts as a rehearsal here; opening the transport reports it.
    """
    try:
        config = parse_smtp_url(smtp_url)
    except InvalidInput:
        return False
    return _config_reaches_readers(config)


def transport_reaches_readers(transport: object) -> bool:
    """The same rule for a transport already open (an SMTP pool; Maildir and memory never do)."""
    return isinstance(transport, ConnectionPool) and _config_reaches_readers(transport.config)


def _config_reaches_readers(config: SmtpConfig) -> bool:
    if config.scheme not in ("smtp", "smtps"):
        return False
    return not config.is_loopback or config.port in MAIL_PORTS


def envelope_sender(setup: EditionSetup, edition_id: int) -> EnvelopeFrom:
    """MAIL FROM for an edition's copies: each copy's own return path, else the From address."""
    return_path = setup.return_path
    if return_path is None:
        return setup.mailing.from_address
    return lambda claim: return_path.address(edition_id, claim.subscriber_id)


class MailFactory:
    """Per-edition message skeleton plus per-reader links; microseconds per message."""

    def __init__(
        self,
        setup: EditionSetup,
        edition_date: date,
        subject: str,
        html: str,
        text: str,
        clock: Clock,
        *,
        kind: str = REGULAR,
    ) -> None:
        m = setup.mailing
        self.setup = setup
        self.clock = clock
        self.template = MessageTemplate(
            from_name=m.from_name,
            from_address=m.from_address,
            subject=subject,
            html=html,
            text=text,
            list_id=m.list_id,
            unsubscribe_mailto=m.unsubscribe_mailto,
            message_id_domain=m.domain,
            edition_key=edition_key(setup.newsletter, edition_date, kind),
            reply_to=m.reply_to,
            list_name=setup.compose.newsletter_name,
            smtputf8=setup.smtputf8,
        )

    def recipient(self, subscriber_id: int, email: str, name: str, token_version: int = 1) -> Recipient:
        return reader(self.setup, subscriber_id, email, name, token_version)

    def message(self, recipient: Recipient, when: datetime | None = None) -> tuple[bytes, str]:
        """The reader's copy, dated `when` (default: now on the factory's clock) and signed if set up."""
        moment = when or self.clock.now()
        copy, message_id = self.template.render_with_id(recipient, date=moment)
        data: bytes = copy
        if self.setup.dkim is not None:
            data = keep_dot_safe(self.setup.dkim.sign(copy, now=moment), copy)
        return data, message_id

    def for_claim(self, claim: Claim) -> tuple[bytes, str]:
        return self.message(self.recipient(claim.subscriber_id, claim.email, claim.name, claim.token_version))


def reader(
    setup: EditionSetup, subscriber_id: int, email: str, name: str, token_version: int = 1
) -> Recipient:
    """A reader with their own signed unsubscribe and preferences links.

    The unsubscribe link names the newsletter it leaves (`?list=<slug>`); the token alone is the
    reader's, so a link without it (every email sent before there were several) leaves the first.
    """
    base = setup.mailing.public_base_url
    leave = unsubscribe_url(base, setup.signer.unsubscribe_token(subscriber_id, token_version))
    if not setup.newsletter.primary:
        leave = f"{leave}?list={setup.newsletter.slug}"
    return Recipient(
        subscriber_id=subscriber_id,
        email=email,
        name=name,
        unsubscribe_url=leave,
        preferences_url=preferences_url(base, setup.signer.preferences_token(subscriber_id, token_version)),
    )


def sample_recipient(
    setup: EditionSetup, email: str = "reader@example.com", name: str = "Alex Reader"
) -> Recipient:
    """The reader a preview shows when nobody in particular is asked for."""
    return reader(setup, SAMPLE_SUBSCRIBER_ID, email, name)
