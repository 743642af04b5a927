/**
 * The other members of one call and their connections: adding, replacing and dropping them,
 * routing the signals and data channel messages that come from them, the liveness probes
 * (`ping` / `pong`, decided by liveness.ts), and their quality figures.
 *
 * One `Members` per session; `close()` ends it, and from then on nothing of it acts, so a late
 * event of an old session touches nothing.
 *
 * A little over 400 lines: the connections and their liveness act on the same members (a probe's
 * verdict replaces or drops a connection, a connection's events start a probe), so they stay in
 * one class, with the decisions themselves out in liveness.ts.
 *
 * The relay (`relay_only`, TURN): with relay only and no TURN server in the `enter` answer the call
 * cannot connect, which the host hears at once; a TURN server's refusal of the credentials (401:
 * wrong or expired: at once with relay only, else when a connection then fails, since a call
 * that connects directly never needed it), or a connection that fails with relay only, once per
 * session. The credentials expire (`--turn-ttl`); the signaller sends fresh ones before they do
 * (`ice_servers`), and so does entering again: new connections take them, and every connection
 * makes new relay allocations with them (`Peer.renewIceServers`).
 */
import { LINGER_MS, PROBE_LEFT_MS, PROBE_REENTER_MS, judge, type LivenessEvent } from "./liveness";
import { Outbox, newMessageId, parsePeerMessage } from "./messages";
import type { IceServerError, Peer, PeerOptions } from "./peer";
import { maxBitrateFor, measureEach, type StatsSnapshot } from "./quality";
import { receivedLevel, SpeakingGate } from "./speaking";
import type { EnterAccepted, IncomingSignal, LeftReason, OutgoingSignal, PeerInfo } from "./signaling";
import type { BrowserPeer, ChatPeerMessage, PeerStats, RemotePeer } from "./types";

export type { RemotePeer } from "./types";

interface Member {
  id: string;
  name: string;
  peer: Peer | null;
  /** In the room as the signaller last said (false after `peer_left` "disconnected"). */
  present: boolean;
  /** Out of view: it vanished without a word; its connection lingers until `lingerTimer`. */
  hidden: boolean;
  lingerTimer: ReturnType<typeof setTimeout> | null;
  /** Answers awaited to our `ping`s on its data channel, by ping id. */
  probes: Map<string, () => void>;
  audio: boolean;
  video: boolean;
  screen: boolean;
  /** Chat lines for this member that wait for its data channel to open. */
  outbox: Outbox;
  stats: PeerStats | null;
  snapshot: StatsSnapshot | null;
  /** Whether it speaks now, by its received audio level (speaking.ts). */
  voice: SpeakingGate;
}

/** What went wrong with the relay: see errors.ts for what each says. */
export type RelayProblem = "no_relay" | "turn_refused" | "relay_failed";

/** Whether `url` names a TURN server (not STUN). */
export function isTurnUrl(url: string): boolean {
  return /^turns?:/i.test(url);
}

/** The first TURN URL among `servers`, or null when they have none. */
export function turnUrlOf(servers: readonly RTCIceServer[]): string | null {
  for (const server of servers) {
    const urls = typeof server.urls === "string" ? [server.urls] : server.urls;
    const turn = urls.find(isTurnUrl);
    if (turn !== undefined) return turn;
  }
  return null;
}

/** What the members need from their call. */
export interface MembersHost {
  createPeer(options: PeerOptions): Peer;
  /** Relay a signal through the signaller; rejects when it was not delivered. */
  signal(message: OutgoingSignal): Promise<void>;
  /** What a new connection sends: the camera or the screen, null when receive-only. */
  outgoing(): MediaStream | null;
  /** The mute flags message (JSON) each channel starts with. */
  flags(): string;
  /** The list, a stream, a flag or a connection state changed. */
  changed(): void;
  /** A chat line came from `from` (its id and signaller name). */
  chat(from: { id: string; name: string }, message: ChatPeerMessage): void;
  /** Whether media may go through a TURN relay only (`relay_only`). */
  relayOnly(): boolean;
  /** The relay cannot work, or failed (`turn`: the TURN server's URL, when there is one). */
  relayProblem(problem: RelayProblem, turn: string | null): void;
}

export class Members {
  selfId = "";
  iceServers: RTCIceServer[] = [];
  private readonly host: MembersHost;
  private readonly byId = new Map<string, Member>();
  private closed = false;
  private measuring = false;
  /** A relay problem was reported in this session: once is enough. */
  private relayReported = false;
  /** The TURN server that refused this session's credentials (a 401), if one did. */
  private refusedTurn: string | null = null;
  /** The member who started speaking last (still marked once quiet), or null. */
  private lastSpeaker: string | null = null;

  constructor(host: MembersHost) {
    this.host = host;
  }

  get size(): number {
    return this.byId.size;
  }

  /** The members in view, as the views show them. */
  get remotePeers(): RemotePeer[] {
    return this.visible().map((member) => ({
      id: member.id,
      name: member.name,
      connection: member.peer?.connectionState ?? "new",
      away: !member.present,
      stream: member.peer?.remoteStream ?? null,
      audio: member.audio,
      video: member.video,
      screen: member.screen,
      speaking: member.voice.speaking,
      lastSpeaker: member.id === this.lastSpeaker,
      stats: member.stats,
    }));
  }

  /** What `_browser_peers` says of them. */
  browserPeers(): BrowserPeer[] {
    return this.remotePeers.map(({ id, name, connection, audio, video, screen, speaking }) => ({ id, name, connection, audio, video, screen, speaking }));
  }

  /** How many in view are connected (the call is `in_call` with one or more). */
  connectedCount(): number {
    return this.visible().filter((m) => m.peer?.connectionState === "connected").length;
  }

  /** `id`'s name and video as received, or undefined when there is no such member. */
  find(id: string): { name: string; stream: MediaStream | null } | undefined {
    const member = this.byId.get(id);
    return member === undefined ? undefined : { name: member.name, stream: member.peer?.remoteStream ?? null };
  }

  /**
   * In the room (first or again): take in the members the signaller lists. After re-entering,
   * a member known already keeps its connection if it still answers on it (media kept flowing
   * meanwhile), else gets a new one, which this page offers as the newcomer; a member no longer
   * listed stays while its connection answers (it may be reconnecting too).
   */
  entered(accepted: EnterAccepted): void {
    if (this.selfId !== "" && accepted.self !== this.selfId) {
      // The signaller did not keep our id (it knows no session keys): start the connections afresh.
      for (const member of this.byId.values()) this.dispose(member);
      this.byId.clear();
    }
    this.selfId = accepted.self;
    // Entering again brings fresh credentials: the connections kept renew theirs too, since the
    // signaller's next renewal counts from now and may come after the old ones expire.
    if (this.byId.size > 0 && JSON.stringify(accepted.ice_servers) !== JSON.stringify(this.iceServers)) {
      this.renewed(accepted.ice_servers);
    }
    this.iceServers = accepted.ice_servers;
    if (this.host.relayOnly() && turnUrlOf(this.iceServers) === null) {
      // Relay only, and no relay to use: no connection could ever be made.
      this.host.relayProblem("no_relay", null);
      return;
    }
    const listed = new Set<string>();
    for (const info of accepted.peers) {
      listed.add(info.id);
      const known = this.byId.get(info.id);
      if (known === undefined) {
        this.add(info, true);
      } else {
        markPresent(known);
        if (info.name !== "") known.name = info.name;
        known.peer?.resync();
        void this.checkAlive(known, PROBE_REENTER_MS);
      }
    }
    for (const member of [...this.byId.values()]) {
      if (listed.has(member.id)) continue;
      member.present = false;
      void this.checkAlive(member, PROBE_REENTER_MS);
    }
  }

  /** `peer_joined`, or an offer from someone not met yet (no name then). */
  add(info: PeerInfo, initiator: boolean): void {
    if (this.closed) return;
    const known = this.byId.get(info.id);
    if (known !== undefined) {
      // Back after its signalling dropped (its connection kept), or met first through its offer
      // (no name then): take the name when it comes.
      const back = !known.present;
      markPresent(known);
      if (info.name !== "" && known.name !== info.name) known.name = info.name;
      if (back) {
        known.peer?.resync();
        known.peer?.recover();
      }
      this.host.changed();
      return;
    }
    if (info.id === this.selfId) return;
    const member: Member = {
      id: info.id,
      name: info.name,
      peer: null,
      present: true,
      hidden: false,
      lingerTimer: null,
      probes: new Map(),
      audio: true,
      video: true,
      screen: false,
      outbox: new Outbox(),
      stats: null,
      snapshot: null,
      voice: new SpeakingGate(),
    };
    this.byId.set(info.id, member);
    member.peer = this.connect(member, initiator);
    this.capBitrates();
    this.host.changed();
  }

  /**
   * `ice_servers`: fresh TURN credentials. Connections made from now on take them, and each
   * existing one renews its relay with them.
   */
  renewed(servers: RTCIceServer[]): void {
    if (this.closed) return;
    this.iceServers = servers;
    console.debug(`ipymeet: new ICE servers for ${this.byId.size} connection(s)`);
    for (const member of this.byId.values()) member.peer?.renewIceServers(servers);
  }

  /** `peer_left`. */
  left(id: string, reason: LeftReason): void {
    console.debug(`ipymeet: ${id}: peer_left (${reason})`);
    const member = this.byId.get(id);
    if (member === undefined || this.closed) return;
    // Its signalling dropped: a closed or crashed tab will not answer the probe, a page reconnecting will.
    if (reason === "disconnected") member.present = false;
    this.act(member, { type: "peer_left", reason }, PROBE_LEFT_MS);
  }

  /** A relayed `signal` to its member's connection. */
  route(message: IncomingSignal): void {
    if (this.closed) return;
    let member = this.byId.get(message.from);
    if (member === undefined) {
      // Unknown sender (no peer_joined seen): accept an offer, ignore anything else.
      if (message.description?.type !== "offer") return;
      this.add({ id: message.from, name: "" }, false);
      member = this.byId.get(message.from);
    } else if (message.description !== undefined && member.peer?.isFromAnotherConnection(message.description)) {
      console.info(`ipymeet: ${member.id}: new connection: offered from one`);
      this.replace(member, false);
    }
    member?.peer?.receive(message);
  }

  /** Send `data` on every open data channel now (the mute flags). */
  broadcast(data: string): void {
    for (const member of this.byId.values()) member.peer?.sendData(data);
  }

  /** Send `data` to every member now, each over its own ordered channel, queued until it opens. */
  queue(data: string): void {
    for (const member of this.byId.values()) {
      const peer = member.peer;
      member.outbox.push(data, (out) => peer !== null && peer.sendData(out));
    }
  }

  /** The camera's size changed: each connection fits its video to what its other side wants. */
  refitVideo(): void {
    for (const member of this.byId.values()) member.peer?.refitVideo();
  }

  /** Send `track` as every connection's `kind` (replaceTrack: no renegotiation). */
  async replaceTrack(kind: "audio" | "video", track: MediaStreamTrack | null, stream: MediaStream | null): Promise<void> {
    await Promise.all(
      [...this.byId.values()].map((member) =>
        member.peer?.replaceTrack(kind, track, stream).catch((error: unknown) => {
          console.warn(`ipymeet: could not switch the ${kind} sent to ${member.id}`, error);
        }),
      ),
    );
  }

  /**
   * Read each member's received audio level; tells the host when one starts or stops speaking
   * (a muted one never speaks). Returns whether anyone's changed.
   */
  listen(now: number): boolean {
    if (this.closed) return false;
    let changed = false;
    for (const member of this.byId.values()) {
      const pc = member.peer?.pc;
      const was = member.voice.speaking;
      const speaking = member.voice.update(pc === undefined ? null : receivedLevel(pc), !member.audio, now);
      if (speaking === was) continue;
      changed = true;
      if (speaking) this.lastSpeaker = member.id;
    }
    if (changed) this.host.changed();
    return changed;
  }

  /** A connection that sends this page's microphone, to read its level from, or null. */
  sending(): RTCPeerConnection | null {
    for (const member of this.byId.values()) {
      if (member.peer?.connectionState === "connected") return member.peer.pc;
    }
    return null;
  }

  /** Read every connection's statistics; the figures of the current members, by id. */
  async measure(): Promise<Record<string, PeerStats> | null> {
    if (this.measuring || this.closed) return null;
    this.measuring = true;
    try {
      await measureEach(this.byId.values());
    } finally {
      this.measuring = false;
    }
    if (this.closed) return null;
    const stats: Record<string, PeerStats> = {};
    for (const member of this.byId.values()) if (member.stats !== null) stats[member.id] = member.stats;
    return stats;
  }

  /** Close every connection; nothing of these members acts any more. */
  close(): void {
    this.closed = true;
    for (const member of this.byId.values()) this.dispose(member);
    this.byId.clear();
  }

  // -- liveness ---------------------------------------------------------------------------------

  /** Ask `member`'s page whether it is there, then act on the answer. */
  private async checkAlive(member: Member, waitMs: number): Promise<void> {
    const answered = await this.probe(member, waitMs);
    console.debug(`ipymeet: ${member.id}: ${answered ? "answers" : "does not answer"} (${member.peer?.connectionState})`);
    if (member.peer === null) return;
    this.act(member, { type: "probed", answered }, waitMs);
  }

  private act(member: Member, event: LivenessEvent, probeMs: number): void {
    // An old member object (replaced under the same id) decides nothing.
    if (this.closed || this.byId.get(member.id) !== member) return;
    const peer = member.peer;
    const { action, reason } = judge(event, {
      present: member.present,
      channelClosed: peer?.channelClosed ?? false,
      connection: peer?.connectionState ?? "new",
    });
    if (action !== "keep" && action !== "probe" && action !== "recover") console.info(`ipymeet: ${member.id}: ${reason}`);
    switch (action) {
      case "keep":
        return;
      case "probe":
        this.host.changed();
        void this.checkAlive(member, probeMs);
        return;
      case "recover":
        peer?.recover();
        this.host.changed();
        return;
      case "hide":
        this.hide(member);
        return;
      case "replace":
        this.replace(member, true);
        return;
      case "remove":
        this.remove(member.id);
        return;
    }
  }

  private hide(member: Member): void {
    member.hidden = true;
    if (member.lingerTimer !== null) clearTimeout(member.lingerTimer);
    member.lingerTimer = setTimeout(() => {
      member.lingerTimer = null;
      this.act(member, { type: "linger_over" }, 0);
    }, LINGER_MS);
    this.host.changed();
  }

  /** Ask `member`'s page over the data channel whether it is there; false if no answer in time. */
  private probe(member: Member, waitMs: number): Promise<boolean> {
    const peer = member.peer;
    if (peer === null || !peer.channelOpen) return Promise.resolve(false);
    const id = newMessageId();
    return new Promise((resolve) => {
      const timer = setTimeout(() => answer(false), waitMs);
      const answer = (alive: boolean): void => {
        clearTimeout(timer);
        member.probes.delete(id);
        resolve(alive);
      };
      member.probes.set(id, () => answer(true));
      if (!peer.sendData(JSON.stringify({ t: "ping", id }))) answer(false);
    });
  }

  // -- connections --------------------------------------------------------------------------------

  private connect(member: Member, initiator: boolean): Peer {
    const mine = (): boolean => !this.closed && member.peer === peer;
    const iceServers = this.iceServers;
    const relayOnly = this.host.relayOnly();
    const peer: Peer = this.host.createPeer({
      selfId: this.selfId,
      peerId: member.id,
      iceServers,
      relayOnly,
      localStream: this.host.outgoing(),
      initiator,
      send: (signal) => {
        if (!mine()) return;
        this.host.signal({ to: member.id, ...signal }).catch((error: unknown) => {
          // A peer that left meanwhile answers not_in_room, and nothing is sent while the
          // signaller is out of reach: the connection's recovery offers again later.
          if (!this.closed) console.debug("ipymeet: signal not delivered", error);
        });
      },
      onRemoteStream: () => {
        if (mine()) this.host.changed();
      },
      onConnectionState: (state) => {
        if (!mine()) return;
        if (state === "failed" && relayOnly) {
          if (this.refusedTurn !== null) this.reportRelay("turn_refused", this.refusedTurn);
          else this.reportRelay("relay_failed", turnUrlOf(iceServers));
        }
        // Without relay only, a refused TURN server matters once the connection fails for it.
        if (state === "failed" && !relayOnly && this.refusedTurn !== null) this.reportRelay("turn_refused", this.refusedTurn);
        this.host.changed();
      },
      onIceError: (error) => {
        if (mine()) this.iceError(member, error, relayOnly);
      },
      onError: (error) => console.warn(`ipymeet: connection to ${member.id} failed a step`, error),
      onChannelOpen: () => {
        if (!mine()) return;
        peer.sendData(this.host.flags());
        member.outbox.flush((data) => peer.sendData(data));
      },
      onChannelMessage: (data) => {
        if (mine() && this.byId.get(member.id) === member) this.channelMessage(member, data);
      },
      onGiveUp: () => {
        if (mine()) this.act(member, { type: "gave_up" }, 0);
      },
      onChannelClose: () => {
        // The other page closed this connection while it was away: it is not coming back on it.
        if (mine()) this.act(member, { type: "channel_closed" }, 0);
      },
    });
    return peer;
  }

  private iceError(member: Member, error: IceServerError, relayOnly: boolean): void {
    console.debug(`ipymeet: ${member.id}: ICE server ${error.url} failed: ${error.code} ${error.text}`);
    // 401 after the credentials were sent: the TURN server does not take them (wrong secret, or
    // expired). With relay only nothing else can connect, so say so now; otherwise the call may
    // well connect directly, and it is said only if a connection then fails.
    if (error.code !== 401 || !isTurnUrl(error.url)) return;
    this.refusedTurn = error.url;
    if (relayOnly) this.reportRelay("turn_refused", error.url);
  }

  private reportRelay(problem: RelayProblem, turn: string | null): void {
    if (this.relayReported || this.closed) return;
    this.relayReported = true;
    this.host.relayProblem(problem, turn);
  }

  /** Give `member` a new connection (its old one is dead, or the other page made a new one). */
  private replace(member: Member, initiator: boolean): void {
    member.peer?.close();
    member.stats = null;
    member.snapshot = null;
    member.peer = this.connect(member, initiator);
    member.peer.setMaxVideoBitrate(maxBitrateFor(this.byId.size));
    this.host.changed();
  }

  private remove(id: string): void {
    const member = this.byId.get(id);
    if (member === undefined) return;
    this.byId.delete(id);
    this.dispose(member);
    this.capBitrates();
    this.host.changed();
  }

  private dispose(member: Member): void {
    if (member.lingerTimer !== null) clearTimeout(member.lingerTimer);
    member.lingerTimer = null;
    member.peer?.close();
  }

  /** Each video sender's cap follows the number of others: every member sends to each. */
  private capBitrates(): void {
    const cap = maxBitrateFor(this.byId.size);
    for (const member of this.byId.values()) member.peer?.setMaxVideoBitrate(cap);
  }

  private visible(): Member[] {
    return [...this.byId.values()].filter((member) => !member.hidden);
  }

  private channelMessage(member: Member, data: string): void {
    const message = parsePeerMessage(data);
    if (message === null) {
      console.debug(`ipymeet: ignored a malformed message from ${member.id}`);
      return;
    }
    switch (message.t) {
      case "state":
        if (member.audio === message.audio && member.video === message.video && member.screen === message.screen) return;
        member.audio = message.audio;
        if (!message.audio) member.voice.off();
        member.video = message.video;
        member.screen = message.screen;
        this.host.changed();
        return;
      case "ping":
        member.peer?.sendData(JSON.stringify({ t: "pong", id: message.id }));
        return;
      case "pong":
        member.probes.get(message.id)?.();
        return;
      case "chat":
        this.host.chat({ id: member.id, name: member.name }, message);
        return;
      case "want":
        member.peer?.setWant(message);
        return;
    }
  }
}

/** The signaller lists `member` (again): in view, no longer lingering. */
function markPresent(member: Member): void {
  member.present = true;
  member.hidden = false;
  if (member.lingerTimer !== null) clearTimeout(member.lingerTimer);
  member.lingerTimer = null;
}
