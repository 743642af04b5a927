/**
 * The widget's synced state and the messages around it. The `Model` interface mirrors the traits of
 * `VideoRoom` in `widget/room.py`, and `KernelMessage` / `BrowserMessage` mirror
 * `widget/messages.py`; change both sides together. The names and limits both sides share (call
 * states, error codes, message types) come from contract.ts, generated from widget/contract.py.
 * Each trait has one writer (the README's table): Python and the view's controls set intent, the
 * browser's Call reports what happened.
 */
import type {
  BrowserMessageType,
  CallState,
  ErrorCode,
  KernelMessageType,
  RouteRequestEvent,
  RouteSendEvent,
  SignallerEvent,
} from "./contract";
import type { Diagnosis } from "./diagnose";

export type { CallState, ErrorCode } from "./contract";

/** How the page reaches the kernel's signaller: each in turn, or one (route.ts). */
export type Route = "auto" | "direct" | "proxy" | "kernel";

/** The state of one RTCPeerConnection, or "new" before it exists. */
export type ConnectionState = RTCPeerConnectionState;

/** One other member of the room as this browser sees it (`_browser_peers`). */
export interface BrowserPeer {
  id: string;
  name: string;
  connection: ConnectionState;
  /** Whether their microphone is on, as they said over the data channel (true until told). */
  audio: boolean;
  /** Whether their camera is on, as they said over the data channel (true until told). */
  video: boolean;
  /** Whether they send their screen instead of their camera (false until told). */
  screen: boolean;
  /** Whether they are speaking now (their received audio level; never while muted). */
  speaking: boolean;
}

/** One other member as the view shows it (`Call.remotePeers`): more than `_browser_peers` says. */
export interface RemotePeer extends BrowserPeer {
  /** Its connection to the signaller dropped; its media may still flow while it comes back. */
  away: boolean;
  /** The one who started speaking last in this call (still so once quiet). */
  lastSpeaker: boolean;
  stream: MediaStream | null;
  /** The latest quality figures, null before the first measurement. */
  stats: PeerStats | null;
}

/** One camera or microphone, from `enumerateDevices` (`cameras` / `microphones`). */
export interface DeviceInfo {
  id: string;
  /** Empty until the page may use the camera or microphone (the browser hides labels before). */
  label: string;
  /** A camera's way ("user": front, "environment": back), only when the browser says (phones). */
  facing?: "user" | "environment";
}

/** One line of the room's chat (`messages`). */
export interface ChatEntry {
  /** Random, unique: receivers drop a second copy. */
  id: string;
  /** The sender's peer id; the own id for `mine: true`. */
  from: string;
  name: string;
  text: string;
  /** Milliseconds since the epoch, on the sender's clock. */
  time: number;
  mine: boolean;
}

/** The type of the local ICE candidate of the pair in use. */
export type CandidateType = "host" | "srflx" | "prflx" | "relay";

/** The quality of one connection (`stats[peerId]`), measured about once a second. */
export interface PeerStats {
  /** Round trip of the selected candidate pair, or null before one is known. */
  rtt_ms: number | null;
  bitrate_in_kbps: number;
  bitrate_out_kbps: number;
  fps_in: number;
  fps_out: number;
  /** Size of the incoming video (0 before a frame arrived). */
  width: number;
  height: number;
  /** Fraction 0–1 of the incoming packets lost since the last measurement. */
  packet_loss: number;
  candidate_type: CandidateType | null;
}

/** Mirrors `VideoRoom` in `widget/room.py`. */
export interface Model {
  // intent, written by Python and by the view's controls (the person's), never by the Call
  room: string;
  name: string;
  audio: boolean;
  video: boolean;
  /** Send the screen instead of the camera (the view's Share screen button writes it too). */
  screen: boolean;
  /** The camera and microphone to use: device ids, "" = the browser's default (the view too). */
  camera: string;
  microphone: string;
  /** The camera's size asked for, [width, height] (null: 1280x720), as `ideal` constraints. */
  video_size: [number, number] | null;
  /** The camera's frame rate asked for (null: the camera's own), as an `ideal` constraint. */
  frame_rate: number | null;
  signaling_url: string;
  route: Route;
  /** Media through a TURN relay only (`iceTransportPolicy: "relay"`); the page's `?relay=1`. */
  relay_only: boolean;
  _port: number;
  _client: string;
  _desired: boolean;
  /**
   * Join attempts asked for: Python's `join()` and the view's Connect each add 1 (and set
   * `_desired`). A change asks for a new attempt even when `_desired` was true already.
   */
  _joins: number;
  /** Whether entering needs a join token, which the browser asks the kernel for (`token_request`). */
  _secure: boolean;
  /**
   * Written by the kernel: a cell is running in it, so what this page sends it waits until the
   * cell ends (the kernel route holds its timeouts meanwhile, and the view says why it waits).
   */
  _kernel_busy: boolean;
  /** Whether other kernels of this user can join the kernel's signaller (the alone card says so). */
  _shared: boolean;
  /** The signaller's public URL without a token, the invite link's base ("" on the standalone page). */
  _invite_base: string;
  /** Written by the kernel: the member id of this widget's processor (`room.process`), whose tile shows "You (processed)"; "" when none. */
  _processed_by: string;
  // reported by the browser's Call
  /**
   * The `_joins` the Call ended on its own (a refusal, a failure): while it equals `_joins` the
   * Call stays out, and Python sets `_desired` back to false.
   */
  _call_ended: number;
  /**
   * Counts the screen shares that stopped without the person asking (the browser's "Stop sharing"
   * bar, a refusal, the call's end): Python then sets `screen` back to false.
   */
  _screen_ended: number;
  state: CallState;
  error: string;
  error_code: ErrorCode;
  connected_via: string;
  _browser_peers: BrowserPeer[];
  /** The cameras and microphones this browser has (labels once permission is granted). */
  cameras: DeviceInfo[];
  microphones: DeviceInfo[];
  /** The most recent chat lines, at most `MAX_HISTORY`. */
  messages: ChatEntry[];
  /** Call quality per peer id, for the current members. */
  stats: Record<string, PeerStats>;
  /** The connection doctor's last report (diagnose.ts); `{}` before the first check. */
  diagnosis: Diagnosis | Record<string, never>;
  // derived in the kernel from the signaller's registry and `_browser_peers`; read-only here
  peers: BrowserPeer[];
}

// -- custom messages between the kernel and the browser (widget/messages.py) ---------------------

/** Kernel → browser: say `text` in the room's chat as this widget's person. */
export interface ChatRequest {
  type: "chat";
  text: string;
}

/** The two encodings of a snapshot: raw RGBA rows (width×height×4 bytes) or a PNG file. */
export type FrameFormat = "rgba" | "png";

/** The path a snapshot's answer takes back to the kernel. */
export type FrameVia = "signaller" | "comm";

/**
 * Kernel → browser: take the current frame of `peer`'s video (null: the own local video) and
 * answer by the path `via` names, and only by it: "comm", one `FrameMessage`; "signaller", the
 * event `frame` through the call's signalling connection, in chunks of at most 192 KiB
 * (`{id, index, count, width, height, format}` + one binary chunk, or `{id, error}`), which
 * reaches a kernel whose cell is running.
 */
export interface SnapshotRequest {
  type: "snapshot";
  id: string;
  peer: string | null;
  format: FrameFormat;
  via: FrameVia;
}

/**
 * Kernel → browser: a join token for `room` (null: the signaller takes none); the answer to a
 * `TokenRequest`, also sent unasked by `join()`. Tokens travel only in custom messages, never in
 * traits: widget state may be saved in the notebook.
 */
export interface TokenMessage {
  type: "token";
  room: string;
  token: string | null;
}

/**
 * Kernel → browser: the kernel could not read a message the browser sent (unknown type or
 * malformed). Logged once per distinct message; nothing else.
 */
export interface KernelErrorMessage {
  type: "error";
  message: string;
}

// The kernel route (kernelroute.ts, docs/protocol.md): the page's signalling through its widget's
// comm. `n` numbers the page's route connections, a new one per connect, so that what is left of
// an older one is dropped.

/** Kernel → browser: route connection `n` is open. */
export interface RouteOpen {
  type: "sig_open";
  n: number;
}

/** Kernel → browser: the signaller sent `event` on connection `n` (checked by the client). */
export interface RouteEvent {
  type: "sig_event";
  n: number;
  event: SignallerEvent;
  data: unknown;
}

/** Kernel → browser: the signaller's acknowledgement of request `id` on connection `n`. */
export interface RouteAnswer {
  type: "sig_answer";
  n: number;
  id: number;
  reply: unknown;
}

/** Kernel → browser: connection `n` could not be opened, or it dropped. */
export interface RouteDropped {
  type: "sig_dropped";
  n: number;
  reason: string;
}

/**
 * Kernel → browser: run the connection doctor (diagnose.ts) and write its report, with this `id`,
 * into `diagnosis`. `ice_servers`: the servers to gather candidates with (TURN credentials made
 * for this check, never in a trait), or null when the kernel does not know them; the page adds
 * those of its call's last `enter` that are not among them.
 */
export interface DiagnoseMessage {
  type: "diagnose";
  id: string;
  ice_servers: RTCIceServer[] | null;
}

/** Everything the kernel may send. */
export type KernelMessage =
  | ChatRequest
  | SnapshotRequest
  | TokenMessage
  | KernelErrorMessage
  | RouteOpen
  | RouteEvent
  | RouteAnswer
  | RouteDropped
  | DiagnoseMessage;

/** Browser → kernel: a join token for `room`, please (answered by a `TokenMessage`). */
export interface TokenRequest {
  type: "token_request";
  room: string;
}

/** Browser → kernel: a chat line that entered the history (anyone's, own included). */
export interface ChatMessage extends ChatEntry {
  type: "chat";
}

/** Browser → kernel: a message the browser could not handle. */
export interface ErrorMessage {
  type: "error";
  message: string;
}

/**
 * Browser → kernel: the frame asked for, its bytes in the message's one binary buffer; or
 * `error` (and no buffer) when there is no such peer or no video yet.
 */
export type FrameMessage =
  | { type: "frame"; id: string; width: number; height: number; format: FrameFormat }
  | { type: "frame"; id: string; error: string };

/** Browser → kernel: open route connection `n` (the kernel closes any other of this widget). */
export interface RouteConnect {
  type: "sig_connect";
  n: number;
}

/** Browser → kernel: send `event` on connection `n`; answered by a `RouteAnswer` with `id`. */
export interface RouteRequest {
  type: "sig_request";
  n: number;
  id: number;
  event: RouteRequestEvent;
  payload: unknown;
}

/** Browser → kernel: several signals at once, each as a `sig_request` with `id` 0, in order. */
export interface RouteSignals {
  type: "sig_signals";
  n: number;
  payloads: unknown[];
}

/** Browser → kernel: send `event` (a snapshot's chunk, its bytes the one buffer), unanswered. */
export interface RouteSend {
  type: "sig_send";
  n: number;
  event: RouteSendEvent;
  payload: unknown;
}

/** Browser → kernel: close route connection `n`. */
export interface RouteClose {
  type: "sig_close";
  n: number;
}

/** Browser → kernel: the view's "Check connection" asks for a `DiagnoseMessage` with this `id`. */
export interface DiagnoseRequest {
  type: "diagnose_request";
  id: string;
}

/** Everything the browser may send. */
export type BrowserMessage =
  | ChatMessage
  | FrameMessage
  | ErrorMessage
  | TokenRequest
  | RouteConnect
  | RouteRequest
  | RouteSignals
  | RouteSend
  | RouteClose
  | DiagnoseRequest;

/** True when the two unions of names are the same set. */
type SameNames<A extends string, B extends string> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
type Holds<T extends true> = T;
/**
 * Compile-time checks: the message unions name exactly the contract's types, so a type added on
 * one side only fails `tsc` (and widget/contract.py's test fails on the Python side).
 */
export type KernelTypesMatchContract = Holds<SameNames<KernelMessage["type"], KernelMessageType>>;
export type BrowserTypesMatchContract = Holds<SameNames<BrowserMessage["type"], BrowserMessageType>>;

// -- messages between browsers, on each connection's "ipymeet" data channel ---------------------

/** The sender's microphone and camera, sent when the channel opens and on every change. */
export interface StatePeerMessage {
  t: "state";
  audio: boolean;
  video: boolean;
  /** Whether the video is the screen (absent from older peers: false). */
  screen: boolean;
}

/** A chat line; the receiver knows the sender (`from`) by the connection it came on. */
export interface ChatPeerMessage {
  t: "chat";
  id: string;
  name: string;
  text: string;
  time: number;
}

/**
 * Is this connection still alive at the other end? Sent when the signaller says the other's
 * connection to it dropped, or after this page entered its room again: a `pong` with the same
 * id says the other page is still there, whatever happened to its signalling.
 */
export interface ProbePeerMessage {
  t: "ping" | "pong";
  id: string;
}

/**
 * What the receiving side wants of this page's video on this connection (a kernel peer's `size`
 * and `fps`): the sent picture fits within `width` x `height` and comes at most `fps` times a
 * second. Null asks nothing of that; sent when the channel opens.
 */
export interface WantPeerMessage {
  t: "want";
  width: number | null;
  height: number | null;
  fps: number | null;
}

export type PeerMessage = StatePeerMessage | ChatPeerMessage | ProbePeerMessage | WantPeerMessage;

/** Any listener, as anywidget types them. */
export type EventHandler = (...args: any[]) => void;

/**
 * The part of anywidget's model API that ipymeet uses. `AnyModel<Model>` satisfies it, and so
 * does the standalone page's in-memory model (page.ts).
 */
export interface WidgetModel {
  get<K extends keyof Model>(key: K): Model[K];
  set<K extends keyof Model>(key: K, value: Model[K]): void;
  on(eventName: "msg:custom", callback: (content: unknown, buffers: DataView[]) => void): void;
  on(eventName: `change:${string}`, callback: () => void): void;
  off(eventName?: string | null, callback?: EventHandler | null): void;
  save_changes(): void;
  /** anywidget's `send(content, callbacks?, buffers?)`: binary buffers go third. */
  send(content: BrowserMessage, callbacks?: unknown, buffers?: ArrayBuffer[] | ArrayBufferView[]): void;
}
