"""Time one progress tick of a sending edition on a large ledger, against counting that ledger.

`briefing send`, `briefing editions show --watch` and the web editions page ask for the whole
edition's progress every second or every few seconds. While the edition is sending that answer is
summed from the sender table, never counted from the ledger; this measures both on the same
database in the same run: `edition_progress` (the tick) and `deliveries.counts` (the grouped count a
tick would otherwise cost). Needs an empty PostgreSQL database, which it fills (a million readers
take a minute or two on a 2-core machine). Prints one JSON line.

    createdb -h 127.0.0.1 -U postgres bench_progress
    .venv/bin/python benchmarks/progress.py --database-url postgresql+psycopg://postgres@127.0.0.1/bench_progress
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from datetime import UTC, date, datetime, timedelta

import sqlalchemy as sa
from sqlmodel import Session

from briefing.db import make_engine, session_scope, upgrade
from briefing.domain import EditionStatus
from briefing.newsletter import PRIMARY_ID
from briefing.service import progress as progress_service
from briefing.store import deliveries as ledger
from briefing.store import editions as edition_store
from briefing.store import senders
from briefing.store.subscriptions import subscribe_all

NOW = datetime(2026, 11, 30, 6, 5, tzinfo=UTC)
EDITION = date(2026, 11, 30)


def fill(engine: sa.Engine, readers: int, sent_share: float) -> tuple[int, dict[str, float]]:
    """A sending edition of `readers` copies, `sent_share` of them sent by four runs; its id and timings."""
    took: dict[str, float] = {}
    began = time.perf_counter()
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO subscriber (email, email_key, name, status, source, soft_bounce_count, "
                "token_version, attributes, created_at, updated_at) "
                "SELECT 'reader' || n || '@example.com', 'reader' || n || '@example.com', '', 'active', "
                "'import', 0, 1, '{}', :now, :now FROM generate_series(1, :n) AS n"
            ),
            {"n": readers, "now": NOW},
        )
        subscribe_all(conn, PRIMARY_ID, now=NOW)
    took["subscribers_s"] = time.perf_counter() - began
    began = time.perf_counter()
    with session_scope(engine) as session:
        edition = edition_store.ensure_edition(session, EDITION, newsletter_id=1, now=NOW)
        edition_store.freeze(
            session,
            edition.id,
            subject="Budget day",
            preheader="",
            html="<p>x</p>",
            text="x",
            story_ids=[],
            now=NOW,
        )
        size = ledger.snapshot(session, edition.id, now=NOW)
        edition_store.set_snapshot_size(session, edition.id, size, now=NOW)
        edition_store.set_status(session, edition.id, EditionStatus.SENDING, started=True, now=NOW)
    took["snapshot_s"] = time.perf_counter() - began
    sent = int(readers * sent_share)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE delivery SET status = 'sent' WHERE edition_id = :e "
                "AND id < (SELECT min(id) FROM delivery WHERE edition_id = :e) + :k"
            ),
            {"e": edition.id, "k": sent},
        )
    with session_scope(engine) as session:
        for i in range(4):
            owner = f"host{i}.example.net:{100 + i}:bench"
            senders.start(
                session,
                owner=owner,
                edition_id=edition.id,
                host=f"host{i}.example.net",
                pid=100 + i,
                role="worker",
                connections=2,
                now=NOW,
            )
            tally = senders.SenderTally(sent=sent // 4, rate=300.0)
            senders.beat(session, owner, tally, now=NOW)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text("VACUUM ANALYZE"))
    return edition.id, took


def timed(fn: object, rounds: int) -> list[float]:
    out = []
    for _ in range(rounds):
        began = time.perf_counter()
        fn()  # type: ignore[operator]
        out.append((time.perf_counter() - began) * 1e3)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", required=True, help="an empty PostgreSQL database")
    parser.add_argument("--readers", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=21)
    args = parser.parse_args()

    engine = make_engine(args.database_url)
    if engine.dialect.name != "postgresql":
        raise SystemExit("error: --database-url: the benchmark needs PostgreSQL")
    if sa.inspect(engine).get_table_names():
        raise SystemExit("error: --database-url: the database is not empty; give it one of its own")
    upgrade(engine)
    edition_id, took = fill(engine, args.readers, 0.4)
    now = NOW + timedelta(seconds=3)
    with Session(engine) as session:
        tick = timed(lambda: progress_service.edition_progress(session, edition_id, now=now), args.rounds)
        count = timed(lambda: ledger.counts(session, edition_id), args.rounds)
        shown = progress_service.edition_progress(session, edition_id, now=now)
    engine.dispose()
    print(
        json.dumps(
            {
                "benchmark": "progress",
                "cores": os.cpu_count(),
                "python": platform.python_version(),
                "loadavg": open("/proc/loadavg").read().split()[:3],
                "ledger_rows": args.readers,
                "fill_subscribers_s": round(took["subscribers_s"], 1),
                "fill_snapshot_s": round(took["snapshot_s"], 1),
                "tick_median_ms": round(statistics.median(tick), 3),
                "tick_max_ms": round(max(tick), 3),
                "baseline_ledger_count_median_ms": round(statistics.median(count), 3),
                "baseline_ledger_count_max_ms": round(max(count), 3),
                "tick_sent": shown.sent,
                "tick_senders": len(shown.senders),
            }
        )
    )


if __name__ == "__main__":
    main()
