"""A client that sends what no Socket.IO client sends is closed, as Node's socket.io closes it,
and logging stays bounded (server/core/guard.py).

Raw Engine.IO clients (aiohttp WebSockets, long polling by hand) against a real signaller, on both
engine paths (the ``engine_path`` fixture: fastio and python-engineio's own) and both transports.
Each kind of junk must close its connection; thousands of junk frames must log at most one
warning per connection within the overall budget, never a traceback; and a call in another room
goes on meanwhile.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging

import aiohttp
import pytest

from ipymeet.server import SignallerThread
from ipymeet.server.core import guard, internals

from ..support import MakeSignaller
from .helpers import (
    TIMEOUT,
    Polling,
    assert_serves_a_call,
    closed_by_server,
    connected,
    raw_websocket,
    tutorial_call,
    tutorial_candidate,
    until,
)

#: Socket.IO packets no client sends, each as an Engine.IO message (the "4" and what follows).
SOCKET_IO_JUNK: dict[str, list[str | bytes]] = {
    "bad-json": ["42["],
    "nesting-past-the-decoder": ["42" + "[" * 5000 + "]" * 5000],
    "integer-too-long": ['42["join",' + "1" * 5000 + "]"],
    "event-not-an-array": ['42{"a":1}'],
    "event-without-a-name": ["42[]"],
    "event-named-null": ["42[null]"],
    "empty-event": ["42"],
    "empty-message": ["4"],
    "unknown-namespace": ['42/nowhere,["join","x"]'],
    "disconnect-of-unknown-namespace": ["41/nowhere,"],
    "binary-out-of-the-blue": [b"\x00\x01\x02"],
    "text-where-an-attachment-was-due": [
        '451-["frame",{"_placeholder":true,"num":0}]',
        '42["join","x"]',
    ],
    "binary-event-without-attachments": ['45["frame",1]'],
    "too-many-attachments": ['4599-["frame",1]'],
    "attachments-on-a-plain-event": ['421-["join","x"]'],
    "clients-connect-error": ['44{"message":"x"}'],
    "unknown-socket-io-type": ["47"],
    "connect-with-an-array": ["40[1]"],
}

#: Engine.IO packets (or no packet at all) on a WebSocket.
ENGINE_IO_JUNK: dict[str, list[str | bytes]] = {
    "unknown-engine-io-type": ["9xyz"],
    "no-packet-type": ["xyz"],
    "empty-frame": [""],
}

#: Long-polling POST bodies that are no Engine.IO payload.
POLLING_JUNK: dict[str, str | bytes] = {
    "unknown-engine-io-type": "9xyz",
    "no-packet-type": "xyz",
    "not-utf-8": b"\xff\xfe\xfd",
    "too-many-packets": "\x1e".join(["6"] * 17),
    "binary-out-of-the-blue": "b" + base64.b64encode(b"\x00\x01").decode(),
}


def polling_body(frame: str | bytes) -> str:
    """An Engine.IO message as a polling client POSTs it (binary as base64)."""
    if isinstance(frame, bytes):
        return "b" + base64.b64encode(frame).decode()
    return frame


def no_tracebacks(records: list[logging.LogRecord]) -> None:
    assert not [r for r in records if r.exc_info], [r.getMessage() for r in records]
    assert {r.name for r in records} <= {"ipymeet.server"}, [r.getMessage() for r in records]


@pytest.mark.parametrize(
    "junk",
    [*SOCKET_IO_JUNK.values(), *ENGINE_IO_JUNK.values()],
    ids=[*SOCKET_IO_JUNK, *ENGINE_IO_JUNK],
)
async def test_junk_on_a_websocket_closes_it(
    engine_path: str,
    make_signaller: MakeSignaller,
    server_logs: list[logging.LogRecord],
    junk: list[str | bytes],
) -> None:
    signaller = make_signaller()
    assert signaller.signaller.fast is (engine_path == "fast")
    async with aiohttp.ClientSession() as http:
        ws = await raw_websocket(http, signaller.url)
        for frame in junk:
            if isinstance(frame, bytes):
                await ws.send_bytes(frame)
            else:
                await ws.send_str(frame)
        assert await closed_by_server(ws), "the server left the connection open"
    await until_no_connections(signaller)
    assert len(server_logs) <= 1, [r.getMessage() for r in server_logs]
    no_tracebacks(server_logs)


@pytest.mark.parametrize(
    "bodies",
    [
        *([polling_body(frame) for frame in frames] for frames in SOCKET_IO_JUNK.values()),
        *([body] for body in POLLING_JUNK.values()),
    ],
    ids=[*SOCKET_IO_JUNK, *(f"engine-io-{name}" for name in POLLING_JUNK)],
)
async def test_junk_over_long_polling_closes_the_session(
    engine_path: str,
    make_signaller: MakeSignaller,
    server_logs: list[logging.LogRecord],
    bodies: list[str | bytes],
) -> None:
    signaller = make_signaller()
    async with aiohttp.ClientSession() as http:
        session = await Polling(http, signaller.url).open()
        for body in bodies:
            await session.post(body)
        assert await session.closed_by_server(), "the server kept the session"
        assert await session.post("3") == 400  # it is gone, not merely told to go
    await until_no_connections(signaller)
    assert len(server_logs) <= 1, [r.getMessage() for r in server_logs]
    no_tracebacks(server_logs)


async def test_an_oversized_frame_closes_the_websocket(
    engine_path: str, make_signaller: MakeSignaller, server_logs: list[logging.LogRecord]
) -> None:
    signaller = make_signaller()
    async with aiohttp.ClientSession() as http:
        ws = await raw_websocket(http, signaller.url)
        await ws.send_str("42" + json.dumps(["join", "x" * 300_000]))
        assert await closed_by_server(ws)
    await until_no_connections(signaller)
    no_tracebacks(server_logs)


async def test_thousands_of_junk_frames_log_a_bounded_few_lines_and_spare_other_calls(
    engine_path: str, make_signaller: MakeSignaller, server_logs: list[logging.LogRecord]
) -> None:
    """40 WebSockets and 20 polling sessions send 100 junk frames each (every kind, over and
    over), while a tutorial call in another room keeps relaying: every junk connection is
    closed, the log gets one warning per connection at most and no more than the budget, and
    the call does not notice."""
    signaller = make_signaller()
    frames = [f for kind in (*SOCKET_IO_JUNK.values(), *ENGINE_IO_JUNK.values()) for f in kind]
    bodies = [polling_body(f) for f in frames if f != ""] + list(POLLING_JUNK.values())

    async def websocket(http: aiohttp.ClientSession, index: int) -> bool:
        ws = await raw_websocket(http, signaller.url)
        for n in range(100):
            frame = frames[(index + n) % len(frames)]
            try:
                await (ws.send_bytes(frame) if isinstance(frame, bytes) else ws.send_str(frame))
            except ConnectionError:
                break  # already closed: the rest would go nowhere
        return await closed_by_server(ws)

    async def polling(http: aiohttp.ClientSession, index: int) -> bool:
        session = await Polling(http, signaller.url).open()
        for n in range(100):
            status = await session.post(bodies[(index + n) % len(bodies)])
            if status != 200:
                break
        return await session.closed_by_server()

    async with connected(signaller.url, "a", "b") as (a, b):
        await tutorial_call(a, b, "steady")
        async with aiohttp.ClientSession() as http:
            junk = asyncio.gather(
                *(websocket(http, i) for i in range(40)), *(polling(http, i) for i in range(20))
            )
            for port in range(20):  # the call goes on meanwhile
                await a.emit("webrtc_ice_candidate", tutorial_candidate("steady", port))
                assert await b.take() == [
                    ("webrtc_ice_candidate", tutorial_candidate("steady", port))
                ]
            closed = await asyncio.wait_for(junk, 60)
        assert all(closed), f"{closed.count(False)} junk connections were left open"
        assert a.untaken() == []
        assert b.untaken() == []
        await b.emit("start_call", "steady")
        assert await a.take() == [("start_call",)]
    await until_no_connections(signaller)
    no_tracebacks(server_logs)
    # The budget refills by one every 6 s: allow for a slow run.
    assert len(server_logs) <= guard.LOG_BURST + 3, [r.getMessage() for r in server_logs]
    assert server_logs, "closing a connection for junk is worth one warning"
    await assert_serves_a_call(signaller.url)


async def test_well_formed_odd_events_keep_their_error_answers(
    engine_path: str, make_signaller: MakeSignaller, server_logs: list[logging.LogRecord]
) -> None:
    """Not junk: events named like lifecycle events, or by a number, or unknown, are answered
    `unknown_event` on an open connection (docs/protocol.md), and nothing is logged."""
    signaller = make_signaller()
    async with aiohttp.ClientSession() as http:
        ws = await raw_websocket(http, signaller.url)
        for frame, name in [
            ('42["connect",{}]', "connect"),
            ('42["disconnect"]', "disconnect"),
            ('42["*","x"]', "*"),
            ("42[5]", "5"),
            ('42["no-such-event"]', "no-such-event"),
            ("40/elsewhere,{}", None),  # a connect to another namespace: refused, not closed
        ]:
            await ws.send_str(frame)
            answer = await ws.receive_str(timeout=TIMEOUT)
            if name is None:
                assert answer.startswith("44/elsewhere,"), answer
                continue
            assert answer.startswith('42["error",'), answer
            assert json.loads(answer[2:])[1]["code"] == "unknown_event"
            assert json.loads(answer[2:])[1]["event"] == name
        assert not ws.closed
        await ws.close()
    assert server_logs == []


async def until_no_connections(signaller: SignallerThread) -> None:
    """Wait until the signaller holds no connection (the closed ones were let go)."""
    server = signaller.signaller
    await until(lambda: not server.connections and not server.guard.links, "the connections to go")


async def test_public_api_only_junk_is_refused_without_a_traceback_and_calls_go_on(
    monkeypatch: pytest.MonkeyPatch,
    make_signaller: MakeSignaller,
    server_logs: list[logging.LogRecord],
) -> None:
    """With every gate of server/core/internals.py closed (what a python-socketio release the guard
    was not checked on gets): no wrapped Engine.IO handlers, yet junk still closes its
    connection (engineio reports the handler's failure to the guard's logger), without a
    traceback, and calls go on."""
    monkeypatch.setenv(internals.ENV_ALL, "0")
    signaller = make_signaller()
    assert not signaller.signaller.fast
    assert not signaller.signaller.guard.installed
    async with aiohttp.ClientSession() as http:
        for name in SOCKET_IO_JUNK:
            ws = await raw_websocket(http, signaller.url)
            for frame in SOCKET_IO_JUNK[name]:
                await (ws.send_bytes(frame) if isinstance(frame, bytes) else ws.send_str(frame))
            assert await closed_by_server(ws), f"{name}: the server left the connection open"
    await until_no_connections(signaller)
    no_tracebacks(server_logs)
    await assert_serves_a_call(signaller.url)
