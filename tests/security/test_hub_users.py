"""Hub users do not cross on ``ipymeet serve --jupyterhub`` (issue 17, finding 4;
server/core/access.py, doors REGISTER, CLAIM and HEAR for a hub user).

The attack: any hub user with a server (no access scope to the service needed) attaches their
kernel with its hub token and, from that connection, registers another user's widget key (taking
its snapshot frames, and when the intruder leaves, the owner's page is dropped with "its" keys),
sets the capacity of another user's room (the latest claim won: a third guest locked out), and
hears the members of another user's room (asked for when attaching, then pushed at each change).

Everything is real: the service's app (``create_hub_app``) on a loopback port, python-socketio
clients as the kernels (``auth.jupyterhub_token``, ``kernel_attach``, as server/hub/client.py's
``ServiceAttachment`` does) and as the pages (a widget's key, or the service's login cookie), and
a stand-in for the hub's API naming each token's user (tests/unit/test_hub.py). Each attack is
shown refused beside the legitimate case: a hub user in their own room, whose kernel registers,
claims and hears. To show a push did *not* come, something that is pushed is made to happen
afterwards, and it must be the first push received.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncIterator
from typing import Any

import pytest

from ipymeet.server.hub.client import ServiceSignaller, ServiceTarget
from ipymeet.server.kernel import kernels

from ..integration.helpers import Peer, enter, until
from ..unit.test_hub import ACCESS, Service, running_service, stand_in_hub

#: A kernel's token is its single-user server's: it names its user, with no access to the service.
ADA_SERVER, BOB_SERVER = "ada-server-token", "bob-server-token"
USERS = {
    ADA_SERVER: ("ada", ["access:servers!server=ada/"]),
    BOB_SERVER: ("bob", ["access:servers!server=bob/"]),
    # Browsers logged in to the service (its standalone page).
    "carol-login": ("carol", [ACCESS]),
    "dave-login": ("dave", [ACCESS]),
}


@pytest.fixture
async def service(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Service]:
    # A kernel's keys outlive its connection for a blip; the tests wait for that grace to end.
    monkeypatch.setattr(kernels, "REVOKE_AFTER", 0.3)
    async with stand_in_hub(USERS) as stand_in, running_service(stand_in.api_url) as running:
        yield running


@pytest.fixture
async def clients(service: Service) -> AsyncIterator[list[Peer]]:
    """Every Socket.IO client a test opens, closed at its end."""
    opened: list[Peer] = []
    yield opened
    for peer in opened:
        await peer.close()


class Kernel(Peer):
    """A hub user's kernel, as server/hub/client.py's ServiceAttachment speaks to the service; it
    takes the frames handed to it (``kernel_frame``, answered ok) and records them with the rest."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.sio.on("kernel_frame", self._frame)

    def _frame(self, *args: Any) -> dict[str, Any]:
        self._record("kernel_frame", *args)
        return {"ok": True}

    def pushes(self, event: str = "kernel_members") -> list[Any]:
        return [e[1] for e in self.events if e[0] == event]


async def kernel(service: Service, clients: list[Peer], name: str, token: str) -> Kernel:
    peer = Kernel(name)
    clients.append(peer)
    await peer.connect(
        service.origin, socketio_path=_path(service), auth={"jupyterhub_token": token}
    )
    return peer


async def page(
    service: Service, clients: list[Peer], name: str, *, key: str = "", login: str = ""
) -> Peer:
    """A page: a widget's (its key) or the standalone page of a browser logged in (its token)."""
    peer = Peer(name)
    clients.append(peer)
    kwargs: dict[str, Any] = {"auth": {"client": key}} if key else {}
    if login:
        kwargs["headers"] = service.login_cookie(login)
    await peer.connect(service.origin, socketio_path=_path(service), **kwargs)
    return peer


def _path(service: Service) -> str:
    return f"{service.config.prefix}socket.io"


async def attach(peer: Kernel, kernel_id: str, **request: Any) -> dict[str, Any]:
    answer: dict[str, Any] = await peer.call(
        "kernel_attach", {"kernel": kernel_id, "clients": [], **request}
    )
    return answer


def names(push: dict[str, Any]) -> tuple[str, list[str]]:
    return push["room"], [member["name"] for member in push["members"]]


def forbidden(answer: dict[str, Any]) -> str:
    assert answer["ok"] is False, answer
    assert answer["code"] == "forbidden", answer
    message: str = answer["message"]
    return message


def refusals(caplog: pytest.LogCaptureFixture, door: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if f"refused at '{door}'" in r.getMessage()]


async def test_a_key_of_another_users_kernel_is_refused(
    service: Service, clients: list[Peer], caplog: pytest.LogCaptureFixture
) -> None:
    """Attack: bob's kernel registers ada's widget key, when it attaches and then with
    ``kernel_clients``. Refused ``forbidden``, nothing of either request registered: ada's kernel
    keeps the key, her page's frames go to it, and when bob's kernel leaves (its keys revoked)
    her page stays. Beside it, each registers its own keys."""
    caplog.set_level(logging.INFO, logger="ipymeet.server")
    hub = service.hub
    ada_key, bob_key, bob_new = (secrets.token_hex(8) for _ in range(3))
    ada = await kernel(service, clients, "ada's kernel", ADA_SERVER)
    assert (await attach(ada, "ada-kernel", clients=[ada_key]))["ok"] is True
    ada_page = await page(service, clients, "ada's page", key=ada_key)
    await enter(ada_page, "ada-room")

    bob = await kernel(service, clients, "bob's kernel", BOB_SERVER)
    message = forbidden(await attach(bob, "bob-kernel", clients=[bob_key, ada_key]))
    assert "another user's kernel" in message
    assert hub.counts()["attached"] == 1  # bob's kernel did not attach
    assert not hub.knows(bob_key)
    assert hub.user_of_key(ada_key) == "ada"

    assert (await attach(bob, "bob-kernel", clients=[bob_key]))["ok"] is True
    forbidden(await bob.call("kernel_clients", {"add": [bob_new, ada_key]}))
    assert not hub.knows(bob_new)  # nothing of the request, not even bob's own new key
    assert hub.user_of_key(ada_key) == "ada"
    assert (await bob.call("kernel_clients", {"add": [bob_new]})) == {"ok": True}
    assert hub.user_of_key(bob_new) == "bob"

    # Ada's page's snapshot frame goes to her kernel (bob's, which asked for nothing, gets none).
    meta = {"id": "snap-1", "index": 0, "count": 1, "format": "jpeg", "width": 4, "height": 4}
    await ada_page.emit("frame", meta, b"\xff\xd8jpeg")
    await ada.wait_until(lambda: bool(ada.pushes("kernel_frame")), "ada's kernel taking the frame")
    assert ada.pushes("kernel_frame") == [ada_key]  # the page's key, then its meta and chunk
    assert not bob.pushes("kernel_frame")

    # Bob's kernel leaves and its keys are revoked: ada's page is not among their pages.
    await bob.close()
    await until(lambda: _revoked(hub), "bob's kernel gone and its keys revoked")
    assert not hub.knows(bob_key)
    answer = await ada_page.call("leave", {})
    assert answer == {"ok": True}, answer
    assert not ada_page.disconnected.is_set()

    lines = refusals(caplog, "register a widget key")
    assert len(lines) == 1, lines  # two refusals of one kind and minute: one line
    for secret in (ADA_SERVER, BOB_SERVER, ada_key, bob_new):
        assert secret not in caplog.text


def _revoked(hub: kernels.KernelHub) -> bool:
    counts = hub.counts()
    return counts["attached"] == 1 and counts["grace"] == 0


async def test_a_room_of_another_user_cannot_be_claimed(
    service: Service, clients: list[Peer], caplog: pytest.LogCaptureFixture
) -> None:
    """Attack: bob's kernel sets the capacity of ada's room (where her page is) to 2, which would
    lock her third guest out, and of a room ada's kernel claimed before anyone entered it; with
    ``kernel_settings``, and with ``kernel_attach``. Refused ``forbidden`` naming the room, and
    nothing else of the request applied; ada's room still holds her third guest. Beside it, each
    kernel claims its own user's room, and bob's claim of 2 does lock a third guest out there."""
    caplog.set_level(logging.INFO, logger="ipymeet.server")
    table = service.hub.signaller.room_capacity
    ada_key, bob_key = secrets.token_hex(8), secrets.token_hex(8)
    ada = await kernel(service, clients, "ada's kernel", ADA_SERVER)
    assert (await attach(ada, "ada-kernel", clients=[ada_key]))["ok"] is True
    ada_page = await page(service, clients, "ada's page", key=ada_key)
    await enter(ada_page, "ada-room", "Ada")
    claim = {"room_capacity": {"ada-room": 3, "ada-next": 4}}
    assert (await ada.call("kernel_settings", claim))["ok"] is True

    bob = await kernel(service, clients, "bob's kernel", BOB_SERVER)
    assert (await attach(bob, "bob-kernel", clients=[bob_key]))["ok"] is True
    bob_page = await page(service, clients, "bob's page", key=bob_key)
    await enter(bob_page, "bob-room", "Bob")

    attack = {"room_capacity": {"bob-room": 2, "ada-room": 2}}
    assert "'ada-room'" in forbidden(await bob.call("kernel_settings", attack))
    # A room ada's kernel claims, nobody in it yet.
    answer = await bob.call("kernel_settings", {"room_capacity": {"ada-next": 2}})
    assert "'ada-next'" in forbidden(answer)
    # Attaching another kernel of bob's that brings the claim along.
    other = await kernel(service, clients, "bob's other kernel", BOB_SERVER)
    answer = await attach(other, "bob-kernel-2", room_capacity={"ada-room": 2})
    assert "'ada-room'" in forbidden(answer)
    assert service.hub.counts()["attached"] == 2
    assert table.rooms() == {"ada-room": 3, "ada-next": 4}  # bob-room's 2 was not applied either

    carol = await page(service, clients, "carol", login="carol-login")
    dave = await page(service, clients, "dave", login="dave-login")
    await enter(carol, "ada-room")
    await enter(dave, "ada-room")  # the third guest: ada's room holds 3
    assert [m.name for m in service.hub.signaller.registry.members("ada-room")] == [
        "Ada",
        "carol",
        "dave",
    ]

    # Bob's own room: his kernel's claim of 2 stands, and does lock a third guest out.
    assert (await bob.call("kernel_settings", {"room_capacity": {"bob-room": 2}}))["ok"] is True
    await carol.call("leave", {})
    await dave.call("leave", {})
    await enter(carol, "bob-room")
    full = await dave.call("enter", {"room": "bob-room"})
    assert (full["ok"], full["code"]) == (False, "room_full"), full

    lines = refusals(caplog, "claim a room's capacity")
    assert len(lines) == 1, lines
    for secret in (ADA_SERVER, BOB_SERVER):
        assert secret not in caplog.text


async def test_a_kernel_hears_only_rooms_its_users_widgets_are_in(
    service: Service, clients: list[Peer], caplog: pytest.LogCaptureFixture
) -> None:
    """Attack: bob's kernel asks, when it attaches, to hear ada's room. Not heard: neither at
    once nor when carol enters it later; the first push bob's kernel gets is of his own room.
    Beside it, ada's kernel hears her room throughout; and bob's kernel hears ada's room while
    a page of his is in it, is told it empty once his page left, and then hears it no more."""
    caplog.set_level(logging.INFO, logger="ipymeet.server")
    ada_key, bob_key, bob_key2 = (secrets.token_hex(8) for _ in range(3))
    ada = await kernel(service, clients, "ada's kernel", ADA_SERVER)
    assert (await attach(ada, "ada-kernel", clients=[ada_key]))["ok"] is True
    ada_page = await page(service, clients, "ada's page", key=ada_key)
    await enter(ada_page, "ada-room", "Ada")
    await ada.wait_until(lambda: len(ada.pushes()) == 1, "ada's kernel hearing her room")
    assert names(ada.pushes()[0]) == ("ada-room", ["Ada"])

    bob = await kernel(service, clients, "bob's kernel", BOB_SERVER)
    answer = await attach(bob, "bob-kernel", clients=[bob_key, bob_key2], rooms=["ada-room"])
    assert answer["ok"] is True, answer  # attached; the room is just not heard
    carol = await page(service, clients, "carol", login="carol-login")
    await enter(carol, "ada-room")
    await ada.wait_until(lambda: len(ada.pushes()) == 2, "ada's kernel hearing carol")
    assert names(ada.pushes()[1]) == ("ada-room", ["Ada", "carol"])

    bob_page = await page(service, clients, "bob's page", key=bob_key)
    await enter(bob_page, "bob-room", "Bob")
    await bob.wait_until(lambda: bool(bob.pushes()), "bob's kernel hearing his room")
    assert [names(p) for p in bob.pushes()] == [("bob-room", ["Bob"])]

    # Bob's second page enters ada's room (any hub user may, by name): heard while it is in.
    visiting = await page(service, clients, "bob's visiting page", key=bob_key2)
    await enter(visiting, "ada-room", "Bob too")
    await bob.wait_until(lambda: len(bob.pushes()) == 2, "bob's kernel hearing ada's room")
    assert names(bob.pushes()[1]) == ("ada-room", ["Ada", "carol", "Bob too"])
    await visiting.call("leave", {})
    await bob.wait_until(lambda: len(bob.pushes()) == 3, "bob's kernel told it left")
    assert bob.pushes()[2] == {"room": "ada-room", "members": []}
    # Then nothing of it: dave enters ada's room, then carol bob's; bob's kernel hears carol.
    dave = await page(service, clients, "dave", login="dave-login")
    await enter(dave, "ada-room")
    await ada.wait_until(
        lambda: names(ada.pushes()[-1]) == ("ada-room", ["Ada", "carol", "dave"]),
        "ada's kernel hearing dave",
    )
    await carol.call("leave", {})
    await enter(carol, "bob-room")
    await bob.wait_until(lambda: len(bob.pushes()) == 4, "bob's kernel hearing carol")
    assert names(bob.pushes()[3]) == ("bob-room", ["Bob", "carol"])

    lines = refusals(caplog, "hear a room's members")
    assert len(lines) == 1, lines
    assert BOB_SERVER not in caplog.text


async def test_a_kernel_whose_claim_is_refused_says_so_where_it_was_made(
    service: Service, clients: list[Peer]
) -> None:
    """The refusal reaches the user who asked: bob's kernel, attached as a real ServiceSignaller,
    asks for the capacity of the room ada's page is in (what ``VideoRoom("ada-room",
    max_peers=2)`` does) and gets a ValueError naming the room, holding nothing; his own room's
    claim is taken."""
    ada_key = secrets.token_hex(8)
    ada = await kernel(service, clients, "ada's kernel", ADA_SERVER)
    assert (await attach(ada, "ada-kernel", clients=[ada_key]))["ok"] is True
    await enter(await page(service, clients, "ada's page", key=ada_key), "ada-room", "Ada")

    bob = ServiceSignaller(ServiceTarget(service.url, BOB_SERVER))
    await asyncio.to_thread(bob.start)
    try:
        with pytest.raises(ValueError, match=r"max_peers: .*'ada-room'"):
            await asyncio.to_thread(bob.set_room_capacity, "ada-room", 2)
        release = await asyncio.to_thread(bob.set_room_capacity, "bob-room", 2)
        table = service.hub.signaller.room_capacity
        assert table.rooms() == {"bob-room": 2}
        await asyncio.to_thread(release)
        await until(lambda: table.rooms() == {}, "bob's claim to go")
    finally:
        await asyncio.to_thread(bob.stop)
