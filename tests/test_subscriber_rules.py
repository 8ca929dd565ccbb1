"""The subscribe, confirm and unsubscribe rules, called as use cases on a real SQLite file.

The web pages only parse, call these and render, so each rule is checked here once, without HTTP;
tests/test_web_public.py checks that the pages answer as they should.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa
from sqlmodel import Session, SQLModel, col, select

from briefing.db import session_scope
from briefing.domain import SubscriberData, SubscriberStatus
from briefing.errors import TokenInvalid
from briefing.links import LinkSigner
from briefing.models import Delivery, Edition, Subscriber
from briefing.service import confirmations
from briefing.service import subscribers as subscriber_service
from briefing.service.confirmations import ConfirmationMail, ConfirmClaim
from briefing.service.subscribers import Confirmation
from tests.fixtures.clock import T0

SIGNER = LinkSigner(["rules-test-secret-0123456789abcdef"])
MAX_AGE = timedelta(days=7)


def sign_up(
    engine: sa.Engine, email: str, name: str = "", *, at: timedelta = timedelta()
) -> ConfirmationMail | None:
    item = subscriber_service.subscriber_input(email, name)
    with session_scope(engine) as session:
        return subscriber_service.register(session, SIGNER, item, now=T0 + at)


def claim_of(due: ConfirmationMail | None, *, at: timedelta = timedelta()) -> ConfirmClaim:
    assert due is not None, "a confirmation should be due"
    return confirmations.read_token(SIGNER, due.token, MAX_AGE, now=T0 + at)


def confirm(engine: sa.Engine, claim: ConfirmClaim, *, at: timedelta = timedelta()) -> Confirmation:
    with session_scope(engine) as session:
        return subscriber_service.confirm(session, SIGNER, claim, now=T0 + at)


def unsubscribe(engine: sa.Engine, subscriber_id: int, *, at: timedelta) -> tuple[SubscriberData, bool]:
    with session_scope(engine) as session:
        return subscriber_service.unsubscribe(session, subscriber_id, now=T0 + at)


def add(engine: sa.Engine, email: str, status: SubscriberStatus = SubscriberStatus.ACTIVE) -> SubscriberData:
    with session_scope(engine) as session:
        return subscriber_service.add_subscriber(session, email, status=status, now=T0)


def lookup(engine: sa.Engine, email: str) -> SubscriberData:
    with Session(engine) as session:
        return subscriber_service.subscriber_by_email(session, email)


# --------------------------------------------------------------------------- sign-up


def test_sign_up_leaves_a_new_address_pending_with_a_link_due(sqlite_engine: sa.Engine) -> None:
    due = sign_up(sqlite_engine, " Reader@Example.com ", "Ada")

    found = lookup(sqlite_engine, "reader@example.com")
    assert (found.status, found.source, found.name, found.confirmed_at) == ("pending", "web", "Ada", None)
    assert due is not None and due.to_address == "Reader@example.com"
    assert due.greeting == "", "a name typed into the form is not used until its owner confirms"
    assert claim_of(due) == ConfirmClaim(found.id, "p", SIGNER.address_tag(found.id, "reader@example.com"))


def test_signing_up_again_changes_nothing_but_sends_a_link(sqlite_engine: sa.Engine) -> None:
    first = claim_of(sign_up(sqlite_engine, "twice@example.com"))
    again = sign_up(sqlite_engine, "twice@example.com", "Someone Else", at=timedelta(minutes=1))
    found = lookup(sqlite_engine, "twice@example.com")
    assert found.status == "pending" and found.name == ""
    assert claim_of(again, at=timedelta(minutes=1)) == first


def test_an_active_address_gets_no_link_and_stays_active(sqlite_engine: sa.Engine) -> None:
    add(sqlite_engine, "active@example.com")
    assert sign_up(sqlite_engine, "active@example.com") is None
    assert lookup(sqlite_engine, "active@example.com").status == "active"


@pytest.mark.parametrize(
    ("status", "marker"),
    [
        (SubscriberStatus.UNSUBSCRIBED, "u"),
        (SubscriberStatus.BOUNCED, "b"),
        (SubscriberStatus.COMPLAINED, "c"),
    ],
)
def test_a_suppressed_address_signing_up_again_needs_a_fresh_confirmation(
    sqlite_engine: sa.Engine, status: SubscriberStatus, marker: str
) -> None:
    sub = add(sqlite_engine, "again@example.com", status)
    old = ConfirmClaim(sub.id, "p", SIGNER.address_tag(sub.id, "again@example.com"))

    fresh = claim_of(sign_up(sqlite_engine, "again@example.com", at=timedelta(days=1)), at=timedelta(days=1))

    assert fresh.marker.startswith(marker)
    assert lookup(sqlite_engine, "again@example.com").status == status, "asking is not confirming"
    assert confirm(sqlite_engine, old, at=timedelta(days=1)) is Confirmation.STALE
    assert lookup(sqlite_engine, "again@example.com").status == status
    assert confirm(sqlite_engine, fresh, at=timedelta(days=1, hours=1)) is Confirmation.DONE
    assert lookup(sqlite_engine, "again@example.com").status == "active"


def test_a_blocklisted_address_never_gets_a_link(sqlite_engine: sa.Engine) -> None:
    blocked = add(sqlite_engine, "blocked@example.com", SubscriberStatus.BLOCKLISTED)
    assert sign_up(sqlite_engine, "blocked@example.com") is None
    with Session(sqlite_engine) as session:
        claim = ConfirmClaim(blocked.id, "p", SIGNER.address_tag(blocked.id, "blocked@example.com"))
        renewed = subscriber_service.renew_confirmation(session, SIGNER, claim, now=T0)
    assert renewed is None
    assert confirm(sqlite_engine, claim) is Confirmation.STALE
    assert lookup(sqlite_engine, "blocked@example.com").status == "blocklisted"


# --------------------------------------------------------------------------- confirm


def test_confirm_activates_a_pending_address(sqlite_engine: sa.Engine) -> None:
    claim = claim_of(sign_up(sqlite_engine, "new@example.com"))
    with Session(sqlite_engine) as session:
        assert subscriber_service.confirmation_state(session, SIGNER, claim) is Confirmation.ASK
    assert lookup(sqlite_engine, "new@example.com").status == "pending", (
        "asking what it would do changes nothing"
    )

    assert confirm(sqlite_engine, claim, at=timedelta(hours=1)) is Confirmation.DONE
    found = lookup(sqlite_engine, "new@example.com")
    assert found.status == "active" and found.confirmed_at == T0 + timedelta(hours=1)
    assert confirm(sqlite_engine, claim, at=timedelta(hours=2)) is Confirmation.ALREADY
    assert lookup(sqlite_engine, "new@example.com").confirmed_at == T0 + timedelta(hours=1)


def test_confirm_reactivates_only_the_state_the_link_was_bound_to(sqlite_engine: sa.Engine) -> None:
    pending_link = claim_of(sign_up(sqlite_engine, "back@example.com"))
    sub = lookup(sqlite_engine, "back@example.com")
    unsubscribe(sqlite_engine, sub.id, at=timedelta(minutes=5))  # left before confirming

    assert confirm(sqlite_engine, pending_link, at=timedelta(minutes=6)) is Confirmation.STALE
    assert lookup(sqlite_engine, "back@example.com").status == "unsubscribed"

    asked_again = claim_of(
        sign_up(sqlite_engine, "back@example.com", at=timedelta(days=2)), at=timedelta(days=2)
    )
    assert asked_again.marker.startswith("u")
    assert lookup(sqlite_engine, "back@example.com").status == "unsubscribed", "asking is not confirming"
    assert confirm(sqlite_engine, asked_again, at=timedelta(days=2)) is Confirmation.DONE
    assert lookup(sqlite_engine, "back@example.com").status == "active"


def test_replayed_confirm_after_unsubscribing_does_nothing(sqlite_engine: sa.Engine) -> None:
    claim = claim_of(sign_up(sqlite_engine, "replay@example.com"))
    assert confirm(sqlite_engine, claim) is Confirmation.DONE
    sub = lookup(sqlite_engine, "replay@example.com")
    unsubscribe(sqlite_engine, sub.id, at=timedelta(minutes=5))

    assert confirm(sqlite_engine, claim, at=timedelta(minutes=6)) is Confirmation.STALE
    with Session(sqlite_engine) as session:
        assert subscriber_service.renew_confirmation(session, SIGNER, claim, now=T0) is None
    after = lookup(sqlite_engine, "replay@example.com")
    assert after.status == "unsubscribed" and after.unsubscribed_at == T0 + timedelta(minutes=5)


def test_a_confirm_link_for_an_unknown_subscriber_is_not_valid(sqlite_engine: sa.Engine) -> None:
    with pytest.raises(TokenInvalid):
        confirm(sqlite_engine, ConfirmClaim(999_999, "p", SIGNER.address_tag(999_999, "gone@example.com")))


def test_a_confirm_link_acts_only_for_the_address_it_was_sent_to(sqlite_engine: sa.Engine) -> None:
    claim = claim_of(sign_up(sqlite_engine, "first@example.com"))
    with session_scope(sqlite_engine) as session:  # the same id now holds another address
        session.execute(
            sa.update(Subscriber)
            .where(col(Subscriber.id) == claim.subscriber_id)
            .values(email="other@example.com", email_key="other@example.com")
        )
    with pytest.raises(TokenInvalid):
        confirm(sqlite_engine, claim)
    with Session(sqlite_engine) as session:
        with pytest.raises(TokenInvalid):
            subscriber_service.confirmation_state(session, SIGNER, claim)
        assert subscriber_service.renew_confirmation(session, SIGNER, claim, now=T0) is None
    assert lookup(sqlite_engine, "other@example.com").status == "pending"


def test_a_confirm_link_minted_without_an_address_tag_is_refused(sqlite_engine: sa.Engine) -> None:
    """Links from before the tag (a week's worth at most) are refused, not honoured for any holder."""
    sub = add(sqlite_engine, "early@example.com", SubscriberStatus.PENDING)
    old_style = SIGNER.confirm_token(f"s{sub.id}.p", now=T0)
    with pytest.raises(TokenInvalid):
        confirmations.read_token(SIGNER, old_style, MAX_AGE, now=T0)


def test_a_fresh_link_binds_to_the_same_state_as_the_expired_one(sqlite_engine: sa.Engine) -> None:
    old = claim_of(sign_up(sqlite_engine, "slow@example.com"))
    with Session(sqlite_engine) as session:
        fresh = subscriber_service.renew_confirmation(session, SIGNER, old, now=T0 + timedelta(days=8))
    assert fresh is not None and fresh.to_address == "slow@example.com"
    assert claim_of(fresh, at=timedelta(days=8)) == old


# --------------------------------------------------------------------------- unsubscribe


def test_unsubscribe_is_idempotent_and_keeps_the_first_timestamp(sqlite_engine: sa.Engine) -> None:
    sub = add(sqlite_engine, "stop@example.com")
    data, changed = unsubscribe(sqlite_engine, sub.id, at=timedelta(minutes=10))
    assert changed and data.unsubscribed_at == T0 + timedelta(minutes=10)
    data, changed = unsubscribe(sqlite_engine, sub.id, at=timedelta(hours=3))
    assert not changed and data.status == "unsubscribed"
    with session_scope(sqlite_engine) as session:
        _, changed = subscriber_service.unsubscribe_email(
            session, "STOP@example.com", now=T0 + timedelta(days=1)
        )
    assert not changed
    assert lookup(sqlite_engine, "stop@example.com").unsubscribed_at == T0 + timedelta(minutes=10)


def test_one_click_unsubscribe_is_idempotent_and_keeps_the_first_timestamp(sqlite_engine: sa.Engine) -> None:
    sub = add(sqlite_engine, "click@example.com")
    for minutes in (10, 20, 600):
        with sqlite_engine.begin() as conn:
            state = subscriber_service.unsubscribe_by_link(
                conn, sub.id, 1, now=T0 + timedelta(minutes=minutes)
            )
        assert state.subscriber.status == "unsubscribed"
    assert lookup(sqlite_engine, "click@example.com").unsubscribed_at == T0 + timedelta(minutes=10)


@pytest.mark.parametrize(
    "status", [SubscriberStatus.BOUNCED, SubscriberStatus.COMPLAINED, SubscriberStatus.BLOCKLISTED]
)
def test_bounced_complained_and_blocklisted_stay_so_by_every_door(
    sqlite_engine: sa.Engine, status: SubscriberStatus
) -> None:
    sub = add(sqlite_engine, "kept@example.com", status)
    data, changed = unsubscribe(sqlite_engine, sub.id, at=timedelta(minutes=1))
    assert not changed and data.status == status
    with sqlite_engine.begin() as conn:
        assert subscriber_service.unsubscribe_by_link(conn, sub.id, 1, now=T0).subscriber.status == status
    with session_scope(sqlite_engine) as session:
        assert (
            subscriber_service.unsubscribe_from_preferences(session, sub.id, 1, now=T0).subscriber.status
            == status
        )
        assert subscriber_service.resubscribe(session, sub.id, 1, now=T0).subscriber.status == status
    found = lookup(sqlite_engine, "kept@example.com")
    assert found.status == status and found.unsubscribed_at is None


def test_resubscribe_brings_back_only_an_unsubscribed_address(sqlite_engine: sa.Engine) -> None:
    sub = add(sqlite_engine, "oops@example.com")
    with session_scope(sqlite_engine) as session:
        left = subscriber_service.unsubscribe_from_preferences(session, sub.id, 1, now=T0)
    assert left.subscriber.status == "unsubscribed"
    with session_scope(sqlite_engine) as session:
        assert subscriber_service.resubscribe(session, sub.id, 1, now=T0).subscriber.status == "active"
        assert subscriber_service.resubscribe(session, sub.id, 1, now=T0).subscriber.status == "active"


def test_an_old_link_still_unsubscribes_but_cannot_resubscribe(sqlite_engine: sa.Engine) -> None:
    sub = add(sqlite_engine, "revoked@example.com")
    with session_scope(sqlite_engine) as session:  # links of version 1 are revoked
        session.execute(sa.update(Subscriber).where(col(Subscriber.id) == sub.id).values(token_version=2))
    with Session(sqlite_engine) as session:
        assert subscriber_service.unsubscribe_link_state(session, sub.id, 1).subscriber.id == sub.id
        with pytest.raises(TokenInvalid):
            subscriber_service.unsubscribe_link_state(session, sub.id, 3)  # a version it never had
        with pytest.raises(TokenInvalid):
            subscriber_service.current_link_state(session, sub.id, 1)
    with sqlite_engine.begin() as conn:
        subscriber_service.unsubscribe_by_link(conn, sub.id, 1, now=T0)
    with session_scope(sqlite_engine) as session, pytest.raises(TokenInvalid):
        subscriber_service.resubscribe(session, sub.id, 1, now=T0)
    assert lookup(sqlite_engine, "revoked@example.com").status == "unsubscribed"
    with sqlite_engine.begin() as conn, pytest.raises(TokenInvalid):
        subscriber_service.unsubscribe_by_link(conn, 999_999, 1, now=T0)


# --------------------------------------------------------------------------- erasure


def _rows_naming(engine: sa.Engine, subscriber_id: int, address: str) -> list[str]:
    """Every row of every table that still holds the subscriber's id or address."""
    found = []
    with engine.connect() as conn:
        for table in SQLModel.metadata.sorted_tables:
            for column in table.columns:
                names_reader = any(fk.column.table.name == "subscriber" for fk in column.foreign_keys) or (
                    table.name == "subscriber" and column.name == "id"
                )
                if names_reader:
                    hit = conn.execute(sa.select(sa.func.count()).where(column == subscriber_id)).scalar()
                elif isinstance(getattr(column.type, "impl", column.type), sa.String | sa.JSON):
                    text = sa.cast(column, sa.Text)
                    hit = conn.execute(
                        sa.select(sa.func.count()).where(sa.func.lower(text).contains(address))
                    ).scalar()
                else:
                    continue
                if hit:
                    found.append(f"{table.name}.{column.name}")
    return found


def test_erasing_a_reader_leaves_no_row_that_names_them(engine: sa.Engine) -> None:
    """A privacy request: the row, the ledger's copies and anything else keyed to them go."""
    gone = add(engine, "gone@example.com")
    kept = add(engine, "kept@example.com")
    with session_scope(engine) as session:
        edition = Edition(edition_date=T0.date(), status="sent", created_at=T0, updated_at=T0)
        session.add(edition)
        session.flush()
        for reader in (gone, kept):
            session.add(
                Delivery(
                    edition_id=edition.id,
                    subscriber_id=reader.id,
                    email=reader.email,
                    status="sent",
                    updated_at=T0,
                )
            )
    assert _rows_naming(engine, gone.id, "gone@example.com") != [], "the check must see the rows first"

    with session_scope(engine) as session:
        erased = subscriber_service.delete_subscriber_email(session, "GONE@example.com")

    assert erased.id == gone.id
    assert _rows_naming(engine, gone.id, "gone@example.com") == []
    assert lookup(engine, "kept@example.com").status == "active"
    assert {"subscriber.email", "delivery.email", "delivery.subscriber_id"} <= set(
        _rows_naming(engine, kept.id, "kept@example.com")
    ), "only the erased reader goes"
    with Session(engine) as session:
        assert [d.subscriber_id for d in session.exec(select(Delivery)).all()] == [kept.id]
