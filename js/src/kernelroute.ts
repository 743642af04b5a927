/**
 * The kernel route: signalling through the widget's own comm and its kernel, for a page that
 * cannot reach the signaller's port (Voilà on a server, Binder, a hub without
 * jupyter-server-proxy). The kernel relays each message to the signaller over a connection of its
 * own, with the widget's key, and sends back what the signaller says from a thread of its own, so
 * that it arrives even while a cell runs (widget/relay.py). The other way, what this page sends
 * waits while a cell runs in the kernel: meanwhile (`_kernel_busy`) connecting and requests do
 * not time out (`held`), and after WAIT_NOTICE_MS the link says that the page waits (the view
 * shows it).
 *
 * The messages (docs/protocol.md, "The kernel route"): `sig_connect {n}` → `sig_open {n}` or
 * `sig_dropped {n, reason}`; `sig_request {n, id, event, payload}` → `sig_answer {n, id, reply}`;
 * `sig_send {n, event, payload}` (+ one binary buffer); `sig_close {n}`; and from the signaller
 * `sig_event {n, event, data}`, `sig_dropped {n, reason}`. Each connect takes a new `n`
 * (KernelLink.nextRoute), so what is left of an older connection is dropped on both sides.
 *
 * The signals of one turn of the event loop (an offer and the ICE candidates gathered after it,
 * each of which comes in a task of its own) go as one `sig_signals {n, payloads}`: every comm
 * message costs the kernel its `status` busy and idle, and the Jupyter server and this page the
 * handling of all three, far more than its bytes; on two busy cores that took the route from
 * about 70 ms slower than direct to about 20 (docs/performance.md).
 */
import { MAX_ROUTE_SIGNALS, ROUTE_REQUESTS, ROUTE_SENDS } from "./contract";
import type { KernelLink } from "./kernel";
import { KERNEL_ROUTE } from "./route";
import type { SignalingTransport, TransportListener } from "./transport";
import type { RouteAnswer, RouteDropped, RouteEvent, RouteOpen } from "./types";

/** How long the page waits on a busy kernel before it says so. */
export const WAIT_NOTICE_MS = 1000;
/**
 * How long after a cell ends timeouts are still held: the kernel then works through what waited
 * for the cell, this page's messages among them.
 */
export const HOLD_AFTER_BUSY_MS = 2000;

interface Opening {
  n: number;
  finish(error: string | null): void;
}

export class KernelRouteTransport implements SignalingTransport {
  readonly url = KERNEL_ROUTE;
  private readonly kernel: KernelLink;
  private readonly now: () => number;
  /** The current route connection's number; 0 when there is none. */
  private n = 0;
  private open = false;
  private closed = false;
  private opening: Opening | null = null;
  private readonly answers = new Map<number, (reply: unknown) => void>();
  private lastId = 0;
  private readonly listeners = new Set<TransportListener>();
  private wasBusy: boolean;
  /** When the kernel last ended a cell (ms), for HOLD_AFTER_BUSY_MS. */
  private idleSince = Number.NEGATIVE_INFINITY;
  private noticeTimer: ReturnType<typeof setTimeout> | null = null;
  private noticed = false;
  private readonly release: () => void;
  private readonly unwatch: () => void;
  /** Signals to go at the end of this turn of the event loop, as one message. */
  private signals: unknown[] = [];
  private signalTimer: ReturnType<typeof setTimeout> | null = null;

  constructor(kernel: KernelLink, { now = () => Date.now() }: { now?: () => number } = {}) {
    this.kernel = kernel;
    this.now = now;
    this.wasBusy = kernel.busy;
    this.release = kernel.handle({
      sig_open: (message) => this.onOpen(message),
      sig_event: (message) => this.onEvent(message),
      sig_answer: (message) => this.onAnswer(message),
      sig_dropped: (message) => this.onDropped(message),
    });
    this.unwatch = kernel.watch(() => this.onKernel());
  }

  get connected(): boolean {
    return !this.closed && this.open;
  }

  /** While a cell runs in the kernel (and a moment after): answers are late, not lost. */
  get held(): boolean {
    return !this.closed && (this.kernel.busy || this.now() - this.idleSince < HOLD_AFTER_BUSY_MS);
  }

  connect(timeoutMs: number, signal?: AbortSignal): Promise<void> {
    if (this.closed) return Promise.reject(new Error("closed"));
    if (this.open) return Promise.resolve();
    this.opening?.finish("replaced by a new attempt");
    const n = this.kernel.nextRoute();
    this.n = n;
    this.kernel.send({ type: "sig_connect", n });
    return new Promise((resolve, reject) => {
      const finish = (error: string | null): void => {
        clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
        if (this.opening === opening) this.opening = null;
        if (error === null) {
          this.open = true;
          this.update();
          resolve();
          return;
        }
        if (this.n === n) {
          this.n = 0;
          this.kernel.send({ type: "sig_close", n }); // so that a late open is closed at once
        }
        this.update();
        reject(new Error(error));
      };
      const arm = (): ReturnType<typeof setTimeout> =>
        setTimeout(() => {
          if (this.held) timer = arm();
          else finish(`the kernel did not answer within ${timeoutMs / 1000} s`);
        }, timeoutMs);
      let timer = arm();
      const onAbort = (): void => finish("cancelled");
      signal?.addEventListener("abort", onAbort);
      const opening: Opening = { n, finish };
      this.opening = opening;
      this.update();
    });
  }

  request(event: string, payload: unknown, answer: (reply: unknown) => void): void {
    if (!this.connected) return; // lost with the connection: never answered
    const known = ROUTE_REQUESTS.find((name) => name === event);
    if (known === undefined) {
      queueMicrotask(() => answer({ ok: false, code: "bad_request", message: `the kernel route does not carry “${event}”` }));
      return;
    }
    if (known === "signal") {
      // Not answered over the kernel route (id 0): a signal's answer only ever fed a debug line
      // (members.ts), and each would be one more kernel → page message while the call sets up.
      this.signals.push(payload);
      if (this.signals.length >= MAX_ROUTE_SIGNALS) this.flushSignals();
      else this.signalTimer ??= setTimeout(() => this.flushSignals(), 0);
      queueMicrotask(() => answer({ ok: true }));
      return;
    }
    this.flushSignals();
    this.lastId += 1;
    this.answers.set(this.lastId, answer);
    this.kernel.send({ type: "sig_request", n: this.n, id: this.lastId, event: known, payload });
    this.update();
  }

  send(event: string, payload: unknown, binary?: ArrayBuffer): void {
    const known = ROUTE_SENDS.find((name) => name === event);
    if (!this.connected || known === undefined) return;
    this.flushSignals();
    const message = { type: "sig_send", n: this.n, event: known, payload } as const;
    if (binary === undefined) this.kernel.send(message);
    else this.kernel.send(message, [binary]);
  }

  /** Send the signals queued in this turn of the event loop: one message for all of them. */
  private flushSignals(): void {
    if (this.signalTimer !== null) clearTimeout(this.signalTimer);
    this.signalTimer = null;
    const payloads = this.signals;
    if (payloads.length === 0) return;
    this.signals = [];
    if (!this.connected) return;
    if (payloads.length === 1) this.kernel.send({ type: "sig_request", n: this.n, id: 0, event: "signal", payload: payloads[0] });
    else this.kernel.send({ type: "sig_signals", n: this.n, payloads });
  }

  listen(listener: TransportListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  disconnect(): void {
    if (this.closed) return;
    if (this.signalTimer !== null) clearTimeout(this.signalTimer);
    this.signalTimer = null;
    this.signals = []; // moot once the connection closes
    this.closed = true;
    const n = this.n;
    this.n = 0;
    this.open = false;
    if (n !== 0) this.kernel.send({ type: "sig_close", n });
    this.opening?.finish("closed");
    this.answers.clear();
    this.listeners.clear();
    this.release();
    this.unwatch();
    this.update();
  }

  // -- what the kernel says ---------------------------------------------------------------------

  private onOpen({ n }: RouteOpen): void {
    if (this.opening !== null && this.opening.n === n) this.opening.finish(null);
  }

  private onEvent({ n, event, data }: RouteEvent): void {
    if (n !== this.n || !this.open) return;
    for (const listener of [...this.listeners]) listener.event(event, data);
  }

  private onAnswer({ n, id, reply }: RouteAnswer): void {
    if (n !== this.n) return;
    const answer = this.answers.get(id);
    if (answer === undefined) return;
    this.answers.delete(id);
    this.update();
    answer(reply);
  }

  private onDropped({ n, reason }: RouteDropped): void {
    if (n !== this.n) return;
    if (this.opening !== null && this.opening.n === n) {
      this.opening.finish(reason);
      return;
    }
    if (!this.open) return;
    this.open = false;
    this.n = 0;
    this.answers.clear();
    this.update();
    for (const listener of [...this.listeners]) listener.dropped(reason);
  }

  private onKernel(): void {
    const busy = this.kernel.busy;
    if (this.wasBusy && !busy) this.idleSince = this.now();
    this.wasBusy = busy;
    this.update();
  }

  /** Tell the link once this page has waited WAIT_NOTICE_MS on the busy kernel, and when no more. */
  private update(): void {
    const waits = !this.closed && this.kernel.busy && (this.opening !== null || this.answers.size > 0);
    if (!waits) {
      if (this.noticeTimer !== null) clearTimeout(this.noticeTimer);
      this.noticeTimer = null;
      if (this.noticed) {
        this.noticed = false;
        this.kernel.setWaiting(this, false);
      }
      return;
    }
    if (this.noticed || this.noticeTimer !== null) return;
    this.noticeTimer = setTimeout(() => {
      this.noticeTimer = null;
      this.noticed = true;
      this.kernel.setWaiting(this, true);
    }, WAIT_NOTICE_MS);
  }
}
