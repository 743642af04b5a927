/**
 * What carries the signalling protocol (docs/protocol.md) between this page and the signaller.
 *
 * The protocol's client (signaling.ts) and the Call speak only to this interface; Socket.IO is
 * one implementation (socketio.ts); the widget's comm and its kernel another (kernelroute.ts),
 * with no change to the call logic.
 */

import { SIGNALLER_EVENTS, type SignallerEvent } from "./contract";

/** The events the signaller sends unasked (docs/protocol.md, dialect 2). */
export const SERVER_EVENTS = SIGNALLER_EVENTS;
export type ServerEvent = SignallerEvent;

/** What a transport tells its listener. */
export interface TransportListener {
  /** One event from the signaller, with its one argument (unchecked: the client reads it). */
  event(name: ServerEvent, data: unknown): void;
  /** The connection dropped without `disconnect()`; `connect()` may open it again. */
  dropped(reason: string): void;
}

export interface SignalingTransport {
  /** Where it leads, as the user may be told (`connected_via`, error messages). */
  readonly url: string;
  /** Whether requests can go out now. */
  readonly connected: boolean;
  /**
   * True while an answer is late for a known, passing reason (the kernel route: a cell is running
   * in the kernel): a request's timer that fires meanwhile waits again instead of failing.
   */
  readonly held?: boolean;
  /**
   * Open the connection, or open it again after a drop. Resolves once open. Rejects with an Error
   * saying why (its message is shown inside a sentence) when it fails, when `timeoutMs` passes or
   * when `signal` aborts; it then stops trying on its own.
   */
  connect(timeoutMs: number, signal?: AbortSignal): Promise<void>;
  /**
   * Send a request. `answer` is called at most once, with the signaller's acknowledgement; a
   * request lost with the connection is never answered (the client times it out).
   */
  request(event: string, payload: unknown, answer: (reply: unknown) => void): void;
  /** Send an event that has no acknowledgement, with an optional binary part (`frame` chunks). */
  send(event: string, payload: unknown, binary?: ArrayBuffer): void;
  /** Hear the signaller's events and the connection's drops until the returned undo is called. */
  listen(listener: TransportListener): () => void;
  /** Close for good. No drop is reported for it. Idempotent. */
  disconnect(): void;
}
