"""`briefing bounces ...`: bounces and complaints that came back by mail, and what they did.

`receive` is meant to be piped into by the mail system (a Postfix alias, procmail, sieve), so it
exits 0 even for a message it cannot use: any other exit would make the mail system send a bounce
about a bounce. The one exception is a database it cannot reach: then it exits 75 (EX_TEMPFAIL,
sysexits.h), and the mail system keeps the message and delivers it again later, so no bounce is
lost. It says what it did in one line on standard error.
"""

import sys
from typing import Annotated

import typer

from briefing.cli.common import (
    NewsletterOpt,
    add_row,
    chosen_newsletter,
    console,
    handle_errors,
    moment_ago,
    new_table,
    parse_date,
    print_json,
    show,
    state,
)
from briefing.errors import BriefingError, InvalidInput

EX_TEMPFAIL = 75  # sysexits.h: Postfix, Exim and procmail keep the message and retry

bounces_app = typer.Typer(
    help="Bounces and complaints that came back by mail.\n\nExample: briefing bounces list --since 7d",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    app.add_typer(bounces_app, name="bounces")


@bounces_app.command("receive")
def receive(
    recipient: Annotated[
        str,
        typer.Option(
            "--recipient",
            envvar="ORIGINAL_RECIPIENT",
            help="The address the message was delivered to (Postfix's local(8) sets ORIGINAL_RECIPIENT).",
        ),
    ] = "",
) -> None:
    """Read one returned message on standard input and record what it says; exits 0, or 75 when the
    database is unreachable (the mail system then keeps the message and tries again).

    Example: briefing bounces receive < returned.eml (or, in /etc/aliases:
    bounces: "|/opt/briefing/.venv/bin/briefing bounces receive")
    """
    import sqlalchemy as sa

    from briefing import wiring
    from briefing.mail.reports import MAX_REPORT_BYTES
    from briefing.service import bounces as bounce_service

    # The database is away (refused, locked past the busy timeout, pool exhausted): worth trying again.
    unreachable = (
        sa.exc.OperationalError,
        sa.exc.InterfaceError,
        sa.exc.TimeoutError,
        sa.exc.DisconnectionError,
    )
    raw = sys.stdin.buffer.read(MAX_REPORT_BYTES + 1)
    try:
        st = state()
        handled = bounce_service.receive(
            st.engine,
            raw,
            return_path=wiring.return_path(st.settings),
            rules=wiring.bounce_rules(st.settings),
            envelope_recipient=recipient,
            now=st.now(),
        )
    except BriefingError as exc:
        show("bounces receive: not recorded: ", str(exc), err=True)
        return
    except (*unreachable, OSError) as exc:
        show(
            "bounces receive: not recorded, the database is unreachable (",
            type(exc).__name__,
            "); exit 75 so the mail system delivers it again later",
            err=True,
        )
        raise typer.Exit(EX_TEMPFAIL) from None
    except sa.exc.SQLAlchemyError as exc:
        show("bounces receive: not recorded: database: ", type(exc).__name__, err=True)
        return
    show("bounces receive: ", handled.line, err=True)


@bounces_app.command("poll")
@handle_errors
def poll(
    limit: Annotated[int, typer.Option(help="Read at most this many messages.", min=1, max=100_000)] = 1000,
) -> None:
    """Read the bounce mailbox (BRIEFING_BOUNCE_MAILBOX) once; each message is removed once recorded.

    Example: BRIEFING_BOUNCE_MAILBOX=maildir:///var/mail/bounces briefing bounces poll
    """
    from briefing import wiring

    st = state()
    report = wiring.poll_bounce_mailbox(st.settings, st.engine, st.clock, limit=limit)
    for text in report.lines:
        show(text)
    show(
        f"{report.read} read, {report.recorded} recorded, {report.ignored} changed nothing",
        f", {report.failed} kept for the next poll" if report.failed else "",
    )


@bounces_app.command("list")
@handle_errors
def list_(
    since: Annotated[
        str, typer.Option(help="How far back: 7d, 12h, 90m (default 7d; with --edition, all of it).")
    ] = "",
    edition: Annotated[
        str, typer.Option("--edition", help="Only those about the edition of this date, YYYY-MM-DD.")
    ] = "",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
    newsletter: NewsletterOpt = "",
) -> None:
    """List recent bounces and complaints, newest first; --edition names one newsletter's edition
    (with --newsletter, else the first newsletter's).

    Example: briefing bounces list --since 30d
    Example: briefing bounces list --edition 2026-11-30
    Example: briefing bounces list --edition 2026-12-05 --newsletter weekend
    """
    from briefing.service import bounces as bounce_service

    day = parse_date(edition, "--edition") if edition else None
    if newsletter.strip() and day is None:
        raise InvalidInput(
            "goes with --edition (the list without it covers every newsletter)", field="--newsletter"
        )
    after = moment_ago(since or "7d", "--since") if since or day is None else None
    st = state()
    chosen = chosen_newsletter(newsletter)
    events = bounce_service.recent(st.engine, since=after, edition=day, newsletter_id=chosen.id)
    if as_json:
        print_json(events)
        return
    table = new_table(
        "when", "reader", "kind", "code", "edition", "source", "diagnostic", title=f"{len(events)} events"
    )
    for e in events:
        add_row(
            table,
            e.received_at.astimezone(st.settings.zone).strftime("%Y-%m-%d %H:%M"),
            e.email,
            e.kind,
            e.code,
            e.edition_date.isoformat() if e.edition_date else "",
            e.source,
            e.diagnostic,
        )
    console.print(table)
