/**
 * The signalling transport over Socket.IO (socket.io-client, websocket only): the page's direct
 * way to a signaller, through its own URL or jupyter-server-proxy (route.ts).
 */
import { io } from "socket.io-client";
import { socketTarget } from "./route";
import { SERVER_EVENTS, type SignalingTransport, type TransportListener } from "./transport";

/** The part of a socket.io-client `Socket` used here (tests pass a fake). */
export interface SocketLike {
  readonly connected: boolean;
  on(event: string, listener: (...args: any[]) => void): unknown;
  off(event: string, listener: (...args: any[]) => void): unknown;
  emit(event: string, ...args: any[]): unknown;
  connect(): unknown;
  disconnect(): unknown;
}

export const CONNECT_TIMEOUT_MS = 4000;

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

/** A new Socket.IO transport to `url`, already connecting (await its `connect`). */
export function openSocketIo(url: string, client: string, factory: SocketFactory = defaultFactory): SocketIoTransport {
  const { origin } = socketTarget(url);
  return new SocketIoTransport(factory(origin, socketOptions(url, client)), url, { connecting: true });
}

export class SocketIoTransport implements SignalingTransport {
  readonly url: string;
  private readonly socket: SocketLike;
  /** The socket is connecting on its own (io() starts at once): the first `connect` only waits. */
  private connecting: boolean;
  private closed = false;

  constructor(socket: SocketLike, url: string, { connecting = false }: { connecting?: boolean } = {}) {
    this.socket = socket;
    this.url = url;
    this.connecting = connecting;
  }

  get connected(): boolean {
    return !this.closed && this.socket.connected;
  }

  connect(timeoutMs: number, signal?: AbortSignal): Promise<void> {
    if (this.closed) return Promise.reject(new Error("closed"));
    // A socket io() just made is connecting: its `connect` event is still to come.
    const start = !this.connecting;
    this.connecting = false;
    if (start && this.socket.connected) return Promise.resolve();
    const socket = this.socket;
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
        socket.disconnect(); // so that it stops trying
        reject(new Error(error));
      };
      const onConnect = (): void => finish(null);
      const onError = (error: unknown): void => finish(error instanceof Error ? error.message : "connection refused");
      const onAbort = (): void => finish("cancelled");
      const timer = setTimeout(() => finish(`no answer within ${timeoutMs / 1000} s`), timeoutMs);
      socket.on("connect", onConnect);
      socket.on("connect_error", onError);
      signal?.addEventListener("abort", onAbort);
      if (start) socket.connect();
    });
  }

  request(event: string, payload: unknown, answer: (reply: unknown) => void): void {
    this.socket.emit(event, payload, answer);
  }

  send(event: string, payload: unknown, binary?: ArrayBuffer): void {
    if (binary === undefined) this.socket.emit(event, payload);
    else this.socket.emit(event, payload, binary);
  }

  listen(listener: TransportListener): () => void {
    const handlers: [string, (...args: any[]) => void][] = SERVER_EVENTS.map((name) => [
      name,
      (data: unknown) => listener.event(name, data),
    ]);
    handlers.push([
      "disconnect",
      (reason: unknown) => {
        if (!this.closed) listener.dropped(String(reason));
      },
    ]);
    for (const [event, handler] of handlers) this.socket.on(event, handler);
    return () => {
      for (const [event, handler] of handlers) this.socket.off(event, handler);
    };
  }

  disconnect(): void {
    this.closed = true;
    this.socket.disconnect();
  }
}
