"""Whether a provider's webhook request is really from the provider: one check per provider.

- Amazon SNS (for SES): the message is signed with the key of a certificate that SNS serves from
  `https://sns.<region>.amazonaws.com/...pem`; only such URLs are fetched, through the fetcher the
  caller passes in (tests pass one serving a certificate they made). SignatureVersion 1 is
  RSA with SHA-1, 2 is RSA with SHA-256. The topic must be one the operator configured: anyone can
  create an SNS topic, and its messages are signed by Amazon too.
- Mailgun: HMAC-SHA256 of timestamp + token with the webhook signing key.
- Postmark: HTTP basic auth on the webhook URL.
- SendGrid: ECDSA P-256 with SHA-256 over timestamp + raw body, with the account's public key.

Every check returns False (or raises SignatureError with the reason) for anything malformed;
comparisons of secrets take constant time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import threading
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

Fetch = Callable[[str], bytes]  # GET an https URL, return the body (raise on any failure)

SNS_HOST = re.compile(r"^sns\.[a-z0-9-]{1,30}\.amazonaws\.com(\.cn)?$")
_SNS_FIELDS = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": (
        "Message",
        "MessageId",
        "SubscribeURL",
        "Timestamp",
        "Token",
        "TopicArn",
        "Type",
    ),
    "UnsubscribeConfirmation": (
        "Message",
        "MessageId",
        "SubscribeURL",
        "Timestamp",
        "Token",
        "TopicArn",
        "Type",
    ),
}
MAX_CERTIFICATES = 32


class SignatureError(Exception):
    """The request is not provably from the provider; the message says why (never a secret)."""


def sns_url_ok(url: str) -> bool:
    """An https URL on an SNS host, with no user, port or odd characters: the only ones we fetch."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return (
        parts.scheme == "https"
        and parts.username is None
        and parts.password is None
        and parts.port is None
        and bool(SNS_HOST.match(parts.hostname or ""))
        and not any(c in url for c in " \t\r\n\\")
    )


class SnsVerifier:
    """Checks SNS message signatures; certificates are fetched once per URL and kept."""

    def __init__(self, fetch: Fetch, topics: frozenset[str]) -> None:
        self.fetch = fetch
        self.topics = topics
        self._certificates: dict[str, x509.Certificate] = {}
        self._lock = threading.Lock()

    def verify(self, message: Mapping[str, Any], *, now: datetime) -> None:
        kind = message.get("Type")
        if not isinstance(kind, str) or kind not in _SNS_FIELDS:
            raise SignatureError("not an SNS message")
        topic = message.get("TopicArn")
        if not isinstance(topic, str) or topic not in self.topics:
            raise SignatureError("the topic is not one configured in BRIEFING_SES_TOPIC_ARNS")
        version = message.get("SignatureVersion")
        # SNS signs with SHA-1 under SignatureVersion 1; it is what Amazon sends unless told otherwise.
        algorithms: dict[str, hashes.HashAlgorithm] = {"1": hashes.SHA1(), "2": hashes.SHA256()}  # noqa: S303
        algorithm = algorithms.get(version if isinstance(version, str) else "")
        if algorithm is None:
            raise SignatureError("unknown SignatureVersion")
        url = message.get("SigningCertURL")
        if not isinstance(url, str) or not sns_url_ok(url) or not url.endswith(".pem"):
            raise SignatureError("SigningCertURL is not an SNS certificate URL")
        lines = []
        for name in _SNS_FIELDS[kind]:
            value = message.get(name)
            if value is None and name == "Subject":
                continue
            if not isinstance(value, str):
                raise SignatureError(f"{name} is missing")
            lines.append(f"{name}\n{value}\n")
        try:
            signature = base64.b64decode(str(message.get("Signature", "")), validate=True)
        except (binascii.Error, ValueError):
            raise SignatureError("the signature is not base64") from None
        key = self._certificate(url, now).public_key()
        if not isinstance(key, rsa.RSAPublicKey):
            raise SignatureError("the certificate's key is not RSA")
        try:
            key.verify(signature, "".join(lines).encode("utf-8"), padding.PKCS1v15(), algorithm)
        except InvalidSignature:
            raise SignatureError("the signature does not verify") from None

    def _certificate(self, url: str, now: datetime) -> x509.Certificate:
        with self._lock:
            found = self._certificates.get(url)
        if found is None:
            try:
                found = x509.load_pem_x509_certificate(self.fetch(url))
            except Exception as exc:  # noqa: BLE001 - the fetcher's failure, or a body that is no certificate
                raise SignatureError(f"cannot use the signing certificate ({type(exc).__name__})") from None
            with self._lock:
                if len(self._certificates) >= MAX_CERTIFICATES:
                    self._certificates.clear()
                self._certificates[url] = found
        if not found.not_valid_before_utc <= now <= found.not_valid_after_utc:
            raise SignatureError("the signing certificate is not valid now")
        return found


def mailgun_ok(signing_key: str, signature: Mapping[str, Any]) -> bool:
    timestamp, token, given = (signature.get(k) for k in ("timestamp", "token", "signature"))
    if not (signing_key and isinstance(timestamp, str) and isinstance(token, str) and isinstance(given, str)):
        return False
    if len(token) > 200 or len(timestamp) > 20:
        return False
    expected = hmac.new(signing_key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, given.lower())


def basic_auth_ok(header: str, user: str, password: str) -> bool:
    if not (user and password):
        return False
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic" or len(value) > 1000:
        return False
    try:
        given_user, sep, given_password = (
            base64.b64decode(value.strip(), validate=True).decode().partition(":")
        )
    except (binascii.Error, ValueError):
        return False
    same_user = hmac.compare_digest(given_user.encode(), user.encode())
    same_password = hmac.compare_digest(given_password.encode(), password.encode())
    return bool(sep) and same_user and same_password


def sendgrid_key(text: str) -> ec.EllipticCurvePublicKey:
    """The verification key as SendGrid shows it (base64 of the DER key), or as PEM."""
    text = text.strip()
    try:
        if text.startswith("-----BEGIN"):
            key = serialization.load_pem_public_key(text.encode())
        else:
            key = serialization.load_der_public_key(base64.b64decode(text, validate=True))
    except (ValueError, binascii.Error, TypeError):
        raise ValueError("not a public key in base64 DER or PEM") from None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise ValueError("not an ECDSA public key")
    return key


def sendgrid_ok(key: ec.EllipticCurvePublicKey, signature: str, timestamp: str, body: bytes) -> bool:
    if not signature or not timestamp or len(signature) > 200 or len(timestamp) > 20:
        return False
    try:
        key.verify(
            base64.b64decode(signature, validate=True), timestamp.encode() + body, ec.ECDSA(hashes.SHA256())
        )
    except (InvalidSignature, binascii.Error, ValueError):
        return False
    return True
