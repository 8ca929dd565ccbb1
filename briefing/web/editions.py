"""Editors' view of the delivery ledger: each edition's state and counts, failed addresses, "retry failed".

A sending edition's numbers come from its senders' heartbeats (`service.progress`), never from
counting the ledger, and its page reloads itself every few seconds: a million-row ledger watched by
a newsroom costs the senders nothing. Bounce rates, which count the ledger, wait until it is sent.

"Retry failed" runs the same `edition_service.send_edition(..., retry_failed=True)` as
`briefing send --date D --retry-failed`, in a background thread of this process, so an editor gets
an answer at once and refreshes to follow it. The ledger makes a parallel CLI run or scheduler
harmless: `sent` rows are never sent again.
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass, replace
from datetime import date, datetime
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response
from sqlmodel import Session

from briefing import inputs
from briefing.domain import DeliveryStatus, EditionData, EditionStatus, LedgerCounts
from briefing.errors import BriefingError
from briefing.newsletter import PRIMARY_ID
from briefing.service import bounce_rates as rate_service
from briefing.service import editions as edition_service
from briefing.service import progress as progress_service
from briefing.service.bounce_rates import EditionRates, RateLimits, percent
from briefing.service.editors import EditorAccount
from briefing.service.progress import EditionProgress
from briefing.store import deliveries as ledger
from briefing.store import editions as edition_store
from briefing.store.deliveries import LedgerRow
from briefing.web.auth import require_editor
from briefing.web.context import WebContext, get_ctx, mask_email
from briefing.web.rate_chart import rate_chart

log = logging.getLogger("briefing.web")

router = APIRouter(prefix="/editor", dependencies=[Depends(require_editor)])
Ctx = Annotated[WebContext, Depends(get_ctx)]
Editor = Annotated[EditorAccount, Depends(require_editor)]
READ = ["GET", "HEAD"]
NO_STORE = {"Cache-Control": "no-store"}
# A sending edition's page reloads itself this often (the Refresh header, as a meta refresh would);
# the senders' heartbeats behind its numbers come every 5 s.
REFRESH_SECONDS = 5

EDITIONS_SHOWN = 60
PROBLEM_ROWS = 500
RETRYABLE = (EditionStatus.SENT, EditionStatus.PARTIAL, EditionStatus.PAUSED, EditionStatus.SENDING)
# Anything shaped like an address in a mail server's reply ("550 5.1.1 <jane@example.org>: ...").
_ADDRESS = re.compile(r"[^\s<>()\[\],;:\"']+@[^\s<>()\[\],;:\"']+")


@dataclass(frozen=True, slots=True)
class EditionLine:
    edition: EditionData
    counts: LedgerCounts | None  # None while sending: `progress` has its numbers
    ambiguous: int
    rates: EditionRates | None = None
    progress: EditionProgress | None = None


def _masked(text: str) -> str:
    return _ADDRESS.sub(lambda m: mask_email(m.group(0)), text)


def _for_reader_of_the_page(rows: list[LedgerRow], editor: EditorAccount) -> list[LedgerRow]:
    """The list of readers is for administrators; other editors see which copies failed, not to whom.

    The mail server's reply often quotes the address, so it is masked there too.
    """
    if editor.is_admin:
        return rows
    return [replace(r, email=mask_email(r.email), smtp_reply=_masked(r.smtp_reply)) for r in rows]


def _running(ctx: WebContext, day: date) -> bool:
    with ctx.retry_lock:
        thread = ctx.retries.get(day)
        return thread is not None and thread.is_alive()


@router.api_route("/editions", methods=READ, response_class=HTMLResponse)
def editions(request: Request, ctx: Ctx) -> HTMLResponse:
    limits = _rate_limits(ctx)
    with ctx.reading() as session:
        shown = edition_store.list_editions(session, limit=EDITIONS_SHOWN)
        rates = rate_service.rates_of(session, [e.id for e in shown])
        chart = rate_chart(rate_service.recent_rates(session), limits)
        lines = [_line(session, e, rates.get(e.id), now=ctx.now()) for e in shown]
    return ctx.pages.render(
        request,
        "editions.html",
        {
            "title": "Editions",
            "lines": lines,
            "duration": progress_service.duration,
            "chart": chart,
            "percent": percent,
            "max_hard_bounce_rate": limits.max_hard_bounce_rate,
            "max_complaint_rate": limits.max_complaint_rate,
        },
        headers=NO_STORE,
    )


def _line(session: Session, e: EditionData, rates: EditionRates | None, *, now: datetime) -> EditionLine:
    if e.status == EditionStatus.SENDING:
        progress = progress_service.edition_progress(session, e.id, now=now)
        return EditionLine(e, None, progress.ambiguous, rates, progress)
    return EditionLine(e, ledger.counts(session, e.id), ledger.ambiguous_count(session, e.id), rates)


def _rate_limits(ctx: WebContext) -> RateLimits:
    return RateLimits(
        max_complaint_rate=ctx.settings.max_complaint_rate,
        max_hard_bounce_rate=ctx.settings.max_hard_bounce_rate,
    )


@router.api_route("/editions/{day}", methods=READ, response_class=HTMLResponse)
def edition(request: Request, ctx: Ctx, editor: Editor, day: str) -> HTMLResponse:
    edition_date = inputs.local_date(day)
    progress: EditionProgress | None = None
    counts: LedgerCounts | None = None
    rates: EditionRates | None = None
    with ctx.reading() as session:
        found = edition_store.get_edition(session, edition_date, newsletter_id=PRIMARY_ID)
        if found.status == EditionStatus.SENDING:
            progress = progress_service.edition_progress(session, found.id, now=ctx.now())
            ambiguous = progress.ambiguous
        else:
            found, counts, ambiguous = edition_service.edition_counts(
                session, edition_date, newsletter_id=PRIMARY_ID
            )
            rates = rate_service.edition_rates(session, edition_date, newsletter_id=PRIMARY_ID)
        problems = ledger.rows(
            session,
            found.id,
            statuses=[DeliveryStatus.FAILED, DeliveryStatus.DEFERRED, DeliveryStatus.AMBIGUOUS],
            limit=PROBLEM_ROWS,
        )
        last_error = edition_store.last_error(session, found.id)
    if counts is not None:
        retry_count = str(counts.failed + counts.deferred)
    else:  # while sending, from the problem rows already read rather than a count of the ledger
        waiting = sum(r.status in (DeliveryStatus.FAILED, DeliveryStatus.DEFERRED) for r in problems)
        retry_count = f"{waiting}+" if len(problems) >= PROBLEM_ROWS else str(waiting)
    problems = _for_reader_of_the_page(problems, editor)
    if not editor.is_admin:
        last_error = _masked(last_error)
    can_retry = found.status in RETRYABLE and retry_count != "0"
    return ctx.pages.render(
        request,
        "edition.html",
        {
            "title": f"Edition of {edition_date.isoformat()}",
            "edition": found,
            "counts": counts,
            "progress": progress,
            "duration": progress_service.duration,
            "refresh_seconds": REFRESH_SECONDS,
            "retry_count": retry_count,
            "ambiguous": ambiguous,
            "problems": problems,
            "problem_limit": PROBLEM_ROWS,
            "last_error": last_error,
            "can_retry": can_retry,
            "can_resume": found.status == EditionStatus.HALTED,
            "rates": rates,
            "percent": percent,
            "retry_running": _running(ctx, edition_date),
        },
        headers={**NO_STORE, "Refresh": str(REFRESH_SECONDS)} if progress else NO_STORE,
    )


@router.post("/editions/{day}/retry")
def retry_failed(ctx: Ctx, day: str) -> Response:
    edition_date = inputs.local_date(day)
    back = f"/editor/editions/{quote(edition_date.isoformat())}"
    with ctx.reading() as session:
        found, counts, _ = edition_service.edition_counts(session, edition_date, newsletter_id=PRIMARY_ID)
    waiting = counts.failed + counts.deferred
    if found.status not in RETRYABLE or waiting == 0:
        return ctx.pages.redirect(back, "There is nothing to retry.", kind="error", secure=ctx.secure_cookies)
    with ctx.retry_lock:
        running = ctx.retries.get(edition_date)
        if running is not None and running.is_alive():
            return ctx.pages.redirect(
                back, "A retry is already running.", kind="error", secure=ctx.secure_cookies
            )
        thread = threading.Thread(
            target=_retry, args=(ctx, edition_date), name=f"retry-{edition_date}", daemon=True
        )
        ctx.retries[edition_date] = thread
        thread.start()
    return ctx.pages.redirect(
        back,
        f"Retrying {waiting} cop{'y' if waiting == 1 else 'ies'} now. Reload this page to follow it.",
        secure=ctx.secure_cookies,
    )


@router.post("/editions/{day}/resume")
def resume_halted(ctx: Ctx, day: str) -> Response:
    """Go on with an edition the bounce breaker halted: an editor has checked the list."""
    edition_date = inputs.local_date(day)
    back = f"/editor/editions/{quote(edition_date.isoformat())}"
    with ctx.reading() as session:
        found = edition_store.get_edition(session, edition_date, newsletter_id=PRIMARY_ID)
    if found.status != EditionStatus.HALTED:
        return ctx.pages.redirect(
            back, "This edition is not halted.", kind="error", secure=ctx.secure_cookies
        )
    with ctx.retry_lock:
        running = ctx.retries.get(edition_date)
        if running is not None and running.is_alive():
            return ctx.pages.redirect(
                back, "A send is already running.", kind="error", secure=ctx.secure_cookies
            )
        thread = threading.Thread(
            target=_retry, args=(ctx, edition_date, True), name=f"resume-{edition_date}", daemon=True
        )
        ctx.retries[edition_date] = thread
        thread.start()
    return ctx.pages.redirect(
        back, "Sending resumed. Reload this page to follow it.", secure=ctx.secure_cookies
    )


def _retry(ctx: WebContext, edition_date: date, resume: bool = False) -> None:
    try:
        outcome = edition_service.send_edition(
            ctx.engine,
            ctx.current_setup(),
            edition_date,
            ctx.transport,
            retry_failed=not resume,
            resume=resume,
            stop=ctx.stop,
            clock=ctx.clock,
        )
    except BriefingError as exc:
        log.warning("retry of the edition of %s stopped: %s", edition_date, exc)
    except Exception:
        log.exception("retry of the edition of %s failed", edition_date)
    else:
        log.info("retry of the edition of %s: %s", edition_date, outcome.message)
