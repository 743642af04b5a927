"""How many a room holds, when a widget asked for other than the signaller's ``max_peers``.

``VideoRoom(room, max_peers=N)`` claims N for its own room; every room nobody claimed holds the
default (``Settings.max_peers``, ``ipymeet serve --max-peers``). A shared signaller serves every
notebook and dashboard of its user, so one widget's wish must not change the others' rooms.
Claims are kept by who made them (a widget's claim, a kernel's id), so one that goes (a widget
closed or moved to another room, a kernel revoked) takes only its own along, and the latest claim
of a room wins. A change applies to whoever enters next: members already in a room stay.

Example::

    table = RoomCapacity()
    table.set("kernel-1", "lab", 2)
    table.get("lab", 6), table.get("other", 6)     # (2, 6)
    table.drop("kernel-1")                        # ["lab"]: it holds 6 again
"""

from __future__ import annotations

import threading
from collections.abc import Hashable

from .validation import ROOM_RE

#: The capacities a room may have (as ``Settings.max_peers``).
MIN_PEERS, MAX_PEERS = 2, 64


def check(room: object, max_peers: object) -> None:
    """ValueError unless ``room`` is a room id and ``max_peers`` an integer from 2 to 64."""
    if not isinstance(room, str) or not ROOM_RE.fullmatch(room):
        raise ValueError(
            f"room {room!r} is not a valid room id: use 1-64 letters, digits, '_', '.' or '-'"
        )
    check_max_peers(max_peers)


def check_max_peers(max_peers: object) -> int:
    """``max_peers`` if it is an integer from 2 to 64 (as ``Settings`` checks), else ValueError."""
    if type(max_peers) is not int or not MIN_PEERS <= max_peers <= MAX_PEERS:
        raise ValueError(
            f"max_peers must be between {MIN_PEERS} and {MAX_PEERS}, not {max_peers!r}"
        )
    return max_peers


class RoomCapacity:
    """The rooms' capacities that someone claimed, by owner; any thread (one lock)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        #: room -> owner -> capacity; insertion order = the order claimed (the latest wins).
        self._claims: dict[str, dict[Hashable, int]] = {}
        self._rooms_of: dict[Hashable, set[str]] = {}

    def get(self, room: str, default: int) -> int:
        """What ``room`` holds: its latest claim, else ``default``."""
        claimed = self.claimed(room)
        return default if claimed is None else claimed

    def claimed(self, room: str) -> int | None:
        """The latest claim of ``room`` (None: nobody claimed it)."""
        with self._lock:
            claims = self._claims.get(room)
            return None if not claims else next(reversed(claims.values()))

    def claimers(self, room: str) -> list[Hashable]:
        """Who claims ``room`` now, the latest last (server/kernel/kernels.py asks whose they
        are)."""
        with self._lock:
            return list(self._claims.get(room, ()))

    def set(self, owner: Hashable, room: str, max_peers: int | None) -> None:
        """``owner`` claims ``max_peers`` for ``room`` (now the latest claim), or with None drops
        its claim (the room holds the claim before it, or the default)."""
        with self._lock:
            self._unclaim(owner, room)
            if max_peers is not None:
                self._claims.setdefault(room, {})[owner] = max_peers
                self._rooms_of.setdefault(owner, set()).add(room)

    def drop(self, owner: Hashable) -> list[str]:
        """Drop every claim of ``owner``; the rooms it had claimed."""
        with self._lock:
            rooms = sorted(self._rooms_of.get(owner, ()))
            for room in rooms:
                self._unclaim(owner, room)
        return rooms

    def _unclaim(self, owner: Hashable, room: str) -> None:
        # Empty entries go too, so the tables hold only live claims.
        claims = self._claims.get(room)
        if claims is not None and claims.pop(owner, None) is not None and not claims:
            del self._claims[room]
        rooms = self._rooms_of.get(owner)
        if rooms is not None:
            rooms.discard(room)
            if not rooms:
                del self._rooms_of[owner]

    def of(self, owner: Hashable) -> dict[str, int]:
        """The claims of ``owner``, by room."""
        with self._lock:
            rooms = sorted(self._rooms_of.get(owner, ()))
            return {room: self._claims[room][owner] for room in rooms}

    def rooms(self) -> dict[str, int]:
        """Every claimed room and what it holds (its latest claim)."""
        with self._lock:
            return {room: next(reversed(claims.values())) for room, claims in self._claims.items()}

    def __len__(self) -> int:
        """How many rooms are claimed."""
        with self._lock:
            return len(self._claims)
