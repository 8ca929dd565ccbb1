"""Providers' webhooks end to end: a real send into the ledger, then signed (and forged) events.

SNS certificates, the Mailgun key, the Postmark password and the SendGrid key pair are all made
here; the SNS fetcher serves the certificate this test made, so nothing leaves the machine.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from datetime import timedelta
from email import message_from_bytes
from email.policy import default as default_policy
from typing import Any

import pytest
import sqlalchemy as sa
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlmodel import Session

from briefing.config import Settings
from briefing.mail.transport import MemoryTransport
from briefing.models import BounceEvent
from briefing.web.app import create_app
from briefing.web.webhooks import MAX_BODY
from tests.fixtures.clock import ManualClock
from tests.fixtures.web import (
    BASE_URL,
    FIXED_NOW,
    add_subscriber,
    queue_stories,
    send_edition,
    subscriber,
    web_settings_for,
)
from tests.fixtures.webhooks import (
    CERT_URL,
    MAILGUN_KEY,
    POSTMARK,
    SUBSCRIBE_URL,
    TOPIC,
    Fetcher,
    mailgun_body,
    postmark_auth,
    sendgrid_post,
    ses_bounce,
    sns_message,
)

READERS = ("ann", "bob", "cat", "dan", "eve", "fay")


@pytest.fixture(scope="module")
def sns_key() -> tuple[rsa.RSAPrivateKey, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(FIXED_NOW - timedelta(days=1))
        .not_valid_after(FIXED_NOW + timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    return key, cert.public_bytes(serialization.Encoding.PEM)


@pytest.fixture(scope="module")
def sendgrid_pair() -> tuple[ec.EllipticCurvePrivateKey, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return key, base64.b64encode(der).decode()


class Hooks:
    def __init__(
        self, client: TestClient, engine: sa.Engine, sent: dict[str, tuple[str, str]], fetcher: Fetcher
    ):
        self.client, self.engine, self.sent, self.fetcher = client, engine, sent, fetcher

    def status(self, name: str) -> str:
        return subscriber(self.engine, f"{name}@example.com").status

    def events(self) -> list[BounceEvent]:
        with Session(self.engine) as s:
            return list(s.execute(sa.select(BounceEvent)).scalars())


@pytest.fixture
def hooks(
    sqlite_url: str,
    sqlite_engine: sa.Engine,
    sns_key: tuple[rsa.RSAPrivateKey, bytes],
    sendgrid_pair: tuple[ec.EllipticCurvePrivateKey, str],
) -> Iterator[Hooks]:
    settings: Settings = web_settings_for(
        sqlite_url,
        bounce_address="bounces@news.example.com",
        ses_topic_arns=f"arn:aws:sns:us-east-1:123456789012:other, {TOPIC}",
        mailgun_signing_key=MAILGUN_KEY,
        postmark_webhook_user=POSTMARK[0],
        postmark_webhook_password=POSTMARK[1],
        sendgrid_webhook_public_key=sendgrid_pair[1],
    )
    queue_stories(sqlite_engine)
    for name in READERS:
        add_subscriber(sqlite_engine, f"{name}@example.com")
    mail = MemoryTransport()
    assert send_edition(sqlite_engine, settings, mail).edition.status == "sent"
    sent = {}
    for m in mail.messages:
        headers = message_from_bytes(m.data, policy=default_policy)
        sent[m.rcpt.split("@")[0]] = (m.envelope_from, str(headers["Message-ID"]))
    assert all(v[0].startswith("bounces+") for v in sent.values())  # VERP return paths
    fetcher = Fetcher(sns_key[1])
    # The app's clock is the tests' own, so the signing certificate's dates hold on any day.
    app: FastAPI = create_app(settings, engine=sqlite_engine, transport=mail, clock=ManualClock(FIXED_NOW))
    app.state.sns_fetch = fetcher
    with TestClient(app, base_url=BASE_URL, raise_server_exceptions=False) as client:
        yield Hooks(client, sqlite_engine, sent, fetcher)


# --------------------------------------------------------------------------- Amazon SES through SNS


@pytest.mark.parametrize("version", ["1", "2"], ids=["SignatureVersion1-SHA1", "SignatureVersion2-SHA256"])
def test_ses_bounce_signed_by_sns_bounces_the_copy_named_by_its_return_path(
    hooks: Hooks, sns_key: tuple[rsa.RSAPrivateKey, bytes], version: str
) -> None:
    verp, _ = hooks.sent["ann"]
    # The recipient SES reports is another reader: the signed return path decides whose copy it was.
    body = sns_message(sns_key[0], "Notification", ses_bounce(verp, "bob@example.com"), version=version)

    first = hooks.client.post("/api/webhooks/ses", content=json.dumps(body))
    replay = hooks.client.post("/api/webhooks/ses", content=json.dumps(body))

    assert first.status_code == 200 and first.json()["recorded"] == 1
    assert replay.status_code == 200 and replay.json()["recorded"] == 0
    assert hooks.status("ann") == "bounced" and hooks.status("bob") == "active"
    assert [(e.kind, e.source) for e in hooks.events()] == [("hard", "ses")]
    assert hooks.fetcher.asked == [CERT_URL]  # fetched once, then kept


@pytest.mark.parametrize(
    "forge",
    ["tampered-message", "other-topic", "foreign-certificate-host", "unknown-version", "no-signature"],
)
def test_ses_requests_not_signed_by_sns_for_our_topic_get_401_and_change_nothing(
    hooks: Hooks, sns_key: tuple[rsa.RSAPrivateKey, bytes], forge: str
) -> None:
    verp, _ = hooks.sent["ann"]
    message = ses_bounce(verp, "ann@example.com")
    extra: dict[str, str] = {}
    if forge == "other-topic":
        extra["TopicArn"] = "arn:aws:sns:eu-west-1:999999999999:someone-elses"
    if forge == "foreign-certificate-host":
        extra["SigningCertURL"] = "https://sns.eu-west-1.amazonaws.com.example.net/cert.pem"
    body = sns_message(sns_key[0], "Notification", message, **extra)
    if forge == "tampered-message":
        body["Message"] = message.replace("Permanent", "Permanent ")
    if forge == "unknown-version":
        body["SignatureVersion"] = "3"
    if forge == "no-signature":
        del body["Signature"]

    response = hooks.client.post("/api/webhooks/ses", content=json.dumps(body))

    assert response.status_code == 401, response.text
    assert hooks.status("ann") == "active" and hooks.events() == []
    assert all(url == CERT_URL for url in hooks.fetcher.asked)  # nothing fetched from anywhere else


def test_an_sns_subscription_is_confirmed_through_the_fetcher(
    hooks: Hooks, sns_key: tuple[rsa.RSAPrivateKey, bytes]
) -> None:
    body = sns_message(
        sns_key[0],
        "SubscriptionConfirmation",
        "You have chosen to subscribe",
        SubscribeURL=SUBSCRIBE_URL,
        Token="t",
    )
    response = hooks.client.post("/api/webhooks/ses", content=json.dumps(body))
    assert response.status_code == 200 and response.json() == {"confirmed": True}
    assert hooks.fetcher.asked == [CERT_URL, SUBSCRIBE_URL]

    elsewhere = sns_message(
        sns_key[0],
        "SubscriptionConfirmation",
        "You have chosen to subscribe",
        SubscribeURL="https://attacker.example.net/confirm",
        Token="t",
    )
    refused = hooks.client.post("/api/webhooks/ses", content=json.dumps(elsewhere))
    assert refused.status_code == 400 and "attacker.example.net" not in hooks.fetcher.asked


def test_an_ses_soft_bounce_counts_without_bouncing_the_reader(
    hooks: Hooks, sns_key: tuple[rsa.RSAPrivateKey, bytes]
) -> None:
    verp, _ = hooks.sent["cat"]
    body = sns_message(sns_key[0], "Notification", ses_bounce(verp, "cat@example.com", "Transient"))
    assert hooks.client.post("/api/webhooks/ses", content=json.dumps(body)).json()["recorded"] == 1
    assert hooks.status("cat") == "active" and [e.kind for e in hooks.events()] == ["soft"]


# --------------------------------------------------------------------------- Mailgun


def test_mailgun_complaint_with_a_valid_signature_is_counted_once(hooks: Hooks) -> None:
    _, message_id = hooks.sent["bob"]
    event = {
        "event": "complained",
        "id": "mg-event-1",
        "recipient": "bob@example.com",
        "message": {"headers": {"message-id": message_id.strip("<>")}},
    }
    body = mailgun_body(event)

    first = hooks.client.post("/api/webhooks/mailgun", json=body)
    replay = hooks.client.post("/api/webhooks/mailgun", json=body)

    assert first.status_code == 200 and first.json()["recorded"] == 1
    assert replay.status_code == 200 and replay.json()["recorded"] == 0
    assert hooks.status("bob") == "complained" and len(hooks.events()) == 1


@pytest.mark.parametrize("forge", ["wrong-key", "no-signature", "signature-not-a-dict"])
def test_mailgun_with_a_bad_signature_gets_401(hooks: Hooks, forge: str) -> None:
    event = {"event": "failed", "severity": "permanent", "id": "mg-2", "recipient": "dan@example.com"}
    body: dict[str, Any] = mailgun_body(event, key="key-someone-else")
    if forge == "no-signature":
        del body["signature"]
    if forge == "signature-not-a-dict":
        body["signature"] = "d2271d12"
    response = hooks.client.post("/api/webhooks/mailgun", json=body)
    assert response.status_code == 401
    assert hooks.status("dan") == "active" and hooks.events() == []


# --------------------------------------------------------------------------- Postmark


def test_postmark_hard_bounce_with_the_right_credentials_bounces_the_recipient(hooks: Hooks) -> None:
    body = {"RecordType": "Bounce", "ID": 4323372036, "Type": "HardBounce", "Email": "dan@example.com"}

    wrong = hooks.client.post("/api/webhooks/postmark", json=body, headers=postmark_auth(password="guess"))
    missing = hooks.client.post("/api/webhooks/postmark", json=body)
    assert wrong.status_code == missing.status_code == 401
    assert wrong.headers["www-authenticate"].startswith("Basic")
    assert hooks.status("dan") == "active"

    first = hooks.client.post("/api/webhooks/postmark", json=body, headers=postmark_auth())
    replay = hooks.client.post("/api/webhooks/postmark", json=body, headers=postmark_auth())
    assert first.status_code == 200 and first.json()["recorded"] == 1
    assert replay.json()["recorded"] == 0
    assert hooks.status("dan") == "bounced" and len(hooks.events()) == 1


# --------------------------------------------------------------------------- SendGrid


def test_sendgrid_signed_batch_bounces_unsubscribes_and_ignores_deliveries(
    hooks: Hooks, sendgrid_pair: tuple[ec.EllipticCurvePrivateKey, str]
) -> None:
    _, eve_id = hooks.sent["eve"]
    events = [
        {"email": "eve@example.com", "event": "bounce", "type": "bounce", "sg_event_id": "sg-1",
         "smtp-id": eve_id, "status": "5.1.1", "reason": "550 5.1.1 unknown recipient"},
        {"email": "fay@example.com", "event": "unsubscribe", "sg_event_id": "sg-2"},
        {"email": "ann@example.com", "event": "delivered", "sg_event_id": "sg-3"},
    ]  # fmt: skip

    forged = sendgrid_post(hooks.client, sendgrid_pair[0], events, tamper=True)
    assert forged.status_code == 401 and hooks.status("eve") == "active"

    first = sendgrid_post(hooks.client, sendgrid_pair[0], events)
    replay = sendgrid_post(hooks.client, sendgrid_pair[0], events)

    assert first.status_code == 200 and first.json() == {"events": 2, "recorded": 2, "unchanged": 0}
    assert replay.status_code == 200 and replay.json()["recorded"] == 0
    assert hooks.status("eve") == "bounced" and hooks.status("fay") == "unsubscribed"
    assert hooks.status("ann") == "active" and len(hooks.events()) == 1


# --------------------------------------------------------------------------- junk and size


PROVIDERS = ("ses", "mailgun", "postmark", "sendgrid")
JUNK: tuple[bytes, ...] = (
    b"",
    b"\xff\xfe\x00",
    b"{",
    b"[]",
    b"null",
    b'{"Type": 5, "TopicArn": []}',
    b'{"signature": {"timestamp": 1, "token": null}}',
    b"[" * 5000,
    b'{"a": 1' + b"0" * 500 + b"}",
    json.dumps({"RecordType": "Bounce", "Type": "HardBounce", "Email": "\ud800@example.com\x00"}).encode(),
)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_junk_is_refused_with_a_4xx_and_never_a_500(hooks: Hooks, provider: str) -> None:
    """Unsigned junk gets a 4xx; Postmark's (authenticated) junk object is an event of no known kind."""
    headers = postmark_auth() if provider == "postmark" else {}
    for body in JUNK:
        response = hooks.client.post(f"/api/webhooks/{provider}", content=body, headers=headers)
        seen = (provider, body[:40], response.status_code, response.text)
        if provider == "postmark" and response.status_code == 200:
            assert body.startswith(b"{") and response.json()["recorded"] == 0, seen
        else:
            assert 400 <= response.status_code < 500, seen
    assert hooks.events() == []
    assert {hooks.status(n) for n in READERS} == {"active"}


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_body_over_the_limit_gets_413(hooks: Hooks, provider: str) -> None:
    headers = postmark_auth() if provider == "postmark" else {}
    response = hooks.client.post(
        f"/api/webhooks/{provider}", content=b"[" + b" " * MAX_BODY + b"]", headers=headers
    )
    assert response.status_code == 413


def test_a_webhook_whose_setting_is_empty_is_not_there(
    sqlite_url: str, sqlite_engine: sa.Engine, make_app: Callable[..., FastAPI]
) -> None:
    with TestClient(make_app(), base_url=BASE_URL) as client:
        for provider in PROVIDERS:
            assert client.post(f"/api/webhooks/{provider}", content=b"{}").status_code == 404
