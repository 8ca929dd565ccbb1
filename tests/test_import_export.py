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
            ("blocked@example.com", SubscriberStatus.BLOCKLISTED),
        ):
            subscriber_store.add_subscriber(s, SubscriberInput(email=email), status=status, now=T0)
        s.commit()
    f = tmp_path / "list.csv"
    f.write_text(
        "email,name,status\nGONE@example.com,Gone,\nbounce@example.com,B,subscribed\n"
        "angry@example.com,A,active\nblocked@example.com,Z,unsubscribed\n",
        encoding="utf-8",
    )

    report = subscriber_service.import_subscribers(engine, f, now=T0)

    assert (report.counts.kept_suppressed, report.counts.added, report.counts.suppressed) == (4, 0, 0)
    assert _emails(engine) == {
        "gone@example.com": "unsubscribed",
        "bounce@example.com": "bounced",
        "angry@example.com": "complained",
        "blocked@example.com": "blocklisted",
    }


def test_a_status_column_is_honoured_and_suppresses_readers_on_the_list(
    engine: sa.Engine, tmp_path: Path
) -> None:
    with Session(engine) as s:
        for email, status in (
            ("ada@example.com", SubscriberStatus.ACTIVE),
            ("wait@example.com", SubscriberStatus.PENDING),
            ("gone@example.com", SubscriberStatus.UNSUBSCRIBED),
        ):
            subscriber_store.add_subscriber(s, SubscriberInput(email=email), status=status, now=T0)
        s.commit()
    f = tmp_path / "mailchimp.csv"
    f.write_text(
        "Email Address,First Name,Last Name,Status\n"
        "ada@example.com,Ada,Reader,Unsubscribed\n"
        "wait@example.com,Wai,T,CLEANED\n"
        "gone@example.com,Gone,,cleaned\n"
        "new@example.com,New,Reader,subscribed\n"
        "left@example.com,Left,,unsubscribed\n"
        "asked@example.com,Asked,,pending\n",
        encoding="utf-8",
    )

    report = subscriber_service.import_subscribers(engine, f, now=T0)

    c = report.counts
    assert (c.added, c.added_suppressed, c.suppressed, c.kept_suppressed) == (2, 1, 3, 0)
    assert _emails(engine) == {
        "ada@example.com": "unsubscribed",
        "wait@example.com": "bounced",
        "gone@example.com": "bounced",  # a firmer suppression than the one it had
        "new@example.com": "active",
        "left@example.com": "unsubscribed",
        "asked@example.com": "pending",
    }
    with Session(engine) as s:
        ada = subscriber_store.get_by_email(s, "ada@example.com")
        new = subscriber_store.get_by_email(s, "new@example.com")
    assert ada.unsubscribed_at == T0 and ada.name == "", "a suppressing row changes only the status"
    assert new.name == "New Reader" and new.confirmed_at == T0


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

    report = subscriber_service.import_subscribers(
        sqlite_engine, f, status=SubscriberStatus.PENDING, allow_smtputf8=True, now=T0
    )

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


def test_an_unreadable_date_or_attributes_cell_rejects_only_its_row(
    sqlite_engine: sa.Engine, tmp_path: Path
) -> None:
    f = tmp_path / "list.csv"
    f.write_text(
        "email,consent_at,attributes\n"
        "ok@example.com,2024-03-01 09:15:00,\n"
        "when@example.com,last tuesday,\n"
        'json@example.com,,"[1, 2]"\n'
        "far@example.com,0001-01-01T00:00:00+01:00,\n",
        encoding="utf-8",
    )

    report = subscriber_service.import_subscribers(sqlite_engine, f, now=T0)

    reasons = {r.line: r.reason for r in report.rejected_sample}
    assert set(reasons) == {3, 4, 5}
    assert reasons[3].startswith("consent_at: 'last tuesday' is not a date and time")
    assert reasons[4].startswith("attributes: must be a JSON object")
    assert reasons[5].startswith("consent_at:") and "between 1900 and 2200" in reasons[5]
    assert _emails(sqlite_engine) == {"ok@example.com": "active"}


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
