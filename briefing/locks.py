"""One scheduler per database, enforced by the operating system or by PostgreSQL.

Two schedulers sharing a database would both fire at send time (apscheduler #160, lokole #1). The
database's unique edition date already stops a second issue, but refusing to start a second
scheduler turns a silent race into a clear message at start-up.

* SQLite: an ``fcntl.flock`` on ``<database file>.scheduler.lock``, next to the database so that
  every process using that file sees the same lock whatever its working directory. The kernel
  drops the lock when the process dies, even on SIGKILL, so there is nothing stale to clean up.
  The file is never deleted (deleting a lock file lets two processes lock two different inodes).
  flock is unreliable on some network file systems; keep the database on a local disk.
* PostgreSQL: a session-level ``pg_try_advisory_lock`` held on a dedicated connection opened with
  psycopg directly. A pooled connection would keep the lock after ``close()`` (it goes back to
  the pool), so no pool is involved. The server drops the lock when the connection ends, which
  also happens when the process dies.

A PostgreSQL lock can be lost while the process lives: the lock's connection is terminated
(``pg_terminate_backend``, a server restart, a failover) and another scheduler may take the lock
at once. `SchedulerLock.watch` notices within moments: a thread waits on the connection's socket,
which the server's goodbye makes readable, and checks the lock then (and every few seconds).

The caller's clock says when the lock was taken (what `briefing status` and the refusal show as
"since") and paces the few quick retries; nothing here reads the real clock.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import select
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import sqlalchemy as sa

from briefing.domain import Clock
from briefing.errors import ConfigError, LockHeld

__all__ = [
    "ADVISORY_LOCK_KEY",
    "LockHolder",
    "SchedulerLock",
    "acquire_scheduler_lock",
    "acquire_send_lock",
    "lock_file_path",
    "scheduler_lock_holder",
]

# A fixed 64-bit key: the bytes of "briefing" (fits in a signed bigint).
ADVISORY_LOCK_KEY = int.from_bytes(b"briefing", "big")
LOCK_FILE_NAME = "scheduler.lock"
SEND_LOCK_FILE_NAME = "send.lock"  # SQLite takes one writer: one `briefing send` per database file
_APP_NAME_PREFIX = "briefing scheduler pid="
_FILE_LOCK_ATTEMPTS = 4
WATCH_EVERY = 5.0  # seconds between checks of a quiet lock connection


@dataclass(frozen=True)
class LockHolder:
    """What we can tell about the process holding the lock, for the error and `briefing status`."""

    pid: int | None = None
    host: str | None = None
    since: datetime | None = None

    def describe(self) -> str:
        parts = []
        if self.pid is not None:
            parts.append(f"pid {self.pid}" + (f" on {self.host}" if self.host else ""))
        if self.since is not None:
            parts.append(f"since {self.since.astimezone(UTC).isoformat(timespec='seconds')}")
        return ", ".join(parts)


def _held_error(holder: LockHolder | None, where: str, who: str = "another scheduler is running") -> LockHeld:
    detail = holder.describe() if holder else ""
    text = who + (f" ({detail})" if detail else "")
    return LockHeld(f"{text}; lock: {where}. Stop it first, or wait for it to exit.")


def _is_sqlite(url: sa.URL) -> bool:
    return url.get_backend_name() == "sqlite"


def _is_postgres(url: sa.URL) -> bool:
    return url.get_backend_name() in ("postgresql", "postgres")


def lock_file_path(database_url: str, lock_dir: Path, name: str = LOCK_FILE_NAME) -> Path:
    """Where the SQLite lock lives: beside the database file, or in lock_dir for in-memory ones."""
    url = sa.engine.make_url(database_url)
    if not _is_sqlite(url):
        raise ConfigError("a lock file is only used with SQLite", field="database_url")
    database = url.database or ""
    if database and database != ":memory:" and not database.startswith("file:"):
        db_path = Path(database).expanduser().resolve()
        return db_path.with_name(db_path.name + "." + name)
    return Path(lock_dir).expanduser().resolve() / name


def _read_holder_file(fd: int) -> LockHolder | None:
    try:
        raw = os.pread(fd, 4096, 0)
        data = json.loads(raw.decode("utf-8")) if raw.strip() else {}
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    since: datetime | None = None
    with contextlib.suppress(TypeError, ValueError):
        since = datetime.fromisoformat(data["since"]) if data.get("since") else None
    pid = data.get("pid")
    return LockHolder(
        pid=pid if isinstance(pid, int) else None,
        host=str(data["host"]) if data.get("host") else None,
        since=since,
    )


def _postgres_conninfo(url: sa.URL) -> str:
    # psycopg speaks libpq URIs; drop the SQLAlchemy driver suffix (+psycopg, +psycopg2).
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


class SchedulerLock:
    """A held scheduler lock; release it (or leave the `with` block) when the scheduler stops."""

    def __init__(
        self,
        kind: str,
        where: str,
        *,
        fd: int | None = None,
        connection: Any = None,
        since: datetime,
    ) -> None:
        self.kind = kind  # "file" or "advisory"
        self.where = where
        self.since = since
        self._fd = fd
        self._conn = connection
        self._watcher: threading.Thread | None = None
        self._wake_r, self._wake_w = -1, -1

    @property
    def held(self) -> bool:
        return self._fd is not None or self._conn is not None

    def verify(self) -> bool:
        """Check the lock is still ours; a dropped PostgreSQL connection silently loses it.

        Call it from the heartbeat: if it returns False the scheduler must stop, because another
        process may already have taken over.
        """
        if self._fd is not None:
            return True
        if self._conn is None:
            return False
        try:
            row = self._conn.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
                " AND pid = pg_backend_pid() AND classid = %s AND objid = %s AND objsubid = 1",
                (ADVISORY_LOCK_KEY >> 32, ADVISORY_LOCK_KEY & 0xFFFFFFFF),
            ).fetchone()
        except Exception:  # noqa: BLE001 - any driver error means the session, and the lock, is gone
            return False
        return bool(row and row[0])

    def watch(self, on_lost: Callable[[], None], clock: Clock, *, every: float = WATCH_EVERY) -> bool:
        """Call `on_lost` (once, from a thread) as soon as the lock is found gone; False if it cannot go.

        A file lock is the kernel's until the process exits, so only a PostgreSQL lock is watched.
        `release` stops the watch before it closes the connection.
        """
        if self._conn is None or self._watcher is not None:
            return False
        self._wake_r, self._wake_w = os.pipe()
        self._watcher = threading.Thread(
            target=self._watch, args=(on_lost, clock, every), name="briefing-lock-watch", daemon=True
        )
        self._watcher.start()
        return True

    def _watch(self, on_lost: Callable[[], None], clock: Clock, every: float) -> None:
        conn = self._conn
        while conn is not None:
            try:
                ready, _, _ = select.select([conn.fileno(), self._wake_r], [], [], every)
            except (OSError, ValueError):  # the socket is already gone
                ready = []
            if self._wake_r in ready:
                return  # released
            if not self.verify():
                on_lost()
                return
            if ready:  # readable, yet the lock is fine (a notice): do not spin on it
                clock.wait(0.2)

    def _stop_watch(self) -> None:
        watcher, self._watcher = self._watcher, None
        if watcher is None:
            return
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")
        if watcher is not threading.current_thread():
            watcher.join(WATCH_EVERY * 2)
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._wake_r, self._wake_w = -1, -1

    def release(self) -> None:
        """Give the lock up; safe to call twice and after the connection has died."""
        self._stop_watch()
        fd, self._fd = self._fd, None
        if fd is not None:
            try:
                os.ftruncate(fd, 0)  # still ours: clear the holder info before unlocking
                fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                with contextlib.suppress(Exception):
                    conn.execute("SELECT pg_advisory_unlock(%s)", (ADVISORY_LOCK_KEY,))
            finally:
                conn.close()

    def __enter__(self) -> SchedulerLock:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def __repr__(self) -> str:
        state = "held" if self.held else "released"
        return f"<SchedulerLock {self.kind} {self.where} {state}>"


def _acquire_file_lock(path: Path, clock: Clock, who: str = "another scheduler is running") -> SchedulerLock:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)  # not inherited by child processes
    try:
        # A few quick retries ride out the instant in which `scheduler_lock_holder` probes.
        for attempt in range(_FILE_LOCK_ATTEMPTS):
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if attempt == _FILE_LOCK_ATTEMPTS - 1:
                    raise
                clock.wait(0.05)
    except BlockingIOError:
        holder = _read_holder_file(fd)
        os.close(fd)
        raise _held_error(holder, str(path), who) from None
    except BaseException:
        os.close(fd)
        raise
    since = clock.now()
    info = {"pid": os.getpid(), "host": socket.gethostname(), "since": since.isoformat(timespec="seconds")}
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(info) + "\n").encode("utf-8"), 0)
    except BaseException:
        os.close(fd)
        raise
    return SchedulerLock("file", str(path), fd=fd, since=since)


def _connect_postgres(url: sa.URL) -> Any:
    import psycopg

    app_name = f"{_APP_NAME_PREFIX}{os.getpid()} host={socket.gethostname()}"[:63]
    # Keepalives make a dead server or network show up within about a minute instead of hours.
    return psycopg.connect(
        _postgres_conninfo(url),
        autocommit=True,
        connect_timeout=10,
        application_name=app_name,
        keepalives=1,
        keepalives_idle=30,
        keepalives_interval=10,
        keepalives_count=3,
    )


def _postgres_holder(conn: Any) -> LockHolder | None:
    """Best effort: pg_stat_activity may hide other users' sessions from an unprivileged role."""
    try:
        row = conn.execute(
            "SELECT a.application_name, a.backend_start, host(a.client_addr)"
            " FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
            " WHERE l.locktype = 'advisory' AND l.granted AND l.classid = %s AND l.objid = %s"
            " AND l.objsubid = 1 LIMIT 1",
            (ADVISORY_LOCK_KEY >> 32, ADVISORY_LOCK_KEY & 0xFFFFFFFF),
        ).fetchone()
    except Exception:  # noqa: BLE001 - the message is still useful without the details
        return None
    if not row:
        return None
    app_name, backend_start, client = row
    pid: int | None = None
    host: str | None = client
    if app_name and app_name.startswith(_APP_NAME_PREFIX):
        pid_text, _, rest = app_name[len(_APP_NAME_PREFIX) :].partition(" ")
        pid = int(pid_text) if pid_text.isdigit() else None
        host = rest.removeprefix("host=") or host
    return LockHolder(pid=pid, host=host, since=backend_start)


def _acquire_advisory_lock(url: sa.URL, clock: Clock) -> SchedulerLock:
    conn = _connect_postgres(url)
    where = f"PostgreSQL advisory lock {ADVISORY_LOCK_KEY} on {url.host or 'localhost'}/{url.database}"
    try:
        row = conn.execute("SELECT pg_try_advisory_lock(%s)", (ADVISORY_LOCK_KEY,)).fetchone()
        if not (row and row[0]):
            holder = _postgres_holder(conn)
            raise _held_error(holder, where)
    except BaseException:
        conn.close()
        raise
    return SchedulerLock("advisory", where, connection=conn, since=clock.now())


def acquire_scheduler_lock(database_url: str, lock_dir: Path, *, clock: Clock) -> SchedulerLock:
    """Take the single-scheduler lock for this database or raise LockHeld naming the holder.

    `clock.now()` is recorded as the holder's "since". Hold the returned lock for the life of the
    scheduler process.
    """
    url = sa.engine.make_url(database_url)
    if _is_sqlite(url):
        return _acquire_file_lock(lock_file_path(database_url, lock_dir), clock)
    if _is_postgres(url):
        return _acquire_advisory_lock(url, clock)
    raise ConfigError("unsupported database URL for the scheduler lock", field="database_url")


def acquire_send_lock(database_url: str, *, clock: Clock) -> SchedulerLock | None:
    """One sender per SQLite database file, or LockHeld; None where many may send (PostgreSQL, memory)."""
    url = sa.engine.make_url(database_url)
    database = url.database or ""
    if not _is_sqlite(url) or not database or database == ":memory:" or database.startswith("file:"):
        return None
    path = lock_file_path(database_url, Path("."), SEND_LOCK_FILE_NAME)
    return _acquire_file_lock(path, clock, "another sender is sending from this SQLite database")


def scheduler_lock_holder(database_url: str, lock_dir: Path) -> LockHolder | None:
    """Who holds the scheduler lock right now, or None; for `briefing status`.

    The SQLite probe takes a shared lock for an instant, so it never blocks a running scheduler;
    a scheduler starting in that same instant could see LockHeld and should simply be restarted.
    """
    url = sa.engine.make_url(database_url)
    if _is_sqlite(url):
        path = lock_file_path(database_url, lock_dir)
        if not path.exists():
            return None
        fd = os.open(path, os.O_RDONLY)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return _read_holder_file(fd) or LockHolder()
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        finally:
            os.close(fd)
    if _is_postgres(url):
        conn = _connect_postgres(url)
        try:
            row = conn.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
                " AND classid = %s AND objid = %s AND objsubid = 1",
                (ADVISORY_LOCK_KEY >> 32, ADVISORY_LOCK_KEY & 0xFFFFFFFF),
            ).fetchone()
            if not (row and row[0]):
                return None
            return _postgres_holder(conn) or LockHolder()
        finally:
            conn.close()
    raise ConfigError("unsupported database URL for the scheduler lock", field="database_url")
