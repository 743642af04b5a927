/**
 * Join tokens for the Call's `enter` (`CallDeps.token`). A widget asks its kernel by custom message
 * (`token_request` → `token`, through the widget's KernelLink), because a token must never sit in
 * a trait (widget state may be saved in the notebook). The standalone page takes its token from
 * the invite link's `?token=`.
 */
import type { KernelLink } from "./kernel";
import { SignalingError } from "./signaling";
import type { TokenMessage, WidgetModel } from "./types";

export interface KernelTokenOptions {
  /** How long to wait for the kernel's answer. */
  timeoutMs?: number;
  /** How long a token the kernel sent unasked (by `join()`) is used instead of asking again. */
  maxAgeMs?: number;
  now?: () => number;
}

type Waiter = { resolve: (token: string | undefined) => void; reject: (error: Error) => void };

/**
 * The tokens of one widget, asked of its kernel. Takes the `token` messages of the widget's
 * KernelLink (made in `initialize`), so a token the kernel sends before a view exists is kept.
 */
export class KernelTokens {
  private readonly model: WidgetModel;
  private readonly kernel: KernelLink;
  private readonly release: () => void;
  private readonly timeoutMs: number;
  private readonly maxAgeMs: number;
  private readonly now: () => number;
  /** Tokens sent unasked, by room, each used once. */
  private readonly ahead = new Map<string, { token: string | null; at: number }>();
  private readonly waiting = new Map<string, Waiter[]>();
  private disposed = false;

  /** `model` is read for `_secure`; requests go out, and answers come in, through `kernel`. */
  constructor(model: WidgetModel, kernel: KernelLink, options: KernelTokenOptions = {}) {
    this.model = model;
    this.kernel = kernel;
    this.timeoutMs = options.timeoutMs ?? 15_000;
    this.maxAgeMs = options.maxAgeMs ?? 5 * 60_000;
    this.now = options.now ?? (() => Date.now());
    this.release = kernel.handle({ token: this.receive });
  }

  /** A token for `room`, or undefined when the kernel's signaller takes none. */
  get = async (room: string): Promise<string | undefined> => {
    if (!this.model.get("_secure") || this.disposed) return undefined;
    const ready = this.ahead.get(room);
    this.ahead.delete(room);
    if (ready !== undefined && this.now() - ready.at < this.maxAgeMs) return ready.token ?? undefined;
    return new Promise<string | undefined>((resolve, reject) => {
      const waiter: Waiter = {
        resolve: (token) => {
          clearTimeout(timer);
          resolve(token);
        },
        reject: (error) => {
          clearTimeout(timer);
          reject(error);
        },
      };
      const timer = setTimeout(() => {
        this.forget(room, waiter);
        const seconds = Math.round(this.timeoutMs / 1000);
        reject(
          new SignalingError(
            "timeout",
            `Room “${room}” needs a join token, and the kernel did not send one within ${seconds} s ` +
              "(a cell may still be running). When the kernel is idle, Connect again.",
          ),
        );
      }, this.timeoutMs);
      const list = this.waiting.get(room) ?? [];
      list.push(waiter);
      this.waiting.set(room, list);
      this.kernel.send({ type: "token_request", room });
    });
  };

  dispose(): void {
    this.disposed = true;
    this.release();
    for (const list of this.waiting.values()) {
      for (const waiter of list) waiter.reject(new SignalingError("disconnected", "The widget was closed."));
    }
    this.waiting.clear();
  }

  private forget(room: string, waiter: Waiter): void {
    const list = (this.waiting.get(room) ?? []).filter((w) => w !== waiter);
    if (list.length > 0) this.waiting.set(room, list);
    else this.waiting.delete(room);
  }

  private readonly receive = ({ room, token }: TokenMessage): void => {
    const list = this.waiting.get(room);
    this.waiting.delete(room);
    if (list === undefined || list.length === 0) {
      this.ahead.set(room, { token, at: this.now() });
      return;
    }
    for (const waiter of list) waiter.resolve(token ?? undefined);
  };
}

/**
 * The standalone page's token: the invite link's `?token=`, for the link's room only. Read once
 * and removed from the address bar (history.replaceState), so that it is not copied from there or
 * shown on a shared screen by accident; the room stays in the address. The tab keeps it in
 * sessionStorage (this tab only, gone when it closes), so a reload still enters.
 */
export function takeUrlToken(
  loc: { search: string; href: string } = location,
  history: Pick<History, "replaceState" | "state"> = window.history,
  storage: Pick<Storage, "getItem" | "setItem"> | null = safeSessionStorage(),
): { room: string | null; token: string | null } {
  const query = new URLSearchParams(loc.search);
  const room = query.get("room");
  let token = query.get("token") || null;
  if (query.has("token")) {
    const url = new URL(loc.href);
    url.searchParams.delete("token");
    history.replaceState(history.state, "", url.href);
  }
  if (room !== null && storage !== null) {
    const key = `ipymeet-token:${room}`;
    if (token !== null) storage.setItem(key, token);
    else token = storage.getItem(key);
  }
  return { room, token };
}

function safeSessionStorage(): Storage | null {
  try {
    return window.sessionStorage;
  } catch {
    return null; // storage disabled (e.g. some privacy settings): a reload then needs the link
  }
}
