"""server/fastio.py overrides python-engineio internals: pin their shape, and check the transport.

If a test in the first half fails after an upgrade of python-engineio or python-socketio, read
fastio.py's docstring against the new sources before changing anything here.
"""

from __future__ import annotations

import asyncio
import inspect
import json
from importlib.metadata import version
from typing import Any

import aiohttp
import engineio
import pytest
import socketio
from engineio import async_socket, base_socket
from engineio import packet as eio_packet

from ipymeet.server import SignallerThread, fastio
from ipymeet.server.signaller import _Server
from tests.integration.helpers import Peer, tutorial_call


def _params(function: Any) -> list[str]:
    return list(inspect.signature(function).parameters)


def test_written_for_the_installed_versions() -> None:
    """A new version needs its sources read against fastio.py's overrides (then update these)."""
    installed = {name: version(name) for name in fastio.WRITTEN_FOR}
    assert installed == fastio.WRITTEN_FOR


def test_the_signaller_uses_it_only_on_those_releases(monkeypatch: pytest.MonkeyPatch) -> None:
    assert isinstance(_Server(async_mode="aiohttp").eio, fastio.FastEngineServer)
    written = {**fastio.WRITTEN_FOR, "python-engineio": "9.0.0"}
    monkeypatch.setattr(fastio, "WRITTEN_FOR", written)
    fastio.supported.cache_clear()
    try:
        assert not fastio.supported()
        eio = _Server(async_mode="aiohttp").eio
        assert type(eio) is engineio.AsyncServer
    finally:
        monkeypatch.undo()
        fastio.supported.cache_clear()


def test_overridden_internals_keep_their_shape() -> None:
    sock = async_socket.AsyncSocket
    assert _params(sock.send) == ["self", "pkt"]
    assert _params(sock.receive) == ["self", "pkt"]
    assert _params(sock.close) == ["self", "wait", "abort", "reason"]
    assert _params(sock._upgrade_websocket) == ["self", "environ"]
    assert _params(sock.check_ping_timeout) == ["self"]
    # The WebSocket handler fastio replaces, and the polling paths it keeps.
    for name in ("_websocket_handler", "handle_get_request", "handle_post_request", "poll"):
        assert inspect.iscoroutinefunction(getattr(sock, name)), name
    # The state fastio reads and writes.
    init = inspect.getsource(base_socket.BaseSocket.__init__)
    for attr in ("queue", "last_ping", "connected", "upgrading", "upgraded", "closing", "closed"):
        assert f"self.{attr} =" in init, attr
    # engineio creates its sockets itself, then triggers "connect" (where fastio swaps the class).
    connect = inspect.getsource(engineio.AsyncServer._handle_connect)
    created = connect.index("async_socket.AsyncSocket(self, sid)")
    stored = connect.index("self.sockets[sid] = s")
    triggered = connect.index("self._trigger_event('connect', sid, environ")
    assert created < stored < triggered
    assert _params(engineio.AsyncServer._trigger_event) == ["self", "event", "args", "kwargs"]
    # python-socketio builds its engineio server from this hook, and registers "message".
    base_init = inspect.getsource(socketio.base_server.BaseServer.__init__)
    assert "self.eio = self._engineio_server_class()(" in base_init
    assert "self.eio.on('message', self._handle_eio_message)" in base_init
    assert _params(socketio.AsyncServer._handle_eio_message) == ["self", "eio_sid", "data"]
    # A Socket.IO packet sent as an Engine.IO message is "4" + its text (fastio frames it so).
    assert eio_packet.Packet(eio_packet.MESSAGE, data='2["x"]').encode() == '42["x"]'


def test_every_signaller_uses_it() -> None:
    server = _Server(async_mode="aiohttp")
    assert type(server.eio) is fastio.FastEngineServer


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 70000])
def test_ws_frame_headers(size: int) -> None:
    frame = fastio.ws_frame("a" * size)
    assert frame[0] == 0x81
    if size < 126:
        assert frame[1] == size
        assert len(frame) == 2 + size
    elif size < 65536:
        assert frame[1] == 126
        assert int.from_bytes(frame[2:4], "big") == size
    else:
        assert frame[1] == 127
        assert int.from_bytes(frame[2:10], "big") == size
    assert fastio.ws_frame(b"\x01\x02")[:2] == b"\x82\x02"


# -- the transport, end to end ------------------------------------------------------------------


async def _peer(url: str, name: str, transports: list[str]) -> Peer:
    peer = Peer(name)
    await peer.sio.connect(url, transports=transports, wait_timeout=5)
    return peer


@pytest.mark.parametrize(
    "transports", [["polling"], ["polling", "websocket"], ["websocket"]], ids=str
)
async def test_a_call_over_each_transport(make_signaller: Any, transports: list[str]) -> None:
    """Polling alone, polling upgraded to WebSocket, and WebSocket alone all carry a call."""
    signaller = make_signaller(ping_interval=1)  # a polling client's close waits for a ping
    a = await _peer(signaller.url, "a", transports)
    b = await _peer(signaller.url, "b", ["websocket"])
    try:
        await tutorial_call(a, b, f"room-{len(transports)}-{transports[0]}")
        assert a.sio.transport() == transports[-1]
        sockets = signaller.signaller.sio.eio.sockets
        assert all(isinstance(s, fastio.FastSocket) for s in sockets.values())
    finally:
        await a.close()
        await b.close()


async def _raw_session(http: aiohttp.ClientSession, url: str) -> aiohttp.ClientWebSocketResponse:
    ws = await http.ws_connect(f"{url}/socket.io/?EIO=4&transport=websocket", autoping=False)
    opened = await ws.receive_str(timeout=5)
    assert opened.startswith("0{")
    await ws.send_str("40")
    assert (await ws.receive_str(timeout=5)).startswith("40")
    return ws


async def test_pings_are_answered_and_a_silent_client_is_closed(make_signaller: Any) -> None:
    """The server pings; a client that answers stays, one that does not loses its WebSocket."""
    server = make_signaller(ping_interval=1, ping_timeout=1)
    async with aiohttp.ClientSession() as http:
        polite, silent = await _raw_session(http, server.url), await _raw_session(http, server.url)

        async def answer_pings() -> None:
            while True:
                message = await polite.receive()
                if message.type != aiohttp.WSMsgType.TEXT:
                    return
                if message.data == "2":
                    await polite.send_str("3")

        answering = asyncio.ensure_future(answer_pings())
        try:
            assert await silent.receive_str(timeout=3) == "2"  # a ping; left unanswered
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 8
            while loop.time() < deadline:
                message = await silent.receive(timeout=deadline - loop.time())
                if message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                    break
            else:
                raise AssertionError("the silent client's WebSocket was not closed")
            assert not polite.closed
            assert not answering.done()
            await polite.send_str('42["join","ping-room"]')
        finally:
            answering.cancel()
            await polite.close()


async def test_a_message_over_the_limit_ends_the_connection(signaller: SignallerThread) -> None:
    limit = signaller.signaller.sio.eio.max_http_buffer_size
    async with aiohttp.ClientSession() as http:
        ws = await _raw_session(http, signaller.url)
        await ws.send_str("42" + json.dumps(["join", "x" * limit]))
        message = await ws.receive(timeout=5)
        assert message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
