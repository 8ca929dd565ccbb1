"""`briefing sponsors ...`: partner blocks booked for a newsletter's dates."""

from typing import TYPE_CHECKING, Annotated

import typer

from briefing.cli.common import (
    add_row,
    console,
    handle_errors,
    id_argument,
    new_table,
    print_json,
    show,
    state,
    styled,
)

if TYPE_CHECKING:
    from briefing.store.sponsors import SponsorSlotData

app = typer.Typer(
    help="Sponsor slots: the partner block of chosen dates.\n\nExample: briefing sponsors list",
    no_args_is_help=True,
)

NewsletterOpt = Annotated[
    str, typer.Option("--newsletter", help="The newsletter's slug (default: the first newsletter).")
]


@app.command("add")
@handle_errors
def add(
    starts_on: Annotated[str, typer.Option("--from", help="First date of the slot, YYYY-MM-DD.")],
    ends_on: Annotated[str, typer.Option("--to", help="Last date of the slot, YYYY-MM-DD (inclusive).")],
    newsletter: NewsletterOpt = "",
    name: Annotated[str, typer.Option(help="The partner's name, the block's link text.")] = "",
    text: Annotated[str, typer.Option(help="One line after the name.")] = "",
    url: Annotated[str, typer.Option(help="The partner's link, https://...")] = "",
    image: Annotated[str, typer.Option(help="An image for the block, https://...")] = "",
    label: Annotated[str, typer.Option(help="The block's heading (up to 40 characters).")] = "Partner",
    unpaid: Annotated[
        bool, typer.Option("--unpaid", help="Not sold: no warning when it is left empty.")
    ] = False,
) -> None:
    """Book the partner block of a newsletter for a range of dates; it replaces the standing partner.

    Of overlapping bookings the later one wins, so booking the same dates again fills in or
    corrects a slot. A slot may be booked before the partner's copy arrives (no --name or --url):
    while a paid slot is empty, preflight warns.

    Example: briefing sponsors add --from 2026-12-01 --to 2026-12-07 --name "Example Books" --url https://books.example.org/
    Example: briefing sponsors add --newsletter weekend --from 2026-12-05 --to 2026-12-06
    """
    from briefing.db import session_scope
    from briefing.service import sponsors as sponsor_service

    request = sponsor_service.SlotRequest(
        starts_on=starts_on,
        ends_on=ends_on,
        newsletter=newsletter,
        name=name,
        text=text,
        url=url,
        image_url=image,
        label=label,
        paid=not unpaid,
    )
    with session_scope(state().engine) as session:
        slot = sponsor_service.add_slot(session, request, now=state().now())
    show(f"Booked sponsor slot {slot.id}, {_dates(slot)}: {slot.name or '(no partner yet)'}")
    if slot.empty and slot.paid:
        show(
            styled("warning:", "yellow"),
            " the slot has no partner name or link yet; preflight warns until the dates are booked again"
            " with them",
            err=True,
        )


@app.command("list")
@handle_errors
def list_(
    newsletter: Annotated[
        str, typer.Option("--newsletter", help="Only this newsletter's slots (slug).")
    ] = "",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Show the booked slots in date order; an empty paid slot is marked.

    Example: briefing sponsors list --newsletter weekend
    """
    from briefing.db import session_scope
    from briefing.service import sponsors as sponsor_service
    from briefing.store import newsletters as newsletter_store

    with session_scope(state().engine) as session:
        slots = sponsor_service.list_slots(session, newsletter=newsletter)
        slugs = {n.id: n.slug for n in newsletter_store.list_newsletters(session)}
    if as_json:
        print_json(
            {**_fields(s), "newsletter": slugs.get(s.newsletter_id, ""), "empty": s.empty} for s in slots
        )
        return
    if not slots:
        show("No sponsor slots. Book one with `briefing sponsors add`.")
        return
    table = new_table("id", "newsletter", "dates", "label", "partner", "link", "paid", title="Sponsor slots")
    for s in slots:
        partner = styled("(empty)", "yellow") if s.empty and s.paid else s.name
        add_row(table, s.id, slugs.get(s.newsletter_id, ""), _dates(s), s.label, partner, s.url, _yes(s.paid))
    console.print(table)


@app.command("remove")
@handle_errors
def remove(slot_id: Annotated[int, id_argument("Slot id (see `briefing sponsors list`).")]) -> None:
    """Cancel a booking; those dates get the standing partner block again (editions already sent keep theirs).

    Example: briefing sponsors remove 3
    """
    from briefing.db import session_scope
    from briefing.service import sponsors as sponsor_service

    with session_scope(state().engine) as session:
        slot = sponsor_service.remove_slot(session, slot_id)
    show(f"Removed sponsor slot {slot.id}, {_dates(slot)}")


def _dates(slot: "SponsorSlotData") -> str:
    start, end = slot.starts_on.isoformat(), slot.ends_on.isoformat()
    return start if start == end else f"{start} to {end}"


def _yes(value: bool) -> str:
    return "yes" if value else "no"


def _fields(slot: "SponsorSlotData") -> dict[str, object]:
    from dataclasses import asdict

    return asdict(slot)
