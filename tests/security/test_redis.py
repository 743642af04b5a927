"""Redis between ``ipymeet serve --redis`` processes is trusted no further than a client (issue 17,
findings 2 and 9).

Finding 2, pickle over Redis: python-socketio's Redis manager before 5.14 unpickled what it read
from its channel (CVE-2025-61765), so whoever could publish to the Redis ran code in every
signaller. Finding 9, read-back trusted: what a node read back from Redis (members in a room hash,
events on the channel) reached clients unchecked: a forged ``signal`` of 300 KB, over the limits
a client's own message is held to, reached a member.

Everything is real: a ``redis-server``, two ``ipymeet serve --redis`` processes, Socket.IO clients
on each (tests/integration/redis_nodes.py). The attacker is this test, writing to Redis as anyone
who can reach it could. That something did *not* happen is shown by order: a legitimate event
sent after the forged ones must arrive, and first; Redis delivers a channel's messages to each
subscriber in order, and a node handles them in order.
"""

from __future__ import annotations

import json
import os
import pickle
import shlex
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from ipymeet.server.cluster.redis import event_message

from ..integration.helpers import OFFER_SDP, enter, ice_candidate
from ..integration.pages import wait_until
from ..integration.redis_nodes import (
    EVENTS,
    Node,
    RedisServer,
    node_id,
    publish,
    running_nodes,
)
from ..integration.test_redis import DEAD_NODE_LIMIT, peers_on

#: What the nodes' logs say of a skipped thing (server/cluster/redis.py, ``Drops``).
SKIPPED = ", read from Redis ("


class _Command:
    """Unpickled, runs ``touch PATH``: the payload of CVE-2025-61765."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return os.system, (f"touch {shlex.quote(str(self.path))}",)


def _forged(sid: str, event: str, *args: Any) -> str:
    """An event for ``sid`` in the nodes' own format (server/cluster/redis.py's
    ``event_message``)."""
    data = None if not args else args[0] if len(args) == 1 else args
    return json.dumps(event_message(sid, event, data))


def _skipped_lines(node: Node, kind: str) -> list[str]:
    return [line for line in node.log().splitlines() if SKIPPED in line and kind in line]


async def test_a_pickled_message_on_the_events_channel_runs_nothing(
    two_nodes: list[Node], redis_server: RedisServer, tmp_path: Path
) -> None:
    """The attack: a pickle whose unpickling runs ``touch MARKER``, published three times on the
    channel both nodes listen on (each receives it). Beside it, the legitimate case: a pair,
    one member on each node, enters a room and signals both ways afterwards, through the same
    channel. The marker is never made, both nodes go on serving, and each logs the bad message
    once (not three times), without its content."""
    marker, control = tmp_path / "pwned-marker", tmp_path / "control-marker"
    # The payload is live: unpickled here, it runs its command (on a file of its own).
    pickle.loads(pickle.dumps(_Command(control)))
    assert control.exists()
    payload = pickle.dumps(_Command(marker))
    for _ in range(3):
        assert publish(redis_server, payload) == 2  # both nodes received it
    one, two = two_nodes
    async with peers_on(("c", one), ("d", two)) as (c, d):
        await enter(c, "after-the-pickle")
        await enter(d, "after-the-pickle")
        # d's arrival crossed from node 2 to node 1 after the pickles; c's signal then crosses
        # from node 1 to node 2, after them too: each node has handled all three by now.
        assert await c.take() == [("peer_joined", {"id": d.sid, "name": ""})]
        assert await d.call("signal", {"to": c.sid, "description": OFFER_SDP}) == {"ok": True}
        assert await c.take() == [("signal", {"from": d.sid, "description": OFFER_SDP})]
        assert await c.call("signal", {"to": d.sid, "candidate": ice_candidate()}) == {"ok": True}
        assert await d.take() == [("signal", {"from": c.sid, "candidate": ice_candidate()})]
    assert not marker.exists()
    for node in two_nodes:
        assert node.proc.poll() is None
        assert len(_skipped_lines(node, "not JSON")) == 1, node.log()
        assert "touch" not in node.log()
        assert marker.name not in node.log()


async def test_a_forged_signal_over_the_limits_never_reaches_a_member(
    two_nodes: list[Node], redis_server: RedisServer
) -> None:
    """The attack: events for member A's connection published straight to Redis in the nodes'
    own format, each breaking a limit or a rule a client's message is held to: a ``signal`` of
    300 KB (over the 256 KB a message may be), one whose SDP is 100 KB (over 64 KB) in a message
    under the limit, one with a key the signaller never sends, one from an over-long id, a
    ``peer_joined`` with a 1000-character name, events the signaller never sends across
    (``room_joined``, a made-up one), python-socketio's own message format, and bytes that are
    not JSON; each twice. Beside them, the legitimate cases: a well-formed signal forged the same
    way is delivered (the format is right: the others are refused for what they carry), and
    member B's real signal, relayed from the other node after them all, arrives next and alone.
    Each kind is logged once, without its content."""
    one, two = two_nodes
    filler = "a=forged-sdp-content\r\n"
    huge = {"type": "offer", "sdp": "v=0\r\n" + filler * (300 * 1024 // len(filler))}
    large = {"type": "offer", "sdp": "v=0\r\n" + filler * (100 * 1024 // len(filler))}
    async with peers_on(("a", one), ("b", two)) as (a, b):
        await enter(a, "lab", "Ada")
        await enter(b, "lab", "Bo")
        assert await a.take() == [("peer_joined", {"id": b.sid, "name": "Bo"})]
        well_formed = {"from": b.sid, "description": OFFER_SDP}
        assert publish(redis_server, _forged(a.sid, "signal", well_formed)) == 2
        assert await a.take() == [("signal", well_formed)]
        forgeries: list[bytes | str] = [
            _forged(a.sid, "signal", {"from": b.sid, "description": huge}),
            _forged(a.sid, "signal", {"from": b.sid, "description": large}),
            _forged(a.sid, "signal", {**well_formed, "forged-sdp-content": 1}),
            _forged(a.sid, "signal", {"from": "x" * 65, "candidate": ice_candidate()}),
            _forged(a.sid, "peer_joined", {"id": "forged", "name": "forged-name" * 91}),
            _forged(a.sid, "room_joined", "lab"),
            _forged(a.sid, "forged-event", {"forged-sdp-content": 1}),
            json.dumps(
                {
                    "method": "emit",
                    "event": "signal",
                    "data": [well_formed],
                    "namespace": "/",
                    "room": a.sid,
                    "skip_sid": None,
                    "callback": None,
                    "host_id": "forged",
                }
            ),
            b"\xff\xfe forged-sdp-content",
        ]
        assert len(forgeries[0]) > 300 * 1024
        assert 100 * 1024 < len(forgeries[1]) < 256 * 1024
        for forgery in forgeries * 2:
            assert publish(redis_server, forgery) == 2
        assert await b.call("signal", {"to": a.sid, "candidate": ice_candidate()}) == {"ok": True}
        assert await a.take() == [("signal", {"from": b.sid, "candidate": ice_candidate()})]
        # And one from node 1 to node 2, after them on node 2's side too.
        assert await a.call("signal", {"to": b.sid, "candidate": ice_candidate()}) == {"ok": True}
        assert await b.take() == [("signal", {"from": a.sid, "candidate": ice_candidate()})]
        assert a.untaken() == []
        assert b.untaken() == []
    log = one.log()
    for kind in (
        "larger than a client may send",
        "a malformed 'signal' event",
        "a malformed 'peer_joined' event",
        "an event the signaller never sends",
        "not in the form of ipymeet's events",
        "not JSON",
    ):
        assert len(_skipped_lines(one, kind)) == 1, (kind, log)
    assert len([line for line in log.splitlines() if SKIPPED in line]) == 6, log
    assert "forged" not in log
    assert len(log) < 10_000  # nothing of the 300 KB, nor of anything else, was written
    # Node 2 holds neither target: it judged only what was not even an event (once each).
    assert len([line for line in two.log().splitlines() if SKIPPED in line]) == 3, two.log()


def _member(sid: Any, name: Any, member_id: Any, node: str, seq: Any = 1) -> str:
    return json.dumps({"sid": sid, "name": name, "client": "", "id": member_id, "node": node,
                       "seq": seq})  # fmt: skip


async def test_forged_members_in_a_room_hash_are_skipped(
    two_nodes: list[Node], redis_server: RedisServer
) -> None:
    """The attack: members written straight into a room's hash in Redis: one with a 1000-character
    name, one of 10 KB, one whose id is 300 characters, one with fields of the wrong types, and a
    pickle. Beside them, the legitimate case: member B enters on the other node and hears of A
    only, A hears of B only, they signal each other, a signal from either to a forged member is
    ``not_in_room``, and B's leaving is told to A. Skipped, not cut to the limits: what breaks
    them was not written by a signaller, and a cut name would pass a forgery off as a member.
    Logged once per node, without what the forgeries carry."""
    one, two = two_nodes
    node = node_id(one)
    async with peers_on(("a", one), ("b", two)) as (a, b):
        await enter(a, "lab", "Ada")
        forged = {
            "m:long-name": _member("forged-sid-1", "forged-name" * 91, "long-name", node),
            "m:big": _member("forged-sid-2", "n" * 10_000, "big", node),
            "m:" + "i" * 300: _member("forged-sid-3", "Eve", "i" * 300, node),
            "m:types": _member(5, ["forged-name"], "types", node, seq="1"),
            "m:pickle": pickle.dumps(_Command(Path("/nonexistent/forged"))),
        }
        redis_server.client().hset("ipymeet:room:lab", mapping=forged)
        answer = await enter(b, "lab", "Bo")
        assert answer["peers"] == [{"id": a.sid, "name": "Ada"}]
        assert await a.take() == [("peer_joined", {"id": b.sid, "name": "Bo"})]
        for sender, target in ((b, "long-name"), (a, "big"), (b, "types")):
            refused = await sender.call("signal", {"to": target, "candidate": ice_candidate()})
            assert refused["ok"] is False
            assert refused["code"] == "not_in_room"
        assert await b.call("signal", {"to": a.sid, "description": OFFER_SDP}) == {"ok": True}
        assert await a.take() == [("signal", {"from": b.sid, "description": OFFER_SDP})]
        assert await a.call("signal", {"to": b.sid, "candidate": ice_candidate()}) == {"ok": True}
        assert await b.take() == [("signal", {"from": a.sid, "candidate": ice_candidate()})]
        assert await b.call("leave", {}) == {"ok": True}
        assert await a.take() == [("peer_left", {"id": b.sid, "reason": "left"})]
        assert a.untaken() == []
        assert b.untaken() == []
    for each in two_nodes:
        log = each.log()
        assert len(_skipped_lines(each, "a malformed member of a room")) == 1, log
        assert "forged" not in log
        assert "nnnnnnnn" not in log


async def test_a_dead_node_is_reaped_beside_forged_entries(
    two_nodes: list[Node], redis_server: RedisServer
) -> None:
    """The attack: a room hash holding entries that are not JSON, or not a member, beside the real
    members of a node that then dies (SIGKILL), and a made-up 10 KB node id in the node set.
    Before, the reaping script failed on them (read as "lost Redis") and nobody was told. Beside
    it, the legitimate case: the member on the surviving node hears the dead node's member
    leave, within the usual time, Redis is not taken for lost, and the room still serves."""
    one, two = two_nodes
    async with peers_on(("a", one), ("b", two)) as (a, b):
        await enter(a, "lab")
        await enter(b, "lab")
        assert await a.take() == [("peer_joined", {"id": b.sid, "name": ""})]
        client = redis_server.client()
        client.hset(
            "ipymeet:room:lab",
            mapping={
                "m:junk": b"\x80forged",
                "m:list": "[1, 2]",
                "m:half": json.dumps({"node": node_id(one), "sid": {"forged": 1}}),
            },
        )
        client.sadd("ipymeet:nodes", "f" * 10_000)
        gone = a.sid
        one.kill()
        killed = time.monotonic()
        await wait_until(
            lambda: ("peer_left", {"id": gone, "reason": "disconnected"}) in b.untaken(),
            "peer_left for the killed node's member",
            timeout=DEAD_NODE_LIMIT + 4,
        )
        assert time.monotonic() - killed < DEAD_NODE_LIMIT
        async with peers_on(("c", two)) as (c,):
            assert (await enter(c, "lab"))["peers"] == [{"id": b.sid, "name": ""}]
            assert await b.take(2) == [
                ("peer_left", {"id": gone, "reason": "disconnected"}),
                ("peer_joined", {"id": c.sid, "name": ""}),
            ]
    log = two.log()
    assert "lost Redis" not in log
    assert len(_skipped_lines(two, "a malformed node id")) == 1, log
    assert "forged" not in log
    assert "f" * 64 not in log


async def test_the_nodes_run_as_an_acl_user_and_strangers_cannot_publish(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """The attack: a client that reaches Redis without its password publishes an event for a
    member (and reads a room): refused, not authenticated. Beside it, the legitimate case, the
    set-up docs/deploy.md gives: the default user off, and the nodes in as an ACL user limited to
    ipymeet's keys and channel, with no dangerous command; a pair, one on each node, enters and
    signals across. The same user may not read keys that are not ipymeet's."""
    setup = redis_server.client()
    setup.acl_setuser("admin", enabled=True, passwords=["+admin-password"], keys=["*"],
                      channels=["*"], categories=["+@all"])  # fmt: skip
    setup.acl_setuser("ipymeet", enabled=True, passwords=["+node-password"], keys=["ipymeet:*"],
                      channels=["ipymeet:*"], categories=["+@all", "-@dangerous"])  # fmt: skip
    setup.acl_setuser("default", enabled=False)
    setup.close()
    admin = redis.Redis(port=redis_server.port, username="admin", password="admin-password")
    url = f"redis://ipymeet:node-password@127.0.0.1:{redis_server.port}/0"
    with running_nodes(url, tmp_path, 2) as (one, two):
        async with peers_on(("a", one), ("b", two)) as (a, b):
            await enter(a, "lab")
            await enter(b, "lab")
            assert await a.take() == [("peer_joined", {"id": b.sid, "name": ""})]
            stranger = redis.Redis(port=redis_server.port, socket_timeout=5)
            # (NOAUTH, or HELLO's "must be called with the client already authenticated")
            with pytest.raises(redis.AuthenticationError, match=r"(?i)auth"):
                stranger.publish(EVENTS, _forged(a.sid, "signal", {"from": b.sid}))
            with pytest.raises(redis.AuthenticationError, match=r"(?i)auth"):
                stranger.hgetall("ipymeet:room:lab")
            stranger.close()
            assert await b.call("signal", {"to": a.sid, "description": OFFER_SDP}) == {"ok": True}
            assert await a.take() == [("signal", {"from": b.sid, "description": OFFER_SDP})]
            answer = await a.call("signal", {"to": b.sid, "candidate": ice_candidate()})
            assert answer == {"ok": True}
            assert await b.take() == [("signal", {"from": a.sid, "candidate": ice_candidate()})]
        node_user = redis.Redis.from_url(url, socket_timeout=5)
        with pytest.raises(redis.exceptions.NoPermissionError):
            node_user.get("not-ipymeet")
        node_user.close()
        # Two more heartbeats of node 1, so a whole turn (beat, then the look at the others,
        # the reaping script) ran as that user between them: a refused command would read as
        # Redis lost.
        beats: list[int] = []

        def beat_seen() -> bool:
            ttl = int(admin.pttl(f"ipymeet:node:{node_id(one)}"))
            if not beats or ttl > beats[-1]:
                beats.append(ttl)
            else:
                beats[-1] = ttl
            return len(beats) >= 3

        await wait_until(beat_seen, "two heartbeats of node 1", timeout=10)
        for node in (one, two):
            assert "lost Redis" not in node.log(), node.log()
            assert "node-password" not in node.log()
    admin.close()
