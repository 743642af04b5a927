/**
 * The widget's synced state. This interface mirrors the traits of `VideoRoom` in
 * `widget/room.py`; change both together. Each trait has one writer (see the table there and in
 * the design notes): Python sets intent, the browser reports what happened.
 */

/** The call's state, written by the browser. Mirrors `STATES` in `widget/room.py`. */
export type CallState = "idle" | "joining" | "waiting" | "in_call" | "left" | "failed";

/** How the page reaches the kernel's signaller. */
export type Route = "auto" | "direct" | "proxy";

/** The codes the browser writes into `error_code` ("" when there is no problem). */
export type ErrorCode =
  | ""
  | "room_full"
  | "unreachable"
  | "bad_request"
  | "camera_denied"
  | "no_camera"
  | "camera_busy"
  | "insecure_context"
  | "disconnected"
  | "forbidden"
  | "wrong_dialect"
  | "already_in_room"
  | "rate_limited"
  | "timeout"
  | "internal_error";

/** The state of one RTCPeerConnection, or "new" before it exists. */
export type ConnectionState = RTCPeerConnectionState;

/** One other member of the room as this browser sees it (`_browser_peers`). */
export interface BrowserPeer {
  id: string;
  name: string;
  connection: ConnectionState;
}

/** Mirrors `VideoRoom` in `widget/room.py`. */
export interface Model {
  // intent, written by Python (room / audio / video / _desired also by the view's controls)
  room: string;
  name: string;
  audio: boolean;
  video: boolean;
  signaling_url: string;
  route: Route;
  _port: number;
  _client: string;
  _desired: boolean;
  // reported by the browser
  state: CallState;
  error: string;
  error_code: ErrorCode;
  connected_via: string;
  _browser_peers: BrowserPeer[];
  // derived in the kernel from the signaller's registry and `_browser_peers`; read-only here
  peers: BrowserPeer[];
}

/**
 * The part of anywidget's model API that ipymeet uses. `AnyModel<Model>` satisfies it, and so
 * does the standalone page's in-memory model (page.ts).
 */
export interface WidgetModel {
  get<K extends keyof Model>(key: K): Model[K];
  set<K extends keyof Model>(key: K, value: Model[K]): void;
  on(eventName: `change:${string}`, callback: () => void): void;
  off(eventName?: string | null, callback?: (() => void) | null): void;
  save_changes(): void;
}
