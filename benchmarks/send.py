"""End-to-end send to Postfix's smtp-sink on loopback, against smtp-source as the baseline; one JSON line.

Usage:
  .venv/bin/python benchmarks/send.py [--subscribers 20000] [--connections 2] [--rounds 3] [--no-dkim]
  .venv/bin/python benchmarks/send.py --rss-check     # peak RSS at 10k and 100k subscribers

Each round runs our send and then smtp-source (same message size, same number of connections)
back to back, so both see the same load; the line gives the median of the rounds' ratios, every
round's figures, and the load average before and after (other work on the machine moves the
figures; the ratio is what to compare).

Needs /usr/sbin/smtp-sink and /usr/sbin/smtp-source (Debian package postfix; see notes in
README "Benchmarks"). Every run is bounded: N messages, and a time limit per step.
Each measured send runs in its own process so that peak RSS belongs to that send alone.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime
from datetime import time as dtime
from pathlib import Path
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlmodel import Session

from briefing.newsletter import PRIMARY_ID
from briefing.store.subscriptions import subscribe_all

ROOT = Path(__file__).resolve().parent.parent
EDITION = date(2026, 11, 30)
SINK = "/usr/sbin/smtp-sink"
SOURCE = "/usr/sbin/smtp-source"
STEP_TIMEOUT = 900


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_sink() -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    user = ["-u", "nobody"] if os.geteuid() == 0 else []
    proc = subprocess.Popen([SINK, *user, f"127.0.0.1:{port}", "1024"], stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return proc, port
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("smtp-sink did not start")


def build_database(path: Path, subscribers: int) -> str:

    from briefing.db import make_engine, session_scope, upgrade
    from briefing.models import Subscriber
    from briefing.service import stories as story_service

    url = f"sqlite:///{path}"
    engine = make_engine(url)
    upgrade(engine)
    now = datetime.now(UTC)
    with engine.begin() as conn:
        batch = []
        for i in range(subscribers):
            email = f"reader{i:06d}@example.com"
            batch.append(
                {
                    "email": email,
                    "email_key": email,
                    "name": f"Reader {i}",
                    "status": "active",
                    "source": "bench",
                    "soft_bounce_count": 0,
                    "token_version": 1,
                    "attributes": {},
                    "created_at": now,
                    "updated_at": now,
                }
            )
            if len(batch) == 5000:
                conn.execute(sa.insert(Subscriber), batch)
                batch = []
        if batch:
            conn.execute(sa.insert(Subscriber), batch)
        subscribe_all(conn, PRIMARY_ID, now=now)
    with session_scope(engine) as session:
        for i in range(15):
            story_service.add_story(
                session,
                story_service.StoryRequest(
                    url=f"https://news.example.com/2026/11/story-{i}",
                    headline=f"Story {i}: the council votes on the new transport plan after a long debate",
                    blurb="Councillors argued for six hours about bus lanes, fares and the timetable. "
                    "The vote came just before midnight, and the result surprised both sides. "
                    "[Read the full report](https://news.example.com/2026/11/report).",
                    section=("Politics", "Economy", "World")[i % 3],
                    status="ready",
                ),
                now=now,
            )
    engine.dispose()
    return url


def setup(dkim: str, connections: int, key_dir: Path):  # type: ignore[no-untyped-def]
    from briefing import calendar as cal
    from briefing.domain import ComposeOptions
    from briefing.edition.render import Renderer
    from briefing.links import LinkSigner
    from briefing.mail.dkim import DkimSigner
    from briefing.service.delivery import DeliveryPolicy
    from briefing.service.setup import EditionSetup, Mailing

    signer = None
    if dkim:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

        key = (
            ed25519.Ed25519PrivateKey.generate()
            if dkim == "ed25519-sha256"
            else rsa.generate_private_key(public_exponent=65537, key_size=2048)
        )
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        signer = DkimSigner(pem, "bench", "news.example.com", dkim)
    return EditionSetup(
        compose=ComposeOptions(
            postal_address="1 Market Street, Exampletown", site_url="https://news.example.com/"
        ),
        renderer=Renderer(ROOT / "templates" / "email"),
        mailing=Mailing(
            from_name="The Morning Briefing",
            from_address="briefing@news.example.com",
            public_base_url="https://news.example.com",
            list_id="briefing.news.example.com",
            unsubscribe_mailto="unsubscribe@news.example.com",
        ),
        signer=LinkSigner(["bench-secret"]),
        plan=cal.SendPlan(
            send_days=(0, 1, 2, 3, 4, 5, 6), send_time=dtime(6, 0), zone=ZoneInfo("Europe/London")
        ),
        policy=DeliveryPolicy(workers=connections),
        dkim=signer,
    )


def child(args: argparse.Namespace) -> None:
    """One measured send in this process; prints a JSON line with rate, size and peak RSS."""
    from briefing.db import make_engine
    from briefing.mail.pool import open_transport
    from briefing.service import editions as edition_service
    from briefing.service.setup import MailFactory, sample_recipient
    from briefing.wiring import SystemClock

    clock = SystemClock()  # a benchmark is an edge: it runs on the real clock

    engine = make_engine(args.database)
    s = setup(args.dkim, args.connections, Path(args.database).parent)
    mail = open_transport(
        f"smtp://127.0.0.1:{args.port}?starttls=off", pool_size=args.connections, timeout=30
    )
    with Session(engine) as session:
        prepared = edition_service.prepare(session, s, EDITION)
    sample, _ = MailFactory(
        s, EDITION, prepared.rendered.subject, prepared.rendered.html, prepared.rendered.text, clock
    ).message(sample_recipient(s))
    started = time.perf_counter()
    cpu_started = time.process_time()
    outcome = edition_service.send_edition(engine, s, EDITION, mail, force=True, clock=clock)
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    mail.close()
    assert outcome.report is not None and outcome.report.complete, outcome.message
    sent = outcome.report.counts.sent
    print(
        json.dumps(
            {
                "sent": sent,
                "seconds": round(elapsed, 2),
                "messages_per_s": round(sent / elapsed),
                "cpu_us_per_message": round(cpu / sent * 1e6),
                "message_bytes": len(sample),
                "max_line": max(len(line) for line in sample.split(b"\r\n")),
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            }
        )
    )


def measured_send(
    subscribers: int, connections: int, dkim: str, port: int, work: Path, *, template: Path | None = None
) -> dict[str, float]:
    """One send in a child process, on a fresh copy of the database (built here unless `template`)."""
    db = work / f"send-{subscribers}-{dkim or 'plain'}.db"
    if template is None:
        url = build_database(db, subscribers)
    else:
        for leftover in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
            leftover.unlink(missing_ok=True)
        shutil.copyfile(template, db)
        url = f"sqlite:///{db}"
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            "--child",
            "--database",
            url,
            "--port",
            str(port),
            "--connections",
            str(connections),
            *(["--dkim", dkim] if dkim else []),
        ],
        capture_output=True,
        text=True,
        timeout=STEP_TIMEOUT,
        check=False,
    )
    if out.returncode != 0:
        sys.exit(f"the measured send failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def load_average() -> float:
    return round(os.getloadavg()[0], 2)


def rsa_sign_microseconds(samples: int = 200) -> float:
    """What one RSA-2048 signature costs on this machine (OpenSSL through cryptography)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    started = time.perf_counter()
    for _ in range(samples):
        key.sign(b"x" * 1000, padding.PKCS1v15(), hashes.SHA256())
    return (time.perf_counter() - started) / samples * 1e6


def smtp_source(port: int, messages: int, size: int, sessions: int) -> float:
    started = time.perf_counter()
    subprocess.run(
        [SOURCE, "-d", "-s", str(sessions), "-m", str(messages), "-l", str(size), f"127.0.0.1:{port}"],
        check=True,
        timeout=STEP_TIMEOUT,
        capture_output=True,
    )
    return messages / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--subscribers", type=int, default=20_000)
    parser.add_argument("--connections", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3, help="send + smtp-source pairs; the median counts")
    parser.add_argument("--no-dkim", action="store_true")
    parser.add_argument("--rss-check", action="store_true")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--database", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--dkim", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    if not (shutil.which(SINK) and shutil.which(SOURCE)):
        sys.exit("smtp-sink/smtp-source not found: apt-get install postfix (see README, Benchmarks)")
    sink, port = start_sink()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            if args.rss_check:
                small = measured_send(10_000, args.connections, "", port, work)
                large = measured_send(100_000, args.connections, "", port, work)
                result = {
                    "benchmark": "send_rss",
                    "rss_10k_mb": small["peak_rss_mb"],
                    "rss_100k_mb": large["peak_rss_mb"],
                    "ratio": round(large["peak_rss_mb"] / small["peak_rss_mb"], 3),
                    "rate_10k": small["messages_per_s"],
                    "rate_100k": large["messages_per_s"],
                    "target": {"peak_rss_mb": 150, "ratio": 1.25},
                    "cpus": os.cpu_count(),
                }
                print(json.dumps(result))
                return
            template = work / "template.db"
            build_database(template, args.subscribers)
            load_before = load_average()
            rounds = []
            for _ in range(max(1, args.rounds)):
                sent = measured_send(args.subscribers, args.connections, "", port, work, template=template)
                baseline = smtp_source(port, args.subscribers, int(sent["message_bytes"]), args.connections)
                rounds.append({**sent, "smtp_source_per_s": round(baseline)})
            by_ratio = sorted(rounds, key=lambda r: r["messages_per_s"] / r["smtp_source_per_s"])
            plain = by_ratio[len(by_ratio) // 2]  # the median round
            result = {
                "benchmark": "send",
                "subscribers": args.subscribers,
                "connections": args.connections,
                "message_bytes": plain["message_bytes"],
                "max_line": plain["max_line"],
                "messages_per_s": plain["messages_per_s"],
                "smtp_source_per_s": plain["smtp_source_per_s"],
                "ratio_to_smtp_source": round(plain["messages_per_s"] / plain["smtp_source_per_s"], 3),
                "cpu_us_per_message": plain["cpu_us_per_message"],
                "peak_rss_mb": max(r["peak_rss_mb"] for r in rounds),
                "rounds": [
                    [r["messages_per_s"], r["smtp_source_per_s"], r["cpu_us_per_message"]] for r in rounds
                ],
                "rounds_are": ["messages_per_s", "smtp_source_per_s", "cpu_us_per_message"],
                "load_average": [load_before, load_average()],
                "cpus": os.cpu_count(),
                "target": {"messages_per_s": 1000, "ratio_to_smtp_source": 0.6, "dkim_ratio": 0.6},
            }
            if not args.no_dkim:
                result["rsa2048_sign_us"] = round(rsa_sign_microseconds())
                for algorithm, label in (("rsa-sha256", "dkim_rsa2048"), ("ed25519-sha256", "dkim_ed25519")):
                    signed = measured_send(
                        args.subscribers, args.connections, algorithm, port, work, template=template
                    )
                    result[f"{label}_messages_per_s"] = signed["messages_per_s"]
                    result[f"{label}_ratio"] = round(signed["messages_per_s"] / plain["messages_per_s"], 3)
                    result[f"{label}_peak_rss_mb"] = signed["peak_rss_mb"]
            print(json.dumps(result))
    finally:
        sink.kill()
        sink.wait(timeout=10)


if __name__ == "__main__":
    main()
