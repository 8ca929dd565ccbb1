"""Editors' accounts as stored; hashing and password rules live in briefing.service.editors."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Session, col, select

from briefing.errors import Conflict, NotFound
from briefing.models import Editor


@dataclass(frozen=True, slots=True)
class EditorRecord:
    id: int
    email: str
    password_hash: str
    role: str
    active: bool
    last_login_at: datetime | None
    session_epoch: int = 0


def _record(row: Editor) -> EditorRecord:
    assert row.id is not None
    return EditorRecord(
        row.id, row.email, row.password_hash, row.role, row.active, row.last_login_at, row.session_epoch
    )


def _find(session: Session, email: str) -> Editor | None:
    key = email.strip().lower()
    return session.exec(select(Editor).where(sa.func.lower(col(Editor.email)) == key)).first()


def _require(session: Session, email: str) -> Editor:
    row = _find(session, email)
    if row is None:
        raise NotFound(f"no editor with the address {email.strip()}", field="email")
    return row


def find_by_email(session: Session, email: str) -> EditorRecord | None:
    row = _find(session, email)
    return _record(row) if row is not None else None


def get_editor(session: Session, editor_id: int) -> EditorRecord | None:
    row = session.get(Editor, editor_id)
    return _record(row) if row is not None else None


def add_editor(session: Session, email: str, password_hash: str, role: str, *, now: datetime) -> EditorRecord:
    if _find(session, email) is not None:
        raise Conflict(f"{email} already has an account (use `briefing editors password`)", field="email")
    row = Editor(email=email, password_hash=password_hash, role=role, created_at=now)
    session.add(row)
    session.flush()
    return _record(row)


def list_editors(session: Session) -> list[EditorRecord]:
    rows = session.exec(select(Editor).order_by(sa.func.lower(col(Editor.email)))).all()
    return [_record(r) for r in rows]


def set_active(session: Session, email: str, active: bool) -> EditorRecord:
    row = _require(session, email)
    row.active = active
    session.add(row)
    session.flush()
    return _record(row)


def set_password_hash(session: Session, email: str, password_hash: str) -> EditorRecord:
    row = _require(session, email)
    row.password_hash = password_hash
    session.add(row)
    session.flush()
    return _record(row)


def record_login(
    session: Session,
    editor_id: int,
    *,
    now: datetime,
    verified_hash: str,
    new_hash: str | None = None,
) -> EditorRecord | None:
    """Note the sign-in time, and store a rehashed password when the hasher's parameters moved on.

    The password was checked against `verified_hash` outside this transaction; if the account was
    disabled or its password changed meanwhile, nothing is written and the answer is None.
    """
    row = session.get(Editor, editor_id, with_for_update=True)
    if row is None or not row.active or row.password_hash != verified_hash:
        return None
    if new_hash:
        row.password_hash = new_hash
    row.last_login_at = now
    session.add(row)
    session.flush()
    return _record(row)


def raise_session_epoch(session: Session, editor_id: int) -> int:
    """Add one to the account's session epoch in one statement (two sign-outs at once both count).

    Sessions carry the epoch they were issued under, so every session issued before is over, in
    every process and after a restart. Returns the new epoch.
    """
    epoch = col(Editor.session_epoch)
    result = session.execute(
        sa.update(Editor).where(col(Editor.id) == editor_id).values(session_epoch=epoch + 1).returning(epoch)
    )
    found = result.scalar_one_or_none()
    if found is None:
        raise NotFound(f"no editor with id {editor_id}", field="editor")
    session.expire_all()
    return int(found)
