"""MIME bytes for one reader, built from a skeleton prepared once per edition.

Building an `EmailMessage` per reader costs milliseconds (the email package re-encodes 70 KB of HTML
in pure Python each time). Here everything that is the same for every reader (headers, MIME
structure, the quoted-printable encoding of the text and HTML around the per-reader tokens) is
encoded once; per reader only a handful of short values are escaped, encoded and joined into bytes.

What the wire sees, and why:
- Every body line is at most 76 characters (RFC 2045). Each static segment is encoded on its own and
  ends with a soft line break, so a per-reader value always starts a fresh encoded line and never
  shifts the encoding of the 70 KB around it. Soft breaks decode to nothing: the decoded body equals
  reader_copy.personalise, the preview's fill of the same reader_values.
- No line starts with ".": quoted-printable writes a line's leading "." as =2E (any octet may be
  encoded), and headers, folds and boundaries never start with one. So SMTP's dot-stuffing (RFC 5321
  §4.5.2) has nothing to change, and one set of bytes is what the session sends, what a Maildir
  stores, what DKIM signs and what the reader gets: `render` returns it as `transport.DotSafe`, and
  the session sends it without scanning it again.
- Headers are written by hand, never from raw input, with the helpers in `mail.headers`.
- Headers are ASCII, except the To line of a reader whose address has non-ASCII before the @ when
  the template allows it (`smtputf8`): that line is UTF-8 (RFC 6532), and the SMTP session sends
  such a copy only with the SMTPUTF8 parameter (RFC 6531). Every other copy is byte for byte what
  it would be without the setting.

DKIM signing of these bytes is in `mail.dkim`.
"""

from __future__ import annotations

import binascii
import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime

from briefing.domain import Recipient
from briefing.errors import InvalidInput
from briefing.mail.headers import (
    HOSTNAME_RE,
    MAX_LINE,
    check_address,
    check_url,
    clean_header_text,
    encode_phrase,
    encode_unstructured,
    fold,
    format_address,
    validate_address,
)
from briefing.mail.transport import DotSafe
from briefing.reader_copy import reader_values, split_on_tokens

_CRLF = b"\r\n"
_SOFT_BREAK = b"=\r\n"

_LIST_ID_RE = re.compile(r"[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
_EDITION_KEY_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


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
    if len(encoded) > MAX_LINE and any(len(line) > MAX_LINE for line in encoded.split(_CRLF)):
        encoded = _break_long_lines(encoded)
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
    if encoded.startswith(b".") or b"\n." in encoded:
        encoded = _escape_leading_dots(encoded)
    return encoded


def _break_long_lines(encoded: bytes) -> bytes:
    """Soft-break the lines b2a_qp leaves longer than 76 characters.

    It counts a space or tab before a line break as one character, then writes it as "=20" or
    "=09": a 74-character line ending in a space comes out 77 long. A break never splits an =XX escape.
    """
    out: list[bytes] = []
    for line in encoded.split(_CRLF):
        for _ in range(len(line)):  # bounded: each turn takes at least 73 characters off
            if len(line) <= MAX_LINE:
                break
            head, line = _soft_break(line)
            out.append(head)
        out.append(line)
    return _CRLF.join(out)


def _soft_break(line: bytes) -> tuple[bytes, bytes]:
    """The first 75 characters of an over-long line with a soft break ("="), and the rest.

    The break moves left rather than split an =XX escape.
    """
    cut = MAX_LINE - 1
    if line[cut - 1 : cut] == b"=":
        cut -= 1
    elif line[cut - 2 : cut - 1] == b"=":
        cut -= 2
    return line[:cut] + b"=", line[cut:]


def _escape_leading_dots(encoded: bytes) -> bytes:
    """Write each line's leading "." as =2E, breaking a line that grows past 76 once more.

    Every piece `_qp` makes starts a line, so this keeps the whole message free of lines SMTP would
    have to dot-stuff. A break never splits an =XX escape, and a "." it brings to a line start is
    escaped in turn.
    """
    out: list[bytes] = []
    for line in encoded.split(_CRLF):
        while line.startswith(b"."):
            line = b"=2E" + line[1:]
            if len(line) <= MAX_LINE:
                break
            head, line = _soft_break(line)
            out.append(head)
        out.append(line)
    return _CRLF.join(out)


# A per-reader value that quoted-printable leaves as it is (printable ASCII but "=", not starting
# with "." and short enough for one line with its soft break): the common case, a link or a name.
_QP_LITERAL_RE = re.compile(r"[!-<>-~][ !-<>-~]{0,73}[!-<>-~]|[!-<>-~]")
_HTML_SPECIAL_RE = re.compile("[&<>\"']")


def _qp_value(value: str) -> bytes:
    """`_qp` of one per-reader value, without the encoder when nothing needs encoding.

    The result is byte for byte what `_qp` gives (the tests check it): b2a_qp leaves printable
    ASCII other than "=" alone (a space only when not last), and a line that short needs no break.
    """
    if value[:1] != "." and _QP_LITERAL_RE.fullmatch(value):
        return value.encode("ascii") + _SOFT_BREAK
    return _qp(value)


def _normalise_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


@dataclass(frozen=True, slots=True)
class _Part:
    """One body part: pre-encoded static segments, and which per-reader value goes between them."""

    segments: tuple[bytes, ...]  # len(slots) + 1 items
    slots: tuple[int, ...]  # index into the reader's value tuple (0 unsubscribe, 1 preferences, 2 name)


def _split_part(text: str) -> _Part:
    pieces, slots = split_on_tokens(_normalise_newlines(text))
    segments = tuple(_qp(p) for p in pieces[0::2])
    return _Part(segments, tuple(value for _, value in slots))


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
        smtputf8: bool = False,
    ) -> None:
        """`smtputf8`: the relay takes SMTPUTF8, so readers' addresses may have non-ASCII before
        the @; without it such a copy is refused here, as an unusable address."""
        self.smtputf8 = smtputf8
        self.from_address = validate_address(from_address, "from_address")
        reply = validate_address(reply_to, "reply_to") if reply_to else ""
        self.unsubscribe_mailto = validate_address(unsubscribe_mailto, "unsubscribe_mailto")
        if not HOSTNAME_RE.fullmatch(message_id_domain or ""):
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
        *,
        date: datetime,
    ) -> DotSafe:
        """The complete message for one reader, CRLF line ends, ready for SMTP DATA or DKIM signing.

        `date` (timezone-aware) is the Date header: the caller's clock, so a retry or a test
        chooses it.
        """
        return self.render_with_id(recipient, date=date)[0]

    def render_with_id(self, recipient: Recipient, *, date: datetime) -> tuple[DotSafe, str]:
        """`render`, and the Message-ID it wrote (computed once per copy)."""
        sid = recipient.subscriber_id
        if type(sid) is not int or sid <= 0:
            raise InvalidInput("must be a positive integer", field="subscriber_id")
        address = check_address(recipient.email, "email", allow_smtputf8=self.smtputf8)
        # The one personalisation rule (reader_copy), so the send shows what the preview showed.
        values = reader_values(recipient)
        unsub = check_url(values.unsubscribe_url, "unsubscribe_url")
        prefs = check_url(values.preferences_url, "preferences_url")
        text_values = (_qp_value(unsub), _qp_value(prefs), _qp_value(values.first_name))
        html_values = text_values
        if _HTML_SPECIAL_RE.search(unsub + prefs + values.first_name):
            escaped = values.escaped()
            html_values = (_qp_value(escaped[0]), _qp_value(escaped[1]), _qp_value(escaped[2]))

        name = clean_header_text(recipient.name)
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
        message_id = self.message_id(sid)

        out = [
            self._head_from,
            fold(to_line).encode("ascii" if address.isascii() else "utf-8"),
            _CRLF,
            self._head_subject,
            b"Date: ",
            self._date(date),
            b"\r\nMessage-ID: ",
            message_id.encode("ascii"),
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
        return DotSafe(b"".join(out)), message_id


def _fill(out: list[bytes], part: _Part, values: tuple[bytes, bytes, bytes]) -> None:
    segments = part.segments
    out.append(segments[0])
    for i, slot in enumerate(part.slots):
        out.append(values[slot])
        out.append(segments[i + 1])
