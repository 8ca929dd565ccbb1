"""Editors' accounts: password rules and argon2 hashing over briefing.store.editors.

Used by the CLI (`briefing editors ...`) and the web app's sign-in. Sign-in reads the account,
checks the password with no transaction open, then records the sign-in: argon2 takes tens of
milliseconds of CPU on purpose, and the web app queues its SQLite transactions on one lock, so a
check made inside a transaction would hold every other request up for that long.
"""

from __future__ import annotations

import hashlib
import threading
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlmodel import Session

from briefing import inputs
from briefing.db import session_scope
from briefing.errors import InvalidInput
from briefing.store import editors as editor_store
from briefing.store.editors import EditorRecord

ROLES = ("editor", "admin")
MIN_PASSWORD = 12
MAX_PASSWORD = 1024  # argon2 hashes any length; a cap keeps a login POST from costing megabytes


class Hasher(Protocol):
    """What sign-in needs of argon2's PasswordHasher (a test can pass one it controls)."""

    def hash(self, password: str) -> str: ...

    def verify(self, hash: str, password: str) -> bool: ...

    def check_needs_rehash(self, hash: str) -> bool: ...


DEFAULT_HASHER: Hasher = PasswordHasher()  # argon2id with the library's recommended parameters

_DUMMY_LOCK = threading.Lock()
_dummy_hash: str | None = None


def _no_such_editor_hash() -> str:
    """Verified against when the address is unknown, so a login takes as long whether or not it exists.

    Made on the first sign-in rather than at import: hashing costs tens of milliseconds of CPU, and
    every command that imports this module without signing anyone in would pay it at start.
    """
    global _dummy_hash
    with _DUMMY_LOCK:
        if _dummy_hash is None:
            _dummy_hash = DEFAULT_HASHER.hash("briefing: no such editor")
        return _dummy_hash


@dataclass(frozen=True, slots=True)
class EditorAccount:
    id: int
    email: str
    role: str
    active: bool
    # Changes when the password changes, so sessions opened with the old password stop working.
    password_stamp: str
    last_login_at: datetime | None = None
    # Raised by signing out; a session issued under an older epoch is over.
    session_epoch: int = 0

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def _account(record: EditorRecord) -> EditorAccount:
    return EditorAccount(
        id=record.id,
        email=record.email,
        role=record.role,
        active=record.active,
        password_stamp=hashlib.sha256(record.password_hash.encode()).hexdigest()[:16],
        last_login_at=record.last_login_at,
        session_epoch=record.session_epoch,
    )


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise InvalidInput(f"must be at least {MIN_PASSWORD} characters", field="password")
    if len(password) > MAX_PASSWORD:
        raise InvalidInput(f"must be at most {MAX_PASSWORD} characters", field="password")
    if "\x00" in password:
        raise InvalidInput("contains a NUL character", field="password")
    return password


def add_editor(
    session: Session, email: str, password: str, *, admin: bool = False, now: datetime
) -> EditorAccount:
    address = inputs.email_address(email)
    check_password(password)
    role = "admin" if admin else "editor"
    return _account(editor_store.add_editor(session, address, DEFAULT_HASHER.hash(password), role, now=now))


def list_editors(session: Session) -> list[EditorAccount]:
    return [_account(r) for r in editor_store.list_editors(session)]


def set_active(session: Session, email: str, active: bool) -> EditorAccount:
    return _account(editor_store.set_active(session, email, active))


def set_password(session: Session, email: str, password: str) -> EditorAccount:
    return _account(
        editor_store.set_password_hash(session, email, DEFAULT_HASHER.hash(check_password(password)))
    )


def get_editor(session: Session, editor_id: int) -> EditorAccount | None:
    record = editor_store.get_editor(session, editor_id)
    return _account(record) if record is not None else None


def authenticate(
    engine: sa.Engine,
    email: str,
    password: str,
    *,
    now: datetime,
    gate: AbstractContextManager[Any] | None = None,
    hasher: Hasher = DEFAULT_HASHER,
) -> EditorAccount | None:
    """The account when the password matches and the account is active; None otherwise.

    `gate` is held around each transaction and never while hashing (see the module docstring).
    An unknown address costs one hash check too, so timing does not tell which addresses exist.
    """
    lock = gate if gate is not None else nullcontext()
    record = None
    if len(email) <= inputs.MAX_EMAIL:
        with lock, Session(engine) as session:
            record = editor_store.find_by_email(session, email)
    if len(password) > MAX_PASSWORD:
        return None
    try:
        hasher.verify(record.password_hash if record is not None else _no_such_editor_hash(), password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return None
    if record is None or not record.active:
        return None
    new_hash = hasher.hash(password) if hasher.check_needs_rehash(record.password_hash) else None
    with lock, session_scope(engine) as session:
        signed_in = editor_store.record_login(
            session, record.id, now=now, verified_hash=record.password_hash, new_hash=new_hash
        )
    return _account(signed_in) if signed_in is not None else None


def sign_out(session: Session, editor_id: int) -> int:
    """End every session of the account, in every process and across restarts; returns the new epoch."""
    return editor_store.raise_session_epoch(session, editor_id)
