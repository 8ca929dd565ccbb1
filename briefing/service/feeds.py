"""The site's feeds fill the article store: add or remove a feed, poll the due ones or chosen ones.

A bad feed never stops the others and never raises into the scheduler; how one feed is fetched,
parsed, stored and backed off is in feeds.poll.

Time comes from the caller's clock: one reading of `clock.now()` is the moment of a poll (due
times, backoff, stored timestamps), and the same clock runs each fetch's deadline.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
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

    The feeds run a few at once, and this returns when they are done or when `policy.poll_budget`
    seconds have passed, whichever comes first: the send that follows must not wait for a slow
    feed (stale articles are better than a late email). Feeds still running then finish, or fail
    at their own deadline, in the background and record their outcome as usual; feeds not started
    stay due for the next round. One log line names the feeds that missed the budget.

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

    def poll_one(feed_id: int) -> FeedPollResult | None:
        return poll_safely(
            engine, feed_id, now=now, clock=clock, client=client, log=log, policy=policy, due_only=True
        )

    return _poll_together(engine, due, poll_one, policy=policy, budget=policy.poll_budget, log=log)


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
    unless `force`). They run a few at once, and every one is waited for: each ends at its own
    deadline, and the operator asked for all of their outcomes."""
    log = log or _log
    now = clock.now()

    def poll_one(feed_id: int) -> FeedPollResult | None:
        return poll_safely(
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

    return _poll_together(engine, list(feed_ids), poll_one, policy=policy, budget=None, log=log)


def _poll_together(
    engine: sa.Engine,
    feed_ids: list[int],
    poll_one: Callable[[int], FeedPollResult | None],
    *,
    policy: FeedPolicy,
    budget: float | None,
    log: logging.Logger,
) -> list[FeedPollResult]:
    """Results in the order of `feed_ids`, of the feeds that finished within `budget` seconds.

    The budget is a timed wait, in seconds that pass like a socket timeout's: a send must not
    wait on the network however the clock it was given is set.
    """
    if not feed_ids:
        return []
    if len(feed_ids) == 1 and budget is None:
        result = poll_one(feed_ids[0])
        return [result] if result is not None else []
    pool = ThreadPoolExecutor(max_workers=max(1, min(policy.poll_workers, len(feed_ids))))
    futures = [pool.submit(poll_one, feed_id) for feed_id in feed_ids]
    _done, late = wait(futures, timeout=budget)
    pool.shutdown(wait=False, cancel_futures=True)  # running feeds go on; queued ones stay due
    if late:
        running = [i for i, f in zip(feed_ids, futures, strict=True) if f in late and not f.cancelled()]
        queued = [i for i, f in zip(feed_ids, futures, strict=True) if f.cancelled()]
        log.warning(
            "feeds: %d of %d feeds missed the %g s budget and the caller goes on without them: "
            "still running: %s; not started (due next round): %s",
            len(late),
            len(feed_ids),
            budget,
            _names(engine, running),
            _names(engine, queued),
        )
    return [r for f in futures if f not in late and (r := f.result()) is not None]


def _names(engine: sa.Engine, feed_ids: list[int]) -> str:
    if not feed_ids:
        return "none"
    try:
        with session_scope(engine) as session:
            names = [feed_store.get_feed(session, i).name for i in feed_ids[:20]]
    except (BriefingError, sa.exc.SQLAlchemyError):
        names = [f"feed {i}" for i in feed_ids[:20]]
    more = f" and {len(feed_ids) - 20} more" if len(feed_ids) > 20 else ""
    return ", ".join(repr(n) for n in names) + more


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
