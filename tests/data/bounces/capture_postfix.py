"""Capture real delivery status notifications from a throwaway Postfix on loopback.

Run as root on a machine with Debian's postfix package (see README.md in this folder):

    .venv/bin/python tests/data/bounces/capture_postfix.py

It starts a Postfix from a private config directory, relays three domains to a local aiosmtpd
server that answers 550 5.1.1 (hard.example.net) or 452 4.2.2 (full.example.net), lets Postfix
bounce a local unknown user (mx.example.net), and writes each DSN Postfix sends back to the VERP
return path into this folder. Nothing listens beyond 127.0.0.1.
"""

from __future__ import annotations

import os
import shutil
import smtplib
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from aiosmtpd.controller import Controller

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2]))

from briefing.mail.returnpath import ReturnPath  # noqa: E402

SECRET = "test-secret-key"  # tests/fixtures/newsroom.py
RETURN_PATH = ReturnPath("bounces@news.example.com", [SECRET])
BASE = Path("/var/tmp/briefing-postfix-capture")
MAIN_CF = Path("/etc/postfix/main.cf")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Sink:
    """The far side: refuses the test recipients, keeps the DSNs Postfix returns."""

    def __init__(self) -> None:
        self.dsns: list[tuple[str, bytes]] = []
        self.lock = threading.Lock()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        domain = address.rpartition("@")[2].lower()
        if domain == "hard.example.net":
            return (
                "550 5.1.1 <"
                + address
                + ">: Recipient address rejected: User unknown in virtual mailbox table"
            )
        if domain == "full.example.net":
            return "452 4.2.2 <" + address + ">: Mailbox full, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            for rcpt in envelope.rcpt_tos:
                self.dsns.append((rcpt, envelope.original_content))
        return "250 2.0.0 kept"


def original(rcpt: str, edition_id: int, subscriber_id: int) -> tuple[str, bytes]:
    message_id = f"<2026-11-30.{subscriber_id}.5d1c0ffee0aa@news.example.com>"
    body = (
        "From: The Morning Briefing <briefing@news.example.com>\r\n"
        f"To: {rcpt}\r\n"
        "Subject: Budget clears the Assembly | The Morning Briefing\r\n"
        "Date: Mon, 30 Nov 2026 06:00:00 +0000\r\n"
        f"Message-ID: {message_id}\r\n"
        "List-Id: The Morning Briefing <briefing.news.example.com>\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: text/plain; charset="utf-8"\r\n'
        "\r\n"
        "Good morning. MPs voted late into the night.\r\n"
    )
    return RETURN_PATH.address(edition_id, subscriber_id), body.encode()


def main() -> int:
    if os.geteuid() != 0:
        print("run as root: Postfix needs it", file=sys.stderr)
        return 1
    sink = Sink()
    sink_port, pf_port = free_port(), free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=sink_port)
    controller.start()
    etc, queue, data = BASE / "etc", BASE / "queue", BASE / "data"
    shutil.rmtree(BASE, ignore_errors=True)
    for d in (etc, queue, data):
        d.mkdir(parents=True)
    BASE.chmod(0o755)
    shutil.chown(data, "postfix")
    line = f"alternate_config_directories = {etc}\n"
    main_cf_before = MAIN_CF.read_text()
    if line not in main_cf_before:
        MAIN_CF.write_text(main_cf_before + line)
    relay = f"smtp:[127.0.0.1]:{sink_port}"
    routes = ", ".join(f"{d}={relay}" for d in ("news.example.com", "hard.example.net", "full.example.net"))
    (etc / "main.cf").write_text(
        f"""compatibility_level = 3.6
queue_directory = {queue}
data_directory = {data}
maillog_file = {BASE}/postfix.log
maillog_file_prefixes = {BASE}
myhostname = mx.example.net
mydomain = example.net
myorigin = mx.example.net
mydestination = mx.example.net
local_recipient_maps =
alias_maps =
alias_database =
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relayhost =
transport_maps = inline:{{{routes}}}
smtp_tls_security_level = none
smtpd_relay_restrictions = permit_mynetworks, reject
maximal_queue_lifetime = 0
bounce_queue_lifetime = 0
smtp_host_lookup = native
disable_dns_lookups = yes
"""
    )
    master = (Path("/etc/postfix/master.cf")).read_text().splitlines()
    out = []
    for row in master:
        cols = row.split()
        if cols and not row.startswith(("#", " ")) and len(cols) >= 8:
            if cols[0] == "smtp" and cols[1] == "inet":
                cols[0] = f"127.0.0.1:{pf_port}"
            cols[4] = "n"
            row = "  ".join(cols)
        out.append(row)
    (etc / "master.cf").write_text("\n".join(out) + "\n")
    env = {**os.environ, "MAIL_CONFIG": str(etc)}
    subprocess.run(["/usr/sbin/postfix", "-c", str(etc), "check"], check=True, env=env)
    subprocess.run(["/usr/sbin/postfix", "-c", str(etc), "start"], check=True, env=env)
    try:
        cases = {
            "postfix-local-unknown-user.eml": ("gone@mx.example.net", 1, 7),
            "postfix-remote-550-user-unknown.eml": ("alice@hard.example.net", 1, 8),
            "postfix-remote-452-mailbox-full.eml": ("bob@full.example.net", 1, 9),
        }
        for _attempt in range(50):
            try:
                with socket.create_connection(("127.0.0.1", pf_port), timeout=1):
                    break
            except OSError:
                time.sleep(0.2)
        with smtplib.SMTP("127.0.0.1", pf_port, timeout=10) as smtp:
            for rcpt, edition, sub in cases.values():
                sender, data = original(rcpt, edition, sub)
                smtp.sendmail(sender, [rcpt], data)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(sink.dsns) < len(cases):
            time.sleep(0.5)
        by_rcpt = dict(sink.dsns)
        for name, (rcpt, edition, sub) in cases.items():
            verp = RETURN_PATH.address(edition, sub)
            got = by_rcpt.get(verp)
            if got is None:
                print(f"no DSN for {rcpt}", file=sys.stderr)
                continue
            (HERE / name).write_bytes(got)
            print(f"wrote {name} ({len(got)} bytes)")
    finally:
        subprocess.run(["/usr/sbin/postfix", "-c", str(etc), "stop"], check=False, env=env)
        controller.stop()
        MAIN_CF.write_text(main_cf_before)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
