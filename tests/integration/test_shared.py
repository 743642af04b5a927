"""One signaller per user and machine, shared by the user's kernels (server/kernel/sharing.py,
server/kernel/kernels.py): several "kernels" (``KernelSignaller`` facades) in this process, on a
runtime directory and a port of the test's own, with real Socket.IO pages.

The second kernel attaches instead of hosting; a squatter on the port is never used; nothing an
unattached client sends gets further than the handshake; pages of two kernels meet in one room
and both kernels see its members first-hand; frames reach the kernel whose widget asked; tokens
minted on an attached kernel open the room; when the host stops, an attached kernel hosts on the
same port within 2 s and the pages come back under their ids; an unknown key waits, then is
refused; an attached kernel's keys are revoked 3 s after it leaves, unless it is back.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import secrets
import ssl
import stat
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import socketio
from aiohttp import web

from ipymeet.server import Settings
from ipymeet.server.core import tokens
from ipymeet.server.core.frames import Frame
from ipymeet.server.kernel.kernels import KEY_WAIT, REVOKE_AFTER, proof
from ipymeet.server.kernel.runtime import RUNTIME_FILE, RuntimeInfo, read_runtime, write_runtime
from ipymeet.server.kernel.sharing import KernelSignaller
from ipymeet.widget.binding import KernelBinding

from ..support import free_port
from .helpers import Peer, connected
from .pages import TIMEOUT, Page, pages, wait_until

Kernels = Callable[..., KernelSignaller]
THREADS = ("ipymeet-signaller", "ipymeet-attach", "ipymeet-failover")


def _threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name in THREADS and t.is_alive()}


@pytest.fixture
def port() -> int:
    """The user's port, for this test: where the first kernel hosts."""
    return free_port()


@pytest.fixture
def kernels(tmp_path: Path, port: int) -> Iterator[Kernels]:
    """Start "kernels" sharing ``tmp_path`` as their runtime directory and ``port``; all stop
    after, and none of their threads may be left."""
    before = _threads()
    started: list[KernelSignaller] = []

    def make(**settings: Any) -> KernelSignaller:
        settings.setdefault("ice_servers", ())
        kernel = KernelSignaller(Settings(**settings), runtime_dir=tmp_path, port=port)
        started.append(kernel)
        return kernel.start()

    yield make
    for kernel in started:
        kernel.stop()
    deadline = time.monotonic() + 5
    while _threads() - before and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not _threads() - before, f"threads left: {_threads() - before}"


async def stop(kernel: KernelSignaller) -> None:
    """Stop a kernel from a thread: its signaller says goodbye to pages on this test's loop."""
    await asyncio.to_thread(kernel.stop)


async def settled(future: concurrent.futures.Future[Frame]) -> Frame:
    """What a kernel's frame future comes to, within the tests' timeout."""
    return await asyncio.wait_for(asyncio.wrap_future(future), TIMEOUT)


def names(members: list[Any]) -> list[str]:
    return sorted(member.name for member in members)


def hosting(*all_: KernelSignaller) -> KernelSignaller:
    (host,) = [kernel for kernel in all_ if kernel.hosting]
    return host


# -- finding the host ----------------------------------------------------------------------------


def test_the_second_kernel_attaches_instead_of_hosting(
    kernels: Kernels, tmp_path: Path, port: int
) -> None:
    a = kernels()
    before = {t for t in threading.enumerate() if t.name == "ipymeet-signaller"}
    b = kernels()
    after = {t for t in threading.enumerate() if t.name == "ipymeet-signaller"}
    assert (a.hosting, b.hosting) == (True, False)
    assert after == before, "the second kernel started a signaller of its own"
    assert a.port == b.port == port
    assert a.url == b.url == f"http://127.0.0.1:{port}"
    assert b.settings.max_peers == a.settings.max_peers
    assert a.hub is not None
    assert a.hub.attached() == [b.kernel_id]
    path = tmp_path / RUNTIME_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    info = read_runtime(path)
    assert info is not None
    assert (info.port, info.pid, info.url, info.kernel) == (port, os.getpid(), a.url, a.kernel_id)
    assert len(info.secret) == 32
    # No temporary file is left beside it.
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "ipymeet-signaller.json",
        "ipymeet-signaller.lock",
    ]


def test_a_kernel_attaches_to_a_self_signed_host_without_loading_the_systems_cas(
    kernels: Kernels, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over TLS the host's certificate is self-signed: the proof, not the certificate, is the
    check. And no connect loads the system's CA certificates, 50 ms of CPU (several hundred under
    load) that python-engineio's ``ssl_verify=False`` spends at every connect, a takeover too."""
    a = kernels(tls="self-signed")
    loaded: list[str] = []
    default_context = ssl.create_default_context

    def counted(*args: Any, **kwargs: Any) -> ssl.SSLContext:
        loaded.append(threading.current_thread().name)
        return default_context(*args, **kwargs)

    monkeypatch.setattr(ssl, "create_default_context", counted)
    b = kernels()
    assert (a.hosting, b.hosting) == (True, False)
    assert b.url == a.url
    assert b.url.startswith("https://127.0.0.1:")
    assert b.fingerprint == a.fingerprint is not None
    b.register("key-b")  # answered by the host over the TLS connection
    assert a.hub is not None
    assert a.hub.attached() == [b.kernel_id]
    assert "ipymeet-attach" not in loaded


async def test_a_squatter_on_the_port_is_not_used_and_the_kernels_still_meet(
    kernels: Kernels, port: int
) -> None:
    """A plain web server holds the user's port: the first kernel hosts on a free one, the
    second finds it in the runtime file, and their widgets' pages meet."""
    runner = web.AppRunner(web.Application())
    await runner.setup()
    squatter = web.TCPSite(runner, "127.0.0.1", port)
    await squatter.start()
    try:
        a = await asyncio.to_thread(kernels)
        b = await asyncio.to_thread(kernels)
        assert a.hosting
        assert not b.hosting
        assert a.port == b.port != port
        a.register("key-of-a")
        await asyncio.to_thread(b.register, "key-of-b")
        async with pages(
            Page(b.url, "key-of-a", "team", "Ann"), Page(b.url, "key-of-b", "team", "Bob")
        ) as (ann, bob):
            await ann.join()
            answer = await bob.join()
            assert answer["peers"] == [{"id": ann.id, "name": "Ann"}]
            await wait_until(lambda: names(b.members("team")) == ["Ann", "Bob"], "b to see both")
    finally:
        await runner.cleanup()


async def test_a_socketio_squatter_named_by_a_stale_file_never_gets_a_proof(
    kernels: Kernels, tmp_path: Path, port: int
) -> None:
    """The runtime file names a port that a Socket.IO server without the secret now holds (its
    host died, and another user took the port): the kernel asks it for its proof, finds it
    wrong, sends nothing more, and hosts elsewhere; the file is replaced."""
    heard: list[str] = []
    sio = socketio.AsyncServer(async_mode="aiohttp")

    @sio.on("*")  # type: ignore[misc]
    async def anything(event: str, sid: str, data: Any = None) -> dict[str, Any]:
        heard.append(event)
        return {"ok": True, "proof": "0" * 64, "challenge": "1" * 64}

    app = web.Application()
    sio.attach(app)
    runner = web.AppRunner(app)
    await runner.setup()
    squatted = free_port()
    await web.TCPSite(runner, "127.0.0.1", squatted).start()
    stale = RuntimeInfo(squatted, os.getpid(), f"http://127.0.0.1:{squatted}", b"s" * 32, "gone")
    write_runtime(tmp_path / RUNTIME_FILE, stale)
    try:
        a = await asyncio.to_thread(kernels)
    finally:
        await runner.cleanup()
    assert heard == ["kernel_hello"], "the kernel sent more than its hello to a squatter"
    assert a.hosting
    assert a.port == port != squatted
    info = read_runtime(tmp_path / RUNTIME_FILE)
    assert info is not None
    assert (info.port, info.kernel) == (port, a.kernel_id)
    assert info.secret != stale.secret


async def test_a_stale_file_of_a_dead_host_is_replaced(
    kernels: Kernels, tmp_path: Path, port: int
) -> None:
    """Its process is gone (SIGKILL leaves the file): the next kernel hosts, on that port."""
    gone = await asyncio.create_subprocess_exec("true")
    await gone.wait()
    old_port = free_port()
    stale = RuntimeInfo(old_port, gone.pid, f"http://127.0.0.1:{old_port}", b"x" * 32, "dead")
    write_runtime(tmp_path / RUNTIME_FILE, stale)
    a = kernels()
    assert a.hosting
    assert a.port == old_port  # where the dead host's pages come back
    info = read_runtime(tmp_path / RUNTIME_FILE)
    assert info is not None
    assert (info.pid, info.kernel, info.port) == (os.getpid(), a.kernel_id, old_port)


# -- what a client that did not attach can do ----------------------------------------------------


async def test_an_unattached_clients_kernel_events_are_refused(
    kernels: Kernels, server_logs: list[logging.LogRecord]
) -> None:
    a = kernels()
    assert a.hub is not None
    async with connected(a.url, "stranger") as (stranger,):
        for event in ("kernel_clients", "kernel_settings"):
            for payload in ({"add": ["k" * 16]}, {"require_tokens": True}, None, [1], "x" * 9999):
                answer = await stranger.call(event, payload)
                assert (answer["ok"], answer["code"]) == (False, "not_attached"), (event, answer)
        for junk in (
            None,
            {},
            {"challenge": 5},
            {"challenge": "g" * 64},
            {"challenge": "a" * 63},
            {"challenge": ["a" * 64]},
            "a" * 64,
            [{"challenge": "a" * 64}],
        ):
            answer = await stranger.call("kernel_hello", junk)
            assert (answer["ok"], answer["code"]) == (False, "bad_request"), (junk, answer)
        # Hellos keep one pending challenge per connection, however many come.
        for _ in range(50):
            answer = await stranger.call("kernel_hello", {"challenge": secrets.token_hex(32)})
            assert answer["ok"] is True
        assert a.hub.counts()["challenges"] == 1
        # Nothing it said made it a kernel or registered a key.
        refused = await Page(a.url, "k" * 16, "team", "x").try_join()
        assert refused["code"] == "unknown_widget"
        assert a.hub.counts() == {
            "attached": 0,
            "keys": 0,
            "grace": 0,
            "challenges": 1,
            "waiting": 0,
        }
    await wait_until(lambda: a.hub is not None and a.hub.counts()["challenges"] == 0, "cleanup")
    assert server_logs == []


async def test_a_wrong_proof_closes_the_connection(kernels: Kernels, tmp_path: Path) -> None:
    a = kernels()
    assert a.hub is not None
    info = read_runtime(tmp_path / RUNTIME_FILE)
    assert info is not None
    secret, port = info.secret, a.port
    attach = {"kernel": "intruder-1", "clients": ["k" * 16]}

    async def attach_with(make_proof: Callable[[dict[str, Any]], str] | None) -> Peer:
        async with connected(a.url, "intruder") as (intruder,):
            if make_proof is None:
                await intruder.emit("kernel_attach", {**attach, "proof": "0" * 64})
            else:
                hello = await intruder.call("kernel_hello", {"challenge": secrets.token_hex(32)})
                assert hello["proof"] != proof(secret, "host", port, hello["challenge"])
                await intruder.emit("kernel_attach", {**attach, "proof": make_proof(hello)})
            await intruder.wait_until(intruder.disconnected.is_set, "the host to close it")
            return intruder

    await attach_with(None)  # no hello first
    await attach_with(lambda hello: str(hello["proof"]))  # the host's own proof, sent back
    await attach_with(lambda hello: proof(secret, "host", port, hello["challenge"]))  # its role
    await attach_with(lambda hello: proof(secret, "kernel", 1, hello["challenge"]))  # port
    await attach_with(lambda hello: proof(b"w" * 32, "kernel", port, hello["challenge"]))
    await attach_with(lambda hello: proof(secret, "kernel", port, "9" * 64))  # another challenge
    assert a.hub.attached() == []
    assert a.hub.counts()["keys"] == 0
    # The same steps with the right proof do attach (so the refusals above are the proofs').
    async with connected(a.url, "kernel") as (kernel,):
        hello = await kernel.call("kernel_hello", {"challenge": "ab" * 32})
        assert hello["proof"] == proof(secret, "host", port, "ab" * 32)
        right = proof(secret, "kernel", port, hello["challenge"])
        answer = await kernel.call("kernel_attach", {**attach, "proof": right})
        assert (answer["ok"], answer["port"], answer["requires_tokens"]) == (True, port, False)
        assert a.hub.attached() == ["intruder-1"]
        # Attached, the events before refused are taken.
        assert await kernel.call("kernel_clients", {"add": ["k2" * 8]}) == {"ok": True}
        assert a.hub.counts()["keys"] == 2


# -- rooms across kernels --------------------------------------------------------------------------


@pytest.mark.usefixtures("engine_path")
async def test_pages_of_two_kernels_meet_and_both_see_the_members(kernels: Kernels) -> None:
    a, b = kernels(max_peers=4), kernels()
    heard: list[tuple[str, list[str]]] = []
    b.subscribe(lambda room: heard.append((room, names(b.members(room)))))
    a.register("key-a")
    b.register("key-b")
    async with pages(Page(a.url, "key-a", "team", "Ann"), Page(b.url, "key-b", "team", "Bob")) as (
        ann,
        bob,
    ):
        await ann.join()
        answer = await bob.join()
        assert answer["capacity"] == 4
        assert answer["peers"] == [{"id": ann.id, "name": "Ann"}]
        await ann.wait_until(
            lambda: ("peer_joined", {"id": bob.id, "name": "Bob"}) in ann.events, "Bob"
        )
        await wait_until(lambda: names(b.members("team")) == ["Ann", "Bob"], "b to see both")
        assert names(a.members("team")) == ["Ann", "Bob"]
        # The attached kernel knows which member is its own widget's page, and only that one.
        assert {m.id: m.client for m in b.members("team")} == {ann.id: "", bob.id: "key-b"}
        assert ("team", ["Ann", "Bob"]) in heard
        # A key no kernel registered is refused at once (this host did not take over).
        refused = await Page(a.url, "key-nobody", "team", "Eve").try_join()
        assert refused["code"] == "unknown_widget"
        # Bob leaves: the attached kernel hears its last change of the room, then none.
        assert (await bob.call("leave", {}))["ok"] is True
        await wait_until(lambda: b.members("team") == [], "b to hear Bob left")
        assert names(a.members("team")) == ["Ann"]
        assert heard[-1] == ("team", [])


async def test_a_binding_on_an_attached_kernel_has_live_peers_and_tokens(
    kernels: Kernels,
) -> None:
    """widget/binding.py on an attached kernel: its page is admitted, ``peers`` comes from the
    host's pushes, tokens turned on by the host reach it, and its port follows."""
    a, b = kernels(), kernels()
    widget = _Widget()
    bound = KernelBinding(
        b, "key-w", on_members=widget.members, on_tokens_required=widget.tokens, follow_port=widget
    )
    a.register("key-a")
    try:
        async with pages(
            Page(a.url, "key-w", "lab", "Wanda"), Page(a.url, "key-a", "lab", "Ann")
        ) as (wanda, ann):
            await wanda.join()
            await ann.join()
            await wait_until(lambda: "lab" in widget.rooms, "the binding to hear of lab")
            await wait_until(lambda: len(bound.peers("lab", {})) == 1, "Ann among the peers")
            assert [(p["id"], p["name"]) for p in bound.peers("lab", {})] == [(ann.id, "Ann")]
            assert widget._port == 0  # set by the widget itself when made (room.py)
            a.require_tokens()
            await wait_until(lambda: widget.secure, "the attached binding to hear tokens are on")
            assert widget._port == a.port  # on_change: the binding keeps it at the host's port
            token = bound.browser_token("lab")
            assert token is not None
            async with pages(Page(a.url, "key-a", "lab", "Ann2", token=token)) as (again,):
                assert (await again.try_join())["ok"] is True
    finally:
        bound.close()
    hub = a.hub
    assert hub is not None
    await wait_until(lambda: not hub.knows("key-w"), "the host to forget the closed widget")
    refused = await Page(a.url, "key-w", "lab", "Wanda", token=a.mint("lab")).try_join()
    assert refused["code"] == "unknown_widget"


class _Widget:
    """What KernelBinding holds of a widget: its callbacks and its ``_port``."""

    def __init__(self) -> None:
        self.rooms: list[str] = []
        self.secure = False
        self._port = 0

    def members(self, room: str) -> None:
        self.rooms.append(room)

    def tokens(self) -> None:
        self.secure = True

    def set_trait(self, name: str, value: Any) -> None:
        setattr(self, name, value)


async def test_frames_reach_the_kernel_whose_widget_asked(kernels: Kernels) -> None:
    a, b = kernels(), kernels()
    a.register("key-a")
    b.register("key-b")
    async with pages(Page(a.url, "key-a", "snap", "Ann"), Page(a.url, "key-b", "snap", "Bob")) as (
        ann,
        bob,
    ):
        await ann.join()
        await bob.join()
        wanted = b.expect_frame("frame-for-b", "key-b")
        pixels = bytes(range(256)) * 4  # 16 x 16 RGBA
        meta = {"id": "frame-for-b", "count": 2, "width": 16, "height": 16, "format": "rgba"}
        await bob.emit("frame", {**meta, "index": 0}, pixels[:600])
        await bob.emit("frame", {**meta, "index": 1}, pixels[600:])
        frame = await settled(wanted)
        assert frame == Frame(16, 16, "rgba", pixels)
        # Not asked of that page (another widget's request, or none): refused, as on the host.
        other = b.expect_frame("frame-for-b-2", "key-b")
        await ann.emit("frame", {**meta, "id": "frame-for-b-2", "index": 0}, pixels)
        await ann.wait_until(lambda: any(e[0] == "error" for e in ann.events), "a refusal")
        assert [e[1]["code"] for e in ann.events if e[0] == "error"] == ["not_expected"]
        assert not other.done()
        b.cancel_frame("frame-for-b-2")
        # The host's own widgets' frames stay on the host.
        own = a.expect_frame("frame-for-a", "key-a")
        one = {"id": "frame-for-a", "count": 1, "index": 0, "width": 1, "height": 1}
        await ann.emit("frame", {**one, "format": "png"}, b"\x89PNG")
        assert (await settled(own)).data == b"\x89PNG"
        # A page that cannot take the frame says so; the asking kernel's future fails.
        failing = b.expect_frame("frame-for-b-3", "key-b")
        await bob.emit("frame", {"id": "frame-for-b-3", "error": "no video"})
        with pytest.raises(RuntimeError, match="no video"):
            await settled(failing)


async def test_tokens_minted_on_an_attached_kernel_open_the_room(kernels: Kernels) -> None:
    a, b = kernels(), kernels()
    changes: list[bool] = []
    a.on_change(lambda: changes.append(a.requires_tokens))
    b.register("key-b")
    b.require_tokens()
    assert a.requires_tokens
    assert b.requires_tokens
    assert changes == [True]
    b.set_max_peers(3)
    await wait_until(lambda: a.settings.max_peers == 3, "the host to take the capacity")
    assert b.settings.max_peers == 3
    async with pages(
        Page(a.url, "key-b", "vault", "Bob", token=b.mint("vault", 60)),
        Page(a.url, "", "vault", "Guest", token=a.mint("vault", 60)),
        Page(a.url, "", "vault", "Eve"),
        Page(a.url, "", "vault", "Mallory", token=b.mint("other-room", 60)),
    ) as (bob, guest, eve, mallory):
        assert (await bob.join())["capacity"] == 3
        await guest.join()
        assert (await eve.try_join())["reason"] == "missing"
        assert (await mallory.try_join())["reason"] == "other_room"
    with pytest.raises(tokens.TokenError, match="expired"):
        tokens.verify(a.settings.secret or b"", "vault", b.mint("vault", 1), now=time.time() + 99)


# -- when the host ends ----------------------------------------------------------------------------


@pytest.mark.usefixtures("engine_path")
async def test_an_attached_kernel_takes_over_on_the_same_port_and_the_pages_come_back(
    kernels: Kernels, tmp_path: Path, port: int
) -> None:
    a = kernels(max_peers=5)
    b, c = kernels(), kernels()
    a.require_tokens()
    for kernel, key in ((a, "key-a"), (b, "key-b"), (c, "key-c")):
        kernel.register(key)
    room = "team"
    async with pages(
        Page(a.url, "key-a", room, "Ann", token=a.mint(room)),
        Page(a.url, "key-b", room, "Bob", token=b.mint(room)),
        Page(a.url, "key-c", room, "Cy", token=c.mint(room)),
    ) as (ann, bob, cy):
        for page in (ann, bob, cy):
            await page.join()
        for kernel in (b, c):
            await wait_until(lambda k=kernel: len(k.members(room)) == 3, "all three")
        ids = {page.name: page.id for page in (ann, bob, cy)}
        started = time.monotonic()
        await stop(a)
        await wait_until(lambda: b.hosting or c.hosting, "an attached kernel to host")
        took_over = time.monotonic() - started
        host = hosting(b, c)
        other = c if host is b else b
        await wait_until(lambda: bob.back_at is not None and cy.back_at is not None, "re-entry")
        back = max(bob.back_at or 0, cy.back_at or 0) - started
        print(f"\nfailover: hosting after {took_over:.3f} s, pages back after {back:.3f} s")
        assert took_over < 2.0
        assert back < 2.0
        assert host.port == other.port == port
        info = read_runtime(tmp_path / RUNTIME_FILE)
        assert info is not None
        assert (info.port, info.kernel) == (port, host.kernel_id)
        # Same ids, the same tokens accepted (the same token secret), the same capacity.
        assert {bob.answer["self"], cy.answer["self"]} == {ids["Bob"], ids["Cy"]}
        assert bob.answer["capacity"] == 5
        assert host.requires_tokens
        # The ended kernel's page waits for its key, then hears it is no widget of anyone's.
        await ann.wait_until(lambda: ann.ended == "unknown_widget", "Ann refused")
        await wait_until(lambda: names(other.members(room)) == ["Bob", "Cy"], "other: whole")
        assert names(host.members(room)) == ["Bob", "Cy"]
        assert host.hub is not None
        assert host.hub.attached() == [other.kernel_id]


async def test_a_host_that_took_over_defers_an_unknown_key_then_refuses_it(
    kernels: Kernels,
) -> None:
    a, b = kernels(), kernels()
    await stop(a)
    await wait_until(lambda: b.hosting, "b to host")
    assert b.hub is not None
    hub = b.hub
    started = time.monotonic()
    refused = await Page(b.url, "key-of-no-one", "team", "Eve").try_join()
    waited = time.monotonic() - started
    assert refused["code"] == "unknown_widget"
    assert KEY_WAIT - 0.2 < waited < KEY_WAIT + 2
    # A key that a kernel registers while the page waits: the page enters.
    async with pages(Page(b.url, "key-of-late", "team", "Lou")) as (lou,):
        entering = asyncio.ensure_future(lou.try_join())
        await wait_until(lambda: hub.counts()["waiting"] == 1, "Lou's enter to wait for its key")
        late = await asyncio.to_thread(kernels)
        assert not late.hosting
        await asyncio.to_thread(late.register, "key-of-late")
        assert (await asyncio.wait_for(entering, TIMEOUT))["ok"] is True
        assert hub.counts()["waiting"] == 0


async def test_an_attached_kernels_keys_are_revoked_3_s_after_it_leaves_unless_it_is_back(
    kernels: Kernels,
) -> None:
    a, b = kernels(), kernels()
    assert a.hub is not None
    hub = a.hub
    a.register("key-a")
    b.register("key-b")
    async with pages(Page(a.url, "key-a", "r", "Ann"), Page(a.url, "key-b", "r", "Bob")) as (
        ann,
        bob,
    ):
        await ann.join()
        await bob.join()
        # A blip: the host drops b's connection; b attaches again, and Bob's page stays.
        assert a.thread is not None
        assert a.thread.loop is not None
        signaller = a.thread.signaller
        link_sid = hub.sid_of(b.kernel_id)
        assert link_sid is not None
        a.thread.loop.call_soon_threadsafe(signaller.drop, signaller.connections[link_sid])
        await wait_until(lambda: link_sid not in signaller.connections, "b's link to drop")
        await wait_until(lambda: hub.attached() == [b.kernel_id], "b to attach again")
        assert hub.counts()["grace"] == 0  # its revocation was called off
        assert bob.connected
        assert bob.dropped_at is None
        # b leaves for good: 3 s later its page is closed and can no longer enter.
        left = time.monotonic()
        await stop(b)
        await bob.wait_until(lambda: bob.dropped_at is not None, "Bob's page to be closed")
        assert bob.dropped_at is not None
        after = bob.dropped_at - left
        assert REVOKE_AFTER - 0.2 < after < REVOKE_AFTER + 2
        await bob.wait_until(lambda: bob.ended == "unknown_widget", "Bob refused")
        assert names(a.members("r")) == ["Ann"]
        assert hub.counts()["keys"] == 1


async def test_a_failover_that_keeps_failing_warns_once_and_says_when_it_is_back(
    kernels: Kernels, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The failover tries again and again (the runtime folder is gone, here, as a cleaner of
    temporary files may do): one warning, which lands in the running cell's output, not one per
    try; and one when it is back. The host stopped without its folder, too."""
    caplog.set_level(logging.DEBUG, logger="ipymeet.server")
    a, b = kernels(), kernels()
    hidden = tmp_path.with_name(tmp_path.name + "-away")
    tries = "could not reach or host the signaller"

    def away() -> None:  # the runtime folder gone, and a file has its name: no lock there
        tmp_path.rename(hidden)
        tmp_path.write_text("not a folder")

    def back() -> None:
        tmp_path.unlink()
        hidden.rename(tmp_path)

    await asyncio.to_thread(away)
    await stop(a)
    try:
        await wait_until(
            lambda: sum(tries in r.getMessage() for r in caplog.records) >= 4, "four tries"
        )
    finally:
        await asyncio.to_thread(back)
    await wait_until(lambda: b.hosting, "b to host once the folder is back")
    await wait_until(
        lambda: any("back after" in r.getMessage() for r in caplog.records), "it says so"
    )
    warned = [
        r for r in caplog.records if r.levelno >= logging.WARNING and "signaller" in r.getMessage()
    ]
    assert [tries in r.getMessage() for r in warned] == [True, False]
    assert "back after" in warned[1].getMessage()
