"""Signed session cookies for editors, kept apart from every other signed value by their own secret.

A cookie's age is measured on the app's clock, so a test can let twelve hours pass in no time, and
a server started with BRIEFING_NOW agrees with itself. Signing out is kept in the database, not
here: the cookie carries the account's session epoch, and signing out raises it (see auth.py).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from itsdangerous import BadSignature, URLSafeTimedSerializer

from briefing.domain import Clock
from briefing.links import ClockedTimestampSigner
from briefing.service.editors import EditorAccount

MAX_COOKIE = 1000


@dataclass(frozen=True, slots=True)
class SessionData:
    editor_id: int
    sid: str
    csrf: str
    stamp: str
    epoch: int


class SessionManager:
    """Issues and reads the session cookie; whether the account still accepts it is auth.py's call."""

    def __init__(self, secret: str, max_age: float, clock: Clock) -> None:
        self._serializer = URLSafeTimedSerializer(
            secret,
            salt="briefing-session-v2",
            signer=ClockedTimestampSigner,
            signer_kwargs={"now": clock.now},
        )
        self.max_age = max_age

    def issue(self, editor: EditorAccount) -> tuple[str, SessionData]:
        data = SessionData(
            editor.id,
            secrets.token_urlsafe(32),
            secrets.token_urlsafe(32),
            editor.password_stamp,
            editor.session_epoch,
        )
        value = self._serializer.dumps([data.editor_id, data.sid, data.csrf, data.stamp, data.epoch])
        return str(value), data

    def read(self, raw: str | None) -> SessionData | None:
        if not raw or len(raw) > MAX_COOKIE:
            return None
        try:
            editor_id, sid, csrf, stamp, epoch = self._serializer.loads(raw, max_age=int(self.max_age))
        except (BadSignature, ValueError, TypeError):
            return None
        if type(editor_id) is not int or type(epoch) is not int:
            return None
        if not all(isinstance(v, str) for v in (sid, csrf, stamp)):
            return None
        return SessionData(editor_id, sid, csrf, stamp, epoch)
