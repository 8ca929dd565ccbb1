"""Bounces and complaints end to end: a real send over loopback SMTP, then the report that comes back.

The DSNs are the ones a real Postfix sent (tests/data/bounces, see its README), with the return
path and Message-ID of the copy this test actually sent written in, as Postfix would have.
"""

from __future__ import annotations

import mailbox
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlmodel import Session
from typer.testing import CliRunner

from briefing.cli import app
from briefing.db import session_scope
from briefing.mail.mailboxes import open_mailbox
from briefing.mail.pool import open_transport
from briefing.mail.returnpath import ReturnPath
from briefing.models import BounceEvent, Delivery
from briefing.service import bounces as bounce_service
from briefing.service import editions as edition_service
from briefing.store import deliveries as ledger
from briefing.store import editions as edition_store
from tests.fixtures.clock import ManualClock
from tests.fixtures.newsroom import EDITION, SECRET, Newsroom
from tests.fixtures.smtp import Received, SmtpTestServer, free_port

DATA = Path(__file__).parent / "data" / "bounces"
NOW = datetime(2026, 11, 30, 6, 0, 30, tzinfo=UTC)
LATER = "2026-11-30T07:00:00+00:00"  # the CLI's clock: an hour after the send, when the DSN arrives
BOUNCES = "bounces@news.example.com"
RETURN_PATH = ReturnPath(BOUNCES, [SECRET])
RULES = bounce_service.BounceRules(soft_limit=3, soft_window=timedelta(days=30))

# What the captured samples carry, to be replaced by what this test sent.
CAPTURED = {
    "postfix-local-unknown-user.eml": (
        "bounces+aed5ddakgd6b4@news.example.com",
        "<2026-11-30.7.5d1c0ffee0aa@news.example.com>",
    ),
    "postfix-remote-452-mailbox-full.eml": (
        "bounces+aeeukh6m4xkm4@news.example.com",
        "<2026-11-30.9.5d1c0ffee0aa@news.example.com>",
    ),
    "arf-yahoo-aol-fbl-abuse.eml": (
        "bounces+aeh2etbqxptcw@news.example.com",
        "<2026-11-30.15.5e6f708192a3@news.example.com>",
    ),
    "rfc3834-vacation-auto-reply.eml": (
        "bounces+aeh2etbqxptcw@news.example.com",
        "<2026-11-30.15.5e6f708192a3@news.example.com>",
    ),
}
runner = CliRunner()


def returned(sample: str, copy: Received, *, recipient: str = "") -> bytes:
    """The sample as it would have come back for the copy this test sent."""
    verp, message_id = CAPTURED[sample]
    raw = (DATA / sample).read_bytes()
    assert verp.encode() in raw and message_id.encode() in raw
    raw = raw.replace(verp.encode(), copy.mail_from.encode()).replace(
        message_id.encode(), copy.message_id.encode()
    )
    if recipient:
        raw = raw.replace(b"heidi@example.com", recipient.encode())
    return raw


def send_with_verp(room: Newsroom, server: SmtpTestServer) -> dict[str, Received]:
    setup = replace(room.setup, return_path=RETURN_PATH)
    mail = open_transport(server.url(), pool_size=1, timeout=5)
    try:
        outcome = edition_service.send_edition(room.engine, setup, EDITION, mail, clock=ManualClock(NOW))
    finally:
        mail.close()
    assert outcome.edition.status == "sent"
    return {m.rcpt_tos[0]: m for m in server.messages}


def cli_env(engine: sa.Engine, **extra: str) -> dict[str, str]:
    env = {
        "BRIEFING_DATABASE_URL": engine.url.render_as_string(hide_password=False),
        "BRIEFING_TIMEZONE": "Europe/London",
        "BRIEFING_NOW": LATER,
        "BRIEFING_SECRET_KEY": SECRET,
        "BRIEFING_BOUNCE_ADDRESS": BOUNCES,
        "ORIGINAL_RECIPIENT": "",
    }
    env.update(extra)
    return env


def receive(engine: sa.Engine, raw: bytes, **extra: str) -> tuple[int, str]:
    result = runner.invoke(app, ["bounces", "receive"], env=cli_env(engine, **extra), input=raw)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stderr


def events(engine: sa.Engine) -> list[BounceEvent]:
    with Session(engine) as s:
        return list(s.execute(sa.select(BounceEvent)).scalars())


def next_snapshot(engine: sa.Engine, day: date) -> set[str]:
    """Who the next edition's snapshot takes."""
    with session_scope(engine) as s:
        edition = edition_store.ensure_edition(
            s, day, newsletter_id=1, now=NOW, scheduled_for=NOW + timedelta(days=1)
        )
        ledger.snapshot(s, edition.id, now=NOW)
        return {r.email for r in ledger.rows(s, edition.id, limit=1000)}


def test_copies_go_out_with_a_return_path_that_names_them(
    newsroom: Newsroom, smtp_server: SmtpTestServer
) -> None:
    ids = dict(
        zip(
            ("a@example.com", "b@example.com"),
            newsroom.subscribe("a@example.com", "b@example.com"),
            strict=True,
        )
    )
    sent = send_with_verp(newsroom, smtp_server)
    with Session(newsroom.engine) as s:
        edition_id = edition_store.get_edition(s, EDITION, newsletter_id=1).id
    for email, copy in sent.items():
        assert copy.mail_from != BOUNCES
        ref = RETURN_PATH.decode(copy.mail_from)
        assert ref is not None and (ref.edition_id, ref.subscriber_id) == (edition_id, ids[email])


def test_without_a_bounce_address_the_envelope_sender_is_the_from_address(
    sqlite_newsroom: Newsroom, smtp_server: SmtpTestServer
) -> None:
    sqlite_newsroom.subscribe("a@example.com")
    mail = open_transport(smtp_server.url(), pool_size=1, timeout=5)
    try:
        edition_service.send_edition(
            sqlite_newsroom.engine, sqlite_newsroom.setup, EDITION, mail, clock=ManualClock(NOW)
        )
    finally:
        mail.close()
    assert [m.mail_from for m in smtp_server.messages] == ["briefing@news.example.com"]


def test_a_dsn_received_marks_the_reader_bounced_and_the_next_edition_skips_them(
    newsroom: Newsroom, smtp_server: SmtpTestServer
) -> None:
    newsroom.subscribe("gone@mx.example.net", "stays@example.com")
    sent = send_with_verp(newsroom, smtp_server)

    code, said = receive(
        newsroom.engine, returned("postfix-local-unknown-user.eml", sent["gone@mx.example.net"])
    )

    assert code == 0
    assert "hard: gone@mx.example.net: active -> bounced" in said
    assert newsroom.status_of("gone@mx.example.net") == "bounced"
    assert newsroom.status_of("stays@example.com") == "active"
    [event] = events(newsroom.engine)
    assert (event.kind, event.code, event.source) == ("hard", "5.1.1", "receive")
    assert event.edition_id is not None
    assert event.received_at >= datetime.fromisoformat(LATER)  # the CLI's clock, pinned there, runs on
    assert next_snapshot(newsroom.engine, date(2026, 12, 1)) == {"stays@example.com"}


def test_the_same_dsn_twice_counts_once(sqlite_newsroom: Newsroom, smtp_server: SmtpTestServer) -> None:
    room = sqlite_newsroom
    room.subscribe("full@example.com")
    sent = send_with_verp(room, smtp_server)
    dsn = returned("postfix-remote-452-mailbox-full.eml", sent["full@example.com"])

    first = receive(room.engine, dsn)
    second = receive(room.engine, dsn)

    assert first == (0, "bounces receive: soft: full@example.com: recorded, still active\n")
    assert second == (0, "bounces receive: soft: full@example.com: already counted\n")
    assert len(events(room.engine)) == 1


def test_a_complaint_marks_the_reader_complained(newsroom: Newsroom, smtp_server: SmtpTestServer) -> None:
    newsroom.subscribe("annoyed@example.com", "stays@example.com")
    sent = send_with_verp(newsroom, smtp_server)

    code, said = receive(
        newsroom.engine, returned("arf-yahoo-aol-fbl-abuse.eml", sent["annoyed@example.com"])
    )

    assert code == 0 and "complaint: annoyed@example.com: active -> complained" in said
    assert newsroom.status_of("annoyed@example.com") == "complained"
    assert next_snapshot(newsroom.engine, date(2026, 12, 1)) == {"stays@example.com"}


def test_a_complaint_without_our_return_path_is_found_by_its_message_id(
    sqlite_newsroom: Newsroom, smtp_server: SmtpTestServer
) -> None:
    room = sqlite_newsroom
    room.subscribe("annoyed@example.com")
    sent = send_with_verp(room, smtp_server)
    copy = sent["annoyed@example.com"]
    raw = returned("arf-yahoo-aol-fbl-abuse.eml", copy).replace(
        copy.mail_from.encode(), b"redacted@example.org"
    )

    code, said = receive(room.engine, raw)

    assert code == 0 and "annoyed@example.com: active -> complained" in said


def test_a_vacation_auto_reply_changes_nothing(
    sqlite_newsroom: Newsroom, smtp_server: SmtpTestServer
) -> None:
    room = sqlite_newsroom
    room.subscribe("away@example.org")
    sent = send_with_verp(room, smtp_server)

    code, said = receive(room.engine, returned("rfc3834-vacation-auto-reply.eml", sent["away@example.org"]))

    assert code == 0 and said.startswith("bounces receive: auto-reply: nothing changed")
    assert room.status_of("away@example.org") == "active" and events(room.engine) == []


@pytest.mark.parametrize(
    "raw",
    [b"", b"\x00\xff\xfe\r\n\r\nnot mail", (DATA / "not-a-report.eml").read_bytes()],
    ids=["empty", "binary", "a-letter"],
)
def test_an_unusable_message_exits_0_and_says_so(sqlite_newsroom: Newsroom, raw: bytes) -> None:
    code, said = receive(sqlite_newsroom.engine, raw)
    assert code == 0
    assert said.startswith("bounces receive: unknown: nothing changed") and said.count("\n") == 1
    assert events(sqlite_newsroom.engine) == []


def test_receive_exits_0_even_when_it_cannot_be_set_up(sqlite_newsroom: Newsroom) -> None:
    dsn = (DATA / "postfix-local-unknown-user.eml").read_bytes()
    code, said = receive(sqlite_newsroom.engine, dsn, BRIEFING_BOUNCE_ADDRESS="not an address")
    assert code == 0 and said.startswith("bounces receive: not recorded: BRIEFING_BOUNCE_ADDRESS")


def test_receive_exits_75_when_the_database_is_unreachable() -> None:
    """EX_TEMPFAIL: the mail system keeps the DSN and delivers it again, instead of losing it."""
    dsn = (DATA / "postfix-local-unknown-user.eml").read_bytes()
    nobody_listens = sa.create_engine(f"postgresql+psycopg://briefing@127.0.0.1:{free_port()}/briefing")

    code, said = receive(nobody_listens, dsn)

    assert code == 75
    assert said.startswith("bounces receive: not recorded, the database is unreachable (OperationalError)")
    assert said.count("\n") == 1 and "Traceback" not in said


def test_a_forged_return_path_bounces_nobody(sqlite_newsroom: Newsroom, smtp_server: SmtpTestServer) -> None:
    room = sqlite_newsroom
    room.subscribe("target@example.com")
    sent = send_with_verp(room, smtp_server)
    copy = sent["target@example.com"]
    local, _, domain = copy.mail_from.partition("@")
    forged = local[:-1] + ("a" if local[-1] != "a" else "b") + "@" + domain
    raw = (DATA / "postfix-local-unknown-user.eml").read_bytes()
    raw = raw.replace(CAPTURED["postfix-local-unknown-user.eml"][0].encode(), forged.encode())

    code, said = receive(room.engine, raw)

    assert code == 0 and "nothing changed" in said
    assert room.status_of("target@example.com") == "active"


def test_a_dsn_polled_from_a_maildir_marks_the_reader_bounced(
    newsroom: Newsroom, smtp_server: SmtpTestServer, tmp_path: Path
) -> None:
    newsroom.subscribe("gone@mx.example.net", "stays@example.com")
    sent = send_with_verp(newsroom, smtp_server)
    box = mailbox.Maildir(str(tmp_path / "bounces"), create=True)
    box.add(returned("postfix-local-unknown-user.eml", sent["gone@mx.example.net"]))
    box.add(returned("rfc3834-vacation-auto-reply.eml", sent["stays@example.com"]))

    env = cli_env(newsroom.engine, BRIEFING_BOUNCE_MAILBOX=f"maildir://{tmp_path / 'bounces'}")
    result = runner.invoke(app, ["bounces", "poll"], env=env)

    assert result.exit_code == 0, result.output
    assert "2 read, 1 recorded, 1 changed nothing" in result.stdout
    assert newsroom.status_of("gone@mx.example.net") == "bounced"
    assert newsroom.status_of("stays@example.com") == "active"
    assert len(mailbox.Maildir(str(tmp_path / "bounces"), create=False)) == 0  # both were dealt with
    assert next_snapshot(newsroom.engine, date(2026, 12, 1)) == {"stays@example.com"}


def test_a_message_whose_result_is_not_committed_stays_in_the_mbox(
    sqlite_newsroom: Newsroom, smtp_server: SmtpTestServer, tmp_path: Path
) -> None:
    room = sqlite_newsroom
    room.subscribe("gone@mx.example.net")
    sent = send_with_verp(room, smtp_server)
    path = tmp_path / "bounces.mbox"
    box = mailbox.mbox(str(path))
    box.add(returned("postfix-local-unknown-user.eml", sent["gone@mx.example.net"]))
    box.flush()
    box.close()
    broken = sa.create_engine(f"sqlite:///{tmp_path / 'missing' / 'nothing.db'}")

    report = bounce_service.poll(
        broken, open_mailbox(f"mbox://{path}"), return_path=RETURN_PATH, rules=RULES, clock=ManualClock(NOW)
    )

    assert (report.read, report.failed) == (1, 1)
    assert len(mailbox.mbox(str(path))) == 1  # kept for the next poll
    again = bounce_service.poll(
        room.engine,
        open_mailbox(f"mbox://{path}"),
        return_path=RETURN_PATH,
        rules=RULES,
        clock=ManualClock(NOW),
    )
    assert (again.read, again.recorded, again.failed) == (1, 1, 0)
    assert len(mailbox.mbox(str(path))) == 0
    assert room.status_of("gone@mx.example.net") == "bounced"


# --------------------------------------------------------------------------- the soft-bounce rule


def _sent_edition(engine: sa.Engine, day: date) -> int:
    """An edition whose ledger says every active reader's copy was sent (the SMTP side is not the point)."""
    with session_scope(engine) as s:
        edition = edition_store.ensure_edition(s, day, newsletter_id=1, now=NOW, scheduled_for=NOW)
        ledger.snapshot(s, edition.id, now=NOW)
        s.execute(sa.update(Delivery).where(Delivery.edition_id == edition.id).values(status="sent"))
        return edition.id


def _soft(engine: sa.Engine, edition_id: int, subscriber_id: int, at: datetime) -> bounce_service.Handled:
    raw = (DATA / "postfix-remote-452-mailbox-full.eml").read_bytes()
    raw = raw.replace(
        CAPTURED["postfix-remote-452-mailbox-full.eml"][0].encode(),
        RETURN_PATH.address(edition_id, subscriber_id).encode(),
    )
    return bounce_service.receive(engine, raw, return_path=RETURN_PATH, rules=RULES, now=at)


def test_three_soft_bounced_editions_in_a_row_make_a_bounce(newsroom: Newsroom) -> None:
    [sid] = newsroom.subscribe("full@example.com")
    editions = [_sent_edition(newsroom.engine, date(2026, 11, d)) for d in (23, 24, 25)]

    for i, edition_id in enumerate(editions):
        _soft(newsroom.engine, edition_id, sid, NOW + timedelta(days=i))
        expected = "bounced" if i == 2 else "active"
        assert newsroom.status_of("full@example.com") == expected


def test_a_delivered_copy_between_soft_bounces_resets_the_count(newsroom: Newsroom) -> None:
    [sid] = newsroom.subscribe("full@example.com")
    e1, e2, _delivered, e4 = (_sent_edition(newsroom.engine, date(2026, 11, d)) for d in (23, 24, 25, 26))

    for i, edition_id in enumerate((e1, e2, e4)):  # the copy of the 25th arrived: no bounce for it
        _soft(newsroom.engine, edition_id, sid, NOW + timedelta(days=i))

    assert newsroom.status_of("full@example.com") == "active"


def test_soft_bounces_older_than_the_window_do_not_count(sqlite_newsroom: Newsroom) -> None:
    room = sqlite_newsroom
    [sid] = room.subscribe("full@example.com")
    editions = [_sent_edition(room.engine, date(2026, 10, d)) for d in (1, 2, 3)]

    for i, edition_id in enumerate(editions):
        _soft(room.engine, edition_id, sid, NOW + timedelta(days=20 * i))  # 0, 20 and 40 days

    assert room.status_of("full@example.com") == "active"


# --------------------------------------------------------------------------- bounces list


def test_bounces_list_shows_recent_events_as_data(
    sqlite_newsroom: Newsroom, smtp_server: SmtpTestServer
) -> None:
    room = sqlite_newsroom
    room.subscribe("gone@mx.example.net")
    sent = send_with_verp(room, smtp_server)
    raw = returned("postfix-local-unknown-user.eml", sent["gone@mx.example.net"])
    raw = raw.replace(b'unknown user: "gone"', b"unknown [bold red]user[/] \x1b[2J")
    receive(room.engine, raw)

    listed = runner.invoke(app, ["bounces", "list", "--since", "1d"], env=cli_env(room.engine))
    as_json = runner.invoke(app, ["bounces", "list", "--json"], env=cli_env(room.engine))
    bad = runner.invoke(app, ["bounces", "list", "--since", "soon"], env=cli_env(room.engine))

    assert listed.exit_code == 0 and "gone@mx.example.net" in listed.stdout
    assert "[bold red]user[/]" in listed.stdout and "\x1b" not in listed.stdout
    assert (
        as_json.exit_code == 0 and '"kind": "hard"' in as_json.stdout and '"code": "5.1.1"' in as_json.stdout
    )
    assert bad.exit_code == 1 and "--since" in bad.stderr


def test_an_event_refused_for_another_reason_is_never_taken_for_a_duplicate(sqlite_engine: sa.Engine) -> None:
    """Only "already counted" may drop a report; any other refusal must fail loudly, keeping the mail."""
    from briefing.store import bounces as bounce_store

    with pytest.raises(sa.exc.IntegrityError), session_scope(sqlite_engine) as s:
        bounce_store.add_event(
            s,
            subscriber_id=424242,  # no such reader: the foreign key refuses it
            edition_id=None,
            kind="hard",
            code="5.1.1",
            diagnostic="",
            source="receive",
            message_sha256="ab" * 32,
            now=NOW,
        )
