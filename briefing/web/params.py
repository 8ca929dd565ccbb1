"""The parameters many routes share, checked in one place: ids of stored rows.

Ids are 64-bit signed integers in both databases. Anything outside 1..2**63-1 can name no row,
and handing it to the driver fails inside it (SQLite overflows, PostgreSQL errors), so a path id
out of range is refused before the route runs (the error handler answers 404), and a form's id
field is turned into an InvalidInput that names it.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Path

from briefing.domain import MAX_ID
from briefing.inputs import record_id

# A path segment naming a row: out of range (or not a number) it matches no row, hence no page.
RowId = Annotated[int, Path(ge=1, le=MAX_ID, strict=False)]


def form_id(value: str, *, field: str) -> int | None:
    """A row id chosen in a form (a <select> of stored rows); empty means none was chosen."""
    text = value.strip()
    return record_id(text, field=field) if text else None
