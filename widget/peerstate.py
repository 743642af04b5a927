"""What the parts of a :class:`~.kernelpeer.KernelPeer` share: :class:`PeerState`, the one object
its facade, its join and its callback threads all hold, and :class:`Member`, another member as
the join knows it.

The facade (kernelpeer.py) makes one ``PeerState`` per peer and hands it to each join
(peersession.py), whose track readers (peertracks.py) and figures (peerstats.py) write into it.
None of them reaches into the facade: what they change of it is here, behind these methods.

Threads: ``PeerState`` is read and written from any thread (the caller's, the media loop, each
callback thread); its fields that change are guarded by :attr:`PeerState.lock`, and every
change of state or of the members wakes :meth:`PeerState.wait`. A ``Member`` lives on the media
loop alone.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .contract import CallState, ErrorCode
from .peermedia import VIDEO_CLOCK, Counters, LatestSlot, Outgoing, Worker, rgb_frame
from .speaking import SpeakingGate

if TYPE_CHECKING:
    from .peerconn import MemberConnection

#: The kinds of media a callback receives, and so of the callbacks' lists.
KINDS = ("video", "audio")


@dataclass(eq=False)
class PeerState:
    """A kernel peer's state, callbacks, counters and outgoing video (any thread).

    ``state``, ``error``, ``error_code``, ``peers``, ``stats`` and the callbacks' lists are
    changed under ``lock``; ``self_id`` is written by the join on the media loop alone.
    """

    lock: threading.Lock = field(default_factory=threading.Lock)
    state: CallState = CallState.IDLE
    error: str = ""
    error_code: ErrorCode = ErrorCode.NONE
    #: This peer's member id, once in the room ("" before).
    self_id: str = ""
    peers: list[dict[str, Any]] = field(default_factory=list)
    stats: dict[str, dict[str, Any]] = field(default_factory=dict)
    counters: Counters = field(default_factory=Counters)
    outgoing: Outgoing = field(default_factory=Outgoing)
    #: The callbacks of each kind (:data:`KINDS`), in the order they were registered.
    callbacks: dict[str, list[Callable[..., Any]]] = field(
        default_factory=lambda: {kind: [] for kind in KINDS}
    )
    #: When the peer was made: the origin of its outgoing video's timestamps.
    t0: float = field(default_factory=time.monotonic)
    # Its own lock: wait_for's predicate reads the facade's properties, which take ``lock``.
    _changed: threading.Condition = field(default_factory=threading.Condition, repr=False)

    # -- the state -------------------------------------------------------------------------------

    def set_state_locked(self, state: CallState) -> None:
        """Set ``state`` (the caller holds :attr:`lock`) and wake the waiters."""
        self.state = state
        self.notify()

    def set_state(self, state: CallState) -> None:
        with self.lock:
            if self.state is not state:
                self.set_state_locked(state)

    def fail(self, code: ErrorCode, message: str) -> None:
        """The call failed: ``state`` "failed" with ``error`` and ``error_code`` saying why."""
        with self.lock:
            self.error, self.error_code = message, code
            self.set_state_locked(CallState.FAILED)

    def publish_members(self, peers: list[dict[str, Any]], connected: bool) -> None:
        """The members now (``peers``), and waiting or in_call by whether one is ``connected``."""
        with self.lock:
            self.peers = peers
            if self.state in (CallState.WAITING, CallState.IN_CALL):
                self.set_state_locked(CallState.IN_CALL if connected else CallState.WAITING)
        self.notify()

    def set_stats(self, stats: dict[str, dict[str, Any]]) -> None:
        with self.lock:
            self.stats = stats

    def notify(self) -> None:
        with self._changed:
            self._changed.notify_all()

    def wait(self, timeout: float) -> None:
        """Wait for the next change of state or members, at most ``timeout`` seconds."""
        with self._changed:
            self._changed.wait(timeout)

    # -- callbacks and the outgoing video --------------------------------------------------------

    def register(self, kind: str, callback: Any, remove: bool) -> Callable[..., Any]:
        """Add ``callback`` to those of ``kind`` (once), or remove it."""
        if not callable(callback):
            raise TypeError(f"the callback must be callable, not {type(callback).__name__}")
        callbacks = self.callbacks[kind]
        with self.lock:
            if remove:
                callbacks.remove(callback)
            elif callback not in callbacks:
                callbacks.append(callback)
        return callback  # type: ignore[no-any-return]

    def takes(self, kind: str) -> bool:
        """Whether any callback takes ``kind`` now (the readers skip what none takes)."""
        with self.lock:
            return bool(self.callbacks[kind])

    def callbacks_of(self, kind: str) -> list[Callable[..., Any]]:
        """The callbacks of ``kind`` now (a copy: one may be added or removed meanwhile)."""
        with self.lock:
            return list(self.callbacks[kind])

    def send_frame(self, array: Any) -> None:
        """Make HxWx3 uint8 RGB ``array`` the peer's outgoing video now (any thread)."""
        # The array, not an av.VideoFrame: each connection makes its own frame of it, since two
        # encoders converting one frame at once share its swscale context (a segfault, seen).
        pts = int((time.monotonic() - self.t0) / VIDEO_CLOCK)
        frame = rgb_frame(array)
        if np.may_share_memory(frame, array):
            # The frame as it is now: the caller may draw the next one into the same array while
            # the connections' encoders still read this one (they wrap it, never copy it).
            frame = frame.copy()
        self.outgoing.set((frame, pts))


class Member:
    """Another member, as this peer's join knows it (media loop only): its connection, its
    flags, its tracks' slots and callback threads, and what its figures are made of."""

    def __init__(self, peer_id: str, name: str) -> None:
        self.id = peer_id
        self.name = name
        self.present = True
        self.connection: MemberConnection | None = None
        self.flags = {"audio": True, "video": True, "screen": False}
        #: Whether it speaks now, by the level of its audio as read (peertracks.py).
        self.voice = SpeakingGate()
        self.linger: asyncio.TimerHandle | None = None
        self.workers: list[Worker] = []
        self.slots: dict[str, LatestSlot[Any]] = {}
        self.size: tuple[int, int] = (0, 0)
        self.frames_in = 0
        self.frames_out = 0
