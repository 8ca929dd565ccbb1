"""Polling one feed: fetch it, parse it, store what it brings, and record how it went.

A bad feed never raises into its caller: its error is written on its row, it is retried later with
exponential backoff (longer if the server asked, up to a day), and entries that cannot be used are
skipped one by one with a reason. Network work happens outside database transactions, so a slow feed
never holds SQLite's write lock. The use cases that choose which feeds to poll are in service.feeds.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import httpx
import sqlalchemy as sa
from sqlmodel import Session

from briefing.db import session_scope
from briefing.domain import Clock
from briefing.errors import InvalidInput
from briefing.feeds.fetch import Fetched, FetchFailed, Resolver, fetch
from briefing.feeds.parse import FeedEntry, ParsedFeed, parse_feed
from briefing.feeds.text import CONTROL, NOT_UNICODE
from briefing.store import feeds as feed_store
from briefing.store.feeds import FeedData, PollRecord

MAX_RETRY_AFTER = timedelta(hours=24)


@dataclass(frozen=True, slots=True)
class FeedPolicy:
    """How politely and how defensively feeds are fetched; the edges build it from settings."""

    timeout: float = 10.0  # seconds for the whole download, redirects included
    max_bytes: int = 5_000_000
    min_interval: timedelta = timedelta(minutes=10)  # never poll one feed more often than this
    max_backoff: timedelta = timedelta(hours=6)  # after repeated errors, retry at least this often
    max_redirects: int = 5
    future_tolerance: timedelta = timedelta(minutes=10)  # clock skew allowed before a date is "future"
    resolver: Resolver | None = None  # name lookup; tests replace it, production uses the system's
    # A round of due feeds (the scheduler's, the one before a send) runs this many feeds at once and
    # its caller goes on after this many seconds, whatever the feeds still running do (None: wait).
    poll_workers: int = 4
    poll_budget: float | None = 30.0


DEFAULT_POLICY = FeedPolicy()


@dataclass(frozen=True, slots=True)
class SkippedEntry:
    index: int  # 1-based position of the entry in the document
    reason: str
    guid: str = ""


@dataclass(frozen=True, slots=True)
class FeedPollResult:
    feed_id: int
    name: str
    status: str  # ok, warning, not-modified, error, or skipped (not due / polled too recently)
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped: tuple[SkippedEntry, ...] = ()
    notes: tuple[str, ...] = ()  # entries stored with a caveat, such as a date in the future
    error: str = ""
    next_poll_at: datetime | None = None
    article_ids: tuple[int, ...] = field(default=(), repr=False)

    @property
    def ok(self) -> bool:
        return self.status != "error"


def poll_safely(
    engine: sa.Engine,
    feed_id: int,
    *,
    now: datetime,
    clock: Clock,
    client: httpx.Client | None,
    log: logging.Logger,
    policy: FeedPolicy,
    due_only: bool,
    force: bool = False,
) -> FeedPollResult | None:
    """Fetch, parse and store one feed; its error is recorded on its row, never raised (None when the
    database itself fails, or another poller has the feed)."""
    try:
        return _poll(
            engine,
            feed_id,
            now=now,
            clock=clock,
            client=client,
            log=log,
            policy=policy,
            due_only=due_only,
            force=force,
        )
    except Exception as exc:  # one feed's surprise must not stop the others
        log.exception("feeds: polling feed %s failed unexpectedly", feed_id)
        try:
            with session_scope(engine) as session:
                feed = feed_store.get_feed(session, feed_id)
                record = _error_record(feed, now, policy, f"unexpected error: {type(exc).__name__}: {exc}")
                feed_store.record_poll(session, feed_id, now=now, record=record)
            return FeedPollResult(
                feed_id, feed.name, "error", error=record.error, next_poll_at=record.next_poll_at
            )
        except Exception:  # the database itself is failing; the log has it
            log.exception("feeds: could not record the error of feed %s", feed_id)
            return None


def _poll(
    engine: sa.Engine,
    feed_id: int,
    *,
    now: datetime,
    clock: Clock,
    client: httpx.Client | None,
    log: logging.Logger,
    policy: FeedPolicy,
    due_only: bool,
    force: bool,
) -> FeedPollResult | None:
    with session_scope(engine) as session:
        feed = feed_store.get_feed(session, feed_id)
        if not due_only and not force and feed.last_polled_at is not None:
            ready_at = feed.last_polled_at + policy.min_interval
            if ready_at > now:
                return FeedPollResult(
                    feed.id,
                    feed.name,
                    "skipped",
                    error=(
                        f"polled less than {_human(policy.min_interval)} ago; "
                        f"try after {ready_at:%H:%M} UTC or use --force"
                    ),
                    next_poll_at=feed.next_poll_at,
                )
        # Claim for the length of a fetch; record_poll sets the real next time afterwards.
        hold = now + timedelta(seconds=policy.timeout * (policy.max_redirects + 2))
        if not feed_store.claim_feed(session, feed_id, now=now, until=hold, only_if_due=due_only):
            return None  # another poller took it
    try:
        fetched = fetch(
            feed.url,
            clock=clock,
            etag=feed.etag,
            last_modified=feed.last_modified,
            allow_private=feed.allow_private,
            timeout=policy.timeout,
            max_bytes=policy.max_bytes,
            max_redirects=policy.max_redirects,
            client=client,
            resolver=policy.resolver,
        )
        parsed = None if fetched.status == 304 else _parse(fetched, feed, now, policy)
    except (FetchFailed, InvalidInput) as exc:
        retry_after = exc.retry_after if isinstance(exc, FetchFailed) else None
        record = _error_record(feed, now, policy, str(exc), retry_after)
        with session_scope(engine) as session:
            feed_store.record_poll(session, feed_id, now=now, record=record)
        log.warning("feeds: %s: %s", feed.name, record.error)
        return FeedPollResult(
            feed.id, feed.name, "error", error=record.error, next_poll_at=record.next_poll_at
        )
    next_at = now + policy.min_interval
    if parsed is None:
        record = PollRecord("not-modified", next_poll_at=next_at)
        with session_scope(engine) as session:
            feed_store.record_poll(session, feed_id, now=now, record=record)
        log.info("feeds: %s: not modified", feed.name)
        return FeedPollResult(feed.id, feed.name, "not-modified", next_poll_at=next_at)
    result = _store(engine, feed, parsed, fetched, now=now, next_at=next_at)
    log.info(
        "feeds: %s: %s, %d added, %d updated, %d unchanged, %d skipped",
        feed.name,
        result.status,
        result.added,
        result.updated,
        result.unchanged,
        len(result.skipped),
    )
    return result


def _parse(fetched: Fetched, feed: FeedData, now: datetime, policy: FeedPolicy) -> ParsedFeed:
    return parse_feed(
        fetched.body,
        base_url=fetched.url,
        now=now,
        section=feed.section,
        tolerance=policy.future_tolerance,
        content_type=fetched.content_type,
    )


def _store(
    engine: sa.Engine,
    feed: FeedData,
    parsed: ParsedFeed,
    fetched: Fetched,
    *,
    now: datetime,
    next_at: datetime,
) -> FeedPollResult:
    counts = {"added": 0, "updated": 0, "unchanged": 0}
    skipped: list[SkippedEntry] = []
    notes: list[str] = []
    ids: list[int] = []
    store_failed = False
    with session_scope(engine) as session:
        for entry in parsed.entries:
            if entry.item is None:
                skipped.append(SkippedEntry(entry.index, entry.reason, entry.guid))
                continue
            try:
                outcome, article_id = _store_entry(session, feed.id, entry, now)
            except sa.exc.SQLAlchemyError as exc:
                store_failed = True
                skipped.append(
                    SkippedEntry(entry.index, f"could not be stored: {exc.__class__.__name__}", entry.guid)
                )
                continue
            counts[outcome] += 1
            ids.append(article_id)
            if entry.future_date is not None:
                notes.append(
                    f"entry {entry.index}: date {entry.future_date:%Y-%m-%d %H:%M} UTC is in the future; "
                    "stored with the time it was first seen"
                )
        problems = [parsed.problem] if parsed.problem else []
        if skipped:
            problems.append(
                f"{len(skipped)} entries skipped: "
                + "; ".join(f"entry {s.index}: {s.reason}" for s in skipped[:5])
            )
        clean = not parsed.problem and not store_failed
        record = PollRecord(
            "warning" if problems else "ok",
            error=_clean(" | ".join(problems)),
            next_poll_at=next_at,
            # Keep the old validators after a partial read, so the next poll fetches it all again.
            etag=fetched.etag if clean else None,
            last_modified=fetched.last_modified if clean else None,
            added=counts["added"],
        )
        feed_store.record_poll(session, feed.id, now=now, record=record)
    return FeedPollResult(
        feed.id,
        feed.name,
        record.status,
        added=counts["added"],
        updated=counts["updated"],
        unchanged=counts["unchanged"],
        skipped=tuple(skipped),
        notes=tuple(notes),
        error=record.error,
        next_poll_at=next_at,
        article_ids=tuple(ids),
    )


def _store_entry(session: Session, feed_id: int, entry: FeedEntry, now: datetime) -> tuple[str, int]:
    """One entry in its own savepoint: a failure (or a race on the unique URL) costs only this entry."""
    assert entry.item is not None
    for attempt in range(2):
        try:
            with session.begin_nested():
                article, outcome = feed_store.upsert_feed_article(
                    session,
                    entry.item,
                    feed_id=feed_id,
                    guid_trusted=entry.guid_trusted,
                    date_estimated=entry.future_date is not None,
                    now=now,
                )
            return outcome, article.id
        except sa.exc.IntegrityError:
            if attempt:
                raise  # another writer stored this URL between our read and our insert; now it is found
    raise AssertionError("unreachable")


def _error_record(
    feed: FeedData, now: datetime, policy: FeedPolicy, message: str, retry_after: float | None = None
) -> PollRecord:
    errors = feed.consecutive_errors + 1
    delay = min(policy.min_interval * (2 ** min(errors, 16)), policy.max_backoff)
    if retry_after is not None:
        delay = max(delay, min(timedelta(seconds=retry_after), MAX_RETRY_AFTER))
    return PollRecord("error", error=_clean(message), next_poll_at=now + delay)


def _clean(message: str) -> str:
    """A message safe to store and print: a server's or a document's text can end up in it, and
    neither a lone surrogate nor a NUL can be written to the database (PostgreSQL refuses both)."""
    return CONTROL.sub("", NOT_UNICODE.sub("\ufffd", message))


def _human(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    return f"{minutes} min" if minutes < 120 else f"{minutes // 60} h"
