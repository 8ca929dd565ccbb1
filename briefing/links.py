"""Signed, purpose-scoped tokens for the links a reader clicks (unsubscribe, preferences, confirm).

Each purpose has its own salt, so a token minted for one purpose is worthless for another. Keys are
given oldest first: the newest signs, every key verifies, which lets an operator rotate the secret
without breaking links already sitting in inboxes. Unsubscribe and preferences tokens never expire
(opt-out links must keep working long after the send); confirm tokens do, so minting and reading
one takes the time as an argument (`now`) instead of reading the clock: a test about a week-old link
says which week it is.

A confirm link grants consent, so it also carries `address_tag`: a keyed digest of the row's id and
address. Ids are never reused, and even if one were, a kept link could not confirm a newcomer.

The URL shapes below are a contract with the web app and with every email already sent: they must
not change.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import zlib
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from itsdangerous import (
    BadSignature,
    SignatureExpired,
    TimestampSigner,
    URLSafeSerializer,
    URLSafeTimedSerializer,
)

from briefing.errors import InvalidInput, TokenExpired, TokenInvalid

UNSUBSCRIBE_SALT = "unsubscribe-v1"
PREFERENCES_SALT = "preferences-v1"
CONFIRM_SALT = "confirm-v1"
ADDRESS_TAG_SALT = b"confirm-address-v1"
# 12 bytes of HMAC-SHA256, 16 characters of base64url: two addresses never share one by accident,
# and the tag says nothing about the address to someone without the key.
_ADDRESS_TAG_BYTES = 12

# Longer than any token we mint (an email of 254 characters gives ~400); anything bigger is junk and
# is refused before any decoding or HMAC work.
MAX_TOKEN_LENGTH = 600
_TOKEN_RE = re.compile(r"[A-Za-z0-9_\-.]{8,600}")
_MAX_ID = 2**63 - 1
# itsdangerous zlib-compresses a payload when that saves more than one byte. A zlib stream is at
# least 6 bytes of framing plus, for "[id,version]", 4 literals ("[", the first digit, ",", "]")
# and one back-reference, so JSON of up to 14 characters (ids below 10**10) never compresses.
_NEVER_COMPRESSES = 14


def _is_id(value: object) -> bool:
    # bool is an int subclass; a payload of [true, 1] must not pass as subscriber 1.
    return type(value) is int and 0 < value <= _MAX_ID


class ClockedTimestampSigner(TimestampSigner):
    """itsdangerous' TimestampSigner, told the time by a caller's clock instead of the system's.

    `get_timestamp` is what itsdangerous uses both to stamp a new value and to work out an old
    one's age, so a serializer built with this signer signs and checks expiry on the caller's
    clock. The bytes are those of the stock signer at that instant (whole seconds since 1970).
    Pass it as `URLSafeTimedSerializer(..., signer=ClockedTimestampSigner,
    signer_kwargs={"now": clock.now})`; `now` returns an aware datetime.
    """

    def __init__(self, *args: Any, now: Callable[[], datetime], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._now = now

    def get_timestamp(self) -> int:
        return _epoch_seconds(self._now())


def _epoch_seconds(moment: datetime) -> int:
    if not isinstance(moment, datetime) or moment.tzinfo is None or moment.utcoffset() is None:
        raise InvalidInput("must be a timezone-aware datetime", field="now")
    return int(moment.timestamp())


class LinkSigner:
    """Mints and reads every signed token; one instance per process is enough (it is immutable)."""

    def __init__(self, secret_keys: list[str]) -> None:
        keys = [k for k in secret_keys if k]
        if not keys:
            raise InvalidInput("at least one non-empty secret key is needed", field="secret_keys")
        # itsdangerous signs with the last key and tries all of them when reading.
        self._keys = keys
        self._unsubscribe = URLSafeSerializer(keys, salt=UNSUBSCRIBE_SALT)
        self._preferences = URLSafeSerializer(keys, salt=PREFERENCES_SALT)
        self._mint_unsubscribe = _PairMinter(self._unsubscribe, keys[-1], UNSUBSCRIBE_SALT)
        self._mint_preferences = _PairMinter(self._preferences, keys[-1], PREFERENCES_SALT)
        self._tag_keys = [hmac.new(k.encode(), ADDRESS_TAG_SALT, hashlib.sha256).digest() for k in keys]

    def __repr__(self) -> str:
        return "LinkSigner(<secret keys hidden>)"

    # --- unsubscribe (never expires)

    def unsubscribe_token(self, subscriber_id: int, token_version: int = 1) -> str:
        """A token for the one-click unsubscribe link; bumping token_version revokes older links."""
        _check_id(subscriber_id, "subscriber_id")
        _check_id(token_version, "token_version")
        return self._mint_unsubscribe.mint(subscriber_id, token_version)

    def read_unsubscribe(self, token: str) -> tuple[int, int]:
        """Return (subscriber_id, token_version); the caller compares the version with the stored one."""
        return _read_pair(self._unsubscribe, token)

    # --- preferences (never expires)

    def preferences_token(self, subscriber_id: int, token_version: int = 1) -> str:
        """A token for the preferences page; its own salt, so it cannot stand in for an unsubscribe token."""
        _check_id(subscriber_id, "subscriber_id")
        _check_id(token_version, "token_version")
        return self._mint_preferences.mint(subscriber_id, token_version)

    def read_preferences(self, token: str) -> tuple[int, int]:
        return _read_pair(self._preferences, token)

    # --- the address a link was sent to

    def address_tag(self, subscriber_id: int, email_key: str) -> str:
        """A short keyed digest of one row's id and address, to carry in a link instead of the address.

        A link with it acts only while the row it names still has the address it was sent to, so
        a link kept by someone whose row was erased can never act for whoever holds that id later.
        """
        _check_id(subscriber_id, "subscriber_id")
        return _tag(self._tag_keys[-1], subscriber_id, email_key)

    def address_tag_matches(self, tag: str, subscriber_id: int, email_key: str) -> bool:
        """Whether `tag` was made for this id and address under any of the keys (rotation)."""
        if not isinstance(tag, str) or not _is_id(subscriber_id):
            return False
        wanted = tag.encode("ascii", "replace")
        return any(
            hmac.compare_digest(_tag(key, subscriber_id, email_key).encode("ascii"), wanted)
            for key in self._tag_keys
        )

    # --- confirm (expires)

    def _confirm_at(self, now: datetime) -> URLSafeTimedSerializer:
        # One serializer per call: the instant is part of it, and this object is shared by threads.
        _epoch_seconds(now)  # refuse a naive datetime here, not deep inside itsdangerous
        return URLSafeTimedSerializer(
            self._keys,
            salt=CONFIRM_SALT,
            signer=ClockedTimestampSigner,
            signer_kwargs={"now": lambda: now},
        )

    def confirm_token(self, subject: str | int, *, now: datetime) -> str:
        """A double opt-in token for an email address or a subscriber id, stamped with `now`.

        The payload is signed, not encrypted: prefer the subscriber id so that the address does not
        travel in URLs (and proxy logs).
        """
        if isinstance(subject, bool) or not isinstance(subject, str | int):
            raise InvalidInput("confirm token subject must be an email or a subscriber id", field="subject")
        if isinstance(subject, int):
            _check_id(subject, "subscriber_id")
        elif not subject or len(subject) > 320:
            raise InvalidInput("email must be 1 to 320 characters", field="email")
        return str(self._confirm_at(now).dumps(subject))

    def read_confirm(self, token: str, max_age: int | float | timedelta, *, now: datetime) -> str | int:
        """Return the email or subscriber id; TokenExpired when genuine but older than max_age at `now`."""
        seconds = max_age.total_seconds() if isinstance(max_age, timedelta) else float(max_age)
        _precheck(token)
        serializer = self._confirm_at(now)
        try:
            value: Any = serializer.loads(token, max_age=int(seconds))
        except SignatureExpired:
            raise TokenExpired("this confirmation link has expired") from None
        except (BadSignature, ValueError, TypeError):
            raise TokenInvalid("this confirmation link is not valid") from None
        if _is_id(value) or (isinstance(value, str) and 0 < len(value) <= 320):
            return value
        raise TokenInvalid("this confirmation link is not valid")


class _PairMinter:
    """Mints the same bytes as itsdangerous' URLSafeSerializer for an [id, version] pair, 5x faster.

    Two tokens go into every message, so itsdangerous' per-call key derivation, compression
    attempt and object churn (about 55 µs a token) showed up in the send rate. The output is
    checked against itsdangerous when the minter is built; on any difference it falls back to it.
    Reading always goes through itsdangerous.
    """

    def __init__(self, serializer: URLSafeSerializer, newest_key: str, salt: str) -> None:
        self._serializer = serializer
        self._key = hashlib.sha1(salt.encode() + b"signer" + newest_key.encode()).digest()  # noqa: S324
        self._fast = all(
            self._mint_fast(a, b) == str(serializer.dumps([a, b])) for a, b in ((1, 1), (424242, 7))
        )

    def _mint_fast(self, subscriber_id: int, token_version: int) -> str | None:
        """The token, or None when itsdangerous would compress this payload (long, repetitive ids)."""
        data = f"[{subscriber_id},{token_version}]".encode()
        if len(data) > _NEVER_COMPRESSES and len(zlib.compress(data)) < len(data) - 1:
            return None
        payload = base64.urlsafe_b64encode(data).rstrip(b"=")
        mac = hmac.new(self._key, payload, hashlib.sha1).digest()  # itsdangerous' default: HMAC-SHA1
        return (payload + b"." + base64.urlsafe_b64encode(mac).rstrip(b"=")).decode("ascii")

    def mint(self, subscriber_id: int, token_version: int) -> str:
        token = self._mint_fast(subscriber_id, token_version) if self._fast else None
        if token is not None:
            return token
        return str(self._serializer.dumps([subscriber_id, token_version]))


def _tag(key: bytes, subscriber_id: int, email_key: str) -> str:
    message = f"{subscriber_id}:{email_key}".encode("utf-8", "surrogatepass")
    digest = hmac.new(key, message, hashlib.sha256).digest()[:_ADDRESS_TAG_BYTES]
    return base64.urlsafe_b64encode(digest).decode("ascii")


def _check_id(value: int, field: str) -> None:
    if not _is_id(value):
        raise InvalidInput("must be a positive integer", field=field)


def _precheck(token: object) -> None:
    # Junk (empty, huge, SQL, non-ASCII) fails here in microseconds, before base64 or HMAC work.
    if not isinstance(token, str) or len(token) > MAX_TOKEN_LENGTH or not _TOKEN_RE.fullmatch(token):
        raise TokenInvalid("this link is not valid")


def _read_pair(serializer: URLSafeSerializer, token: str) -> tuple[int, int]:
    _precheck(token)
    try:
        value: Any = serializer.loads(token)
    except (BadSignature, ValueError, TypeError):
        raise TokenInvalid("this link is not valid") from None
    if isinstance(value, list) and len(value) == 2 and _is_id(value[0]) and _is_id(value[1]):
        return int(value[0]), int(value[1])
    raise TokenInvalid("this link is not valid")


def _join(base_url: str, kind: str, token: str) -> str:
    _precheck(token)
    base = base_url.rstrip("/")
    if not base.startswith(("https://", "http://")):
        raise InvalidInput("base URL must start with https:// or http://", field="base_url")
    return f"{base}/{kind}/{token}"


def unsubscribe_url(base_url: str, token: str) -> str:
    """`{base}/unsubscribe/{token}`: the RFC 8058 one-click target and the in-body link."""
    return _join(base_url, "unsubscribe", token)


def preferences_url(base_url: str, token: str) -> str:
    """`{base}/preferences/{token}`."""
    return _join(base_url, "preferences", token)


def confirm_url(base_url: str, token: str) -> str:
    """`{base}/confirm/{token}`: GET shows a page, POST confirms (link scanners only GET)."""
    return _join(base_url, "confirm", token)
