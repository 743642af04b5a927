"""A kernel peer's join: its signalling client, the other members and their connections.

One :class:`Session` per ``join()``, on that join's media loop (kernelpeer.py makes the loop):

- **signalling**: a python-socketio AsyncClient enters the room as a dialect-2 member, as a page
  does (docs/protocol.md): ``enter`` with a session key (and a join token where the signaller
  requires one), the members' events (``peer_joined``, ``peer_left``, ``signal``,
  ``ice_servers``), ``leave`` at the end. When the signaller drops it, the session reaches it
  again with growing pauses (:data:`RECONNECT_DELAYS`) and enters again; the connections to the
  members go on meanwhile.
- **the members**: one :class:`~.peerstate.Member` and one
  :class:`~.peerconn.MemberConnection` for each other member (the session is the connections'
  ``Host``); a member whose signalling dropped is kept :data:`LINGER_S` seconds, as the pages do.
  What the members are, and whether one is connected, goes to the shared
  :class:`~.peerstate.PeerState` (``peers``, waiting or in_call).
- it starts each received track's reader (peertracks.py) and the figures (peerstats.py), and
  tells the members once per change whether this peer sends video now.

It knows nothing of ``KernelPeer``: what it needs of it comes in an :class:`Entry` (how to
enter, fixed for the join), the shared ``PeerState`` and the stop event ``leave()`` sets.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import binding
from .contract import CallState, ErrorCode
from .messages import Sender
from .peerstate import Member, PeerState
from .peerstats import measure
from .peertracks import read
from .videoask import want_message

if TYPE_CHECKING:
    from .peerconn import MemberConnection

log = logging.getLogger("ipymeet")

#: How long the peer waits to reach the signaller and for each acknowledgement.
CONNECT_TIMEOUT = 5.0
REQUEST_TIMEOUT = 5.0
#: Reaching the signaller again after it dropped the peer: the first wait, doubled up to the
#: last (each with a random part, so the members of a restarted signaller do not come at once).
RECONNECT_DELAYS = (0.25, 5.0)
#: A member whose signalling dropped (``peer_left`` "disconnected") is kept this long.
LINGER_S = 30.0
#: Lifetime of the join tokens the peer mints for itself on a signaller that requires them.
TOKEN_TTL = 600.0
#: The error of a relay-only peer on a signaller without TURN (the page's, js/src/errors.ts).
NO_RELAY_MESSAGE = (
    "Relay only was asked for (relay_only=True), but the signaller offers no TURN server, so no "
    "connection can be made. Start the signaller with --turn-url and --turn-secret "
    "(IPYMEET_TURN_URLS and IPYMEET_TURN_SECRET for a kernel's), or turn relay only off."
)


@dataclass(frozen=True)
class Entry:
    """How a join enters its room, as its ``KernelPeer`` was made."""

    room: str
    name: str
    #: Another signaller (``ipymeet serve``), or None for ``server``, the kernel's.
    signaling_url: str | None
    server: binding.KernelServer | None
    #: The join token given with ``signaling_url`` (None: none, or minted from ``server``).
    token: str | None
    relay_only: bool
    sends_video: bool
    #: Whose media reaches the callbacks (None: everyone's).
    only: Callable[[Sender], bool] | None
    #: The size each member's video frames are handed over at, and asked for (None: as sent).
    size: tuple[int, int] | None = None
    #: The frame rate asked of each member (None: as it sends).
    fps: int | None = None


async def run(shared: PeerState, entry: Entry, stop: asyncio.Event) -> None:
    """One join, from reaching the signaller to leaving, on the running loop."""
    await Session(shared, entry, stop).run()


class Session:
    """One join of a kernel peer, on its media loop: the Socket.IO client, the members and their
    connections (it is their :class:`~.peerconn.Host`); it starts each track's reader and the
    figures. It writes what the peer shows into ``shared`` and ends when ``stop`` is set (by
    ``leave()``, or by itself when the call fails)."""

    def __init__(self, shared: PeerState, entry: Entry, stop: asyncio.Event) -> None:
        import socketio

        self.shared = shared
        self.entry = entry
        self.stop = stop
        self.loop = asyncio.get_running_loop()
        self.members: dict[str, Member] = {}
        self.self_id = ""
        self.ice: list[Any] = []
        self.session_key = secrets.token_urlsafe(24)
        self.entered = False
        self.leaving = False
        self.held: list[tuple[str, Any]] = []  # events that came before the enter ack
        self.tasks: set[asyncio.Task[Any]] = set()
        self.announced = False  # what the members were last told: sending video or not
        options: dict[str, Any] = {}
        server = entry.server
        self.url = entry.signaling_url or (server.url if server is not None else "")
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

    def spawn(self, coroutine: Any) -> asyncio.Task[Any]:
        task = self.loop.create_task(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    async def _connect(self) -> None:
        await asyncio.wait_for(
            self.sio.connect(self.url, transports=["websocket"], wait_timeout=CONNECT_TIMEOUT),
            CONNECT_TIMEOUT + 1,
        )

    async def run(self) -> None:
        try:
            await self._connect()
        except Exception as problem:
            self.shared.fail(
                ErrorCode.UNREACHABLE,
                f"the kernel peer could not reach the signaller at {self.url}: {problem}",
            )
            return
        self.spawn(measure(self.members, self.shared))
        unlisten = self.shared.outgoing.listen(self._outgoing_changed)
        try:
            await self.stop.wait()
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
        if self.leaving or self.shared.state is CallState.FAILED:
            return
        self.shared.set_state(CallState.RECONNECTING)
        if self.reconnecting is None or self.reconnecting.done():
            self.reconnecting = self.spawn(self._reconnect())

    async def _reconnect(self) -> None:
        """Reach the signaller again until it answers or the peer leaves; entering follows
        (``_connected``). The connections to the members go on meanwhile."""
        delay, longest = RECONNECT_DELAYS
        while not self.leaving:
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            if self.sio.connected:
                return
            try:
                await self._connect()
                return
            except Exception as problem:
                log.debug("ipymeet: the kernel peer could not reach %s yet: %s", self.url, problem)
                delay = min(delay * 2, longest)

    async def _enter(self) -> None:
        payload: dict[str, Any] = {
            "room": self.entry.room,
            "name": self.entry.name,
            "session": self.session_key,
        }
        server = self.entry.server
        token = self.entry.token
        if server is not None and server.requires_tokens:
            token = server.mint(self.entry.room, TOKEN_TTL)
        if token is not None:
            payload["token"] = token
        try:
            ack = await self.sio.call("enter", payload, timeout=REQUEST_TIMEOUT)
        except Exception as problem:
            if not self.leaving:
                self.shared.fail(
                    ErrorCode.TIMEOUT, f"the signaller did not answer the kernel peer: {problem}"
                )
                self.stop.set()
            return
        if not isinstance(ack, dict) or not ack.get("ok"):
            code = str(ack.get("code", "")) if isinstance(ack, dict) else ""
            message = str(ack.get("message", "")) if isinstance(ack, dict) else ""
            try:
                error_code = ErrorCode(code)
            except ValueError:
                error_code = ErrorCode.INTERNAL_ERROR
            self.shared.fail(
                error_code, message or f"the signaller refused the kernel peer ({code})"
            )
            self.stop.set()
            return
        from .peerice import has_turn, ice_servers

        again = self.self_id != ""
        if again and ack["self"] != self.self_id:
            for member in list(self.members.values()):
                await self._drop(member)
        self.self_id = str(ack["self"])
        self.shared.self_id = self.self_id
        # In place: the member connections hold this list and make their next RTCPeerConnection
        # with it (aiortc can neither change a connection's servers nor restart ICE).
        self.ice[:] = ice_servers(ack.get("ice_servers"))
        self.entered = True  # so that stopping sends "leave"
        if self.entry.relay_only and not has_turn(self.ice):
            # As the pages (js/src/members.ts): no relay to use, so no connection could be made.
            self.leaving = True  # no member is added meanwhile (_event)
            self.shared.fail(ErrorCode.NO_RELAY, NO_RELAY_MESSAGE)
            self.stop.set()
            return
        self.shared.set_state(CallState.WAITING)
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
            from .peerice import ice_servers

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

    def _add(self, peer_id: str, name: str, *, initiator: bool) -> Member:
        from .peerconn import MemberConnection

        member = Member(peer_id, name)
        self.members[peer_id] = member
        member.connection = MemberConnection(
            self,
            self.self_id,
            peer_id,
            initiator=initiator,
            ice=self.ice,
            outgoing=self.shared.outgoing if self.entry.sends_video else None,
            relay_only=self.entry.relay_only,
            want=want_message(self.entry.size, self.entry.fps),
        )
        return member

    def _present(self, member: Member, name: str) -> None:
        member.present = True
        if name:
            member.name = name
        if member.linger is not None:
            member.linger.cancel()
            member.linger = None

    def _away(self, member: Member) -> None:
        """Its signalling dropped: keep its connection a while (it may enter again)."""
        member.present = False
        if member.linger is None:
            member.linger = self.loop.call_later(
                LINGER_S, lambda: self.spawn(self._drop(member)) if not member.present else None
            )

    async def _drop(self, member: Member) -> None:
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

    def _member_of(self, connection: MemberConnection) -> Member | None:
        member = self.members.get(connection.peer_id)
        return member if member is not None and member.connection is connection else None

    def track(self, connection: MemberConnection, track: Any) -> None:
        member = self._member_of(connection)
        if member is None or track.kind not in ("video", "audio"):
            return
        entry = self.entry
        self.spawn(
            read(
                self.shared,
                member,
                track,
                room=entry.room,
                only=entry.only,
                size=entry.size,
                speaking_changed=self._changed,
            )
        )

    def changed(self) -> None:
        self._changed()

    def flags(self, connection: MemberConnection, flags: dict[str, bool]) -> None:
        member = self._member_of(connection)
        if member is not None and member.flags != flags:
            member.flags = flags
            if not flags["audio"]:
                member.voice.off()  # muted: not speaking from now on
            self._changed()

    def sent_frame(self, connection: MemberConnection) -> None:
        member = self._member_of(connection)
        if member is not None:
            member.frames_out += 1
        self.shared.counters.add("frames_sent")

    def _outgoing_changed(self) -> None:  # any thread, after each frame set: keep it cheap
        if self.shared.outgoing.live != self.announced:
            with contextlib.suppress(RuntimeError):  # the loop has ended
                self.loop.call_soon_threadsafe(self._announce)

    def _announce(self) -> None:
        """Tell every member whether this peer sends video now, once per change."""
        live = self.shared.outgoing.live
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
                {
                    "connection": m.connection.state if m.connection else "new",
                    **m.flags,
                    "speaking": m.voice.speaking,
                },
            )
            for m in self.members.values()
        ]
        connected = any(p["connection"] == "connected" for p in peers)
        self.shared.publish_members(peers, connected)
