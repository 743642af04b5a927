"""Snapshots in the kernel: the request goes to the browser, the frame comes back through the
kernel's signaller (real Socket.IO client playing the browser) or a binary custom message."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest
import socketio

from ipymeet import VideoRoom, kernel_signaller
from ipymeet.server.frames import MAX_CHUNK_BYTES


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
        assert request["upload"] is True
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


async def test_a_browser_error_and_a_binary_custom_message() -> None:
    """The browser may say why it has no frame; a frame may also come as a custom message."""
    room = VideoRoom("snap-3")
    sent = _capture(room)
    browser = await _browser(room)
    try:
        pending = asyncio.ensure_future(room.snapshot(timeout=5))
        request = await _wait_request(sent)
        await browser.emit("frame", {"id": request["id"], "error": "no video yet"})
        with pytest.raises(RuntimeError, match="no video yet"):
            await pending

        pending = asyncio.ensure_future(room.snapshot(timeout=5))
        request = await _wait_request(sent, 2)
        pixels = np.full((4, 6, 4), 200, np.uint8)
        room._handle_custom_msg(
            {"type": "frame", "id": request["id"], "width": 6, "height": 4, "format": "rgba"},
            [pixels.tobytes()],
        )
        assert (await pending).shape == (4, 6, 3)
    finally:
        await browser.disconnect()
        room.close()


def test_unknown_peers_are_refused_at_once() -> None:
    room = VideoRoom("snap-4")
    try:
        with pytest.raises(ValueError, match="no peer 'nobody'"):
            room.snapshot_png("nobody")
    finally:
        room.close()
