"""The signaller's settings: one frozen dataclass, for the kernel's thread and ``ipymeet serve``."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from .hostnames import is_loopback_host
from .tokens import check_secret
from .turn import DEFAULT_TURN_TTL, check_turn_url, read_turn_secret, split_urls

#: ``Settings.tls``: a certificate and its key (PEM files), or "self-signed" for one made at start.
TLS = tuple[str | Path, str | Path] | Literal["self-signed"] | None

#: A name ``Settings.allowed_hosts`` may hold: DNS labels, no scheme, port or path.
HOST_NAME_RE = re.compile(
    r"(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,62})(?:\.[A-Za-z0-9-]{1,63})*"
)

#: What ``Settings.redis_url`` may start with (``SCHEME://``).
REDIS_SCHEMES = ("redis", "rediss", "unix")

#: The tutorial's choice, kept as the default outside tests: Google's public STUN servers.
DEFAULT_ICE_SERVERS: tuple[dict[str, Any], ...] = ({"urls": "stun:stun.l.google.com:19302"},)


@dataclass(frozen=True)
class Settings:
    """How a signaller listens and what it allows.

    Example::

        Settings(port=8765, max_peers=4, allowed_origins=("https://lab.example.org",))
    """

    #: The address to listen on. Anything but loopback exposes the signalling server and the
    #: standalone call page to whoever can reach that address (a warning says so at start).
    host: str = "127.0.0.1"
    #: 0 picks a free port.
    port: int = 0
    #: Capacity of a dialect-2 room, counting everyone in it. Dialect-1 rooms always hold 2.
    #: Media is a full mesh (each member sends to every other): fine up to about 6; larger
    #: rooms want an SFU (LiveKit, mediasoup, Janus), which ipymeet does not try to be.
    max_peers: int = 6
    #: Browser origins allowed besides loopback pages and the signaller's own origin.
    allowed_origins: tuple[str, ...] = ()
    #: Names this signaller is reached by besides loopback names and addresses (and, bound
    #: beyond loopback, any IP address and the machine's own names), e.g. the public name of a
    #: reverse proxy in front of it. A request whose Host is none of these is refused: a web
    #: page whose DNS name an attacker points at 127.0.0.1 gets nothing (server/core/access.py).
    allowed_hosts: tuple[str, ...] = ()
    #: RTCIceServer dicts handed to each browser in the ``enter`` acknowledgement.
    ice_servers: tuple[dict[str, Any], ...] = DEFAULT_ICE_SERVERS
    #: A folder served at ``/public/`` (e.g. the tutorial's own page), or None.
    public_dir: Path | None = None
    max_sdp_bytes: int = 64 * 1024
    max_message_bytes: int = 256 * 1024
    #: What may wait to be sent to one connection (engine.io's queue, and the socket's buffer on
    #: WebSocket) before the signaller drops it: a client that stops reading while others send to
    #: it would otherwise grow the server's memory without bound. A page that reads keeps well
    #: under it: at the rate limit, a few members' signalling is a few hundred KB a second.
    max_backlog_bytes: int = 4 * 1024 * 1024
    #: Events per connection: sustained rate per second and burst size of the token bucket.
    rate: float = 50.0
    burst: int = 200
    #: Dialect-1 rooms one connection may be in at once.
    max_tutorial_rooms: int = 4
    #: Engine.IO heartbeat, in seconds: a ping every ``ping_interval``, answered within
    #: ``ping_timeout``. Their sum is how long a silently dropped connection (a network gone, not a
    #: closed tab) takes to be noticed on either side, and so how soon a page starts reconnecting.
    #: Socket.IO's defaults are 25 + 20 s; each ping costs the server a little per idle client.
    ping_interval: float = 10.0
    ping_timeout: float = 10.0
    #: The key that signs join tokens (server/core/tokens.py), at least 16 bytes. When set,
    #: ``enter`` needs a valid token for its room and dialect 1 (which cannot send one) is refused.
    #: Never shown: it is left out of the repr.
    secret: bytes | None = field(default=None, repr=False)
    #: HTTPS and WSS: ``(certfile, keyfile)`` (PEM), or ``"self-signed"`` for a certificate made
    #: at start for this machine's names and addresses (see server/core/tls.py); None for plain
    #: HTTP.
    tls: TLS = None
    #: TURN servers (``turn:`` / ``turns:`` URLs) whose credentials each member gets in its
    #: ``enter`` acknowledgement, beside ``ice_servers`` (server/core/turn.py). Needs
    #: ``turn_secret``.
    turn_urls: tuple[str, ...] = ()
    #: The secret shared with the TURN server (coturn's ``static-auth-secret``), from which the
    #: short-lived credentials are made. Never shown: it is left out of the repr.
    turn_secret: str | None = field(default=None, repr=False)
    #: Seconds a member's TURN credentials stay valid after it enters.
    turn_ttl: int = DEFAULT_TURN_TTL
    #: A Redis shared with other signaller processes (``redis://HOST:PORT/DB``, ``rediss://``,
    #: ``unix://``): the rooms live there and events cross between the processes
    #: (server/cluster/redis.py; ``ipymeet serve --redis``, ``IPYMEET_REDIS_URL``). None: this
    #: process alone. Left out of the repr: it may hold a password.
    redis_url: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not 2 <= self.max_peers <= 64:
            raise ValueError(f"max_peers must be between 2 and 64, not {self.max_peers}")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be between 0 and 65535, not {self.port}")
        if "*" in self.allowed_origins:
            raise ValueError("allowed_origins may not contain '*': name the origins to allow")
        for name in self.allowed_hosts:
            if not isinstance(name, str) or not HOST_NAME_RE.fullmatch(name):
                raise ValueError(
                    f"allowed_hosts: {name!r} is not a host name (a name like meet.example.org, "
                    "without scheme, port or path)"
                )
        if self.rate <= 0 or self.burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        if self.ping_interval <= 0 or self.ping_timeout <= 0:
            raise ValueError("ping_interval and ping_timeout must be positive")
        if self.max_backlog_bytes < self.max_message_bytes:
            raise ValueError("max_backlog_bytes must hold at least one message (max_message_bytes)")
        if self.secret is not None:
            check_secret(self.secret)
        for url in self.turn_urls:
            check_turn_url(url)
        if self.turn_secret is not None and not self.turn_urls:
            raise ValueError(
                "a TURN secret without a TURN server: give --turn-url (IPYMEET_TURN_URLS) as well"
            )
        if self.turn_urls and not self.turn_secret:
            raise ValueError(
                "a TURN server without its secret: give --turn-secret (IPYMEET_TURN_SECRET) "
                "env:NAME or file:PATH, the TURN server's static-auth-secret"
            )
        if not isinstance(self.turn_ttl, int) or self.turn_ttl < 1:
            raise ValueError(
                f"turn_ttl must be a whole number of seconds, at least 1, not {self.turn_ttl!r}"
            )
        if self.redis_url is not None and self.redis_url.split("://", 1)[0] not in REDIS_SCHEMES:
            raise ValueError("redis_url: use redis://HOST:PORT/DB, rediss://... or unix://PATH")
        if self.tls is not None and self.tls != "self-signed":
            if not (isinstance(self.tls, tuple) and len(self.tls) == 2):
                raise ValueError("tls must be (certfile, keyfile), 'self-signed' or None")
            for path in self.tls:
                if not Path(path).is_file():
                    raise ValueError(f"tls: no such file {str(path)!r}")

    @property
    def exposed(self) -> bool:
        """Whether the listening address is reachable from other machines (not loopback)."""

        return not is_loopback_host(self.host)

    def with_(self, **changes: Any) -> Settings:
        """A copy with some fields changed."""
        return replace(self, **changes)

    @classmethod
    def from_env(cls, **overrides: Any) -> Settings:
        """Settings for the kernel's signaller, read from ``IPYMEET_*`` environment variables.

        ``IPYMEET_ICE_SERVERS`` is a JSON list of RTCIceServer dicts (``[]`` for host candidates
        only, as the tests use); ``IPYMEET_MAX_PEERS`` an integer. TURN: ``IPYMEET_TURN_URLS``
        (``turn:`` / ``turns:`` URLs, separated by commas or spaces), ``IPYMEET_TURN_SECRET``
        (``env:NAME`` or ``file:PATH``, as ``ipymeet serve --turn-secret``) and
        ``IPYMEET_TURN_TTL`` (seconds). (``IPYMEET_PORT`` and ``IPYMEET_SHARE`` are the shared
        signaller's: see :func:`port_from_env`.)
        """
        values: dict[str, Any] = {}
        raw = os.environ.get("IPYMEET_ICE_SERVERS")
        if raw is not None:
            servers = json.loads(raw)
            if not isinstance(servers, list) or not all(isinstance(s, dict) for s in servers):
                raise ValueError("IPYMEET_ICE_SERVERS must be a JSON list of objects")
            values["ice_servers"] = tuple(servers)
        if "IPYMEET_MAX_PEERS" in os.environ:
            values["max_peers"] = int(os.environ["IPYMEET_MAX_PEERS"])
        urls = os.environ.get("IPYMEET_TURN_URLS", "").strip()
        if urls:
            values["turn_urls"] = split_urls(urls)
        source = os.environ.get("IPYMEET_TURN_SECRET", "").strip()
        if source:
            values["turn_secret"] = read_turn_secret(source, "IPYMEET_TURN_SECRET")
        ttl = os.environ.get("IPYMEET_TURN_TTL", "").strip()
        if ttl:
            if not ttl.isdigit():
                raise ValueError(f"IPYMEET_TURN_TTL must be a whole number of seconds, not {ttl!r}")
            values["turn_ttl"] = int(ttl)
        values.update(overrides)
        return cls(**values)


def port_from_env() -> int | None:
    """``IPYMEET_PORT``: the port this user's shared signaller is hosted on
    (server/kernel/sharing.py;
    0 picks a free one), None when unset. Not a kernel's own signaller's: with sharing off, each
    kernel has its own port."""
    raw = os.environ.get("IPYMEET_PORT", "").strip()
    if not raw:
        return None
    if not raw.isdigit() or not 0 <= int(raw) <= 65535:
        raise ValueError(f"IPYMEET_PORT must be a port number (0-65535), not {raw!r}")
    return int(raw)


def share_from_env() -> bool | None:
    """``IPYMEET_SHARE``: "1" shares one signaller among this user's kernels, "0" gives each
    kernel its own; None when unset (shared inside a kernel, see server/kernel/sharing.py)."""
    raw = os.environ.get("IPYMEET_SHARE", "").strip()
    if not raw:
        return None
    if raw not in ("0", "1"):
        raise ValueError(f"IPYMEET_SHARE must be 0 or 1, not {raw!r}")
    return raw == "1"
