/**
 * What the browser says when something goes wrong: `error_code` (the contract's codes, the same
 * as Python's ErrorCode) and the plain `error` message beside it. One table, `ERRORS`, gives every
 * code its message and says whether it ends a call for good; the few situations that word a
 * code differently (a device switched during a call, a screen share, a signaller still out of
 * reach) have their messages here too.
 */
import { ERROR_CODES, ROOM_PATTERN, type ErrorCode } from "./contract";

/** What a message may mention. */
export interface ErrorContext {
  room: string;
  /** What the user should do when the signaller is out of reach (`CallDeps.unreachableHint`). */
  hint: string;
  /** The signaller's (or the browser's) own words, when it gave some. */
  detail?: string;
  /** How many the room holds, when a `room_full` refusal says so. */
  capacity?: number;
  /** The signaller's address, when one is known. */
  url?: string;
  /** The addresses tried, for `unreachable`. */
  urls?: readonly string[];
  /** The TURN server's URL, for the relay's problems. */
  turn?: string;
}

export interface ErrorEntry {
  /**
   * A refusal with this code ends the call even when it answers an attempt to enter again after a
   * drop: no retry will change it. (Other failures there are retried.)
   */
  final: boolean;
  /** The `error` written with this code when the call fails with it. */
  message(context: ErrorContext): string;
}

/** The messages of the camera and microphone problems when joining (media.ts). */
export const MEDIA_MESSAGES = {
  insecure_context:
    "Camera access needs a secure page: open it through https:// or http://localhost. " +
    "You joined receive-only.",
  camera_denied:
    "Camera and microphone are blocked for this page. Allow them in the browser's site settings, " +
    "then Hang up and Connect again. You joined without sending video or sound.",
  no_camera: "No camera or microphone was found. You joined receive-only.",
  camera_busy:
    "The camera or microphone could not be started: another program may be using it. Close it, " +
    "then Hang up and Connect again. You joined receive-only.",
  audio_only: "No camera was found. You joined with sound only.",
  video_only: "No microphone was found. You joined with video only.",
} as const;

const refused = ({ room, detail }: ErrorContext): string => `The signaller refused room “${room}”: ${detail ?? ""}`;

/** Every error code (`ErrorCode` but "") with its message; the compiler checks none is missing. */
export const ERRORS: { readonly [C in Exclude<ErrorCode, "">]: ErrorEntry } = {
  room_full: {
    final: true,
    message: ({ room, capacity, detail }) => {
      const holds = capacity ?? Number(/holds (\d+)/.exec(detail ?? "")?.[1] ?? NaN);
      const size = Number.isFinite(holds) ? ` (it holds ${holds})` : "";
      return `Room “${room}” is full${size}. Pick another room name.`;
    },
  },
  unreachable: { final: false, message: ({ urls = [], hint }) => unreachableMessage(urls, hint) },
  bad_request: { final: true, message: refused },
  camera_denied: { final: false, message: () => MEDIA_MESSAGES.camera_denied },
  no_camera: { final: false, message: () => MEDIA_MESSAGES.no_camera },
  camera_busy: { final: false, message: () => MEDIA_MESSAGES.camera_busy },
  screen_denied: { final: false, message: ({ detail }) => detail ?? screenMessage(null) },
  insecure_context: { final: false, message: () => MEDIA_MESSAGES.insecure_context },
  disconnected: {
    final: false,
    message: ({ url, hint }) =>
      `Lost the connection to the ipymeet signaller${url === undefined ? "" : ` (${url})`}. ${hint}`,
  },
  forbidden: { final: true, message: ({ room, detail }) => `You may not enter room “${room}”: ${detail ?? ""}` },
  wrong_dialect: {
    final: true,
    message: ({ room }) => `Room “${room}” is in use by a two-person tutorial page. Pick another room name.`,
  },
  already_in_room: { final: false, message: () => "This page is already in a room. Hang up, then Connect again." },
  rate_limited: {
    final: false,
    message: () => "The signaller is getting too many messages from this page. Wait a moment, then Connect again.",
  },
  timeout: { final: false, message: ({ detail, hint }) => `${detail ?? "The signaller did not answer."} ${hint}` },
  unknown_widget: {
    final: true,
    message: () =>
      "This room's kernel has restarted (or the widget was closed), so this view can no longer take part. " +
      "Re-run the cell that shows the room.",
  },
  internal_error: { final: false, message: refused },
  no_relay: {
    final: true,
    message: () =>
      "Relay only was asked for (relay_only=True, or ?relay=1 in the address), but the signaller offers no " +
      "TURN server, so no connection can be made. Start the signaller with --turn-url and --turn-secret " +
      "(IPYMEET_TURN_URLS and IPYMEET_TURN_SECRET for a kernel's), or turn relay only off.",
  },
  turn_refused: {
    final: false,
    message: ({ turn }) =>
      `The TURN server${turn === undefined ? "" : ` (${turn})`} refused this page's credentials, so media ` +
      "cannot be relayed: they are wrong or expired. Hang up and Connect again for fresh ones; if it happens " +
      "again, whoever runs the signaller must give it the TURN server's static-auth-secret as --turn-secret " +
      "(and check both machines' clocks).",
  },
  signaller_unreachable: {
    final: false,
    message: ({ detail }) =>
      detail ?? "This notebook's kernel cannot reach its ipymeet signaller yet; it keeps trying.",
  },
  relay_failed: {
    final: false,
    message: ({ turn }) =>
      `A connection through the TURN server${turn === undefined ? "" : ` (${turn})`} failed: it was not ` +
      "reached, or relayed nothing. Check that it runs and that its port (and its relay ports) are open " +
      "from this network, then Hang up and Connect again.",
  },
};

/** `code` if it is one of the contract's codes, else "". */
export function knownCode(code: string): ErrorCode {
  return (ERROR_CODES as readonly string[]).includes(code) ? (code as ErrorCode) : "";
}

/** The code and message for a refusal (or failure) `code` from the signaller; unknown ones are bad requests. */
export function refusal(code: string, context: ErrorContext): { code: Exclude<ErrorCode, "">; message: string } {
  const known = knownCode(code) || "bad_request";
  return { code: known, message: ERRORS[known].message(context) };
}

/** Whether a refusal with `code`, on entering again after a drop, ends the call. */
export function endsTheCall(code: string): boolean {
  const known = knownCode(code);
  return known !== "" && ERRORS[known].final;
}

// -- the situations that word a code their own way --------------------------------------------

/** `bad_request` before asking anyone: the room field is empty or not a room id. */
export function roomNameMessage(room: string): string {
  if (room === "") return "Choose a room name first: type one in the room field, then Connect.";
  const longest = /\{1,(\d+)\}/.exec(ROOM_PATTERN)?.[1] ?? "64";
  return `“${room}” is not a valid room name: use 1–${longest} letters, digits, “_”, “.” or “-”.`;
}

/** `bad_request` when entering failed without a refusal from the signaller. */
export function couldNotEnterMessage(room: string): string {
  return `Could not enter room “${room}”.`;
}

export function unreachableMessage(urls: readonly string[], hint: string): string {
  if (urls.length === 0) {
    return `Can't reach the ipymeet signaller: its address is unknown (no signaling_url and no kernel port). ${hint}`;
  }
  return `Can't reach the ipymeet signaller (tried: ${urls.join(", ")}). ${hint}`;
}

/** `disconnected` while the page keeps trying to reach the signaller again. */
export function retryingMessage(url: string, hint: string): string {
  return `Lost the connection to the ipymeet signaller (${url}); trying again… ${hint}`;
}

/** The browser (or an insecure page) offers no screen capture. */
export class ScreenUnsupported extends Error {
  constructor() {
    super("getDisplayMedia is not available");
    this.name = "ScreenUnsupported";
  }
}

/** `screen_denied`: a plain message for a failed getDisplayMedia (null: no reason known). */
export function screenMessage(error: unknown): string {
  const name = typeof error === "object" && error !== null ? String((error as { name?: unknown }).name ?? "") : "";
  switch (name) {
    case "ScreenUnsupported":
      return "This browser cannot share the screen here (it needs a recent desktop browser and a secure page: https:// or http://localhost).";
    case "NotAllowedError":
    case "SecurityError":
      return "Screen sharing was not allowed. Press Share screen again and pick a screen, window or tab; check the browser's site settings if it is blocked.";
    case "InvalidStateError":
      return "The browser shares the screen only in answer to a click: press Share screen in the room.";
    case "NotFoundError":
      return "There is no screen to share.";
    default:
      return "The screen could not be shared. Press Share screen to try again.";
  }
}

/** `screen_denied` when Share screen is pressed outside a call. */
export const SCREEN_OUTSIDE_CALL = "Join a room first, then share your screen.";

/** A camera or microphone chosen during a call could not be started; the previous one stays. */
export function switchFailure(
  kind: "audio" | "video",
  problem: "missing" | "camera_denied" | "camera_busy" | "insecure_context" | "no_camera",
): { code: ErrorCode; message: string } {
  const what = kind === "video" ? "camera" : "microphone";
  if (problem === "missing") return { code: "no_camera", message: `That ${what} was not found. Pick another one.` };
  if (problem === "camera_denied") {
    return { code: "camera_denied", message: `The ${what} is blocked for this page. Allow it in the browser's site settings.` };
  }
  return {
    code: "camera_busy",
    message: `That ${what} could not be started: another program may be using it. The previous one stays on.`,
  };
}
