from __future__ import annotations

import mailbox
import os
import signal
import smtplib
import socket
import subprocess
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from briefing.domain import Recipient
from briefing.mail.devsmtp import DevSmtpServer, ReceivedMessage, free_port, run
from briefing.mail.dkim import DkimSigner
from briefing.mail.message import MessageTemplate
from briefing.mail.pool import open_transport
from tests.fixtures.cli import cli_env
from tests.fixtures.cli import run as run_cli
from tests.fixtures.clock import ManualClock
from tests.fixtures.smtp import pin_dkim_clock
from tests.fixtures.waiting import wait_until

ROOT = Path(__file__).resolve().parents[1]
WHEN = datetime(2026, 11, 28, 6, tzinfo=UTC)

TEMPLATE = MessageTemplate(
    from_name="The Morning Briefing",
    from_address="briefing@news.example.com",
    subject="Caf\u00e9 news\r\nBcc: someone@example.net",
    html='<p>Hi %%FIRST_NAME%%</p><a href="%%UNSUBSCRIBE_URL%%">unsubscribe</a>',
    text="Hi %%FIRST_NAME%%\nUnsubscribe: %%UNSUBSCRIBE_URL%%\n",
    list_id="morning.news.example.com",
    unsubscribe_mailto="unsubscribe@news.example.com",
    message_id_domain="news.example.com",
    edition_key="2026-11-28",
)


def _message(sid: int) -> bytes:
    r = Recipient(sid, f"reader{sid}@example.com", "Reader", f"https://news.example.com/unsubscribe/t{sid}.s")
    return TEMPLATE.render(r, date=WHEN)


def test_stores_every_message_and_reports_it(tmp_path: Path) -> None:
    seen: list[ReceivedMessage] = []
    clock = ManualClock(WHEN)
    with DevSmtpServer(tmp_path / "mail", port=0, clock=clock, on_message=seen.append) as server:
        assert server.host == "127.0.0.1" and server.port > 0
        transport = open_transport(server.url, timeout=5)
        for sid in (1, 2, 3):
            assert transport.send(
                "bounces@news.example.com", f"reader{sid}@example.com", _message(sid)
            ).accepted
        transport.close()
        assert server.count == 3
    box = mailbox.Maildir(str(tmp_path / "mail"), create=False)
    assert len(box) == 3
    ids = sorted(str(m["Message-ID"]) for m in box)
    assert ids == sorted(TEMPLATE.message_id(s) for s in (1, 2, 3))
    assert [m.rcpt_tos for m in seen] == [
        ("reader1@example.com",),
        ("reader2@example.com",),
        ("reader3@example.com",),
    ]
    assert [m.received_at for m in seen] == [WHEN] * 3  # stamped by the server's clock
    line = seen[0].summary()
    assert line == (
        f"{WHEN.astimezone():%H:%M:%S} "
        "bounces@news.example.com -> reader1@example.com: Caf\u00e9 news Bcc: someone@example.net"
    )


def test_stored_bytes_keep_dkim_valid(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = rsa.generate_private_key(65537, 2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    signer = DkimSigner(pem, "brief", "news.example.com")
    record = signer.dns_record().encode()
    pin_dkim_clock(monkeypatch, WHEN)
    clock = ManualClock(WHEN)
    with DevSmtpServer(tmp_path / "mail", port=0, clock=clock, on_message=lambda m: None) as server:
        with smtplib.SMTP(server.host, server.port, timeout=5) as client:
            signed = signer.sign(_message(1), now=WHEN)
            client.sendmail("bounces@news.example.com", ["reader1@example.com"], signed)
    box = mailbox.Maildir(str(tmp_path / "mail"), create=False)
    [raw] = [box.get_bytes(k) for k in box.keys()]
    assert raw.startswith(b"Return-Path: <bounces@news.example.com>\r\nX-RcptTo: reader1@example.com\r\n")
    assert dkim.verify(raw, dnsfunc=lambda name, timeout=5: record)


def test_start_stop_is_idempotent(tmp_path: Path) -> None:
    server = DevSmtpServer(tmp_path / "mail", port=0, clock=ManualClock(WHEN), on_message=lambda m: None)
    server.start()
    server.start()
    port = server.port
    server.stop()
    server.stop()
    with smtplib.SMTP() as client:
        try:
            client.connect("127.0.0.1", port)
        except OSError:
            pass
        else:
            raise AssertionError("server still listening after stop()")


def test_run_stops_at_its_time_limit_on_its_clock(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    clock = ManualClock(WHEN)
    assert run(0, tmp_path / "mail", clock=clock, max_seconds=3, on_message=lambda m: None) == 0
    assert sum(clock.waited) == 3 and max(clock.waited) <= 0.5  # in short waits, so a signal is seen
    assert "stopped after 0 message(s)" in capsys.readouterr().err


def _first_line(proc: subprocess.Popen[bytes], timeout: float = 20) -> bytes:
    """The child's first line of output (it prints it once it listens), or b"" if it said nothing."""
    box: list[bytes] = []
    reader = threading.Thread(target=lambda: box.append(proc.stdout.readline() if proc.stdout else b""))
    reader.daemon = True
    reader.start()
    reader.join(timeout)
    return box[0] if box else b""


def test_run_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    maildir = tmp_path / "mail"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    script = (
        "from briefing.mail.devsmtp import run; from briefing.wiring import SystemClock; "
        f"run({port}, {str(maildir)!r}, clock=SystemClock())"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        first = _first_line(proc)
        assert f"smtp://127.0.0.1:{port}".encode() in first, "dev SMTP server did not start"
        client = smtplib.SMTP("127.0.0.1", port, timeout=5)
        client.sendmail("bounces@news.example.com", ["reader1@example.com"], _message(1))
        client.quit()
        proc.send_signal(signal.SIGTERM)
        # Not communicate(timeout=...): its wait loop calls time.sleep, which fails under libfaketime.
        assert wait_until(lambda: proc.poll() is not None, timeout=10), "dev SMTP server ignored SIGTERM"
        rest, err = proc.communicate()
        out = first + rest
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err.decode()
    text = out.decode()
    assert f"smtp://127.0.0.1:{port}" in text
    assert "bounces@news.example.com -> reader1@example.com" in text
    assert b"stopped after 1 message(s)" in err
    assert len(mailbox.Maildir(str(maildir), create=False)) == 1


def test_an_existing_empty_folder_becomes_a_maildir(tmp_path: Path) -> None:
    folder = tmp_path / "mail"
    folder.mkdir()
    with DevSmtpServer(folder, port=0, clock=ManualClock(WHEN), on_message=lambda m: None) as server:
        transport = open_transport(server.url, timeout=5)
        assert transport.send("bounces@news.example.com", "reader1@example.com", _message(1)).accepted
        transport.close()
    assert len(mailbox.Maildir(str(folder), create=False)) == 1


def test_a_maildir_that_is_a_file_is_refused_by_name(tmp_path: Path) -> None:
    target = tmp_path / "mail"
    target.write_text("not a folder", encoding="utf-8")
    code, out = run_cli(cli_env(tmp_path), "dev-smtp", "--port", "0", "--maildir", str(target))
    assert code == 1 and "--maildir:" in out and "is not a folder" in out


def test_a_busy_port_is_named_and_the_command_exits_non_zero(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, out = run_cli(
            cli_env(tmp_path), "dev-smtp", "--port", str(port), "--maildir", str(tmp_path / "m")
        )
    assert code == 1 and f"port {port} is in use" in out and "Traceback" not in out
