"""Snapshots in the kernel: the request goes to the browser, the frame comes back by the one path
the request names: through the kernel's signaller (a real Socket.IO client playing the browser) or,
for a widget on another signaller, as a binary custom message."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest
import socketio

from ipymeet import VideoRoom, kernel_signaller
from ipymeet.server.core.frames import MAX_CHUNK_BYTES


def _capture(room: VideoRoom) -> list[dict[str, Any]]:
    """Record the custom messages the kernel sends to the browser."""
    sent: list[dict[str, Any]] = []
    room.comm.send = lambda data=None, buffers=None, **kw: sent.append(data["content"])
    return sent


async def _browser(room: VideoRoom, client: str | None = None) -> socketio.AsyncClient:
    sio = socketio.AsyncClient()
    errors: list[Any] = []
    sio.on("error", errors.append)
    sio.errors = errors  # type: ignore[attr-defined]
    await sio.connect(
        kernel_signaller().url,
        transports=["websocket"],
        auth={"client": room._client if client is None else client},
    )
    return sio


async def _upload(sio: socketio.AsyncClient, request_id: str, pixels: np.ndarray) -> None:
    """Send an RGBA frame in chunks, as the browser does."""
    data = pixels.tobytes()
    chunks = [data[i : i + MAX_CHUNK_BYTES] for i in range(0, len(data), MAX_CHUNK_BYTES)]
    height, width = pixels.shape[:2]
    for index, chunk in enumerate(chunks):
        meta = {
            "id": request_id,
            "index": index,
            "count": len(chunks),
            "width": width,
            "height": height,
            "format": "rgba",
        }
        await sio.emit("frame", (meta, chunk))


async def _wait_request(sent: list[dict[str, Any]], count: int = 1) -> dict[str, Any]:
    """The ``count``-th request the kernel sent, once it has been sent."""
    for _ in range(500):
        if len(sent) >= count:
            return sent[count - 1]
        await asyncio.sleep(0.01)
    raise AssertionError("the kernel sent no snapshot request")


async def test_snapshot_arrives_through_the_signaller_as_an_rgb_array() -> None:
    """A 640x360 RGBA upload in chunks becomes a (360, 640, 3) uint8 array, the same pixels."""
    room = VideoRoom("snap-1")
    sent = _capture(room)
    browser = await _browser(room)
    try:
        pixels = np.random.default_rng(1).integers(0, 256, (360, 640, 4), dtype=np.uint8)
        pending = asyncio.ensure_future(room.snapshot(timeout=5))
        request = await _wait_request(sent)
        assert request["type"] == "snapshot"
        assert request["peer"] is None
        assert request["format"] == "rgba"
        assert request["via"] == "signaller"
        assert set(request) == {"type", "id", "peer", "format", "via"}
        await _upload(browser, request["id"], pixels)
        frame = await pending
        assert frame.shape == (360, 640, 3)
        assert frame.dtype == np.uint8
        assert np.array_equal(frame, pixels[:, :, :3])
    finally:
        await browser.disconnect()
        room.close()


async def test_only_the_widgets_own_browser_may_answer() -> None:
    """Another connection cannot fill a snapshot request (it gets `not_expected`)."""
    room = VideoRoom("snap-2")
    sent = _capture(room)
    stranger = await _browser(room, client="someone-else")
    try:
        pending = asyncio.ensure_future(room.snapshot(timeout=1))
        request = await _wait_request(sent)
        await _upload(stranger, request["id"], np.zeros((2, 2, 4), np.uint8))
        with pytest.raises(TimeoutError, match="no frame within 1 s"):
            await pending
        assert stranger.errors[0]["code"] == "not_expected"  # type: ignore[attr-defined]
    finally:
        await stranger.disconnect()
        room.close()


async def test_the_browser_may_say_why_it_has_no_frame() -> None:
    room = VideoRoom("snap-3")
    sent = _capture(room)
    browser = await _browser(room)
    try:
        pending = asyncio.ensure_future(room.snapshot(timeout=5))
        request = await _wait_request(sent)
        await browser.emit("frame", {"id": request["id"], "error": "no video yet"})
        with pytest.raises(RuntimeError, match="no video yet"):
            await pending
    finally:
        await browser.disconnect()
        room.close()


def _frame_message(request_id: str, pixels: np.ndarray) -> dict[str, Any]:
    height, width = pixels.shape[:2]
    return {"type": "frame", "id": request_id, "width": width, "height": height, "format": "rgba"}


async def test_a_frame_asked_through_the_signaller_is_not_taken_from_a_widget_message() -> None:
    """The kernel asked for the signaller path: the same frame as a widget message (the 33 MB a
    4K frame would cross twice) is ignored, and the request still waits for the signaller."""
    room = VideoRoom("snap-5")
    sent = _capture(room)
    browser = await _browser(room)
    try:
        pending = asyncio.ensure_future(room.snapshot(timeout=5))
        request = await _wait_request(sent)
        wrong = np.full((4, 6, 4), 9, np.uint8)
        room._handle_custom_msg(_frame_message(request["id"], wrong), [wrong.tobytes()])
        assert not pending.done()
        assert len(sent) == 1  # ignored, not refused: it is a well-formed message
        pixels = np.full((4, 6, 4), 200, np.uint8)
        await _upload(browser, request["id"], pixels)
        assert np.array_equal(await pending, pixels[:, :, :3])
    finally:
        await browser.disconnect()
        room.close()


async def test_a_widget_on_another_signaller_asks_for_a_widget_message_only() -> None:
    """With ``signaling_url`` the kernel cannot hear the signaller, so it asks ``via="comm"``: an
    upload through a signaller is refused there (nobody expects it), the widget message is taken."""
    room = VideoRoom("snap-6", signaling_url=kernel_signaller().url)
    sent = _capture(room)
    browser = await _browser(room)
    try:
        pending = asyncio.ensure_future(room.snapshot(timeout=5))
        request = await _wait_request(sent)
        assert request["via"] == "comm"
        pixels = np.full((4, 6, 4), 200, np.uint8)
        await _upload(browser, request["id"], pixels)
        for _ in range(500):
            if browser.errors:  # type: ignore[attr-defined]
                break
            await asyncio.sleep(0.01)
        assert browser.errors[0]["code"] == "not_expected"  # type: ignore[attr-defined]
        assert not pending.done()
        room._handle_custom_msg(_frame_message(request["id"], pixels), [pixels.tobytes()])
        assert np.array_equal(await pending, pixels[:, :, :3])

        pending = asyncio.ensure_future(room.snapshot(timeout=5))
        request = await _wait_request(sent, 2)
        room._handle_custom_msg({"type": "frame", "id": request["id"], "error": "no video"}, [])
        with pytest.raises(RuntimeError, match="could not take a frame: no video"):
            await pending
    finally:
        await browser.disconnect()
        room.close()


async def test_a_png_request_is_not_answered_by_rgba_and_closing_ends_the_wait() -> None:
    room = VideoRoom("snap-7", signaling_url="http://127.0.0.1:9")
    sent = _capture(room)
    try:
        pending = asyncio.ensure_future(asyncio.to_thread(room.snapshot_png, timeout=5))
        request = await _wait_request(sent)
        assert request["format"] == "png"
        pixels = np.zeros((2, 2, 4), np.uint8)
        room._handle_custom_msg(_frame_message(request["id"], pixels), [pixels.tobytes()])
        with pytest.raises(RuntimeError, match="rgba frame, not png"):
            await pending

        waiting = asyncio.ensure_future(room.snapshot(timeout=30))
        await _wait_request(sent, 2)
        room.close()
        with pytest.raises(RuntimeError, match="closed"):
            await waiting
    finally:
        room.close()


def test_unknown_peers_are_refused_at_once() -> None:
    room = VideoRoom("snap-4")
    try:
        with pytest.raises(ValueError, match="no peer 'nobody'"):
            room.snapshot_png("nobody")
    finally:
        room.close()
