"""Re-entering a room as the same member (dialect 2 with a session key): the ids that let pages
keep their peer connections while their signalling drops, or the signaller restarts.

Real ``socketio.AsyncClient``s against real signallers on loopback ports.
"""

from __future__ import annotations

from ipymeet.server import Settings, SignallerThread
from ipymeet.server.core.signaller import member_id

from ..support import MakeSignaller
from .helpers import OFFER_SDP, Peer, connected, enter

KEY_A = "a" * 24
KEY_B = "b-session-key-0123456789"


async def test_a_session_key_gives_a_stable_id_that_signals_reach(
    make_signaller: MakeSignaller,
) -> None:
    """With `session`, a member's id is a digest of the key (never the key), not its sid."""
    signaller = make_signaller(max_peers=3)
    async with connected(signaller.url, "a", "b") as (a, b):
        answer_a = await enter(a, "r", "Ann", session=KEY_A)
        assert answer_a["self"] == member_id(a.sid, KEY_A) != a.sid
        assert KEY_A not in str(answer_a)
        answer_b = await enter(b, "r", session=KEY_B)
        assert answer_b["peers"] == [{"id": answer_a["self"], "name": "Ann"}]
        assert await a.take() == [("peer_joined", {"id": answer_b["self"], "name": ""})]
        assert await b.call("signal", {"to": answer_a["self"], "description": OFFER_SDP}) == {
            "ok": True
        }
        assert await a.take() == [("signal", {"from": answer_b["self"], "description": OFFER_SDP})]
        # The sid is no address for a member with a session key.
        refused = await b.call("signal", {"to": a.sid, "description": OFFER_SDP})
        assert refused["code"] == "not_in_room"


async def test_a_dropped_member_enters_again_under_the_same_id(
    make_signaller: MakeSignaller,
) -> None:
    """The others see `peer_left` (disconnected), then `peer_joined` with the same id."""
    signaller = make_signaller(max_peers=3)
    async with connected(signaller.url, "a", "b") as (a, b):
        await enter(a, "r", session=KEY_A)
        first = await enter(b, "r", "Bo", session=KEY_B)
        await a.take()
        await b.close()
        assert await a.take() == [("peer_left", {"id": first["self"], "reason": "disconnected"})]
        async with connected(signaller.url, "b2") as (b2,):
            again = await enter(b2, "r", "Bo", session=KEY_B)
            assert again["self"] == first["self"]
            assert await a.take() == [("peer_joined", {"id": first["self"], "name": "Bo"})]


async def test_entering_with_the_key_of_a_connected_member_takes_its_place(
    make_signaller: MakeSignaller,
) -> None:
    """The signaller has not seen the old connection drop: the new one replaces it, the others
    hear only `peer_joined` (the member they know stays), and signals go to the new one."""
    signaller = make_signaller(max_peers=3)
    async with connected(signaller.url, "a", "old", "new") as (a, old, new):
        await enter(a, "r", session=KEY_A)
        first = await enter(old, "r", session=KEY_B)
        old_sid = old.sid
        await a.take()
        again = await enter(new, "r", "Bo", session=KEY_B)
        assert again["self"] == first["self"]
        assert [p["id"] for p in again["peers"]] == [member_id(a.sid, KEY_A)]
        await old.wait_until(old.disconnected.is_set, "the replaced connection to be closed")
        await a.wait_until(
            lambda: old_sid not in signaller.signaller.connections, "the server to drop it"
        )
        assert [m.sid for m in signaller.registry.members("r")] == [a.sid, new.sid]
        # The others hear only that the member is back; its old connection's end is not news.
        assert await a.take() == [("peer_joined", {"id": first["self"], "name": "Bo"})]
        assert await a.call("signal", {"to": first["self"], "description": OFFER_SDP}) == {
            "ok": True
        }
        expected = ("signal", {"from": member_id(a.sid, KEY_A), "description": OFFER_SDP})
        assert await new.take_through(expected) == []
        assert a.untaken() == []


async def test_after_a_signaller_restart_everyone_is_back_under_their_ids(
    make_signaller: MakeSignaller,
) -> None:
    """A new signaller on the same port knows nothing; the same keys give the same ids."""
    first = make_signaller(max_peers=3)
    port = first.port
    async with connected(first.url, "a", "b") as (a, b):
        ids = [
            (await enter(a, "r", session=KEY_A))["self"],
            (await enter(b, "r", session=KEY_B))["self"],
        ]
    first.stop()
    second = SignallerThread(Settings(port=port, ice_servers=())).start()
    try:
        async with connected(second.url, "a", "b") as (a, b):
            assert (await enter(b, "r", session=KEY_B))["self"] == ids[1]
            answer = await enter(a, "r", session=KEY_A)
            assert (answer["self"], answer["peers"]) == (ids[0], [{"id": ids[1], "name": ""}])
    finally:
        second.stop()


async def test_a_bad_session_key_is_refused_and_changes_nothing(
    make_signaller: MakeSignaller,
) -> None:
    signaller = make_signaller()
    async with connected(signaller.url, "a") as (a,):
        for bad in ("short", 42, "x" * 129, "no spaces allowed here!", ["a" * 20]):
            answer = await a.call("enter", {"room": "r", "session": bad})
            assert (answer["ok"], answer["code"]) == (False, "bad_request"), bad
        assert signaller.registry.members("r") == []


async def test_a_widget_key_the_kernel_does_not_know_is_refused(
    make_signaller: MakeSignaller,
) -> None:
    """A kernel's signaller lets in only its own widgets' views (and pages without a key): a view
    left from before a kernel restart must not come back as a member no code can see."""
    signaller = make_signaller(max_peers=3)
    signaller.signaller.access.keys = lambda client: client == "live"
    stale, live, page = Peer("stale"), Peer("live"), Peer("page")
    try:
        await stale.connect(signaller.url, auth={"client": "gone"})
        await live.connect(signaller.url, auth={"client": "live"})
        await page.connect(signaller.url)
        refused = await stale.call("enter", {"room": "r", "session": KEY_A})
        assert (refused["ok"], refused["code"]) == (False, "unknown_widget")
        assert "re-run the cell" in refused["message"]
        await enter(live, "r", session=KEY_B)
        await enter(page, "r")
        assert [m.client for m in signaller.registry.members("r")] == ["live", ""]
    finally:
        for peer in (stale, live, page):
            await peer.close()
