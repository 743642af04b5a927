"""Per-stage timestamps of a KernelPeer's round trip, for benchmarks/kernel_peer.py (``--stages``).

Imported by the benchmark's kernel process before it joins: :func:`install` wraps, in that
process only, the places a frame passes (aiortc's and ipymeet's), and records the wall-clock time
(``time.time()``, the clock the page's ``performance.timeOrigin`` is on) at each:

- ``first`` / ``last``: the first and the last (marker) RTP packet of the frame reach aiortc's
  receiver;
- ``complete``: aiortc's jitter buffer gives the frame to the decoder's queue;
- ``decoded``: the decoder (on aiortc's decoder thread) has it as a picture;
- ``read``: the peer's reader on the media loop has it (``LatestSlot.put``);
- ``taken``: the callback thread takes it (``LatestSlot.take``);
- ``called`` / ``returned``: the callback begins and returns (it reads the frame's stamp, the
  index-coded draw time of the page's camera canvas, which keys all the rest);
- ``queued``: the returned frame is the peer's newest outgoing one (``Outgoing.set``);
- ``encoding`` / ``encoded``: aiortc's encoder (on an executor thread) begins and ends it.

Before the callback, a frame is known by its RTP timestamp (less the stream's first, once aiortc
maps it: the decoded picture's ``pts``); after, by the ``pts`` the peer gives its outgoing frame.
:func:`report` joins them by the stamp. These wrap library internals on purpose, in the
benchmark's own process: the product never does.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

#: The stamp's cells (tests/e2e/test_kernel_peer.py STAMPED_CAMERA_JS): 16 bits, 8 columns of 80 px.
W, H, CELL, COLS, BITS = 640, 480, 80, 8, 16

_lock = threading.Lock()
#: RTP timestamp -> stage -> time; stamp -> stage -> time; outgoing pts -> stamp.
by_rtp: dict[int, dict[str, float]] = {}
by_stamp: dict[int, dict[str, float]] = {}
out_pts: dict[int, int] = {}
_current = threading.local()


def _mark(table: dict[int, dict[str, float]], key: int, stage: str, first: bool = True) -> None:
    now = time.time()
    with _lock:
        stages = table.setdefault(key, {})
        if not first or stage not in stages:
            stages[stage] = now


def stamp_of(array: Any) -> int:
    """The draw time (ms, 16 bits) coded in a frame's cells; a light cell is a 1."""
    height, width = array.shape[:2]
    stamp = 0
    for bit in range(BITS):
        x = int(((bit % COLS) * CELL + CELL / 2) * width / W)
        y = int(((bit // COLS) * CELL + CELL / 2) * height / H)
        if array[y, x, 1] >= 128:
            stamp |= 1 << bit
    return stamp


def _wrap(owner: Any, name: str, make: Callable[[Callable[..., Any]], Callable[..., Any]]) -> None:
    setattr(owner, name, make(getattr(owner, name)))


def install() -> None:
    """Wrap the stages (once, before the peer joins)."""
    from aiortc import jitterbuffer, rtcrtpreceiver
    from aiortc.codecs import h264, vpx

    from ipymeet.widget import peermedia

    def receiver(original: Callable[..., Any]) -> Callable[..., Any]:
        async def handle(self: Any, packet: Any, arrival_time_ms: int) -> None:
            if self.track.kind == "video":
                _mark(by_rtp, packet.timestamp, "first")
                if packet.marker:
                    _mark(by_rtp, packet.timestamp, "last", first=False)
            await original(self, packet, arrival_time_ms)

        return handle

    def buffer(original: Callable[..., Any]) -> Callable[..., Any]:
        def add(self: Any, packet: Any) -> Any:
            pli, frame = original(self, packet)
            if frame is not None and self._is_video:
                _mark(by_rtp, frame.timestamp, "complete")
            return pli, frame

        return add

    def mapper(original: Callable[..., Any]) -> Callable[..., Any]:
        # The decoder gets the frame's RTP timestamp less the stream's first (its pts after).
        def map_(self: Any, timestamp: int) -> int:
            mapped = original(self, timestamp)
            with _lock:
                stages = by_rtp.pop(timestamp, None)
                if stages is not None:
                    by_rtp.setdefault(mapped, {}).update(stages)
            return int(mapped)

        return map_

    def decoder(original: Callable[..., Any]) -> Callable[..., Any]:
        def decode(self: Any, encoded: Any) -> Any:
            frames = original(self, encoded)
            _mark(by_rtp, encoded.timestamp, "decoded")
            return frames

        return decode

    def slot_put(original: Callable[..., Any]) -> Callable[..., Any]:
        def put(self: Any, item: Any) -> None:
            if hasattr(item, "pts") and hasattr(item, "width"):
                _mark(by_rtp, item.pts, "read")
            original(self, item)

        return put

    def slot_take(original: Callable[..., Any]) -> Callable[..., Any]:
        def take(self: Any, timeout: float | None = None) -> Any:
            item = original(self, timeout)
            if hasattr(item, "pts") and hasattr(item, "width"):
                _mark(by_rtp, item.pts, "taken")
                _current.rtp = item.pts
            return item

        return take

    def outgoing_set(original: Callable[..., Any]) -> Callable[..., Any]:
        def set_(self: Any, frame: tuple[Any, int]) -> None:
            stamp = getattr(_current, "stamp", None)
            if stamp is not None:
                with _lock:
                    out_pts[frame[1]] = stamp
                _mark(by_stamp, stamp, "queued")
            original(self, frame)

        return set_

    def encoder(original: Callable[..., Any]) -> Callable[..., Any]:
        def encode(self: Any, frame: Any, force_keyframe: bool = False) -> Any:
            with _lock:
                stamp = out_pts.get(frame.pts)
            if stamp is not None:
                _mark(by_stamp, stamp, "encoding")
            result = original(self, frame, force_keyframe)
            if stamp is not None:
                _mark(by_stamp, stamp, "encoded")
            return result

        return encode

    _wrap(rtcrtpreceiver.RTCRtpReceiver, "_handle_rtp_packet", receiver)
    _wrap(jitterbuffer.JitterBuffer, "add", buffer)
    _wrap(rtcrtpreceiver.TimestampMapper, "map", mapper)
    for codec in (vpx.Vp8Decoder, h264.H264Decoder):
        _wrap(codec, "decode", decoder)
    for codec in (vpx.Vp8Encoder, h264.H264Encoder):
        _wrap(codec, "encode", encoder)
    _wrap(peermedia.LatestSlot, "put", slot_put)
    _wrap(peermedia.LatestSlot, "take", slot_take)
    _wrap(peermedia.Outgoing, "set", outgoing_set)


def callback(frame: Any, sender: Any) -> Any:
    """The benchmark's no-op callback (the frame back as it came), marking its stages."""
    called = time.time()
    stamp = stamp_of(frame)
    rtp = getattr(_current, "rtp", None)
    with _lock:
        stages = by_stamp.setdefault(stamp, {})
        stages.setdefault("called", called)
        if rtp is not None:
            for stage, at in by_rtp.pop(rtp, {}).items():
                stages.setdefault(stage, at)
    _current.stamp = stamp
    _mark(by_stamp, stamp, "returned")
    return frame


#: The stages in a frame's order, the page's last (benchmarks/kernel_peer.py adds those).
ORDER = (
    "first",
    "last",
    "complete",
    "decoded",
    "read",
    "taken",
    "called",
    "returned",
    "queued",
    "encoding",
    "encoded",
)


def report() -> dict[str, dict[str, float]]:
    """Every frame's stages so far, by stamp (cleared)."""
    with _lock:
        found = {str(stamp): dict(stages) for stamp, stages in by_stamp.items()}
        by_stamp.clear()
        by_rtp.clear()
        out_pts.clear()
    return found
