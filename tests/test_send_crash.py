"""`briefing send` killed with SIGKILL mid-send, then run again: one copy each, except in-flight ones."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from sqlmodel import Session

from briefing.store import deliveries as ledger
from briefing.store import editions as edition_store
from tests.fixtures.newsroom import EDITION, Newsroom, make_setup
from tests.fixtures.smtp import FaultPlan
from tests.fixtures.waiting import wait_until

ROOT = Path(__file__).resolve().parent.parent
POOL = 2


def _send_command(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "briefing.cli", "send", "--date", EDITION.isoformat(), "--force"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


@pytest.mark.slow
def test_sigkill_mid_send_then_rerun(sqlite_url: str, sqlite_engine, smtp_subprocess, tmp_path: Path) -> None:
    room = Newsroom(sqlite_engine, make_setup())
    room.queue_story()
    emails = room.readers(40)
    server = smtp_subprocess(FaultPlan(data_delay=0.05))
    env = {
        **os.environ,
        "BRIEFING_DATABASE_URL": sqlite_url,
        "BRIEFING_SECRET_KEY": "crash-test-secret",
        "BRIEFING_SMTP_URL": server.url,
        "BRIEFING_SMTP_POOL_SIZE": str(POOL),
        "BRIEFING_PUBLIC_BASE_URL": "https://news.example.com",
    }

    first = _send_command(env)
    wait_until(lambda: len(server.messages()) >= 12, timeout=30, every=0.01)
    first.kill()
    first.wait(timeout=10)
    assert 12 <= len(server.messages()) < 40, "the kill must land mid-send"

    second = _send_command(env)
    out, _ = second.communicate(timeout=120)
    assert second.returncode == 0, out.decode()

    received = server.messages()
    per_reader = Counter(r for m in received for r in m["rcpt_tos"])
    assert set(per_reader) == set(emails)  # no loss
    doubled = {email for email, n in per_reader.items() if n > 1}
    assert all(n <= 2 for n in per_reader.values())
    assert len(doubled) <= POOL  # at most one per open connection
    with Session(sqlite_engine) as s:
        edition = edition_store.get_edition(s, EDITION, newsletter_id=1)
        rows = {r.email: r for r in ledger.rows(s, edition.id)}
        assert edition.status == "sent"
    assert {r.status for r in rows.values()} == {"sent"}
    assert doubled <= {e for e, r in rows.items() if r.was_ambiguous}  # every extra copy is reported
    ids = Counter(m["message_id"] for m in received)
    assert len(ids) == 40  # a resent copy carries the same Message-ID
    assert "sent" in out.decode()
