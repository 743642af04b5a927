"""A widget's page reaches only its widget's room (server/core/access.py, doors MINT and RELAY).

The attack (issue 17, finding 3): a page that its kernel serves (a Voilà visitor's, say) asks the
kernel for a join token naming *another* room, or has the kernel route relay an ``enter`` for
another room, and so enters the owner's ``secure=True`` room on the shared signaller. The page's
part is played through the widget's real comm handler; the others are real Socket.IO clients.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import socketio

from ipymeet import VideoRoom, kernel_signaller

from ..unit.test_relay import Guest, WidgetPage, guests  # noqa: F401 - the fixture

SESSION = "v" * 24


async def _enter(url: str, room: str, token: str | None) -> dict[str, Any]:
    sio = socketio.AsyncClient(reconnection=False)
    await sio.connect(url, transports=["websocket"])
    try:
        answer: dict[str, Any] = await sio.call("enter", {"room": room, "token": token}, timeout=5)
        return answer
    finally:
        await sio.disconnect()


@pytest.mark.usefixtures("own_kernel_signaller")
async def test_a_page_gets_a_token_for_its_widgets_room_only() -> None:
    """Attack: the dashboard widget's page asks for a token naming the owner's secure room.
    Refused: the kernel answers with no token, and entering with that is ``forbidden`` /
    ``missing``; nobody joins the owner's room. Beside it, the page's own room: a token, and in."""
    owner = VideoRoom("owner-office", secure=True)
    dashboard = VideoRoom("dashboard")
    try:
        assert dashboard._binding is not None
        server = dashboard._binding.server
        assert server.requires_tokens  # secure=True turned tokens on for the whole signaller
        page = WidgetPage(dashboard)

        page.send({"type": "token_request", "room": "owner-office"})
        stolen = page.wait(lambda m: m["type"] == "token" and m["room"] == "owner-office")
        assert stolen["token"] is None
        refused = await _enter(server.url, "owner-office", stolen["token"])
        assert (refused["code"], refused["reason"]) == ("forbidden", "missing")
        assert server.members("owner-office") == []

        page.send({"type": "token_request", "room": "dashboard"})
        own = page.wait(lambda m: m["type"] == "token" and m["room"] == "dashboard")
        assert isinstance(own["token"], str)
        assert (await _enter(server.url, "dashboard", own["token"]))["ok"] is True
        # A token for the dashboard's room does not open the owner's either.
        other = await _enter(server.url, "owner-office", own["token"])
        assert (other["code"], other["reason"]) == ("forbidden", "other_room")
    finally:
        dashboard.close()
        owner.close()


def test_the_kernel_route_relays_enter_for_the_widgets_room_only(
    guests: Callable[[str], Guest],  # noqa: F811 - the fixture imported above
) -> None:
    """Attack: the dashboard widget's page, over the kernel route, asks its kernel to relay an
    ``enter`` for the owner's room. Refused in the kernel: ``forbidden`` / ``other_room``, never
    sent on, so the owner's guest hears nothing (the next thing it hears is a later member).
    Beside it, the page enters its own widget's room through the same route."""
    owner = VideoRoom("owner-desk")  # the owner's room, in the same kernel
    dashboard = VideoRoom("dash-2", name="Visitor")
    page = WidgetPage(dashboard)
    server = kernel_signaller()
    try:
        guest = guests(server.url)
        guest.enter("owner-desk", "Owner")
        assert page.connect(1) == {"type": "sig_open", "n": 1}

        enter = {"room": "owner-desk", "name": "Visitor", "session": SESSION}
        refused = page.request(1, 1, "enter", enter)
        assert (refused["code"], refused["reason"]) == ("forbidden", "other_room")
        assert "dash-2" in refused["message"]
        assert [m.name for m in server.members("owner-desk")] == ["Owner"]

        later = guests(server.url)
        later.enter("owner-desk", "Later")
        assert guest.wait("peer_joined")["name"] == "Later"  # the first it heard: not Visitor

        ack = page.request(1, 2, "enter", {"room": "dash-2", "name": "Visitor", "session": SESSION})
        assert ack["ok"] is True
        assert [m.name for m in server.members("dash-2")] == ["Visitor"]
    finally:
        dashboard.close()
        owner.close()
