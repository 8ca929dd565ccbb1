"""Time how long the `briefing` command takes to start: `--help` and `status`, against typer and rich alone.

A person types `briefing --help`, a monitor runs `briefing status` every minute: both should cost
little more than the libraries the command line is built on. The baseline is measured in the same
run, interleaved with the commands, so a loaded machine slows all three alike. `status` runs against
a fresh SQLite database that `briefing init` made in a temporary folder, with a secret key in the
environment. Prints one JSON line: the median wall time of each, the ratios to the baseline, and
the target (each under 3x the baseline).

    .venv/bin/python benchmarks/startup.py [--runs 15] [--warmups 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_RATIO = 3.0


def commands(python: str) -> dict[str, list[str]]:
    installed = Path(python).parent / "briefing"  # the console script a person runs
    cli = [str(installed)] if installed.is_file() else [python, "-m", "briefing.cli"]
    return {
        "baseline": [python, "-c", "import typer, rich"],
        "help": [*cli, "--help"],
        "status": [*cli, "status"],
    }


def timed(argv: list[str], env: dict[str, str], cwd: Path, ok_codes: tuple[int, ...]) -> float:
    began = time.perf_counter()
    done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, check=False)
    elapsed = time.perf_counter() - began
    if done.returncode not in ok_codes:
        sys.exit(f"{' '.join(argv[1:])} exited {done.returncode}: {done.stderr.decode(errors='replace')}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--warmups", type=int, default=2)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="briefing-startup-") as folder:
        where = Path(folder)
        env = {
            **os.environ,
            "BRIEFING_DATABASE_URL": f"sqlite:///{where / 'briefing.db'}",
            "BRIEFING_SECRET_KEY": "startup-benchmark-key-not-for-real-use-0123456789",
            "BRIEFING_TIMEZONE": "Europe/London",
        }
        env.pop("BRIEFING_NOW", None)
        python = sys.executable
        argvs = commands(python)
        timed([*argvs["help"][:-1], "init"], env, where, (0,))
        # `status` exits 1 when the newsroom needs attention (no heartbeat on a fresh install): still a start.
        ok_codes = {"baseline": (0,), "help": (0,), "status": (0, 1)}
        times: dict[str, list[float]] = {name: [] for name in argvs}
        for round_no in range(args.warmups + args.runs):
            for name, argv in argvs.items():
                elapsed = timed(argv, env, where, ok_codes[name])
                if round_no >= args.warmups:
                    times[name].append(elapsed)

    median = {name: statistics.median(values) for name, values in times.items()}
    base = median["baseline"]
    ratios = {name: round(median[name] / base, 2) for name in ("help", "status")}
    print(
        json.dumps(
            {
                "benchmark": "startup",
                "cores": os.cpu_count(),
                "python": platform.python_version(),
                "runs": args.runs,
                "warmups": args.warmups,
                "baseline": "python -c 'import typer, rich'",
                "median_s": {name: round(value, 3) for name, value in median.items()},
                "ratio_to_baseline": ratios,
                "target_ratio_under": TARGET_RATIO,
                "target_met": all(r < TARGET_RATIO for r in ratios.values()),
            }
        )
    )


if __name__ == "__main__":
    main()
