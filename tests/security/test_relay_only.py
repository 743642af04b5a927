"""Relay only is not undone by Python (issue 17, finding 7).

The attack: ``VideoRoom(relay_only=True)`` hides the page's addresses from the others (the
browser's ``iceTransportPolicy: "relay"``), but ``room.process()`` and ``room.record()`` add a
KernelPeer to the same room, on the same machine, and a KernelPeer offered host candidates: any
member of the room read this machine's addresses in its SDP. Now ``KernelPeer(relay_only=True)``
gathers, offers and uses relay candidates only, the process and record peers of a relay-only
widget are relay-only, and a relay-only peer refuses to join (``no_relay``) where the signaller
has no TURN server.

Everything is real: coturn (Debian's ``turnserver``, tests/e2e/coturn.py), signallers handing out
TURN REST credentials, aiortc on the kernel peers' side, and on the other side a python-socketio
client speaking dialect 2 (``enter``, ``signal``; docs/protocol.md) that records every signal, the
attacker's view, with a real aiortc connection of its own where it must answer or be reached.

coturn listens and relays on 127.0.0.1, with ``allow-loopback-peers`` (it refuses loopback peers
otherwise): its relay addresses are then 127.0.0.1, which aiortc never gathers as a host
candidate, so "this machine's addresses" (every non-loopback address of its interfaces, which is
what aiortc offers as host candidates) and the relay's never coincide.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import re
import socket
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription

from ipymeet import KernelPeer, VideoRoom
from ipymeet.server import SignallerThread, choose
from ipymeet.widget.contract import ErrorCode
from ipymeet.widget.kernelpeer import NO_RELAY_MESSAGE

from ..e2e.coturn import Coturn, coturn
from ..integration.helpers import Peer, enter, until
from ..integration.test_kernel_peer import PATTERN, peer_threads
from ..support import MakeSignaller

SECRET = "relay-only-test-secret"
#: How long gathering (a TURN allocation per connection), connecting and media may take on a
#: loaded 2-core machine; every wait is on a condition and ends as soon as it holds.
WAIT = 30.0


def host_addresses() -> set[str]:
    """This machine's own addresses: every non-loopback address of its interfaces (those a
    KernelPeer without relay only offers as host candidates)."""
    found = set()
    for addresses in psutil.net_if_addrs().values():
        for address in addresses:
            if address.family not in (socket.AF_INET, socket.AF_INET6):
                continue
            ip = ipaddress.ip_address(address.address.split("%")[0])
            if not ip.is_loopback:
                found.add(str(ip))
    return found


CANDIDATE = re.compile(r"^a=candidate:(\S+) (\d+) (\S+) (\d+) (\S+) (\d+) typ (\S+)(.*)$")


def candidates(sdp: str) -> list[dict[str, str]]:
    """The ``a=candidate`` lines of ``sdp``: address, type, and the rest (``raddr``...)."""
    found = []
    for line in sdp.splitlines():
        if line.startswith("a=candidate:"):
            match = CANDIDATE.match(line)
            assert match is not None, line
            found.append({"address": match[5], "type": match[7], "rest": match[8], "line": line})
    return found


def leaked(text: str, hosts: set[str]) -> set[str]:
    """Which of ``hosts`` appear anywhere in ``text`` (candidates, ``c=``, ``o=``, ``raddr``)."""
    words = set(re.split(r"[\s/]+", text))
    return {host for host in hosts if host in words}


def check_relay_only(signals: list[dict[str, Any]], hosts: set[str], turn: Coturn) -> int:
    """Every description and every trickled candidate in ``signals`` (what a relay-only peer sent
    one member) names relays of ``turn`` only, and none of ``hosts``; returns how many relay
    candidates were seen."""
    seen = 0
    for signal in signals:
        description = signal.get("description")
        if isinstance(description, dict):
            sdp = description["sdp"]
            found = candidates(sdp)
            assert found, f"a {description['type']} without candidates: {sdp}"
            for candidate in found:
                assert candidate["type"] == "relay", candidate["line"]
                assert candidate["address"] == turn.address, candidate["line"]
                # The related address (where coturn saw this machine) is blanked.
                assert " raddr 0.0.0.0 rport 9" in candidate["rest"], candidate["line"]
            assert leaked(sdp, hosts) == set(), sdp
            seen += len(found)
        trickled = signal.get("candidate")
        if isinstance(trickled, dict) and trickled.get("candidate"):
            # aiortc gathers all before it describes, so none trickle; any that did must be relays.
            assert " typ relay" in trickled["candidate"], trickled
            assert leaked(trickled["candidate"], hosts) == set(), trickled
    return seen


# -- the parts -------------------------------------------------------------------------------------


@pytest.fixture
def turn(tmp_path: Path) -> Iterator[Coturn]:
    """coturn on 127.0.0.1 that relays between loopback peers, logging each allocation."""
    extra = ("allow-loopback-peers", "verbose")
    with coturn("127.0.0.1", SECRET, tmp_path / "coturn", extra) as server:
        yield server


@pytest.fixture
def hosts() -> set[str]:
    found = host_addresses()
    # Without an address of its own there is nothing to hide, and the checks would prove nothing.
    assert found, "this machine has no non-loopback address"
    return found


def turn_signaller(make_signaller: MakeSignaller, turn: Coturn) -> SignallerThread:
    return make_signaller(turn_urls=(turn.url,), turn_secret=SECRET)


def signals_from(member: Peer, sender: str) -> list[dict[str, Any]]:
    """Every ``signal`` ``member`` received from ``sender``, in order."""
    return [
        event[1]
        for event in member.events
        if event[0] == "signal" and isinstance(event[1], dict) and event[1].get("from") == sender
    ]


async def peer_state(peer: KernelPeer, predicate: Callable[[KernelPeer], bool]) -> None:
    """Wait for ``peer``, whose thread tells its changes, without blocking this test's loop."""
    await asyncio.to_thread(peer.wait_for, predicate, WAIT)


@contextlib.asynccontextmanager
async def member(url: str, room: str, name: str) -> AsyncIterator[tuple[Peer, dict[str, Any]]]:
    """A Socket.IO client in ``room`` (dialect 2), with its ``enter`` acknowledgement."""
    client = Peer(name)
    try:
        await client.connect(url)
        yield client, await enter(client, room, name)
    finally:
        await client.close()


async def offer_heard(url: str, room: str, **options: Any) -> dict[str, Any]:
    """The first description a KernelPeer (made with ``options``) sends a Socket.IO member who
    was in ``room`` before it: the newcomer offers."""
    async with member(url, room, "Mallory") as (mallory, _):
        peer = KernelPeer(room, name="Bot", signaling_url=url, **options)
        try:
            peer.join()
            await peer_state(peer, lambda p: p.id != "")
            await until(lambda: signals_from(mallory, peer.id), "the kernel peer's offer", WAIT)
            signal = signals_from(mallory, peer.id)[0]
        finally:
            await asyncio.to_thread(peer.close)
    assert signal["description"]["type"] == "offer", signal
    return signal


# -- the attack, as it was, and refused ------------------------------------------------------------


async def test_without_relay_only_a_kernel_peer_offers_this_machines_addresses(
    make_signaller: MakeSignaller, turn: Coturn, hosts: set[str]
) -> None:
    """What the finding was about, and what the next test would catch: a KernelPeer as
    process/record made it, on a signaller with TURN, tells every member of the room its host
    addresses."""
    server = turn_signaller(make_signaller, turn)
    signal = await offer_heard(server.url, "relay-attack")
    sdp = signal["description"]["sdp"]
    assert {c["type"] for c in candidates(sdp)} >= {"host", "relay"}, sdp
    assert leaked(sdp, hosts), sdp


async def test_a_relay_only_kernel_peer_offers_relays_only(
    make_signaller: MakeSignaller, turn: Coturn, hosts: set[str]
) -> None:
    """The same, relay only: the member learns coturn's relay addresses and nothing of this
    machine's (no host, no srflx candidate, no related address, no address in ``c=``)."""
    server = turn_signaller(make_signaller, turn)
    signal = await offer_heard(server.url, "relay-offer", relay_only=True)
    assert check_relay_only([signal], hosts, turn) >= 1


async def test_a_relay_only_kernel_peer_answers_with_relays_only_and_is_reached_only_through_them(
    make_signaller: MakeSignaller, turn: Coturn, hosts: set[str]
) -> None:
    """The attacker enters after the relay-only peer and offers from a real aiortc connection
    with every candidate of its own (no relay only): the peer's answer carries relays only, the
    call connects, and every address the attacker's ICE learned of the peer, those it was told
    and those it saw packets come from (peer-reflexive), is coturn's relay."""
    server = turn_signaller(make_signaller, turn)
    room = "relay-answer"
    bot = KernelPeer(room, name="Bot", signaling_url=server.url, relay_only=True)
    attacker = RTCPeerConnection()  # no ICE servers: host candidates, this machine's
    try:
        bot.join()
        await peer_state(bot, lambda p: p.state == "waiting")
        async with member(server.url, room, "Mallory") as (mallory, ack):
            assert [p["id"] for p in ack["peers"]] == [bot.id]
            attacker.createDataChannel("ipymeet", negotiated=True, id=0)
            attacker.addTransceiver("video", direction="recvonly")
            await attacker.setLocalDescription(await attacker.createOffer())
            offer = attacker.localDescription
            await mallory.emit(
                "signal", {"to": bot.id, "description": {"type": offer.type, "sdp": offer.sdp}}
            )
            await until(lambda: signals_from(mallory, bot.id), "the kernel peer's answer", WAIT)
            answer = signals_from(mallory, bot.id)[0]["description"]
            assert answer["type"] == "answer"
            await attacker.setRemoteDescription(RTCSessionDescription(**answer))
            await until(
                lambda: attacker.connectionState == "connected", "the call to connect", WAIT
            )
            assert check_relay_only(signals_from(mallory, bot.id), hosts, turn) >= 1
            transport = attacker.getTransceivers()[0].receiver.transport.transport
            learned = transport.getRemoteCandidates()
            assert learned
            for candidate in learned:
                assert candidate.ip == turn.address, candidate
                assert candidate.ip not in hosts
            await peer_state(bot, lambda p: any(s["candidate_type"] for s in p.stats.values()))
            assert [s["candidate_type"] for s in bot.stats.values()] == ["relay"]
    finally:
        await attacker.close()
        await asyncio.to_thread(bot.close)
    assert peer_threads() == []


# -- the legitimate use, beside it -----------------------------------------------------------------


def test_two_relay_only_kernel_peers_exchange_media_through_coturn(
    make_signaller: MakeSignaller, turn: Coturn
) -> None:
    """Relay only still calls: A's pattern reaches B through coturn, both use a relayed pair,
    and coturn allocated a relay for each (its log names the members in the usernames)."""
    server = turn_signaller(make_signaller, turn)
    room = "relay-call"
    a = KernelPeer(room, name="Ada", signaling_url=server.url, relay_only=True)
    b = KernelPeer(room, name="Bob", signaling_url=server.url, relay_only=True)
    a.publish(lambda: PATTERN)
    received: list[Any] = []
    got = threading.Event()

    @b.on_frame
    def keep(frame: Any, sender: Any) -> None:
        received.append(frame)
        if len(received) >= 10:
            got.set()

    try:
        a.join()
        a.wait_for(lambda p: p.state == "waiting", WAIT)
        b.join()
        assert got.wait(WAIT), f"B received {len(received)} frames"
        assert received[-1].shape == PATTERN.shape
        for peer in (a, b):
            peer.wait_for(lambda p: any(s["candidate_type"] for s in p.stats.values()), WAIT)
            assert [s["candidate_type"] for s in peer.stats.values()] == ["relay"]
        for peer in (a, b):
            allocation = f":{peer.id}>: incoming packet ALLOCATE processed, success"
            assert any(allocation in line for line in turn.log), turn.log[-20:]
    finally:
        a.close()
        b.close()
    assert peer_threads() == []


# -- refused without TURN --------------------------------------------------------------------------


async def test_joining_relay_only_without_turn_fails_with_no_relay(
    make_signaller: MakeSignaller,
) -> None:
    """As the page: the signaller hands out no TURN server, so the peer fails with ``no_relay``
    (the page's words), leaves, and never sent the member in the room a description."""
    server = make_signaller()  # no TURN
    async with member(server.url, "relay-none", "Mallory") as (mallory, _):
        bot = KernelPeer("relay-none", name="Bot", signaling_url=server.url, relay_only=True)
        try:
            bot.join()
            await peer_state(bot, lambda p: p.state == "failed")
            assert bot.error_code is ErrorCode.NO_RELAY
            assert bot.error == NO_RELAY_MESSAGE
            await until(
                lambda: any(e[0] == "peer_left" for e in mallory.events), "the peer to leave", WAIT
            )
        finally:
            await asyncio.to_thread(bot.close)
        kinds = [event[0] for event in mallory.events]
        assert kinds == ["peer_joined", "peer_left"], mallory.events
        assert mallory.events[1][1]["reason"] == "left"
    assert bot.state == "failed"
    assert peer_threads() == []


# -- process and record of a relay-only widget -----------------------------------------------------


@pytest.fixture
def turn_kernel_signaller(
    turn: Coturn, monkeypatch: pytest.MonkeyPatch
) -> Iterator[SignallerThread]:
    """The kernel's own signaller, of this test alone, handing out credentials for ``turn``."""
    monkeypatch.setattr(choose, "_kernel_signaller", None)
    monkeypatch.setenv("IPYMEET_SHARE", "0")
    monkeypatch.delenv("IPYMEET_SIGNALLER", raising=False)
    monkeypatch.setenv("IPYMEET_TURN_URLS", turn.url)
    monkeypatch.setenv("RELAY_ONLY_TEST_SECRET", SECRET)
    monkeypatch.setenv("IPYMEET_TURN_SECRET", "env:RELAY_ONLY_TEST_SECRET")
    server = choose.kernel_signaller()
    assert isinstance(server, SignallerThread)
    yield server
    server.stop()


async def test_process_and_record_of_a_relay_only_widget_offer_relays_only(
    turn_kernel_signaller: SignallerThread, turn: Coturn, hosts: set[str], tmp_path: Path
) -> None:
    """``VideoRoom(relay_only=True)``: the peers ``room.process(fn)`` and ``room.record(path)``
    add are relay-only, and the member already in the room hears relays only from each."""
    server = turn_kernel_signaller
    room_id = "relay-widget"
    async with member(server.url, room_id, "Mallory") as (mallory, _):
        room = VideoRoom(room_id, name="Ada", relay_only=True)
        try:
            room.process(lambda frame: frame)
            room.join()  # the page is not needed: joining starts the processor
            processor = room._processor
            assert processor is not None
            assert processor.peer.relay_only is True
            await peer_state(processor.peer, lambda p: p.id != "")
            room.record(tmp_path / "call.webm")
            recorder = room._recorder
            assert recorder is not None
            assert recorder.peer.relay_only is True
            await peer_state(recorder.peer, lambda p: p.id != "")
            for peer in (processor.peer, recorder.peer):
                await until(
                    lambda p=peer: signals_from(mallory, p.id), f"{peer.name}'s offer", WAIT
                )
                signals = signals_from(mallory, peer.id)
                assert signals[0]["description"]["type"] == "offer"
                assert check_relay_only(signals, hosts, turn) >= 1
        finally:
            if room._recorder is not None:
                with contextlib.suppress(RuntimeError):
                    await asyncio.to_thread(room.stop_recording)
            await asyncio.to_thread(room.close)
    assert peer_threads() == []


def test_a_widget_without_relay_only_gives_its_peers_none(
    turn_kernel_signaller: SignallerThread, tmp_path: Path
) -> None:
    """The other way round: relay only is the widget's choice, not forced on every peer."""
    room = VideoRoom("relay-widget-off", name="Ada")
    try:
        room.process(lambda frame: frame)
        room.join()
        assert room._processor is not None
        assert room._processor.peer.relay_only is False
        room.record(tmp_path / "call.webm")
        assert room._recorder is not None
        assert room._recorder.peer.relay_only is False
    finally:
        if room._recorder is not None:
            with contextlib.suppress(RuntimeError):
                room.stop_recording()
        room.close()
    assert peer_threads() == []
