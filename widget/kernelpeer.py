"""``KernelPeer``: Python itself as a member of a call, with every member's frames as arrays.

Example::

    from ipymeet import KernelPeer

    bot = KernelPeer("lab-42", name="edges")

    @bot.on_frame
    def process(frame, sender):          # HxWx3 uint8 RGB, and who sent it (.id, .name)
        return 255 - frame               # returned: sent as the bot's own video

    bot.join()
    bot.state, bot.peers, bot.stats      # as VideoRoom's
    bot.leave()

    KernelPeer("lab-42", relay_only=True)   # media through the signaller's TURN server only
    KernelPeer("lab-42", size=(320, 240), fps=15)  # frames of 320x240; members send no more

It enters the room through the signaller a ``VideoRoom`` of this kernel would use (the kernel's
own, shared by the user's kernels, or ``signaling_url``), as a dialect-2 member like a page
(docs/protocol.md), and holds one aiortc RTCPeerConnection per other member. This module is the
facade; the parts behind it, each in a module of its own:

- ``peersession.py``: one join, its Socket.IO client and the other members;
- ``peerconn.py``: one aiortc connection to one member (the roles of ``js/src/peer.ts``);
- ``peerice.py``: the ICE servers a connection is made with, and relay only;
- ``peertracks.py``: each received track read, and handed to the callbacks on a thread of its own;
- ``peerstats.py``: the call's figures (``stats``);
- ``peermedia.py``: the newest-frame slots, the callback threads, the outgoing video;
- ``peerstate.py``: the one object they share with this facade (state, members' list, stats,
  counters, callbacks, outgoing video), so none of them reaches into ``KernelPeer``.

Threads and loops (aiortc binds its objects to the loop that made them, so they all live on one):

- **the media loop**: one daemon thread per join, ``ipymeet-peer-<room>``, with an asyncio loop of
  its own (a :class:`~..server.core.loopthread.LoopThread`). The Socket.IO client (python-socketio's
  AsyncClient), every RTCPeerConnection and every track live there. Other threads never touch
  them: ``join()`` starts the loop and the session on it, ``leave()`` sets an event on the loop
  and waits for the thread to end; the session, once it has left, stops its own loop, which
  cancels what is left (bounded) and closes.
- **one callback thread per received track**, ``ipymeet-peer-<room>-<member>-video`` (or
  ``-audio``), fed by the media loop with the newest frame only (peertracks.py says how): a slow
  callback sees the newest frame, and the frames it missed are counted as dropped, never queued.
- **the outgoing video** (:class:`~.peermedia.Outgoing`) is one newest-frame holder set from any
  thread (a callback's returned array, ``publish``'s thread ``ipymeet-peer-<room>-publish``);
  each connection's sender reads it on the media loop and sends each frame once.

``leave()``, ``close()`` and the end of the process (``atexit``, which also runs when a kernel
shuts down) end all of it: the ``leave`` request, the connections, the client, the loop, the
threads.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import importlib
import logging
import time
import weakref
from collections.abc import Callable
from typing import Any

from ..server.core.loopthread import LoopThread
from ..server.core.validation import ROOM_RE
from . import binding, peersession
from .contract import MAX_NAME, CallState, ErrorCode
from .messages import Sender
from .peermedia import AUDIO_RATE, Pacer, frames_of
from .peersession import NO_RELAY_MESSAGE, Entry
from .peerstate import PeerState
from .videoask import check_rate, check_size

log = logging.getLogger("ipymeet")

__all__ = ["AUDIO_RATE", "NO_RELAY_MESSAGE", "KernelPeer", "Sender"]

#: What to install when aiortc (or PyAV, numpy) is missing.
EXTRA_HINT = 'pip install "ipymeet[python]"'
#: How long what is left on the media loop when a join ends (the connections' tasks, aiortc's
#: encoders) gets to finish once cancelled.
DRAIN = 2.0


def require_extra() -> None:
    """ImportError with the install command unless aiortc, PyAV and numpy can be imported."""
    missing = []
    for module in ("numpy", "av", "aiortc"):
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(module)
    if missing:
        raise ImportError(
            f"KernelPeer needs {', '.join(missing)}, the optional dependencies of Python in "
            f"the call: {EXTRA_HINT}"
        )


class KernelPeer:
    """A member of ``room`` running in this kernel: it receives every member's video and audio
    and may send one video of its own.

    ``name`` is what the others see. ``signaling_url`` names another signaller (``ipymeet
    serve``), with ``token`` (a join token or an invite link) if it requires one; otherwise the
    kernel's own signaller is used, the one its ``VideoRoom``\\ s use (started if needed), and a
    token is minted when it requires them. Needs ``pip install "ipymeet[python]"``.

    ``only(sender)``, when given, picks whose media reaches the callbacks: the tracks of a member
    it refuses are read and discarded (never converted to arrays). ``sends_video=False`` makes it
    receive only (a recorder); otherwise it can start sending at any time, before or after
    ``join()``: the others see its video while frames come (an ``on_frame`` result,
    :meth:`publish`, :meth:`send_frame`) and its placeholder before and after
    (``publish(None)``).

    ``relay_only=True`` sends and receives media only through the TURN server the signaller
    hands out, as ``VideoRoom(relay_only=True)`` does in the browser: the peer gathers, offers
    and uses relay candidates only, so the others never learn this machine's addresses. Joining
    fails with ``ErrorCode.NO_RELAY`` when the signaller offers no TURN server::

        bot = KernelPeer("lab-42", relay_only=True)
        bot.join()
        bot.wait_for(lambda p: p.state != "joining")
        bot.error_code          # ErrorCode.NO_RELAY on a signaller without --turn-url

    ``size=(width, height)`` makes every frame handed to ``on_frame`` exactly that size, an
    ``(height, width, 3)`` array (scaled and converted in one step; a smaller picture is
    enlarged to it), and ``fps`` is the frame rate wanted. The peer tells each member both (the
    data channel's ``want``, docs/protocol.md), and the member's page sends it no larger than
    fits in ``size`` and at most ``fps`` frames a second: less to send, decode and convert. A
    page never enlarges its camera for it, and a member's own cap for a crowded room still
    holds. Sides 16..3840 by 16..2160, fps 1..60; None (the default): as the member sends.

    Callbacks (see :meth:`on_frame`, :meth:`on_audio`) run on a thread per received track, never
    on the media loop; a callback that raises is logged once and counted
    (``counters["callback_errors"]``), and the call goes on.
    """

    def __init__(
        self,
        room: str,
        *,
        name: str = "",
        signaling_url: str | None = None,
        token: str | None = None,
        only: Callable[[Sender], bool] | None = None,
        sends_video: bool | None = None,
        relay_only: bool = False,
        size: tuple[int, int] | None = None,
        fps: int | None = None,
    ) -> None:
        if not isinstance(room, str) or not ROOM_RE.fullmatch(room):
            raise ValueError(
                f"room {room!r} is not a valid room id: use 1-64 letters, digits, '_', '.' or '-'"
            )
        if not isinstance(name, str) or len(name) > MAX_NAME:
            raise ValueError(f"name must be a string of at most {MAX_NAME} characters")
        if signaling_url is not None and (
            not isinstance(signaling_url, str)
            or not signaling_url.startswith(("http://", "https://"))
        ):
            raise ValueError("signaling_url must be an http:// or https:// URL (or None)")
        if token is not None and signaling_url is None:
            raise ValueError("token is for a signaller given by signaling_url")
        if only is not None and not callable(only):
            raise TypeError(f"only must be callable, not {type(only).__name__}")
        if not isinstance(relay_only, bool):
            raise TypeError(f"relay_only must be True or False, not {relay_only!r}")
        size = check_size(size, "size")
        fps = check_rate(fps, "fps")
        require_extra()
        if relay_only:
            from .peerice import require_relay_policy

            require_relay_policy()  # refused here, not faked: an older aiortc gathers host too
        self.room = room
        self.name = name
        self.signaling_url = signaling_url.rstrip("/") if signaling_url else None
        self._token = binding.token_of(token) if token is not None else None
        self._server: binding.KernelServer | None = (
            None if signaling_url else binding.kernel_signaller_for(None, None)
        )
        #: What this facade shares with each join and the callback threads.
        self._shared = PeerState()
        #: The peer's outgoing video (the newest frame; ``publish``, ``send_frame``).
        self.outgoing = self._shared.outgoing
        #: The media loop of the current (or last) join.
        self._media: LoopThread | None = None
        self._stop: asyncio.Event | None = None
        self._pacer: Pacer | None = None
        self._only = only
        self._sends = sends_video
        #: Media through the signaller's TURN server only (fixed for the peer's life).
        self.relay_only = relay_only
        #: The size (width, height) of the frames handed over, and asked of each member (None:
        #: as sent); fixed for the peer's life.
        self.size = size
        #: The frame rate asked of each member (None: as it sends); fixed for the peer's life.
        self.fps = fps
        self._closed = False
        # At exit (a kernel's shutdown too): leave the room and end the threads. Registered
        # here, after the kernel's signaller started, so it runs before that one stops (atexit
        # runs last-registered first) and the others hear "left" rather than a dropped member.
        self._finalizer = weakref.finalize(self, _at_exit, weakref.ref(self))
        atexit.register(self._finalizer)

    # -- what is known of the call (any thread) --------------------------------------------------

    @property
    def state(self) -> CallState:
        """As ``VideoRoom.state``: idle, joining, waiting, in_call, reconnecting, left, failed."""
        return self._shared.state

    @property
    def error(self) -> str:
        """The last problem in plain words ("" when none)."""
        return self._shared.error

    @property
    def error_code(self) -> ErrorCode:
        """The last problem as an :class:`ErrorCode` (``ErrorCode.NONE`` when none)."""
        return self._shared.error_code

    @property
    def id(self) -> str:
        """This peer's member id, once in the room ("" before)."""
        return self._shared.self_id

    @property
    def peers(self) -> list[dict[str, Any]]:
        """The others in the room, as ``VideoRoom.peers``: ``[{"id", "name", "connection",
        "audio", "video", "screen", "speaking"}]`` (the flags as each member's page says them).
        ``speaking`` comes from the level of the sound received, so only while an ``on_audio``
        callback takes it (else it stays False); a muted member is never speaking."""
        with self._shared.lock:
            return [dict(p) for p in self._shared.peers]

    @property
    def speaking(self) -> list[str]:
        """The ids of the others speaking now, as ``VideoRoom.speaking`` (see :attr:`peers`);
        ``wait_for`` wakes when it changes."""
        with self._shared.lock:
            return [p["id"] for p in self._shared.peers if p["speaking"]]

    @property
    def stats(self) -> dict[str, dict[str, Any]]:
        """Call quality per peer id about once a second, as ``VideoRoom.stats`` (``rtt_ms``,
        ``bitrate_in_kbps``, ``bitrate_out_kbps``, ``fps_in``, ``fps_out``, ``width``,
        ``height``, ``packet_loss``, ``candidate_type``), plus this peer's own
        ``frames_dropped`` for that member (frames a slow callback never saw)."""
        with self._shared.lock:
            return {k: dict(v) for k, v in self._shared.stats.items()}

    @property
    def counters(self) -> dict[str, int]:
        """Totals since this peer was made: ``frames_received``, ``frames_processed``,
        ``frames_dropped``, ``audio_received``, ``audio_processed``, ``audio_dropped`` (chunks),
        ``frames_sent`` (over all connections) and ``callback_errors``."""
        return self._shared.counters.snapshot()

    def wait_for(self, predicate: Callable[[KernelPeer], bool], timeout: float = 30.0) -> None:
        """Block until ``predicate(self)`` holds (checked at each change of state or peers, and
        every 0.1 s); TimeoutError after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while not predicate(self):
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"condition not met within {timeout:g} s (state {self.state})")
            self._shared.wait(min(left, 0.1))

    def __repr__(self) -> str:
        return f"KernelPeer(room={self.room!r}, name={self.name!r}, state={self.state.value!r})"

    # -- callbacks and publishing (any thread) ---------------------------------------------------

    def on_frame(
        self, callback: Callable[[Any, Sender], Any], *, remove: bool = False
    ) -> Callable[[Any, Sender], Any]:
        """Call ``callback(frame, sender)`` with each member's newest video frame, an HxWx3
        uint8 RGB array (of the peer's ``size`` when given), and its ``Sender`` (``id``,
        ``name``). Usable as a decorator.

        It runs on that member's video thread; while it runs, newer frames replace each other
        and only the newest is handed over next (``counters["frames_dropped"]`` counts the
        rest). An array it returns is sent as this peer's own video (HxWx3 uint8; the newest
        of any callback or :meth:`publish` is what goes out).
        """
        return self._shared.register("video", callback, remove)

    def on_audio(
        self, callback: Callable[[Any, Sender], Any], *, remove: bool = False
    ) -> Callable[[Any, Sender], Any]:
        """Call ``callback(samples, sender)`` with each member's audio: an int16 array of shape
        ``(n, channels)`` at ``AUDIO_RATE`` (48 kHz), everything that came since the last call
        but at most the newest 100 ms (older chunks are dropped and counted). Usable as a
        decorator; runs on that member's audio thread."""
        return self._shared.register("audio", callback, remove)

    def publish(self, source: Any, *, fps: float = 30.0) -> None:
        """Send frames from Python as this peer's video, with no input at all: ``source`` is an
        iterator of HxWx3 uint8 arrays or a callable returning one (None: skip this tick), read
        about ``fps`` times a second on a thread of its own until it ends; ``publish(None)``
        stops it. Before or after ``join()``; while it does not send, the others see the
        peer's placeholder."""
        if not (0 < fps <= 120):
            raise ValueError("fps must be between 0 and 120")
        if source is not None and self._sends is False:
            raise ValueError("this KernelPeer receives only (sends_video=False): it cannot publish")
        if self._pacer is not None:
            self._pacer.stop()
            self._pacer = None
            if source is None:
                self.outgoing.pause()
        if source is None:
            return
        next_frame = frames_of(source)

        def tick() -> None:
            try:
                array = next_frame()
            except StopIteration:
                self.outgoing.pause()
                raise
            except Exception:
                self._shared.counters.failed(next_frame, "publish")
                return
            if array is not None:
                try:
                    self.send_frame(array)
                except ValueError:
                    self._shared.counters.failed(next_frame, "publish")

        self._pacer = Pacer(f"ipymeet-peer-{self.room}-publish", fps, tick).start()

    def send_frame(self, array: Any) -> None:
        """Send one HxWx3 uint8 RGB array as this peer's video now (any thread)."""
        self._shared.send_frame(array)

    # -- joining and leaving ---------------------------------------------------------------------

    def join(self) -> None:
        """Enter the room, on a thread and loop of this peer's own; returns at once (``state``
        follows: joining, then waiting or in_call)."""
        if self._closed:
            raise RuntimeError("this KernelPeer is closed; make a new one")
        shared = self._shared
        with shared.lock:
            if self._media is not None and self._media.thread.is_alive():
                raise RuntimeError(
                    f"this KernelPeer is in room {self.room!r} already (state {shared.state}); "
                    "leave() first"
                )
            shared.error, shared.error_code = "", ErrorCode.NONE
            shared.set_state_locked(CallState.JOINING)
            media = self._media = LoopThread(f"ipymeet-peer-{self.room}", drain=DRAIN)
            stop = self._stop = asyncio.Event()
        try:
            media.start()
        except Exception as problem:
            shared.fail(ErrorCode.INTERNAL_ERROR, f"the kernel peer could not start: {problem}")
            raise
        media.submit(self._session(media, stop))

    def leave(self, timeout: float = 5.0) -> None:
        """Leave the room: the ``leave`` request, every connection, the client, the loop and the
        callback threads end. Idempotent."""
        media, stop = self._media, self._stop
        if media is None or stop is None:
            return
        media.call_soon(stop.set)  # False once the loop has ended: nothing to leave
        media.join(timeout)  # the session leaves, then stops its loop (not from that thread)
        with self._shared.lock:
            if self._shared.state is not CallState.FAILED:
                self._shared.set_state_locked(CallState.LEFT)

    def close(self) -> None:
        """Leave, stop publishing and end everything; the peer cannot join again."""
        self._closed = True
        self.publish(None)
        self.leave()
        self.outgoing.close()
        self._finalizer.detach()
        atexit.unregister(self._finalizer)

    # -- the media loop --------------------------------------------------------------------------

    async def _session(self, media: LoopThread, stop: asyncio.Event) -> None:
        """One join, on its media loop; the loop ends with it (and cancels what is left)."""
        try:
            await peersession.run(self._shared, self._entry(), stop)
        except Exception as problem:
            log.exception("ipymeet: the kernel peer's call ended with an error")
            self._shared.fail(ErrorCode.INTERNAL_ERROR, f"the kernel peer failed: {problem}")
        finally:
            media.stop()

    def _entry(self) -> Entry:
        return Entry(
            room=self.room,
            name=self.name,
            signaling_url=self.signaling_url,
            server=self._server,
            token=self._token,
            relay_only=self.relay_only,
            sends_video=self._sends is not False,
            only=self._only,
            size=self.size,
            fps=self.fps,
        )


def _at_exit(ref: weakref.ref[KernelPeer]) -> None:
    peer = ref()
    if peer is not None:
        with contextlib.suppress(Exception):
            peer.publish(None)
            peer.leave(timeout=3.0)
