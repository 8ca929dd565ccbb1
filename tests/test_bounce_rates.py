"""Bounce and complaint rates per edition: counted once per reader, over the copies sent.

The ledger and events are written as a send and `bounces receive` write them (tests/fixtures/
ledger_copies.py); the CLI tests do a real send over loopback SMTP and read a real Postfix DSN
and an ARF complaint with `bounces receive`.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlmodel import Session
from typer.testing import CliRunner

from briefing.cli import app
from briefing.db import session_scope
from briefing.mail.pool import open_transport
from briefing.service import bounce_rates as rate_service
from briefing.service import editions as edition_service
from briefing.service import schedule as schedule_service
from briefing.store import bounce_rates as rate_store
from briefing.store import editions as edition_store
from briefing.store import newsletters as newsletter_store
from tests.fixtures.clock import ManualClock
from tests.fixtures.ledger_copies import (
    AMBIGUOUS,
    FAILED,
    SENT_AT,
    add_readers,
    record_event,
    send_copies,
    statements,
)
from tests.fixtures.newsroom import EDITION, SECRET, Newsroom
from tests.fixtures.smtp import SmtpTestServer
from tests.test_bounces import BOUNCES, RETURN_PATH
from tests.test_bounces import returned as returned_mail

runner = CliRunner()


# --------------------------------------------------------------------------- the counts


def test_each_reader_counts_once_over_the_copies_sent(engine: sa.Engine) -> None:
    r = add_readers(engine, [f"r{i}@example.com" for i in range(12)])
    edition_id = send_copies(
        engine,
        EDITION,
        {
            "r6@example.com": (AMBIGUOUS, None),
            "r7@example.com": (FAILED, 550),  # refused at RCPT, judged the reader's
            "r8@example.com": (FAILED, 550),
            "r9@example.com": (FAILED, 451),  # kept refusing with a 4xx until the send gave up
            "r11@example.com": (FAILED, None),  # refused on our side: no server saw it
        },
        left=[r["r10@example.com"]],  # left before the send reached them: skipped, not sent
    )
    other = send_copies(engine, EDITION - timedelta(days=1), {})
    record_event(engine, r["r7@example.com"], edition_id, "hard")  # the DSN of a copy the ledger refused
    record_event(engine, r["r0@example.com"], edition_id, "hard")
    record_event(engine, r["r1@example.com"], edition_id, "soft")  # soft, then hard: hard only
    record_event(engine, r["r1@example.com"], edition_id, "hard")
    record_event(engine, r["r2@example.com"], edition_id, "soft")
    record_event(engine, r["r9@example.com"], edition_id, "soft")  # the 4xx the ledger gave up on
    record_event(engine, r["r3@example.com"], edition_id, "complaint")
    record_event(engine, r["r3@example.com"], edition_id, "complaint")  # a second report: one reader
    record_event(engine, r["r4@example.com"], other, "hard")  # another edition's
    record_event(engine, r["r5@example.com"], None, "hard")  # names no edition
    with Session(engine) as session:
        rates = rate_service.edition_rates(session, EDITION, newsletter_id=1)
    # r0..r9: delivered, ambiguous and refused with a code; not r10 (skipped) nor r11 (no server saw it)
    assert rates.copies_sent == 10
    assert (rates.hard, rates.soft, rates.complaints) == (4, 2, 1)  # r0 r1 r7 r8; r2 r9; r3
    assert rates.hard_rate == pytest.approx(0.4)
    assert rates.soft_rate == pytest.approx(0.2)
    assert rates.complaint_rate == pytest.approx(0.1)


def test_the_last_30_editions_are_read_in_one_query(engine: sa.Engine) -> None:
    r = add_readers(engine, [f"r{i}@example.com" for i in range(4)])
    first = EDITION - timedelta(days=33)
    ids = {}
    for n in range(33):
        day = first + timedelta(days=n)
        refused = {"r0@example.com": (FAILED, 550)} if n % 2 else {}
        ids[day] = send_copies(engine, day, refused)
        record_event(engine, r["r1@example.com"], ids[day], "complaint" if n % 3 == 0 else "soft")
    with session_scope(engine) as session:  # scheduled, nothing sent yet: not one of the 30
        edition_store.ensure_edition(session, EDITION, newsletter_id=1, now=SENT_AT)
    with Session(engine) as session, statements(engine) as seen:
        chart = rate_service.recent_rates(session)
        listed = rate_service.rates_of(session, list(ids.values()))
    assert len(seen) == 2  # one for the chart, one for the whole list
    days = [x.edition_date for x in chart]
    assert days == [first + timedelta(days=n) for n in range(3, 33)]  # the newest 30, oldest first
    assert all(x.copies_sent == 4 for x in chart)
    assert [x.hard for x in chart] == [n % 2 for n in range(3, 33)]
    assert [x.complaints for x in chart] == [int(n % 3 == 0) for n in range(3, 33)]
    assert [x.soft for x in chart] == [int(n % 3 != 0) for n in range(3, 33)]
    assert listed[ids[first]].hard == 0 and listed[ids[first]].complaint_rate == pytest.approx(0.25)
    assert len(listed) == 33
    with Session(engine) as session:
        newest = rate_service.last_sent(session)
        earlier = rate_service.recent_rates(session, limit=5, until=first + timedelta(days=10))
    assert newest is not None and newest.edition_date == first + timedelta(days=32)
    assert [x.edition_date for x in earlier] == [first + timedelta(days=n) for n in range(6, 11)]


def test_the_chart_of_one_newsletter_shows_only_its_editions(engine: sa.Engine) -> None:
    add_readers(engine, ["r0@example.com", "r1@example.com"])
    morning = send_copies(engine, EDITION - timedelta(days=2), {})
    other = send_copies(engine, EDITION - timedelta(days=1), {})
    with session_scope(engine) as session:
        weekend = newsletter_store.add_newsletter(session, "weekend", {"name": "Weekend"}, now=SENT_AT)
    with engine.begin() as conn:  # the second edition is the weekend newsletter's
        conn.execute(
            sa.text("UPDATE edition SET newsletter_id = :n WHERE id = :e"), {"n": weekend.id, "e": other}
        )
    with Session(engine) as session:
        first = rate_service.recent_rates(session, newsletter_id=1)
        second = rate_service.recent_rates(session, newsletter_id=weekend.id)
        both = rate_service.recent_rates(session)
    assert [x.edition_id for x in first] == [morning]
    assert [x.edition_id for x in second] == [other]
    assert [x.edition_id for x in both] == [morning, other]


def test_an_edition_with_no_copy_sent_has_no_rate(engine: sa.Engine) -> None:
    with session_scope(engine) as session:
        edition_store.ensure_edition(session, EDITION, newsletter_id=1, now=SENT_AT)
    with Session(engine) as session:
        rates = rate_service.edition_rates(session, EDITION, newsletter_id=1)
        assert rate_service.last_sent(session) is None
    assert (rates.copies_sent, rates.hard, rates.soft, rates.complaints) == (0, 0, 0, 0)
    assert rates.hard_rate is None and rates.complaint_rate is None
    assert rate_service.percent(rates.hard_rate) == "-"
    assert rate_service.problems(rates, rate_service.RateLimits()) == []


@pytest.mark.parametrize(
    ("rate", "shown"), [(None, "-"), (0.0, "0%"), (0.00004, "<0.01%"), (0.001, "0.10%"), (0.25, "25.00%")]
)
def test_rates_read_as_percentages(rate: float | None, shown: str) -> None:
    assert rate_service.percent(rate) == shown


def test_the_limits_are_exceeded_only_above_them() -> None:
    def rates(copies: int, hard: int, complaints: int) -> rate_service.EditionRates:
        counts = rate_store.BounceCounts(1, EDITION, copies, hard, 0, complaints)
        return rate_service.edition_rates_from(counts)

    limits = rate_service.RateLimits(max_complaint_rate=0.001, max_hard_bounce_rate=0.02)
    assert rate_service.problems(rates(1000, 20, 1), limits) == []  # exactly at both limits
    complaint, hard = rate_service.problems(rates(1000, 21, 2), limits)
    assert "complaints from 0.20% of the copies sent (2 of 1000)" in complaint
    assert "BRIEFING_MAX_COMPLAINT_RATE" in complaint
    assert "hard for 2.10% of the copies sent (21 of 1000)" in hard
    assert "BRIEFING_MAX_HARD_BOUNCE_RATE" in hard


# --------------------------------------------------------------------------- a real send, then the CLI

DAY = EDITION.isoformat()
AFTER_THE_SEND = "2026-11-30T07:00:00+00:00"


def cli(engine: sa.Engine, *args: str, stdin: bytes | None = None, **settings: str) -> tuple[int, str, str]:
    env = {
        "BRIEFING_DATABASE_URL": engine.url.render_as_string(hide_password=False),
        "BRIEFING_TIMEZONE": "Europe/London",
        "BRIEFING_NOW": AFTER_THE_SEND,
        "BRIEFING_SECRET_KEY": SECRET,
        "BRIEFING_BOUNCE_ADDRESS": BOUNCES,
        "BRIEFING_SEND_DAYS": "mon-fri",
        "ORIGINAL_RECIPIENT": "",
    }
    env.update({f"BRIEFING_{k.upper()}": v for k, v in settings.items()})
    result = runner.invoke(app, list(args), env=env, input=stdin)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def sent_and_returned(sqlite_newsroom: Newsroom, smtp_server: SmtpTestServer) -> Newsroom:
    """20 readers: one refused with 550 at RCPT; then a Postfix DSN (hard) and an ARF complaint come back."""
    room = sqlite_newsroom
    readers = [f"reader{i:02d}@example.com" for i in range(20)]
    readers[4] = "perm-gone@example.com"  # the test server answers 550 to RCPT for it
    room.subscribe(*readers)
    mail = open_transport(smtp_server.url(), pool_size=1, timeout=5)
    try:
        outcome = edition_service.send_edition(
            room.engine,
            replace(room.setup, return_path=RETURN_PATH),
            EDITION,
            mail,
            clock=ManualClock(SENT_AT),
        )
    finally:
        mail.close()
    assert outcome.report is not None, outcome.message
    assert (outcome.report.counts.sent, outcome.report.counts.failed) == (19, 1), outcome.message
    copies = {m.rcpt_tos[0]: m for m in smtp_server.messages}
    for raw in (
        returned_mail("postfix-local-unknown-user.eml", copies["reader07@example.com"]),
        returned_mail("arf-yahoo-aol-fbl-abuse.eml", copies["reader11@example.com"]),
    ):
        code, _out, said = cli(room.engine, "bounces", "receive", stdin=raw)
        assert code == 0 and "->" in said, said
    beat(room.engine)
    return room


def beat(engine: sa.Engine) -> None:
    """A live scheduler, so that `status` speaks of the edition alone."""
    moment = datetime.fromisoformat(AFTER_THE_SEND)
    with session_scope(engine) as s:
        schedule_service.record_heartbeat(s, owner="host:1", started_at=moment, next_run_at=None, now=moment)


def test_editions_show_gives_the_rates_of_a_real_send(sent_and_returned: Newsroom) -> None:
    engine = sent_and_returned.engine
    code, out, _ = cli(engine, "editions", "show", DAY)
    assert code == 0, out
    assert "bounces:   hard 2 (10.00%)   soft 0 (0%)   complaints 1 (5.00%), each of 20 copies sent" in out

    code, out, _ = cli(engine, "editions", "show", DAY, "--json")
    assert code == 0, out
    shown = json.loads(out)
    assert shown["edition_date"] == DAY and shown["counts"]["sent"] == 19
    assert shown["rates"] == {
        "copies_sent": 20,
        "hard_bounces": 2,
        "soft_bounces": 0,
        "complaints": 1,
        "hard_bounce_rate": 0.1,
        "soft_bounce_rate": 0.0,
        "complaint_rate": 0.05,
    }
    assert shown["copies_needing_attention"] == []
    code, out, _ = cli(engine, "editions", "show", DAY, "--json", "--failed")
    [refused] = json.loads(out)["copies_needing_attention"]
    assert (refused["email"], refused["status"], refused["smtp_code"]) == (
        "perm-gone@example.com",
        "failed",
        550,
    )


def test_bounces_list_filters_by_edition(sent_and_returned: Newsroom) -> None:
    engine = sent_and_returned.engine
    code, out, _ = cli(engine, "bounces", "list", "--edition", DAY, "--json")
    assert code == 0, out
    listed = json.loads(out)
    assert sorted((e["email"], e["kind"], e["edition_date"]) for e in listed) == [
        ("reader07@example.com", "hard", DAY),
        ("reader11@example.com", "complaint", DAY),
    ]
    code, out, err = cli(engine, "bounces", "list", "--edition", "2026-12-01", "--json")
    assert (code, out) == (1, "") and "no edition for 2026-12-01" in err  # said, not an empty list
    code, out, err = cli(engine, "bounces", "list", "--edition", "2026-13-01")
    assert code != 0 and "--edition" in err and "Traceback" not in err


def test_status_is_unhealthy_past_the_rate_limits(sent_and_returned: Newsroom) -> None:
    engine = sent_and_returned.engine
    code, out, _ = cli(engine, "status")
    assert code == 1, out
    assert "bounces:    2026-11-30: hard 10.00%, soft 0%, complaints 5.00% of 20 copies sent" in out
    assert "problem: the edition of 2026-11-30 drew spam complaints from 5.00% of the copies sent" in out
    assert "problem: the edition of 2026-11-30 bounced hard for 10.00% of the copies sent (2 of 20)" in out

    code, out, _ = cli(engine, "status", "--json", max_hard_bounce_rate="0.1")  # exactly at the limit
    assert code == 1
    report = json.loads(out)
    assert report["healthy"] is False
    [problem] = report["problems"]
    assert "complaints" in problem and "BRIEFING_MAX_COMPLAINT_RATE" in problem
    assert report["last_sent_rates"]["edition_date"] == DAY
    assert report["last_sent_rates"]["complaint_rate"] == 0.05

    code, out, _ = cli(engine, "status", max_hard_bounce_rate="0.1", max_complaint_rate="0.05")
    assert code == 0 and "healthy" in out, out


@pytest.mark.parametrize("value", ["5%", "1.5", "-0.01"])
def test_a_rate_limit_that_is_not_a_share_is_refused_naming_the_setting(
    sent_and_returned: Newsroom, value: str
) -> None:
    code, out, err = cli(sent_and_returned.engine, "status", max_complaint_rate=value)
    assert (code, out) == (1, "")
    assert err.startswith("error: BRIEFING_MAX_COMPLAINT_RATE: ") and "Traceback" not in err
