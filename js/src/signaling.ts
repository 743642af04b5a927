/**
 * The client side of the signalling protocol, dialect 2 (docs/protocol.md), over any
 * SignalingTransport (transport.ts; Socket.IO in socketio.ts, the widget's kernel in
 * kernelroute.ts).
 *
 * Every request carries an acknowledgement, answered exactly once by the server; a missing answer
 * times out here with a clear error, unless the transport says the answer is only held up
 * (`held`: a cell is running in the kernel that carries it), and then it waits again. Events that arrive before the `enter` acknowledgement
 * (`peer_joined`, `peer_left`, `signal`, `ice_servers`) are held back and delivered once the caller has taken in
 * the acknowledgement (`deliver()`), so it knows its own id and the members before any of them.
 *
 * A connection that drops is not the end of the client: `reconnect()` opens it again (the caller
 * decides when, with its backoff) and the caller enters its room again.
 */
import type { KernelLink } from "./kernel";
import { CONNECT_TIMEOUT_MS, openSocketIo, type SocketFactory } from "./socketio";
import type { ServerEvent, SignalingTransport } from "./transport";

// -- the protocol's messages (docs/protocol.md, dialect 2) -------------------------------------

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
  /** A `room_full` refusal may say how many the room holds. */
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
  /** `ice_servers`: fresh TURN credentials, before the last ones expire (docs/protocol.md). */
  iceServers(servers: RTCIceServer[]): void;
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

export const ACK_TIMEOUT_MS = 5000;

type HeldEvent = "peerJoined" | "peerLeft" | "signal" | "iceServers";
type Held = { [K in HeldEvent]: [K, Parameters<SignalingHandlers[K]>[0]] }[HeldEvent];

/** One connection to the signaller speaking dialect 2, over `transport`. */
export class SignalingClient {
  private readonly transport: SignalingTransport;
  private readonly handlers: SignalingHandlers;
  private readonly ackTimeoutMs: number;
  /** Events held back until `deliver()`; null while delivering directly. */
  private held: Held[] | null = [];
  private readonly pending = new Set<(error: SignalingError) => void>();
  private unlisten: (() => void) | null;
  private closed = false;

  constructor(transport: SignalingTransport, handlers: SignalingHandlers, ackTimeoutMs = ACK_TIMEOUT_MS) {
    this.transport = transport;
    this.handlers = handlers;
    this.ackTimeoutMs = ackTimeoutMs;
    this.unlisten = transport.listen({
      event: (name, data) => this.onEvent(name, data),
      dropped: (reason) => {
        if (this.closed) return;
        // Nothing sent before the drop will be answered; what arrives next belongs to a new entry.
        this.held = [];
        this.failPending(new SignalingError("disconnected", "The connection to the signaller was lost."));
        this.handlers.disconnected(reason);
      },
    });
  }

  /** Where the connection leads. */
  get url(): string {
    return this.transport.url;
  }

  /** Whether the connection is open (false while it is down, and after `close()`). */
  get connected(): boolean {
    return !this.closed && this.transport.connected;
  }

  /**
   * Open the dropped connection again (same URL). Resolves once connected; rejects with a
   * SignalingError `unreachable` if it fails or `timeoutMs` passes. Then `enter` again.
   */
  async reconnect(timeoutMs = CONNECT_TIMEOUT_MS): Promise<void> {
    if (this.closed) throw new SignalingError("disconnected", "The connection was closed.");
    try {
      await this.transport.connect(timeoutMs);
    } catch (error) {
      throw new SignalingError("unreachable", `Can't reach the signaller (${errorText(error)}).`);
    }
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
    this.transport.send("frame", meta, chunk);
    return true;
  }

  /** Stop listening and disconnect. Pending requests are rejected. Idempotent. */
  close(): void {
    if (this.closed && this.unlisten === null) return;
    this.closed = true;
    this.unlisten?.();
    this.unlisten = null;
    this.held = null;
    this.failPending(new SignalingError("disconnected", "The connection to the signaller was closed."));
    this.transport.disconnect();
  }

  private onEvent(name: ServerEvent, data: unknown): void {
    switch (name) {
      case "peer_joined":
        if (isRecord(data) && typeof data.id === "string") {
          this.dispatch(["peerJoined", { id: data.id, name: typeof data.name === "string" ? data.name : "" }]);
        }
        return;
      case "peer_left":
        if (isRecord(data) && typeof data.id === "string") {
          // Without a reason (an older signaller) the member is taken as gone for good.
          this.dispatch(["peerLeft", { id: data.id, reason: data.reason === "disconnected" ? "disconnected" : "left" }]);
        }
        return;
      case "signal":
        if (isRecord(data) && typeof data.from === "string") this.dispatch(["signal", data as unknown as IncomingSignal]);
        return;
      case "ice_servers":
        if (isRecord(data) && Array.isArray(data.ice_servers)) this.dispatch(["iceServers", data.ice_servers as RTCIceServer[]]);
        return;
      case "error": {
        const error = isRecord(data) ? data : {};
        this.handlers.error({
          code: typeof error.code === "string" ? error.code : "error",
          message: typeof error.message === "string" ? error.message : "The signaller refused a request.",
        });
        return;
      }
    }
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
      case "iceServers":
        return this.handlers.iceServers(event[1]);
    }
  }

  private request(event: string, payload: unknown): Promise<Record<string, unknown>> {
    // Not while the connection is down: a transport may buffer the request and send it on
    // reconnecting (socket.io-client does), before the page has entered its room again.
    if (!this.connected) {
      return Promise.reject(new SignalingError("disconnected", "Not connected to the signaller."));
    }
    return new Promise((resolve, reject) => {
      const fail = (error: SignalingError): void => {
        clearTimeout(timer);
        this.pending.delete(fail);
        reject(error);
      };
      const arm = (): ReturnType<typeof setTimeout> =>
        setTimeout(() => {
          if (this.transport.held === true) {
            timer = arm(); // late for a known reason (a cell is running), not lost
            return;
          }
          const seconds = Math.round(this.ackTimeoutMs / 100) / 10;
          fail(new SignalingError("timeout", `The signaller did not answer “${event}” within ${seconds} s.`));
        }, this.ackTimeoutMs);
      let timer = arm();
      this.pending.add(fail);
      this.transport.request(event, payload, (answer: unknown) => {
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

export interface ConnectOptions {
  /** The widget's key (`_client`), for the Socket.IO transport's `auth`. */
  client: string;
  timeoutMs?: number;
  /** How to open a transport to one URL; Socket.IO (with `client` and `factory`) by default. */
  open?: (url: string) => SignalingTransport;
  /** For tests: how the default Socket.IO transport makes its socket. */
  factory?: SocketFactory;
  /** The widget's link to its kernel, for the kernel route (deps.ts's openRoute). */
  kernel?: KernelLink;
  signal?: AbortSignal;
}

/**
 * The route trial: open a transport to each URL in order and return the first that connects.
 * Rejects with an UnreachableError listing what failed, or a SignalingError `aborted` if
 * `signal` fired.
 */
export async function connectFirst(urls: readonly string[], options: ConnectOptions): Promise<SignalingTransport> {
  const open = options.open ?? ((url: string) => openSocketIo(url, options.client, options.factory));
  const failures: string[] = [];
  for (const url of urls) {
    if (options.signal?.aborted) break;
    try {
      const transport = open(url);
      await transport.connect(options.timeoutMs ?? CONNECT_TIMEOUT_MS, options.signal);
      return transport;
    } catch (error) {
      failures.push(`${url} (${errorText(error)})`);
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

function refusalError(answer: Record<string, unknown>): SignalingError {
  const refusal: Refusal = {
    ok: false,
    code: typeof answer.code === "string" ? answer.code : "bad_request",
    message: typeof answer.message === "string" ? answer.message : "The signaller refused the request.",
  };
  if (typeof answer.capacity === "number") refusal.capacity = answer.capacity;
  return new SignalingError(refusal.code, refusal.message, refusal);
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
