"""What benchmarks/scale.py measures with: Postfix's sink and source, timed workers, the ledger.

smtp-sink runs with -v, which logs every SMTP command (not the message text) to a file: one RCPT TO
line per copy is all it takes to count duplicates and missing readers, and it keeps up with
thousands of messages a second. The baseline smtp-source always runs against a sink started the
same way, so both pay the same logging cost.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

SINK, SOURCE, TIME = "/usr/sbin/smtp-sink", "/usr/sbin/smtp-source", "/usr/bin/time"
# The worker processes: each joins the edition being sent and exits once nothing is left to send.
# Before `briefing worker` existed this was ("send", "--date", "{date}", "--force"), which joins the
# sending edition of that date; either runs here.
WORKER_ARGS: tuple[str, ...] = ("worker", "--connections", "{connections}", "--once")
DRAIN_SECONDS = 30  # a stopped worker finishes its copies in flight; after this it is killed
SOURCE_TIMEOUT = 900


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Sink:
    """smtp-sink on a fresh loopback port, logging each SMTP command to `log`."""

    def __init__(self, log: Path) -> None:
        self.port, self.log = free_port(), log
        user = ["-u", "nobody"] if os.geteuid() == 0 else []
        with log.open("wb") as out:
            cmd = [SINK, *user, "-v", f"127.0.0.1:{self.port}", "1024"]
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        self.proc.kill()
        raise RuntimeError("smtp-sink did not start within 10 s")

    def stop(self) -> tuple[Counter[str], int]:
        """Stop the sink; each recipient with its RCPT count, and how many messages ended with '.'."""
        self.proc.terminate()
        self.proc.wait(timeout=10)
        rcpts: Counter[str] = Counter()
        done = 0
        with self.log.open("rb") as lines:
            for line in lines:
                if b": RCPT TO:<" in line:
                    rcpts[line.split(b"<", 1)[1].split(b">", 1)[0].decode().lower()] += 1
                elif line.rstrip().endswith(b": ."):
                    done += 1
        return rcpts, done


def smtp_source_rate(messages: int, size: int, sessions: int, log: Path) -> float:
    """Messages per second of Postfix's own load generator over `sessions` kept connections."""
    sink = Sink(log)
    try:
        argv = [SOURCE, "-d", "-s", str(sessions), "-m", str(messages), "-l", str(size)]
        started = time.perf_counter()
        subprocess.run(
            [*argv, f"127.0.0.1:{sink.port}"], check=True, timeout=SOURCE_TIMEOUT, capture_output=True
        )
        return messages / (time.perf_counter() - started)
    finally:
        sink.stop()


def worker_command(day: date, connections: int) -> list[str]:
    args = [a.format(date=day.isoformat(), connections=connections) for a in WORKER_ARGS]
    return [sys.executable, "-m", "briefing.cli", *args]


def _worker_of(timer: subprocess.Popen[bytes]) -> int | None:
    """The worker that /usr/bin/time started (signals go to it: time itself would just die)."""
    try:
        return int(Path(f"/proc/{timer.pid}/task/{timer.pid}/children").read_text().split()[0])
    except (OSError, IndexError, ValueError):
        return None


def run_workers(
    n: int, env: dict[str, str], command: list[str], work: Path, *, stop_after: float
) -> tuple[list[int], list[float], list[float], bool]:
    """Run n workers; SIGTERM those still running after `stop_after` s, SIGKILL them DRAIN_SECONDS later.

    Returns each worker's exit code, peak RSS in MB and CPU seconds, and whether any was stopped.
    The peak comes from `/usr/bin/time -f %M`, not from our own wait4: on Linux a child's ru_maxrss
    starts at its parent's RSS when it was started, and this process holds a million addresses.
    """
    timers = []
    for i in range(n):
        with (work / f"worker-{i}.log").open("wb") as log:
            cmd = [TIME, "-f", "%U %S %M", "-o", str(work / f"worker-{i}.rss"), *command]
            timers.append(subprocess.Popen(cmd, env=env, cwd=work, stdout=log, stderr=subprocess.STDOUT))
    stop_at = time.monotonic() + stop_after
    kill_at = stop_at + DRAIN_SECONDS
    stopped = killed = False
    while any(t.poll() is None for t in timers):
        moment = time.monotonic()
        if (not stopped and moment >= stop_at) or (not killed and moment >= kill_at):
            sig = signal.SIGKILL if moment >= kill_at else signal.SIGTERM
            stopped, killed = True, sig == signal.SIGKILL
            for timer in timers:
                worker = _worker_of(timer) if timer.poll() is None else None
                if worker is not None:
                    os.kill(worker, sig)
        if killed and moment >= kill_at + 10:
            for timer in timers:
                timer.kill()  # the worker is gone and time did not report: stop waiting for it
        time.sleep(0.1)
    rss, cpu = [], []
    for i in range(n):
        last = ((work / f"worker-{i}.rss").read_text().strip().splitlines() or ["0 0 0"])[-1].split()
        rss.append(round(int(last[2]) / 1024, 1) if len(last) == 3 and last[2].isdigit() else -1.0)
        cpu.append(round(float(last[0]) + float(last[1]), 1) if len(last) == 3 else -1.0)
    return [int(t.returncode) for t in timers], rss, cpu, stopped


def claim_plan(engine: sa.Engine, edition_id: int) -> dict[str, Any]:
    """EXPLAIN ANALYZE of the claim query exactly as a worker sends it now, rolled back afterwards.

    The statement is taken from a real `claim_batch` call, so the figure follows the code (or, if
    that call's statements bypass SQLAlchemy's events, from the writer's own SQL).
    """
    from briefing.store.deliveries import LedgerWriter

    seen: list[tuple[str, Any]] = []

    def record(_c: Any, _cur: Any, statement: str, params: Any, _ctx: Any, _many: bool) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "'pending'" in statement:
            seen.append((statement, params))

    writer = LedgerWriter(engine)
    sa.event.listen(writer.conn, "before_cursor_execute", record)
    try:
        tx = writer.transaction()
        now = datetime.now(UTC)
        # Twice: the second claim starts where the first ended, as every claim but a pass's first does.
        for _ in range(2):
            writer.claim_batch(edition_id, "scale-benchmark", now + timedelta(minutes=5), now, 20)
        statement, params = seen[-1] if seen else (writer._sql["due_pending"], (edition_id, 0, 20))
        found: Any = writer.conn.exec_driver_sql("EXPLAIN (ANALYZE, FORMAT JSON) " + statement, params)
        plan = found.scalar()
        tx.rollback()
    except Exception as exc:  # a changed claim path must not cost the run its other figures
        return {"error": str(exc)[:200]}
    finally:
        writer.close()
    top = (plan if isinstance(plan, list) else json.loads(plan))[0]
    nodes, stack = [], [top["Plan"]]
    while stack:
        node = stack.pop()
        nodes.append(node)
        stack.extend(node.get("Plans", []))
    scans = [
        f"{n['Node Type']} {n.get('Index Name', '')}".strip()
        for n in nodes
        if n.get("Relation Name") == "delivery"
    ]
    sorts = sum(n["Node Type"] == "Sort" for n in nodes)
    return {"delivery_scan": scans, "sorts": sorts, "ms": round(top["Execution Time"], 2)}


CLAIM_MS_LIMIT = 5.0  # a claim that filters its way past the sent rows takes 100 ms at 1M


def retire(engine: sa.Engine, edition_id: int) -> None:
    """Cancel an edition a bounded run left unsent, so that later workers do not join it."""
    from briefing.models import Edition

    table = Edition.__table__  # type: ignore[attr-defined]
    with engine.begin() as conn:
        conn.execute(
            sa.update(table)
            .where(table.c.id == edition_id, table.c.status != "sent")
            .values(status="cancelled")
        )


def ledger_figures(engine: sa.Engine, edition_id: int) -> dict[str, Any]:
    """The ledger's side of a run: its counts (timed: every report pays for them), its addresses,
    and the time from the first copy sent to the last, over which the rate is taken (start-up
    and the drain after SIGTERM's last copy are left out).
    """
    from sqlmodel import Session

    from briefing.store import deliveries as ledger

    with Session(engine) as session:
        started = time.perf_counter()
        counts = ledger.counts(session, edition_id)
        counts_ms = (time.perf_counter() - started) * 1000
        emails = set(
            session.execute(sa.select(ledger.D.c.email).where(ledger.D.c.edition_id == edition_id)).scalars()
        )
        n, first, last = session.execute(
            sa.select(
                sa.func.count(), sa.func.min(ledger.D.c.sent_at), sa.func.max(ledger.D.c.sent_at)
            ).where(ledger.D.c.edition_id == edition_id, ledger.D.c.status == "sent")
        ).one()
    window = (last - first).total_seconds() if n > 1 else 0.0
    return {
        "counts": {k: v for k, v in dataclasses.asdict(counts).items() if v},
        "sent": int(n),
        "window": window,
        "emails": {e.lower() for e in emails},
        "counts_ms": round(counts_ms, 1),
    }
