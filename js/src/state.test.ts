import { describe, expect, it } from "vitest";
import { Reporter, isActive, reduce, type CallEvent, type Clock } from "./state";
import type { CallState, Model, WidgetModel } from "./types";

function run(events: CallEvent[], start: CallState = "idle"): CallState[] {
  const states = [start];
  for (const event of events) {
    const next = reduce(states[states.length - 1]!, event);
    if (next !== states[states.length - 1]) states.push(next);
  }
  return states;
}

describe("reduce", () => {
  it("goes through a whole call", () => {
    expect(
      run([
        { type: "join" },
        { type: "entered", connected: 0 },
        { type: "connections", connected: 0 },
        { type: "connections", connected: 1 },
        { type: "connections", connected: 2 },
        { type: "connections", connected: 0 },
        { type: "hangup" },
      ]),
    ).toEqual(["idle", "joining", "waiting", "in_call", "waiting", "left"]);
  });

  it("reconnects from a room and comes back to where the connections are", () => {
    expect(
      run([
        { type: "lost" },
        { type: "connections", connected: 0 },
        { type: "entered", connected: 1 },
        { type: "lost" },
        { type: "entered", connected: 0 },
      ], "in_call"),
    ).toEqual(["in_call", "reconnecting", "in_call", "reconnecting", "waiting"]);
    // Only a call in a room can be lost; joining fails instead.
    expect(run([{ type: "lost" }], "joining")).toEqual(["joining"]);
    expect(run([{ type: "hangup" }], "reconnecting")).toEqual(["reconnecting", "left"]);
  });

  it("does not reach in_call before entering", () => {
    expect(run([{ type: "join" }, { type: "connections", connected: 1 }])).toEqual(["idle", "joining"]);
  });

  it("fails only from an active state", () => {
    expect(run([{ type: "join" }, { type: "fail" }])).toEqual(["idle", "joining", "failed"]);
    expect(run([{ type: "fail" }])).toEqual(["idle"]);
    expect(run([{ type: "hangup" }], "failed")).toEqual(["failed"]);
  });

  it("joins again after leaving or failing", () => {
    expect(run([{ type: "join" }], "left")).toEqual(["left", "joining"]);
    expect(run([{ type: "join" }], "failed")).toEqual(["failed", "joining"]);
  });

  it("knows the active states", () => {
    expect((["idle", "joining", "waiting", "in_call", "reconnecting", "left", "failed"] as const).filter(isActive)).toEqual([
      "joining",
      "waiting",
      "in_call",
      "reconnecting",
    ]);
  });
});

class FakeModel implements WidgetModel {
  values: Partial<Model> = { state: "idle", _browser_peers: [] };
  saves: Partial<Model>[] = [];
  private dirty: Partial<Model> = {};
  get<K extends keyof Model>(key: K): Model[K] {
    return this.values[key] as Model[K];
  }
  set<K extends keyof Model>(key: K, value: Model[K]): void {
    this.values[key] = value;
    this.dirty[key] = value;
  }
  on(): void {}
  off(): void {}
  send(): void {}
  save_changes(): void {
    this.saves.push(this.dirty);
    this.dirty = {};
  }
}

class FakeClock implements Clock {
  time = 0;
  timers: { at: number; callback: () => void }[] = [];
  now = () => this.time;
  setTimeout = (callback: () => void, ms: number) => {
    const timer = { at: this.time + ms, callback };
    this.timers.push(timer);
    return timer;
  };
  clearTimeout = (handle: unknown) => {
    this.timers = this.timers.filter((timer) => timer !== handle);
  };
  advance(ms: number) {
    this.time += ms;
    for (const timer of this.timers.filter((t) => t.at <= this.time)) {
      this.timers = this.timers.filter((t) => t !== timer);
      timer.callback();
    }
  }
}

const peers = (connection: RTCPeerConnectionState) => [{ id: "b", name: "", connection, audio: true, video: true, screen: false, speaking: false }];

describe("Reporter", () => {
  it("writes at most once per interval and ends with the latest value", () => {
    const model = new FakeModel();
    const clock = new FakeClock();
    const reporter = new Reporter(model, 250, clock);
    reporter.soon({ _browser_peers: peers("new") });
    reporter.soon({ _browser_peers: peers("connecting") });
    reporter.soon({ _browser_peers: peers("checking" as RTCPeerConnectionState) });
    expect(model.saves).toEqual([{ _browser_peers: peers("new") }]);
    clock.advance(100);
    reporter.soon({ _browser_peers: peers("connected") });
    expect(model.saves).toHaveLength(1);
    clock.advance(150);
    expect(model.saves).toEqual([{ _browser_peers: peers("new") }, { _browser_peers: peers("connected") }]);
  });

  it("writes state transitions at once, with what is pending", () => {
    const model = new FakeModel();
    const clock = new FakeClock();
    const reporter = new Reporter(model, 250, clock);
    reporter.soon({ _browser_peers: peers("new") });
    reporter.soon({ _browser_peers: peers("connected") });
    reporter.now({ state: "in_call" });
    expect(model.saves).toEqual([{ _browser_peers: peers("new") }, { _browser_peers: peers("connected"), state: "in_call" }]);
    clock.advance(1000);
    expect(model.saves).toHaveLength(2);
  });

  it("skips unchanged values", () => {
    const model = new FakeModel();
    const reporter = new Reporter(model, 250, new FakeClock());
    reporter.now({ state: "idle", _browser_peers: [] });
    expect(model.saves).toEqual([]);
  });
});
