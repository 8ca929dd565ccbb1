"""Signed session cookies for editors, kept apart from every other signed value by their own secret.

A cookie's age and a revoked session's lifetime are measured on the app's clock, so a test can let
twelve hours pass in no time, and a server started with BRIEFING_NOW agrees with itself.
"""

from __future__ import annotations

import secrets
import threading
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


class SessionManager:
    """Issues and reads the session cookie; remembers revoked session ids until they would expire."""

    def __init__(self, secret: str, max_age: float, clock: Clock) -> None:
        self._serializer = URLSafeTimedSerializer(
            secret,
            salt="briefing-session-v1",
            signer=ClockedTimestampSigner,
            signer_kwargs={"now": clock.now},
        )
        self._clock = clock
        self.max_age = max_age
        self._revoked: dict[str, float] = {}
        self._lock = threading.Lock()

    def issue(self, editor: EditorAccount) -> tuple[str, SessionData]:
        data = SessionData(
            editor.id, secrets.token_urlsafe(32), secrets.token_urlsafe(32), editor.password_stamp
        )
        value = self._serializer.dumps([data.editor_id, data.sid, data.csrf, data.stamp])
        return str(value), data

    def read(self, raw: str | None) -> SessionData | None:
        if not raw or len(raw) > MAX_COOKIE:
            return None
        try:
            editor_id, sid, csrf, stamp = self._serializer.loads(raw, max_age=int(self.max_age))
        except (BadSignature, ValueError, TypeError):
            return None
        if type(editor_id) is not int or not all(isinstance(v, str) for v in (sid, csrf, stamp)):
            return None
        with self._lock:
            if sid in self._revoked:
                return None
        return SessionData(editor_id, sid, csrf, stamp)

    def revoke(self, sid: str) -> None:
        now = self._clock.monotonic()
        with self._lock:
            self._revoked = {k: t for k, t in self._revoked.items() if t > now}
            self._revoked[sid] = now + self.max_age
