"""TURN with short-lived credentials: what the signaller hands each member for a relay.

The TURN REST scheme that coturn's ``use-auth-secret`` checks: the signaller and the TURN server
share a secret (coturn's ``static-auth-secret``); a member's username is ``EXPIRY:member`` (EXPIRY
in Unix seconds) and its password the base64 of HMAC-SHA1(secret, username). The TURN server
recomputes the password and refuses it once EXPIRY is past, so a credential copied out of a page
works for ``turn_ttl`` seconds only, and the secret itself never leaves the signaller.

A call may outlive its credentials: every relay allocation made after they expired is refused
(an ICE restart after a network change, a connection to a member who enters later), and a TURN
server may refuse the refreshes of an allocation made before (coturn 4.6.1 does not: it keeps
the key it authenticated the allocation with). So :class:`Renewals` hands each member fresh ones
(the ``ice_servers`` event, docs/protocol.md) at three quarters of their lifetime, again and again
while it stays in its room; a page whose connection its own relay carries then makes new
allocations with them (an ICE restart), and every connection keeps them for its next gathering.

Example::

    settings = Settings(turn_urls=("turn:turn.example.org:3478",), turn_secret="s3cret")
    ice_servers_for(settings, "Zm9vYmFy")
    # [{"urls": "stun:stun.l.google.com:19302"},
    #  {"urls": ["turn:turn.example.org:3478"], "username": "1767225600:Zm9vYmFy",
    #   "credential": "..."}]
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from .sources import read_source


class TurnSettings(Protocol):
    """What TURN reads of a signaller's settings (``Settings`` has them: settings.py reads its
    TURN values with this module's checks, so this module does not import it)."""

    @property
    def ice_servers(self) -> tuple[dict[str, Any], ...]: ...
    @property
    def turn_urls(self) -> tuple[str, ...]: ...
    @property
    def turn_secret(self) -> str | None: ...
    @property
    def turn_ttl(self) -> int: ...


log = logging.getLogger("ipymeet.server")

#: How long a member's TURN credentials live unless configured (``--turn-ttl``). A member still in
#: its room gets fresh ones before they expire (:class:`Renewals`), so this bounds how long a
#: credential copied out of a page stays of use, not how long a call may last.
DEFAULT_TURN_TTL = 4 * 3600

#: Fresh credentials go out when this fraction of the last ones' lifetime has passed. The quarter
#: left must cover what can hold them up before the page has made new allocations: the ICE
#: restart itself (a second or two), a page that is reconnecting to the signaller at that moment
#: (it gets fresh ones in its ``enter`` acknowledgement, after up to ~10 s of reconnecting), and
#: a TURN server whose clock runs ahead of the signaller's. A fraction rather than a fixed margin
#: scales with ``--turn-ttl``: an hour at the default four, 15 s at one minute, 1 s at the tests'
#: four seconds; and a member renews only once every ``0.75 * ttl``, never in a loop.
RENEW_AT = 0.75

#: The URL schemes of a TURN server (RFC 7065).
TURN_SCHEMES = ("turn:", "turns:")


def credentials(secret: str, member: str, expiry: int) -> tuple[str, str]:
    """The TURN REST username and password of ``member`` valid until ``expiry`` (Unix seconds)."""
    username = f"{expiry}:{member}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode("ascii")


def ice_servers_for(
    settings: TurnSettings, member: str, now: float | None = None
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


def renewal_delay(ttl: int) -> float:
    """Seconds after credentials valid for ``ttl`` seconds were handed out when fresh ones go."""
    return ttl * RENEW_AT


#: ``send(sid, servers)``: give the member on connection ``sid`` its fresh ``ice_servers``; False
#: when it is no longer in a room (its renewals then stop).
Send = Callable[[str, list[dict[str, Any]]], Awaitable[bool]]


class Renewals:
    """One timer per member that was handed TURN credentials, which sends it fresh ones at
    :data:`RENEW_AT` of their lifetime, and again at that pace while it stays.

    Keyed by the member's connection (its Socket.IO sid): ``start`` when it enters (a new
    ``start`` for the same sid replaces the old timer), ``stop`` when it leaves, is taken over or
    its connection ends, ``close`` when the signaller stops; nothing is left behind (``len`` says
    how many run). Without TURN configured nothing starts.

    Example::

        renewals = Renewals(settings, send)
        renewals.start(conn.sid, member_id)   # at enter, beside ice_servers_for
        renewals.stop(conn.sid)               # at leave / disconnect
    """

    def __init__(self, settings: TurnSettings, send: Send) -> None:
        self.settings = settings
        self._send = send
        self._timers: dict[str, asyncio.Task[None]] = {}

    @property
    def enabled(self) -> bool:
        """Whether members get TURN credentials at all."""
        return bool(self.settings.turn_urls) and self.settings.turn_secret is not None

    def __len__(self) -> int:
        return len(self._timers)

    def start(self, sid: str, member: str) -> None:
        """Renew ``member``'s credentials (it is on connection ``sid``; it got them just now)."""
        if not self.enabled:
            return
        self.stop(sid)
        task = asyncio.ensure_future(self._renew(sid, member))
        self._timers[sid] = task
        task.add_done_callback(lambda done: self._forget(sid, done))

    def stop(self, sid: str) -> None:
        """No more renewals for the member on ``sid`` (idempotent)."""
        task = self._timers.pop(sid, None)
        if task is not None:
            task.cancel()

    def close(self) -> None:
        """Stop every timer."""
        for sid in list(self._timers):
            self.stop(sid)

    def _forget(self, sid: str, task: asyncio.Task[None]) -> None:
        if self._timers.get(sid) is task:
            del self._timers[sid]

    async def _renew(self, sid: str, member: str) -> None:
        delay = renewal_delay(self.settings.turn_ttl)
        while True:
            await asyncio.sleep(delay)
            try:
                if not await self._send(sid, ice_servers_for(self.settings, member)):
                    return
            except Exception as error:  # a failed send must not end this member's renewals
                # The type only: the message could quote the credentials.
                log.warning(
                    "could not renew a member's TURN credentials (%s)", type(error).__name__
                )


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
    """The TURN secret named by ``env:NAME`` or ``file:PATH`` (server/core/sources.py), never made
    up: it must be the TURN server's ``static-auth-secret``."""
    secret = read_source(source, option)
    if not secret:
        raise ValueError(f"{option} {source}: the secret is empty")
    return secret
