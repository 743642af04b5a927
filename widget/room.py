"""The ``VideoRoom`` widget: a video call in a notebook cell.

Its traits and public methods; the rest has modules of its own: the tie to the kernel's signaller
(``binding.py``), snapshots (``snapshots.py``), re-run cells (``cells.py``), the custom messages
(``messages.py``) and what both sides share (``contract.py``).

State lives in traits, each with one writer (the README's table "Where each trait comes from").
Python and the view's own controls set intent (``room``, ``name``, ``audio``, ``video``,
``screen``, join/leave); the browser acts and reports what happened (``state``, ``error``, the
connections), and where it ends a call or a screen share on its own it says so in a trait of its
own (``_call_ended``, ``_screen_ended``), which the intent here then follows. Who is in the room
comes from the kernel's own signaller, first-hand and live even while a cell is busy; how each
connection is doing comes from the browser, whose reports reach the kernel when it is idle.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import secrets
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import anywidget
import traitlets
from numpy.typing import NDArray

from ..server.core import access, tokens
from ..server.core.settings import TLS
from ..server.core.validation import ROOM_RE
from . import binding, cells, diagnose, relay, snapshots
from .contract import MAX_CHAT, MAX_NAME, CallState, ErrorCode
from .messages import (
    ChatRequest,
    ErrorMessage,
    KernelMessage,
    MalformedMessage,
    RouteMessage,
    Sender,
    TokenMessage,
    parse_browser_message,
)
from .traits import ContractEnum
from .videoask import check_rate, check_size, whole

STATIC = Path(__file__).resolve().parent / "static"
log = logging.getLogger("ipymeet")

#: The values ``VideoRoom.state`` takes, in the order a call goes through them.
STATES = tuple(state.value for state in CallState)


class VideoRoom(anywidget.AnyWidget):
    """A WebRTC video room in a notebook cell.

    Example::

        from ipymeet import CallState, VideoRoom
        room = VideoRoom("lab-42", name="Ada")
        room                      # shows the room field, Connect / Hang up, the cameras
        room.join()               # same as clicking Connect
        room.observe(lambda change: print(change.new), names="state")
        room.state == "in_call"   # or: room.state is CallState.IN_CALL
        room.peers                # [{"id": "...", "name": "Grace", "connection": "connected",
                                  #   "audio": True, "video": True, "speaking": False}]
        room.speaking             # the ids of those speaking now: ["..."]
        room.send("hello")        # chat, peer to peer over data channels
        room.on_message(lambda sender, text: print(f"{sender}: {text}"))
        room.leave()

    Unless ``signaling_url`` names another signaller, the kernel's own is started on first use
    (127.0.0.1, a free port) and the page reaches it directly or through jupyter-server-proxy.
    Running a cell again closes the rooms its previous run made (they would stay in the call).

    ``join()`` and ``leave()`` (like the view's Connect and Hang up) say what you want; the browser
    carries it out. When the browser ends the call on its own (the room is full, the signaller
    refuses it) or the screen share stops on its own (the browser's "Stop sharing"), it reports
    that, and ``_desired`` / ``screen`` here follow: a later ``join()`` is a new attempt.

    ``secure=True`` makes the kernel's signaller require join tokens from then on, for every room
    of the kernel (members already in a room stay); :attr:`invite_url` then carries a token valid
    ``invite_ttl`` seconds, and this widget's browser asks the kernel for its own tokens by custom
    message: no token or secret is ever in the widget's state. ``max_peers`` (2-64) is how many
    this widget's room holds, and follows ``room`` when it changes; every other room keeps the
    signaller's default (6; ``ipymeet serve --max-peers``), and members already in a room stay.
    ``host`` and ``tls`` (see ``Settings``) configure the kernel's signaller when it starts; they
    must match if it is running already. For a phone on the LAN::

        room = VideoRoom("lab-42", secure=True, host="0.0.0.0", tls="self-signed")
        room.invite_url      # https://192.168.1.20:PORT/?room=lab-42&token=...

    ``video_size=(width, height)`` and ``frame_rate`` say what the page asks its camera for
    (``ideal`` constraints: the camera's nearest mode; None: 1280x720 at its own rate); set
    during a call, the live camera takes them without leaving the call::

        room = VideoRoom("lab-42", video_size=(640, 480), frame_rate=15)
        room.video_size = (1280, 720)

    A signaller of its own that requires tokens (``ipymeet serve --secret``) takes ``token``: the
    token, or the whole invite link, of ``ipymeet token ROOM`` or ``--invite ROOM``. It stays in
    the kernel, which hands it to the browser by custom message, as above::

        room = VideoRoom("lab-42", signaling_url="https://host:8765", token=link)
    """

    _esm = STATIC / "widget.js"
    _css = STATIC / "widget.css"

    # -- intent: written by Python (and the view's own controls) ----------------------------
    room = traitlets.Unicode("").tag(sync=True)
    """Room id: 1-64 characters of letters, digits, '_', '.', '-' ("" until chosen in the view)."""
    name = traitlets.Unicode("").tag(sync=True)
    """Your display name, shown to the others."""
    audio = traitlets.Bool(True).tag(sync=True)
    """Whether your microphone is sending (False = muted)."""
    video = traitlets.Bool(True).tag(sync=True)
    """Whether your camera is sending (False = camera off)."""
    screen = traitlets.Bool(False).tag(sync=True)
    """Whether you share your screen instead of your camera (the browser asks which screen).
    Back to False when the share stops on the browser's own, and when the call ends."""
    camera = traitlets.Unicode("").tag(sync=True)
    """The camera's device id ("" = the default); one of ``cameras``."""
    microphone = traitlets.Unicode("").tag(sync=True)
    """The microphone's device id ("" = the default); one of ``microphones``."""
    video_size = traitlets.Any(None, allow_none=True).tag(sync=True)
    """The camera's size asked for, ``(width, height)`` in pixels (16..3840 by 16..2160; None:
    1280x720, the default). An ``ideal`` constraint: the browser picks the camera's nearest mode.
    Changed during a call, the live camera takes it without leaving the call."""
    frame_rate = traitlets.Any(None, allow_none=True).tag(sync=True)
    """The camera's frame rate asked for, 1..60 (None or 0: the camera's own), as ``ideal``;
    changed during a call, the live camera takes it."""
    signaling_url = traitlets.Unicode("").tag(sync=True)
    """An explicit signaller URL; "" uses the kernel's own."""
    route = traitlets.Enum(("auto", "direct", "proxy", "kernel"), "auto").tag(sync=True)
    """How the page reaches the kernel's signaller: try each in turn ("auto": direct, then
    jupyter-server-proxy, then through this widget's comm and its kernel), or force one."""
    relay_only = traitlets.Bool(False).tag(sync=True)
    """Send media only through a TURN relay (``iceTransportPolicy: "relay"``): the others never
    see this page's addresses, and a call that works so works across any NAT or firewall that
    lets the TURN server through. Needs a signaller with TURN (``ipymeet serve --turn-url``,
    ``IPYMEET_TURN_URLS``); without one, joining fails with ``ErrorCode.NO_RELAY``."""

    # -- reported by the browser ---------------------------------------------------------------
    state = ContractEnum(CallState, CallState.IDLE).tag(sync=True)
    """The call's state, a :class:`CallState` (equal to its string): "idle", "joining",
    "waiting", "in_call", "reconnecting" (the signaller is out of reach; the media keeps flowing
    while the page tries again and re-enters its room), "left", "failed"."""
    error = traitlets.Unicode("").tag(sync=True)
    """The last problem in plain words ("" when none), e.g. that the room is full."""
    error_code = ContractEnum(ErrorCode, ErrorCode.NONE).tag(sync=True)
    """The last problem as an :class:`ErrorCode` (equal to its string): "room_full",
    "unreachable", "camera_denied", "no_camera", ...; "" (``ErrorCode.NONE``) when none."""
    connected_via = traitlets.Unicode("").tag(sync=True)
    """The signaller URL the page is connected through ("" when not connected)."""
    cameras = traitlets.List(traitlets.Dict()).tag(sync=True)
    """The cameras the browser has: ``[{"id", "label"}]`` (labels once access is granted), and
    ``"facing"`` ("user": front, "environment": back) on those the browser says it of (phones)."""
    microphones = traitlets.List(traitlets.Dict()).tag(sync=True)
    """The microphones the browser has: ``[{"id", "label"}]``."""
    messages = traitlets.List(traitlets.Dict()).tag(sync=True)
    """Recent chat (at most 200): ``[{"id", "from", "name", "text", "time", "mine"}]``."""
    stats = traitlets.Dict().tag(sync=True)
    """Call quality per peer id, updated about once a second: ``rtt_ms``, ``bitrate_in_kbps``,
    ``bitrate_out_kbps``, ``fps_in``, ``fps_out``, ``width``, ``height``, ``packet_loss`` (0-1),
    ``candidate_type`` ("host", "srflx", "prflx" or "relay")."""
    diagnosis = traitlets.Dict().tag(sync=True)
    """The connection doctor's last report, from the page (``diagnose()``, the view's "Check
    connection"): ``{"id", "state", "checks": [{"name", "title", "status", "detail", "fix"}],
    "routes", "ice", "devices", "problems", ...}``; ``{}`` before the first check. Never holds a
    credential: the ICE servers are listed by URL only."""

    # -- derived in the kernel -----------------------------------------------------------------
    peers = traitlets.List(traitlets.Dict(), read_only=True).tag(sync=True)
    """The others in the room: ``[{"id", "name", "connection", "audio", "video", "screen",
    "speaking"}]``. Membership (id, name) comes from the kernel's signaller; ``connection`` (an
    RTCPeerConnection state), the others' ``audio`` / ``video`` / ``screen`` flags and whether
    they are ``speaking`` now (their received audio level; never while muted) come from the
    browser, which reports a change at most four times a second."""
    speaking = traitlets.List(traitlets.Unicode(), read_only=True).tag(sync=True)
    """The ids of the others speaking now (those of ``peers`` with ``speaking``), observable:
    ``room.observe(lambda change: print(change.new), names="speaking")``."""

    # -- private plumbing ----------------------------------------------------------------------
    _port = traitlets.Int(0).tag(sync=True)
    _client = traitlets.Unicode("").tag(sync=True)
    _desired = traitlets.Bool(False).tag(sync=True)
    """Intent: be in the call (``join()`` / ``leave()``, the view's Connect / Hang up)."""
    _joins = traitlets.Int(0).tag(sync=True)
    """Intent: the calls asked for so far; ``join()`` and the view's Connect each add 1, so the
    browser sees a new attempt even when ``_desired`` was True already."""
    _call_ended = traitlets.Int(0).tag(sync=True)
    """Browser: the ``_joins`` whose call it ended on its own; ``_desired`` follows."""
    _screen_ended = traitlets.Int(0).tag(sync=True)
    """Browser: how many times the share stopped on its own; ``screen`` follows."""
    _browser_peers = traitlets.List(traitlets.Dict()).tag(sync=True)
    # Whether entering needs a token, which the browser then asks the kernel for (never synced).
    _secure = traitlets.Bool(False).tag(sync=True)
    _kernel_busy = traitlets.Bool(False).tag(sync=True)
    """Kernel: a cell is running, so what the page sends the kernel waits for it to end (on the
    kernel route the page then does not time out, and the view says why it waits)."""
    _shared = traitlets.Bool(False).tag(sync=True)
    """Whether other kernels of this user can join the kernel's signaller (the view says so)."""
    _invite_base = traitlets.Unicode("").tag(sync=True)
    """The signaller's public URL without a token: the view's invite link while alone."""
    _processed_by = traitlets.Unicode("").tag(sync=True)
    """Kernel: the member id of this widget's processor (:meth:`process`), whose tile the view
    labels "You (processed)"; "" when nothing processes the camera."""

    _binding: binding.KernelBinding | None = None
    _route: relay.KernelRoute | None = None
    _diagnosis: diagnose.Diagnosis | None = None
    _unwatch_busy: Callable[[], None] | None = None
    _processor: Any = None
    _process_fn: Callable[[Any], Any] | None = None
    _recorder: Any = None

    def __init__(
        self,
        room: str = "",
        *,
        name: str = "",
        audio: bool = True,
        video: bool = True,
        video_size: tuple[int, int] | None = None,
        frame_rate: int | None = None,
        signaling_url: str = "",
        route: str = "auto",
        relay_only: bool = False,
        max_peers: int | None = None,
        secure: bool = False,
        host: str | None = None,
        tls: TLS = None,
        invite_ttl: float = tokens.DEFAULT_TTL,
        token: str | None = None,
    ) -> None:
        if signaling_url and (max_peers is not None or secure or host or tls):
            raise ValueError(
                "max_peers, secure, host and tls set the kernel's signaller; with signaling_url, "
                "set them on that signaller"
            )
        if token is not None and not signaling_url:
            raise ValueError("token is for a signaller given by signaling_url; here, secure=True")
        if invite_ttl <= 0:
            raise ValueError("invite_ttl must be a positive number of seconds")
        # Kept in the kernel only (never a trait): handed to the browser by custom message.
        self._join_token = binding.token_of(token) if token is not None else None
        self._invite_ttl = float(invite_ttl)
        # Of this widget's room only: the kernel's signaller may serve every notebook of the user.
        self._max_peers = binding.checked_max_peers(max_peers)
        # Where the kernel's signaller is cannot be found (a wrong value in the environment):
        # the widget says so instead of the cell failing (a service not reached yet is the
        # signaller's own problem, which the binding shows).
        unavailable = ""
        try:
            server = None if signaling_url else binding.kernel_signaller_for(host, tls)
        except binding.SignallerUnavailable as why:
            server, unavailable = None, binding.unavailable_message(why)
        if server is not None and secure:
            binding.require_tokens(server)
        secure_now = self._join_token is not None if server is None else server.requires_tokens
        client = secrets.token_hex(8)
        self._peers_lock = threading.Lock()
        self._chat_callbacks: list[Callable[[Sender, str], Any]] = []
        self._refused: set[str] = set()
        self._snapshots = snapshots.Snapshots(self.send_msg, server, client, lambda: self.state)
        # Only a widget on the kernel's signaller may use the kernel route, which waits on cells.
        busy = False
        if server is not None:
            busy, self._unwatch_busy = relay.watch_busy(self._kernel_busy_changed)
        super().__init__(
            room=room,
            name=name,
            audio=audio,
            video=video,
            video_size=video_size,
            frame_rate=frame_rate,
            signaling_url=signaling_url,
            route=route,
            relay_only=relay_only,
            _client=client,
            _port=0 if server is None else server.port,
            _secure=secure_now,
            _shared=server is not None and bool(getattr(server, "shared", False)),
            _invite_base=signaling_url.rstrip("/") if server is None else server.public_url,
            _kernel_busy=busy,
        )
        if server is not None:
            self._binding = binding.KernelBinding(
                server,
                client,
                on_members=self._members_changed,
                on_tokens_required=self._tokens_required,
                follow_port=self,
            )
            self._binding.hold_capacity(self.room, self._max_peers)
        if unavailable:
            self._kernel_error(unavailable, ErrorCode.SIGNALLER_UNREACHABLE)
        self.on_msg(self._on_browser_message)
        cells.made_by_this_run(self)

    @traitlets.validate("room")
    def _check_room(self, proposal: dict[str, Any]) -> str:
        value = proposal["value"]
        if value and not ROOM_RE.fullmatch(value):
            raise traitlets.TraitError(
                f"room {value!r} is not a valid room id: use 1-64 letters, digits, '_', '.' or '-'"
            )
        return str(value)

    @traitlets.observe("room")
    def _follow_room(self, change: dict[str, Any]) -> None:
        if self._binding is not None:
            self._binding.hold_capacity(change["new"], self._max_peers)
        if self._process_fn is not None:  # the processor goes where the camera goes
            self._stop_processor()
            if self._desired:
                self._start_processor()

    @traitlets.validate("video_size")
    def _check_video_size(self, proposal: dict[str, Any]) -> tuple[int, int] | None:
        try:
            return check_size(proposal["value"], "video_size")
        except (TypeError, ValueError) as problem:
            raise traitlets.TraitError(str(problem)) from None

    @traitlets.validate("frame_rate")
    def _check_frame_rate(self, proposal: dict[str, Any]) -> int | None:
        value = proposal["value"]
        try:
            return None if value == 0 and whole(value) else check_rate(value, "frame_rate")
        except (TypeError, ValueError) as problem:
            raise traitlets.TraitError(str(problem)) from None

    @traitlets.validate("name")
    def _check_name(self, proposal: dict[str, Any]) -> str:
        value = str(proposal["value"])
        if len(value) > MAX_NAME:
            raise traitlets.TraitError(f"name must be at most {MAX_NAME} characters")
        return value

    # -- joining and leaving -------------------------------------------------------------------

    def join(self) -> None:
        """Enter the room (like clicking Connect); ``state`` follows as the browser gets there.

        Each call is a new attempt, also after the browser gave up on one (``room_full``)."""
        if not self.room:
            raise ValueError("choose a room first: VideoRoom('lab-42') or room.room = 'lab-42'")
        if self._secure:
            # Sent ahead, so the browser need not ask a kernel that may stay busy in this cell.
            self._send_token(self.room)
        with self.hold_sync():
            self._joins += 1
            self._desired = True

    def leave(self) -> None:
        """Hang up: close the connections, turn the camera off and leave the room."""
        with self.hold_sync():
            self._desired = False

    @traitlets.observe("_desired")
    def _follow_desired(self, change: dict[str, Any]) -> None:
        if not change["new"]:
            self.screen = False  # a share is part of its call
        if self._process_fn is not None:  # so is the processor of room.process
            if change["new"]:
                self._start_processor()
            else:
                self._stop_processor()

    @traitlets.observe("_call_ended")
    def _follow_call_ended(self, _: dict[str, Any]) -> None:
        # An older attempt's end (the kernel lagged behind a newer join()) changes nothing.
        if self._call_ended == self._joins and self._desired:
            self.leave()

    @traitlets.observe("_screen_ended")
    def _follow_screen_ended(self, _: dict[str, Any]) -> None:
        self.screen = False

    # -- chat ----------------------------------------------------------------------------------

    def send(self, text: str, buffers: list[bytes] | None = None) -> None:
        """Say ``text`` in the room's chat, as this widget's person (peer to peer, in order).

        The browser sends it once it is in the room (the state the kernel sees may lag behind, so
        this does not check it). Anything but a string is passed on as a raw custom message, as
        ``Widget.send`` does.
        """
        if not isinstance(text, str):
            super().send(text, buffers)
            return
        if not text.strip():
            raise ValueError("send() takes a non-empty message")
        if len(text) > MAX_CHAT:
            raise ValueError(f"a chat message is at most {MAX_CHAT} characters")
        request: ChatRequest = {"type": "chat", "text": text}
        self.send_msg(request)

    def send_msg(self, content: KernelMessage) -> None:
        """Send one custom message of the typed contract to the browser."""
        super().send(dict(content))

    def on_message(self, callback: Callable[[Sender, str], Any], *, remove: bool = False) -> None:
        """Call ``callback(sender, text)`` for each chat message in the room, own ones included.

        ``sender`` is a :class:`Sender` (``id``, ``name``; ``str(sender)`` is the name). Messages
        reach the kernel when it is idle; the whole recent history is in :attr:`messages`.
        """
        if remove:
            self._chat_callbacks.remove(callback)
        else:
            self._chat_callbacks.append(callback)

    def _on_browser_message(self, _: Any, content: Any, buffers: list[bytes]) -> None:
        try:
            message = parse_browser_message(content, buffers)
        except MalformedMessage as problem:
            if problem.kind not in self._refused:
                self._refused.add(problem.kind)
                log.warning(
                    "ipymeet: refused a message from the browser (once per kind): %s", problem
                )
            answer: ErrorMessage = {"type": "error", "message": str(problem)}
            self.send_msg(answer)
            return
        if message["type"] == "chat":
            sender = Sender(message["from"], message["name"])
            for callback in list(self._chat_callbacks):
                callback(sender, message["text"])
        elif message["type"] == "frame":
            self._snapshots.on_frame(message, buffers)
        elif message["type"] == "token_request":
            self._send_token(message["room"])
        elif message["type"] == "diagnose_request":
            self._start_check(message["id"])
        elif message["type"] == "error":  # never answered: the two sides must not argue forever
            log.warning("ipymeet: the browser could not handle a message: %s", message["message"])
        else:
            self._kernel_route(message, buffers)

    # -- the kernel route ----------------------------------------------------------------------

    def _kernel_route(self, message: RouteMessage, buffers: list[bytes]) -> None:
        """The page signals through this widget (widget/relay.py): relay it to the signaller."""
        if self._binding is None:
            if message["type"] == "sig_connect":
                reason = "this widget has a signaling_url: it has no kernel route"
                self.send_msg({"type": "sig_dropped", "n": message["n"], "reason": reason})
            return
        if self._route is None:
            if message["type"] != "sig_connect":
                return  # nothing was opened: a late message of a page from before
            self._route = relay.KernelRoute(
                self._client, self._binding.server, self.send_msg, lambda: self.room
            )
        self._route.take(message, buffers)

    def _kernel_busy_changed(self, busy: bool) -> None:
        # On the thread running the cell, at its start and its end.
        if self.comm is not None:
            self._kernel_busy = busy

    # -- the connection doctor ------------------------------------------------------------------

    def diagnose(self) -> diagnose.Diagnosis:
        """Check what a call needs, in the browser that shows this room, and report each problem
        with a plain fix: the secure context, the camera and microphone, each route to the
        signaller (tried, answered, how fast), the ICE candidates gathered (host / srflx / relay)
        with the room's ICE servers, and whether the TURN server answers.

        Returns at once with a live report: the page's answer reaches the kernel only after the
        cell that asked has finished (what a page sends its kernel waits while a cell runs), so
        show the report (the last line of the cell) and it fills in then; in a later cell,
        ``report.done``, ``report.problems`` and ``room.diagnosis`` have the answer. The room's
        view shows the same report at once (its "Check connection" button runs the same check)::

            report = room.diagnose()
            report                  # fills in when the page answers
            report.problems         # later: [{"name": "camera", "fix": "Allow the camera ..."}]

        The camera check asks the browser for the camera (as Connect does), so the browser may
        ask the person first. Needs the room to be displayed: without a page nothing answers.
        """
        if self.comm is None:
            raise RuntimeError("this room is closed: make a new VideoRoom")
        check = diagnose.new_check_id()
        if self._diagnosis is not None:
            self.unobserve(self._follow_diagnosis, names="diagnosis")
            self._diagnosis.close()
        self._diagnosis = diagnose.Diagnosis(check, lambda: dict(self.diagnosis))
        self.observe(self._follow_diagnosis, names="diagnosis")
        self._start_check(check)
        return self._diagnosis

    def _start_check(self, check: str) -> None:
        """Ask the page to run check ``check``, with ICE servers made for it (never a trait)."""
        server = None if self._binding is None else self._binding.server
        servers = diagnose.ice_servers(server, check)
        self.send_msg({"type": "diagnose", "id": check, "ice_servers": servers})

    def _follow_diagnosis(self, _: dict[str, Any]) -> None:
        if self._diagnosis is not None:
            self._diagnosis.changed()

    # -- snapshots -----------------------------------------------------------------------------

    async def snapshot(self, peer: str | None = None, *, timeout: float = 10.0) -> NDArray[Any]:
        """The current frame of ``peer``'s video (your own camera when None), as an
        ``(height, width, 3)`` ``uint8`` RGB array.

        Works from a running cell: the frame comes back through the kernel's signaller thread.

            frame = await room.snapshot()                       # own camera
            frame = await room.snapshot(room.peers[0]["id"])    # the first other person
        """
        future = self._snapshots.request(self._known_peer(peer), "rgba", timeout)
        return snapshots.rgb(await asyncio.wrap_future(future))

    def snapshot_png(self, peer: str | None = None, *, timeout: float = 10.0) -> bytes:
        """The current frame of ``peer``'s video (own camera when None) as PNG bytes; blocks.

        from IPython.display import Image
        Image(room.snapshot_png())
        """
        future = self._snapshots.request(self._known_peer(peer), "png", timeout)
        try:
            return bytes(future.result(timeout + 1).data)
        except concurrent.futures.TimeoutError:
            raise TimeoutError(self._snapshots.no_frame(timeout)) from None

    def _known_peer(self, peer: str | None) -> str | None:
        if peer is not None and peer not in {p["id"] for p in self.peers}:
            names = ", ".join(f"{p['id']} ({p['name']})" for p in self.peers) or "nobody"
            raise ValueError(f"no peer {peer!r} in room {self.room!r}; in it: {names}")
        return peer

    # -- Python in the call (widget/process.py, widget/record.py) -----------------------------

    def process(self, fn: Callable[[NDArray[Any]], NDArray[Any]] | None) -> None:
        """Send your own camera through ``fn`` in the kernel and show what it returns as a tile
        of its own, labelled "You (processed)"; ``process(None)`` stops and removes the tile.

        ``fn(frame)`` takes an HxWx3 uint8 RGB array and returns one (any size)::

            room.process(lambda frame: frame[:, ::-1])      # mirrored
            room.process(lambda frame: 255 - frame)         # inverted
            room.process(None)

        A kernel peer of this widget's own (:class:`~ipymeet.KernelPeer`, named "<your name>
        (processed)") joins the room, takes this widget's camera only, and sends the processed
        video: the others in the room see it too. It sees only the newest frame, so a slow
        ``fn`` lowers the processed tile's frame rate, never adds a queue. If ``fn`` raises,
        :attr:`error` (shown in the view) says so, once; the call goes on. Needs the kernel's
        own signaller (no ``signaling_url``) and ``pip install "ipymeet[python]"``. The
        processor is in the room while this widget is (from :meth:`join`, or now if joined,
        until :meth:`leave`) and follows :attr:`room`; calling ``process`` again replaces ``fn``.
        """
        self._process_fn = None
        self._stop_processor()
        if fn is None:
            return
        if not callable(fn):
            raise TypeError(f"process() takes a function of a frame or None, not {fn!r}")
        if self._binding is None:
            raise ValueError(
                "room.process needs the kernel's own signaller (this room has a signaling_url); "
                "use a KernelPeer with on_frame there"
            )
        if not self.room:
            raise ValueError("choose a room first: VideoRoom('lab-42') or room.room = 'lab-42'")
        from .kernelpeer import require_extra

        try:
            require_extra()
        except ImportError as problem:
            self._kernel_error(str(problem))
            raise
        self._process_fn = fn
        if self._desired:
            self._start_processor()

    def _start_processor(self) -> None:
        """The processor of ``_process_fn`` in this widget's room (it is there while the widget
        is: joining starts it, leaving stops it)."""
        if self._binding is None or self._process_fn is None or not self.room:
            return
        from . import process

        server, client, room = self._binding.server, self._client, self.room

        def own_member(sender: Sender) -> bool:
            return any(m.id == sender.id and m.client == client for m in server.members(room))

        self._stop_processor()
        self._processor = process.Processor(
            room,
            self.name,
            self._process_fn,
            own_member=own_member,
            on_id=lambda member: self.set_trait("_processed_by", member),
            report=self._kernel_error,
            # A relay-only widget's processor is relay-only too: it must not offer this
            # machine's addresses that the page hides.
            relay_only=self.relay_only,
        )

    def _stop_processor(self) -> None:
        processor, self._processor = self._processor, None
        if processor is not None:
            processor.stop()

    def record(
        self,
        path: str | Path,
        members: list[str] | None = None,
        *,
        fps: float = 15.0,
        size: tuple[int, int] = (960, 540),
        labels: bool = True,
    ) -> None:
        """Record the call into ``path`` on the kernel's disk until :meth:`stop_recording`:
        every member's video and audio (or only ``members``, names or ids), you included.

        ``.webm`` (VP8 and Opus), ``.mkv`` (the same in Matroska) or ``.mp4`` (H.264 and AAC):
        one video, a grid of the members at ``size`` and ``fps`` with their names (``labels``),
        and one audio, everyone mixed (widget/record.py says why); ``.wav`` (16-bit PCM) or
        ``.ogg`` (Opus): the mixed audio alone. A kernel peer named
        "Recording" joins the room to receive the media, so everyone sees that the call is
        recorded. Needs ``pip install "ipymeet[python]"``::

            room.record("call.webm")
            ...
            room.stop_recording()      # the file's path
        """
        if self._recorder is not None:
            raise RuntimeError(
                f"already recording to {self._recorder.path}; room.stop_recording() first"
            )
        if not self.room:
            raise ValueError("choose a room first: VideoRoom('lab-42') or room.room = 'lab-42'")
        from . import record

        # A relay-only widget's recorder is relay-only too (as its processor).
        options: dict[str, Any] = {"relay_only": self.relay_only}
        if self._binding is None:
            options.update(signaling_url=self.signaling_url, token=self._join_token)
        try:
            self._recorder = record.Recorder(
                self.room, path, members=members, fps=fps, size=size, labels=labels, **options
            )
        except ImportError as problem:
            self._kernel_error(str(problem))
            raise

    def stop_recording(self) -> Path:
        """Finish the recording :meth:`record` started; returns the file's path."""
        recorder, self._recorder = self._recorder, None
        if recorder is None:
            raise RuntimeError("not recording: room.record(path) starts a recording")
        path: Path = recorder.stop()
        return path

    def _kernel_error(self, message: str, code: ErrorCode = ErrorCode.INTERNAL_ERROR) -> None:
        """A problem found in the kernel, shown as the browser's are (any thread)."""
        log.warning("ipymeet: %s", message)
        with self.hold_sync():
            self.error = message
            self.error_code = code

    # -- tokens and links ----------------------------------------------------------------------

    def _send_token(self, room: str) -> None:
        """Answer the browser's token request (custom message; never a trait): a token for this
        widget's own room only (server/core/access.py, door MINT). A page that asks for another room
        (a Voilà visitor's, say) gets none, and its ``enter`` there is refused as without one."""
        if not access.widget_room_allows(self.room, room):
            if "token_room" not in self._refused:
                self._refused.add("token_room")
                log.warning("ipymeet: refused a join token for a room that is not this widget's")
            refused: TokenMessage = {"type": "token", "room": room, "token": None}
            self.send_msg(refused)
            return
        token = self._join_token if self._binding is None else self._binding.browser_token(room)
        message: TokenMessage = {"type": "token", "room": room, "token": token}
        self.send_msg(message)

    def _tokens_required(self) -> None:
        self._secure = True

    @property
    def invite_url(self) -> str:
        """A link to this room's standalone page, for someone without Jupyter.

        With ``secure=True`` it carries a join token valid ``invite_ttl`` seconds (a new one
        each time it is read): anyone holding the link may enter the room until then. Cameras
        need a secure context, so from another machine use HTTPS (``tls=``) or a tunnel.
        """
        if not self.room:
            raise ValueError("choose a room first")
        if self._binding is None:
            return f"{self.signaling_url.rstrip('/')}/?{urlencode({'room': self.room})}"
        server = self._binding.server
        query = {"room": self.room}
        if server.requires_tokens:
            query["token"] = server.mint(self.room, self._invite_ttl)
        return f"{server.public_url}/?{urlencode(query)}"

    # -- who is there --------------------------------------------------------------------------

    @traitlets.observe("_browser_peers", "room", "state")
    def _on_reports(self, _: dict[str, Any]) -> None:
        self._update_peers()

    def _members_changed(self, room: str) -> None:
        if room == self.room:
            self._update_peers()

    def _update_peers(self) -> None:
        # Called from the kernel's threads and the signaller's; the lock keeps updates whole.
        with self._peers_lock:
            reported = {str(p.get("id", "")): p for p in self._browser_peers if isinstance(p, dict)}
            # While its page reconnects, the signaller does not list it: the connections its
            # browser still holds are the truth then (their media keeps flowing).
            if self._binding is None or self.state is CallState.RECONNECTING:
                peers = [binding.peer(i, str(p.get("name", "")), p) for i, p in reported.items()]
            else:
                peers = self._binding.peers(self.room, reported)
            if peers != self.peers:
                self.set_trait("peers", peers)
            speaking = [p["id"] for p in peers if p["speaking"]]
            if speaking != self.speaking:
                self.set_trait("speaking", speaking)

    def close(self) -> None:
        """Close the widget; its views end the call and release the camera."""
        if self._binding is not None:
            self._binding.close()
        if self._route is not None:
            self._route.close()
        if self._unwatch_busy is not None:
            self._unwatch_busy()
        snapshots_ = getattr(self, "_snapshots", None)  # None if __init__ failed before it
        if snapshots_ is not None:
            snapshots_.close()
        if self._diagnosis is not None:
            self._diagnosis.close()
        if self._process_fn is not None or self._processor is not None:
            self.process(None)
        if self._recorder is not None:
            self.stop_recording()
        super().close()
