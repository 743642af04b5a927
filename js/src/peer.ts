/**
 * One RTCPeerConnection to one other member, negotiated with W3C "perfect negotiation"
 * (docs/protocol.md, "Negotiation").
 *
 * - The newcomer (`initiator`) offers first. A member that learnt of the newcomer through
 *   `peer_joined` adds its tracks at once but holds back its own offers until the newcomer's first
 *   description has arrived, so the two never start with a collision.
 * - Later either side may offer; in a collision the polite peer (the lower id) rolls back and
 *   answers, the impolite one ignores the other's offer.
 * - Remote candidates wait until a remote description is set; null or empty ones are dropped, and
 *   the local end-of-candidates event is never forwarded.
 * - Each connection carries one data channel, "ipymeet", negotiated (id 0 on both sides) and
 *   created with the connection, so the first offer already has its application section and no
 *   `ondatachannel` is needed. It carries the mute flags and the chat (messages.ts).
 * - The video senders' bit rate is capped as the room grows (quality.ts), with `setParameters`:
 *   no renegotiation. The cap is applied again once negotiated and once connected, because
 *   before negotiation a sender may have no encodings to set.
 * - A connection that goes `disconnected` (and stays so for a moment: it often comes back by
 *   itself) or `failed` restarts ICE, and again with growing pauses until it is connected: the
 *   network may be back only later, and the offer of an attempt made while the signaller was
 *   unreachable was lost. An offer still unanswered at the next attempt is rolled back first.
 * - `relayOnly` gathers relay candidates only (`iceTransportPolicy: "relay"`): media goes through
 *   the TURN server, and the others never learn this page's addresses. A TURN server's refusal
 *   (`icecandidateerror`, e.g. 401 for wrong or expired credentials) goes to `onIceError`.
 * - Fresh TURN credentials (`renewIceServers`) replace the configuration's servers, then, when
 *   this side's candidate in use is a relay, ICE restarts, as for a recovery, once no negotiation
 *   is under way: the browser refreshes a relay allocation with the credentials it was made with,
 *   so only new allocations use the new ones. The old pair carries the media until the new one
 *   takes over.
 *
 * About 500 lines, one class: negotiation, the ICE restarts, the data channel, the bit rate caps and
 * the small start all act on the one RTCPeerConnection and its events, in an order that matters (a
 * restart waits for a negotiation under way, a cap for the senders' encodings).
 */
import { computeStats, sendScale, type VideoWant } from "./quality";

/** After `disconnected`, how long to wait for the connection to come back by itself. */
export const ICE_GRACE_MS = 2000;
/**
 * The video is sent at a quarter of its size (`START_SCALE`) from the start of a connection until
 * the bandwidth estimate reaches `GROW_AT_BPS` (checked every `GROW_CHECK_MS`), at most
 * `GROW_WITHIN_MS`. The first estimate (about 300 kbps) is too low for 720p: the encoder then drops
 * its first frames before it scales down by itself, which cost about 150 ms of the first frame
 * (benchmarks/call_setup.py; docs/performance.md).
 */
export const START_SCALE = 4;
export const GROW_AT_BPS = 1_200_000;
export const GROW_CHECK_MS = 250;
export const GROW_WITHIN_MS = 10_000;
/** The longest pause between two ICE restarts. */
export const ICE_BACKOFF_MAX_MS = 16000;
/** ICE restarts without success (about half a minute) before `onGiveUp`. */
export const ICE_ATTEMPTS = 5;
/** Restarts asked for by the Call come at most this often. */
const RESTART_SPACING_MS = 1000;
/** The polite peer is the one whose id sorts first as a string (the same rule in Python). */
export function isPolite(selfId: string, peerId: string): boolean {
  return selfId < peerId;
}

/** An ICE server's failure while gathering (`icecandidateerror`), as the browser reports it. */
export interface IceServerError {
  /** A STUN error code: 401 for credentials the TURN server refused; 700-799 when it was not reached. */
  code: number;
  /** The server's URL, as configured. */
  url: string;
  text: string;
}

/** What a Peer sends: a description or a candidate, addressed by the Call. */
export type PeerSignal = { description: RTCSessionDescriptionInit } | { candidate: RTCIceCandidateInit };

export interface PeerOptions {
  selfId: string;
  peerId: string;
  iceServers: RTCIceServer[];
  /** Relayed candidates only (`iceTransportPolicy: "relay"`). */
  relayOnly?: boolean;
  /** Local tracks to send, or null when receive-only. */
  localStream: MediaStream | null;
  /** True for the newcomer, which offers first. */
  initiator: boolean;
  send(signal: PeerSignal): void;
  onRemoteStream(stream: MediaStream): void;
  onConnectionState(state: RTCPeerConnectionState): void;
  onError(error: unknown): void;
  /** An ICE server failed while gathering (a TURN server refused the credentials, or is out of reach). */
  onIceError?(error: IceServerError): void;
  /** The data channel opened: the Call sends the mute flags and what waited. */
  onChannelOpen?(): void;
  /** A text message arrived on the data channel (unchecked). */
  onChannelMessage?(data: string): void;
  /** ICE restarts did not bring the connection back: the Call replaces or drops it. */
  onGiveUp?(): void;
  /** The data channel closed, not by us: the other page closed its connection. */
  onChannelClose?(): void;
  /** For tests: how to make the connection. */
  createConnection?: (config: RTCConfiguration) => RTCPeerConnection;
}

export class Peer {
  readonly id: string;
  readonly polite: boolean;
  readonly pc: RTCPeerConnection;
  readonly channel: RTCDataChannel;
  remoteStream: MediaStream | null = null;

  private readonly options: PeerOptions;
  private makingOffer = false;
  private ignoreOffer = false;
  private settingRemoteAnswer = false;
  /** False until we may offer: at once for the newcomer, after its first description otherwise. */
  private mayOffer: boolean;
  private offerWanted = false;
  private readonly pendingCandidates: RTCIceCandidateInit[] = [];
  /** Incoming signals are handled one at a time, in the order the signaller relayed them. */
  private inbox: Promise<void> = Promise.resolve();
  private closed = false;
  /** ICE restarts made so far (for tests and diagnostics). */
  iceRestarts = 0;
  /** The pending recovery step, and how many attempts since the connection was last connected. */
  private recoveryTimer: ReturnType<typeof setTimeout> | null = null;
  private recoveryAttempts = 0;
  /** When ICE was last restarted (ms since the epoch): restarts on request are spaced. */
  private lastRestart = -Infinity;
  /** New ICE servers were set: restart ICE with them once the signalling state is stable. */
  private renewWanted = false;
  /** The cap for video senders (bits per second), null for none; applied one change at a time. */
  private maxVideoBitrate: number | null = null;
  private bitrateWork: Promise<void> = Promise.resolve();
  /** Whether the video still goes at `1 / START_SCALE` of its size (see `START_SCALE`). */
  private startSmall = true;
  /** What the other side wants of our video (its `want` message), null for as sent. */
  private want: VideoWant | null = null;
  /** The sender of each kind we send, kept so a track can be swapped in (replaceTrack). */
  private readonly senders = new Map<string, RTCRtpSender>();

  constructor(options: PeerOptions) {
    this.options = options;
    this.id = options.peerId;
    this.polite = isPolite(options.selfId, options.peerId);
    this.mayOffer = options.initiator;
    const config: RTCConfiguration = { iceServers: options.iceServers };
    if (options.relayOnly === true) config.iceTransportPolicy = "relay";
    this.pc = options.createConnection ? options.createConnection(config) : new RTCPeerConnection(config);

    const pc = this.pc;
    // Before the tracks and before any offer, so that offer already has the channel's section.
    this.channel = pc.createDataChannel("ipymeet", { negotiated: true, id: 0, ordered: true });
    this.channel.onopen = () => {
      if (!this.closed) this.options.onChannelOpen?.();
    };
    this.channel.onmessage = (event: MessageEvent) => {
      if (!this.closed && typeof event.data === "string") this.options.onChannelMessage?.(event.data);
    };
    this.channel.onclose = () => {
      if (!this.closed) this.options.onChannelClose?.();
    };
    pc.onsignalingstatechange = () => {
      if (pc.signalingState !== "stable") return;
      this.applyBitrate();
      this.renewWhenStable();
    };
    pc.onnegotiationneeded = () => {
      if (!this.mayOffer) {
        this.offerWanted = true;
        return;
      }
      void this.offer();
    };
    pc.onicecandidate = ({ candidate }) => {
      // A null candidate marks the end of gathering: docs/protocol.md says not to forward it.
      if (candidate === null || candidate.candidate === "") return;
      this.options.send({ candidate: candidate.toJSON() });
    };
    pc.onicecandidateerror = (event) => {
      const { errorCode, url, errorText } = event as RTCPeerConnectionIceErrorEvent;
      if (!this.closed) this.options.onIceError?.({ code: errorCode, url, text: errorText });
    };
    pc.ontrack = (event) => {
      const stream = event.streams[0] ?? this.remoteStream ?? new MediaStream();
      if (!stream.getTracks().includes(event.track)) stream.addTrack(event.track);
      if (stream !== this.remoteStream) {
        this.remoteStream = stream;
        this.options.onRemoteStream(stream);
      }
    };
    pc.onconnectionstatechange = () => {
      const state = pc.connectionState;
      console.debug(`ipymeet: ${this.id}: connection ${state}`);
      if (state === "connected") {
        this.stopRecovering();
        if (this.startSmall) void this.growWhenAllowed();
        this.applyBitrate();
      } else if (state === "failed") {
        if (this.recoveryTimer !== null) clearTimeout(this.recoveryTimer);
        this.recoveryTimer = null;
        this.attempt();
      } else if (state === "disconnected" && this.recoveryTimer === null) {
        this.scheduleRecovery(ICE_GRACE_MS);
      }
      this.options.onConnectionState(state);
    };

    const stream = options.localStream;
    const kinds = new Set<string>();
    for (const track of stream?.getTracks() ?? []) {
      this.senders.set(track.kind, pc.addTrack(track, stream as MediaStream));
      kinds.add(track.kind);
    }
    // The offerer asks for what it does not send, so the others' media still comes. The answerer
    // needs nothing of the kind: the newcomer's offer creates its receiving transceivers.
    if (options.initiator) {
      for (const kind of ["audio", "video"]) {
        if (!kinds.has(kind)) pc.addTransceiver(kind, { direction: "recvonly" });
      }
    }
  }

  get connectionState(): RTCPeerConnectionState {
    return this.closed ? "closed" : this.pc.connectionState;
  }

  get channelOpen(): boolean {
    return !this.closed && this.channel.readyState === "open";
  }

  /** Whether the data channel was closed: by the other page (its tab closed), or by us. */
  get channelClosed(): boolean {
    return this.closed || this.channel.readyState === "closing" || this.channel.readyState === "closed";
  }

  /** Send a text on the data channel; false when it is not open (the caller queues). */
  sendData(data: string): boolean {
    if (!this.channelOpen) return false;
    try {
      this.channel.send(data);
      return true;
    } catch {
      return false; // closing meanwhile
    }
  }

  getStats(): Promise<RTCStatsReport> {
    return this.pc.getStats();
  }

  /** Cap each video sender at `bitsPerSecond` (null: no cap), without renegotiating. */
  setMaxVideoBitrate(bitsPerSecond: number | null): void {
    this.maxVideoBitrate = bitsPerSecond;
    this.applyBitrate();
  }

  /**
   * Send video no larger than fits within what the other side wants, at most at its frame rate
   * (its `want` message; null: as the track is), without renegotiating. The small start still
   * sends smaller while it lasts, never larger than wanted.
   */
  setWant(want: VideoWant | null): void {
    this.want = want;
    this.applyBitrate();
  }

  /** The track's size changed (new camera constraints): fit it to what is wanted again. */
  refitVideo(): void {
    this.applyBitrate();
  }

  /**
   * Send `track` (null: nothing) instead of what is sent of its kind. With a sender of that kind
   * this is `RTCRtpSender.replaceTrack`: no renegotiation. Without one (joined without a camera)
   * the track is added, which renegotiates (perfect negotiation handles it).
   */
  async replaceTrack(kind: "audio" | "video", track: MediaStreamTrack | null, stream: MediaStream | null): Promise<void> {
    if (this.closed) return;
    const sender = this.senders.get(kind);
    if (sender !== undefined) {
      await sender.replaceTrack(track);
      if (track !== null) this.applyBitrate();
      return;
    }
    if (track === null) return;
    this.senders.set(kind, stream === null ? this.pc.addTrack(track) : this.pc.addTrack(track, stream));
  }

  /**
   * Restart ICE now unless connected (the other page is reachable again: it just entered the
   * room, or this one did), and keep trying on the usual schedule. A call does not count as one
   * of the scheduled attempts, so however often the Call asks, `onGiveUp` comes after the same
   * half minute.
   */
  recover(): void {
    if (this.closed || this.pc.connectionState === "connected") return;
    if (Date.now() - this.lastRestart >= RESTART_SPACING_MS) this.restartNow();
    if (this.recoveryTimer === null) this.scheduleRecovery(this.nextPause());
  }

  /**
   * Send again an offer of ours that is still unanswered: made while the signaller was out of
   * reach, it never arrived, and the other side, not knowing of it, would wait forever (and an
   * impolite peer ignores the other's offers meanwhile). The description carries the candidates
   * gathered so far, which went missing with it.
   */
  resync(): void {
    const description = this.pc.localDescription;
    if (this.closed || this.makingOffer || this.pc.signalingState !== "have-local-offer" || description === null) return;
    this.options.send({ description: { type: description.type, sdp: description.sdp } });
  }

  /**
   * Use `iceServers` (fresh TURN credentials) from now on, and make new relay allocations with
   * them: an ICE restart, once the signalling state is stable (a negotiation under way finishes
   * first; its answer may be on its way). Not before a first exchange: that one gathers with
   * these already.
   */
  renewIceServers(iceServers: RTCIceServer[]): void {
    if (this.closed) return;
    this.pc.setConfiguration({ ...this.pc.getConfiguration(), iceServers });
    this.renewWanted = true;
    this.renewWhenStable();
  }

  private renewWhenStable(): void {
    // An offer being made is under way too: its answer brings the state back to stable.
    if (!this.renewWanted || this.closed || this.makingOffer || this.pc.signalingState !== "stable") return;
    this.renewWanted = false;
    if (this.pc.remoteDescription === null) return; // nothing gathered yet: the first offer will
    if (this.options.relayOnly === true) {
      this.restartForRenewal();
      return;
    }
    // A pair this side's TURN server does not carry has no allocation to renew (a restart would
    // only cost a renegotiation, and a kernel peer its connection): its next gathering takes the
    // new servers from the configuration.
    void this.localCandidateType().then((type) => {
      if (type === "relay" && !this.closed) this.restartForRenewal();
    });
  }

  private restartForRenewal(): void {
    console.debug(`ipymeet: ${this.id}: new ICE servers: restarting ICE`);
    this.restartNow();
  }

  /** The type of this side's candidate in the pair in use, null when unknown. */
  private async localCandidateType(): Promise<string | null> {
    try {
      return computeStats(null, await this.pc.getStats(), 0).stats.candidate_type;
    } catch {
      return null;
    }
  }

  /** One scheduled attempt: give up after ICE_ATTEMPTS, else restart and wait longer. */
  private attempt(): void {
    if (this.closed) return;
    if (this.pc.connectionState === "connected") {
      this.recoveryAttempts = 0;
      return;
    }
    if (this.recoveryAttempts >= ICE_ATTEMPTS) {
      this.recoveryAttempts = 0;
      this.options.onGiveUp?.();
      return;
    }
    this.recoveryAttempts += 1;
    this.restartNow();
    this.scheduleRecovery(this.nextPause());
  }

  private nextPause(): number {
    return Math.min(ICE_GRACE_MS * 2 ** this.recoveryAttempts, ICE_BACKOFF_MAX_MS);
  }

  private restartNow(): void {
    // Only once a first exchange is done: before that, the first offer is still under way.
    if (this.pc.remoteDescription === null && this.pc.signalingState !== "have-local-offer") return;
    this.lastRestart = Date.now();
    this.iceRestarts += 1;
    console.debug(`ipymeet: ${this.id}: ICE restart ${this.iceRestarts} (${this.pc.signalingState})`);
    void this.restartIce();
  }

  /**
   * Whether `description` is an offer from another RTCPeerConnection than the one this connection
   * talks to: its DTLS fingerprint differs. The other side gave up its connection and made a new
   * one (it found ours dead while it was away); this one must be replaced to answer it.
   */
  isFromAnotherConnection(description: RTCSessionDescriptionInit): boolean {
    if (description.type !== "offer") return false;
    const current = fingerprint(this.pc.remoteDescription?.sdp);
    return current !== null && fingerprint(description.sdp) !== current;
  }

  /** Handle a relayed `signal` from this peer. */
  receive(message: { description?: RTCSessionDescriptionInit; candidate?: RTCIceCandidateInit | null }): void {
    this.inbox = this.inbox
      .then(async () => {
        if (this.closed) return;
        if (message.description) await this.receiveDescription(message.description);
        else if (message.candidate) await this.receiveCandidate(message.candidate);
      })
      .catch((error: unknown) => {
        if (!this.closed) this.options.onError(error);
      });
  }

  /** Stop every transceiver, then close the connection. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    const pc = this.pc;
    this.channel.onopen = null;
    this.channel.onmessage = null;
    this.channel.onclose = null;
    try {
      this.channel.close();
    } catch {
      // already closed
    }
    pc.onsignalingstatechange = null;
    pc.onnegotiationneeded = null;
    pc.onicecandidate = null;
    pc.onicecandidateerror = null;
    pc.ontrack = null;
    pc.onconnectionstatechange = null;
    this.stopRecovering();
    for (const transceiver of pc.getTransceivers()) {
      try {
        transceiver.stop();
      } catch {
        // already stopped, or the connection is already closed
      }
    }
    pc.close();
    this.pendingCandidates.length = 0;
  }

  private scheduleRecovery(ms: number): void {
    if (this.closed) return;
    if (this.recoveryTimer !== null) clearTimeout(this.recoveryTimer);
    this.recoveryTimer = setTimeout(() => {
      this.recoveryTimer = null;
      this.attempt();
    }, ms);
  }

  private stopRecovering(): void {
    if (this.recoveryTimer !== null) clearTimeout(this.recoveryTimer);
    this.recoveryTimer = null;
    this.recoveryAttempts = 0;
  }

  private async restartIce(): Promise<void> {
    const pc = this.pc;
    try {
      // An offer of ours that was never answered (sent while the signaller was unreachable):
      // roll it back, or the browser will not start a new negotiation.
      if (pc.signalingState === "have-local-offer" && !this.makingOffer) {
        await pc.setLocalDescription({ type: "rollback" });
      }
      if (this.closed) return;
      pc.restartIce(); // fires negotiationneeded: perfect negotiation sends the offer
    } catch (error) {
      if (!this.closed) this.options.onError(error);
    }
  }

  /**
   * Full size once the bandwidth estimate allows it, or after `GROW_WITHIN_MS` at the latest
   * (also at once where the estimate cannot be read).
   */
  private async growWhenAllowed(): Promise<void> {
    const until = Date.now() + GROW_WITHIN_MS;
    while (this.startSmall && !this.closed && Date.now() < until) {
      await new Promise((resolve) => setTimeout(resolve, GROW_CHECK_MS));
      let estimate = 0;
      try {
        (await this.pc.getStats()).forEach((stat: Partial<RTCIceCandidatePairStats> & { type: string }) => {
          if (stat.type === "candidate-pair" && stat.nominated === true) estimate = stat.availableOutgoingBitrate ?? 0;
        });
      } catch {
        break; // no statistics here: send full size now rather than never
      }
      if (estimate >= GROW_AT_BPS) break;
    }
    this.startSmall = false;
    if (!this.closed) this.applyBitrate();
  }

  private applyBitrate(): void {
    // One setParameters at a time: each must start from a fresh getParameters.
    this.bitrateWork = this.bitrateWork
      .then(() => this.applyBitrateNow())
      .catch((error: unknown) => {
        if (!this.closed) console.debug("ipymeet: could not cap the video bit rate", error);
      });
  }

  private async applyBitrateNow(): Promise<void> {
    for (const sender of this.pc.getSenders()) {
      if (this.closed) return;
      if (sender.track?.kind !== "video") continue;
      const parameters = sender.getParameters();
      const encoding = parameters.encodings?.[0];
      // No encodings before negotiation: applied again once negotiated and once connected.
      if (encoding === undefined) continue;
      const cap = this.maxVideoBitrate;
      const { width = 0, height = 0 } = sender.track.getSettings();
      const scale = sendScale(width, height, this.want, this.startSmall ? START_SCALE : 1);
      const fps = this.want?.fps ?? null;
      if (
        (encoding.maxBitrate ?? null) === cap &&
        (encoding.scaleResolutionDownBy ?? 1) === scale &&
        (encoding.maxFramerate ?? null) === fps
      ) {
        continue;
      }
      if (cap === null) delete encoding.maxBitrate;
      else encoding.maxBitrate = cap;
      encoding.scaleResolutionDownBy = scale;
      if (fps === null) delete encoding.maxFramerate;
      else encoding.maxFramerate = fps;
      await sender.setParameters(parameters);
    }
  }

  private async offer(): Promise<void> {
    if (this.closed) return;
    try {
      this.makingOffer = true;
      await this.pc.setLocalDescription();
      const description = this.pc.localDescription;
      if (!this.closed && description !== null) {
        this.options.send({ description: { type: description.type, sdp: description.sdp } });
      }
    } catch (error) {
      if (!this.closed) this.options.onError(error);
    } finally {
      this.makingOffer = false;
      // A renewal waited for this offer; one that failed leaves the state stable, with no event.
      this.renewWhenStable();
    }
  }

  private async receiveDescription(description: RTCSessionDescriptionInit): Promise<void> {
    const pc = this.pc;
    const readyForOffer =
      !this.makingOffer && (pc.signalingState === "stable" || this.settingRemoteAnswer);
    const collision = description.type === "offer" && !readyForOffer;
    this.ignoreOffer = !this.polite && collision;
    if (this.ignoreOffer) return;

    if (collision && pc.signalingState === "have-local-offer") {
      // Polite: give up our own offer and take theirs.
      await pc.setLocalDescription({ type: "rollback" });
    }
    this.settingRemoteAnswer = description.type === "answer";
    try {
      // In a collision while our offer is still being made, this rolls back implicitly.
      await pc.setRemoteDescription(description);
    } finally {
      this.settingRemoteAnswer = false;
    }
    if (this.closed) return;
    await this.flushCandidates();
    if (description.type === "offer") {
      await pc.setLocalDescription();
      const answer = pc.localDescription;
      if (!this.closed && answer !== null) {
        this.options.send({ description: { type: answer.type, sdp: answer.sdp } });
      }
    }
    if (!this.mayOffer) {
      this.mayOffer = true;
      // A negotiation asked for while we had to wait: the browser asks again once stable if it is
      // still needed, but it may have asked only once, before, so offer now if nothing is pending.
      if (this.offerWanted && pc.signalingState === "stable" && needsNegotiation(pc)) void this.offer();
      this.offerWanted = false;
    }
  }

  private async receiveCandidate(candidate: RTCIceCandidateInit): Promise<void> {
    if (!candidate.candidate) return; // null or empty: end of candidates, nothing to add
    if (this.pc.remoteDescription === null) {
      this.pendingCandidates.push(candidate);
      return;
    }
    await this.addCandidate(candidate);
  }

  private async flushCandidates(): Promise<void> {
    const queued = this.pendingCandidates.splice(0);
    for (const candidate of queued) await this.addCandidate(candidate);
  }

  private async addCandidate(candidate: RTCIceCandidateInit): Promise<void> {
    try {
      await this.pc.addIceCandidate(candidate);
    } catch (error) {
      // Candidates of an offer we ignored cannot be added; that is expected.
      if (!this.ignoreOffer) throw error;
    }
  }
}

/** The first DTLS fingerprint of an SDP, or null. */
function fingerprint(sdp: string | undefined): string | null {
  const match = /^a=fingerprint:(.+)$/m.exec(sdp ?? "");
  return match === null ? null : match[1]!.trim();
}

/** Whether some transceiver has a track or direction the current descriptions do not carry yet. */
function needsNegotiation(pc: RTCPeerConnection): boolean {
  return pc.getTransceivers().some((t) => t.currentDirection !== "stopped" && t.mid === null);
}
