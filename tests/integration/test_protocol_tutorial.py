"""Dialect 1, the tutorial's protocol (docs/protocol.md), row by row, with the three fixes.

Real ``socketio.AsyncClient``s on the WebSocket transport against a real signaller on a loopback
port. Absence (nothing relayed to a stranger, no echo to the sender) is proven with a later marker
sent through the same path: one connection's events are handled, and answered, in order.
"""

from __future__ import annotations

from typing import Any

import pytest

from ipymeet.server import SignallerThread
from ipymeet.server.core.registry import tutorial_key

from .helpers import (
    ANSWER_SDP,
    CANDIDATE,
    OFFER_SDP,
    Peer,
    assert_serves_a_call,
    connected,
    tutorial_answer,
    tutorial_call,
    tutorial_candidate,
    tutorial_offer,
)


def sids(signaller: SignallerThread, room: str) -> list[str]:
    """The members of dialect 1's room ``room`` (kept apart from dialect 2's of that name)."""
    return [member.sid for member in signaller.registry.members(tutorial_key(room))]


async def pair(a: Peer, b: Peer, room: str) -> None:
    """A creates ``room``, B joins it; both answers taken."""
    await a.emit("join", room)
    assert await a.take() == [("room_created", room)]
    await b.emit("join", room)
    assert await b.take() == [("room_joined", room)]


# -- join ---------------------------------------------------------------------------------------


async def test_join_creates_then_joins_then_refuses_a_third(signaller: SignallerThread) -> None:
    """`join`: room_created, then room_joined, then full_room (room id each); the third is out."""
    async with connected(signaller.url, "a", "b", "c") as (a, b, c):
        await a.emit("join", "r1")
        assert await a.take() == [("room_created", "r1")]
        assert sids(signaller, "r1") == [a.sid]
        await b.emit("join", "r1")
        assert await b.take() == [("room_joined", "r1")]
        await c.emit("join", "r1")
        assert await c.take() == [("full_room", "r1")]
        assert sids(signaller, "r1") == [a.sid, b.sid]
        assert signaller.registry.rooms_of(c.sid) == []
        # The refused third may still create a room of its own.
        await c.emit("join", "r2")
        assert await c.take() == [("room_created", "r2")]
        assert a.events == [("room_created", "r1")]
        assert b.events == [("room_joined", "r1")]
        assert c.events == [("full_room", "r1"), ("room_created", "r2")]


# -- relays -------------------------------------------------------------------------------------


async def test_start_call_reaches_the_other_member_never_the_sender(
    signaller: SignallerThread,
) -> None:
    """`start_call` is relayed with no arguments to the other member and not echoed."""
    async with connected(signaller.url, "a", "b") as (a, b):
        await pair(a, b, "room")
        await b.emit("start_call", "room")
        assert await a.take() == [("start_call",)]
        # Marker through B's own path: an echo of start_call would arrive before this answer.
        await b.emit("join", "marker-b")
        assert await b.take() == [("room_created", "marker-b")]
        await a.emit("start_call", "room")
        assert await b.take() == [("start_call",)]
        await a.emit("join", "marker-a")
        assert await a.take() == [("room_created", "marker-a")]
        assert a.events == [("room_created", "room"), ("start_call",), ("room_created", "marker-a")]
        assert b.events == [
            ("room_joined", "room"),
            ("room_created", "marker-b"),
            ("start_call",),
        ]


async def test_offer_and_answer_are_relayed_as_only_the_sdp_object(
    signaller: SignallerThread,
) -> None:
    """`webrtc_offer` / `webrtc_answer` reach the other member as the bare `{type, sdp}`."""
    async with connected(signaller.url, "a", "b") as (a, b):
        await pair(a, b, "room")
        await a.emit("webrtc_offer", tutorial_offer("room"))
        assert await b.take() == [("webrtc_offer", OFFER_SDP)]
        await b.emit("webrtc_answer", tutorial_answer("room"))
        assert await a.take() == [("webrtc_answer", ANSWER_SDP)]
        # Neither got its own description back (marker through each one's path).
        await a.emit("join", "marker-a")
        await b.emit("join", "marker-b")
        assert await a.take() == [("room_created", "marker-a")]
        assert await b.take() == [("room_created", "marker-b")]
        assert a.untaken() == []
        assert b.untaken() == []


async def test_ice_candidates_are_relayed_as_the_whole_object(signaller: SignallerThread) -> None:
    """`webrtc_ice_candidate` reaches the other member as the whole `{roomId, label, candidate}`."""
    async with connected(signaller.url, "a", "b") as (a, b):
        await pair(a, b, "room")
        sent = [
            tutorial_candidate("room", 0),
            tutorial_candidate("room", 1, CANDIDATE.replace("50000", "50001")),
            # A browser may report a null sdpMLineIndex; the tutorial's page forwards it as is.
            tutorial_candidate("room", None),
        ]
        for candidate in sent:
            await a.emit("webrtc_ice_candidate", candidate)
        assert await b.take(3) == [("webrtc_ice_candidate", c) for c in sent]
        await b.emit("webrtc_ice_candidate", sent[0])
        assert await a.take() == [("webrtc_ice_candidate", sent[0])]


async def test_a_whole_tutorial_call_in_order(signaller: SignallerThread) -> None:
    """A join, B join, B start_call, A offer, B answer, candidates both ways: exact sequences."""
    async with connected(signaller.url, "a", "b") as (a, b):
        await a.emit("join", "call")
        await a.wait_count(1)
        await b.emit("join", "call")
        await b.wait_count(1)
        await b.emit("start_call", "call")
        await a.wait_count(2)
        await a.emit("webrtc_offer", tutorial_offer("call"))
        await b.wait_count(2)
        await b.emit("webrtc_answer", tutorial_answer("call"))
        await a.wait_count(3)
        # Trickle: both sides send candidates at once, as browsers do.
        for label in (0, 1):
            await a.emit("webrtc_ice_candidate", tutorial_candidate("call", label))
            await b.emit("webrtc_ice_candidate", tutorial_candidate("call", label))
        await a.wait_count(5)
        await b.wait_count(4)
        # Markers prove nothing more is on its way to either of them.
        await a.emit("join", "marker-a")
        await b.emit("join", "marker-b")
        assert await a.wait_count(6) == [
            ("room_created", "call"),
            ("start_call",),
            ("webrtc_answer", ANSWER_SDP),
            ("webrtc_ice_candidate", tutorial_candidate("call", 0)),
            ("webrtc_ice_candidate", tutorial_candidate("call", 1)),
            ("room_created", "marker-a"),
        ]
        assert await b.wait_count(5) == [
            ("room_joined", "call"),
            ("webrtc_offer", OFFER_SDP),
            ("webrtc_ice_candidate", tutorial_candidate("call", 0)),
            ("webrtc_ice_candidate", tutorial_candidate("call", 1)),
            ("room_created", "marker-b"),
        ]
        assert len(a.events) == 6
        assert len(b.events) == 5


# -- the fixes ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("event", "make"),
    [
        ("start_call", lambda room: room),
        ("webrtc_offer", tutorial_offer),
        ("webrtc_answer", tutorial_answer),
        ("webrtc_ice_candidate", tutorial_candidate),
    ],
    ids=["start_call", "webrtc_offer", "webrtc_answer", "webrtc_ice_candidate"],
)
async def test_a_non_member_cannot_relay_into_a_room(
    signaller: SignallerThread, event: str, make: Any
) -> None:
    """A relay from a socket outside the room gets `not_in_room`, and nothing reaches the room."""
    async with connected(signaller.url, "a", "b", "stranger") as (a, b, stranger):
        await pair(a, b, "room")
        await stranger.emit(event, make("room"))
        assert (await stranger.error())["code"] == "not_in_room"
        # Being in another room does not help either.
        await stranger.emit("join", "elsewhere")
        assert await stranger.take() == [("room_created", "elsewhere")]
        await stranger.emit(event, make("room"))
        assert (await stranger.error())["code"] == "not_in_room"
        # Markers: a member's own relay reaches the other; a stranger's would have come first.
        await a.emit("start_call", "room")
        await b.emit("start_call", "room")
        assert await a.take() == [("start_call",)]
        assert await b.take() == [("start_call",)]
        assert a.events == [("room_created", "room"), ("start_call",)]
        assert b.events == [("room_joined", "room"), ("start_call",)]
        assert sids(signaller, "room") == [a.sid, b.sid]


async def test_the_remaining_member_gets_peer_left(signaller: SignallerThread) -> None:
    """When a member disconnects, the one left gets `peer_left` with its id, and may carry on."""
    async with connected(signaller.url, "a", "b", "c") as (a, b, c):
        await pair(a, b, "room")
        gone = b.sid
        await b.close()
        (event,) = await a.take()
        assert event[0] == "peer_left"
        assert event[1]["id"] == gone
        assert sids(signaller, "room") == [a.sid]
        # The room has a free place again: a newcomer joins and the call can start.
        await c.emit("join", "room")
        assert await c.take() == [("room_joined", "room")]
        await c.emit("start_call", "room")
        assert await a.take() == [("start_call",)]


LONG_SDP = {"type": "offer", "sdp": "v=0\r\n" + "a=x\r\n" * (64 * 1024 // 5 + 1)}
assert len(LONG_SDP["sdp"]) > 64 * 1024


@pytest.mark.parametrize(
    ("event", "args"),
    [
        pytest.param("join", (5,), id="join-int"),
        pytest.param("join", (None,), id="join-null"),
        pytest.param("join", (["room"],), id="join-list"),
        pytest.param("join", ({"roomId": "room"},), id="join-object"),
        pytest.param("join", ("",), id="join-empty"),
        pytest.param("join", ("r" * 65,), id="join-65-chars"),
        pytest.param("join", ("a room",), id="join-space"),
        pytest.param("join", ("room/1",), id="join-slash"),
        pytest.param("join", ("rööm",), id="join-non-ascii"),
        pytest.param("join", (), id="join-no-argument"),
        pytest.param("join", ("room", "room"), id="join-two-arguments"),
        pytest.param("start_call", (7,), id="start-call-int"),
        pytest.param("start_call", ("r" * 65,), id="start-call-65-chars"),
        pytest.param("start_call", (), id="start-call-no-argument"),
        pytest.param("start_call", ("room", "room"), id="start-call-two-arguments"),
        pytest.param("webrtc_offer", ("room",), id="offer-not-an-object"),
        pytest.param("webrtc_offer", ({"type": "webrtc_offer", "roomId": "room"},), id="no-sdp"),
        pytest.param("webrtc_offer", (tutorial_offer("room", "v=0"),), id="sdp-a-string"),
        pytest.param("webrtc_offer", (tutorial_offer("room", ANSWER_SDP),), id="offer-of-answer"),
        pytest.param(
            "webrtc_offer", (tutorial_offer("room", {"type": "offer"}),), id="no-sdp-text"
        ),
        pytest.param(
            "webrtc_offer", (tutorial_offer("room", {"type": "offer", "sdp": 1}),), id="sdp-int"
        ),
        pytest.param("webrtc_offer", (tutorial_offer("room", LONG_SDP),), id="sdp-over-64k"),
        pytest.param("webrtc_offer", ({"type": "webrtc_offer", "sdp": OFFER_SDP},), id="no-room"),
        pytest.param("webrtc_offer", (tutorial_offer(""),), id="offer-empty-room"),
        pytest.param("webrtc_offer", (), id="offer-no-argument"),
        pytest.param("webrtc_offer", (tutorial_offer("room"), 1), id="offer-two-arguments"),
        pytest.param("webrtc_answer", (tutorial_answer("room", OFFER_SDP),), id="answer-of-offer"),
        pytest.param("webrtc_answer", ({"sdp": ANSWER_SDP, "roomId": 3},), id="answer-int-room"),
        pytest.param("webrtc_ice_candidate", (tutorial_candidate("room", "0"),), id="label-str"),
        pytest.param("webrtc_ice_candidate", (tutorial_candidate("room", 1.5),), id="label-float"),
        pytest.param("webrtc_ice_candidate", (tutorial_candidate("room", True),), id="label-bool"),
        pytest.param("webrtc_ice_candidate", (tutorial_candidate("room", -1),), id="label-neg"),
        pytest.param(
            "webrtc_ice_candidate", (tutorial_candidate("room", 0, 42),), id="candidate-int"
        ),
        pytest.param(
            "webrtc_ice_candidate", (tutorial_candidate("room", 0, None),), id="candidate-null"
        ),
        pytest.param(
            "webrtc_ice_candidate", ({"label": 0, "candidate": CANDIDATE},), id="candidate-no-room"
        ),
        pytest.param("webrtc_ice_candidate", (), id="candidate-no-argument"),
        pytest.param(
            "webrtc_ice_candidate",
            (tutorial_candidate("room"), tutorial_candidate("room")),
            id="candidate-two-arguments",
        ),
    ],
)
async def test_malformed_payloads_get_bad_request_and_change_nothing(
    signaller: SignallerThread, event: str, args: tuple[Any, ...]
) -> None:
    """Each malformed dialect-1 payload gets `error` `bad_request`; no relay, no room change."""
    async with connected(signaller.url, "a", "b") as (a, b):
        await pair(a, b, "room")
        counts = signaller.registry.counts()
        await a.emit(event, *args)
        error = await a.error()
        assert error["code"] == "bad_request"
        assert a.untaken() == []
        assert signaller.registry.counts() == counts
        assert sids(signaller, "room") == [a.sid, b.sid]
        assert signaller.registry.rooms_of(a.sid) == [tutorial_key("room")]
        # Marker through the same path: the next good relay is the first thing B receives.
        await a.emit("start_call", "room")
        assert await b.take() == [("start_call",)]
        assert b.events == [("room_joined", "room"), ("start_call",)]
        assert a.events == [("room_created", "room"), ("error", error)]


# -- rooms per connection, dialect clash, isolation ---------------------------------------------


async def test_one_connection_may_be_in_four_tutorial_rooms_not_five(
    signaller: SignallerThread,
) -> None:
    """A fifth dialect-1 room for one connection is refused with an `error`; four work."""
    async with connected(signaller.url, "a", "b") as (a, b):
        for index in range(4):
            await a.emit("join", f"room{index}")
        assert await a.take(4) == [("room_created", f"room{index}") for index in range(4)]
        await a.emit("join", "room4")
        error = await a.error()
        assert error["code"] not in ("bad_request", "not_in_room")
        assert signaller.registry.rooms_of(a.sid) == [tutorial_key(f"room{i}") for i in range(4)]
        assert sids(signaller, "room4") == []
        # All four rooms still relay.
        for index in range(4):
            await b.emit("join", f"room{index}")
            await b.emit("start_call", f"room{index}")
        assert await a.take(4) == [("start_call",)] * 4


async def test_a_tutorial_room_and_a_mesh_room_of_one_name_are_apart(
    signaller: SignallerThread,
) -> None:
    """The two dialects' rooms are kept apart: a dialect-1 `join` of a name a dialect-2 room
    holds creates a tutorial room of that name, and a dialect-2 `enter` of a tutorial room's
    name enters an ipymeet room; neither side hears of the other (tests/security/test_oracle.py
    is the attack this closes)."""
    async with connected(signaller.url, "mesh", "tutorial", "mesh2") as (mesh, tutorial, mesh2):
        assert (await mesh.call("enter", {"room": "shared"}))["ok"] is True
        await tutorial.emit("join", "shared")
        assert await tutorial.take() == [("room_created", "shared")]
        assert sids(signaller, "shared") == [tutorial.sid]
        assert [m.sid for m in signaller.registry.members("shared")] == [mesh.sid]
        answer = await mesh2.call("enter", {"room": "shared", "name": "m"})
        assert answer["ok"] is True
        assert [p["id"] for p in answer["peers"]] == [mesh.sid]
        # Markers: the mesh member heard only mesh2, the tutorial page nothing.
        assert [e[0] for e in await mesh.take()] == ["peer_joined"]
        await tutorial.emit("join", "marker")
        assert await tutorial.take() == [("room_created", "marker")]
        assert tutorial.untaken() == []


async def test_tutorial_relays_do_not_reach_into_a_mesh_room(
    signaller: SignallerThread,
) -> None:
    """A mesh member cannot broadcast the tutorial's events to its room: it is in no tutorial
    room of that name (`not_in_room`)."""
    async with connected(signaller.url, "a", "b") as (a, b):
        assert (await a.call("enter", {"room": "mesh"}))["ok"] is True
        assert (await b.call("enter", {"room": "mesh"}))["ok"] is True
        assert [e[0] for e in await a.take()] == ["peer_joined"]
        await a.emit("start_call", "mesh")
        assert (await a.error())["code"] == "not_in_room"
        # Marker: a's addressed signal reaches b; a start_call would have come before it.
        assert await a.call("signal", {"to": b.sid, "candidate": {"candidate": ""}}) == {"ok": True}
        assert [e[0] for e in await b.take()] == ["signal"]


async def test_two_rooms_in_parallel_never_cross(signaller: SignallerThread) -> None:
    """Two calls at once in two rooms: each pair gets exactly its own call, nothing of the other."""
    async with connected(signaller.url, "a1", "b1", "a2", "b2") as (a1, b1, a2, b2):
        await pair(a1, b1, "one")
        await pair(a2, b2, "two")
        # Interleave both calls' messages; each room's offer and candidate carry its own name.
        offers = {room: {"type": "offer", "sdp": f"v=0\r\ns={room}\r\n"} for room in ("one", "two")}
        for sender, room in ((b1, "one"), (b2, "two")):
            await sender.emit("start_call", room)
        for sender, room in ((a1, "one"), (a2, "two")):
            await sender.emit("webrtc_offer", tutorial_offer(room, offers[room]))
            await sender.emit("webrtc_ice_candidate", tutorial_candidate(room, 0, room))
        assert await a1.take() == [("start_call",)]
        assert await a2.take() == [("start_call",)]
        for receiver, room in ((b1, "one"), (b2, "two")):
            assert await receiver.take(2) == [
                ("webrtc_offer", offers[room]),
                ("webrtc_ice_candidate", tutorial_candidate(room, 0, room)),
            ]
        # Markers through every sender's path.
        for peer in (a1, b1, a2, b2):
            await peer.emit("join", f"marker-{peer.name}")
            assert await peer.take() == [("room_created", f"marker-{peer.name}")]
            assert peer.untaken() == []
        assert len(a1.events) == len(a2.events) == 3
        assert len(b1.events) == len(b2.events) == 4


async def test_the_server_still_serves_a_call_after_the_refusals(
    signaller: SignallerThread,
) -> None:
    """After strangers, malformed payloads and full rooms, a fresh pair still completes a call."""
    async with connected(signaller.url, "a", "b", "c") as (a, b, c):
        await tutorial_call(a, b, "busy")
        await c.emit("join", "busy")
        await c.emit("webrtc_offer", tutorial_offer("busy"))
        await c.emit("webrtc_offer", {"roomId": "busy"})
        await c.emit("join")
        assert [e[0] for e in await c.take(4)] == ["full_room", "error", "error", "error"]
    await assert_serves_a_call(signaller.url)
