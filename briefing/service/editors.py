"""Editors' accounts: password rules and argon2 hashing over briefing.store.editors.

Used by the CLI (`briefing editors ...`) and the web app's sign-in.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlmodel import Session

from briefing import inputs
from briefing.errors import InvalidInput
from briefing.store import editors as editor_store
from briefing.store.editors import EditorRecord

ROLES = ("editor", "admin")
MIN_PASSWORD = 12
MAX_PASSWORD = 1024  # argon2 hashes any length; a cap keeps a login POST from costing megabytes

_hasher = PasswordHasher()  # argon2id with the library's current recommended parameters
# Verified against when the address is unknown, so a login takes as long whether or not it exists.
_DUMMY_HASH = _hasher.hash("briefing: no such editor")


@dataclass(frozen=True, slots=True)
class EditorAccount:
    id: int
    email: str
    role: str
    active: bool
    # Changes when the password changes, so sessions opened with the old password stop working.
    password_stamp: str
    last_login_at: datetime | None = None

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
    return _account(editor_store.add_editor(session, address, _hasher.hash(password), role, now=now))


def list_editors(session: Session) -> list[EditorAccount]:
    return [_account(r) for r in editor_store.list_editors(session)]


def set_active(session: Session, email: str, active: bool) -> EditorAccount:
    return _account(editor_store.set_active(session, email, active))


def set_password(session: Session, email: str, password: str) -> EditorAccount:
    return _account(editor_store.set_password_hash(session, email, _hasher.hash(check_password(password))))


def get_editor(session: Session, editor_id: int) -> EditorAccount | None:
    record = editor_store.get_editor(session, editor_id)
    return _account(record) if record is not None else None


def authenticate(session: Session, email: str, password: str, *, now: datetime) -> EditorAccount | None:
    """The account when the password matches and the account is active; None otherwise."""
    record = editor_store.find_by_email(session, email) if len(email) <= inputs.MAX_EMAIL else None
    if len(password) > MAX_PASSWORD:
        return None
    try:
        _hasher.verify(record.password_hash if record is not None else _DUMMY_HASH, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return None
    if record is None or not record.active:
        return None
    new_hash = _hasher.hash(password) if _hasher.check_needs_rehash(record.password_hash) else None
    return _account(editor_store.record_login(session, record.id, now=now, new_hash=new_hash))
