"""server/core/fastio.py overrides python-engineio internals: the gate that allows it, the shape of
those internals, and the transport itself.

If a shape test fails after widening internals.CHECKED to a new release, read fastio.py's
docstring against the new sources before changing anything here. On releases the gate does not
accept, the shape tests are skipped (the fast path is not used) and the transport tests check the
stock path instead: a newer release installed on a fresh machine fails none of them.
"""

from __future__ import annotations

import asyncio
import inspect
import json
from typing import Any

import aiohttp
import engineio
import pytest
import socketio
from engineio import async_socket, base_socket
from engineio import packet as eio_packet

from ipymeet.server import SignallerThread
from ipymeet.server.core import fastio, internals
from ipymeet.server.core.settings import Settings
from ipymeet.server.core.signaller import Signaller
from tests.integration.helpers import Peer, raw_websocket, tutorial_call

CHECKED = internals.supported()
needs_checked = pytest.mark.skipif(
    not CHECKED, reason="the installed releases are not the ones fastio was checked on"
)


def _params(function: Any) -> list[str]:
    return list(inspect.signature(function).parameters)


# -- the gate --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("engineio_release", "socketio_release", "accepted"),
    [
        ("4.15.1", "5.18.1", True),
        ("4.15.0", "5.18.0", True),  # the lower ends of the ranges checked
        ("4.15.2", "5.18.1", False),  # a patch not yet read: stock path
        ("4.15.1", "5.18.2", False),
        ("4.16.0", "5.18.1", False),
        ("4.14.0", "5.18.1", False),
        ("4.15.1", "5.11.4", False),
        ("4.15.1", "6.0.0", False),
        ("4.15.1rc1", "5.18.1", False),  # not a plain release
        (None, "5.18.1", False),  # not installed
    ],
)
def test_the_gate_accepts_only_the_releases_checked(
    engineio_release: str | None, socketio_release: str | None, accepted: bool
) -> None:
    releases = {"python-engineio": engineio_release, "python-socketio": socketio_release}
    assert internals.checks(releases) is accepted


def test_the_gate_follows_the_installed_releases() -> None:
    """Not a pin of the installed versions: whatever they are, the gate's answer matches them."""
    assert internals.supported() is internals.checks(internals.installed())


def test_the_signaller_takes_the_fast_path_only_where_the_gate_allows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(internals.ENV, raising=False)
    settings = Settings()
    signaller = Signaller(settings)
    assert signaller.fast is CHECKED
    assert (type(signaller.sio.eio) is fastio.FastEngineServer) is CHECKED
    monkeypatch.setenv(internals.ENV, "0")
    stock = Signaller(settings)
    assert stock.fast is False
    assert type(stock.sio) is socketio.AsyncServer
    assert type(stock.sio.eio) is engineio.AsyncServer


def test_an_unchecked_release_gets_the_stock_server(monkeypatch: pytest.MonkeyPatch) -> None:
    ranges = {**internals.CHECKED, "python-engineio": ("9.0.0", "9.0.0")}
    monkeypatch.setattr(internals, "CHECKED", ranges)
    internals.supported.cache_clear()
    try:
        assert not internals.supported()
        signaller = Signaller(Settings())
        assert type(signaller.sio.eio) is engineio.AsyncServer
    finally:
        monkeypatch.undo()
        internals.supported.cache_clear()


# -- the internals fastio and internals.py rely on ----------------------------------------------


@needs_checked
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
    # A Socket.IO packet sent as an Engine.IO message is "4" + its text (fastio frames it so).
    assert eio_packet.Packet(eio_packet.MESSAGE, data='2["x"]').encode() == '42["x"]'


def test_the_names_the_guard_relies_on_on_every_release() -> None:
    """guard.py's long-stable names (not only on the releases checked): the Engine.IO handlers
    python-socketio registers, and sockets making their queue with ``create_queue``."""
    sio = socketio.AsyncServer(async_mode="aiohttp")
    assert {"connect", "message", "disconnect"} <= set(sio.eio.handlers)
    assert "self.queue = self.server.create_queue()" in inspect.getsource(
        base_socket.BaseSocket.__init__
    )


@needs_checked
def test_every_signaller_uses_it() -> None:
    server = internals.server_class(True)(async_mode="aiohttp")
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
async def test_a_call_over_each_transport(
    engine_path: str, make_signaller: Any, transports: list[str]
) -> None:
    """Polling alone, polling upgraded to WebSocket, and WebSocket alone all carry a call."""
    # A polling client's close waits out its pending poll (ping interval + timeout).
    signaller = make_signaller(ping_interval=1, ping_timeout=2)
    a = await _peer(signaller.url, "a", transports)
    b = await _peer(signaller.url, "b", ["websocket"])
    try:
        await tutorial_call(a, b, f"room-{len(transports)}-{transports[0]}")
        assert a.sio.transport() == transports[-1]
        sockets = signaller.signaller.sio.eio.sockets
        kind = fastio.FastSocket if engine_path == "fast" else async_socket.AsyncSocket
        assert all(type(s) is kind for s in sockets.values())
    finally:
        await a.close()
        await b.close()


async def test_pings_are_answered_and_a_silent_client_is_closed(
    engine_path: str, make_signaller: Any
) -> None:
    """The server pings; a client that answers stays, one that does not loses its WebSocket."""
    server = make_signaller(ping_interval=1, ping_timeout=1)
    async with aiohttp.ClientSession() as http:
        polite, silent = (
            await raw_websocket(http, server.url),
            await raw_websocket(http, server.url),
        )

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


async def test_a_message_over_the_limit_ends_the_connection(
    engine_path: str, make_signaller: Any
) -> None:
    signaller: SignallerThread = make_signaller()
    limit = signaller.signaller.sio.eio.max_http_buffer_size
    async with aiohttp.ClientSession() as http:
        ws = await raw_websocket(http, signaller.url)
        await ws.send_str("42" + json.dumps(["join", "x" * limit]))
        message = await ws.receive(timeout=5)
        assert message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
