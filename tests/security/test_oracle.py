"""No room oracle: the two dialects' rooms do not reveal each other (issue 17, finding 8).

The attack: the tutorial dialect's ``join`` answered ``full_room`` for a name an ipymeet room
held and ``room_created`` for a free name, and its members heard nothing, so anyone who could
reach the signaller probed room names silently. The rooms of the two dialects are now kept apart
(server/core/registry.py, ``tutorial_key``): a probe gets the same answer for a taken name as for a
free one, and nobody in the probed room hears of it.
"""

from __future__ import annotations

from ipymeet.server import SignallerThread

from ..integration.helpers import connected

OFFER = {"type": "offer", "sdp": "v=0\r\n"}


async def test_the_tutorial_dialect_does_not_reveal_ipymeet_rooms(
    signaller: SignallerThread,
) -> None:
    """A prober joins an ipymeet room's name and a free name through the tutorial's ``join``:
    the same answer, ``room_created``, for both; its ``start_call`` and offer there reach no
    ipymeet member; the members' next event is their own marker. Beside it, two tutorial pages
    still meet (``room_joined``) and two ipymeet members still signal each other."""
    async with connected(signaller.url, "ada", "bob", "probe", "t1", "t2") as (
        ada,
        bob,
        probe,
        t1,
        t2,
    ):
        assert (await ada.call("enter", {"room": "secret-lab"}))["ok"] is True
        assert (await bob.call("enter", {"room": "secret-lab"}))["ok"] is True
        assert [e[0] for e in await ada.take()] == ["peer_joined"]

        await probe.emit("join", "secret-lab")
        taken = await probe.take()
        await probe.emit("join", "no-such-room")
        free = await probe.take()
        assert [e[0] for e in taken] == [e[0] for e in free] == ["room_created"]
        await probe.emit("start_call", "secret-lab")
        await probe.emit("webrtc_offer", {"roomId": "secret-lab", "sdp": OFFER})

        # Markers: what the members hear next is each other, not the prober.
        assert await ada.call("signal", {"to": bob.sid, "description": OFFER}) == {"ok": True}
        assert await bob.take() == [("signal", {"from": ada.sid, "description": OFFER})]
        assert ada.untaken() == []
        assert [m.sid for m in signaller.registry.members("secret-lab")] == [ada.sid, bob.sid]

        # The tutorial's own rooms of two still work, beside the probe.
        await t1.emit("join", "pair")
        assert await t1.take() == [("room_created", "pair")]
        await t2.emit("join", "pair")
        assert await t2.take() == [("room_joined", "pair")]


async def test_ipymeet_enter_does_not_reveal_tutorial_rooms(signaller: SignallerThread) -> None:
    """The other way: a dialect-2 ``enter`` of a tutorial room's name is an ipymeet room like a
    free name (``ok``, no peers) and the tutorial pair hears nothing; its ``start_call`` still
    reaches only its partner."""
    async with connected(signaller.url, "t1", "t2", "probe") as (t1, t2, probe):
        await t1.emit("join", "their-pair")
        await t2.emit("join", "their-pair")
        assert await t1.take() == [("room_created", "their-pair")]
        assert await t2.take() == [("room_joined", "their-pair")]
        answer = await probe.call("enter", {"room": "their-pair"})
        assert (answer["ok"], answer["peers"]) == (True, [])
        await t2.emit("start_call", "their-pair")
        assert await t1.take() == [("start_call",)]
        assert t1.untaken() == []
        assert probe.untaken() == []
