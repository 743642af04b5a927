import { describe, expect, it, vi } from "vitest";
import { GROW_AT_BPS, GROW_CHECK_MS, GROW_WITHIN_MS, ICE_GRACE_MS, Peer, START_SCALE, isPolite, type PeerOptions, type PeerSignal } from "./peer";

const tick = () => new Promise<void>((resolve) => setTimeout(resolve, 0));

/** Just enough of RTCPeerConnection to follow the signalling states. */
class FakePC {
  signalingState: RTCSignalingState = "stable";
  connectionState: RTCPeerConnectionState = "new";
  localDescription: RTCSessionDescriptionInit | null = null;
  remoteDescription: RTCSessionDescriptionInit | null = null;
  onnegotiationneeded: (() => void) | null = null;
  onicecandidate: ((event: { candidate: unknown }) => void) | null = null;
  onicecandidateerror: ((event: unknown) => void) | null = null;
  ontrack: unknown = null;
  onconnectionstatechange: (() => void) | null = null;
  transceivers: { kind: string; direction: string; mid: string | null; currentDirection: string | null; stop: () => void }[] = [];
  candidates: RTCIceCandidateInit[] = [];
  log: string[] = [];
  /** The selected pair's outgoing bandwidth estimate (bits/s); null: getStats fails. */
  estimate: number | null = null;
  /** This side's candidate type in the pair in use; null: the stats list none. */
  localCandidate: string | null = null;

  constructor(readonly who: string) {}

  async getStats(): Promise<Map<string, unknown>> {
    if (this.estimate === null && this.localCandidate === null) throw new Error("no statistics in this fake");
    const pair = { type: "candidate-pair", nominated: true, state: "succeeded", availableOutgoingBitrate: this.estimate ?? 0, localCandidateId: "local" };
    return new Map<string, unknown>([
      ["pair", pair],
      ["local", { type: "local-candidate", candidateType: this.localCandidate ?? "host" }],
    ]);
  }
  addTrack(track: { kind: string }) {
    this.addTransceiver(track.kind, { direction: "sendrecv" });
  }
  addTransceiver(kind: string, init: { direction: string }) {
    const transceiver = {
      kind,
      direction: init.direction,
      mid: null,
      currentDirection: null as string | null,
      stop: () => {
        this.log.push(`stop ${kind}`);
        transceiver.currentDirection = "stopped";
      },
    };
    this.transceivers.push(transceiver);
  }
  getTransceivers() {
    return this.transceivers;
  }
  /** Offers fail (setLocalDescription without a description rejects). */
  failOffers = false;
  async setLocalDescription(description?: RTCSessionDescriptionInit) {
    await tick();
    if (this.failOffers && description === undefined && this.signalingState === "stable") {
      throw new Error("the offer failed in this fake");
    }
    if (description?.type === "rollback") {
      this.log.push("rollback");
      this.localDescription = null;
      this.signalingState = "stable";
    } else if (this.signalingState === "have-remote-offer") {
      this.localDescription = { type: "answer", sdp: `answer from ${this.who}` };
      this.signalingState = "stable";
    } else {
      this.localDescription = { type: "offer", sdp: `offer from ${this.who}` };
      this.signalingState = "have-local-offer";
    }
  }
  async setRemoteDescription(description: RTCSessionDescriptionInit) {
    await tick();
    this.log.push(`remote ${description.type}`);
    this.remoteDescription = description;
    this.signalingState = description.type === "offer" ? "have-remote-offer" : "stable";
  }
  async addIceCandidate(candidate: RTCIceCandidateInit) {
    if (this.remoteDescription === null) throw new Error("no remote description");
    this.candidates.push(candidate);
  }
  configuration: RTCConfiguration = {};
  getConfiguration() {
    return this.configuration;
  }
  setConfiguration(configuration: RTCConfiguration) {
    this.log.push("configuration");
    this.configuration = configuration;
  }
  restarts = 0;
  restartIce() {
    this.restarts++;
    this.onnegotiationneeded?.();
  }
  close() {
    this.log.push("close");
  }
  onsignalingstatechange: (() => void) | null = null;
  channels: FakeChannel[] = [];
  createDataChannel(label: string, init: RTCDataChannelInit) {
    this.log.push(`channel ${label}`);
    const channel = new FakeChannel(label, init);
    this.channels.push(channel);
    return channel;
  }
  senders: FakeSender[] = [];
  getSenders() {
    return this.senders;
  }
}

class FakeChannel {
  readyState: RTCDataChannelState = "connecting";
  sent: string[] = [];
  onopen: (() => void) | null = null;
  onmessage: ((event: { data: unknown }) => void) | null = null;
  constructor(readonly label: string, readonly init: RTCDataChannelInit) {}
  send(data: string) {
    this.sent.push(data);
  }
  close() {
    this.readyState = "closed";
  }
  open() {
    this.readyState = "open";
    this.onopen?.();
  }
}

/** A track as a sender holds it: its kind, and its size (a 640x480 camera unless told). */
function fakeTrack(kind: string, width = 640, height = 480) {
  return { kind, getSettings: () => ({ width, height }) };
}

class FakeSender {
  encodings: RTCRtpEncodingParameters[] = [];
  applied: (number | undefined)[] = [];
  readonly track: ReturnType<typeof fakeTrack> | null;
  constructor(track: { kind: string; width?: number; height?: number } | null) {
    this.track = track === null ? null : fakeTrack(track.kind, track.width, track.height);
  }
  getParameters() {
    return { transactionId: "t", encodings: this.encodings.map((e) => ({ ...e })) };
  }
  async setParameters(parameters: { encodings: RTCRtpEncodingParameters[] }) {
    await tick();
    this.encodings = parameters.encodings;
    this.applied.push(parameters.encodings[0]?.maxBitrate);
  }
}

function makePeer(overrides: Partial<PeerOptions> & { selfId: string; peerId: string }) {
  const sent: PeerSignal[] = [];
  const errors: unknown[] = [];
  let pc!: FakePC;
  let config!: RTCConfiguration;
  const peer = new Peer({
    iceServers: [],
    localStream: null,
    initiator: false,
    send: (signal) => sent.push(signal),
    onRemoteStream: () => undefined,
    onConnectionState: () => undefined,
    onError: (error) => errors.push(error),
    createConnection: (given) => {
      config = given;
      pc = new FakePC(overrides.selfId);
      pc.configuration = given;
      return pc as unknown as RTCPeerConnection;
    },
    ...overrides,
  });
  return { peer, pc, sent, errors, config };
}

const offer = (from: string): RTCSessionDescriptionInit => ({ type: "offer", sdp: `offer from ${from}` });

describe("isPolite", () => {
  it("makes the lower id polite, as strings", () => {
    expect(isPolite("a", "b")).toBe(true);
    expect(isPolite("b", "a")).toBe(false);
    expect(isPolite("B", "a")).toBe(true); // "B" (66) < "a" (97), as in Python
    expect(isPolite("10", "9")).toBe(true); // strings, not numbers
  });
});

describe("Peer", () => {
  it("the newcomer offers at once and asks for media it does not send", async () => {
    const { pc, sent } = makePeer({ selfId: "n", peerId: "m", initiator: true });
    expect(pc.transceivers.map((t) => `${t.kind} ${t.direction}`)).toEqual(["audio recvonly", "video recvonly"]);
    pc.onnegotiationneeded!();
    await tick();
    await tick();
    expect(sent).toEqual([{ description: offer("n") }]);
  });

  it("a member sends no offer before the newcomer's first description, then answers it", async () => {
    const { peer, pc, sent } = makePeer({ selfId: "m", peerId: "n", initiator: false });
    expect(pc.transceivers).toEqual([]); // the newcomer's offer brings the receivers
    pc.onnegotiationneeded!();
    await tick();
    expect(sent).toEqual([]);
    peer.receive({ description: offer("n") });
    await tick();
    await tick();
    await tick();
    expect(sent).toEqual([{ description: { type: "answer", sdp: "answer from m" } }]);
  });

  it("queues candidates until the remote description is set, and drops empty ones", async () => {
    const { peer, pc, errors } = makePeer({ selfId: "m", peerId: "n" });
    peer.receive({ candidate: { candidate: "candidate:1", sdpMid: "0", sdpMLineIndex: 0 } });
    peer.receive({ candidate: null });
    peer.receive({ candidate: { candidate: "", sdpMid: "0", sdpMLineIndex: 0 } });
    await tick();
    expect(pc.candidates).toEqual([]);
    peer.receive({ description: offer("n") });
    peer.receive({ candidate: { candidate: "candidate:2", sdpMid: "0", sdpMLineIndex: 0 } });
    for (let i = 0; i < 5; i++) await tick();
    expect(pc.candidates.map((c) => c.candidate)).toEqual(["candidate:1", "candidate:2"]);
    expect(errors).toEqual([]);
  });

  it("forwards local candidates but never the end-of-candidates null", () => {
    const { pc, sent } = makePeer({ selfId: "m", peerId: "n" });
    const candidate = { candidate: "candidate:9", toJSON: () => ({ candidate: "candidate:9", sdpMid: "0", sdpMLineIndex: 0 }) };
    pc.onicecandidate!({ candidate });
    pc.onicecandidate!({ candidate: null });
    pc.onicecandidate!({ candidate: { candidate: "", toJSON: () => ({ candidate: "" }) } });
    expect(sent).toEqual([{ candidate: { candidate: "candidate:9", sdpMid: "0", sdpMLineIndex: 0 } }]);
  });

  it("in a collision the impolite peer ignores the other's offer", async () => {
    const { peer, pc, sent } = makePeer({ selfId: "z", peerId: "a", initiator: true });
    expect(peer.polite).toBe(false);
    pc.onnegotiationneeded!();
    await tick();
    await tick();
    expect(pc.signalingState).toBe("have-local-offer");
    peer.receive({ description: offer("a") });
    peer.receive({ candidate: { candidate: "candidate:for-ignored-offer", sdpMid: "0", sdpMLineIndex: 0 } });
    for (let i = 0; i < 5; i++) await tick();
    expect(pc.log).not.toContain("remote offer");
    expect(sent).toEqual([{ description: offer("z") }]);
  });

  it("in a collision the polite peer rolls back and answers", async () => {
    const { peer, pc, sent } = makePeer({ selfId: "a", peerId: "z", initiator: true });
    expect(peer.polite).toBe(true);
    pc.onnegotiationneeded!();
    await tick();
    await tick();
    peer.receive({ description: offer("z") });
    for (let i = 0; i < 5; i++) await tick();
    expect(pc.log).toEqual(["channel ipymeet", "rollback", "remote offer"]);
    expect(sent).toEqual([{ description: offer("a") }, { description: { type: "answer", sdp: "answer from a" } }]);
  });

  it("closes by stopping the transceivers, then the connection", () => {
    const { peer, pc } = makePeer({ selfId: "a", peerId: "z", initiator: true });
    peer.close();
    peer.close();
    expect(pc.log).toEqual(["channel ipymeet", "stop audio", "stop video", "close"]);
    expect(pc.onnegotiationneeded).toBeNull();
    expect(peer.connectionState).toBe("closed");
    expect(pc.channels[0]!.readyState).toBe("closed");
  });

  it("creates the negotiated data channel first, on both sides, before any offer", () => {
    for (const initiator of [true, false]) {
      const { pc } = makePeer({ selfId: "a", peerId: "z", initiator });
      expect(pc.log[0]).toBe("channel ipymeet");
      expect(pc.channels[0]!.init).toEqual({ negotiated: true, id: 0, ordered: true });
    }
  });

  it("sends on the channel only once it is open, and hands on text messages", () => {
    const opened: string[] = [];
    const received: string[] = [];
    const { peer, pc } = makePeer({
      selfId: "a",
      peerId: "z",
      onChannelOpen: () => opened.push("open"),
      onChannelMessage: (data) => received.push(data),
    });
    const channel = pc.channels[0]!;
    expect(peer.sendData("early")).toBe(false);
    channel.open();
    expect(opened).toEqual(["open"]);
    expect(peer.sendData("hello")).toBe(true);
    expect(channel.sent).toEqual(["hello"]);
    channel.onmessage!({ data: '{"t":"state"}' });
    channel.onmessage!({ data: new ArrayBuffer(4) }); // binary: not ours
    expect(received).toEqual(['{"t":"state"}']);
    peer.close();
    expect(peer.sendData("late")).toBe(false);
  });

  it("caps the video senders' bit rate once they have encodings, without renegotiating", async () => {
    const { peer, pc, sent } = makePeer({ selfId: "a", peerId: "z" });
    const video = new FakeSender({ kind: "video" });
    const audio = new FakeSender({ kind: "audio" });
    audio.encodings = [{}];
    pc.senders.push(video, audio);
    peer.setMaxVideoBitrate(1_500_000);
    for (let i = 0; i < 3; i++) await tick();
    expect(video.applied).toEqual([]); // no encodings before negotiation: nothing to set yet

    video.encodings = [{ active: true }];
    pc.connectionState = "connected";
    pc.onconnectionstatechange!();
    for (let i = 0; i < 3; i++) await tick();
    expect(video.applied).toEqual([1_500_000]);
    expect(audio.applied).toEqual([]);

    pc.onsignalingstatechange!(); // stable again: already capped, nothing to do
    peer.setMaxVideoBitrate(700_000);
    peer.setMaxVideoBitrate(700_000);
    for (let i = 0; i < 6; i++) await tick();
    expect(video.applied).toEqual([1_500_000, 700_000]);
    expect(sent).toEqual([]);
  });
});

describe("Peer first frame", () => {
  it("sends the video small until the bandwidth estimate allows full size", async () => {
    vi.useFakeTimers();
    try {
      const { peer, pc } = makePeer({ selfId: "a", peerId: "z" });
      const video = new FakeSender({ kind: "video" });
      pc.senders.push(video);
      video.encodings = [{ active: true }];
      pc.estimate = 300_000; // the first estimate: too low for 720p
      pc.connectionState = "connected";
      pc.onconnectionstatechange!();
      await vi.advanceTimersByTimeAsync(10);
      expect(video.encodings[0]?.scaleResolutionDownBy).toBe(START_SCALE);
      await vi.advanceTimersByTimeAsync(GROW_CHECK_MS * 2);
      expect(video.encodings[0]?.scaleResolutionDownBy).toBe(START_SCALE); // still too low
      pc.estimate = GROW_AT_BPS;
      await vi.advanceTimersByTimeAsync(GROW_CHECK_MS + 10);
      expect(video.encodings[0]?.scaleResolutionDownBy).toBe(1);
      peer.close();
    } finally {
      vi.useRealTimers();
    }
  });

  it("grows to full size after a while even if the estimate stays low", async () => {
    vi.useFakeTimers();
    try {
      const { peer, pc } = makePeer({ selfId: "a", peerId: "z" });
      const video = new FakeSender({ kind: "video" });
      pc.senders.push(video);
      video.encodings = [{ active: true }];
      pc.estimate = 100_000;
      pc.connectionState = "connected";
      pc.onconnectionstatechange!();
      await vi.advanceTimersByTimeAsync(GROW_WITHIN_MS - GROW_CHECK_MS * 2);
      expect(video.encodings[0]?.scaleResolutionDownBy).toBe(START_SCALE);
      await vi.advanceTimersByTimeAsync(GROW_CHECK_MS * 3);
      expect(video.encodings[0]?.scaleResolutionDownBy).toBe(1);
      peer.close();
    } finally {
      vi.useRealTimers();
    }
  });
});

describe("Peer: what the other side wants", () => {
  it("sends no larger than wanted during the small start, and the wanted size once it ends", async () => {
    vi.useFakeTimers();
    try {
      const { peer, pc } = makePeer({ selfId: "a", peerId: "z" });
      const video = new FakeSender({ kind: "video", width: 1920, height: 1080 });
      pc.senders.push(video);
      video.encodings = [{ active: true }];
      pc.estimate = 100_000;
      peer.setWant({ width: 160, height: 120, fps: 15 });
      pc.connectionState = "connected";
      pc.onconnectionstatechange!();
      await vi.advanceTimersByTimeAsync(10);
      // The small start's quarter (480x270) would be larger than wanted: the wanted scale wins.
      expect(video.encodings[0]).toMatchObject({ scaleResolutionDownBy: 12, maxFramerate: 15 });
      peer.setWant({ width: 640, height: 480, fps: 15 });
      await vi.advanceTimersByTimeAsync(10);
      expect(video.encodings[0]?.scaleResolutionDownBy).toBe(START_SCALE); // still the small start
      pc.estimate = GROW_AT_BPS;
      await vi.advanceTimersByTimeAsync(GROW_CHECK_MS + 10);
      expect(video.encodings[0]).toMatchObject({ scaleResolutionDownBy: 3, maxFramerate: 15 }); // 640x360
      peer.setWant(null);
      await vi.advanceTimersByTimeAsync(10);
      expect(video.encodings[0]?.scaleResolutionDownBy).toBe(1);
      expect(video.encodings[0]?.maxFramerate).toBeUndefined();
      peer.close();
    } finally {
      vi.useRealTimers();
    }
  });
});

describe("Peer recovery", () => {
  it("restarts ICE when disconnected for a while, with growing pauses, until connected", async () => {
    vi.useFakeTimers();
    try {
      const { peer, pc, sent } = makePeer({ selfId: "n", peerId: "m", initiator: true });
      pc.remoteDescription = { type: "answer", sdp: "a=fingerprint:sha-256 AA" };
      pc.connectionState = "disconnected";
      pc.onconnectionstatechange!();
      await vi.advanceTimersByTimeAsync(ICE_GRACE_MS - 100);
      expect(pc.restarts).toBe(0); // it may come back by itself
      await vi.advanceTimersByTimeAsync(200);
      expect(pc.restarts).toBe(1);
      expect(sent.at(-1)).toEqual({ description: offer("n") });
      // The offer went nowhere (signaller down): the next attempt rolls it back and offers again.
      await vi.advanceTimersByTimeAsync(ICE_GRACE_MS * 2);
      expect(pc.restarts).toBe(2);
      expect(pc.log).toContain("rollback");
      await vi.advanceTimersByTimeAsync(ICE_GRACE_MS * 4);
      expect(pc.restarts).toBe(3);
      pc.connectionState = "connected";
      pc.onconnectionstatechange!();
      await vi.advanceTimersByTimeAsync(60_000);
      expect(pc.restarts).toBe(3);
      expect(peer.iceRestarts).toBe(3);
      peer.close();
    } finally {
      vi.useRealTimers();
    }
  });

  it("restarts ICE at once when failed, and not at all once closed", async () => {
    vi.useFakeTimers();
    try {
      const { peer, pc } = makePeer({ selfId: "n", peerId: "m", initiator: true });
      pc.remoteDescription = { type: "answer", sdp: "x" };
      pc.connectionState = "failed";
      pc.onconnectionstatechange!();
      expect(pc.restarts).toBe(1);
      peer.close();
      await vi.advanceTimersByTimeAsync(60_000);
      expect(pc.restarts).toBe(1);
    } finally {
      vi.useRealTimers();
    }
  });

  it("spaces restarts asked for, and gives up on the schedule however often it is asked", async () => {
    vi.useFakeTimers();
    try {
      let gaveUp = 0;
      const { peer, pc } = makePeer({ selfId: "n", peerId: "m", initiator: true, onGiveUp: () => gaveUp++ });
      pc.remoteDescription = { type: "answer", sdp: "x" };
      pc.connectionState = "disconnected";
      for (let i = 0; i < 10; i++) peer.recover();
      expect(pc.restarts).toBe(1);
      for (let second = 0; second < 20; second++) {
        peer.recover();
        await vi.advanceTimersByTimeAsync(1000);
      }
      expect(gaveUp).toBe(0); // 2 + 4 + 8 s of scheduled attempts so far, not five asks
      await vi.advanceTimersByTimeAsync(60_000);
      expect(gaveUp).toBe(1);
      peer.close();
    } finally {
      vi.useRealTimers();
    }
  });

  it("sends an unanswered offer again, and nothing otherwise", async () => {
    const { peer, pc, sent } = makePeer({ selfId: "n", peerId: "m", initiator: true });
    peer.resync();
    expect(sent).toEqual([]); // stable: nothing pending
    pc.onnegotiationneeded!();
    await tick();
    await tick();
    expect(sent).toEqual([{ description: offer("n") }]);
    peer.resync();
    expect(sent).toEqual([{ description: offer("n") }, { description: offer("n") }]);
  });

  it("tells an offer from a new connection of the other page by its DTLS fingerprint", () => {
    const { peer, pc } = makePeer({ selfId: "n", peerId: "m" });
    const sdp = (print: string) => `v=0\r\na=fingerprint:sha-256 ${print}\r\n`;
    expect(peer.isFromAnotherConnection({ type: "offer", sdp: sdp("AA") })).toBe(false); // nothing yet
    pc.remoteDescription = { type: "offer", sdp: sdp("AA") };
    expect(peer.isFromAnotherConnection({ type: "offer", sdp: sdp("AA") })).toBe(false); // a renegotiation
    expect(peer.isFromAnotherConnection({ type: "offer", sdp: sdp("BB") })).toBe(true);
    expect(peer.isFromAnotherConnection({ type: "answer", sdp: sdp("BB") })).toBe(false);
  });

  it("gathers relay candidates only when relayOnly, and hands on a TURN server's refusal", () => {
    const servers = [{ urls: ["turn:10.0.0.1:3478"], username: "1:me", credential: "x" }];
    expect(makePeer({ selfId: "a", peerId: "b", iceServers: servers }).config).toEqual({ iceServers: servers });
    const iceErrors: unknown[] = [];
    const { pc, peer, config } = makePeer({
      selfId: "a",
      peerId: "b",
      iceServers: servers,
      relayOnly: true,
      onIceError: (error) => iceErrors.push(error),
    });
    expect(config).toEqual({ iceServers: servers, iceTransportPolicy: "relay" });
    pc.onicecandidateerror!({ errorCode: 401, url: "turn:10.0.0.1:3478?transport=udp", errorText: "Unauthorized", address: null });
    expect(iceErrors).toEqual([{ code: 401, url: "turn:10.0.0.1:3478?transport=udp", text: "Unauthorized" }]);
    peer.close();
    expect(pc.onicecandidateerror).toBeNull();
  });
});

describe("Peer: fresh TURN credentials", () => {
  const old = [{ urls: ["turn:10.0.0.1:3478"], username: "100:me", credential: "old" }];
  const fresh = [{ urls: ["turn:10.0.0.1:3478"], username: "175:me", credential: "fresh" }];
  const answer: RTCSessionDescriptionInit = { type: "answer", sdp: "answer from m" };
  const settle = async () => {
    for (let i = 0; i < 5; i++) await tick();
  };

  it("takes them into its configuration, relay policy kept, and restarts ICE to allocate with them", async () => {
    const { peer, pc, sent } = makePeer({ selfId: "n", peerId: "m", initiator: true, iceServers: old, relayOnly: true });
    pc.onnegotiationneeded!();
    await settle();
    peer.receive({ description: answer });
    await settle();
    expect(pc.signalingState).toBe("stable");
    peer.renewIceServers(fresh);
    expect(pc.configuration).toEqual({ iceServers: fresh, iceTransportPolicy: "relay" });
    expect(pc.restarts).toBe(1);
    await settle();
    expect(sent.map((s) => ("description" in s ? s.description.type : "candidate"))).toEqual(["offer", "offer"]);
    expect(peer.iceRestarts).toBe(1);
    expect(pc.log).not.toContain("rollback"); // nothing was pending
    peer.close();
    peer.renewIceServers(old);
    expect(pc.configuration.iceServers).toEqual(fresh);
    expect(pc.restarts).toBe(1);
  });

  it("lets a negotiation under way finish first, then restarts once", async () => {
    const { peer, pc, sent } = makePeer({ selfId: "n", peerId: "m", initiator: true, iceServers: old });
    pc.localCandidate = "relay";
    pc.onnegotiationneeded!();
    await settle();
    pc.remoteDescription = { type: "answer", sdp: "earlier" }; // negotiated before: this offer renegotiates
    expect(pc.signalingState).toBe("have-local-offer");
    peer.renewIceServers(fresh);
    peer.renewIceServers(fresh);
    expect(pc.configuration.iceServers).toEqual(fresh);
    expect(pc.restarts).toBe(0); // its answer is on its way: no rollback
    peer.receive({ description: answer });
    await settle();
    pc.onsignalingstatechange!();
    await settle(); // the pair in use is looked up in the stats first
    expect(pc.restarts).toBe(1);
    await settle();
    expect(sent).toHaveLength(2);
    pc.onsignalingstatechange!();
    await settle();
    expect(pc.restarts).toBe(1);
  });

  it("a pair this side's TURN server does not carry takes them for later and restarts nothing", async () => {
    for (const type of ["host", "srflx", "prflx"]) {
      const { peer, pc, sent } = makePeer({ selfId: "n", peerId: "m", initiator: true, iceServers: old });
      pc.localCandidate = type;
      pc.onnegotiationneeded!();
      await settle();
      peer.receive({ description: answer });
      await settle();
      peer.renewIceServers(fresh);
      await settle();
      expect(pc.configuration.iceServers).toEqual(fresh);
      expect(pc.restarts).toBe(0);
      expect(sent).toHaveLength(1);
      peer.close();
    }
  });

  it("a renewal that came while an offer was made restarts when that offer fails", async () => {
    const { peer, pc, errors } = makePeer({ selfId: "n", peerId: "m", initiator: true, iceServers: old, relayOnly: true });
    pc.onnegotiationneeded!();
    await settle();
    peer.receive({ description: answer });
    await settle();
    pc.failOffers = true;
    pc.onnegotiationneeded!(); // a renegotiation: its offer is being made
    peer.renewIceServers(fresh);
    expect(pc.restarts).toBe(0);
    await settle();
    expect(errors.length).toBeGreaterThan(0); // the offer failed, and said so
    expect(pc.signalingState).toBe("stable");
    expect(pc.restarts).toBe(1);
  });

  it("restarts nothing before a first exchange, which gathers with them", async () => {
    const { peer, pc, sent } = makePeer({ selfId: "m", peerId: "n", initiator: false, iceServers: old });
    peer.renewIceServers(fresh);
    expect(pc.configuration.iceServers).toEqual(fresh);
    peer.receive({ description: offer("n") });
    await settle();
    pc.onsignalingstatechange!();
    expect(pc.restarts).toBe(0);
    expect(sent).toEqual([{ description: answer }]);
  });
});
