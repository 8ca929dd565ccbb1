"""Several senders, one edition, on PostgreSQL: snapshot time, rate, exactness and memory; one JSON line.

For each list size the benchmark loads subscribers with one INSERT ... SELECT generate_series,
freezes a fresh edition, times its snapshot (the production path, `start_sending`), then sends it
with 1, 2 and 4 worker processes of 2 SMTP connections each to Postfix's smtp-sink on loopback.
smtp-source, at the same total connection count and message size, is the baseline measured in the
same run. The sink logs every command (-v); its RCPT TO lines give duplicates and missing readers.
Lists above --complete-up-to are not sent in full: each send is stopped with SIGTERM after
--seconds, its rate is measured over that window and only duplicates are counted there.

    .venv/bin/python benchmarks/scale.py --quick              # 10,000 and 20,000 readers, 10 s sends
    .venv/bin/python benchmarks/scale.py [--sizes 100000,1000000] [--seconds 60]

Needs an empty PostgreSQL database (default bench_scale on 127.0.0.1; --reset empties it first)
and /usr/sbin/smtp-sink, /usr/sbin/smtp-source, /usr/bin/time (Debian postfix, time). Progress: stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from scale_tools import (
    CLAIM_MS_LIMIT,
    SINK,
    SOURCE,
    TIME,
    WORKER_ARGS,
    Sink,
    claim_plan,
    ledger_figures,
    retire,
    run_workers,
    smtp_source_rate,
    worker_command,
)

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/bench_scale"
KEY = "scale-benchmark-key-not-for-real-use-0123456789"


def say(text: str) -> None:
    print(f"[scale] {text}", file=sys.stderr, flush=True)


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def worker_env(url: str, port: int, connections: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRIEFING_")}
    env.update(
        BRIEFING_DATABASE_URL=url,
        BRIEFING_SMTP_URL=f"smtp://127.0.0.1:{port}",
        BRIEFING_SMTP_POOL_SIZE=str(connections),
        BRIEFING_SECRET_KEY=KEY,
        BRIEFING_PUBLIC_BASE_URL="https://news.example.com",
        BRIEFING_POSTAL_ADDRESS="1 Market Street, Exampletown",
        BRIEFING_SEND_DAYS="mon-sun",
        BRIEFING_TIMEZONE="Europe/London",
        BRIEFING_TEMPLATES_DIR=str(ROOT / "templates"),
    )
    return env


def edition_setup(url: str) -> Any:
    from briefing import wiring
    from briefing.config import load_settings

    env = worker_env(url, 25, 2)
    fields = {k.removeprefix("BRIEFING_").lower(): v for k, v in env.items() if k.startswith("BRIEFING_")}
    return wiring.edition_setup(load_settings(_env_file=None, **fields))


def prepare_database(url: str, reset: bool) -> sa.Engine:
    from briefing.db import make_engine, upgrade

    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            if reset:
                conn.exec_driver_sql("DROP SCHEMA IF EXISTS public CASCADE")
                conn.exec_driver_sql("CREATE SCHEMA public")
            tables = sa.inspect(conn).get_table_names()
    except sa.exc.OperationalError as exc:
        reason = str(exc.orig).strip().splitlines()[0]
        sys.exit(f"error: --database-url: cannot use {engine.url.render_as_string()}: {reason}")
    if tables:
        sys.exit(
            f"error: --database-url: the database has {len(tables)} tables; give an empty one, or --reset"
        )
    upgrade(engine)
    return engine


def load_subscribers(engine: sa.Engine, size: int) -> float:
    started = time.perf_counter()
    with engine.begin() as conn:
        conn.exec_driver_sql("TRUNCATE subscriber, edition, story RESTART IDENTITY CASCADE")
        conn.exec_driver_sql(
            "INSERT INTO subscriber (email, email_key, name, status, source, soft_bounce_count,"
            " token_version, attributes, consent_at, confirmed_at, created_at, updated_at)"
            " SELECT 'reader' || g || '@example.com', 'reader' || g || '@example.com', 'Reader ' || g,"
            " 'active', 'bench', 0, 1, '{}', now(), now(), now(), now() FROM generate_series(1, %s) AS g",
            (size,),
        )
        from briefing.newsletter import PRIMARY_ID
        from briefing.store.subscriptions import subscribe_all

        subscribe_all(conn, PRIMARY_ID, now=datetime.now(UTC))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM ANALYZE subscriber")
        conn.exec_driver_sql("VACUUM ANALYZE subscription")
    return time.perf_counter() - started


def fresh_edition(engine: sa.Engine, setup: Any, day: date) -> tuple[int, float, int]:
    """Freeze the edition of `day` on an empty ledger, then time its snapshot; id, seconds, message bytes."""
    from briefing import calendar as cal
    from briefing.db import session_scope
    from briefing.service import stories as story_service
    from briefing.service.edition_content import featured_urls, prepare
    from briefing.service.send import start_sending
    from briefing.service.setup import MailFactory, sample_recipient
    from briefing.store import editions as edition_store
    from briefing.wiring import SystemClock

    now = datetime.now(UTC)  # a benchmark is an edge: it runs on the real clock
    with engine.begin() as conn:
        conn.exec_driver_sql("TRUNCATE delivery CASCADE")  # each configuration starts from the same ledger
    with session_scope(engine) as session:
        for i in range(15):
            story_service.add_story(
                session,
                story_service.StoryRequest(
                    url=f"https://news.example.com/{day}/story-{i}",
                    headline=f"Story {i}: the council votes on the new transport plan after a long debate",
                    blurb="Councillors argued for six hours about bus lanes, fares and the timetable. "
                    "The vote came just before midnight, and the result surprised both sides.",
                    section=("Politics", "Economy", "World")[i % 3],
                    status="ready",
                    edition_date=day,
                ),
                now=now,
            )
    with session_scope(engine) as session:
        edition = edition_store.ensure_edition(
            session, day, newsletter_id=1, now=now, scheduled_for=cal.send_time_for(day, setup.plan)
        )
        prepared = prepare(session, setup, day, now=now)
        assert prepared.report.ok, prepared.report.problems
        r = prepared.rendered
        ids = [s.id for s in prepared.briefing.stories if s.id > 0]
        edition_store.freeze(
            session,
            edition.id,
            subject=r.subject,
            preheader=r.preheader,
            html=r.html,
            text=r.text,
            story_ids=ids,
            featured_urls=featured_urls(prepared.briefing),
            now=now,
        )
    started = time.perf_counter()
    start_sending(engine, setup, day, now=now, force=True)  # FROZEN: snapshot, its size, `sending`
    seconds = time.perf_counter() - started
    # What autovacuum does within a minute of a large snapshot; done here so every run plans alike.
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("ANALYZE delivery")
    sample, _ = MailFactory(setup, day, r.subject, r.html, r.text, SystemClock()).message(
        sample_recipient(setup)
    )
    return edition.id, seconds, len(sample)


def measure(
    engine: sa.Engine,
    setup: Any,
    url: str,
    size: int,
    workers: int,
    day: date,
    args: argparse.Namespace,
    work: Path,
) -> dict[str, Any]:
    edition_id, snap_s, msg_bytes = fresh_edition(engine, setup, day)
    complete = size <= args.complete_up_to
    window = "all of it" if complete else f"for {args.seconds:g} s"
    say(f"{size:,} readers, {workers} worker(s): snapshot {snap_s:.1f} s, sending {window}")
    sink = Sink(work / f"sink-{size}-{workers}.log")
    env = worker_env(url, sink.port, args.connections)
    try:
        limit = 120 + size / 100  # a complete send that takes longer than this is stopped and reported
        codes, rss, cpu, stopped = run_workers(
            workers,
            env,
            worker_command(day, args.connections),
            work,
            stop_after=limit if complete else args.seconds,
        )
    finally:
        rcpts, done = sink.stop()
    timed_out = complete and stopped
    figures = ledger_figures(engine, edition_id)
    plan = claim_plan(engine, edition_id)
    retire(engine, edition_id)
    rate = (figures["sent"] - 1) / figures["window"] if figures["window"] > 0 else 0.0
    sessions = workers * args.connections
    base_messages = max(5_000, figures["sent"])
    baseline = smtp_source_rate(base_messages, msg_bytes, sessions, work / f"source-{size}-{workers}.log")
    duplicates = sum(c - 1 for c in rcpts.values() if c > 1)
    strangers = sum(1 for r in rcpts if r not in figures["emails"])
    missing = len(figures["emails"] - set(rcpts)) if complete and not timed_out else None
    result = {
        "size": size,
        "workers": workers,
        "connections": sessions,
        "complete": complete,
        "timed_out": timed_out,
        "snapshot_seconds": round(snap_s, 2),
        "message_bytes": msg_bytes,
        "sent": figures["sent"],
        "window_seconds": round(figures["window"], 1),
        "rate": round(rate),
        "baseline_rate": round(baseline),
        "baseline_messages": base_messages,
        "ratio": round(rate / baseline, 3) if baseline else None,
        "duplicates": duplicates,
        "missing": missing,
        "unknown_recipients": strangers,
        "sink_rcpt": sum(rcpts.values()),
        "sink_completed": done,
        "ledger": figures["counts"],
        "counts_ms": figures["counts_ms"],
        "claim_plan": plan,
        "peak_rss_mb": rss,
        "cpu_seconds": cpu,
        "exit_codes": codes,
        "loadavg": loadavg(),
    }
    say(
        f"  {rate:.0f} msg/s (smtp-source {baseline:.0f}), duplicates {duplicates}, missing {missing}, "
        f"RSS {rss} MB, CPU {cpu} s, exits {codes}, claim {plan.get('delivery_scan')} {plan.get('ms')} ms"
    )
    return result


def targets(runs: list[dict[str, Any]], sizes: list[int], snapshots: dict[int, float]) -> dict[str, Any]:
    by = {(r["size"], r["workers"]): r for r in runs}
    exact = all(
        r["duplicates"] == 0 and r["unknown_recipients"] == 0 and r["missing"] in (0, None) for r in runs
    )
    counted = any(r["missing"] is not None for r in runs)
    scaling = {
        s: round(by[s, 2]["rate"] / by[s, 1]["rate"], 2)
        for s in sizes
        if (s, 1) in by and (s, 2) in by and by[s, 1]["rate"]
    }
    small, large = min(sizes), max(sizes)
    rss = {
        w: round(max(by[large, w]["peak_rss_mb"]) / max(by[small, w]["peak_rss_mb"]), 3)
        for w in (1, 2, 4)
        if (small, w) in by and (large, w) in by and large != small
    }
    million = snapshots.get(1_000_000)
    scans = [scan for r in runs for scan in r["claim_plan"].get("delivery_scan", ["not measured"])]
    claim_ms = [float(r["claim_plan"]["ms"]) for r in runs if "ms" in r["claim_plan"]]
    return {
        "no_duplicates_no_missing": {"met": exact and counted, "missing_counted": counted},
        "two_workers_1_5x_one": {"value": scaling, "met": bool(scaling) and min(scaling.values()) >= 1.5},
        "snapshot_1m_under_60s": {"value": million, "met": None if million is None else million < 60},
        "rss_ratio_under_1_1": {
            "sizes": [large, small],
            "value": rss,
            "met": bool(rss) and max(rss.values()) < 1.1,
        },
        "claim_is_an_index_scan_under_5_ms": {
            "value": sorted(set(scans)),
            "ms": claim_ms,
            "met": bool(scans)
            and all(x.startswith("Index Scan") for x in scans)
            and not any(r["claim_plan"].get("sorts") for r in runs)
            and max(claim_ms, default=CLAIM_MS_LIMIT) < CLAIM_MS_LIMIT,
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], epilog="Example: .venv/bin/python benchmarks/scale.py --quick"
    )
    parser.add_argument("--database-url", default=os.environ.get("BRIEFING_BENCH_POSTGRES_URL", DEFAULT_URL))
    parser.add_argument("--sizes", default="100000,1000000", help="list sizes, comma-separated")
    parser.add_argument("--workers", default="1,2,4", help="worker process counts, comma-separated")
    parser.add_argument("--connections", type=int, default=2, help="SMTP connections per worker")
    parser.add_argument("--seconds", type=float, default=60.0, help="send window for lists not sent in full")
    parser.add_argument(
        "--complete-up-to", type=int, default=100_000, help="lists up to this are sent in full"
    )
    parser.add_argument("--quick", action="store_true", help="10,000 and 20,000 readers, 10 s windows")
    parser.add_argument("--reset", action="store_true", help="empty the database first (drops schema public)")
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.seconds, args.complete_up_to = "10000,20000", 10.0, 10_000
    try:
        sizes = sorted({int(s) for s in args.sizes.split(",") if s.strip()})
        counts = sorted({int(w) for w in args.workers.split(",") if w.strip()})
    except ValueError:
        sys.exit("error: --sizes/--workers: give whole numbers separated by commas, e.g. 100000,1000000")
    if (
        not sizes
        or min(sizes) < 1
        or not counts
        or min(counts) < 1
        or args.connections < 1
        or args.seconds <= 0
    ):
        sys.exit("error: --sizes, --workers, --connections and --seconds must be positive")
    if not args.database_url.startswith("postgresql"):
        sys.exit("error: --database-url: this benchmark needs PostgreSQL (postgresql+psycopg://...)")
    if not (os.access(SINK, os.X_OK) and os.access(SOURCE, os.X_OK) and os.access(TIME, os.X_OK)):
        sys.exit("error: needs smtp-sink, smtp-source and /usr/bin/time: apt-get install postfix time")
    sys.path.insert(0, str(ROOT))
    started_load = loadavg()
    engine = prepare_database(args.database_url, args.reset)
    setup = edition_setup(args.database_url)
    runs: list[dict[str, Any]] = []
    loads: dict[int, float] = {}
    day = datetime.now(UTC).date() + timedelta(days=1)
    with tempfile.TemporaryDirectory(prefix="briefing-scale-") as tmp:
        os.chmod(tmp, 0o755)
        for size in sizes:
            loads[size] = round(load_subscribers(engine, size), 1)
            say(f"loaded {size:,} subscribers in {loads[size]} s (load {loadavg()})")
            for workers in counts:
                runs.append(measure(engine, setup, args.database_url, size, workers, day, args, Path(tmp)))
                day += timedelta(days=1)
    snapshots = {s: max(r["snapshot_seconds"] for r in runs if r["size"] == s) for s in sizes}
    with engine.connect() as conn:
        version = conn.exec_driver_sql("SHOW server_version").scalar()
    engine.dispose()
    print(
        json.dumps(
            {
                "benchmark": "scale",
                "cores": os.cpu_count(),
                "python": platform.python_version(),
                "postgresql": version,
                "worker_command": "briefing " + " ".join(WORKER_ARGS),
                "connections_per_worker": args.connections,
                "sizes": sizes,
                "complete_up_to": args.complete_up_to,
                "bounded_seconds": args.seconds,
                "load_subscribers_seconds": loads,
                "snapshot_seconds": snapshots,
                "runs": runs,
                "loadavg": {"start": started_load, "end": loadavg()},
                "targets": targets(runs, sizes, snapshots),
            }
        )
    )


if __name__ == "__main__":
    main()
