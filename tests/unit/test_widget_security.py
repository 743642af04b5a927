"""VideoRoom(secure=True): invite links carry tokens the signaller accepts, the browser gets its own
tokens by custom message, and no token or secret is ever in the widget's synced state."""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import socketio
from ipywidgets.embed import embed_data

from ipymeet import VideoRoom
from ipymeet.server import Settings, SignallerThread
from ipymeet.server.core import tokens


def _record(room: VideoRoom) -> tuple[list[Any], list[Any]]:
    """What the kernel sends the browser: (custom messages, state updates)."""
    custom: list[Any] = []
    updates: list[Any] = []

    def send(data: Any = None, buffers: Any = None, **_: Any) -> None:
        (custom if data["method"] == "custom" else updates).append(data.get("content", data))

    room.comm.send = send
    return custom, updates


async def _enter(url: str, payload: dict[str, Any]) -> dict[str, Any]:
    sio = socketio.AsyncClient()
    await sio.connect(url, transports=["websocket"])
    try:
        answer: dict[str, Any] = await sio.call("enter", payload, timeout=5)
        return answer
    finally:
        await sio.disconnect()


@pytest.mark.usefixtures("own_kernel_signaller")
async def test_a_secure_rooms_invite_link_enters_and_nothing_secret_is_in_its_state() -> None:
    room = VideoRoom("vault-1", secure=True, invite_ttl=600)
    plain = VideoRoom("open-1")  # same kernel signaller: tokens are now on for it too
    try:
        assert room._binding is not None
        server = room._binding.server
        assert server.requires_tokens
        assert (room._secure, plain._secure) == (True, True)
        link = urlsplit(room.invite_url)
        query = parse_qs(link.query)
        assert query["room"] == ["vault-1"]
        (token,) = query["token"]
        assert 590 <= tokens.expiry(token) - time.time() <= 600
        base = f"{link.scheme}://{link.netloc}"
        assert (await _enter(base, {"room": "vault-1", "token": token}))["ok"] is True
        refused = await _enter(base, {"room": "vault-1"})
        assert (refused["code"], refused["reason"]) == ("forbidden", "missing")

        # The browser asks for its own token; the kernel answers by custom message.
        sent, updates = _record(room)
        room._handle_custom_msg({"type": "token_request", "room": "vault-1"}, [])
        assert [m["type"] for m in sent] == ["token"]
        assert sent[0]["room"] == "vault-1"
        assert (await _enter(base, {"room": "vault-1", "token": sent[0]["token"]}))["ok"] is True
        # A request for an invalid room gets no token: the kernel answers that it refused it.
        room._handle_custom_msg({"type": "token_request", "room": "not a room"}, [])
        assert [m["type"] for m in sent] == ["token", "error"]
        assert "invalid room" in sent[-1]["message"]
        # join() sends one ahead, so a cell that stays busy after join() does not block entering.
        room.join()
        assert [m["type"] for m in sent] == ["token", "error", "token"]
        assert updates == [
            {"method": "update", "state": {"_joins": 1, "_desired": True}, "buffer_paths": []}
        ]

        # No token, no secret in the synced state, nor in what a saved notebook would keep.
        secret = server.settings.secret
        assert secret is not None
        minted = {token, sent[0]["token"], sent[-1]["token"]}
        for shown in (
            json.dumps(room.get_state(), default=str),
            json.dumps(plain.get_state(), default=str),
            json.dumps(embed_data(views=[room, plain])["manager_state"], default=str),
        ):
            assert not any(t in shown for t in minted)
            assert secret.hex() not in shown
        assert "secret" not in repr(server.settings)
    finally:
        room.close()
        plain.close()


@pytest.mark.usefixtures("own_kernel_signaller")
def test_an_open_rooms_browser_gets_no_token_and_its_link_has_none() -> None:
    room = VideoRoom("open-2")
    try:
        assert room._secure is False
        assert "token" not in room.invite_url
        sent, _ = _record(room)
        room._handle_custom_msg({"type": "token_request", "room": "open-2"}, [])
        assert sent == [{"type": "token", "room": "open-2", "token": None}]
        room.join()  # nothing sent ahead: the browser will not ask
        assert len(sent) == 1
    finally:
        room.close()


@pytest.mark.usefixtures("own_kernel_signaller")
def test_host_and_tls_apply_when_the_kernel_signaller_starts_and_must_match_after() -> None:
    room = VideoRoom("tls-1", tls="self-signed", secure=True)
    try:
        assert room._binding is not None
        assert room._binding.server.url.startswith("https://")
        assert room.invite_url.startswith("https://")
        assert room._binding.server.fingerprint
        with pytest.raises(ValueError, match=r"already running with host=.*restart the kernel"):
            VideoRoom("tls-2", host="0.0.0.0")
        same = VideoRoom("tls-3", tls="self-signed")
        same.close()
        with pytest.raises(ValueError, match="kernel's signaller"):
            VideoRoom("x", signaling_url="https://elsewhere.example.org", secure=True)
    finally:
        room.close()


async def test_a_token_for_a_signaller_of_its_own_goes_to_the_browser_by_message() -> None:
    """`ipymeet serve --secret` elsewhere: VideoRoom(signaling_url=..., token=link) keeps the token
    in the kernel, hands it to its browser by custom message, and the signaller accepts it."""
    server = SignallerThread(Settings(ice_servers=(), secret=tokens.new_secret())).start()
    try:
        token = server.mint("far-1", 600)
        link = f"{server.url}/?room=far-1&token={token}"
        room = VideoRoom("far-1", signaling_url=server.url, token=link)
        try:
            assert room._secure is True
            assert token not in json.dumps(room.get_state())
            sent, _ = _record(room)
            room._handle_custom_msg({"type": "token_request", "room": "far-1"}, [])
            assert sent == [{"type": "token", "room": "far-1", "token": token}]
            assert (await _enter(server.url, {"room": "far-1", "token": token}))["ok"] is True
        finally:
            room.close()
        with pytest.raises(ValueError, match="signaling_url"):
            VideoRoom("far-1", token=token)
        with pytest.raises(ValueError, match="no token"):
            VideoRoom("far-1", signaling_url=server.url, token=f"{server.url}/?room=far-1")
    finally:
        server.stop()
