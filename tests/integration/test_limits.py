"""The limits the signaller enforces (docs/protocol.md, "Limits"), and robustness against bad input.

Every test ends by checking that a fresh pair can still join a room and relay a whole call.
"""

from __future__ import annotations

import asyncio
import contextlib
import json

import aiohttp
import pytest
import socketio

from ipymeet.server import SignallerThread
from ipymeet.server.core.registry import tutorial_key

from ..support import MakeSignaller
from .helpers import (
    OFFER_SDP,
    TIMEOUT,
    assert_serves_a_call,
    closed_by_server,
    connected,
    ice_candidate,
    raw_websocket,
    tutorial_call,
    tutorial_candidate,
    tutorial_offer,
    until_registry,
)


def sids(signaller: SignallerThread, room: str) -> list[str]:
    return [member.sid for member in signaller.registry.members(room)]


# -- message size -------------------------------------------------------------------------------


async def test_a_message_over_256_kib_drops_only_its_sender(signaller: SignallerThread) -> None:
    """A 300 KiB message closes its sender's connection; the server keeps relaying for others."""
    async with connected(signaller.url, "big", "partner", "a", "b") as (big, partner, a, b):
        await tutorial_call(a, b, "steady")
        await big.emit("join", "big-room")
        await partner.emit("join", "big-room")
        await big.take()
        await partner.take()
        big_sid = big.sid
        huge = {"type": "offer", "sdp": "v=0\r\n" + "a=x\r\n" * (300 * 1024 // 5)}
        await big.emit("webrtc_offer", tutorial_offer("big-room", huge))
        await big.wait_until(big.disconnected.is_set, "the server to close the connection")
        # The partner hears that the sender left, and never gets the oversized offer.
        (event,) = await partner.take()
        assert event[0] == "peer_left"
        assert event[1]["id"] == big_sid
        assert sids(signaller, tutorial_key("big-room")) == [partner.sid]
        # The established call carries on, both ways.
        await a.emit("webrtc_ice_candidate", tutorial_candidate("steady", 2))
        assert await b.take() == [("webrtc_ice_candidate", tutorial_candidate("steady", 2))]
        await b.emit("start_call", "steady")
        assert await a.take() == [("start_call",)]
        # A large message under the limit is an ordinary bad request: refused, connection kept.
        await partner.emit(
            "webrtc_offer", tutorial_offer("big-room", {**huge, "sdp": "x" * 200_000})
        )
        assert (await partner.error())["code"] == "bad_request"
        assert partner.sio.connected
    await assert_serves_a_call(signaller.url)


# -- rate limit ---------------------------------------------------------------------------------


async def test_a_flooding_client_is_rate_limited_then_disconnected(
    make_signaller: MakeSignaller,
) -> None:
    """400 events at once: `rate_limited` errors, then a disconnect; another room keeps relaying."""
    # Small numbers make it quick and deterministic: 20 events pass, then every one is refused.
    signaller = make_signaller(rate=2, burst=20)
    async with connected(signaller.url, "flooder", "a", "b") as (flooder, a, b):
        await flooder.emit("join", "flood")  # alone in the room: accepted start_calls relay nowhere
        assert await flooder.take() == [("room_created", "flood")]

        async def flood() -> None:
            with contextlib.suppress(socketio.exceptions.BadNamespaceError):
                for _ in range(400):
                    if not flooder.sio.connected:
                        break
                    await flooder.emit("start_call", "flood")

        await asyncio.gather(flood(), tutorial_call(a, b, "steady"))
        await flooder.wait_until(flooder.disconnected.is_set, "the flooder to be disconnected")
        # The client runs each message's handler as a task of its own but its disconnect at
        # once, so the errors that came before the disconnect may be recorded after it.
        await flooder.wait_until(
            lambda: bool(flooder.untaken()), "the flooder to be told it is rate limited"
        )
        errors = flooder.untaken()
        assert {event[0] for event in errors} == {"error"}
        assert {event[1]["code"] for event in errors} == {"rate_limited"}
        await until_registry(signaller, lambda r: r.members("flood") == [], "the flood room to go")
        # The well-behaved pair, untouched, keeps relaying.
        await b.emit("webrtc_ice_candidate", tutorial_candidate("steady", 3))
        assert await a.take() == [("webrtc_ice_candidate", tutorial_candidate("steady", 3))]
        assert a.untaken() == []
        assert b.untaken() == []
    await assert_serves_a_call(signaller.url)


async def test_a_rate_limited_request_with_ack_is_answered_rate_limited(
    make_signaller: MakeSignaller,
) -> None:
    """Past the burst, a dialect-2 request's ack is `{ok: false, code: "rate_limited"}`."""
    # A burst of 4 (what the closing check's tutorial call needs), and next to no refill.
    signaller = make_signaller(rate=0.01, burst=4)
    async with connected(signaller.url, "a", "b") as (a, b):
        assert (await a.call("enter", {"room": "room"}))["ok"] is True
        assert (await b.call("enter", {"room": "room"}))["ok"] is True
        for port in (1, 2, 3):
            assert await b.call("signal", {"to": a.sid, "candidate": ice_candidate(port)}) == {
                "ok": True
            }
        answer = await b.call("signal", {"to": a.sid, "candidate": ice_candidate(4)})
        assert answer["ok"] is False, answer
        assert answer["code"] == "rate_limited", answer
        # A's `leave` is queued behind anything the refused signal could have sent it.
        assert await a.call("leave", {}) == {"ok": True}
        assert a.events == [
            ("peer_joined", {"id": b.sid, "name": ""}),
            *[("signal", {"from": b.sid, "candidate": ice_candidate(p)}) for p in (1, 2, 3)],
        ]
        assert b.sio.connected  # one refusal is not a flood
    await assert_serves_a_call(signaller.url)


# -- robustness ---------------------------------------------------------------------------------


GARBAGE_FRAMES: list[str | bytes] = [
    "42[",  # truncated JSON
    "42" + "[" * 5000 + "]" * 5000,  # nesting deeper than the JSON decoder's recursion limit
    '42["join",' + "1" * 5000 + "]",  # an integer too long to parse
    "42[]",  # an event without a name
    "42{}",  # an event that is not an array
    "42[5]",  # an event whose name is not a string
    '451-["join",{"_placeholder":true,"num":0}]',  # a binary event whose attachment never comes
    "9xyz",  # an unknown Engine.IO packet type
    b"\x00\x01\x02",  # a binary frame out of the blue
    '42/nowhere,["join","x"]',  # a namespace never connected
]


async def test_malformed_packets_do_not_break_the_server(signaller: SignallerThread) -> None:
    """Raw Socket.IO / Engine.IO garbage on a WebSocket closes it (the first bad packet does,
    test_malformed.py has each kind) and leaves the server serving calls."""
    async with aiohttp.ClientSession() as http:
        ws = await raw_websocket(http, signaller.url)
        with contextlib.suppress(ConnectionError):  # closed under our feet: the rest goes nowhere
            for frame in GARBAGE_FRAMES:
                if isinstance(frame, bytes):
                    await ws.send_bytes(frame)
                else:
                    await ws.send_str(frame)
        assert await closed_by_server(ws)
        await assert_serves_a_call(signaller.url, "after-garbage")
    assert signaller.running


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(b"room", id="bytes"),
        pytest.param({"roomId": "room", "sdp": {"type": "offer", "sdp": b"v=0"}}, id="bytes-sdp"),
        pytest.param(float("nan"), id="nan"),
        pytest.param(10**30, id="big-int"),
        pytest.param({"a": [[[[[[[[[[{}]]]]]]]]]]}, id="nested"),
        pytest.param("\ud800", id="lone-surrogate"),
    ],
)
async def test_odd_payloads_are_refused_and_the_server_carries_on(
    signaller: SignallerThread, payload: object
) -> None:
    """Binary data, NaN, huge numbers, nesting, surrogates: `bad_request`; the server goes on."""
    async with connected(signaller.url, "a") as (a,):
        events = ("join", "start_call", "webrtc_offer", "webrtc_ice_candidate", "enter", "signal")
        for event in events:
            await a.emit(event, payload)
            assert (await a.error())["code"] == "bad_request", event
        assert signaller.registry.counts() == {"rooms": 0, "members": 0}
    await assert_serves_a_call(signaller.url)


async def test_a_client_sent_disconnect_event_leaves_no_room(signaller: SignallerThread) -> None:
    """An *event* named `disconnect` (not a real one) must not take its sender out of its rooms."""
    async with connected(signaller.url, "a", "b", "c", "d") as (a, b, c, d):
        await tutorial_call(a, b, "tutorial")
        assert (await c.call("enter", {"room": "mesh"}))["ok"] is True
        assert (await d.call("enter", {"room": "mesh"}))["ok"] is True
        await c.take()
        for spoofer in (a, d):
            await spoofer.emit("disconnect")
        # Each is still connected, so it must still be a member and still be served.
        await a.emit("start_call", "tutorial")
        assert await b.take() == [("start_call",)], "the tutorial partner was told A left"
        assert await d.call("signal", {"to": c.sid, "description": OFFER_SDP}) == {"ok": True}
        assert await c.take() == [("signal", {"from": d.sid, "description": OFFER_SDP})]
        assert sids(signaller, tutorial_key("tutorial")) == [a.sid, b.sid]
        assert sids(signaller, "mesh") == [c.sid, d.sid]
    await assert_serves_a_call(signaller.url)


async def test_a_client_sent_connect_event_keeps_the_dialect_2_room(
    signaller: SignallerThread,
) -> None:
    """An *event* named `connect` must not let its sender be in two dialect-2 rooms."""
    async with connected(signaller.url, "a") as (a,):
        assert (await a.call("enter", {"room": "one"}))["ok"] is True
        await a.emit("connect", {})
        answer = await a.call("enter", {"room": "two"})
        assert signaller.registry.rooms_of(a.sid) == ["one"], "now in two dialect-2 rooms"
        assert answer["ok"] is False, answer
        assert answer["code"] == "already_in_room", answer
    await assert_serves_a_call(signaller.url)


async def test_a_client_sent_connect_event_keeps_the_rate_limit(
    make_signaller: MakeSignaller,
) -> None:
    """An *event* named `connect` must not refill its sender's token bucket."""
    signaller = make_signaller(rate=0.01, burst=4)  # no refill worth counting during the test
    async with connected(signaller.url, "a") as (a,):
        for _ in range(4):
            assert (await a.call("leave", {}))["code"] == "not_in_room"
        assert (await a.call("leave", {}))["code"] == "rate_limited"
        await a.emit("connect", {})
        assert (await a.call("leave", {}))["code"] == "rate_limited", "the bucket was refilled"
    await assert_serves_a_call(signaller.url)


async def test_an_event_named_star_is_an_unknown_event_of_its_sender(
    signaller: SignallerThread,
) -> None:
    """Found by fuzzing: for an event named `*` python-socketio called the catch-all handler
    without the event name, so the first argument was taken for the sender's sid: naming another
    socket's sid sent *it* an error (and spent its rate limit); no argument made the handler raise.
    """
    async with connected(signaller.url, "a", "victim") as (a, victim):
        for args in ((victim.sid,), (victim.sid, "x"), (), ({"x": 1},)):
            await a.emit("*", *args)
            assert await a.error() == {
                "code": "unknown_event",
                "message": "unknown event '*'",
                "event": "*",
            }, args
        # Nothing reached the victim: the answer to its own request is the first thing it gets.
        await victim.emit("marker")
        assert (await victim.error())["event"] == "marker"
    await assert_serves_a_call(signaller.url)


async def test_a_frame_with_an_unhashable_format_is_a_bad_request(
    signaller: SignallerThread,
) -> None:
    """Found by fuzzing: a list as a frame chunk's format made the handler raise."""
    async with connected(signaller.url, "a") as (a,):
        for kind in (["png"], {"png": 1}):
            meta = {"id": "x", "format": kind, "index": 0, "count": 1, "width": 1, "height": 1}
            await a.emit("frame", meta, b"\x89PNG")
            assert (await a.error())["code"] == "bad_request", kind


async def test_entering_the_name_of_ones_own_tutorial_room_takes_nothing_over(
    signaller: SignallerThread,
) -> None:
    """Found by fuzzing: a connection in a tutorial room that entered it through dialect 2 (no
    session key, so its id is its sid) was taken for its own stale self: taken out of the room,
    disconnected, and answered `ok: true`. The dialects' rooms are now apart: it enters the
    ipymeet room of that name and stays in its tutorial room, connected."""
    async with connected(signaller.url, "a") as (a,):
        await a.emit("join", "mine")
        assert await a.take() == [("room_created", "mine")]
        answer = await a.call("enter", {"room": "mine"})
        assert answer["ok"] is True
        assert sids(signaller, "mine") == [a.sid]
        assert signaller.registry.dialect("mine") == 2
        assert signaller.registry.dialect(tutorial_key("mine")) == 1
        assert [m.sid for m in signaller.registry.members(tutorial_key("mine"))] == [a.sid]
        await a.emit("start_call", "mine")  # still a member, still connected: relayed to nobody
        await a.emit("marker")
        assert (await a.error())["event"] == "marker"
        assert a.sio.connected
    await assert_serves_a_call(signaller.url)


# -- CORS ---------------------------------------------------------------------------------------


async def _handshake(url: str, origin: str) -> bool:
    """Whether a Socket.IO connection with this ``Origin`` header is accepted."""
    # Our own HTTP session, closed here: a refused client would leave its own one open.
    async with aiohttp.ClientSession() as http:
        client = socketio.AsyncClient(reconnection=False, http_session=http)
        try:
            await client.connect(
                url, headers={"Origin": origin}, transports=["websocket"], wait_timeout=TIMEOUT
            )
        except socketio.exceptions.ConnectionError:
            return False
        finally:
            await client.shutdown()
    return True


@pytest.mark.parametrize(
    ("origin", "accepted"),
    [
        ("http://evil.example", False),
        ("https://evil.example", False),
        ("http://127.0.0.1.evil.example", False),
        ("http://localhost.evil.example", False),
        ("null", False),
        ("https://lab.example.org", False),  # not configured on this signaller
        ("http://127.0.0.1:8888", True),
        ("http://localhost:1234", True),
        ("http://[::1]:8888", True),
    ],
)
async def test_origins_on_a_default_signaller(
    signaller: SignallerThread, origin: str, accepted: bool
) -> None:
    """Loopback pages may connect; any other browser origin is refused at the handshake."""
    assert await _handshake(signaller.url, origin) is accepted
    assert signaller.registry.counts() == {"rooms": 0, "members": 0}


async def _polling_handshake(url: str, origin: str) -> bool:
    """Whether an Engine.IO long-polling handshake with this ``Origin`` header is accepted.

    Done by hand so the accepted session can be closed at once with a CLOSE packet ("1"):
    a polling AsyncClient's disconnect waits out its pending long poll (about 30 s).
    """
    endpoint = f"{url}/socket.io/?EIO=4&transport=polling"
    headers = {"Origin": origin}
    async with aiohttp.ClientSession() as http:
        async with http.get(endpoint, headers=headers) as response:
            if response.status != 200:
                return False
            opened = await response.text()
        assert opened.startswith("0{"), opened
        sid = json.loads(opened[1:])["sid"]
        async with http.post(f"{endpoint}&sid={sid}", data="1", headers=headers) as response:
            assert response.status == 200
        # A poll after the close finds the session gone, and the server forgets it at once
        # (otherwise its shutdown waits a second for the closed session to be swept).
        async with http.get(f"{endpoint}&sid={sid}", headers=headers) as response:
            assert response.status == 400
    return True


async def test_a_refused_origin_cannot_use_long_polling_either(signaller: SignallerThread) -> None:
    """The Origin check is not a WebSocket-only check: long polling refuses it too."""
    assert await _polling_handshake(signaller.url, "http://evil.example") is False
    assert await _polling_handshake(signaller.url, "http://localhost:1234") is True
    await assert_serves_a_call(signaller.url)


async def test_configured_origins_are_accepted(make_signaller: MakeSignaller) -> None:
    """`allowed_origins` adds exactly the origins listed, scheme and port included."""
    signaller = make_signaller(allowed_origins=("https://lab.example.org",))
    assert await _handshake(signaller.url, "https://lab.example.org") is True
    assert await _handshake(signaller.url, "http://lab.example.org") is False
    assert await _handshake(signaller.url, "https://lab.example.org:8443") is False
    assert await _handshake(signaller.url, "https://evil.example") is False
    assert await _handshake(signaller.url, "http://localhost:1234") is True
    await assert_serves_a_call(signaller.url)


async def _own_origin_accepted(url: str, host: str, origin: str) -> bool:
    """Whether a WebSocket handshake for ``Host: host`` from ``origin`` is accepted."""
    endpoint = url.replace("http", "ws", 1) + "/socket.io/?EIO=4&transport=websocket"
    async with aiohttp.ClientSession() as http:
        try:
            ws = await http.ws_connect(
                endpoint, headers={"Host": host, "Origin": origin}, ssl=False
            )
        except aiohttp.WSServerHandshakeError:
            return False
        await ws.close()
    return True


@pytest.mark.parametrize("tls", [None, "self-signed"], ids=["http", "https"])
async def test_a_page_of_the_signallers_own_origin_is_accepted(
    make_signaller: MakeSignaller, tls: str | None
) -> None:
    """Its own page on a name it is configured to answer to (the invite link's host): accepted,
    with the scheme it is served with, on every python-engineio (older ones give no environ).
    The same page on a name it was not told of is refused at Socket.IO's connect
    (tests/security/test_hosts.py)."""
    signaller = make_signaller(tls=tls, allowed_hosts=("lab.example",))
    host = f"lab.example:{signaller.port}"
    own, other = ("https", "http") if tls else ("http", "https")
    assert await _own_origin_accepted(signaller.url, host, f"{own}://{host}") is True
    assert await _own_origin_accepted(signaller.url, host, f"{other}://{host}") is False
    assert await _own_origin_accepted(signaller.url, host, f"{own}://evil.example") is False


def test_the_default_limits_are_the_protocols(signaller: SignallerThread) -> None:
    """The running server's defaults: SDP 64 KiB, message 256 KiB, 50/s burst 200, 4 rooms."""
    settings = signaller.signaller.settings
    assert signaller.signaller.sio.eio.max_http_buffer_size == 256 * 1024
    assert settings.max_sdp_bytes == 64 * 1024
    assert (settings.rate, settings.burst, settings.max_tutorial_rooms) == (50.0, 200, 4)
