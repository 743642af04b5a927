"""The names and limits the kernel and the browser share, defined once.

The front end does not read Python, so ``js/src/contract.ts`` is rendered from this module
(:func:`typescript`) and committed; ``tests/unit/test_contract.py`` fails when the two differ.
After a change here run::

    python -m ipymeet.widget.contract > js/src/contract.ts

The room id pattern and the name length are the signaller's own (``server/core/validation.py``): the
widget and the page check them before asking, the signaller checks them again.
"""

from __future__ import annotations

import enum
import json

from ..server.core.validation import MAX_NAME, ROOM_RE

__all__ = [
    "BROWSER_MESSAGE_TYPES",
    "KERNEL_MESSAGE_TYPES",
    "MAX_CHAT",
    "MAX_FRAME_RATE",
    "MAX_HISTORY",
    "MAX_NAME",
    "MAX_ROUTE_NUMBER",
    "MAX_ROUTE_SIGNALS",
    "MAX_VIDEO_HEIGHT",
    "MAX_VIDEO_WIDTH",
    "MIN_VIDEO_SIDE",
    "ROOM_PATTERN",
    "ROUTE_REQUESTS",
    "ROUTE_SENDS",
    "SIGNALLER_EVENTS",
    "SPEAKING_HOLD_MS",
    "SPEAKING_OFF_LEVEL",
    "SPEAKING_ON_LEVEL",
    "CallState",
    "ErrorCode",
    "typescript",
]

#: A room id, in full (the pattern is unanchored, for ``re.fullmatch``).
ROOM_PATTERN = ROOM_RE.pattern

#: Longest chat line either side accepts, in code points.
MAX_CHAT = 2000

#: Chat lines kept in ``VideoRoom.messages``: the most recent ones.
MAX_HISTORY = 200

#: The bounds of a video size asked for (``VideoRoom.video_size``, ``KernelPeer(size=)`` and its
#: ``want`` message on the data channel), in pixels: 4K UHD at most.
MIN_VIDEO_SIDE = 16
MAX_VIDEO_WIDTH = 3840
MAX_VIDEO_HEIGHT = 2160
#: The highest frame rate asked for (``VideoRoom.frame_rate``, ``KernelPeer(fps=)``); 1 the lowest.
MAX_FRAME_RATE = 60

#: Who is speaking (``peers[i]["speaking"]``, ``VideoRoom.speaking``, the tiles' mark): a member
#: starts speaking when its audio level (0-1, linear: WebRTC's ``audioLevel``, an RMS of the
#: samples over full scale) reaches ``SPEAKING_ON_LEVEL``, and stops once it has stayed below
#: ``SPEAKING_OFF_LEVEL`` for ``SPEAKING_HOLD_MS``: the gap between the two levels and the hold
#: keep the mark from flickering between words. A muted member is never speaking.
SPEAKING_ON_LEVEL = 0.03
SPEAKING_OFF_LEVEL = 0.015
SPEAKING_HOLD_MS = 600


class CallState(str, enum.Enum):
    """``VideoRoom.state``, in the order a call goes through it."""

    IDLE = "idle"
    JOINING = "joining"
    WAITING = "waiting"
    IN_CALL = "in_call"
    #: The signaller is out of reach; the media keeps flowing while the page tries again.
    RECONNECTING = "reconnecting"
    LEFT = "left"
    FAILED = "failed"

    def __str__(self) -> str:
        return self.value


class ErrorCode(str, enum.Enum):
    """``VideoRoom.error_code``: what went wrong, for code (``error`` says it in words)."""

    NONE = ""
    ROOM_FULL = "room_full"
    UNREACHABLE = "unreachable"
    BAD_REQUEST = "bad_request"
    CAMERA_DENIED = "camera_denied"
    NO_CAMERA = "no_camera"
    CAMERA_BUSY = "camera_busy"
    SCREEN_DENIED = "screen_denied"
    INSECURE_CONTEXT = "insecure_context"
    DISCONNECTED = "disconnected"
    FORBIDDEN = "forbidden"
    WRONG_DIALECT = "wrong_dialect"
    ALREADY_IN_ROOM = "already_in_room"
    RATE_LIMITED = "rate_limited"
    TIMEOUT = "timeout"
    UNKNOWN_WIDGET = "unknown_widget"
    INTERNAL_ERROR = "internal_error"
    #: ``relay_only`` (``?relay=1``), but the signaller offers no TURN server: nothing can connect.
    NO_RELAY = "no_relay"
    #: The TURN server refused the credentials the signaller handed out (wrong secret, or expired).
    TURN_REFUSED = "turn_refused"
    #: With relay only, a connection failed: the TURN server was not reached or relayed nothing.
    RELAY_FAILED = "relay_failed"
    #: The kernel cannot reach its signaller (the hub's ipymeet service is down, refuses it, or
    #: cannot be found); ``error`` says what was tried. Kernel-side; clears once it is reached.
    SIGNALLER_UNREACHABLE = "signaller_unreachable"

    def __str__(self) -> str:
        return self.value


#: The ``type`` of every custom message the kernel sends the browser (``widget/messages.py``).
#: The ``sig_*`` ones carry the kernel route (docs/protocol.md, "The kernel route").
KERNEL_MESSAGE_TYPES = (
    "chat",
    "snapshot",
    "token",
    "error",
    "sig_open",
    "sig_event",
    "sig_answer",
    "sig_dropped",
    "diagnose",
)

#: The ``type`` of every custom message the browser sends the kernel.
BROWSER_MESSAGE_TYPES = (
    "chat",
    "frame",
    "error",
    "token_request",
    "sig_connect",
    "sig_request",
    "sig_signals",
    "sig_send",
    "sig_close",
    "diagnose_request",
)

#: The events the signaller sends a dialect-2 client unasked (docs/protocol.md); the kernel route
#: relays exactly these to the page.
SIGNALLER_EVENTS = ("peer_joined", "peer_left", "signal", "error", "ice_servers")

#: The requests (with an acknowledgement) the kernel route carries from the page to the signaller.
ROUTE_REQUESTS = ("enter", "leave", "signal")

#: The events without an acknowledgement it carries: a snapshot's chunks.
ROUTE_SENDS = ("frame",)

#: Most signals one ``sig_signals`` message of the kernel route carries.
MAX_ROUTE_SIGNALS = 16

#: Largest number of a kernel-route connection (``n``) or request (``id``).
MAX_ROUTE_NUMBER = 2**31 - 1


def _tuple(values: tuple[str, ...]) -> str:
    return "[" + ", ".join(json.dumps(value) for value in values) + "] as const"


def typescript() -> str:
    """The text of ``js/src/contract.ts``."""
    codes = tuple(code.value for code in ErrorCode if code is not ErrorCode.NONE)
    states = tuple(state.value for state in CallState)
    return f"""\
/**
 * The names and limits the kernel and the browser share. Generated from widget/contract.py by
 * `python -m ipymeet.widget.contract > js/src/contract.ts`; do not edit
 * (tests/unit/test_contract.py fails when the two differ).
 */

/** A room id, in full. */
export const ROOM_PATTERN = {json.dumps(ROOM_PATTERN)};
export const ROOM_RE = new RegExp(`^(?:${{ROOM_PATTERN}})$`);

/** Longest display name, in code points. */
export const MAX_NAME = {MAX_NAME};
/** Longest chat line either side accepts, in code points. */
export const MAX_CHAT = {MAX_CHAT};
/** Chat lines kept in `messages`: the most recent ones. */
export const MAX_HISTORY = {MAX_HISTORY};

/** The bounds of a video size asked for (`video_size`, a kernel peer's `want`), in pixels. */
export const MIN_VIDEO_SIDE = {MIN_VIDEO_SIDE};
export const MAX_VIDEO_WIDTH = {MAX_VIDEO_WIDTH};
export const MAX_VIDEO_HEIGHT = {MAX_VIDEO_HEIGHT};
/** The highest frame rate asked for (`frame_rate`, a kernel peer's `want`); 1 the lowest. */
export const MAX_FRAME_RATE = {MAX_FRAME_RATE};

/** Speaking from this audio level (0-1) on, until below the off level for the hold. */
export const SPEAKING_ON_LEVEL = {SPEAKING_ON_LEVEL};
export const SPEAKING_OFF_LEVEL = {SPEAKING_OFF_LEVEL};
export const SPEAKING_HOLD_MS = {SPEAKING_HOLD_MS};

/** The call's states (`state`), in the order a call goes through them. */
export const CALL_STATES = {_tuple(states)};
export type CallState = (typeof CALL_STATES)[number];

/** What went wrong (`error_code`); "" when nothing did. */
export const ERROR_CODES = {_tuple(codes)};
export type ErrorCode = "" | (typeof ERROR_CODES)[number];

/** The `type` of every custom message the kernel sends the browser. */
export const KERNEL_MESSAGE_TYPES = {_tuple(KERNEL_MESSAGE_TYPES)};
export type KernelMessageType = (typeof KERNEL_MESSAGE_TYPES)[number];

/** The `type` of every custom message the browser sends the kernel. */
export const BROWSER_MESSAGE_TYPES = {_tuple(BROWSER_MESSAGE_TYPES)};
export type BrowserMessageType = (typeof BROWSER_MESSAGE_TYPES)[number];

/** The events the signaller sends unasked; the kernel route relays exactly these. */
export const SIGNALLER_EVENTS = {_tuple(SIGNALLER_EVENTS)};
export type SignallerEvent = (typeof SIGNALLER_EVENTS)[number];

/** The requests (acknowledged) the kernel route carries to the signaller. */
export const ROUTE_REQUESTS = {_tuple(ROUTE_REQUESTS)};
export type RouteRequestEvent = (typeof ROUTE_REQUESTS)[number];

/** The events without an acknowledgement it carries (a snapshot's chunks). */
export const ROUTE_SENDS = {_tuple(ROUTE_SENDS)};
export type RouteSendEvent = (typeof ROUTE_SENDS)[number];
/** Largest number of a kernel-route connection (`n`) or request (`id`). */
export const MAX_ROUTE_NUMBER = {MAX_ROUTE_NUMBER};
/** Most signals one `sig_signals` message carries. */
export const MAX_ROUTE_SIGNALS = {MAX_ROUTE_SIGNALS};
"""


if __name__ == "__main__":
    print(typescript(), end="")
