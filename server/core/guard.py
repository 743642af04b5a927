"""What keeps one client from harming the signaller, on either engine path (internals.py).

- **A malformed packet closes its connection**, as Node's socket.io does: an Engine.IO packet of
  no known type, a Socket.IO packet python-socketio cannot decode (bad JSON, a bad header, nesting
  past the recursion limit), an event that is not a non-empty array named by a string or a number,
  a binary message no packet announced, text where an attachment was due, attachments past
  :data:`MAX_ATTACHMENTS` or the message size limit, a packet for a namespace other than ``/``
  (a *connect* to one is answered ``CONNECT_ERROR``, as both servers do), a client's
  ``CONNECT_ERROR``. python-socketio alone left such connections open and logged a traceback per
  packet. Events that are well formed but odd (named ``connect``, a number, unknown) keep their
  ``error`` answers (docs/protocol.md).
- **A slow reader's backlog is capped**: what waits to be written to one connection (engine.io's
  queue, plus the transport's buffer on the fast path) may not exceed
  ``Settings.max_backlog_bytes``; past it the connection is dropped at once (its room hears
  ``peer_left``, "disconnected") and what waited is freed. Without it, a member that stops
  reading while others send to it grows the server's memory without bound, pings or not.
- **Logging stays bounded**: at most one warning per connection closed this way, at most
  :data:`LOG_BURST` at once and :data:`LOG_PER_MINUTE` a minute overall (the next one counts those
  left out), and never a traceback: inside a kernel they reach the notebook.

How, with python-socketio / python-engineio as they come. Public API: python-socketio's
``serializer=`` (:class:`GuardedPacket` checks each packet as it is decoded, and tells the handlers
whether an acknowledgement was asked for), ``engineio_logger=`` (:class:`_EngineLog`: engineio's
own reports of a request it could not handle close that request's connection), python-engineio's
``on()``, ``disconnect()`` and ``handle_request()``, which :meth:`Guard.attach` routes aiohttp's
requests to, as engineio's own ``attach`` does, knowing meanwhile which connection a request
belongs to, its transport, and failures engineio lets escape. Beyond that, two hooks into
internals, through internals.py and only on the releases it checked them on: the Engine.IO
handlers python-socketio registers (wrapped here), and each socket's outgoing queue (a
:class:`MeteredQueue`, which learns its connection from the open packet, the protocol's first).
Without the first, a connection that sends junk is still closed, by its transport (engineio
reports the failure to :class:`_EngineLog`), and relays take ``sio.emit``; without the second,
nothing caps a slow reader's backlog (a warning says which, once). python-socketio before 5.16.2
also keeps the unfinished binary packet of a connection the guard closes mid-packet (at most the
size limit each; before 5.16.4, of any connection closed mid-packet).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
import logging
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import socketio
from aiohttp import web
from socketio import packet as sio_packet

from . import internals
from .ratelimit import TokenBucket

log = logging.getLogger("ipymeet.server")

#: Whether the event being handled carries a Socket.IO acknowledgement id (set as it is decoded).
ack_requested: contextvars.ContextVar[bool] = contextvars.ContextVar("ack", default=False)

#: Event names python-socketio reserves for a connection's lifecycle, and "*": python-socketio
#: hands an event named like these to the lifecycle handler, or for "*" to the catch-all without
#: its name (so the first argument would be taken for the sid). They reach the catch-all as
#: :class:`ReservedName` instead.
RESERVED_EVENTS = frozenset({"connect", "disconnect", "connect_error", "*"})

#: Binary attachments one packet may announce (the protocol's ``frame`` carries one).
MAX_ATTACHMENTS = 64
#: Warnings about closed connections: at most this many at once, and this many a minute.
LOG_BURST = 10
LOG_PER_MINUTE = 10
#: How long closing a connection may wait for engine.io to hand over its close packet.
CLOSE_WAIT = 1.0
#: How long a closed connection's socket stays open for its last packets (the ``error`` answers,
#: Socket.IO's disconnect, so that a client does not reconnect); then it is closed, sent or not.
CLOSE_GRACE = 1.0
#: Engine.IO's open packet type (protocol v4): the first packet queued for a new socket.
_EIO_OPEN = 0


class Malformed(ValueError):
    """A packet no Socket.IO client sends: its connection is closed."""


@dataclass(frozen=True)
class ReservedName:
    """The name of an event a client named like a lifecycle event (see RESERVED_EVENTS)."""

    name: str

    def __str__(self) -> str:
        return self.name


def describe(failure: BaseException) -> str:
    """One line for a log, without a traceback."""
    return f"{type(failure).__name__}: {str(failure)[:160]}"


def packet_class(max_attachment_bytes: int) -> type[socketio.packet.Packet]:
    """A :class:`GuardedPacket` class whose attachments may add up to ``max_attachment_bytes``."""
    return type("GuardedPacket", (GuardedPacket,), {"max_attachment_bytes": max_attachment_bytes})


class GuardedPacket(socketio.packet.Packet):  # type: ignore[misc]
    """python-socketio's packet, refusing what a Socket.IO client never sends (see above).

    Given as ``serializer=``, its ``decode`` runs for every packet a client sends, in the task
    that then handles it (``async_handlers=False``), so :data:`ack_requested` is set for the
    handler: docs/protocol.md answers a refused dialect-2 request in its acknowledgement when it
    asked for one, else with an ``error`` event, and python-socketio does not tell handlers which.
    """

    max_attachment_bytes = 256 * 1024
    _received = 0

    def decode(self, encoded_packet: Any) -> int:
        if not isinstance(encoded_packet, str):
            raise Malformed("a binary message that no packet announced")
        try:
            count = int(super().decode(encoded_packet) or 0)
        except Exception as failure:  # bad JSON, a bad header, nesting deeper than the decoder
            raise Malformed(f"undecodable packet ({describe(failure)})") from None
        kind, data = self.packet_type, self.data
        if self.namespace not in (None, "/") and kind != sio_packet.CONNECT:
            raise Malformed(f"a packet for namespace {str(self.namespace)[:32]!r}")
        binary = kind in (sio_packet.BINARY_EVENT, sio_packet.BINARY_ACK)
        if binary and not 0 < count <= MAX_ATTACHMENTS:
            raise Malformed(f"a binary packet announcing {count} attachments")
        if count and not binary:
            raise Malformed("attachments announced on a packet that takes none")
        if kind in (sio_packet.EVENT, sio_packet.BINARY_EVENT):
            if type(data) is not list or not data:
                raise Malformed("an event that is not a non-empty array")
            name = data[0]
            if type(name) is str:
                if name in RESERVED_EVENTS:
                    data[0] = ReservedName(name)
            elif type(name) is not int:
                raise Malformed("an event named by neither a string nor a number")
            if kind == sio_packet.EVENT:
                ack_requested.set(self.id is not None)
        elif kind in (sio_packet.ACK, sio_packet.BINARY_ACK):
            if type(data) is not list:
                raise Malformed("an acknowledgement that is not an array")
        elif kind == sio_packet.CONNECT:
            if data is not None and type(data) is not dict:
                raise Malformed("a connect whose auth is not an object")
        elif kind == sio_packet.DISCONNECT:
            if data is not None:
                raise Malformed("a disconnect with a payload")
        else:  # CONNECT_ERROR is the server's to send; anything else is no packet type
            raise Malformed(f"Socket.IO packet type {kind!r}")
        return count

    def add_attachment(self, attachment: Any) -> bool:
        if not isinstance(attachment, bytes):
            raise Malformed("text where a binary attachment was due")
        self._received += len(attachment)
        if self._received > self.max_attachment_bytes:
            raise Malformed("binary attachments over the message size limit")
        done = bool(super().add_attachment(attachment))
        if done and self.packet_type == sio_packet.BINARY_EVENT:
            ack_requested.set(self.id is not None)
        return done


def _size(item: Any) -> int:
    data = getattr(item, "data", None)
    return len(data) if isinstance(data, str | bytes | bytearray) else 16


class MeteredQueue(asyncio.Queue[Any]):
    """engine.io's outgoing queue for one socket, counting what waits in it.

    Sizes are the packets' lengths (characters for text, which is ASCII for signalling). Past
    the guard's cap it reports an overflow; once cut, it drops what is put in it (except engineio's
    None, which ends its writer) and frees what waited.
    """

    def __init__(self, guard: Guard) -> None:
        super().__init__()
        self._guard = guard
        self.eio_sid: str | None = None
        self.size = 0
        self.cut_off = False

    def put_nowait(self, item: Any) -> None:
        if self.cut_off and item is not None:
            return  # the connection is being dropped; nobody will read it
        super().put_nowait(item)
        if self.size > self._guard.cap and self.eio_sid is not None and not self.cut_off:
            self._guard.overflow(self.eio_sid, self.size)

    def _put(self, item: Any) -> None:
        super()._put(item)
        if item is None:
            return
        self.size += _size(item)
        if self.eio_sid is None:
            data = getattr(item, "data", None)
            if getattr(item, "packet_type", None) == _EIO_OPEN and isinstance(data, dict):
                self.eio_sid = str(data.get("sid"))
                self._guard.queue_opened(self.eio_sid, self)

    def _get(self) -> Any:
        item = super()._get()
        if item is not None:
            self.size -= _size(item)
        return item

    def cut(self) -> None:
        """Drop what waits and whatever comes; engineio's writer only hears its None."""
        self.cut_off = True
        ends = 0
        while not self.empty():
            ends += self.get_nowait() is None
            self.task_done()
        for _ in range(ends):
            super().put_nowait(None)


@dataclass(slots=True)
class Link:
    """What the guard knows of one Engine.IO connection."""

    eio_sid: str
    peer: str = "?"
    #: The TCP transport of its WebSocket, once it has one (polling has none of its own).
    transport: asyncio.Transport | None = None
    queue: MeteredQueue | None = None


@dataclass(slots=True)
class _Request:
    """The engine.io request being handled in this task (set by :meth:`Guard.attach`'s route)."""

    request: web.BaseRequest
    websocket: bool
    eio_sid: str | None
    warned: bool = False


_request: contextvars.ContextVar[_Request | None] = contextvars.ContextVar(
    "ipymeet_engine_request", default=None
)
#: The Engine.IO session whose Socket.IO connect packet is being handled (for the handler).
_connecting: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "ipymeet_connecting", default=None
)


def connecting_engine_sid() -> str | None:
    """In the Socket.IO ``connect`` handler: the Engine.IO session the client arrived on."""
    return _connecting.get()


def current_request() -> web.BaseRequest | None:
    """The engine.io request this task is handling, if any (set by :meth:`Guard.attach`)."""
    state = _request.get()
    return None if state is None else state.request


class _EngineLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """python-engineio's logger: its info drops; an error it reports while handling a client's
    request (a packet it could not parse, a handler that raised) closes that connection, with
    one bounded warning and no traceback."""

    def __init__(self, guard: Guard) -> None:
        super().__init__(logging.getLogger("engineio.server"), {})
        self._guard = guard

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        if level < logging.ERROR:
            return
        try:
            text = str(msg) % args if args else str(msg)
        except (TypeError, ValueError):
            text = str(msg)
        failure = sys.exc_info()[1] if kwargs.get("exc_info") else None
        self._guard.engine_error(text, failure)


Handler = Callable[..., Awaitable[Any]]


class Guard:
    """The checks above, for one signaller's python-socketio server.

    Example::

        guard = Guard(max_backlog=4 << 20, max_message=256 << 10)
        sio = socketio.AsyncServer(serializer=guard.packet_class, engineio_logger=guard.engine_log)
        guard.install(sio)
        guard.attach(app)  # instead of sio.attach(app)
    """

    def __init__(self, *, max_backlog: int, max_message: int, path: str = "/socket.io") -> None:
        self.cap = max_backlog
        self.path = path
        self.packet_class = packet_class(max_message)
        self.engine_log = _EngineLog(self)
        self.links: dict[str, Link] = {}
        #: Socket.IO's side of ending a connection (the signaller's): disconnect it, so that its
        #: rooms hear of it and the client is told not to come back.
        self.on_end: Callable[[str], Awaitable[None]] | None = None
        #: Connections being ended whose sockets are still open (what they send is dropped).
        self._ending: set[str] = set()
        self._logs = TokenBucket(LOG_PER_MINUTE / 60.0, LOG_BURST)
        self._unlogged = 0
        self._eio: Any = None
        self._sio_message: Handler | None = None
        self._sio_connect: Handler | None = None
        self._sio_disconnect: Handler | None = None
        self._disconnect_args = 1
        self._tasks: set[asyncio.Task[Any]] = set()
        self._said: set[str] = set()
        #: Whether the engine's WebSocket transport reports its own failures and transports to
        #: the guard (fastio.py, through :meth:`websocket_opened`).
        self.websockets_guarded = False
        #: Whether :meth:`install` found python-socketio's Engine.IO handlers to wrap.
        self.installed = False
        #: Whether each Engine.IO socket's queue is a :class:`MeteredQueue` (the backlog cap).
        self.metered = False

    # -- set-up -------------------------------------------------------------------------------

    def install(self, sio: socketio.AsyncServer) -> None:
        """Wrap the Engine.IO handlers python-socketio registered, and meter each socket's queue
        (both through internals.py, where it allows them)."""
        eio = self._eio = sio.eio
        registered = internals.engine_handlers(eio)
        if registered is None:
            self._say_once(
                "hooks",
                "ipymeet: the guard does not wrap this python-socketio's Engine.IO handlers: "
                "connections that send junk are closed by their transport only, and a slow "
                "reader's backlog is not capped",
            )
            return
        self._sio_connect = registered["connect"]
        self._sio_message = registered["message"]
        self._sio_disconnect = registered["disconnect"]
        with contextlib.suppress(TypeError, ValueError):
            self._disconnect_args = len(inspect.signature(registered["disconnect"]).parameters)
        eio.on("connect", self._on_connect)
        eio.on("message", self.message)
        eio.on("disconnect", self._on_disconnect)
        self.metered = internals.meter_queues(eio, self._new_queue)
        self.installed = True

    def attach(self, app: web.Application, path: str | None = None) -> None:
        """Route the engine.io endpoint's requests to python-engineio (as its ``attach`` does),
        through :meth:`handle_request`. Instead of ``sio.attach(app)``."""
        endpoint = f"{path or self.path}/"
        # A WebSocket's GET lasts as long as its connection, and so would a frame of ours, about
        # 0.5 KB each: on the fast path, whose transport guards its WebSockets itself (and which
        # needs no request for the origin check), GETs go to engineio directly.
        get = self._eio.handle_request if self.websockets_guarded else self.handle_request
        app.router.add_route("GET", endpoint, get)
        for method in ("POST", "OPTIONS"):
            app.router.add_route(method, endpoint, self.handle_request)

    async def handle_request(self, request: web.Request) -> web.StreamResponse:
        """engineio's ``handle_request``, knowing which connection a request belongs to (for
        its logger) and the transport of a WebSocket upgraded from polling."""
        websocket = request.headers.get("Upgrade", "").lower() == "websocket"
        state = _Request(request, websocket, request.query.get("sid"))
        if websocket and state.eio_sid is not None:  # an upgrade from polling
            link = self.links.get(state.eio_sid)
            if link is not None:
                link.transport = request.transport
        token = _request.set(state)
        try:
            response: web.StreamResponse = await self._eio.handle_request(request)
        except ConnectionError:
            raise
        except Exception as failure:  # engineio let a client's packet escape (stock path)
            self.engine_failed(state, f"a request it could not handle ({describe(failure)})")
            return web.Response(status=400)
        finally:
            _request.reset(token)
        return response

    def _new_queue(self) -> MeteredQueue:
        return MeteredQueue(self)

    def queue_opened(self, eio_sid: str, queue: MeteredQueue) -> None:
        self.links.setdefault(eio_sid, Link(eio_sid)).queue = queue

    def websocket_opened(self, eio_sid: str, transport: asyncio.Transport) -> None:
        """The connection's WebSocket has taken over (from fastio.py)."""
        link = self.links.get(eio_sid)
        if link is not None:
            link.transport = transport
            peer = transport.get_extra_info("peername")
            if peer and link.peer == "?":
                link.peer = str(peer[0])

    # -- the wrapped Engine.IO handlers --------------------------------------------------------

    async def _on_connect(self, eio_sid: str, environ: dict[str, Any], *rest: Any) -> Any:
        link = self.links.setdefault(eio_sid, Link(eio_sid))
        state = _request.get()
        if state is not None:
            state.eio_sid = eio_sid
            link.peer = str(state.request.remote or "?")
            if state.websocket:
                link.transport = state.request.transport
        if link.queue is None:
            self._say_once(
                "queue",
                "ipymeet: this python-engineio's queues are not metered: a slow reader's "
                "backlog is capped on the fast path's WebSockets only",
            )
        assert self._sio_connect is not None
        return await self._sio_connect(eio_sid, environ, *rest)

    async def _on_disconnect(self, eio_sid: str, *reason: Any) -> Any:
        self.links.pop(eio_sid, None)
        assert self._sio_disconnect is not None
        return await self._sio_disconnect(eio_sid, *reason[: max(0, self._disconnect_args - 1)])

    async def message(self, eio_sid: str, data: Any) -> None:
        """Engine.IO's ``message`` handler. One yield per message first: engineio handles a
        connection's buffered messages one after another, so a flooding client would otherwise
        hold the loop for as long as its backlog lasts (fastio's reader yields by itself)."""
        await asyncio.sleep(0)
        await self.handle(eio_sid, data)

    async def handle(self, eio_sid: str, data: Any) -> None:
        """Hand one Engine.IO message to python-socketio; close its connection if it is bad."""
        if eio_sid in self._ending:
            return  # being closed: what it still sends is dropped
        if data == "":  # python-socketio would take it for an event with no data
            self.malformed(eio_sid, "an empty message")
            return
        assert self._sio_message is not None
        token = _connecting.set(eio_sid) if data[:1] == "0" else None  # Socket.IO's connect
        try:
            await self._sio_message(eio_sid, data)
        except Exception as failure:  # only python-socketio raises: the handlers never do
            why = str(failure) if isinstance(failure, Malformed) else describe(failure)
            self.malformed(eio_sid, why)
        finally:
            if token is not None:
                _connecting.reset(token)

    # -- closing ------------------------------------------------------------------------------

    def malformed(self, eio_sid: str, why: str) -> None:
        """Close a connection that sent a malformed packet (one warning at most)."""
        if eio_sid in self._ending:
            return
        link = self.links.get(eio_sid)
        peer = link.peer if link is not None else "?"
        self.warn(f"ipymeet: closed a connection from {peer}: {why}")
        self.end(eio_sid)

    def overflow(self, eio_sid: str, size: int) -> None:
        """A connection with more than the cap waiting to be sent to it: drop it at once."""
        link = self.links.get(eio_sid)
        if link is None or eio_sid in self._ending:
            return
        self.warn(
            f"ipymeet: dropped a connection from {link.peer}: {size} bytes waited to be sent to "
            f"it, over max_backlog_bytes ({self.cap}); it stopped reading"
        )
        self.end(eio_sid, abort=True)

    def end(self, eio_sid: str, *, abort: bool = False) -> None:
        """Close a connection: Socket.IO (its rooms hear ``peer_left``), Engine.IO, its socket.

        ``abort``: drop what waits to be sent (a slow reader) rather than let it go first.
        """
        if eio_sid in self._ending:
            return
        link = self.links.get(eio_sid) or Link(eio_sid)
        self._ending.add(eio_sid)
        if abort and link.queue is not None:
            link.queue.cut()
        if abort and link.transport is not None:
            link.transport.abort()  # frees its buffer now; the readers see the connection end
        task = asyncio.ensure_future(self._close(link))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _close(self, link: Link) -> None:
        try:
            if self.on_end is not None:
                await self.on_end(link.eio_sid)
            if self._eio is not None:
                # engineio's disconnect waits for its close packet to be taken from the queue,
                # which a client that does not poll never does; the socket is closed all the same.
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._eio.disconnect(link.eio_sid), CLOSE_WAIT)
            if link.queue is not None:
                # What ends python-engineio's WebSocket writer once it has sent what came before
                # (the close packet): it then closes the WebSocket. (fastio's reader closes it at
                # the client's next message.)
                link.queue.put_nowait(None)
            if link.transport is not None and not link.transport.is_closing():
                await asyncio.sleep(CLOSE_GRACE)
        finally:
            self._ending.discard(link.eio_sid)
            # A client that ignores the close packets would go on sending: its socket is closed
            # (also when the server shuts down meanwhile).
            if link.transport is not None and not link.transport.is_closing():
                link.transport.close()

    def engine_error(self, text: str, failure: BaseException | None) -> None:
        """python-engineio logged an error: about a client's request, or its own."""
        state = _request.get()
        if failure is not None and state is not None:
            self.engine_failed(state, f"{text} ({describe(failure)})")
        elif failure is not None:
            self.warn(f"python-engineio: {text} ({describe(failure)})")
        else:  # a request it refused (an origin, an unknown session), logged once per kind
            self.warn(f"python-engineio: {text}", level=logging.INFO)

    def engine_failed(self, state: _Request, why: str) -> None:
        if state.eio_sid is not None:
            if state.eio_sid in self.links:
                self.malformed(state.eio_sid, why)
            # else a session already closed, or never opened: python-engineio raises for a
            # POST to one (KeyError) where it answers a GET 400; there is nothing to close.
            return
        if not state.warned:
            state.warned = True
            self.warn(f"ipymeet: closed a connection from {state.request.remote}: {why}")
        transport = state.request.transport
        if transport is not None and state.websocket:
            transport.close()

    # -- logging ------------------------------------------------------------------------------

    def warn(self, message: str, level: int = logging.WARNING) -> None:
        """A warning (or ``level``), within the overall budget (see the module docstring)."""
        if not self._logs.take():
            self._unlogged += 1
            return
        if self._unlogged:
            message += f" ({self._unlogged} more like it were not logged)"
            self._unlogged = 0
        log.log(level, "%s", message)

    def _say_once(self, key: str, message: str) -> None:
        if key not in self._said:
            self._said.add(key)
            log.warning("%s", message)
