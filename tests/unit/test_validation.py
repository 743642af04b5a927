"""Payload checks: what is accepted, what is refused, and the clean copies relayed."""

from __future__ import annotations

import pytest

from ipymeet.server.core import validation as v


@pytest.mark.parametrize("room", ["a", "lab-42", "A.b_c-9", "x" * 64])
def test_good_room_ids(room: str) -> None:
    assert v.room_id(room) == room


@pytest.mark.parametrize("room", ["", "x" * 65, "a b", "a/b", "é", None, 42, ["a"], {"a": 1}])
def test_bad_room_ids(room: object) -> None:
    with pytest.raises(v.Refused) as refused:
        v.room_id(room)
    assert refused.value.code == "bad_request"


def test_names_are_stripped_of_control_characters_and_bounded() -> None:
    assert v.display_name(None) == ""
    assert v.display_name("  Ada\x00\u200b Lovelace\n ") == "Ada Lovelace"
    assert v.display_name("é" * 64) == "é" * 64
    for bad in ("x" * 65, 3, ["Ada"]):
        with pytest.raises(v.Refused):
            v.display_name(bad)


def test_session_descriptions() -> None:
    """Only {type, sdp} is kept; the type and the SDP size are checked."""
    assert v.session_description({"type": "offer", "sdp": "v=0", "x": 1}, 100) == {
        "type": "offer",
        "sdp": "v=0",
    }
    for bad, expect in (
        ({"type": "rollback", "sdp": ""}, None),
        ({"type": "answer", "sdp": "v=0"}, "offer"),
        ({"type": "offer"}, None),
        ({"type": "offer", "sdp": 5}, None),
        ({"type": "offer", "sdp": "é" * 51}, None),  # 102 bytes > 100
        ({"type": ["offer"], "sdp": "v=0"}, None),  # unhashable: found by the fuzz test
        ({"type": {"offer": 1}, "sdp": "v=0"}, "offer"),
        ("v=0", None),
    ):
        with pytest.raises(v.Refused):
            v.session_description(bad, 100, expect=expect)


def test_ice_candidates() -> None:
    """RTCIceCandidateInit fields are checked and copied; unknown fields are dropped."""
    cand = {
        "candidate": "candidate:1 1 udp 1 1.2.3.4 5 typ host",
        "sdpMid": "0",
        "sdpMLineIndex": 0,
        "evil": "x",
    }
    assert v.ice_candidate(cand) == {k: cand[k] for k in ("candidate", "sdpMid", "sdpMLineIndex")}
    assert v.ice_candidate({"candidate": "", "sdpMid": None, "sdpMLineIndex": None})
    for bad in (
        {"candidate": 1},
        {"candidate": "c", "sdpMLineIndex": True},
        {"candidate": "c", "sdpMLineIndex": -1},
        {"candidate": "c" * 5000},
        {"candidate": "c", "sdpMid": 3},
        None,
    ):
        with pytest.raises(v.Refused):
            v.ice_candidate(bad)


def test_tutorial_candidates_are_relayed_whole() -> None:
    event = {"roomId": "r", "label": 0, "candidate": "candidate:..."}
    assert v.tutorial_candidate(event) is event
    for bad in (
        {"roomId": "r", "label": "0", "candidate": "c"},
        {"label": 0, "candidate": "c"},
        {"roomId": "r", "label": 0},
    ):
        with pytest.raises(v.Refused):
            v.tutorial_candidate(bad)
