"""A widget's tie to the kernel's signaller: only the kernel's open widgets' browsers enter."""

from __future__ import annotations

from typing import Any

import socketio

from ipymeet import VideoRoom, kernel_signaller


async def _enter(client: str, room: str) -> dict[str, Any]:
    sio = socketio.AsyncClient()
    await sio.connect(kernel_signaller().url, transports=["websocket"], auth={"client": client})
    try:
        answer: dict[str, Any] = await sio.call("enter", {"room": room}, timeout=5)
        return answer
    finally:
        await sio.disconnect()


async def test_only_an_open_widgets_browser_is_admitted() -> None:
    room = VideoRoom("admit-1")
    key = room._client
    try:
        assert (await _enter(key, "admit-1"))["ok"] is True
    finally:
        room.close()
    refused = await _enter(key, "admit-1")
    assert (refused["ok"], refused["code"]) == (False, "unknown_widget")
    assert (await _enter("", "admit-1"))["ok"] is True  # a page without a key is not asked
