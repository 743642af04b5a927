"""The custom messages: the typed unions name exactly the contract's message types, and whatever the
browser sends is read into a clean typed copy or refused with a reason."""

from __future__ import annotations

import re
import sys
import typing
from typing import Any

import pytest

from ipymeet.widget import contract, messages
from ipymeet.widget.messages import MalformedMessage, parse_browser_message


def _types(union: Any) -> set[str]:
    found: set[str] = set()
    for member in typing.get_args(union):
        hints = typing.get_type_hints(member)
        found.update(typing.get_args(hints["type"]))
    return found


def test_the_unions_carry_exactly_the_contracts_types() -> None:
    """A message type added on one side only fails here (and, in the front end, its `tsc`)."""
    assert _types(messages.KernelMessage) == set(contract.KERNEL_MESSAGE_TYPES)
    assert _types(messages.BrowserMessage) == set(contract.BROWSER_MESSAGE_TYPES)


def test_a_snapshot_request_names_one_path_back() -> None:
    hints = typing.get_type_hints(messages.SnapshotRequest)
    assert typing.get_args(hints["via"]) == ("signaller", "comm")
    assert "upload" not in hints


CHAT = {"type": "chat", "id": "m1", "from": "p1", "name": "Grace", "text": "hi", "time": 1.5,
        "mine": False}  # fmt: skip
RGBA = {"type": "frame", "id": "r1", "width": 2, "height": 1, "format": "rgba"}


def test_well_formed_messages_are_read_into_clean_copies() -> None:
    extra = {**CHAT, "colour": "red"}
    assert parse_browser_message(extra, []) == CHAT
    assert parse_browser_message({**CHAT, "time": 7}, [])["time"] == 7.0  # type: ignore[typeddict-item]
    assert parse_browser_message(RGBA, [b"\0" * 8]) == RGBA
    png = {**RGBA, "format": "png"}
    assert parse_browser_message(png, [b"\x89PNG"]) == png
    assert parse_browser_message({"type": "frame", "id": "r1", "error": "no video"}, []) == {
        "type": "frame",
        "id": "r1",
        "error": "no video",
    }
    assert parse_browser_message({"type": "token_request", "room": "lab-1"}, []) == {
        "type": "token_request",
        "room": "lab-1",
    }
    error = parse_browser_message({"type": "error", "message": "x" * 9000}, [])
    assert error["type"] == "error"
    assert len(error["message"]) == messages.MAX_ERROR  # type: ignore[typeddict-item]


@pytest.mark.parametrize(
    ("content", "buffers", "kind", "reason"),
    [
        (None, [], "unknown", "unknown message type"),
        ([], [], "unknown", "unknown message type"),
        ({}, [], "unknown", "unknown message type None"),
        ({"type": "teleport"}, [], "unknown", "'teleport'"),
        ({"type": ["chat"]}, [], "unknown", "unknown message type"),
        ({**CHAT, "text": None}, [], "chat", "text must be"),
        ({**CHAT, "text": "x" * (contract.MAX_CHAT + 1)}, [], "chat", "text must be"),
        ({**CHAT, "name": "n" * (contract.MAX_NAME + 1)}, [], "chat", "name must be"),
        ({**CHAT, "id": ""}, [], "chat", "id must be"),
        ({**CHAT, "time": float("nan")}, [], "chat", "time must be"),
        ({**CHAT, "time": True}, [], "chat", "time must be"),
        ({**CHAT, "mine": 1}, [], "chat", "mine must be"),
        ({**RGBA, "width": 0}, [b""], "frame", "width must be"),
        ({**RGBA, "height": 2.5}, [b"\0" * 20], "frame", "height must be"),
        ({**RGBA, "format": "jpeg"}, [b"\0" * 8], "frame", "format"),
        ({**RGBA, "format": ["rgba"]}, [b"\0" * 8], "frame", "format"),
        (RGBA, [], "frame", "one buffer"),
        (RGBA, [b"\0" * 8, b""], "frame", "one buffer"),
        (RGBA, [b"\0" * 7], "frame", "does not match"),
        ({"type": "frame", "error": "no video"}, [], "frame", "id must be"),
        ({"type": "token_request"}, [], "token_request", "room must be"),
        ({"type": "token_request", "room": "a b"}, [], "token_request", "invalid room"),
    ],
)
def test_malformed_messages_are_refused_with_their_kind_and_a_reason(
    content: Any, buffers: list[bytes], kind: str, reason: str
) -> None:
    with pytest.raises(MalformedMessage, match=reason) as refused:
        parse_browser_message(content, buffers)
    assert refused.value.kind == kind


# -- the kernel route ------------------------------------------------------------------------------


def test_the_route_events_are_the_contracts() -> None:
    assert typing.get_args(messages.RouteRequestEvent) == contract.ROUTE_REQUESTS
    assert typing.get_args(messages.RouteSendEvent) == contract.ROUTE_SENDS


def test_route_messages_are_read_into_clean_copies() -> None:
    enter = {"room": "lab-1", "name": "Ada", "session": "s" * 24}
    request = {"type": "sig_request", "n": 3, "id": 1, "event": "enter", "payload": enter}
    assert parse_browser_message({**request, "extra": 1}, []) == request
    assert parse_browser_message({"type": "sig_connect", "n": 1}, []) == {
        "type": "sig_connect",
        "n": 1,
    }
    assert parse_browser_message({"type": "sig_close", "n": contract.MAX_ROUTE_NUMBER}, []) == {
        "type": "sig_close",
        "n": contract.MAX_ROUTE_NUMBER,
    }
    meta = {"id": "f", "index": 0, "count": 1, "width": 1, "height": 1, "format": "rgba"}
    send = {"type": "sig_send", "n": 2, "event": "frame", "payload": meta}
    assert parse_browser_message(send, [b"\0" * 4]) == send
    # id 0: a request that wants no answer (the page's signals on the kernel route).
    unanswered = {"type": "sig_request", "n": 3, "id": 0, "event": "signal", "payload": {"to": "x"}}
    assert parse_browser_message(unanswered, []) == unanswered
    # Several at once, each as one with id 0.
    signals = {"type": "sig_signals", "n": 3, "payloads": [{"to": "x"}, {"to": "y", "c": 1}]}
    assert parse_browser_message(signals, []) == signals
    assert parse_browser_message({**send, "payload": {"id": "f", "error": "no video"}}, []) == {
        **send,
        "payload": {"id": "f", "error": "no video"},
    }


REQUEST = {"type": "sig_request", "n": 1, "id": 1, "event": "signal", "payload": {"to": "x"}}
SEND = {"type": "sig_send", "n": 1, "event": "frame", "payload": {"id": "f"}}
SIGNALS = {"type": "sig_signals", "n": 1, "payloads": [{"to": "x"}]}
CHUNK = b"\0" * messages.MAX_ROUTE_BUFFER


@pytest.mark.parametrize(
    ("content", "buffers", "reason"),
    [
        ({"type": "sig_connect"}, [], "n must be an integer from 1"),
        ({"type": "sig_connect", "n": 0}, [], "n must be"),
        ({"type": "sig_connect", "n": 2**31}, [], "n must be"),
        ({"type": "sig_connect", "n": True}, [], "n must be"),
        ({"type": "sig_connect", "n": 1.0}, [], "n must be"),
        ({"type": "sig_connect", "n": 1}, [b""], "at most 0 buffer"),
        ({"type": "sig_close", "n": "1"}, [], "n must be"),
        ({**REQUEST, "id": -1}, [], "id must be"),
        ({**REQUEST, "id": "1"}, [], "id must be"),
        ({**REQUEST, "event": "join"}, [], "event must be one of 'enter', 'leave', 'signal'"),
        ({**REQUEST, "event": ["enter"]}, [], "event must be one of"),
        ({**REQUEST, "event": "frame"}, [], "event must be one of"),
        ({**REQUEST, "payload": "room"}, [], "payload must be an object"),
        ({**REQUEST, "payload": ["x"]}, [], "payload must be an object"),
        ({**REQUEST, "payload": {"x": float("nan")}}, [], "payload must be plain JSON"),
        ({**REQUEST, "payload": {"x": b"1"}}, [], "payload must be plain JSON"),
        (
            {**REQUEST, "payload": {"sdp": "x" * messages.MAX_ROUTE_PAYLOAD}},
            [],
            f"at most {messages.MAX_ROUTE_PAYLOAD} characters",
        ),
        (REQUEST, [b"x"], "at most 0 buffer"),
        ({**SIGNALS, "payloads": []}, [], "payloads must be a list of 1 to 16 objects"),
        ({**SIGNALS, "payloads": {"to": "x"}}, [], "payloads must be a list of 1 to 16"),
        ({**SIGNALS, "payloads": [{"to": "x"}] * 17}, [], "payloads must be a list of 1 to 16"),
        ({**SIGNALS, "payloads": [{"to": "x"}, "y"]}, [], "payloads must be an object"),
        ({**SIGNALS, "payloads": [{"x": float("inf")}]}, [], "payloads must be plain JSON"),
        (
            {**SIGNALS, "payloads": [{"sdp": "x" * messages.MAX_ROUTE_PAYLOAD}]},
            [],
            f"at most {messages.MAX_ROUTE_PAYLOAD} characters",
        ),
        ({**SIGNALS, "n": 0}, [], "n must be"),
        (SIGNALS, [b"x"], "at most 0 buffer"),
        ({**SEND, "event": "enter"}, [], "event must be one of 'frame'"),
        (SEND, [b"", b""], "at most 1 buffer"),
        (SEND, [CHUNK + b"\0"], "at most 1 buffer"),
    ],
)
def test_malformed_route_messages_are_refused(
    content: Any, buffers: list[bytes], reason: str
) -> None:
    with pytest.raises(MalformedMessage, match=re.escape(reason)) as refused:
        parse_browser_message(content, buffers)
    assert refused.value.kind == content["type"]


def test_a_deeply_nested_payload_is_refused_not_a_crash() -> None:
    nested: dict[str, Any] = {}
    inner = nested
    for _ in range(3 * sys.getrecursionlimit()):
        inner["x"] = {}
        inner = inner["x"]
    with pytest.raises(MalformedMessage, match="plain JSON"):
        parse_browser_message({**REQUEST, "payload": nested}, [])
