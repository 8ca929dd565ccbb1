"""A second scheduler is refused, and a dead one's lock is free again at once.

Second acquirers run both in this process (flock conflicts between two open file descriptions even
within one process) and in a real child process, which is the case that matters in production.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from briefing.errors import LockHeld
from briefing.locks import SchedulerLock, acquire_scheduler_lock, lock_file_path, scheduler_lock_holder
from tests.fixtures.clock import ManualClock
from tests.fixtures.db import postgres_url_or_skip
from tests.fixtures.waiting import wait_until

REPO = Path(__file__).resolve().parent.parent
CHILD_TIMEOUT = 20.0

# The children choose their time like the tests do: the holder took the lock at CHILD_NOW.
NOW = datetime(2026, 11, 30, 5, 0, tzinfo=UTC)
CHILD_NOW = datetime(2026, 11, 30, 5, 30, tzinfo=UTC)

HOLDER_SCRIPT = textwrap.dedent(
    f"""
    import sys, threading
    from datetime import datetime
    from pathlib import Path
    from briefing.locks import acquire_scheduler_lock
    from tests.fixtures.clock import ManualClock
    clock = ManualClock(datetime.fromisoformat({CHILD_NOW.isoformat()!r}))
    lock = acquire_scheduler_lock(sys.argv[1], Path(sys.argv[2]), clock=clock)
    print("HELD", flush=True)
    threading.Event().wait(120)  # until the test kills it
    """
)

TRY_SCRIPT = textwrap.dedent(
    f"""
    import sys
    from datetime import datetime
    from pathlib import Path
    from briefing.errors import LockHeld
    from briefing.locks import acquire_scheduler_lock
    from tests.fixtures.clock import ManualClock
    clock = ManualClock(datetime.fromisoformat({CHILD_NOW.isoformat()!r}))
    try:
        lock = acquire_scheduler_lock(sys.argv[1], Path(sys.argv[2]), clock=clock)
    except LockHeld as exc:
        print("REFUSED", exc, flush=True)
        sys.exit(3)
    print("ACQUIRED", flush=True)
    lock.release()
    """
)


def _python(script: str, *args: str) -> list[str]:
    return [sys.executable, "-c", script, *args]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _try_in_child(url: str, lock_dir: Path) -> subprocess.CompletedProcess[str]:
    """Run TRY_SCRIPT. Not `subprocess.run(timeout=...)`: its wait loop calls time.sleep, which fails
    under libfaketime; the exit is polled instead, and a child that hangs is killed."""
    proc = subprocess.Popen(
        _python(TRY_SCRIPT, url, str(lock_dir)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
        cwd=REPO,
    )
    if not wait_until(lambda: proc.poll() is not None, timeout=CHILD_TIMEOUT):
        proc.kill()
    out, err = proc.communicate()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _read_line_with_timeout(proc: subprocess.Popen[str], timeout: float) -> str:
    """readline() on a pipe can block forever; give it a deadline."""
    box: list[str] = []
    reader = threading.Thread(target=lambda: box.append(proc.stdout.readline() if proc.stdout else ""))
    reader.daemon = True
    reader.start()
    reader.join(timeout)
    if not box:
        raise AssertionError(f"child said nothing within {timeout} s")
    return box[0]


@pytest.fixture
def holder_process(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], str, Path]]:
    """Start a child process that holds the lock; yields (process, url, lock_dir)."""
    url = f"sqlite:///{tmp_path / 'briefing.db'}"
    proc = subprocess.Popen(
        _python(HOLDER_SCRIPT, url, str(tmp_path / "run")),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
        cwd=REPO,
    )
    try:
        line = _read_line_with_timeout(proc, CHILD_TIMEOUT)
        assert line.strip() == "HELD", line
        yield proc, url, tmp_path / "run"
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()  # killed, or already gone: returns at once
        for stream in (proc.stdout, proc.stderr):
            if stream:
                stream.close()


# --- SQLite: file lock ---------------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_sqlite_second_acquirer_in_the_same_process_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'briefing.db'}"
    clock = ManualClock(NOW)
    with acquire_scheduler_lock(url, tmp_path, clock=clock) as lock:
        assert lock.held and lock.verify()
        assert lock.since == NOW
        with pytest.raises(LockHeld) as info:
            acquire_scheduler_lock(url, tmp_path, clock=clock)
        message = str(info.value)
        assert "another scheduler is running" in message
        assert f"pid {os.getpid()}" in message
        assert "since 2026-11-30T05:00:00+00:00" in message  # when the holder's clock said it took it
        assert len(clock.waited) == 3  # a few quick retries, on the clock it was given, then refused
    # Released on leaving the block: the next acquirer wins.
    again = acquire_scheduler_lock(url, tmp_path, clock=clock)
    again.release()
    again.release()  # idempotent
    assert not again.held


@pytest.mark.timeout(30)
def test_lock_file_sits_next_to_the_database_and_names_the_holder(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'data' / 'briefing.db'}"
    path = lock_file_path(url, tmp_path / "elsewhere")
    assert path == (tmp_path / "data" / "briefing.db.scheduler.lock").resolve()
    with acquire_scheduler_lock(url, tmp_path / "elsewhere", clock=ManualClock(NOW)):
        info = json.loads(path.read_text())
        assert info["pid"] == os.getpid()
        assert info["since"] == "2026-11-30T05:00:00+00:00"
        holder = scheduler_lock_holder(url, tmp_path / "elsewhere")
        assert holder is not None and holder.pid == os.getpid() and holder.since == NOW
    assert path.exists()  # never deleted, so no two processes can lock different inodes
    assert path.read_text() == ""
    assert scheduler_lock_holder(url, tmp_path / "elsewhere") is None


@pytest.mark.timeout(30)
def test_in_memory_sqlite_uses_lock_dir(tmp_path: Path) -> None:
    path = lock_file_path("sqlite://", tmp_path)
    assert path == tmp_path.resolve() / "scheduler.lock"
    clock = ManualClock(NOW)
    with acquire_scheduler_lock("sqlite:///:memory:", tmp_path, clock=clock), pytest.raises(LockHeld):
        acquire_scheduler_lock("sqlite://", tmp_path, clock=clock)


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_sqlite_second_process_is_refused_while_we_hold_it(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'briefing.db'}"
    with acquire_scheduler_lock(url, tmp_path, clock=ManualClock(NOW)):
        result = _try_in_child(url, tmp_path)
    assert result.returncode == 3, result.stderr
    assert "REFUSED" in result.stdout
    assert f"another scheduler is running (pid {os.getpid()}" in result.stdout
    assert "since 2026-11-30T05:00:00+00:00" in result.stdout
    # And once we let go, a new process gets it.
    result = _try_in_child(url, tmp_path)
    assert result.returncode == 0 and "ACQUIRED" in result.stdout, result.stderr


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_lock_of_a_killed_process_is_free_again(
    holder_process: tuple[subprocess.Popen[str], str, Path],
) -> None:
    proc, url, lock_dir = holder_process
    clock = ManualClock(NOW)
    with pytest.raises(LockHeld, match=f"pid {proc.pid} on .*, since 2026-11-30T05:30:00"):
        acquire_scheduler_lock(url, lock_dir, clock=clock)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    lock = acquire_scheduler_lock(url, lock_dir, clock=clock)
    try:
        assert lock.held
    finally:
        lock.release()


# --- PostgreSQL: advisory lock on a dedicated connection -----------------------------------------


def _wait_for_advisory_lock(url: str) -> None:
    """Block until the scheduler's advisory lock is free (take it and give it back at once)."""
    import psycopg
    import sqlalchemy as sa

    from briefing.locks import ADVISORY_LOCK_KEY

    conninfo = sa.engine.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f"SET lock_timeout = '{int(CHILD_TIMEOUT)}s'")
        conn.execute("SELECT pg_advisory_lock(%s)", (ADVISORY_LOCK_KEY,))
        conn.execute("SELECT pg_advisory_unlock(%s)", (ADVISORY_LOCK_KEY,))


@pytest.mark.postgres
@pytest.mark.timeout(60)
def test_postgres_second_acquirer_is_refused_and_release_frees_it(tmp_path: Path) -> None:
    url = postgres_url_or_skip()
    clock = ManualClock(NOW)
    first: SchedulerLock = acquire_scheduler_lock(url, tmp_path, clock=clock)
    try:
        assert first.kind == "advisory" and first.verify() and first.since == NOW
        with pytest.raises(LockHeld) as info:
            acquire_scheduler_lock(url, tmp_path, clock=clock)
        assert f"another scheduler is running (pid {os.getpid()}" in str(info.value)
        holder = scheduler_lock_holder(url, tmp_path)
        assert holder is not None and holder.pid == os.getpid()
        result = _try_in_child(url, tmp_path)
        assert result.returncode == 3 and "REFUSED" in result.stdout, result.stderr
    finally:
        first.release()
    assert not first.verify()
    assert scheduler_lock_holder(url, tmp_path) is None
    second = acquire_scheduler_lock(url, tmp_path, clock=clock)
    second.release()


@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.timeout(60)
def test_postgres_lock_of_a_killed_process_is_free_again(tmp_path: Path) -> None:
    url = postgres_url_or_skip()
    proc = subprocess.Popen(
        _python(HOLDER_SCRIPT, url, str(tmp_path)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
        cwd=REPO,
    )
    clock = ManualClock(NOW)
    try:
        assert _read_line_with_timeout(proc, CHILD_TIMEOUT).strip() == "HELD"
        with pytest.raises(LockHeld, match=f"pid {proc.pid}"):
            acquire_scheduler_lock(url, tmp_path, clock=clock)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        # The server ends the dead session when it notices the closed socket; wait for exactly that
        # (a blocking lock request), instead of retrying on a timetable.
        _wait_for_advisory_lock(url)
        lock = acquire_scheduler_lock(url, tmp_path, clock=clock)
        assert lock.held
        lock.release()
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()  # killed, or already gone: returns at once
        for stream in (proc.stdout, proc.stderr):
            if stream:
                stream.close()


@pytest.mark.postgres
@pytest.mark.timeout(60)
def test_a_terminated_lock_connection_is_reported_and_another_scheduler_can_take_over(tmp_path: Path) -> None:
    import psycopg
    import sqlalchemy as sa

    url = postgres_url_or_skip()
    clock = ManualClock(NOW)
    lost = threading.Event()
    lock = acquire_scheduler_lock(url, tmp_path, clock=clock)
    try:
        assert lock.watch(lost.set, clock, every=30.0)  # far longer than the test: the socket wakes it
        conninfo = sa.engine.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(conninfo, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name LIKE %s",
                (f"briefing scheduler pid={os.getpid()} %",),
            )
        assert lost.wait(10), "the lost lock was not noticed"
        assert not lock.verify()
        successor = acquire_scheduler_lock(url, tmp_path, clock=clock)  # the lock is free for another one
        successor.release()
    finally:
        lock.release()
    assert not lock.held


def test_a_file_lock_is_not_watched(tmp_path: Path) -> None:
    lock = acquire_scheduler_lock(f"sqlite:///{tmp_path / 'briefing.db'}", tmp_path, clock=ManualClock(NOW))
    try:
        assert lock.watch(lambda: None, ManualClock(NOW)) is False  # the kernel keeps it until we exit
    finally:
        lock.release()
