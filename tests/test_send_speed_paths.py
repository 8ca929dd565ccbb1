"""The send's fast paths give the same results as the plain ones they stand in for.

The ledger writer runs its statements on the driver's cursor, per-reader values skip the
quoted-printable encoder when it would change nothing, and a plain SMTP session never loads
certificates. Each test here pins that the shortcut is invisible: same rows, same bytes, same errors.
"""

from __future__ import annotations

import email
import quopri
from collections.abc import Callable
from datetime import date, timedelta
from email import policy
from email.message import EmailMessage

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlmodel import Session

from briefing.domain import Recipient
from briefing.errors import TransportError
from briefing.mail.message import MessageTemplate, _qp, _qp_value
from briefing.mail.session import SmtpConnection
from briefing.mail.smtp_url import parse_smtp_url
from briefing.store import deliveries as ledger
from tests.fixtures.ledger_copies import AMBIGUOUS, FAILED, SENT, SENT_AT, add_readers, send_copies
from tests.fixtures.smtp import SmtpTestServer, TlsFiles

DAY = date(2026, 11, 30)
OUTCOMES = {
    "sent@example.com": (SENT, 250),
    "refused@example.com": (FAILED, 550),
    "lost@example.com": (AMBIGUOUS, None),
}


def ledger_of(engine: sa.Engine, day: date) -> dict[str, tuple[object, ...]]:
    """Every column the writer sets, per reader, for the edition of `day`."""
    with engine.connect() as conn:
        found = conn.execute(
            sa.text(
                "SELECT d.email, d.status, d.attempts, d.smtp_code, d.smtp_reply, d.was_ambiguous, "
                "d.sent_at, d.updated_at, d.lease_owner, d.lease_until FROM delivery d "
                "JOIN edition e ON e.id = d.edition_id WHERE e.edition_date = :day"
            ),
            {"day": day},
        ).all()
    return {str(row[0]): tuple(row[1:]) for row in found}


def test_the_driver_path_writes_the_rows_sqlalchemys_path_writes(engine: sa.Engine) -> None:
    add_readers(engine, list(OUTCOMES))
    send_copies(engine, DAY, OUTCOMES)  # nothing listens: the driver's cursor
    seen: list[str] = []

    def listen(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        seen.append(statement)

    sa.event.listen(engine, "before_cursor_execute", listen)
    try:
        send_copies(engine, DAY + timedelta(days=1), OUTCOMES, now=SENT_AT)  # through exec_driver_sql
    finally:
        sa.event.remove(engine, "before_cursor_execute", listen)

    fast, plain = ledger_of(engine, DAY), ledger_of(engine, DAY + timedelta(days=1))
    assert fast == plain
    assert fast["sent@example.com"][:3] == ("sent", 1, 250)
    assert fast["refused@example.com"][:3] == ("failed", 1, 550)
    assert fast["lost@example.com"][0] == "ambiguous"
    # The listener saw the writer's statements: a query log still shows the whole send.
    assert any(s.startswith("UPDATE delivery SET status = 'sent'") for s in seen)


def test_a_timestamp_written_through_the_driver_reads_back_as_the_same_moment(engine: sa.Engine) -> None:
    add_readers(engine, ["sent@example.com"])
    moment = SENT_AT.replace(microsecond=123456)
    send_copies(engine, DAY, {"sent@example.com": (SENT, 250)}, now=moment)
    with engine.connect() as conn:
        edition_id = conn.execute(sa.text("SELECT id FROM edition")).scalar_one()
    with Session(engine) as session:
        [row] = ledger.rows(session, edition_id)
    assert row.sent_at == moment


def test_a_driver_error_comes_out_as_the_sqlalchemy_error(engine: sa.Engine) -> None:
    add_readers(engine, ["a@example.com"])
    send_copies(engine, DAY, {"a@example.com": (SENT, 250)})
    with engine.connect() as conn:
        delivery_id = conn.execute(sa.text("SELECT id FROM delivery")).scalar_one()
    writer = ledger.LedgerWriter(engine)
    try:
        with pytest.raises(sa.exc.IntegrityError), writer.transaction():  # message_id is NOT NULL
            writer.sent(delivery_id, code=250, reply="ok", message_id=None, now=SENT_AT)  # type: ignore[arg-type]
        with writer.transaction():  # the writer is still usable after the rollback
            writer.sent(delivery_id, code=250, reply="again", message_id="<a@example.com>", now=SENT_AT)
    finally:
        writer.close()
    assert ledger_of(engine, DAY)["a@example.com"][3] == "again"


def test_a_ledger_statement_outside_a_transaction_is_refused(sqlite_engine: sa.Engine) -> None:
    writer = ledger.LedgerWriter(sqlite_engine)
    try:
        with pytest.raises(RuntimeError, match="inside transaction"):
            writer.bounce(1, now=SENT_AT)
    finally:
        writer.close()


# --- quoted-printable shortcut -------------------------------------------------------------------

VALUE = st.one_of(
    st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), min_size=1, max_size=90),
    st.text(alphabet=st.sampled_from("ab .=\t\u00e9-_/:"), min_size=1, max_size=90),
    st.sampled_from(["https://news.example.com/u/a.b-c_d", ".Ada", "a" * 75, "a" * 76, "x ", " x"]),
)


@settings(max_examples=400, deadline=None)
@given(value=VALUE)
def test_a_reader_value_is_encoded_exactly_as_the_encoder_would(value: str) -> None:
    assert _qp_value(value) == _qp(value)


@pytest.mark.parametrize("width", [73, 74, 75])
def test_a_line_ending_in_a_space_stays_within_76_characters(width: int) -> None:
    text = "x" * width + " \n" + "y" * width + "\t\nend\n"
    encoded = _qp(text)
    assert max(len(line) for line in encoded.split(b"\r\n")) <= 76
    assert quopri.decodestring(encoded.replace(b"\r\n", b"\n")).decode() == text


def template(text: str = "Hello %%FIRST_NAME%%\n") -> MessageTemplate:
    return MessageTemplate(
        from_name="The Morning Briefing",
        from_address="briefing@news.example.com",
        subject="Your briefing",
        html="<p>Hello %%FIRST_NAME%%</p><a href='%%UNSUBSCRIBE_URL%%'>unsubscribe</a>",
        text=text,
        list_id="morning.news.example.com",
        unsubscribe_mailto="unsubscribe@news.example.com",
        message_id_domain="news.example.com",
        edition_key="2026-11-30",
    )


def test_the_message_id_returned_is_the_one_in_the_header() -> None:
    reader = Recipient(42, "ada@example.com", "Ada&Bo Lovelace", "https://news.example.com/u/tok42")
    raw, message_id = template().render_with_id(reader, date=SENT_AT)
    parsed = email.message_from_bytes(raw, policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    assert parsed["Message-ID"] == message_id == template().message_id(42)
    assert raw == template().render(reader, date=SENT_AT)
    text, html = (part.get_content() for part in parsed.iter_parts())
    assert "Hello Ada&amp;Bo" in html and "Hello Ada&Bo" in text  # escaped only in the HTML part


# --- TLS only when asked --------------------------------------------------------------------------


def test_a_plain_session_never_reads_the_certificate_file(smtp_server: SmtpTestServer) -> None:
    conn = SmtpConnection(
        parse_smtp_url(smtp_server.url()), timeout=5, ca_file="/nonexistent/briefing-ca.pem"
    )
    data = template().render(Recipient(1, "a@example.com", "A", "https://news.example.com/u/t"), date=SENT_AT)
    assert conn.send("bounces@news.example.com", "a@example.com", data).accepted
    conn.close()


def test_a_tls_session_with_a_missing_certificate_file_says_so(
    smtp_server_factory: Callable[..., SmtpTestServer], smtp_tls_files: TlsFiles
) -> None:
    server = smtp_server_factory(tls=smtp_tls_files)
    conn = SmtpConnection(
        parse_smtp_url(server.url(starttls=True)), timeout=5, ca_file="/nonexistent/briefing-ca.pem"
    )
    with pytest.raises(TransportError, match="cannot talk to"):
        conn.connect()
    conn.ca_file = smtp_tls_files.ca_file
    conn.connect()
    assert conn.is_connected
    conn.close()


def test_a_writer_claims_on_from_its_last_batch_and_then_the_rows_put_back_behind_it(
    engine: sa.Engine,
) -> None:
    """Each claim starts where the writer's last batch ended (so it never filters its way past the
    sent rows); a row released behind that point is still claimed once nothing is left ahead."""
    from briefing.db import session_scope
    from briefing.store import editions as edition_store

    emails = [f"reader{i}@example.com" for i in range(6)]
    add_readers(engine, emails)
    with session_scope(engine) as session:
        edition = edition_store.ensure_edition(
            session, DAY, newsletter_id=1, now=SENT_AT, scheduled_for=SENT_AT
        )
        ledger.snapshot(session, edition.id, now=SENT_AT)
    lease = SENT_AT + timedelta(minutes=5)
    writer = ledger.LedgerWriter(engine)
    statements: list[tuple[str, object]] = []

    def listen(_conn: object, _cursor: object, statement: str, params: object, *_args: object) -> None:
        if "d.status = 'pending'" in statement:
            statements.append((statement, params))

    sa.event.listen(engine, "before_cursor_execute", listen)
    try:
        with writer.transaction():
            first, _ = writer.claim_batch(edition.id, "w", lease, SENT_AT, 2)
        with writer.transaction():
            writer.release([first[0].delivery_id], now=SENT_AT)  # put back behind the writer
            second, _ = writer.claim_batch(edition.id, "w", lease, SENT_AT, 2)
        with writer.transaction():
            third, _ = writer.claim_batch(edition.id, "w", lease, SENT_AT, 3)
        with writer.transaction():
            rest, _ = writer.claim_batch(edition.id, "w", lease, SENT_AT, 3)
    finally:
        sa.event.remove(engine, "before_cursor_execute", listen)
        writer.close()

    ids = sorted(c.delivery_id for c in first)
    assert [c.email for c in first] == emails[:2]
    assert [c.email for c in second] == emails[2:4], "the second claim starts after the first batch"
    assert [c.email for c in third] == [emails[0], emails[4], emails[5]], "ahead first, then the row behind"
    assert rest == []
    # The second claim asked for rows after the first batch's last id, not from the ledger's start.
    assert any(ids[-1] in tuple(p) for s, p in statements[1:2] if isinstance(p, (tuple, list)))
