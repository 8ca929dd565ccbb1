"""`briefing serve` and `briefing editors ...`: the web app and the accounts that sign in to it."""

import sys
from typing import Annotated

import typer

from briefing.cli.common import (
    add_row,
    console,
    handle_errors,
    local,
    new_table,
    print_json,
    show,
    state,
    styled,
)
from briefing.errors import InvalidInput

editors_app = typer.Typer(
    help="Accounts for the editors' web pages.\n\nExample: briefing editors add editor@example.com",
    no_args_is_help=True,
)

LOOPBACK = ("127.0.0.1", "::1", "localhost")


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
    app.add_typer(editors_app, name="editors")


@handle_errors
def serve(
    host: Annotated[
        str, typer.Option(help="Address to listen on; keep 127.0.0.1 behind a reverse proxy.")
    ] = ("127.0.0.1"),
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port.")] = 8000,
    access_log: Annotated[
        bool,
        typer.Option("--access-log/--no-access-log", help="Log every request (paths carry link tokens)."),
    ] = True,
) -> None:
    """Run the web app (readers' pages and the editors' pages) in one process. Never sends on a schedule.

    Example: briefing serve --host 127.0.0.1 --port 8000
    """
    import uvicorn

    from briefing.web.app import create_app

    settings = state().settings
    app = create_app(settings, engine=state().engine)
    if host not in LOOPBACK:
        show(
            styled("warning:", "yellow"),
            f" listening on {host}; put a reverse proxy with HTTPS in front of it.",
            err=True,
        )
    if not settings.public_base_url.startswith("https://"):
        show(
            styled("note:", "yellow"),
            f" BRIEFING_PUBLIC_BASE_URL is {settings.public_base_url}; links in emails need an https://"
            " address in production (and session cookies are only marked Secure then).",
            err=True,
        )
    show(f"Serving {settings.newsletter_name} on http://{host}:{port} (Ctrl+C to stop).")
    uvicorn.run(
        app,
        host=host,
        port=port,
        workers=1,
        access_log=access_log,
        proxy_headers=False,  # the app trusts forwarded headers only from BRIEFING_TRUSTED_PROXIES
        server_header=False,
        log_level="info",
    )


def _read_password(password_stdin: bool) -> str:
    field = "--password-stdin" if password_stdin else "password"
    try:
        if password_stdin:
            line = sys.stdin.readline()
            if not line:
                raise InvalidInput("nothing on standard input", field=field)
            value = line.rstrip("\r\n")
        else:
            value = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    except UnicodeDecodeError:
        raise InvalidInput("not valid UTF-8 text", field=field) from None
    if not value.isprintable() and any("\ud800" <= ch <= "\udfff" for ch in value):
        raise InvalidInput("not valid UTF-8 text", field=field)
    return value


@editors_app.command("add")
@handle_errors
def add(
    email: Annotated[str, typer.Argument(help="The editor's email address (also where test copies go).")],
    admin: Annotated[bool, typer.Option("--admin", help="May see and export the subscriber list.")] = False,
    password_stdin: Annotated[
        bool,
        typer.Option("--password-stdin", help="Read the password from the first line of standard input."),
    ] = False,
) -> None:
    """Create an editor account; the password is asked twice (at least 12 characters).

    Example: briefing editors add editor@example.com --admin
    """
    from briefing.db import session_scope
    from briefing.service import editors as editor_service

    password = _read_password(password_stdin)
    with session_scope(state().engine) as session:
        account = editor_service.add_editor(session, email, password, admin=admin, now=state().now())
    show(f"Added {account.email} ({account.role}). They can sign in at /login.")


@editors_app.command("password")
@handle_errors
def password(
    email: Annotated[str, typer.Argument(help="The editor's email address.")],
    password_stdin: Annotated[
        bool,
        typer.Option("--password-stdin", help="Read the password from the first line of standard input."),
    ] = False,
) -> None:
    """Set a new password for an editor; their open sessions end.

    Example: briefing editors password editor@example.com
    """
    from briefing.db import session_scope
    from briefing.service import editors as editor_service

    new = _read_password(password_stdin)
    with session_scope(state().engine) as session:
        account = editor_service.set_password(session, email, new)
    show(f"New password set for {account.email}.")


@editors_app.command("list")
@handle_errors
def list_(as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False) -> None:
    """List editor accounts.

    Example: briefing editors list
    """
    from briefing.db import session_scope
    from briefing.service import editors as editor_service

    with session_scope(state().engine) as session:
        found = editor_service.list_editors(session)
    if as_json:
        print_json(
            [
                {"email": a.email, "role": a.role, "active": a.active, "last_login_at": a.last_login_at}
                for a in found
            ]
        )
        return
    table = new_table("email", "role", "active", "last sign-in", title=f"Editors ({len(found)})")
    for a in found:
        add_row(table, a.email, a.role, "yes" if a.active else "no", local(a.last_login_at))
    console.print(table)


@editors_app.command("disable")
@handle_errors
def disable(email: Annotated[str, typer.Argument(help="The editor's email address.")]) -> None:
    """Stop an editor from signing in; their open sessions end at once.

    Example: briefing editors disable editor@example.com
    """
    from briefing.db import session_scope
    from briefing.service import editors as editor_service

    with session_scope(state().engine) as session:
        account = editor_service.set_active(session, email, False)
    show(f"{account.email} can no longer sign in.")


@editors_app.command("enable")
@handle_errors
def enable(email: Annotated[str, typer.Argument(help="The editor's email address.")]) -> None:
    """Let a disabled editor sign in again.

    Example: briefing editors enable editor@example.com
    """
    from briefing.db import session_scope
    from briefing.service import editors as editor_service

    with session_scope(state().engine) as session:
        account = editor_service.set_active(session, email, True)
    show(f"{account.email} can sign in again.")
