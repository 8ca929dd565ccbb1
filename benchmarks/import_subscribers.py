"""Import N generated subscribers into a fresh SQLite database; print one JSON line.

Usage: .venv/bin/python benchmarks/import_subscribers.py [--rows 100000]

Baseline in the same run: reading and validating the same file without touching the database,
so the figure shows what the database part costs on this machine.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from briefing import files
from briefing.db import make_engine, upgrade
from briefing.service import subscribers as subscriber_service


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        csv_path = Path(tmp) / "list.csv"
        with csv_path.open("w", encoding="utf-8") as handle:
            handle.write("email,name\n")
            for i in range(args.rows):
                handle.write(f"reader{i}@example.com,Reader {i}\n")
        started = time.perf_counter()
        parsed = sum(1 for row in files.read_subscriber_csv(csv_path) if row.value is not None)
        parse_seconds = time.perf_counter() - started

        engine = make_engine(f"sqlite:///{Path(tmp) / 'bench.db'}")
        upgrade(engine)
        started = time.perf_counter()
        report = subscriber_service.import_subscribers(engine, csv_path, now=datetime.now(UTC))
        seconds = time.perf_counter() - started
        assert report.counts.added == args.rows == parsed
    print(
        json.dumps(
            {
                "benchmark": "import_subscribers",
                "rows": args.rows,
                "seconds": round(seconds, 2),
                "rows_per_s": round(args.rows / seconds),
                "peak_rss_mb": round(peak_rss_mb(), 1),
                "baseline_parse_validate_seconds": round(parse_seconds, 2),
                "cpus": os.cpu_count(),
                "target": {"seconds": 30, "peak_rss_mb": 200},
            }
        )
    )


if __name__ == "__main__":
    main()
