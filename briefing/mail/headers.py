"""Header values that are safe to write by hand: cleaned text, checked addresses and URLs, folding.

Every value is stripped of CR, LF and other controls, display names are atoms, quoted strings or
RFC 2047 encoded words (also when the text merely looks like an encoded word, so
`=?UTF-8?Q?=0A?=` cannot decode to a newline), and lines are folded at 76 characters where the
grammar allows. A line that cannot fold (a long URL) stays under SMTP's 998 limit or is refused.
Addresses are validated with email-validator once per edition (From, Reply-To, mailto) and with a
strict ASCII pattern per reader (microseconds instead of ~70 µs). A reader's address with non-ASCII
before the @ (RFC 6531/6532, SMTPUTF8) is accepted only when the caller says the relay takes it;
only those rare addresses pay for email-validator per copy.
"""

from __future__ import annotations

import base64
import re
import unicodedata

from briefing.errors import InvalidInput

MAX_LINE = 76  # RFC 2045 body lines; also our target for headers
MAX_HEADER_LINE = 998  # RFC 5322 hard limit for a header line that cannot fold
MAX_URL_LENGTH = 900

# C0 controls, DEL, NEL and the Unicode line/paragraph separators: none may reach a header.
_CONTROLS_RE = re.compile("[\x00-\x1f\x7f\x85\u2028\u2029]")
_SPACES_RE = re.compile(" {2,}")
_SURROGATES_RE = re.compile("[\ud800-\udfff]")
# What we accept per reader: a dot-atom local part and an ASCII (or punycode) domain. Stricter than
# RFC 5321 on purpose: quoted local parts are refused at import time anyway, and SMTPUTF8 addresses
# take the slower path of `check_address(..., allow_smtputf8=True)`.
_ADDRESS_RE = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z0-9-]{2,63}"
)
HOSTNAME_RE = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z0-9-]{2,63}")
_LIST_ID_RE = re.compile(r"[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
_EDITION_KEY_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_URL_RE = re.compile(
    r"https?://[A-Za-z0-9.-]+(?::[0-9]{1,5})?(?:/[!#-;=?-~]*)?"
)  # no < > " space or controls
_LOOPBACK_HTTP = ("http://127.0.0.1", "http://localhost", "http://[::1]")
# RFC 5322 atext; a display name made only of these and single spaces needs no quoting.
_ATOM_PHRASE_RE = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?: [A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")

# RFC 2047 "Q" in a phrase: only these stay literal; space becomes "_".
_Q_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!*+-/")
_Q_BYTE = {b: (chr(b) if b in _Q_SAFE else "_" if b == 0x20 else f"={b:02X}") for b in range(256)}
_EW_PREFIX = "=?utf-8?q?"
_EW_PREFIX_B = "=?utf-8?b?"
_EW_MAX = 66  # keeps "Reply-To: " + one encoded word within 76 characters


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


def check_address(address: str, field: str, *, allow_smtputf8: bool = False) -> str:
    """Per-reader check: cheap, and enough to keep CR/LF, spaces and brackets out of headers and SMTP.

    With `allow_smtputf8` an address with non-ASCII characters is checked by `utf8_address`
    instead; ASCII addresses take the same path either way, so their copies do not change.
    """
    if not isinstance(address, str) or len(address) > 254 or not _ADDRESS_RE.fullmatch(address):
        if allow_smtputf8 and isinstance(address, str) and not address.isascii():
            return utf8_address(address, field)
        raise InvalidInput("not a usable email address", field=field)
    if "=?" in address:
        # Legal atext, but some clients decode it as an encoded word (cpython #121650 territory).
        raise InvalidInput("an address must not look like an encoded word", field=field)
    return address


def utf8_text_ok(address: str) -> bool:
    """Whether non-ASCII text can stand in an SMTP command or a UTF-8 header: at most 254 octets of
    well-formed UTF-8 and no control, format, separator, private-use or unassigned character (no
    U+2028 line break, no bidi override, no lone surrogate)."""
    try:
        size = len(address.encode("utf-8"))
    except UnicodeEncodeError:
        return False
    return size <= 254 and not any(unicodedata.category(ch)[0] in "CZ" for ch in address if not ch.isascii())


def utf8_address(address: str, field: str) -> str:
    """An address that needs SMTPUTF8 (RFC 6531), checked with email-validator.

    Returns the form to write in the To header and on the envelope: the address as stored
    (NFC-normalised), or its ASCII form when only the domain is internationalised, which then needs
    no SMTPUTF8 at all (IDNA A-labels, as `validate_address` gives).
    """
    from email_validator import EmailNotValidError, validate_email

    if not isinstance(address, str) or _CONTROLS_RE.search(address) or not utf8_text_ok(address):
        raise InvalidInput("not a usable email address", field=field)
    try:
        result = validate_email(address, check_deliverability=False, allow_smtputf8=True)
    except EmailNotValidError as exc:
        raise InvalidInput(f"not a usable email address: {exc}", field=field) from None
    if result.ascii_email:
        return check_address(result.ascii_email, field)
    normalized = result.normalized
    if "=?" in normalized or any(c in normalized for c in ' "<>()[],;:\\'):
        # email-validator refuses quoted local parts by default; this keeps the header grammar simple.
        raise InvalidInput("not a usable email address", field=field)
    return normalized


def validate_address(address: str, field: str) -> str:
    """Edition-level check with email-validator (normalises the domain); refuses what SMTP cannot carry."""
    from email_validator import EmailNotValidError, validate_email

    if not isinstance(address, str) or _CONTROLS_RE.search(address):
        raise InvalidInput("email address contains control characters", field=field)
    try:
        result = validate_email(address, check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError as exc:
        raise InvalidInput(f"not a valid email address: {exc}", field=field) from None
    return check_address(result.ascii_email or result.normalized, field)  # IDNA domain: its ASCII form


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
