"""The Socket.IO handlers of both signalling dialects (docs/protocol.md), on one room registry.

Handlers are thin: validate, change the registry, relay. Each runs inline in its connection's reader
(``async_handlers=False``), so one client's offer, answer and candidates are relayed in the order it
sent them. Nothing a client sends may raise out of a handler: every refusal becomes an ``error``
event, or an ``{ok: false}`` acknowledgement when the client asked for one. A packet that is not
even a well-formed request closes its connection (guard.py), and library internals are used only
through internals.py, on the releases it was checked on.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import socketio

from . import internals, turn
from . import validation as v
from .access import Access, Vouchers
from .capacity import RoomCapacity
from .frames import FrameInbox
from .guard import (
    RESERVED_EVENTS,
    Guard,
    ReservedName,
    ack_requested,
    connecting_engine_sid,
    current_request,
)
from .ratelimit import TokenBucket
from .registry import (
    MESH,
    TUTORIAL,
    Departure,
    LocalRooms,
    Member,
    Registry,
    Rooms,
    RoomStore,
    public_name,
    tutorial_key,
)
from .settings import Settings
from .tuning import json_module

log = logging.getLogger("ipymeet.server")

__all__ = [
    "DIALECT1_NEEDS_TOKEN",
    "RESERVED_EVENTS",
    "STRIKES_BEFORE_DISCONNECT",
    "Connection",
    "Signaller",
    "member_id",
]

#: Why a dialect-1 `join` is refused when the signaller requires join tokens.
DIALECT1_NEEDS_TOKEN = (
    "This signaller requires invite links with join tokens, which the two-person tutorial page "
    "cannot send. Use ipymeet's own page (an invite link) instead."
)

#: A client that keeps sending this many events past its rate limit is disconnected.
STRIKES_BEFORE_DISCONNECT = 100


@dataclass
class Connection:
    """What the signaller keeps per Socket.IO connection."""

    sid: str
    client: str
    bucket: TokenBucket
    #: The Engine.IO session it arrived on (None if the guard could not tell).
    eio_sid: str | None = None
    mesh_room: str | None = None
    #: How the others address it in ``mesh_room`` (see :func:`member_id`).
    peer_id: str = ""
    closing: bool = False
    #: The hub user it connected as, behind a JupyterHub (server/hub/service.py); "" elsewhere.
    user: str = ""


def member_id(sid: str, session: str | None) -> str:
    """The id a dialect-2 member is addressed by.

    Without a session key, its Socket.IO sid. With one, a digest of the key: the same whenever
    the page enters again (after a dropped connection, or a restarted signaller), so the others
    keep their connections to it. Only the digest is ever sent; holding the key itself is what
    lets a page take its place again.
    """
    if session is None:
        return sid
    digest = hashlib.sha256(session.encode()).digest()
    return base64.urlsafe_b64encode(digest).decode()[:22]


Handler = Callable[..., Awaitable[Any]]


class KernelDoor(Vouchers, Protocol):
    """The kernels attached to a signaller, as it sees them: the one interface between the core
    and what is built on it (server/kernel/kernels.py's ``KernelHub`` on a user's shared
    signaller, server/hub/service.py's ``ServiceHub`` for a JupyterHub's users), given with
    :meth:`Signaller.open_to_kernels`. Besides vouching for widget keys and callers
    (``Vouchers``):"""

    #: Whether the Host of a request is checked (False behind a JupyterHub, whose proxy
    #: forwards the hub's own name: the hub's word decides).
    check_hosts: bool

    def events(self) -> Mapping[str, Handler]:
        """The kernels' own events, each handled as ``handler(conn, *args)`` and answered in
        its acknowledgement."""

    def disconnected(self, conn: Connection) -> None:
        """``conn`` ended (a kernel's connection, or any other)."""

    async def forward_frame(self, conn: Connection, meta: Any, chunk: Any) -> bool:
        """Hand a snapshot frame's chunk to the attached kernel whose widget asked; False if no
        attached kernel waits for it (this process's own inbox then takes it)."""


class Signaller:
    """One signalling server: a python-socketio ``AsyncServer`` plus the room registry.

    ``store``: rooms shared with other processes (``ipymeet serve --redis`` gives
    server/cluster/redis.py's ``Cluster``); without it, this process's own.

    Example::

        signaller = Signaller(Settings(max_peers=4))
        signaller.attach(aiohttp_app)
    """

    def __init__(self, settings: Settings, store: RoomStore | None = None) -> None:
        #: Who may pass each door (server/core/access.py): every admission below asks it.
        self.access = Access(settings)
        self._settings = settings
        #: Rooms shared with other processes (``store``: through Redis, for ``settings.redis_url``),
        #: or None.
        self.cluster: RoomStore | None = store
        if settings.redis_url is not None and store is None:
            raise ValueError(
                "settings.redis_url is set, but no store of rooms was given to share them "
                "through (server/cluster/redis.py's Cluster, as `ipymeet serve --redis` does)"
            )
        manager = None if store is None else store.manager()
        #: This process's members (with a cluster, only its own: the rest are in Redis).
        self.registry = Registry() if self.cluster is None else self.cluster.local
        #: Where the handlers change and read the rooms (server/core/registry.py's ``Rooms``).
        self.rooms: Rooms = LocalRooms(self.registry) if self.cluster is None else self.cluster
        #: The process holding a member's connection, as ``Member.node`` says ("": this alone).
        self.node = "" if self.cluster is None else self.cluster.node
        #: Rooms a widget asked to hold other than ``settings.max_peers`` (server/core/capacity.py).
        self.room_capacity = RoomCapacity()
        self.frames = FrameInbox()
        self.connections: dict[str, Connection] = {}
        #: Fresh TURN credentials for each member before its last ones expire (server/core/turn.py).
        self.turn_renewals = turn.Renewals(settings, self._renew_turn)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False
        #: The kernels attached to this signaller (:meth:`open_to_kernels`), or None.
        self.kernels: KernelDoor | None = None
        #: Whether this signaller runs on internals.py's fast path.
        self.fast = internals.active()
        self.guard = Guard(
            max_backlog=settings.max_backlog_bytes, max_message=settings.max_message_bytes
        )
        self.sio = internals.server_class(self.fast)(
            serializer=self.guard.packet_class,
            json=json_module(),
            async_mode="aiohttp",
            async_handlers=False,
            cors_allowed_origins=self.origin_allowed,
            max_http_buffer_size=settings.max_message_bytes,
            ping_interval=settings.ping_interval,
            ping_timeout=settings.ping_timeout,
            logger=False,
            engineio_logger=self.guard.engine_log,
            client_manager=manager,
        )
        self.guard.install(self.sio)
        self.guard.on_end = self._end_connection
        #: Socket.IO sid of each Engine.IO session (for the guard's cut-offs).
        self._by_engine: dict[str, str] = {}
        self._write_frame: Callable[[str, bytes], bool] | None = None
        self._framer: Callable[[str], bytes] | None = None
        if self.fast:
            internals.attach_guard(self.sio, self.guard)
            self._write_frame = internals.frame_writer(self.sio)
            self._framer = internals.message_framer()
        self.sio.on("connect", self._on_connect)
        self.sio.on("disconnect", self._on_disconnect)
        events: dict[str, tuple[Handler, bool]] = {
            # dialect 1: the tutorial's events; refusals are `error` events
            "join": (self._join, False),
            "start_call": (self._start_call, False),
            "webrtc_offer": (self._webrtc_offer, False),
            "webrtc_answer": (self._webrtc_answer, False),
            "webrtc_ice_candidate": (self._webrtc_ice_candidate, False),
            # dialect 2: every request answered in its acknowledgement
            "enter": (self._enter, True),
            "signal": (self._signal, True),
            "leave": (self._leave, True),
            # frames for a kernel's snapshot request (see frames.py)
            "frame": (self._frame, False),
        }
        for event, (handler, acked) in events.items():
            self.sio.on(event, self._guarded(event, handler, acked=acked))
        self.sio.on("*", self._on_unknown)

    @property
    def settings(self) -> Settings:
        return self._settings

    @settings.setter
    def settings(self, settings: Settings) -> None:
        # One attribute swap (tokens turned on, another capacity): handlers and the access
        # model read it per request.
        self._settings = settings
        self.access.settings = settings

    # -- plumbing ----------------------------------------------------------------------------

    def attach(self, app: Any) -> None:
        """Serve Socket.IO on ``app`` (an aiohttp application) at ``/socket.io/``; with a
        cluster, join it when ``app`` starts (failing to start if Redis cannot be reached)."""
        self.guard.attach(app)
        if self.cluster is not None:
            cluster = self.cluster

            async def join_cluster(_: Any) -> None:
                await cluster.start(
                    self.sio,
                    self._announce_departure,
                    self._reconnect_all,
                    self.settings.max_message_bytes,
                )

            app.on_startup.append(join_cluster)

    def origin_allowed(self, origin: str | None, environ: dict[str, Any] | None = None) -> bool:
        """CORS for polling and WebSocket, as server/core/access.py decides it.

        python-engineio before 4.11 passes the origin alone; the request then comes from the
        guard's route (what either passes is the aiohttp request being handled).
        """
        request = (environ or {}).get("aiohttp.request") or current_request()
        return self.access.origin_allowed(origin, request)

    def open_to_kernels(self, door: KernelDoor) -> None:
        """Let the kernels of ``door`` in: its events are handled as the built-in ones are (rate
        limited, refusals answered in the acknowledgement, nothing raised), it vouches for widget
        keys and callers (server/core/access.py), it is told when a connection ends, and it is
        handed the snapshot frames of pages whose kernel is attached rather than hosting."""
        self.kernels = door
        self.access.keys = door.knows
        self.access.trust(door, check_hosts=door.check_hosts)
        for event, handler in door.events().items():
            self.sio.on(event, self._guarded(event, handler, acked=True))

    def drop(self, conn: Connection) -> None:
        """Close ``conn`` now (Socket.IO's disconnect, then its socket): nothing it sends after
        is handled."""
        conn.closing = True
        self._cut_off(conn)

    def _guarded(self, event: str, handler: Handler, *, acked: bool) -> Handler:
        async def run(sid: str, *args: Any) -> Any:
            conn = self.connections.get(sid)
            if conn is None or conn.closing:
                return None
            try:
                self._admit(conn)
                return await handler(conn, *args)
            except v.Refused as refusal:
                return await self._refuse(conn, event, refusal, acked=acked)
            except Exception:
                log.exception("handler for %r failed", event)
                internal = v.Refused("internal_error", "the signaller could not handle that")
                return await self._refuse(conn, event, internal, acked=acked)

        run.__name__ = f"on_{event}"
        return run

    def _admit(self, conn: Connection) -> None:
        if conn.bucket.take():
            return
        if conn.bucket.strikes >= STRIKES_BEFORE_DISCONNECT:
            conn.closing = True
            self._cut_off(conn)
        raise v.Refused("rate_limited", "too many messages; slow down")

    def _cut_off(self, conn: Connection) -> None:
        """Disconnect a flooding client and close its socket too.

        ``sio.disconnect`` only sends Socket.IO's disconnect packet, and engine.io's close only
        its close packet: a client that ignores both keeps its WebSocket (until 20 s of ping
        timeout) and goes on sending. The guard closes all three (tests/integration/test_flood.py).
        """
        if conn.eio_sid is not None:
            self.guard.end(conn.eio_sid)
        else:
            self._spawn(self.sio.disconnect(conn.sid))

    async def _refuse(
        self, conn: Connection, event: str, refusal: v.Refused, *, acked: bool
    ) -> dict[str, Any] | None:
        if acked and ack_requested.get():
            return {"ok": False, **refusal.payload()}
        if not conn.closing:
            payload = {**refusal.payload(), "event": event}
            await self.sio.emit("error", payload, to=conn.sid, ignore_queue=True)
        return None

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send_all(self, event: str, data: Any, members: list[Member]) -> None:
        # Every relay comes through here. ``sio.emit(to=sid)`` encodes the packet for each call
        # and creates and waits on a task per recipient; encoding once and queueing it on each
        # member's Engine.IO socket (engine.io's public send), in order, as emit does underneath,
        # saved about 10% of the server's CPU per relayed message (benchmarks/signalling.py, 600
        # clients). On the fast path the WebSocket frame itself is built once, for every member.
        encoded = self.guard.packet_class(socketio.packet.EVENT, data=[event, data]).encode()
        pieces = encoded if isinstance(encoded, list) else [encoded]  # binary: text + attachments
        write, framer = self._write_frame, self._framer
        frame = framer(encoded) if framer is not None and isinstance(encoded, str) else None
        eio = self.sio.eio
        for member in members:
            conn = self.connections.get(member.sid)
            if conn is None:
                if member.node != self.node:  # held by another process: through Redis
                    await self.sio.emit(event, data, to=member.sid)
                continue  # disconnected meanwhile; as emit, skip it
            eio_sid = conn.eio_sid
            if eio_sid is None:
                await self.sio.emit(event, data, to=member.sid)
                continue
            if frame is not None and write is not None and write(eio_sid, frame):
                continue
            for piece in pieces:
                await eio.send(eio_sid, piece)

    async def _others(self, room: str, sid: str) -> list[Member]:
        """The other members of a dialect-1 room the sender is in (relays stay in the room)."""
        dialect, members = await self.rooms.room(tutorial_key(room))
        if not any(m.sid == sid for m in members):
            raise v.Refused("not_in_room", f"you are not in room '{room}'")
        if dialect != TUTORIAL:
            raise v.Refused(
                "wrong_dialect", f"room '{room}' uses 'signal', not the tutorial's events"
            )
        return [m for m in members if m.sid != sid]

    @staticmethod
    def _one(args: tuple[Any, ...], event: str) -> Any:
        if len(args) != 1:
            raise v.bad(f"'{event}' takes exactly one argument, got {len(args)}")
        return args[0]

    # -- connection lifecycle ----------------------------------------------------------------

    async def _on_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> bool:
        if self._closed:
            # Shutting down: a page reconnecting at once must not land here again, but on the
            # signaller that comes next (another kernel taking over, a restarted server).
            return False
        client = auth.get("client") if isinstance(auth, dict) else None
        if not isinstance(client, str) or len(client) > 64:
            client = ""
        if "aiohttp.request" not in environ and (request := current_request()) is not None:
            environ = {**environ, "aiohttp.request": request}
        try:
            user = await self.access.connect(sid, environ, auth)
        except v.Refused as refusal:
            raise socketio.exceptions.ConnectionRefusedError(
                refusal.message, {"code": refusal.code}
            ) from None
        bucket = TokenBucket(self.settings.rate, self.settings.burst)
        eio_sid = connecting_engine_sid()
        self.connections[sid] = Connection(sid, client, bucket, eio_sid=eio_sid, user=user)
        if eio_sid is not None:
            self._by_engine[eio_sid] = sid
        return True

    async def _on_disconnect(self, sid: str, reason: Any = None) -> None:
        conn = self.connections.pop(sid, None)
        self.turn_renewals.stop(sid)
        if conn is not None and conn.eio_sid is not None:
            self._by_engine.pop(conn.eio_sid, None)
        for departure in await self.rooms.remove_everywhere(sid):
            await self._announce_departure(departure, "disconnected")
        if conn is not None and self.kernels is not None:
            self.kernels.disconnected(conn)

    async def _end_connection(self, eio_sid: str) -> None:
        """The guard ends a connection: Socket.IO's disconnect first (its rooms hear
        ``peer_left``; the client is told it was disconnected, and does not reconnect)."""
        sid = self._by_engine.get(eio_sid)
        conn = self.connections.get(sid) if sid is not None else None
        if conn is not None:
            conn.closing = True
            await self.sio.disconnect(conn.sid)

    async def _reconnect_all(self) -> None:
        """Close every connection's Engine.IO session (not Socket.IO's disconnect, after which a
        client stays away): the pages reconnect and enter again (server/cluster/redis.py, a node
        that was presumed dead)."""
        for conn in list(self.connections.values()):
            if conn.eio_sid is not None:
                await self.sio.eio.disconnect(conn.eio_sid)
            else:
                await self.sio.disconnect(conn.sid)

    async def _announce_departure(self, departure: Departure, reason: str) -> None:
        """``peer_left`` to the rest: ``reason`` "left" (hung up) or "disconnected" (its connection
        dropped: it may be back, and its media may still be flowing meanwhile)."""
        member = departure.member
        if departure.dialect == MESH:
            payload = {"id": member.id, "reason": reason}
        else:
            payload = {"id": member.id, "room": public_name(departure.room)}
        await self._send_all("peer_left", payload, departure.remaining)

    async def _on_unknown(self, event: str | int | ReservedName, sid: str, *args: Any) -> None:
        """Any other event, and one named like a lifecycle event (guard.ReservedName)."""
        conn = self.connections.get(sid)
        if conn is None or conn.closing:
            return
        name = str(event)[:64]
        try:
            self._admit(conn)
            raise v.Refused("unknown_event", f"unknown event '{name}'")
        except v.Refused as refusal:
            await self._refuse(conn, name, refusal, acked=False)

    async def close(self) -> None:
        """Disconnect every client and stop Socket.IO's background task (server shutdown)."""
        if self._closed:
            return
        self._closed = True
        self.turn_renewals.close()
        for sid in list(self.connections):
            await self.sio.disconnect(sid)
        # Let the transports finish closing, so the web server need not wait them out.
        deadline = asyncio.get_running_loop().time() + 1.0
        while self.guard.links and asyncio.get_running_loop().time() < deadline:  # noqa: ASYNC110 - no event to wait on
            await asyncio.sleep(0.01)
        if self.cluster is not None:
            await self.cluster.close()
        await self.sio.shutdown()

    # -- dialect 1: the tutorial's protocol ---------------------------------------------------

    async def _join(self, conn: Connection, *args: Any) -> None:
        room = v.room_id(self._one(args, "join"))
        if self.settings.secret is not None:
            # The tutorial's page cannot send a token: it hears "room full" (what it can show),
            # then an `error` that says why.
            await self.sio.emit("full_room", room, to=conn.sid)
            raise v.Refused("forbidden", DIALECT1_NEEDS_TOKEN)
        key = tutorial_key(room)  # apart from dialect 2's rooms of the same name
        if self.rooms.is_member(key, conn.sid):
            raise v.Refused("already_in_room", f"already in room '{room}'")
        if len(self.rooms.rooms_of(conn.sid, TUTORIAL)) >= self.settings.max_tutorial_rooms:
            limit = self.settings.max_tutorial_rooms
            raise v.Refused("too_many_rooms", f"a connection may be in at most {limit} rooms")
        try:
            before = await self.rooms.add(
                key, Member(conn.sid, "", conn.client), dialect=TUTORIAL, capacity=2
            )
        except v.Refused as refusal:
            if refusal.code not in ("room_full", "wrong_dialect"):
                raise
            await self.sio.emit("full_room", room, to=conn.sid)
            return
        await self.sio.emit("room_joined" if before else "room_created", room, to=conn.sid)

    async def _start_call(self, conn: Connection, *args: Any) -> None:
        room = v.room_id(self._one(args, "start_call"))
        for member in await self._others(room, conn.sid):
            await self.sio.emit("start_call", to=member.sid, ignore_queue=member.node == self.node)

    async def _relay_description(self, conn: Connection, event: str, args: Any) -> None:
        payload = v.mapping(self._one(args, event), f"{event} payload")
        room = v.room_id(payload.get("roomId"))
        expect = "offer" if event == "webrtc_offer" else "answer"
        sdp = v.session_description(payload.get("sdp"), self.settings.max_sdp_bytes, expect=expect)
        await self._send_all(event, sdp, await self._others(room, conn.sid))

    async def _webrtc_offer(self, conn: Connection, *args: Any) -> None:
        await self._relay_description(conn, "webrtc_offer", args)

    async def _webrtc_answer(self, conn: Connection, *args: Any) -> None:
        await self._relay_description(conn, "webrtc_answer", args)

    async def _webrtc_ice_candidate(self, conn: Connection, *args: Any) -> None:
        event = v.tutorial_candidate(self._one(args, "webrtc_ice_candidate"))
        others = await self._others(event["roomId"], conn.sid)
        await self._send_all("webrtc_ice_candidate", event, others)

    # -- dialect 2: ipymeet rooms ---------------------------------------------------------------

    async def _enter(self, conn: Connection, *args: Any) -> dict[str, Any]:
        payload = v.mapping(self._one(args, "enter"), "enter payload")
        room = v.room_id(payload.get("room"))
        # Behind a JupyterHub, a member who gives no name is shown under its hub user's.
        name = v.display_name(payload.get("name")) or v.display_name(conn.user[: v.MAX_NAME])
        session = v.session_key(payload.get("session"))
        await self.access.enter(
            conn.client,
            room,
            payload.get("token"),
            still_here=lambda: self.connections.get(conn.sid) is conn and not conn.closing,
        )
        if conn.mesh_room is not None:
            raise v.Refused("already_in_room", f"already in room '{conn.mesh_room}'; leave first")
        capacity = self.room_capacity.get(room, self.settings.max_peers)
        peer = member_id(conn.sid, session)
        await self._take_over(room, peer)
        before = await self.rooms.add(
            room, Member(conn.sid, name, conn.client, peer), dialect=MESH, capacity=capacity
        )
        conn.mesh_room, conn.peer_id = room, peer
        await self._send_all("peer_joined", {"id": peer, "name": name}, before)
        self.turn_renewals.start(conn.sid, peer)
        return {
            "ok": True,
            "self": peer,
            "room": room,
            "peers": [{"id": m.id, "name": m.name} for m in before],
            "capacity": capacity,
            # With TURN, this member's own short-lived credentials (server/core/turn.py).
            "ice_servers": turn.ice_servers_for(self.settings, peer),
        }

    async def _take_over(self, room: str, peer: str) -> None:
        """A page entering again with its session key while its old connection is still in the
        room (the signaller has not noticed yet that it dropped): the new connection takes its
        place. The others hear nothing: the member they know stays, under the same id."""
        dialect, members = await self.rooms.room(room)
        old = next((m for m in members if m.id == peer), None)
        # Only a dialect-2 member is taken over: without a session key the id is the sid, so a
        # connection entering a tutorial room it is in would otherwise take over (and drop) itself.
        if old is None or dialect != MESH:
            return
        await self.rooms.remove(room, old.sid)
        stale = self.connections.get(old.sid)
        if stale is not None:
            stale.mesh_room, stale.peer_id, stale.closing = None, "", True
            self.turn_renewals.stop(stale.sid)
            self._spawn(self.sio.disconnect(old.sid))
        elif old.node != self.node:  # its old connection is another process's: it closes it
            self._spawn(self.sio.disconnect(old.sid))

    async def _signal(self, conn: Connection, *args: Any) -> dict[str, Any]:
        payload = v.mapping(self._one(args, "signal"), "signal payload")
        to = v.peer_id(payload.get("to"))
        description, candidate = payload.get("description"), payload.get("candidate")
        if (description is None) == (candidate is None):
            raise v.bad("a signal carries exactly one of 'description' or 'candidate'")
        message: dict[str, Any] = {"from": conn.peer_id}
        if description is not None:
            message["description"] = v.session_description(description, self.settings.max_sdp_bytes)
        else:
            message["candidate"] = v.ice_candidate(candidate)
        room = conn.mesh_room
        target = None if room is None or to == conn.peer_id else await self.rooms.find(room, to)
        if target is None:
            raise v.Refused("not_in_room", "you and that peer are not in the same room")
        # Another process's member: through Redis; this one's: straight to its socket.
        await self.sio.emit("signal", message, to=target.sid, ignore_queue=target.node == self.node)
        return {"ok": True}

    async def _leave(self, conn: Connection, *args: Any) -> dict[str, Any]:
        if len(args) > 1 or (args and not isinstance(args[0], dict)):
            raise v.bad("'leave' takes one object, {}")
        room = conn.mesh_room
        departure = None if room is None else await self.rooms.remove(room, conn.sid)
        if departure is None:
            raise v.Refused("not_in_room", "you are not in a room")
        conn.mesh_room, conn.peer_id = None, ""
        self.turn_renewals.stop(conn.sid)
        await self._announce_departure(departure, "left")
        return {"ok": True}

    async def _renew_turn(self, sid: str, servers: list[dict[str, Any]]) -> bool:
        """The ``ice_servers`` event: a member's fresh TURN credentials (turn.Renewals)."""
        conn = self.connections.get(sid)
        if conn is None or conn.closing or conn.mesh_room is None:
            return False
        # Its own connection, on this process (even with a cluster: the timer is where it is).
        await self.sio.emit("ice_servers", {"ice_servers": servers}, to=sid, ignore_queue=True)
        return True

    # -- frames for snapshots ---------------------------------------------------------------------

    async def _frame(self, conn: Connection, *args: Any) -> None:
        if len(args) not in (1, 2):
            raise v.bad("'frame' takes its metadata and one binary chunk")
        chunk = args[1] if len(args) == 2 else None
        # A widget of an attached kernel asked for it: that kernel takes the chunk.
        if self.kernels is not None and await self.kernels.forward_frame(conn, args[0], chunk):
            return
        self.frames.add_chunk(conn.client, args[0], chunk)
