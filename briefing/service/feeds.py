"""The site's feeds fill the article store: add or remove a feed, poll the due ones or chosen ones.

A bad feed never stops the others and never raises into the scheduler; how one feed is fetched,
parsed, stored and backed off is in feeds.poll.

Time comes from the caller's clock: one reading of `clock.now()` is the moment of a poll (due
times, backoff, stored timestamps), and the same clock runs each fetch's deadline.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from urllib.parse import unquote, urlsplit

import httpx
import sqlalchemy as sa

from briefing import inputs
from briefing.db import session_scope
from briefing.domain import Clock, FeedInput
from briefing.errors import BriefingError
from briefing.feeds.fetch import feed_source
from briefing.feeds.poll import DEFAULT_POLICY, FeedPolicy, FeedPollResult, poll_safely
from briefing.store import feeds as feed_store
from briefing.store.feeds import FeedData

__all__ = ["add_feed", "load_feed_file", "poll_due_feeds", "poll_feed", "poll_feeds", "remove_feed"]

_log = logging.getLogger("briefing.service.feeds")


# --------------------------------------------------------------------------- managing feeds


def _default_name(source: str) -> str:
    parts = urlsplit(source)
    if parts.scheme == "file":
        return Path(unquote(parts.path)).stem or "feed"
    return (parts.hostname or "feed") + (parts.path.rstrip("/") if parts.path not in ("", "/") else "")


def add_feed(
    engine: sa.Engine,
    source: str,
    *,
    name: str = "",
    section: str = "",
    allow_private: bool = False,
    base_dir: Path | None = None,
    now: datetime,
) -> FeedData:
    url = feed_source(source, allow_private=allow_private, base_dir=base_dir)
    item = FeedInput(
        name=inputs.one_line(name or _default_name(url)[:100], field="name", max_len=100, required=True),
        url=url,
        section=inputs.one_line(section, field="section", max_len=inputs.MAX_SECTION),
        allow_private=allow_private,
    )
    with session_scope(engine) as session:
        return feed_store.add_feed(session, item, now=now)


def remove_feed(engine: sa.Engine, name_or_id: str) -> FeedData:
    with session_scope(engine) as session:
        feed = feed_store.find_feed(session, name_or_id)
        return feed_store.remove_feed(session, feed.id)


# --------------------------------------------------------------------------- polling


def poll_due_feeds(
    engine: sa.Engine,
    *,
    clock: Clock,
    client: httpx.Client | None = None,
    log: logging.Logger | None = None,
    policy: FeedPolicy = DEFAULT_POLICY,
) -> list[FeedPollResult]:
    """Poll every feed whose next poll time has come. For the scheduler: never raises for a feed.

    Safe to run from two processes at once: each feed is claimed before it is fetched. Pass
    `client` only to reuse connections or in tests: addresses are still checked before every request
    and redirect, but the connect-time check against DNS rebinding lives in the clients built here.
    """
    log = log or _log
    now = clock.now()
    try:
        with session_scope(engine) as session:
            due = feed_store.due_feed_ids(session, now)
    except sa.exc.SQLAlchemyError as exc:
        log.error("feeds: cannot read the feed list: %s", exc)
        return []
    results: list[FeedPollResult] = []
    for feed_id in due:
        result = poll_safely(
            engine, feed_id, now=now, clock=clock, client=client, log=log, policy=policy, due_only=True
        )
        if result is not None:
            results.append(result)
    return results


def poll_feeds(
    engine: sa.Engine,
    feed_ids: Sequence[int],
    *,
    clock: Clock,
    force: bool = False,
    client: httpx.Client | None = None,
    log: logging.Logger | None = None,
    policy: FeedPolicy = DEFAULT_POLICY,
) -> list[FeedPollResult]:
    """Poll the given feeds now, as an operator asked (backoff ignored; the minimum interval kept
    unless `force`)."""
    log = log or _log
    now = clock.now()
    results: list[FeedPollResult] = []
    for feed_id in feed_ids:
        result = poll_safely(
            engine,
            feed_id,
            now=now,
            clock=clock,
            client=client,
            log=log,
            policy=policy,
            due_only=False,
            force=force,
        )
        if result is not None:
            results.append(result)
    return results


def poll_feed(
    engine: sa.Engine,
    feed_id: int,
    *,
    clock: Clock,
    force: bool = False,
    client: httpx.Client | None = None,
    log: logging.Logger | None = None,
    policy: FeedPolicy = DEFAULT_POLICY,
) -> FeedPollResult:
    results = poll_feeds(engine, [feed_id], clock=clock, force=force, client=client, log=log, policy=policy)
    if not results:
        raise BriefingError(f"feed {feed_id} could not be polled (see the log)")
    return results[0]


def load_feed_file(
    engine: sa.Engine, path: Path, *, name: str = "", section: str = "", clock: Clock
) -> FeedPollResult:
    """Add a local feed file (once; found again by its path) and read it now: `make demo` uses this."""
    uri = feed_source(str(path))
    with session_scope(engine) as session:
        existing = feed_store.find_feed_by_url(session, uri)
    feed = existing or add_feed(engine, str(path), name=name, section=section, now=clock.now())
    return poll_feed(engine, feed.id, clock=clock, force=True)
