"""The VideoRoom widget in the kernel, without a browser: traits, validation, and who is there.

Membership comes from the kernel's real signaller; the browser's part is played by real Socket.IO
clients (for membership) and by setting the traits the browser would write (for connection states).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import pytest
import socketio
import traitlets

import ipymeet
from ipymeet import VideoRoom, kernel_signaller
from ipymeet.widget import STATES, CallState, ErrorCode


def test_traits_and_defaults() -> None:
    """The public traits exist with their documented defaults and are synced."""
    room = VideoRoom("lab-1", name="Ada")
    try:
        assert (room.room, room.name, room.audio, room.video) == ("lab-1", "Ada", True, True)
        assert (room.state, room.error, room.peers, room.signaling_url) == ("idle", "", [], "")
        assert room.state in STATES
        assert (ipymeet.CallState, ipymeet.ErrorCode) == (CallState, ErrorCode)
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


def test_the_camera_size_and_rate_are_checked_and_synced() -> None:
    """``video_size`` and ``frame_rate``: None by default (the page's 1280x720, the camera's own
    rate), a bad type or a value out of range a TraitError saying the range; frame_rate 0 is
    None; the state the page gets holds them as given."""
    with pytest.raises(traitlets.TraitError, match=r"16\.\.3840"):
        VideoRoom("x", video_size=(4000, 720))
    with pytest.raises(traitlets.TraitError, match="whole pixels"):
        VideoRoom("x", video_size="720p")  # type: ignore[arg-type]
    with pytest.raises(traitlets.TraitError, match=r"1\.\.60"):
        VideoRoom("x", frame_rate=120)
    room = VideoRoom("ok", video_size=(320, 240), frame_rate=15)
    try:
        state = room.get_state()
        assert (state["video_size"], state["frame_rate"]) == ((320, 240), 15)
        room.frame_rate = 0
        assert room.frame_rate is None
        with pytest.raises(traitlets.TraitError, match="whole frames"):
            room.frame_rate = 29.97
        room.video_size = None
        assert (room.video_size, room.frame_rate) == (None, None)
    finally:
        room.close()
    assert (VideoRoom.video_size.default_value, VideoRoom.frame_rate.default_value) == (None, None)


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
                "speaking": False,
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


async def test_max_peers_sets_the_capacity_of_the_widgets_room_only() -> None:
    """VideoRoom(room, max_peers=N) sets how many its room holds and no other's (the kernel's
    signaller may serve every notebook of the user); a change of room takes it along; closing the
    widget lets it go; bad values are refused."""
    server = kernel_signaller()
    default = server.settings.max_peers
    table = server.signaller.room_capacity
    room = VideoRoom("cap", max_peers=3)
    try:
        assert (table.get("cap", default), table.get("other", default)) == (3, default)
        assert server.settings.max_peers == default
        room.room = "cap-2"
        assert (table.get("cap", default), table.get("cap-2", default)) == (default, 3)
        # What a page entering each room hears of it.
        for name, expected in (("cap-2", 3), ("cap", default)):
            page = socketio.AsyncClient()
            await page.connect(server.url, transports=["websocket"])
            try:
                ack = await page.call("enter", {"room": name, "name": "Guest"}, timeout=5)
                assert (ack["ok"], ack["capacity"]) == (True, expected)
            finally:
                await page.disconnect()
        # Another widget in the same room: each claim holds until its own widget lets it go.
        twin = VideoRoom("cap-2", max_peers=4)
        assert table.get("cap-2", default) == 4
        twin.close()
        assert table.get("cap-2", default) == 3
        with pytest.raises(ValueError, match="max_peers"):
            VideoRoom("cap", max_peers=1)
        with pytest.raises(ValueError, match="signaling_url"):
            VideoRoom("cap", max_peers=4, signaling_url="http://example.org")
    finally:
        room.close()
    assert table.get("cap-2", default) == default


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
                "speaking": False,
            },
            {
                "id": "p2",
                "name": "Alan",
                "connection": "new",
                "audio": True,
                "video": True,
                "screen": False,
                "speaking": False,
            },
        ]
    finally:
        room.close()


def test_speaking_follows_the_browsers_reports_and_never_a_muted_member() -> None:
    """``peers[i]["speaking"]`` and ``speaking`` (the ids) come from the browser's reports, are
    observable, change only when they differ, and a muted member is never speaking."""
    room = VideoRoom("speak", signaling_url="http://127.0.0.1:9")
    seen: list[list[str]] = []
    room.observe(lambda change: seen.append(change["new"]), names="speaking")
    try:
        assert room.speaking == []
        room._browser_peers = [
            {"id": "p1", "name": "Grace", "connection": "connected", "speaking": True},
            {"id": "p2", "name": "Alan", "connection": "connected", "speaking": False},
        ]
        assert [p["speaking"] for p in room.peers] == [True, False]
        assert room.speaking == ["p1"]
        # Another report that changes nothing of who speaks: no new value.
        room._browser_peers = [
            {"id": "p1", "name": "Grace", "connection": "connected", "speaking": True},
            {"id": "p2", "name": "Alan", "connection": "disconnected", "speaking": False},
        ]
        # A muted member is never speaking, whatever the report says.
        room._browser_peers = [
            {
                "id": "p1",
                "name": "Grace",
                "connection": "connected",
                "speaking": True,
                "audio": False,
            },
            {"id": "p2", "name": "Alan", "connection": "connected", "speaking": True},
        ]
        assert [p["speaking"] for p in room.peers] == [False, True]
        assert room.speaking == ["p2"]
        room._browser_peers = []
        assert seen == [["p1"], ["p2"], []]
        with pytest.raises(traitlets.TraitError):
            room.speaking = ["p1"]
    finally:
        room.close()


# -- one writer per trait: the browser reports, Python's intent follows -------------------------


def _frontend(room: VideoRoom) -> list[dict[str, Any]]:
    """Play the browser's end of the comm: record the state updates the kernel sends."""
    updates: list[dict[str, Any]] = []

    def send(data: Any = None, buffers: Any = None, **_: Any) -> None:
        if data.get("method") == "update":
            updates.append(data["state"])

    room.comm.send = send
    return updates


def _report(room: VideoRoom, **state: Any) -> None:
    """An update message from the front end, as the comm delivers it."""
    data = {"method": "update", "state": state, "buffer_paths": []}
    room._handle_msg({"content": {"data": data}, "buffers": []})


def test_each_join_is_a_new_attempt() -> None:
    """join() adds 1 to _joins and sets _desired, in one update; a second join() while _desired
    is still True is still news to the browser."""
    room = VideoRoom("attempts")
    updates = _frontend(room)
    try:
        room.join()
        room.join()
        assert updates == [{"_joins": 1, "_desired": True}, {"_joins": 2}]
        room.leave()
        assert (room._desired, room._joins) == (False, 2)
    finally:
        room.close()


def test_a_call_the_browser_ended_ends_the_kernels_intent() -> None:
    """The browser ended attempt N on its own (room full): _desired follows, and the share with
    it; the kernel tells the browser. An end of an older attempt changes nothing."""
    room = VideoRoom("ended")
    updates = _frontend(room)
    try:
        room.join()
        room.screen = True
        room.join()  # a newer attempt, asked before the browser's report of the first came in
        updates.clear()
        _report(room, _call_ended=1, state="failed", error_code="room_full")
        assert (room._desired, room.screen, updates) == (True, True, [])
        _report(room, _call_ended=2)
        assert (room._desired, room.screen) == (False, False)
        assert updates == [{"_desired": False, "screen": False}]
        room.join()  # and a new attempt after it
        assert (room._desired, room._joins, room._call_ended) == (True, 3, 2)
    finally:
        room.close()


def test_a_share_the_browser_stopped_turns_screen_off() -> None:
    """The person pressed the browser's own "Stop sharing": screen follows the report."""
    room = VideoRoom("share")
    updates = _frontend(room)
    try:
        room.join()
        room.screen = True
        updates.clear()
        _report(room, _screen_ended=1)
        assert room.screen is False
        assert updates == [{"screen": False}]
        _report(room, screen=True)  # the view's Share button: the person's intent again
        assert room.screen is True
        _report(room, _screen_ended=2)
        assert room.screen is False
    finally:
        room.close()


def test_the_view_hanging_up_ends_the_share() -> None:
    room = VideoRoom("hang-up")
    updates = _frontend(room)
    try:
        _report(room, _joins=1, _desired=True, screen=True)
        assert (room._joins, room._desired, room.screen) == (1, True, True)
        updates.clear()
        _report(room, _desired=False)
        assert room.screen is False
        assert {"screen": False} in updates
    finally:
        room.close()


def test_state_and_error_code_are_enumerations_that_read_as_strings() -> None:
    room = VideoRoom("enums")
    _frontend(room)
    try:
        assert room.state is CallState.IDLE
        assert room.error_code is ErrorCode.NONE
        _report(room, state="in_call", error_code="camera_denied")
        assert room.state is CallState.IN_CALL
        assert room.state == "in_call"
        assert room.error_code == "camera_denied"
        assert room.error_code is ErrorCode.CAMERA_DENIED
        assert f"{room.state}" == "in_call"
        state = room.get_state()
        assert (state["state"], state["error_code"]) == ("in_call", "camera_denied")
        assert json.dumps(state["state"]) == '"in_call"'
        assert type(state["state"]) is str
        room.state = "left"  # type: ignore[assignment]
        assert room.state is CallState.LEFT
        with pytest.raises(traitlets.TraitError, match="in_call"):
            room.state = "in-call"  # type: ignore[assignment]
        with pytest.raises(traitlets.TraitError):
            room.error_code = "oops"  # type: ignore[assignment]
        assert tuple(s.value for s in CallState) == STATES
    finally:
        room.close()


def test_an_unknown_value_from_the_browser_is_logged_once_and_the_rest_applies(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A newer front end's state must not break the kernel, nor lose the update it came in."""
    room = VideoRoom("newer")
    _frontend(room)
    try:
        _report(room, state="in_call")
        with caplog.at_level(logging.WARNING, logger="ipymeet"):
            _report(room, state="teleporting", error="far away")
            _report(room, state="teleporting", error_code=42)
        assert room.state is CallState.IN_CALL
        assert (room.error, room.error_code) == ("far away", ErrorCode.NONE)
        warned = [r.getMessage() for r in caplog.records if "teleporting" in r.getMessage()]
        assert len(warned) == 1
        assert "kept 'in_call'" in warned[0]
    finally:
        room.close()


def test_unreadable_messages_are_logged_once_per_kind_and_answered(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Unknown and malformed messages from the browser: each gets an error back, the log gets one
    line per kind. An error the browser reports is logged and never answered."""
    room = VideoRoom("garbled")
    sent: list[Any] = []
    room.comm.send = lambda data=None, buffers=None, **kw: sent.append(data["content"])
    try:
        with caplog.at_level(logging.WARNING, logger="ipymeet"):
            for content in (
                {"type": "teleport"},
                {"type": "teleport"},
                ["not", "an", "object"],
                {"type": "chat", "id": "m1", "from": "p", "name": "n", "text": 5, "time": 0,
                 "mine": False},
                {"type": "chat", "id": "m1"},
                {"type": "token_request", "room": "../etc"},
            ):  # fmt: skip
                room._handle_custom_msg(content, [])
            room._handle_custom_msg({"type": "error", "message": "what is 'snapshot'?"}, [])
        assert [m["type"] for m in sent] == ["error"] * 6
        assert "unknown message type 'teleport'" in sent[0]["message"]
        assert "text must be" in sent[3]["message"]
        refused = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
        assert len(refused) == 3  # unknown, chat, token_request
        assert any("what is 'snapshot'?" in r.getMessage() for r in caplog.records)
    finally:
        room.close()
