"""Rooms' capacities by who claimed them (server/core/capacity.py), and ``set_room_capacity`` on a
signaller of a kernel's own (``SignallerThread``, as with ``IPYMEET_SHARE=0``)."""

from __future__ import annotations

import pytest

from ipymeet.server import Settings, SignallerThread
from ipymeet.server.core.capacity import RoomCapacity, check


def test_the_latest_claim_wins_and_each_owner_takes_only_its_own() -> None:
    table = RoomCapacity()
    assert (table.get("lab", 6), table.claimed("lab"), len(table)) == (6, None, 0)
    table.set("k1", "lab", 2)
    table.set("k2", "lab", 4)
    table.set("k2", "other", 3)
    assert (table.get("lab", 6), table.get("other", 6), table.get("free", 6)) == (4, 3, 6)
    table.set("k1", "lab", 5)  # claimed again: the latest now
    assert table.get("lab", 6) == 5
    table.set("k1", "lab", None)
    assert table.get("lab", 6) == 4
    assert table.rooms() == {"lab": 4, "other": 3}
    assert table.of("k2") == {"lab": 4, "other": 3}
    assert table.drop("k2") == ["lab", "other"]
    assert (table.get("lab", 6), len(table), table.of("k2"), table.drop("k2")) == (6, 0, {}, [])
    table.set("k3", "gone", None)  # dropping what was never claimed leaves nothing behind
    assert (len(table), table.rooms()) == (0, {})


@pytest.mark.parametrize(
    ("room", "max_peers", "problem"),
    [("a b", 2, "room id"), ("", 2, "room id"), (5, 2, "room id"), ("a", 1, "max_peers"),
     ("a", 65, "max_peers"), ("a", 2.0, "max_peers"), ("a", True, "max_peers")],
)  # fmt: skip
def test_claims_are_checked(room: object, max_peers: object, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        check(room, max_peers)


def test_a_signaller_of_its_own_takes_claims_until_released() -> None:
    server = SignallerThread(Settings(max_peers=5))
    table = server.signaller.room_capacity
    release = server.set_room_capacity("lab", 2)
    again = server.set_room_capacity("lab", 3)
    assert (table.get("lab", 5), table.get("other", 5), server.settings.max_peers) == (3, 5, 5)
    again()
    assert table.get("lab", 5) == 2
    release()
    release()
    assert (table.get("lab", 5), len(table)) == (5, 0)
    with pytest.raises(ValueError, match="max_peers"):
        server.set_room_capacity("lab", 99)
