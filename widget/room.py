"""The ``VideoRoom`` widget: a video call in a notebook cell.

State lives in traits, each with one writer (the table in ``js/src/types.ts`` mirrors this class).
Python sets intent (``room``, ``name``, ``audio``, ``video``, join/leave); the browser acts and
reports what happened (``state``, ``error``, the connections). Who is in the room comes from the
kernel's own signaller, first-hand and live even while a cell is busy; how each connection is doing
comes from the browser, whose reports reach the kernel when it is idle.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import secrets
import threading
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs, urlencode, urlsplit

import anywidget
import numpy as np
import traitlets
from numpy.typing import NDArray

from ..server import SignallerThread, kernel_signaller, tokens
from ..server.frames import Frame
from ..server.settings import TLS, Settings
from ..server.validation import ROOM_RE
from .messages import (
    MAX_CHAT,
    ChatRequest,
    KernelMessage,
    Sender,
    SnapshotRequest,
    TokenMessage,
)

STATIC = Path(__file__).resolve().parent / "static"
log = logging.getLogger("ipymeet")

#: The values ``VideoRoom.state`` takes, in the order a call goes through them.
STATES = ("idle", "joining", "waiting", "in_call", "reconnecting", "left", "failed")


# Re-running a cell makes new widgets, but the old ones live on in ipywidgets' registry, still in
# their rooms with the camera on (and, in a room of two, taking the new widget's place). So the
# widgets a cell made are closed when that cell runs again. JupyterLab and Notebook 7 name the cell
# in each execute request's metadata; elsewhere nothing is replaced.
_cell_runs: dict[str, tuple[str, list[weakref.ref[VideoRoom]]]] = {}
_cell_runs_lock = threading.Lock()


def _current_cell_run() -> tuple[str, str] | None:
    """(cell id, execute request id) of the cell being run, when the frontend says."""
    try:
        from IPython.core.getipython import get_ipython

        shell: Any = get_ipython()
        parent = shell.kernel.get_parent()
    except Exception:  # not in a kernel, or an ipykernel without get_parent
        return None
    cell = (parent.get("metadata") or {}).get("cellId")
    request = (parent.get("header") or {}).get("msg_id")
    return (str(cell), str(request)) if cell and request else None


def _replace_previous_run(widget: VideoRoom) -> None:
    run = _current_cell_run()
    if run is None:
        return
    cell, request = run
    with _cell_runs_lock:
        previous_request, widgets = _cell_runs.get(cell, (request, []))
        stale: list[weakref.ref[VideoRoom]] = []
        if previous_request != request:
            stale, widgets = widgets, []
        _cell_runs[cell] = (request, [*widgets, weakref.ref(widget)])
    for ref in stale:
        old = ref()
        if old is not None:
            old.close()


def _peer(peer_id: str, name: str, report: dict[str, Any]) -> dict[str, Any]:
    """One entry of ``peers``: membership plus what the browser reported of that connection."""
    return {
        "id": peer_id,
        "name": name,
        "connection": str(report.get("connection", "new")),
        "audio": bool(report.get("audio", True)),
        "video": bool(report.get("video", True)),
        "screen": bool(report.get("screen", False)),
    }


#: Lifetime of the tokens a widget's own browser gets from the kernel: it uses them at once.
WIDGET_TOKEN_TTL = 600.0

#: The kernel-signaller widgets alive, so that ``secure=True`` on one reaches the others' browsers.
_kernel_rooms: weakref.WeakSet[VideoRoom] = weakref.WeakSet()


def _token_of(token: str) -> str:
    """A join token, given as itself or inside an invite link (``...?room=r&token=T``)."""
    if "://" in token or "?" in token:
        found = parse_qs(urlsplit(token).query).get("token")
        if not found:
            raise ValueError("that invite link carries no token")
        token = found[0]
    if not token or len(token) > 4096 or not token.isprintable():
        raise ValueError("token must be a join token or an invite link that carries one")
    return token


def _is_kernel_widget(client: str) -> bool:
    """Whether ``client`` is the key of an open widget of this kernel. The kernel's signaller lets
    only those enter (besides pages without a key): a view left over from before a kernel restart
    reconnects to the new kernel's signaller, on the same port, and must not come back as a member
    that no code of this kernel can see or end."""
    return any(room._client == client and room.comm is not None for room in list(_kernel_rooms))


def _kernel_signaller_for(host: str | None, tls: TLS) -> SignallerThread:
    """The kernel's signaller, started with ``host``/``tls`` if it is not running yet."""
    wanted: dict[str, Any] = {}
    if host is not None:
        wanted["host"] = host
    if tls is not None:
        wanted["tls"] = _tls_key(tls)
    server = kernel_signaller(Settings.from_env(**wanted) if wanted else None)
    have = {"host": server.settings.host, "tls": _tls_key(server.settings.tls)}
    for key, value in wanted.items():
        if have[key] != value:
            raise ValueError(
                f"the kernel's signaller is already running with {key}={have[key]!r}, so "
                f"{key}={value!r} cannot apply: {key} takes effect only when it starts. "
                "Pass it to the first VideoRoom of the kernel (or restart the kernel)."
            )
    return server


def _tls_key(tls: TLS) -> Any:
    return tls if tls is None or tls == "self-signed" else tuple(str(path) for path in tls)


class VideoRoom(anywidget.AnyWidget):
    """A WebRTC video room in a notebook cell.

    Example::

        from ipymeet import VideoRoom
        room = VideoRoom("lab-42", name="Ada")
        room                      # shows the room field, Connect / Hang up, the cameras
        room.join()               # same as clicking Connect
        room.observe(lambda change: print(change.new), names="state")
        room.peers                # [{"id": "...", "name": "Grace", "connection": "connected",
                                  #   "audio": True, "video": True}]
        room.send("hello")        # chat, peer to peer over data channels
        room.on_message(lambda sender, text: print(f"{sender}: {text}"))
        room.leave()

    Unless ``signaling_url`` names another signaller, the kernel's own is started on first use
    (127.0.0.1, a free port) and the page reaches it directly or through jupyter-server-proxy.
    Running a cell again closes the rooms its previous run made (they would stay in the call).

    ``secure=True`` makes the kernel's signaller require join tokens from then on, for every room
    of the kernel (members already in a room stay); :attr:`invite_url` then carries a token valid
    ``invite_ttl`` seconds, and this widget's browser asks the kernel for its own tokens by custom
    message: no token or secret is ever in the widget's state. ``host`` and ``tls`` (see
    ``Settings``) configure the kernel's signaller when it starts, like ``max_peers``; they must
    match if it is running already. For a phone on the LAN::

        room = VideoRoom("lab-42", secure=True, host="0.0.0.0", tls="self-signed")
        room.invite_url      # https://192.168.1.20:PORT/?room=lab-42&token=...

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
    """Whether you share your screen instead of your camera (the browser asks which screen)."""
    camera = traitlets.Unicode("").tag(sync=True)
    """The camera's device id ("" = the default); one of ``cameras``."""
    microphone = traitlets.Unicode("").tag(sync=True)
    """The microphone's device id ("" = the default); one of ``microphones``."""
    signaling_url = traitlets.Unicode("").tag(sync=True)
    """An explicit signaller URL; "" uses the kernel's own."""
    route = traitlets.Enum(("auto", "direct", "proxy"), "auto").tag(sync=True)
    """How the page reaches the kernel's signaller: try both ("auto"), or force one."""

    # -- reported by the browser ---------------------------------------------------------------
    state = traitlets.Unicode("idle").tag(sync=True)
    """The call's state: one of ``STATES`` ("idle", "joining", "waiting", "in_call",
    "reconnecting" (the signaller is out of reach; the media keeps flowing while the page tries
    again and re-enters its room), "left", "failed")."""
    error = traitlets.Unicode("").tag(sync=True)
    """The last problem in plain words ("" when none), e.g. that the room is full."""
    error_code = traitlets.Unicode("").tag(sync=True)
    """The last problem as a code: room_full, unreachable, camera_denied, no_camera, ..."""
    connected_via = traitlets.Unicode("").tag(sync=True)
    """The signaller URL the page is connected through ("" when not connected)."""
    cameras = traitlets.List(traitlets.Dict()).tag(sync=True)
    """The cameras the browser has: ``[{"id", "label"}]`` (labels once access is granted)."""
    microphones = traitlets.List(traitlets.Dict()).tag(sync=True)
    """The microphones the browser has: ``[{"id", "label"}]``."""
    messages = traitlets.List(traitlets.Dict()).tag(sync=True)
    """Recent chat (at most 200): ``[{"id", "from", "name", "text", "time", "mine"}]``."""
    stats = traitlets.Dict().tag(sync=True)
    """Call quality per peer id, updated about once a second: ``rtt_ms``, ``bitrate_in_kbps``,
    ``bitrate_out_kbps``, ``fps_in``, ``fps_out``, ``width``, ``height``, ``packet_loss`` (0-1),
    ``candidate_type`` ("host", "srflx", "prflx" or "relay")."""

    # -- derived in the kernel -----------------------------------------------------------------
    peers = traitlets.List(traitlets.Dict(), read_only=True).tag(sync=True)
    """The others in the room: ``[{"id", "name", "connection", "audio", "video", "screen"}]``.
    Membership (id, name) comes from the kernel's signaller; ``connection`` (an RTCPeerConnection
    state) and the others' ``audio`` / ``video`` / ``screen`` flags come from the browser."""

    # -- private plumbing ----------------------------------------------------------------------
    _port = traitlets.Int(0).tag(sync=True)
    _client = traitlets.Unicode("").tag(sync=True)
    _desired = traitlets.Bool(False).tag(sync=True)
    _browser_peers = traitlets.List(traitlets.Dict()).tag(sync=True)
    # Whether entering needs a token, which the browser then asks the kernel for (never synced).
    _secure = traitlets.Bool(False).tag(sync=True)

    _signaller: SignallerThread | None = None
    _unsubscribe: Callable[[], None] | None = None

    def __init__(
        self,
        room: str = "",
        *,
        name: str = "",
        audio: bool = True,
        video: bool = True,
        signaling_url: str = "",
        route: str = "auto",
        max_peers: int | None = None,
        secure: bool = False,
        host: str | None = None,
        tls: TLS = None,
        invite_ttl: float = tokens.DEFAULT_TTL,
        token: str | None = None,
    ) -> None:
        self._peers_lock = threading.Lock()
        self._chat_callbacks: list[Callable[[Sender, str], Any]] = []
        self._frame_requests: dict[str, concurrent.futures.Future[Frame]] = {}
        super().__init__(
            room=room,
            name=name,
            audio=audio,
            video=video,
            signaling_url=signaling_url,
            route=route,
            _client=secrets.token_hex(8),
        )
        if signaling_url and (max_peers is not None or secure or host or tls):
            raise ValueError(
                "max_peers, secure, host and tls set the kernel's signaller; with signaling_url, "
                "set them on that signaller"
            )
        if token is not None and not signaling_url:
            raise ValueError("token is for a signaller given by signaling_url; here, secure=True")
        # Kept in the kernel only (never a trait): handed to the browser by custom message.
        self._join_token = _token_of(token) if token is not None else None
        self._secure = self._join_token is not None
        if invite_ttl <= 0:
            raise ValueError("invite_ttl must be a positive number of seconds")
        self._invite_ttl = float(invite_ttl)
        if not signaling_url:
            self._signaller = server = _kernel_signaller_for(host, tls)
            if max_peers is not None:
                server.set_max_peers(max_peers)
            if secure:
                # Tokens are the signaller's, so they now apply to every room of this kernel.
                server.require_tokens()
                for other in list(_kernel_rooms):
                    if other._signaller is server:
                        other._secure = True
            self._secure = server.requires_tokens
            _kernel_rooms.add(self)
            server.signaller.known_client = _is_kernel_widget
            self._port = server.port
            ref = weakref.ref(self)

            def on_room_change(changed: str) -> None:
                widget = ref()
                if widget is not None and changed == widget.room:
                    widget._update_peers()

            self._unsubscribe = self._signaller.registry.subscribe(on_room_change)
        self.on_msg(self._on_browser_message)
        _replace_previous_run(self)

    @traitlets.validate("room")
    def _check_room(self, proposal: dict[str, Any]) -> str:
        value = proposal["value"]
        if value and not ROOM_RE.fullmatch(value):
            raise traitlets.TraitError(
                f"room {value!r} is not a valid room id: use 1-64 letters, digits, '_', '.' or '-'"
            )
        return str(value)

    @traitlets.validate("name")
    def _check_name(self, proposal: dict[str, Any]) -> str:
        value = str(proposal["value"])
        if len(value) > 64:
            raise traitlets.TraitError("name must be at most 64 characters")
        return value

    def join(self) -> None:
        """Enter the room (like clicking Connect); ``state`` follows as the browser gets there."""
        if not self.room:
            raise ValueError("choose a room first: VideoRoom('lab-42') or room.room = 'lab-42'")
        if self._secure:
            # Sent ahead, so the browser need not ask a kernel that may stay busy in this cell.
            self._send_token(self.room)
        self._desired = True

    def leave(self) -> None:
        """Hang up: close the connections, turn the camera off and leave the room."""
        self._desired = False

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
        if not isinstance(content, dict):
            return
        kind = content.get("type")
        if kind == "chat":
            sender = Sender(str(content.get("from", "")), str(content.get("name", "")))
            text = str(content.get("text", ""))[:MAX_CHAT]
            for callback in list(self._chat_callbacks):
                callback(sender, text)
        elif kind == "frame":
            self._on_frame(content, buffers)
        elif kind == "token_request":
            room = content.get("room")
            if isinstance(room, str) and ROOM_RE.fullmatch(room):
                self._send_token(room)
            else:
                log.warning("the browser asked for a token for an invalid room: %r", room)
        elif kind == "error":
            log.warning("the browser could not handle a message: %s", content.get("message"))
        else:
            log.warning("unknown message from the browser: %r", kind)

    async def snapshot(self, peer: str | None = None, *, timeout: float = 10.0) -> NDArray[Any]:
        """The current frame of ``peer``'s video (your own camera when None), as an
        ``(height, width, 3)`` ``uint8`` RGB array.

        Works from a running cell: the frame comes back through the kernel's signaller thread.

            frame = await room.snapshot()                       # own camera
            frame = await room.snapshot(room.peers[0]["id"])    # the first other person
        """
        frame = await asyncio.wrap_future(self._request_frame(peer, "rgba", timeout))
        pixels = np.frombuffer(frame.data, dtype=np.uint8)
        return pixels.reshape(frame.height, frame.width, 4)[:, :, :3].copy()

    def snapshot_png(self, peer: str | None = None, *, timeout: float = 10.0) -> bytes:
        """The current frame of ``peer``'s video (own camera when None) as PNG bytes; blocks.

        from IPython.display import Image
        Image(room.snapshot_png())
        """
        try:
            return bytes(self._request_frame(peer, "png", timeout).result(timeout + 1).data)
        except concurrent.futures.TimeoutError:
            raise TimeoutError(self._no_frame(timeout)) from None

    def _request_frame(
        self, peer: str | None, kind: Literal["rgba", "png"], timeout: float
    ) -> concurrent.futures.Future[Frame]:
        if peer is not None and peer not in {p["id"] for p in self.peers}:
            names = ", ".join(f"{p['id']} ({p['name']})" for p in self.peers) or "nobody"
            raise ValueError(f"no peer {peer!r} in room {self.room!r}; in it: {names}")
        request_id = secrets.token_urlsafe(16)
        upload = self._signaller is not None
        future: concurrent.futures.Future[Frame]
        if self._signaller is not None:
            future = self._signaller.signaller.frames.expect(request_id, self._client)
        else:
            future = concurrent.futures.Future()
        self._frame_requests[request_id] = future
        request: SnapshotRequest = {
            "type": "snapshot", "id": request_id, "peer": peer, "format": kind, "upload": upload,
        }  # fmt: skip
        self.send_msg(request)

        def expire() -> None:
            if not future.done():
                future.set_exception(TimeoutError(self._no_frame(timeout)))

        timer = threading.Timer(timeout, expire)
        timer.daemon = True
        timer.start()

        def forget(_: concurrent.futures.Future[Frame]) -> None:
            timer.cancel()
            self._frame_requests.pop(request_id, None)
            if self._signaller is not None:
                self._signaller.signaller.frames.cancel(request_id)

        future.add_done_callback(forget)
        return future

    def _no_frame(self, timeout: float) -> str:
        return (
            f"no frame within {timeout:g} s: is the room displayed in a browser that is in the "
            f"call (state {self.state!r})?"
        )

    def _on_frame(self, content: dict[str, Any], buffers: list[bytes]) -> None:
        future = self._frame_requests.get(str(content.get("id")))
        if future is None or future.done():
            return  # answered already (through the signaller) or expired
        if "error" in content:
            future.set_exception(
                RuntimeError(f"the browser could not take a frame: {content['error']}")
            )
            return
        try:
            frame = Frame(
                int(content["width"]),
                int(content["height"]),
                str(content["format"]),
                bytes(buffers[0]),
            )
        except (KeyError, IndexError, ValueError, TypeError) as exc:
            future.set_exception(RuntimeError(f"malformed frame from the browser: {exc}"))
            return
        future.set_result(frame)

    def _send_token(self, room: str) -> None:
        """Answer the browser's token request (custom message; never a trait)."""
        token = self._join_token
        if self._signaller is not None and self._signaller.requires_tokens:
            token = self._signaller.mint(room, WIDGET_TOKEN_TTL)
        message: TokenMessage = {"type": "token", "room": room, "token": token}
        self.send_msg(message)

    @property
    def invite_url(self) -> str:
        """A link to this room's standalone page, for someone without Jupyter.

        With ``secure=True`` it carries a join token valid ``invite_ttl`` seconds (a new one
        each time it is read): anyone holding the link may enter the room until then. Cameras
        need a secure context, so from another machine use HTTPS (``tls=``) or a tunnel.
        """
        if not self.room:
            raise ValueError("choose a room first")
        base = self.signaling_url.rstrip("/") if self.signaling_url else self._base_url()
        query = {"room": self.room}
        if self._signaller is not None and self._signaller.requires_tokens:
            query["token"] = self._signaller.mint(self.room, self._invite_ttl)
        return f"{base}/?{urlencode(query)}"

    def _base_url(self) -> str:
        assert self._signaller is not None
        return str(self._signaller.public_url)

    @traitlets.observe("_browser_peers", "room", "state")
    def _on_reports(self, _: dict[str, Any]) -> None:
        self._update_peers()

    def _update_peers(self) -> None:
        # Called from the kernel's threads and the signaller's; the lock keeps updates whole.
        with self._peers_lock:
            reported = {p.get("id"): p for p in self._browser_peers if isinstance(p, dict)}
            # While its page reconnects, the signaller does not list it: the connections its
            # browser still holds are the truth then (their media keeps flowing).
            if self._signaller is None or self.state == "reconnecting":
                peers = [
                    _peer(str(p.get("id", "")), str(p.get("name", "")), p)
                    for p in reported.values()
                ]
            else:
                members = self._signaller.registry.members(self.room) if self.room else []
                if not any(m.client == self._client for m in members):
                    members = []
                peers = [
                    _peer(m.id, m.name, reported.get(m.id, {}))
                    for m in members
                    if m.client != self._client
                ]
            if peers != self.peers:
                self.set_trait("peers", peers)

    def close(self) -> None:
        """Close the widget; its views end the call and release the camera."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        super().close()
