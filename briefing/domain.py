"""Plain, frozen values that travel between the pipeline's stages.

Stages pass these instead of ORM rows so that compose, render and message stay pure and can be
tested without a database, and so that nothing downstream can lazily trigger a query.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum


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


# Statuses that an import must never turn back into active or pending.
SUPPRESSED_STATUSES = frozenset(
    {SubscriberStatus.UNSUBSCRIBED, SubscriberStatus.BOUNCED, SubscriberStatus.COMPLAINED}
)


class EditionStatus(StrEnum):
    SCHEDULED = "scheduled"
    HELD = "held"
    FROZEN = "frozen"
    SENDING = "sending"
    SENT = "sent"
    PARTIAL = "partial"
    PAUSED = "paused"
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
            self.pending + self.claimed + self.sent + self.deferred + self.failed + self.ambiguous + self.skipped
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


@dataclass(frozen=True, slots=True)
class RenderedEdition:
    """An edition rendered once: HTML and text that still carry the per-recipient tokens."""

    edition_date: date
    subject: str
    preheader: str
    html: str
    text: str
    web_url: str = ""  # the "view in browser" address
