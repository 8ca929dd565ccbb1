"""`briefing newsletters ...`: the newsroom's emails, each with its own calendar, look and readers."""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any

import typer

from briefing.cli.common import (
    add_row,
    console,
    handle_errors,
    new_table,
    print_json,
    show,
    state,
    styled,
)
from briefing.newsletter import STANDING_KEYS

if TYPE_CHECKING:
    from datetime import datetime

    from briefing import calendar as cal
    from briefing.newsletter import NewsletterData
    from briefing.service import newsletters as newsletter_service

app = typer.Typer(
    help="The newsroom's newsletters.\n\nExample: briefing newsletters list", no_args_is_help=True
)

# The options `add` and `edit` share; None means "not given" (add: as the settings say; edit: unchanged).
NameOpt = Annotated[str | None, typer.Option("--name", help="Its name, as readers see it.")]
SenderNameOpt = Annotated[str | None, typer.Option("--sender-name", help="The From name.")]
SenderAddressOpt = Annotated[str | None, typer.Option("--sender-address", help="The From address.")]
ReplyToOpt = Annotated[str | None, typer.Option("--reply-to", help="Where readers' replies go.")]
ListIdOpt = Annotated[
    str | None,
    typer.Option("--list-id", help="Its List-Id for mail filters, such as weekend.news.example.com."),
]
SendDaysOpt = Annotated[
    str | None, typer.Option("--send-days", help="Days it goes out: mon-fri, sat, mon,wed,fri.")
]
SendTimeOpt = Annotated[str | None, typer.Option("--send-time", help="Local time it goes out, HH:MM.")]
TimezoneOpt = Annotated[
    str | None, typer.Option("--timezone", help="Its readers' zone, such as America/New_York.")
]
SectionsOpt = Annotated[
    str | None, typer.Option("--sections", help='Section order, such as "Politics,World".')
]
SectionsOptionalOpt = Annotated[
    bool | None,
    typer.Option(
        "--sections-optional/--sections-fixed",
        help="Whether readers may leave sections out.",
        show_default=False,
    ),
]
BrandOpt = Annotated[str | None, typer.Option("--brand-colour", help="Main colour, #rrggbb.")]
AccentOpt = Annotated[str | None, typer.Option("--accent-colour", help="Accent colour, #rrggbb.")]
LogoOpt = Annotated[str | None, typer.Option("--logo-url", help="Logo image, an https:// address.")]
TemplateSetOpt = Annotated[
    str | None, typer.Option("--template-set", help="A folder of templates under templates/email.")
]
ArchiveOpt = Annotated[
    str | None, typer.Option("--archive", help="web (every edition on the site) or email (by email only).")
]
BlockOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--block",
        help="One of its standing blocks' words or links, KEY=VALUE (repeat it): tip_contact, "
        "support_url, support_text, partner_name, postal_address, why_text, ... An empty value "
        "goes back to the setting.",
    ),
]
SlugArg = Annotated[str, typer.Argument(help="The newsletter's slug (see `briefing newsletters list`).")]


# The service names a newsletter's fields; here each error names the option that was typed instead.
OPTION_OF = {
    "name": "--name",
    "sender_name": "--sender-name",
    "sender_address": "--sender-address",
    "reply_to": "--reply-to",
    "list_id": "--list-id",
    "send_days": "--send-days",
    "send_time": "--send-time",
    "timezone": "--timezone",
    "section_order": "--sections",
    "sections_optional": "--sections-optional",
    "brand_colour": "--brand-colour",
    "accent_colour": "--accent-colour",
    "logo_url": "--logo-url",
    "template_set": "--template-set",
    "archive": "--archive",
    "standing": "--block",
    **{key: f"--block {key}" for key in STANDING_KEYS},
    "slug": "SLUG",
    "newsletter": "SLUG",
}


@contextmanager
def _options_named() -> Iterator[None]:
    from briefing.errors import BriefingError

    try:
        yield
    except BriefingError as exc:
        if exc.field not in OPTION_OF:
            raise
        exc.field = OPTION_OF[exc.field]
        raise


def _raw(**given: Any) -> dict[str, object]:
    """The options that were given, under the newsletter's field names."""
    renamed = {"sections": "section_order"}
    return {renamed.get(name, name): value for name, value in given.items() if value is not None}


def _checks() -> "newsletter_service.Checks":
    from briefing import wiring
    from briefing.config import parse_send_days
    from briefing.service import newsletters as newsletter_service

    email_templates = wiring.templates_dir(state().settings) / "email"
    return newsletter_service.Checks(email_templates=email_templates, parse_send_days=parse_send_days)


@app.command("add")
@handle_errors
def add(
    slug: Annotated[
        str, typer.Argument(help="Short name for its links, such as weekend (/subscribe/weekend).")
    ],
    name: Annotated[str, typer.Option("--name", help="Its name, as readers see it.")],
    sender_name: SenderNameOpt = None,
    sender_address: SenderAddressOpt = None,
    reply_to: ReplyToOpt = None,
    list_id: ListIdOpt = None,
    send_days: SendDaysOpt = None,
    send_time: SendTimeOpt = None,
    timezone: TimezoneOpt = None,
    sections: SectionsOpt = None,
    sections_optional: SectionsOptionalOpt = None,
    brand_colour: BrandOpt = None,
    accent_colour: AccentOpt = None,
    logo_url: LogoOpt = None,
    template_set: TemplateSetOpt = None,
    archive: ArchiveOpt = None,
    block: BlockOpt = None,
) -> None:
    """Add a newsletter; what you leave out follows the BRIEFING_ settings. It starts with no
    readers: they choose it on its sign-up page (/subscribe/SLUG) or their preferences page.

    Example: briefing newsletters add weekend --name "The Weekend" --send-days sat --send-time 08:00
    Example: briefing newsletters add us-morning --name "US Morning" --timezone America/New_York
    """
    from briefing.db import session_scope
    from briefing.service import newsletters as newsletter_service

    raw = _raw(
        name=name,
        sender_name=sender_name,
        sender_address=sender_address,
        reply_to=reply_to,
        list_id=list_id,
        send_days=send_days,
        send_time=send_time,
        timezone=timezone,
        sections=sections,
        sections_optional=sections_optional,
        brand_colour=brand_colour,
        accent_colour=accent_colour,
        logo_url=logo_url,
        template_set=template_set,
        archive=archive,
        standing=block or None,
    )
    checks = _checks()
    with _options_named(), session_scope(state().engine) as session:
        added = newsletter_service.add(session, slug, raw, now=state().now(), checks=checks)
    show(f"Added newsletter {added.slug} ({added.name}): {_schedule(_plan(added))}.")
    show(f"  No readers yet: they sign up at /subscribe/{added.slug} or choose it on their preferences page.")


@app.command("edit")
@handle_errors
def edit(
    slug: SlugArg,
    name: NameOpt = None,
    sender_name: SenderNameOpt = None,
    sender_address: SenderAddressOpt = None,
    reply_to: ReplyToOpt = None,
    list_id: ListIdOpt = None,
    send_days: SendDaysOpt = None,
    send_time: SendTimeOpt = None,
    timezone: TimezoneOpt = None,
    sections: SectionsOpt = None,
    sections_optional: SectionsOptionalOpt = None,
    brand_colour: BrandOpt = None,
    accent_colour: AccentOpt = None,
    logo_url: LogoOpt = None,
    template_set: TemplateSetOpt = None,
    archive: ArchiveOpt = None,
    block: BlockOpt = None,
) -> None:
    """Change a newsletter; only the options you give change, and an empty value ("") goes back to
    what the BRIEFING_ settings say. The next edition uses the new values.

    Example: briefing newsletters edit weekend --send-time 07:30 --archive email
    Example: briefing newsletters edit weekend --block tip_contact=weekend@news.example.com
    """
    from briefing.db import session_scope
    from briefing.errors import InvalidInput
    from briefing.service import newsletters as newsletter_service

    raw = _raw(
        name=name,
        sender_name=sender_name,
        sender_address=sender_address,
        reply_to=reply_to,
        list_id=list_id,
        send_days=send_days,
        send_time=send_time,
        timezone=timezone,
        sections=sections,
        sections_optional=sections_optional,
        brand_colour=brand_colour,
        accent_colour=accent_colour,
        logo_url=logo_url,
        template_set=template_set,
        archive=archive,
        standing=block or None,
    )
    if not raw:
        raise InvalidInput("give at least one option to change (see --help)", field="edit")
    checks = _checks()
    with _options_named(), session_scope(state().engine) as session:
        edited = newsletter_service.edit(session, slug, raw, now=state().now(), checks=checks)
    show(f"Updated newsletter {edited.slug}: {', '.join(sorted(raw))}. Now {_schedule(_plan(edited))}.")


@app.command("pause")
@handle_errors
def pause(slug: SlugArg) -> None:
    """Pause a newsletter: no edition of it goes out until it is resumed; its readers and queue stay.

    Example: briefing newsletters pause weekend
    """
    from briefing.db import session_scope
    from briefing.service import newsletters as newsletter_service

    with _options_named(), session_scope(state().engine) as session:
        found, changed = newsletter_service.pause(session, slug, now=state().now())
    if not changed:
        show(f"{found.slug} was already paused.")
        return
    show(f"Paused {found.slug}: it sends nothing until `briefing newsletters resume {found.slug}`.")


@app.command("resume")
@handle_errors
def resume(slug: SlugArg) -> None:
    """Resume a paused newsletter: its next edition goes out on its calendar.

    Example: briefing newsletters resume weekend
    """
    from briefing.db import session_scope
    from briefing.service import newsletters as newsletter_service

    with _options_named(), session_scope(state().engine) as session:
        found, changed = newsletter_service.resume(session, slug, now=state().now())
    if not changed:
        show(f"{found.slug} was not paused.")
        return
    show(f"Resumed {found.slug}: {_next_text(_plan(found), state().now())}.")


@app.command("list")
@handle_errors
def list_(as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False) -> None:
    """List the newsletters: schedule (as it resolves with the settings), next send in each one's
    own zone, readers, archive and whether it is paused.

    Example: briefing newsletters list
    """
    from sqlmodel import Session

    from briefing import calendar as cal
    from briefing import wiring
    from briefing.store import newsletters as newsletter_store
    from briefing.store import schedule as schedule_store
    from briefing.store import subscriptions as subscription_store

    settings, now = state().settings, state().now()
    with Session(state().engine) as session:
        newsletters = newsletter_store.list_newsletters(session)
        readers = subscription_store.active_counts(session)
        skips = schedule_store.skip_dates(session)
    rows = []
    for n in newsletters:
        plan = wiring.send_plan(settings, skips, n)
        times = [] if n.paused else cal.next_send_times(now, plan, 1)
        rows.append((n, plan, times[0] if times else None, readers.get(n.id, 0)))
    if as_json:
        print_json(_json_row(n, plan, upcoming, count) for n, plan, upcoming, count in rows)
        return
    table = new_table(
        "slug", "name", "schedule", "next send", "readers", "archive", "paused", title="Newsletters"
    )
    for n, plan, upcoming, count in rows:
        add_row(
            table,
            n.slug,
            wiring.newsletter_name(settings, n),
            _schedule(plan),
            f"{upcoming.local:%Y-%m-%d %H:%M %Z}" if upcoming else "",
            f"{count:,}",
            n.archive,
            styled("paused", "yellow") if n.paused else "",
        )
    console.print(table)


def _json_row(
    n: "NewsletterData", plan: "cal.SendPlan", upcoming: "cal.SendTime | None", readers: int
) -> dict[str, object]:
    from briefing import wiring
    from briefing.service.newsletters import days_text

    return {
        "id": n.id,
        "slug": n.slug,
        "name": wiring.newsletter_name(state().settings, n),
        "send_days": days_text(plan.send_days),
        "send_time": plan.send_time.strftime("%H:%M"),
        "timezone": _zone_name(plan),
        "next_send": (
            {"edition_date": upcoming.edition_date, "local": upcoming.local, "utc": upcoming.utc}
            if upcoming
            else None
        ),
        "readers": readers,
        "archive": n.archive,
        "paused": n.paused,
        "section_order": list(n.section_order),
        "sections_optional": n.sections_optional,
        "template_set": n.template_set,
    }


def _plan(n: "NewsletterData") -> "cal.SendPlan":
    from sqlmodel import Session

    from briefing import wiring
    from briefing.store import schedule as schedule_store

    with Session(state().engine) as session:
        skips = schedule_store.skip_dates(session)
    return wiring.send_plan(state().settings, skips, n)


def _zone_name(plan: "cal.SendPlan") -> str:
    return getattr(plan.zone, "key", str(plan.zone))


def _schedule(plan: "cal.SendPlan") -> str:
    """The calendar as it resolves with the settings: "mon-fri 06:00 Europe/London"."""
    from briefing.service.newsletters import days_text

    return f"{days_text(plan.send_days)} {plan.send_time:%H:%M} {_zone_name(plan)}"


def _next_text(plan: "cal.SendPlan", now: "datetime") -> str:
    from briefing import calendar as cal

    upcoming = cal.next_send_times(now, plan, 1)
    if not upcoming:
        return "no send day ahead"
    n = upcoming[0]
    return f"next edition {n.edition_date}, at {n.local:%H:%M %Z}"
