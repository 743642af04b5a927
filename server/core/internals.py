"""The one place that uses a library's internals, each use behind a check of its release.

Every name of a library's internals ipymeet uses is in :data:`INTERNAL_NAMES`, and appears in no
module of server/ or widget/ but this one and fastio.py, which only this module imports
(tests/unit/test_internals.py fails otherwise). Each use has a gate: the releases its sources
were read on. On any other release (or with ``IPYMEET_INTERNALS=0``) only public API is used,
and what that costs is logged once:

- **The fast path** (:func:`active`, releases in :data:`CHECKED`): python-socketio's Engine.IO
  server is fastio.py's (a leaner WebSocket transport), and a relay is framed once and written
  to each member's WebSocket (:func:`frame_writer`). ``IPYMEET_FASTIO=0`` turns it off (the test
  suite runs on both paths). Without it: **stock**, python-socketio and python-engineio as they
  come; the same behaviour, limits included (tests/integration runs on this path too), slower
  per message (docs/performance.md).
- **The guard's hooks** (:func:`engine_handlers`, :func:`meter_queues`, releases in
  :data:`GUARD_CHECKED`): the Engine.IO handlers python-socketio registers, wrapped by guard.py
  (so a malformed packet closes its connection, and relays know each connection's Engine.IO
  session), and engineio's sockets taking their outgoing queue from the server's
  ``create_queue()`` (so a slow reader's backlog is capped). Without them: a connection that
  sends junk is still closed (python-engineio reports the failure to the guard's logger, which
  closes that request's transport; tests/integration/test_malformed.py), relays take
  ``sio.emit``, and nothing caps a slow reader's backlog (a warning says so).
- **The kernel peer's candidate type** (:func:`candidate_type`, releases in
  :data:`ICE_CHECKED`): the local candidate of the ICE pair aioice nominated. Without it: the
  type all local candidates share (``relay`` for a relay-only peer), else unknown (None).
- **The kernel peer's prompt video** (:func:`prompt_video`, releases in :data:`JITTER_CHECKED`):
  each video frame it receives goes to the decoder at its last packet. Without it: aiortc's
  jitter buffer, which holds each frame until the next one begins (a frame period more of delay).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Mapping
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import socketio

log = logging.getLogger("ipymeet.server")

#: The releases the fast path was checked on: lowest and highest, inclusive. A patch release may
#: still change an internal (python-socketio does not promise otherwise), so the range holds only
#: releases whose sources were compared with the overrides: 4.15.0 -> 4.15.1 and 5.18.0 -> 5.18.1
#: changed none of what fastio.py relies on. A newer release runs the stock path until its sources
#: are read and the range widened (tests/unit/test_fastio.py then pins the internals' shape).
CHECKED: dict[str, tuple[str, str]] = {
    "python-engineio": ("4.15.0", "4.15.1"),
    "python-socketio": ("5.18.0", "5.18.1"),
}

#: The releases guard.py's hooks (python-socketio's Engine.IO handlers in ``eio.handlers``;
#: engineio's sockets calling ``create_queue()`` for their queue and putting the open packet,
#: with their sid, in it first) were read on: python-socketio 5.11 / python-engineio 4.9 through
#: the highest below.
GUARD_CHECKED: dict[str, tuple[str, str]] = {
    "python-engineio": ("4.9.0", "4.15.1"),
    "python-socketio": ("5.11.0", "5.18.1"),
}

#: The releases the kernel peer's candidate type was read on: aiortc's ``RTCIceTransport`` holds
#: aioice's ``Connection`` as ``_connection``, whose ``_nominated`` maps a component to its
#: nominated ``CandidatePair`` (``local_candidate.type``).
ICE_CHECKED: dict[str, tuple[str, str]] = {
    "aiortc": ("1.16.0", "1.16.0"),
    "aioice": ("0.13.0", "0.13.0"),
}

#: The releases the prompt video jitter buffer was read on: aiortc's ``RTCRtpReceiver`` holds a
#: ``JitterBuffer`` as ``__jitter_buffer`` (``_RTCRtpReceiver__jitter_buffer``), made in its
#: ``__init__`` and fed from ``_handle_rtp_packet``; the buffer's ``_remove_frame`` joins the
#: packets ``_packets[_origin...]`` (a ring of ``_capacity``; each with its depayloaded
#: ``_data``) of one RTP timestamp and ``remove``s them, and ``_is_video`` marks a video one.
JITTER_CHECKED: dict[str, tuple[str, str]] = {"aiortc": ("1.16.0", "1.16.0")}

#: The releases the kernel peer's real-time VP8 encoder was read on: aiortc's ``RTCRtpSender``
#: holds its encoder as ``__encoder`` (``_RTCRtpSender__encoder``), made by ``get_encoder`` at the
#: first frame and then used for every frame on an executor thread, one at a time;
#: ``Vp8Encoder.encode`` converts a frame that is not yuv420p, and assigns its FFmpeg context to
#: ``self.codec`` (also None) before it sets its ``options``, then encodes with it.
ENCODER_CHECKED: dict[str, tuple[str, str]] = {"aiortc": ("1.16.0", "1.16.0")}

#: The releases the kernel peer's playout delay was read on: aiortc's ``RTCRtpSender`` keeps its
#: ``HeaderExtensionsMap`` as ``__rtp_header_extensions_map`` (``_RTCRtpSender__rtp_header_
#: extensions_map``), made in ``__init__``, ``configure``d at ``send``, and given to
#: ``RtpPacket.serialize``, which calls its ``set(extensions)`` for each packet, RTX included.
PLAYOUT_CHECKED: dict[str, tuple[str, str]] = {"aiortc": ("1.16.0", "1.16.0")}

#: The RTP header extension a sender tells its receiver how long to hold its video with
#: (min and max, 12 bits each, in 10 ms: webrtc.org's "playout-delay").
PLAYOUT_DELAY_URI = "http://www.webrtc.org/experiments/rtp-hdrext/playout-delay"
#: Zero and zero: show each frame as soon as it is decoded (no jitter buffer, no smoothing).
ZERO_PLAYOUT_DELAY = b"\x00\x00\x00"

#: What the kernel peer's VP8 encoder changes of aiortc's libvpx options, measured with
#: benchmarks/kernel_peer.py (docs/performance.md, "At the floor"): no temporal denoiser
#: (``noise-sensitivity`` 4 blurs camera noise at a third of the encoding time; what a kernel peer
#: sends is most often drawn or already processed), and libvpx's faster real-time speed.
REALTIME_VP8 = {"noise-sensitivity": "0", "cpu-used": "-12"}

#: Every internal name used, by library; each appears only here and in fastio.py.
INTERNAL_NAMES: dict[str, tuple[str, ...]] = {
    "python-socketio": ("_engineio_server_class", "handlers", "eio_sid_from_sid"),
    "python-engineio": ("create_queue", "sockets", "_upgrade_websocket", "_trigger_event"),
    "aiortc": (
        "_connection",
        "_RTCRtpReceiver__jitter_buffer",
        "_remove_frame",
        "_packets",
        "_origin",
        "_capacity",
        "_data",
        "_is_video",
        "_RTCRtpSender__encoder",
        "_RTCRtpSender__rtp_header_extensions_map",
    ),
    "aioice": ("_nominated",),
}
#: The modules that touch internals: this one, and fastio.py, which only this one imports.
INTERNAL_MODULES = ("internals.py", "fastio.py")

#: Set to "0" to run the stock path on a checked release too.
ENV = "IPYMEET_FASTIO"
#: Set to "0" to use public API only, on every release (every gate closed).
ENV_ALL = "IPYMEET_INTERNALS"


def _release(text: str) -> tuple[int, ...] | None:
    """``"5.18.1"`` as ``(5, 18, 1)``; None for anything else (a pre-release, a local build)."""
    try:
        return tuple(int(part) for part in text.split("."))
    except ValueError:
        return None


def checks(
    installed: Mapping[str, str | None], ranges: Mapping[str, tuple[str, str]] | None = None
) -> bool:
    """Whether every library in ``ranges`` (:data:`CHECKED`) is installed at a release in its
    range."""
    for name, (lowest, highest) in (CHECKED if ranges is None else ranges).items():
        release = _release(installed.get(name) or "")
        low, high = _release(lowest), _release(highest)
        if release is None or low is None or high is None or not low <= release <= high:
            return False
    return True


def installed(names: Mapping[str, Any] | None = None) -> dict[str, str | None]:
    """The installed release of each library named (in :data:`CHECKED`; None: not installed)."""
    found: dict[str, str | None] = {}
    for name in CHECKED if names is None else names:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    return found


@cache
def supported() -> bool:
    """Whether the installed releases are ones the fast path was checked on (logged once if not)."""
    releases = installed()
    if checks(releases):
        return True
    log.info(
        "ipymeet: python-engineio %s / python-socketio %s are not the releases its fast path was "
        "checked on (%s): using their own transport",
        releases["python-engineio"],
        releases["python-socketio"],
        ", ".join(f"{name} {low} to {high}" for name, (low, high) in CHECKED.items()),
    )
    return False


def _opened(
    ranges: Mapping[str, tuple[str, str]], without: str, level: int = logging.WARNING
) -> bool:
    """Whether the installed releases are in ``ranges``; logged once (by the caller's cache)
    with what is done ``without`` if not."""
    releases = installed(ranges)
    if checks(releases, ranges):
        return True
    log.log(
        level,
        "ipymeet: %s are not the releases checked (%s): %s",
        ", ".join(f"{name} {releases[name]}" for name in ranges),
        ", ".join(f"{name} {low} to {high}" for name, (low, high) in ranges.items()),
        without,
    )
    return False


def _all_allowed() -> bool:
    return os.environ.get(ENV_ALL, "1") != "0"


@cache
def guard_supported() -> bool:
    """Whether the installed releases are ones guard.py's hooks were checked on."""
    return _opened(
        GUARD_CHECKED,
        "the guard closes what sends junk by its transport only, and a slow reader's backlog "
        "is not capped",
    )


@cache
def ice_supported() -> bool:
    """Whether the installed aiortc / aioice are ones the candidate type was checked on."""
    return _opened(
        ICE_CHECKED,
        "the kernel peer's candidate type is known only where all of its candidates are of one",
        logging.INFO,
    )


def active() -> bool:
    """Whether a signaller created now takes the fast path."""
    return os.environ.get(ENV, "1") != "0" and _all_allowed() and supported()


def server_class(fast: bool) -> type[socketio.AsyncServer]:
    """python-socketio's ``AsyncServer`` as it comes, or, on the fast path, one whose Engine.IO
    server is fastio.py's (through ``_engineio_server_class``, the hook python-socketio builds it
    from; tests/unit/test_fastio.py pins it)."""
    if not fast:
        stock: type[socketio.AsyncServer] = socketio.AsyncServer
        return stock
    return _fast_server_class()


@cache
def _fast_server_class() -> type[socketio.AsyncServer]:
    from . import fastio  # imports engineio internals: only on the releases checked

    class FastServer(socketio.AsyncServer):  # type: ignore[misc]
        def _engineio_server_class(self) -> type:
            return fastio.FastEngineServer

    return FastServer


def attach_guard(sio: socketio.AsyncServer, guard: Any) -> None:
    """Give fastio's Engine.IO server the guard's checks (its WebSocket reader bypasses the
    engineio code the guard wraps): the backlog cap, malformed packets, paced dispatch."""
    from . import fastio

    eio = sio.eio
    if isinstance(eio, fastio.FastEngineServer) and guard.installed:
        eio.guard = guard
        guard.websockets_guarded = True


def frame_writer(sio: socketio.AsyncServer) -> Callable[[str, bytes], bool]:
    """``write(eio_sid, frame)``: write an already framed message (fastio.ws_frame) to that
    Engine.IO socket if it is a fastio WebSocket that can take it now; False: send it the usual
    way. The relay then frames a message once for all of its recipients."""
    from . import fastio

    eio = sio.eio

    def write(eio_sid: str, frame: bytes) -> bool:
        socket = eio.sockets.get(eio_sid)  # engineio's own table (replaced on disconnect-all)
        return type(socket) is fastio.FastSocket and socket.write_frame(frame)

    return write


def message_framer() -> Callable[[str], bytes]:
    """``frame(text)``: the WebSocket frame carrying the Socket.IO packet ``text`` as an Engine.IO
    message, for :func:`frame_writer`."""
    from . import fastio

    ws_frame = fastio.ws_frame

    def frame(text: str) -> bytes:
        return ws_frame("4" + text)

    return frame


# -- guard.py's hooks ------------------------------------------------------------------------------

EngineHandler = Callable[..., Awaitable[Any]]


def engine_handlers(eio: Any) -> dict[str, EngineHandler] | None:
    """The Engine.IO handlers python-socketio registered on ``eio`` (``connect``, ``message``,
    ``disconnect``), for guard.py to wrap with ``eio.on()``; None where the gate is closed or
    they are not there as read."""
    if not (_all_allowed() and guard_supported()):
        return None
    registered = getattr(eio, "handlers", None)
    names = ("connect", "message", "disconnect")
    if not isinstance(registered, dict) or not all(callable(registered.get(n)) for n in names):
        return None
    return {name: registered[name] for name in names}


def meter_queues(eio: Any, make: Callable[[], asyncio.Queue[Any]]) -> bool:
    """Make each Engine.IO socket of ``eio`` take its outgoing queue from ``make()`` (engineio's
    sockets ask the server's ``create_queue()``); False where the gate is closed."""
    if not (_all_allowed() and guard_supported()) or not callable(
        getattr(eio, "create_queue", None)
    ):
        return False

    def create_queue(*args: Any, **kwargs: Any) -> asyncio.Queue[Any]:
        return make()

    eio.create_queue = create_queue
    return True


# -- the kernel peer's candidate type --------------------------------------------------------------


def candidate_type(pc: Any) -> str | None:
    """The type of the local candidate in use by aiortc's RTCPeerConnection ``pc`` ("host",
    "srflx", "prflx", "relay"), or None when it is not known.

    aiortc's stats have no candidate pair: on the releases checked, aioice's nominated pair says
    it. Elsewhere (public API only), the type all of the local candidates gathered share, which
    is "relay" for a relay-only peer; None when they differ."""
    try:
        transports = [t.receiver.transport.transport for t in pc.getTransceivers()]
    except Exception:
        return None
    if _all_allowed() and ice_supported():
        try:
            for transport in transports:
                connection = getattr(transport, "_connection", None)
                pair = getattr(connection, "_nominated", {}).get(1)
                if pair is not None:
                    return str(pair.local_candidate.type)
        except Exception:
            return None
        return None
    kinds: set[str] = set()
    try:
        for transport in transports:
            kinds.update(str(c.type) for c in transport.iceGatherer.getLocalCandidates())
    except Exception:
        return None
    return kinds.pop() if len(kinds) == 1 else None


# -- the kernel peer's prompt video ----------------------------------------------------------------


@cache
def jitter_supported() -> bool:
    """Whether the installed aiortc is one its receiver's jitter buffer was read on."""
    return _opened(
        JITTER_CHECKED,
        "the kernel peer gets each video frame when the next one begins (one frame later)",
        logging.INFO,
    )


@cache
def _prompt_buffer_class() -> type:
    from aiortc.jitterbuffer import JitterBuffer, JitterFrame

    class PromptJitterBuffer(JitterBuffer):
        """aiortc's video jitter buffer, but a frame is complete at its last packet (the RTP
        marker bit, RFC 3550 / RFC 7741), not when a packet of the next frame arrives."""

        def _remove_frame(self, sequence_number: int) -> Any:
            packets: list[Any] = []
            origin = self._origin
            if origin is None:
                return None
            for count in range(self._capacity):
                packet = self._packets[(origin + count) % self._capacity]
                if packet is None:
                    return None  # a gap: not complete yet
                if packets and packet.timestamp != packets[0].timestamp:
                    # The next frame began without a marker on this one: complete, as aiortc has it.
                    return self._take(packets, count)
                packets.append(packet)
                if packet.marker:
                    return self._take(packets, count + 1)
            return None

        def _take(self, packets: list[Any], count: int) -> Any:
            frame = JitterFrame(
                data=b"".join(p._data for p in packets), timestamp=packets[0].timestamp
            )
            self.remove(count)
            return frame

    return PromptJitterBuffer


def prompt_video(receiver: Any) -> bool:
    """Make aiortc's video ``receiver`` (an ``RTCRtpReceiver``, before its first packet) give each
    frame to its decoder at the frame's last packet. aiortc's own buffer knows a frame is whole
    only when the next one begins: one frame period later (33 ms at 30 fps), on every frame a
    kernel peer receives. Whether it could (else aiortc's buffer stays, as released)."""
    if not (_all_allowed() and jitter_supported()):
        return False
    current = getattr(receiver, "_RTCRtpReceiver__jitter_buffer", None)
    if current is None or not getattr(current, "_is_video", False) or current._origin is not None:
        return False
    receiver._RTCRtpReceiver__jitter_buffer = _prompt_buffer_class()(
        capacity=current.capacity, is_video=True
    )
    return True


# -- the kernel peer's real-time VP8 encoder -------------------------------------------------------


@cache
def encoder_supported() -> bool:
    """Whether the installed aiortc is one its sender's encoder was read on."""
    return _opened(
        ENCODER_CHECKED,
        "the kernel peer encodes its video with aiortc's own VP8 settings",
        logging.INFO,
    )


class _Tuned:
    """An FFmpeg codec context as aiortc's encoder sets it up, with :data:`REALTIME_VP8` laid
    over the options aiortc gives it (kept as ``given``: FFmpeg empties ``options`` of those it
    used when it opens); everything else passes through."""

    def __init__(self, context: Any) -> None:
        object.__setattr__(self, "context", context)
        object.__setattr__(self, "given", {})

    def __getattr__(self, name: str) -> Any:
        return getattr(self.context, name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "options":
            value = {**value, **REALTIME_VP8}
            object.__setattr__(self, "given", dict(value))
        setattr(self.context, name, value)


@cache
def _realtime_vp8_class() -> type:
    from aiortc.codecs.vpx import Vp8Encoder

    class RealtimeVp8Encoder(Vp8Encoder):
        """aiortc's VP8 encoder with :data:`REALTIME_VP8`, converting RGB to yuv420p with one
        swscale context kept, taking each 2x2 block's chroma from one pixel (POINT: 0.6 ms rather
        than 0.9 at 640x480, 1.9 rather than 2.8 at 1280x720)."""

        @property
        def codec(self) -> Any:
            return self.__dict__.get("tuned")

        @codec.setter
        def codec(self, context: Any) -> None:
            self.__dict__["tuned"] = None if context is None else _Tuned(context)

        def encode(self, frame: Any, force_keyframe: bool = False) -> Any:
            if frame.format.name != "yuv420p":
                frame = self._yuv(frame)
            return super().encode(frame, force_keyframe)

        def _yuv(self, frame: Any) -> Any:
            # One swscale context from frame to frame (``frame.reformat`` makes one per frame:
            # 0.8 ms more a frame at 640x480); aiortc encodes a sender's frames one at a time.
            reformatter = self.__dict__.get("reformatter")
            if reformatter is None:
                from av.video.reformatter import VideoReformatter

                reformatter = self.__dict__["reformatter"] = VideoReformatter()
            yuv = reformatter.reformat(frame, format="yuv420p", interpolation="POINT")
            yuv.pts, yuv.time_base = frame.pts, frame.time_base
            return yuv

    return RealtimeVp8Encoder


def realtime_video(sender: Any) -> bool:
    """Give aiortc's video ``sender`` (an ``RTCRtpSender``) the kernel peer's real-time VP8
    encoder in place of aiortc's own, once aiortc has made that (at its first frame: the codec
    is known then). Whether it is settled: True once swapped, or when there is nothing to swap
    (another codec, or the gate closed); False while the sender has no encoder yet. Call it
    between the sender's frames (from its track's ``recv``), never during an encode."""
    if not (_all_allowed() and encoder_supported()):
        return True
    from aiortc.codecs.vpx import Vp8Encoder

    current = getattr(sender, "_RTCRtpSender__encoder", None)
    if current is None:
        return False
    if type(current) is Vp8Encoder:
        ours = _realtime_vp8_class()()
        ours.target_bitrate = current.target_bitrate  # what the receiver's estimate allowed
        sender._RTCRtpSender__encoder = ours
    return True


# -- the kernel peer's playout delay ---------------------------------------------------------------


@cache
def playout_supported() -> bool:
    """Whether the installed aiortc is one its sender's header extensions were read on."""
    return _opened(
        PLAYOUT_CHECKED,
        "the kernel peer's video is held by the browser's jitter buffer, as any call's is",
        logging.INFO,
    )


def playout_allowed() -> bool:
    """Whether a kernel peer writes a zero playout delay (and so offers the extension)."""
    return _all_allowed() and playout_supported()


class _WithPlayoutDelay:
    """A sender's header extension map as aiortc made it, adding the playout delay (``ext_id``,
    once negotiated) to what it writes on each packet."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.ext_id: int | None = None

    def configure(self, parameters: Any) -> None:
        self.inner.configure(parameters)

    def get(self, extension_profile: int, extension_value: bytes) -> Any:
        return self.inner.get(extension_profile, extension_value)

    def set(self, values: Any) -> tuple[int, bytes]:
        from aiortc.rtp import pack_header_extensions, unpack_header_extensions

        profile, value = self.inner.set(values)
        if self.ext_id is None:
            return profile, value
        extensions = unpack_header_extensions(profile, value) if value else []
        extensions.append((self.ext_id, ZERO_PLAYOUT_DELAY))
        packed: tuple[int, bytes] = pack_header_extensions(extensions)
        return packed


def zero_playout_delay(sender: Any, ext_id: int | None) -> bool:
    """Have aiortc's ``sender`` (an ``RTCRtpSender`` of video) write a zero playout delay on
    every packet with header extension id ``ext_id`` (None: the receiver did not take it; stop).
    A browser then shows each frame as soon as it is decoded: Chromium otherwise holds a kernel
    peer's video 15 to 20 ms more, and drops a frame a second to its smoothing
    (docs/performance.md). Whether it could."""
    if not playout_allowed():
        return False
    current = getattr(sender, "_RTCRtpSender__rtp_header_extensions_map", None)
    if current is None:
        return False
    if not isinstance(current, _WithPlayoutDelay):
        current = _WithPlayoutDelay(current)
        sender._RTCRtpSender__rtp_header_extensions_map = current
    current.ext_id = ext_id
    return True
