"""Editors' view of the delivery ledger: each edition's state and counts, failed addresses, "retry failed".

"Retry failed" runs the same `edition_service.send_edition(..., retry_failed=True)` as
`briefing send --date D --retry-failed`, in a background thread of this process, so an editor gets
an answer at once and refreshes to follow it. The ledger makes a parallel CLI run or scheduler
harmless: `sent` rows are never sent again.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import date
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response

from briefing import inputs
from briefing.domain import DeliveryStatus, EditionData, EditionStatus, LedgerCounts
from briefing.errors import BriefingError
from briefing.service import editions as edition_service
from briefing.store import deliveries as ledger
from briefing.store import editions as edition_store
from briefing.web.auth import require_editor
from briefing.web.context import WebContext, get_ctx

log = logging.getLogger("briefing.web")

router = APIRouter(prefix="/editor", dependencies=[Depends(require_editor)])
Ctx = Annotated[WebContext, Depends(get_ctx)]
READ = ["GET", "HEAD"]
NO_STORE = {"Cache-Control": "no-store"}

EDITIONS_SHOWN = 60
PROBLEM_ROWS = 500
RETRYABLE = (EditionStatus.SENT, EditionStatus.PARTIAL, EditionStatus.PAUSED, EditionStatus.SENDING)


@dataclass(frozen=True, slots=True)
class EditionLine:
    edition: EditionData
    counts: LedgerCounts
    ambiguous: int


def _running(ctx: WebContext, day: date) -> bool:
    with ctx.retry_lock:
        thread = ctx.retries.get(day)
        return thread is not None and thread.is_alive()


@router.api_route("/editions", methods=READ, response_class=HTMLResponse)
def editions(request: Request, ctx: Ctx) -> HTMLResponse:
    with ctx.reading() as session:
        lines = [
            EditionLine(e, ledger.counts(session, e.id), ledger.ambiguous_count(session, e.id))
            for e in edition_store.list_editions(session, limit=EDITIONS_SHOWN)
        ]
    return ctx.pages.render(request, "editions.html", {"title": "Editions", "lines": lines}, headers=NO_STORE)


@router.api_route("/editions/{day}", methods=READ, response_class=HTMLResponse)
def edition(request: Request, ctx: Ctx, day: str) -> HTMLResponse:
    edition_date = inputs.local_date(day)
    with ctx.reading() as session:
        found, counts, ambiguous = edition_service.edition_counts(session, edition_date)
        problems = ledger.rows(
            session,
            found.id,
            statuses=[DeliveryStatus.FAILED, DeliveryStatus.DEFERRED, DeliveryStatus.AMBIGUOUS],
            limit=PROBLEM_ROWS,
        )
        last_error = edition_store.last_error(session, found.id)
    can_retry = found.status in RETRYABLE and (counts.failed + counts.deferred) > 0
    return ctx.pages.render(
        request,
        "edition.html",
        {
            "title": f"Edition of {edition_date.isoformat()}",
            "edition": found,
            "counts": counts,
            "ambiguous": ambiguous,
            "problems": problems,
            "problem_limit": PROBLEM_ROWS,
            "last_error": last_error,
            "can_retry": can_retry,
            "retry_running": _running(ctx, edition_date),
        },
        headers=NO_STORE,
    )


@router.post("/editions/{day}/retry")
def retry_failed(ctx: Ctx, day: str) -> Response:
    edition_date = inputs.local_date(day)
    back = f"/editor/editions/{quote(edition_date.isoformat())}"
    with ctx.reading() as session:
        found, counts, _ = edition_service.edition_counts(session, edition_date)
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


def _retry(ctx: WebContext, edition_date: date) -> None:
    try:
        outcome = edition_service.send_edition(
            ctx.engine,
            ctx.current_setup(),
            edition_date,
            ctx.transport,
            retry_failed=True,
            stop=ctx.stop,
            clock=ctx.clock,
        )
    except BriefingError as exc:
        log.warning("retry of the edition of %s stopped: %s", edition_date, exc)
    except Exception:
        log.exception("retry of the edition of %s failed", edition_date)
    else:
        log.info("retry of the edition of %s: %s", edition_date, outcome.message)
