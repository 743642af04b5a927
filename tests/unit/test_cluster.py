"""What ``ipymeet serve --redis`` takes and shows: URLs checked, passwords never printed; and what
a node reads back from Redis, checked as what a client sends (server/cluster/redis.py)."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from ipymeet.server import Settings
from ipymeet.server.cli import _parser
from ipymeet.server.cluster.redis import (
    Drops,
    check_url,
    read_dialect,
    read_member,
    read_room_name,
    relayed,
    shown_url,
)
from ipymeet.server.core.registry import MESH, TUTORIAL, Member
from ipymeet.server.core.validation import MAX_NAME, Refused


def test_a_password_in_the_url_is_never_shown() -> None:
    assert (
        shown_url("redis://:s3cret@db.example.org:6380/2") == "redis://:***@db.example.org:6380/2"
    )
    assert shown_url("rediss://app:s3cret@db/0") == "rediss://app:***@db/0"
    assert shown_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
    settings = Settings(redis_url="redis://:s3cret@db:6379/0")
    assert "s3cret" not in repr(settings)


@pytest.mark.parametrize("url", ["http://db/0", "db:6379", "mysql://db/0"])
def test_only_redis_urls_are_taken(url: str) -> None:
    with pytest.raises(ValueError, match="redis"):
        Settings(redis_url=url)
    with pytest.raises(ValueError, match="redis"):
        check_url(url)
    assert check_url("unix:///run/redis.sock") == "unix:///run/redis.sock"


def test_the_url_comes_from_the_environment_unless_given(monkeypatch: pytest.MonkeyPatch) -> None:
    """``IPYMEET_REDIS_URL`` (a URL with a password goes there, not in ``ps``), or ``--redis``."""
    monkeypatch.delenv("IPYMEET_REDIS_URL", raising=False)
    assert _parser().parse_args(["serve"]).redis is None
    monkeypatch.setenv("IPYMEET_REDIS_URL", "redis://:pw@db:6379/0")
    assert _parser().parse_args(["serve"]).redis == "redis://:pw@db:6379/0"
    given = _parser().parse_args(["serve", "--redis", "redis://other:6379/1"])
    assert given.redis == "redis://other:6379/1"


# -- what is read back from Redis (issue 17, finding 9; the attacks: tests/security/test_redis.py)

NODE = "0123456789abcdef"
_ABSENT = object()


def _json(**fields: Any) -> str:
    member = {"sid": "s1", "name": "Ada", "client": "", "id": "p1", "node": NODE, "seq": 1}
    member.update(fields)
    return json.dumps({k: v for k, v in member.items() if v is not _ABSENT})


def test_a_member_as_a_signaller_writes_it_is_read() -> None:
    """As ``_ADD``'s cjson writes it (bytes, ``\\/`` escapes, UTF-8 names): read as written."""
    raw = (
        b'{"client":"","id":"p1","name":"Ad\\/a \xc3\xa9","node":"%s","seq":7,"sid":"s1"}'
        % NODE.encode()
    )
    assert read_member(raw) == (7, Member("s1", "Ad/a é", "", "p1", NODE))
    assert read_member(_json(name="x" * MAX_NAME, client="c" * 64, id="i" * 64)) is not None


@pytest.mark.parametrize(
    "raw",
    [
        _json(name="x" * (MAX_NAME + 1)),
        _json(name=["Ada"]),
        _json(id="i" * 65),
        _json(id=""),
        _json(id=_ABSENT),
        _json(sid=5),
        _json(sid="s" * 65),
        _json(client="c" * 65),
        _json(client=None),
        _json(node="not a node"),
        _json(node="f" * 65),
        _json(seq="1"),
        _json(seq=True),
        _json(seq=0),
        _json(seq=1.5),
        _json(seq=_ABSENT),
        json.dumps({"sid": "s1", "name": "n" * 3000, "id": "p1"}),  # over MAX_MEMBER
        "[1, 2]",
        "not json",
        b"\x80\x04forged",
        "[" * 1000 + "]" * 1000,  # nested deeper than json decodes
        None,
    ],
)
def test_a_member_that_a_signaller_did_not_write_is_not_read(raw: Any) -> None:
    assert read_member(raw) is None


def test_dialects_and_room_names_read_back() -> None:
    assert [read_dialect(d) for d in (b"1", b"2", "2")] == [TUTORIAL, MESH, MESH]
    assert [read_dialect(d) for d in (b"3", b"", None, b"1 ", b"01")] == [None] * 5
    assert read_room_name(b"lab") == "lab"
    assert read_room_name(b"~lab") == "~lab"  # a dialect's rooms may be kept under a mark
    for bad in (b"~~lab", b"lab\n", b"x" * 65, b"", b"\xff", b"l\xc3\xa9b", None):
        assert read_room_name(bad) is None


def _relayed(event: str, *args: Any) -> Any:
    return relayed(event, list(args), MAX_SDP)


MAX_SDP = 64 * 1024
DESCRIPTION = {"type": "offer", "sdp": "v=0\r\n"}
CANDIDATE = {"candidate": "candidate:1 1 udp 1 127.0.0.1 5 typ host", "sdpMid": "0",
             "sdpMLineIndex": 0, "usernameFragment": "abcd"}  # fmt: skip


def test_each_event_the_signaller_relays_passes_as_it_is_sent() -> None:
    """What server/core/signaller.py sends another node's members comes out as it went in."""
    for event, args in [
        ("signal", ({"from": "p1", "description": DESCRIPTION},)),
        ("signal", ({"from": "p1", "candidate": CANDIDATE},)),
        ("peer_joined", ({"id": "p1", "name": "Ada"},)),
        ("peer_left", ({"id": "p1", "reason": "left"},)),
        ("peer_left", ({"id": "p1", "reason": "disconnected"},)),
        ("peer_left", ({"id": "p1", "room": "lab"},)),
        ("webrtc_offer", (DESCRIPTION,)),
        ("webrtc_answer", ({"type": "answer", "sdp": "v=0\r\n"},)),
        ("webrtc_ice_candidate", ({"roomId": "lab", "label": 0, "candidate": "candidate:1"},)),
    ]:
        assert _relayed(event, *args) == args[0], event
    assert _relayed("start_call") is None
    limit = {"type": "offer", "sdp": "v" * MAX_SDP}
    assert _relayed("signal", {"from": "p1", "description": limit})["description"] == limit


@pytest.mark.parametrize(
    ("event", "args"),
    [
        ("signal", [{"from": "p1", "description": {"type": "offer", "sdp": "v" * (MAX_SDP + 1)}}]),
        ("signal", [{"from": "p1", "description": {"type": "rollback", "sdp": ""}}]),
        ("signal", [{"from": "p1", "candidate": {**CANDIDATE, "candidate": "c" * 2049}}]),
        ("signal", [{"from": "p1", "description": DESCRIPTION, "candidate": CANDIDATE}]),
        ("signal", [{"from": "p1", "description": DESCRIPTION, "extra": 1}]),
        ("signal", [{"from": "f" * 65, "description": DESCRIPTION}]),
        ("signal", [{"description": DESCRIPTION}]),
        ("signal", ["not an object"]),
        ("signal", []),
        ("signal", [{"from": "p1", "description": DESCRIPTION}, "a second argument"]),
        ("peer_joined", [{"id": "p1", "name": "n" * 65}]),
        ("peer_joined", [{"id": "p1", "name": "Ada", "admin": True}]),
        ("peer_left", [{"id": "p1", "reason": "kicked"}]),
        ("peer_left", [{"id": "p1", "room": "no room!"}]),
        ("start_call", ["lab"]),
        ("webrtc_offer", [{"type": "answer", "sdp": "v=0\r\n"}]),
        ("webrtc_ice_candidate", [{"roomId": "lab", "label": -1, "candidate": "c"}]),
        ("room_joined", ["lab"]),
        ("error", [{"code": "forbidden"}]),
        ("ice_servers", [{"ice_servers": []}]),
    ],
)
def test_anything_else_from_another_node_is_refused(event: str, args: list[Any]) -> None:
    with pytest.raises(Refused):
        relayed(event, args, MAX_SDP)


def test_each_kind_skipped_is_logged_once_per_period_and_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Whoever writes to Redis cannot flood the log: a kind is logged at most once a period, with
    how many there were since; every one is counted."""
    drops = Drops()
    with caplog.at_level(logging.WARNING, logger="ipymeet.server"):
        for _ in range(1000):
            drops("a message that is not JSON")
        drops("a malformed member of a room")
    assert drops.counts == {"a message that is not JSON": 1000, "a malformed member of a room": 1}
    assert [r.getMessage().split(", read from")[0] for r in caplog.records] == [
        "ipymeet: skipped a message that is not JSON",
        "ipymeet: skipped a malformed member of a room",
    ]
    caplog.clear()
    again = Drops(every=0.0)  # a period over at once: the next line says how many since
    with caplog.at_level(logging.WARNING, logger="ipymeet.server"):
        again("a message that is not JSON")
        again("a message that is not JSON")
    assert ["(1 of this kind" in r.getMessage() for r in caplog.records] == [True, True]
