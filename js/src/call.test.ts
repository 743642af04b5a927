import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { Call, type CallDeps } from "./call";
import type { LocalMedia } from "./media";
import { PageModel } from "./page";
import type { Peer, PeerOptions } from "./peer";
import type { SocketLike } from "./signaling";
import type { CallState } from "./types";

// The Call logs failed steps with console.warn for developers; keep the test output readable.
beforeEach(() => {
  vi.spyOn(console, "warn").mockImplementation(() => undefined);
});
afterEach(() => {
  vi.restoreAllMocks();
});

const settle = async () => {
  for (let i = 0; i < 10; i++) await new Promise<void>((resolve) => setTimeout(resolve, 0));
};

type Listener = (...args: any[]) => void;

/** A signaller on the other end of a fake socket, answering enter/leave/signal. */
class FakeServer implements SocketLike {
  listeners = new Map<string, Set<Listener>>();
  requests: string[] = [];
  /** The payloads of the `enter` requests, in order. */
  enters: Record<string, unknown>[] = [];
  disconnected = false;
  connected = true;
  /** Whether `connect()` (a reconnection) succeeds. */
  reachable = true;
  connect() {
    queueMicrotask(() => {
      this.connected = this.reachable;
      this.serve(this.reachable ? "connect" : "connect_error", new Error("refused"));
    });
  }
  enterAnswer: unknown = { ok: true, self: "me", peers: [], capacity: 4, ice_servers: [] };
  on(event: string, listener: Listener) {
    if (!this.listeners.has(event)) this.listeners.set(event, new Set());
    this.listeners.get(event)!.add(listener);
  }
  off(event: string, listener: Listener) {
    this.listeners.get(event)?.delete(listener);
  }
  /** `frame` events (no acknowledgement): [metadata, chunk?]. */
  frames: [Record<string, unknown>, ArrayBuffer | undefined][] = [];
  emit(event: string, _payload: unknown, ack: Listener) {
    if (event === "frame") {
      this.frames.push([_payload as Record<string, unknown>, ack as unknown as ArrayBuffer | undefined]);
      return;
    }
    this.requests.push(event);
    if (event === "enter") this.enters.push(_payload as Record<string, unknown>);
    queueMicrotask(() => ack(event === "enter" ? this.enterAnswer : { ok: true }));
  }
  disconnect() {
    this.disconnected = true;
    this.connected = false;
  }
  /** The connection drops (the server's end). */
  drop(reason = "transport close") {
    this.connected = false;
    this.serve("disconnect", reason);
  }
  serve(event: string, ...args: unknown[]) {
    for (const listener of [...(this.listeners.get(event) ?? [])]) listener(...args);
  }
}

class FakePeer {
  connectionState: RTCPeerConnectionState = "new";
  remoteStream: MediaStream | null = null;
  /** replaceTrack calls: [kind, track]. */
  replaced: [string, unknown][] = [];
  async replaceTrack(kind: string, track: unknown) {
    this.replaced.push([kind, track]);
  }
  closed = false;
  received: unknown[] = [];
  channelOpen = false;
  /** What went out on the data channel. */
  data: string[] = [];
  caps: (number | null)[] = [];
  statsCalls = 0;
  report = new Map<string, Record<string, unknown>>();
  recovered = 0;
  /** What `isFromAnotherConnection` says. */
  anotherConnection = false;
  constructor(readonly options: PeerOptions) {}
  recover() {
    this.recovered++;
  }
  resynced = 0;
  resync() {
    this.resynced++;
  }
  isFromAnotherConnection() {
    return this.anotherConnection;
  }
  receive(message: unknown) {
    this.received.push(message);
  }
  close() {
    this.closed = true;
    this.channelOpen = false;
  }
  become(state: RTCPeerConnectionState) {
    this.connectionState = state;
    this.options.onConnectionState(state);
  }
  sendData(data: string) {
    if (!this.channelOpen) return false;
    this.data.push(data);
    return true;
  }
  open() {
    this.channelOpen = true;
    this.options.onChannelOpen?.();
  }
  /** A message from the other side. */
  deliver(message: unknown) {
    this.options.onChannelMessage?.(typeof message === "string" ? message : JSON.stringify(message));
  }
  sentMessages() {
    return this.data.map((d) => JSON.parse(d) as Record<string, unknown>);
  }
  setMaxVideoBitrate(cap: number | null) {
    this.caps.push(cap);
  }
  async getStats() {
    this.statsCalls++;
    return this.report as unknown as RTCStatsReport;
  }
}

class FakeTrack {
  enabled = true;
  stopped = false;
  constructor(readonly kind: string) {}
  stop() {
    this.stopped = true;
  }
}

/** A MediaStream of fake tracks (for streams made during a call: the screen, a new camera). */
class FakeMediaStream {
  constructor(readonly tracks: FakeTrack[]) {}
  getTracks() {
    return this.tracks;
  }
  getAudioTracks() {
    return this.tracks.filter((t) => t.kind === "audio");
  }
  getVideoTracks() {
    return this.tracks.filter((t) => t.kind === "video");
  }
}

function fakeStream() {
  const tracks = [new FakeTrack("audio"), new FakeTrack("video")];
  const stream = new FakeMediaStream(tracks) as unknown as MediaStream;
  return { stream, tracks };
}

function setup(
  options: {
    media?: () => Promise<LocalMedia>;
    connect?: CallDeps["connect"];
    statsIntervalMs?: number;
    captureFrame?: CallDeps["captureFrame"];
    openScreen?: CallDeps["openScreen"];
    devices?: CallDeps["devices"];
    now?: () => number;
  } = {},
) {
  const model = new PageModel({ room: "lab-42", name: "Ada", _client: "k1", signaling_url: "http://127.0.0.1:8765" });
  const states: CallState[] = [model.get("state")];
  model.on("change:state", () => states.push(model.get("state")));
  const server = new FakeServer();
  const peers: FakePeer[] = [];
  const { stream, tracks } = fakeStream();
  const connectedWith: unknown[] = [];
  const call = new Call(model, {
    routes: (m) => [m.get("signaling_url")],
    connect:
      options.connect ??
      (async (urls, connectOptions) => {
        connectedWith.push(connectOptions.client);
        return { socket: server, url: urls[0]! };
      }),
    openMedia: options.media ?? (async () => ({ stream, warning: null })),
    createPeer: (peerOptions) => {
      const peer = new FakePeer(peerOptions);
      peers.push(peer);
      return peer as unknown as Peer;
    },
    unreachableHint: "Is the kernel running?",
    statsIntervalMs: options.statsIntervalMs ?? 60_000,
    now: options.now ?? (() => 1_700_000_000_000),
    ...(options.captureFrame ? { captureFrame: options.captureFrame } : {}),
    ...(options.openScreen ? { openScreen: options.openScreen } : {}),
    devices: options.devices ?? { enumerate: async () => [], getUserMedia: () => Promise.reject(new Error("no")), watch: () => () => undefined },
  });
  const sent: unknown[] = [];
  const buffers: unknown[] = [];
  model.send = (content, _callbacks, sentBuffers) => {
    sent.push(content);
    buffers.push(sentBuffers);
  };
  call.start();
  const join = () => model.set("_desired", true);
  return { model, states, server, peers, tracks, stream, call, join, connectedWith, sent, buffers };
}

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
    expect(model.get("_browser_peers")).toEqual([{ id: "zed", name: "Grace", connection: "connected", audio: true, video: true, screen: false }]);

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

  it("offers to the members listed in the enter answer, after learning its own id", async () => {
    const { server, peers, join } = setup();
    server.enterAnswer = { ok: true, self: "me", peers: [{ id: "a", name: "A" }, { id: "b", name: "" }], capacity: 4, ice_servers: [{ urls: "stun:x" }] };
    join();
    await settle();
    expect(peers.map((p) => [p.options.peerId, p.options.initiator, p.options.selfId])).toEqual([
      ["a", true, "me"],
      ["b", true, "me"],
    ]);
    expect(peers[0]!.options.iceServers).toEqual([{ urls: "stun:x" }]);
  });

  it("fails on a full room, says so plainly and resets _desired", async () => {
    const { model, states, server, join, tracks } = setup();
    server.enterAnswer = { ok: false, code: "room_full", message: "room 'lab-42' is full (it holds 2)" };
    join();
    await settle();
    expect(states).toEqual(["idle", "joining", "failed"]);
    expect(model.get("error_code")).toBe("room_full");
    expect(model.get("error")).toBe("Room “lab-42” is full (it holds 2). Pick another room name.");
    expect(model.get("_desired")).toBe(false);
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
      // Pauses of 0, 0.25, 0.5, 1, 2, 4 s (±25%), then ~5 s: about 8 attempts in 16 s, not hundreds.
      expect(tries).toBeGreaterThanOrEqual(5);
      expect(tries).toBeLessThanOrEqual(9);
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
    expect(model.get("_desired")).toBe(false);
  });

  it("drops a member whose page no longer answers after its signalling dropped", async () => {
    const { server, join, peers, call } = setup();
    join();
    await settle();
    server.serve("peer_joined", { id: "gone", name: "A" });
    server.serve("peer_joined", { id: "back", name: "B" });
    server.serve("peer_joined", { id: "quit", name: "C" });
    for (const peer of peers) {
      peer.become("connected");
      peer.open();
    }
    peers[0]!.channelOpen = false; // a closed tab: its channel is closed
    (peers[0] as unknown as { channelClosed: boolean }).channelClosed = true;
    server.serve("peer_left", { id: "gone", reason: "disconnected" });
    server.serve("peer_left", { id: "back", reason: "disconnected" });
    server.serve("peer_left", { id: "quit", reason: "left" });
    expect(peers[2]!.closed).toBe(true); // hung up: gone at once
    await settle();
    expect(peers[0]!.closed).toBe(true);
    expect(call.remotePeers.map((p) => [p.id, p.away])).toEqual([["back", true]]);
    const ping = peers[1]!.sentMessages().find((m) => m.t === "ping")!;
    peers[1]!.deliver({ t: "pong", id: ping.id });
    await settle();
    server.serve("peer_joined", { id: "back", name: "B" });
    expect(call.remotePeers.map((p) => [p.id, p.away])).toEqual([["back", false]]);
    expect(peers).toHaveLength(3); // the same connection
  });

  it("keeps a member whose connection is down when its signalling drops, and restarts ICE", async () => {
    const { server, join, peers, call } = setup();
    join();
    await settle();
    server.serve("peer_joined", { id: "far", name: "F" });
    peers[0]!.open();
    peers[0]!.become("disconnected"); // the network between the two is gone
    server.serve("peer_left", { id: "far", reason: "disconnected" });
    await new Promise((resolve) => setTimeout(resolve, 1100)); // the ping's time runs out
    expect(peers[0]!.closed).toBe(false);
    expect(peers[0]!.recovered).toBe(1);
    expect(call.remotePeers.map((p) => [p.id, p.away])).toEqual([["far", true]]);
    // ICE restarts never bring it back: the member goes (it is not in the room).
    peers[0]!.options.onGiveUp!();
    expect(peers[0]!.closed).toBe(true);
    expect(call.remotePeers).toEqual([]);
  });

  it("drops an away member at once when its page closes the connection", async () => {
    const { server, join, peers, call } = setup();
    join();
    await settle();
    server.serve("peer_joined", { id: "zed", name: "Grace" });
    peers[0]!.open();
    peers[0]!.options.onChannelClose!(); // while present: its new connection's offer will follow
    expect(call.remotePeers).toHaveLength(1);
    server.serve("peer_left", { id: "zed", reason: "disconnected" });
    peers[0]!.options.onChannelClose!();
    expect(peers[0]!.closed).toBe(true);
    expect(call.remotePeers).toEqual([]);
  });

  it("hides a member that vanished without a word, and takes it back on the same connection", async () => {
    vi.useFakeTimers();
    try {
      const { server, join, peers, call } = setup();
      join();
      await vi.advanceTimersByTimeAsync(10);
      server.serve("peer_joined", { id: "crash", name: "C" });
      server.serve("peer_joined", { id: "moved", name: "M" });
      for (const peer of peers) {
        peer.become("connected");
        peer.open();
      }
      server.serve("peer_left", { id: "crash", reason: "disconnected" });
      server.serve("peer_left", { id: "moved", reason: "disconnected" });
      await vi.advanceTimersByTimeAsync(1100); // no pong from either
      expect(call.remotePeers).toEqual([]); // out of view within the ping's second
      expect(peers.map((p) => p.closed)).toEqual([false, false]); // the connections linger
      server.serve("peer_joined", { id: "moved", name: "M" }); // its network came back
      expect(call.remotePeers.map((p) => p.id)).toEqual(["moved"]);
      expect(peers[1]!.recovered).toBeGreaterThan(0);
      await vi.advanceTimersByTimeAsync(30_000);
      expect(peers.map((p) => p.closed)).toEqual([true, false]); // the crashed one never came back
    } finally {
      vi.useRealTimers();
    }
  });

  it("answers a ping with a pong", async () => {
    const { server, join, peers } = setup();
    join();
    await settle();
    server.serve("peer_joined", { id: "zed", name: "Grace" });
    peers[0]!.open();
    peers[0]!.deliver({ t: "ping", id: "p1" });
    expect(peers[0]!.sentMessages().at(-1)).toEqual({ t: "pong", id: "p1" });
  });

  it("replaces a connection when the other page offers from a new one", async () => {
    const { server, join, peers } = setup();
    join();
    await settle();
    server.serve("peer_joined", { id: "zed", name: "Grace" });
    peers[0]!.anotherConnection = true;
    const offer = { from: "zed", description: { type: "offer", sdp: "v=0 new" } };
    server.serve("signal", offer);
    expect(peers[0]!.closed).toBe(true);
    expect(peers).toHaveLength(2);
    expect(peers[1]!.options.initiator).toBe(false);
    expect(peers[1]!.received).toEqual([offer]);
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

  it("tells each subscriber only of its topics; the topic-less form hears all", async () => {
    const { server, join, peers, call, model } = setup({ statsIntervalMs: 20 });
    const heard: Record<string, number> = { local: 0, members: 0, stats: 0, chat: 0, all: 0 };
    for (const topic of ["local", "members", "stats", "chat"] as const) call.subscribe(topic, () => heard[topic]!++);
    const stop = call.subscribe(() => heard.all!++);
    join();
    await settle();
    const reset = () => Object.keys(heard).forEach((key) => (heard[key] = 0));
    reset();
    server.serve("peer_joined", { id: "zed", name: "Grace" });
    expect(heard).toMatchObject({ members: 1, local: 0, stats: 0, chat: 0, all: 1 });
    reset();
    peers[0]!.open();
    call.sendChat("hi");
    expect(heard).toMatchObject({ chat: 1, members: 0, stats: 0, all: 1 });
    reset();
    model.set("audio", false);
    expect(heard).toMatchObject({ local: 1, members: 0, stats: 0, chat: 0 });
    reset();
    await vi.waitFor(() => expect(heard.stats).toBeGreaterThan(0));
    expect(heard).toMatchObject({ local: 0, members: 0, chat: 0 });
    stop();
    reset();
    server.serve("peer_left", { id: "zed" });
    expect(heard).toMatchObject({ members: 1, all: 0 });
  });

  it("one writer: a stale in-call state from an earlier page becomes left", () => {
    const model = new PageModel({ state: "in_call", _browser_peers: [{ id: "x", name: "", connection: "connected", audio: true, video: true, screen: false }] });
    new Call(model, { routes: () => [] }).start();
    expect(model.get("state")).toBe("left");
    expect(model.get("_browser_peers")).toEqual([]);
  });
});

const wait = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Join with members already in the room (this side offers to each). */
async function inRoom(ids: string[], options: Parameters<typeof setup>[0] = {}) {
  const context = setup(options);
  context.server.enterAnswer = {
    ok: true,
    self: "me",
    peers: ids.map((id) => ({ id, name: id.toUpperCase() })),
    capacity: 6,
    ice_servers: [],
  };
  context.join();
  await settle();
  return context;
}

describe("Call: mute flags, chat and quality", () => {
  it("tells each peer its mute flags when the channel opens and on every change", async () => {
    const { model, peers } = await inRoom(["a"]);
    const [a] = peers;
    a!.open();
    expect(a!.sentMessages()).toEqual([{ t: "state", audio: true, video: true, screen: false }]);
    model.set("video", false);
    model.set("video", false);
    model.set("audio", false);
    expect(a!.sentMessages().slice(1)).toEqual([
      { t: "state", audio: true, video: false, screen: false },
      { t: "state", audio: false, video: false, screen: false },
    ]);
  });

  it("keeps each peer's flags (true until told) and reports them in _browser_peers", async () => {
    const { model, peers, call } = await inRoom(["a", "b"]);
    expect(call.remotePeers.map((p) => [p.id, p.audio, p.video])).toEqual([
      ["a", true, true],
      ["b", true, true],
    ]);
    peers[0]!.deliver({ t: "state", audio: false, video: true });
    peers[1]!.deliver({ t: "state", audio: "no", video: true }); // junk: ignored
    peers[1]!.deliver("not json");
    await wait(300);
    expect(model.get("_browser_peers")).toEqual([
      { id: "a", name: "A", connection: "new", audio: false, video: true, screen: false },
      { id: "b", name: "B", connection: "new", audio: true, video: true, screen: false },
    ]);
  });

  it("sends chat to every member, queued until each channel opens, in order", async () => {
    const { peers, call } = await inRoom(["a", "b"]);
    const [a, b] = peers;
    a!.open();
    expect(call.sendChat("one")).toBe(true);
    expect(call.sendChat("two")).toBe(true);
    const texts = (peer: FakePeer) => peer.sentMessages().filter((m) => m.t === "chat").map((m) => m.text);
    expect(texts(a!)).toEqual(["one", "two"]);
    expect(b!.data).toEqual([]);
    b!.open();
    expect(b!.sentMessages()[0]).toEqual({ t: "state", audio: true, video: true, screen: false });
    expect(texts(b!)).toEqual(["one", "two"]);
    const [first] = b!.sentMessages().filter((m) => m.t === "chat");
    expect(first).toEqual({ t: "chat", id: expect.stringMatching(/^[0-9a-f]{24}$/), name: "Ada", text: "one", time: 1_700_000_000_000 });
  });

  it("sends a queued line only to the members present when it was written", async () => {
    const { server, peers, call } = await inRoom(["a"]);
    call.sendChat("before c");
    server.serve("peer_joined", { id: "c", name: "C" });
    call.sendChat("after c");
    peers[0]!.open();
    peers[1]!.open();
    const texts = (peer: FakePeer) => peer.sentMessages().filter((m) => m.t === "chat").map((m) => m.text);
    expect(texts(peers[0]!)).toEqual(["before c", "after c"]);
    expect(texts(peers[1]!)).toEqual(["after c"]);
  });

  it("records chat once per id, in `messages` and to the kernel, own lines marked", async () => {
    const { model, peers, call, sent } = await inRoom(["a", "b"]);
    const line = { t: "chat", id: "x1", name: "Grace", text: "hi", time: 5 };
    peers[0]!.deliver(line);
    peers[1]!.deliver(line); // the same id again: dropped
    peers[1]!.deliver({ t: "chat", id: "x2", name: "", text: "x".repeat(2500), time: 6 });
    peers[1]!.deliver({ t: "chat", id: "x3", name: "B", text: "   ", time: 7 }); // blank: junk
    call.sendChat("mine");
    await wait(300);
    const messages = model.get("messages");
    expect(messages.map((m) => [m.id, m.from, m.name, m.text.length, m.mine])).toEqual([
      ["x1", "a", "Grace", 2, false],
      ["x2", "b", "B", 2000, false], // no name given: the signaller's name; text capped
      [expect.any(String), "me", "Ada", 4, true],
    ]);
    expect(sent).toEqual(messages.map((m) => ({ type: "chat", ...m })));
  });

  it("holds lines written while joining until the room is entered", async () => {
    let resolveMedia!: (media: LocalMedia) => void;
    const context = setup({ media: () => new Promise((resolve) => (resolveMedia = resolve)) });
    context.server.enterAnswer = { ok: true, self: "me", peers: [{ id: "a", name: "A" }], capacity: 6, ice_servers: [] };
    context.join();
    await settle();
    expect(context.call.sendChat("early")).toBe(true);
    resolveMedia({ stream: null, warning: null });
    await settle();
    context.peers[0]!.open();
    expect(context.peers[0]!.sentMessages()).toEqual([
      { t: "state", audio: false, video: false, screen: false }, // receive-only: shown as off
      expect.objectContaining({ t: "chat", text: "early" }),
    ]);
    expect(context.call.messages.map((m) => [m.from, m.text])).toEqual([["me", "early"]]);
  });

  it("refuses chat outside a room, and blank chat", async () => {
    const { call } = setup();
    expect(call.sendChat("hello")).toBe(false);
    expect(call.messages).toEqual([]);
    const inside = await inRoom(["a"]);
    expect(inside.call.sendChat("  \n ")).toBe(false);
  });

  it("answers the kernel's custom messages: chat is sent, the unknown answered with an error", async () => {
    const { model, peers, sent } = await inRoom(["a"]);
    peers[0]!.open();
    const custom = (content: unknown) => {
      (model as unknown as { listeners: Map<string, Set<(c: unknown) => void>> }).listeners
        .get("msg:custom")!
        .forEach((listener) => listener(content));
    };
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

  it("caps the video bit rate of every connection as the room grows and shrinks", async () => {
    const { server, peers } = await inRoom(["a"]);
    expect(peers[0]!.caps).toEqual([2_500_000]);
    server.serve("peer_joined", { id: "b", name: "B" });
    server.serve("peer_joined", { id: "c", name: "C" });
    expect(peers.map((p) => p.caps.at(-1))).toEqual([1_000_000, 1_000_000, 1_000_000]);
    server.serve("peer_left", { id: "b" });
    expect([peers[0]!.caps.at(-1), peers[2]!.caps.at(-1)]).toEqual([1_500_000, 1_500_000]);
  });

  it("measures each connection about once a second into `stats`, and stops on hang up", async () => {
    const { model, peers, server } = await inRoom(["a", "b"], { statsIntervalMs: 20 });
    peers[0]!.report.set("in", { type: "inbound-rtp", kind: "video", bytesReceived: 1000, framesPerSecond: 24, frameWidth: 640, frameHeight: 360, packetsReceived: 10, packetsLost: 0 });
    await wait(350);
    const stats = model.get("stats");
    expect(Object.keys(stats).sort()).toEqual(["a", "b"]);
    expect(stats.a).toMatchObject({ fps_in: 24, width: 640, height: 360 });
    server.serve("peer_left", { id: "b" });
    await wait(350);
    expect(Object.keys(model.get("stats"))).toEqual(["a"]);
    model.set("_desired", false);
    await settle();
    expect(model.get("stats")).toEqual({});
    const calls = peers[0]!.statsCalls;
    await wait(100);
    expect(peers[0]!.statsCalls).toBe(calls);
  });
});

/** Byte equality without vitest's slow deep comparison of megabytes. */
function same(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((value, i) => value === b[i]);
}

describe("Call: snapshots", () => {
  const custom = (model: PageModel, content: unknown) => {
    (model as unknown as { listeners: Map<string, Set<(c: unknown) => void>> }).listeners
      .get("msg:custom")!
      .forEach((listener) => listener(content));
  };

  it("answers with a binary custom message and uploads the frame in chunks of at most 192 KiB", async () => {
    const bytes = new Uint8Array(640 * 480 * 4).map((_, i) => i % 251);
    const captured: [MediaStream, string][] = [];
    const { model, server, sent, buffers, stream } = await inRoom(["a"], {
      captureFrame: async (from, format) => {
        captured.push([from, format]);
        return { width: 640, height: 480, format, bytes };
      },
    });
    custom(model, { type: "snapshot", id: "req1", peer: null, format: "rgba", upload: true });
    await settle();
    expect(captured).toEqual([[stream, "rgba"]]);
    expect(sent.at(-1)).toEqual({ type: "frame", id: "req1", width: 640, height: 480, format: "rgba" });
    const [buffer] = buffers.at(-1) as ArrayBuffer[];
    expect(same(new Uint8Array(buffer!), bytes)).toBe(true);
    const count = Math.ceil(bytes.length / (192 * 1024));
    expect(server.frames.map(([meta]) => meta)).toEqual(
      Array.from({ length: count }, (_, index) => ({ id: "req1", index, count, width: 640, height: 480, format: "rgba" })),
    );
    expect(server.frames.every(([, chunk]) => chunk!.byteLength <= 192 * 1024)).toBe(true);
    const joined = new Uint8Array(bytes.length);
    let at = 0;
    for (const [, chunk] of server.frames) {
      joined.set(new Uint8Array(chunk!), at);
      at += chunk!.byteLength;
    }
    expect(at).toBe(bytes.length);
    expect(same(joined, bytes)).toBe(true);
  });

  it("takes a peer's remote video, and does not upload unless asked", async () => {
    const remote = { getVideoTracks: () => [{}] } as unknown as MediaStream;
    const captured: MediaStream[] = [];
    const { model, server, sent, peers } = await inRoom(["a"], {
      captureFrame: async (from, format) => {
        captured.push(from);
        return { width: 2, height: 1, format, bytes: new Uint8Array([137, 80, 78, 71]) };
      },
    });
    peers[0]!.remoteStream = remote;
    custom(model, { type: "snapshot", id: "req2", peer: "a", format: "png", upload: false });
    await settle();
    expect(captured).toEqual([remote]);
    expect(sent.at(-1)).toEqual({ type: "frame", id: "req2", width: 2, height: 1, format: "png" });
    expect(server.frames).toEqual([]);
  });

  it("answers with a plain error, both ways, when there is no such peer or no video yet", async () => {
    const { model, server, sent } = await inRoom(["a"], {
      captureFrame: async () => {
        throw new Error("not reached");
      },
    });
    custom(model, { type: "snapshot", id: "r3", peer: "ghost", format: "rgba", upload: true });
    await settle();
    expect(sent.at(-1)).toEqual({ type: "frame", id: "r3", error: 'no peer "ghost" in this call' });
    expect(server.frames).toEqual([[{ id: "r3", error: 'no peer "ghost" in this call' }, undefined]]);
    custom(model, { type: "snapshot", id: "r4", peer: "a", format: "rgba", upload: false });
    await settle();
    expect(sent.at(-1)).toEqual({ type: "frame", id: "r4", error: "no video from A yet" });
    expect(server.frames).toHaveLength(1);
  });

  it("says so when not in a call", async () => {
    const { model, sent } = setup();
    custom(model, { type: "snapshot", id: "r5", peer: null, format: "png", upload: true });
    await settle();
    expect(sent.at(-1)).toEqual({ type: "frame", id: "r5", error: "not in a call: join a room first" });
  });
});

describe("Call: screen sharing", () => {
  class ScreenTrack extends FakeTrack {
    private readonly ended = new Set<() => void>();
    constructor() {
      super("video");
    }
    addEventListener(_event: string, listener: () => void) {
      this.ended.add(listener);
    }
    end() {
      for (const listener of this.ended) listener();
    }
  }
  beforeEach(() => {
    vi.stubGlobal("MediaStream", FakeMediaStream);
  });
  afterEach(() => {
    vi.unstubAllGlobals();
  });

  it("sends the screen instead of the camera with replaceTrack, tells the others, and goes back", async () => {
    const screen = new ScreenTrack();
    const { model, peers, tracks, call } = await inRoom(["a"], {
      openScreen: async () => new FakeMediaStream([screen]) as unknown as MediaStream,
    });
    peers[0]!.open();
    model.set("screen", true);
    await settle();
    expect(call.sharingScreen).toBe(true);
    expect(peers[0]!.replaced).toEqual([["video", screen]]);
    expect(call.localStream!.getVideoTracks()).toEqual([screen]);
    expect(peers[0]!.sentMessages().at(-1)).toEqual({ t: "state", audio: true, video: true, screen: true });
    // The user ends the share from the browser's bar: the camera again, and `screen` written back.
    screen.end();
    const camera = tracks.find((t) => t.kind === "video");
    expect(peers[0]!.replaced.at(-1)).toEqual(["video", camera]);
    expect(model.get("screen")).toBe(false);
    expect(screen.stopped).toBe(true);
    expect(camera!.stopped).toBe(false);
    expect(peers[0]!.sentMessages().at(-1)).toEqual({ t: "state", audio: true, video: true, screen: false });
  });

  it("reports a refused share as screen_denied and sets `screen` back to false", async () => {
    const { model, call } = await inRoom(["a"], {
      openScreen: async () => {
        throw Object.assign(new Error("denied"), { name: "NotAllowedError" });
      },
    });
    model.set("screen", true);
    await settle();
    expect(call.sharingScreen).toBe(false);
    expect(model.get("screen")).toBe(false);
    expect(model.get("error_code")).toBe("screen_denied");
    expect(model.get("error")).toMatch(/not allowed/);
  });

  it("stops the screen on hang up", async () => {
    const screen = new ScreenTrack();
    const { model } = await inRoom(["a"], { openScreen: async () => new FakeMediaStream([screen]) as unknown as MediaStream });
    model.set("screen", true);
    await settle();
    model.set("_desired", false);
    await settle();
    expect(screen.stopped).toBe(true);
    expect(model.get("screen")).toBe(false);
  });
});

describe("Call: choosing devices", () => {
  beforeEach(() => {
    vi.stubGlobal("MediaStream", FakeMediaStream);
  });
  afterEach(() => {
    vi.unstubAllGlobals();
  });

  const listed = [
    { deviceId: "default", kind: "audioinput", label: "Default" },
    { deviceId: "m1", kind: "audioinput", label: "Mic 1" },
    { deviceId: "c1", kind: "videoinput", label: "Cam 1" },
    { deviceId: "c2", kind: "videoinput", label: "" },
    { deviceId: "s1", kind: "audiooutput", label: "Speaker" },
  ] as MediaDeviceInfo[];

  it("lists cameras and microphones, again on devicechange", async () => {
    let changed = () => undefined as void;
    const { model } = setup({
      devices: { enumerate: async () => listed, getUserMedia: () => Promise.reject(new Error("no")), watch: (l) => ((changed = l), () => undefined) },
    });
    await settle();
    expect(model.get("cameras")).toEqual([{ id: "c1", label: "Cam 1" }, { id: "c2", label: "" }]);
    expect(model.get("microphones")).toEqual([{ id: "m1", label: "Mic 1" }]);
    listed.push({ deviceId: "m2", kind: "audioinput", label: "Mic 2" } as MediaDeviceInfo);
    changed();
    await settle();
    expect(model.get("microphones")).toEqual([{ id: "m1", label: "Mic 1" }, { id: "m2", label: "Mic 2" }]);
    listed.pop();
  });

  it("switches the camera in a call: exact device, replaceTrack everywhere, old track stopped, mute kept", async () => {
    const asked: MediaStreamConstraints[] = [];
    const fresh = new FakeTrack("video");
    const { model, peers, tracks, call } = await inRoom(["a", "b"], {
      devices: {
        enumerate: async () => [],
        getUserMedia: async (constraints) => {
          asked.push(constraints);
          return new FakeMediaStream([fresh]) as unknown as MediaStream;
        },
        watch: () => () => undefined,
      },
    });
    model.set("video", false);
    model.set("camera", "c2");
    await settle();
    expect(asked).toEqual([{ video: expect.objectContaining({ deviceId: { exact: "c2" } }) }]);
    expect(peers.map((p) => p.replaced)).toEqual([[["video", fresh]], [["video", fresh]]]);
    expect(tracks.find((t) => t.kind === "video")!.stopped).toBe(true);
    expect(tracks.find((t) => t.kind === "audio")!.stopped).toBe(false);
    expect(fresh.enabled).toBe(false);
    expect(call.localStream!.getTracks()).toEqual([tracks.find((t) => t.kind === "audio"), fresh]);
  });

  it("keeps the old device and says so when the new one fails", async () => {
    const { model, peers, tracks } = await inRoom(["a"], {
      devices: {
        enumerate: async () => [],
        getUserMedia: async () => {
          throw Object.assign(new Error("gone"), { name: "OverconstrainedError" });
        },
        watch: () => () => undefined,
      },
    });
    model.set("microphone", "m9");
    await settle();
    expect(peers[0]!.replaced).toEqual([]);
    expect(tracks.every((t) => !t.stopped)).toBe(true);
    expect(model.get("error_code")).toBe("no_camera");
    expect(model.get("error")).toBe("That microphone was not found. Pick another one.");
  });
});
