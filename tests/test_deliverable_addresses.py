"""Only addresses the relay can carry get on the list, by every door: sign-up, CLI add, import.

An address with non-ASCII before the @ needs SMTPUTF8, which most relays (and, by default, our
message builder) do not offer, so it is refused unless BRIEFING_SMTP_SMTPUTF8 says the relay takes
it. Text that holds undecodable bytes (lone surrogates) is refused with a clear error, never stored.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlmodel import Session, col, select

from briefing.domain import SubscriberStatus
from briefing.errors import InvalidInput
from briefing.mail.headers import check_address, validate_address
from briefing.mail.transport import MemoryTransport
from briefing.models import Subscriber
from briefing.service import subscribers as subscriber_service
from briefing.web.app import create_app
from tests.fixtures.cli import cli_env, ok, run
from tests.fixtures.clock import T0, ManualClock
from tests.fixtures.web import BASE_URL, FIXED_NOW, web_settings_for

NEEDS_SMTPUTF8 = "needs SMTPUTF8, which the relay is not set to support"


def stored(engine: sa.Engine) -> list[str]:
    with Session(engine) as session:
        return list(session.exec(select(Subscriber.email).order_by(col(Subscriber.id))).all())


def test_an_address_that_needs_smtputf8_is_refused_naming_the_field_and_why() -> None:
    with pytest.raises(InvalidInput, match=NEEDS_SMTPUTF8) as refused:
        subscriber_service.subscriber_input("café@example.com")
    assert refused.value.field == "email"
    accepted = subscriber_service.subscriber_input("café@example.com", allow_smtputf8=True)
    assert accepted.email == "café@example.com"


@pytest.mark.parametrize(
    ("email", "name", "field"),
    [
        ("caf\udce9@example.com", "", "email"),
        ("reader@exampl\udce9.com", "", "email"),
        ("z@example.com", "Zo\udceb", "name"),
    ],
)
@pytest.mark.parametrize("allow_smtputf8", [False, True])
def test_undecodable_bytes_are_refused_whatever_the_relay(
    email: str, name: str, field: str, allow_smtputf8: bool
) -> None:
    with pytest.raises(InvalidInput, match="not valid Unicode") as refused:
        subscriber_service.subscriber_input(email, name, allow_smtputf8=allow_smtputf8)
    assert refused.value.field == field


def test_what_sign_up_accepts_the_message_builder_can_address() -> None:
    """Sign-up and briefing.mail.headers agree: no address is stored that no message could carry."""
    for typed in ("Reader@Example.COM", "reader@bücher.example.com", "o'brien+news@example.org"):
        address = subscriber_service.subscriber_input(typed).email
        assert check_address(address, "email") == address  # the per-reader check of every send
        assert validate_address(address, "email") == address  # the edition-level check
    assert subscriber_service.subscriber_input("reader@bücher.example.com").email == (
        "reader@xn--bcher-kva.example.com"
    )


@pytest.fixture
def sign_up_page(sqlite_url: str, sqlite_engine: sa.Engine) -> Iterator[Callable[..., TestClient]]:
    """The readers' pages on the test database; keyword arguments are settings."""
    opened: list[TestClient] = []

    def open_page(**settings: object) -> TestClient:
        app = create_app(
            web_settings_for(sqlite_url, **settings),
            engine=sqlite_engine,
            transport=MemoryTransport(),
            clock=ManualClock(FIXED_NOW),
        )
        opened.append(TestClient(app, base_url=BASE_URL, follow_redirects=False).__enter__())
        return opened[-1]

    yield open_page
    for client in opened:
        client.__exit__(None, None, None)


def test_the_sign_up_page_refuses_it_and_stores_nothing(
    sign_up_page: Callable[..., TestClient], sqlite_engine: sa.Engine
) -> None:
    answer = sign_up_page().post("/subscribe", data={"email": "café@example.com"})
    assert answer.status_code == 400
    assert "email: &#39;café@example.com&#39; " + NEEDS_SMTPUTF8 in answer.text
    assert stored(sqlite_engine) == []

    relay_takes_it = sign_up_page(smtp_smtputf8=True)
    assert relay_takes_it.post("/subscribe", data={"email": "café@example.com"}).status_code == 200
    assert stored(sqlite_engine) == ["café@example.com"]


def test_the_cli_refuses_it_and_stores_nothing(tmp_path: Path) -> None:
    env = cli_env(tmp_path)
    code, out = run(env, "subscribers", "add", "café@example.com")
    assert code != 0 and NEEDS_SMTPUTF8 in out and "Traceback" not in out
    assert "café" not in ok(env, "subscribers", "export")

    ok(cli_env(tmp_path, smtp_smtputf8="true"), "subscribers", "add", "café@example.com")
    assert "café@example.com" in ok(env, "subscribers", "export")


def test_an_import_rejects_the_row_with_its_line_and_keeps_the_others(
    sqlite_engine: sa.Engine, tmp_path: Path
) -> None:
    rows = tmp_path / "list.csv"
    rows.write_text("email,name\nada@example.com,Ada\nzoë@example.com,Zoë\n", encoding="utf-8")

    report = subscriber_service.import_subscribers(
        sqlite_engine, rows, status=SubscriberStatus.ACTIVE, now=T0
    )
    assert (report.counts.added, report.counts.rejected) == (1, 1)
    assert report.rejected_sample[0].line == 3 and NEEDS_SMTPUTF8 in report.rejected_sample[0].reason
    assert stored(sqlite_engine) == ["ada@example.com"]

    again = subscriber_service.import_subscribers(sqlite_engine, rows, allow_smtputf8=True, now=T0)
    assert (again.counts.added, again.counts.rejected) == (1, 0)
    assert stored(sqlite_engine) == ["ada@example.com", "zoë@example.com"]


def test_an_address_stored_before_can_still_be_found_to_erase_it(sqlite_engine: sa.Engine) -> None:
    """Refusing new ones must not strand old rows: erasure and unsubscribe look every form up."""
    with Session(sqlite_engine) as session:
        subscriber_service.add_subscriber(session, "café@example.com", allow_smtputf8=True, now=T0)
        subscriber_service.add_subscriber(session, "reader@bücher.example.com", now=T0)
        session.commit()
    with Session(sqlite_engine) as session:
        assert subscriber_service.subscriber_by_email(session, "café@example.com").email == "café@example.com"
        found = subscriber_service.subscriber_by_email(session, "READER@bücher.example.com")
        assert found.email == "reader@xn--bcher-kva.example.com"
