"""One SMTP session, driven step by step so every failure is classified where it happened.

The transaction goes MAIL, RCPT, DATA, the content, then the final reply, instead of through
`sendmail`, which hides where it failed; that is what tells "connection" from "ambiguous" (see
`mail.transport`). TLS always verifies certificates (smtplib does not by default), and AUTH is
refused on a plaintext connection to anything but loopback.

A copy whose envelope or headers are not ASCII goes out with the SMTPUTF8 parameter (RFC 6531, with
BODY=8BITMIME when offered) on its MAIL command, and only if the server advertised SMTPUTF8; when
it did not, that one copy is refused here, before MAIL, and the session goes on with the others.
Every ASCII transaction is written exactly as before.
"""

from __future__ import annotations

import base64
import logging
import smtplib
import ssl

from briefing.errors import AuthFailed, InvalidInput, TransportError
from briefing.mail.headers import utf8_address
from briefing.mail.smtp_url import SmtpConfig
from briefing.mail.transport import DotSafe, Outcome, SendResult, envelope_ok

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 30.0
_CRLF = b"\r\n"
_END_OF_DATA = b".\r\n"
NO_SMTPUTF8 = "not sent: the SMTP server does not support SMTPUTF8, which {what} needs"


def _data_block(data: bytes) -> bytes:
    """The content of DATA with its end marker: a DotSafe copy as it was built, other bytes stuffed.

    Looking for line-initial dots costs more than building a whole copy (a 2-byte search over 85 KB
    with a line break every 78 bytes); every edition copy is built without them, so only other mail
    (alerts, confirmations) is searched.
    """
    if isinstance(data, DotSafe):
        return data + _END_OF_DATA
    return _dot_stuff(data)


def _dot_stuff(data: bytes) -> bytes:
    """RFC 5321 §4.5.2 transparency plus the end-of-data marker."""
    if data.startswith(b".") or b"\n." in data:
        data = data.replace(b"\n.", b"\n..")
        if data.startswith(b"."):
            data = b"." + data
    if not data.endswith(_CRLF):
        data += _CRLF
    return data + _END_OF_DATA


def _head_is_ascii(data: bytes) -> bool:
    end = data.find(b"\r\n\r\n")
    return (data if end < 0 else data[:end]).isascii()


def _command(smtp: smtplib.SMTP, line: str) -> tuple[int, bytes]:
    """One command written as UTF-8 (smtplib encodes commands as ASCII until its own `mail` says not)."""
    smtp.send(line.encode("utf-8") + _CRLF)
    return smtp.getreply()


def _text(reply: bytes | str) -> str:
    if isinstance(reply, bytes):
        reply = reply.decode("utf-8", "replace")
    return " ".join(reply.split())[:500]


class SmtpConnection:
    """One SMTP session, reused for many messages; not thread-safe (the pool hands it to one thread)."""

    def __init__(
        self,
        config: SmtpConfig,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        ca_file: str | None = None,
        local_hostname: str | None = None,
    ) -> None:
        if config.scheme not in ("smtp", "smtps"):
            raise InvalidInput("not an SMTP URL", field="smtp_url")
        self.config = config
        self.timeout = timeout
        self.ca_file = ca_file
        self.local_hostname = local_hostname
        self._smtp: smtplib.SMTP | None = None
        self._pipelining = False
        self._smtputf8 = False  # the server advertised SMTPUTF8 (RFC 6531) in this session
        self._8bitmime = False
        self.messages_sent = 0  # in the current session
        self.sessions_opened = 0

    def __repr__(self) -> str:
        state = "open" if self._smtp else "closed"
        return f"SmtpConnection({self.config.redacted_url}, {state})"

    @property
    def is_connected(self) -> bool:
        return self._smtp is not None

    def _context(self) -> ssl.SSLContext:
        """Built only when a session uses TLS: loading the system's CA certificates takes 0.1-0.2 s."""
        return ssl.create_default_context(cafile=self.ca_file)

    def _scrub(self, text: str) -> str:
        secret = self.config.password.get()
        if not secret:
            return text
        user = self.config.username
        for needle in (
            secret,
            base64.b64encode(secret.encode()).decode(),
            base64.b64encode(f"\0{user}\0{secret}".encode()).decode(),
        ):
            text = text.replace(needle, "***")
        return text

    def connect(self) -> None:
        """Open, greet, STARTTLS and log in; raises TransportError (or AuthFailed) with a safe message."""
        self.close()
        cfg = self.config
        where = f"{cfg.host}:{cfg.port}"
        smtp: smtplib.SMTP | None = None
        try:
            if cfg.implicit_tls:
                smtp = smtplib.SMTP_SSL(
                    cfg.host,
                    cfg.port,
                    local_hostname=self.local_hostname,
                    timeout=self.timeout,
                    context=self._context(),
                )
            else:
                smtp = smtplib.SMTP(
                    cfg.host, cfg.port, local_hostname=self.local_hostname, timeout=self.timeout
                )
            code, reply = smtp.ehlo()
            if code != 250:
                code, reply = smtp.helo()
                if code != 250:
                    raise TransportError(f"{where} refused our greeting: {code} {_text(reply)}")
            if cfg.starttls:
                if not smtp.has_extn("starttls"):
                    raise TransportError(f"{where} does not offer STARTTLS, and the URL requires it")
                code, reply = smtp.starttls(context=self._context())
                if code != 220:
                    raise TransportError(f"{where} refused STARTTLS: {code} {_text(reply)}")
                smtp.ehlo()
            if cfg.username:
                if not (cfg.starttls or cfg.implicit_tls or cfg.is_loopback):
                    raise TransportError("refusing to authenticate without TLS")
                try:
                    smtp.login(cfg.username, cfg.password.get())
                except smtplib.SMTPAuthenticationError as exc:
                    raise AuthFailed(
                        self._scrub(
                            f"{where} refused the credentials of {cfg.username!r}: "
                            f"{exc.smtp_code} {_text(exc.smtp_error)}"
                        )
                    ) from None
                except smtplib.SMTPNotSupportedError:
                    raise AuthFailed(f"{where} offers no AUTH mechanism we can use") from None
                except smtplib.SMTPException as exc:
                    raise AuthFailed(self._scrub(f"{where}: login failed ({type(exc).__name__})")) from None
        except ssl.SSLCertVerificationError as exc:
            _close_quietly(smtp)
            raise TransportError(f"TLS certificate of {where} not trusted: {exc.verify_message}") from None
        except TransportError:
            _close_quietly(smtp)
            raise
        except smtplib.SMTPResponseException as exc:
            _close_quietly(smtp)
            raise TransportError(self._scrub(f"{where}: {exc.smtp_code} {_text(exc.smtp_error)}")) from None
        except (OSError, smtplib.SMTPException) as exc:
            _close_quietly(smtp)
            reason = _text(str(exc)) or type(exc).__name__
            raise TransportError(self._scrub(f"cannot talk to {where}: {reason}")) from None
        self._smtp = smtp
        self._pipelining = bool(smtp.has_extn("pipelining"))
        self._smtputf8 = bool(smtp.has_extn("smtputf8"))
        self._8bitmime = bool(smtp.has_extn("8bitmime"))
        self.messages_sent = 0
        self.sessions_opened += 1
        log.debug("SMTP session opened to %s", where)

    def _drop(self) -> None:
        smtp, self._smtp = self._smtp, None
        _close_quietly(smtp)

    def rset(self) -> None:
        """Abandon the current transaction; a failing RSET means the session is unusable."""
        if self._smtp is None:
            return
        try:
            code, _ = self._smtp.rset()
            if code != 250:
                self._drop()
        except (OSError, smtplib.SMTPException):
            self._drop()

    def close(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is None:
            return
        try:
            smtp.quit()
        except (OSError, smtplib.SMTPException):
            _close_quietly(smtp)

    def send(self, envelope_from: str, rcpt: str, data: bytes) -> SendResult:
        """One transaction with one recipient; opens the session if needed. Raises only AuthFailed."""
        if not envelope_ok(envelope_from, smtputf8=True):
            raise InvalidInput("not a usable envelope sender", field="envelope_from")
        if not envelope_ok(rcpt, smtputf8=True):
            return _unusable_rcpt()
        # Non-ASCII addresses go out in the form the To header shows: NFC, and plain ASCII when
        # only the domain is internationalised.
        if not envelope_from.isascii():
            try:
                envelope_from = utf8_address(envelope_from, "envelope_from")
            except InvalidInput:
                raise InvalidInput("not a usable envelope sender", field="envelope_from") from None
        if not rcpt.isascii():
            try:
                rcpt = utf8_address(rcpt, "rcpt")
            except InvalidInput:
                return _unusable_rcpt()
        if self._smtp is None:
            try:
                self.connect()
            except AuthFailed:
                raise
            except TransportError as exc:
                return SendResult(Outcome.CONNECTION, None, str(exc), "connect")
        smtp = self._smtp
        assert smtp is not None
        params = ""
        if not (envelope_from.isascii() and rcpt.isascii() and _head_is_ascii(data)):
            if not self._smtputf8:
                what = (
                    "this reader's address"
                    if not rcpt.isascii()
                    else "the envelope sender"
                    if not envelope_from.isascii()
                    else "this copy's headers"
                )
                return SendResult(Outcome.REJECTED, None, NO_SMTPUTF8.format(what=what), "local")
            params = " BODY=8BITMIME SMTPUTF8" if self._8bitmime else " SMTPUTF8"

        if self._pipelining:
            refused = self._envelope_pipelined(smtp, envelope_from, rcpt, params)
            if refused is not None:
                return refused
            return self._content(smtp, data)

        # MAIL FROM: any refusal here is about us (sender, policy, load), never about the reader.
        try:
            if params:
                code, reply = _command(smtp, f"MAIL FROM:<{envelope_from}>{params}")
            else:
                code, reply = smtp.mail(envelope_from)
        except (OSError, smtplib.SMTPException) as exc:
            self._drop()
            return SendResult(Outcome.CONNECTION, None, _text(str(exc)), "mail")
        if code != 250:
            if code == 421:
                self._drop()
            else:
                self.rset()
            return SendResult(Outcome.CONNECTION, code, _text(reply), "mail")

        # RCPT TO: 4xx defers, 5xx rejects this reader.
        try:
            code, reply = _command(smtp, f"RCPT TO:<{rcpt}>") if params else smtp.rcpt(rcpt)
        except (OSError, smtplib.SMTPException) as exc:
            self._drop()
            return SendResult(Outcome.CONNECTION, None, _text(str(exc)), "rcpt")
        if code not in (250, 251):
            return self._refused(code, reply, "rcpt")

        # DATA, then the content. Until the final "." is written nothing can have been delivered.
        try:
            smtp.putcmd("data")
            code, reply = smtp.getreply()
        except (OSError, smtplib.SMTPException) as exc:
            self._drop()
            return SendResult(Outcome.CONNECTION, None, _text(str(exc)), "data")
        if code != 354:
            return self._refused(code, reply, "data")
        return self._content(smtp, data)

    def _envelope_pipelined(
        self, smtp: smtplib.SMTP, envelope_from: str, rcpt: str, params: str = ""
    ) -> SendResult | None:
        """MAIL, RCPT and DATA in one write (RFC 2920), then their three replies; None means "go on".

        Saves two round trips per message. The replies are read in order and classified exactly
        as in the step-by-step dialogue; a server that says 354 after refusing the envelope gets
        its session dropped, so no half-addressed message can follow. `params` (SMTPUTF8) go on
        MAIL, and then the commands are written as UTF-8.
        """
        try:
            if params:
                smtp.send(f"MAIL FROM:<{envelope_from}>{params}\r\nRCPT TO:<{rcpt}>\r\nDATA\r\n".encode())
            else:
                smtp.send(f"MAIL FROM:<{envelope_from}>\r\nRCPT TO:<{rcpt}>\r\nDATA\r\n")
            mail_code, mail_reply = smtp.getreply()
            rcpt_code, rcpt_reply = smtp.getreply()
            data_code, data_reply = smtp.getreply()
        except (OSError, smtplib.SMTPException) as exc:
            self._drop()
            return SendResult(Outcome.CONNECTION, None, _text(str(exc)), "mail")
        envelope_ok = mail_code == 250 and rcpt_code in (250, 251)
        if data_code == 354 and envelope_ok:
            return None
        if data_code == 354:
            self._drop()  # the server waits for content we will not send
        if mail_code != 250:
            if mail_code == 421 or self._smtp is None:
                self._drop()
            else:
                self.rset()
            return SendResult(Outcome.CONNECTION, mail_code, _text(mail_reply), "mail")
        if rcpt_code not in (250, 251):
            if self._smtp is None:
                return self._classify(rcpt_code, rcpt_reply, "rcpt")
            return self._refused(rcpt_code, rcpt_reply, "rcpt")
        if self._smtp is None:
            return self._classify(data_code, data_reply, "data")
        return self._refused(data_code, data_reply, "data")

    def _content(self, smtp: smtplib.SMTP, data: bytes) -> SendResult:
        try:
            smtp.send(_data_block(data))
        except (OSError, smtplib.SMTPException) as exc:
            self._drop()
            return SendResult(Outcome.CONNECTION, None, _text(str(exc)), "data")

        # The end of data is out: from here a missing reply is ambiguous, never "not sent".
        try:
            code, reply = smtp.getreply()
        except (OSError, smtplib.SMTPException) as exc:
            self._drop()
            return SendResult(Outcome.AMBIGUOUS, None, _text(str(exc)) or "no reply", "end-of-data")
        if code == 250:
            self.messages_sent += 1
            return SendResult(Outcome.ACCEPTED, code, _text(reply), "end-of-data")
        return self._refused(code, reply, "end-of-data")

    def _refused(self, code: int, reply: bytes, stage: str) -> SendResult:
        if code == 421 or code < 400:
            self._drop()  # closing, or a reply that makes no sense here: start a fresh session
            return self._classify(code, reply, stage)
        self.rset()
        return self._classify(code, reply, stage)

    @staticmethod
    def _classify(code: int, reply: bytes, stage: str) -> SendResult:
        text = _text(reply)
        if code == 421 or code < 400:
            return SendResult(Outcome.CONNECTION, code, text, stage)
        # RFC 5321 §4.5.3.1.10: 552 on RCPT is to be treated as temporary.
        if 400 <= code < 500 or (code == 552 and stage == "rcpt"):
            return SendResult(Outcome.DEFERRED, code, text, stage)
        return SendResult(Outcome.REJECTED, code, text, stage)


def _unusable_rcpt() -> SendResult:
    return SendResult(Outcome.REJECTED, None, "recipient address not usable on the SMTP envelope", "local")


def _close_quietly(smtp: smtplib.SMTP | None) -> None:
    if smtp is None:
        return
    try:
        smtp.close()
    except OSError:
        pass
