"""MIME bytes for one reader, built from a skeleton prepared once per edition.

Building an `EmailMessage` per reader costs milliseconds (the email package re-encodes 70 KB of HTML
in pure Python each time). Here everything that is the same for every reader (headers, MIME
structure, the quoted-printable encoding of the text and HTML around the per-reader tokens) is
encoded once; per reader only a handful of short values are escaped, encoded and joined into bytes.

What the wire sees, and why:
- Every body line is at most 76 characters (RFC 2045). Each static segment is encoded on its own and
  ends with a soft line break, so a per-reader value always starts a fresh encoded line and never
  shifts the encoding of the 70 KB around it. Soft breaks decode to nothing: the decoded body equals
  a plain `str.replace` of the tokens.
- Headers are written by hand, never from raw input: every value is stripped of CR, LF and other
  controls, display names are atoms, quoted strings or RFC 2047 encoded words (also when the text
  merely looks like an encoded word, so `=?UTF-8?Q?=0A?=` cannot decode to a newline), and lines are
  folded at 76 characters where the grammar allows. A line that cannot fold (a long URL) stays under
  SMTP's 998 limit or the build fails.
- Addresses are validated with email-validator once per edition (From, Reply-To, mailto) and with a
  strict ASCII pattern per reader (microseconds instead of ~70 µs).

DKIM: `DkimSigner` signs with c=relaxed/simple using OpenSSL through `cryptography` (an RSA-2048
signature costs about 0.25 ms, ed25519 0.03 ms, against 7-9 ms for dkimpy's pure-Python RSA). The
body hash has to cover each reader's real body, so SHA-256 over ~85 KB is paid per message too. The
canonicalisation is the small subset of RFC 6376 these messages need, and the tests check it
against dkimpy's verifier.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import html
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime

from briefing.domain import (
    TOKEN_FIRST_NAME,
    TOKEN_PREFERENCES_URL,
    TOKEN_UNSUBSCRIBE_URL,
    Recipient,
)
from briefing.errors import InvalidInput

MAX_LINE = 76  # RFC 2045 body lines; also our target for headers
MAX_HEADER_LINE = 998  # RFC 5322 hard limit for a header line that cannot fold
MAX_URL_LENGTH = 900

_CRLF = b"\r\n"
_SOFT_BREAK = b"=\r\n"

# C0 controls, DEL, NEL and the Unicode line/paragraph separators: none may reach a header.
_CONTROLS_RE = re.compile("[\x00-\x1f\x7f\x85\u2028\u2029]")
_SPACES_RE = re.compile(" {2,}")
_SURROGATES_RE = re.compile("[\ud800-\udfff]")
# What we accept per reader: a dot-atom local part and an ASCII (or punycode) domain. Stricter than
# RFC 5321 on purpose: quoted local parts and SMTPUTF8 addresses are refused at import time anyway.
_ADDRESS_RE = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z0-9-]{2,63}"
)
_HOSTNAME_RE = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z0-9-]{2,63}")
_LIST_ID_RE = re.compile(r"[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
_EDITION_KEY_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_URL_RE = re.compile(
    r"https?://[A-Za-z0-9.-]+(?::[0-9]{1,5})?(?:/[!#-;=?-~]*)?"
)  # no < > " space or controls
_LOOPBACK_HTTP = ("http://127.0.0.1", "http://localhost", "http://[::1]")
# RFC 5322 atext; a display name made only of these and single spaces needs no quoting.
_ATOM_PHRASE_RE = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?: [A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
_TOKEN_SPLIT_RE = re.compile(
    "("
    + "|".join(re.escape(t) for t in (TOKEN_UNSUBSCRIBE_URL, TOKEN_PREFERENCES_URL, TOKEN_FIRST_NAME))
    + ")"
)
_TOKEN_INDEX = {TOKEN_UNSUBSCRIBE_URL: 0, TOKEN_PREFERENCES_URL: 1, TOKEN_FIRST_NAME: 2}

# RFC 2047 "Q" in a phrase: only these stay literal; space becomes "_".
_Q_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!*+-/")
_Q_BYTE = {b: (chr(b) if b in _Q_SAFE else "_" if b == 0x20 else f"={b:02X}") for b in range(256)}
_EW_PREFIX = "=?utf-8?q?"
_EW_PREFIX_B = "=?utf-8?b?"
_EW_MAX = 66  # keeps "Reply-To: " + one encoded word within 76 characters

SIGNED_HEADERS = (
    "from",
    "to",
    "subject",
    "date",
    "message-id",
    "reply-to",
    "list-id",
    "list-unsubscribe",
    "list-unsubscribe-post",
    "mime-version",
    "content-type",
)


# --- header value helpers ---------------------------------------------------------------------


def clean_header_text(value: str) -> str:
    """Make free text safe for a header: controls and line breaks become spaces, runs collapse.

    Names and subjects are replaced rather than refused because they come from imports and editors;
    refusing would drop a reader or block an edition over a stray tab.
    """
    text = _CONTROLS_RE.sub(" ", value)
    text = _SURROGATES_RE.sub("\ufffd", text)
    if "  " in text:
        text = _SPACES_RE.sub(" ", text)
    return text.strip(" ")


def first_name(name: str, fallback: str = "there") -> str:
    """The first word of the reader's name for %%FIRST_NAME%%: the same rule as render.personalise."""
    words = clean_header_text(name).split()
    return words[0] if words else fallback


def check_address(address: str, field: str) -> str:
    """Per-reader check: cheap, and enough to keep CR/LF, spaces and brackets out of headers and SMTP."""
    if not isinstance(address, str) or len(address) > 254 or not _ADDRESS_RE.fullmatch(address):
        raise InvalidInput("not a usable email address", field=field)
    if "=?" in address:
        # Legal atext, but some clients decode it as an encoded word (cpython #121650 territory).
        raise InvalidInput("an address must not look like an encoded word", field=field)
    return address


def validate_address(address: str, field: str) -> str:
    """Edition-level check with email-validator (normalises the domain); refuses what SMTP cannot carry."""
    from email_validator import EmailNotValidError, validate_email

    if not isinstance(address, str) or _CONTROLS_RE.search(address):
        raise InvalidInput("email address contains control characters", field=field)
    try:
        result = validate_email(address, check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError as exc:
        raise InvalidInput(f"not a valid email address: {exc}", field=field) from None
    return check_address(result.normalized, field)


def check_url(url: str, field: str) -> str:
    """An absolute https URL (http only on loopback, for local demos), free of anything a header fears."""
    if not isinstance(url, str) or len(url) > MAX_URL_LENGTH or not _URL_RE.fullmatch(url):
        raise InvalidInput("not a usable absolute URL", field=field)
    if url.startswith("http://") and not url.startswith(_LOOPBACK_HTTP):
        raise InvalidInput("must use https:// (http:// only for a loopback host)", field=field)
    return url


def _q_words(text: str) -> list[str]:
    """RFC 2047 encoded words (Q, or B when most bytes would need escaping), each short enough to
    fold onto its own line.

    A word never splits a character, and where possible it ends just before a space, which then
    opens the next word: decoders drop the whitespace *between* encoded words, so that space must
    live inside one of them.
    """
    chars = [ch.encode("utf-8", "replace") for ch in text]
    raw_size = sum(len(c) for c in chars)
    escaped = sum(1 for c in chars for b in c if b not in _Q_SAFE and b != 0x20)
    use_b = escaped * 3 > raw_size  # B costs 4/3 per byte; Q costs 3 per escaped byte
    prefix = _EW_PREFIX_B if use_b else _EW_PREFIX
    room = _EW_MAX - len(prefix) - 2

    def cost(pieces: list[bytes]) -> int:
        if use_b:
            return 4 * -(-sum(len(p) for p in pieces) // 3)
        return sum(len(_Q_BYTE[b]) for p in pieces for b in p)

    def word(pieces: list[bytes]) -> str:
        data = b"".join(pieces)
        if use_b:
            return prefix + base64.b64encode(data).decode("ascii") + "?="
        return prefix + "".join(_Q_BYTE[b] for b in data) + "?="

    words: list[str] = []
    current: list[bytes] = []
    last_space = -1
    for piece in chars:
        if current and cost([*current, piece]) > room:
            cut = last_space if last_space > 0 else len(current)
            words.append(word(current[:cut]))
            current = current[cut:]
            last_space = -1
        if piece == b" ":
            last_space = len(current)
        current.append(piece)
    if current:
        words.append(word(current))
    return words


def _needs_encoding(text: str) -> bool:
    # Encoded words also carry ASCII text that merely looks like an encoded word, and words too long to
    # fold (encoded words can be split anywhere; a 200-character atom cannot).
    return not text.isascii() or "=?" in text or (len(text) > 60 and max(map(len, text.split(" "))) > 60)


def encode_phrase(name: str) -> str:
    """A display name as atoms, a quoted string or encoded words; the input must already be cleaned."""
    if not name:
        return ""
    if _needs_encoding(name):
        return " ".join(_q_words(name))
    if _ATOM_PHRASE_RE.fullmatch(name):
        return name
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def encode_unstructured(text: str) -> str:
    """Subject-style text: left as is when ASCII, otherwise encoded words (folded later at the spaces)."""
    return " ".join(_q_words(text)) if _needs_encoding(text) else text


def format_address(name: str, address: str) -> str:
    phrase = encode_phrase(clean_header_text(name))
    return f"{phrase} <{address}>" if phrase else address


def fold(line: str) -> str:
    """Fold a header line at spaces to at most 76 characters; refuse one that would pass 998."""
    if len(line) <= MAX_LINE:
        return line
    colon = line.index(":")
    pieces: list[str] = []
    start = 0
    for _ in range(len(line)):  # bounded: each turn consumes at least one character
        if len(line) - start <= MAX_LINE:
            break
        lowest = colon + 2 if start == 0 else start + 1
        cut = line.rfind(" ", lowest, start + MAX_LINE + 1)
        if cut <= start or cut < lowest:
            cut = line.find(" ", start + MAX_LINE + 1)
            if cut == -1:
                break
        pieces.append(line[start:cut])
        start = cut
    pieces.append(line[start:])
    if any(len(p) > MAX_HEADER_LINE for p in pieces):
        name = line[:colon]
        raise InvalidInput("header line too long to send", field=name)
    return "\r\n".join(pieces)


# --- body encoding ----------------------------------------------------------------------------


def _qp(text: str) -> bytes:
    """Quoted-printable with CRLF line ends, 76-character lines, and a trailing soft break.

    The trailing soft break (unless the text ends a line) is what lets the next piece, static or
    per-reader, start on a fresh line without changing the decoded text.
    """
    if not text:
        return b""
    encoded = binascii.b2a_qp(text.encode("utf-8", "surrogatepass"), istext=True)
    encoded = encoded.replace(b"\n", _CRLF)
    if not encoded.endswith(_CRLF):
        head, sep, last = encoded.rpartition(_CRLF)
        if len(last) >= MAX_LINE:
            # b2a_qp fills a last line up to 76: break it once more so the soft break's "=" fits,
            # never inside an =XX escape ("=" only ever starts one; b2a_qp writes a literal one as =3D).
            cut = MAX_LINE - 1
            if last[cut - 1 : cut] == b"=":
                cut -= 1
            elif last[cut - 2 : cut - 1] == b"=":
                cut -= 2
            encoded = head + sep + last[:cut] + _SOFT_BREAK + last[cut:]
        encoded += _SOFT_BREAK
    return encoded


def _normalise_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


@dataclass(frozen=True, slots=True)
class _Part:
    """One body part: pre-encoded static segments, and which per-reader value goes between them."""

    segments: tuple[bytes, ...]  # len(slots) + 1 items
    slots: tuple[int, ...]  # index into the reader's value tuple (0 unsubscribe, 1 preferences, 2 name)


def _split_part(text: str) -> _Part:
    pieces = _TOKEN_SPLIT_RE.split(_normalise_newlines(text))
    segments = tuple(_qp(p) for p in pieces[0::2])
    slots = tuple(_TOKEN_INDEX[p] for p in pieces[1::2])
    return _Part(segments, slots)


def personalise(
    template: str, unsubscribe_url: str, preferences_url: str, name: str, *, is_html: bool
) -> str:
    """The straightforward fill of the tokens; the fast path must decode to exactly this."""
    values = (unsubscribe_url, preferences_url, name)
    if is_html:
        values = (
            html.escape(unsubscribe_url, quote=True),
            html.escape(preferences_url, quote=True),
            html.escape(name, quote=True),
        )
    out = _normalise_newlines(template)
    for token, value in zip(
        (TOKEN_UNSUBSCRIBE_URL, TOKEN_PREFERENCES_URL, TOKEN_FIRST_NAME), values, strict=True
    ):
        out = out.replace(token, value)
    return out


# --- the per-edition template -----------------------------------------------------------------


class MessageTemplate:
    """Everything about an edition's message that does not depend on the reader, encoded once."""

    def __init__(
        self,
        *,
        from_name: str,
        from_address: str,
        subject: str,
        html: str,
        text: str,
        list_id: str,
        unsubscribe_mailto: str,
        message_id_domain: str,
        edition_key: str,
        reply_to: str = "",
        list_name: str = "",
        first_name_fallback: str = "there",  # as render.FIRST_NAME_FALLBACK: preview and send agree
    ) -> None:
        self.from_address = validate_address(from_address, "from_address")
        reply = validate_address(reply_to, "reply_to") if reply_to else ""
        self.unsubscribe_mailto = validate_address(unsubscribe_mailto, "unsubscribe_mailto")
        if not _HOSTNAME_RE.fullmatch(message_id_domain or ""):
            raise InvalidInput("not a host name", field="message_id_domain")
        if not _LIST_ID_RE.fullmatch(list_id or "") or len(list_id) > 200:
            raise InvalidInput("must look like name.example.com", field="list_id")
        if not _EDITION_KEY_RE.fullmatch(edition_key or ""):
            raise InvalidInput("use letters, digits, '.', '_' or '-' (at most 64)", field="edition_key")
        subject_text = clean_header_text(subject)
        if not subject_text:
            raise InvalidInput("the subject is empty", field="subject")
        self.subject = subject_text
        self.edition_key = edition_key
        self.message_id_domain = message_id_domain.lower()
        self.list_id = list_id
        self.first_name_fallback = clean_header_text(first_name_fallback)
        self._text = _split_part(text)
        self._html = _split_part(html)
        self._id_salt = f"{list_id}\0{self.from_address}\0{edition_key}\0".encode()
        # Boundary: "=_" can never occur in quoted-printable output, so it cannot collide with a body.
        digest = hashlib.sha256(
            self._id_salt + text.encode("utf-8", "replace") + html.encode("utf-8", "replace")
        )
        boundary = "=_briefing_" + digest.hexdigest()[:24]

        list_phrase = encode_phrase(clean_header_text(list_name or from_name))
        top = [
            fold("From: " + format_address(from_name, self.from_address)),
        ]
        middle = [fold("Subject: " + encode_unstructured(subject_text))]
        after_mid = []
        if reply:
            after_mid.append(fold("Reply-To: " + reply))
        after_mid.append(
            fold("List-Id: " + (f"{list_phrase} <{list_id}>" if list_phrase else f"<{list_id}>"))
        )
        tail = [
            "List-Unsubscribe-Post: List-Unsubscribe=One-Click",
            "MIME-Version: 1.0",
            f'Content-Type: multipart/alternative;\r\n boundary="{boundary}"',
            "",
            "",
            f"--{boundary}",
            'Content-Type: text/plain; charset="utf-8"',
            "Content-Transfer-Encoding: quoted-printable",
            "",
            "",
        ]
        self._head_from = ("\r\n".join(top) + "\r\n").encode("ascii")
        self._head_subject = ("\r\n".join(middle) + "\r\n").encode("ascii")
        self._head_after_mid = ("\r\n".join(after_mid) + "\r\n").encode("ascii")
        self._head_tail = "\r\n".join(tail).encode("ascii")
        self._between_parts = (
            f"\r\n--{boundary}\r\n"
            'Content-Type: text/html; charset="utf-8"\r\n'
            "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
        ).encode("ascii")
        self._end = f"\r\n--{boundary}--\r\n".encode("ascii")
        self._date_cache: tuple[int, bytes] = (-1, b"")

    def message_id(self, subscriber_id: int) -> str:
        """Stable per (list, sender, edition, reader): a retry carries the same id; readers differ."""
        digest = hashlib.blake2b(self._id_salt + str(subscriber_id).encode(), digest_size=6).hexdigest()
        return f"<{self.edition_key}.{subscriber_id}.{digest}@{self.message_id_domain}>"

    def _date(self, when: datetime) -> bytes:
        if when.tzinfo is None:
            raise InvalidInput("the date must be timezone-aware", field="date")
        stamp = int(when.timestamp())
        cached_stamp, cached = self._date_cache
        if stamp == cached_stamp and when.utcoffset() == UTC.utcoffset(None):
            return cached
        value = format_datetime(when.replace(microsecond=0)).encode("ascii")
        if when.utcoffset() == UTC.utcoffset(None):
            self._date_cache = (stamp, value)
        return value

    def render(
        self,
        recipient: Recipient,
        unsubscribe_url: str | None = None,
        preferences_url: str | None = None,
        *,
        date: datetime,
    ) -> bytes:
        """The complete message for one reader, CRLF line ends, ready for SMTP DATA or DKIM signing.

        `date` (timezone-aware) is the Date header: the caller's clock, so a retry or a test
        chooses it.
        """
        sid = recipient.subscriber_id
        if type(sid) is not int or sid <= 0:
            raise InvalidInput("must be a positive integer", field="subscriber_id")
        address = check_address(recipient.email, "email")
        unsub = check_url(unsubscribe_url or recipient.unsubscribe_url, "unsubscribe_url")
        prefs = preferences_url if preferences_url is not None else recipient.preferences_url
        # Without a preferences page the link leads to the unsubscribe page, as in render.personalise.
        prefs = check_url(prefs, "preferences_url") if prefs else unsub

        name = clean_header_text(recipient.name)
        given = first_name(name, self.first_name_fallback)
        plain = (unsub, prefs, given)
        escaped = (
            html.escape(unsub, quote=True),
            html.escape(prefs, quote=True),
            html.escape(given, quote=True),
        )
        text_values = (_qp(unsub), _qp(prefs), _qp(given))
        html_values = text_values if escaped == plain else (_qp(escaped[0]), _qp(escaped[1]), _qp(escaped[2]))

        if name:
            phrase = encode_phrase(name)
            to_line = f"To: {phrase} <{address}>"
        else:
            to_line = f"To: {address}"
        token = unsub.rsplit("/", 1)[-1]
        subject_tag = (
            token if token and token.replace("-", "").replace("_", "").replace(".", "").isalnum() else sid
        )
        mailto = f"mailto:{self.unsubscribe_mailto}?subject=unsubscribe-{subject_tag}"
        list_unsub = f"List-Unsubscribe: <{unsub}>, <{mailto}>"

        out = [
            self._head_from,
            fold(to_line).encode("ascii"),
            _CRLF,
            self._head_subject,
            b"Date: ",
            self._date(date),
            b"\r\nMessage-ID: ",
            self.message_id(sid).encode("ascii"),
            _CRLF,
            self._head_after_mid,
            fold(list_unsub).encode("ascii"),
            _CRLF,
            self._head_tail,
        ]
        _fill(out, self._text, text_values)
        out.append(self._between_parts)
        _fill(out, self._html, html_values)
        out.append(self._end)
        return b"".join(out)


def _fill(out: list[bytes], part: _Part, values: tuple[bytes, bytes, bytes]) -> None:
    segments = part.segments
    out.append(segments[0])
    for i, slot in enumerate(part.slots):
        out.append(values[slot])
        out.append(segments[i + 1])


# --- DKIM ---------------------------------------------------------------------------------------

_WSP_RE = re.compile(rb"[ \t]+")


def _relaxed_header(raw: bytes) -> bytes:
    name, _, value = raw.partition(b":")
    value = _WSP_RE.sub(b" ", value.replace(b"\r\n", b"")).strip(b" ")
    return name.strip().lower() + b":" + value


class DkimSigner:
    """DKIM-Signature (RFC 6376, RFC 8463) with c=relaxed/simple, signed by OpenSSL.

    `h=` covers From, To, Subject, Date, Message-ID, Reply-To, List-Id, List-Unsubscribe and
    List-Unsubscribe-Post (RFC 8058 §4), MIME-Version and Content-Type; with `oversign` each name is
    listed once more than it occurs, so nobody can add a second List-Unsubscribe-Post (or From)
    without breaking the signature.
    """

    def __init__(
        self,
        key_pem: bytes | str,
        selector: str,
        domain: str,
        algorithm: str = "rsa-sha256",
        *,
        headers: Sequence[str] = SIGNED_HEADERS,
        oversign: bool = True,
    ) -> None:
        from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
        from cryptography.hazmat.primitives.serialization import load_pem_private_key

        if algorithm not in ("rsa-sha256", "ed25519-sha256"):
            raise InvalidInput("use rsa-sha256 or ed25519-sha256", field="dkim_algorithm")
        if not re.fullmatch(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,62})", selector or ""):
            raise InvalidInput("not a DNS label", field="dkim_selector")
        if not _HOSTNAME_RE.fullmatch(domain or ""):
            raise InvalidInput("not a host name", field="dkim_domain")
        data = key_pem.encode("ascii") if isinstance(key_pem, str) else key_pem
        try:
            key = load_pem_private_key(data, password=None)
        except (ValueError, TypeError) as exc:
            # The message names the problem, never the key material.
            raise InvalidInput(
                f"cannot load the private key ({type(exc).__name__})", field="dkim_key"
            ) from None
        if algorithm == "rsa-sha256":
            if not isinstance(key, rsa.RSAPrivateKey):
                raise InvalidInput("rsa-sha256 needs an RSA key", field="dkim_key")
            if key.key_size < 1024:
                raise InvalidInput("RSA keys below 1024 bits are refused by verifiers", field="dkim_key")
        elif not isinstance(key, ed25519.Ed25519PrivateKey):
            raise InvalidInput("ed25519-sha256 needs an Ed25519 key", field="dkim_key")
        self._key = key
        self.algorithm = algorithm
        self.selector = selector
        self.domain = domain.lower()
        self._headers = tuple(h.lower() for h in headers)
        self._oversign = oversign

    def __repr__(self) -> str:
        return f"DkimSigner(selector={self.selector!r}, domain={self.domain!r}, algorithm={self.algorithm!r})"

    @property
    def dns_name(self) -> str:
        return f"{self.selector}._domainkey.{self.domain}"

    def dns_record(self) -> str:
        """The TXT record to publish at `dns_name`."""
        from cryptography.hazmat.primitives.asymmetric import ed25519
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        public = self._key.public_key()
        if isinstance(public, ed25519.Ed25519PublicKey):
            raw = public.public_bytes(Encoding.Raw, PublicFormat.Raw)
            return "v=DKIM1; k=ed25519; p=" + base64.b64encode(raw).decode("ascii")
        der = public.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
        return "v=DKIM1; k=rsa; p=" + base64.b64encode(der).decode("ascii")

    def sign(self, message: bytes, *, now: datetime) -> bytes:
        """Return the message with a DKIM-Signature header prepended (the body hash covers the real body).

        `now` (timezone-aware) is the signing time written as `t=`.
        """
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

        split = message.find(b"\r\n\r\n")
        if split < 0:
            raise InvalidInput("message has no header/body separator (CRLF CRLF)", field="message")
        head = message[:split]
        body_view = memoryview(message)[split + 4 :]

        # Body, "simple": drop trailing empty lines, end with exactly one CRLF.
        end = len(body_view)
        for _ in range(end // 2 + 1):
            if end >= 2 and body_view[end - 2 : end] == _CRLF:
                end -= 2
            else:
                break
        body_hash = hashlib.sha256(body_view[:end])
        body_hash.update(_CRLF)
        bh = base64.b64encode(body_hash.digest()).decode("ascii")

        # Header fields (with their continuation lines), in order.
        fields: list[tuple[bytes, bytes]] = []
        for line in head.split(_CRLF):
            if line[:1] in (b" ", b"\t") and fields:
                field_name, raw = fields[-1]
                fields[-1] = (field_name, raw + _CRLF + line)
            else:
                fields.append((line.partition(b":")[0].strip().lower(), line))

        signed_names: list[str] = []
        hashed: list[bytes] = []
        used: dict[bytes, int] = {}
        for name in self._headers:
            key = name.encode("ascii")
            instances = [raw for n, raw in fields if n == key]
            count = len(instances)
            if not count and not self._oversign:
                continue
            # RFC 6376 §5.4.2: instances are taken from the bottom up; extra names match nothing.
            for _ in range(count + (1 if self._oversign else 0)):
                taken = used.get(key, 0)
                if taken < count:
                    hashed.append(_relaxed_header(instances[count - 1 - taken]) + _CRLF)
                used[key] = taken + 1
                signed_names.append(name)

        if now.tzinfo is None:
            raise InvalidInput("the signing time must be timezone-aware", field="now")
        stamp = int(now.timestamp())
        tags = [
            "v=1;",
            f"a={self.algorithm};",
            "c=relaxed/simple;",
            f"d={self.domain};",
            f"s={self.selector};",
            f"t={stamp};",
        ]
        header_prefix = fold("DKIM-Signature: " + " ".join(tags))
        h_line = "h=" + ":".join(signed_names) + ";"
        h_lines = fold("X: " + h_line.replace(":", ": ")).removeprefix("X: ").replace(": ", ":")
        header_text = f"{header_prefix}\r\n {h_lines}\r\n bh={bh};\r\n b="
        data = b"".join(hashed) + _relaxed_header(header_text.encode("ascii"))

        if isinstance(self._key, rsa.RSAPrivateKey):
            signature = self._key.sign(data, padding.PKCS1v15(), hashes.SHA256())
        else:
            assert isinstance(self._key, ed25519.Ed25519PrivateKey)
            signature = self._key.sign(hashlib.sha256(data).digest())
        b64 = base64.b64encode(signature).decode("ascii")
        chunks = [b64[i : i + 72] for i in range(0, len(b64), 72)]
        signed_header = header_text + "".join("\r\n " + c for c in chunks) + "\r\n"
        return signed_header.encode("ascii") + message
