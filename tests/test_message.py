from __future__ import annotations

import base64
import email
import re
import types
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from email import policy
from email.header import decode_header, make_header
from email.message import EmailMessage
from email.utils import parseaddr, parsedate_to_datetime

import dkim
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from briefing.domain import (
    TOKEN_FIRST_NAME,
    TOKEN_PREFERENCES_URL,
    TOKEN_UNSUBSCRIBE_URL,
    Recipient,
    RenderedEdition,
    first_name,
)
from briefing.errors import InvalidInput
from briefing.mail.dkim import DkimSigner
from briefing.mail.headers import clean_header_text
from briefing.mail.message import MessageTemplate
from briefing.reader_copy import personalise
from tests.fixtures.smtp import pin_dkim_clock

U, P, N = TOKEN_UNSUBSCRIBE_URL, TOKEN_PREFERENCES_URL, TOKEN_FIRST_NAME
WHEN = datetime(2026, 11, 28, 6, 0, 0, tzinfo=UTC)


def _html() -> str:
    # Like MJML output: very long lines, many "=" in attributes, tokens at awkward offsets.
    story = (
        '<tr><td align="left" style="font-size:0px;padding:10px 25px;word-break:break-word;">'
        '<div style="font-family:Georgia,serif;font-size:16px;line-height:1.5;text-align:left;color:#222;">'
        "Caf\u00e9 owners say the new rules are \u201cunworkable\u201d &amp; costly.</div></td></tr>"
    )
    parts = [f'<!doctype html><html><body><div style="display:none">Morning, {N}</div>']
    for i in range(150):
        parts.append(story)
        if i == 40:
            parts.append(f'<a href="{P}">Preferences</a>')
    parts.append(
        f'<p>Hi {N}, <a href="{U}" style="color:#555">Unsubscribe</a> \u00b7 <a href="{P}">Manage</a></p>'
    )
    parts.append("</body></html>")
    return "".join(parts)


def _text() -> str:
    lines = [f"Good morning, {N}!", ""]
    for i in range(40):
        lines.append(
            f"{i}. A story headline that is fairly long and wraps past the limit of lines - caf\u00e9"
        )
    # Tokens right at the 76-character boundary, at the end of a line, and twice on one line.
    lines.append("x" * 74 + U)
    lines.append("y" * 75 + N + "z")
    lines.append(f"Manage: {P} or leave: {U}")
    lines.append(f"{U}")
    lines.append("trailing spaces before a break   ")
    lines.append(".a line starting with a dot")
    return "\n".join(lines) + "\n"


def make_template(**overrides: object) -> MessageTemplate:
    args: dict[str, object] = {
        "from_name": "The Morning Briefing",
        "from_address": "briefing@news.example.com",
        "subject": "Your briefing for Saturday",
        "html": _html(),
        "text": _text(),
        "list_id": "morning.news.example.com",
        "unsubscribe_mailto": "unsubscribe@news.example.com",
        "message_id_domain": "news.example.com",
        "edition_key": "2026-11-28",
        "reply_to": "desk@news.example.com",
    }
    args.update(overrides)
    return MessageTemplate(**args)  # type: ignore[arg-type]


TEMPLATE = make_template()

RECIPIENTS = [
    Recipient(
        1,
        "alice@example.com",
        "Alice Example",
        "https://news.example.com/unsubscribe/WzEsMV0.abc",
        "https://news.example.com/preferences/WzEsMV0.def",
    ),
    Recipient(
        2,
        "bob@example.org",
        "",
        "https://news.example.com/unsubscribe/WzIsMV0.xyz",
        "https://news.example.com/preferences/WzIsMV0.uvw",
    ),
    Recipient(
        3,
        "jose@example.net",
        "Jos\u00e9 \u00c5lvarez, Jr.",
        "https://news.example.com/unsubscribe/WzMsMV0.q",
        "https://news.example.com/preferences/WzMsMV0.r",
    ),
    Recipient(
        4,
        "zoe@example.com",
        "\u5f20\u4f1f \U0001f600",
        "https://news.example.com/unsubscribe/" + "A" * 300 + ".sig?utm=x&ref=y",
        "https://news.example.com/preferences/p?a=1&b=%22",
    ),
    Recipient(
        5,
        "o.brien@example.com",
        'Sin\u00e9ad <O\'Brien> & "Co"',
        "https://news.example.com/unsubscribe/WzUsMV0.s",
        "https://news.example.com/preferences/WzUsMV0.t",
    ),
    Recipient(
        6,
        "eve@example.com",
        "Eve\r\nBcc: victim@example.net",
        "https://news.example.com/unsubscribe/WzYsMV0.s",
        "https://news.example.com/preferences/WzYsMV0.t",
    ),
]


def parse(raw: bytes) -> EmailMessage:
    msg = email.message_from_bytes(raw, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def decoded_parts(msg: EmailMessage) -> tuple[str, str]:
    parts = list(msg.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    text, html = (str(p.get_content()).replace("\r\n", "\n") for p in parts)
    return text, html


def rfc2047_display_name(raw: bytes, header: str) -> str:
    """Decode a display name the way RFC 2047 says: whitespace between adjacent encoded words is dropped.

    Python's modern header parser keeps that whitespace inside phrases (it decodes "=?q?ab?= =?q?cd?="
    as "ab cd"), so it cannot serve as the oracle for long non-ASCII names; compat32 + decode_header can.
    """
    value = email.message_from_bytes(raw, policy=policy.compat32)[header]
    name, _ = parseaddr(" ".join(str(value).split()))
    return str(make_header(decode_header(name)))


def assert_display_name(raw: bytes, msg: EmailMessage, header: str, expected: str) -> None:
    assert rfc2047_display_name(raw, header) == expected
    modern = msg[header].addresses[0].display_name
    assert "\n" not in modern and "\r" not in modern
    assert re.sub(r"\s", "", modern) == re.sub(r"\s", "", expected)


def reference(recipient: Recipient, html: str, text: str) -> tuple[str, str]:
    """(text, html) as the preview shows them (reader_copy.personalise), with the message's newlines."""
    html, text = (part.replace("\r\n", "\n").replace("\r", "\n") for part in (html, text))
    html, text = personalise(RenderedEdition(WHEN.date(), "s", "", html, text), recipient)
    return text, html


@pytest.mark.parametrize("recipient", RECIPIENTS, ids=lambda r: str(r.subscriber_id))
def test_body_equals_reference(recipient: Recipient) -> None:
    raw = TEMPLATE.render(recipient, date=WHEN)
    text, html = decoded_parts(parse(raw))
    assert (text, html) == reference(recipient, _html(), _text())
    assert "%%" not in text and "%%" not in html


@pytest.mark.parametrize("recipient", RECIPIENTS, ids=lambda r: str(r.subscriber_id))
def test_every_line_is_short(recipient: Recipient) -> None:
    raw = TEMPLATE.render(recipient, date=WHEN)
    assert b"\r\n" in raw and re.search(rb"(?<!\r)\n", raw) is None  # CRLF only
    head, _, body = raw.partition(b"\r\n\r\n")
    assert max(len(line) for line in body.split(b"\r\n")) <= 76
    long_lines = [line for line in head.split(b"\r\n") if len(line) > 76]
    for line in long_lines:
        # Only an unbreakable URL may pass 76: the line is its header name (or the fold's space) and
        # one <...> URI with no space inside, where a fold could have gone; and never SMTP's 998.
        assert UNFOLDABLE_URL_LINE.fullmatch(line), line
        assert len(line) <= 998
    # Only reader 4, with a 300-character unsubscribe link, has one: the check above is exercised.
    assert bool(long_lines) == (recipient.subscriber_id == 4)
    assert raw.isascii()


UNFOLDABLE_URL_LINE = re.compile(rb"(?:List-Unsubscribe: | )<(?:https|mailto):[^\s<>]+>,?")

EXPECTED_HEADERS = [
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "Reply-To",
    "List-Id",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "MIME-Version",
    "Content-Type",
]


@pytest.mark.parametrize("recipient", RECIPIENTS, ids=lambda r: str(r.subscriber_id))
def test_smtputf8_leaves_ascii_readers_copies_byte_for_byte(recipient: Recipient) -> None:
    """The SMTPUTF8 setting changes only copies to non-ASCII addresses (see tests/test_smtputf8.py)."""
    assert make_template(smtputf8=True).render(recipient, date=WHEN) == TEMPLATE.render(recipient, date=WHEN)


def test_headers_exactly() -> None:
    recipient = RECIPIENTS[0]
    raw = TEMPLATE.render(recipient, date=WHEN)
    msg = parse(raw)
    assert list(msg.keys()) == EXPECTED_HEADERS
    assert msg["From"] == "The Morning Briefing <briefing@news.example.com>"
    assert msg["To"] == "Alice Example <alice@example.com>"
    assert msg["Subject"] == "Your briefing for Saturday"
    assert parsedate_to_datetime(msg["Date"]) == WHEN
    assert msg["Reply-To"] == "desk@news.example.com"
    assert msg["List-Id"] == "The Morning Briefing <morning.news.example.com>"
    assert msg["List-Unsubscribe"] == (
        "<https://news.example.com/unsubscribe/WzEsMV0.abc>, "
        "<mailto:unsubscribe@news.example.com?subject=unsubscribe-WzEsMV0.abc>"
    )
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert msg["MIME-Version"] == "1.0"
    assert msg.get_content_type() == "multipart/alternative"
    assert re.fullmatch(r"<2026-11-28\.1\.[0-9a-f]{12}@news\.example\.com>", msg["Message-ID"])
    assert not msg.defects
    for part in msg.iter_parts():
        assert part["Content-Transfer-Encoding"] == "quoted-printable"
        assert part.get_content_charset() == "utf-8"


def test_no_reply_to_when_not_given() -> None:
    msg = parse(make_template(reply_to="").render(RECIPIENTS[0], date=WHEN))
    assert "Reply-To" not in msg


def test_message_id_stable_and_distinct() -> None:
    ids = {TEMPLATE.message_id(r.subscriber_id) for r in RECIPIENTS}
    assert len(ids) == len(RECIPIENTS)
    again = make_template()
    assert again.message_id(42) == TEMPLATE.message_id(42)
    a = parse(TEMPLATE.render(RECIPIENTS[0], date=WHEN))["Message-ID"]
    b = parse(TEMPLATE.render(RECIPIENTS[0], date=WHEN + timedelta(minutes=5)))["Message-ID"]
    assert a == b
    assert make_template(edition_key="2026-11-29").message_id(42) != TEMPLATE.message_id(42)


def test_non_ascii_headers() -> None:
    t = make_template(
        from_name="Le R\u00e9veil \u2014 \u00e9dition", subject="Caf\u00e9 \u2615 and \u201cquotes\u201d " * 5
    )
    msg = parse(t.render(RECIPIENTS[2], date=WHEN))
    assert msg["From"].addresses[0].display_name == "Le R\u00e9veil \u2014 \u00e9dition"
    assert msg["Subject"] == clean_header_text("Caf\u00e9 \u2615 and \u201cquotes\u201d " * 5)
    assert msg["To"].addresses[0].display_name == "Jos\u00e9 \u00c5lvarez, Jr."
    assert msg["To"].addresses[0].addr_spec == "jose@example.net"
    special = parse(TEMPLATE.render(RECIPIENTS[4], date=WHEN))
    assert special["To"].addresses[0].display_name == 'Sin\u00e9ad <O\'Brien> & "Co"'


def test_local_date_offset_kept() -> None:
    local = datetime(2026, 11, 28, 7, 0, tzinfo=timezone(timedelta(hours=1)))
    msg = parse(TEMPLATE.render(RECIPIENTS[0], date=local))
    assert msg["Date"].endswith("+0100")
    with pytest.raises(InvalidInput):
        TEMPLATE.render(RECIPIENTS[0], date=datetime(2026, 11, 28, 6, 0))


INJECTIONS = [
    "Eve\r\nBcc: victim@example.net",
    "Eve\nBcc: victim@example.net",
    "Eve\rBcc: victim@example.net",
    "trailing newline\n",
    "A =?UTF-8?Q?=0A?=Bcc: victim@example.net",
    "=?UTF-8?Q?=0D=0ABcc:_victim@example.net?=",
    'Doe, John "JD"',
    "x" * 10_000,
    "\u202eevil",
    "line\u2028separator\u0085nel",
    "tab\there",
]


@pytest.mark.parametrize("name", INJECTIONS)
def test_header_injection_via_names(name: str) -> None:
    recipient = Recipient(9, "victim@example.com", name, "https://news.example.com/unsubscribe/t.s")
    t = make_template(from_name=name, subject=name, html="<p>hi</p>", text="hi\n")
    raw = t.render(recipient, date=WHEN)
    msg = parse(raw)
    assert list(msg.keys()) == EXPECTED_HEADERS
    assert b"\nBcc:" not in raw and b"\nbcc:" not in raw.lower()
    assert "Bcc" not in msg
    expected = clean_header_text(name)
    assert_display_name(raw, msg, "To", expected)
    assert_display_name(raw, msg, "From", expected)
    assert msg["Subject"] == expected
    assert "\n" not in str(msg["To"]) and "\r" not in str(msg["Subject"])


@pytest.mark.parametrize(
    "address",
    [
        "victim@example.com\r\nBcc: x@example.net",
        "victim@example.com\n",
        "a b@example.com",
        "<victim@example.com>",
        "alice@example.org(<bob@example.org>",
        "=?utf-8?q?x?=@example.com",
        "\u7528\u6237@example.com",
        "no-at-sign",
        "",
    ],
)
def test_bad_addresses_raise(address: str) -> None:
    recipient = Recipient(
        9,
        address,
        "Name",
        "https://news.example.com/unsubscribe/t.s",
        "https://news.example.com/preferences/t.s",
    )
    good = Recipient(9, "a@example.com", "Name", recipient.unsubscribe_url, recipient.preferences_url)
    assert TEMPLATE.render(good, date=WHEN)
    with pytest.raises(InvalidInput):
        TEMPLATE.render(recipient, date=WHEN)
    with pytest.raises(InvalidInput):
        make_template(from_address=address)
    if address:
        with pytest.raises(InvalidInput):
            make_template(reply_to=address)
        with pytest.raises(InvalidInput):
            make_template(unsubscribe_mailto=address)


@pytest.mark.parametrize(
    "url",
    [
        "https://news.example.com/u/x\r\nBcc: a@example.net",
        "https://news.example.com/u/<x>",
        "javascript:alert(1)",
        "http://news.example.com/unsubscribe/t",  # plain http only on loopback
        "https://news.example.com/" + "a" * 1000,
        "",
    ],
)
def test_bad_urls_raise(url: str) -> None:
    with pytest.raises(InvalidInput):
        TEMPLATE.render(Recipient(9, "a@example.com", "A", url, "https://news.example.com/p/x"), date=WHEN)


def test_loopback_http_allowed_for_demos() -> None:
    r = Recipient(
        9,
        "a@example.com",
        "A",
        "http://127.0.0.1:8000/unsubscribe/t.s",
        "http://127.0.0.1:8000/preferences/t.s",
    )
    assert parse(TEMPLATE.render(r, date=WHEN))["List-Unsubscribe"].startswith("<http://127.0.0.1:8000/")


def test_missing_preferences_url_falls_back_to_unsubscribe() -> None:
    r = Recipient(9, "a@example.com", "", "https://news.example.com/unsubscribe/t.s", "")
    text, html = decoded_parts(parse(TEMPLATE.render(r, date=WHEN)))
    assert (text, html) == reference(replace(r, preferences_url=r.unsubscribe_url), _html(), _text())
    assert "Good morning, there!" in text


def test_template_arguments_checked() -> None:
    for bad in (
        {"list_id": "not a list id"},
        {"message_id_domain": "bad domain"},
        {"edition_key": "2026/11/28"},
        {"edition_key": "a>b"},
        {"subject": "\r\n"},
    ):
        with pytest.raises(InvalidInput):
            make_template(**bad)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.text(max_size=120), subject=st.text(min_size=1, max_size=200))
def test_any_text_round_trips_without_new_headers(name: str, subject: str) -> None:
    if not clean_header_text(subject):
        subject = "s" + subject
    t = make_template(from_name=name, subject=subject, list_name=name, html=f"<p>{N}</p>", text=f"{N}\n")
    recipient = Recipient(3, "reader@example.com", name, "https://news.example.com/unsubscribe/t.s")
    raw = t.render(recipient, date=WHEN)
    msg = parse(raw)
    assert list(msg.keys()) == EXPECTED_HEADERS
    assert msg["To"].addresses[0].addr_spec == "reader@example.com"
    assert_display_name(raw, msg, "To", clean_header_text(name))
    assert_display_name(raw, msg, "From", clean_header_text(name))
    assert msg["Subject"] == clean_header_text(subject)
    head = raw.partition(b"\r\n\r\n")[0]
    assert all(len(line) <= 998 for line in head.split(b"\r\n"))
    text, _html = decoded_parts(msg)
    assert text == first_name(name) + "\n"


@settings(max_examples=100, deadline=None)
@given(
    prefix=st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=200),
    suffix=st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=200),
    name=st.text(max_size=30),
)
# A segment whose last encoded line b2a_qp fills to exactly 76: the soft break must not make it 77.
@example(prefix="", suffix="000\x1f\x08" + "\x80" * 5 + "\U00010000" * 3 + "0", name="")
def test_any_body_decodes_to_reference(prefix: str, suffix: str, name: str) -> None:
    body = prefix + U + suffix + N + prefix
    t = make_template(html=body, text=body)
    recipient = Recipient(
        3, "reader@example.com", name, "https://news.example.com/unsubscribe/abc.def?x=1&y=2"
    )
    raw = t.render(recipient, date=WHEN)
    text, html = decoded_parts(parse(raw))
    assert (text, html) == reference(recipient, body, body)
    assert max(len(line) for line in raw.partition(b"\r\n\r\n")[2].split(b"\r\n")) <= 76


# --- DKIM ---------------------------------------------------------------------------------------


def _nacl_stand_in() -> types.ModuleType:
    """dkimpy verifies ed25519 through PyNaCl; when it is absent, answer the same calls with cryptography."""

    class BadSignatureError(Exception):
        pass

    class Base64Encoder:
        @staticmethod
        def decode(data: bytes) -> bytes:
            return base64.b64decode(data)

    class VerifyKey:
        def __init__(self, key: bytes, encoder: type[Base64Encoder] | None = None) -> None:
            raw = encoder.decode(key) if encoder else key
            self._key = ed25519.Ed25519PublicKey.from_public_bytes(raw)

        def verify(self, smessage: bytes, signature: bytes) -> bytes:
            try:
                self._key.verify(signature, smessage)
            except InvalidSignature:
                raise BadSignatureError("bad signature") from None
            return smessage

    nacl = types.ModuleType("nacl")
    nacl.signing = types.SimpleNamespace(VerifyKey=VerifyKey)  # type: ignore[attr-defined]
    nacl.encoding = types.SimpleNamespace(Base64Encoder=Base64Encoder)  # type: ignore[attr-defined]
    nacl.exceptions = types.SimpleNamespace(BadSignatureError=BadSignatureError, ValueError=ValueError)  # type: ignore[attr-defined]
    return nacl


@pytest.fixture(autouse=True)
def _dkim_ed25519_support(monkeypatch: pytest.MonkeyPatch) -> None:
    if not hasattr(dkim, "nacl"):
        monkeypatch.setattr(dkim, "nacl", _nacl_stand_in(), raising=False)
    pin_dkim_clock(monkeypatch, WHEN + timedelta(minutes=1))  # the verifier reads the test's time


def _pem(key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@pytest.fixture(scope="module", params=["rsa-sha256", "ed25519-sha256"])
def signer(request: pytest.FixtureRequest) -> DkimSigner:
    key = (
        rsa.generate_private_key(65537, 2048)
        if request.param == "rsa-sha256"
        else ed25519.Ed25519PrivateKey.generate()
    )
    return DkimSigner(_pem(key), "brief2026", "news.example.com", request.param)


def dns_for(signer: DkimSigner):  # type: ignore[no-untyped-def]
    record = signer.dns_record().encode()

    def dnsfunc(name: bytes, timeout: int = 5) -> bytes | None:
        return record if name == signer.dns_name.encode() + b"." else None

    return dnsfunc


@pytest.mark.parametrize("recipient", RECIPIENTS, ids=lambda r: str(r.subscriber_id))
def test_dkim_verifies(signer: DkimSigner, recipient: Recipient) -> None:
    signed = signer.sign(TEMPLATE.render(recipient, date=WHEN), now=WHEN + timedelta(seconds=3))
    assert dkim.verify(signed, dnsfunc=dns_for(signer))
    head = signed.partition(b"\r\n\r\n")[0]
    assert max(len(line) for line in head.split(b"\r\n") if not line.startswith(b"List-Unsubscribe:")) <= 76
    msg = parse(signed)
    sig = " ".join(str(msg["DKIM-Signature"]).split())
    h = re.search(r"h=([^;]+);", sig)
    assert h is not None
    names = [n.strip() for n in h.group(1).split(":")]
    for required in (
        "from",
        "to",
        "subject",
        "date",
        "message-id",
        "list-id",
        "list-unsubscribe",
        "list-unsubscribe-post",
    ):
        assert required in names
    assert "c=relaxed/simple" in sig and f"a={signer.algorithm}" in sig and "d=news.example.com" in sig
    assert f"t={int(WHEN.timestamp()) + 3};" in sig  # the signing time is the one the caller gave


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (
            b"List-Unsubscribe-Post: List-Unsubscribe=One-Click",
            b"List-Unsubscribe-Post: List-Unsubscribe=One-Clock",
        ),
        (
            b"List-Unsubscribe: <https://news.example.com/unsubscribe/WzEsMV0.abc>",
            b"List-Unsubscribe: <https://evil.example.net/unsubscribe/WzEsMV0.abc>",
        ),
        (b"To: Alice Example", b"To: Alice Exampla"),
        (b"Subject: Your briefing", b"Subject: Our briefing"),
        (b"Unsubscribe</a>", b"Unsubscribf</a>"),
    ],
)
def test_dkim_tamper_fails(signer: DkimSigner, old: bytes, new: bytes) -> None:
    signed = signer.sign(TEMPLATE.render(RECIPIENTS[0], date=WHEN), now=WHEN)
    assert old in signed
    assert not dkim.verify(signed.replace(old, new, 1), dnsfunc=dns_for(signer))


def test_dkim_oversigning_blocks_added_headers(signer: DkimSigner) -> None:
    signed = signer.sign(TEMPLATE.render(RECIPIENTS[0], date=WHEN), now=WHEN)
    head, _, body = signed.partition(b"\r\n\r\n")
    extra = head + b"\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click" + b"\r\n\r\n" + body
    assert not dkim.verify(extra, dnsfunc=dns_for(signer))


def test_dkim_signing_time_must_be_aware(signer: DkimSigner) -> None:
    with pytest.raises(InvalidInput):
        signer.sign(TEMPLATE.render(RECIPIENTS[0], date=WHEN), now=datetime(2026, 11, 28, 6, 0))


def test_dkim_rejects_bad_keys() -> None:
    ed = _pem(ed25519.Ed25519PrivateKey.generate())
    with pytest.raises(InvalidInput):
        DkimSigner(ed, "s", "news.example.com", "rsa-sha256")
    with pytest.raises(InvalidInput):
        DkimSigner(b"-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n", "s", "news.example.com")
    with pytest.raises(InvalidInput):
        DkimSigner(ed, "s", "news.example.com", "rsa-sha1")
    with pytest.raises(InvalidInput) as info:
        DkimSigner(ed, "bad selector", "news.example.com", "ed25519-sha256")
    assert "PRIVATE" not in str(info.value)
    assert "PRIVATE" not in repr(DkimSigner(ed, "s", "news.example.com", "ed25519-sha256"))


@pytest.mark.parametrize("recipient", RECIPIENTS[:5], ids=lambda r: str(r.subscriber_id))
def test_same_content_as_render_personalise(recipient: Recipient) -> None:
    """The preview path (reader_copy.personalise) and the send path must show a reader the same thing."""
    edition = RenderedEdition(WHEN.date(), "Your briefing", "", _html(), _text())
    html, text = personalise(edition, recipient)
    sent_text, sent_html = decoded_parts(parse(TEMPLATE.render(recipient, date=WHEN)))
    assert sent_html == html.replace("\r\n", "\n")
    assert sent_text == text.replace("\r\n", "\n")
