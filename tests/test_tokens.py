from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from itsdangerous import URLSafeSerializer

from briefing import links
from briefing.errors import InvalidInput, TokenExpired, TokenInvalid
from briefing.links import LinkSigner, confirm_url, preferences_url, unsubscribe_url

SIGNER = LinkSigner(["an-old-secret-key-for-tests", "the-current-secret-key-for-tests"])
NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)  # confirm tokens are minted and read at a chosen time


def test_unsubscribe_round_trip() -> None:
    token = SIGNER.unsubscribe_token(42)
    assert SIGNER.read_unsubscribe(token) == (42, 1)
    assert SIGNER.read_unsubscribe(SIGNER.unsubscribe_token(7, token_version=3)) == (7, 3)
    assert len(token) < 60


def test_preferences_round_trip_and_separate_from_unsubscribe() -> None:
    token = SIGNER.preferences_token(42, 2)
    assert SIGNER.read_preferences(token) == (42, 2)
    with pytest.raises(TokenInvalid):
        SIGNER.read_unsubscribe(token)
    with pytest.raises(TokenInvalid):
        SIGNER.read_preferences(SIGNER.unsubscribe_token(42, 2))


def test_unsubscribe_tokens_never_expire() -> None:
    # No timestamp is signed in, so a year-old token reads like a new one.
    token = SIGNER.unsubscribe_token(5)
    assert "." in token and token.count(".") == 1
    assert SIGNER.read_unsubscribe(token) == (5, 1)


def test_confirm_round_trip_email_and_id() -> None:
    token = SIGNER.confirm_token("alice@example.com", now=NOW)
    assert SIGNER.read_confirm(token, max_age=60, now=NOW) == "alice@example.com"
    assert SIGNER.read_confirm(SIGNER.confirm_token(42, now=NOW), max_age=60, now=NOW) == 42


def test_confirm_expires() -> None:
    token = SIGNER.confirm_token("alice@example.com", now=NOW)
    week = timedelta(days=7)
    assert SIGNER.read_confirm(token, max_age=week, now=NOW + week) == "alice@example.com"
    with pytest.raises(TokenExpired):
        SIGNER.read_confirm(token, max_age=week, now=NOW + week + timedelta(seconds=1))
    with pytest.raises(TokenExpired):
        SIGNER.read_confirm(token, max_age=7 * 86400, now=NOW + timedelta(days=8))


def test_confirm_token_bytes_are_unchanged() -> None:
    # Minted by itsdangerous' stock URLSafeTimedSerializer at NOW: links already in inboxes keep working,
    # and what is minted now is what itsdangerous itself would mint at that instant.
    golden = {
        "s42.p": "InM0Mi5wIg.awwTwA.ownHRGSaDI_WxamsGaqf6plFy4k",
        42: "NDI.awwTwA.eiCO0RVWTIvDGP5G86OZKi9xiNg",
    }
    for subject, token in golden.items():
        assert SIGNER.confirm_token(subject, now=NOW) == token
        assert SIGNER.read_confirm(token, max_age=60, now=NOW + timedelta(seconds=30)) == subject


def test_confirm_time_must_be_aware() -> None:
    with pytest.raises(InvalidInput):
        SIGNER.confirm_token(42, now=datetime(2026, 11, 29, 12, 0))
    token = SIGNER.confirm_token(42, now=NOW)
    with pytest.raises(InvalidInput):
        SIGNER.read_confirm(token, max_age=60, now=datetime(2026, 11, 29, 12, 0))


def test_purposes_are_separate() -> None:
    unsub = SIGNER.unsubscribe_token(42)
    confirm = SIGNER.confirm_token(42, now=NOW)
    with pytest.raises(TokenInvalid):
        SIGNER.read_confirm(unsub, max_age=60, now=NOW)
    with pytest.raises(TokenInvalid):
        SIGNER.read_unsubscribe(confirm)
    # Same key, no salt: still not accepted.
    raw = URLSafeSerializer("the-current-secret-key-for-tests").dumps([42, 1])
    with pytest.raises(TokenInvalid):
        SIGNER.read_unsubscribe(raw)


def test_rotation_accepts_old_key_and_signs_with_new() -> None:
    old = LinkSigner(["an-old-secret-key-for-tests"])
    token = old.unsubscribe_token(9)
    assert SIGNER.read_unsubscribe(token) == (9, 1)
    new_only = LinkSigner(["the-current-secret-key-for-tests"])
    assert new_only.read_unsubscribe(SIGNER.unsubscribe_token(9)) == (9, 1)
    with pytest.raises(TokenInvalid):
        new_only.read_unsubscribe(token)  # the old key was retired
    with pytest.raises(TokenInvalid):
        LinkSigner(["another-key"]).read_unsubscribe(SIGNER.unsubscribe_token(9))


@pytest.mark.parametrize(
    "junk",
    [
        "",
        "x",
        "' OR 1=1--",
        "A" * 10_000,
        "a.b",
        "WzQyLDFd.%00",
        "ünïcode.token",
        "../../etc/passwd",
        None,
        42,
    ],
)
def test_junk_rejected_before_any_decoding(junk: object) -> None:
    # The cheap shape check every reader runs first refuses it: no base64, JSON or HMAC work is done.
    with pytest.raises(TokenInvalid, match=r"^this link is not valid$"):
        links._precheck(junk)
    for read in (
        SIGNER.read_unsubscribe,
        SIGNER.read_preferences,
        lambda t: SIGNER.read_confirm(t, 60, now=NOW),
    ):
        with pytest.raises(TokenInvalid, match=r"^this link is not valid$"):
            read(junk)  # type: ignore[arg-type]


def test_payload_shape_is_checked() -> None:
    # Genuine signatures over payloads we never mint must still be refused.
    s = URLSafeSerializer(["the-current-secret-key-for-tests"], salt="unsubscribe-v1")
    for payload in ([True, 1], [42], [42, 1, 3], ["42", 1], [0, 1], [-3, 1], {"a": 1}, 42):
        with pytest.raises(TokenInvalid):
            SIGNER.read_unsubscribe(s.dumps(payload))


def test_bad_arguments() -> None:
    with pytest.raises(InvalidInput):
        LinkSigner([])
    with pytest.raises(InvalidInput):
        LinkSigner([""])
    with pytest.raises(InvalidInput):
        SIGNER.unsubscribe_token(0)
    with pytest.raises(InvalidInput):
        SIGNER.unsubscribe_token(True)
    with pytest.raises(InvalidInput):
        SIGNER.confirm_token("", now=NOW)
    assert "secret" not in repr(SIGNER).replace("secret keys hidden", "")


def test_urls() -> None:
    token = SIGNER.unsubscribe_token(42)
    assert (
        unsubscribe_url("https://news.example.com/", token) == f"https://news.example.com/unsubscribe/{token}"
    )
    assert (
        preferences_url("https://news.example.com", token) == f"https://news.example.com/preferences/{token}"
    )
    assert (
        confirm_url("https://news.example.com/app", token) == f"https://news.example.com/app/confirm/{token}"
    )
    with pytest.raises(InvalidInput):
        unsubscribe_url("javascript:alert(1)", token)
    with pytest.raises(TokenInvalid):
        unsubscribe_url("https://news.example.com", "../admin")


@settings(max_examples=200, deadline=None)
@given(
    subscriber_id=st.integers(min_value=1, max_value=2**40),
    version=st.integers(min_value=1, max_value=1000),
    data=st.data(),
)
def test_any_one_byte_change_fails(subscriber_id: int, version: int, data: st.DataObject) -> None:
    token = SIGNER.unsubscribe_token(subscriber_id, version)
    assert SIGNER.read_unsubscribe(token) == (subscriber_id, version)
    index = data.draw(st.integers(min_value=0, max_value=len(token) - 1))
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.!%"
    replacement = data.draw(st.sampled_from([c for c in alphabet if c != token[index]]))
    tampered = token[:index] + replacement + token[index + 1 :]
    try:
        result = SIGNER.read_unsubscribe(tampered)
    except TokenInvalid:
        return
    # base64 padding bits: a change in the last character's unused bits can decode to the same bytes.
    # Whatever is accepted must be exactly the original payload, never another subscriber.
    assert result == (subscriber_id, version)
    assert index == len(token) - 1


@settings(max_examples=100, deadline=None)
@given(email=st.emails().filter(lambda e: len(e) <= 320), data=st.data())
def test_confirm_tamper_fails(email: str, data: st.DataObject) -> None:
    token = SIGNER.confirm_token(email, now=NOW)
    assert SIGNER.read_confirm(token, max_age=60, now=NOW) == email
    index = data.draw(st.integers(min_value=0, max_value=len(token) - 1))
    replacement = data.draw(st.sampled_from([c for c in "AZaz09-_." if c != token[index]]))
    tampered = token[:index] + replacement + token[index + 1 :]
    try:
        assert SIGNER.read_confirm(tampered, max_age=60, now=NOW) == email
    except TokenInvalid:
        return
    assert index == len(token) - 1


@given(st.integers(min_value=1, max_value=2**63 - 1), st.integers(min_value=1, max_value=10**6))
@example(3_124_999_999_999_999, 1)  # long, repetitive ids: itsdangerous compresses these payloads
@example(111_111_111_111, 1)
@example(9_999_999_999, 9)  # the longest payload that never compresses (14 characters)
def test_fast_minting_matches_itsdangerous(subscriber_id: int, version: int) -> None:
    from itsdangerous import URLSafeSerializer

    signer = LinkSigner(["older-key", "newest-key"])
    for salt, mint in (
        ("unsubscribe-v1", signer.unsubscribe_token),
        ("preferences-v1", signer.preferences_token),
    ):
        reference = URLSafeSerializer(["older-key", "newest-key"], salt=salt).dumps([subscriber_id, version])
        assert mint(subscriber_id, version) == reference


def test_an_address_tag_names_one_id_and_one_address() -> None:
    tag = SIGNER.address_tag(42, "alice@example.com")
    assert len(tag) == 16 and "alice" not in tag and tag == SIGNER.address_tag(42, "alice@example.com")
    assert SIGNER.address_tag_matches(tag, 42, "alice@example.com")
    assert not SIGNER.address_tag_matches(tag, 42, "mallory@example.com"), "another address on the id"
    assert not SIGNER.address_tag_matches(tag, 43, "alice@example.com"), "the address on another id"
    for junk in ("", "x" * 16, tag[:-1], tag + "A", "ü" * 16, None, 42):
        assert not SIGNER.address_tag_matches(junk, 42, "alice@example.com")  # type: ignore[arg-type]
    assert not SIGNER.address_tag_matches(tag, 0, "alice@example.com")
    with pytest.raises(InvalidInput):
        SIGNER.address_tag(0, "alice@example.com")


def test_an_address_tag_is_keyed_and_survives_rotation() -> None:
    old = LinkSigner(["an-old-secret-key-for-tests"])
    tag = old.address_tag(7, "bo@example.com")
    assert SIGNER.address_tag_matches(tag, 7, "bo@example.com"), "minted before the key rotated"
    assert SIGNER.address_tag(7, "bo@example.com") != tag, "the newest key makes new tags"
    assert not LinkSigner(["another-key"]).address_tag_matches(tag, 7, "bo@example.com")
