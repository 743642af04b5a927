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
  disconnected = false;
  enterAnswer: unknown = { ok: true, self: "me", peers: [], capacity: 4, ice_servers: [] };
  on(event: string, listener: Listener) {
    if (!this.listeners.has(event)) this.listeners.set(event, new Set());
    this.listeners.get(event)!.add(listener);
  }
  off(event: string, listener: Listener) {
    this.listeners.get(event)?.delete(listener);
  }
  emit(event: string, _payload: unknown, ack: Listener) {
    this.requests.push(event);
    queueMicrotask(() => ack(event === "enter" ? this.enterAnswer : { ok: true }));
  }
  disconnect() {
    this.disconnected = true;
  }
  serve(event: string, ...args: unknown[]) {
    for (const listener of [...(this.listeners.get(event) ?? [])]) listener(...args);
  }
}

class FakePeer {
  connectionState: RTCPeerConnectionState = "new";
  remoteStream = null;
  closed = false;
  received: unknown[] = [];
  constructor(readonly options: PeerOptions) {}
  receive(message: unknown) {
    this.received.push(message);
  }
  close() {
    this.closed = true;
  }
  become(state: RTCPeerConnectionState) {
    this.connectionState = state;
    this.options.onConnectionState(state);
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

function fakeStream() {
  const tracks = [new FakeTrack("audio"), new FakeTrack("video")];
  const stream = {
    getTracks: () => tracks,
    getAudioTracks: () => tracks.filter((t) => t.kind === "audio"),
    getVideoTracks: () => tracks.filter((t) => t.kind === "video"),
  } as unknown as MediaStream;
  return { stream, tracks };
}

function setup(options: { media?: () => Promise<LocalMedia>; connect?: CallDeps["connect"] } = {}) {
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
  });
  call.start();
  const join = () => model.set("_desired", true);
  return { model, states, server, peers, tracks, call, join, connectedWith };
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
    expect(model.get("_browser_peers")).toEqual([{ id: "zed", name: "Grace", connection: "connected" }]);

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

  it("goes to failed when the signaller connection drops", async () => {
    const { model, server, join, states } = setup();
    join();
    await settle();
    server.serve("disconnect", "transport close");
    expect(states).toEqual(["idle", "joining", "waiting", "failed"]);
    expect(model.get("error_code")).toBe("disconnected");
    expect(model.get("_desired")).toBe(false);
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

  it("one writer: a stale in-call state from an earlier page becomes left", () => {
    const model = new PageModel({ state: "in_call", _browser_peers: [{ id: "x", name: "", connection: "connected" }] });
    new Call(model, { routes: () => [] }).start();
    expect(model.get("state")).toBe("left");
    expect(model.get("_browser_peers")).toEqual([]);
  });
});
