"""Reading returned mail: DSNs from real and documented MTAs, ARF complaints, auto-replies, VERP tokens."""

from __future__ import annotations

from pathlib import Path

import pytest

from briefing.errors import InvalidInput, TransportError
from briefing.mail.mailboxes import open_mailbox, parse_mailbox_url
from briefing.mail.reports import ReportKind, read_report
from briefing.mail.returnpath import CopyRef, ReturnPath
from tests.fixtures.smtp import free_port

DATA = Path(__file__).parent / "data" / "bounces"
SECRET = "test-secret-key"
RETURN_PATH = ReturnPath("bounces@news.example.com", [SECRET])

# sample, kind, recipient, status, the copy its VERP address names
SAMPLES = [
    ("postfix-local-unknown-user.eml", ReportKind.HARD, "gone@mx.example.net", "5.1.1", CopyRef(1, 7)),
    (
        "postfix-remote-550-user-unknown.eml",
        ReportKind.HARD,
        "alice@hard.example.net",
        "5.1.1",
        CopyRef(1, 8),
    ),
    ("postfix-remote-452-mailbox-full.eml", ReportKind.SOFT, "bob@full.example.net", "4.2.2", CopyRef(1, 9)),
    ("exim-classic-user-unknown.eml", ReportKind.HARD, "carol@example.org", "", CopyRef(1, 10)),
    ("gmail-550-5.1.1-no-such-user.eml", ReportKind.HARD, "dave@example.com", "5.1.1", CopyRef(1, 11)),
    ("exchange-online-550-5.1.10.eml", ReportKind.HARD, "erin@example.net", "5.1.10", CopyRef(1, 12)),
    ("yahoo-554-delivery-error.eml", ReportKind.HARD, "frank@example.com", "", CopyRef(1, 13)),
    ("gmail-550-5.7.26-policy.eml", ReportKind.SOFT, "grace@example.com", "5.7.26", CopyRef(1, 14)),
    ("arf-yahoo-aol-fbl-abuse.eml", ReportKind.COMPLAINT, "heidi@example.com", "abuse", CopyRef(1, 15)),
]


@pytest.mark.parametrize(
    ("name", "kind", "recipient", "status", "copy"), SAMPLES, ids=[s[0] for s in SAMPLES]
)
def test_each_sample_is_read_as_what_it_is(
    name: str, kind: ReportKind, recipient: str, status: str, copy: CopyRef
) -> None:
    report = read_report((DATA / name).read_bytes())

    assert report.kind is kind
    worst = report.worst
    assert worst is not None and worst.recipient == recipient and worst.status == status
    assert RETURN_PATH.find(report.return_paths) == copy
    assert any(f".{copy.subscriber_id}." in m for m in report.message_ids)  # the original's Message-ID


def test_a_postfix_dsn_keeps_the_far_end_diagnostic() -> None:
    report = read_report((DATA / "postfix-remote-550-user-unknown.eml").read_bytes())
    assert report.worst is not None
    assert report.worst.diagnostic.startswith("smtp; 550 5.1.1 <alice@hard.example.net>")


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("rfc3834-vacation-auto-reply.eml", ReportKind.AUTO_REPLY),
        ("not-a-report.eml", ReportKind.UNKNOWN),
    ],
)
def test_messages_that_are_not_bounces_name_nobody(name: str, kind: ReportKind) -> None:
    report = read_report((DATA / name).read_bytes())
    assert report.kind is kind and not report.kind.counts
    assert report.failures == ()


def test_a_bare_auto_submitted_reply_is_an_auto_reply() -> None:
    raw = (
        b"From: reader@example.org\r\nTo: bounces@news.example.com\r\nSubject: Re: your newsletter\r\n"
        b"Auto-Submitted: auto-replied\r\n\r\nThanks, I will read it later.\r\n"
    )
    assert read_report(raw).kind is ReportKind.AUTO_REPLY


def test_delay_warnings_and_delivery_notices_are_not_failures() -> None:
    base = (DATA / "postfix-remote-452-mailbox-full.eml").read_bytes()
    delayed = base.replace(b"Action: failed", b"Action: delayed")
    delivered = base.replace(b"Action: failed", b"Action: delivered").replace(
        b"Status: 4.2.2", b"Status: 2.0.0"
    )
    assert read_report(delayed).kind is ReportKind.DELAY
    assert read_report(delivered).kind is ReportKind.DELIVERED


def test_a_feedback_report_that_is_not_a_complaint_counts_for_nothing() -> None:
    raw = (
        (DATA / "arf-yahoo-aol-fbl-abuse.eml")
        .read_bytes()
        .replace(b"Feedback-Type: abuse", b"Feedback-Type: not-spam")
    )
    report = read_report(raw)
    assert report.kind is ReportKind.UNKNOWN and "not-spam" in report.note


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x00\xff\xfe not a message at all \x00",
        b"Content-Type: multipart/report; report-type=delivery-status; boundary=x\r\n\r\n--x\r\n"
        b"Content-Type: message/delivery-status\r\n\r\n\xff\xff Action\r\n--x",  # truncated, malformed
        b"Content-Type: multipart/report; report-type=feedback-report; boundary=\r\n\r\n",
        b"X" * 100 + b"\r\n" * 3,
    ],
    ids=["empty", "binary", "malformed-dsn", "arf-without-parts", "no-headers"],
)
def test_unusable_bytes_are_read_as_unknown_without_raising(raw: bytes) -> None:
    report = read_report(raw)
    assert report.kind in (ReportKind.UNKNOWN, ReportKind.DELIVERED, ReportKind.DELAY)
    assert not report.kind.counts and report.sha256


# --------------------------------------------------------------------------- return paths


def test_a_return_path_names_its_copy_in_any_case() -> None:
    address = RETURN_PATH.address(12, 345)
    local = address.split("@")[0]
    assert address.startswith("bounces+") and address.endswith("@news.example.com") and len(local) <= 64
    assert all(c.isalnum() or c == "+" for c in local) and local == local.lower()
    assert RETURN_PATH.decode(address) == CopyRef(12, 345)
    assert RETURN_PATH.decode(address.upper()) == CopyRef(12, 345)  # an MTA that upper-cases


def test_a_return_path_with_a_changed_character_or_another_key_is_refused() -> None:
    address = RETURN_PATH.address(12, 345)
    local, _, domain = address.partition("@")
    flipped = local[:-1] + ("a" if local[-1] != "a" else "b")
    assert RETURN_PATH.decode(f"{flipped}@{domain}") is None
    assert ReturnPath("bounces@news.example.com", ["another-key"]).decode(address) is None
    assert RETURN_PATH.decode(address.replace("news.example.com", "example.org")) is None
    assert RETURN_PATH.decode("bounces@news.example.com") is None


def test_rotating_the_secret_keeps_old_return_paths_readable() -> None:
    old = RETURN_PATH.address(3, 4)
    rotated = ReturnPath("bounces@news.example.com", [SECRET, "the-new-key"])
    assert rotated.decode(old) == CopyRef(3, 4)
    assert RETURN_PATH.decode(rotated.address(3, 4)) is None  # the newest key signs


@pytest.mark.parametrize(
    "address",
    [
        "",
        "bounces",
        "bounces+x@news.example.com",
        "a b@news.example.com",
        "bounces@localhost",
        "x" * 40 + "@e.com",
    ],
)
def test_a_bounce_address_that_cannot_carry_a_token_is_refused(address: str) -> None:
    with pytest.raises(InvalidInput) as err:
        ReturnPath(address, [SECRET])
    assert err.value.field == "bounce_address"


# --------------------------------------------------------------------------- mailbox URLs


def test_imaps_and_pop3s_urls_are_read_and_the_password_never_shows() -> None:
    imap = parse_mailbox_url("imaps://bounce%40news:p%40ss w0rd@imap.example.com/Bounces")
    assert (imap.scheme, imap.host, imap.port, imap.username, imap.folder) == (
        "imaps",
        "imap.example.com",
        993,
        "bounce@news",
        "Bounces",
    )
    assert imap.password.get() == "p@ss w0rd"
    assert "p@ss" not in imap.describe() and "p@ss" not in repr(imap)
    pop = parse_mailbox_url("pop3s://u:secret@pop.example.com:1995")
    assert (pop.scheme, pop.port, pop.folder) == ("pop3s", 1995, "INBOX")
    assert "secret" not in repr(pop)
    assert parse_mailbox_url("maildir:///var/mail/bounces").path == "/var/mail/bounces"


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("imap://u:p@imap.example.com/INBOX", "in clear"),
        ("pop3://u:p@pop.example.com", "in clear"),
        ("imaps://imap.example.com/INBOX", "user name and password"),
        ("imaps://u:p@imap.example.com:99999/", "port"),
        ("maildir://relative/path", "absolute"),
        ("ftp://example.com/x", "use maildir"),
        ("", "no bounce mailbox"),
    ],
)
def test_bad_mailbox_urls_name_the_setting(url: str, says: str) -> None:
    with pytest.raises(InvalidInput) as err:
        parse_mailbox_url(url)
    assert err.value.field == "BRIEFING_BOUNCE_MAILBOX" and says in str(err.value)
    assert ":p@" not in str(err.value)


@pytest.mark.parametrize("scheme", ["imaps", "pop3s"])
def test_an_unreachable_mail_server_is_a_clear_error_without_the_password(scheme: str) -> None:
    port = free_port()  # nothing listens there
    with pytest.raises(TransportError) as err:
        open_mailbox(f"{scheme}://bounce:hunter2secret@127.0.0.1:{port}/INBOX", timeout=5)
    assert f"127.0.0.1:{port}" in str(err.value) and "hunter2secret" not in str(err.value)


def test_a_missing_maildir_is_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput) as err:
        open_mailbox(f"maildir://{tmp_path / 'nowhere'}")
    assert err.value.field == "BRIEFING_BOUNCE_MAILBOX" and "nowhere" in str(err.value)
