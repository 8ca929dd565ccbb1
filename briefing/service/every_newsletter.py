"""Every newsletter's daily jobs in one scheduler process: one `DailySender` each, one lock for all.

A newsroom's newsletters share the process, the scheduler lock and the mail relay; each keeps its
own calendar, zone and alerts. The list is read afresh at each watch, so a newsletter added,
paused or resumed while the scheduler runs counts within a minute.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import date, datetime
from functools import partial
from typing import Any

import sqlalchemy as sa

from briefing.errors import BriefingError
from briefing.newsletter import NewsletterData
from briefing.service.alerts import one_line
from briefing.service.schedule import DailyContext, DailySender
from briefing.service.setup import EditionSetup


class _Named(logging.LoggerAdapter):
    """Log lines that start with the newsletter's slug, so one process's lines say whose they are."""

    def process(self, msg: object, kwargs: Any) -> tuple[str, Any]:
        return f"[{(self.extra or {}).get('newsletter', '')}] {msg}", kwargs


class EveryNewsletter:
    """Every newsletter's jobs in one process: a `DailySender` each, one lock for all their sends.

    `ctx` is shared; its `setup` is replaced by `setup_of(newsletter id)` for each newsletter and
    its log lines name the newsletter. The watch reads the newsletters afresh each time, so one
    added or paused while the scheduler runs counts within a minute; a paused one is never sent.
    """

    def __init__(
        self,
        ctx: DailyContext,
        *,
        newsletters: Callable[[], Sequence[NewsletterData]],
        setup_of: Callable[[int], EditionSetup],
    ) -> None:
        self.ctx = ctx
        self.newsletters = newsletters
        self.setup_of = setup_of
        self.lock = threading.Lock()
        self._senders: dict[int, DailySender] = {}

    def sender(self, newsletter: NewsletterData) -> DailySender:
        found = self._senders.get(newsletter.id)
        if found is None:
            log = _Named(self.ctx.log, {"newsletter": newsletter.slug})
            ctx = replace(self.ctx, setup=partial(self.setup_of, newsletter.id), log=log)
            found = self._senders[newsletter.id] = DailySender(ctx, lock=self.lock)
        return found

    def send_job(self, newsletter: NewsletterData) -> Callable[[date, datetime], str]:
        return lambda day, scheduled_utc: self._run(newsletter, lambda s: s.send_job(day, scheduled_utc))

    def preflight_job(self, newsletter: NewsletterData) -> Callable[[date], str]:
        return lambda day: self._run(newsletter, lambda s: s.preflight_job(day))

    def watch_job(self) -> str:
        """Every newsletter read now, each watched in turn (`DailySender.watch_job`)."""
        try:
            current = list(self.newsletters())
        except sa.exc.SQLAlchemyError as exc:
            self.ctx.log.error(
                "the database is unavailable (%s); trying again at the next run", one_line(exc)
            )
            return "database unavailable"
        done = []
        for newsletter in current:
            if self.ctx.stop.is_set():
                break
            result = "paused" if newsletter.paused else self._run(newsletter, DailySender.watch_job)
            done.append(f"{newsletter.slug}: {result}")
        return "; ".join(done) or "no newsletters"

    def _run(self, newsletter: NewsletterData, job: Callable[[DailySender], str]) -> str:
        try:
            return job(self.sender(newsletter))
        except BriefingError as exc:  # its stored values cannot be used (templates gone): the others go on
            self.ctx.log.error("[%s] %s", newsletter.slug, exc)
            return "error"
