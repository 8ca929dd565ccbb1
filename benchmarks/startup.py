"""Time how long the `briefing` command takes to start: `--help` and `status`, against typer and rich alone.

A person types `briefing --help`, a monitor runs `briefing status` every minute: both should cost
little more than the libraries the command line is built on. The baseline is measured in the same
run, interleaved with the commands, so a loaded machine slows all three alike. `status` runs against
a fresh SQLite database that `briefing init` made in a temporary folder, with a secret key in the
environment. Prints one JSON line: the median wall time of each, the ratios to the baseline, and
the target (each under 3x the baseline); also the median CPU time (user + system) of each, which a
busy machine disturbs less than the wall time, and the load average before and after.

Python's bytecode is cached in a temporary folder (PYTHONPYCACHEPREFIX), filled by the warm-up
rounds: an installed briefing, like the typer and rich of the baseline, has its modules compiled
once, at install. `--no-bytecode-cache` compiles every module of the checkout on every start
instead (as with PYTHONDONTWRITEBYTECODE=1), which measures the checkout rather than the command.

    .venv/bin/python benchmarks/startup.py [--runs 15] [--warmups 2] [--no-bytecode-cache]
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
import threading
import time
from pathlib import Path

TARGET_RATIO = 3.0
RUN_TIMEOUT_S = 120.0  # one start that takes this long is stuck, not slow


def commands(python: str) -> dict[str, list[str]]:
    installed = Path(python).parent / "briefing"  # the console script a person runs
    cli = [str(installed)] if installed.is_file() else [python, "-m", "briefing.cli"]
    return {
        "baseline": [python, "-c", "import typer, rich"],
        "help": [*cli, "--help"],
        "status": [*cli, "status"],
    }


def timed(argv: list[str], env: dict[str, str], cwd: Path, ok_codes: tuple[int, ...]) -> tuple[float, float]:
    """Wall time and CPU time (user + system) of one run of the command; one stuck is killed."""
    with tempfile.TemporaryFile() as err:
        began = time.perf_counter()
        child = subprocess.Popen(argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=err)
        deadline = threading.Timer(RUN_TIMEOUT_S, child.kill)
        deadline.start()
        try:
            _, status, usage = os.wait4(child.pid, 0)
        finally:
            deadline.cancel()
        elapsed = time.perf_counter() - began
        child.returncode = code = os.waitstatus_to_exitcode(status)
        if code not in ok_codes:
            err.seek(0)
            sys.exit(f"{' '.join(argv[1:])} exited {code}: {err.read().decode(errors='replace')}")
    return elapsed, usage.ru_utime + usage.ru_stime


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--warmups", type=int, default=2)
    parser.add_argument(
        "--no-bytecode-cache", action="store_true", help="compile every module on every start"
    )
    args = parser.parse_args()
    load_before = load_average()

    with tempfile.TemporaryDirectory(prefix="briefing-startup-") as folder:
        where = Path(folder)
        env = {
            **os.environ,
            "BRIEFING_DATABASE_URL": f"sqlite:///{where / 'briefing.db'}",
            "BRIEFING_SECRET_KEY": "startup-benchmark-key-not-for-real-use-0123456789",
            "BRIEFING_TIMEZONE": "Europe/London",
        }
        env.pop("BRIEFING_NOW", None)
        if args.no_bytecode_cache:
            env["PYTHONDONTWRITEBYTECODE"] = "1"
            env.pop("PYTHONPYCACHEPREFIX", None)
        else:
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            env["PYTHONPYCACHEPREFIX"] = str(where / "pycache")
        python = sys.executable
        argvs = commands(python)
        timed([*argvs["help"][:-1], "init"], env, where, (0,))
        # `status` exits 1 when the newsroom needs attention (no heartbeat on a fresh install): still a start.
        ok_codes = {"baseline": (0,), "help": (0,), "status": (0, 1)}
        times: dict[str, list[float]] = {name: [] for name in argvs}
        cpu: dict[str, list[float]] = {name: [] for name in argvs}
        for round_no in range(args.warmups + args.runs):
            for name, argv in argvs.items():
                elapsed, used = timed(argv, env, where, ok_codes[name])
                if round_no >= args.warmups:
                    times[name].append(elapsed)
                    cpu[name].append(used)

    median = {name: statistics.median(values) for name, values in times.items()}
    median_cpu = {name: statistics.median(values) for name, values in cpu.items()}
    base = median["baseline"]
    ratios = {name: round(median[name] / base, 2) for name in ("help", "status")}
    cpu_ratios = {name: round(median_cpu[name] / median_cpu["baseline"], 2) for name in ("help", "status")}
    print(
        json.dumps(
            {
                "benchmark": "startup",
                "cores": os.cpu_count(),
                "python": platform.python_version(),
                "runs": args.runs,
                "warmups": args.warmups,
                "bytecode_cache": not args.no_bytecode_cache,
                "baseline": "python -c 'import typer, rich'",
                "median_s": {name: round(value, 3) for name, value in median.items()},
                "ratio_to_baseline": ratios,
                "median_cpu_s": {name: round(value, 3) for name, value in median_cpu.items()},
                "cpu_ratio_to_baseline": cpu_ratios,
                "load_average": {"before": load_before, "after": load_average()},
                "target_ratio_under": TARGET_RATIO,
                "target_met": all(r < TARGET_RATIO for r in ratios.values()),
            }
        )
    )


if __name__ == "__main__":
    main()
