from __future__ import annotations

import base64
import dataclasses
import email
import logging
import mailbox
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from pathlib import Path

import pytest

from briefing.domain import Recipient
from briefing.errors import AuthFailed, InvalidInput, TransportError
from briefing.mail.message import MessageTemplate
from briefing.mail.pool import ConnectionPool, RateLimiter, open_transport
from briefing.mail.session import SmtpConnection
from briefing.mail.smtp_url import Secret, parse_smtp_url
from briefing.mail.transport import MaildirTransport, MemoryTransport, Outcome
from tests.fixtures.clock import ManualClock
from tests.fixtures.smtp import FaultPlan, SmtpTestServer, TlsFiles, free_port, pin_dkim_clock

# Plain-text AUTH is only ever used against loopback test servers.
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")

Factory = Callable[..., SmtpTestServer]


@pytest.fixture(params=[False, True], ids=["step-by-step", "pipelined"])
def smtp_server_factory(request: pytest.FixtureRequest, smtp_server_factory: Factory) -> Factory:
    """Every test here runs against a server without and with PIPELINING, which changes our dialogue."""

    def factory(plan: FaultPlan | None = None, **kwargs: object) -> SmtpTestServer:
        return smtp_server_factory(
            dataclasses.replace(plan or FaultPlan(), pipelining=request.param), **kwargs
        )

    return factory


def test_the_pipelined_dialogue_is_used_when_offered(smtp_server: SmtpTestServer) -> None:
    conn = connection(smtp_server)
    assert conn.send(SENDER, "a@example.com", message_for("a@example.com")).accepted
    assert conn._pipelining is smtp_server.plan.pipelining


SENDER = "bounces@news.example.com"
WHEN = datetime(2026, 11, 28, 6, tzinfo=UTC)
PASSWORD = "s3cr3t-Pa55word!"

TEMPLATE = MessageTemplate(
    from_name="The Morning Briefing",
    from_address="briefing@news.example.com",
    subject="Your briefing",
    html='<p>Hello %%FIRST_NAME%%</p>\n<p>.dot line</p>\n<a href="%%UNSUBSCRIBE_URL%%">unsubscribe</a>',
    text="Hello %%FIRST_NAME%%\n.\n..two dots\nUnsubscribe: %%UNSUBSCRIBE_URL%%\n",
    list_id="morning.news.example.com",
    unsubscribe_mailto="unsubscribe@news.example.com",
    message_id_domain="news.example.com",
    edition_key="2026-11-28",
)


def message_for(address: str, sid: int = 1) -> bytes:
    recipient = Recipient(sid, address, "Reader", f"https://news.example.com/unsubscribe/tok{sid}.sig")
    return TEMPLATE.render(recipient, date=WHEN)


def connection(server: SmtpTestServer, **kwargs: object) -> SmtpConnection:
    ca = server.tls.ca_file if server.tls else None
    return SmtpConnection(parse_smtp_url(server.url()), timeout=5, ca_file=ca, **kwargs)  # type: ignore[arg-type]


def test_accepted_bytes_arrive_intact(smtp_server: SmtpTestServer) -> None:
    conn = connection(smtp_server)
    data = message_for("alice@example.com")
    result = conn.send(SENDER, "alice@example.com", data)
    assert result.outcome is Outcome.ACCEPTED and result.accepted
    assert result.code == 250 and "accepted" in result.reply
    assert result.stage == "end-of-data"
    [received] = smtp_server.messages
    assert received.data == data
    # The text's lines that start with "." (".", "..two dots", ".dot line") arrive as written.
    parsed = email.message_from_bytes(received.data, policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    text, html = (part.get_content().replace("\r\n", "\n") for part in parsed.iter_parts())
    assert "\n.\n..two dots\n" in text and "<p>.dot line</p>" in html
    assert received.rcpt_tos == ("alice@example.com",)
    assert received.mail_from == SENDER
    assert received.message_id == TEMPLATE.message_id(1)
    conn.close()


def test_per_recipient_classification(smtp_server: SmtpTestServer) -> None:
    conn = connection(smtp_server)
    deferred = conn.send(SENDER, "temp1@example.com", message_for("temp1@example.com"))
    assert (deferred.outcome, deferred.code, deferred.stage) == (Outcome.DEFERRED, 451, "rcpt")
    rejected = conn.send(SENDER, "perm1@example.com", message_for("perm1@example.com"))
    assert (rejected.outcome, rejected.code, rejected.stage) == (Outcome.REJECTED, 550, "rcpt")
    assert "User unknown" in rejected.reply
    ok = conn.send(SENDER, "bob@example.com", message_for("bob@example.com"))
    assert ok.accepted
    assert smtp_server.sessions == 1  # refusals did not cost the session
    assert [m.rcpt_tos for m in smtp_server.messages] == [("bob@example.com",)]


def test_data_rejection(smtp_server_factory: Factory) -> None:
    server = smtp_server_factory(FaultPlan(data_reply="554 5.7.1 Message refused as spam"))
    result = connection(server).send(SENDER, "a@example.com", message_for("a@example.com"))
    assert (result.outcome, result.code, result.stage) == (Outcome.REJECTED, 554, "end-of-data")
    server.plan.data_reply = "452 4.3.1 Insufficient system storage"
    result = connection(server).send(SENDER, "a@example.com", message_for("a@example.com"))
    assert (result.outcome, result.code) == (Outcome.DEFERRED, 452)


def test_421_mid_session_is_connection_level(smtp_server_factory: Factory) -> None:
    server = smtp_server_factory(FaultPlan(drop_after=2))
    conn = connection(server)
    assert conn.send(SENDER, "a@example.com", message_for("a@example.com")).accepted
    assert conn.send(SENDER, "b@example.com", message_for("b@example.com")).accepted
    result = conn.send(SENDER, "c@example.com", message_for("c@example.com"))
    assert (result.outcome, result.code, result.stage) == (Outcome.CONNECTION, 421, "mail")
    assert not conn.is_connected
    again = conn.send(SENDER, "c@example.com", message_for("c@example.com"))  # reconnects on demand
    assert again.accepted
    assert server.sessions == 2
    assert len(server.messages) == 3


def test_disconnect_before_data_is_connection_level(smtp_server_factory: Factory) -> None:
    server = smtp_server_factory(FaultPlan(drop_after=1, drop_mode="close"))
    conn = connection(server)
    assert conn.send(SENDER, "a@example.com", message_for("a@example.com")).accepted
    result = conn.send(SENDER, "b@example.com", message_for("b@example.com"))
    assert result.outcome is Outcome.CONNECTION
    assert result.stage == "mail"
    assert len(server.messages) == 1


def test_pool_retries_a_stale_session_once(smtp_server_factory: Factory) -> None:
    server = smtp_server_factory(FaultPlan(drop_after=1))
    pool = ConnectionPool(parse_smtp_url(server.url()), size=1, timeout=5)
    for i in range(3):
        assert pool.send(SENDER, f"r{i}@example.com", message_for(f"r{i}@example.com", i + 1)).accepted
    assert server.sessions == 3
    assert len(server.messages) == 3
    pool.close()


def test_mail_from_refused_is_connection_level(smtp_server_factory: Factory) -> None:
    server = smtp_server_factory(FaultPlan(mail_reply="550 5.7.1 Sender address rejected"))
    result = connection(server).send(SENDER, "a@example.com", message_for("a@example.com"))
    assert (result.outcome, result.code, result.stage) == (Outcome.CONNECTION, 550, "mail")
    server.plan.mail_reply = "421 4.3.2 Service shutting down"
    result = connection(server).send(SENDER, "a@example.com", message_for("a@example.com"))
    assert (result.outcome, result.code) == (Outcome.CONNECTION, 421)
    assert server.messages == []


def test_server_down_is_a_refused_connection_not_a_timeout() -> None:
    config = parse_smtp_url(f"smtp://127.0.0.1:{free_port()}")
    conn = SmtpConnection(config, timeout=5)
    result = conn.send(SENDER, "a@example.com", b"Subject: x\r\n\r\nx\r\n")
    assert (result.outcome, result.stage) == (Outcome.CONNECTION, "connect")
    assert "refused" in result.reply.lower() and "timed out" not in result.reply.lower()
    with pytest.raises(TransportError):
        conn.connect()
    pool = ConnectionPool(config, size=2, timeout=5)
    assert pool.send(SENDER, "a@example.com", b"Subject: x\r\n\r\nx\r\n").outcome is Outcome.CONNECTION


def test_ambiguous_when_data_went_out_but_no_reply(smtp_server: SmtpTestServer) -> None:
    conn = connection(smtp_server)
    data = message_for("ambig1@example.com", 7)
    result = conn.send(SENDER, "ambig1@example.com", data)
    assert (result.outcome, result.stage) == (Outcome.AMBIGUOUS, "end-of-data")
    assert result.code is None
    # The server did receive it: exactly the window the ledger must treat as "maybe sent".
    assert [m.message_id for m in smtp_server.handler.ambiguous] == [TEMPLATE.message_id(7)]
    assert not conn.is_connected
    assert conn.send(SENDER, "next@example.com", message_for("next@example.com")).accepted


def test_tarpit_times_out_as_ambiguous(smtp_server_factory: Factory) -> None:
    """The server takes the message and never replies: our read timeout ends the wait, and says so."""
    server = smtp_server_factory(FaultPlan(data_hold=True))
    conn = SmtpConnection(parse_smtp_url(server.url()), timeout=0.5)
    result = conn.send(SENDER, "slow@example.com", message_for("slow@example.com"))
    assert (result.outcome, result.code, result.stage) == (Outcome.AMBIGUOUS, None, "end-of-data")
    assert "timed out" in result.reply
    assert [m.message_id for m in server.messages] == [TEMPLATE.message_id(1)]  # it did arrive
    assert not conn.is_connected


def test_auth(smtp_server_factory: Factory, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    server = smtp_server_factory(user="newsroom", password=PASSWORD)
    good = SmtpConnection(parse_smtp_url(server.url()), timeout=5)
    assert good.send(SENDER, "a@example.com", message_for("a@example.com")).accepted
    bad = SmtpConnection(parse_smtp_url(server.url(password="wrong-password")), timeout=5)
    with pytest.raises(AuthFailed) as info:
        bad.send(SENDER, "a@example.com", message_for("a@example.com"))
    assert "535" in str(info.value)
    assert "wrong-password" not in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__
    with pytest.raises(AuthFailed):
        open_transport(server.url(password="wrong-password"), timeout=5).send(
            SENDER, "a@example.com", b"x\r\n"
        )
    # Nothing we logged or raised carries the password, plain or base64.
    secrets = [
        PASSWORD,
        base64.b64encode(PASSWORD.encode()).decode(),
        base64.b64encode(f"\0newsroom\0{PASSWORD}".encode()).decode(),
    ]
    for record in caplog.records:
        for s in secrets:
            assert s not in record.getMessage()
    assert len(server.messages) == 1


def test_starttls_verified_with_explicit_ca(smtp_server_factory: Factory, smtp_tls_files: TlsFiles) -> None:
    server = smtp_server_factory(tls=smtp_tls_files, user="newsroom", password=PASSWORD)
    url = server.url()
    assert "starttls=on" in url
    conn = SmtpConnection(parse_smtp_url(url), timeout=5, ca_file=smtp_tls_files.ca_file)
    assert conn.send(SENDER, "a@example.com", message_for("a@example.com")).accepted
    assert server.handler.auth_attempts == 1

    untrusted = SmtpConnection(parse_smtp_url(url), timeout=5)
    with pytest.raises(TransportError) as info:
        untrusted.connect()
    assert "certificate" in str(info.value).lower()
    result = untrusted.send(SENDER, "a@example.com", message_for("a@example.com"))
    assert (result.outcome, result.stage) == (Outcome.CONNECTION, "connect")
    assert server.handler.auth_attempts == 1  # no credentials went to an unverified server
    assert len(server.messages) == 1


def test_starttls_required_but_not_offered(smtp_server_factory: Factory) -> None:
    server = smtp_server_factory(user="newsroom", password=PASSWORD)
    conn = SmtpConnection(parse_smtp_url(server.url(starttls=True)), timeout=5)
    with pytest.raises(TransportError) as info:
        conn.connect()
    assert "STARTTLS" in str(info.value)
    assert server.handler.auth_attempts == 0


def test_server_requiring_tls_refuses_plaintext(
    smtp_server_factory: Factory, smtp_tls_files: TlsFiles
) -> None:
    server = smtp_server_factory(tls=smtp_tls_files)
    conn = SmtpConnection(parse_smtp_url(server.url(starttls=False)), timeout=5)
    result = conn.send(SENDER, "a@example.com", message_for("a@example.com"))
    assert result.outcome is Outcome.CONNECTION
    assert result.code == 530


def test_pool_reuses_one_session(smtp_server: SmtpTestServer) -> None:
    pool = ConnectionPool(parse_smtp_url(smtp_server.url()), size=1, timeout=5)
    for i in range(30):
        assert pool.send(SENDER, f"r{i}@example.com", message_for(f"r{i}@example.com", i + 1)).accepted
    assert smtp_server.sessions == 1
    assert pool.sessions_opened == 1
    assert len({m.message_id for m in smtp_server.messages}) == 30
    pool.close()


def test_pool_threads_share_n_sessions(smtp_server: SmtpTestServer) -> None:
    pool = ConnectionPool(parse_smtp_url(smtp_server.url()), size=3, timeout=5)
    results: list[Outcome] = []
    lock = threading.Lock()

    # Three threads hold all three connections at once, so each of the three sessions is opened.
    all_out = threading.Barrier(3, timeout=30)

    def first_use(n: int) -> None:
        with pool.checkout() as conn:
            all_out.wait()
            r = conn.send(SENDER, f"first{n}@example.com", message_for(f"first{n}@example.com", 900 + n))
        with lock:
            results.append(r.outcome)

    openers = [threading.Thread(target=first_use, args=(n,)) for n in range(3)]
    for t in openers:
        t.start()
    for t in openers:
        t.join(timeout=30)
    assert results == [Outcome.ACCEPTED] * 3 and smtp_server.sessions == 3
    results.clear()

    def worker(offset: int) -> None:
        for i in range(10):
            sid = offset * 100 + i + 1
            r = pool.send(SENDER, f"r{sid}@example.com", message_for(f"r{sid}@example.com", sid))
            with lock:
                results.append(r.outcome)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert results == [Outcome.ACCEPTED] * 60
    # Six threads, sixty messages, and still exactly the three sessions: none opened, none lost.
    assert smtp_server.sessions == 3 and pool.sessions_opened == 3
    assert len({m.message_id for m in smtp_server.messages}) == 63
    assert {m.session for m in smtp_server.messages} == {1, 2, 3}
    pool.close()


def test_pool_rotates_sessions_after_a_limit(smtp_server: SmtpTestServer) -> None:
    pool = ConnectionPool(parse_smtp_url(smtp_server.url()), size=1, timeout=5, max_messages_per_connection=2)
    for i in range(5):
        assert pool.send(SENDER, f"r{i}@example.com", message_for(f"r{i}@example.com", i + 1)).accepted
    assert smtp_server.sessions == 3


def test_bad_envelope_never_reaches_the_server(smtp_server: SmtpTestServer) -> None:
    conn = connection(smtp_server)
    result = conn.send(SENDER, "a@example.com\r\nRCPT TO:<b@example.com>", b"x\r\n")
    assert (result.outcome, result.stage) == (Outcome.REJECTED, "local")
    with pytest.raises(InvalidInput):
        conn.send("x@example.com\r\nDATA", "a@example.com", b"x\r\n")
    assert smtp_server.messages == []


def test_rate_limiter_token_bucket() -> None:
    clock = ManualClock(WHEN)
    limiter = RateLimiter(10, burst=2, clock=clock)
    waits = [limiter.acquire() for _ in range(5)]
    assert waits[:2] == [0.0, 0.0]
    assert all(w == pytest.approx(0.1) for w in waits[2:])
    assert clock.waited == waits[2:]  # it waited on the clock it was given, exactly that long
    clock.advance(10)  # idle: the bucket refills, but only up to the burst
    assert [limiter.acquire() for _ in range(3)] == [0.0, 0.0, pytest.approx(0.1)]
    with pytest.raises(InvalidInput):
        RateLimiter(0, clock=clock)


def test_pool_rate_limit_applies(smtp_server: SmtpTestServer) -> None:
    clock = ManualClock(WHEN)
    pool = ConnectionPool(parse_smtp_url(smtp_server.url()), size=1, timeout=5, rate_limit=20, clock=clock)
    for i in range(25):
        assert pool.send(SENDER, f"r{i}@example.com", message_for(f"r{i}@example.com", i + 1)).accepted
    # A burst of 20 goes at once; the other 5 each wait 1/20 s on the pool's clock.
    assert clock.waited == [pytest.approx(0.05)] * 5
    assert len(smtp_server.messages) == 25
    with pytest.raises(InvalidInput, match="clock"):
        ConnectionPool(parse_smtp_url(smtp_server.url()), size=1, rate_limit=20)


def test_maildir_transport(tmp_path: Path) -> None:
    transport = open_transport(f"maildir://{tmp_path / 'mail'}")
    assert isinstance(transport, MaildirTransport)
    data = message_for("alice@example.com", 3)
    result = transport.send(SENDER, "alice@example.com", data)
    assert result.accepted
    box = mailbox.Maildir(str(tmp_path / "mail"), create=False)
    [key] = list(box.keys())
    raw = box.get_bytes(key)
    assert raw.endswith(data)
    assert raw.startswith(b"Return-Path: <bounces@news.example.com>\r\nDelivered-To: alice@example.com\r\n")
    assert box[key]["Message-ID"] == TEMPLATE.message_id(3)
    assert transport.send(SENDER, "bad\r\n@example.com", data).outcome is Outcome.REJECTED


def test_memory_transport() -> None:
    transport = open_transport("memory://")
    assert isinstance(transport, MemoryTransport)
    assert transport.send(SENDER, "a@example.com", b"x\r\n").accepted
    assert [(m.envelope_from, m.rcpt, m.data) for m in transport.messages] == [
        (SENDER, "a@example.com", b"x\r\n")
    ]


def test_server_in_subprocess(smtp_subprocess: Callable[..., object]) -> None:
    server = smtp_subprocess()
    pool = open_transport(server.url, timeout=5)  # type: ignore[attr-defined]
    assert pool.send(SENDER, "a@example.com", message_for("a@example.com", 5)).accepted
    assert (
        pool.send(SENDER, "temp@example.com", message_for("temp@example.com", 6)).outcome is Outcome.DEFERRED
    )
    rows = server.messages()  # type: ignore[attr-defined]
    assert [r["message_id"] for r in rows] == [TEMPLATE.message_id(5)]
    server.kill()  # type: ignore[attr-defined]
    assert pool.send(SENDER, "b@example.com", message_for("b@example.com", 7)).outcome is Outcome.CONNECTION


# --- URLs and secrets ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "smtp://user:pa%40ss@smtp.example.com:587",
            ("smtp", "smtp.example.com", 587, "user", "pa@ss", True),
        ),
        ("smtp://smtp.example.com", ("smtp", "smtp.example.com", 587, "", "", True)),
        ("smtps://user:pw@smtp.example.com", ("smtps", "smtp.example.com", 465, "user", "pw", False)),
        ("smtp://127.0.0.1:1025", ("smtp", "127.0.0.1", 1025, "", "", False)),
        ("smtp://localhost:1025?starttls=on", ("smtp", "localhost", 1025, "", "", True)),
        ("smtp://[::1]:2525", ("smtp", "::1", 2525, "", "", False)),
        ("smtp://relay.example.net:25?starttls=off", ("smtp", "relay.example.net", 25, "", "", False)),
        ("SMTP://u:p@127.0.0.1:25", ("smtp", "127.0.0.1", 25, "u", "p", False)),
    ],
)
def test_parse_smtp_url(url: str, expected: tuple[object, ...]) -> None:
    c = parse_smtp_url(url)
    assert (c.scheme, c.host, c.port, c.username, c.password.get(), c.starttls) == expected


def test_parse_other_schemes(tmp_path: Path) -> None:
    assert parse_smtp_url("memory://").scheme == "memory"
    c = parse_smtp_url(f"maildir://{tmp_path}")
    assert (c.scheme, c.path) == ("maildir", str(tmp_path))
    assert parse_smtp_url("maildir:demo/mail").path == "demo/mail"


@pytest.mark.parametrize(
    ("url", "part"),
    [
        ("", "empty"),
        ("http://user:hunter2-secret@smtp.example.com", "scheme"),
        ("smtp://user:hunter2-secret@:587", "host"),
        ("smtp://user:hunter2-secret@smtp.example.com:99999", "port"),
        ("smtp://user:hunter2-secret@smtp.example.com:abc", "port"),
        ("smtp://user:hunter2-secret@smtp.example.com?starttls=maybe", "starttls"),
        ("smtp://user:hunter2-secret@smtp.example.com?tls=1", "query parameter"),
        ("smtp://user:hunter2-secret@smtp.example.com?starttls=off", "starttls"),
        ("smtps://user:hunter2-secret@smtp.example.com?starttls=on", "starttls"),
        ("smtp://:hunter2-secret@smtp.example.com", "user"),
        ("maildir://", "path"),
        ("smtp://user:hunter2-secret?x@smtp.example.com", "password"),
        ("smtp://user:hunter2-secret#x@smtp.example.com", "password"),
        ("smtp://user:hunter2-secret/x@smtp.example.com", "password"),
        ("smtp:user:hunter2-secret@smtp.example.com", "host"),
    ],
)
def test_bad_urls_name_the_part_and_hide_the_password(url: str, part: str) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_smtp_url(url)
    text = str(info.value) + repr(info.value) + repr(info.value.args)
    assert part in text
    assert "hunter2-secret" not in text


def test_password_never_shown() -> None:
    c = parse_smtp_url("smtps://newsroom:hunter2-secret@smtp.example.com")
    for text in (repr(c), str(c), f"{c}", c.redacted_url, repr(c.password), str(c.password), f"{c.password}"):
        assert "hunter2-secret" not in text
    assert "newsroom:***@" in c.redacted_url
    pool = ConnectionPool(c, size=1)
    assert "hunter2-secret" not in repr(pool) + repr(SmtpConnection(c))
    assert Secret("a") == Secret("a") and Secret("a") != Secret("b")
    with pytest.raises(TypeError):
        import pickle

        pickle.dumps(c.password)


def test_connect_errors_hide_the_password() -> None:
    url = f"smtps://newsroom:hunter2-secret@127.0.0.1:{free_port()}"
    with pytest.raises(TransportError) as info:
        SmtpConnection(parse_smtp_url(url), timeout=2).connect()
    assert "hunter2-secret" not in str(info.value)


def test_signed_message_verifies_after_smtp(
    smtp_server: SmtpTestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DKIM must survive the trip: dot-stuffing and CRLF handling may not touch the signed bytes."""
    import dkim
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    from briefing.mail.dkim import DkimSigner

    key = rsa.generate_private_key(65537, 2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    signer = DkimSigner(pem, "brief", "news.example.com")
    record = signer.dns_record().encode()
    pin_dkim_clock(monkeypatch, WHEN)
    pool = open_transport(smtp_server.url(), timeout=5)
    assert pool.send(SENDER, "a@example.com", signer.sign(message_for("a@example.com"), now=WHEN)).accepted
    [received] = smtp_server.messages
    assert dkim.verify(received.data, dnsfunc=lambda name, timeout=5: record)
    pool.close()
