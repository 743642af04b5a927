import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { Call } from "./call";
import { FakeMediaStream, FakeTrack, fakeStream, fromKernel, inRoom, settle, setup } from "./harness";
import type { LocalMedia } from "./media";
import { PageModel } from "./page";
import { connectFirst } from "./signaling";
import type { SignalingTransport, TransportListener } from "./transport";

// The Call logs failed steps with console.warn for developers; keep the test output readable.
beforeEach(() => {
  vi.spyOn(console, "warn").mockImplementation(() => undefined);
});
afterEach(() => {
  vi.restoreAllMocks();
});

describe("Call", () => {
  it("goes through a whole call and reports it", async () => {
    const { model, states, server, peers, tracks, join, connectedWith } = setup();
    join();
    await settle();
    expect(connectedWith).toEqual(["k1"]);
    expect(model.get("connected_via")).toBe("http://127.0.0.1:8765");
    expect(model.get("state")).toBe("waiting");

    server.serve("peer_joined", { id: "zed", name: "Grace" });
    expect(peers).toHaveLength(1);
    expect(peers[0]!.options).toMatchObject({ selfId: "me", peerId: "zed", initiator: false });
    peers[0]!.become("connecting");
    peers[0]!.become("connected");
    expect(model.get("state")).toBe("in_call");
    expect(model.get("_browser_peers")).toEqual([{ id: "zed", name: "Grace", connection: "connected", audio: true, video: true, screen: false, speaking: false }]);

    server.serve("signal", { from: "zed", description: { type: "offer", sdp: "v=0" } });
    expect(peers[0]!.received).toEqual([{ from: "zed", description: { type: "offer", sdp: "v=0" } }]);

    model.set("audio", false);
    expect(tracks.find((t) => t.kind === "audio")!.enabled).toBe(false);

    server.serve("peer_left", { id: "zed" });
    expect(peers[0]!.closed).toBe(true);
    expect(model.get("state")).toBe("waiting");

    model.set("_desired", false);
    await settle();
    expect(model.get("state")).toBe("left");
    expect(model.get("_browser_peers")).toEqual([]);
    expect(model.get("connected_via")).toBe("");
    expect(tracks.every((t) => t.stopped)).toBe(true);
    expect(server.requests).toEqual(["enter", "leave"]);
    expect(server.disconnected).toBe(true);
    expect(states).toEqual(["idle", "joining", "waiting", "in_call", "waiting", "left"]);
  });

  it("fails on a full room, says so plainly and reports the attempt ended in `_call_ended`", async () => {
    const { model, states, server, join, tracks } = setup();
    server.enterAnswer = { ok: false, code: "room_full", message: "room 'lab-42' is full (it holds 2)" };
    join();
    await settle();
    expect(states).toEqual(["idle", "joining", "failed"]);
    expect(model.get("error_code")).toBe("room_full");
    expect(model.get("error")).toBe("Room “lab-42” is full (it holds 2). Pick another room name.");
    expect(model.get("_call_ended")).toBe(model.get("_joins"));
    expect(model.get("_desired")).toBe(true); // Python's to set back (page.ts's followTheCall in page mode)
    expect(tracks.every((t) => t.stopped)).toBe(true);
    expect(server.disconnected).toBe(true);
  });

  it("fails when no route answers, listing what it tried", async () => {
    const { model, join } = setup({
      connect: async () => {
        throw new Error("refused");
      },
    });
    join();
    await settle();
    expect(model.get("state")).toBe("failed");
    expect(model.get("error_code")).toBe("unreachable");
    expect(model.get("error")).toBe(
      "Can't reach the ipymeet signaller (tried: http://127.0.0.1:8765). Is the kernel running?",
    );
  });

  it("fails on a bad room name without connecting", async () => {
    const { model, join, connectedWith } = setup();
    model.set("room", "no spaces");
    join();
    await settle();
    expect(model.get("state")).toBe("failed");
    expect(model.get("error_code")).toBe("bad_request");
    expect(connectedWith).toEqual([]);
  });

  it("keeps the call when the signaller connection drops, reconnects and enters again as itself", async () => {
    const { model, server, join, states, peers } = setup();
    join();
    await settle();
    server.serve("peer_joined", { id: "zed", name: "Grace" });
    peers[0]!.become("connected");
    peers[0]!.open();
    server.drop();
    expect(model.get("state")).toBe("reconnecting");
    expect(peers[0]!.closed).toBe(false); // the media keeps flowing
    expect(model.get("_browser_peers")).toHaveLength(1);
    server.enterAnswer = { ok: true, self: "me", peers: [{ id: "zed", name: "Grace" }], capacity: 4, ice_servers: [] };
    await settle();
    expect(server.enters).toHaveLength(2);
    expect(server.enters[1]!.session).toBe(server.enters[0]!.session);
    expect(String(server.enters[0]!.session)).toMatch(/^[0-9a-f]{48}$/);
    // Still answering on its channel: the connection is kept, no new one made.
    const ping = peers[0]!.sentMessages().find((m) => m.t === "ping")!;
    peers[0]!.deliver({ t: "pong", id: ping.id });
    await settle();
    expect(peers).toHaveLength(1);
    expect(peers[0]!.closed).toBe(false);
    expect(peers[0]!.resynced).toBe(1); // an offer lost meanwhile goes out again
    expect(states).toEqual(["idle", "joining", "waiting", "in_call", "reconnecting", "in_call"]);
    expect(model.get("error")).toBe("");
  });

  it("retries with growing pauses while the signaller is out of reach, and says so after a while", async () => {
    vi.useFakeTimers();
    try {
      let now = 1_700_000_000_000;
      const { model, server, join } = setup({ now: () => now });
      join();
      await vi.advanceTimersByTimeAsync(10);
      server.reachable = false;
      server.drop();
      const attempts = (): number => server.listeners.get("connect_error")?.size ?? 0;
      let tries = 0;
      const countTries = () => tries++;
      server.on("connect_error", countTries);
      for (let second = 0; second < 16; second++) {
        now += 1000;
        await vi.advanceTimersByTimeAsync(1000);
      }
      // Pauses of 0, then 0.25 s eight times (a kernel's takeover), then 0.5, 1, 2, 4 s (±25%), then
      // ~5 s: about 14 attempts in 16 s, not hundreds.
      expect(tries).toBeGreaterThanOrEqual(11);
      expect(tries).toBeLessThanOrEqual(16);
      expect(attempts()).toBeLessThanOrEqual(2); // no listener left behind per attempt
      expect(model.get("state")).toBe("reconnecting");
      expect(model.get("error_code")).toBe("disconnected");
      expect(model.get("error")).toMatch(/trying again/);
      server.reachable = true;
      now += 6000;
      await vi.advanceTimersByTimeAsync(6000);
      expect(model.get("state")).toBe("waiting");
      expect(model.get("error")).toBe("");
    } finally {
      vi.useRealTimers();
    }
  });

  it("ends the call when entering again is refused for good", async () => {
    const { model, server, join } = setup();
    join();
    await settle();
    server.drop();
    server.enterAnswer = { ok: false, code: "room_full", message: "room 'lab-42' is full (it holds 2)" };
    await settle();
    expect(model.get("state")).toBe("failed");
    expect(model.get("error_code")).toBe("room_full");
  });

  it("fails at once when the connection drops before the room is entered", async () => {
    const { model, server, join, states } = setup({ media: () => new Promise(() => undefined) });
    join();
    await settle();
    server.drop();
    expect(states).toEqual(["idle", "joining", "failed"]);
    expect(model.get("error_code")).toBe("disconnected");
    expect(model.get("_call_ended")).toBe(1);
  });

  it("joins receive-only with the camera warning kept", async () => {
    const { model, join } = setup({
      media: async () => ({ stream: null, warning: { code: "camera_denied", message: "blocked" } }),
    });
    model.set("error", "old problem");
    join();
    await settle();
    expect(model.get("state")).toBe("waiting");
    expect(model.get("error_code")).toBe("camera_denied");
    expect(model.get("error")).toBe("blocked");
  });

  it("stops a camera stream that arrives after Hang up", async () => {
    const { stream, tracks } = fakeStream();
    let resolveMedia!: (media: LocalMedia) => void;
    const { model, join, states } = setup({ media: () => new Promise((resolve) => (resolveMedia = resolve)) });
    join();
    await settle();
    model.set("_desired", false);
    resolveMedia({ stream, warning: null });
    await settle();
    expect(tracks.every((t) => t.stopped)).toBe(true);
    expect(states).toEqual(["idle", "joining", "left"]);
  });

  it("tells each subscriber only of its topic", async () => {
    const { server, join, peers, call, model } = setup({ statsIntervalMs: 20 });
    const heard: Record<string, number> = { local: 0, members: 0, stats: 0, chat: 0 };
    const stops = (["local", "members", "stats", "chat"] as const).map((topic) => call.subscribe(topic, () => heard[topic]!++));
    join();
    await settle();
    const reset = () => Object.keys(heard).forEach((key) => (heard[key] = 0));
    reset();
    server.serve("peer_joined", { id: "zed", name: "Grace" });
    expect(heard).toEqual({ members: 1, local: 0, stats: 0, chat: 0 });
    reset();
    peers[0]!.open();
    call.sendChat("hi");
    expect(heard).toEqual({ chat: 1, members: 0, stats: 0, local: 0 });
    reset();
    model.set("audio", false);
    expect(heard).toEqual({ local: 1, members: 0, stats: 0, chat: 0 });
    reset();
    await vi.waitFor(() => expect(heard.stats).toBeGreaterThan(0));
    expect(heard).toMatchObject({ local: 0, members: 0, chat: 0 });
    for (const stop of stops) stop();
    reset();
    server.serve("peer_left", { id: "zed" });
    expect(heard).toEqual({ members: 0, local: 0, stats: 0, chat: 0 });
  });

  it("one writer: a stale in-call state from an earlier page becomes left", () => {
    const model = new PageModel({ state: "in_call", _browser_peers: [{ id: "x", name: "", connection: "connected", audio: true, video: true, screen: false, speaking: false }] });
    new Call(model, { routes: () => [] }).start();
    expect(model.get("state")).toBe("left");
    expect(model.get("_browser_peers")).toEqual([]);
  });
});

describe("Call: the kernel's custom messages", () => {
  it("answers the kernel's custom messages: chat is sent, the unknown answered with an error", async () => {
    const { model, peers, sent } = await inRoom(["a"]);
    peers[0]!.open();
    const custom = (content: unknown) => fromKernel(model, content);
    custom({ type: "chat", text: "from python" });
    expect(peers[0]!.sentMessages().at(-1)).toMatchObject({ t: "chat", text: "from python", name: "Ada" });
    expect(sent.at(-1)).toMatchObject({ type: "chat", text: "from python", from: "me", mine: true });
    custom({ type: "teleport" });
    expect(sent.at(-1)).toEqual({ type: "error", message: 'unknown message type "teleport"' });
    custom({ type: "chat", text: 42 });
    expect(sent.at(-1)).toEqual({ type: "error", message: "a chat message needs a non-empty text" });
    model.set("_desired", false);
    await settle();
    custom({ type: "chat", text: "too late" });
    expect(sent.at(-1)).toEqual({ type: "error", message: "chat not sent: not in a room: join first, then send" });
  });
});

describe("Call: one writer per trait", () => {
  /** The intent traits: Python's and the view's controls', never the Call's. */
  const INTENT = ["room", "name", "audio", "video", "screen", "camera", "microphone", "_desired", "_joins"];

  /** Records every trait the Call writes; the test's own writes go through `ask`. */
  function watchWrites(model: PageModel) {
    const writes: string[] = [];
    let asking = false;
    const set = model.set.bind(model);
    vi.spyOn(model, "set").mockImplementation((key, value) => {
      if (!asking) writes.push(key);
      set(key, value);
    });
    const ask = (key: "screen" | "_desired" | "_joins" | "room", value: boolean | number | string) => {
      asking = true;
      try {
        set(key as never, value as never);
      } finally {
        asking = false;
      }
    };
    const join = () => {
      ask("_joins", model.get("_joins") + 1);
      ask("_desired", true);
    };
    return { writes, ask, join, intent: () => writes.filter((key) => INTENT.includes(key)) };
  }

  it("never writes an intent across a failed join: it says which attempt ended in `_call_ended`", async () => {
    const { model } = setup({
      connect: async () => {
        throw new Error("refused");
      },
    });
    const { writes, join, intent } = watchWrites(model);
    join();
    await settle();
    expect(model.get("state")).toBe("failed");
    expect(intent()).toEqual([]);
    expect(writes).toContain("_call_ended");
    expect(model.get("_call_ended")).toBe(1);
  });

  it("never writes an intent on a full room, and stays out while `_call_ended` is `_joins`", async () => {
    const { model, server, states } = setup();
    server.enterAnswer = { ok: false, code: "room_full", message: "room 'lab-42' is full (it holds 2)" };
    const { join, intent, ask } = watchWrites(model);
    join();
    await settle();
    expect(intent()).toEqual([]);
    expect([model.get("_desired"), model.get("_joins"), model.get("_call_ended")]).toEqual([true, 1, 1]);
    // Nothing new asked for: a changed room, or a second page on the same model, stays out.
    ask("room", "lab-43");
    new Call(model, { routes: () => ["http://127.0.0.1:8765"] }).start();
    await settle();
    expect(server.enters).toHaveLength(1);
    expect(states).toEqual(["idle", "joining", "failed"]);
  });

  it("joins again on a new `_joins` after a call it ended, even with `_desired` still true", async () => {
    const { model, server, states } = setup();
    server.enterAnswer = { ok: false, code: "room_full", message: "room 'lab-42' is full" };
    const { join, intent } = watchWrites(model);
    join();
    await settle();
    expect(model.get("_desired")).toBe(true);
    server.enterAnswer = { ok: true, self: "me", peers: [], capacity: 4, ice_servers: [] };
    join(); // Connect again: `_joins` 2, `_desired` true already
    await settle();
    expect(server.enters).toHaveLength(2);
    expect(states).toEqual(["idle", "joining", "failed", "joining", "waiting"]);
    expect(model.get("error")).toBe("");
    expect(intent()).toEqual([]);
  });

  it("never writes `screen`: a share that ends, is refused or cannot start counts in `_screen_ended`", async () => {
    vi.stubGlobal("MediaStream", FakeMediaStream);
    try {
      const ended = new Set<() => void>();
      const screen = Object.assign(new FakeTrack("video"), {
        addEventListener: (_event: string, listener: () => void) => ended.add(listener),
      });
      let refuse = false;
      const { model } = setup({
        openScreen: async () => {
          if (refuse) throw Object.assign(new Error("denied"), { name: "NotAllowedError" });
          return new FakeMediaStream([screen]) as unknown as MediaStream;
        },
      });
      const { ask, join, intent } = watchWrites(model);
      ask("screen", true); // outside a call: it cannot start
      expect(model.get("_screen_ended")).toBe(1);
      expect(model.get("error")).toBe("Join a room first, then share your screen.");
      ask("screen", false);
      join();
      await settle();
      ask("screen", true);
      await settle();
      for (const listener of ended) listener(); // the browser's "Stop sharing"
      expect(model.get("_screen_ended")).toBe(2);
      ask("screen", false);
      refuse = true;
      ask("screen", true);
      await settle();
      expect(model.get("_screen_ended")).toBe(3);
      expect(model.get("error_code")).toBe("screen_denied");
      ask("_desired", false); // Hang up with `screen` still asked for: it stopped with the call
      await settle();
      expect(model.get("_screen_ended")).toBe(4);
      expect(model.get("screen")).toBe(true);
      expect(intent()).toEqual([]);
    } finally {
      vi.unstubAllGlobals();
    }
  });
});

describe("Call: over another transport", () => {
  /** A transport of its own (no Socket.IO): the call logic does not know the difference. */
  class MemoryTransport implements SignalingTransport {
    readonly url = "memory://signaller";
    connected = false;
    requests: string[] = [];
    listener: TransportListener | null = null;
    async connect() {
      this.connected = true;
    }
    request(event: string, _payload: unknown, answer: (reply: unknown) => void) {
      this.requests.push(event);
      const reply = event === "enter" ? { ok: true, self: "me", peers: [{ id: "zed", name: "Grace" }], capacity: 4, ice_servers: [] } : { ok: true };
      queueMicrotask(() => answer(reply));
    }
    send() {}
    listen(listener: TransportListener) {
      this.listener = listener;
      return () => {
        this.listener = null;
      };
    }
    disconnect() {
      this.connected = false;
    }
  }

  it("goes through a call with the route trial's transport, whatever it is", async () => {
    const transport = new MemoryTransport();
    const { model, peers, join } = setup({
      connect: (urls, options) => connectFirst(urls, { ...options, open: () => transport }),
    });
    join();
    await settle();
    expect(model.get("connected_via")).toBe("memory://signaller");
    expect(model.get("state")).toBe("waiting");
    expect(peers.map((p) => p.options.peerId)).toEqual(["zed"]);
    transport.listener!.event("peer_joined", { id: "ann", name: "Ann" });
    expect(peers.map((p) => p.options.peerId)).toEqual(["zed", "ann"]);
    model.set("_desired", false);
    await settle();
    expect(transport.requests).toEqual(["enter", "leave"]);
    expect(transport.connected).toBe(false);
    expect(transport.listener).toBeNull();
  });
});
