/**
 * The widget's custom messages with its kernel: one listener on `msg:custom` for every type
 * (chat, snapshot, token, error, diagnose, and the kernel route's sig_*), checked by messages.ts
 * and handed to whoever took that type (the Call takes chat and snapshot, the token source
 * tokens.ts takes token, the connection doctor diagnose.ts diagnose, the kernel route's transport
 * kernelroute.ts the sig_* ones). A message that is unknown or malformed is answered with an
 * `error` message; the kernel's own `error` answers are logged once per distinct text.
 *
 * It also says whether the kernel is running a cell (`busy`: what this page sends it waits
 * meanwhile) and whether the page has been waiting on it long enough to say so (`waiting`).
 *
 * Listen at model level (make it in `initialize`), so a message the kernel sends before a view
 * exists still finds its handler.
 */
import { MAX_ROUTE_NUMBER } from "./contract";
import { dispatchKernelMessage, type KernelHandlers } from "./messages";
import type { BrowserMessage, WidgetModel } from "./types";

export class KernelLink {
  private readonly model: WidgetModel;
  private readonly handlers: Partial<KernelHandlers> = {};
  /** The kernel's error texts logged already. */
  private readonly logged = new Set<string>();
  private readonly watchers = new Set<() => void>();
  /** Who waits on the busy kernel long enough to say so (kernel-route transports). */
  private readonly waiters = new Set<object>();
  /**
   * The last kernel-route connection number given. From a random start, so that two pages
   * showing one widget (two browser tabs) never take each other's messages.
   */
  private route = Math.floor(Math.random() * 2 ** 30);
  private disposed = false;

  constructor(model: WidgetModel) {
    this.model = model;
    model.on("msg:custom", this.onMessage);
    model.on("change:_kernel_busy", this.notify);
  }

  /** Whether the kernel is running a cell (`_kernel_busy`): what this page sends it waits. */
  get busy(): boolean {
    return this.model.get("_kernel_busy") === true;
  }

  /** Whether this page has waited on the busy kernel long enough to say so (kernelroute.ts). */
  get waiting(): boolean {
    return this.waiters.size > 0;
  }

  /** `owner` waits on the busy kernel, or waits no more. */
  setWaiting(owner: object, waiting: boolean): void {
    if (waiting === this.waiters.has(owner)) return;
    if (waiting) this.waiters.add(owner);
    else this.waiters.delete(owner);
    this.notify();
  }

  /** Be told when `busy` or `waiting` changes. Returns the undo. */
  watch(listener: () => void): () => void {
    this.watchers.add(listener);
    return () => this.watchers.delete(listener);
  }

  /** The number of a new kernel-route connection (a new one per connect). */
  nextRoute(): number {
    this.route = this.route >= MAX_ROUTE_NUMBER ? 1 : this.route + 1;
    return this.route;
  }

  /**
   * Take the kernel's messages of these types (one taker per type: a second replaces the first).
   * Returns the undo. A type nobody takes is dropped quietly: it is somebody's who is gone.
   */
  handle(handlers: Partial<Omit<KernelHandlers, "error">>): () => void {
    Object.assign(this.handlers, handlers);
    return () => {
      for (const [type, handler] of Object.entries(handlers)) {
        const key = type as keyof KernelHandlers;
        if (this.handlers[key] === handler) delete this.handlers[key];
      }
    };
  }

  /** Send a message to the kernel (binary buffers go with it, as anywidget's third argument). */
  send(message: BrowserMessage, buffers?: ArrayBuffer[]): void {
    if (this.disposed) return;
    if (buffers === undefined) this.model.send(message);
    else this.model.send(message, undefined, buffers);
  }

  dispose(): void {
    this.disposed = true;
    this.model.off("msg:custom", this.onMessage);
    this.model.off("change:_kernel_busy", this.notify);
    for (const key of Object.keys(this.handlers)) delete this.handlers[key as keyof KernelHandlers];
    this.watchers.clear();
    this.waiters.clear();
  }

  private readonly notify = (): void => {
    for (const listener of [...this.watchers]) listener();
  };

  private readonly onMessage = (content: unknown): void => {
    if (this.disposed) return;
    const reply = dispatchKernelMessage(content, {
      chat: (message) => this.handlers.chat?.(message),
      snapshot: (message) => this.handlers.snapshot?.(message),
      token: (message) => this.handlers.token?.(message),
      sig_open: (message) => this.handlers.sig_open?.(message),
      sig_event: (message) => this.handlers.sig_event?.(message),
      sig_answer: (message) => this.handlers.sig_answer?.(message),
      sig_dropped: (message) => this.handlers.sig_dropped?.(message),
      diagnose: (message) => this.handlers.diagnose?.(message),
      error: ({ message }) => {
        if (this.logged.has(message)) return;
        this.logged.add(message);
        console.warn(`ipymeet: the kernel could not read a message from this page: ${message}`);
      },
    });
    if (reply !== null) this.send(reply);
  };
}
