"""The media plumbing of a :class:`~ipymeet.widget.kernelpeer.KernelPeer`, without aiortc.

The pieces, each usable (and tested) without a network:

- :class:`LatestSlot`: the hand-over from the media loop to a callback thread. It holds the newest
  item only; putting one while the previous is still unread replaces it and counts a drop. A slow
  callback therefore always gets the newest frame, and no latency can build up. Audio goes through
  :class:`AudioWindow` instead, which keeps every chunk up to a short window (100 ms) so a callback
  that keeps up loses nothing, and drops the oldest past it.
- :class:`Worker`: one named daemon thread per received track, taking from its slot and running
  the callbacks. An exception in a callback is logged once per callback and counted in
  :class:`Counters`; the thread goes on.
- :class:`Outgoing`: the peer's one outgoing video, the newest frame set from any thread (a
  callback's result, ``publish``); each connection reads it through a track of its own
  (``OutgoingTrack`` in peerconn.py), which waits for a frame newer than the one it sent last,
  so a frame is never sent twice and none wait in a queue.
- :class:`Pacer` and :func:`frames_of`: ``publish``'s thread and its source.

Threads: puts come from the media loop's thread, takes from the worker's; everything here is
guarded by a lock or a condition, never by the loop.
"""

from __future__ import annotations

import fractions
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import numpy as np
from numpy.typing import NDArray

log = logging.getLogger("ipymeet")

T = TypeVar("T")

#: The clock of outgoing video frames (RTP's video clock).
VIDEO_CLOCK = fractions.Fraction(1, 90_000)
#: Audio arrives as 16-bit samples at this rate (Opus decodes to it), ``(samples, channels)``.
AUDIO_RATE = 48_000
#: The most audio an ``on_audio`` callback is handed at once: older samples are dropped.
AUDIO_WINDOW_S = 0.1


class Closed(Exception):
    """The slot was closed: its track ended or its peer left."""


class LatestSlot(Generic[T]):
    """Holds the newest item; an unread one is replaced (and counted in ``dropped``).

    Example::

        slot = LatestSlot[int]()
        slot.put(1); slot.put(2)     # 1 is dropped, never seen
        slot.take()                  # 2
        slot.dropped                 # 1
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: T | None = None
        self._full = False
        self._closed = False
        #: Items put so far; items replaced before they were taken.
        self.put_count = 0
        self.dropped = 0

    def put(self, item: T) -> None:
        """Offer ``item`` (any thread); replaces an unread one."""
        with self._cond:
            if self._closed:
                return
            self.put_count += 1
            if self._full:
                self.dropped += 1
            self._item, self._full = item, True
            self._cond.notify()

    def take(self, timeout: float | None = None) -> T:
        """The newest item, waiting for one; :class:`Closed` once closed, TimeoutError after
        ``timeout`` seconds without one."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._full or self._closed, timeout):
                raise TimeoutError
            if not self._full:
                raise Closed
            item = self._item
            self._item, self._full = None, False
            return item  # type: ignore[return-value]

    def close(self) -> None:
        """Wake the taker with :class:`Closed`; later puts are ignored. Idempotent."""
        with self._cond:
            self._closed = True
            self._item, self._full = None, False
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed


class AudioWindow(LatestSlot[NDArray[np.int16]]):
    """A :class:`LatestSlot` for audio chunks (``(samples, channels)`` arrays): what was put since
    the last take comes out as one array, in order, at most ``window`` seconds of it; older
    samples are dropped (``dropped`` counts chunks left out)."""

    def __init__(self, window: float = AUDIO_WINDOW_S, rate: int = AUDIO_RATE) -> None:
        super().__init__()
        self._chunks: list[NDArray[np.int16]] = []
        self._samples = 0
        self._max = max(1, int(window * rate))

    def put(self, item: NDArray[np.int16]) -> None:
        with self._cond:
            if self._closed:
                return
            self.put_count += 1
            self._chunks.append(item)
            self._samples += len(item)
            while self._samples - len(self._chunks[0]) >= self._max and len(self._chunks) > 1:
                self._samples -= len(self._chunks.pop(0))
                self.dropped += 1
            self._full = True
            self._cond.notify()

    def take(self, timeout: float | None = None) -> NDArray[np.int16]:
        with self._cond:
            if not self._cond.wait_for(lambda: self._full or self._closed, timeout):
                raise TimeoutError
            if not self._full:
                raise Closed
            chunks, self._chunks, self._samples, self._full = self._chunks, [], 0, False
        return chunks[0] if len(chunks) == 1 else np.concatenate(chunks)

    def close(self) -> None:
        with self._cond:
            self._chunks, self._samples = [], 0
        super().close()


@dataclass
class Counters:
    """What a kernel peer's media did, totals since it was made (``KernelPeer.counters``)."""

    frames_received: int = 0
    frames_processed: int = 0
    frames_dropped: int = 0
    audio_received: int = 0
    audio_processed: int = 0
    audio_dropped: int = 0
    frames_sent: int = 0
    callback_errors: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _logged: set[int] = field(default_factory=set, repr=False)

    def add(self, name: str, n: int = 1) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + n)

    def failed(self, callback: Callable[..., Any], kind: str) -> None:
        """Count an exception of ``callback`` (inside its ``except``), logging it the first time."""
        with self._lock:
            self.callback_errors += 1
            first = id(callback) not in self._logged
            self._logged.add(id(callback))
        if first:
            log.exception(
                "ipymeet: the %s callback %r raised (logged once; counted in "
                "KernelPeer.counters['callback_errors']); the call goes on",
                kind,
                getattr(callback, "__qualname__", callback),
            )

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return {k: v for k, v in vars(self).items() if not k.startswith("_")}


class Worker(threading.Thread):
    """One received track's callback thread: takes the newest item from ``slot``, converts it
    (``convert``, e.g. an ``av.VideoFrame`` to an array: done here, off the media loop) and calls
    ``deliver(item)``, until the slot closes. ``deliver`` runs the user's callbacks and counts
    their errors itself (:meth:`Counters.failed`); anything else it raises is logged once."""

    def __init__(
        self,
        name: str,
        slot: LatestSlot[Any],
        convert: Callable[[Any], Any],
        deliver: Callable[[Any], None],
    ) -> None:
        super().__init__(name=name, daemon=True)
        self.slot = slot
        self._convert = convert
        self._deliver = deliver
        self._complained = False

    def run(self) -> None:
        while True:
            try:
                item = self.slot.take()
            except Closed:
                return
            try:
                self._deliver(self._convert(item))
            except Exception:
                if not self._complained:
                    self._complained = True
                    log.exception("ipymeet: %s could not handle a frame", self.name)

    def stop(self, timeout: float = 2.0) -> None:
        self.slot.close()
        if self.is_alive() and threading.current_thread() is not self:
            self.join(timeout)


def rgb_frame(array: Any) -> NDArray[np.uint8]:
    """``array`` as an HxWx3 uint8 RGB array fit to send (even sides, as the encoders need), or
    ValueError saying what is wrong with it."""
    if not isinstance(array, np.ndarray):
        raise ValueError(f"a frame must be a numpy array, not {type(array).__name__}")
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] not in (3, 4):
        raise ValueError(f"a frame must be HxWx3 (RGB), got shape {array.shape}")
    if array.shape[2] == 4:
        array = array[:, :, :3]
    if array.dtype != np.uint8:
        if np.issubdtype(array.dtype, np.floating):
            raise ValueError("a frame must be uint8 (0-255); convert floats with (a * 255)")
        array = np.clip(array, 0, 255).astype(np.uint8)
    height, width = array.shape[0] & ~1, array.shape[1] & ~1
    if height < 2 or width < 2:
        raise ValueError(f"a frame must be at least 2x2, got shape {array.shape}")
    return np.ascontiguousarray(array[:height, :width])


class Outgoing:
    """The peer's one outgoing video: the newest frame, from any thread.

    ``set((array, pts))`` (an HxWx3 uint8 RGB array, see :func:`rgb_frame`, and its time in
    :data:`VIDEO_CLOCK` units) makes it the frame every connection sends next; each connection's
    track (peerconn.py) waits, on the media loop, for one newer than the last it sent, woken by
    :meth:`listen`, and makes an ``av.VideoFrame`` of its own from it. :attr:`live` says whether
    frames come (the members are told, to show the peer's video or its placeholder).
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._frame: Any = None
        self._seq = 0
        self._live = False
        self._closed = False
        self._listeners: list[Callable[[], None]] = []

    @property
    def seq(self) -> int:
        return self._seq

    @property
    def live(self) -> bool:
        """Whether the peer sends video now: from a :meth:`set` to the next :meth:`pause`."""
        return self._live

    def set(self, frame: tuple[NDArray[np.uint8], int]) -> None:
        """Make ``frame`` (array, pts) the newest."""
        with self._cond:
            if self._closed:
                return
            self._frame = frame
            self._seq += 1
            self._live = True
            listeners = list(self._listeners)
            self._cond.notify_all()
        for listener in listeners:
            listener()

    def pause(self) -> None:
        """No more frames for now (``publish(None)``): :attr:`live` is False until the next
        :meth:`set`; the listeners are told."""
        with self._cond:
            if not self._live:
                return
            self._live = False
            listeners = list(self._listeners)
        for listener in listeners:
            listener()

    def newest(self) -> tuple[int, Any]:
        with self._cond:
            return self._seq, self._frame

    def listen(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call ``listener()`` (quick, thread-safe) after each :meth:`set`; returns the undo."""
        with self._cond:
            self._listeners.append(listener)

        def undo() -> None:
            with self._cond:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return undo

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._listeners.clear()
            self._cond.notify_all()


def frames_of(source: Any) -> Callable[[], Any]:
    """``publish``'s source as a function giving the next array (StopIteration at its end): a
    callable is called, an iterable iterated."""
    if callable(source):
        return source  # type: ignore[no-any-return]
    if isinstance(source, Iterable) and not isinstance(source, (str, bytes, np.ndarray)):
        iterator = iter(source)
        return lambda: next(iterator)
    raise TypeError(
        "publish() takes an iterator of frames or a callable returning one (an HxWx3 uint8 "
        f"array), not {type(source).__name__}"
    )


class Pacer:
    """Call ``tick()`` about ``fps`` times a second on a thread of its own until stopped or
    ``tick`` raises StopIteration; a slow tick delays the next, ticks never pile up."""

    def __init__(self, name: str, fps: float, tick: Callable[[], None]) -> None:
        self._period = 1.0 / fps
        self._tick = tick
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> Pacer:
        self.thread.start()
        return self

    def _run(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            try:
                self._tick()
            except StopIteration:
                return
            next_at = max(next_at + self._period, time.monotonic())
            self._stop.wait(next_at - time.monotonic())

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        if self.thread.is_alive() and threading.current_thread() is not self.thread:
            self.thread.join(timeout)
