"""`briefing bounces poll` against a real IMAP and POP3 server: Dovecot on loopback, over verified TLS.

The copies are sent for real (loopback SMTP, VERP return paths); the DSNs that come back are the
captured Postfix samples with this send's return path and Message-ID written in
(tests/test_bounces.py, `returned`), delivered into the server's Maildir as a local delivery
agent would. What is left on the server is read from that Maildir: a message Dovecot expunged
(IMAP) or deleted at QUIT (POP3) is gone from it.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from briefing.cli import app
from briefing.mail.mailboxes import open_mailbox
from tests.fixtures.newsroom import Newsroom
from tests.fixtures.smtp import SmtpTestServer, make_tls_files
from tests.test_bounces import DATA, cli_env, events, next_snapshot, returned, send_with_verp

if TYPE_CHECKING:
    from tests.fixtures.mailserver import MailServer

pytest_plugins = ["tests.fixtures.mailserver"]  # the `mail_server` fixture

runner = CliRunner()
SCHEMES = ["imaps", "pop3s"]
NEXT_EDITION = date(2026, 12, 1)
GARBAGE = b"\x00\xff\xfe\r\n\r\nnot mail"


def poll(room: Newsroom, server: MailServer, scheme: str, **extra: str) -> tuple[int, str]:
    settings = {
        "BRIEFING_BOUNCE_MAILBOX": server.url(scheme),
        "BRIEFING_BOUNCE_MAILBOX_CA_FILE": server.tls.ca_file,
        "BRIEFING_SMTP_TIMEOUT": "5",
    }
    settings.update(extra)
    result = runner.invoke(app, ["bounces", "poll"], env=cli_env(room.engine, **settings))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


def refuse_status_changes(engine: sa.Engine) -> None:
    """A reader's status cannot be written, as on a database gone read-only: the bounce's transaction
    (its event and the status) fails as a whole, and reads still work."""
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TRIGGER refuse_status_changes BEFORE UPDATE OF status ON subscriber "
            "BEGIN SELECT RAISE(ABORT, 'attempt to write a readonly database'); END"
        )


def accept_status_changes(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TRIGGER refuse_status_changes")


@pytest.mark.parametrize("scheme", SCHEMES)
def test_a_polled_dsn_bounces_the_reader_and_every_handled_message_leaves_the_server(
    sqlite_newsroom: Newsroom, smtp_server: SmtpTestServer, mail_server: MailServer, scheme: str
) -> None:
    room = sqlite_newsroom
    room.subscribe("gone@mx.example.net", "stays@example.com")
    sent = send_with_verp(room, smtp_server)
    mail_server.deliver(
        returned("postfix-local-unknown-user.eml", sent["gone@mx.example.net"]),
        returned("rfc3834-vacation-auto-reply.eml", sent["stays@example.com"]),
        (DATA / "not-a-report.eml").read_bytes(),
        GARBAGE,
    )

    code, out = poll(room, mail_server, scheme)

    assert code == 0, out
    assert "hard: gone@mx.example.net: active -> bounced" in out
    assert "auto-reply: nothing changed" in out
    assert out.count("unknown: nothing changed") == 2  # the letter and the garbage: read, then removed
    assert "4 read, 1 recorded, 3 changed nothing" in out
    assert room.status_of("gone@mx.example.net") == "bounced"
    assert room.status_of("stays@example.com") == "active"
    [event] = events(room.engine)
    assert (event.kind, event.code, event.source) == ("hard", "5.1.1", "poll")
    assert mail_server.stored() == []
    assert next_snapshot(room.engine, NEXT_EDITION) == {"stays@example.com"}


@pytest.mark.parametrize("scheme", SCHEMES)
def test_a_message_whose_result_is_not_committed_stays_on_the_server_for_the_next_poll(
    sqlite_newsroom: Newsroom, smtp_server: SmtpTestServer, mail_server: MailServer, scheme: str
) -> None:
    room = sqlite_newsroom
    room.subscribe("gone@mx.example.net", "away@example.org")
    sent = send_with_verp(room, smtp_server)
    dsn = returned("postfix-local-unknown-user.eml", sent["gone@mx.example.net"])
    mail_server.deliver(dsn, returned("rfc3834-vacation-auto-reply.eml", sent["away@example.org"]))
    refuse_status_changes(room.engine)

    code, out = poll(room, mail_server, scheme)

    assert code == 0, out
    assert "2 read, 0 recorded, 1 changed nothing, 1 kept for the next poll" in out
    assert mail_server.stored() == [dsn]  # the auto-reply needed no write, so it went
    assert room.status_of("gone@mx.example.net") == "active" and events(room.engine) == []

    accept_status_changes(room.engine)
    code, out = poll(room, mail_server, scheme)

    assert code == 0, out
    assert "1 read, 1 recorded, 0 changed nothing" in out
    assert room.status_of("gone@mx.example.net") == "bounced"
    assert mail_server.stored() == []


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("trust", ["another-ca", "system-store"])
def test_a_server_whose_certificate_is_not_trusted_is_refused_and_nothing_is_removed(
    sqlite_newsroom: Newsroom,
    smtp_server: SmtpTestServer,
    mail_server: MailServer,
    tmp_path: Path,
    scheme: str,
    trust: str,
) -> None:
    room = sqlite_newsroom
    room.subscribe("gone@mx.example.net")
    sent = send_with_verp(room, smtp_server)
    dsn = returned("postfix-local-unknown-user.eml", sent["gone@mx.example.net"])
    mail_server.deliver(dsn)
    ca_file = make_tls_files(tmp_path / "other-ca").ca_file if trust == "another-ca" else ""

    code, out = poll(room, mail_server, scheme, BRIEFING_BOUNCE_MAILBOX_CA_FILE=ca_file)

    assert code == 1
    assert "the server's certificate was not accepted" in out and "Traceback" not in out
    assert f"{scheme}://bounces@127.0.0.1:" in out and "p@ss" not in out  # where, never the password
    assert mail_server.stored() == [dsn]
    assert room.status_of("gone@mx.example.net") == "active" and events(room.engine) == []


@pytest.mark.parametrize("scheme", SCHEMES)
def test_a_wrong_password_is_refused_with_a_clear_error(
    sqlite_newsroom: Newsroom, mail_server: MailServer, scheme: str
) -> None:
    mail_server.deliver(GARBAGE)
    url = mail_server.url(scheme).replace("p%40ss", "n0t-it")

    code, out = poll(sqlite_newsroom, mail_server, scheme, BRIEFING_BOUNCE_MAILBOX=url)

    assert code == 1
    assert "the server refused" in out and "Traceback" not in out
    assert "n0t-it" not in out and "p@ss" not in out  # neither the wrong password nor the right one
    assert mail_server.stored() == [GARBAGE]


@pytest.mark.parametrize(
    ("content", "says"),
    [(None, "there is no CA file at"), (b"not a certificate\n", "holds no PEM CA certificate")],
    ids=["missing", "not-pem"],
)
def test_an_unusable_ca_file_names_the_setting(
    sqlite_newsroom: Newsroom, tmp_path: Path, content: bytes | None, says: str
) -> None:
    path = tmp_path / "ca.pem"
    if content is not None:
        path.write_bytes(content)
    env = cli_env(
        sqlite_newsroom.engine,
        BRIEFING_BOUNCE_MAILBOX="imaps://bounces:secret@127.0.0.1:1/INBOX",
        BRIEFING_BOUNCE_MAILBOX_CA_FILE=str(path),
    )

    result = runner.invoke(app, ["bounces", "poll"], env=env)

    assert result.exit_code == 1
    assert result.output.startswith("error: BRIEFING_BOUNCE_MAILBOX_CA_FILE: ") and says in result.output


def test_the_imap_reader_leaves_unprocessed_messages_unseen_and_undeleted(mail_server: MailServer) -> None:
    """Reading is BODY.PEEK: a message not removed keeps its flags, so no other reader loses it."""
    mail_server.deliver(GARBAGE, GARBAGE + b"2")
    box = open_mailbox(mail_server.url("imaps"), timeout=5, ca_file=mail_server.tls.ca_file)
    try:
        keys = [key for key, _raw in box.messages()]
        box.remove(keys[0])
    finally:
        box.close()

    assert mail_server.stored() == [GARBAGE + b"2"]
    [left] = [p.name for sub in ("cur", "new") for p in (mail_server.maildir / sub).iterdir()]
    assert "S" not in left.partition(":2,")[2] and "T" not in left.partition(":2,")[2]


@pytest.mark.parametrize("scheme", SCHEMES)
def test_a_message_with_a_very_long_line_is_read_and_does_not_stop_the_poll(
    sqlite_newsroom: Newsroom, smtp_server: SmtpTestServer, mail_server: MailServer, scheme: str
) -> None:
    """Lines past RFC 5322's 998 octets are common in quoted mail; one must not block the mailbox."""
    room = sqlite_newsroom
    room.subscribe("gone@mx.example.net", "full@example.com")
    sent = send_with_verp(room, smtp_server)
    long_line = b"X-Original-Note: " + b"x" * 5000 + b"\r\n"
    mail_server.deliver(
        long_line + returned("postfix-local-unknown-user.eml", sent["gone@mx.example.net"]),
        returned("postfix-remote-452-mailbox-full.eml", sent["full@example.com"]),
    )

    code, out = poll(room, mail_server, scheme)

    assert code == 0, out
    assert "2 read, 2 recorded, 0 changed nothing" in out
    assert room.status_of("gone@mx.example.net") == "bounced"
    assert mail_server.stored() == []
