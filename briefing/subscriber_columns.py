"""What the columns of a subscriber file mean, as briefing, Mailchimp and listmonk write them.

A list that arrives from another tool carries the readers' history: who unsubscribed there, whose
mail bounced ("cleaned" in Mailchimp), who is blocklisted (listmonk). Reading those words, and the
dates and attributes beside them, is what keeps an import from mailing people who left. Each
function raises InvalidInput naming the column, so the row is rejected with its line.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from briefing import inputs
from briefing.domain import SubscriberStatus
from briefing.errors import InvalidInput

# Status words as other tools write them. None: subscribed, so the import's own --status applies.
IMPORT_STATUSES: dict[str, SubscriberStatus | None] = {
    "subscribed": None,
    "active": None,
    "confirmed": None,
    "enabled": None,  # listmonk
    "pending": SubscriberStatus.PENDING,
    "unconfirmed": SubscriberStatus.PENDING,  # listmonk, a list subscription
    "unsubscribed": SubscriberStatus.UNSUBSCRIBED,
    "cleaned": SubscriberStatus.BOUNCED,  # Mailchimp: hard-bounced, or soft-bounced too often
    "bounced": SubscriberStatus.BOUNCED,
    "complained": SubscriberStatus.COMPLAINED,
    "abuse": SubscriberStatus.COMPLAINED,
    "spam": SubscriberStatus.COMPLAINED,
    "blocklisted": SubscriberStatus.BLOCKLISTED,  # listmonk
    "blacklisted": SubscriberStatus.BLOCKLISTED,
}
# The reasons suppression lists give, read only by `subscribers suppress` (other text: its --status).
SUPPRESSION_REASONS = {
    "bounce": SubscriberStatus.BOUNCED,
    "hard bounce": SubscriberStatus.BOUNCED,
    "hardbounce": SubscriberStatus.BOUNCED,
    "hard_bounce": SubscriberStatus.BOUNCED,
    "complaint": SubscriberStatus.COMPLAINED,
    "spam complaint": SubscriberStatus.COMPLAINED,
    "spamcomplaint": SubscriberStatus.COMPLAINED,
    "unsubscribe": SubscriberStatus.UNSUBSCRIBED,
}
KNOWN_STATUSES = "subscribed, pending, unsubscribed, cleaned, bounced, complained or blocklisted"
# Go's time.Time.String(), as listmonk's export writes it: "2024-03-01 10:00:00.5 +0000 UTC".
MAX_ATTRIBUTE_DEPTH = 8
_GO_TIME = re.compile(r"(\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d)(\.\d+)? ([+-]\d\d):?(\d\d)(?: [A-Za-z]+)?")


def import_status(value: str) -> SubscriberStatus | None:
    """The status a file's cell means (None: subscribed, so the import decides); InvalidInput if unknown."""
    word = value.strip().casefold()
    if not word:
        return None
    if word not in IMPORT_STATUSES:
        raise InvalidInput(
            f"{word[:40]!r} is not a status briefing knows; use {KNOWN_STATUSES}", field="status"
        )
    return IMPORT_STATUSES[word]


def row_status(status: str, reason: str, suppression: bool) -> SubscriberStatus | None:
    """The status a row asks for. A suppression list names its addresses to suppress them, so
    there a word that is not a suppression (or is unknown) leaves the command's status to apply."""
    if not suppression:
        return import_status(status)
    for text in (status, reason):
        word = text.strip().casefold()
        found = IMPORT_STATUSES.get(word) or SUPPRESSION_REASONS.get(word)
        if found is not None and found is not SubscriberStatus.PENDING:
            return found
    return None


def attributes(text: str) -> dict[str, Any]:
    """A JSON object of attributes (listmonk's `attributes`, briefing's own export), kept as its
    values are (numbers stay numbers) once every text in it passes the one-line rule."""
    if not text.strip():
        return {}
    try:
        value = inputs.json_value(text, max_depth=MAX_ATTRIBUTE_DEPTH)
    except InvalidInput as exc:
        raise InvalidInput(str(exc), field="attributes") from None
    if not isinstance(value, dict):
        raise InvalidInput('must be a JSON object such as {"city": "Leeds"}', field="attributes")
    cleaned = _attribute_value(value, "attributes")
    assert isinstance(cleaned, dict)
    return cleaned


def _attribute_value(value: Any, field: str) -> Any:
    if isinstance(value, str):
        return inputs.one_line(value, field=field, max_len=500)
    if isinstance(value, list):
        return [_attribute_value(v, field) for v in value]
    if isinstance(value, dict):
        return {
            inputs.one_line(k, field=field, max_len=100, required=True): _attribute_value(
                v, f"attributes.{k[:40]}"
            )
            for k, v in value.items()
        }
    return value  # a number, true, false or null


def import_moment(value: str, *, field: str) -> datetime | None:
    """A moment from another tool's export: ISO 8601, "YYYY-MM-DD HH:MM:SS" (read as UTC), or
    listmonk's "2024-03-01 10:00:00.5 +0000 UTC". None for an empty cell."""
    text = value.strip()
    if not text:
        return None
    go = _GO_TIME.fullmatch(text)
    if go:
        text = f"{go[1]}{(go[2] or '')[:7]}{go[3]}:{go[4]}"
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(
            f"{text[:40]!r} is not a date and time such as 2026-11-27T18:30:00+00:00", field=field
        ) from None
    return inputs.moment(parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC), field=field)
