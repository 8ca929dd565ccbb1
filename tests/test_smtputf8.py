"""Copies to addresses with non-ASCII before the @ (SMTPUTF8, RFC 6531 and RFC 6532), end to end.

With BRIEFING_SMTP_SMTPUTF8 on, a reader at `café@example.com` gets a copy whose To header is UTF-8
and whose MAIL command carries SMTPUTF8, provided the server advertised it; if it did not, only that
copy fails, with a reason that says so. ASCII readers' copies stay byte for byte the same, and with
the setting off nothing changes. The servers are real aiosmtpd servers on loopback.
"""

from __future__ import annotations

import email
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from email import policy
from email.message import EmailMessage
from typing import Any

import dkim
import pytest
from aiosmtpd.controller import Controller
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlmodel import Session

from briefing.domain import TOKEN_FIRST_NAME, TOKEN_UNSUBSCRIBE_URL, Recipient, RenderedEdition
from briefing.errors import InvalidInput
from briefing.mail.dkim import DkimSigner
from briefing.mail.message import MessageTemplate
from briefing.mail.pool import open_transport
from briefing.mail.session import SmtpConnection
from briefing.mail.smtp_url import parse_smtp_url
from briefing.mail.transport import MaildirTransport, Outcome
from briefing.reader_copy import personalise
from briefing.service import editions as edition_service
from briefing.store import deliveries as ledger
from briefing.store import editions as edition_store
from tests.fixtures.clock import ManualClock
from tests.fixtures.newsroom import EDITION, Newsroom
from tests.fixtures.smtp import (
    HOST,
    READY_TIMEOUT,
    FaultHandler,
    FaultPlan,
    SmtpTestServer,
    free_port,
    pin_dkim_clock,
)

WHEN = datetime(2026, 11, 28, 6, 0, tzinfo=UTC)
NOW = datetime(2026, 11, 30, 6, 0, 30, tzinfo=UTC)  # just after the newsroom's 06:00 send time
UTF8 = "café@example.com"
NO_SMTPUTF8 = "the SMTP server does not support SMTPUTF8"
HTML = f"<p>Good morning, {TOKEN_FIRST_NAME}. <a href='{TOKEN_UNSUBSCRIBE_URL}'>Leave</a></p>"
TEXT = f"Good morning, {TOKEN_FIRST_NAME}.\nLeave: {TOKEN_UNSUBSCRIBE_URL}\n"


def template(*, smtputf8: bool) -> MessageTemplate:
    return MessageTemplate(
        from_name="The Morning Briefing",
        from_address="briefing@news.example.com",
        subject="Your briefing for Saturday",
        html=HTML,
        text=TEXT,
        list_id="morning.news.example.com",
        unsubscribe_mailto="unsubscribe@news.example.com",
        message_id_domain="news.example.com",
        edition_key="2026-11-28",
        reply_to="desk@news.example.com",
        smtputf8=smtputf8,
    )


def reader(subscriber_id: int, address: str, name: str = "Zoë Café") -> Recipient:
    return Recipient(
        subscriber_id,
        address,
        name,
        f"https://news.example.com/unsubscribe/W{subscriber_id}.sig",
        f"https://news.example.com/preferences/W{subscriber_id}.sig",
    )


def parse_utf8(raw: bytes) -> EmailMessage:
    """RFC 6532 headers are UTF-8: parse the decoded text (the bytes parser would escape them)."""
    msg = email.message_from_string(raw.decode("utf-8"), policy=policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def header_line(raw: bytes, name: bytes) -> bytes:
    head = raw.partition(b"\r\n\r\n")[0].replace(b"\r\n ", b" ")
    (line,) = [h for h in head.split(b"\r\n") if h.lower().startswith(name.lower() + b":")]
    return line


# --- the message ---------------------------------------------------------------------------------


def test_without_the_setting_a_utf8_address_is_refused_as_before() -> None:
    with pytest.raises(InvalidInput, match="not a usable email address") as refused:
        template(smtputf8=False).render(reader(7, UTF8), date=WHEN)
    assert refused.value.field == "email"


def test_with_the_setting_the_to_header_carries_the_utf8_address() -> None:
    raw = template(smtputf8=True).render(reader(7, UTF8), date=WHEN)

    assert header_line(raw, b"To").decode("utf-8").endswith(f" <{UTF8}>")
    msg = parse_utf8(raw)
    (to,) = msg["To"].addresses
    assert (to.display_name, to.username, to.domain) == ("Zoë Café", "café", "example.com")
    assert not msg.defects
    head = raw.partition(b"\r\n\r\n")[0]
    assert [line for line in head.split(b"\r\n") if not line.isascii()] == [header_line(raw, b"To")]
    text, html = (str(p.get_content()).replace("\r\n", "\n") for p in msg.iter_parts())
    expected_html, expected_text = personalise(
        RenderedEdition(WHEN.date(), "s", "", HTML, TEXT), reader(7, UTF8)
    )
    assert (text, html) == (expected_text, expected_html)


@pytest.mark.parametrize(
    "address", ["alice@example.com", "o'brien+news@example.org", "reader@xn--bcher-kva.example.com"]
)
def test_ascii_readers_copies_are_byte_identical_with_the_setting(address: str) -> None:
    for name in ("", "Alice Example", "Zoë Café"):
        copy = reader(3, address, name)
        with_setting = template(smtputf8=True).render(copy, date=WHEN)
        assert with_setting == template(smtputf8=False).render(copy, date=WHEN)
        assert with_setting.isascii()


def test_an_international_domain_alone_is_written_in_ascii() -> None:
    """Only the local part needs SMTPUTF8: a domain has its IDNA form, so the copy stays ASCII."""
    raw = template(smtputf8=True).render(reader(8, "reader@bücher.example.com"), date=WHEN)
    assert raw.isascii()
    assert header_line(raw, b"To").endswith(b" <reader@xn--bcher-kva.example.com>")


@pytest.mark.parametrize(
    "address",
    [
        "café\u2028@example.com",  # a Unicode line separator
        "caf\u202eé@example.com",  # a bidi override
        "café\u0085@example.com",  # NEL
        "caf\udce9@example.com",  # a lone surrogate (not UTF-8)
        "café\r\nBcc: x@example.net",
        '"café"@example.com',
        "café @example.com",
        "<café@example.com>",
        "=?utf-8?q?caf=C3=A9?=@example.com",
        "café@@example.com",
        "é" * 130 + "@example.com",  # 130 characters, 260 octets
    ],
)
def test_unusable_utf8_addresses_are_still_refused(address: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        template(smtputf8=True).render(reader(9, address), date=WHEN)
    assert refused.value.field == "email"


def test_dkim_signs_a_utf8_copy_and_covers_its_to_header(monkeypatch: pytest.MonkeyPatch) -> None:
    key = rsa.generate_private_key(65537, 2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    signer = DkimSigner(pem, "brief2026", "news.example.com")
    record = signer.dns_record().encode()

    def dnsfunc(name: bytes, timeout: int = 5) -> bytes | None:
        return record if name == signer.dns_name.encode() + b"." else None

    pin_dkim_clock(monkeypatch, WHEN + timedelta(minutes=1))
    signed = signer.sign(template(smtputf8=True).render(reader(7, UTF8), date=WHEN), now=WHEN)

    assert dkim.verify(signed, dnsfunc=dnsfunc)
    signed_names = re.search(rb"h=([^;]+);", signed.replace(b"\r\n ", b""))
    assert signed_names is not None and b"to" in signed_names.group(1).split(b":")
    tampered = signed.replace("café@".encode(), "cafè@".encode(), 1)
    assert tampered != signed and not dkim.verify(tampered, dnsfunc=dnsfunc)


# --- the SMTP session ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Transaction:
    rcpt_tos: tuple[str, ...]
    mail_options: tuple[str, ...]
    smtp_utf8: bool
    data: bytes


class RecordingHandler(FaultHandler):
    """The fault handler, also keeping each accepted transaction's MAIL parameters."""

    def __init__(self, plan: FaultPlan) -> None:
        super().__init__(plan)
        self.transactions: list[Transaction] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        data = envelope.original_content or b""
        self.transactions.append(
            Transaction(tuple(envelope.rcpt_tos), tuple(envelope.mail_options), envelope.smtp_utf8, data)
        )
        return await super().handle_DATA(server, session, envelope)


@dataclass
class Utf8Server:
    server: SmtpTestServer
    handler: RecordingHandler

    def url(self) -> str:
        return self.server.url()


@pytest.fixture
def utf8_server() -> Iterator[Callable[..., Utf8Server]]:
    """aiosmtpd on loopback; `advertise` sets whether EHLO offers SMTPUTF8 (enable_SMTPUTF8)."""
    started: list[Utf8Server] = []

    def start(*, advertise: bool, pipelining: bool = False) -> Utf8Server:
        handler = RecordingHandler(FaultPlan(pipelining=pipelining))
        port = free_port()
        controller = Controller(
            handler, hostname=HOST, port=port, ready_timeout=READY_TIMEOUT, enable_SMTPUTF8=advertise
        )
        controller.start()
        running = Utf8Server(SmtpTestServer(handler, controller, port), handler)
        started.append(running)
        return running

    yield start
    for running in started:
        running.server.stop()


def copies() -> list[tuple[str, bytes]]:
    t = template(smtputf8=True)
    return [
        (address, t.render(reader(i, address), date=WHEN))
        for i, address in enumerate(["alice@example.com", UTF8, "bob@example.org"], start=1)
    ]


@pytest.mark.parametrize("pipelining", [False, True], ids=["step-by-step", "pipelined"])
def test_a_utf8_copy_goes_out_with_smtputf8_when_the_server_offers_it(
    utf8_server: Callable[..., Utf8Server], pipelining: bool
) -> None:
    running = utf8_server(advertise=True, pipelining=pipelining)
    conn = SmtpConnection(parse_smtp_url(running.url()), timeout=5)
    try:
        results = [conn.send("briefing@news.example.com", rcpt, data) for rcpt, data in copies()]
        assert conn._pipelining is pipelining
    finally:
        conn.close()

    assert [r.outcome for r in results] == [Outcome.ACCEPTED] * 3
    alice, cafe, bob = running.handler.transactions
    assert cafe.rcpt_tos == (UTF8,) and cafe.smtp_utf8
    assert sorted(cafe.mail_options) == ["BODY=8BITMIME", "SMTPUTF8"]  # aiosmtpd offers 8BITMIME
    assert cafe.data == copies()[1][1]  # byte for byte, the UTF-8 To header included
    assert parse_utf8(cafe.data)["To"].addresses[0].addr_spec == UTF8
    for ascii_copy, (rcpt, data) in ((alice, copies()[0]), (bob, copies()[2])):
        assert ascii_copy.rcpt_tos == (rcpt,) and ascii_copy.mail_options == ()
        assert not ascii_copy.smtp_utf8 and ascii_copy.data == data
    assert running.server.sessions == 1  # one session carried all three


@pytest.mark.parametrize("pipelining", [False, True], ids=["step-by-step", "pipelined"])
def test_without_smtputf8_on_the_server_only_the_utf8_copy_fails(
    utf8_server: Callable[..., Utf8Server], pipelining: bool
) -> None:
    running = utf8_server(advertise=False, pipelining=pipelining)
    conn = SmtpConnection(parse_smtp_url(running.url()), timeout=5)
    try:
        results = [conn.send("briefing@news.example.com", rcpt, data) for rcpt, data in copies()]
        assert conn.is_connected
    finally:
        conn.close()

    assert [r.outcome for r in results] == [Outcome.ACCEPTED, Outcome.REJECTED, Outcome.ACCEPTED]
    refused = results[1]
    assert NO_SMTPUTF8 in refused.reply and "this reader's address" in refused.reply
    assert refused.stage == "local" and refused.code is None
    assert [t.rcpt_tos for t in running.handler.transactions] == [
        ("alice@example.com",),
        ("bob@example.org",),
    ]
    assert running.handler.mail_commands == 2  # nothing of the UTF-8 copy reached the server
    assert running.server.sessions == 1


def test_an_international_domain_alone_goes_out_without_smtputf8(
    utf8_server: Callable[..., Utf8Server],
) -> None:
    running = utf8_server(advertise=False)
    stored = "reader@bücher.example.com"  # as sign-up keeps it with the setting on
    data = template(smtputf8=True).render(reader(8, stored), date=WHEN)
    conn = SmtpConnection(parse_smtp_url(running.url()), timeout=5)
    try:
        assert conn.send("briefing@news.example.com", stored, data).accepted
    finally:
        conn.close()
    (sent,) = running.handler.transactions
    assert sent.rcpt_tos == ("reader@xn--bcher-kva.example.com",) and sent.mail_options == ()


def test_a_maildir_files_a_utf8_copy(tmp_path: Any) -> None:
    rcpt, data = copies()[1]
    box = MaildirTransport(tmp_path / "maildir")
    assert box.send("briefing@news.example.com", rcpt, data).accepted
    (stored,) = list((tmp_path / "maildir" / "new").iterdir())
    assert stored.read_bytes().endswith(data)
    assert f"Delivered-To: {UTF8}\r\n".encode() in stored.read_bytes()


# --- the send, through the ledger -----------------------------------------------------------------


def send(room: Newsroom, url: str, *, smtputf8: bool) -> edition_service.SendOutcome:
    setup = replace(room.setup, smtputf8=smtputf8)
    mail = open_transport(url, pool_size=setup.policy.workers, timeout=5)
    try:
        return edition_service.send_edition(room.engine, setup, EDITION, mail, clock=ManualClock(NOW))
    finally:
        mail.close()


def ledger_rows(room: Newsroom) -> dict[str, ledger.LedgerRow]:
    with Session(room.engine) as s:
        edition = edition_store.get_edition(s, EDITION, newsletter_id=1)
        return {r.email: r for r in ledger.rows(s, edition.id, limit=1000)}


def test_a_send_delivers_utf8_and_ascii_copies(
    newsroom: Newsroom, utf8_server: Callable[..., Utf8Server]
) -> None:
    room = newsroom
    ascii_readers = room.readers(3)
    room.subscribe(UTF8, name="Zoë")
    running = utf8_server(advertise=True, pipelining=True)

    outcome = send(room, running.url(), smtputf8=True)

    assert outcome.report is not None and outcome.report.complete and not outcome.report.paused_reason
    assert {email: row.status for email, row in ledger_rows(room).items()} == dict.fromkeys(
        [*ascii_readers, UTF8], "sent"
    )
    by_rcpt = {t.rcpt_tos: t for t in running.handler.transactions}
    assert len(by_rcpt) == 4
    cafe = by_rcpt[(UTF8,)]
    assert "SMTPUTF8" in cafe.mail_options
    assert parse_utf8(cafe.data)["To"].addresses[0].addr_spec == UTF8
    for address in ascii_readers:
        assert by_rcpt[(address,)].mail_options == () and by_rcpt[(address,)].data.isascii()


def test_a_send_through_a_server_without_smtputf8_fails_only_that_copy(
    newsroom: Newsroom, utf8_server: Callable[..., Utf8Server]
) -> None:
    room = newsroom
    ascii_readers = room.readers(3)
    room.subscribe(UTF8)
    running = utf8_server(advertise=False, pipelining=True)

    outcome = send(room, running.url(), smtputf8=True)

    report = outcome.report
    assert report is not None and report.complete
    assert not report.paused_reason and not report.halted
    rows = ledger_rows(room)
    assert rows[UTF8].status == "failed" and NO_SMTPUTF8 in (rows[UTF8].smtp_reply or "")
    assert {rows[a].status for a in ascii_readers} == {"sent"}
    assert sorted(t.rcpt_tos[0] for t in running.handler.transactions) == sorted(ascii_readers)
    assert room.status_of(UTF8) == "active"  # the relay's limit is not the reader's bounce


def test_with_the_setting_off_a_stored_utf8_address_fails_as_before(
    sqlite_newsroom: Newsroom, utf8_server: Callable[..., Utf8Server]
) -> None:
    room = sqlite_newsroom
    room.readers(2)
    room.subscribe(UTF8)
    running = utf8_server(advertise=True)

    send(room, running.url(), smtputf8=False)

    rows = ledger_rows(room)
    assert rows[UTF8].status == "failed"
    assert rows[UTF8].smtp_reply == "not sent: email: not a usable email address"
    assert len(running.handler.transactions) == 2
    assert all(t.mail_options == () for t in running.handler.transactions)
