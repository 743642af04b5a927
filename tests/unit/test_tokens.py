"""Join tokens (server/core/tokens.py): signed for one room, expiring, compact, refused with a
reason."""

from __future__ import annotations

import base64
import re

import pytest

from ipymeet.server.core import tokens
from ipymeet.server.core.tokens import TokenError, mint, verify

SECRET = b"s" * 32
NOW = 1_800_000_000.0


def reason(room: str, token: object, *, secret: bytes = SECRET, now: float = NOW) -> str:
    with pytest.raises(TokenError) as refused:
        verify(secret, room, token, now=now)
    return refused.value.reason


def test_a_fresh_token_admits_to_its_room_and_is_compact_and_url_safe() -> None:
    token = mint(SECRET, "lab-42", ttl=3600, now=NOW)
    assert re.fullmatch(r"[A-Za-z0-9_-]{44}", token)
    assert verify(SECRET, "lab-42", token, now=NOW) is None
    assert verify(SECRET, "lab-42", token, now=NOW + 3600) is None
    assert tokens.expiry(token) == int(NOW + 3600)
    # A nonce: two tokens minted in the same second differ.
    assert mint(SECRET, "lab-42", ttl=3600, now=NOW) != token


def test_expired_tokens_are_refused_after_the_leeway() -> None:
    """Clock-skew policy: accepted until expiry + leeway (30 s) on the verifier's clock."""
    token = mint(SECRET, "lab", ttl=60, now=NOW)
    assert verify(SECRET, "lab", token, now=NOW + 60 + tokens.DEFAULT_LEEWAY) is None
    assert reason("lab", token, now=NOW + 60 + tokens.DEFAULT_LEEWAY + 1) == "expired"
    with pytest.raises(TokenError):
        verify(SECRET, "lab", token, now=NOW + 61, leeway=0)
    # No "not before": a verifier whose clock is behind the minter's still accepts it.
    assert verify(SECRET, "lab", token, now=NOW - 600) is None


def test_a_token_for_another_room_says_so() -> None:
    token = mint(SECRET, "lab-1", now=NOW)
    assert reason("lab-2", token) == "other_room"


def test_tampered_and_foreign_tokens_have_a_bad_signature() -> None:
    token = mint(SECRET, "lab", ttl=60, now=NOW)
    raw = bytearray(base64.urlsafe_b64decode(token + "="))
    raw[1:9] = int(NOW + 10**6).to_bytes(8, "big")  # push the expiry out
    stretched = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
    assert reason("lab", stretched) == "bad_signature"
    raw = bytearray(base64.urlsafe_b64decode(token + "="))
    raw[-1] ^= 1  # flip one bit of the signature
    flipped = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
    assert reason("lab", flipped) == "bad_signature"
    assert reason("lab", mint(b"t" * 32, "lab", now=NOW)) == "bad_signature"


@pytest.mark.parametrize(
    "token",
    ["x", "A" * 43, "A" * 45, "!" * 44, "=" * 44, 42, ["a"], "Ag" + "A" * 42],  # Ag..: version 2
)
def test_malformed_tokens(token: object) -> None:
    assert reason("lab", token) == "malformed"


def test_missing_token() -> None:
    assert reason("lab", None) == "missing"
    assert reason("lab", "") == "missing"


def test_messages_are_plain_and_never_contain_the_secret() -> None:
    for why, message in tokens.REASONS.items():
        assert message.startswith("This room needs an invite link"), why
        assert SECRET.decode() not in message
    assert "expired. Ask for a new link" in str(TokenError("expired"))


def test_secrets_and_lifetimes_are_checked() -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        mint(b"short", "lab")
    with pytest.raises(ValueError, match="positive"):
        mint(SECRET, "lab", ttl=0)
    assert len(tokens.new_secret()) == 32
