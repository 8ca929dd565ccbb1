"""SMTP transparency (RFC 5321 §4.5.2) without a scan per copy.

Every copy `mail.message` builds has no line starting with ".", so the session sends it as it is;
these tests check that claim for any body and any reader values, and that what a real SMTP server
takes in (aiosmtpd undoes dot-stuffing) is byte for byte the message a Maildir or DKIM sees.
"""

from __future__ import annotations

import email
import mailbox
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from pathlib import Path

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from briefing.domain import (
    TOKEN_FIRST_NAME,
    TOKEN_PREFERENCES_URL,
    TOKEN_UNSUBSCRIBE_URL,
    Recipient,
    RenderedEdition,
)
from briefing.mail.dkim import DkimSigner
from briefing.mail.message import MessageTemplate
from briefing.mail.session import SmtpConnection
from briefing.mail.smtp_url import parse_smtp_url
from briefing.mail.transport import DotSafe, MaildirTransport, keep_dot_safe
from briefing.reader_copy import personalise
from tests.fixtures.smtp import FaultPlan, SmtpTestServer, pin_dkim_clock, start_smtp_server

U, P, N = TOKEN_UNSUBSCRIBE_URL, TOKEN_PREFERENCES_URL, TOKEN_FIRST_NAME
WHEN = datetime(2026, 11, 28, 6, tzinfo=UTC)
SENDER = "bounces@news.example.com"
BASE = "https://news.example.com/unsubscribe/"
LINE_START_DOT = re.compile(rb"(?:^|\n)\.")


def template(html: str, text: str) -> MessageTemplate:
    return MessageTemplate(
        from_name="The Morning Briefing",
        from_address="briefing@news.example.com",
        subject="Your briefing",
        html=html,
        text=text,
        list_id="morning.news.example.com",
        unsubscribe_mailto="unsubscribe@news.example.com",
        message_id_domain="news.example.com",
        edition_key="2026-11-28",
    )


def decoded(raw: bytes) -> tuple[str, str]:
    msg = email.message_from_bytes(raw, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    text, html = (str(p.get_content()).replace("\r\n", "\n") for p in msg.iter_parts())
    return text, html


def reference(recipient: Recipient, html: str, text: str) -> tuple[str, str]:
    html, text = (part.replace("\r\n", "\n").replace("\r", "\n") for part in (html, text))
    html, text = personalise(RenderedEdition(WHEN.date(), "s", "", html, text), recipient)
    return text, html


@pytest.fixture(scope="module", params=[False, True], ids=["step-by-step", "pipelined"])
def smtp(request: pytest.FixtureRequest) -> Iterator[tuple[SmtpTestServer, SmtpConnection]]:
    """One server and one session for all examples of a property: each example is one more message."""
    server = start_smtp_server(FaultPlan(pipelining=request.param))
    conn = SmtpConnection(parse_smtp_url(server.url()), timeout=5)
    yield server, conn
    conn.close()
    server.stop()


def send_and_receive(smtp: tuple[SmtpTestServer, SmtpConnection], data: bytes) -> bytes:
    server, conn = smtp
    before = len(server.messages)
    assert conn.send(SENDER, "reader@example.com", data).accepted
    assert len(server.messages) == before + 1
    return server.messages[-1].data


# Text that puts "." at line starts: after hard breaks, and (with runs of 70-80 characters) where
# quoted-printable's soft breaks fall.
_CHUNK = st.one_of(
    st.sampled_from([U, P, N, ".", "..", "\n", "\n.", ".\n", "\r\n.", "\r.", " .", "=", "x" * 74]),
    st.text(alphabet=st.sampled_from("ab. =\u00e9\t"), max_size=90),
)
BODY = st.lists(_CHUNK, max_size=40).map("".join)
NAME = st.one_of(
    st.sampled_from([".Ada Lovelace", ".", "..", ". Ada", ".\u00c9mile", "Ada"]),
    st.text(alphabet=st.sampled_from(".aé \u2028"), max_size=12),
)
TOKEN = st.text(alphabet=st.sampled_from("Aa0.-_"), min_size=1, max_size=260)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(html=BODY, text=BODY, name=NAME, token=TOKEN, prefs=TOKEN)
# A reader's link whose 76th encoded character is a "." (the value's first soft break puts it at a
# line start), and a first name that starts with one.
@example(html=f"<p>{U}</p>", text=f"{N}\n{U}\n", name=".Ada", token="a" * 38 + ".b", prefs="p")
# A static line of exactly 76 encoded characters that starts with "." and grows when escaped.
@example(html="." + "x" * 74 + "\n" + N, text="." * 80 + "\n", name="Ada", token="t", prefs="p")
def test_what_the_server_receives_is_the_message(
    smtp: tuple[SmtpTestServer, SmtpConnection], html: str, text: str, name: str, token: str, prefs: str
) -> None:
    recipient = Recipient(
        7, "reader@example.com", name, BASE + token, "https://news.example.com/preferences/" + prefs
    )
    raw = template(html, text).render(recipient, date=WHEN)
    assert isinstance(raw, DotSafe)
    assert LINE_START_DOT.search(raw) is None
    assert raw.endswith(b"\r\n")
    body = raw.partition(b"\r\n\r\n")[2]
    assert max(len(line) for line in body.split(b"\r\n")) <= 76
    assert decoded(raw) == reference(recipient, html, text)
    assert send_and_receive(smtp, raw) == raw


def test_a_first_name_starting_with_a_dot_arrives_as_written(
    smtp: tuple[SmtpTestServer, SmtpConnection],
) -> None:
    recipient = Recipient(8, "reader@example.com", ".Ada Lovelace", BASE + "tok.sig")
    raw = template(f"<p>{N}</p>", f"{N}\n.{N}\n").render(recipient, date=WHEN)
    assert b"\r\n=2EAda=\r\n" in raw  # the value starts a line: its dot is written escaped
    received = send_and_receive(smtp, raw)
    assert decoded(received) == (".Ada\n..Ada\n", "<p>.Ada</p>")


def test_other_mail_is_still_dot_stuffed(smtp: tuple[SmtpTestServer, SmtpConnection]) -> None:
    """Bytes not built by mail.message (alerts, confirmations) may start lines with "."."""
    plain = (
        b"From: desk@news.example.com\r\nTo: reader@example.com\r\nSubject: alert\r\n\r\n"
        b".one\r\n.\r\n..two\r\nend"
    )
    assert not isinstance(plain, DotSafe)
    assert send_and_receive(smtp, plain) == plain + b"\r\n"


@pytest.fixture(scope="module")
def signer() -> DkimSigner:
    key = rsa.generate_private_key(65537, 2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return DkimSigner(pem, "brief", "news.example.com")


@pytest.mark.parametrize("name", [".Ada", "Ada"])
def test_a_signed_copy_stays_dot_safe_and_verifies_after_smtp(
    smtp: tuple[SmtpTestServer, SmtpConnection],
    signer: DkimSigner,
    monkeypatch: pytest.MonkeyPatch,
    name: str,
) -> None:
    """DKIM signs the message as the reader gets it; the signature's lines start with its name or a space."""
    recipient = Recipient(9, "reader@example.com", name, BASE + "a" * 38 + ".b")
    raw = template(f"<p>.{N}</p>\n.\n", f".{N}\n{U}\n").render(recipient, date=WHEN)
    signed = keep_dot_safe(signer.sign(raw, now=WHEN), raw)
    assert isinstance(signed, DotSafe)
    assert LINE_START_DOT.search(signed) is None
    pin_dkim_clock(monkeypatch, WHEN)
    received = send_and_receive(smtp, signed)
    assert received == signed
    record = signer.dns_record().encode()
    assert dkim.verify(received, dnsfunc=lambda name, timeout=5: record)


def test_keep_dot_safe_only_vouches_for_what_it_has_read() -> None:
    raw = template("<p>x</p>", "x\n").render(Recipient(1, "r@example.com", "", BASE + "t"), date=WHEN)
    header = b"DKIM-Signature: v=1;\r\n b=abc\r\n"
    assert isinstance(keep_dot_safe(header + raw, raw), DotSafe)
    assert keep_dot_safe(header + raw, raw) == header + raw
    for signed, unsigned in (
        (header + raw, bytes(raw)),  # the original was never vouched for
        (b".X: y\r\n" + raw, raw),  # a new line starting with "."
        (b"X: y\r\n.\r\n" + raw, raw),
        (b"X: y" + raw, raw),  # the new lines do not end where the message starts
        (header + raw.replace(b"<p>x</p>", b"<p>y</p>"), raw),  # the message itself changed
        (raw[1:], raw),  # shorter than the original
    ):
        assert not isinstance(keep_dot_safe(signed, unsigned), DotSafe)


def test_the_maildir_keeps_the_bytes_smtp_carries(
    smtp: tuple[SmtpTestServer, SmtpConnection], tmp_path: Path
) -> None:
    """A rehearsal in a Maildir shows the reader exactly what the relay received."""
    recipient = Recipient(10, "reader@example.com", ".Ada", BASE + "tok")
    raw = template(f"<p>.{N}</p>", f".{N}\n").render(recipient, date=WHEN)
    received = send_and_receive(smtp, raw)
    box_path = tmp_path / "Maildir"
    assert MaildirTransport(box_path).send(SENDER, "reader@example.com", raw).accepted
    box = mailbox.Maildir(str(box_path), factory=None)
    [key] = box.keys()
    assert box.get_bytes(key) == b"Return-Path: <%s>\r\nDelivered-To: reader@example.com\r\n%s" % (
        SENDER.encode(),
        received,
    )
