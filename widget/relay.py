"""The kernel route: a page's signalling through its widget's comm, relayed by its kernel.

A page that cannot reach the signaller's port (Voilà on a server, Binder, a hub without
jupyter-server-proxy) can still reach its kernel. It sends its signalling as custom messages
(``sig_connect``, ``sig_request``, ``sig_send``, ``sig_close``: ``widget/messages.py``), and the
kernel opens a Socket.IO connection of its own to the signaller for it, with the widget's key, and
sends back what the signaller says (``sig_open``, ``sig_event``, ``sig_answer``,
``sig_dropped``). The protocol is docs/protocol.md's, section "The kernel route".

Threads: one daemon thread, "ipymeet-relay", with its own asyncio loop (server/core/loopthread.py)
serves every widget of the kernel. A page's message reaches the widget on the kernel's thread
(between cells: a running cell holds it back) and crosses to the relay thread once
(``call_soon_threadsafe``); everything back to the page is sent from the relay thread, so it goes
out at once even while a cell runs. Nothing polls.

Bounds: each widget has at most one live connection (:class:`KernelRoute`); a new ``sig_connect``
replaces it (the old one is closed before the new one opens, and a burst of them opens only the
last), so a page cannot make the kernel open connections without bound. What a page asks to send
is checked in ``widget/messages.py``; the signaller checks it again and limits its rate.

:func:`watch_busy` tells the widgets when a cell starts and ends (IPython's ``pre_execute`` and
``post_execute``, but not those the comm package fires around each comm message), so a page knows
why its messages wait, and says so.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import functools
import logging
import sys
import threading
import weakref
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, Protocol

import aiohttp
import socketio

from ..server.core.access import widget_room_allows
from ..server.core.loopthread import LoopThread
from .contract import SIGNALLER_EVENTS
from .messages import KernelMessage, RouteMessage

log = logging.getLogger("ipymeet")

#: How long the kernel tries to open one connection to the signaller (it is on this machine;
#: the page gives up after 4 s, so it hears the reason first).
CONNECT_TIMEOUT = 3.0

#: Longest reason sent to the page.
MAX_REASON = 200


class Endpoint(Protocol):
    """What the relay needs of the kernel's signaller (``binding.server``)."""

    @property
    def url(self) -> str: ...

    @property
    def fingerprint(self) -> str | None: ...


Send = Callable[[KernelMessage], None]


# -- the relay thread ------------------------------------------------------------------------------


class RelayThread:
    """The named daemon thread with its own loop (a :class:`~..server.core.loopthread.LoopThread`)
    for every route connection of this kernel.

    Other threads only hand it callbacks (:meth:`call`); its connections live on its loop.
    """

    def __init__(self) -> None:
        self._loops = LoopThread("ipymeet-relay")
        #: The live connections (loop thread only), closed on :meth:`stop`.
        self.connections: set[_Connection] = set()

    def start(self) -> RelayThread:
        self._loops.start()
        return self

    @property
    def running(self) -> bool:
        return bool(self._loops.running)

    def call(self, callback: Callable[..., None], *args: Any) -> None:
        """Run ``callback(*args)`` on the relay's loop, in the order called (any thread);
        dropped once the relay is stopping."""
        self._loops.call_soon(callback, *args)

    def stop(self, timeout: float = 5.0) -> None:
        """Close every connection and end the thread. Idempotent."""
        if not self._loops.running:
            self._loops.stop(timeout)
            return
        with contextlib.suppress(Exception):  # timed out, or stopped meanwhile
            self._loops.run(self._close_all(), timeout)
        self._loops.stop(timeout)

    async def _close_all(self) -> None:
        await asyncio.gather(
            *(connection.close() for connection in list(self.connections)),
            return_exceptions=True,
        )


_relay: RelayThread | None = None
_relay_lock = threading.Lock()


def relay_thread() -> RelayThread:
    """This process's relay thread, started on first use (and stopped at exit)."""
    global _relay
    with _relay_lock:
        if _relay is None or not _relay.running:
            _relay = RelayThread().start()
            atexit.register(_relay.stop)
        return _relay


# -- one widget's route ----------------------------------------------------------------------------


class KernelRoute:
    """One widget's route to ``server``: at most one live connection, numbered by the page.

    ``send`` is the widget's ``send_msg``; it is called on the relay thread only. ``room`` gives
    the widget's room as Python set it: the only room the page may ``enter`` through this route
    (server/core/access.py; a Voilà visitor's page must not reach the owner's other rooms).
    Example::

        route = KernelRoute(room._client, binding.server, room.send_msg, lambda: room.room)
        route.take({"type": "sig_connect", "n": 1}, [])      # the page's message
        ...                                                  # -> sig_open {n: 1}
        route.close()
    """

    def __init__(self, client: str, server: Endpoint, send: Send, room: Callable[[], str]) -> None:
        self.client = client
        self.server = server
        self._send = send
        self._room = room
        self._refused = 0
        self._relay = relay_thread()
        # The rest lives on the relay's loop.
        #: The connection the page wants open (its latest ``sig_connect``), or None.
        self._wanted: int | None = None
        self._live: _Connection | None = None
        self._following: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self._failed_sends = 0

    def take(self, message: RouteMessage, buffers: Sequence[bytes]) -> None:
        """Relay one checked message of the page's (any thread: it crosses to the relay once)."""
        buffer = bytes(buffers[0]) if buffers else None
        self._relay.call(self._take, message, buffer)

    def close(self) -> None:
        """Close the live connection, if any, without telling the page (its widget is closing)."""
        self._relay.call(self._close)

    # -- on the relay's loop --------------------------------------------------------------------

    def _take(self, message: RouteMessage, buffer: bytes | None) -> None:
        if self._closed:
            return
        if message["type"] == "sig_connect":
            self._wanted = message["n"]
            self._follow()
            return
        if message["type"] == "sig_close":
            if self._wanted == message["n"]:
                self._wanted = None
                self._follow()
            return
        live = self._live
        if live is None or live.n != message["n"] or not live.open:
            return  # what is left of an older connection, or one that just dropped
        if message["type"] == "sig_request":
            event, payload = message["event"], message["payload"]
            if event == "enter" and not widget_room_allows(self._room(), payload.get("room")):
                self._refuse_enter(live.n, message["id"], payload.get("room"))
                return
            self._spawn(live.request(message["id"], event, payload))
        elif message["type"] == "sig_signals":
            for payload in message["payloads"]:
                self._spawn(live.request(0, "signal", payload))
        else:
            self._spawn(live.emit(message["event"], message["payload"], buffer))

    def _refuse_enter(self, n: int, request_id: int, asked: object) -> None:
        """Door RELAY (server/core/access.py): an ``enter`` for a room that is not the widget's is
        answered here, never sent on; logged once per route."""
        self._refused += 1
        if self._refused == 1:
            log.warning("ipymeet: the kernel route refused an enter for a room not its widget's")
        reply = {
            "ok": False,
            "code": "forbidden",
            "reason": "other_room",
            "message": f"this widget's room is {self._room()!r}, not {str(asked)[:64]!r}: "
            "a page enters only the room its widget was given in Python",
        }
        self.deliver({"type": "sig_answer", "n": n, "id": request_id, "reply": reply})

    def _close(self) -> None:
        self._closed = True
        self._wanted = None
        self._follow()

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _follow(self) -> None:
        if self._following is None or self._following.done():
            self._following = asyncio.get_running_loop().create_task(self._reconcile())

    async def _reconcile(self) -> None:
        """Bring the live connection to the one wanted: close any other first, then open it."""
        while True:
            live = self._live
            if live is not None and (live.n != self._wanted or live.ended):
                self._live = None
                await live.close()
                continue
            n = self._wanted
            if n is None or live is not None:
                return
            connection = _Connection(n, self)
            self._live = connection
            problem = await connection.connect()
            if self._wanted != n:
                continue  # replaced or closed meanwhile: the loop closes it
            if problem is None:
                self.deliver({"type": "sig_open", "n": n})
            else:
                self._wanted = None
                self.deliver({"type": "sig_dropped", "n": n, "reason": problem})

    def dropped(self, connection: _Connection, reason: str) -> None:
        """``connection`` ended without the page or the widget asking."""
        if self._live is connection and self._wanted == connection.n:
            self._wanted = None
            self.deliver({"type": "sig_dropped", "n": connection.n, "reason": reason})
        self._follow()

    def deliver(self, message: KernelMessage) -> None:
        """Send ``message`` to the page, from the relay thread."""
        if self._closed:
            return
        try:
            self._send(message)
        except Exception:
            self._failed_sends += 1
            if self._failed_sends == 1:
                log.exception("ipymeet: the kernel route could not send to the page")


class _Connection:
    """One Socket.IO connection to the signaller for the page's route connection ``n``."""

    def __init__(self, n: int, route: KernelRoute) -> None:
        self.n = n
        self.route = route
        #: Connected, and not closing.
        self.open = False
        #: Closed or dropped: no longer of use.
        self.ended = False
        # The signaller may have moved since the last connection (another kernel took over).
        self.url = route.server.url
        options: dict[str, Any] = {}
        fingerprint = route.server.fingerprint if self.url.startswith("https:") else None
        if fingerprint is not None:
            # Its own certificate (self-signed, say), pinned by its fingerprint.
            digest = bytes.fromhex(fingerprint.replace(":", ""))
            options["websocket_extra_options"] = {"ssl": aiohttp.Fingerprint(digest)}
        # The page reconnects itself (with a new n), so the client must not.
        self.sio = socketio.AsyncClient(reconnection=False, handle_sigint=False, **options)
        for event in SIGNALLER_EVENTS:
            self.sio.on(event, functools.partial(self._event, event))
        self.sio.on("disconnect", self._disconnected)

    async def connect(self) -> str | None:
        """Open it; None when open, else why not (in words for the page)."""
        self.route._relay.connections.add(self)
        auth = {"client": self.route.client}
        try:
            await asyncio.wait_for(
                self.sio.connect(self.url, auth=auth, transports=["websocket"], wait_timeout=2),
                CONNECT_TIMEOUT,
            )
        except asyncio.TimeoutError:
            await self.close()
            return f"the kernel could not reach its signaller within {CONNECT_TIMEOUT:g} s"
        except Exception as error:  # a refusal, an unreachable port, a bad certificate
            await self.close()
            return f"the kernel could not reach its signaller: {error}"[:MAX_REASON]
        if self.ended:
            return "closed"
        self.open = True
        return None

    async def request(self, request_id: int, event: str, payload: dict[str, Any]) -> None:
        def answer(*reply: Any) -> None:
            if request_id == 0:
                return  # the page wants no answer (its signals), and none goes back
            message: KernelMessage = {
                "type": "sig_answer",
                "n": self.n,
                "id": request_id,
                "reply": reply[0] if reply else None,
            }
            self.route.deliver(message)

        # Not connected any more: its drop reaches the page, which fails what it waits for.
        with contextlib.suppress(socketio.exceptions.SocketIOError):
            await self.sio.emit(event, payload, callback=answer)

    async def emit(self, event: str, payload: dict[str, Any], buffer: bytes | None) -> None:
        data: Any = payload if buffer is None else (payload, buffer)
        with contextlib.suppress(socketio.exceptions.SocketIOError):
            await self.sio.emit(event, data)

    def _event(self, event: str, *args: Any) -> None:
        if self.open:
            data = args[0] if args else None
            self.route.deliver({"type": "sig_event", "n": self.n, "event": event, "data": data})

    def _disconnected(self, *args: Any) -> None:
        was_open = self.open
        self.open = False
        if self.ended:
            return
        self.ended = True
        self.route._relay.connections.discard(self)
        if was_open:
            reason = str(args[0]) if args else "disconnected"
            self.route.dropped(self, reason[:MAX_REASON])

    async def close(self) -> None:
        """Close it; no drop is reported. Idempotent."""
        self.open = False
        self.ended = True
        self.route._relay.connections.discard(self)
        with contextlib.suppress(Exception):
            await self.sio.disconnect()


# -- whether a cell is running ---------------------------------------------------------------------

_busy = False
_busy_lock = threading.Lock()
_watchers: list[weakref.WeakMethod[Callable[[bool], None]]] = []
_hooked = False


def watch_busy(listener: Callable[[bool], None]) -> tuple[bool, Callable[[], None]]:
    """Call ``listener(busy)`` when a cell of this kernel starts (True) and ends (False).

    Returns whether a cell is running now, and the unsubscribe. ``listener`` is held weakly (a
    bound method of a widget). The IPython hooks are registered once, and only inside IPython;
    elsewhere nothing is ever reported and a cell never runs.
    """
    global _busy, _hooked
    method = weakref.WeakMethod(listener)
    with _busy_lock:
        if not _hooked:
            shell = _shell()
            if shell is not None:
                _busy = _in_a_cell(shell)
                shell.events.register("pre_execute", _cell_started)
                shell.events.register("post_execute", _cell_ended)
            _hooked = True
        _watchers.append(method)
        busy = _busy

    def unsubscribe() -> None:
        with _busy_lock, contextlib.suppress(ValueError):
            _watchers.remove(method)

    return busy, unsubscribe


def _shell() -> Any:
    """The running IPython shell, or None (without importing IPython where it is not loaded)."""
    ipython = sys.modules.get("IPython")
    get_ipython = getattr(ipython, "get_ipython", None)
    return get_ipython() if callable(get_ipython) else None


def _handling(shell: Any) -> str | None:
    """The type of the message the kernel is handling now (None outside a kernel)."""
    kernel = getattr(shell, "kernel", None)
    try:
        parent = kernel.get_parent("shell") if kernel is not None else None
    except Exception:
        return None
    header = parent.get("header") if isinstance(parent, dict) else None
    kind = header.get("msg_type") if isinstance(header, dict) else None
    return kind if isinstance(kind, str) else None


def _in_a_cell(shell: Any) -> bool:
    """Whether a cell is running now: the first widget is usually made by one, after its
    ``pre_execute``, and its ``post_execute`` is still to come."""
    return _handling(shell) == "execute_request"


def _cell_started() -> None:
    if not _for_a_comm():
        _tell(True)


def _cell_ended() -> None:
    if not _for_a_comm():
        _tell(False)


def _for_a_comm() -> bool:
    """Whether the hooks fire around a comm message, not a cell: the comm package fires them
    around each one it hands a widget. Told, every message of a page (each signalling message on
    the kernel route, each trait it writes) would cost every widget of the kernel two trait
    updates back (busy, then idle) for a few milliseconds of no use to anyone."""
    return _handling(_shell()) == "comm_msg"


def _tell(busy: bool) -> None:
    global _busy
    with _busy_lock:
        _busy = busy
        _watchers[:] = [method for method in _watchers if method() is not None]
        listeners = [method() for method in _watchers]
    for listener in listeners:
        if listener is None:
            continue
        try:
            listener(busy)
        except Exception:
            log.exception(
                "ipymeet: telling a widget that the kernel is %s failed", "busy" if busy else "idle"
            )
