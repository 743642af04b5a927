/**
 * The call's states as a pure reducer, and a throttled writer of reports into the model.
 *
 * idle → joining → waiting ⇄ in_call → left; waiting / in_call → reconnecting when the
 * signaller is lost, and back once the room is entered again; any active state → failed when
 * joining cannot succeed. `join` restarts from any state but joining (a changed room while in a
 * call re-joins).
 */
import type { CallState, Model, WidgetModel } from "./types";

export type CallEvent =
  | { type: "join" }
  | { type: "entered"; connected: number }
  | { type: "lost" }
  | { type: "connections"; connected: number }
  | { type: "fail" }
  | { type: "hangup" };

/** The states in which the call holds resources (camera, socket, connections). */
export function isActive(state: CallState): boolean {
  return state === "joining" || state === "waiting" || state === "in_call" || state === "reconnecting";
}

export function reduce(state: CallState, event: CallEvent): CallState {
  switch (event.type) {
    case "join":
      return "joining";
    case "entered":
      if (state !== "joining" && state !== "reconnecting") return state;
      return event.connected > 0 ? "in_call" : "waiting";
    case "lost":
      return state === "waiting" || state === "in_call" ? "reconnecting" : state;
    case "connections":
      if (state === "waiting" && event.connected > 0) return "in_call";
      if (state === "in_call" && event.connected === 0) return "waiting";
      return state;
    case "fail":
      return isActive(state) ? "failed" : state;
    case "hangup":
      return isActive(state) ? "left" : state;
  }
}

export interface Clock {
  now(): number;
  setTimeout(callback: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

const realClock: Clock = {
  now: () => Date.now(),
  setTimeout: (callback, ms) => setTimeout(callback, ms),
  clearTimeout: (handle) => clearTimeout(handle as ReturnType<typeof setTimeout>),
};

/**
 * Writes the browser's reports into the model. `now()` writes at once (state transitions,
 * errors); `soon()` coalesces churn (connection states) into at most one write per interval, and
 * always ends with the latest values. Each write is one `save_changes()`, of changed traits only.
 */
export class Reporter {
  private readonly model: WidgetModel;
  private readonly intervalMs: number;
  private readonly clock: Clock;
  private pending: Partial<Model> = {};
  private timer: unknown = null;
  private lastWrite = -Infinity;

  constructor(model: WidgetModel, intervalMs = 250, clock: Clock = realClock) {
    this.model = model;
    this.intervalMs = intervalMs;
    this.clock = clock;
  }

  now(patch: Partial<Model>): void {
    // Pending values go first, so a newer value in `patch` wins.
    const merged = { ...this.pending, ...patch };
    this.pending = {};
    this.cancel();
    this.write(merged);
  }

  soon(patch: Partial<Model>): void {
    Object.assign(this.pending, patch);
    if (this.timer !== null) return;
    const wait = this.lastWrite + this.intervalMs - this.clock.now();
    if (wait <= 0) {
      this.now({});
      return;
    }
    this.timer = this.clock.setTimeout(() => {
      this.timer = null;
      this.now({});
    }, wait);
  }

  /** Drop what is pending (the model may be gone). */
  dispose(): void {
    this.cancel();
    this.pending = {};
  }

  private cancel(): void {
    if (this.timer !== null) this.clock.clearTimeout(this.timer);
    this.timer = null;
  }

  private write(patch: Partial<Model>): void {
    let changed = false;
    for (const key of Object.keys(patch) as (keyof Model)[]) {
      const value = patch[key];
      if (value === undefined || same(this.model.get(key), value)) continue;
      this.model.set(key, value as never);
      changed = true;
    }
    if (changed) {
      this.lastWrite = this.clock.now();
      this.model.save_changes();
    }
  }
}

function same(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null) return false;
  return JSON.stringify(a) === JSON.stringify(b);
}
