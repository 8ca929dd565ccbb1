"""Plain, frozen values that travel between the pipeline's stages.

Stages pass these instead of ORM rows so that compose, render and message stay pure and can be
tested without a database, and so that nothing downstream can lazily trigger a query.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from typing import Protocol


class Clock(Protocol):
    """The one way code below the edges learns the time.

    The edges (CLI, web, scheduler) hand in the system clock; tests hand in a clock set to the moment
    they are about, so a send window, a backoff or a token's age behaves the same on any date.
    """

    def now(self) -> datetime:
        """The current instant, timezone-aware UTC."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never jumps, for deadlines and elapsed times."""
        ...

    def wait(self, seconds: float, stop: threading.Event | None = None) -> bool:
        """Let `seconds` pass (or until `stop` is set); True when stopped early."""
        ...


class StoryStatus(StrEnum):
    DRAFT = "draft"
    READY = "ready"
    USED = "used"
    DROPPED = "dropped"


class SubscriberStatus(StrEnum):
    PENDING = "pending"
    ACTIVE = "active"
    UNSUBSCRIBED = "unsubscribed"
    BOUNCED = "bounced"
    COMPLAINED = "complained"
    BLOCKLISTED = "blocklisted"  # the newsroom's own "never mail": no link, no confirmation, ever


# Never turned back into active or pending by an import; a sign-up needs a fresh confirmation.
SUPPRESSED_STATUSES = frozenset(SubscriberStatus) - {SubscriberStatus.PENDING, SubscriberStatus.ACTIVE}


class EditionStatus(StrEnum):
    SCHEDULED = "scheduled"
    HELD = "held"
    FROZEN = "frozen"
    SENDING = "sending"
    SENT = "sent"
    PARTIAL = "partial"
    PAUSED = "paused"
    HALTED = "halted"  # by the bounce breaker: only an editor resumes it
    EXPIRED = "expired"
    CANCELLED = "cancelled"


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    CLAIMED = "claimed"
    SENT = "sent"
    DEFERRED = "deferred"
    FAILED = "failed"
    AMBIGUOUS = "ambiguous"
    SKIPPED = "skipped"


class ArticleSource(StrEnum):
    MANUAL = "manual"
    IMPORT = "import"
    FEED = "feed"
    API = "api"


@dataclass(frozen=True, slots=True)
class ArticleData:
    id: int
    url: str
    title: str
    summary: str = ""
    author: str = ""
    section: str = ""
    image_url: str = ""
    image_alt: str = ""
    published_at: datetime | None = None
    source: str = ArticleSource.MANUAL
    created_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class StoryItem:
    """One entry of the queue, with the article's fields already resolved where the story has none."""

    id: int
    headline: str
    url: str
    newsletter_id: int = 1
    blurb: str = ""  # Markdown, sanitised at render time
    section: str = ""
    position: int = 0
    status: str = StoryStatus.DRAFT
    edition_date: date | None = None  # None: the next edition
    embargo_until: datetime | None = None
    expires_at: datetime | None = None
    article_id: int | None = None
    image_url: str = ""
    image_alt: str = ""
    lead: bool = False
    automatic: bool = False  # added by the top-up rule, not by an editor
    created_by: str = ""
    created_at: datetime | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class SubscriberData:
    id: int
    email: str
    name: str = ""
    status: str = SubscriberStatus.PENDING
    source: str = ""
    created_at: datetime | None = None
    consent_at: datetime | None = None
    confirmed_at: datetime | None = None
    unsubscribed_at: datetime | None = None
    soft_bounce_count: int = 0
    attributes: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class EditionData:
    id: int
    edition_date: date
    status: str
    newsletter_id: int = 1
    kind: str = "regular"  # or special-1, special-2, ... (briefing.newsletter)
    subject: str = ""
    preheader: str = ""
    story_ids: tuple[int, ...] = ()
    scheduled_for: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    frozen_at: datetime | None = None
    held: bool = False
    snapshot_size: int = 0
    note: str = ""
    updated_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class LedgerCounts:
    """How many Delivery rows of an edition are in each status."""

    pending: int = 0
    claimed: int = 0
    sent: int = 0
    deferred: int = 0
    failed: int = 0
    ambiguous: int = 0
    skipped: int = 0

    @property
    def total(self) -> int:
        return (
            self.pending
            + self.claimed
            + self.sent
            + self.deferred
            + self.failed
            + self.ambiguous
            + self.skipped
        )

    @property
    def settled(self) -> int:
        """Rows in a terminal state; the edition is complete when this equals the snapshot size."""
        return self.sent + self.failed + self.skipped + self.ambiguous


@dataclass(frozen=True, slots=True)
class Recipient:
    """What personalisation and message building need to know about one reader."""

    subscriber_id: int
    email: str
    name: str = ""
    unsubscribe_url: str = ""
    preferences_url: str = ""


# Per-recipient placeholders left in the rendered edition and filled by personalise() / the MIME
# builder. They survive MJML and CSS inlining untouched and cannot be produced by story text,
# because render escapes "%" sequences in data (see render.py).
TOKEN_UNSUBSCRIBE_URL = "%%UNSUBSCRIBE_URL%%"
TOKEN_PREFERENCES_URL = "%%PREFERENCES_URL%%"
TOKEN_FIRST_NAME = "%%FIRST_NAME%%"
PERSONAL_TOKENS = (TOKEN_UNSUBSCRIBE_URL, TOKEN_PREFERENCES_URL, TOKEN_FIRST_NAME)

# The greeting's name when a reader gave none; the archive's neutral copy greets with it too.
FIRST_NAME_FALLBACK = "there"
_NAME_BREAKS = re.compile("[\x00-\x1f\x7f\x85\u2028\u2029]")
_SURROGATES = re.compile("[\ud800-\udfff]")


def first_name(name: str) -> str:
    """The first word of a reader's name for %%FIRST_NAME%%, or FIRST_NAME_FALLBACK."""
    words = _NAME_BREAKS.sub(" ", _SURROGATES.sub("\ufffd", name)).split()
    return words[0] if words else FIRST_NAME_FALLBACK


@dataclass(frozen=True, slots=True)
class RenderedEdition:
    """An edition rendered once: HTML and text that still carry the per-recipient tokens."""

    edition_date: date
    subject: str
    preheader: str
    html: str
    text: str
    web_url: str = ""  # the "view in browser" address


# --- The composed edition -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ComposeOptions:
    """Everything an operator configures about the edition's content and look.

    The edges build this from settings and pass it inward, so compose and render never read settings.
    The editor's note is for one day; the rest is standing configuration.
    """

    newsletter_name: str = "The Morning Briefing"
    site_name: str = "Example News"
    site_url: str = "https://www.example.com/"
    section_order: tuple[str, ...] = ()
    default_section: str = "More news"
    more_from_count: int = 5
    more_from_exclude_editions: int = 3
    subject_template: str = "{lead} | {newsletter}"
    preheader_template: str = "Also today: {also}"
    subject_max_length: int = 78
    preheader_max_length: int = 140
    brand_name: str = ""  # defaults to site_name
    brand_colour: str = "#14213d"
    accent_colour: str = "#b3261e"
    logo_url: str = ""
    web_url_template: str = ""  # "view in browser" address; "{date}" becomes the ISO date
    subscribe_url: str = ""  # the sign-up page, for readers who were forwarded the email
    story_thumbnails: bool = False  # show non-lead stories' images as thumbnails
    greeting: bool = True
    editor_note: str = ""  # Markdown, for one day only
    tip_heading: str = "Got a tip?"
    tip_text: str = "Know something we should look into? Tell our reporters in confidence."
    tip_contact: str = ""  # an email address or an https URL
    support_heading: str = "Support our journalism"
    support_text: str = "Our reporting is free to read. Members keep it that way."
    support_label: str = "Become a member"
    support_url: str = ""
    partner_name: str = ""
    partner_text: str = ""
    partner_url: str = ""
    partner_label: str = "Partner"
    postal_address: str = ""
    why_text: str = "You are getting this email because you signed up for {newsletter} at {site}."


@dataclass(frozen=True, slots=True)
class StandingBlocks:
    """The blocks around the stories; an empty string means "leave this block out"."""

    editor_note: str = ""
    tip_heading: str = ""
    tip_text: str = ""
    tip_contact: str = ""
    support_heading: str = ""
    support_text: str = ""
    support_label: str = ""
    support_url: str = ""
    partner_name: str = ""
    partner_text: str = ""
    partner_url: str = ""
    partner_label: str = ""
    partner_image_url: str = ""  # a booked sponsor slot's image
    postal_address: str = ""
    why_text: str = ""


@dataclass(frozen=True, slots=True)
class BriefingSection:
    name: str
    stories: tuple[StoryItem, ...]


@dataclass(frozen=True, slots=True)
class Briefing:
    """One day's edition as data: what to say, in which order, and how it should look."""

    edition_date: date
    date_label: str  # "Saturday 28 November 2026"
    subject: str
    preheader: str
    newsletter_name: str
    site_name: str
    site_url: str
    lead: StoryItem | None
    sections: tuple[BriefingSection, ...]
    more_from: tuple[ArticleData, ...]
    blocks: StandingBlocks
    brand_name: str = ""
    brand_colour: str = "#14213d"
    accent_colour: str = "#b3261e"
    logo_url: str = ""
    web_url: str = ""
    subscribe_url: str = ""
    story_thumbnails: bool = False  # non-lead stories show their image (and need its alt text)
    greeting: bool = True
    configured_sections: tuple[str, ...] = ()  # section_order, for preflight's empty-section warning
    subject_trimmed: bool = False  # the lead was shortened to fit subject_max_length

    @property
    def stories(self) -> tuple[StoryItem, ...]:
        """Every story in reading order, lead first, so checks and counts see what readers see."""
        lead = (self.lead,) if self.lead is not None else ()
        return lead + tuple(s for section in self.sections for s in section.stories)


# ---------------------------------------------------------- inputs, checked by briefing.inputs first
# (bounded text without lone surrogates, well-formed http(s) links, aware UTC moments in 1900..2200)
MAX_ID = 2**63 - 1  # ids are 64-bit signed in SQLite and PostgreSQL; a larger one names no row


@dataclass(frozen=True, slots=True)
class FeedInput:
    """Validated fields for a new feed (see briefing.service.feeds.add_feed)."""

    name: str
    url: str
    section: str = ""
    allow_private: bool = False


@dataclass(frozen=True, slots=True)
class SubscriberInput:
    email: str  # already normalised by briefing.inputs.email_address
    name: str = ""
    attributes: dict[str, str] | None = None
    status: SubscriberStatus | None = None  # these six from an imported file; unset: the import's rule
    source: str = ""
    created_at: datetime | None = None
    consent_at: datetime | None = None
    confirmed_at: datetime | None = None
    unsubscribed_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class StoryInput:
    """Validated fields for a new story (see briefing.inputs and service.add_story)."""

    headline: str
    url: str
    newsletter_id: int = 1
    blurb: str = ""
    section: str = ""
    article_id: int | None = None
    position: int | None = None
    edition_date: date | None = None
    embargo_until: datetime | None = None
    expires_at: datetime | None = None
    status: str = StoryStatus.DRAFT
    lead: bool = False
    automatic: bool = False
    image_url: str = ""
    image_alt: str = ""
    created_by: str = ""


@dataclass(frozen=True, slots=True)
class ArticleInput:
    """Validated fields for one article (see briefing.inputs)."""

    url: str
    title: str
    summary: str = ""
    author: str = ""
    section: str = ""
    image_url: str = ""
    image_alt: str = ""
    published_at: datetime | None = None
    source: str = "manual"
    guid: str = ""
    feed_id: int | None = None
