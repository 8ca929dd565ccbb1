"""Providers' bounce and complaint webhooks: `POST /api/webhooks/{ses,mailgun,postmark,sendgrid}`.

Each request is checked first (see web.webhook_signatures), then its events go through the same
bounce rules as a DSN that came back by mail (`service.bounces.record_events`): a hard bounce marks
the reader bounced, soft bounces count, a complaint means never mailed again, a reader's unsubscribe
unsubscribes them, and an event sent twice counts once.

Answers: 200 with what was recorded; 401 for a request that is not provably from the provider
(nothing changes); 400 for a signed body we cannot read; 413 for a body over MAX_BODY bytes or more
than MAX_EVENTS events; 404 while the provider's setting is empty; 503 when the database is away
(providers retry later). Never a 500 for what a client sent.

The app provides `app.state.settings`, `app.state.engine` and `app.state.clock`; a test may set
`app.state.sns_fetch` to serve SNS certificates and subscription confirmations itself.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import httpx
import sqlalchemy as sa
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from briefing import inputs, wiring
from briefing.config import Settings
from briefing.domain import Clock
from briefing.errors import BriefingError, InvalidInput
from briefing.mail.provider_events import (
    ProviderEvent,
    mailgun_events,
    postmark_events,
    sendgrid_events,
    ses_events,
    ses_message,
)
from briefing.service import bounces as bounce_service
from briefing.web.webhook_signatures import (
    Fetch,
    SignatureError,
    SnsVerifier,
    basic_auth_ok,
    mailgun_ok,
    sendgrid_key,
    sendgrid_ok,
    sns_url_ok,
)

log = logging.getLogger("briefing.web.webhooks")

router = APIRouter(prefix="/api/webhooks", include_in_schema=False)

MAX_BODY = 1_000_000
MAX_EVENTS = 1000
MAX_FETCHED = 100_000  # an SNS certificate is about 2 KB
HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
SENDGRID_SIGNATURE = "x-twilio-email-event-webhook-signature"
SENDGRID_TIMESTAMP = "x-twilio-email-event-webhook-timestamp"


class _Refused(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def _answer(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(body, status_code=status, headers={**HEADERS, **(headers or {})})


def fetch_https(url: str) -> bytes:
    """GET one SNS URL: https only (the caller checked the host), no redirects, a small body."""
    with httpx.Client(timeout=10.0, follow_redirects=False) as client, client.stream("GET", url) as response:
        if response.status_code != 200:
            raise OSError(f"HTTP {response.status_code}")
        body = b""
        for chunk in response.iter_bytes():
            body += chunk
            if len(body) > MAX_FETCHED:
                raise OSError("response too large")
    return body


@dataclass
class _Hooks:
    """What the webhooks need from the settings, read once per app."""

    settings: Settings
    fetch: Fetch
    sns: SnsVerifier = field(init=False)

    def __post_init__(self) -> None:
        topics = frozenset(t.strip() for t in self.settings.ses_topic_arns.split(",") if t.strip())
        self.sns = SnsVerifier(self.fetch, topics)


def _hooks(request: Request) -> _Hooks:
    state = request.app.state
    hooks = getattr(state, "webhooks", None)
    if hooks is None:
        hooks = _Hooks(state.settings, getattr(state, "sns_fetch", None) or fetch_https)
        state.webhooks = hooks
    return hooks


def _clock(request: Request) -> Clock:
    clock: Clock = request.app.state.clock
    return clock


def _not_enabled(setting: str) -> _Refused:
    return _Refused(404, f"this webhook is not enabled (set {setting})")


async def _body(request: Request) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > MAX_BODY:
        raise _Refused(413, f"the body is larger than {MAX_BODY} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise _Refused(413, f"the body is larger than {MAX_BODY} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _json(body: bytes) -> Any:
    try:
        return inputs.json_value(body.decode("utf-8"))
    except UnicodeDecodeError:
        raise _Refused(400, "the body is not UTF-8 JSON") from None
    except InvalidInput as exc:
        raise _Refused(400, f"the body is {exc.message}") from None


def _object(body: bytes) -> dict[str, Any]:
    data = _json(body)
    if not isinstance(data, dict):
        raise _Refused(400, "the body must be a JSON object")
    return data


def _record(request: Request, events: list[ProviderEvent]) -> dict[str, Any]:
    """Apply the events (in a worker thread); the count of readers changed and of events ignored."""
    if len(events) > MAX_EVENTS:
        raise _Refused(413, f"at most {MAX_EVENTS} events per request")
    settings: Settings = request.app.state.settings
    engine: sa.Engine = request.app.state.engine
    try:
        handled = bounce_service.record_events(
            engine,
            events,
            return_path=wiring.return_path(settings),
            rules=wiring.bounce_rules(settings),
            now=_clock(request).now(),
        )
    except sa.exc.SQLAlchemyError as exc:
        log.warning("webhook events not recorded: database: %s", type(exc).__name__)
        raise _Refused(503, "the database is not available; send it again later") from None
    except BriefingError as exc:
        log.warning("webhook events not recorded: %s", exc)
        raise _Refused(503, "the events could not be recorded; send them again later") from None
    recorded = sum(1 for h in handled for e in h.effects if e.recorded)
    return {"events": len(events), "recorded": recorded, "unchanged": len(handled) - recorded}


async def _run(request: Request, work: Any) -> JSONResponse:
    try:
        result = await work()
    except _Refused as refused:
        if refused.status == 401:
            log.info("webhook %s refused: %s", request.url.path, refused.message)
        return _answer(refused.status, {"error": refused.message}, refused.headers)
    return _answer(200, result)


# --------------------------------------------------------------------------- Amazon SES (via SNS)


@router.post("/ses")
async def ses(request: Request) -> JSONResponse:
    async def work() -> dict[str, Any]:
        hooks = _hooks(request)
        if not hooks.sns.topics:
            raise _not_enabled("BRIEFING_SES_TOPIC_ARNS")
        message = _object(await _body(request))
        return await run_in_threadpool(_ses, request, hooks, message)

    return await _run(request, work)


def _ses(request: Request, hooks: _Hooks, message: dict[str, Any]) -> dict[str, Any]:
    try:
        hooks.sns.verify(message, now=_clock(request).now())
    except SignatureError as exc:
        raise _Refused(401, f"not a verified SNS message: {exc}") from None
    kind = message["Type"]
    if kind == "SubscriptionConfirmation":
        url = message.get("SubscribeURL")
        if not isinstance(url, str) or not sns_url_ok(url):
            raise _Refused(400, "SubscribeURL is not an SNS URL")
        try:
            hooks.fetch(url)
        except Exception as exc:  # noqa: BLE001 - whatever the fetcher raised: SNS sends it again
            log.warning("could not confirm the SNS subscription: %s", type(exc).__name__)
            raise _Refused(503, "could not confirm the subscription; send it again later") from None
        log.info("SNS subscription confirmed for %s", message["TopicArn"])
        return {"confirmed": True}
    if kind == "UnsubscribeConfirmation":
        return {"events": 0, "recorded": 0, "unchanged": 0}
    notification = ses_message(str(message.get("Message", "")))
    return _record(request, ses_events(notification, str(message.get("MessageId", ""))))


# --------------------------------------------------------------------------- Mailgun


@router.post("/mailgun")
async def mailgun(request: Request) -> JSONResponse:
    async def work() -> dict[str, Any]:
        key = _hooks(request).settings.mailgun_signing_key.get_secret_value()
        if not key:
            raise _not_enabled("BRIEFING_MAILGUN_SIGNING_KEY")
        body = _object(await _body(request))
        signature = body.get("signature")
        if not isinstance(signature, dict) or not mailgun_ok(key, signature):
            raise _Refused(401, "the Mailgun signature is missing or does not verify")
        return await run_in_threadpool(_record, request, mailgun_events(body))

    return await _run(request, work)


# --------------------------------------------------------------------------- Postmark


@router.post("/postmark")
async def postmark(request: Request) -> JSONResponse:
    async def work() -> dict[str, Any]:
        settings = _hooks(request).settings
        user, password = settings.postmark_webhook_user, settings.postmark_webhook_password.get_secret_value()
        if not (user and password):
            raise _not_enabled("BRIEFING_POSTMARK_WEBHOOK_USER and BRIEFING_POSTMARK_WEBHOOK_PASSWORD")
        if not basic_auth_ok(request.headers.get("authorization", ""), user, password):
            raise _Refused(
                401, "wrong or missing credentials", {"WWW-Authenticate": 'Basic realm="webhooks"'}
            )
        return await run_in_threadpool(_record, request, postmark_events(_object(await _body(request))))

    return await _run(request, work)


# --------------------------------------------------------------------------- SendGrid


@router.post("/sendgrid")
async def sendgrid(request: Request) -> JSONResponse:
    async def work() -> dict[str, Any]:
        text = _hooks(request).settings.sendgrid_webhook_public_key
        if not text:
            raise _not_enabled("BRIEFING_SENDGRID_WEBHOOK_PUBLIC_KEY")
        try:
            key = sendgrid_key(text)
        except ValueError as exc:
            log.error("BRIEFING_SENDGRID_WEBHOOK_PUBLIC_KEY: %s", exc)
            raise _Refused(503, "the webhook's verification key is not set up correctly") from None
        body = await _body(request)
        signature = request.headers.get(SENDGRID_SIGNATURE, "")
        timestamp = request.headers.get(SENDGRID_TIMESTAMP, "")
        if not sendgrid_ok(key, signature, timestamp, body):
            raise _Refused(401, "the SendGrid signature is missing or does not verify")
        data = _json(body)
        if not isinstance(data, list):
            raise _Refused(400, "the body must be a JSON list of events")
        return await run_in_threadpool(_record, request, sendgrid_events(data))

    return await _run(request, work)
