"""Recording Socket.IO clients for the signalling conformance tests (PROTOCOL.md).

Every client is a real ``socketio.AsyncClient`` on the WebSocket transport, talking to a real
signaller on a loopback port. A :class:`Peer` records, in arrival order, every event the server
sends it, so a test can assert the whole sequence. Waiting is always on a condition with a
timeout, never a fixed sleep. To prove that something did *not* happen, a test sends a later
marker through the same path and waits for the marker: the server handles one connection's
events in order, so anything not seen before the marker was never sent.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import socketio

from ipymeet.server import Registry, SignallerThread

#: How long any single wait may take before the test fails (loopback answers in milliseconds).
TIMEOUT = 5.0

Event = tuple[Any, ...]  # (event name, *arguments) as the client received it


class Peer:
    """A real AsyncClient that records every server event, in order, as ``(name, *args)``.

    ``log``, when given, is shared between peers: each arrival is appended as ``"name:event"``
    (``"name:ack"`` for answers to :meth:`call`), so a test can check the order across clients.
    """

    def __init__(self, name: str, log: list[str] | None = None) -> None:
        self.name = name
        self.log = log
        self.sio = socketio.AsyncClient(reconnection=False)
        self.events: list[Event] = []
        self.disconnected = asyncio.Event()
        self._changed = asyncio.Event()
        self._seen = 0  # cursor for take()
        # Synchronous handlers: each runs to completion in arrival order, so nothing reorders.
        self.sio.on("*", self._record)
        self.sio.on("disconnect", self._on_disconnect)

    def __repr__(self) -> str:
        return f"Peer({self.name!r})"

    # -- recording ----------------------------------------------------------------------------

    def _record(self, event: str, *args: Any) -> None:
        self.events.append((event, *args))
        if self.log is not None:
            self.log.append(f"{self.name}:{event}")
        self._changed.set()

    def _on_disconnect(self, *_: Any) -> None:
        self.disconnected.set()
        self._changed.set()

    async def wait_until(self, predicate: Callable[[], bool], what: str) -> None:
        """Wait until ``predicate()`` holds; fail after :data:`TIMEOUT` saying what was awaited."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + TIMEOUT
        while not predicate():
            remaining = deadline - loop.time()
            if remaining <= 0:
                shown = self.events if len(self.events) <= 12 else ["...", *self.events[-12:]]
                raise AssertionError(
                    f"{self.name}: timed out waiting for {what}; "
                    f"received {len(self.events)} events: {shown}"
                )
            self._changed.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    async def wait_count(self, count: int) -> list[Event]:
        """Wait until at least ``count`` events have arrived; return all of them."""
        await self.wait_until(lambda: len(self.events) >= count, f"{count} events")
        return list(self.events)

    async def take(self, count: int = 1) -> list[Event]:
        """The next ``count`` events not yet taken (waiting for them)."""
        end = self._seen + count
        events = (await self.wait_count(end))[self._seen : end]
        self._seen = end
        return events

    async def take_through(self, expected: Event) -> list[Event]:
        """Wait for ``expected``; return the untaken events before it and take them all."""
        await self.wait_until(lambda: expected in self.untaken(), f"{expected}")
        untaken = self.untaken()
        index = untaken.index(expected)
        self._seen += index + 1
        return untaken[:index]

    async def take_one(self) -> Event:
        return (await self.take())[0]

    async def error(self) -> dict[str, Any]:
        """The next event, which must be an ``error``; returns its payload."""
        event = await self.take_one()
        assert event[0] == "error", f"{self.name}: expected an error, got {event}"
        assert len(event) == 2, event
        payload: dict[str, Any] = event[1]
        assert isinstance(payload.get("code"), str), payload
        assert isinstance(payload.get("message"), str), payload
        return payload

    def untaken(self) -> list[Event]:
        return self.events[self._seen :]

    # -- talking ------------------------------------------------------------------------------

    @property
    def sid(self) -> str:
        sid = self.sio.get_sid()
        assert sid is not None, f"{self.name} is not connected"
        return str(sid)

    async def connect(self, url: str, **kwargs: Any) -> Peer:
        await self.sio.connect(url, transports=["websocket"], wait_timeout=TIMEOUT, **kwargs)
        return self

    async def emit(self, event: str, *args: Any) -> None:
        """Emit ``event`` with exactly the arguments given (none, one, or several)."""
        data: Any = None if not args else args[0] if len(args) == 1 else args
        await self.sio.emit(event, data)

    async def call(self, event: str, *args: Any) -> Any:
        """Emit with an acknowledgement and return the server's answer."""
        data: Any = None if not args else args[0] if len(args) == 1 else args
        answer = await self.sio.call(event, data, timeout=TIMEOUT)
        if self.log is not None:
            self.log.append(f"{self.name}:ack")
        return answer

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.sio.shutdown()


@contextlib.asynccontextmanager
async def connected(
    url: str, *names: str, log: list[str] | None = None
) -> AsyncIterator[list[Peer]]:
    """Connect one :class:`Peer` per name; disconnect them all on the way out."""
    peers = [Peer(name, log) for name in names]
    try:
        for peer in peers:
            await peer.connect(url)
        yield peers
    finally:
        for peer in peers:
            await peer.close()


# -- payloads ---------------------------------------------------------------------------------

OFFER_SDP = {"type": "offer", "sdp": "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=offer\r\n"}
ANSWER_SDP = {"type": "answer", "sdp": "v=0\r\no=- 3 4 IN IP4 127.0.0.1\r\ns=answer\r\n"}
CANDIDATE = "candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host"


def tutorial_offer(room: str, sdp: Any = None) -> dict[str, Any]:
    """The tutorial page's ``webrtc_offer`` payload."""
    return {"type": "webrtc_offer", "sdp": OFFER_SDP if sdp is None else sdp, "roomId": room}


def tutorial_answer(room: str, sdp: Any = None) -> dict[str, Any]:
    """The tutorial page's ``webrtc_answer`` payload."""
    return {"type": "webrtc_answer", "sdp": ANSWER_SDP if sdp is None else sdp, "roomId": room}


def tutorial_candidate(room: str, label: Any = 0, candidate: Any = CANDIDATE) -> dict[str, Any]:
    """The tutorial page's ``webrtc_ice_candidate`` payload."""
    return {"roomId": room, "label": label, "candidate": candidate}


def ice_candidate(port: int = 50000) -> dict[str, Any]:
    """An RTCIceCandidateInit as a browser's ``toJSON()`` gives it."""
    return {
        "candidate": f"candidate:1 1 udp 2122260223 127.0.0.1 {port} typ host",
        "sdpMid": "0",
        "sdpMLineIndex": 0,
        "usernameFragment": "abcd",
    }


# -- whole calls ------------------------------------------------------------------------------


async def tutorial_call(a: Peer, b: Peer, room: str) -> None:
    """Run the tutorial's call flow between two fresh peers and assert what each one received."""
    await a.emit("join", room)
    assert await a.take() == [("room_created", room)]
    await b.emit("join", room)
    assert await b.take() == [("room_joined", room)]
    await b.emit("start_call", room)
    assert await a.take() == [("start_call",)]
    await a.emit("webrtc_offer", tutorial_offer(room))
    assert await b.take() == [("webrtc_offer", OFFER_SDP)]
    await b.emit("webrtc_answer", tutorial_answer(room))
    assert await a.take() == [("webrtc_answer", ANSWER_SDP)]
    await a.emit("webrtc_ice_candidate", tutorial_candidate(room, 0))
    assert await b.take() == [("webrtc_ice_candidate", tutorial_candidate(room, 0))]
    await b.emit("webrtc_ice_candidate", tutorial_candidate(room, 1))
    assert await a.take() == [("webrtc_ice_candidate", tutorial_candidate(room, 1))]


async def assert_serves_a_call(url: str, room: str = "fresh-pair") -> None:
    """A fresh pair can still join a room and relay a whole tutorial call, then a mesh signal."""
    async with connected(url, "fresh-a", "fresh-b") as (a, b):
        await tutorial_call(a, b, room)
        assert a.untaken() == []
        assert b.untaken() == []
    async with connected(url, "fresh-c", "fresh-d") as (c, d):
        assert (await c.call("enter", {"room": f"{room}-mesh"}))["ok"] is True
        assert (await d.call("enter", {"room": f"{room}-mesh"}))["ok"] is True
        assert await c.take() == [("peer_joined", {"id": d.sid, "name": ""})]
        assert await d.call("signal", {"to": c.sid, "description": OFFER_SDP}) == {"ok": True}
        assert await c.take() == [("signal", {"from": d.sid, "description": OFFER_SDP})]


async def until_registry(
    server: SignallerThread, predicate: Callable[[Registry], bool], what: str
) -> None:
    """Wait until ``predicate(registry)`` holds, woken by the registry's own change listener."""
    loop = asyncio.get_running_loop()
    changed = asyncio.Event()
    unsubscribe = server.registry.subscribe(lambda _room: loop.call_soon_threadsafe(changed.set))
    try:
        deadline = loop.time() + TIMEOUT
        while not predicate(server.registry):
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(f"timed out waiting for {what}; {server.registry.counts()}")
            changed.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(changed.wait(), remaining)
    finally:
        unsubscribe()
