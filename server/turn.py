"""TURN with short-lived credentials: what the signaller hands each member for a relay.

The TURN REST scheme that coturn's ``use-auth-secret`` checks: the signaller and the TURN server
share a secret (coturn's ``static-auth-secret``); a member's username is ``EXPIRY:member`` (EXPIRY
in Unix seconds) and its password the base64 of HMAC-SHA1(secret, username). The TURN server
recomputes the password and refuses it once EXPIRY is past, so a credential copied out of a page
works for ``turn_ttl`` seconds only, and the secret itself never leaves the signaller.

Example::

    settings = Settings(turn_urls=("turn:turn.example.org:3478",), turn_secret="s3cret")
    ice_servers_for(settings, "Zm9vYmFy")
    # [{"urls": "stun:stun.l.google.com:19302"},
    #  {"urls": ["turn:turn.example.org:3478"], "username": "1767225600:Zm9vYmFy",
    #   "credential": "..."}]
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import TYPE_CHECKING, Any

from .sources import read_source

if TYPE_CHECKING:
    from .settings import Settings

#: How long a member's TURN credentials live unless configured (``--turn-ttl``). They should
#: outlast the call: the browser renews its relay with the same credentials, which the TURN server
#: refuses once they expired. Four hours covers a lesson or a long meeting.
DEFAULT_TURN_TTL = 4 * 3600

#: The URL schemes of a TURN server (RFC 7065).
TURN_SCHEMES = ("turn:", "turns:")


def credentials(secret: str, member: str, expiry: int) -> tuple[str, str]:
    """The TURN REST username and password of ``member`` valid until ``expiry`` (Unix seconds)."""
    username = f"{expiry}:{member}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode("ascii")


def ice_servers_for(
    settings: Settings, member: str, now: float | None = None
) -> list[dict[str, Any]]:
    """``settings.ice_servers`` plus, with TURN configured, one RTCIceServer with ``member``'s
    credentials, valid ``settings.turn_ttl`` seconds from ``now`` (default: the clock)."""
    servers = [dict(server) for server in settings.ice_servers]
    if settings.turn_urls and settings.turn_secret is not None:
        expiry = int(time.time() if now is None else now) + settings.turn_ttl
        username, password = credentials(settings.turn_secret, member, expiry)
        servers.append(
            {"urls": list(settings.turn_urls), "username": username, "credential": password}
        )
    return servers


def check_turn_url(url: str) -> str:
    """``url`` if it names a TURN server (``turn:`` or ``turns:``), else ValueError."""
    if not isinstance(url, str) or not url.startswith(TURN_SCHEMES) or len(url) <= len("turn:"):
        raise ValueError(
            f"TURN URL {url!r} must start with turn: or turns:, e.g. turn:turn.example.org:3478"
            "?transport=udp"
        )
    return url


def split_urls(raw: str) -> tuple[str, ...]:
    """``IPYMEET_TURN_URLS``: URLs separated by commas or spaces, each checked."""
    return tuple(check_turn_url(url) for url in raw.replace(",", " ").split())


def read_turn_secret(source: str, option: str = "--turn-secret") -> str:
    """The TURN secret named by ``env:NAME`` or ``file:PATH`` (server/sources.py), never made up:
    it must be the TURN server's ``static-auth-secret``."""
    secret = read_source(source, option)
    if not secret:
        raise ValueError(f"{option} {source}: the secret is empty")
    return secret
