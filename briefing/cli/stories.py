"""`briefing stories ...`: the editors' queue."""

from dataclasses import asdict
from typing import TYPE_CHECKING, Annotated

import typer

from briefing.cli.common import (
    NewsletterOpt,
    add_row,
    chosen_newsletter,
    console,
    handle_errors,
    id_argument,
    id_option,
    line,
    local,
    new_table,
    newsletter_flag,
    newsletter_zone,
    of_newsletter,
    parse_date,
    parse_moment,
    place_option,
    print_json,
    show,
    state,
    styled,
)
from briefing.errors import InvalidInput, NotFound

if TYPE_CHECKING:
    from sqlmodel import Session

    from briefing.newsletter import NewsletterData
    from briefing.service import queue as queue_service
    from briefing.service import stories as story_service

app = typer.Typer(
    help="The story queue.\n\nExample: briefing stories list --date 2026-11-30", no_args_is_help=True
)

DateOpt = Annotated[str, typer.Option("--date", help="Edition date, YYYY-MM-DD (default: the next edition).")]
# On the commands that take a story id, the id says whose queue it is in; --newsletter only checks it.
CheckNewsletterOpt = Annotated[
    str,
    typer.Option(
        "--newsletter", "-n", help="Refuse unless the story is in this newsletter's queue (a slug)."
    ),
]


@app.command("add")
@handle_errors
def add(
    article: Annotated[int | None, id_option(help="Id of a stored article to queue.")] = None,
    url: Annotated[
        str, typer.Option(help="Link; with --article, the article's URL is used if omitted.")
    ] = "",
    headline: Annotated[str, typer.Option(help="Headline (default: the article's title).")] = "",
    blurb: Annotated[str, typer.Option(help="One or two lines in Markdown.")] = "",
    section: Annotated[str, typer.Option(help="Section, such as Politics.")] = "",
    position: Annotated[int | None, place_option(help="Place in its section, 1 = top.")] = None,
    edition: DateOpt = "",
    embargo: Annotated[str, typer.Option(help="Not before this local time, YYYY-MM-DD HH:MM.")] = "",
    expires: Annotated[str, typer.Option(help="Not after this local time, YYYY-MM-DD HH:MM.")] = "",
    status: Annotated[str, typer.Option(help="draft or ready.")] = "draft",
    lead: Annotated[bool, typer.Option("--lead", help="Make this the lead story.")] = False,
    newsletter: NewsletterOpt = "",
) -> None:
    """Queue a story, from a stored article or as a standalone link, in one newsletter's queue.

    Example: briefing stories add --article 12 --blurb "MPs vote at 7pm." --status ready
    Example: briefing stories add --url https://example.org/report --headline "Report lands" --section World
    Example: briefing stories add --article 12 --newsletter weekend --status ready
    """
    from briefing.db import session_scope
    from briefing.service import stories as story_service

    chosen = chosen_newsletter(newsletter)

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
        newsletter_id=chosen.id,
    )
    with session_scope(state().engine) as session:
        story = story_service.add_story(session, request, now=state().now())
    when = story.edition_date.isoformat() if story.edition_date else "the next edition"
    show(f"Queued story {story.id} for {when}{of_newsletter(chosen)}: {story.headline} ({story.status})")


@app.command("list")
@handle_errors
def list_(
    edition: DateOpt = "",
    all_: Annotated[bool, typer.Option("--all", help="Include used and dropped stories.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
    newsletter: NewsletterOpt = "",
) -> None:
    """Show a newsletter's queue by edition and section, in the email's order, and whether each story
    goes out.

    Each story is judged at its edition's send time: a ready story still under embargo then, or
    expired by then, is shown as left out, with the reason.

    Example: briefing stories list --date 2026-11-30
    Example: briefing stories list --newsletter weekend --json
    """
    from briefing import wiring
    from briefing.db import session_scope
    from briefing.domain import StoryStatus
    from briefing.service import queue as queue_service
    from briefing.store import schedule as schedule_store
    from briefing.store import stories as story_store

    statuses: tuple[str, ...] = tuple(s.value for s in StoryStatus) if all_ else story_store.ACTIVE_STATUSES
    day = parse_date(edition)
    settings = state().settings
    chosen = chosen_newsletter(newsletter)
    with session_scope(state().engine) as session:
        plan = wiring.send_plan(settings, schedule_store.skip_dates(session), chosen)
        queues = queue_service.queue_view(
            session,
            plan,
            wiring.compose_options(settings, chosen),
            now=state().now(),
            edition_date=day,
            statuses=statuses,
            newsletter_id=chosen.id,
        )
    if as_json:
        print_json(_json_entry(entry) for queue in queues for entry in queue.entries)
        return
    print_queue(queues, chosen)


def _json_entry(entry: "story_service.QueueEntry") -> dict[str, object]:
    return {
        **asdict(entry.story),
        "for_edition": entry.edition_date,
        "goes_in": entry.goes_in,
        "left_out": entry.reason or None,
        "why": entry.why,
    }


def print_queue(
    queues: "list[queue_service.EditionQueue]", newsletter: "NewsletterData | None" = None
) -> None:
    """One table per edition; the last column says whether the story goes out, and if not, why."""
    whose = of_newsletter(newsletter) if newsletter is not None else ""
    flag = newsletter_flag(newsletter) if newsletter is not None else ""
    zone = newsletter_zone(newsletter) if newsletter is not None else None
    if not any(queue.entries for queue in queues):
        title = f"Queue for {queues[0].edition_date.isoformat()}" if queues else "Queue"
        show(f"{title}{whose}: no stories. Add one with `briefing stories add{flag}`.")
        return
    for queue in queues:
        state_ = f", edition {queue.edition.status}" if queue.edition is not None else ""
        title = (
            f"Queue for {queue.edition_date.isoformat()}{whose} "
            f"(as sent at {local(queue.judged_at, zone)}{state_})"
        )
        table = new_table(
            "id", "pos", "headline", "status", "date", "embargo", "expires", "goes out", title=title
        )
        for section, group in queue.sections:
            add_row(table, "", "", styled(section or "(no section)", "bold"), "", "", "", "", "")
            for entry in group:
                s = entry.story
                add_row(
                    table,
                    s.id,
                    s.position,
                    line(s.headline, styled(" (lead)", "yellow")) if s.lead else s.headline,
                    s.status,
                    s.edition_date.isoformat() if s.edition_date else "next",
                    local(s.embargo_until, zone),
                    local(s.expires_at, zone),
                    styled("yes", "green") if entry.goes_in else styled(f"no: {entry.why}", "yellow"),
                )
        console.print(table)


@app.command("edit")
@handle_errors
def edit(
    story_id: Annotated[int, id_argument("Story id (see `briefing stories list`).")],
    headline: Annotated[str | None, typer.Option()] = None,
    url: Annotated[str | None, typer.Option()] = None,
    blurb: Annotated[str | None, typer.Option()] = None,
    section: Annotated[str | None, typer.Option()] = None,
    edition: Annotated[str | None, typer.Option("--date", help="YYYY-MM-DD, or 'next'.")] = None,
    embargo: Annotated[str | None, typer.Option(help="YYYY-MM-DD HH:MM, or 'none'.")] = None,
    expires: Annotated[str | None, typer.Option(help="YYYY-MM-DD HH:MM, or 'none'.")] = None,
    status: Annotated[str | None, typer.Option(help="draft or ready.")] = None,
    lead: Annotated[bool | None, typer.Option("--lead/--not-lead")] = None,
    newsletter: CheckNewsletterOpt = "",
) -> None:
    """Change a queued story; only the options you give change. Used and dropped stories stay as they were.

    Example: briefing stories edit 7 --status ready --blurb "Updated at 11pm."
    Example: briefing stories edit 7 --newsletter weekend --section Culture
    """
    from briefing.db import session_scope
    from briefing.service import stories as story_service

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
    only = chosen_newsletter(newsletter) if newsletter.strip() else None
    with session_scope(state().engine) as session:
        _in_queue_of(session, [story_id], only)
        story = story_service.edit_story(session, story_id, raw, now=state().now())
    show(f"Updated story {story.id}: {story.headline} ({story.status})")


@app.command("move")
@handle_errors
def move(
    story_id: Annotated[int, id_argument("Story id.")],
    to: Annotated[int, place_option("--to", help="New place in its section, 1 = top.")],
    newsletter: CheckNewsletterOpt = "",
) -> None:
    """Move a story within its section.

    Example: briefing stories move 7 --to 1
    """
    from briefing.db import session_scope
    from briefing.service import stories as story_service

    only = chosen_newsletter(newsletter) if newsletter.strip() else None
    with session_scope(state().engine) as session:
        _in_queue_of(session, [story_id], only)
        story = story_service.move_story(session, story_id, to, now=state().now())
    show(f"Story {story.id} is now number {story.position} in {story.section or '(no section)'}.")


@app.command("ready")
@handle_errors
def ready(
    story_ids: Annotated[list[int], id_argument("One or more story ids.")],
    newsletter: CheckNewsletterOpt = "",
) -> None:
    """Mark stories ready to go out; if one cannot be, none is marked.

    Example: briefing stories ready 7 8 9
    """
    from briefing.db import session_scope
    from briefing.service import stories as story_service

    only = chosen_newsletter(newsletter) if newsletter.strip() else None
    with session_scope(state().engine) as session:
        _in_queue_of(session, story_ids, only)
        for story_id in story_ids:
            story_service.mark_ready(session, story_id, now=state().now())
    show(f"Marked ready: {', '.join(map(str, story_ids))}")


@app.command("drop")
@handle_errors
def drop(
    story_id: Annotated[int, id_argument("Story id.")],
    newsletter: CheckNewsletterOpt = "",
) -> None:
    """Take a story out of the queue (it stays on record as dropped).

    Example: briefing stories drop 7
    """
    from briefing.db import session_scope
    from briefing.service import stories as story_service

    only = chosen_newsletter(newsletter) if newsletter.strip() else None
    with session_scope(state().engine) as session:
        _in_queue_of(session, [story_id], only)
        story = story_service.drop(session, story_id, now=state().now())
    show(f"Dropped story {story.id}: {story.headline}")


def _in_queue_of(session: "Session", story_ids: list[int], chosen: "NewsletterData | None") -> None:
    """With --newsletter, every story named must be in that newsletter's queue (before any change)."""
    if chosen is None:
        return
    from briefing.store import stories as story_store

    for story_id in story_ids:
        if story_store.get_story(session, story_id).newsletter_id != chosen.id:
            raise NotFound(f"story {story_id} is not in the queue of {chosen.slug}", field="--newsletter")
