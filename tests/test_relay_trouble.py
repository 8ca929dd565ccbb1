"""A relay's trouble is never the readers' fault, and a send with too many hard bounces halts.

The judge is tested on its own (RelayJudge, BounceBreaker), then end to end against real aiosmtpd
servers on loopback: one answering 451 or 550 to every RCPT, one refusing a few addresses, one
refusing a fifth of the list.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlmodel import Session

from briefing.domain import EditionStatus
from briefing.errors import Conflict
from briefing.mail.pool import open_transport
from briefing.service import editions as edition_service
from briefing.service.refusals import BounceBreaker, RelayJudge, RelayRules, reply_key, reply_shown
from briefing.service.schedule import DailyContext, DailySender
from briefing.store import deliveries as ledger
from briefing.store import editions as edition_store
from briefing.store import subscribers as subscriber_store
from tests.fixtures.cli import cli_env, ok, run
from tests.fixtures.clock import ManualClock
from tests.fixtures.newsroom import EDITION, Newsroom
from tests.fixtures.smtp import FaultPlan, SmtpTestServer

NOW = datetime(2026, 11, 30, 6, 0, 30, tzinfo=UTC)
UNKNOWN = "550 5.1.1 <{}>: Recipient address rejected: User unknown"


# --------------------------------------------------------------------------- the judge on its own


def test_replies_that_differ_only_by_address_or_id_are_the_same_reply() -> None:
    a = reply_key(451, "4.3.0 <ann@example.com>: Temporary lookup failure (queue 8F3A2B1C)")
    b = reply_key(451, "4.3.0 <bob@example.org>: Temporary lookup failure (queue 1D2E3F4A)")
    assert a == b == "451 4.3.0 : temporary lookup failure (queue"
    assert reply_key(550, "5.1.1 <ann@example.com>: user unknown") != reply_key(550, "5.7.1 relaying denied")
    assert "ann@example.com" not in reply_shown(550, "5.1.1 <ann@example.com>: User unknown")


def test_the_first_recipients_all_refused_is_the_relays_trouble() -> None:
    judge: RelayJudge[int] = RelayJudge(RelayRules(first=10))
    for i in range(9):
        assert judge.refused(i, 451, f"4.7.1 <r{i}@example.com>: try later") == []
        assert judge.trouble == ""
    judge.refused(9, 550, "5.7.1 another reply altogether")
    assert "first 10 recipients were all refused" in judge.trouble
    assert "5.7.1 another reply altogether" in judge.trouble
    assert sorted(judge.release()) == list(range(10))


def test_a_relay_that_goes_bad_mid_send_is_caught_by_the_streak() -> None:
    judge: RelayJudge[int] = RelayJudge(RelayRules(streak=10, settle_after=20))
    for _ in range(200):
        judge.delivered()
    judged = [j for i in range(10) for j in judge.refused(i, 451, f"4.3.0 <r{i}@example.com>: queue full")]
    assert judged == []  # nobody delivered after them: none is held against its reader
    assert "last 10 recipients were all refused with the same reply" in judge.trouble
    assert "451 4.3.0 <address>: queue full" in judge.trouble


def test_one_reply_for_most_recent_recipients_is_the_relays_trouble() -> None:
    judge: RelayJudge[int] = RelayJudge(RelayRules(window=20, share=0.5, streak=50, first=10))
    for i in range(100):  # one in three refused with the same reply: that stands out, nothing more
        judge.delivered()
        judge.delivered()
        judge.refused(i, 550, f"5.7.1 <r{i}@example.com>: quota exceeded")
    assert judge.trouble == ""
    for i in range(10):  # then every other recipient
        judge.delivered()
        judge.refused(i, 550, f"5.7.1 <r{i}@example.com>: quota exceeded")
    assert "10 of the last 20 recipients were refused with the same reply" in judge.trouble


def test_a_refusal_that_stands_out_counts_once_others_are_delivered_after_it() -> None:
    judge: RelayJudge[str] = RelayJudge(RelayRules(settle_after=5))
    assert judge.refused("jane", 550, UNKNOWN.format("jane@example.org")[4:]) == []
    settled = [item for _ in range(5) for item in judge.delivered()]
    assert settled == ["jane"] and judge.held == 0 and judge.trouble == ""


def test_a_refusal_without_enough_later_evidence_is_judged_at_the_end_of_the_pass() -> None:
    judge: RelayJudge[str] = RelayJudge()
    for _ in range(6):
        judge.delivered()
    judge.refused("temp1", 451, "4.7.1 greylisted")
    judge.refused("temp2", 451, "4.7.1 greylisted")
    assert judge.held == 2
    assert judge.settle() == ["temp1", "temp2"] and judge.trouble == ""


def test_nothing_delivered_in_a_run_means_nobody_is_blamed() -> None:
    judge: RelayJudge[str] = RelayJudge()
    judge.refused("only", 550, "5.1.1 user unknown")
    assert judge.settle() == []
    assert "refused all 1 recipient(s) tried and delivered none" in judge.trouble
    assert judge.release() == ["only"]


def test_the_breaker_trips_only_after_enough_recipients_and_above_the_rate() -> None:
    breaker = BounceBreaker(rate=0.05, after=100)
    for i in range(99):
        breaker.attempt()
        if i < 20:
            breaker.bounce()
    assert not breaker.tripped  # 20% bounced, but only 99 tried
    breaker.attempt()
    assert breaker.tripped and "20 of the 100 recipients" in breaker.reason and "bad list" in breaker.reason
    calm = BounceBreaker(rate=0.05, after=100)
    for i in range(200):
        calm.attempt()
        if i % 25 == 0:
            calm.bounce()  # 4%
    assert not calm.tripped
    off = BounceBreaker(rate=0.0, after=1)
    off.attempt()
    off.bounce()
    assert not off.tripped


# --------------------------------------------------------------------------- end to end


def send(room: Newsroom, server: SmtpTestServer, **kw: object) -> edition_service.SendOutcome:
    setup = kw.pop("setup", room.setup)
    mail = open_transport(server.url(), pool_size=setup.policy.workers, timeout=5)  # type: ignore[attr-defined]
    try:
        return edition_service.send_edition(
            room.engine,
            setup,  # type: ignore[arg-type]
            EDITION,
            mail,
            clock=ManualClock(NOW),
            **kw,  # type: ignore[arg-type]
        )
    finally:
        mail.close()


def rows(room: Newsroom) -> dict[str, ledger.LedgerRow]:
    with Session(room.engine) as s:
        edition = edition_store.get_edition(s, EDITION, newsletter_id=1)
        return {r.email: r for r in ledger.rows(s, edition.id, limit=100_000)}


def reader_states(room: Newsroom) -> Counter[tuple[str, int]]:
    with Session(room.engine) as s:
        return Counter((sub.status, sub.soft_bounce_count) for sub in subscriber_store.iter_subscribers(s))


def copies(server: SmtpTestServer) -> Counter[str]:
    return Counter(r for m in server.messages for r in m.rcpt_tos)


@pytest.mark.parametrize(
    ("refusing", "reply"),
    [
        ("temp_prefix", "451 4.7.1 <address>: Greylisted"),
        ("perm_prefix", "550 5.1.1 <address>: Recipient address rejected: User unknown"),
    ],
    ids=["451-to-everyone", "550-to-everyone"],
)
def test_a_relay_refusing_everyone_pauses_and_blames_nobody(
    newsroom: Newsroom, smtp_server_factory, refusing: str, reply: str
) -> None:
    plan = FaultPlan(**{refusing: ""})  # every address starts with "": every RCPT is refused
    emails = newsroom.readers(60)
    server = smtp_server_factory(plan)

    outcome = send(newsroom, server)

    assert outcome.edition.status == EditionStatus.PAUSED
    assert reply in outcome.message and "nobody was marked failed or bounced" in outcome.message
    assert "@example.com" not in outcome.message
    assert {r.status for r in rows(newsroom).values()} == {"pending"}
    assert reader_states(newsroom) == Counter({("active", 0): 60})
    assert server.messages == []
    tried = server.handler.mail_commands
    assert tried < 20, f"{tried} recipients were tried against a relay that refused everyone"

    plan.temp_prefix, plan.perm_prefix = "temp", "perm"  # the relay recovers
    resumed = send(newsroom, server)

    assert resumed.edition.status == EditionStatus.SENT
    assert copies(server) == Counter(emails)
    assert reader_states(newsroom) == Counter({("active", 0): 60})


def test_a_relay_going_bad_mid_send_pauses_without_blaming_the_rest(
    sqlite_newsroom: Newsroom, smtp_server_factory
) -> None:
    room = sqlite_newsroom
    emails = room.readers(80)
    server = smtp_server_factory(FaultPlan())
    delivered = 0

    def break_after_thirty(_received: object) -> None:
        nonlocal delivered
        delivered += 1
        if delivered == 30:
            server.plan.temp_prefix = ""  # from now on: 451 to everyone

    server.handler.on_accept = break_after_thirty
    outcome = send(room, server, setup=room.with_policy(workers=1))

    assert outcome.edition.status == EditionStatus.PAUSED and "451 4.7.1" in outcome.message
    assert Counter(r.status for r in rows(room).values()) == Counter({"sent": 30, "pending": 50})
    assert reader_states(room) == Counter({("active", 0): 80})

    server.plan.temp_prefix = "temp"
    assert send(room, server).edition.status == EditionStatus.SENT
    assert copies(server) == Counter(emails)


def test_a_refusal_left_held_by_a_run_that_stopped_is_sent_by_the_next_run(
    sqlite_newsroom: Newsroom, smtp_server_factory
) -> None:
    import sqlalchemy as sa

    from briefing.models import Delivery

    room = sqlite_newsroom
    emails = room.readers(3)
    server = smtp_server_factory(FaultPlan(temp_prefix=""))
    assert send(room, server).edition.status == EditionStatus.PAUSED  # three tried, none delivered
    writer = ledger.LedgerWriter(room.engine)
    try:
        with writer.transaction():  # as a run killed between a refusal and its judgement leaves it
            first = writer.conn.execute(sa.select(sa.func.min(Delivery.id))).scalar_one()
            writer.hold(first, code=451, reply="4.7.1 try again later", now=NOW)
    finally:
        writer.close()
    assert Counter(r.status for r in rows(room).values()) == Counter({"pending": 2, "deferred": 1})

    server.plan.temp_prefix = "temp"
    assert send(room, server).edition.status == EditionStatus.SENT
    assert copies(server) == Counter(emails)


def test_three_refused_addresses_among_two_hundred_are_exactly_the_three_bounced(
    newsroom: Newsroom, smtp_server: SmtpTestServer
) -> None:
    newsroom.subscribe("perm1@example.com")  # the very first recipient: judged once others arrive
    newsroom.readers(100, prefix="early")
    newsroom.subscribe("perm2@example.com")
    newsroom.readers(96, prefix="late")
    newsroom.subscribe("perm3@example.com")  # the very last: judged at the end of the pass

    outcome = send(newsroom, smtp_server)

    assert outcome.edition.status == EditionStatus.SENT
    ledger_rows = rows(newsroom)
    failed = sorted(e for e, r in ledger_rows.items() if r.status == "failed")
    assert failed == ["perm1@example.com", "perm2@example.com", "perm3@example.com"]
    assert all(ledger_rows[e].smtp_code == 550 for e in failed)
    assert reader_states(newsroom) == Counter({("active", 0): 196, ("bounced", 0): 3})
    assert sum(copies(smtp_server).values()) == 196


def test_cli_send_exits_non_zero_naming_the_reply_then_sends_everyone_once(
    tmp_path: Path, smtp_server_factory
) -> None:
    server = smtp_server_factory(FaultPlan(perm_prefix=""))
    env = cli_env(tmp_path, secret_key="cli-secret", smtp_url=server.url(), send_days="mon-fri")
    ok(env, "stories", "add", "--url", "https://news.example.com/a", "--headline", "Budget passes")
    ok(env, "stories", "ready", "1")
    for i in range(15):
        ok(env, "subscribers", "add", f"reader{i}@example.com")

    code, out = run(env, "send", "--date", "2026-11-30", "--force")

    assert code == 2, out
    assert "550 5.1.1" in " ".join(out.split()) and "server's trouble" in " ".join(out.split())
    code, out = run(env, "subscribers", "list", "--json")
    assert code == 0 and '"bounced"' not in out

    server.plan.perm_prefix = "perm"
    code, out = run(env, "send", "--date", "2026-11-30", "--force")

    assert code == 0, out
    assert "is sent: 15 delivered" in out
    assert copies(server) == Counter(f"reader{i}@example.com" for i in range(15))


# --------------------------------------------------------------------------- the bounce breaker


def test_a_fifth_of_the_list_refused_halts_the_send_until_an_editor_resumes_it(
    sqlite_newsroom: Newsroom, smtp_server: SmtpTestServer
) -> None:
    room = sqlite_newsroom
    emails = []
    for i in range(600):  # every fifth address was imported from a stale list
        emails.append(f"perm{i:04d}@example.com" if i % 5 == 0 else f"reader{i:04d}@example.com")
    room.subscribe(*emails)
    setup = room.with_policy(breaker_rate=0.05, breaker_after=100)

    outcome = send(room, smtp_server, setup=setup)

    assert outcome.edition.status == EditionStatus.HALTED
    assert "bad list was probably imported" in outcome.message
    first = Counter(r.status for r in rows(room).values())
    assert first["sent"] < 150 and first["pending"] > 400  # it stopped soon after the first 100
    with pytest.raises(Conflict, match="--resume"):
        send(room, smtp_server, setup=setup)

    sender = DailySender(
        DailyContext(
            engine=room.engine,
            setup=lambda: setup,
            transport=lambda: open_transport(smtp_server.url(), timeout=5),
            alert_email="",
            stop=threading.Event(),
            log=logging.getLogger("test"),
            clock=ManualClock(NOW.replace(minute=30)),
        )
    )
    assert sender.watch_job() == "edition is halted"
    assert sum(copies(smtp_server).values()) == first["sent"]

    resumed = send(room, smtp_server, setup=setup, resume=True)

    assert resumed.edition.status == EditionStatus.SENT
    received = copies(smtp_server)
    assert received == Counter(e for e in emails if e.startswith("reader"))
    assert reader_states(room) == Counter({("active", 0): 480, ("bounced", 0): 120})


def test_an_editor_resumes_a_halted_edition_from_its_page(
    sqlite_url: str, sqlite_engine, make_app, smtp_server: SmtpTestServer
) -> None:
    from fastapi.testclient import TestClient

    from tests.fixtures import web

    settings = web.web_settings_for(sqlite_url, bounce_breaker_rate=0.05, bounce_breaker_after=20)
    web.queue_stories(sqlite_engine)
    for i in range(80):
        web.add_subscriber(sqlite_engine, f"perm{i}@example.org" if i % 4 == 0 else f"reader{i}@example.org")
    web.add_editor(sqlite_engine)
    pool = open_transport(smtp_server.url(), pool_size=1, timeout=5)
    try:
        assert web.send_edition(sqlite_engine, settings, pool).edition.status == EditionStatus.HALTED
        app = make_app(settings=settings, transport=pool)
        page = f"/editor/editions/{web.EDITION_DAY.isoformat()}"
        with TestClient(app, base_url=web.BASE_URL, follow_redirects=False) as client:
            web.login(client)
            shown = client.get(page)
            assert "Resume sending" in shown.text and "bad list was probably imported" in shown.text
            assert client.post(f"{page}/resume").status_code in (401, 403)  # no CSRF token: nothing happens
            assert not app.state.ctx.retries

            resumed = client.post(f"{page}/resume", data={"csrf_token": web.csrf_token(client, page)})
            assert resumed.status_code == 303
            [worker] = app.state.ctx.retries.values()
            worker.join(30)
            assert not worker.is_alive(), "the resumed send did not finish within 30 s"
            assert "badge-sent" in client.get(page).text
    finally:
        pool.close()
    assert copies(smtp_server) == Counter(f"reader{i}@example.org" for i in range(80) if i % 4)
