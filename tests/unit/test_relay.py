"""The kernel route (widget/relay.py): a page signalling through its widget's comm, relayed by
the kernel to a real signaller.

The page's part is played by calling the widget's comm handler with the page's messages, and by
catching what the kernel sends back (``send_msg`` replaced on the instance); the others in the
room are real Socket.IO clients that reach the signaller directly, each on a loop of its own.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest
import socketio

from ipymeet import VideoRoom, kernel_signaller
from ipymeet.server import SignallerThread
from ipymeet.widget import relay
from ipymeet.widget.messages import parse_browser_message

from ..support import MakeSignaller, wait_until

Message = dict[str, Any]
OFFER = {"type": "offer", "sdp": "v=0\r\n"}
SESSION = "s" * 24


class Page:
    """What the page sends the kernel, and what the kernel sends back (from any thread)."""

    def __init__(self) -> None:
        self.received: list[Message] = []
        self._changed = threading.Condition()

    def catch(self, content: Any) -> None:
        with self._changed:
            self.received.append(dict(content))
            self._changed.notify_all()

    def wait(self, predicate: Callable[[Message], bool], timeout: float = 5.0) -> Message:
        """The first message the kernel sent that matches ``predicate`` (waiting for it)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for message in self.received:
                    if predicate(message):
                        return message
                left = deadline - time.monotonic()
                assert left > 0, f"the kernel never sent it; it sent {self.received}"
                self._changed.wait(left)

    def of(self, kind: str, n: int | None = None) -> list[Message]:
        with self._changed:
            return [m for m in self.received if m["type"] == kind and n in (None, m.get("n"))]


class WidgetPage(Page):
    """The page of a real VideoRoom: its messages go through the widget's comm handler."""

    def __init__(self, room: VideoRoom) -> None:
        super().__init__()
        self.room = room
        room.send_msg = self.catch  # type: ignore[method-assign]

    def send(self, content: Message, buffers: Sequence[bytes] = ()) -> None:
        self.room._on_browser_message(None, content, list(buffers))

    def connect(self, n: int) -> Message:
        self.send({"type": "sig_connect", "n": n})
        return self.wait(lambda m: m["type"] in ("sig_open", "sig_dropped") and m["n"] == n)

    def request(self, n: int, request_id: int, event: str, payload: Message) -> Any:
        self.send(
            {"type": "sig_request", "n": n, "id": request_id, "event": event, "payload": payload}
        )
        return self.wait(lambda m: m["type"] == "sig_answer" and m["id"] == request_id)["reply"]


class RoutePage(Page):
    """The page of a bare KernelRoute (to a signaller of the test's own)."""

    def __init__(self, server: SignallerThread, client: str = "k-route", room: str = "") -> None:
        super().__init__()
        #: Its widget's room: the only one the route relays an ``enter`` for.
        self.route = relay.KernelRoute(client, server, self.catch, lambda: room)

    def send(self, content: Message, buffers: Sequence[bytes] = ()) -> None:
        self.route.take(parse_browser_message(content, buffers), buffers)  # type: ignore[arg-type]

    def connect(self, n: int) -> Message:
        self.send({"type": "sig_connect", "n": n})
        return self.wait(lambda m: m["type"] in ("sig_open", "sig_dropped") and m["n"] == n)


class Guest:
    """A page that reaches the signaller directly: a real Socket.IO client on its own thread."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.events: list[tuple[str, Any]] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self.sio = socketio.AsyncClient(reconnection=False)
        for event in ("peer_joined", "peer_left", "signal", "error"):
            self.sio.on(event, self._recorder(event))

    def _recorder(self, event: str) -> Callable[[Any], None]:
        return lambda data: self.events.append((event, data))

    def run(self, coroutine: Any, timeout: float = 5.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)

    def enter(self, room: str, name: str) -> Message:
        self.run(self.sio.connect(self.url, transports=["websocket"]))
        ack: Message = self.run(self.sio.call("enter", {"room": room, "name": name}, timeout=5))
        assert ack["ok"], ack
        return ack

    def wait(self, event: str, timeout: float = 5.0) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            for name, data in self.events:
                if name == event:
                    return data
            assert time.monotonic() < deadline, f"no {event}; got {self.events}"
            time.sleep(0.01)

    def close(self) -> None:
        self.run(self.sio.disconnect())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)


@pytest.fixture
def guests() -> Iterator[Callable[[str], Guest]]:
    made: list[Guest] = []

    def make(url: str) -> Guest:
        made.append(Guest(url))
        return made[-1]

    yield make
    for guest in made:
        guest.close()


def _connections(server: SignallerThread, client: str) -> int:
    """How many connections the signaller holds with widget key ``client``."""
    return sum(1 for conn in list(server.signaller.connections.values()) if conn.client == client)


# -- a widget's page over the kernel route ---------------------------------------------------------


def test_a_call_is_signalled_through_the_widget_and_meets_a_direct_page(
    guests: Callable[[str], Guest],
) -> None:
    """Connect, enter, signal both ways, leave and close, all through the widget: a page that
    reaches the signaller directly meets it as any other member, and ``peers`` is live."""
    room = VideoRoom("relay-1", name="Ada")
    page = WidgetPage(room)
    server = kernel_signaller()
    try:
        assert page.connect(7) == {"type": "sig_open", "n": 7}
        assert _connections(server, room._client) == 1
        enter = {"room": "relay-1", "name": "Ada", "session": SESSION}
        ack = page.request(7, 1, "enter", enter)
        assert ack["ok"] is True
        assert ack["peers"] == []
        ada = ack["self"]

        grace = guests(server.url)
        assert grace.enter("relay-1", "Grace")["peers"] == [{"id": ada, "name": "Ada"}]
        joined = page.wait(lambda m: m["type"] == "sig_event")
        grace_id = grace.sio.get_sid()
        assert joined == {
            "type": "sig_event",
            "n": 7,
            "event": "peer_joined",
            "data": {"id": grace_id, "name": "Grace"},
        }
        wait_until(lambda: [p["name"] for p in room.peers] == ["Grace"])

        assert page.request(7, 2, "signal", {"to": grace_id, "description": OFFER}) == {"ok": True}
        assert grace.wait("signal") == {"from": ada, "description": OFFER}
        # As the page sends its signals: id 0, relayed and never answered.
        unanswered = {"to": grace_id, "description": {**OFFER, "sdp": OFFER["sdp"] + "a=x\r\n"}}
        page.send(
            {"type": "sig_request", "n": 7, "id": 0, "event": "signal", "payload": unanswered}
        )
        relayed = {"from": ada, "description": unanswered["description"]}
        wait_until(lambda: relayed in [data for name, data in grace.events if name == "signal"])
        # Several at once (what the page had in one turn of its loop): relayed in order.
        host = "1 udp 1 192.0.2.1 9 typ host"
        burst = [
            {"to": grace_id, "candidate": {"candidate": f"candidate:{i} {host}", "sdpMid": "0"}}
            for i in range(3)
        ]
        page.send({"type": "sig_signals", "n": 7, "payloads": burst})
        sent = [c["candidate"]["candidate"] for c in burst]

        def burst_heard() -> list[str]:
            signals = [data for name, data in grace.events if name == "signal"]
            texts = [data["candidate"]["candidate"] for data in signals if "candidate" in data]
            return [text for text in texts if text in sent]

        wait_until(lambda: burst_heard() == sent)
        candidate = {"candidate": "candidate:1 1 udp 1 192.0.2.1 9 typ host", "sdpMid": "0",
                     "sdpMLineIndex": 0}  # fmt: skip
        grace.run(grace.sio.emit("signal", {"to": ada, "candidate": candidate}))
        heard = page.wait(lambda m: m["type"] == "sig_event" and m["event"] == "signal")
        assert heard["data"] == {"from": grace_id, "candidate": candidate}

        assert page.request(7, 3, "leave", {}) == {"ok": True}
        assert grace.wait("peer_left") == {"id": ada, "reason": "left"}
        # Answers come in order: had the id-0 signal been answered, it would be here by now.
        assert sorted(m["id"] for m in page.of("sig_answer")) == [1, 2, 3]
        page.send({"type": "sig_close", "n": 7})
        wait_until(lambda: _connections(server, room._client) == 0)
        assert page.of("sig_dropped") == []  # closed by the page: nothing to report
    finally:
        room.close()


def test_the_relay_answers_while_the_kernel_thread_is_blocked(
    guests: Callable[[str], Guest],
) -> None:
    """What the signaller says reaches the page from the relay thread: here the test's own
    thread (the kernel's, in a kernel) is blocked waiting while a guest enters and signals."""
    room = VideoRoom("relay-2", name="Ada")
    page = WidgetPage(room)
    server = kernel_signaller()
    heard = threading.Event()
    senders: list[str] = []

    def catch(content: Any) -> None:
        senders.append(threading.current_thread().name)
        page.catch(content)
        if content["type"] == "sig_event" and content["event"] == "signal":
            heard.set()

    room.send_msg = catch  # type: ignore[method-assign]
    try:
        page.connect(1)
        ada = page.request(1, 1, "enter", {"room": "relay-2", "name": "Ada"})["self"]
        grace = guests(server.url)
        go = threading.Thread(
            target=lambda: (
                grace.enter("relay-2", "Grace"),
                grace.run(grace.sio.emit("signal", {"to": ada, "description": OFFER})),
            )
        )
        go.start()
        assert heard.wait(5), "the relay did not deliver while this thread was blocked"
        go.join(5)
        assert set(senders) == {"ipymeet-relay"}
        events = [m["event"] for m in page.of("sig_event", 1)]
        assert events == ["peer_joined", "signal"]
    finally:
        room.close()


def test_connections_are_numbered_and_a_new_one_replaces_the_old() -> None:
    """One live connection per widget: each sig_connect replaces the one before (a burst opens
    only what is still wanted), and what comes for an older number is dropped, not answered."""
    room = VideoRoom("relay-3", name="Ada")
    page = WidgetPage(room)
    server = kernel_signaller()
    try:
        for n in range(1, 31):
            page.send({"type": "sig_connect", "n": n})
        assert page.wait(lambda m: m["type"] == "sig_open" and m["n"] == 30)
        wait_until(lambda: _connections(server, room._client) == 1)
        opened = [m["n"] for m in page.of("sig_open")]
        assert opened == sorted(opened)
        assert opened[-1] == 30
        assert len(opened) < 30  # the burst was coalesced, not opened one by one
        # A request on an old number gets no answer; one on the live number does (the marker).
        page.send({"type": "sig_request", "n": 29, "id": 1, "event": "enter",
                   "payload": {"room": "relay-3"}})  # fmt: skip
        assert page.request(30, 2, "enter", {"room": "relay-3", "name": "Ada"})["ok"] is True
        assert [m["id"] for m in page.of("sig_answer")] == [2]
        page.send({"type": "sig_close", "n": 29})  # an old number's close changes nothing
        assert page.request(30, 3, "leave", {}) == {"ok": True}
        assert _connections(server, room._client) == 1
    finally:
        room.close()
    wait_until(lambda: _connections(server, room._client) == 0)


def test_closing_the_widget_closes_its_connection() -> None:
    room = VideoRoom("relay-4", name="Ada")
    page = WidgetPage(room)
    server = kernel_signaller()
    page.connect(1)
    assert page.request(1, 1, "enter", {"room": "relay-4", "name": "Ada"})["ok"] is True
    assert [m.client for m in server.members("relay-4")] == [room._client]
    room.close()
    wait_until(lambda: _connections(server, room._client) == 0 and server.members("relay-4") == [])
    assert page.of("sig_dropped") == []


def test_malformed_route_messages_are_refused_and_open_nothing() -> None:
    room = VideoRoom("relay-5")
    page = WidgetPage(room)
    server = kernel_signaller()
    try:
        page.send({"type": "sig_connect", "n": 0})
        page.send({"type": "sig_connect", "n": "1"})
        page.send({"type": "sig_request", "n": 1, "id": 1, "event": "join", "payload": {}})
        errors = [m for m in page.received if m["type"] == "error"]
        assert len(errors) == 3
        assert "n must be an integer" in errors[0]["message"]
        assert "event must be one of 'enter', 'leave', 'signal'" in errors[2]["message"]
        assert _connections(server, room._client) == 0
        # Before any sig_connect, a well-formed request has nothing to go on: no answer.
        page.send({"type": "sig_request", "n": 1, "id": 1, "event": "leave", "payload": {}})
        assert page.connect(2)["type"] == "sig_open"
        assert page.of("sig_answer") == []
    finally:
        room.close()


def test_a_widget_with_a_signaling_url_has_no_kernel_route() -> None:
    room = VideoRoom("relay-6", signaling_url="https://meet.example.org/")
    page = WidgetPage(room)
    try:
        dropped = page.connect(3)
        assert dropped["type"] == "sig_dropped"
        assert "signaling_url" in dropped["reason"]
        assert room._kernel_busy is False
    finally:
        room.close()


# -- the route to a signaller of the test's own ----------------------------------------------------


def test_a_dropped_connection_is_reported_with_its_number(make_signaller: MakeSignaller) -> None:
    """The signaller goes away: the page hears sig_dropped for its live number; connecting
    again while it is gone is refused with a reason, and nothing is left open."""
    server = make_signaller()
    page = RoutePage(server)
    try:
        assert page.connect(5) == {"type": "sig_open", "n": 5}
        server.stop()
        dropped = page.wait(lambda m: m["type"] == "sig_dropped")
        assert dropped["n"] == 5
        assert dropped["reason"]
        refused = page.connect(6)
        assert refused["type"] == "sig_dropped"
        assert "could not reach" in refused["reason"]
        assert page.of("sig_open", 6) == []
    finally:
        page.route.close()


def test_a_snapshot_chunk_crosses_with_its_bytes(make_signaller: MakeSignaller) -> None:
    """``sig_send`` carries a frame chunk (the one binary buffer) to the waiting kernel future."""
    server = make_signaller()
    page = RoutePage(server, client="k-frames")
    try:
        page.connect(1)
        future = server.expect_frame("snap-1", "k-frames")
        meta = {"id": "snap-1", "index": 0, "count": 1, "width": 1, "height": 1, "format": "rgba"}
        page.send({"type": "sig_send", "n": 1, "event": "frame", "payload": meta}, [b"\1\2\3\4"])
        frame = future.result(5)
        assert (frame.width, frame.height, bytes(frame.data)) == (1, 1, b"\1\2\3\4")
    finally:
        page.route.close()


def test_a_self_signed_signaller_is_reached_by_its_pinned_certificate(
    make_signaller: MakeSignaller,
) -> None:
    server = make_signaller(tls="self-signed")
    assert server.url.startswith("https://")
    assert server.fingerprint
    page = RoutePage(server, client="k-tls")
    try:
        assert page.connect(1) == {"type": "sig_open", "n": 1}
        wait_until(lambda: _connections(server, "k-tls") == 1)
    finally:
        page.route.close()

    class Impostor:
        """The same server, announced with another certificate's fingerprint."""

        url = server.url
        fingerprint = ":".join(["00"] * 32)

    other = Page()
    route = relay.KernelRoute("k-tls-2", Impostor(), other.catch, lambda: "tls")
    try:
        route.take({"type": "sig_connect", "n": 1}, [])
        refused = other.wait(lambda m: m["n"] == 1)
        assert refused["type"] == "sig_dropped", refused
        assert _connections(server, "k-tls-2") == 0
    finally:
        route.close()


# -- whether a cell is running ---------------------------------------------------------------------

BUSY_SCRIPT = textwrap.dedent(
    """
    import json
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    shell.run_cell('''
    from ipymeet import VideoRoom
    room = VideoRoom("busy-1")
    other = VideoRoom("busy-2")
    outside = VideoRoom("busy-3", signaling_url="https://meet.example.org/")
    seen = []
    room.observe(lambda change: seen.append(change.new), names="_kernel_busy")
    ''')
    shell.run_cell("during = room._kernel_busy")
    shell.run_cell("other.close()")
    shell.run_cell("pass")
    ns = shell.user_ns
    print(json.dumps({
        "seen": ns["seen"],
        "during": ns["during"],
        "room": ns["room"]._kernel_busy,
        "other": ns["other"]._kernel_busy,
        "outside": ns["outside"]._kernel_busy,
    }))
    """
)


def test_every_open_widget_hears_when_a_cell_starts_and_ends() -> None:
    """In IPython, each cell's start and end reach every open widget on the kernel's signaller
    (``_kernel_busy``); a closed one is told no more, one with a signaling_url never."""
    done = subprocess.run(
        [sys.executable, "-c", BUSY_SCRIPT],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    # Made in the first cell (no kernel: not taken as busy), then three cells ran.
    assert result["seen"] == [True, False, True, False, True, False]
    assert result["during"] is True
    assert result["room"] is False
    assert result["other"] is True  # closed during its cell: never told that the cell ended
    assert result["outside"] is False


def test_outside_ipython_no_cell_ever_runs() -> None:
    told: list[bool] = []

    class Listener:
        def changed(self, busy: bool) -> None:
            told.append(busy)

    listener = Listener()
    busy, unsubscribe = relay.watch_busy(listener.changed)
    unsubscribe()
    assert (busy, told) == (False, [])
