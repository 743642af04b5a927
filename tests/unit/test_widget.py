"""The VideoRoom widget in the kernel, without a browser: traits, validation, and who is there.

Membership comes from the kernel's real signaller; the browser's part is played by real Socket.IO
clients (for membership) and by setting the traits the browser would write (for connection states).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import socketio
import traitlets

from ipymeet import VideoRoom, kernel_signaller
from ipymeet.widget import STATES


def test_traits_and_defaults() -> None:
    """The public traits exist with their documented defaults and are synced."""
    room = VideoRoom("lab-1", name="Ada")
    try:
        assert (room.room, room.name, room.audio, room.video) == ("lab-1", "Ada", True, True)
        assert (room.state, room.error, room.peers, room.signaling_url) == ("idle", "", [], "")
        assert room.state in STATES
        synced = set(room.keys)
        public = {"room", "name", "audio", "video", "state", "peers", "error", "signaling_url"}
        assert public <= synced
        assert room._port == kernel_signaller().port > 0
    finally:
        room.close()


def test_unknown_arguments_and_bad_values_are_errors() -> None:
    """Typos fail loudly; bad room ids and names are refused with a clear message."""
    with pytest.raises(TypeError):
        VideoRoom("x", nmae="Ada")  # type: ignore[call-arg]
    with pytest.raises(traitlets.TraitError, match="not a valid room id"):
        VideoRoom("no spaces allowed")
    with pytest.raises(traitlets.TraitError, match="64"):
        VideoRoom("x", name="n" * 65)
    with pytest.raises(traitlets.TraitError):
        VideoRoom("x", route="carrier-pigeon")
    room = VideoRoom("ok")
    try:
        with pytest.raises(traitlets.TraitError):
            room.room = "a/b"
        assert room.room == "ok"
    finally:
        room.close()


def test_join_and_leave_set_the_desired_state() -> None:
    """join() and leave() express intent; the browser carries it out."""
    room = VideoRoom()
    try:
        with pytest.raises(ValueError, match="choose a room"):
            room.join()
        room.room = "lab-2"
        room.join()
        assert room._desired is True
        room.leave()
        assert room._desired is False
    finally:
        room.close()


def test_invite_url_points_at_the_standalone_page() -> None:
    """invite_url opens this room on the kernel signaller's own page, or the explicit one."""
    room = VideoRoom("lab 3".replace(" ", "-"))
    other = VideoRoom("x.y", signaling_url="https://meet.example.org/")
    try:
        assert room.invite_url == f"http://127.0.0.1:{kernel_signaller().port}/?room=lab-3"
        assert other.invite_url == "https://meet.example.org/?room=x.y"
        assert other._port == 0
    finally:
        room.close()
        other.close()


async def _enter(url: str, room: str, name: str, client: str = "") -> socketio.AsyncClient:
    sio = socketio.AsyncClient()
    await sio.connect(url, transports=["websocket"], auth={"client": client})
    ack = await sio.call("enter", {"room": room, "name": name}, timeout=5)
    assert ack["ok"], ack
    return sio


def _wait(predicate: Any, timeout: float = 5.0) -> None:
    """Poll ``predicate`` (set from the signaller's thread) until it holds."""
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


async def test_peers_come_from_the_kernel_signaller_live() -> None:
    """Who is in the room reaches ``peers`` from the signaller thread, without the browser:
    the widget's own connection is left out, names are kept, connection states come from the
    browser's reports."""
    room = VideoRoom("members-1", name="Ada")
    url = kernel_signaller().url
    mine = await _enter(url, "members-1", "Ada", client=room._client)
    try:
        assert room.peers == []
        grace = await _enter(url, "members-1", "Grace")
        await asyncio.to_thread(_wait, lambda: len(room.peers) == 1)
        assert room.peers == [
            {
                "id": grace.get_sid(),
                "name": "Grace",
                "connection": "new",
                "audio": True,
                "video": True,
                "screen": False,
            }
        ]
        room._browser_peers = [{"id": grace.get_sid(), "name": "Grace", "connection": "connected"}]
        assert room.peers[0]["connection"] == "connected"
        await grace.disconnect()
        await asyncio.to_thread(_wait, lambda: room.peers == [])
    finally:
        await mine.disconnect()
        room.close()


async def test_peers_are_empty_when_the_widget_is_not_in_the_room() -> None:
    """Others in a room the widget has not entered are not its peers."""
    room = VideoRoom("members-2")
    stranger = await _enter(kernel_signaller().url, "members-2", "Stranger")
    try:
        room._browser_peers = []
        assert room.peers == []
    finally:
        await stranger.disconnect()
        room.close()


async def test_while_reconnecting_peers_are_the_browsers_connections() -> None:
    """Its page out of the signaller's room for a moment, the widget still lists the others its
    browser is connected to; once the page is back, membership comes from the signaller again."""
    room = VideoRoom("members-3")
    stranger = await _enter(kernel_signaller().url, "members-3", "Stranger")
    try:
        report = [{"id": "far", "name": "Grace", "connection": "connected"}]
        room._browser_peers = report
        assert room.peers == []  # not in the signaller's room
        room.state = "reconnecting"
        assert [(p["id"], p["connection"]) for p in room.peers] == [("far", "connected")]
        room.state = "in_call"
        assert room.peers == []
    finally:
        await stranger.disconnect()
        room.close()


def test_max_peers_sets_the_kernel_signallers_capacity() -> None:
    """VideoRoom(max_peers=N) sets how many the kernel's rooms hold; bad values are refused."""
    server = kernel_signaller()
    before = server.settings.max_peers
    try:
        room = VideoRoom("cap", max_peers=3)
        room.close()
        assert server.signaller.settings.max_peers == 3
        with pytest.raises(ValueError, match="max_peers"):
            VideoRoom("cap", max_peers=1)
        with pytest.raises(ValueError, match="signaling_url"):
            VideoRoom("cap", max_peers=4, signaling_url="http://example.org")
    finally:
        server.set_max_peers(before)


def test_chat_from_python_and_to_callbacks() -> None:
    """send() asks the browser to say it; chat messages from the browser reach on_message
    callbacks with the sender; empty or oversized messages are refused."""
    room = VideoRoom("chat-1")
    sent: list[Any] = []
    heard: list[tuple[str, str, str]] = []
    try:
        # The browser's end of the comm: record what the kernel sends.
        room.comm.send = lambda data=None, buffers=None, **kw: sent.append(data)
        room.send("hello")
        assert sent[-1] == {"method": "custom", "content": {"type": "chat", "text": "hello"}}
        for bad in ("", "  ", "x" * 2001):
            with pytest.raises(ValueError, match="message"):
                room.send(bad)

        def callback(sender: Any, text: str) -> None:
            heard.append((str(sender), sender.id, text))

        room.on_message(callback)
        message = {
            "type": "chat",
            "id": "m1",
            "from": "p1",
            "name": "Grace",
            "text": "hi",
            "time": 0,
            "mine": False,
        }
        room._handle_custom_msg(message, [])
        room._handle_custom_msg({"type": "nonsense"}, [])
        room.on_message(callback, remove=True)
        room._handle_custom_msg({**message, "id": "m2"}, [])
        assert heard == [("Grace", "p1", "hi")]
    finally:
        room.close()


def test_peers_carry_the_browsers_mute_flags() -> None:
    """The others' audio/video flags come from the browser's reports (default on)."""
    room = VideoRoom("flags", signaling_url="http://127.0.0.1:9")
    try:
        room._browser_peers = [
            {"id": "p1", "name": "Grace", "connection": "connected", "audio": False, "video": True},
            {"id": "p2", "name": "Alan", "connection": "new"},
        ]
        assert room.peers == [
            {
                "id": "p1",
                "name": "Grace",
                "connection": "connected",
                "audio": False,
                "video": True,
                "screen": False,
            },
            {
                "id": "p2",
                "name": "Alan",
                "connection": "new",
                "audio": True,
                "video": True,
                "screen": False,
            },
        ]
    finally:
        room.close()
