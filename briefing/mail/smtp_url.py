"""The SMTP URL that says where mail goes, and the secret inside it.

`smtp://user:pass@host:587`, `smtps://...:465`, `maildir:///path` or `memory://`. Credentials are
wrapped in `Secret` from the moment the URL is parsed, so neither reprs, logs nor error messages can
show them; a URL that would send a password in clear to another host is refused here.
"""

from __future__ import annotations

import hmac
import ipaddress
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote, urlsplit

from briefing.errors import InvalidInput


class Secret:
    """A string that never shows itself in repr, str, f-strings or tracebacks."""

    __slots__ = ("_value",)

    def __init__(self, value: str = "") -> None:
        self._value = value

    def get(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')" if self._value else "Secret('')"

    __str__ = __repr__

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash(Secret)

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("a Secret is not picklable")


@dataclass(frozen=True, slots=True)
class SmtpConfig:
    """Where messages go; built by parse_smtp_url."""

    scheme: str  # smtp, smtps, maildir, memory
    host: str = ""
    port: int = 0
    username: str = ""
    password: Secret = field(default_factory=Secret)
    starttls: bool = False  # smtp:// only: STARTTLS is required before anything else
    path: str = ""  # maildir:// only

    @property
    def implicit_tls(self) -> bool:
        return self.scheme == "smtps"

    @property
    def is_loopback(self) -> bool:
        return is_loopback(self.host)

    @property
    def redacted_url(self) -> str:
        if self.scheme in ("maildir", "memory"):
            return f"{self.scheme}://{self.path}"
        auth = f"{self.username}:***@" if self.username else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        query = "" if self.starttls or self.scheme == "smtps" or self.is_loopback else "?starttls=off"
        return f"{self.scheme}://{auth}{host}:{self.port}{query}"


def is_loopback(host: str) -> bool:
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def redact(url: str) -> str:
    """The URL with any password replaced, for error messages.

    Works on the raw text, not on urlsplit: an unencoded "?", "#" or "/" in a password would move
    part of it into the query or path, where a parsed redaction would miss it.
    """
    scheme, sep, rest = url.partition("://")
    at = rest.rfind("@")
    if not sep or at < 0:
        return url if "@" not in url else "<URL with credentials>"
    userinfo = rest[:at]
    if ":" not in userinfo:
        return url
    return f"{scheme}://{userinfo.split(':', 1)[0]}:***@{rest[at + 1 :]}"


def parse_smtp_url(url: str) -> SmtpConfig:
    """Read `smtp://user:pass@host:587`, `smtps://...:465`, `maildir:///path` or `memory://`.

    smtp:// requires STARTTLS unless the host is loopback or the URL says `?starttls=off`; a URL that
    would send a password in clear to another host is refused here rather than at 06:00.
    """
    if not isinstance(url, str) or not url.strip():
        raise InvalidInput("the SMTP URL is empty", field="smtp_url")
    shown = redact(url.strip())
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        raise InvalidInput(f"cannot parse {shown}", field="smtp_url") from None
    scheme = parts.scheme.lower()

    def bad(part: str, problem: str) -> InvalidInput:
        return InvalidInput(f"{part}: {problem} (in {shown})", field="smtp_url")

    if scheme == "memory":
        return SmtpConfig(scheme="memory")
    if scheme == "maildir":
        path = unquote(parts.netloc + parts.path)
        if not path:
            raise bad("path", "give a directory, e.g. maildir:///var/mail/briefing")
        return SmtpConfig(scheme="maildir", path=path)
    if scheme not in ("smtp", "smtps"):
        raise bad("scheme", "use smtp://, smtps://, maildir:// or memory://")

    after_scheme = url.strip().partition("://")[2]
    if "@" in after_scheme and "@" not in parts.netloc:
        raise bad("password", "percent-encode ?, # and / in the user or password (%3F, %23, %2F)")
    host = parts.hostname or ""
    if not host:
        raise bad("host", "missing")
    try:
        port = parts.port
    except ValueError:
        raise bad("port", "must be a number from 1 to 65535") from None
    if port is None:
        port = 465 if scheme == "smtps" else 587
    if not 1 <= port <= 65535:
        raise bad("port", "must be a number from 1 to 65535")
    username = unquote(parts.username or "")
    password = unquote(parts.password or "")
    if password and not username:
        raise bad("user", "a password was given without a user name")
    if any(c in username for c in "\r\n\0"):
        raise bad("user", "contains control characters")

    loopback = is_loopback(host)
    starttls = scheme == "smtp" and not loopback
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key != "starttls":
            raise bad(f"query parameter {key!r}", "unknown (only starttls=on|off)")
        if scheme == "smtps":
            raise bad("starttls", "smtps:// is already TLS from the first byte")
        if value.lower() not in ("on", "off"):
            raise bad("starttls", "must be on or off")
        starttls = value.lower() == "on"
    if username and scheme == "smtp" and not starttls and not loopback:
        raise bad("starttls", "refusing to send a password without TLS to a host that is not loopback")
    return SmtpConfig(
        scheme=scheme,
        host=host,
        port=port,
        username=username,
        password=Secret(password),
        starttls=starttls,
    )
