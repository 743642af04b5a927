/**
 * The client side of the signalling protocol, dialect 2 (PROTOCOL.md), over socket.io-client.
 *
 * Every request carries an acknowledgement, answered exactly once by the server; a missing answer
 * times out here with a clear error. Events that arrive before the `enter` acknowledgement
 * (`peer_joined`, `peer_left`, `signal`) are held back and delivered once the caller has taken in
 * the acknowledgement (`deliver()`), so it knows its own id and the members before any of them.
 *
 * A connection that drops is not the end of the client: `reconnect()` opens it again (the caller
 * decides when, with its backoff) and the caller enters its room again.
 */
import { io } from "socket.io-client";
import { socketTarget } from "./route";

// -- the protocol's messages (PROTOCOL.md, dialect 2) ------------------------------------------

export interface PeerInfo {
  id: string;
  name: string;
}

export interface EnterRequest {
  room: string;
  name?: string;
  token?: string;
  /**
   * This page's secret for the call: entering again with it (after a dropped connection, or a
   * restarted signaller) makes it the same member, under the same id (docs/protocol.md).
   */
  session?: string;
}

export interface EnterAccepted {
  ok: true;
  self: string;
  peers: PeerInfo[];
  capacity: number;
  ice_servers: RTCIceServer[];
}

export interface Refusal {
  ok: false;
  code: string;
  message: string;
  /** Not in PROTOCOL.md (yet): a `room_full` refusal may say how many the room holds. */
  capacity?: number;
}

/** A `signal` request: exactly one of `description` and `candidate`. */
export type OutgoingSignal =
  | { to: string; description: RTCSessionDescriptionInit; candidate?: undefined }
  | { to: string; candidate: RTCIceCandidateInit; description?: undefined };

/** A relayed `signal` event. */
export interface IncomingSignal {
  from: string;
  description?: RTCSessionDescriptionInit;
  candidate?: RTCIceCandidateInit | null;
}

export interface ServerError {
  code: string;
  message: string;
}

/** Why a member is gone: it hung up, or its connection to the signaller dropped (it may be back). */
export type LeftReason = "left" | "disconnected";

export interface SignalingHandlers {
  peerJoined(peer: PeerInfo): void;
  peerLeft(peer: { id: string; reason: LeftReason }): void;
  signal(message: IncomingSignal): void;
  /** An `error` event: a refused request that had no acknowledgement. */
  error(error: ServerError): void;
  /** The connection dropped without `close()` being called; `reconnect()` may open it again. */
  disconnected(reason: string): void;
}

/** A refused or failed request; `code` is the protocol's code or one of ours. */
export class SignalingError extends Error {
  readonly code: string;
  readonly refusal: Refusal | null;

  constructor(code: string, message: string, refusal: Refusal | null = null) {
    super(message);
    this.name = "SignalingError";
    this.code = code;
    this.refusal = refusal;
  }
}

/** The part of a socket.io-client `Socket` used here (tests pass a fake). */
export interface SocketLike {
  readonly connected: boolean;
  on(event: string, listener: (...args: any[]) => void): unknown;
  off(event: string, listener: (...args: any[]) => void): unknown;
  emit(event: string, ...args: any[]): unknown;
  connect(): unknown;
  disconnect(): unknown;
}

export const ACK_TIMEOUT_MS = 5000;
export const CONNECT_TIMEOUT_MS = 4000;

type Held = { [K in "peerJoined" | "peerLeft" | "signal"]: [K, Parameters<SignalingHandlers[K]>[0]] }[
  "peerJoined" | "peerLeft" | "signal"
];

/** One Socket.IO connection speaking dialect 2. */
export class SignalingClient {
  readonly url: string;
  private readonly socket: SocketLike;
  private readonly handlers: SignalingHandlers;
  private readonly ackTimeoutMs: number;
  /** Events held back until `deliver()`; null while delivering directly. */
  private held: Held[] | null = [];
  private readonly pending = new Set<(error: SignalingError) => void>();
  private readonly listeners: [string, (...args: any[]) => void][];
  private closed = false;

  constructor(socket: SocketLike, url: string, handlers: SignalingHandlers, ackTimeoutMs = ACK_TIMEOUT_MS) {
    this.socket = socket;
    this.url = url;
    this.handlers = handlers;
    this.ackTimeoutMs = ackTimeoutMs;
    this.listeners = [
      ["peer_joined", (data: unknown) => {
        if (isRecord(data) && typeof data.id === "string") {
          this.dispatch(["peerJoined", { id: data.id, name: typeof data.name === "string" ? data.name : "" }]);
        }
      }],
      ["peer_left", (data: unknown) => {
        if (isRecord(data) && typeof data.id === "string") {
          // Without a reason (an older signaller) the member is taken as gone for good.
          this.dispatch(["peerLeft", { id: data.id, reason: data.reason === "disconnected" ? "disconnected" : "left" }]);
        }
      }],
      ["signal", (data: unknown) => {
        if (isRecord(data) && typeof data.from === "string") this.dispatch(["signal", data as unknown as IncomingSignal]);
      }],
      ["error", (data: unknown) => {
        const error = isRecord(data) ? data : {};
        this.handlers.error({
          code: typeof error.code === "string" ? error.code : "error",
          message: typeof error.message === "string" ? error.message : "The signaller refused a request.",
        });
      }],
      ["disconnect", (reason: unknown) => {
        if (this.closed) return;
        // Nothing sent before the drop will be answered; what arrives next belongs to a new entry.
        this.held = [];
        this.failPending(new SignalingError("disconnected", "The connection to the signaller was lost."));
        this.handlers.disconnected(String(reason));
      }],
    ];
    for (const [event, listener] of this.listeners) socket.on(event, listener);
  }

  /** Whether the connection is open (false while it is down, and after `close()`). */
  get connected(): boolean {
    return !this.closed && this.socket.connected;
  }

  /**
   * Open the dropped connection again (same URL). Resolves once connected; rejects with a
   * SignalingError `unreachable` if it fails or `timeoutMs` passes. Then `enter` again.
   */
  reconnect(timeoutMs = CONNECT_TIMEOUT_MS): Promise<void> {
    if (this.closed) return Promise.reject(new SignalingError("disconnected", "The connection was closed."));
    if (this.socket.connected) return Promise.resolve();
    return awaitConnect(this.socket, timeoutMs, undefined, false);
  }

  /** Enter a room. Resolves with the acknowledgement; rejects with a SignalingError if refused. */
  async enter(request: EnterRequest): Promise<EnterAccepted> {
    this.held = [];
    const answer = await this.request("enter", request);
    if (answer.ok !== true) throw refusalError(answer);
    if (typeof answer.self !== "string" || !Array.isArray(answer.peers)) {
      throw new SignalingError("bad_request", "The signaller's answer to “enter” was not understood.");
    }
    return {
      ok: true,
      self: answer.self,
      peers: answer.peers
        .filter((peer): peer is Record<string, unknown> => isRecord(peer) && typeof peer.id === "string")
        .map((peer) => ({ id: peer.id as string, name: typeof peer.name === "string" ? peer.name : "" })),
      capacity: typeof answer.capacity === "number" ? answer.capacity : 0,
      ice_servers: Array.isArray(answer.ice_servers) ? (answer.ice_servers as RTCIceServer[]) : [],
    };
  }

  /** Deliver the events held since `enter`, in order, then deliver new ones as they come. */
  deliver(): void {
    const held = this.held ?? [];
    this.held = null;
    for (const event of held) {
      if (this.closed) return;
      this.handle(event);
    }
  }

  async leave(): Promise<void> {
    this.held = [];
    const answer = await this.request("leave", {});
    if (answer.ok !== true) throw refusalError(answer);
  }

  async signal(message: OutgoingSignal): Promise<void> {
    const answer = await this.request("signal", message);
    if (answer.ok !== true) throw refusalError(answer);
  }

  /**
   * Send one `frame` event (a snapshot's chunk, or its error) to the signaller, without an
   * acknowledgement. False when the connection is closed.
   */
  sendFrame(meta: Record<string, unknown>, chunk?: ArrayBuffer): boolean {
    if (this.closed) return false;
    if (chunk === undefined) this.socket.emit("frame", meta);
    else this.socket.emit("frame", meta, chunk);
    return true;
  }

  /** Stop listening and disconnect. Pending requests are rejected. Idempotent. */
  close(): void {
    if (this.closed && this.listeners.length === 0) return;
    this.closed = true;
    for (const [event, listener] of this.listeners) this.socket.off(event, listener);
    this.listeners.length = 0;
    this.held = null;
    this.failPending(new SignalingError("disconnected", "The connection to the signaller was closed."));
    this.socket.disconnect();
  }

  private dispatch(event: Held): void {
    if (this.held !== null) this.held.push(event);
    else this.handle(event);
  }

  private handle(event: Held): void {
    switch (event[0]) {
      case "peerJoined":
        return this.handlers.peerJoined(event[1]);
      case "peerLeft":
        return this.handlers.peerLeft(event[1]);
      case "signal":
        return this.handlers.signal(event[1]);
    }
  }

  private request(event: string, payload: unknown): Promise<Record<string, unknown>> {
    // Not while the connection is down: socket.io-client would buffer the request and send it on
    // reconnecting, before the page has entered its room again.
    if (!this.connected) {
      return Promise.reject(new SignalingError("disconnected", "Not connected to the signaller."));
    }
    return new Promise((resolve, reject) => {
      const fail = (error: SignalingError): void => {
        clearTimeout(timer);
        this.pending.delete(fail);
        reject(error);
      };
      const timer = setTimeout(() => {
        const seconds = Math.round(this.ackTimeoutMs / 100) / 10;
        fail(new SignalingError("timeout", `The signaller did not answer “${event}” within ${seconds} s.`));
      }, this.ackTimeoutMs);
      this.pending.add(fail);
      this.socket.emit(event, payload, (answer: unknown) => {
        if (!this.pending.has(fail)) return; // timed out or closed meanwhile
        clearTimeout(timer);
        this.pending.delete(fail);
        resolve(isRecord(answer) ? answer : { ok: false, code: "bad_request", message: "empty answer" });
      });
    });
  }

  private failPending(error: SignalingError): void {
    for (const fail of [...this.pending]) fail(error);
  }
}

/** The socket.io-client options ipymeet connects with. */
export function socketOptions(url: string, client: string) {
  const { path } = socketTarget(url);
  return {
    path,
    transports: ["websocket"],
    // The Call reconnects itself (SignalingClient.reconnect, with its own backoff), because it must
    // enter its room again each time, and also after the server closed the connection, where
    // socket.io-client's own reconnection gives up.
    reconnection: false,
    timeout: CONNECT_TIMEOUT_MS,
    // Each widget is its own member of the room, even when two share a page and a signaller.
    forceNew: true,
    // The kernel tells its own widgets' Socket.IO sessions apart by this key.
    auth: { client },
  };
}

export type SocketFactory = (origin: string, options: ReturnType<typeof socketOptions>) => SocketLike;

const defaultFactory: SocketFactory = (origin, options) => io(origin, options);

export interface ConnectOptions {
  client: string;
  timeoutMs?: number;
  factory?: SocketFactory;
  signal?: AbortSignal;
}

/**
 * Try the URLs in order and return the first socket that connects. Rejects with a
 * SignalingError `unreachable` whose `tried` lists what failed, or `aborted` if `signal` fired.
 */
export async function connectFirst(
  urls: readonly string[],
  options: ConnectOptions,
): Promise<{ socket: SocketLike; url: string }> {
  const failures: string[] = [];
  for (const url of urls) {
    if (options.signal?.aborted) break;
    try {
      const socket = await connectOne(url, options);
      return { socket, url };
    } catch (error) {
      failures.push(`${url} (${error instanceof Error ? error.message : String(error)})`);
    }
  }
  if (options.signal?.aborted) throw new SignalingError("aborted", "Connecting was cancelled.");
  throw new UnreachableError(urls, failures);
}

/** No URL answered; `tried` are the URLs in the order they were tried, `reasons` why each failed. */
export class UnreachableError extends SignalingError {
  readonly tried: readonly string[];
  readonly reasons: readonly string[];
  constructor(tried: readonly string[], reasons: readonly string[]) {
    super("unreachable", `Can't reach the signaller (tried: ${reasons.join(", ") || "nothing"}).`);
    this.tried = tried;
    this.reasons = reasons;
  }
}

async function connectOne(url: string, options: ConnectOptions): Promise<SocketLike> {
  const { origin } = socketTarget(url);
  const socket = (options.factory ?? defaultFactory)(origin, socketOptions(url, options.client));
  await awaitConnect(socket, options.timeoutMs ?? CONNECT_TIMEOUT_MS, options.signal, true);
  return socket;
}

/**
 * Wait for `socket` to connect (calling `connect()` unless it is connecting already). On failure
 * the socket is disconnected, so it stops trying; rejects with a plain Error when `fresh` (the
 * caller words it), else with a SignalingError `unreachable`.
 */
function awaitConnect(socket: SocketLike, timeoutMs: number, signal: AbortSignal | undefined, fresh: boolean): Promise<void> {
  return new Promise((resolve, reject) => {
    const finish = (error: string | null): void => {
      clearTimeout(timer);
      socket.off("connect", onConnect);
      socket.off("connect_error", onError);
      signal?.removeEventListener("abort", onAbort);
      if (error === null) {
        resolve();
        return;
      }
      socket.disconnect();
      reject(fresh ? new Error(error) : new SignalingError("unreachable", `Can't reach the signaller (${error}).`));
    };
    const onConnect = (): void => finish(null);
    const onError = (error: unknown): void => finish(error instanceof Error ? error.message : "connection refused");
    const onAbort = (): void => finish("cancelled");
    const timer = setTimeout(() => finish(`no answer within ${timeoutMs / 1000} s`), timeoutMs);
    socket.on("connect", onConnect);
    socket.on("connect_error", onError);
    signal?.addEventListener("abort", onAbort);
    if (!fresh) socket.connect();
  });
}

function refusalError(answer: Record<string, unknown>): SignalingError {
  const refusal: Refusal = {
    ok: false,
    code: typeof answer.code === "string" ? answer.code : "bad_request",
    message: typeof answer.message === "string" ? answer.message : "The signaller refused the request.",
  };
  if (typeof answer.capacity === "number") refusal.capacity = answer.capacity;
  return new SignalingError(refusal.code, refusal.message, refusal);
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
