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

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, Response
from sqlmodel import Session

from briefing import inputs
from briefing.domain import DeliveryStatus, EditionData, EditionStatus, LedgerCounts
from briefing.errors import BriefingError
from briefing.newsletter import REGULAR, NewsletterData, check_kind, edition_label
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
from briefing.web.context import WebContext, get_ctx, mask_email, newsletter_choice, newsletter_url
from briefing.web.rate_chart import rate_chart

log = logging.getLogger("briefing.web")

router = APIRouter(prefix="/editor", dependencies=[Depends(require_editor)])
Ctx = Annotated[WebContext, Depends(get_ctx)]
Editor = Annotated[EditorAccount, Depends(require_editor)]
READ = ["GET", "HEAD"]
Slug = Annotated[str, Form(max_length=60)]
Kind = Annotated[str, Form(max_length=20)]
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
    newsletter: str = ""  # its name, for the list of every newsletter's editions
    url: str = ""  # its page


def edition_url(day: date, newsletter: NewsletterData, kind: str = REGULAR) -> str:
    """/editor/editions/<day>?newsletter=<slug>&kind=<kind>; the first newsletter's regular
    edition keeps the address it had before there were several."""
    return newsletter_url(
        f"/editor/editions/{day.isoformat()}", newsletter, kind="" if kind == REGULAR else kind
    )


def _kind(value: str) -> str:
    return check_kind(value) if value.strip() else REGULAR


def _masked(text: str) -> str:
    return _ADDRESS.sub(lambda m: mask_email(m.group(0)), text)


def _for_reader_of_the_page(rows: list[LedgerRow], editor: EditorAccount) -> list[LedgerRow]:
    """The list of readers is for administrators; other editors see which copies failed, not to whom.

    The mail server's reply often quotes the address, so it is masked there too.
    """
    if editor.is_admin:
        return rows
    return [replace(r, email=mask_email(r.email), smtp_reply=_masked(r.smtp_reply)) for r in rows]


def _running(ctx: WebContext, edition_id: int) -> bool:
    with ctx.retry_lock:
        thread = ctx.retries.get(edition_id)
        return thread is not None and thread.is_alive()


@router.api_route("/editions", methods=READ, response_class=HTMLResponse)
def editions(request: Request, ctx: Ctx, newsletter: str = "") -> HTMLResponse:
    """Every newsletter's editions, or one newsletter's (`?newsletter=<slug>`)."""
    limits = _rate_limits(ctx)
    chosen = ctx.newsletter(newsletter) if newsletter.strip() else None
    everyone = {n.id: n for n in ctx.newsletters()}
    with ctx.reading() as session:
        shown = edition_store.list_editions(
            session, limit=EDITIONS_SHOWN, newsletter_id=chosen.id if chosen else None
        )
        rates = rate_service.rates_of(session, [e.id for e in shown])
        chart = rate_chart(
            rate_service.recent_rates(session, newsletter_id=chosen.id if chosen else None), limits
        )
        lines = [_line(session, e, rates.get(e.id), now=ctx.now()) for e in shown]
    named = []
    for line in lines:
        owner = everyone.get(line.edition.newsletter_id)
        if owner is None:  # added since the list was read: still show its edition
            owner = NewsletterData(id=line.edition.newsletter_id, slug="")
        named.append(
            replace(
                line,
                newsletter=owner.name or ctx.settings.newsletter_name,
                url=edition_url(line.edition.edition_date, owner, line.edition.kind),
            )
        )
    return ctx.pages.render(
        request,
        "editions.html",
        {
            **newsletter_choice(ctx, chosen),
            "several": len(everyone) > 1,
            "title": "Editions",
            "lines": named,
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
def edition(
    request: Request, ctx: Ctx, editor: Editor, day: str, newsletter: str = "", kind: str = ""
) -> HTMLResponse:
    """One edition of a newsletter (`?newsletter=<slug>&kind=<kind>`, the first's regular by default)."""
    edition_date = inputs.local_date(day)
    which = _kind(kind)
    chosen = ctx.newsletter(newsletter)
    progress: EditionProgress | None = None
    counts: LedgerCounts | None = None
    rates: EditionRates | None = None
    with ctx.reading() as session:
        found = edition_store.get_edition(session, edition_date, newsletter_id=chosen.id, kind=which)
        if found.status == EditionStatus.SENDING:
            progress = progress_service.edition_progress(session, found.id, now=ctx.now())
            ambiguous = progress.ambiguous
        else:
            found, counts, ambiguous = edition_service.edition_counts(
                session, edition_date, newsletter_id=chosen.id, kind=which
            )
            rates = rate_service.edition_rates(session, edition_date, newsletter_id=chosen.id, kind=which)
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
            **newsletter_choice(ctx, chosen),
            "title": f"Edition of {edition_label(edition_date, which)}",
            "edition": found,
            "kind": which,
            "several": len(ctx.newsletters()) > 1,
            "retry_url": f"/editor/editions/{edition_date.isoformat()}/retry",
            "resume_url": f"/editor/editions/{edition_date.isoformat()}/resume",
            "preview_url": newsletter_url(
                "/editor/preview",
                chosen,
                date=edition_date.isoformat(),
                kind="" if which == REGULAR else which,
            ),
            "list_url": newsletter_url("/editor/editions", chosen),
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
            "retry_running": _running(ctx, found.id),
        },
        headers={**NO_STORE, "Refresh": str(REFRESH_SECONDS)} if progress else NO_STORE,
    )


@router.post("/editions/{day}/retry")
def retry_failed(ctx: Ctx, day: str, newsletter: Slug = "", kind: Kind = "") -> Response:
    edition_date = inputs.local_date(day)
    which = _kind(kind)
    chosen = ctx.newsletter(newsletter)
    back = edition_url(edition_date, chosen, which)
    with ctx.reading() as session:
        found, counts, _ = edition_service.edition_counts(
            session, edition_date, newsletter_id=chosen.id, kind=which
        )
    waiting = counts.failed + counts.deferred
    if found.status not in RETRYABLE or waiting == 0:
        return ctx.pages.redirect(back, "There is nothing to retry.", kind="error", secure=ctx.secure_cookies)
    if not _start(ctx, found, chosen, resume=False):
        return ctx.pages.redirect(
            back, "A retry is already running.", kind="error", secure=ctx.secure_cookies
        )
    return ctx.pages.redirect(
        back,
        f"Retrying {waiting} cop{'y' if waiting == 1 else 'ies'} now. Reload this page to follow it.",
        secure=ctx.secure_cookies,
    )


@router.post("/editions/{day}/resume")
def resume_halted(ctx: Ctx, day: str, newsletter: Slug = "", kind: Kind = "") -> Response:
    """Go on with an edition the bounce breaker halted: an editor has checked the list."""
    edition_date = inputs.local_date(day)
    which = _kind(kind)
    chosen = ctx.newsletter(newsletter)
    back = edition_url(edition_date, chosen, which)
    with ctx.reading() as session:
        found = edition_store.get_edition(session, edition_date, newsletter_id=chosen.id, kind=which)
    if found.status != EditionStatus.HALTED:
        return ctx.pages.redirect(
            back, "This edition is not halted.", kind="error", secure=ctx.secure_cookies
        )
    if not _start(ctx, found, chosen, resume=True):
        return ctx.pages.redirect(back, "A send is already running.", kind="error", secure=ctx.secure_cookies)
    return ctx.pages.redirect(
        back, "Sending resumed. Reload this page to follow it.", secure=ctx.secure_cookies
    )


def _start(ctx: WebContext, found: EditionData, newsletter: NewsletterData, *, resume: bool) -> bool:
    """One background send per edition in this process; False when one is already running."""
    label = edition_label(found.edition_date, found.kind)
    with ctx.retry_lock:
        running = ctx.retries.get(found.id)
        if running is not None and running.is_alive():
            return False
        thread = threading.Thread(
            target=_retry,
            args=(ctx, found, newsletter, resume),
            name=f"{'resume' if resume else 'retry'}-{newsletter.slug}-{label}",
            daemon=True,
        )
        ctx.retries[found.id] = thread
        thread.start()
    return True


def _retry(ctx: WebContext, found: EditionData, newsletter: NewsletterData, resume: bool = False) -> None:
    label = f"{newsletter.slug} {edition_label(found.edition_date, found.kind)}"
    try:
        outcome = edition_service.send_edition(
            ctx.engine,
            ctx.current_setup(newsletter),
            found.edition_date,
            ctx.transport,
            retry_failed=not resume,
            resume=resume,
            stop=ctx.stop,
            clock=ctx.clock,
            kind=found.kind,
        )
    except BriefingError as exc:
        log.warning("retry of the edition %s stopped: %s", label, exc)
    except Exception:
        log.exception("retry of the edition %s failed", label)
    else:
        log.info("retry of the edition %s: %s", label, outcome.message)
