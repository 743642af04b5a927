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

It enters the room through the signaller a ``VideoRoom`` of this kernel would use (the kernel's
own, shared by the user's kernels, or ``signaling_url``), as a dialect-2 member like a page
(docs/protocol.md), and holds one aiortc RTCPeerConnection per other member
(``widget/peerconn.py``, the roles of ``js/src/peer.ts``).

Threads and loops (aiortc binds its objects to the loop that made them, so they all live on one):

- **the media loop**: one daemon thread per join, ``ipymeet-peer-<room>``, with an asyncio loop of
  its own (a :class:`~..server.core.loopthread.LoopThread`). The Socket.IO client (python-socketio's
  AsyncClient), every RTCPeerConnection and every track live there. Other threads never touch
  them: ``join()`` starts the loop and the session on it, ``leave()`` sets an event on the loop
  and waits for the thread to end; the session, once it has left, stops its own loop, which
  cancels what is left (bounded) and closes.
- **one callback thread per received track**, ``ipymeet-peer-<room>-<member>-video`` (or
  ``-audio``). The media loop reads each track as fast as it comes (aiortc's queue of decoded
  frames is unbounded) and puts the frame into that track's :class:`~.peermedia.LatestSlot`,
  which keeps only the newest; the callback thread takes it, converts it to an array there (not
  on the loop) and calls the callbacks. A slow callback therefore sees the newest frame, and the
  frames it missed are counted as dropped, never queued.
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
import random
import secrets
import threading
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..server.core import internals
from ..server.core.loopthread import LoopThread
from ..server.core.validation import ROOM_RE
from . import binding
from .contract import MAX_NAME, CallState, ErrorCode
from .messages import Sender
from .peermedia import (
    AUDIO_RATE,
    VIDEO_CLOCK,
    AudioWindow,
    Counters,
    LatestSlot,
    Outgoing,
    Pacer,
    Worker,
    frames_of,
    rgb_frame,
)

if TYPE_CHECKING:
    from .peerconn import MemberConnection

log = logging.getLogger("ipymeet")

__all__ = ["AUDIO_RATE", "KernelPeer", "Sender"]

#: What to install when aiortc (or PyAV, numpy) is missing.
EXTRA_HINT = 'pip install "ipymeet[python]"'
#: How long the peer waits to reach the signaller and for each acknowledgement.
CONNECT_TIMEOUT = 5.0
REQUEST_TIMEOUT = 5.0
#: Reaching the signaller again after it dropped the peer: the first wait, doubled up to the
#: last (each with a random part, so the members of a restarted signaller do not come at once).
RECONNECT_DELAYS = (0.25, 5.0)
#: A member whose signalling dropped (``peer_left`` "disconnected") is kept this long.
LINGER_S = 30.0
#: How long what is left on the media loop when a join ends (the connections' tasks, aiortc's
#: encoders) gets to finish once cancelled.
DRAIN = 2.0
#: Lifetime of the join tokens the peer mints for itself on a signaller that requires them.
TOKEN_TTL = 600.0
#: The error of a relay-only peer on a signaller without TURN (the page's, js/src/errors.ts).
NO_RELAY_MESSAGE = (
    "Relay only was asked for (relay_only=True), but the signaller offers no TURN server, so no "
    "connection can be made. Start the signaller with --turn-url and --turn-secret "
    "(IPYMEET_TURN_URLS and IPYMEET_TURN_SECRET for a kernel's), or turn relay only off."
)


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


class _Member:
    """Another member, as this peer knows it (media loop only)."""

    def __init__(self, peer_id: str, name: str) -> None:
        self.id = peer_id
        self.name = name
        self.present = True
        self.connection: MemberConnection | None = None
        self.flags = {"audio": True, "video": True, "screen": False}
        self.linger: asyncio.TimerHandle | None = None
        self.workers: list[Worker] = []
        self.slots: dict[str, LatestSlot[Any]] = {}
        self.size: tuple[int, int] = (0, 0)
        self.frames_in = 0
        self.frames_out = 0
        self.last: dict[str, float] = {}


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
        require_extra()
        if relay_only:
            from .peerconn import require_relay_policy

            require_relay_policy()  # refused here, not faked: an older aiortc gathers host too
        self.room = room
        self.name = name
        self.signaling_url = signaling_url.rstrip("/") if signaling_url else None
        self._token = binding.token_of(token) if token is not None else None
        self._server: binding.KernelServer | None = (
            None if signaling_url else binding.kernel_signaller_for(None, None)
        )
        self._lock = threading.Lock()
        self._frame_callbacks: list[Callable[..., Any]] = []
        self._audio_callbacks: list[Callable[..., Any]] = []
        self.outgoing = Outgoing()
        self._t0 = time.monotonic()
        self._counters = Counters()
        self._state = CallState.IDLE
        self._error = ""
        self._error_code = ErrorCode.NONE
        self._peers: list[dict[str, Any]] = []
        self._stats: dict[str, dict[str, Any]] = {}
        self._self_id = ""
        #: The media loop of the current (or last) join.
        self._media: LoopThread | None = None
        self._stop: asyncio.Event | None = None
        self._pacer: Pacer | None = None
        self._only = only
        self._sends = sends_video
        #: Media through the signaller's TURN server only (fixed for the peer's life).
        self.relay_only = relay_only
        self._closed = False
        # Its own lock: wait_for's predicate reads the properties, which take self._lock.
        self._state_changed = threading.Condition()
        # At exit (a kernel's shutdown too): leave the room and end the threads. Registered
        # here, after the kernel's signaller started, so it runs before that one stops (atexit
        # runs last-registered first) and the others hear "left" rather than a dropped member.
        self._finalizer = weakref.finalize(self, _at_exit, weakref.ref(self))
        atexit.register(self._finalizer)

    # -- what is known of the call (any thread) --------------------------------------------------

    @property
    def state(self) -> CallState:
        """As ``VideoRoom.state``: idle, joining, waiting, in_call, reconnecting, left, failed."""
        return self._state

    @property
    def error(self) -> str:
        """The last problem in plain words ("" when none)."""
        return self._error

    @property
    def error_code(self) -> ErrorCode:
        """The last problem as an :class:`ErrorCode` (``ErrorCode.NONE`` when none)."""
        return self._error_code

    @property
    def id(self) -> str:
        """This peer's member id, once in the room ("" before)."""
        return self._self_id

    @property
    def peers(self) -> list[dict[str, Any]]:
        """The others in the room, as ``VideoRoom.peers``: ``[{"id", "name", "connection",
        "audio", "video", "screen"}]`` (the flags as each member's page says them)."""
        with self._lock:
            return [dict(p) for p in self._peers]

    @property
    def stats(self) -> dict[str, dict[str, Any]]:
        """Call quality per peer id about once a second, as ``VideoRoom.stats`` (``rtt_ms``,
        ``bitrate_in_kbps``, ``bitrate_out_kbps``, ``fps_in``, ``fps_out``, ``width``,
        ``height``, ``packet_loss``, ``candidate_type``), plus this peer's own
        ``frames_dropped`` for that member (frames a slow callback never saw)."""
        with self._lock:
            return {k: dict(v) for k, v in self._stats.items()}

    @property
    def counters(self) -> dict[str, int]:
        """Totals since this peer was made: ``frames_received``, ``frames_processed``,
        ``frames_dropped``, ``audio_received``, ``audio_processed``, ``audio_dropped`` (chunks),
        ``frames_sent`` (over all connections) and ``callback_errors``."""
        return self._counters.snapshot()

    def wait_for(self, predicate: Callable[[KernelPeer], bool], timeout: float = 30.0) -> None:
        """Block until ``predicate(self)`` holds (checked at each change of state or peers, and
        every 0.1 s); TimeoutError after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while not predicate(self):
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"condition not met within {timeout:g} s (state {self._state})")
            with self._state_changed:
                self._state_changed.wait(min(left, 0.1))

    def __repr__(self) -> str:
        return f"KernelPeer(room={self.room!r}, name={self.name!r}, state={self._state.value!r})"

    # -- callbacks and publishing (any thread) ---------------------------------------------------

    def on_frame(
        self, callback: Callable[[Any, Sender], Any], *, remove: bool = False
    ) -> Callable[[Any, Sender], Any]:
        """Call ``callback(frame, sender)`` with each member's newest video frame, an HxWx3
        uint8 RGB array, and its ``Sender`` (``id``, ``name``). Usable as a decorator.

        It runs on that member's video thread; while it runs, newer frames replace each other
        and only the newest is handed over next (``counters["frames_dropped"]`` counts the
        rest). An array it returns is sent as this peer's own video (HxWx3 uint8; the newest
        of any callback or :meth:`publish` is what goes out).
        """
        return self._register(self._frame_callbacks, callback, remove)

    def on_audio(
        self, callback: Callable[[Any, Sender], Any], *, remove: bool = False
    ) -> Callable[[Any, Sender], Any]:
        """Call ``callback(samples, sender)`` with each member's audio: an int16 array of shape
        ``(n, channels)`` at ``AUDIO_RATE`` (48 kHz), everything that came since the last call
        but at most the newest 100 ms (older chunks are dropped and counted). Usable as a
        decorator; runs on that member's audio thread."""
        return self._register(self._audio_callbacks, callback, remove)

    def _register(
        self, callbacks: list[Callable[..., Any]], callback: Any, remove: bool
    ) -> Callable[..., Any]:
        if not callable(callback):
            raise TypeError(f"the callback must be callable, not {type(callback).__name__}")
        with self._lock:
            if remove:
                callbacks.remove(callback)
            elif callback not in callbacks:
                callbacks.append(callback)
        return callback  # type: ignore[no-any-return]

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
                self._counters.failed(next_frame, "publish")
                return
            if array is not None:
                try:
                    self.send_frame(array)
                except ValueError:
                    self._counters.failed(next_frame, "publish")

        self._pacer = Pacer(f"ipymeet-peer-{self.room}-publish", fps, tick).start()

    def send_frame(self, array: Any) -> None:
        """Send one HxWx3 uint8 RGB array as this peer's video now (any thread)."""
        # The array, not an av.VideoFrame: each connection makes its own frame of it, since two
        # encoders converting one frame at once share its swscale context (a segfault, seen).
        pts = int((time.monotonic() - self._t0) / VIDEO_CLOCK)
        self.outgoing.set((rgb_frame(array), pts))

    # -- joining and leaving ---------------------------------------------------------------------

    def join(self) -> None:
        """Enter the room, on a thread and loop of this peer's own; returns at once (``state``
        follows: joining, then waiting or in_call)."""
        if self._closed:
            raise RuntimeError("this KernelPeer is closed; make a new one")
        with self._lock:
            if self._media is not None and self._media.thread.is_alive():
                raise RuntimeError(
                    f"this KernelPeer is in room {self.room!r} already (state {self._state}); "
                    "leave() first"
                )
            self._error, self._error_code = "", ErrorCode.NONE
            self._set_state_locked(CallState.JOINING)
            media = self._media = LoopThread(f"ipymeet-peer-{self.room}", drain=DRAIN)
            self._stop = asyncio.Event()
        try:
            media.start()
        except Exception as problem:
            self._fail(ErrorCode.INTERNAL_ERROR, f"the kernel peer could not start: {problem}")
            raise
        media.submit(self._session(media))

    def leave(self, timeout: float = 5.0) -> None:
        """Leave the room: the ``leave`` request, every connection, the client, the loop and the
        callback threads end. Idempotent."""
        media, stop = self._media, self._stop
        if media is None or stop is None:
            return
        media.call_soon(stop.set)  # False once the loop has ended: nothing to leave
        media.join(timeout)  # the session leaves, then stops its loop (not from that thread)
        with self._lock:
            if self._state is not CallState.FAILED:
                self._set_state_locked(CallState.LEFT)

    def close(self) -> None:
        """Leave, stop publishing and end everything; the peer cannot join again."""
        self._closed = True
        self.publish(None)
        self.leave()
        self.outgoing.close()
        self._finalizer.detach()
        atexit.unregister(self._finalizer)

    # -- the media loop --------------------------------------------------------------------------

    async def _session(self, media: LoopThread) -> None:
        """One join, on its media loop; the loop ends with it (and cancels what is left)."""
        try:
            await _run_session(self)
        except Exception as problem:
            log.exception("ipymeet: the kernel peer's call ended with an error")
            self._fail(ErrorCode.INTERNAL_ERROR, f"the kernel peer failed: {problem}")
        finally:
            media.stop()

    def _stop_soon(self) -> None:
        """End the session (on the media loop: the call failed)."""
        if self._stop is not None:
            self._stop.set()

    def _set_state_locked(self, state: CallState) -> None:
        self._state = state
        self._notify()

    def _notify(self) -> None:
        with self._state_changed:
            self._state_changed.notify_all()

    def _set_state(self, state: CallState) -> None:
        with self._lock:
            if self._state is not state:
                self._set_state_locked(state)

    def _fail(self, code: ErrorCode, message: str) -> None:
        with self._lock:
            self._error, self._error_code = message, code
            self._set_state_locked(CallState.FAILED)

    def _publish_members(self, peers: list[dict[str, Any]], connected: bool) -> None:
        with self._lock:
            self._peers = peers
            if self._state in (CallState.WAITING, CallState.IN_CALL):
                self._set_state_locked(CallState.IN_CALL if connected else CallState.WAITING)
        self._notify()

    def _deliver(
        self, callbacks: list[Callable[..., Any]], kind: str, member: _Member
    ) -> Callable[[Any], None]:
        counter = "frames_processed" if kind == "video" else "audio_processed"

        def deliver(item: Any) -> None:
            sender = Sender(member.id, member.name)
            with self._lock:
                chosen = list(callbacks)
            for callback in chosen:
                try:
                    result = callback(item, sender)
                    if kind == "video" and result is not None:
                        self.send_frame(result)
                except Exception:
                    self._counters.failed(callback, kind)
            self._counters.add(counter)

        return deliver


class _Session:
    """One join of a :class:`KernelPeer`, on its media loop: the Socket.IO client, the members
    and their connections, the track readers and the stats."""

    def __init__(self, peer: KernelPeer) -> None:
        import socketio

        self.peer = peer
        self.loop = asyncio.get_running_loop()
        self.members: dict[str, _Member] = {}
        self.self_id = ""
        self.ice: list[Any] = []
        self.session_key = secrets.token_urlsafe(24)
        self.entered = False
        self.leaving = False
        self.held: list[tuple[str, Any]] = []  # events that came before the enter ack
        self.tasks: set[asyncio.Task[Any]] = set()
        self.sends_video = peer._sends is not False
        self.announced = False  # what the members were last told: sending video or not
        options: dict[str, Any] = {}
        server = peer._server
        self.url = peer.signaling_url or (server.url if server is not None else "")
        fingerprint = server.fingerprint if server is not None else None
        if fingerprint is not None and self.url.startswith("https:"):
            import aiohttp

            digest = bytes.fromhex(fingerprint.replace(":", ""))
            options["websocket_extra_options"] = {"ssl": aiohttp.Fingerprint(digest)}
        # Reconnecting is ours (_reconnect): python-socketio's gives up when the signaller
        # ends the connection itself, as one does when it stops or restarts.
        self.sio = socketio.AsyncClient(reconnection=False, handle_sigint=False, **options)
        self.reconnecting: asyncio.Task[None] | None = None
        # Plain functions, not coroutines: each runs to its end in arrival order (python-socketio
        # runs every event in a task of its own, and coroutines could interleave).
        self.sio.on("connect", self._connected)
        self.sio.on("disconnect", self._disconnected)
        for event in ("peer_joined", "peer_left", "signal", "error", "ice_servers"):
            self.sio.on(event, lambda data=None, _event=event: self._event(_event, data))

    def spawn(self, coroutine: Any) -> None:
        task = self.loop.create_task(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def run(self) -> None:
        stop = self.peer._stop
        assert stop is not None
        try:
            await asyncio.wait_for(
                self.sio.connect(self.url, transports=["websocket"], wait_timeout=CONNECT_TIMEOUT),
                CONNECT_TIMEOUT + 1,
            )
        except Exception as problem:
            self.peer._fail(
                ErrorCode.UNREACHABLE,
                f"the kernel peer could not reach the signaller at {self.url}: {problem}",
            )
            return
        self.spawn(self._measure())
        unlisten = self.peer.outgoing.listen(self._outgoing_changed)
        try:
            await stop.wait()
        finally:
            unlisten()
        self.leaving = True
        if self.reconnecting is not None:
            self.reconnecting.cancel()
        if self.entered and self.sio.connected:
            with contextlib.suppress(Exception):
                await self.sio.call("leave", {}, timeout=2)
        await asyncio.gather(
            *(self._drop(m) for m in list(self.members.values())), return_exceptions=True
        )
        with contextlib.suppress(Exception):
            await self.sio.disconnect()
        for task in list(self.tasks):
            task.cancel()

    # -- signalling --------------------------------------------------------------------------------

    def _connected(self) -> None:
        self.spawn(self._enter())

    def _disconnected(self, *_: Any) -> None:
        self.entered = False
        if self.leaving or self.peer.state is CallState.FAILED:
            return
        self.peer._set_state(CallState.RECONNECTING)
        if self.reconnecting is None or self.reconnecting.done():
            self.reconnecting = self.loop.create_task(self._reconnect())
            self.tasks.add(self.reconnecting)
            self.reconnecting.add_done_callback(self.tasks.discard)

    async def _reconnect(self) -> None:
        """Reach the signaller again until it answers or the peer leaves; entering follows
        (``_connected``). The connections to the members go on meanwhile."""
        delay, longest = RECONNECT_DELAYS
        while not self.leaving:
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            if self.sio.connected:
                return
            try:
                await asyncio.wait_for(
                    self.sio.connect(
                        self.url, transports=["websocket"], wait_timeout=CONNECT_TIMEOUT
                    ),
                    CONNECT_TIMEOUT + 1,
                )
                return
            except Exception as problem:
                log.debug("ipymeet: the kernel peer could not reach %s yet: %s", self.url, problem)
                delay = min(delay * 2, longest)

    async def _enter(self) -> None:
        payload: dict[str, Any] = {
            "room": self.peer.room,
            "name": self.peer.name,
            "session": self.session_key,
        }
        server = self.peer._server
        token = self.peer._token
        if server is not None and server.requires_tokens:
            token = server.mint(self.peer.room, TOKEN_TTL)
        if token is not None:
            payload["token"] = token
        try:
            ack = await self.sio.call("enter", payload, timeout=REQUEST_TIMEOUT)
        except Exception as problem:
            if not self.leaving:
                self.peer._fail(
                    ErrorCode.TIMEOUT, f"the signaller did not answer the kernel peer: {problem}"
                )
                self.peer._stop_soon()
            return
        if not isinstance(ack, dict) or not ack.get("ok"):
            code = str(ack.get("code", "")) if isinstance(ack, dict) else ""
            message = str(ack.get("message", "")) if isinstance(ack, dict) else ""
            try:
                error_code = ErrorCode(code)
            except ValueError:
                error_code = ErrorCode.INTERNAL_ERROR
            self.peer._fail(
                error_code, message or f"the signaller refused the kernel peer ({code})"
            )
            self.peer._stop_soon()
            return
        from .peerconn import has_turn, ice_servers

        again = self.self_id != ""
        if again and ack["self"] != self.self_id:
            for member in list(self.members.values()):
                await self._drop(member)
        self.self_id = str(ack["self"])
        self.peer._self_id = self.self_id
        # In place: the member connections hold this list and make their next RTCPeerConnection
        # with it (aiortc can neither change a connection's servers nor restart ICE).
        self.ice[:] = ice_servers(ack.get("ice_servers"))
        self.entered = True  # so that stopping sends "leave"
        if self.peer.relay_only and not has_turn(self.ice):
            # As the pages (js/src/members.ts): no relay to use, so no connection could be made.
            self.leaving = True  # no member is added meanwhile (_event)
            self.peer._fail(ErrorCode.NO_RELAY, NO_RELAY_MESSAGE)
            self.peer._stop_soon()
            return
        self.peer._set_state(CallState.WAITING)
        listed = set()
        for info in ack.get("peers", []):
            if not isinstance(info, dict) or not isinstance(info.get("id"), str):
                continue
            listed.add(info["id"])
            known = self.members.get(info["id"])
            if known is None:
                self._add(info["id"], str(info.get("name", "")), initiator=True)
            else:
                self._present(known, str(info.get("name", "")))
                if known.connection is not None:
                    known.connection.resync()
        for member in list(self.members.values()):
            if member.id not in listed:
                self._away(member)
        held, self.held = self.held, []
        for event, data in held:
            self._event(event, data)
        self._changed()

    def _event(self, event: str, data: Any) -> None:
        if self.leaving:
            return
        if not self.entered:
            self.held.append((event, data))
            return
        if not isinstance(data, dict):
            return
        if event == "peer_joined" and isinstance(data.get("id"), str):
            known = self.members.get(data["id"])
            if known is None:
                self._add(data["id"], str(data.get("name", "")), initiator=False)
            else:
                self._present(known, str(data.get("name", "")))
        elif event == "peer_left" and isinstance(data.get("id"), str):
            member = self.members.get(data["id"])
            if member is not None:
                if data.get("reason") == "disconnected":
                    self._away(member)
                else:
                    self.spawn(self._drop(member))
        elif event == "signal" and isinstance(data.get("from"), str):
            member = self.members.get(data["from"])
            description = data.get("description")
            if member is None:
                if not (isinstance(description, dict) and description.get("type") == "offer"):
                    return
                member = self._add(data["from"], "", initiator=False)
            if member.connection is not None:
                member.connection.receive(data)
        elif event == "ice_servers" and isinstance(data.get("ice_servers"), list):
            from .peerconn import ice_servers

            self.ice[:] = ice_servers(data["ice_servers"])  # fresh TURN credentials, as above
        elif event == "error":
            log.warning(
                "ipymeet: the signaller said to the kernel peer: %s", data.get("message", data)
            )
        self._changed()

    def signal(self, to: str, payload: dict[str, Any]) -> None:
        if self.sio.connected and not self.leaving:
            self.spawn(self._emit_signal({"to": to, **payload}))

    async def _emit_signal(self, payload: dict[str, Any]) -> None:
        with contextlib.suppress(Exception):
            await self.sio.emit("signal", payload)

    # -- members ---------------------------------------------------------------------------------

    def _add(self, peer_id: str, name: str, *, initiator: bool) -> _Member:
        from .peerconn import MemberConnection

        member = _Member(peer_id, name)
        self.members[peer_id] = member
        member.connection = MemberConnection(
            self,
            self.self_id,
            peer_id,
            initiator=initiator,
            ice=self.ice,
            outgoing=self.peer.outgoing if self.sends_video else None,
            relay_only=self.peer.relay_only,
        )
        return member

    def _present(self, member: _Member, name: str) -> None:
        member.present = True
        if name:
            member.name = name
        if member.linger is not None:
            member.linger.cancel()
            member.linger = None

    def _away(self, member: _Member) -> None:
        """Its signalling dropped: keep its connection a while (it may enter again)."""
        member.present = False
        if member.linger is None:
            member.linger = self.loop.call_later(
                LINGER_S, lambda: self.spawn(self._drop(member)) if not member.present else None
            )

    async def _drop(self, member: _Member) -> None:
        if self.members.get(member.id) is member:
            del self.members[member.id]
        if member.linger is not None:
            member.linger.cancel()
        if member.connection is not None:
            await member.connection.close()
        for worker in member.workers:
            worker.slot.close()
        self._changed()

    # -- what the connections tell (MemberConnection's Host) ---------------------------------------

    def _member_of(self, connection: MemberConnection) -> _Member | None:
        member = self.members.get(connection.peer_id)
        return member if member is not None and member.connection is connection else None

    def track(self, connection: MemberConnection, track: Any) -> None:
        member = self._member_of(connection)
        if member is None or track.kind not in ("video", "audio"):
            return
        self.spawn(self._read(member, track))

    def changed(self) -> None:
        self._changed()

    def flags(self, connection: MemberConnection, flags: dict[str, bool]) -> None:
        member = self._member_of(connection)
        if member is not None and member.flags != flags:
            member.flags = flags
            self._changed()

    def sent_frame(self, connection: MemberConnection) -> None:
        member = self._member_of(connection)
        if member is not None:
            member.frames_out += 1
        self.peer._counters.add("frames_sent")

    def _outgoing_changed(self) -> None:  # any thread, after each frame set: keep it cheap
        if self.peer.outgoing.live != self.announced:
            with contextlib.suppress(RuntimeError):  # the loop has ended
                self.loop.call_soon_threadsafe(self._announce)

    def _announce(self) -> None:
        """Tell every member whether this peer sends video now, once per change."""
        live = self.peer.outgoing.live
        if live == self.announced:
            return
        self.announced = live
        for member in self.members.values():
            if member.connection is not None:
                member.connection.announce()

    def _changed(self) -> None:
        peers = [
            binding.peer(
                m.id,
                m.name,
                {"connection": m.connection.state if m.connection else "new", **m.flags},
            )
            for m in self.members.values()
        ]
        connected = any(p["connection"] == "connected" for p in peers)
        self.peer._publish_members(peers, connected)

    # -- the tracks ------------------------------------------------------------------------------

    async def _read(self, member: _Member, track: Any) -> None:
        """Read ``track`` as fast as it comes (aiortc queues without bound) into its slot, for
        the callback thread; ends with the track."""
        from aiortc.mediastreams import MediaStreamError

        kind = track.kind
        peer = self.peer
        only = peer._only
        if only is not None and not _accepts(only, member):
            await _drain(track)
            return
        slot: LatestSlot[Any]
        if kind == "video":
            slot = LatestSlot()
            convert: Callable[[Any], Any] = _video_array
            callbacks = peer._frame_callbacks
        else:
            slot = AudioWindow()
            convert = _same
            callbacks = peer._audio_callbacks
        old = member.slots.get(kind)
        if old is not None:
            old.close()
        member.slots[kind] = slot
        worker = Worker(
            f"ipymeet-peer-{peer.room}-{member.id[:8]}-{kind}",
            slot,
            convert,
            peer._deliver(callbacks, kind, member),
        )
        member.workers = [w for w in member.workers if w.is_alive()] + [worker]
        worker.start()
        received = "frames_received" if kind == "video" else "audio_received"
        try:
            while True:
                frame = await track.recv()
                peer._counters.add(received)
                if kind == "video":
                    member.frames_in += 1
                    member.size = (int(frame.width), int(frame.height))
                    before = slot.dropped
                    slot.put(frame)
                    peer._counters.add("frames_dropped", slot.dropped - before)
                else:
                    before = slot.dropped
                    slot.put(_audio_array(frame))
                    peer._counters.add("audio_dropped", slot.dropped - before)
        except (MediaStreamError, asyncio.CancelledError):
            pass
        finally:
            slot.close()

    # -- statistics ------------------------------------------------------------------------------

    async def _measure(self) -> None:
        """About once a second, each connection's figures (as the pages' quality.ts)."""
        previous: dict[str, tuple[float, int, int, int, int]] = {}
        while True:
            await asyncio.sleep(1.0)
            stats: dict[str, dict[str, Any]] = {}
            now = time.monotonic()
            for member in list(self.members.values()):
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
                previous[member.id] = (
                    now,
                    bytes_in,
                    bytes_out,
                    member.frames_in,
                    member.frames_out,
                )
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
            with self.peer._lock:
                self.peer._stats = stats


async def _run_session(peer: KernelPeer) -> None:
    await _Session(peer).run()


def _accepts(only: Callable[[Sender], bool], member: _Member) -> bool:
    try:
        return bool(only(Sender(member.id, member.name)))
    except Exception:
        log.exception("ipymeet: the kernel peer's only() raised; the member's media is skipped")
        return False


async def _drain(track: Any) -> None:
    """Read ``track`` to its end and keep nothing (aiortc's queue of decoded frames would grow)."""
    from aiortc.mediastreams import MediaStreamError

    with contextlib.suppress(MediaStreamError, asyncio.CancelledError):
        while True:
            await track.recv()


def _video_array(frame: Any) -> Any:
    return frame.to_ndarray(format="rgb24")


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


def _at_exit(ref: weakref.ref[KernelPeer]) -> None:
    peer = ref()
    if peer is not None:
        with contextlib.suppress(Exception):
            peer.publish(None)
            peer.leave(timeout=3.0)
