"""A member that stops reading while others send to it is dropped once what waits for it passes
``Settings.max_backlog_bytes``; the server's memory stays bounded and the others carry on
(server/core/guard.py).

The stalled member is a raw client that never reads again after entering its room: a WebSocket
on a socket with a small receive buffer, or a long-polling session that never polls. It keeps
answering the heartbeat blind, so only the cap can end it. A sender in its room relays it ~60 KB
offers as fast as the rate limit allows, while an observer in the room checks what it hears.
On both engine paths and both transports.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import psutil
import pytest

from ipymeet.server import SignallerThread
from ipymeet.server.core.signaller import member_id

from ..support import MakeSignaller
from .helpers import (
    TIMEOUT,
    Polling,
    StalledWebSocket,
    assert_serves_a_call,
    connected,
    enter,
    ice_candidate,
    raw_websocket,
    until,
)

CAP = 512 * 1024
#: Offers to the stalled member: ~90 MB, far past the cap and past the memory bound below.
OFFERS = 1500
OFFER = {"type": "offer", "sdp": "v=0\r\n" + "a=x-padding\r\n" * 4900}  # ~60 KB
#: How much the test process (signaller, clients) may grow while ~90 MB go to the stalled member.
RSS_BOUND = 48 * 1024 * 1024
STALLED_KEY = "stalled-session-key-0123"
ROOM = "r"


@contextlib.asynccontextmanager
async def stalled_member(url: str, transport: str) -> AsyncIterator[tuple[str, Any]]:
    """A member of ROOM that reads nothing more once it is in (see the module docstring);
    yields its id and the client, answering pings blind every half second meanwhile."""
    async with aiohttp.ClientSession() as http:
        if transport == "websocket":
            client: Any = await StalledWebSocket().open(url)
            answer = await client.call("enter", {"room": ROOM, "session": STALLED_KEY})
            assert answer["ok"], answer

            def pong() -> None:
                client.pong()
        else:
            client = await Polling(http, url).open()
            body = "4" + "2" + "1" + json.dumps(["enter", {"room": ROOM, "session": STALLED_KEY}])
            assert await client.post(body) == 200

            def pong() -> None:
                pongs.add(asyncio.ensure_future(client.post("3")))

        pongs: set[asyncio.Future[Any]] = set()

        async def answer_pings() -> None:
            while True:
                with contextlib.suppress(ConnectionError, aiohttp.ClientError):
                    pong()
                await asyncio.sleep(0.5)

        pinger = asyncio.ensure_future(answer_pings())
        try:
            yield member_id("", STALLED_KEY), client
        finally:
            pinger.cancel()
            for pending in pongs:
                pending.cancel()
            if transport == "websocket":
                client.close()


async def rss_peak(samples: list[int], process: psutil.Process) -> None:
    while True:
        samples.append(process.memory_info().rss)
        await asyncio.sleep(0.02)


@pytest.mark.parametrize("transport", ["websocket", "polling"])
async def test_a_member_that_stops_reading_is_dropped_and_the_others_carry_on(
    engine_path: str,
    make_signaller: MakeSignaller,
    server_logs: list[logging.LogRecord],
    transport: str,
) -> None:
    signaller = make_signaller(max_peers=3, rate=2000, burst=2000, max_backlog_bytes=CAP)
    assert signaller.signaller.fast is (engine_path == "fast")
    process = psutil.Process()
    async with (
        connected(signaller.url, "observer") as (observer,),
        aiohttp.ClientSession() as http,
        stalled_member(signaller.url, transport) as (stalled_id, _),
    ):
        observer_id = (await enter(observer, ROOM, "observer"))["self"]
        sender = await raw_websocket(http, signaller.url)
        await sender.send_str("4" + "2" + "1" + json.dumps(["enter", {"room": ROOM}]))
        sender_id = await own_id(sender)
        assert await observer.take() == [("peer_joined", {"id": sender_id, "name": ""})]
        drained = asyncio.ensure_future(drain(sender))
        samples: list[int] = []
        before = process.memory_info().rss
        sampler = asyncio.ensure_future(rss_peak(samples, process))
        try:
            # Every 100th offer goes to the observer: the others' relays must all get through.
            for n in range(OFFERS):
                to = observer_id if n % 100 == 0 else stalled_id
                await sender.send_str(
                    "42" + json.dumps(["signal", {"to": to, "description": OFFER}])
                )
            await observer.wait_until(
                lambda: (
                    ("peer_left", {"id": stalled_id, "reason": "disconnected"}) in observer.events
                ),
                "the room to hear that the stalled member is gone",
            )
            marker = {"to": observer_id, "candidate": ice_candidate(1)}
            await sender.send_str("42" + json.dumps(["signal", marker]))
            await observer.wait_until(
                lambda: (
                    observer.events[-1][0] == "signal" and "candidate" in observer.events[-1][1]
                ),
                "the marker",
            )
        finally:
            sampler.cancel()
            drained.cancel()
        peak = max(samples, default=before) - before
        offers = [e for e in observer.events if e[0] == "signal" and "description" in e[1]]
        assert len(offers) == OFFERS // 100, "a relay to the observer was lost"
        assert all(e[1] == {"from": sender_id, "description": OFFER} for e in offers)
        assert ("peer_left", {"id": stalled_id, "reason": "disconnected"}) in observer.events
        assert peak < RSS_BOUND, f"the test process grew {peak >> 20} MB"
        assert stalled_id not in {m.id for m in signaller.registry.members(ROOM)}
        await sender.close()
    dropped = [r.getMessage() for r in server_logs if "max_backlog_bytes" in r.getMessage()]
    assert len(dropped) == 1, [r.getMessage() for r in server_logs]
    assert len(server_logs) == 1
    assert not server_logs[0].exc_info
    await assert_serves_a_call(signaller.url)


async def test_the_stalled_client_sees_its_connection_end(
    engine_path: str, make_signaller: MakeSignaller
) -> None:
    """Its side too: the socket it stopped reading is closed (a write fails), and a polling
    session is unknown to the server afterwards."""
    signaller = make_signaller(max_peers=3, rate=2000, burst=2000, max_backlog_bytes=CAP)
    async with connected(signaller.url, "sender") as (sender,):
        await enter(sender, ROOM)
        for transport in ("websocket", "polling"):
            async with stalled_member(signaller.url, transport) as (stalled_id, client):
                for _ in range(200):
                    await sender.emit("signal", {"to": stalled_id, "description": OFFER})
                await sender.wait_until(
                    lambda: (
                        ("peer_left", {"id": stalled_id, "reason": "disconnected"})
                        in sender.untaken()
                    ),
                    "the stalled member to be dropped",
                )
                await sender.take_through(
                    ("peer_left", {"id": stalled_id, "reason": "disconnected"})
                )
                if transport == "websocket":
                    await until(lambda: client.closed, "its socket to close")
                else:
                    assert await client.get() == "<400>"
                assert_nothing_held(signaller, stalled_id)


def assert_nothing_held(signaller: SignallerThread, member: str) -> None:
    assert member not in {m.id for m in signaller.registry.members(ROOM)}
    assert len(signaller.signaller.connections) == 1  # the sender's


async def own_id(ws: aiohttp.ClientWebSocketResponse) -> str:
    """The ``self`` of the ``enter`` answer (ack id 1) on a raw WebSocket."""
    while True:
        message = await ws.receive_str(timeout=TIMEOUT)
        if message.startswith("431"):
            answer = json.loads(message[3:])[0]
            assert answer["ok"], answer
            return str(answer["self"])


async def drain(ws: aiohttp.ClientWebSocketResponse) -> None:
    """Read (and answer pings) so that the sender is not a slow reader itself."""
    while True:
        message = await ws.receive()
        if message.type != aiohttp.WSMsgType.TEXT:
            return
        if message.data == "2":
            await ws.send_str("3")


async def test_a_member_that_reads_may_be_sent_far_more_than_the_cap(
    make_signaller: MakeSignaller, engine_path: str
) -> None:
    """The cap is on what waits, not on what is sent: ~6 MB, twelve times the cap, in bursts of
    four offers (~240 KB) that the member reads before the next."""
    signaller = make_signaller(max_peers=3, rate=2000, burst=2000, max_backlog_bytes=CAP)
    async with connected(signaller.url, "sender", "reader") as (sender, reader):
        await enter(sender, ROOM)
        reader_id = (await enter(reader, ROOM))["self"]
        for burst in range(25):
            for _ in range(4):
                await sender.emit("signal", {"to": reader_id, "description": OFFER})
            await reader.wait_count(4 * (burst + 1))
        assert reader.sio.connected
        assert [e[0] for e in reader.events] == ["signal"] * 100
