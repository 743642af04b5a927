"""Rooms shared by several ``ipymeet serve`` processes through a real Redis
(server/cluster/redis.py).

Each test has its own ``redis-server`` (a free port, a temporary folder, no persistence) and its
own nodes, all stopped in teardown (tests/integration/redis_nodes.py). The clients are the
recording :class:`~tests.integration.helpers.Peer`s, some on each node.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from ipymeet.server.cluster.redis import Cluster
from ipymeet.server.core.registry import (
    MESH,
    TUTORIAL,
    Departure,
    LocalRooms,
    Member,
    Registry,
    Rooms,
)
from ipymeet.server.core.validation import Refused

from ..support import BENCHMARK_NEEDS_POSIX, free_port
from .helpers import OFFER_SDP, Peer, enter, ice_candidate, tutorial_call
from .pages import wait_until
from .redis_nodes import Node, RedisServer

#: How soon a SIGKILLed node's members must be gone for the others: its heartbeat's TTL (3 s) and
#: one heartbeat of the node that notices (1 s), with room for a loaded machine.
DEAD_NODE_LIMIT = 6.0


@contextlib.asynccontextmanager
async def peers_on(*placed: tuple[str, Node]) -> AsyncIterator[list[Peer]]:
    """One connected :class:`Peer` per ``(name, node)``; all closed on the way out."""
    peers = [Peer(name) for name, _ in placed]
    try:
        for peer, (_, node) in zip(peers, placed, strict=True):
            await peer.connect(node.url)
        yield peers
    finally:
        for peer in peers:
            await peer.close()


def _health(node: Node) -> dict[str, Any]:
    with urllib.request.urlopen(f"{node.url}/healthz", timeout=5) as response:
        answer: dict[str, Any] = json.load(response)
    return answer


def _node_id(node: Node) -> str:
    """The node's id, as it logs it at start."""
    found = re.search(r"node ([0-9a-f]{16}) shares its rooms", node.log())
    assert found is not None, node.log()
    return found.group(1)


def _room(redis_server: RedisServer, room: str) -> dict[str, str]:
    fields: Any = redis_server.client().hgetall(f"ipymeet:room:{room}")
    return dict(fields)


async def test_members_on_two_processes_meet_and_signal(two_nodes: list[Node]) -> None:
    """A on node 1, B on node 2: B's ack names A, A hears B join, their signals cross both ways
    in order, and a leave on one node is heard on the other."""
    one, two = two_nodes
    async with peers_on(("a", one), ("b", two)) as (a, b):
        first = await enter(a, "lab", "Ada")
        assert first["peers"] == []
        assert first["capacity"] == 4
        second = await enter(b, "lab", "Bo")
        assert second["peers"] == [{"id": a.sid, "name": "Ada"}]
        assert await a.take() == [("peer_joined", {"id": b.sid, "name": "Bo"})]
        assert await b.call("signal", {"to": a.sid, "description": OFFER_SDP}) == {"ok": True}
        for port in (50001, 50002, 50003):
            await b.call("signal", {"to": a.sid, "candidate": ice_candidate(port)})
        assert await a.take(4) == [
            ("signal", {"from": b.sid, "description": OFFER_SDP}),
            *[
                ("signal", {"from": b.sid, "candidate": ice_candidate(p)})
                for p in (50001, 50002, 50003)
            ],
        ]
        assert await a.call("signal", {"to": b.sid, "candidate": ice_candidate()}) == {"ok": True}
        assert await b.take() == [("signal", {"from": a.sid, "candidate": ice_candidate()})]
        assert await a.call("leave", {}) == {"ok": True}
        assert await b.take() == [("peer_left", {"id": a.sid, "reason": "left"})]
        # Entering again, then a dropped connection: "disconnected" on the other node.
        await enter(a, "lab", "Ada")
        assert await b.take() == [("peer_joined", {"id": a.sid, "name": "Ada"})]
        gone = a.sid
        await a.close()
        assert await b.take() == [("peer_left", {"id": gone, "reason": "disconnected"})]
        assert b.untaken() == []


async def test_signals_reach_only_members_of_the_same_room_across_processes(
    two_nodes: list[Node],
) -> None:
    """A member of another room, on the other node, is not reachable: ``not_in_room``."""
    one, two = two_nodes
    async with peers_on(("a", one), ("b", two)) as (a, b):
        await enter(a, "one-room")
        await enter(b, "other-room")
        answer = await b.call("signal", {"to": a.sid, "description": OFFER_SDP})
        assert answer["ok"] is False
        assert answer["code"] == "not_in_room"
        # Marker: a hears the next thing b's room sends it, and nothing before it.
        await b.call("leave", {})
        await enter(b, "one-room")
        assert await a.take() == [("peer_joined", {"id": b.sid, "name": ""})]


async def test_the_tutorials_call_across_two_processes(two_nodes: list[Node]) -> None:
    """Dialect 1: a tutorial page on each node makes its whole call, relayed across."""
    one, two = two_nodes
    async with peers_on(("a", one), ("b", two), ("c", one)) as (a, b, c):
        await tutorial_call(a, b, "tutorial-x")
        await c.emit("join", "tutorial-x")
        assert await c.take() == [("full_room", "tutorial-x")]
        assert a.untaken() == []
        assert b.untaken() == []


async def test_concurrent_entries_on_both_processes_never_exceed_capacity(
    two_nodes: list[Node], redis_server: RedisServer
) -> None:
    """12 clients, 6 on each node, enter a room of 4 at the same moment (three times, a room each
    time): exactly 4 get in, the others get the usual ``room_full`` with the capacity, Redis holds
    those 4, and each member heard exactly the ones that came after it."""
    one, two = two_nodes
    placed = [(f"p{i}", one if i % 2 else two) for i in range(12)]
    for room in ("race-1", "race-2", "race-3"):
        async with peers_on(*placed) as peers:
            answers = await asyncio.gather(*(p.call("enter", {"room": room}) for p in peers))
            inside = [p for p, answer in zip(peers, answers, strict=True) if answer["ok"]]
            refused = [answer for answer in answers if not answer["ok"]]
            assert len(inside) == 4, answers
            assert all(r["code"] == "room_full" and r["capacity"] == 4 for r in refused), refused
            assert all("is full (it holds 4)" in r["message"] for r in refused), refused
            stored = _room(redis_server, room)
            assert stored["_n"] == "4"
            assert {k for k in stored if k.startswith("s:")} == {f"s:{p.sid}" for p in inside}
            ids = {p.sid for p in inside}
            for peer, answer in zip(peers, answers, strict=True):
                if answer["ok"]:
                    before = {m["id"] for m in answer["peers"]}
                    joined = await peer.take(3 - len(before))
                    assert [e[0] for e in joined] == ["peer_joined"] * len(joined), joined
                    assert before | {e[1]["id"] for e in joined} == ids - {peer.sid}
        emptied: Callable[[], bool] = lambda room=room: not _room(redis_server, room)  # noqa: E731
        await wait_until(emptied, "an empty room", timeout=5)


async def test_concurrent_tutorial_joins_across_processes_hold_two(two_nodes: list[Node]) -> None:
    """Dialect 1's rooms of two hold across processes too: of 8 joining at once, 2 get in."""
    one, two = two_nodes
    placed = [(f"t{i}", one if i % 2 else two) for i in range(8)]
    async with peers_on(*placed) as peers:
        await asyncio.gather(*(p.emit("join", "pair") for p in peers))
        answers = [await p.take_one() for p in peers]
        names = sorted(answer[0] for answer in answers)
        assert names == ["full_room"] * 6 + ["room_created", "room_joined"], answers


async def test_a_sigkilled_process_members_leave_the_others_view(
    two_nodes: list[Node], redis_server: RedisServer
) -> None:
    """Node 1 is SIGKILLed with two members in a room and one in a tutorial room: the members on
    node 2 get ``peer_left`` (``disconnected``) for each within a few seconds, Redis keeps only
    node 2's, and the room still serves newcomers."""
    one, two = two_nodes
    async with (
        peers_on(("a1", one), ("a2", one), ("t1", one)) as (a1, a2, t1),
        peers_on(("b", two), ("t2", two)) as (b, t2),
    ):
        await enter(a1, "lab")
        await enter(a2, "lab")
        await enter(b, "lab")
        await t1.emit("join", "tut")
        assert await t1.take() == [("room_created", "tut")]
        await t2.emit("join", "tut")
        assert await t2.take() == [("room_joined", "tut")]
        gone, tutorial = {a1.sid, a2.sid}, t1.sid
        one.kill()
        killed = time.monotonic()
        await wait_until(
            lambda: {e[1]["id"] for e in b.untaken() if e[0] == "peer_left"} == gone,
            "peer_left for both members of the killed node",
            timeout=DEAD_NODE_LIMIT + 4,
        )
        took = time.monotonic() - killed
        print(f"\nSIGKILL of a node -> peer_left on the other after {took:.2f} s")
        assert took < DEAD_NODE_LIMIT
        left = [e for e in b.untaken() if e[0] == "peer_left"]
        assert all(e[1]["reason"] == "disconnected" for e in left), left
        await wait_until(
            lambda: ("peer_left", {"id": tutorial, "room": "tut"}) in t2.untaken(),
            "the tutorial room's peer_left",
            timeout=5,
        )
        stored = _room(redis_server, "lab")
        assert {k for k in stored if k.startswith("s:")} == {f"s:{b.sid}"}
        dead = _node_id(one)
        assert redis_server.client().smembers("ipymeet:nodes") == {_node_id(two)}
        assert [k for k in redis_server.client().keys("ipymeet:*") if dead in k] == []
        async with peers_on(("c", two)) as (c,):
            assert (await enter(c, "lab"))["peers"] == [{"id": b.sid, "name": ""}]


async def test_a_page_entering_again_on_the_other_process_takes_its_place(
    two_nodes: list[Node], redis_server: RedisServer
) -> None:
    """A page with a session key enters on node 1, then again on node 2 before node 1 noticed
    it dropped: the old connection is closed, and the other member hears only ``peer_joined`` for
    the id it knows (as on one process, docs/protocol.md)."""
    one, two = two_nodes
    session = "k" * 32
    async with peers_on(("old", one), ("new", two), ("other", two)) as (old, new, other):
        mine = await enter(old, "resume", "Pat", session=session)
        old_sid = old.sid
        await enter(other, "resume", "Other")
        assert (await enter(new, "resume", "Pat", session=session))["self"] == mine["self"]
        await asyncio.wait_for(old.disconnected.wait(), 5)
        assert await other.take() == [("peer_joined", {"id": mine["self"], "name": "Pat"})]
        answer = await other.call("signal", {"to": mine["self"], "description": OFFER_SDP})
        assert answer == {"ok": True}
        assert await new.take(1) == [("signal", {"from": other.sid, "description": OFFER_SDP})]
        # Node 1 has handled the old connection's disconnect: it removed nothing.
        await wait_until(
            lambda: _health(one)["members"] == 0, "node 1 to drop the old one", timeout=5
        )
        stored = _room(redis_server, "resume")
        assert stored[f"s:{new.sid}"] == mine["self"]
        assert f"s:{old_sid}" not in stored
        assert await other.call("signal", {"to": mine["self"], "candidate": ice_candidate()}) == {
            "ok": True
        }
        assert await new.take(1) == [("signal", {"from": other.sid, "candidate": ice_candidate()})]
        assert other.untaken() == []


def serve_with_redis(url: str) -> subprocess.CompletedProcess[str]:
    """``ipymeet serve --redis URL`` on a free port, run to its end."""
    command = [sys.executable, "-m", "ipymeet.server.cli", "serve", "--port", "0"]
    return subprocess.run([*command, "--redis", url], capture_output=True, text=True, timeout=60)


def test_redis_unreachable_at_start_is_a_clear_error() -> None:
    """No Redis at the URL: ``ipymeet serve --redis`` says so, without the password, exit 2."""
    port = free_port()
    result = serve_with_redis(f"redis://:hunter2secret@127.0.0.1:{port}/0")
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"cannot reach Redis at redis://:***@127.0.0.1:{port}/0" in result.stderr
    assert "hunter2secret" not in result.stdout + result.stderr
    bad = serve_with_redis("http://127.0.0.1/")
    assert bad.returncode == 2, bad.stderr
    assert "redis_url" in bad.stderr, bad.stderr


async def test_redis_lost_while_running(two_nodes: list[Node], redis_server: RedisServer) -> None:
    """Redis stops: each node logs it once, members on one node still signal each other, and
    entering is refused (``internal_error``, which the page retries). Redis comes back empty: the
    nodes close their connections (their members were lost), and pages on both meet again."""
    one, two = two_nodes
    async with peers_on(("a", one), ("b", one), ("c", two)) as (a, b, c):
        await enter(a, "lab")
        await enter(b, "lab")
        await enter(c, "lab")
        redis_server.stop()
        # Each node finds out at its next heartbeat.
        await wait_until(
            lambda: all("lost Redis" in n.log() for n in two_nodes), "the logs", timeout=10
        )
        answer = await a.call("signal", {"to": b.sid, "description": OFFER_SDP})
        assert answer == {"ok": True}
        assert await b.take(2) == [
            ("peer_joined", {"id": c.sid, "name": ""}),
            ("signal", {"from": a.sid, "description": OFFER_SDP}),
        ]
        async with peers_on(("late", one)) as (late,):
            refused = await late.call("enter", {"room": "lab"})
            assert refused["ok"] is False, refused
            assert refused["code"] == "internal_error", refused
            assert "Redis" in refused["message"]
        for node in two_nodes:
            assert node.log().count("lost Redis") == 1, node.log()
            assert _health(node)["redis"] == "lost"
        redis_server.start()
        for peer in (a, b, c):
            await asyncio.wait_for(peer.disconnected.wait(), 15)
    await wait_until(
        lambda: all("Redis is back" in n.log() for n in two_nodes), "the logs", timeout=10
    )
    assert [_health(node)["redis"] for node in two_nodes] == ["ok", "ok"]
    assert [_health(node)["node"] for node in two_nodes] == [_node_id(n) for n in two_nodes]
    # A pair across the nodes meets again. The events channel's subscription comes back on its
    # own schedule (server/cluster/redis.py): a pair that missed it tries again.
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while True:
        async with peers_on(("d", one), ("e", two)) as (d, e):
            await enter(d, "again")
            assert (await enter(e, "again"))["peers"] == [{"id": d.sid, "name": ""}]
            with contextlib.suppress(AssertionError):
                if await d.take(1) == [("peer_joined", {"id": e.sid, "name": ""})]:
                    break
        assert loop.time() < deadline, "the nodes never heard each other again"


async def test_a_process_stopped_with_ctrl_c_leaves_nothing_behind(
    two_nodes: list[Node], redis_server: RedisServer
) -> None:
    """Ctrl-C on node 1: its members leave at once (``disconnected`` on node 2), its keys go,
    and it exits 0."""
    one, two = two_nodes
    async with peers_on(("a", one), ("b", two)) as (a, b):
        await enter(a, "lab")
        await enter(b, "lab")
        gone = a.sid
        assert await asyncio.to_thread(one.stop) == 0, one.log()
        assert await b.take() == [("peer_left", {"id": gone, "reason": "disconnected"})]
        stopped = _node_id(one)
        assert [k for k in redis_server.client().keys("ipymeet:*") if stopped in k] == []
        assert redis_server.client().smembers("ipymeet:nodes") == {_node_id(two)}
        assert {k for k in _room(redis_server, "lab") if k.startswith("s:")} == {f"s:{b.sid}"}


@pytest.mark.parametrize("kind", ["local", "redis"])
async def test_both_registries_answer_alike(kind: str, redis_server: RedisServer) -> None:
    """The ``Rooms`` the handlers use, in one process or in Redis: the same answers, in arrival
    order, with the same refusals; a departure names who remains."""
    cluster = Cluster(redis_server.url) if kind == "redis" else None
    rooms: Rooms = LocalRooms(Registry()) if cluster is None else cluster
    node = "" if cluster is None else cluster.node
    ada, bo, cy = (Member(s, s.upper(), "", f"id-{s}", node) for s in ("a", "b", "c"))
    assert await rooms.add("r", ada, dialect=MESH, capacity=2) == []
    assert await rooms.add("r", bo, dialect=MESH, capacity=2) == [ada]
    for member, dialect, code in (
        (cy, MESH, "room_full"),
        (Member("a", id="other"), MESH, "already_in_room"),
        (Member("z", id="id-a"), MESH, "already_in_room"),
        (cy, TUTORIAL, "wrong_dialect"),
    ):
        with pytest.raises(Refused) as refused:
            await rooms.add("r", member, dialect=dialect, capacity=2)
        assert refused.value.code == code
    assert await rooms.room("r") == (MESH, [ada, bo])
    assert await rooms.find("r", "id-b") == bo
    assert await rooms.find("r", "id-z") is None
    assert rooms.rooms_of("a") == ["r"]
    assert rooms.is_member("r", "a")
    assert await rooms.remove("r", "a") == Departure("r", MESH, [bo], ada)
    assert await rooms.remove("r", "a") is None
    assert await rooms.remove_everywhere("b") == [Departure("r", MESH, [], bo)]
    assert await rooms.room("r") == (None, [])
    if cluster is not None:
        assert redis_server.client().keys("ipymeet:*") == []
        await cluster.redis.aclose()


@BENCHMARK_NEEDS_POSIX
def test_the_benchmark_measures_two_processes_behind_redis() -> None:
    """``benchmarks/signalling.py cluster``: one process, then two behind its own Redis (pairs on
    one process, then across), every message relayed, and the ratios."""
    benchmark = Path(__file__).resolve().parents[2] / "benchmarks" / "signalling.py"
    result = subprocess.run(
        [
            sys.executable,
            str(benchmark),
            "cluster",
            "--clients",
            "8",
            "--rounds",
            "1",
            "--procs",
            "2",
            "--timeout",
            "10",
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    reports = [json.loads(line) for line in result.stdout.strip().splitlines()]
    relays = [r for r in reports if r["mode"] == "relay"]
    assert [r.get("placement", "one") for r in relays] == ["one", "same", "across"]
    for report in relays:
        assert report["relayed"] == 4 * (1 + 1 + 1 + 8), report
        assert (report["lost"], report["errors"]) == (0, 0), report
    assert all(r["processes"] == 2 and r["redis_cpu_us_per_msg"] >= 0 for r in relays[1:])
    ratios = [r for r in reports if r["mode"] == "ratios"]
    assert len(ratios) == 2
    assert all(r["lost"] == 0 for r in ratios)
