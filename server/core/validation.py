"""Payload validation for both signalling dialects (see docs/protocol.md).

Every check raises :class:`Refused` with a protocol error code and a plain message; the handlers
turn it into an ``error`` event or an ``{ok: false}`` acknowledgement, and nothing else changes.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

ROOM_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
MAX_NAME = 64
MAX_CANDIDATE = 2048
MAX_MID = 64
MAX_PEER_ID = 64
DESCRIPTION_TYPES = frozenset({"offer", "answer", "pranswer"})


class Refused(Exception):
    """A request the server will not carry out; ``code`` is the protocol's error code."""

    def __init__(self, code: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details

    def payload(self) -> dict[str, Any]:
        """``{code, message}`` plus any details (e.g. ``capacity`` of a full room)."""
        return {"code": self.code, "message": self.message, **self.details}


def bad(message: str) -> Refused:
    return Refused("bad_request", message)


def room_id(value: Any) -> str:
    if not isinstance(value, str):
        raise bad(f"room id must be a string, not {type(value).__name__}")
    if not ROOM_RE.fullmatch(value):
        raise bad("room id must be 1-64 characters of letters, digits, '_', '.' or '-'")
    return value


def display_name(value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise bad(f"name must be a string, not {type(value).__name__}")
    cleaned = "".join(ch for ch in value if unicodedata.category(ch)[0] != "C").strip()
    if len(cleaned) > MAX_NAME:
        raise bad(f"name must be at most {MAX_NAME} characters")
    return cleaned


def mapping(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise bad(f"{what} must be an object")
    return value


def _int_or_none(value: Any, what: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 65535:
        raise bad(f"{what} must be an integer between 0 and 65535")
    return value


def _str_or_none(value: Any, what: str, limit: int) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > limit:
        raise bad(f"{what} must be a string of at most {limit} characters")
    return value


def session_description(value: Any, max_sdp: int, *, expect: str | None = None) -> dict[str, str]:
    """An RTCSessionDescriptionInit ``{type, sdp}``, bounded in size; returns a clean copy."""
    desc = mapping(value, "description")
    kind = desc.get("type")
    # isinstance first: a list or an object is unhashable, and `in` a frozenset would raise.
    if (
        not isinstance(kind, str)
        or kind not in DESCRIPTION_TYPES
        or (expect is not None and kind != expect)
    ):
        wanted = f"'{expect}'" if expect else "'offer', 'answer' or 'pranswer'"
        raise bad(f"description type must be {wanted}")
    sdp = desc.get("sdp")
    if not isinstance(sdp, str):
        raise bad("description sdp must be a string")
    if len(sdp.encode("utf-8", "surrogatepass")) > max_sdp:
        raise bad(f"SDP is larger than {max_sdp // 1024} KiB")
    return {"type": kind, "sdp": sdp}


def ice_candidate(value: Any) -> dict[str, Any]:
    """An RTCIceCandidateInit; returns a clean copy with only the known fields."""
    cand = mapping(value, "candidate")
    text = cand.get("candidate")
    if not isinstance(text, str) or len(text) > MAX_CANDIDATE:
        raise bad(f"candidate must be a string of at most {MAX_CANDIDATE} characters")
    clean: dict[str, Any] = {
        "candidate": text,
        "sdpMid": _str_or_none(cand.get("sdpMid"), "sdpMid", MAX_MID),
        "sdpMLineIndex": _int_or_none(cand.get("sdpMLineIndex"), "sdpMLineIndex"),
    }
    if "usernameFragment" in cand:
        clean["usernameFragment"] = _str_or_none(
            cand["usernameFragment"], "usernameFragment", MAX_MID
        )
    return clean


def tutorial_candidate(value: Any) -> dict[str, Any]:
    """Dialect 1's ``{roomId, label, candidate}``; it is relayed whole, as the tutorial does."""
    event = mapping(value, "webrtc_ice_candidate payload")
    room_id(event.get("roomId"))
    _int_or_none(event.get("label"), "label")
    text = event.get("candidate")
    if not isinstance(text, str) or len(text) > MAX_CANDIDATE:
        raise bad(f"candidate must be a string of at most {MAX_CANDIDATE} characters")
    return event


SESSION_RE = re.compile(r"[A-Za-z0-9_-]{16,128}")


def session_key(value: Any) -> str | None:
    """A page's session key (its secret for re-entering as the same member), or None."""
    if value is None:
        return None
    if not isinstance(value, str) or not SESSION_RE.fullmatch(value):
        raise bad("session must be 16-128 characters of [A-Za-z0-9_-]")
    return value


def peer_id(value: Any) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= MAX_PEER_ID:
        raise bad("'to' must be a peer id (a string)")
    return value
