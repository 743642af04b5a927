"""A leaner Engine.IO WebSocket transport for the signaller (aiohttp only).

Written against python-engineio 4.15 and python-socketio 5.18 (aiohttp 3.14), and imported only on
the releases internals.py lists as checked; the overridden internals are pinned by
``tests/unit/test_fastio.py``, which fails if their shape changes.

python-engineio's WebSocket transport costs, per message, more than the signaller's own work:

- its reader wraps every ``receive`` in a new task and an ``asyncio.wait_for`` (a read timeout of
  ping interval + ping timeout);
- every packet sent goes through an ``asyncio.Queue`` to a writer task, which waits on it with
  another ``wait_for``, and is woken once per packet.

At 1,000 clients that machinery was most of the server's CPU per relayed message
(``benchmarks/signalling.py``). Here, once a socket is on WebSocket:

- **Reading** (:meth:`FastSocket._upgrade_websocket`): one loop awaits aiohttp's ``receive()`` and
  hands each Socket.IO message straight to the server's ``message`` handler, in order, in the
  connection's own task (what ``async_handlers=False`` asks of engineio anyway). There is no read
  timeout: a client that stops answering pings is closed by engineio's own service task
  (``check_ping_timeout``), and closing the socket closes its WebSocket (below), which ends the
  loop. The upgrade handshake from polling (probe ping, upgrade packet) is engineio's, unchanged;
  messages over ``max_http_buffer_size`` end the connection, as in engineio.
- **Yielding**: the signaller yields to the event loop once per message so that a flooding
  client cannot hold the loop (``Guard.message`` in guard.py); on WebSocket the reader yields
  once every :data:`TURN` messages instead, so a client's burst (an offer and its candidates) is
  handled in one turn. A flooder still holds the loop for at most 16 cheap refusals.
- **Guarding** (guard.py, given as :attr:`FastEngineServer.guard`): each message goes to the
  guard's ``handle``, which closes the connection of a malformed Socket.IO packet; an Engine.IO
  packet of no known type, or no packet at all, closes it here. Engine.IO packets a client has
  no reason to send (open, ping, noop) are ignored, as engineio ignores them.
- **Writing** (:meth:`FastSocket.send`): a packet is framed and appended to the socket's
  outgoing frames, without a queue or a task; once per turn of the event loop
  (:class:`_Flusher`, one ``call_soon``) each socket's frames go to its transport in one
  ``write``: one system call per socket and turn rather than one per frame (they were 18% of the
  server's CPU). Whatever was queued before the WebSocket took over (the open packet, packets
  sent during an upgrade) is written first, so the order is the order of ``send`` calls. Writes
  never wait: a slow reader's frames wait in the transport's buffer, and once that holds more
  than the guard's cap (``Settings.max_backlog_bytes``) the connection is dropped. Frames are
  never compressed (``compress=False``, as Node's engine.io does by default), so they can be
  framed here.
- **Closing** (:meth:`FastSocket.close`): engineio's close, then, once its close packet is
  flushed, the WebSocket's close (engineio's writer closed it when told to by a None in the
  queue), which ends the reader. A client that ignores the close handshake loses its transport
  to the guard's cut-offs (guard.py) or aiohttp's close timeout.

Polling, and the polling half of an upgrade, stay engineio's. Sockets become :class:`FastSocket`
when they connect (:meth:`FastEngineServer._trigger_event`, the ``connect`` event: engineio
creates ``AsyncSocket`` objects itself, in ``_handle_connect``, with no hook to choose the class).
"""

from __future__ import annotations

import asyncio
import struct
import time
from collections.abc import Awaitable
from typing import Any, Protocol

import engineio
from aiohttp import WSMsgType, web
from engineio import async_socket, exceptions
from engineio import packet as eio_packet

#: Messages one connection's reader handles before it yields to the event loop (see below).
TURN = 16

_TEXT, _BINARY = WSMsgType.TEXT, WSMsgType.BINARY
_MESSAGE = eio_packet.MESSAGE
#: Engine.IO packets engineio itself handles (``AsyncSocket.receive``), and those it ignores.
_RECEIVED = frozenset({eio_packet.PONG, eio_packet.CLOSE, eio_packet.UPGRADE})
_IGNORED = frozenset({eio_packet.OPEN, eio_packet.PING, eio_packet.NOOP})
_short = struct.Struct("!BB").pack
_medium = struct.Struct("!BBH").pack
_long = struct.Struct("!BBQ").pack


def ws_frame(data: str | bytes) -> bytes:
    """One unmasked, uncompressed, final WebSocket frame (RFC 6455 5.2) carrying ``data``."""
    if isinstance(data, str):
        payload, opcode = data.encode(), 0x81  # FIN | text
    else:
        payload, opcode = bytes(data), 0x82  # FIN | binary
    size = len(payload)
    if size < 126:
        return _short(opcode, size) + payload
    if size < 65536:
        return _medium(opcode, 126, size) + payload
    return _long(opcode, 127, size) + payload


class Guard(Protocol):
    """What the transport needs of guard.py's ``Guard``."""

    cap: int

    def handle(self, eio_sid: str, data: Any) -> Awaitable[None]: ...
    def malformed(self, eio_sid: str, why: str) -> None: ...
    def overflow(self, eio_sid: str, size: int) -> None: ...
    def websocket_opened(self, eio_sid: str, transport: asyncio.Transport) -> None: ...


def _decode(data: str | bytes | None) -> eio_packet.Packet | None:
    """The Engine.IO packet ``data`` holds, or None if it holds none."""
    if data is None:
        return None
    try:
        return eio_packet.Packet(encoded_packet=data)
    except (ValueError, IndexError, TypeError):
        return None


class FastSocket(async_socket.AsyncSocket):  # type: ignore[misc]
    """engineio's ``AsyncSocket`` with the WebSocket transport described in the module docstring."""

    # engineio's state (BaseSocket.__init__), declared for mypy.
    connected: bool
    upgrading: bool
    upgraded: bool
    closing: bool
    closed: bool
    #: The connection's transport once the WebSocket carries the session; None before (polling).
    _transport: asyncio.Transport | None = None
    _ws: web.WebSocketResponse | None = None
    _ws_closer: asyncio.Task[Any] | None = None
    _ws_timer: asyncio.Handle | None = None
    #: Frames written since the last flush (see :class:`_Flusher`).
    _out: list[bytes] | None = None

    async def send(self, pkt: Any) -> None:
        transport = self._transport
        if transport is None or self.closed:
            await super().send(pkt)  # polling; or closed: engineio raises SocketIsClosedError
            return
        last_ping = self.last_ping
        if last_ping and time.time() - last_ping > self.server.ping_timeout:
            await self.check_ping_timeout()  # engineio closes it
            return
        self._write(ws_frame(pkt.encode()))

    def write_frame(self, frame: bytes) -> bool:
        """Write an already framed message (see :func:`ws_frame`) if this socket is on WebSocket,
        open and not timed out; False if it must go through :meth:`send` instead."""
        transport = self._transport
        if transport is None or self.closed:
            return False
        last_ping = self.last_ping
        if last_ping and time.time() - last_ping > self.server.ping_timeout:
            return False
        self._write(frame)
        return True

    def _write(self, frame: bytes) -> None:
        out = self._out
        if out is None:
            self._out = [frame]
            self.server.flusher.add(self)
        else:
            out.append(frame)

    def _flush(self) -> None:
        out, self._out = self._out, None
        transport = self._transport
        if out and transport is not None and not transport.is_closing():
            transport.write(out[0] if len(out) == 1 else b"".join(out))
            guard = self.server.guard
            if guard is not None:
                waiting = transport.get_write_buffer_size()
                if waiting > guard.cap:
                    guard.overflow(self.sid, waiting)

    async def close(self, wait: bool = True, abort: bool = False, reason: Any = None) -> None:
        await super().close(wait=wait, abort=abort, reason=reason)
        if self._ws is not None and self._ws_timer is None:
            # Once the close packet is flushed (the flusher runs first: call_soon keeps order),
            # the WebSocket is closed; the reader then stops (see _serve_websocket). A client
            # that ignores the close would otherwise keep its WebSocket while it sends.
            self._ws_timer = asyncio.get_running_loop().call_soon(self._close_ws)

    def _close_ws(self) -> None:
        self._flush()
        ws = self._ws
        if ws is not None and not ws.closed and self._ws_closer is None:
            self._ws_closer = asyncio.ensure_future(ws.close())

    async def _upgrade_websocket(self, environ: dict[str, Any]) -> Any:
        if self.server.async_mode != "aiohttp":
            return await super()._upgrade_websocket(environ)
        if self.upgraded:
            raise OSError("Socket has been upgraded already")
        request = environ["aiohttp.request"]
        ws = web.WebSocketResponse(max_msg_size=self.server.max_http_buffer_size, compress=False)
        await ws.prepare(request)
        try:
            await self._serve_websocket(ws, request.transport)
        finally:
            self._flush()
            if self._ws_timer is not None:
                self._ws_timer.cancel()
            if not ws.closed:
                await ws.close()
            if self.upgraded:  # else a failed upgrade: the session goes on polling
                await self.close(wait=False, abort=True, reason=self.server.reason.TRANSPORT_CLOSE)
        return ws

    async def _serve_websocket(self, ws: web.WebSocketResponse, transport: Any) -> None:
        limit = self.server.max_http_buffer_size

        async def next_message() -> str | bytes | None:
            msg = await ws.receive()
            if msg.type is not _TEXT and msg.type is not _BINARY:
                return None
            data: str | bytes = msg.data
            return None if len(data) > limit else data

        if self.connected:
            # An upgrade from polling: engineio's handshake (probe ping, then upgrade packet).
            self.upgrading = True  # engineio holds sends in the queue meanwhile
            decoded = _decode(await next_message())
            if decoded is None or decoded.packet_type != eio_packet.PING or decoded.data != "probe":
                self.server.logger.info("%s: Failed websocket upgrade, no PING packet", self.sid)
                self.upgrading = False
                return
            await ws.send_str(eio_packet.Packet(eio_packet.PONG, data="probe").encode())
            await self.queue.put(eio_packet.Packet(eio_packet.NOOP))  # ends the pending poll
            decoded = _decode(await next_message())
            if decoded is None or decoded.packet_type != eio_packet.UPGRADE:
                self.server.logger.info("%s: Failed websocket upgrade", self.sid)
                self.upgraded = self.upgrading = False
                return
            self.upgraded, self.upgrading = True, False
        else:
            self.connected = self.upgraded = True

        # What was queued before is written first; from here on send() writes directly.
        while not self.queue.empty():
            queued = self.queue.get_nowait()
            self.queue.task_done()
            if queued is None:  # engineio's "end the writer": close the WebSocket
                return
            transport.write(ws_frame(queued.encode()))
        self._ws, self._transport = ws, transport
        if self.closed:
            return
        if self.server.guard is not None:
            self.server.guard.websocket_opened(self.sid, transport)

        guard: Guard | None = self.server.guard
        handler = guard.handle if guard is not None else self.server.handlers.get("message")
        sid, logger = self.sid, self.server.logger
        handled = 0
        while True:
            data = await next_message()
            if data is None:
                break  # closed by the client, an error, or too large
            pkt = _decode(data)
            kind = None if pkt is None else pkt.packet_type
            if pkt is None or not (kind == _MESSAGE or kind in _RECEIVED or kind in _IGNORED):
                if guard is not None:
                    guard.malformed(sid, "a WebSocket message that is no Engine.IO packet")
                break
            try:
                if kind == _MESSAGE and handler is not None:
                    # engineio's _trigger_event("message", run_async=False), minus its wrappers
                    try:
                        await handler(sid, pkt.data)
                    except Exception:
                        logger.exception("message async handler error")
                elif kind in _RECEIVED:
                    await self.receive(pkt)  # pong, close, upgrade: engineio's handling
            except exceptions.SocketIsClosedError:
                break
            if self.closed:  # closed by the server (or the client's close packet): done reading
                break
            handled += 1
            if handled == TURN:
                handled = 0
                await asyncio.sleep(0)


class _Flusher:
    """Writes each socket's frames of one turn of the event loop in one ``write`` call."""

    def __init__(self) -> None:
        self.pending: list[FastSocket] = []
        self.scheduled = False

    def add(self, socket: FastSocket) -> None:
        self.pending.append(socket)
        if not self.scheduled:
            self.scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        self.scheduled = False
        pending, self.pending = self.pending, []
        for socket in pending:
            socket._flush()


class FastEngineServer(engineio.AsyncServer):  # type: ignore[misc]
    """engineio's ``AsyncServer`` whose sockets are :class:`FastSocket`."""

    #: guard.py's checks (set by internals.attach_guard); None: engineio's message handler.
    guard: Guard | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.flusher = _Flusher()

    async def _trigger_event(self, event: str, *args: Any, **kwargs: Any) -> Any:
        if event == "connect":
            # engineio has just created the socket (``_handle_connect``) and nothing has used its
            # transport yet; FastSocket adds no state of its own beyond class attributes.
            socket = self.sockets.get(args[0])
            if type(socket) is async_socket.AsyncSocket:
                socket.__class__ = FastSocket
        return await super()._trigger_event(event, *args, **kwargs)
