"""The room registry: capacity, dialects and listeners, thread-safe reads."""

from __future__ import annotations

import contextlib
import threading

import pytest

from ipymeet.server.core.registry import MESH, TUTORIAL, Member, Registry
from ipymeet.server.core.validation import Refused


def test_capacity_dialect_and_order() -> None:
    """Rooms fill up to capacity in arrival order; the other dialect and repeats are refused."""
    registry = Registry()
    assert registry.add("r", Member("a", "Ada"), dialect=MESH, capacity=3) == []
    assert registry.add("r", Member("b"), dialect=MESH, capacity=3) == [Member("a", "Ada")]
    registry.add("r", Member("c"), dialect=MESH, capacity=3)
    for member, dialect, code in (
        (Member("d"), MESH, "room_full"),
        (Member("a"), MESH, "already_in_room"),
        (Member("d"), TUTORIAL, "wrong_dialect"),
    ):
        with pytest.raises(Refused) as refused:
            registry.add("r", member, dialect=dialect, capacity=3)
        assert refused.value.code == code
    assert [m.sid for m in registry.members("r")] == ["a", "b", "c"]


def test_leaving_and_disconnecting() -> None:
    """remove() and remove_everywhere() report who is left; empty rooms disappear."""
    registry = Registry()
    for room in ("x", "y"):
        registry.add(room, Member("a"), dialect=TUTORIAL, capacity=2)
    registry.add("x", Member("b"), dialect=TUTORIAL, capacity=2)
    assert registry.remove("x", "nobody") is None
    departures = registry.remove_everywhere("a")
    assert [(d.room, [m.sid for m in d.remaining]) for d in departures] == [("x", ["b"]), ("y", [])]
    assert registry.dialect("y") is None
    assert registry.rooms_of("a") == []
    assert registry.counts() == {"rooms": 1, "members": 1}


def test_listeners_hear_every_change_and_can_unsubscribe() -> None:
    """Listeners get the room of each change; a failing listener does not break the registry."""
    registry = Registry()
    heard: list[str] = []
    unsubscribe = registry.subscribe(heard.append)
    registry.subscribe(lambda room: 1 / 0)
    registry.add("r", Member("a"), dialect=MESH, capacity=2)
    registry.remove("r", "a")
    unsubscribe()
    registry.add("r", Member("a"), dialect=MESH, capacity=2)
    assert heard == ["r", "r"]


def test_concurrent_reads_see_whole_states() -> None:
    """Readers on other threads never see a room over capacity while it churns."""
    registry = Registry()
    stop = threading.Event()
    seen: list[int] = []

    def read() -> None:
        while not stop.is_set():
            seen.append(len(registry.members("r")))

    reader = threading.Thread(target=read)
    reader.start()
    for round_ in range(2000):
        for sid in ("a", "b", "c"):
            with contextlib.suppress(Refused):
                registry.add("r", Member(f"{sid}{round_}"), dialect=MESH, capacity=2)
        registry.remove_everywhere(f"a{round_}")
        registry.remove_everywhere(f"b{round_}")
    stop.set()
    reader.join()
    assert seen
    assert max(seen) <= 2
