"""What a kernel peer receives: each track another member sends, read on the media loop into its
slot, and handed to the callbacks on a thread of its own.

- **the reader** (:func:`read`, on the media loop): reads one received track as fast as it comes
  (aiortc's queue of decoded frames is unbounded) and puts each frame into that track's
  :class:`~.peermedia.LatestSlot` (audio: :class:`~.peermedia.AudioWindow`), which keeps only the
  newest; the frames it replaces are counted as dropped. A member ``only`` refuses has its tracks
  read to their end and discarded (:func:`drain`), never converted; so are the frames of a kind
  no callback takes at the time (a peer that only listens converts no video, and one that only
  watches no audio: the page's sound cost a kernel peer with no ``on_audio`` CPU on every frame).
- **one callback thread per received track**, ``ipymeet-peer-<room>-<member>-video`` (or
  ``-audio``), a :class:`~.peermedia.Worker`: it takes the newest frame, converts it to an array
  there (not on the loop) and calls the callbacks (:func:`deliver`). A slow callback therefore
  sees the newest frame, and the frames it missed are counted as dropped, never queued.

Imports aiortc and PyAV only inside the functions that need them (the optional dependencies).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from .messages import Sender
from .peermedia import AUDIO_RATE, AudioWindow, LatestSlot, Worker
from .peerstate import Member, PeerState
from .speaking import level_of

log = logging.getLogger("ipymeet")


async def read(
    shared: PeerState,
    member: Member,
    track: Any,
    *,
    room: str,
    only: Callable[[Sender], bool] | None,
    size: tuple[int, int] | None = None,
    speaking_changed: Callable[[], None] = lambda: None,
) -> None:
    """Read ``track`` of ``member`` as fast as it comes (aiortc queues without bound) into its
    slot, for its callback thread; ends with the track. Video frames become arrays of ``size``
    (width, height) when given, else of the size they came at. Audio read (an ``on_audio``
    takes it) also sets ``member.voice``, from each frame's level; ``speaking_changed()`` is
    called when it turns on or off (not read, it is off: the level is not worth decoding for)."""
    from aiortc.mediastreams import MediaStreamError

    kind = track.kind
    if only is not None and not _accepts(only, member):
        await drain(track)
        return
    slot: LatestSlot[Any]
    if kind == "video":
        slot = LatestSlot()
        convert: Callable[[Any], Any] = video_array(size)
    else:
        slot = AudioWindow()
        convert = _same
    old = member.slots.get(kind)
    if old is not None:
        old.close()
    member.slots[kind] = slot
    worker = Worker(
        f"ipymeet-peer-{room}-{member.id[:8]}-{kind}",
        slot,
        convert,
        deliver(shared, kind, member),
    )
    member.workers = [w for w in member.workers if w.is_alive()] + [worker]
    worker.start()
    counters = shared.counters
    received = "frames_received" if kind == "video" else "audio_received"
    try:
        while True:
            frame = await track.recv()
            counters.add(received)
            if kind == "video":
                member.frames_in += 1
                member.size = (int(frame.width), int(frame.height))
            if not shared.takes(kind):  # nobody to hand it to: not converted, not queued
                if kind == "audio" and member.voice.speaking:
                    member.voice.off()
                    speaking_changed()
                continue
            if kind == "video":
                before = slot.dropped
                slot.put(frame)
                counters.add("frames_dropped", slot.dropped - before)
            else:
                before = slot.dropped
                samples = _audio_array(frame)
                slot.put(samples)
                counters.add("audio_dropped", slot.dropped - before)
                was = member.voice.speaking
                now = time.monotonic() * 1000
                if member.voice.update(level_of(samples), not member.flags["audio"], now) != was:
                    speaking_changed()
    except (MediaStreamError, asyncio.CancelledError):
        pass
    finally:
        slot.close()


def deliver(shared: PeerState, kind: str, member: Member) -> Callable[[Any], None]:
    """What the callback thread of ``member``'s ``kind`` track calls with each converted item:
    every callback of that kind, each one's errors counted (and logged once); an array a video
    callback returns becomes the peer's outgoing video."""
    counter = "frames_processed" if kind == "video" else "audio_processed"

    def deliver(item: Any) -> None:
        sender = Sender(member.id, member.name)
        for callback in shared.callbacks_of(kind):
            try:
                result = callback(item, sender)
                if kind == "video" and result is not None:
                    shared.send_frame(result)
            except Exception:
                shared.counters.failed(callback, kind)
        shared.counters.add(counter)

    return deliver


async def drain(track: Any) -> None:
    """Read ``track`` to its end and keep nothing (aiortc's queue of decoded frames would grow)."""
    from aiortc.mediastreams import MediaStreamError

    with contextlib.suppress(MediaStreamError, asyncio.CancelledError):
        while True:
            await track.recv()


def _accepts(only: Callable[[Sender], bool], member: Member) -> bool:
    try:
        return bool(only(Sender(member.id, member.name)))
    except Exception:
        log.exception("ipymeet: the kernel peer's only() raised; the member's media is skipped")
        return False


def video_array(size: tuple[int, int] | None) -> Callable[[Any], Any]:
    """How an ``av.VideoFrame`` becomes the callbacks' HxWx3 uint8 RGB array: at ``size``
    (width, height) when given, scaled and converted in one swscale step (up too: a smaller
    picture than asked for is enlarged, so a callback always gets its size), else as it came.

    For one track's callback thread: it keeps one swscale context from frame to frame
    (``frame.to_ndarray`` makes one per frame: 0.4 ms more a frame at 640x480)."""
    from av.video.reformatter import VideoReformatter

    reformatter = VideoReformatter()
    width, height = size if size is not None else (None, None)

    def convert(frame: Any) -> Any:
        return reformatter.reformat(frame, format="rgb24", width=width, height=height).to_ndarray()

    return convert


def _same(item: Any) -> Any:
    return item


def _audio_array(frame: Any) -> Any:
    """An ``av.AudioFrame`` as int16 ``(samples, channels)`` at ``AUDIO_RATE``."""
    import av

    if frame.format.name != "s16" or frame.sample_rate != AUDIO_RATE:
        resampler = av.AudioResampler(format="s16", layout=frame.layout.name, rate=AUDIO_RATE)
        frames = resampler.resample(frame)
        if not frames:
            import numpy as np

            return np.zeros((0, len(frame.layout.channels)), dtype=np.int16)
        frame = frames[0]
    channels = len(frame.layout.channels)
    return frame.to_ndarray().reshape(-1, channels)
