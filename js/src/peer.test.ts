import { describe, expect, it } from "vitest";
import { Peer, isPolite, type PeerOptions, type PeerSignal } from "./peer";

const tick = () => new Promise<void>((resolve) => setTimeout(resolve, 0));

/** Just enough of RTCPeerConnection to follow the signalling states. */
class FakePC {
  signalingState: RTCSignalingState = "stable";
  connectionState: RTCPeerConnectionState = "new";
  localDescription: RTCSessionDescriptionInit | null = null;
  remoteDescription: RTCSessionDescriptionInit | null = null;
  onnegotiationneeded: (() => void) | null = null;
  onicecandidate: ((event: { candidate: unknown }) => void) | null = null;
  ontrack: unknown = null;
  onconnectionstatechange: (() => void) | null = null;
  transceivers: { kind: string; direction: string; mid: string | null; currentDirection: string | null; stop: () => void }[] = [];
  candidates: RTCIceCandidateInit[] = [];
  log: string[] = [];

  constructor(readonly who: string) {}
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
  async setLocalDescription(description?: RTCSessionDescriptionInit) {
    await tick();
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
  restartIce() {}
  close() {
    this.log.push("close");
  }
}

function makePeer(overrides: Partial<PeerOptions> & { selfId: string; peerId: string }) {
  const sent: PeerSignal[] = [];
  const errors: unknown[] = [];
  let pc!: FakePC;
  const peer = new Peer({
    iceServers: [],
    localStream: null,
    initiator: false,
    send: (signal) => sent.push(signal),
    onRemoteStream: () => undefined,
    onConnectionState: () => undefined,
    onError: (error) => errors.push(error),
    createConnection: () => {
      pc = new FakePC(overrides.selfId);
      return pc as unknown as RTCPeerConnection;
    },
    ...overrides,
  });
  return { peer, pc, sent, errors };
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
    expect(pc.log).toEqual(["rollback", "remote offer"]);
    expect(sent).toEqual([{ description: offer("a") }, { description: { type: "answer", sdp: "answer from a" } }]);
  });

  it("closes by stopping the transceivers, then the connection", () => {
    const { peer, pc } = makePeer({ selfId: "a", peerId: "z", initiator: true });
    peer.close();
    peer.close();
    expect(pc.log).toEqual(["stop audio", "stop video", "close"]);
    expect(pc.onnegotiationneeded).toBeNull();
    expect(peer.connectionState).toBe("closed");
  });
});
