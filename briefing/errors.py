"""Errors that carry enough context for the edges (CLI, web, scheduler) to explain them.

They never print; the edges decide how to show them. Each names the field, line or file at fault.
"""

from __future__ import annotations


class BriefingError(Exception):
    """Base for every error the project raises on purpose."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def __str__(self) -> str:
        if self.field:
            return f"{self.field}: {self.message}"
        return self.message


class ConfigError(BriefingError):
    """A setting has a value we cannot use."""


class InvalidInput(BriefingError):
    """Something a user typed or imported is not acceptable; `field` names it."""


class NotFound(BriefingError):
    """An id, URL, email or date that the user named does not exist."""


class Conflict(BriefingError):
    """The action clashes with the current state (an edition already sent, a duplicate URL)."""


class ImportFileError(BriefingError):
    """The file as a whole cannot be imported (missing, not UTF-8, no email column)."""


class RenderError(BriefingError):
    """A template failed to render or compile; the message names the template."""

    def __init__(self, message: str, *, template: str | None = None) -> None:
        super().__init__(message, field=template)
        self.template = template


class PreflightFailed(BriefingError):
    """The edition has preflight errors and must not be sent."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or []


class TransportError(BriefingError):
    """Connection-level SMTP trouble: no recipient is at fault."""


class AuthFailed(TransportError):
    """The relay refused our credentials; sending pauses, nobody is marked failed."""


class SendPaused(BriefingError):
    """The send loop stopped after repeated connection failures; the ledger is consistent."""


class TokenInvalid(BriefingError):
    """A signed link was tampered with, belongs to another purpose, or is malformed."""


class TokenExpired(TokenInvalid):
    """A signed link was genuine but is too old for its purpose (confirm links)."""


class LockHeld(BriefingError):
    """Another process holds the lock (a second scheduler)."""
