"""Subscriber CSV import and export through the service, on real databases."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlmodel import Session

from briefing.domain import SubscriberInput, SubscriberStatus
from briefing.errors import ImportFileError
from briefing.service import subscribers as subscriber_service
from briefing.store import subscribers as subscriber_store
from tests.fixtures.clock import T0

DATA = Path(__file__).parent / "data"


def _emails(engine: sa.Engine) -> dict[str, str]:
    with Session(engine) as s:
        return {x.email: x.status for x in subscriber_store.iter_subscribers(s)}


def test_mixed_file_reports_bad_rows_by_line_and_imports_the_rest(engine: sa.Engine, tmp_path: Path) -> None:
    rejects = tmp_path / "rejected.csv"
    report = subscriber_service.import_subscribers(
        engine, DATA / "subscribers_mixed.csv", rejects_to=rejects, now=T0
    )

    c = report.counts
    assert (c.added, c.duplicates, c.rejected) == (4, 1, 4)
    reasons = {r.line: r.reason for r in report.rejected_sample}
    assert set(reasons) == {3, 6, 8, 10}
    assert "email" in reasons[3] and "not-an-address" in reasons[3]
    assert reasons[6].startswith("name:") and "line breaks" in reasons[6]
    assert reasons[8] == "email: is empty"
    assert "erin@localhost" in reasons[10]
    assert _emails(engine) == {
        "ada@example.com": "active",
        "bob@example.com": "active",
        "dave@example.com": "active",
        "frank@example.org": "active",
    }
    with rejects.open(encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["line", "reason", "row"]
    assert [r[0] for r in rows[1:]] == ["3", "6", "8", "10"]


def test_import_never_reactivates_suppressed_addresses(engine: sa.Engine, tmp_path: Path) -> None:
    with Session(engine) as s:
        for email, status in (
            ("gone@example.com", SubscriberStatus.UNSUBSCRIBED),
            ("bounce@example.com", SubscriberStatus.BOUNCED),
            ("angry@example.com", SubscriberStatus.COMPLAINED),
        ):
            subscriber_store.add_subscriber(s, SubscriberInput(email=email), status=status, now=T0)
        s.commit()
    f = tmp_path / "list.csv"
    f.write_text(
        "email,name\nGONE@example.com,Gone\nbounce@example.com,B\nangry@example.com,A\n", encoding="utf-8"
    )

    report = subscriber_service.import_subscribers(engine, f, now=T0)

    assert report.counts.suppressed == 3 and report.counts.added == 0
    assert _emails(engine) == {
        "gone@example.com": "unsubscribed",
        "bounce@example.com": "bounced",
        "angry@example.com": "complained",
    }


def test_reimport_counts_unchanged_and_updates_names(sqlite_engine: sa.Engine, tmp_path: Path) -> None:
    f = tmp_path / "a.csv"
    f.write_text("email,name\na@example.com,A\nb@example.com,B\n", encoding="utf-8")
    subscriber_service.import_subscribers(sqlite_engine, f, now=T0)
    f.write_text("email,name\na@example.com,A\nb@example.com,Bea\nc@example.com,\n", encoding="utf-8")

    c = subscriber_service.import_subscribers(sqlite_engine, f, now=T0).counts

    assert (c.added, c.updated, c.unchanged) == (1, 1, 1)


def test_pending_import_and_bom_and_no_header(sqlite_engine: sa.Engine, tmp_path: Path) -> None:
    f = tmp_path / "bom.csv"
    f.write_bytes("\ufeffzoë@example.com,Zoë\nyann@example.org\n".encode())

    report = subscriber_service.import_subscribers(sqlite_engine, f, status=SubscriberStatus.PENDING, now=T0)

    assert report.counts.added == 2
    assert _emails(sqlite_engine) == {"zoë@example.com": "pending", "yann@example.org": "pending"}


def test_file_without_email_column_is_refused(sqlite_engine: sa.Engine, tmp_path: Path) -> None:
    f = tmp_path / "bad.csv"
    f.write_text("name,city\nAda,Leeds\n", encoding="utf-8")
    with pytest.raises(ImportFileError, match="no email column"):
        subscriber_service.import_subscribers(sqlite_engine, f, now=T0)
    assert _emails(sqlite_engine) == {}


def test_non_utf8_file_is_refused_before_any_row_is_written(sqlite_engine: sa.Engine, tmp_path: Path) -> None:
    f = tmp_path / "latin1.csv"
    f.write_bytes(b"email\nfirst@example.com\n" + "bj\xf6rn@example.com\n".encode("latin-1"))
    with pytest.raises(ImportFileError, match=r"is not UTF-8 \(byte 27\)"):
        subscriber_service.import_subscribers(sqlite_engine, f, now=T0)
    assert _emails(sqlite_engine) == {}


def test_missing_file(sqlite_engine: sa.Engine, tmp_path: Path) -> None:
    with pytest.raises(ImportFileError, match="no such file"):
        subscriber_service.import_subscribers(sqlite_engine, tmp_path / "nope.csv", now=T0)


def test_large_import_streams_in_batches(sqlite_engine: sa.Engine, tmp_path: Path) -> None:
    f = tmp_path / "big.csv"
    with f.open("w", encoding="utf-8") as handle:
        handle.write("email,name\n")
        for i in range(2500):
            handle.write(f"reader{i}@example.com,Reader {i}\n")
        handle.write("reader7@example.com,Dup\n")
    seen: list[int] = []

    report = subscriber_service.import_subscribers(sqlite_engine, f, progress=seen.append, now=T0)

    assert report.counts.added == 2500 and report.counts.duplicates == 1
    assert seen and seen == sorted(seen)


def test_export_neutralises_formulas(sqlite_engine: sa.Engine) -> None:
    with Session(sqlite_engine) as s:
        for i, name in enumerate(["=SUM(A1:A2)", "+1", "-2", "@cmd", "\tTab", "Plain"]):
            subscriber_store.add_subscriber(s, SubscriberInput(email=f"r{i}@example.com", name=name), now=T0)
        s.commit()
    out = io.StringIO()

    n = subscriber_service.export_subscribers(sqlite_engine, out)

    rows = list(csv.reader(io.StringIO(out.getvalue())))
    assert n == 6
    assert [r[1] for r in rows[1:]] == ["'=SUM(A1:A2)", "'+1", "'-2", "'@cmd", "'\tTab", "Plain"]
