"""Capacity per room on the signaller a user's kernels share (server/core/capacity.py): a widget's
``max_peers`` is its own room's, never that of the rooms of the user's other notebooks.

Several "kernels" (``KernelSignaller`` facades) in this process, on a runtime directory and a port
of the test's own, with real Socket.IO pages: kernel 1's widget sets room "a" to 2, kernel 2's
room "b" keeps the default; "a" refuses a third with ``room_full`` and capacity 2 while "b" takes
four; when the host stops and kernel 1 takes over, "a" still holds 2. A kernel that claims a
capacity before it attaches brings it to the host in ``kernel_attach``, and after a failover to
the kernel that takes over; the host drops a kernel's claims with its keys. What a kernel sends
in ``room_capacity`` is checked.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ipymeet.server import Settings
from ipymeet.server.kernel.kernels import MAX_ROOMS, REVOKE_AFTER, proof
from ipymeet.server.kernel.runtime import RUNTIME_FILE, read_runtime
from ipymeet.server.kernel.sharing import KernelSignaller
from ipymeet.widget.binding import KernelBinding

from ..support import free_port
from .helpers import connected
from .pages import Page, pages, wait_until

#: Make a kernel: ``start=False`` leaves it to the test to start.
Kernels = Callable[..., KernelSignaller]
DEFAULT = Settings().max_peers


@pytest.fixture
def kernels(tmp_path: Path) -> Iterator[Kernels]:
    """Start "kernels" sharing ``tmp_path`` as their runtime directory and a free port; all
    stop after."""
    port = free_port()
    made: list[KernelSignaller] = []

    def make(*, start: bool = True) -> KernelSignaller:
        kernel = KernelSignaller(Settings(ice_servers=()), runtime_dir=tmp_path, port=port)
        made.append(kernel)
        return kernel.start() if start else kernel

    yield make
    for kernel in made:
        kernel.stop()


class _Widget:
    """What KernelBinding holds of a widget: its callbacks and its ``_port``."""

    def __init__(self) -> None:
        self._port = 0

    def members(self, room: str) -> None:
        pass

    def tokens(self) -> None:
        pass

    def set_trait(self, name: str, value: Any) -> None:
        setattr(self, name, value)


def capacity_on_host(kernel: KernelSignaller, room: str) -> int:
    """What ``room`` holds on the signaller ``kernel`` hosts."""
    assert kernel.thread is not None
    return kernel.thread.signaller.room_capacity.get(room, kernel.settings.max_peers)


async def test_a_widgets_max_peers_is_its_rooms_and_outlives_the_host(
    kernels: Kernels,
) -> None:
    second = kernels()  # kernel 2 hosts: its widget is in room "b", with the default
    first = kernels()  # kernel 1 attaches: its widget is in room "a", with max_peers=2
    assert (second.hosting, first.hosting) == (True, False)
    widget = _Widget()
    bound = KernelBinding(
        first, "key-1", on_members=widget.members, on_tokens_required=widget.tokens
    )
    second.register("key-2")
    try:
        # From the widget's thread, as VideoRoom does: the host has it once this returns.
        bound.hold_capacity("a", 2)
        assert capacity_on_host(second, "a") == 2
        assert (second.settings.max_peers, first.settings.max_peers) == (DEFAULT, DEFAULT)
        in_b = [Page(second.url, "key-2", "b", f"B{i}") for i in range(4)]
        async with pages(*in_b):
            for page in in_b:
                assert (await page.join())["capacity"] == DEFAULT
        async with pages(
            Page(first.url, "key-1", "a", "Ann"),
            Page(first.url, "key-1", "a", "Abe"),
            Page(first.url, "key-1", "a", "Al"),
        ) as (ann, abe, al):
            assert (await ann.join())["capacity"] == 2
            assert (await abe.join())["capacity"] == 2
            refused = await al.try_join()
            assert (refused["ok"], refused["code"], refused["capacity"]) == (False, "room_full", 2)
            # The host stops: kernel 1 hosts now, and keeps its widget's room at 2.
            await asyncio.to_thread(second.stop)
            await wait_until(lambda: first.hosting, "kernel 1 to take over")
            await wait_until(
                lambda: ann.back_at is not None and abe.back_at is not None, "re-entry"
            )
            assert (ann.answer["capacity"], abe.answer["capacity"]) == (2, 2)
            assert capacity_on_host(first, "a") == 2
            async with pages(Page(first.url, "key-1", "a", "Amy")) as (amy,):
                refused = await amy.try_join()
                assert (refused["code"], refused["capacity"]) == ("room_full", 2)
            # Another room of the same widget's kernel holds the default.
            async with pages(Page(first.url, "key-1", "c", "Cy")) as (cy,):
                assert (await cy.join())["capacity"] == DEFAULT
            # The widget moves to another room: its capacity goes along.
            bound.hold_capacity("c", 3)
            assert (capacity_on_host(first, "a"), capacity_on_host(first, "c")) == (DEFAULT, 3)
    finally:
        bound.close()
    assert capacity_on_host(first, "c") == DEFAULT


async def test_claims_go_to_the_host_on_attach_and_to_whoever_takes_over(
    kernels: Kernels, tmp_path: Path
) -> None:
    host = kernels()
    late = kernels(start=False)
    release = late.set_room_capacity("a", 3)  # before it attached: kept, then sent on attach
    late.start()
    assert not late.hosting
    assert capacity_on_host(host, "a") == 3
    other = kernels()
    other.set_room_capacity("o", 4)
    assert capacity_on_host(host, "o") == 4
    # The host stops; whichever of the two hosts next, both rooms hold what they did.
    await asyncio.to_thread(host.stop)
    await wait_until(lambda: late.hosting or other.hosting, "a kernel to take over")
    new_host = late if late.hosting else other
    attached = other if new_host is late else late
    hub = new_host.hub
    assert hub is not None
    await wait_until(lambda: hub.attached() == [attached.kernel_id], "the other to attach")
    await wait_until(lambda: capacity_on_host(new_host, "a") == 3, "a's claim on the new host")
    assert capacity_on_host(new_host, "o") == 4
    info = read_runtime(tmp_path / RUNTIME_FILE)
    assert info is not None
    assert info.kernel == new_host.kernel_id
    # A release reaches whichever hosts; released twice, nothing more happens.
    release()
    release()
    await wait_until(lambda: capacity_on_host(new_host, "a") == DEFAULT, "a's claim to go")
    assert capacity_on_host(new_host, "o") == 4


async def test_an_attached_kernels_claims_go_with_its_keys(kernels: Kernels) -> None:
    host, leaving = kernels(), kernels()
    leaving.register("key-l")
    leaving.set_room_capacity("a", 2)
    host.set_room_capacity("h", 5)
    assert (capacity_on_host(host, "a"), capacity_on_host(host, "h")) == (2, 5)
    left = time.monotonic()
    await asyncio.to_thread(leaving.stop)
    hub = host.hub
    assert hub is not None
    await wait_until(lambda: hub.counts()["keys"] == 0, "the keys to be revoked")
    assert time.monotonic() - left > REVOKE_AFTER - 0.2
    assert capacity_on_host(host, "a") == DEFAULT
    assert capacity_on_host(host, "h") == 5  # the host's own stays


async def test_room_capacity_from_a_kernel_is_checked(kernels: Kernels, tmp_path: Path) -> None:
    host = kernels()
    info = read_runtime(tmp_path / RUNTIME_FILE)
    assert info is not None
    table = host.thread.signaller.room_capacity if host.thread is not None else None
    assert table is not None
    bad: list[Any] = [
        [["a", 2]],
        {"a": 1},
        {"a": 65},
        {"a": 2.0},
        {"a": True},
        {"a": "2"},
        {"no spaces": 2},
        {"x" * 65: 2},
        {f"r{i}": 2 for i in range(MAX_ROOMS + 1)},
    ]
    async with connected(host.url, "kernel") as (kernel,):
        hello = await kernel.call("kernel_hello", {"challenge": secrets.token_hex(32)})
        attach = {
            "proof": proof(info.secret, "kernel", host.port, hello["challenge"]),
            "kernel": "checked-1",
            "clients": [],
        }
        answer = await kernel.call("kernel_attach", {**attach, "room_capacity": {"a": 1}})
        assert (answer["ok"], answer["code"]) == (False, "bad_request")
        hello = await kernel.call("kernel_hello", {"challenge": secrets.token_hex(32)})
        attach["proof"] = proof(info.secret, "kernel", host.port, hello["challenge"])
        answer = await kernel.call("kernel_attach", {**attach, "room_capacity": {"a": 2}})
        assert answer["ok"] is True
        assert table.of("checked-1") == {"a": 2}
        for value in bad:
            answer = await kernel.call("kernel_settings", {"room_capacity": value})
            assert (answer["ok"], answer["code"]) == (False, "bad_request"), value
        assert table.of("checked-1") == {"a": 2}
        # At most MAX_ROOMS rooms per kernel, counting those it has already.
        many = {f"r{i}": 2 for i in range(MAX_ROOMS)}
        answer = await kernel.call("kernel_settings", {"room_capacity": many})
        assert (answer["ok"], answer["code"]) == (False, "too_many_rooms")
        del many["r0"]
        many["a"] = None  # dropping one makes room for another in the same request
        answer = await kernel.call("kernel_settings", {"room_capacity": many})
        assert answer["ok"] is True
        assert len(table.of("checked-1")) == MAX_ROOMS - 1
        assert "a" not in table.of("checked-1")
        assert table.get("r7", DEFAULT) == 2
        assert (await kernel.call("kernel_settings", {"room_capacity": {"a": 3}}))["ok"] is True
        answer = await kernel.call("kernel_settings", {"room_capacity": {"r0": 3}})
        assert (answer["ok"], answer["code"]) == (False, "too_many_rooms")
        assert table.get("a", DEFAULT) == 3
