"""Reader links stay bound to the reader they were sent to, also after that reader is erased.

An erased reader's kept links (preferences, unsubscribe, confirm) must do nothing to whoever signs
up next, and must answer exactly as a link that was never minted. Runs through the readers' pages
on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import email
import re
from collections.abc import Iterator
from email.policy import default as default_policy
from urllib.parse import urlsplit

import httpx
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from briefing.db import session_scope
from briefing.domain import SubscriberData, SubscriberStatus
from briefing.links import LinkSigner
from briefing.mail.transport import MemoryTransport
from briefing.models import Subscriber
from briefing.service import subscribers as subscriber_service
from briefing.web.app import create_app
from tests.fixtures.clock import ManualClock
from tests.fixtures.web import BASE_URL, FIXED_NOW, LINK_SECRET, web_settings_for

pytestmark = pytest.mark.timeout(120)

SIGNER = LinkSigner([LINK_SECRET])
_CONFIRM_RE = re.compile(r"https://news\.example\.com/confirm/[A-Za-z0-9_\-.]+")
_NONCE_RE = re.compile(r'nonce="[^"]*"')


@pytest.fixture
def reader(db_url: str, engine: sa.Engine, mailbox: MemoryTransport) -> Iterator[TestClient]:
    app = create_app(web_settings_for(db_url), engine=engine, transport=mailbox, clock=ManualClock(FIXED_NOW))
    with TestClient(app, base_url=BASE_URL, follow_redirects=False) as client:
        yield client


def sign_up(client: TestClient, mailbox: MemoryTransport, address: str) -> str:
    """Subscribe through the form; returns the path of the confirm link that was mailed."""
    before = len(mailbox.messages)
    assert client.post("/subscribe", data={"email": address}).status_code == 200
    assert len(mailbox.messages) == before + 1
    message = email.message_from_bytes(mailbox.messages[-1].data, policy=default_policy)
    text = "".join(str(p.get_content()) for p in message.walk() if p.get_content_type() == "text/plain")
    links = _CONFIRM_RE.findall(text)
    assert links, "no confirm link in the message"
    return urlsplit(links[0]).path


def lookup(engine: sa.Engine, address: str) -> SubscriberData:
    with session_scope(engine) as session:
        return subscriber_service.subscriber_by_email(session, address)


def erase(engine: sa.Engine, address: str) -> None:
    with session_scope(engine) as session:
        subscriber_service.delete_subscriber_email(session, address)


def page(response: httpx.Response) -> tuple[int, str]:
    """Status and body, minus the per-request nonce, to compare two answers."""
    return response.status_code, _NONCE_RE.sub("", response.text)


def test_an_erased_readers_links_do_nothing_to_the_next_reader(
    reader: TestClient, mailbox: MemoryTransport, engine: sa.Engine
) -> None:
    kept_confirm = sign_up(reader, mailbox, "gone@example.com")
    gone = lookup(engine, "gone@example.com")
    kept_preferences = f"/preferences/{SIGNER.preferences_token(gone.id, 1)}"
    kept_unsubscribe = f"/unsubscribe/{SIGNER.unsubscribe_token(gone.id, 1)}"
    erase(engine, "gone@example.com")

    own_confirm = sign_up(reader, mailbox, "newcomer@example.com")
    newcomer = lookup(engine, "newcomer@example.com")
    assert newcomer.id != gone.id, "an erased reader's id went to the next sign-up"

    # The erased reader's confirm link: consent is the newcomer's to give, not the link holder's.
    assert reader.get(kept_confirm).status_code == 400
    assert reader.post(kept_confirm).status_code == 400
    assert lookup(engine, "newcomer@example.com").status == SubscriberStatus.PENDING

    assert reader.post(own_confirm).status_code == 200
    assert lookup(engine, "newcomer@example.com").status == SubscriberStatus.ACTIVE

    shown = reader.get(kept_preferences)
    assert shown.status_code == 400 and "newcomer" not in shown.text and "n***" not in shown.text
    assert reader.post(kept_preferences, data={"action": "unsubscribe"}).status_code == 400
    assert reader.get(kept_unsubscribe).status_code == 400
    assert reader.post(kept_unsubscribe).status_code == 400
    after = lookup(engine, "newcomer@example.com")
    assert (after.status, after.unsubscribed_at) == (SubscriberStatus.ACTIVE, None)


def test_a_kept_confirm_link_never_confirms_another_address_on_the_same_id(
    reader: TestClient, mailbox: MemoryTransport, engine: sa.Engine
) -> None:
    """Even if an id came back, the link names the address it was mailed to, not only the id."""
    kept_confirm = sign_up(reader, mailbox, "attacker@example.com")
    reused_id = lookup(engine, "attacker@example.com").id
    erase(engine, "attacker@example.com")
    with engine.begin() as conn:  # a row that took the id over, as SQLite did before AUTOINCREMENT
        conn.execute(
            sa.insert(Subscriber).values(
                id=reused_id,
                email="victim@example.com",
                email_key="victim@example.com",
                name="",
                status=SubscriberStatus.PENDING.value,
                source="web",
                soft_bounce_count=0,
                token_version=1,
                attributes={},
                created_at=FIXED_NOW,
                updated_at=FIXED_NOW,
            )
        )
    mailed = len(mailbox.messages)

    assert reader.get(kept_confirm).status_code == 400
    assert reader.post(kept_confirm).status_code == 400
    assert reader.post(f"{kept_confirm}/resend").status_code == 200  # the same answer as ever ...
    assert len(mailbox.messages) == mailed  # ... but no link goes to the victim
    victim = lookup(engine, "victim@example.com")
    assert (victim.status, victim.confirmed_at) == (SubscriberStatus.PENDING, None)


def test_a_link_for_an_erased_id_answers_as_a_link_never_minted(
    reader: TestClient, mailbox: MemoryTransport, engine: sa.Engine
) -> None:
    kept_confirm = sign_up(reader, mailbox, "erased@example.com")
    erased = lookup(engine, "erased@example.com")
    erase(engine, "erased@example.com")
    never = 987_654_321  # an id no row ever had
    never_confirm_token = SIGNER.confirm_token(
        f"s{never}.p.{SIGNER.address_tag(never, 'erased@example.com')}", now=FIXED_NOW
    )
    pairs = [
        ("get", kept_confirm, f"/confirm/{never_confirm_token}", None),
        ("post", kept_confirm, f"/confirm/{never_confirm_token}", None),
    ]
    for kind, mint in (("preferences", SIGNER.preferences_token), ("unsubscribe", SIGNER.unsubscribe_token)):
        kept, unknown = f"/{kind}/{mint(erased.id, 1)}", f"/{kind}/{mint(never, 1)}"
        pairs += [("get", kept, unknown, None), ("post", kept, unknown, None)]
    pairs.append(
        (
            "post",
            f"/preferences/{SIGNER.preferences_token(erased.id, 1)}",
            f"/preferences/{SIGNER.preferences_token(never, 1)}",
            {"action": "unsubscribe"},
        )
    )
    for method, kept, unknown, data in pairs:
        send = getattr(reader, method)
        extra = {} if data is None else {"data": data}
        answer = page(send(kept, **extra))
        assert answer[0] == 400, (method, kept)
        assert answer == page(send(unknown, **extra)), (method, kept)
