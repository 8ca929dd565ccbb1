"""Shared fixtures: real SQLite files, real PostgreSQL when configured, real SMTP over loopback.

Each fixture group lives in its own module under tests/fixtures so that they stay small.
"""

import os
import threading
import time


def _sleep_on_an_event(seconds: float) -> None:
    if seconds < 0:
        raise ValueError("sleep length must be non-negative")
    threading.Event().wait(seconds)


# CI's second pass runs the suite under libfaketime with the monotonic clock left real. There
# libfaketime 0.9.10 makes clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME), which `time.sleep` uses,
# fail with EINVAL, and the standard library sleeps through it (`subprocess.Popen.wait(timeout=)`).
# Only in that run, and only in the test process, sleep on an Event instead: same duration, another
# system call. Code under test waits on its Clock and never calls `time.sleep` below the edges.
if "faketime" in os.environ.get("LD_PRELOAD", "") and os.environ.get("FAKETIME_DONT_FAKE_MONOTONIC") == "1":
    time.sleep = _sleep_on_an_event

pytest_plugins = [
    "tests.fixtures.db",
    "tests.fixtures.browser",
    "tests.fixtures.smtp",
    "tests.fixtures.newsroom",
    "tests.fixtures.web",
]
