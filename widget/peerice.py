"""Which ICE servers and candidates a kernel peer's connections may use: the signaller's
``ice_servers`` as aiortc's, whether they name a TURN server, and relay only.

Imports aiortc: like peerconn.py, imported only once the optional dependencies are known to be
there (``pip install "ipymeet[python]"``).

Relay only (``KernelPeer(relay_only=True)``, as a page's ``iceTransportPolicy: "relay"``): every
RTCPeerConnection is made with aiortc's own ``RTCConfiguration(iceTransportPolicy=RELAY)``, which
aioice's ``Connection(transport_policy=TransportPolicy.RELAY)`` carries out: it opens no host
socket, so it gathers no host and no server-reflexive candidate and can neither offer nor use a
pair from this machine's addresses; its relay candidates give ``0.0.0.0`` as their related
address. Checked on aiortc 1.16.0 with aioice 0.13.0. Each description is checked again before it
is sent (:func:`relay_only_sdp`): a candidate that is not ``typ relay`` ends the connection
unsent, and any related address is blanked, in case an older aioice gathers or tells more.
"""

from __future__ import annotations

import re
from typing import Any

import aiortc
from aiortc import RTCConfiguration, RTCIceServer

#: aiortc's relay transport policy (``RTCIceTransportPolicy.RELAY``), or None on a release whose
#: ``RTCConfiguration`` has no ``iceTransportPolicy`` (there relay only is refused, not faked).
RELAY_POLICY: Any = (
    getattr(getattr(aiortc, "RTCIceTransportPolicy", None), "RELAY", None)
    if "iceTransportPolicy" in getattr(RTCConfiguration, "__dataclass_fields__", {})
    else None
)
#: A candidate line's type and related address (RFC 8839 section 5.1).
_CANDIDATE_TYPE = re.compile(r" typ (\S+)")
_RELATED = re.compile(r" raddr \S+ rport \d+")


class RelayLeak(RuntimeError):
    """A description of a relay-only connection would tell something else than relays."""


def require_relay_policy() -> None:
    """ImportError unless this aiortc can restrict a connection to relay candidates."""
    if RELAY_POLICY is None:
        raise ImportError(
            f"relay_only needs an aiortc whose RTCConfiguration has iceTransportPolicy "
            f"(this one is {getattr(aiortc, '__version__', 'unknown')}; checked on 1.16.0): "
            "pip install -U aiortc"
        )


def has_turn(servers: list[RTCIceServer]) -> bool:
    """Whether ``servers`` name a TURN server (``turn:`` or ``turns:``), the only source of the
    relay candidates a relay-only connection may use."""
    for server in servers:
        urls = [server.urls] if isinstance(server.urls, str) else server.urls
        if any(url.lower().startswith(("turn:", "turns:")) for url in urls):
            return True
    return False


def relay_only_sdp(sdp: str) -> str:
    r"""``sdp`` as a relay-only connection may send it: RelayLeak if any candidate in it is not a
    relay (host, srflx, prflx: this machine's addresses or its NAT's); the related address of
    each relay candidate (where the TURN server saw this machine) blanked to ``0.0.0.0 9``, as
    aioice 0.13 does itself under the relay policy and browsers do under theirs.

    Example::

        relay_only_sdp("a=candidate:1 1 udp 1 203.0.113.5 50000 typ relay raddr 192.0.2.2 "
                       "rport 41000\r\n")
        # 'a=candidate:1 1 udp 1 203.0.113.5 50000 typ relay raddr 0.0.0.0 rport 9\r\n'
    """
    lines = sdp.splitlines(keepends=True)
    for index, line in enumerate(lines):
        if not line.startswith("a=candidate:"):
            continue
        kind = _CANDIDATE_TYPE.search(line)
        if kind is None or kind.group(1) != "relay":
            raise RelayLeak(
                f"a relay-only description would carry a non-relay candidate: {line.strip()}"
            )
        lines[index] = _RELATED.sub(" raddr 0.0.0.0 rport 9", line)
    return "".join(lines)


def ice_servers(raw: Any) -> list[RTCIceServer]:
    """The ``ice_servers`` of an ``enter`` acknowledgement as aiortc's (bad entries skipped)."""
    servers: list[RTCIceServer] = []
    for entry in raw if isinstance(raw, list) else []:
        if not isinstance(entry, dict):
            continue
        urls = entry.get("urls")
        if isinstance(urls, str):
            urls = [urls]
        if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls) or not urls:
            continue
        username, credential = entry.get("username"), entry.get("credential")
        servers.append(
            RTCIceServer(
                urls=urls,
                username=username if isinstance(username, str) else None,
                credential=credential if isinstance(credential, str) else None,
            )
        )
    return servers
