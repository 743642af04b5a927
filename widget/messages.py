"""The custom messages between the kernel and the browser: one typed contract.

Mirrored in ``js/src/types.ts`` (``KernelMessage`` / ``BrowserMessage``), keyed on ``type``. Custom
messages carry events (a chat line); state that a freshly displayed view needs lives in traits.
"""

from __future__ import annotations

from typing import Literal, NamedTuple, TypedDict


class ChatRequest(TypedDict):
    """Kernel → browser: send ``text`` to the room as this widget's person."""

    type: Literal["chat"]
    text: str


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


class SnapshotRequest(TypedDict):
    """Kernel → browser: take the current frame of ``peer``'s video (None: own camera).

    The browser answers with a :data:`FrameMessage` (binary custom message, read by the kernel
    between cells) and, when ``upload`` is set, also through the kernel's own signaller (event
    ``frame``, read on the signaller's thread even while a cell runs: see server/frames.py).
    """

    type: Literal["snapshot"]
    id: str
    peer: str | None
    format: Literal["rgba", "png"]
    upload: bool


class FrameMessage(TypedDict, total=False):
    """Browser → kernel: the frame asked for (pixels in the message's one buffer), or ``error``."""

    type: Literal["frame"]
    id: str
    width: int
    height: int
    format: Literal["rgba", "png"]
    error: str


class ErrorMessage(TypedDict):
    """Browser → kernel: a message the browser could not handle."""

    type: Literal["error"]
    message: str


class TokenRequest(TypedDict):
    """Browser → kernel: a join token for ``room``, please (the kernel's signaller requires one)."""

    type: Literal["token_request"]
    room: str


class TokenMessage(TypedDict):
    """Kernel → browser: a join token for ``room`` (None: this signaller takes none).

    The answer to a :class:`TokenRequest`, also sent unasked by ``join()``. A token is a secret of
    sorts (it admits to the room for a while), so it travels only in custom messages, which are
    never saved in the notebook, and never in a trait.
    """

    type: Literal["token"]
    room: str
    token: str | None


KernelMessage = ChatRequest | SnapshotRequest | TokenMessage
BrowserMessage = ChatMessage | FrameMessage | ErrorMessage | TokenRequest

#: Longest chat line either side accepts.
MAX_CHAT = 2000


class Sender(NamedTuple):
    """Who sent a chat message; ``str(sender)`` is the display name (or the id if unnamed)."""

    id: str
    name: str

    def __str__(self) -> str:
        return self.name or self.id
