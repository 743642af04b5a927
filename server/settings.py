"""The signaller's settings: one frozen dataclass, for the kernel's thread and ``ipymeet serve``."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

#: The tutorial's choice, kept as the default outside tests: Google's public STUN servers.
DEFAULT_ICE_SERVERS: tuple[dict[str, Any], ...] = ({"urls": "stun:stun.l.google.com:19302"},)


@dataclass(frozen=True)
class Settings:
    """How a signaller listens and what it allows.

    Example::

        Settings(port=8765, max_peers=4, allowed_origins=("https://lab.example.org",))
    """

    host: str = "127.0.0.1"
    #: 0 picks a free port.
    port: int = 0
    #: Capacity of a dialect-2 room, counting everyone in it. Dialect-1 rooms always hold 2.
    #: Media is a full mesh (each member sends to every other): fine up to about 6; larger
    #: rooms want an SFU (LiveKit, mediasoup, Janus), which ipymeet does not try to be.
    max_peers: int = 6
    #: Browser origins allowed besides loopback pages and the signaller's own origin.
    allowed_origins: tuple[str, ...] = ()
    #: RTCIceServer dicts handed to each browser in the ``enter`` acknowledgement.
    ice_servers: tuple[dict[str, Any], ...] = DEFAULT_ICE_SERVERS
    #: A folder served at ``/public/`` (e.g. the tutorial's own page), or None.
    public_dir: Path | None = None
    max_sdp_bytes: int = 64 * 1024
    max_message_bytes: int = 256 * 1024
    #: Events per connection: sustained rate per second and burst size of the token bucket.
    rate: float = 50.0
    burst: int = 200
    #: Dialect-1 rooms one connection may be in at once.
    max_tutorial_rooms: int = 4

    def __post_init__(self) -> None:
        if not 2 <= self.max_peers <= 64:
            raise ValueError(f"max_peers must be between 2 and 64, not {self.max_peers}")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be between 0 and 65535, not {self.port}")
        if "*" in self.allowed_origins:
            raise ValueError("allowed_origins may not contain '*': name the origins to allow")
        if self.rate <= 0 or self.burst < 1:
            raise ValueError("rate must be positive and burst at least 1")

    def with_(self, **changes: Any) -> Settings:
        """A copy with some fields changed."""
        return replace(self, **changes)

    @classmethod
    def from_env(cls, **overrides: Any) -> Settings:
        """Settings for the kernel's signaller, read from ``IPYMEET_*`` environment variables.

        ``IPYMEET_ICE_SERVERS`` is a JSON list of RTCIceServer dicts (``[]`` for host candidates
        only, as the tests use); ``IPYMEET_MAX_PEERS`` an integer.
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
        values.update(overrides)
        return cls(**values)
