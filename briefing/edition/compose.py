"""Choose and order what goes into one day's edition.

Pure on purpose: the queue, the stored articles, the date and the send time come in as plain values,
so the same inputs always give the same edition, and preview, test send and real send agree.
"""

from __future__ import annotations

import re
import string
from collections.abc import Collection, Mapping, Sequence
from datetime import UTC, date, datetime
from enum import StrEnum

from briefing.domain import (
    ArticleData,
    Briefing,
    BriefingSection,
    ComposeOptions,
    StandingBlocks,
    StoryItem,
    StoryStatus,
)
from briefing.errors import InvalidInput
from briefing.urls import url_key

__all__ = [
    "LeftOut",
    "compose_briefing",
    "format_date",
    "left_out",
    "order_sections",
    "pick_stories",
    "validate_options",
]

_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
_COLOUR_RE = re.compile(r"#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6})")
_SUBJECT_FIELDS = frozenset({"lead", "newsletter", "date", "site", "count", "also"})
_TEXT_FIELDS = frozenset({"newsletter", "site"})
_FALLBACK_SUBJECT = "{newsletter}: {date}"
_ELLIPSIS = "…"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def format_date(day: date) -> str:
    """English names regardless of the process locale, so the subject never depends on the server."""
    return f"{_DAYS[day.weekday()]} {day.day} {_MONTHS[day.month - 1]} {day.year}"


def _aware(moment: datetime) -> datetime:
    # The database stores UTC; SQLite hands it back naive. Treat naive as UTC rather than crash.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _key(name: str) -> str:
    return " ".join(name.split()).casefold()


def _check_template(template: str, allowed: frozenset[str], field: str) -> None:
    """Reject anything but plain {name} fields: format_map would otherwise allow attribute access."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise InvalidInput(f"not a valid template: {exc}", field=field) from exc
    for _literal, name, spec, conversion in parsed:
        if name is None:
            continue
        if name not in allowed or spec or conversion:
            names = ", ".join("{" + n + "}" for n in sorted(allowed))
            raise InvalidInput(f"unknown field {{{name}}}; use only {names}", field=field)


def validate_options(options: ComposeOptions) -> None:
    """Fail early, with the setting's name, on values that would break the email or leak into CSS."""
    _check_template(options.subject_template, _SUBJECT_FIELDS, "subject_template")
    _check_template(options.preheader_template, _SUBJECT_FIELDS, "preheader_template")
    _check_template(options.why_text, _TEXT_FIELDS, "why_text")
    _check_template(options.web_url_template, frozenset({"date"}), "web_url_template")
    for name in ("brand_colour", "accent_colour"):
        if not _COLOUR_RE.fullmatch(getattr(options, name)):
            raise InvalidInput("must be a hex colour such as #14213d", field=name)
    if options.more_from_count < 0:
        raise InvalidInput("must be 0 or more", field="more_from_count")
    if options.subject_max_length < 20:
        raise InvalidInput("must be at least 20", field="subject_max_length")


class LeftOut(StrEnum):
    """Why an edition does not take a queued story; the queue pages and preflight show it."""

    DRAFT = "draft"
    USED = "used"
    DROPPED = "dropped"
    OTHER_DATE = "other_date"
    EMBARGOED = "embargoed"
    EXPIRED = "expired"
    DUPLICATE = "duplicate"  # an earlier story in the queue has the same link


def left_out(story: StoryItem, edition_date: date, now: datetime) -> LeftOut | None:
    """The one rule for taking a story, judged alone at the send time `now`; None: it goes in."""
    if story.status != StoryStatus.READY:
        if story.status == StoryStatus.USED:
            return LeftOut.USED
        return LeftOut.DROPPED if story.status == StoryStatus.DROPPED else LeftOut.DRAFT
    if story.edition_date is not None and story.edition_date != edition_date:
        return LeftOut.OTHER_DATE
    if story.embargo_until is not None and _aware(story.embargo_until) > now:
        return LeftOut.EMBARGOED
    if story.expires_at is not None and _aware(story.expires_at) <= now:
        return LeftOut.EXPIRED
    return None


def pick_stories(
    stories: Sequence[StoryItem], edition_date: date, now: datetime
) -> tuple[list[StoryItem], dict[int, LeftOut]]:
    """The stories the edition sent at `now` takes, in queue order, and why it leaves out each other one."""
    now = _aware(now)
    taken: list[StoryItem] = []
    reasons: dict[int, LeftOut] = {}
    seen_urls: set[str] = set()
    for story in sorted(stories, key=lambda s: (s.position, s.id)):
        reason = left_out(story, edition_date, now)
        url = url_key(story.url)
        if reason is None and url and url in seen_urls:
            reason = LeftOut.DUPLICATE  # the same link twice reads as a mistake
        if reason is not None:
            reasons[story.id] = reason
            continue
        seen_urls.add(url)
        taken.append(story)
    return taken, reasons


def order_sections(
    stories: Sequence[StoryItem], options: ComposeOptions
) -> list[tuple[str, list[StoryItem]]]:
    """Sections in `section_order`, then the others by name, the default section last; the queue too."""
    configured = [name for name in options.section_order if name.strip()]
    display: dict[str, str] = {}
    for name in configured:
        display.setdefault(_key(name), name.strip())
    default_key = _key(options.default_section)
    groups: dict[str, list[StoryItem]] = {}
    for story in stories:
        key = _key(story.section) or default_key
        display.setdefault(key, story.section.strip() or options.default_section)
        groups.setdefault(key, []).append(story)
    configured_keys = list(dict.fromkeys(_key(name) for name in configured))
    others = sorted(
        (k for k in groups if k not in configured_keys and k != default_key), key=lambda k: display[k]
    )
    order = configured_keys + others
    if default_key not in order:
        order.append(default_key)
    return [(display[k], sorted(groups[k], key=lambda s: (s.position, s.id))) for k in order if k in groups]


def _shorten(text: str, limit: int) -> str:
    """Cut at a word boundary so a subject never ends mid-word."""
    if len(text) <= limit:
        return text
    if limit <= 1:
        return _ELLIPSIS[:limit]
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if space > limit // 2:
        cut = cut[:space]
    return cut.rstrip(" ,;:-–—") + _ELLIPSIS


def _fill(template: str, values: Mapping[str, str]) -> str:
    """Use the fallback when a field the template needs is empty, rather than send " | Name"."""
    used = {name for _l, name, _s, _c in string.Formatter().parse(template) if name}
    if any(not values.get(name) for name in used):
        template = _FALLBACK_SUBJECT
    return " ".join(template.format_map(values).split())


def _subject(template: str, values: dict[str, str], limit: int) -> tuple[str, bool]:
    subject = _fill(template, values)
    if len(subject) <= limit or not values["lead"]:
        return subject, False
    overflow = len(subject) - limit
    lead = values["lead"]
    shorter = _shorten(lead, max(len(lead) - overflow, 12))
    return _fill(template, {**values, "lead": shorter}), True


def _more_from(
    articles: Sequence[ArticleData],
    chosen: Sequence[StoryItem],
    now: datetime,
    count: int,
    recent_article_ids: Collection[int],
    recent_urls: Collection[str],
) -> tuple[ArticleData, ...]:
    skip_ids = {s.article_id for s in chosen if s.article_id is not None} | set(recent_article_ids)
    skip_urls = {url_key(s.url) for s in chosen} | {url_key(u) for u in recent_urls}

    def when(article: ArticleData) -> datetime:
        moment = article.published_at or article.created_at
        return _aware(moment) if moment is not None else _EPOCH

    picked: list[ArticleData] = []
    seen: set[str] = set()
    for article in sorted(articles, key=lambda a: (when(a), a.id), reverse=True):
        if len(picked) >= count:
            break
        url = url_key(article.url)
        if article.id in skip_ids or url in skip_urls or url in seen or not url or not article.title.strip():
            continue
        if article.published_at is not None and _aware(article.published_at) > now:
            continue  # scheduled on the site, not public yet
        seen.add(url)
        picked.append(article)
    return tuple(picked)


def compose_briefing(
    stories: Sequence[StoryItem],
    articles: Sequence[ArticleData],
    edition_date: date,
    now: datetime,
    options: ComposeOptions,
    recent_article_ids: Collection[int] = (),
    recent_urls: Collection[str] = (),
) -> Briefing:
    """Build the edition for `edition_date` as it should read when sent at `now`.

    `now` is the send time, not the compose time, so embargoes and expiries match what readers get.
    `recent_article_ids` / `recent_urls` are what the previous `more_from_exclude_editions` editions
    featured; the caller looks them up so this stays free of storage.
    """
    validate_options(options)
    now = _aware(now)

    eligible, _left_out = pick_stories(stories, edition_date, now)

    grouped = order_sections(eligible, options)
    lead: StoryItem | None = None
    marked = [s for _name, group in grouped for s in group if s.lead]
    if marked:
        lead = marked[0]
    elif grouped:
        lead = grouped[0][1][0]
    sections = tuple(
        BriefingSection(name=name, stories=tuple(s for s in group if s is not lead))
        for name, group in grouped
    )
    sections = tuple(section for section in sections if section.stories)
    chosen = ([lead] if lead else []) + [s for section in sections for s in section.stories]

    date_label = format_date(edition_date)
    others = [s.headline.strip() for s in chosen[1:3]]
    values = {
        "lead": " ".join(lead.headline.split()) if lead else "",
        "newsletter": options.newsletter_name.strip(),
        "date": date_label,
        "site": options.site_name.strip(),
        "count": str(len(chosen)),
        "also": "; ".join(h for h in others if h),
    }
    subject, trimmed = _subject(options.subject_template, values, options.subject_max_length)
    preheader = _shorten(_fill(options.preheader_template, values), options.preheader_max_length)

    blocks = StandingBlocks(
        editor_note=options.editor_note.strip(),
        tip_heading=options.tip_heading.strip(),
        tip_text=options.tip_text.strip(),
        tip_contact=options.tip_contact.strip(),
        support_heading=options.support_heading.strip(),
        support_text=options.support_text.strip(),
        support_label=options.support_label.strip(),
        support_url=options.support_url.strip(),
        partner_name=options.partner_name.strip(),
        partner_text=options.partner_text.strip(),
        partner_url=options.partner_url.strip(),
        partner_label=options.partner_label.strip(),
        postal_address=options.postal_address.strip(),
        why_text=options.why_text.format_map(
            {"newsletter": values["newsletter"], "site": values["site"]}
        ).strip(),
    )
    web_url = (
        options.web_url_template.format_map({"date": edition_date.isoformat()})
        if options.web_url_template
        else ""
    )
    return Briefing(
        edition_date=edition_date,
        date_label=date_label,
        subject=subject,
        preheader=preheader,
        newsletter_name=values["newsletter"],
        site_name=values["site"],
        site_url=options.site_url.strip(),
        lead=lead,
        sections=sections,
        more_from=_more_from(articles, chosen, now, options.more_from_count, recent_article_ids, recent_urls),
        blocks=blocks,
        brand_name=options.brand_name.strip() or values["site"],
        brand_colour=options.brand_colour,
        accent_colour=options.accent_colour,
        logo_url=options.logo_url.strip(),
        web_url=web_url,
        subscribe_url=options.subscribe_url.strip(),
        story_thumbnails=options.story_thumbnails,
        greeting=options.greeting,
        configured_sections=tuple(n.strip() for n in options.section_order if n.strip()),
        subject_trimmed=trimmed,
    )
