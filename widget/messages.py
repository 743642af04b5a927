"""The custom messages between the kernel and the browser: one typed contract, and its reader.

Mirrored in ``js/src/types.ts`` (``KernelMessage`` / ``BrowserMessage``), keyed on ``type``; the
types of each side are listed once in ``widget/contract.py`` (``tests/unit/test_messages.py`` fails
when these unions and those lists differ). Custom messages carry events (a chat line); state that a
freshly displayed view needs lives in traits.

Whatever the browser sends is read by :func:`parse_browser_message`, which gives a clean, typed copy
or raises :class:`MalformedMessage`; the widget answers that with an :class:`ErrorMessage`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any, Literal, NamedTuple, TypedDict, cast, final

from ..server.core.frames import FORMATS, MAX_CHUNK_BYTES
from ..server.core.settings import Settings
from ..server.core.validation import ROOM_RE
from .contract import (
    BROWSER_MESSAGE_TYPES,
    MAX_CHAT,
    MAX_NAME,
    MAX_ROUTE_NUMBER,
    MAX_ROUTE_SIGNALS,
    ROUTE_REQUESTS,
    ROUTE_SENDS,
)

FrameFormat = Literal["rgba", "png"]
#: How a snapshot's frame comes back: through the kernel's signaller, or as a widget message.
FrameRoute = Literal["signaller", "comm"]


class ChatRequest(TypedDict):
    """Kernel → browser: send ``text`` to the room as this widget's person."""

    type: Literal["chat"]
    text: str


class SnapshotRequest(TypedDict):
    """Kernel → browser: take the current frame of ``peer``'s video (None: own camera).

    The browser answers by the one path asked, ``via``: ``"signaller"`` in chunks through its
    connection to the kernel's own signaller (event ``frame``, read on the signaller's thread even
    while a cell runs: see server/core/frames.py), ``"comm"`` as one :class:`FrameMessage` (read by
    the kernel between cells).
    """

    type: Literal["snapshot"]
    id: str
    peer: str | None
    format: FrameFormat
    via: FrameRoute


class TokenMessage(TypedDict):
    """Kernel → browser: a join token for ``room`` (None: this signaller takes none).

    The answer to a :class:`TokenRequest`, also sent unasked by ``join()``. A token is a secret of
    sorts (it admits to the room for a while), so it travels only in custom messages, which are
    never saved in the notebook, and never in a trait.
    """

    type: Literal["token"]
    room: str
    token: str | None


class ErrorMessage(TypedDict):
    """Either way: a message the other side could not read (unknown type, or malformed).

    Logged by its receiver and never answered, so two sides cannot argue forever.
    """

    type: Literal["error"]
    message: str


# Browser → kernel: a chat line that entered the room's history (anyone's, own included).
# ``from`` is the sender's peer id; ``time`` is milliseconds since the epoch on the sender's clock.
# (The functional form, because "from" is a Python keyword.)
ChatMessage = TypedDict(
    "ChatMessage",
    {
        "type": Literal["chat"],
        "id": str,
        "from": str,
        "name": str,
        "text": str,
        "time": float,
        "mine": bool,
    },
)


@final  # final, so that `"error" in message` tells the two kinds of frame apart
class FrameMessage(TypedDict):
    """Browser → kernel: the frame asked for ``via="comm"``; the pixels are the one buffer."""

    type: Literal["frame"]
    id: str
    width: int
    height: int
    format: FrameFormat


@final
class FrameError(TypedDict):
    """Browser → kernel: why there is no frame for request ``id``."""

    type: Literal["frame"]
    id: str
    error: str


class TokenRequest(TypedDict):
    """Browser → kernel: a join token for ``room``, please (the kernel's signaller requires one)."""

    type: Literal["token_request"]
    room: str


# -- the kernel route: the page's signalling through its widget's comm (docs/protocol.md) ---------
#
# ``n`` numbers the page's route connections (a new one per connect), so that what is left of an
# older one is dropped on either side. The kernel holds one connection per widget: a new
# ``sig_connect`` replaces the one before.

RouteRequestEvent = Literal["enter", "leave", "signal"]
RouteSendEvent = Literal["frame"]


class RouteConnect(TypedDict):
    """Browser → kernel: open route connection ``n`` to the signaller (closing any other)."""

    type: Literal["sig_connect"]
    n: int


class RouteRequest(TypedDict):
    """Browser → kernel: send ``event`` with ``payload`` on connection ``n``; its acknowledgement
    comes back as a :class:`RouteAnswer` with the same ``id``."""

    type: Literal["sig_request"]
    n: int
    id: int
    event: RouteRequestEvent
    payload: dict[str, Any]


class RouteSignals(TypedDict):
    """Browser → kernel: several signals at once on connection ``n`` (what the page had for the
    signaller within one turn of its event loop), each unanswered like a ``sig_request`` with
    ``id`` 0, in order."""

    type: Literal["sig_signals"]
    n: int
    payloads: list[dict[str, Any]]


class RouteSend(TypedDict):
    """Browser → kernel: send ``event`` (a snapshot's ``frame`` chunk, its bytes the one buffer,
    or its error without one) on connection ``n``, unacknowledged."""

    type: Literal["sig_send"]
    n: int
    event: RouteSendEvent
    payload: dict[str, Any]


class RouteClose(TypedDict):
    """Browser → kernel: close route connection ``n`` (the page gave up on it or hung up)."""

    type: Literal["sig_close"]
    n: int


class RouteOpen(TypedDict):
    """Kernel → browser: route connection ``n`` is open."""

    type: Literal["sig_open"]
    n: int


class RouteEvent(TypedDict):
    """Kernel → browser: the signaller sent ``event`` (one of ``SIGNALLER_EVENTS``) on ``n``."""

    type: Literal["sig_event"]
    n: int
    event: str
    data: Any


class RouteAnswer(TypedDict):
    """Kernel → browser: the signaller's acknowledgement of request ``id`` on ``n``."""

    type: Literal["sig_answer"]
    n: int
    id: int
    reply: Any


class RouteDropped(TypedDict):
    """Kernel → browser: connection ``n`` could not be opened, or it dropped (``reason``)."""

    type: Literal["sig_dropped"]
    n: int
    reason: str


class DiagnoseMessage(TypedDict):
    """Kernel → browser: run the connection doctor (widget/diagnose.py, js/src/diagnose.ts) and
    write its report, with this ``id``, into the ``diagnosis`` trait. ``ice_servers`` are the
    RTCIceServer dicts to gather candidates with (TURN credentials made for this check only: never
    in a trait), or None when the kernel does not know them (a widget with a ``signaling_url``).
    The page adds those of its call's last ``enter`` that are not among them."""

    type: Literal["diagnose"]
    id: str
    ice_servers: list[dict[str, Any]] | None


class DiagnoseRequest(TypedDict):
    """Browser → kernel: the view's "Check connection" asks for a check with this ``id``; the
    kernel answers with a :class:`DiagnoseMessage` of the same ``id``."""

    type: Literal["diagnose_request"]
    id: str


RouteMessage = RouteConnect | RouteRequest | RouteSignals | RouteSend | RouteClose

KernelMessage = (
    ChatRequest
    | SnapshotRequest
    | TokenMessage
    | ErrorMessage
    | RouteOpen
    | RouteEvent
    | RouteAnswer
    | RouteDropped
    | DiagnoseMessage
)
BrowserMessage = (
    ChatMessage
    | FrameMessage
    | FrameError
    | ErrorMessage
    | TokenRequest
    | RouteConnect
    | RouteRequest
    | RouteSignals
    | RouteSend
    | RouteClose
    | DiagnoseRequest
)


class Sender(NamedTuple):
    """Who sent a chat message; ``str(sender)`` is the display name (or the id if unnamed)."""

    id: str
    name: str

    def __str__(self) -> str:
        return self.name or self.id


# -- reading what the browser sends ----------------------------------------------------------------

#: Longest id accepted: the kernel's request ids are 22 characters, chat line ids 24.
MAX_ID = 128
#: Longest error text kept from the browser.
MAX_ERROR = 500
#: Largest frame side, as the signaller's own limit (server/core/frames.py).
MAX_SIDE = 8192
#: Largest kernel-route payload, JSON-encoded: one Socket.IO message of the signaller's.
MAX_ROUTE_PAYLOAD = Settings.max_message_bytes
#: Largest kernel-route buffer: one snapshot chunk, the signaller's own limit
#: (server/core/frames.py).
MAX_ROUTE_BUFFER = MAX_CHUNK_BYTES


class MalformedMessage(ValueError):
    """A message from the browser that is not one of the contract's, or not well formed.

    ``kind`` is its ``type`` when that is one of the contract's, else ``"unknown"``: what the
    widget logs once per kind.
    """

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind


def parse_browser_message(content: Any, buffers: Sequence[bytes]) -> BrowserMessage:
    """A checked copy of one custom message from the browser; raises :class:`MalformedMessage`.

    A :class:`FrameMessage` comes with exactly one buffer, of its frame's size for ``"rgba"``; a
    :class:`RouteSend` with at most one, of at most one snapshot chunk; the other route messages
    with none.
    """
    kind = content.get("type") if isinstance(content, dict) else None
    if not isinstance(kind, str) or kind not in BROWSER_MESSAGE_TYPES:
        shown = repr(kind)[:60] if isinstance(content, dict) else type(content).__name__
        raise MalformedMessage("unknown", f"unknown message type {shown}")
    fields = _Fields(kind, content)
    if kind.startswith("sig_"):
        return _route(fields, buffers)
    if kind == "chat":
        return {
            "type": "chat",
            "id": fields.text("id", MAX_ID, empty=False),
            "from": fields.text("from", MAX_ID),
            "name": fields.text("name", MAX_NAME),
            "text": fields.text("text", MAX_CHAT),
            "time": fields.number("time"),
            "mine": fields.flag("mine"),
        }
    if kind == "frame":
        return _frame(fields, buffers)
    if kind == "token_request":
        room = fields.text("room", 64, empty=False)
        if not ROOM_RE.fullmatch(room):
            raise MalformedMessage(kind, f"a token request for an invalid room: {room!r}")
        return {"type": "token_request", "room": room}
    if kind == "diagnose_request":
        return {"type": "diagnose_request", "id": fields.text("id", MAX_ID, empty=False)}
    # "error": whatever it says is only logged, so any text goes (shortened).
    message = content.get("message")
    return {"type": "error", "message": str(message)[:MAX_ERROR]}


def _route(fields: _Fields, buffers: Sequence[bytes]) -> RouteMessage:
    kind = fields.kind
    n = fields.integer("n", 1, MAX_ROUTE_NUMBER)
    most = 1 if kind == "sig_send" else 0
    if len(buffers) > most or any(len(buffer) > MAX_ROUTE_BUFFER for buffer in buffers):
        raise MalformedMessage(
            kind, f"a {kind} message comes with at most {most} buffer of {MAX_ROUTE_BUFFER} bytes"
        )
    if kind == "sig_connect":
        return {"type": "sig_connect", "n": n}
    if kind == "sig_close":
        return {"type": "sig_close", "n": n}
    if kind == "sig_request":
        # 0: no answer wanted (the page's signals: docs/protocol.md, "The kernel route").
        request_id = fields.integer("id", 0, MAX_ROUTE_NUMBER)
        event = cast(RouteRequestEvent, fields.choice("event", ROUTE_REQUESTS))
        payload = fields.payload("payload")
        return {"type": "sig_request", "n": n, "id": request_id, "event": event, "payload": payload}
    if kind == "sig_signals":
        return {"type": "sig_signals", "n": n, "payloads": fields.payloads("payloads")}
    fields.choice("event", ROUTE_SENDS)
    return {"type": "sig_send", "n": n, "event": "frame", "payload": fields.payload("payload")}


def _frame(fields: _Fields, buffers: Sequence[bytes]) -> FrameMessage | FrameError:
    request_id = fields.text("id", MAX_ID, empty=False)
    if "error" in fields.content:
        error = fields.content["error"]
        return {"type": "frame", "id": request_id, "error": str(error)[:MAX_ERROR]}
    width, height = fields.integer("width", 1, MAX_SIDE), fields.integer("height", 1, MAX_SIDE)
    kind = fields.content.get("format")
    if not isinstance(kind, str) or kind not in FORMATS:
        raise MalformedMessage("frame", "a frame's format must be 'rgba' or 'png'")
    if len(buffers) != 1:
        raise MalformedMessage("frame", f"a frame comes with one buffer, not {len(buffers)}")
    if kind == "rgba" and len(buffers[0]) != width * height * 4:
        raise MalformedMessage("frame", "the frame's size does not match its data")
    return {
        "type": "frame",
        "id": request_id,
        "width": width,
        "height": height,
        "format": "rgba" if kind == "rgba" else "png",
    }


class _Fields:
    """The checked fields of one message, each raising :class:`MalformedMessage` when wrong."""

    def __init__(self, kind: str, content: dict[str, Any]) -> None:
        self.kind = kind
        self.content = content

    def _wrong(self, key: str, what: str) -> MalformedMessage:
        return MalformedMessage(self.kind, f"a {self.kind} message's {key} must be {what}")

    def text(self, key: str, longest: int, *, empty: bool = True) -> str:
        value = self.content.get(key)
        if not isinstance(value, str) or len(value) > longest or (not empty and not value):
            raise self._wrong(key, f"a {'' if empty else 'non-empty '}string of at most {longest}")
        return value

    def number(self, key: str) -> float:
        value = self.content.get(key)
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise self._wrong(key, "a finite number")
        return float(value)

    def integer(self, key: str, low: int, high: int) -> int:
        value = self.content.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise self._wrong(key, f"an integer from {low} to {high}")
        return value

    def flag(self, key: str) -> bool:
        value = self.content.get(key)
        if not isinstance(value, bool):
            raise self._wrong(key, "true or false")
        return value

    def choice(self, key: str, allowed: tuple[str, ...]) -> str:
        value = self.content.get(key)
        if not isinstance(value, str) or value not in allowed:
            raise self._wrong(key, "one of " + ", ".join(repr(item) for item in allowed))
        return value

    def payload(self, key: str) -> dict[str, Any]:
        """A JSON object of at most :data:`MAX_ROUTE_PAYLOAD` characters once encoded (what the
        signaller takes in one message): the signaller checks its fields itself."""
        value = self.content.get(key)
        if not isinstance(value, dict):
            raise self._wrong(key, "an object")
        try:
            size = len(json.dumps(value, separators=(",", ":"), allow_nan=False))
        except (TypeError, ValueError, RecursionError):
            raise self._wrong(key, "plain JSON") from None
        if size > MAX_ROUTE_PAYLOAD:
            raise self._wrong(key, f"at most {MAX_ROUTE_PAYLOAD} characters of JSON")
        return value

    def payloads(self, key: str) -> list[dict[str, Any]]:
        """From 1 to :data:`MAX_ROUTE_SIGNALS` objects, each as :meth:`payload` takes one."""
        values = self.content.get(key)
        if not isinstance(values, list) or not 1 <= len(values) <= MAX_ROUTE_SIGNALS:
            raise self._wrong(key, f"a list of 1 to {MAX_ROUTE_SIGNALS} objects")
        return [_Fields(self.kind, {key: value}).payload(key) for value in values]
