import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { inRoom, settle, setup, wait } from "./harness";

// The Call logs failed steps with console.warn for developers; keep the test output readable.
beforeEach(() => {
  vi.spyOn(console, "warn").mockImplementation(() => undefined);
});
afterEach(() => {
  vi.restoreAllMocks();
});

// Through a Call (harness.ts): the members as the signaller and the other pages make them.
describe("Members: membership and liveness", () => {
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
});

describe("Members: flags and quality", () => {
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
      { id: "a", name: "A", connection: "new", audio: false, video: true, screen: false, speaking: false },
      { id: "b", name: "B", connection: "new", audio: true, video: true, screen: false, speaking: false },
    ]);
  });

  it("hands a want to that connection's peer only, and ignores a malformed one", async () => {
    const { peers } = await inRoom(["a", "b"]);
    peers[0]!.deliver({ t: "want", width: 320, height: 240, fps: 15 });
    peers[1]!.deliver({ t: "want", width: 8, height: 240, fps: 15 }); // out of bounds: ignored
    expect(peers[0]!.wants).toEqual([{ t: "want", width: 320, height: 240, fps: 15 }]);
    expect(peers[1]!.wants).toEqual([]);
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

describe("Members: the relay", () => {
  const turn = { urls: ["turn:10.9.9.1:3478?transport=udp"], username: "1700003600:me", credential: "c" };

  it("with relay only and no TURN server offered, fails at once with no connection made", async () => {
    const { model, server, join, peers, states } = setup();
    model.set("relay_only", true);
    server.enterAnswer = { ok: true, self: "me", peers: [{ id: "a", name: "A" }], capacity: 4, ice_servers: [{ urls: "stun:x" }] };
    join();
    await settle();
    expect(peers).toHaveLength(0);
    expect(states.at(-1)).toBe("failed");
    expect(model.get("error_code")).toBe("no_relay");
    expect(model.get("error")).toContain("--turn-url");
  });

  it("with relay only, each connection gathers relay candidates only, with the member's credentials", async () => {
    const { model, server, join, peers } = setup();
    model.set("relay_only", true);
    server.enterAnswer = { ok: true, self: "me", peers: [{ id: "a", name: "A" }], capacity: 4, ice_servers: [{ urls: "stun:x" }, turn] };
    join();
    await settle();
    server.serve("peer_joined", { id: "b", name: "B" });
    expect(peers.map((p) => [p.options.relayOnly, p.options.iceServers])).toEqual([
      [true, [{ urls: "stun:x" }, turn]],
      [true, [{ urls: "stun:x" }, turn]],
    ]);
    expect(model.get("error_code")).toBe("");
  });

  it("says once, without ending the call, that the TURN server refused the credentials", async () => {
    const { model, server, join, peers, states } = setup();
    model.set("relay_only", true);
    server.enterAnswer = { ok: true, self: "me", peers: [{ id: "a", name: "A" }, { id: "b", name: "B" }], capacity: 4, ice_servers: [turn] };
    join();
    await settle();
    peers[0]!.options.onIceError!({ code: 701, url: "stun:x", text: "STUN host lookup received error." });
    expect(model.get("error_code")).toBe("");
    peers[0]!.options.onIceError!({ code: 401, url: "turn:10.9.9.1:3478?transport=udp", text: "Unauthorized" });
    await settle();
    expect(model.get("error_code")).toBe("turn_refused");
    expect(model.get("error")).toContain("turn:10.9.9.1:3478?transport=udp");
    expect(model.get("error")).toContain("wrong or expired");
    model.set("error", "seen");
    peers[1]!.options.onIceError!({ code: 401, url: "turn:10.9.9.1:3478?transport=udp", text: "Unauthorized" });
    await settle();
    expect(model.get("error")).toBe("seen");
    expect(states.at(-1)).toBe("waiting");
    peers[1]!.become("failed");
    expect(model.get("error_code")).toBe("turn_refused");
  });

  it("without relay only, a refused TURN server is said only when a connection then fails", async () => {
    const { model, server, join, peers } = setup();
    server.enterAnswer = { ok: true, self: "me", peers: [{ id: "a", name: "A" }, { id: "b", name: "B" }], capacity: 4, ice_servers: [turn] };
    join();
    await settle();
    expect(peers[0]!.options.relayOnly).toBe(false);
    peers[0]!.options.onIceError!({ code: 401, url: "turn:10.9.9.1:3478?transport=udp", text: "Unauthorized" });
    peers[0]!.become("connected"); // directly: the relay was not needed
    await settle();
    expect(model.get("error_code")).toBe("");
    peers[1]!.become("failed"); // this one needed it
    await settle();
    expect(model.get("error_code")).toBe("turn_refused");
    expect(model.get("error")).toContain("turn:10.9.9.1:3478?transport=udp");
  });

  it("with relay only, a connection that fails says the relay failed", async () => {
    const { model, server, join, peers } = setup();
    model.set("relay_only", true);
    server.enterAnswer = { ok: true, self: "me", peers: [{ id: "a", name: "A" }], capacity: 4, ice_servers: [turn] };
    join();
    await settle();
    peers[0]!.become("failed");
    await settle();
    expect(model.get("error_code")).toBe("relay_failed");
    expect(model.get("error")).toContain("turn:10.9.9.1:3478?transport=udp");
  });

  it("takes fresh credentials from the signaller: every connection renews, new ones start with them", async () => {
    const { model, server, join, peers } = setup();
    model.set("relay_only", true);
    server.enterAnswer = { ok: true, self: "me", peers: [{ id: "a", name: "A" }], capacity: 4, ice_servers: [turn] };
    join();
    await settle();
    server.serve("peer_joined", { id: "b", name: "B" });
    const fresh = { ...turn, username: "1700006300:me", credential: "d" };
    server.serve("ice_servers", { ice_servers: [fresh] });
    expect(peers.map((p) => p.renewals)).toEqual([[[fresh]], [[fresh]]]);
    server.serve("peer_joined", { id: "c", name: "C" });
    expect(peers[2]!.options.iceServers).toEqual([fresh]);
    expect(peers[2]!.renewals).toEqual([]);
    server.serve("ice_servers", { servers: "not these" }); // malformed: nothing changes
    expect(peers.map((p) => p.renewals.length)).toEqual([1, 1, 0]);
    expect(model.get("error_code")).toBe("");
  });

  it("entering again brings fresh credentials to the connections kept, and only when they changed", async () => {
    const { server, join, peers } = setup();
    server.enterAnswer = { ok: true, self: "me", peers: [{ id: "a", name: "A" }], capacity: 4, ice_servers: [turn] };
    join();
    await settle();
    peers[0]!.become("connected");
    peers[0]!.open();
    server.drop(); // the signaller is out of reach for a while, the media keeps flowing
    await settle();
    expect(server.enters).toHaveLength(2);
    expect(peers[0]!.renewals).toEqual([]); // the same credentials: nothing to renew
    const fresh = { ...turn, username: "1700009000:me", credential: "e" };
    server.enterAnswer = { ok: true, self: "me", peers: [{ id: "a", name: "A" }], capacity: 4, ice_servers: [fresh] };
    server.drop();
    await settle();
    expect(server.enters).toHaveLength(3);
    expect(peers).toHaveLength(1);
    expect(peers[0]!.renewals).toEqual([[fresh]]);
  });
});
