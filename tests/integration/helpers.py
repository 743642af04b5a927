"""Recording Socket.IO clients for the signalling conformance tests (docs/protocol.md).

Every client is a real ``socketio.AsyncClient`` on the WebSocket transport, talking to a real
signaller on a loopback port (raw Engine.IO clients, for what no Socket.IO client sends, are at
the end). A :class:`Peer` records, in arrival order, every event the server
sends it, so a test can assert the whole sequence. Waiting is always on a condition with a
timeout, never a fixed sleep. To prove that something did *not* happen, a test sends a later
marker through the same path and waits for the marker: the server handles one connection's
events in order, so anything not seen before the marker was never sent.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import socket
import struct
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import urlsplit

import aiohttp
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
                shown = [_short(e) for e in self.events[-12:]]
                shown = shown if len(self.events) <= 12 else ["...", *shown]
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


def _short(event: Event) -> str:
    text = repr(event)
    return text if len(text) <= 300 else f"{text[:300]}... ({len(text)} characters)"


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


async def until(predicate: Callable[[], Any], what: str, timeout: float = TIMEOUT) -> None:
    """Wait until ``predicate()`` holds, checking every 20 ms (for state nothing signals)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


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


async def enter(
    peer: Peer, room: str = "room", name: str | None = None, *, session: str | None = None
) -> dict[str, Any]:
    """Enter ``room`` (dialect 2) with an acknowledgement, which must say ok."""
    payload: dict[str, Any] = {"room": room}
    if name is not None:
        payload["name"] = name
    if session is not None:
        payload["session"] = session
    answer: dict[str, Any] = await peer.call("enter", payload)
    assert answer["ok"] is True, answer
    return answer


# -- raw Engine.IO clients ----------------------------------------------------------------------


def engine_url(url: str, transport: str = "websocket") -> str:
    """The signaller's Engine.IO endpoint for a raw client."""
    scheme = "ws" if transport == "websocket" else "http"
    return f"{url.replace('http', scheme, 1)}/socket.io/?EIO=4&transport={transport}"


async def raw_websocket(http: aiohttp.ClientSession, url: str) -> aiohttp.ClientWebSocketResponse:
    """A raw WebSocket past the Engine.IO open and the Socket.IO connect (``40``)."""
    ws = await http.ws_connect(engine_url(url), autoping=False)
    opened = await ws.receive_str(timeout=TIMEOUT)
    assert opened.startswith("0{"), opened
    await ws.send_str("40")
    connected = await ws.receive_str(timeout=TIMEOUT)
    assert connected.startswith("40{"), connected
    return ws


async def closed_by_server(ws: aiohttp.ClientWebSocketResponse, timeout: float = TIMEOUT) -> bool:
    """Whether the server closes ``ws`` within ``timeout`` (answering its pings meanwhile)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while (left := deadline - loop.time()) > 0:
        try:
            message = await ws.receive(timeout=left)
        except asyncio.TimeoutError:
            return False
        if message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
            return True
        if message.type in (aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.ERROR):
            return True
        if message.type == aiohttp.WSMsgType.TEXT and message.data == "2":
            with contextlib.suppress(ConnectionError, RuntimeError):
                await ws.send_str("3")
    return False


class Polling:
    """A raw Engine.IO long-polling session: GET and POST by hand, nothing in between."""

    def __init__(self, http: aiohttp.ClientSession, url: str) -> None:
        self.http = http
        self.endpoint = engine_url(url, "polling")
        self.sid = ""

    async def open(self, connect: bool = True) -> Polling:
        """The Engine.IO handshake, then (``connect``) the Socket.IO connect and its answer."""
        opened = await self.get()
        assert opened.startswith("0{"), opened
        self.sid = json.loads(opened[1:])["sid"]
        if connect:
            assert await self.post("40") == 200
            answer = await self.get()
            assert answer.startswith("40{"), answer
        return self

    async def post(self, body: str | bytes) -> int:
        """POST one payload; the HTTP status."""
        url = f"{self.endpoint}&sid={self.sid}" if self.sid else self.endpoint
        async with self.http.post(url, data=body, timeout=aiohttp.ClientTimeout(TIMEOUT)) as r:
            await r.read()
            return r.status

    async def get(self, timeout: float = TIMEOUT) -> str:
        """One poll: the payload (packets joined by \x1e), or ``"<status>"`` if not 200."""
        url = f"{self.endpoint}&sid={self.sid}" if self.sid else self.endpoint
        async with self.http.get(url, timeout=aiohttp.ClientTimeout(timeout)) as response:
            body = await response.text()
            return body if response.status == 200 else f"<{response.status}>"

    async def closed_by_server(self, timeout: float = TIMEOUT) -> bool:
        """Whether the session ends within ``timeout``: a close packet, or an unknown sid."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (left := deadline - loop.time()) > 0:
            try:
                payload = await self.get(timeout=left)
            except asyncio.TimeoutError:
                return False
            if payload.startswith("<") or "1" in payload.split("\x1e"):
                return True
            if "2" in payload.split("\x1e"):
                await self.post("3")
        return False


class StalledWebSocket:
    """A raw WebSocket client that, once set up, never reads its socket again.

    Its socket has a small receive buffer and the stream above it a small limit, so what the
    server sends it soon waits on the server's side. It may still write: :meth:`pong` sends a
    heartbeat answer without having read the ping, as a stalled page's timers might.
    """

    def __init__(self) -> None:
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self, url: str) -> StalledWebSocket:
        parts = urlsplit(url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 80
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (host, port))
        self.reader, self.writer = await asyncio.open_connection(sock=sock, limit=16384)
        key = base64.b64encode(os.urandom(16)).decode()
        self.writer.write(
            f"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), TIMEOUT)
        assert b" 101 " in head.split(b"\r\n", 1)[0], head
        assert (await self.receive()).startswith("0{")
        self.send("40")
        assert (await self.receive()).startswith("40{")
        return self

    async def receive(self) -> str:
        """The next text message (only while setting up: afterwards it reads nothing)."""
        assert self.reader is not None
        while True:
            first, second = await asyncio.wait_for(self.reader.readexactly(2), TIMEOUT)
            size = second & 0x7F
            if size == 126:
                (size,) = struct.unpack("!H", await self.reader.readexactly(2))
            elif size == 127:
                (size,) = struct.unpack("!Q", await self.reader.readexactly(8))
            payload = await self.reader.readexactly(size)
            if first & 0x0F == 0x1:
                return payload.decode()

    def send(self, text: str) -> None:
        """A masked text frame, as clients send them."""
        assert self.writer is not None
        data, mask = text.encode(), os.urandom(4)
        size = len(data)
        head = bytes([0x81])
        if size < 126:
            head += bytes([0x80 | size])
        elif size < 65536:
            head += bytes([0x80 | 126]) + struct.pack("!H", size)
        else:
            head += bytes([0x80 | 127]) + struct.pack("!Q", size)
        self.writer.write(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))

    async def call(self, event: str, payload: Any) -> Any:
        """Emit with an acknowledgement and read the answer (while setting up)."""
        self.send("42" + "1" + json.dumps([event, payload]))
        while True:
            message = await self.receive()
            if message.startswith("431"):
                return json.loads(message[3:])[0]

    def pong(self) -> None:
        if not self.closed:  # asyncio warns of writes to a lost connection
            self.send("3")

    @property
    def closed(self) -> bool:
        """Whether the server has ended the connection (seen without reading what it sent)."""
        assert self.writer is not None
        transport = self.writer.transport
        return transport.is_closing() or self.reader is None or self.reader.at_eof()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.transport.abort()
