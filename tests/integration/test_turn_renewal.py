"""Fresh TURN credentials before the old ones expire: the ``ice_servers`` event (docs/protocol.md,
server/core/turn.py's ``Renewals``), with real Socket.IO clients against a real signaller on
loopback, through the kernel route, across two processes sharing their rooms through a real Redis,
and taken by a KernelPeer (real aiortc) for the relay of a connection it makes later (real coturn).

A short ``turn_ttl`` makes the renewals come within the helpers' waits: with 4 s the first comes
3 s after ``enter``, with 2 s every 1.5 s. That nothing is left behind is read from the
signaller's own count of its timers, so no test has to wait for something not to happen.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ipymeet.server import SignallerThread
from ipymeet.server.core.turn import credentials

from ..e2e.coturn import coturn
from ..support import MakeSignaller
from ..unit.test_relay import RoutePage
from .helpers import Event, Peer, connected, enter, until
from .redis_nodes import Node, RedisServer, running_nodes, running_redis

SECRET = "south-wind-secret"
TURN = ("turn:turn.example.org:3478?transport=udp",)
STUN = {"urls": "stun:stun.example.org"}


def renewals(server: SignallerThread) -> int:
    """How many renewal timers the signaller runs."""
    return len(server.signaller.turn_renewals)


def renewed(peer: Peer) -> list[Event]:
    return [event for event in peer.events if event[0] == "ice_servers"]


def check_fresh(
    event: Event, member: str, after: int, ttl: int, stun: tuple[dict[str, Any], ...] = (STUN,)
) -> int:
    """``event`` is an ``ice_servers`` event of exactly the documented shape: the ``stun``
    servers, then valid credentials of ``member`` that expire later than ``after``; returns their
    expiry."""
    assert len(event) == 2, event
    payload = event[1]
    assert list(payload) == ["ice_servers"], payload
    *plain, relay = payload["ice_servers"]
    assert plain == list(stun)
    assert sorted(relay) == ["credential", "urls", "username"]
    assert relay["urls"] == list(TURN)
    expiry_text, _, who = relay["username"].partition(":")
    expiry = int(expiry_text)
    assert who == member
    assert after < expiry <= int(time.time()) + ttl
    assert relay["credential"] == credentials(SECRET, member, expiry)[1]
    return expiry


def expiry_of(ack: dict[str, Any]) -> int:
    return int(ack["ice_servers"][-1]["username"].split(":")[0])


async def test_each_member_gets_fresh_credentials_before_its_last_expire(
    make_signaller: MakeSignaller, caplog: pytest.LogCaptureFixture
) -> None:
    server = make_signaller(ice_servers=(STUN,), turn_urls=TURN, turn_secret=SECRET, turn_ttl=4)
    caplog.set_level(logging.DEBUG)
    async with connected(server.url, "ada", "bo", "tutorial") as (ada, bo, tutorial):
        # The tutorial's dialect has no credentials and gets no renewals.
        await tutorial.emit("join", "turn-tutorial")
        assert await tutorial.take() == [("room_created", "turn-tutorial")]
        entered = time.monotonic()
        acks = [await enter(ada, "turn-renew", "Ada"), await enter(bo, "turn-renew", "Bo")]
        assert renewals(server) == 2
        for peer, ack in zip((ada, bo), acks, strict=True):
            await peer.wait_until(lambda p=peer: len(renewed(p)) == 1, "fresh credentials")
            check_fresh(renewed(peer)[0], ack["self"], expiry_of(ack), ttl=4)
        # At three quarters of the lifetime: after 3 s, well before the 4 s are over.
        assert 3.0 - 0.1 <= time.monotonic() - entered < 4.0
        assert renewals(server) == 2
        # Only the renewal came besides what each had already heard.
        assert [e[0] for e in ada.events] == ["peer_joined", "ice_servers"]
        assert [e[0] for e in bo.events] == ["ice_servers"]
        assert tutorial.untaken() == []
        assert await ada.call("leave", {}) == {"ok": True}
        assert renewals(server) == 1
        await bo.close()
        await until(lambda: renewals(server) == 0, "the disconnected member's timer to stop")
    given = [event[1]["ice_servers"][1] for peer in (ada, bo) for event in renewed(peer)]
    for relay in given:
        assert relay["credential"] not in caplog.text
        assert relay["username"] not in caplog.text
    assert SECRET not in caplog.text


async def test_renewals_go_on_while_the_member_stays_and_restart_when_it_enters_again(
    make_signaller: MakeSignaller,
) -> None:
    server = make_signaller(ice_servers=(STUN,), turn_urls=TURN, turn_secret=SECRET, turn_ttl=2)
    async with connected(server.url, "ada") as (ada,):
        ack = await enter(ada, "turn-again", "Ada")
        await ada.wait_until(lambda: len(renewed(ada)) == 2, "two renewals")
        first = check_fresh(renewed(ada)[0], ack["self"], expiry_of(ack), ttl=2)
        check_fresh(renewed(ada)[1], ack["self"], first, ttl=2)
        assert await ada.call("leave", {}) == {"ok": True}
        assert renewals(server) == 0
        again = await enter(ada, "turn-again", "Ada")
        assert renewals(server) == 1  # one timer, the new entry's
        await ada.wait_until(lambda: len(renewed(ada)) == 3, "a renewal of the new entry")
        check_fresh(renewed(ada)[2], again["self"], expiry_of(again), ttl=2)


async def test_a_page_entering_again_with_its_key_takes_over_the_renewals(
    make_signaller: MakeSignaller,
) -> None:
    server = make_signaller(ice_servers=(STUN,), turn_urls=TURN, turn_secret=SECRET, turn_ttl=2)
    session = "s" * 32
    async with connected(server.url, "old", "new") as (old, new):
        mine = await enter(old, "turn-key", "Pat", session=session)
        assert (await enter(new, "turn-key", "Pat", session=session))["self"] == mine["self"]
        await old.wait_until(old.disconnected.is_set, "the old connection to be closed")
        await until(lambda: renewals(server) == 1, "the old connection's timer to stop")
        await new.wait_until(lambda: len(renewed(new)) == 1, "the new connection's renewal")
        assert renewed(old) == []


async def test_no_credentials_no_renewals(make_signaller: MakeSignaller) -> None:
    server = make_signaller(ice_servers=(STUN,))
    async with connected(server.url, "ada") as (ada,):
        ack = await enter(ada, "turn-none", "Ada")
        assert ack["ice_servers"] == [STUN]
        assert renewals(server) == 0


def test_the_kernel_route_brings_the_renewal_to_the_page(
    make_signaller: MakeSignaller, caplog: pytest.LogCaptureFixture
) -> None:
    """As ``peer_joined`` and the rest: a ``sig_event`` of the page's live connection, sent from
    the relay's thread, with nothing of it in a log line."""
    server = make_signaller(ice_servers=(STUN,), turn_urls=TURN, turn_secret=SECRET, turn_ttl=2)
    page = RoutePage(server, client="k-turn-renew", room="turn-route")
    caplog.set_level(logging.DEBUG)
    try:
        page.connect(3)
        enter_request = {"type": "sig_request", "n": 3, "id": 1, "event": "enter"}
        page.send({**enter_request, "payload": {"room": "turn-route"}})
        ack = page.wait(lambda m: m["type"] == "sig_answer" and m["id"] == 1)["reply"]
        event = page.wait(lambda m: m["type"] == "sig_event" and m["event"] == "ice_servers")
        assert sorted(event) == ["data", "event", "n", "type"]
        assert event["n"] == 3
        check_fresh(("ice_servers", event["data"]), ack["self"], expiry_of(ack), ttl=2)
    finally:
        page.route.close()
    relay = event["data"]["ice_servers"][1]
    assert relay["credential"] not in caplog.text
    assert relay["username"] not in caplog.text


# -- several processes sharing their rooms through Redis ------------------------------------------


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    with running_redis(tmp_path / "redis") as server:
        yield server


@pytest.fixture
def turn_nodes(
    redis_server: RedisServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[list[Node]]:
    monkeypatch.setenv("IPYMEET_TEST_RENEWAL_SECRET", SECRET)
    args = ("--turn-url", TURN[0], "--turn-secret", "env:IPYMEET_TEST_RENEWAL_SECRET")
    with running_nodes(redis_server.url, tmp_path, 2, *args, "--turn-ttl", "2") as nodes:
        yield nodes


async def test_each_process_renews_the_credentials_of_its_own_members(
    turn_nodes: list[Node],
) -> None:
    """Members of one room on two processes: each hears its renewals from the process that holds
    its connection, once each time (not once per process)."""
    one, two = turn_nodes
    ada, bo = Peer("ada"), Peer("bo")
    try:
        await ada.connect(one.url)
        await bo.connect(two.url)
        acks = [await enter(ada, "turn-cluster", "Ada"), await enter(bo, "turn-cluster", "Bo")]
        for peer, ack in zip((ada, bo), acks, strict=True):
            await peer.wait_until(lambda p=peer: len(renewed(p)) == 2, "two renewals")
            expiry = expiry_of(ack)
            for event in renewed(peer):
                expiry = check_fresh(event, ack["self"], expiry, ttl=2, stun=())
    finally:
        await ada.close()
        await bo.close()
    for node in (one, two):
        assert SECRET not in node.log()


def test_a_kernel_peer_allocates_its_later_relays_with_the_renewed_credentials(
    make_signaller: MakeSignaller, tmp_path: Path
) -> None:
    """A KernelPeer alone in its room gets two renewals; a member entering then meets it on a
    connection the KernelPeer makes with the renewed servers: coturn allocates its relay under
    the renewed username, not the one of the ``enter`` acknowledgement."""
    pytest.importorskip("aiortc")
    from ipymeet import KernelPeer

    with coturn("127.0.0.1", SECRET, tmp_path / "coturn", ("verbose",)) as turn:
        server = make_signaller(turn_urls=(turn.url,), turn_secret=SECRET, turn_ttl=2)
        bot = KernelPeer("turn-kp", name="Bot", signaling_url=server.url)
        guest = KernelPeer("turn-kp", name="Guest", signaling_url=server.url)
        try:
            bot.join()
            bot.wait_for(lambda p: p.state == "waiting")
            entered = time.time()  # the ack's credentials expire at int(entered) + 2 at most
            # Two renewals, after 1.5 s and 3 s (the clock is what is waited for).
            bot.wait_for(lambda p: p.state == "waiting" and time.time() >= entered + 3.2, 10)
            guest.join()
            bot.wait_for(lambda p: p.state == "in_call")
            allocated = [
                int(line.split(" user <")[1].split(":")[0])
                for line in turn.log
                if f":{bot.id}>: incoming packet ALLOCATE processed, success" in line
            ]
            assert allocated, turn.log[-20:]
            assert min(allocated) > int(entered) + 2, (entered, allocated)
        finally:
            bot.close()
            guest.close()
