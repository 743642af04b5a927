/**
 * The names and limits the kernel and the browser share. Generated from widget/contract.py by
 * `python -m ipymeet.widget.contract > js/src/contract.ts`; do not edit
 * (tests/unit/test_contract.py fails when the two differ).
 */

/** A room id, in full. */
export const ROOM_PATTERN = "[A-Za-z0-9_.-]{1,64}";
export const ROOM_RE = new RegExp(`^(?:${ROOM_PATTERN})$`);

/** Longest display name, in code points. */
export const MAX_NAME = 64;
/** Longest chat line either side accepts, in code points. */
export const MAX_CHAT = 2000;
/** Chat lines kept in `messages`: the most recent ones. */
export const MAX_HISTORY = 200;

/** The bounds of a video size asked for (`video_size`, a kernel peer's `want`), in pixels. */
export const MIN_VIDEO_SIDE = 16;
export const MAX_VIDEO_WIDTH = 3840;
export const MAX_VIDEO_HEIGHT = 2160;
/** The highest frame rate asked for (`frame_rate`, a kernel peer's `want`); 1 the lowest. */
export const MAX_FRAME_RATE = 60;

/** Speaking from this audio level (0-1) on, until below the off level for the hold. */
export const SPEAKING_ON_LEVEL = 0.03;
export const SPEAKING_OFF_LEVEL = 0.015;
export const SPEAKING_HOLD_MS = 600;

/** The call's states (`state`), in the order a call goes through them. */
export const CALL_STATES = ["idle", "joining", "waiting", "in_call", "reconnecting", "left", "failed"] as const;
export type CallState = (typeof CALL_STATES)[number];

/** What went wrong (`error_code`); "" when nothing did. */
export const ERROR_CODES = ["room_full", "unreachable", "bad_request", "camera_denied", "no_camera", "camera_busy", "screen_denied", "insecure_context", "disconnected", "forbidden", "wrong_dialect", "already_in_room", "rate_limited", "timeout", "unknown_widget", "internal_error", "no_relay", "turn_refused", "relay_failed", "signaller_unreachable"] as const;
export type ErrorCode = "" | (typeof ERROR_CODES)[number];

/** The `type` of every custom message the kernel sends the browser. */
export const KERNEL_MESSAGE_TYPES = ["chat", "snapshot", "token", "error", "sig_open", "sig_event", "sig_answer", "sig_dropped", "diagnose"] as const;
export type KernelMessageType = (typeof KERNEL_MESSAGE_TYPES)[number];

/** The `type` of every custom message the browser sends the kernel. */
export const BROWSER_MESSAGE_TYPES = ["chat", "frame", "error", "token_request", "sig_connect", "sig_request", "sig_signals", "sig_send", "sig_close", "diagnose_request"] as const;
export type BrowserMessageType = (typeof BROWSER_MESSAGE_TYPES)[number];

/** The events the signaller sends unasked; the kernel route relays exactly these. */
export const SIGNALLER_EVENTS = ["peer_joined", "peer_left", "signal", "error", "ice_servers"] as const;
export type SignallerEvent = (typeof SIGNALLER_EVENTS)[number];

/** The requests (acknowledged) the kernel route carries to the signaller. */
export const ROUTE_REQUESTS = ["enter", "leave", "signal"] as const;
export type RouteRequestEvent = (typeof ROUTE_REQUESTS)[number];

/** The events without an acknowledgement it carries (a snapshot's chunks). */
export const ROUTE_SENDS = ["frame"] as const;
export type RouteSendEvent = (typeof ROUTE_SENDS)[number];
/** Largest number of a kernel-route connection (`n`) or request (`id`). */
export const MAX_ROUTE_NUMBER = 2147483647;
/** Most signals one `sig_signals` message carries. */
export const MAX_ROUTE_SIGNALS = 16;
