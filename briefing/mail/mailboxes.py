"""The mailbox bounces arrive in: a local Maildir or mbox, or a remote one over IMAP or POP3 with TLS.

`BRIEFING_BOUNCE_MAILBOX` names it: `maildir:///var/mail/bounces`, `mbox:///var/mail/bounces`,
`imaps://user:pass@imap.example.com/INBOX` (port 993 unless given) or
`pop3s://user:pass@pop.example.com` (995). Plain `imap://` and `pop3://` are refused: the password
would cross the network in clear. Certificates are verified, with the host name, against the
system's trust store, or against the CA file `BRIEFING_BOUNCE_MAILBOX_CA_FILE` names for a server
with a certificate of the newsroom's own CA; never unverified.

Each kind gives the same three steps, so the caller can remove a message only once its result is
committed: `messages()` yields (key, bytes) without changing anything, `remove(key)` marks one
done, `close()` makes the removals final (mbox rewrite, IMAP EXPUNGE, POP3 QUIT). A crash before
`close()` leaves the messages in place, and they are read again at the next poll.
"""

from __future__ import annotations

import imaplib
import mailbox
import poplib
import re
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

from briefing.errors import ConfigError, InvalidInput, TransportError
from briefing.mail.smtp_url import Secret

FIELD = "BRIEFING_BOUNCE_MAILBOX"
CA_FIELD = "BRIEFING_BOUNCE_MAILBOX_CA_FILE"
DEFAULT_PORTS = {"imaps": 993, "pop3s": 995}
_FOLDER_RE = re.compile(r"[A-Za-z0-9 ._/&+-]{1,200}")
POP3_MAX_LINE = 1_000_000  # imaplib's own limit for a line


@dataclass(frozen=True, slots=True)
class MailboxLocation:
    scheme: str  # maildir, mbox, imaps, pop3s
    path: str = ""
    host: str = ""
    port: int = 0
    username: str = ""
    password: Secret = field(default_factory=Secret)
    folder: str = "INBOX"

    def describe(self) -> str:
        """Where it is, never with the password."""
        if self.scheme in ("maildir", "mbox"):
            return f"{self.scheme}://{self.path}"
        folder = f"/{self.folder}" if self.scheme == "imaps" else ""
        return f"{self.scheme}://{self.username}@{self.host}:{self.port}{folder}"


def parse_mailbox_url(url: str) -> MailboxLocation:
    text = (url or "").strip()
    if not text:
        raise InvalidInput("no bounce mailbox is set", field=FIELD)
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme in ("maildir", "mbox"):
        path = unquote(parts.path)
        if parts.netloc or not path.startswith("/"):
            raise InvalidInput(f"use {scheme}:///absolute/path", field=FIELD)
        return MailboxLocation(scheme, path=path)
    if scheme in ("imap", "pop3", "pop"):
        secure = "imaps" if scheme == "imap" else "pop3s"
        raise InvalidInput(f"{scheme}:// would send the password in clear; use {secure}://", field=FIELD)
    if scheme not in DEFAULT_PORTS:
        raise InvalidInput("use maildir:///path, mbox:///path, imaps://... or pop3s://...", field=FIELD)
    try:
        host, port = parts.hostname or "", parts.port or DEFAULT_PORTS[scheme]
    except ValueError:
        raise InvalidInput("the port is not a number from 1 to 65535", field=FIELD) from None
    if not host:
        raise InvalidInput("the server's host name is missing", field=FIELD)
    username, password = unquote(parts.username or ""), unquote(parts.password or "")
    if not username or not password:
        raise InvalidInput("give the user name and password: imaps://user:password@host/INBOX", field=FIELD)
    folder = unquote(parts.path.lstrip("/")) or "INBOX"
    if scheme == "imaps" and not _FOLDER_RE.fullmatch(folder):
        raise InvalidInput("the folder name has characters IMAP would need quoted", field=FIELD)
    return MailboxLocation(
        scheme, host=host, port=port, username=username, password=Secret(password), folder=folder
    )


class Mailbox(Protocol):
    def messages(self, *, limit: int = 1000) -> Iterator[tuple[str, bytes]]: ...

    def remove(self, key: str) -> None: ...

    def close(self) -> None: ...


class LocalMailbox:
    """A Maildir (each removal is final at once) or an mbox (locked; rewritten at close)."""

    def __init__(self, location: MailboxLocation) -> None:
        path = Path(location.path)
        if not path.exists():
            raise InvalidInput(f"there is no mailbox at {path}", field=FIELD)
        self.box: mailbox.Mailbox
        if location.scheme == "maildir":
            if not (path / "cur").is_dir() or not (path / "new").is_dir():
                raise InvalidInput(f"{path} is not a Maildir (no cur/ and new/)", field=FIELD)
            self.box = mailbox.Maildir(str(path), factory=None, create=False)
        else:
            if not path.is_file():
                raise InvalidInput(f"{path} is not an mbox file", field=FIELD)
            self.box = mailbox.mbox(str(path), create=False)
            self.box.lock()

    def messages(self, *, limit: int = 1000) -> Iterator[tuple[str, bytes]]:
        for index, key in enumerate(sorted(self.box.keys(), key=str)):
            if index >= limit:
                return
            try:
                raw = self.box.get_bytes(key)
            except (KeyError, OSError):
                continue  # another reader took it meanwhile
            yield str(key), raw

    def remove(self, key: str) -> None:
        real: Any = int(key) if isinstance(self.box, mailbox.mbox) else key  # mbox keys are ints
        try:
            self.box.discard(real)
        except OSError as exc:
            raise TransportError(f"cannot remove a message from the mailbox: {exc.strerror}") from None

    def close(self) -> None:
        try:
            self.box.flush()
        finally:
            if isinstance(self.box, mailbox.mbox):
                self.box.unlock()
            self.box.close()


class ImapMailbox:
    """IMAP over TLS: reads with BODY.PEEK (no \\Seen), marks \\Deleted, expunges at close."""

    def __init__(self, location: MailboxLocation, *, timeout: float, context: ssl.SSLContext) -> None:
        self.where = location.describe()
        try:
            self.imap = imaplib.IMAP4_SSL(location.host, location.port, ssl_context=context, timeout=timeout)
            self.imap.login(location.username, location.password.get())
            status, _ = self.imap.select(f'"{location.folder}"')
        except (OSError, imaplib.IMAP4.error) as exc:
            raise TransportError(f"{self.where}: {_reason(exc)}") from None
        if status != "OK":
            raise TransportError(f"{self.where}: the folder cannot be opened")
        self._removed = False

    def messages(self, *, limit: int = 1000) -> Iterator[tuple[str, bytes]]:
        try:
            status, data = self.imap.uid("SEARCH", "UNDELETED")
            uids = data[0].split() if status == "OK" and data and data[0] else []
            for uid in uids[:limit]:
                status, parts = self.imap.uid("FETCH", uid, "(BODY.PEEK[])")
                raw = next((p[1] for p in parts if isinstance(p, tuple) and len(p) > 1), None)
                if status == "OK" and isinstance(raw, bytes):
                    yield uid.decode("ascii"), raw
        except (OSError, imaplib.IMAP4.error) as exc:
            raise TransportError(f"{self.where}: {_reason(exc)}") from None

    def remove(self, key: str) -> None:
        try:
            self.imap.uid("STORE", key, "+FLAGS.SILENT", "(\\Deleted)")
        except (OSError, imaplib.IMAP4.error) as exc:
            raise TransportError(f"{self.where}: {_reason(exc)}") from None
        self._removed = True

    def close(self) -> None:
        try:
            if self._removed:
                self.imap.expunge()
            self.imap.logout()
        except (OSError, imaplib.IMAP4.error):
            pass  # flagged messages are skipped (UNDELETED) and expunged next time


class _Pop3Tls(poplib.POP3_SSL):
    """poplib stops at a 2,048-octet line, and a POP3 session cannot go on after that. Returned mail
    quotes what other systems wrote, with lines far past RFC 5322's 998, so one such message would
    fail every poll and hold back the mail behind it. Lines may be as long as imaplib allows."""

    def _getline(self) -> tuple[bytes, int]:
        line: bytes = self.file.readline(POP3_MAX_LINE + 1)
        if len(line) > POP3_MAX_LINE:
            raise poplib.error_proto("a line longer than the mailbox reader takes")
        if not line:
            raise poplib.error_proto("-ERR EOF")
        octets = len(line)
        if line[-2:] == b"\r\n":
            return line[:-2], octets
        if line[:1] == b"\r":
            return line[1:-1], octets
        return line[:-1], octets


class Pop3Mailbox:
    """POP3 over TLS: RETR to read, DELE after commit; the server deletes only at QUIT (RFC 1939)."""

    def __init__(self, location: MailboxLocation, *, timeout: float, context: ssl.SSLContext) -> None:
        self.where = location.describe()
        try:
            self.pop = _Pop3Tls(location.host, location.port, timeout=timeout, context=context)
            self.pop.user(location.username)
            self.pop.pass_(location.password.get())
        except (OSError, poplib.error_proto) as exc:
            raise TransportError(f"{self.where}: {_reason(exc)}") from None

    def messages(self, *, limit: int = 1000) -> Iterator[tuple[str, bytes]]:
        try:
            count, _ = self.pop.stat()
            for number in range(1, min(count, limit) + 1):
                _, lines, _ = self.pop.retr(number)
                yield str(number), b"\r\n".join(lines) + b"\r\n"
        except (OSError, poplib.error_proto) as exc:
            raise TransportError(f"{self.where}: {_reason(exc)}") from None

    def remove(self, key: str) -> None:
        try:
            self.pop.dele(int(key))
        except (OSError, poplib.error_proto) as exc:
            raise TransportError(f"{self.where}: {_reason(exc)}") from None

    def close(self) -> None:
        try:
            self.pop.quit()
        except (OSError, poplib.error_proto):
            pass


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"the server's certificate was not accepted ({exc.verify_message})"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = str(exc)
    if isinstance(exc, imaplib.IMAP4.error | poplib.error_proto):
        return "the server refused: " + text[:200]
    return text[:200] or type(exc).__name__


def tls_context(ca_file: str | None = None) -> ssl.SSLContext:
    """Verified TLS: the system's trust store, or only the CA certificates in `ca_file`."""
    if not ca_file:
        return ssl.create_default_context()
    path = Path(ca_file)
    if not path.is_file():
        raise ConfigError(f"there is no CA file at {path}", field=CA_FIELD)
    try:
        return ssl.create_default_context(cafile=str(path))
    except ssl.SSLError:
        raise ConfigError(f"{path} holds no PEM CA certificate", field=CA_FIELD) from None
    except OSError as exc:
        raise ConfigError(f"{path}: {exc.strerror or exc}", field=CA_FIELD) from None


def open_mailbox(
    url: str, *, timeout: float = 30.0, context: ssl.SSLContext | None = None, ca_file: str | None = None
) -> Mailbox:
    """Open the bounce mailbox a URL names; TLS is verified by `context`, else by `tls_context(ca_file)`."""
    location = parse_mailbox_url(url)
    if location.scheme in ("maildir", "mbox"):
        return LocalMailbox(location)
    tls = context or tls_context(ca_file)
    if location.scheme == "imaps":
        return ImapMailbox(location, timeout=timeout, context=tls)
    return Pop3Mailbox(location, timeout=timeout, context=tls)
