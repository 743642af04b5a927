"""Who is in which room: the signaller's one source of truth for membership.

The registry is changed only on the signaller's event loop, but read from other threads too (the
kernel's widgets show who is in their room while a cell is busy), so every access holds a lock and
readers get copies. Listeners are called on the signaller's thread after each change, outside the
lock, and must be quick and thread-safe.

The signaller itself goes through :class:`Rooms`, the interface both registries offer: this one in
one process (:class:`LocalRooms`, a thin async face on :class:`Registry`), or Redis when several
processes share the rooms (server/cluster/redis.py, ``ipymeet serve --redis``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from .validation import Refused

TUTORIAL = 1  # dialect 1: the tutorial's rooms of two
MESH = 2  # dialect 2: ipymeet rooms, addressed signals

#: Dialect 1's rooms are kept under this mark (not a room id character), apart from dialect 2's:
#: a name taken in one dialect says nothing of the same name in the other, so neither dialect's
#: answers reveal the other's rooms (the tutorial's ``join`` once answered ``full_room`` for an
#: ipymeet room and ``room_created`` for a free name, to anyone, silently).
TUTORIAL_MARK = "~"


def tutorial_key(room: str) -> str:
    """Where dialect 1's room ``room`` is kept."""
    return TUTORIAL_MARK + room


def public_name(key: str) -> str:
    """The room id clients use for a room kept under ``key``."""
    return key[len(TUTORIAL_MARK) :] if key.startswith(TUTORIAL_MARK) else key


Listener = Callable[[str], None]
log = logging.getLogger("ipymeet.server")


@dataclass(frozen=True)
class Member:
    """One connection in a room.

    ``sid`` is its Socket.IO connection; ``id`` how the others address it: the sid, or in dialect 2
    an id derived from the page's session key, which stays the same when the page reconnects.
    ``client`` is the key a widget sent when connecting, or "". ``node`` is the signaller process
    that holds its connection when several share the rooms (server/cluster/redis.py), else "".
    """

    sid: str
    name: str = ""
    client: str = ""
    id: str = ""
    node: str = ""

    def __post_init__(self) -> None:
        if not self.id:
            object.__setattr__(self, "id", self.sid)


@dataclass(frozen=True)
class Departure:
    """``member`` left ``room`` (of ``dialect``); ``remaining`` are the members still there."""

    room: str
    dialect: int
    remaining: list[Member]
    member: Member


@dataclass
class _Room:
    dialect: int
    #: By member id; insertion order = arrival order.
    members: dict[str, Member] = field(default_factory=dict)

    def by_sid(self, sid: str) -> Member | None:
        # A room holds at most max_peers (≤ 64) members: a scan is cheaper than a second index.
        return next((m for m in self.members.values() if m.sid == sid), None)


class Registry:
    """Rooms, their dialect and members, with capacity enforced atomically."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rooms: dict[str, _Room] = {}
        self._rooms_of: dict[str, set[str]] = {}
        self._listeners: list[Listener] = []

    # -- changes (signaller loop only) ------------------------------------------------------

    def add(self, room: str, member: Member, *, dialect: int, capacity: int) -> list[Member]:
        """Put ``member`` in ``room``; return the members who were there before.

        Raises :class:`Refused` with ``room_full``, ``wrong_dialect`` or ``already_in_room``.
        """
        with self._lock:
            current = self._rooms.get(room)
            if current is not None and current.dialect != dialect:
                raise Refused("wrong_dialect", f"room '{room}' is in use by the other protocol")
            if current is not None and (
                member.id in current.members or current.by_sid(member.sid) is not None
            ):
                raise Refused("already_in_room", f"already in room '{room}'")
            if current is not None and len(current.members) >= capacity:
                raise Refused(
                    "room_full", f"room '{room}' is full (it holds {capacity})", capacity=capacity
                )
            if current is None:
                current = self._rooms[room] = _Room(dialect)
            before = list(current.members.values())
            current.members[member.id] = member
            self._rooms_of.setdefault(member.sid, set()).add(room)
        self._notify(room)
        return before

    def remove(self, room: str, sid: str) -> Departure | None:
        """Take ``sid`` out of ``room``; None if it was not there."""
        with self._lock:
            departure = self._remove_locked(room, sid)
        if departure is not None:
            self._notify(room)
        return departure

    def remove_everywhere(self, sid: str) -> list[Departure]:
        """Take ``sid`` out of every room it is in (a disconnect)."""
        with self._lock:
            rooms = sorted(self._rooms_of.get(sid, ()))
            departures = [d for r in rooms if (d := self._remove_locked(r, sid)) is not None]
        for departure in departures:
            self._notify(departure.room)
        return departures

    def _remove_locked(self, room: str, sid: str) -> Departure | None:
        current = self._rooms.get(room)
        member = None if current is None else current.by_sid(sid)
        if current is None or member is None:
            return None
        del current.members[member.id]
        rooms = self._rooms_of.get(sid)
        if rooms is not None:
            rooms.discard(room)
            if not rooms:
                del self._rooms_of[sid]
        if not current.members:
            del self._rooms[room]
        return Departure(room, current.dialect, list(current.members.values()), member)

    # -- reads (any thread) ----------------------------------------------------------------

    def members(self, room: str) -> list[Member]:
        """The members of ``room`` in arrival order (empty if it does not exist)."""
        with self._lock:
            current = self._rooms.get(room)
            return list(current.members.values()) if current else []

    def room(self, room: str) -> tuple[int | None, list[Member]]:
        """The dialect of ``room`` (None: no such room) and its members in arrival order."""
        with self._lock:
            current = self._rooms.get(room)
            return (current.dialect, list(current.members.values())) if current else (None, [])

    def dialect(self, room: str) -> int | None:
        with self._lock:
            current = self._rooms.get(room)
            return current.dialect if current else None

    def rooms_of(self, sid: str, dialect: int | None = None) -> list[str]:
        """The rooms ``sid`` is in, optionally only those of one dialect."""
        with self._lock:
            rooms = sorted(self._rooms_of.get(sid, ()))
            if dialect is None:
                return rooms
            return [r for r in rooms if self._rooms[r].dialect == dialect]

    def is_member(self, room: str, sid: str) -> bool:
        """Whether the connection ``sid`` is in ``room``."""
        with self._lock:
            current = self._rooms.get(room)
            return current is not None and current.by_sid(sid) is not None

    def find(self, room: str, member_id: str) -> Member | None:
        """The member of ``room`` addressed as ``member_id``, or None."""
        with self._lock:
            current = self._rooms.get(room)
            return None if current is None else current.members.get(member_id)

    def sids(self) -> list[str]:
        """The connections in any room."""
        with self._lock:
            return list(self._rooms_of)

    def counts(self) -> dict[str, int]:
        """Room and membership totals, for health checks and benchmarks."""
        with self._lock:
            return {"rooms": len(self._rooms), "members": len(self._rooms_of)}

    # -- listeners -------------------------------------------------------------------------

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener(room)`` after each change of a room's members; returns an unsubscribe."""
        with self._lock:
            self._listeners.append(listener)

        def unsubscribe() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return unsubscribe

    def _notify(self, room: str) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(room)
            except Exception:  # a widget's bug must not break signalling
                log.exception("room listener failed")


class Rooms(Protocol):
    """What the signaller asks of a registry: :class:`LocalRooms` in one process, or
    server/cluster/redis.py's ``Cluster`` when several processes share the rooms through Redis.

    The reads about one connection's own rooms (``rooms_of``, ``is_member``) are asked only for
    connections of this process, and are answered from memory either way.
    """

    async def add(self, room: str, member: Member, *, dialect: int, capacity: int) -> list[Member]:
        """As :meth:`Registry.add`."""
        ...

    async def remove(self, room: str, sid: str) -> Departure | None:
        """As :meth:`Registry.remove`."""
        ...

    async def remove_everywhere(self, sid: str) -> list[Departure]:
        """As :meth:`Registry.remove_everywhere`."""
        ...

    async def room(self, room: str) -> tuple[int | None, list[Member]]:
        """The dialect of ``room`` (None: no such room) and its members in arrival order."""
        ...

    async def find(self, room: str, member_id: str) -> Member | None:
        """As :meth:`Registry.find`."""
        ...

    def rooms_of(self, sid: str, dialect: int | None = None) -> list[str]:
        """As :meth:`Registry.rooms_of`."""
        ...

    def is_member(self, room: str, sid: str) -> bool:
        """As :meth:`Registry.is_member`."""
        ...


class RoomStore(Rooms, Protocol):
    """Rooms kept beyond this process, which a signaller is given to share them
    (server/cluster/redis.py's ``Cluster``, for ``ipymeet serve --redis``): the :class:`Rooms`
    and what the signaller does with it besides."""

    #: This process's own members (what ``/healthz`` counts, and a connection's own rooms).
    local: Registry
    #: This process's id among those sharing the rooms.
    node: str
    #: Whether the store is out of reach just now.
    down: bool

    def manager(self) -> Any:
        """The Socket.IO client manager that carries events to the other processes."""

    async def start(self, sio: Any, announce: Any, drop_all: Any, max_message: int) -> None:
        """Join the others when the application starts (ConnectionError if it cannot)."""

    async def close(self) -> None:
        """Leave, after the signaller disconnected its clients."""


class LocalRooms:
    """:class:`Rooms` on one process's :class:`Registry`: each call is the registry's own, with
    nothing awaited (so one process relays as fast as it did before there was an interface)."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.rooms_of = registry.rooms_of
        self.is_member = registry.is_member

    async def add(self, room: str, member: Member, *, dialect: int, capacity: int) -> list[Member]:
        return self.registry.add(room, member, dialect=dialect, capacity=capacity)

    async def remove(self, room: str, sid: str) -> Departure | None:
        return self.registry.remove(room, sid)

    async def remove_everywhere(self, sid: str) -> list[Departure]:
        return self.registry.remove_everywhere(sid)

    async def room(self, room: str) -> tuple[int | None, list[Member]]:
        return self.registry.room(room)

    async def find(self, room: str, member_id: str) -> Member | None:
        return self.registry.find(room, member_id)
