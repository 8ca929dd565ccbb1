"""VERP return paths: each copy's envelope sender names the copy, so a bounce says whose copy failed.

Delivery status notifications go to the envelope sender (MAIL FROM), not to the From header, and
their bodies come in dozens of shapes. Putting the copy in the sender's address is the one thing
every MTA hands back untouched: `bounces@news.example.com` becomes
`bounces+<token>@news.example.com`, and a relay with `recipient_delimiter = +` delivers all of
them to `bounces`.

The token is short and safe in any local part and any case, because some MTAs lower-case local
parts: lower-case base32 (a-z, 2-7) of two varints (edition id, subscriber id) followed by 48 bits
of HMAC-SHA256 under the secret key. Anyone can write a DSN to the bounce address; without the
key nobody can write one that bounces a reader of their choosing. Keys are given oldest first,
like the reader links: the newest signs, every key verifies.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from briefing.errors import InvalidInput
from briefing.mail.transport import envelope_ok

MAC_BYTES = 6
_PURPOSE = b"briefing return path v1"
_TOKEN_RE = re.compile(r"[a-z2-7]{13,32}")
_LOCAL_RE = re.compile(r"[A-Za-z0-9!#$%&'*/=?^_`{|}~.-]+")
_MAX_LOCAL = 64  # RFC 5321 section 4.5.3.1.1
_MAX_TOKEN = 32  # two ids below 2**48 (7 varint bytes each) and the MAC: 20 bytes of base32
_ADDRESS_RE = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@[A-Za-z0-9.-]+")


@dataclass(frozen=True, slots=True)
class CopyRef:
    """One reader's copy of one edition, as a bounce names it."""

    edition_id: int
    subscriber_id: int


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _read_varints(data: bytes) -> list[int] | None:
    values: list[int] = []
    value = shift = 0
    for index, byte in enumerate(data):
        if shift == 0 and byte == 0x80:
            return None  # a padded encoding: ours are minimal, so this was not minted here
        value |= (byte & 0x7F) << shift
        if byte & 0x80:
            shift += 7
            if shift > 63:
                return None
            continue
        values.append(value)
        value = shift = 0
        if index == len(data) - 1:
            return values
    return None  # ended inside a number


class ReturnPath:
    """Mints and reads the envelope senders of one bounce address."""

    def __init__(self, bounce_address: str, keys: Sequence[str]) -> None:
        local, at, domain = (bounce_address or "").strip().rpartition("@")
        if (
            not at
            or not envelope_ok(bounce_address.strip())
            or not _LOCAL_RE.fullmatch(local)
            or "+" in local
            or len(local) + 1 + _MAX_TOKEN > _MAX_LOCAL
            or "." not in domain
        ):
            raise InvalidInput(
                "must be a plain address such as bounces@news.example.com "
                f"(no '+', at most {_MAX_LOCAL - 1 - _MAX_TOKEN} characters before the @)",
                field="bounce_address",
            )
        if not keys or not all(keys):
            raise InvalidInput("a secret key is needed to sign return paths", field="secret_key")
        self.local = local
        self.domain = domain.lower()
        self._keys = [hmac.new(k.encode("utf-8"), _PURPOSE, hashlib.sha256).digest() for k in keys]

    @property
    def bounce_address(self) -> str:
        return f"{self.local}@{self.domain}"

    def _mac(self, key: bytes, payload: bytes) -> bytes:
        return hmac.new(key, payload, hashlib.sha256).digest()[:MAC_BYTES]

    def token(self, edition_id: int, subscriber_id: int) -> str:
        for value, name in ((edition_id, "edition_id"), (subscriber_id, "subscriber_id")):
            if type(value) is not int or not 0 < value < 2**48:
                raise InvalidInput("must be a positive integer", field=name)
        payload = _varint(edition_id) + _varint(subscriber_id)
        raw = payload + self._mac(self._keys[-1], payload)
        return base64.b32encode(raw).decode("ascii").rstrip("=").lower()

    def address(self, edition_id: int, subscriber_id: int) -> str:
        """The envelope sender for one reader's copy of one edition."""
        return f"{self.local}+{self.token(edition_id, subscriber_id)}@{self.domain}"

    def read_token(self, token: str) -> CopyRef | None:
        """The copy a token names, or None when it is malformed or its signature does not verify."""
        text = token.strip().lower()
        if not _TOKEN_RE.fullmatch(text):
            return None
        try:
            raw = base64.b32decode(text.upper() + "=" * (-len(text) % 8))
        except ValueError:
            return None
        payload, mac = raw[:-MAC_BYTES], raw[-MAC_BYTES:]
        if len(payload) < 2 or not any(hmac.compare_digest(self._mac(k, payload), mac) for k in self._keys):
            return None
        values = _read_varints(payload)
        if values is None or len(values) != 2 or min(values) <= 0:
            return None
        return CopyRef(values[0], values[1])

    def decode(self, address: str) -> CopyRef | None:
        """The copy an address names when it is one of ours and verifies; None for anything else."""
        local, at, domain = address.strip().strip("<>").rpartition("@")
        if not at or domain.lower() != self.domain:
            return None
        base, plus, token = local.partition("+")
        if not plus or base.lower() != self.local.lower():
            return None
        return self.read_token(token)

    def find(self, texts: Iterable[str]) -> CopyRef | None:
        """The first verified copy named by any address in the given header values."""
        for text in texts:
            for candidate in _ADDRESS_RE.findall(text or ""):
                ref = self.decode(candidate)
                if ref is not None:
                    return ref
        return None
