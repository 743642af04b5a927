/**
 * The widget's custom messages with its kernel: one listener on `msg:custom` for every type
 * (chat, snapshot, token, error), checked by messages.ts and handed to whoever took that type
 * (the Call takes chat and snapshot, the token source tokens.ts takes token). A message that is
 * unknown or malformed is answered with an `error` message; the kernel's own `error` answers
 * are logged once per distinct text.
 *
 * Listen at model level (make it in `initialize`), so a message the kernel sends before a view
 * exists still finds its handler.
 */
import { dispatchKernelMessage, type KernelHandlers } from "./messages";
import type { BrowserMessage, WidgetModel } from "./types";

export class KernelLink {
  private readonly model: WidgetModel;
  private readonly handlers: Partial<KernelHandlers> = {};
  /** The kernel's error texts logged already. */
  private readonly logged = new Set<string>();
  private disposed = false;

  constructor(model: WidgetModel) {
    this.model = model;
    model.on("msg:custom", this.onMessage);
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
    for (const key of Object.keys(this.handlers)) delete this.handlers[key as keyof KernelHandlers];
  }

  private readonly onMessage = (content: unknown): void => {
    if (this.disposed) return;
    const reply = dispatchKernelMessage(content, {
      chat: (message) => this.handlers.chat?.(message),
      snapshot: (message) => this.handlers.snapshot?.(message),
      token: (message) => this.handlers.token?.(message),
      error: ({ message }) => {
        if (this.logged.has(message)) return;
        this.logged.add(message);
        console.warn(`ipymeet: the kernel could not read a message from this page: ${message}`);
      },
    });
    if (reply !== null) this.send(reply);
  };
}
