"""`GET /metrics`: the morning email's numbers in Prometheus' text format, for dashboards and alerts.

Copies per edition by delivery status, the state of the last edition due, the age of the
scheduler's heartbeat and the open alerts: counts and dates only, never an address or a name.
Even counts say how big the list is, so the endpoint is off until `BRIEFING_METRICS_TOKEN` is set,
and then answers only `Authorization: Bearer <token>` (Prometheus: `authorization: {credentials:
...}` in the scrape config). A token rather than "loopback only", because behind a reverse proxy
on the same host every request comes from loopback.

A scrape is a handful of indexed queries: the ledger of a settled edition is counted once and
remembered (`health.MetricsReader`), only a live one is counted each time.
"""

from __future__ import annotations

import hmac
import threading
from collections.abc import Iterator

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse, Response
from prometheus_client import generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric

from briefing.domain import Clock, DeliveryStatus, EditionStatus
from briefing.service.health import MetricsReader, Numbers

router = APIRouter()

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"  # what generate_latest writes
_READER_LOCK = threading.Lock()


class EditionCollector:
    """A prometheus_client collector that reads the database at scrape time."""

    def __init__(self, reader: MetricsReader, clock: Clock) -> None:
        self.reader = reader
        self.clock = clock

    def collect(self) -> Iterator[Metric]:
        return iter(families(self.reader.read(self.clock.now())))


def families(numbers: Numbers) -> list[Metric]:
    copies = GaugeMetricFamily(
        "briefing_edition_copies",
        "Copies of a recent edition by delivery status (the ledger)",
        labels=["edition", "newsletter", "kind", "status"],
    )
    for edition in numbers.editions:
        day = edition.edition_date.isoformat()
        for status in DeliveryStatus:
            copies.add_metric(
                [day, edition.newsletter, edition.kind, status.value], getattr(edition.counts, status)
            )
    state = GaugeMetricFamily(
        "briefing_last_edition_state",
        "1 for the state each newsletter's last regular edition due is in, 0 for the others",
        labels=["edition", "newsletter", "state"],
    )
    for slug, last in numbers.last_by_newsletter:
        day = last.edition_date.isoformat()
        for value in EditionStatus:
            state.add_metric([day, slug, value.value], 1.0 if last.status == value else 0.0)
    heartbeat = GaugeMetricFamily(
        "briefing_scheduler_heartbeat_age_seconds",
        "Seconds since the scheduler's last heartbeat (absent when none ever ran)",
    )
    if numbers.heartbeat_age is not None:
        heartbeat.add_metric([], max(0.0, numbers.heartbeat_age))
    alerts = GaugeMetricFamily(
        "briefing_open_alerts",
        "Problems the editors were alerted to that are not resolved",
        value=numbers.open_alerts,
    )
    return [copies, state, heartbeat, alerts]


def _reader(request: Request) -> MetricsReader:
    state = request.app.state
    with _READER_LOCK:
        reader = getattr(state, "metrics_reader", None)
        if reader is None:
            reader = state.metrics_reader = MetricsReader(state.engine)
    return reader


def _authorised(request: Request, token: str) -> bool:
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


@router.get("/metrics", include_in_schema=False)
def metrics(request: Request) -> Response:
    settings = getattr(request.app.state, "settings", None)
    token = settings.metrics_token.get_secret_value() if settings is not None else ""
    if not token:
        return PlainTextResponse("Not found.", status_code=404)
    if not _authorised(request, token):
        return PlainTextResponse(
            "A bearer token is required.", status_code=401, headers={"WWW-Authenticate": "Bearer"}
        )
    body = generate_latest(EditionCollector(_reader(request), request.app.state.clock))
    return Response(body, media_type=CONTENT_TYPE, headers={"Cache-Control": "no-store"})
