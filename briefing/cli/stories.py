"""`briefing stories ...`: the editors' queue."""

from __future__ import annotations

from datetime import date
from itertools import groupby
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from briefing.cli.common import console, handle_errors, local, parse_date, parse_moment, print_json, state
from briefing.db import session_scope
from briefing.domain import StoryItem, StoryStatus
from briefing.errors import InvalidInput
from briefing.service import stories as story_service
from briefing.store import stories as story_store

app = typer.Typer(
    help="The story queue.\n\nExample: briefing stories list --date 2026-11-30", no_args_is_help=True
)

DateOpt = Annotated[str, typer.Option("--date", help="Edition date, YYYY-MM-DD (default: the next edition).")]


@app.command("add")
@handle_errors
def add(
    article: Annotated[int | None, typer.Option(help="Id of a stored article to queue.")] = None,
    url: Annotated[
        str, typer.Option(help="Link; with --article, the article's URL is used if omitted.")
    ] = "",
    headline: Annotated[str, typer.Option(help="Headline (default: the article's title).")] = "",
    blurb: Annotated[str, typer.Option(help="One or two lines in Markdown.")] = "",
    section: Annotated[str, typer.Option(help="Section, such as Politics.")] = "",
    position: Annotated[int | None, typer.Option(help="Place in its section, 1 = top.")] = None,
    edition: DateOpt = "",
    embargo: Annotated[str, typer.Option(help="Not before this local time, YYYY-MM-DD HH:MM.")] = "",
    expires: Annotated[str, typer.Option(help="Not after this local time, YYYY-MM-DD HH:MM.")] = "",
    status: Annotated[str, typer.Option(help="draft or ready.")] = "draft",
    lead: Annotated[bool, typer.Option("--lead", help="Make this the lead story.")] = False,
) -> None:
    """Queue a story, from a stored article or as a standalone link.

    Example: briefing stories add --article 12 --blurb "MPs vote at 7pm." --status ready
    Example: briefing stories add --url https://example.org/report --headline "Report lands" --section World
    """
    by_url = ""
    if article is None and url and not headline:
        by_url, url = url, ""
    request = story_service.StoryRequest(
        article_id=article,
        article_url=by_url,
        url=url,
        headline=headline,
        blurb=blurb,
        section=section,
        position=position,
        edition_date=parse_date(edition),
        embargo_until=parse_moment(embargo, "--embargo"),
        expires_at=parse_moment(expires, "--expires"),
        status=status,
        lead=lead,
    )
    with session_scope(state().engine) as session:
        story = story_service.add_story(session, request, now=state().now())
    when = story.edition_date.isoformat() if story.edition_date else "the next edition"
    console.print(f"Queued story {story.id} for {when}: {escape(story.headline)} ({story.status})")


@app.command("list")
@handle_errors
def list_(
    edition: DateOpt = "",
    all_: Annotated[bool, typer.Option("--all", help="Include used and dropped stories.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Show the queue grouped by section, in edition order.

    Example: briefing stories list --date 2026-11-30
    """
    statuses: tuple[str, ...] = tuple(s.value for s in StoryStatus) if all_ else story_store.ACTIVE_STATUSES
    with session_scope(state().engine) as session:
        found = story_store.list_stories(session, edition_date=parse_date(edition), statuses=statuses)
    order = [x.casefold() for x in state().settings.section_order]
    found.sort(key=lambda st: _section_rank(st.section, order))
    if as_json:
        print_json(found)
        return
    print_queue(found, parse_date(edition))


def _section_rank(section: str, order: list[str]) -> tuple[int, str]:
    """Sections in BRIEFING_SECTION_ORDER first, as the edition shows them; the rest alphabetically."""
    key = section.casefold()
    return (order.index(key) if key in order else len(order), key)


def print_queue(found: list[StoryItem], edition: date | None) -> None:
    title = f"Queue for {edition.isoformat()}" if edition else "Queue"
    if not found:
        console.print(f"{title}: no stories. Add one with `briefing stories add`.")
        return
    table = Table("id", "pos", "headline", "status", "edition", "embargo", "expires", title=title)
    for section, group in groupby(found, key=lambda s: s.section):
        table.add_row("", "", f"[bold]{section or '(no section)'}[/bold]", "", "", "", "")
        for s in group:
            flag = " [yellow](lead)[/yellow]" if s.lead else ""
            table.add_row(
                str(s.id),
                str(s.position),
                escape(s.headline) + flag,
                s.status,
                s.edition_date.isoformat() if s.edition_date else "next",
                local(s.embargo_until),
                local(s.expires_at),
            )
    console.print(table)


@app.command("edit")
@handle_errors
def edit(
    story_id: Annotated[int, typer.Argument(help="Story id (see `briefing stories list`).")],
    headline: Annotated[str | None, typer.Option()] = None,
    url: Annotated[str | None, typer.Option()] = None,
    blurb: Annotated[str | None, typer.Option()] = None,
    section: Annotated[str | None, typer.Option()] = None,
    edition: Annotated[str | None, typer.Option("--date", help="YYYY-MM-DD, or 'next'.")] = None,
    embargo: Annotated[str | None, typer.Option(help="YYYY-MM-DD HH:MM, or 'none'.")] = None,
    expires: Annotated[str | None, typer.Option(help="YYYY-MM-DD HH:MM, or 'none'.")] = None,
    status: Annotated[str | None, typer.Option(help="draft or ready.")] = None,
    lead: Annotated[bool | None, typer.Option("--lead/--not-lead")] = None,
) -> None:
    """Change a queued story; only the options you give change. Used and dropped stories stay as they were.

    Example: briefing stories edit 7 --status ready --blurb "Updated at 11pm."
    """
    raw: dict[str, object] = {}
    for name, value in (("headline", headline), ("url", url), ("blurb", blurb), ("section", section)):
        if value is not None:
            raw[name] = value
    if status is not None:
        raw["status"] = status
    if lead is not None:
        raw["lead"] = lead
    if edition is not None:
        raw["edition_date"] = None if edition == "next" else parse_date(edition)
    if embargo is not None:
        raw["embargo_until"] = None if embargo == "none" else parse_moment(embargo, "--embargo")
    if expires is not None:
        raw["expires_at"] = None if expires == "none" else parse_moment(expires, "--expires")
    if not raw:
        raise InvalidInput("give at least one option to change (see --help)", field="story")
    with session_scope(state().engine) as session:
        story = story_service.edit_story(session, story_id, raw, now=state().now())
    console.print(f"Updated story {story.id}: {escape(story.headline)} ({story.status})")


@app.command("move")
@handle_errors
def move(
    story_id: Annotated[int, typer.Argument(help="Story id.")],
    to: Annotated[int, typer.Option("--to", help="New place in its section, 1 = top.")],
) -> None:
    """Move a story within its section.

    Example: briefing stories move 7 --to 1
    """
    with session_scope(state().engine) as session:
        story = story_service.move_story(session, story_id, to, now=state().now())
    console.print(f"Story {story.id} is now number {story.position} in {story.section or '(no section)'}.")


@app.command("ready")
@handle_errors
def ready(story_ids: Annotated[list[int], typer.Argument(help="One or more story ids.")]) -> None:
    """Mark stories ready to go out; if one cannot be, none is marked.

    Example: briefing stories ready 7 8 9
    """
    with session_scope(state().engine) as session:
        for story_id in story_ids:
            story_service.mark_ready(session, story_id, now=state().now())
    console.print(f"Marked ready: {', '.join(map(str, story_ids))}")


@app.command("drop")
@handle_errors
def drop(story_id: Annotated[int, typer.Argument(help="Story id.")]) -> None:
    """Take a story out of the queue (it stays on record as dropped).

    Example: briefing stories drop 7
    """
    with session_scope(state().engine) as session:
        story = story_service.drop(session, story_id, now=state().now())
    console.print(f"Dropped story {story.id}: {escape(story.headline)}")
