"""Join tokens: signed, expiring permission to enter one room (docs/protocol.md, ``enter``'s
``token``).

A token is 44 URL-safe characters: base64url (no padding) of

    version (1 byte, 1) | expiry (8 bytes, Unix seconds) | room tag (4 bytes) | nonce (4 bytes)
    | HMAC-SHA256(secret, those 17 bytes + room)[:16]

The MAC covers the room, so a token opens only the room it was made for. The room tag (the first
4 bytes of SHA-256 of the room id) is not a security measure: it only lets a refusal say "this
link is for another room" instead of "this token is not valid". The MAC is cut to 128 bits, as
RFC 2104 allows; forging one takes about 2^128 tries and each try is one ``enter``, which the
rate limit bounds. Signatures are compared with :func:`hmac.compare_digest`.

Clock skew: a token is accepted until ``expiry + leeway`` (30 s by default) on the verifying
server's clock. The minting and verifying clocks are usually the same process's; when they are
not (a secret shared by several ``ipymeet serve``), keep them in NTP sync. There is no
"not before": a token is valid from the moment it is made.

Example::

    secret = new_secret()
    token = mint(secret, "lab-42", ttl=3600)
    verify(secret, "lab-42", token)          # returns None, or raises TokenError
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import struct
import time

VERSION = 1
_HEADER = struct.Struct(">BQ4s4s")  # version, expiry, room tag, nonce
_MAC_BYTES = 16
TOKEN_LENGTH = 44  # base64url of 17 + 16 bytes
#: Default lifetime of an invite link's token: one day.
DEFAULT_TTL = 24 * 3600.0
#: Seconds a token is still accepted after its expiry, for clocks that drift apart a little.
DEFAULT_LEEWAY = 30.0
#: Shortest secret accepted, in bytes.
MIN_SECRET_BYTES = 16

#: What a refusal says, by reason: plain, and what to do about it. None of it depends on the secret.
_NEEDS = "This room needs an invite link with a valid token"
REASONS = {
    "missing": f"{_NEEDS}, and none was given. Open the room from its invite link.",
    "malformed": f"{_NEEDS}: the link's token is damaged (cut short or changed). "
    "Copy the whole link again.",
    "bad_signature": f"{_NEEDS}: the link's token was not made by this server (or the server's "
    "secret has changed since). Ask for a new link.",
    "other_room": f"{_NEEDS}: the link's token is for another room. Ask for a link to this room.",
    "expired": f"{_NEEDS}: the link's token has expired. Ask for a new link.",
}


class TokenError(Exception):
    """A token that does not admit to the room; ``reason`` is one of :data:`REASONS`."""

    def __init__(self, reason: str) -> None:
        super().__init__(REASONS[reason])
        self.reason = reason


def new_secret() -> bytes:
    """A fresh random secret (32 bytes)."""
    return secrets.token_bytes(32)


def check_secret(secret: bytes) -> bytes:
    """``secret`` if it is long enough; ValueError otherwise."""
    if not isinstance(secret, bytes) or len(secret) < MIN_SECRET_BYTES:
        raise ValueError(f"a join-token secret must be at least {MIN_SECRET_BYTES} bytes")
    return secret


def _tag(room: str) -> bytes:
    return hashlib.sha256(room.encode()).digest()[:4]


def _mac(secret: bytes, header: bytes, room: str) -> bytes:
    return hmac.new(secret, header + room.encode(), hashlib.sha256).digest()[:_MAC_BYTES]


def mint(secret: bytes, room: str, ttl: float = DEFAULT_TTL, *, now: float | None = None) -> str:
    """A token that admits to ``room`` for ``ttl`` seconds from ``now`` (default: the clock)."""
    check_secret(secret)
    if ttl <= 0:
        raise ValueError(f"a token's lifetime must be positive, not {ttl}")
    expiry = int((time.time() if now is None else now) + ttl)
    header = _HEADER.pack(VERSION, expiry, _tag(room), secrets.token_bytes(4))
    raw = header + _mac(secret, header, room)
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def expiry(token: str) -> int:
    """The Unix time a token expires at (unverified: for display only); TokenError if malformed."""
    return int(_parse(token)[1])


def _parse(token: object) -> tuple[bytes, int, bytes, bytes]:
    if not isinstance(token, str) or len(token) != TOKEN_LENGTH:
        raise TokenError("malformed")
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        raise TokenError("malformed") from None
    if len(raw) != _HEADER.size + _MAC_BYTES:
        raise TokenError("malformed")
    header, mac = raw[: _HEADER.size], raw[_HEADER.size :]
    version, expires, tag, _nonce = _HEADER.unpack(header)
    if version != VERSION:
        raise TokenError("malformed")
    return header, expires, tag, mac


def verify(
    secret: bytes,
    room: str,
    token: object,
    *,
    now: float | None = None,
    leeway: float = DEFAULT_LEEWAY,
) -> None:
    """Return if ``token`` admits to ``room`` now; raise :class:`TokenError` saying why not.

    The checks run in this order: present, well-formed, signed for this room, not expired.
    """
    if token is None or token == "":
        raise TokenError("missing")
    header, expires, tag, mac = _parse(token)
    if not hmac.compare_digest(mac, _mac(secret, header, room)):
        # Which of the two it is only changes the message; either way the token is refused.
        raise TokenError("bad_signature" if hmac.compare_digest(tag, _tag(room)) else "other_room")
    if (time.time() if now is None else now) > expires + leeway:
        raise TokenError("expired")
