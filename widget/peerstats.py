"""A kernel peer's call quality (``KernelPeer.stats``): each connection's figures about once a
second, as the pages' ``js/src/quality.ts`` makes them, from two of aiortc's ``getStats()``
reports and the frames counted by the track readers (peertracks.py) and the senders.

aiortc's reports have no candidate pair; the type of the local candidate in use comes from
``server/core/internals.py`` (:func:`~..server.core.internals.candidate_type`), the one place
that reads aioice's internals, behind its check of the releases.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

from ..server.core import internals
from .peerstate import Member, PeerState

#: How often the figures are made, in seconds.
PERIOD = 1.0


async def measure(members: Mapping[str, Member], shared: PeerState) -> None:
    """About once a second, the figures of each of ``members`` (read anew each time: the join
    adds and drops them) into ``shared``'s stats; runs until cancelled."""
    previous: dict[str, tuple[float, int, int, int, int]] = {}
    while True:
        await asyncio.sleep(PERIOD)
        stats: dict[str, dict[str, Any]] = {}
        now = time.monotonic()
        for member in list(members.values()):
            connection = member.connection
            if connection is None or connection.closed:
                continue
            try:
                report = await connection.pc.getStats()
            except Exception:
                continue
            bytes_in = bytes_out = lost = received = 0
            rtt: float | None = None
            for entry in report.values():
                kind = getattr(entry, "type", "")
                if kind == "transport":
                    bytes_in += int(entry.bytesReceived)
                    bytes_out += int(entry.bytesSent)
                elif kind == "inbound-rtp":
                    lost += max(0, int(entry.packetsLost))
                    received += int(entry.packetsReceived)
                elif kind == "remote-inbound-rtp" and entry.roundTripTime is not None:
                    rtt = float(entry.roundTripTime)
            then = previous.get(member.id)
            previous[member.id] = (now, bytes_in, bytes_out, member.frames_in, member.frames_out)
            if then is None:
                continue
            span = max(now - then[0], 1e-3)
            slot = member.slots.get("video")
            stats[member.id] = {
                "rtt_ms": None if rtt is None else round(rtt * 1000, 1),
                "bitrate_in_kbps": round((bytes_in - then[1]) * 8 / span / 1000, 1),
                "bitrate_out_kbps": round((bytes_out - then[2]) * 8 / span / 1000, 1),
                "fps_in": round((member.frames_in - then[3]) / span, 1),
                "fps_out": round((member.frames_out - then[4]) / span, 1),
                "width": member.size[0],
                "height": member.size[1],
                "packet_loss": round(lost / (lost + received), 4) if lost + received else 0.0,
                "candidate_type": internals.candidate_type(connection.pc),
                "frames_dropped": 0 if slot is None else slot.dropped,
            }
        shared.set_stats(stats)
