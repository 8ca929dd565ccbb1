"""SQLModel tables. No business logic lives here; queries are in briefing/store.

No `from __future__ import annotations` in this module: SQLModel needs real annotations.
Schema changes go through Alembic (briefing/migrations); a test checks models and migrations agree.
"""

from datetime import UTC, date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.types import TypeDecorator
from sqlmodel import JSON, Column, Field, SQLModel, UniqueConstraint


class UTCDateTime(TypeDecorator[datetime]):
    """Aware datetimes in, aware UTC datetimes out, also on SQLite (which silently drops tzinfo)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column; attach a time zone first")
        aware = value.astimezone(UTC)
        # SQLite stores text; keep it naive-UTC so comparisons in SQL order correctly.
        return aware.replace(tzinfo=None) if dialect.name == "sqlite" else aware

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Article(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    url: str = Field(max_length=2000, sa_column_kwargs={"unique": True}, index=False)
    guid: str = Field(default="", max_length=2000, index=True)
    title: str = Field(max_length=300)
    summary: str = Field(default="", max_length=5000)
    author: str = Field(default="", max_length=200)
    section: str = Field(default="", max_length=100)
    image_url: str = Field(default="", max_length=2000)
    image_alt: str = Field(default="", max_length=300)
    published_at: datetime | None = Field(default=None, sa_type=UTCDateTime, index=True)
    source: str = Field(default="manual", max_length=20)
    feed_id: int | None = Field(default=None, index=True)
    created_at: datetime = Field(sa_type=UTCDateTime)  # set by the store from its caller's clock
    updated_at: datetime = Field(sa_type=UTCDateTime)  # set by the store from its caller's clock


class Newsletter(SQLModel, table=True):
    """One email of the newsroom: who it is from, when it goes, how it looks, who may read it on the web.

    Blank text fields inherit the BRIEFING_ settings, so the first newsletter of a database made
    before there were several keeps following the settings it was configured with.
    """

    # Ids are in the links of sent emails (unsubscribe from this newsletter): never reused.
    __table_args__ = {"sqlite_autoincrement": True}
    id: int | None = Field(default=None, primary_key=True)
    slug: str = Field(max_length=40, sa_column_kwargs={"unique": True})
    name: str = Field(default="", max_length=200)
    sender_name: str = Field(default="", max_length=200)
    sender_address: str = Field(default="", max_length=320)
    reply_to: str = Field(default="", max_length=320)
    list_id: str = Field(default="", max_length=200)
    send_days: str = Field(default="", max_length=60)  # "mon-fri"; "" = BRIEFING_SEND_DAYS
    send_time: str = Field(default="", max_length=10)  # "06:00"; "" = BRIEFING_SEND_TIME
    timezone: str = Field(default="", max_length=60)  # IANA name; "" = BRIEFING_TIMEZONE
    section_order: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    sections_optional: bool = Field(default=False)  # readers may opt out of sections
    brand_colour: str = Field(default="", max_length=20)
    accent_colour: str = Field(default="", max_length=20)
    logo_url: str = Field(default="", max_length=2000)
    # The standing blocks' words and links it has of its own (tip_contact, support_url, ...).
    standing: dict[str, str] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    template_set: str = Field(default="", max_length=60)  # a folder under templates/email; "" = the default
    archive: str = Field(default="web", max_length=10)  # web: on the site for all; email: only by email
    paused: bool = Field(default=False)
    position: int = Field(default=0)
    created_at: datetime = Field(sa_type=UTCDateTime)  # set by the store from its caller's clock
    updated_at: datetime = Field(sa_type=UTCDateTime)  # set by the store from its caller's clock


class Story(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    newsletter_id: int = Field(
        default=1,
        foreign_key="newsletter.id",
        index=True,
        ondelete="CASCADE",
        sa_column_kwargs={"server_default": "1"},
    )
    article_id: int | None = Field(default=None, foreign_key="article.id", index=True, ondelete="SET NULL")
    headline: str = Field(max_length=300)
    url: str = Field(max_length=2000)
    blurb: str = Field(default="", max_length=5000)
    section: str = Field(default="", max_length=100)
    position: int = Field(default=0)
    edition_date: date | None = Field(default=None, index=True)
    status: str = Field(default="draft", max_length=20, index=True)
    lead: bool = Field(default=False)
    automatic: bool = Field(default=False)
    image_url: str = Field(default="", max_length=2000)
    image_alt: str = Field(default="", max_length=300)
    embargo_until: datetime | None = Field(default=None, sa_type=UTCDateTime)
    expires_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    created_by: str = Field(default="", max_length=320)
    created_at: datetime = Field(sa_type=UTCDateTime)  # set by the store from its caller's clock
    updated_at: datetime = Field(sa_type=UTCDateTime)  # set by the store from its caller's clock


class Subscriber(SQLModel, table=True):
    # Ids are in the links of sent emails: SQLite must never hand an erased reader's id to a newcomer.
    __table_args__ = {"sqlite_autoincrement": True}
    id: int | None = Field(default=None, primary_key=True)
    email: str = Field(max_length=320, sa_column_kwargs={"unique": True})
    # Lower-cased whole address: duplicates that differ only in case collapse to one row.
    email_key: str = Field(max_length=320, sa_column_kwargs={"unique": True})
    name: str = Field(default="", max_length=200)
    status: str = Field(default="pending", max_length=20, index=True)
    source: str = Field(default="", max_length=50)
    consent_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    confirmed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    unsubscribed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    soft_bounce_count: int = Field(default=0)
    token_version: int = Field(default=1)
    attributes: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(sa_type=UTCDateTime)  # set by the store from its caller's clock
    updated_at: datetime = Field(sa_type=UTCDateTime)  # set by the store from its caller's clock


class Subscription(SQLModel, table=True):
    """One reader on one newsletter, with the sections they opted out of and whether specials reach them.

    The address-level state (confirmed once, left everything, bounced) stays on the subscriber; a
    reader gets a newsletter when both the subscriber is active and this row is.
    """

    __table_args__ = (
        UniqueConstraint("subscriber_id", "newsletter_id", name="uq_subscription_subscriber_newsletter"),
        sa.Index("ix_subscription_newsletter_status", "newsletter_id", "status"),
    )
    id: int | None = Field(default=None, primary_key=True)
    subscriber_id: int = Field(foreign_key="subscriber.id", ondelete="CASCADE")
    newsletter_id: int = Field(foreign_key="newsletter.id", ondelete="CASCADE")
    status: str = Field(default="active", max_length=20)  # active, unsubscribed
    excluded_sections: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    # The excluded set's canonical key ("" = every section), copied to the ledger at snapshot.
    variant: str = Field(default="", max_length=2000)
    specials: bool = Field(default=True)  # special editions reach this reader
    created_at: datetime = Field(sa_type=UTCDateTime)  # set by the store from its caller's clock
    updated_at: datetime = Field(sa_type=UTCDateTime)  # set by the store from its caller's clock
    unsubscribed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class Edition(SQLModel, table=True):
    __table_args__ = (
        UniqueConstraint("newsletter_id", "edition_date", "kind", name="uq_edition_newsletter_date_kind"),
    )
    id: int | None = Field(default=None, primary_key=True)
    newsletter_id: int = Field(
        default=1, foreign_key="newsletter.id", ondelete="CASCADE", sa_column_kwargs={"server_default": "1"}
    )
    edition_date: date = Field(index=True)
    # regular: the scheduled edition of the date; special-1, special-2, ...: sent outside the schedule.
    kind: str = Field(default="regular", max_length=20, sa_column_kwargs={"server_default": "regular"})
    status: str = Field(default="scheduled", max_length=20, index=True)
    held: bool = Field(default=False)
    note: str = Field(default="", max_length=5000)
    subject: str = Field(default="", max_length=300)
    preheader: str = Field(default="", max_length=300)
    html_template: str = Field(default="", sa_type=sa.Text)
    text_template: str = Field(default="", sa_type=sa.Text)
    story_ids: list[int] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    # Every URL the edition linked as a story or in "More from", for the "not featured recently" rule.
    featured_urls: list[str] = Field(
        default_factory=list, sa_column=Column(JSON, nullable=False, server_default=sa.text("'[]'"))
    )
    scheduled_for: datetime | None = Field(default=None, sa_type=UTCDateTime)
    frozen_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    started_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    snapshot_size: int = Field(default=0)
    sent_count: int = Field(default=0)
    failed_count: int = Field(default=0)
    last_error: str = Field(default="", max_length=2000)
    created_at: datetime = Field(sa_type=UTCDateTime)  # set by the store from its caller's clock
    updated_at: datetime = Field(sa_type=UTCDateTime)  # set by the store from its caller's clock


class Delivery(SQLModel, table=True):
    __table_args__ = (
        UniqueConstraint("edition_id", "subscriber_id", name="uq_delivery_edition_subscriber"),
        sa.Index("ix_delivery_queue", "edition_id", "status", "id"),
    )
    id: int | None = Field(default=None, primary_key=True)
    edition_id: int = Field(foreign_key="edition.id", ondelete="CASCADE")
    subscriber_id: int = Field(foreign_key="subscriber.id", index=True, ondelete="CASCADE")
    email: str = Field(max_length=320)
    status: str = Field(default="pending", max_length=20)
    attempts: int = Field(default=0)
    next_attempt_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    lease_owner: str = Field(default="", max_length=100)
    lease_until: datetime | None = Field(default=None, sa_type=UTCDateTime)
    smtp_code: int | None = Field(default=None)
    smtp_reply: str = Field(default="", max_length=1000)
    message_id: str = Field(default="", max_length=300)
    # DATA went out and no reply came at least once; kept after a resend so the report can list it.
    was_ambiguous: bool = Field(default=False, sa_column_kwargs={"server_default": sa.false()})
    # The reader's section set (Subscription.variant): which rendering of the edition they get.
    variant: str = Field(default="", max_length=2000, sa_column_kwargs={"server_default": ""})
    sent_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    updated_at: datetime = Field(sa_type=UTCDateTime)  # set by the store from its caller's clock


class EditionVariant(SQLModel, table=True):
    """The frozen content of an edition for one set of excluded sections, rendered once at freeze."""

    __tablename__ = "edition_variant"
    __table_args__ = (UniqueConstraint("edition_id", "variant", name="uq_edition_variant"),)
    id: int | None = Field(default=None, primary_key=True)
    edition_id: int = Field(foreign_key="edition.id", ondelete="CASCADE")
    variant: str = Field(max_length=2000)
    subject: str = Field(default="", max_length=300)
    html_template: str = Field(default="", sa_type=sa.Text)
    text_template: str = Field(default="", sa_type=sa.Text)


class SponsorSlot(SQLModel, table=True):
    """A partner block booked for a newsletter over a range of dates (inclusive)."""

    __tablename__ = "sponsor_slot"
    __table_args__ = (sa.Index("ix_sponsor_slot_newsletter_dates", "newsletter_id", "starts_on", "ends_on"),)
    id: int | None = Field(default=None, primary_key=True)
    newsletter_id: int = Field(foreign_key="newsletter.id", ondelete="CASCADE")
    starts_on: date
    ends_on: date
    name: str = Field(default="", max_length=200)
    text: str = Field(default="", max_length=1000)
    url: str = Field(default="", max_length=2000)
    image_url: str = Field(default="", max_length=2000)
    label: str = Field(default="Partner", max_length=40)
    paid: bool = Field(default=True)
    created_at: datetime = Field(sa_type=UTCDateTime)  # set by the store from its caller's clock


class Editor(SQLModel, table=True):
    # Ids are in signed session cookies: a removed account's id must not come back as another's.
    __table_args__ = {"sqlite_autoincrement": True}
    id: int | None = Field(default=None, primary_key=True)
    email: str = Field(max_length=320, sa_column_kwargs={"unique": True})
    password_hash: str = Field(max_length=200)
    role: str = Field(default="editor", max_length=20)
    active: bool = Field(default=True)
    created_at: datetime = Field(sa_type=UTCDateTime)  # set by the store from its caller's clock
    last_login_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # Raised to sign the account out everywhere; sessions carry the epoch they were issued under.
    session_epoch: int = Field(default=0, sa_column_kwargs={"server_default": "0"})


class SkipDate(SQLModel, table=True):
    """A weekday with no edition (holiday, recess)."""

    __tablename__ = "skip_date"
    skip_date: date = Field(primary_key=True)
    reason: str = Field(default="", max_length=200)
    created_at: datetime = Field(sa_type=UTCDateTime)  # set by the store from its caller's clock


class SchedulerHeartbeat(SQLModel, table=True):
    """Written by the running scheduler so `briefing status` can tell whether it is alive."""

    __tablename__ = "scheduler_heartbeat"
    id: int = Field(default=1, primary_key=True)
    owner: str = Field(default="", max_length=200)
    started_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    beat_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    next_run_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class Feed(SQLModel, table=True):
    """A feed of the site's articles, polled on a schedule; the poll state lives on the row."""

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=100, sa_column_kwargs={"unique": True})
    url: str = Field(max_length=2000)  # http(s) URL, or file:// URI for a local file given at `feeds add`
    section: str = Field(default="", max_length=100)  # overrides the entries' categories when set
    allow_private: bool = Field(default=False)
    etag: str = Field(default="", max_length=500)
    last_modified: str = Field(default="", max_length=100)
    last_polled_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    next_poll_at: datetime | None = Field(default=None, sa_type=UTCDateTime, index=True)
    last_status: str = Field(default="", max_length=20)
    last_error: str = Field(default="", max_length=2000)
    consecutive_errors: int = Field(default=0)
    articles_seen: int = Field(default=0)
    created_at: datetime = Field(sa_type=UTCDateTime)  # set by the store from its caller's clock


class ApiToken(SQLModel, table=True):
    """A bearer token for the CMS push API; only its SHA-256 is stored, never the token."""

    __tablename__ = "api_token"
    __table_args__ = {"sqlite_autoincrement": True}
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=100, sa_column_kwargs={"unique": True})
    token_hash: str = Field(max_length=64, sa_column_kwargs={"unique": True})
    created_at: datetime = Field(sa_type=UTCDateTime)  # set by the store from its caller's clock
    last_used_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class BounceEvent(SQLModel, table=True):
    """A bounce or complaint about one reader, as it came back; the rules read these to decide."""

    __tablename__ = "bounce_event"
    __table_args__ = (
        # The same report read twice (a second poll, a resent DSN) counts once per reader.
        UniqueConstraint("message_sha256", "subscriber_id", name="uq_bounce_event_message_subscriber"),
        sa.Index("ix_bounce_event_subscriber_received", "subscriber_id", "received_at"),
        sa.Index("ix_bounce_event_edition_kind", "edition_id", "kind"),  # an edition's rates
    )
    id: int | None = Field(default=None, primary_key=True)
    subscriber_id: int = Field(foreign_key="subscriber.id", ondelete="CASCADE")
    edition_id: int | None = Field(default=None, foreign_key="edition.id", ondelete="SET NULL")
    kind: str = Field(max_length=20)  # hard, soft, complaint
    code: str = Field(default="", max_length=20)  # DSN status (5.1.1) or feedback type (abuse)
    diagnostic: str = Field(default="", max_length=1000)
    source: str = Field(default="", max_length=20)  # receive, poll, ...
    message_sha256: str = Field(max_length=64)
    received_at: datetime = Field(sa_type=UTCDateTime, index=True)


class AlertState(SQLModel, table=True):
    """A problem with one edition the editors were told about, so that a restart does not tell them again."""

    __tablename__ = "alert_state"
    __table_args__ = (
        UniqueConstraint(
            "newsletter_id", "edition_date", "problem", name="uq_alert_state_newsletter_edition_problem"
        ),
    )
    id: int | None = Field(default=None, primary_key=True)
    newsletter_id: int = Field(default=1, sa_column_kwargs={"server_default": "1"})
    edition_date: date
    problem: str = Field(max_length=40)  # preflight, not_sent, expired, unfinished
    subject: str = Field(default="", max_length=300)
    raised_at: datetime = Field(sa_type=UTCDateTime)
    notified_at: datetime | None = Field(default=None, sa_type=UTCDateTime)  # the alert email went out
    resolved_at: datetime | None = Field(default=None, sa_type=UTCDateTime, index=True)


class Sender(SQLModel, table=True):
    """One sending run on one edition: a `briefing send`, a worker's pass, or the scheduler's send.

    Its heartbeat tells the others it is alive from any host (a process id only means something on
    its own host), and its tally is what the whole edition's progress is summed from, so a progress
    tick never counts the ledger.
    """

    __tablename__ = "sender"
    id: int | None = Field(default=None, primary_key=True)
    owner: str = Field(max_length=100, sa_column_kwargs={"unique": True})  # prefix of its lease_owner
    edition_id: int = Field(foreign_key="edition.id", ondelete="CASCADE", index=True)
    host: str = Field(default="", max_length=255)
    pid: int = Field(default=0)
    role: str = Field(default="send", max_length=20)  # send, worker, scheduler
    connections: int = Field(default=1)
    started_at: datetime = Field(sa_type=UTCDateTime)
    heartbeat_at: datetime = Field(sa_type=UTCDateTime)
    finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    sent: int = Field(default=0)
    failed: int = Field(default=0)
    skipped: int = Field(default=0)
    deferred: int = Field(default=0)
    ambiguous: int = Field(default=0)
    rate: float = Field(default=0.0)  # copies a second over its last few heartbeats
