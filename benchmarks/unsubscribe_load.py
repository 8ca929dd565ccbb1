"""One-click unsubscribe under load: uvicorn (1 worker) on SQLite WAL, POSTs from wrk; one JSON line.

Usage: .venv/bin/python benchmarks/unsubscribe_load.py [--subscribers 5000] [--connections 32]
                                                        [--seconds 20] [--tool auto|wrk|python]

N active subscribers get pre-signed, distinct unsubscribe tokens. The server runs in its own
process on a free 127.0.0.1 port (pinned to core 0 with taskset when there are two cores or more;
the load tool gets core 1). wrk (when installed) runs for --seconds with one thread and C
connections, POSTing `List-Unsubscribe=One-Click` as a mail provider does, each request with the
next token (after the last one it starts again: replays must be harmless too). Without wrk, C
Python threads with keep-alive connections post each token once, within the same time limit.
Before the load, a burst of GET and HEAD requests to the same links must change nothing. The result
includes the number of subscribers the database shows as unsubscribed, which must equal the
distinct tokens posted.

Targets (PERFORMANCE.md): at least 300 requests/s, p99 under 250 ms, no errors.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from briefing.db import make_engine, session_scope, upgrade  # noqa: E402
from briefing.domain import SubscriberInput, SubscriberStatus  # noqa: E402
from briefing.links import LinkSigner  # noqa: E402
from briefing.models import Subscriber  # noqa: E402
from briefing.store import subscribers as subscriber_store  # noqa: E402

SECRET = "benchmark-link-secret-not-for-production"
HOST = "127.0.0.1"
TARGET = {"requests_per_s": 300, "p99_ms": 250, "errors": 0}
GET_PROBES = 500
READY_SECONDS = 30

WRK_SCRIPT = r"""
local tokens = {}
sent = 0

function init(args)
  for line in io.lines(args[1]) do tokens[#tokens + 1] = line end
end

function request()
  sent = sent + 1
  local token = tokens[((sent - 1) % #tokens) + 1]
  return wrk.format("POST", "/unsubscribe/" .. token,
    {["Content-Type"] = "application/x-www-form-urlencoded"}, "List-Unsubscribe=One-Click")
end

local threads = {}
function setup(thread) table.insert(threads, thread) end

function done(summary, latency, requests)
  local generated = 0
  for _, t in ipairs(threads) do generated = generated + (t:get("sent") or 0) end
  io.write(string.format(
    'RESULT {"requests": %d, "generated": %d, "duration_us": %d, "connect": %d, "read": %d, ' ..
    '"write": %d, "status": %d, "timeout": %d, "p50_us": %d, "p99_us": %d, "max_us": %d}\n',
    summary.requests, generated, summary.duration, summary.errors.connect, summary.errors.read,
    summary.errors.write, summary.errors.status, summary.errors.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
"""


def free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def pinned(core: int, argv: list[str]) -> list[str]:
    if shutil.which("taskset") and (os.cpu_count() or 1) >= 2:
        return ["taskset", "-c", str(core), *argv]
    return argv


# --------------------------------------------------------------------------- the server process


def serve(database_url: str, port: int) -> None:
    import uvicorn

    from briefing.config import load_settings
    from briefing.web.app import create_app

    settings = load_settings(
        database_url=database_url,
        secret_key=SECRET,
        smtp_url="memory://",
        public_base_url=f"http://{HOST}:{port}",
    )
    app = create_app(settings)
    uvicorn.run(app, host=HOST, port=port, workers=1, access_log=False, log_level="warning")


# --------------------------------------------------------------------------- set-up


def make_list(database_url: str, count: int, tokens_file: Path) -> list[str]:
    engine = make_engine(database_url)
    upgrade(engine)
    batch = 1000
    for start in range(0, count, batch):
        items = [
            SubscriberInput(email=f"reader{i}@example.com", name=f"Reader {i}")
            for i in range(start, min(count, start + batch))
        ]
        with session_scope(engine) as session:
            subscriber_store.import_batch(
                session,
                items,
                status=SubscriberStatus.ACTIVE,
                source="benchmark",
                first_new_id=subscriber_store.next_id(session),
                counts=subscriber_store.ImportCounts(),
                now=datetime.now(UTC),  # a benchmark is an edge: the real clock
            )
    signer = LinkSigner([SECRET])
    with engine.connect() as conn:
        ids = [int(i) for i in conn.execute(sa.select(Subscriber.id).order_by(Subscriber.id)).scalars()]  # type: ignore[call-overload]
    engine.dispose()
    tokens = [signer.unsubscribe_token(i) for i in ids]
    tokens_file.write_text("\n".join(tokens) + "\n", encoding="ascii")
    return tokens


def unsubscribed(database_url: str) -> int:
    engine = make_engine(database_url)
    with engine.connect() as conn:
        n = conn.execute(
            sa.select(sa.func.count()).where(Subscriber.status == SubscriberStatus.UNSUBSCRIBED.value)  # type: ignore[arg-type]
        ).scalar_one()
    engine.dispose()
    return int(n)


def wait_ready(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + READY_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit("the server exited during start-up")
        try:
            conn = http.client.HTTPConnection(HOST, port, timeout=2)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                conn.close()
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("the server did not start in time")


def probe_reads(port: int, tokens: list[str]) -> int:
    """GET and HEAD on the first links (what mail scanners do); returns non-200 answers."""
    bad = 0
    conn = http.client.HTTPConnection(HOST, port, timeout=10)
    for i in range(GET_PROBES):
        method = "GET" if i % 2 == 0 else "HEAD"
        conn.request(method, f"/unsubscribe/{tokens[i % len(tokens)]}")
        response = conn.getresponse()
        response.read()
        bad += response.status != 200
    conn.close()
    return bad


# --------------------------------------------------------------------------- load


def run_wrk(port: int, tokens_file: Path, workdir: Path, connections: int, seconds: int) -> dict[str, float]:
    script = workdir / "unsubscribe.lua"
    script.write_text(WRK_SCRIPT, encoding="utf-8")
    argv = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{seconds}s",
        "--timeout",
        "5s",
        "-s",
        str(script),
        f"http://{HOST}:{port}",
        "--",
        str(tokens_file),
    ]
    out = subprocess.run(
        pinned(1, argv), capture_output=True, text=True, timeout=seconds + 60, check=False
    ).stdout
    line = next((ln for ln in out.splitlines() if ln.startswith("RESULT ")), None)
    if line is None:
        raise SystemExit(f"wrk printed no result:\n{out}")
    raw = json.loads(line.removeprefix("RESULT "))
    errors = raw["connect"] + raw["read"] + raw["write"] + raw["timeout"]
    return {
        "requests": raw["requests"],
        "posted": raw["generated"],
        "seconds": raw["duration_us"] / 1e6,
        "p50_ms": raw["p50_us"] / 1000,
        "p99_ms": raw["p99_us"] / 1000,
        "max_ms": raw["max_us"] / 1000,
        "socket_errors": errors,
        "non_2xx": raw["status"],
    }


def run_python(port: int, tokens: list[str], connections: int, seconds: int) -> dict[str, float]:
    latencies: list[float] = []
    failures = {"socket": 0, "status": 0}
    lock = threading.Lock()
    deadline = time.monotonic() + seconds
    posted = [0] * connections

    def worker(slot: int) -> None:
        mine = tokens[slot::connections]
        conn = http.client.HTTPConnection(HOST, port, timeout=5)
        local: list[float] = []
        for token in mine:
            if time.monotonic() > deadline:
                break
            started = time.perf_counter()
            try:
                conn.request(
                    "POST",
                    f"/unsubscribe/{token}",
                    body=b"List-Unsubscribe=One-Click",
                    headers={"Content-Type": "application/x-www-form-urlencoded"},
                )
                response = conn.getresponse()
                response.read()
                ok = 200 <= response.status < 300
            except OSError:
                with lock:
                    failures["socket"] += 1
                conn.close()
                conn = http.client.HTTPConnection(HOST, port, timeout=5)
                continue
            local.append(time.perf_counter() - started)
            posted[slot] += 1
            if not ok:
                with lock:
                    failures["status"] += 1
        conn.close()
        with lock:
            latencies.extend(local)

    started = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 30)
    elapsed = time.perf_counter() - started
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(len(latencies) * p))] * 1000 if latencies else 0.0

    return {
        "requests": len(latencies),
        "posted": sum(posted),
        "seconds": elapsed,
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "max_ms": latencies[-1] * 1000 if latencies else 0.0,
        "socket_errors": failures["socket"],
        "non_2xx": failures["status"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", type=int, default=5000)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--seconds", type=int, default=20, help="how long the load runs (at most)")
    parser.add_argument("--tool", choices=("auto", "wrk", "python"), default="auto")
    parser.add_argument("--serve", nargs=2, metavar=("DATABASE_URL", "PORT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve[0], int(args.serve[1]))
        return
    if not 1 <= args.subscribers <= 1_000_000 or not 1 <= args.connections <= 512:
        raise SystemExit("--subscribers must be 1..1000000 and --connections 1..512")
    tool = args.tool
    if tool == "auto":
        tool = "wrk" if shutil.which("wrk") else "python"

    with tempfile.TemporaryDirectory(prefix="briefing-unsub-") as tmp:
        workdir = Path(tmp)
        database_url = f"sqlite:///{workdir / 'bench.db'}"
        tokens_file = workdir / "tokens.txt"
        tokens = make_list(database_url, args.subscribers, tokens_file)
        port = free_port()
        log = (workdir / "server.log").open("wb")
        server = subprocess.Popen(
            pinned(0, [sys.executable, str(Path(__file__).resolve()), "--serve", database_url, str(port)]),
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=tmp,
        )
        try:
            wait_ready(port, server)
            read_failures = probe_reads(port, tokens)
            changed_by_reads = unsubscribed(database_url)
            if tool == "wrk":
                result = run_wrk(port, tokens_file, workdir, args.connections, args.seconds)
            else:
                result = run_python(port, tokens, args.connections, args.seconds)
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(timeout=10)
            log.close()
        server_log = (workdir / "server.log").read_text(encoding="utf-8", errors="replace")
        in_db = unsubscribed(database_url)

    # Once wrk has gone round the list (plus every connection's last request), each token was posted
    # and answered at least once, so the count must match exactly; a shorter run can end with up to
    # one request per connection written but not processed. The Python client waits for every answer.
    in_flight_at_end = args.connections if tool == "wrk" else 0
    cycled = result["posted"] >= len(tokens) + in_flight_at_end
    distinct = min(int(result["posted"]), len(tokens))
    matches = in_db == distinct if cycled else min(int(result["requests"]), distinct) <= in_db <= distinct
    errors = int(result["socket_errors"] + result["non_2xx"])
    rate = result["requests"] / result["seconds"] if result["seconds"] else 0.0
    figures = {
        "benchmark": "unsubscribe_load",
        "tool": tool,
        "subscribers": len(tokens),
        "connections": args.connections,
        "requests": int(result["requests"]),
        "seconds": round(result["seconds"], 2),
        "requests_per_s": round(rate),
        "p50_ms": round(result["p50_ms"], 1),
        "p99_ms": round(result["p99_ms"], 1),
        "max_ms": round(result["max_ms"], 1),
        "errors": errors,
        "socket_errors": int(result["socket_errors"]),
        "non_2xx": int(result["non_2xx"]),
        "distinct_tokens_posted": distinct,
        "db_unsubscribed": in_db,
        "db_matches_tokens": matches,
        "every_token_posted": bool(cycled),
        "get_head_probes": GET_PROBES,
        "get_head_failures": read_failures,
        "changed_by_get_head": changed_by_reads,
        "database_locked_in_log": server_log.count("database is locked"),
        "cores": os.cpu_count(),
        "pinned": bool(shutil.which("taskset")) and (os.cpu_count() or 1) >= 2,
        "target": TARGET,
    }
    figures["pass"] = (
        rate >= TARGET["requests_per_s"]
        and result["p99_ms"] < TARGET["p99_ms"]
        and errors == 0
        and figures["db_matches_tokens"]
        and changed_by_reads == 0
        and read_failures == 0
    )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
