"""`briefing serve` and `briefing editors ...`: the web app and the accounts that sign in to it."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.table import Table

from briefing.cli.common import console, err_console, handle_errors, local, print_json, state
from briefing.db import session_scope
from briefing.errors import InvalidInput
from briefing.service import editors as editor_service

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
    forwarded_allow_ips: Annotated[
        str,
        typer.Option(help="Proxies whose X-Forwarded-For/-Proto are trusted (comma-separated addresses)."),
    ] = "127.0.0.1",
) -> None:
    """Run the web app (readers' pages and the editors' pages) in one process. Never sends on a schedule.

    Example: briefing serve --host 127.0.0.1 --port 8000
    """
    import uvicorn

    from briefing.web.app import create_app

    settings = state().settings
    app = create_app(settings, engine=state().engine)
    if host not in LOOPBACK:
        err_console.print(
            f"[yellow]warning:[/yellow] listening on {host}; put a reverse proxy with HTTPS in front of it."
        )
    if not settings.public_base_url.startswith("https://"):
        err_console.print(
            f"[yellow]note:[/yellow] BRIEFING_PUBLIC_BASE_URL is {settings.public_base_url}; links in emails "
            "need an https:// address in production (and session cookies are only marked Secure then)."
        )
    console.print(f"Serving {settings.newsletter_name} on http://{host}:{port} (Ctrl+C to stop).")
    uvicorn.run(
        app,
        host=host,
        port=port,
        workers=1,
        access_log=access_log,
        proxy_headers=True,
        forwarded_allow_ips=forwarded_allow_ips,
        server_header=False,
        log_level="info",
    )


def _read_password(password_stdin: bool) -> str:
    if password_stdin:
        line = sys.stdin.readline()
        if not line:
            raise InvalidInput("nothing on standard input", field="--password-stdin")
        return line.rstrip("\r\n")
    value: str = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
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
    password = _read_password(password_stdin)
    with session_scope(state().engine) as session:
        account = editor_service.add_editor(session, email, password, admin=admin, now=state().now())
    console.print(f"Added {account.email} ({account.role}). They can sign in at /login.")


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
    new = _read_password(password_stdin)
    with session_scope(state().engine) as session:
        account = editor_service.set_password(session, email, new)
    console.print(f"New password set for {account.email}.")


@editors_app.command("list")
@handle_errors
def list_(as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False) -> None:
    """List editor accounts.

    Example: briefing editors list
    """
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
    table = Table("email", "role", "active", "last sign-in", title=f"Editors ({len(found)})")
    for a in found:
        table.add_row(a.email, a.role, "yes" if a.active else "no", local(a.last_login_at))
    console.print(table)


@editors_app.command("disable")
@handle_errors
def disable(email: Annotated[str, typer.Argument(help="The editor's email address.")]) -> None:
    """Stop an editor from signing in; their open sessions end at once.

    Example: briefing editors disable editor@example.com
    """
    with session_scope(state().engine) as session:
        account = editor_service.set_active(session, email, False)
    console.print(f"{account.email} can no longer sign in.")


@editors_app.command("enable")
@handle_errors
def enable(email: Annotated[str, typer.Argument(help="The editor's email address.")]) -> None:
    """Let a disabled editor sign in again.

    Example: briefing editors enable editor@example.com
    """
    with session_scope(state().engine) as session:
        account = editor_service.set_active(session, email, True)
    console.print(f"{account.email} can sign in again.")
