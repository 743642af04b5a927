"""Dialect 2, ipymeet rooms (docs/protocol.md), row by row: enter, signal, leave, errors, ordering.

Real ``socketio.AsyncClient``s on the WebSocket transport against a real signaller on a loopback
port; requests use acknowledgements (``client.call``) as the widget does, except where the test is
about a request sent without one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from ipymeet.server import SignallerThread

from ..support import MakeSignaller
from .helpers import (
    ANSWER_SDP,
    OFFER_SDP,
    Event,
    Peer,
    assert_serves_a_call,
    connected,
    enter,
    ice_candidate,
    until_registry,
)


def sids(signaller: SignallerThread, room: str) -> list[str]:
    return [member.sid for member in signaller.registry.members(room)]


async def marker(sender: Peer, receiver: Peer) -> list[Event]:
    """Signal ``receiver`` a marker; return what it received, untaken, before the marker.

    Anything ``sender``'s earlier requests made the server send ``receiver`` came before it.
    """
    message = {"to": receiver.sid, "candidate": ice_candidate(1)}
    assert await sender.call("signal", message) == {"ok": True}
    return await receiver.take_through(
        ("signal", {"from": sender.sid, "candidate": ice_candidate(1)})
    )


def refused(answer: Any, code: str) -> None:
    assert isinstance(answer, dict), answer
    assert answer["ok"] is False, answer
    assert answer["code"] == code, answer
    assert isinstance(answer["message"], str), answer
    assert answer["message"], answer


# -- enter --------------------------------------------------------------------------------------


async def test_enter_acks_its_shape_after_telling_the_members(
    make_signaller: MakeSignaller,
) -> None:
    """Ack `{ok, self, room, peers, capacity, ice_servers}`; members get `peer_joined` before it."""
    signaller = make_signaller(max_peers=3)
    log: list[str] = []
    async with connected(signaller.url, "a", "b", "c", log=log) as (a, b, c):
        assert await a.call("enter", {"room": "room", "name": "Ada"}) == {
            "ok": True,
            "self": a.sid,
            "room": "room",
            "peers": [],
            "capacity": 3,
            "ice_servers": [],
        }
        assert await b.call("enter", {"room": "room", "name": "Bob"}) == {
            "ok": True,
            "self": b.sid,
            "room": "room",
            "peers": [{"id": a.sid, "name": "Ada"}],
            "capacity": 3,
            "ice_servers": [],
        }
        assert await c.call("enter", {"room": "room"}) == {
            "ok": True,
            "self": c.sid,
            "room": "room",
            "peers": [{"id": a.sid, "name": "Ada"}, {"id": b.sid, "name": "Bob"}],
            "capacity": 3,
            "ice_servers": [],
        }
        assert a.events == [
            ("peer_joined", {"id": b.sid, "name": "Bob"}),
            ("peer_joined", {"id": c.sid, "name": ""}),
        ]
        assert b.events == [("peer_joined", {"id": c.sid, "name": ""})]
        assert c.events == []
        assert log == [
            "a:ack",
            "a:peer_joined",
            "b:ack",
            "a:peer_joined",
            "b:peer_joined",
            "c:ack",
        ]
        assert sids(signaller, "room") == [a.sid, b.sid, c.sid]


async def test_enter_hands_out_the_configured_ice_servers(make_signaller: MakeSignaller) -> None:
    """`ice_servers` in the ack is the configured list of RTCIceServer objects."""
    servers = (
        {"urls": "stun:stun.example.org:3478"},
        {"urls": ["turn:turn.example.org:3478"], "username": "u", "credential": "secret"},
    )
    signaller = make_signaller(ice_servers=servers)
    async with connected(signaller.url, "a") as (a,):
        assert (await enter(a))["ice_servers"] == [dict(server) for server in servers]


async def test_a_room_holds_max_peers_default_six(signaller: SignallerThread) -> None:
    """With the default settings a seventh `enter` gets `room_full`; nobody is told of it."""
    async with connected(signaller.url, "a", "b", "c", "d", "e", "f", "g") as peers:
        a, b, *others = peers
        assert (await enter(a))["capacity"] == 6
        for peer in (b, *others[:4]):
            await enter(peer)
        await a.take(5)
        await b.take(4)
        c = others[4]
        refused(await c.call("enter", {"room": "room", "name": "Cy"}), "room_full")
        assert sids(signaller, "room") == [p.sid for p in peers[:6]]
        assert await marker(b, a) == []
        assert [e[0] for e in a.events[:-1]] == ["peer_joined"] * 5
        # The refused client is in no room: it may enter another.
        assert (await enter(c, "other"))["peers"] == []


async def test_capacity_is_a_setting(make_signaller: MakeSignaller) -> None:
    """With `max_peers=3`, three enter and the fourth gets `room_full`."""
    signaller = make_signaller(max_peers=3)
    async with connected(signaller.url, "a", "b", "c", "d") as (a, b, c, d):
        answers = [await p.call("enter", {"room": "room"}) for p in (a, b, c, d)]
        assert [answer["ok"] for answer in answers] == [True, True, True, False]
        assert [answer.get("capacity") for answer in answers[:3]] == [3, 3, 3]
        refused(answers[3], "room_full")
        assert answers[3]["capacity"] == 3  # so the page can say how many the room holds
        assert sids(signaller, "room") == [a.sid, b.sid, c.sid]


async def test_a_second_enter_is_already_in_room(signaller: SignallerThread) -> None:
    """A connection is in one dialect-2 room: a second `enter`, same room or not, is refused."""
    async with connected(signaller.url, "a") as (a,):
        await enter(a, "one")
        refused(await a.call("enter", {"room": "one"}), "already_in_room")
        refused(await a.call("enter", {"room": "two"}), "already_in_room")
        assert signaller.registry.rooms_of(a.sid) == ["one"]
        assert sids(signaller, "two") == []


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(({"room": 5},), id="room-int"),
        pytest.param(({"room": None},), id="room-null"),
        pytest.param(({"room": ["room"]},), id="room-list"),
        pytest.param(({"room": ""},), id="room-empty"),
        pytest.param(({"room": "r" * 65},), id="room-65-chars"),
        pytest.param(({"room": "a room"},), id="room-space"),
        pytest.param(({"room": "room\n"},), id="room-newline"),
        pytest.param(({},), id="no-room"),
        pytest.param(({"room": "room", "name": 5},), id="name-int"),
        pytest.param(({"room": "room", "name": ["Ada"]},), id="name-list"),
        pytest.param(({"room": "room", "name": "n" * 65},), id="name-65-chars"),
        pytest.param(({"room": "room", "token": 5},), id="token-int"),
        pytest.param(("room",), id="not-an-object"),
        pytest.param((), id="no-argument"),
        pytest.param(({"room": "room"}, {"room": "room"}), id="two-arguments"),
    ],
)
async def test_a_malformed_enter_is_bad_request_and_changes_nothing(
    signaller: SignallerThread, args: tuple[Any, ...]
) -> None:
    """Each malformed `enter` answers `bad_request`; no room changes and a good one still works."""
    async with connected(signaller.url, "a", "b") as (a, b):
        await enter(a)
        refused(await b.call("enter", *args), "bad_request")
        assert signaller.registry.counts() == {"rooms": 1, "members": 1}
        assert sids(signaller, "room") == [a.sid]
        assert (await enter(b))["peers"] == [{"id": a.sid, "name": ""}]
        assert a.events == [("peer_joined", {"id": b.sid, "name": ""})]


async def test_names_are_stripped_of_control_characters(make_signaller: MakeSignaller) -> None:
    """Control and format characters are removed from a name, which is then accepted."""
    signaller = make_signaller(max_peers=4)
    async with connected(signaller.url, "a", "b", "c", "d") as (a, b, c, d):
        await enter(a, name="\x00Ada\x07 Love\u200blace\n")
        answer = await enter(b, name="\x1b" * 10 + "n" * 64)  # 64 once cleaned
        assert answer["peers"] == [{"id": a.sid, "name": "Ada Lovelace"}]
        await enter(c, name=None)
        await enter(d, name="")
        assert a.events == [
            ("peer_joined", {"id": b.sid, "name": "n" * 64}),
            ("peer_joined", {"id": c.sid, "name": ""}),
            ("peer_joined", {"id": d.sid, "name": ""}),
        ]
        assert [m.name for m in signaller.registry.members("room")] == [
            "Ada Lovelace",
            "n" * 64,
            "",
            "",
        ]


# -- signal -------------------------------------------------------------------------------------


async def test_signals_reach_only_their_target(make_signaller: MakeSignaller) -> None:
    """`signal` goes to `to` only, as `{from, description}` or `{from, candidate}`; ack `{ok}`."""
    signaller = make_signaller(max_peers=3)
    async with connected(signaller.url, "a", "b", "c") as (a, b, c):
        for peer in (a, b, c):
            await enter(peer)
        await a.take(2)
        await b.take(1)
        candidate = ice_candidate(40000)
        assert await c.call("signal", {"to": a.sid, "description": OFFER_SDP}) == {"ok": True}
        assert await c.call("signal", {"to": a.sid, "candidate": candidate}) == {"ok": True}
        assert await a.call("signal", {"to": c.sid, "description": ANSWER_SDP}) == {"ok": True}
        # No usernameFragment, null sdpMid: relayed as the browser sent it.
        bare = {"candidate": candidate["candidate"], "sdpMid": None, "sdpMLineIndex": 0}
        assert await a.call("signal", {"to": c.sid, "candidate": bare}) == {"ok": True}
        assert await a.take(2) == [
            ("signal", {"from": c.sid, "description": OFFER_SDP}),
            ("signal", {"from": c.sid, "candidate": candidate}),
        ]
        assert await c.take(2) == [
            ("signal", {"from": a.sid, "description": ANSWER_SDP}),
            ("signal", {"from": a.sid, "candidate": bare}),
        ]
        # B, the third member, saw none of it: markers from both senders come first.
        assert await marker(a, b) == []
        assert await marker(c, b) == []
        assert b.events == [
            ("peer_joined", {"id": c.sid, "name": ""}),
            ("signal", {"from": a.sid, "candidate": ice_candidate(1)}),
            ("signal", {"from": c.sid, "candidate": ice_candidate(1)}),
        ]
        assert a.untaken() == []
        assert c.untaken() == []


BIG_SDP = {"type": "offer", "sdp": "v=0\r\n" + "a=x\r\n" * (64 * 1024 // 5 + 1)}


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda to: {"to": to}, id="neither"),
        pytest.param(
            lambda to: {"to": to, "description": OFFER_SDP, "candidate": ice_candidate()},
            id="both",
        ),
        pytest.param(lambda to: {"to": to, "candidate": None}, id="null-candidate"),
        pytest.param(lambda to: {"description": OFFER_SDP}, id="no-to"),
        pytest.param(lambda to: {"to": 5, "description": OFFER_SDP}, id="to-int"),
        pytest.param(lambda to: {"to": "", "description": OFFER_SDP}, id="to-empty"),
        pytest.param(lambda to: {"to": to, "description": "v=0"}, id="description-a-string"),
        pytest.param(
            lambda to: {"to": to, "description": {"type": "rollback", "sdp": ""}},
            id="description-rollback",
        ),
        pytest.param(
            lambda to: {"to": to, "description": {"type": "offer", "sdp": 5}}, id="sdp-int"
        ),
        pytest.param(lambda to: {"to": to, "description": BIG_SDP}, id="sdp-over-64k"),
        pytest.param(lambda to: {"to": to, "candidate": "candidate:1"}, id="candidate-a-string"),
        pytest.param(
            lambda to: {"to": to, "candidate": {**ice_candidate(), "candidate": 5}},
            id="candidate-text-int",
        ),
        pytest.param(
            lambda to: {"to": to, "candidate": {**ice_candidate(), "sdpMLineIndex": "0"}},
            id="mline-index-string",
        ),
        pytest.param(lambda to: to, id="not-an-object"),
    ],
)
async def test_a_malformed_signal_is_bad_request_and_relays_nothing(
    signaller: SignallerThread, make: Callable[[str], Any]
) -> None:
    """Malformed signals, incl. both or neither of description/candidate, get `bad_request`."""
    async with connected(signaller.url, "a", "b") as (a, b):
        await enter(a)
        await enter(b)
        refused(await b.call("signal", make(a.sid)), "bad_request")
        assert await marker(b, a) == [("peer_joined", {"id": b.sid, "name": ""})]
        assert a.events == [
            ("peer_joined", {"id": b.sid, "name": ""}),
            ("signal", {"from": b.sid, "candidate": ice_candidate(1)}),
        ]


async def test_signals_outside_the_senders_room_are_not_in_room(
    signaller: SignallerThread,
) -> None:
    """`not_in_room` for a target in another room, gone, unknown, the sender itself, or no room."""
    async with connected(signaller.url, "a", "b", "other", "gone", "roomless") as peers:
        a, b, other, gone, roomless = peers
        await enter(a)
        await enter(b)
        await enter(other, "other-room")
        gone_sid = gone.sid
        await gone.close()
        for to in (other.sid, gone_sid, "no-such-peer", a.sid):
            refused(await a.call("signal", {"to": to, "description": OFFER_SDP}), "not_in_room")
        refused(
            await roomless.call("signal", {"to": a.sid, "candidate": ice_candidate()}),
            "not_in_room",
        )
        refused(
            await other.call("signal", {"to": a.sid, "candidate": ice_candidate()}), "not_in_room"
        )
        # Nothing reached anyone: markers through the senders' paths come first.
        assert await marker(a, b) == []
        assert await marker(b, a) == [("peer_joined", {"id": b.sid, "name": ""})]
        assert await other.call("leave", {}) == {"ok": True}
        assert other.events == []
        assert roomless.events == []
        assert a.events == [
            ("peer_joined", {"id": b.sid, "name": ""}),
            ("signal", {"from": b.sid, "candidate": ice_candidate(1)}),
        ]


async def test_signals_from_one_sender_arrive_in_order(make_signaller: MakeSignaller) -> None:
    """200 signals sent back to back without waiting arrive at the target in the order sent."""
    # A burst large enough that this test is about ordering, not the rate limit.
    signaller = make_signaller(burst=1000)
    async with connected(signaller.url, "a", "b") as (a, b):
        await enter(a)
        await enter(b)
        await a.take()
        sent: list[dict[str, Any]] = []
        for index in range(200):
            if index % 10 == 0:
                sent.append({"description": {"type": "offer", "sdp": f"v=0\r\ns={index}\r\n"}})
            else:
                sent.append({"candidate": ice_candidate(40000 + index)})
            await b.emit("signal", {"to": a.sid, **sent[-1]})
        received = await a.take(200)
        assert received == [("signal", {"from": b.sid, **message}) for message in sent]
        assert await marker(b, a) == []
        assert b.events == []  # no refusals


# -- leave, disconnect ----------------------------------------------------------------------------


async def test_leave_tells_the_others_and_allows_entering_again(
    make_signaller: MakeSignaller,
) -> None:
    """`leave` acks ok and the others get `peer_left {id}`; leaving twice is `not_in_room`."""
    signaller = make_signaller(max_peers=3)
    async with connected(signaller.url, "a", "b", "c") as (a, b, c):
        for peer in (a, b, c):
            await enter(peer, name=peer.name)
        assert await b.call("leave", {}) == {"ok": True}
        assert await a.take(3) == [
            ("peer_joined", {"id": b.sid, "name": "b"}),
            ("peer_joined", {"id": c.sid, "name": "c"}),
            ("peer_left", {"id": b.sid, "reason": "left"}),
        ]
        assert await c.take() == [("peer_left", {"id": b.sid, "reason": "left"})]
        assert sids(signaller, "room") == [a.sid, c.sid]
        refused(await b.call("leave", {}), "not_in_room")
        refused(await b.call("signal", {"to": a.sid, "description": OFFER_SDP}), "not_in_room")
        # The leaver may enter again; the room sees it arrive as a newcomer.
        answer = await enter(b, name="b again")
        assert answer["peers"] == [{"id": a.sid, "name": "a"}, {"id": c.sid, "name": "c"}]
        assert await a.take() == [("peer_joined", {"id": b.sid, "name": "b again"})]
        assert await c.take() == [("peer_joined", {"id": b.sid, "name": "b again"})]
        assert b.events == [("peer_joined", {"id": c.sid, "name": "c"})]
        # `leave` with no payload is fine too; a non-object one is not.
        refused(await a.call("leave", "room"), "bad_request")
        assert await a.call("leave") == {"ok": True}
        assert sids(signaller, "room") == [c.sid, b.sid]


async def test_disconnect_tells_the_others_and_empties_the_registry(
    make_signaller: MakeSignaller,
) -> None:
    """A disconnect sends `peer_left {id}` to the rest; once all are gone no room remains."""
    signaller = make_signaller(max_peers=3)
    async with connected(signaller.url, "a", "b", "c") as (a, b, c):
        for peer in (a, b, c):
            await enter(peer)
        await a.take(2)
        await b.take(1)
        c_sid, b_sid = c.sid, b.sid
        await c.close()
        assert await a.take() == [("peer_left", {"id": c_sid, "reason": "disconnected"})]
        assert await b.take() == [("peer_left", {"id": c_sid, "reason": "disconnected"})]
        await b.close()
        assert await a.take() == [("peer_left", {"id": b_sid, "reason": "disconnected"})]
        assert sids(signaller, "room") == [a.sid]
        await a.close()
        await until_registry(
            signaller, lambda registry: registry.counts() == {"rooms": 0, "members": 0}, "empty"
        )
        assert signaller.registry.members("room") == []


# -- errors without an ack, unknown events ------------------------------------------------------


async def test_a_refused_request_without_ack_gets_an_error_event(
    make_signaller: MakeSignaller,
) -> None:
    """Requests sent without an acknowledgement are refused with an `error` `{code, message}`."""
    signaller = make_signaller(max_peers=2)
    async with connected(signaller.url, "a", "b", "c") as (a, b, c):
        await c.emit("enter", {"room": ""})
        assert (await c.error())["code"] == "bad_request"
        await a.emit("enter", {"room": "room"})  # accepted: no answer at all
        await enter(b)
        await c.emit("enter", {"room": "room"})
        assert (await c.error())["code"] == "room_full"
        await c.emit("leave", {})
        assert (await c.error())["code"] == "not_in_room"
        await c.emit("signal", {"to": a.sid, "description": OFFER_SDP})
        assert (await c.error())["code"] == "not_in_room"
        await b.emit("signal", {"to": a.sid})
        assert (await b.error())["code"] == "bad_request"
        await b.emit("enter", {"room": "room"})
        assert (await b.error())["code"] == "already_in_room"
        await b.emit("signal", {"to": a.sid, "description": OFFER_SDP})  # accepted: no answer
        assert await a.take(2) == [
            ("peer_joined", {"id": b.sid, "name": ""}),
            ("signal", {"from": b.sid, "description": OFFER_SDP}),
        ]
        assert await marker(b, a) == []
        assert a.untaken() == []
        assert b.untaken() == []
        assert c.untaken() == []
        assert sids(signaller, "room") == [a.sid, b.sid]


async def test_unknown_events_get_unknown_event(signaller: SignallerThread) -> None:
    """An event name neither dialect knows gets `error` `{code: "unknown_event"}`."""
    async with connected(signaller.url, "a") as (a,):
        await a.emit("hello", {"room": "room"})
        assert (await a.error())["code"] == "unknown_event"
        await a.emit("webrtc_offers")
        assert (await a.error())["code"] == "unknown_event"
        assert signaller.registry.counts() == {"rooms": 0, "members": 0}
    await assert_serves_a_call(signaller.url)
