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
from pathlib import Path

import pytest

from briefing.errors import LockHeld
from briefing.locks import SchedulerLock, acquire_scheduler_lock, lock_file_path, scheduler_lock_holder
from tests.fixtures.db import postgres_url_or_skip

REPO = Path(__file__).resolve().parent.parent
CHILD_TIMEOUT = 20.0

HOLDER_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from briefing.locks import acquire_scheduler_lock
    lock = acquire_scheduler_lock(sys.argv[1], Path(sys.argv[2]))
    print("HELD", flush=True)
    time.sleep(120)
    """
)

TRY_SCRIPT = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from briefing.errors import LockHeld
    from briefing.locks import acquire_scheduler_lock
    try:
        lock = acquire_scheduler_lock(sys.argv[1], Path(sys.argv[2]))
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
    return subprocess.run(
        _python(TRY_SCRIPT, url, str(lock_dir)),
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT,
        env=_env(),
        cwd=REPO,
        check=False,
    )


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
        proc.wait(timeout=CHILD_TIMEOUT)
        for stream in (proc.stdout, proc.stderr):
            if stream:
                stream.close()


# --- SQLite: file lock ---------------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_sqlite_second_acquirer_in_the_same_process_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'briefing.db'}"
    with acquire_scheduler_lock(url, tmp_path) as lock:
        assert lock.held and lock.verify()
        with pytest.raises(LockHeld) as info:
            acquire_scheduler_lock(url, tmp_path)
        message = str(info.value)
        assert "another scheduler is running" in message
        assert f"pid {os.getpid()}" in message
        assert "since " in message
    # Released on leaving the block: the next acquirer wins.
    again = acquire_scheduler_lock(url, tmp_path)
    again.release()
    again.release()  # idempotent
    assert not again.held


@pytest.mark.timeout(30)
def test_lock_file_sits_next_to_the_database_and_names_the_holder(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'data' / 'briefing.db'}"
    path = lock_file_path(url, tmp_path / "elsewhere")
    assert path == (tmp_path / "data" / "briefing.db.scheduler.lock").resolve()
    with acquire_scheduler_lock(url, tmp_path / "elsewhere"):
        info = json.loads(path.read_text())
        assert info["pid"] == os.getpid()
        assert info["since"]
        holder = scheduler_lock_holder(url, tmp_path / "elsewhere")
        assert holder is not None and holder.pid == os.getpid()
    assert path.exists()  # never deleted, so no two processes can lock different inodes
    assert path.read_text() == ""
    assert scheduler_lock_holder(url, tmp_path / "elsewhere") is None


@pytest.mark.timeout(30)
def test_in_memory_sqlite_uses_lock_dir(tmp_path: Path) -> None:
    path = lock_file_path("sqlite://", tmp_path)
    assert path == tmp_path.resolve() / "scheduler.lock"
    with acquire_scheduler_lock("sqlite:///:memory:", tmp_path), pytest.raises(LockHeld):
        acquire_scheduler_lock("sqlite://", tmp_path)


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_sqlite_second_process_is_refused_while_we_hold_it(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'briefing.db'}"
    with acquire_scheduler_lock(url, tmp_path):
        result = _try_in_child(url, tmp_path)
    assert result.returncode == 3, result.stderr
    assert "REFUSED" in result.stdout
    assert f"another scheduler is running (pid {os.getpid()}" in result.stdout
    # And once we let go, a new process gets it.
    result = _try_in_child(url, tmp_path)
    assert result.returncode == 0 and "ACQUIRED" in result.stdout, result.stderr


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_lock_of_a_killed_process_is_free_again(
    holder_process: tuple[subprocess.Popen[str], str, Path],
) -> None:
    proc, url, lock_dir = holder_process
    with pytest.raises(LockHeld, match=f"pid {proc.pid}"):
        acquire_scheduler_lock(url, lock_dir)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=CHILD_TIMEOUT)
    lock = acquire_scheduler_lock(url, lock_dir)
    try:
        assert lock.held
    finally:
        lock.release()


# --- PostgreSQL: advisory lock on a dedicated connection -----------------------------------------


@pytest.mark.postgres
@pytest.mark.timeout(60)
def test_postgres_second_acquirer_is_refused_and_release_frees_it(tmp_path: Path) -> None:
    url = postgres_url_or_skip()
    first: SchedulerLock = acquire_scheduler_lock(url, tmp_path)
    try:
        assert first.kind == "advisory" and first.verify()
        with pytest.raises(LockHeld) as info:
            acquire_scheduler_lock(url, tmp_path)
        assert f"another scheduler is running (pid {os.getpid()}" in str(info.value)
        holder = scheduler_lock_holder(url, tmp_path)
        assert holder is not None and holder.pid == os.getpid()
        result = _try_in_child(url, tmp_path)
        assert result.returncode == 3 and "REFUSED" in result.stdout, result.stderr
    finally:
        first.release()
    assert not first.verify()
    assert scheduler_lock_holder(url, tmp_path) is None
    second = acquire_scheduler_lock(url, tmp_path)
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
    try:
        assert _read_line_with_timeout(proc, CHILD_TIMEOUT).strip() == "HELD"
        with pytest.raises(LockHeld, match=f"pid {proc.pid}"):
            acquire_scheduler_lock(url, tmp_path)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=CHILD_TIMEOUT)
        # The server notices the closed socket at once on loopback; allow a moment for it.
        lock = None
        for _ in range(50):
            try:
                lock = acquire_scheduler_lock(url, tmp_path)
                break
            except LockHeld:
                threading.Event().wait(0.1)
        assert lock is not None, "lock still held 5 s after the holder died"
        lock.release()
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=CHILD_TIMEOUT)
        for stream in (proc.stdout, proc.stderr):
            if stream:
                stream.close()
