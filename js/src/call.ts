/**
 * The Call: one per model, so a widget shown twice uses one camera and one set of connections.
 *
 * Python (or the view's button) sets the desired state in `_desired`; the Call reconciles toward
 * it and reports what happened: `state`, `error`/`error_code`, `connected_via`, `_browser_peers`
 * (with each other member's mute flags, learnt over the data channels), `stats` (about once a
 * second) and `messages` (the chat history, kept here at model level, not per view). The kernel's
 * custom messages are handled here too (`msg:custom`, one dispatcher in messages.ts).
 * Every asynchronous step of a join checks that its session is still the current one, so a Hang up
 * (or a new join) in the middle leaves nothing behind: a late camera stream is stopped, a late
 * socket closed.
 */
import {
  MediaAborted,
  classifyMediaError,
  constraintsFor,
  openLocalMedia,
  stopStream,
  type DeviceChoice,
  type LocalMedia,
} from "./media";
import { ChatLog, Outbox, chatText, dispatchKernelMessage, newMessageId, parsePeerMessage } from "./messages";
import { Peer, type PeerOptions } from "./peer";
import { computeStats, maxBitrateFor, type StatsSnapshot } from "./quality";
import { candidateUrls, readBaseUrl } from "./route";
import { NoFrame, captureFrame, exactBuffer, uploadError, uploadFrame, type Frame, type FrameSink } from "./snapshot";
import {
  SignalingClient,
  SignalingError,
  UnreachableError,
  connectFirst,
  type ConnectOptions,
  type EnterAccepted,
  type EnterRequest,
  type IncomingSignal,
  type LeftReason,
  type PeerInfo,
  type SocketLike,
} from "./signaling";
import { Reporter, isActive, reduce, type CallEvent } from "./state";
import type {
  BrowserPeer,
  CallState,
  DeviceInfo,
  ChatEntry,
  ChatPeerMessage,
  ErrorCode,
  FrameFormat,
  Model,
  PeerStats,
  SnapshotRequest,
  StatePeerMessage,
  WidgetModel,
} from "./types";

export const ROOM_RE = /^[A-Za-z0-9_.-]{1,64}$/;

/** Pauses between attempts to reach the signaller again: doubling from the first to the last. */
export const RECONNECT_FIRST_MS = 250;
export const RECONNECT_MAX_MS = 5000;
/** How long the signaller may be out of reach before the view says so in an error. */
export const RECONNECT_NOTICE_MS = 10000;
/**
 * How long a `ping` waits for its `pong`. After a `peer_left` "disconnected" this decides whether a
 * closed or crashed tab leaves the view (well within 2 s); after re-entering, whether a connection
 * is kept (generous: a slow answer would cost a whole new connection).
 */
export const PROBE_LEFT_MS = 1000;
export const PROBE_REENTER_MS = 2500;
/**
 * How long a member that vanished without a word (no answer, its connection still up) is kept out
 * of view before its connection is closed: a crashed tab never comes back, but a page whose
 * network changed closes its sockets just as abruptly, and enters again within seconds; its
 * connection then recovers by an ICE restart instead of starting over.
 */
export const LINGER_MS = 30000;

/** What the Call needs from the page; tests pass fakes. */
export interface CallDeps {
  routes(model: WidgetModel): string[];
  connect(urls: readonly string[], options: ConnectOptions): Promise<{ socket: SocketLike; url: string }>;
  openMedia(signal: AbortSignal, choice: DeviceChoice): Promise<LocalMedia>;
  /** The browser's cameras and microphones, a fresh stream of one device, and its device changes. */
  devices: {
    enumerate(): Promise<Pick<MediaDeviceInfo, "deviceId" | "kind" | "label">[]>;
    getUserMedia(constraints: MediaStreamConstraints): Promise<MediaStream>;
    /** Call `listener` on every `devicechange`; returns the unsubscribe. */
    watch(listener: () => void): () => void;
  };
  createPeer(options: PeerOptions): Peer;
  /** How often the connections' quality is measured, in milliseconds. */
  statsIntervalMs: number;
  /** Milliseconds since the epoch, for chat times. */
  now(): number;
  /** Appended to the "can't reach the signaller" message: what the user should do. */
  unreachableHint: string;
  /**
   * Ask for the screen (getDisplayMedia). Called synchronously from the change of `screen`, so a
   * click on the view's button still counts as the user's gesture.
   */
  openScreen(): Promise<MediaStream>;
  /** The current frame of a stream's video (snapshot.ts); rejects with NoFrame. */
  captureFrame(stream: MediaStream, format: FrameFormat): Promise<Frame>;
  /**
   * A join token for `room` (a signaller started with a secret requires one), asked for before
   * every `enter`, so a re-entry gets a fresh one; undefined when there is none.
   */
  token(room: string): Promise<string | undefined>;
}

export const defaultDeps: CallDeps = {
  routes: (model) =>
    candidateUrls({
      signalingUrl: model.get("signaling_url"),
      route: model.get("route"),
      port: model.get("_port"),
      pageOrigin: location.origin,
      pageHostname: location.hostname,
      baseUrl: readBaseUrl(document),
    }),
  connect: connectFirst,
  openMedia: (signal, choice) =>
    openLocalMedia(
      { mediaDevices: navigator.mediaDevices as MediaDevices | undefined, isSecureContext: window.isSecureContext },
      signal,
      choice,
    ),
  devices: {
    enumerate: async () => {
      const devices = typeof navigator === "undefined" ? undefined : (navigator.mediaDevices as MediaDevices | undefined);
      return typeof devices?.enumerateDevices === "function" ? devices.enumerateDevices() : [];
    },
    getUserMedia: (constraints) => navigator.mediaDevices.getUserMedia(constraints),
    watch: (listener) => {
      const devices = typeof navigator === "undefined" ? undefined : (navigator.mediaDevices as MediaDevices | undefined);
      if (typeof devices?.addEventListener !== "function") return () => undefined;
      devices.addEventListener("devicechange", listener);
      return () => devices.removeEventListener("devicechange", listener);
    },
  },
  createPeer: (options) => new Peer(options),
  statsIntervalMs: 1000,
  now: () => Date.now(),
  unreachableHint: "Is the kernel running? Re-run the cell that shows the room.",
  captureFrame,
  token: async () => undefined,
  openScreen: () => {
    const devices = navigator.mediaDevices as MediaDevices | undefined;
    if (devices === undefined || typeof devices.getDisplayMedia !== "function") {
      return Promise.reject(new ScreenUnsupported());
    }
    return devices.getDisplayMedia({ video: true, audio: false });
  },
};

/** The browser (or an insecure page) offers no screen capture. */
export class ScreenUnsupported extends Error {
  constructor() {
    super("getDisplayMedia is not available");
    this.name = "ScreenUnsupported";
  }
}

/** A plain message for a failed getDisplayMedia. */
export function screenMessage(error: unknown): string {
  const name = typeof error === "object" && error !== null ? String((error as { name?: unknown }).name ?? "") : "";
  switch (name) {
    case "ScreenUnsupported":
      return "This browser cannot share the screen here (it needs a recent desktop browser and a secure page: https:// or http://localhost).";
    case "NotAllowedError":
    case "SecurityError":
      return "Screen sharing was not allowed. Press Share screen again and pick a screen, window or tab; check the browser's site settings if it is blocked.";
    case "InvalidStateError":
      return "The browser shares the screen only in answer to a click: press Share screen in the room.";
    case "NotFoundError":
      return "There is no screen to share.";
    default:
      return "The screen could not be shared. Press Share screen to try again.";
  }
}

/**
 * What changed, for `Call.subscribe`: "local" the local stream or `sharingScreen` (and the
 * devices); "members" `remotePeers` (the list, a stream, a flag, a connection state); "stats" new
 * per-member stats (the once-a-second measurement, nothing else); "chat" `messages` / `canChat`.
 */
export type CallTopic = "local" | "members" | "stats" | "chat";
const ALL_TOPICS: readonly CallTopic[] = ["local", "members", "stats", "chat"];

/** One other member as the view shows it. */
export interface RemotePeer {
  id: string;
  name: string;
  connection: RTCPeerConnectionState;
  /** Its connection to the signaller dropped; its media may still flow while it comes back. */
  away: boolean;
  stream: MediaStream | null;
  /** Their microphone and camera as they last said (true until told). */
  audio: boolean;
  video: boolean;
  /** Whether their video is their screen. */
  screen: boolean;
  /** The latest quality figures, null before the first measurement. */
  stats: PeerStats | null;
}

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
}

/** Everything one join holds; dropped whole on Hang up or failure. */
interface Session {
  room: string;
  /** This page's secret for the call: entering again with it keeps its id (docs/protocol.md). */
  key: string;
  /** Since when the signaller has been out of reach (ms since the epoch), null while connected. */
  lostSince: number | null;
  reconnectTimer: ReturnType<typeof setTimeout> | null;
  abort: AbortController;
  /** The camera and microphone, as opened. */
  stream: MediaStream | null;
  /** The screen's video track while it is shared (sent instead of the camera's), else null. */
  screen: MediaStreamTrack | null;
  /** A screen asked for and not answered yet. */
  screenPending: boolean;
  /** The stream sent and previewed while sharing: the microphone plus the screen (made lazily). */
  shared: MediaStream | null;
  client: SignalingClient | null;
  selfId: string;
  iceServers: RTCIceServer[];
  members: Map<string, Member>;
  /** Chat lines written before the room was entered, sent once it is. */
  pendingChat: string[];
  statsTimer: ReturnType<typeof setInterval> | null;
  measuring: boolean;
}

export class Call {
  private readonly model: WidgetModel;
  private readonly deps: CallDeps;
  private readonly reporter: Reporter;
  private readonly listeners = new Set<{ listener: () => void; topics: ReadonlySet<CallTopic> }>();
  private readonly modelListeners: [string, () => void][];
  private readonly chat: ChatLog;
  private state: CallState = "idle";
  private session: Session | null = null;
  private disposed = false;
  /** The previous session's `leave`, acknowledged (or failed) when this settles. */
  private leaving: Promise<void> = Promise.resolve();
  /** The mute flags last sent to the others, so a change is sent once. */
  private sentFlags = "";
  private unwatchDevices: () => void = () => undefined;
  /** One number per kind, raised by each device switch: a switch overtaken by a newer one gives up. */
  private readonly switches = { audio: 0, video: 0 };

  constructor(model: WidgetModel, deps: Partial<CallDeps> = {}) {
    this.model = model;
    this.deps = { ...defaultDeps, ...deps };
    this.reporter = new Reporter(model);
    this.chat = new ChatLog(model.get("messages") ?? []);
    this.modelListeners = [
      ["change:_desired", () => this.reconcile()],
      ["change:audio", () => this.applyMute()],
      ["change:video", () => this.applyMute()],
      ["change:screen", () => this.applyScreen()],
      ["change:camera", () => void this.switchDevice("video")],
      ["change:microphone", () => void this.switchDevice("audio")],
      ["change:room", () => {
        // A new room while in one: leave it and enter the new one.
        if (this.session !== null && this.model.get("room") !== this.session.room && this.model.get("_desired")) {
          void this.join();
        }
      }],
    ];
  }

  /** Start following the model. A model that says "in a call" from an earlier page is stale. */
  start(): void {
    for (const [event, listener] of this.modelListeners) this.model.on(event as `change:${string}`, listener);
    this.model.on("msg:custom", this.onKernelMessage);
    this.unwatchDevices = this.deps.devices.watch(() => void this.refreshDevices());
    void this.refreshDevices();
    const reported = this.model.get("state");
    if (isActive(reported)) {
      this.state = "left";
      if (!this.model.get("_desired")) {
        this.reporter.now({ state: "left", _browser_peers: [], connected_via: "", stats: {} });
      }
    } else {
      this.state = reported;
    }
    this.reconcile();
  }

  /** End the call fully and stop following the model. Writes nothing: the model may be closing. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    for (const [event, listener] of this.modelListeners) this.model.off(event, listener);
    this.model.off("msg:custom", this.onKernelMessage);
    this.unwatchDevices();
    this.endSession({ leave: true });
    this.reporter.dispose();
    this.listeners.clear();
  }

  // -- what views read -------------------------------------------------------------------------

  get callState(): CallState {
    return this.state;
  }

  /** What this browser sends and previews: the camera and microphone, or the screen instead. */
  get localStream(): MediaStream | null {
    return this.session === null ? null : this.outgoing(this.session);
  }

  /** Whether the screen is being sent instead of the camera. */
  get sharingScreen(): boolean {
    return this.session?.screen != null;
  }

  get remotePeers(): RemotePeer[] {
    return this.visibleMembers(this.session).map((member) => ({
      id: member.id,
      name: member.name,
      connection: member.peer?.connectionState ?? "new",
      away: !member.present,
      stream: member.peer?.remoteStream ?? null,
      audio: member.audio,
      video: member.video,
      screen: member.screen,
      stats: member.stats,
    }));
  }

  private visibleMembers(session: Session | null): Member[] {
    return [...(session?.members.values() ?? [])].filter((member) => !member.hidden);
  }

  /** The room's recent chat, oldest first. */
  get messages(): readonly ChatEntry[] {
    return this.chat.entries;
  }

  /** Whether a chat line written now would be sent (the call is joining or in a room). */
  get canChat(): boolean {
    return this.session !== null;
  }

  /**
   * Say `text` in the room's chat, as if typed in the view. Returns false when nothing was sent
   * (not in a room, or a blank text). Also `window.ipymeet.call.sendChat` in page mode.
   */
  sendChat(text: string): boolean {
    return this.chatAs(text) === null;
  }

  /**
   * The current frame of `peer`'s video (null: the own local video, i.e. what this browser sends).
   * Rejects with NoFrame (a plain reason) when there is no such peer or no video yet. Also
   * `window.ipymeet.call.snapshot` in page mode, for tests.
   */
  async snapshot(peer: string | null, format: FrameFormat = "rgba"): Promise<Frame> {
    const session = this.session;
    if (session === null) throw new NoFrame("not in a call: join a room first");
    let stream: MediaStream | null;
    if (peer === null) {
      stream = session.stream;
      if (stream === null || stream.getVideoTracks().length === 0) throw new NoFrame("this browser sends no video (no camera)");
      if (!this.model.get("video")) throw new NoFrame("your camera is off");
    } else {
      const member = session.members.get(peer);
      if (member === undefined) throw new NoFrame(`no peer ${JSON.stringify(peer)} in this call`);
      stream = member.peer?.remoteStream ?? null;
      if (stream === null || stream.getVideoTracks().length === 0) {
        throw new NoFrame(`no video from ${member.name || peer} yet`);
      }
    }
    return this.deps.captureFrame(stream, format);
  }

  /**
   * Be told when `topic` changes (see CallTopic); without a topic, when any does. Returns an
   * unsubscribe. A listener is called at most once per change, however many topics it covers.
   */
  subscribe(topic: CallTopic, listener: () => void): () => void;
  /** @deprecated Subscribe by topic; this form (every topic) stays until the views have moved. */
  subscribe(listener: () => void): () => void;
  subscribe(topicOrListener: CallTopic | (() => void), maybeListener?: () => void): () => void {
    const topics = typeof topicOrListener === "function" ? ALL_TOPICS : [topicOrListener];
    const listener = typeof topicOrListener === "function" ? topicOrListener : maybeListener;
    if (listener === undefined) throw new TypeError("subscribe needs a listener");
    const entry = { listener, topics: new Set<CallTopic>(topics) };
    this.listeners.add(entry);
    return () => this.listeners.delete(entry);
  }

  // -- reconciling --------------------------------------------------------------------------------

  private reconcile(): void {
    if (this.disposed) return;
    const desired = this.model.get("_desired");
    if (desired && !isActive(this.state)) void this.join();
    else if (!desired && isActive(this.state)) this.hangUp();
  }

  private dispatch(event: CallEvent): boolean {
    const next = reduce(this.state, event);
    if (next === this.state) return false;
    this.state = next;
    return true;
  }

  private async join(): Promise<void> {
    this.endSession({ leave: true });
    this.dispatch({ type: "join" });
    this.reporter.now({ state: this.state, error: "", error_code: "", connected_via: "", _browser_peers: [] });
    this.notify(...ALL_TOPICS);

    const room = this.model.get("room");
    if (room === "") {
      this.fail("bad_request", "Choose a room name first: type one in the room field, then Connect.");
      return;
    }
    if (!ROOM_RE.test(room)) {
      this.fail("bad_request", `“${room}” is not a valid room name: use 1–64 letters, digits, “_”, “.” or “-”.`);
      return;
    }
    const session: Session = {
      room,
      key: newMessageId() + newMessageId(),
      lostSince: null,
      reconnectTimer: null,
      abort: new AbortController(),
      stream: null,
      screen: null,
      screenPending: false,
      shared: null,
      client: null,
      selfId: "",
      iceServers: [],
      members: new Map(),
      pendingChat: [],
      statsTimer: null,
      measuring: false,
    };
    this.session = session;
    const current = (): boolean => this.session === session && !this.disposed;

    // Camera and signaller in parallel; the preview shows as soon as the camera is on.
    const media = this.deps.openMedia(session.abort.signal, this.deviceChoice()).then(
      (local) => {
        if (!current()) {
          stopStream(local.stream);
          return null;
        }
        session.stream = local.stream;
        session.shared = null;
        this.applyMute();
        // Permission granted: the devices now have their names.
        if (local.stream !== null) void this.refreshDevices();
        if (local.warning !== null) {
          this.reporter.now({ error: local.warning.message, error_code: local.warning.code });
        }
        this.notify("local");
        return local;
      },
      (error: unknown) => {
        if (!(error instanceof MediaAborted)) console.warn("ipymeet: opening the camera failed", error);
        return null;
      },
    );
    const urls = this.deps.routes(this.model);
    let connection: { socket: SocketLike; url: string };
    try {
      if (urls.length === 0) throw new UnreachableError([], []);
      connection = await this.deps.connect(urls, {
        client: this.model.get("_client"),
        signal: session.abort.signal,
      });
    } catch (error) {
      if (current()) this.fail("unreachable", unreachableMessage(urls, this.deps.unreachableHint), error);
      return;
    }
    if (!current()) {
      connection.socket.disconnect();
      return;
    }
    const client = new SignalingClient(connection.socket, connection.url, {
      peerJoined: (peer) => current() && this.addMember(session, peer, false),
      peerLeft: ({ id, reason }) => current() && this.memberLeft(session, id, reason),
      signal: (message) => current() && this.route(session, message),
      error: (error) => {
        if (current()) this.reporter.now({ error: error.message, error_code: knownCode(error.code) });
      },
      disconnected: () => {
        if (!current()) return;
        if (session.selfId === "") {
          // Not in the room yet: nothing to keep, so say so at once.
          this.fail(
            "disconnected",
            `Lost the connection to the ipymeet signaller (${connection.url}). ${this.deps.unreachableHint}`,
          );
        } else {
          this.signalerLost(session);
        }
      },
    });
    session.client = client;
    this.reporter.now({ connected_via: connection.url });

    await media;
    await this.leaving;
    if (!current()) return;
    let accepted;
    try {
      const token = await this.deps.token(room);
      if (!current()) return;
      accepted = await client.enter(this.enterRequest(session, token));
    } catch (error) {
      if (current()) this.failEnter(room, error);
      return;
    }
    if (!current()) return;
    this.entered(session, accepted);
    // Lines written while joining go to the members present now that the room is entered.
    for (const text of session.pendingChat.splice(0)) this.deliverChat(session, text);
    session.statsTimer = setInterval(() => void this.measure(session), this.deps.statsIntervalMs);
  }

  private enterRequest(session: Session, token: string | undefined): EnterRequest {
    const request: EnterRequest = { room: session.room, name: this.model.get("name"), session: session.key };
    if (token !== undefined) request.token = token;
    return request;
  }

  /**
   * In the room (first or again): take in the members the signaller lists. After re-entering,
   * a member known already keeps its connection if it still answers on it (media kept flowing
   * meanwhile), else gets a new one, which this page offers as the newcomer; a member no longer
   * listed stays while its connection answers (it may be reconnecting too).
   */
  private entered(session: Session, accepted: EnterAccepted): void {
    const again = session.selfId !== "";
    if (again) console.debug(`ipymeet: entered again, with ${accepted.peers.map((p) => p.id).join(", ") || "no one"}`);
    if (again && accepted.self !== session.selfId) {
      // The signaller did not keep our id (it knows no session keys): start the connections afresh.
      for (const member of session.members.values()) member.peer?.close();
      session.members.clear();
    }
    session.selfId = accepted.self;
    session.iceServers = accepted.ice_servers;
    const listed = new Set<string>();
    for (const peer of accepted.peers) {
      listed.add(peer.id);
      const known = session.members.get(peer.id);
      if (known === undefined) {
        this.addMember(session, peer, true);
      } else {
        markPresent(known);
        if (peer.name !== "") known.name = peer.name;
        known.peer?.resync();
        void this.checkAlive(session, known, PROBE_REENTER_MS);
      }
    }
    for (const member of [...session.members.values()]) {
      if (listed.has(member.id)) continue;
      member.present = false;
      void this.checkAlive(session, member, PROBE_REENTER_MS);
    }
    const wasLost = session.lostSince !== null;
    session.lostSince = null;
    this.dispatch({ type: "entered", connected: this.connectedCount(session) });
    const patch: Partial<Model> = { state: this.state, _browser_peers: this.browserPeers() };
    if (wasLost && this.model.get("error_code") === "disconnected") Object.assign(patch, { error: "", error_code: "" });
    this.reporter.now(patch);
    this.notify("members");
    session.client?.deliver();
  }

  // -- when the signaller is out of reach ------------------------------------------------------------

  /**
   * The connection to the signaller dropped while in the room. The peer connections stay (their
   * media does not pass through the signaller); the page reconnects with growing pauses and enters
   * again with its session key, so the others know it as the same member.
   */
  private signalerLost(session: Session): void {
    if (this.session !== session || session.lostSince !== null) return;
    session.lostSince = this.deps.now();
    this.dispatch({ type: "lost" });
    this.reporter.now({ state: this.state });
    this.notify("members");
    this.scheduleReconnect(session, 0);
  }

  private scheduleReconnect(session: Session, attempt: number): void {
    if (session.reconnectTimer !== null) clearTimeout(session.reconnectTimer);
    // Jitter, so that pages that lost a restarted signaller do not all come back at one instant.
    const pause = attempt === 0 ? 0 : Math.min(RECONNECT_FIRST_MS * 2 ** (attempt - 1), RECONNECT_MAX_MS) * (0.75 + Math.random() / 2);
    session.reconnectTimer = setTimeout(() => {
      session.reconnectTimer = null;
      void this.reconnect(session, attempt);
    }, pause);
  }

  private async reconnect(session: Session, attempt: number): Promise<void> {
    const client = session.client;
    const current = (): boolean => this.session === session && !this.disposed && session.lostSince !== null;
    if (!current() || client === null) return;
    let accepted: EnterAccepted;
    try {
      await client.reconnect();
      const token = await this.deps.token(session.room);
      if (!current()) return;
      accepted = await client.enter(this.enterRequest(session, token));
    } catch (error) {
      if (!current()) return;
      if (error instanceof SignalingError && ENDS_THE_CALL.has(error.code)) {
        this.failEnter(session.room, error);
        return;
      }
      const lostFor = this.deps.now() - (session.lostSince ?? this.deps.now());
      if (lostFor >= RECONNECT_NOTICE_MS && this.model.get("error_code") !== "disconnected") {
        this.reporter.now({
          error: `Lost the connection to the ipymeet signaller (${client.url}); trying again… ${this.deps.unreachableHint}`,
          error_code: "disconnected",
        });
        this.notify("members");
      }
      this.scheduleReconnect(session, attempt + 1);
      return;
    }
    if (current()) this.entered(session, accepted);
  }

  /**
   * Whether `member`'s page still answers on its data channel decides what becomes of it.
   *
   * - It answers: kept (its connection restarts ICE if it is down).
   * - After `peer_left` "disconnected", its channel closed: its page closed the connection (the
   *   tab closed). It goes.
   * - After `peer_left` "disconnected", no answer while its connection is still up: a tab that
   *   crashed, or a page whose network just changed (browsers close their sockets at once on
   *   that too). It leaves the view, and its connection lingers for `LINGER_MS` in case it comes
   *   back.
   * - After this page entered again, no answer and its channel closed: the other page closed its
   *   connection (it gave us up while we were away). A new one, which we offer as the newcomer.
   * - Otherwise the network between the two is down, and the page may well be there: kept, and
   *   ICE restarts until the connection is back; if it never is, `gaveUp` decides.
   */
  private async checkAlive(session: Session, member: Member, waitMs: number): Promise<void> {
    const alive = await this.probe(member, waitMs);
    console.debug(`ipymeet: ${member.id}: ${alive ? "answers" : "does not answer"} (${member.peer?.connectionState})`);
    if (this.session !== session || session.members.get(member.id) !== member) return;
    const peer = member.peer;
    if (peer === null) return;
    if (!alive && !member.present && peer.channelClosed) {
      console.info(`ipymeet: ${member.id}: gone: its channel closed`);
      this.removeMember(session, member.id);
    } else if (!alive && !member.present && peer.connectionState === "connected") {
      console.info(`ipymeet: ${member.id}: out of view: no answer, connection up`);
      this.hide(session, member);
    } else if (!alive && member.present && peer.channelClosed) {
      console.info(`ipymeet: ${member.id}: new connection: its channel closed`);
      this.replacePeer(session, member, true);
    } else {
      peer.recover();
      this.connectionsChanged(session);
    }
  }

  private hide(session: Session, member: Member): void {
    member.hidden = true;
    if (member.lingerTimer !== null) clearTimeout(member.lingerTimer);
    member.lingerTimer = setTimeout(() => {
      member.lingerTimer = null;
      if (this.session === session && session.members.get(member.id) === member && !member.present) {
        console.info(`ipymeet: ${member.id}: gone: did not come back`);
        this.removeMember(session, member.id);
      }
    }, LINGER_MS);
    this.connectionsChanged(session);
  }

  /** ICE restarts did not help: a new connection if the member is in the room, else it goes. */
  private gaveUp(session: Session, member: Member): void {
    if (this.session !== session || session.members.get(member.id) !== member) return;
    if (member.present) {
      console.info(`ipymeet: ${member.id}: new connection: ICE restarts gave up`);
      this.replacePeer(session, member, true);
    } else {
      console.info(`ipymeet: ${member.id}: gone: ICE restarts gave up`);
      this.removeMember(session, member.id);
    }
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

  private memberLeft(session: Session, id: string, reason: LeftReason): void {
    console.debug(`ipymeet: ${id}: peer_left (${reason})`);
    const member = session.members.get(id);
    if (member === undefined) return;
    if (reason === "left") {
      console.info(`ipymeet: ${id}: gone: hung up`);
      this.removeMember(session, id);
      return;
    }
    // Its signalling dropped: a closed or crashed tab does not answer, a page reconnecting does.
    member.present = false;
    this.connectionsChanged(session);
    void this.checkAlive(session, member, PROBE_LEFT_MS);
  }

  private hangUp(): void {
    this.endSession({ leave: true });
    this.dispatch({ type: "hangup" });
    this.reporter.now({ state: this.state, _browser_peers: [], connected_via: "", stats: {}, screen: false });
    this.notify(...ALL_TOPICS);
  }

  private fail(code: ErrorCode, message: string, cause?: unknown): void {
    if (cause !== undefined) console.warn(`ipymeet: ${message}`, cause);
    this.endSession({ leave: false });
    this.dispatch({ type: "fail" });
    // The state first: the change of _desired that follows must find the call no longer active.
    this.reporter.now({
      state: this.state,
      error: message,
      error_code: code,
      connected_via: "",
      _browser_peers: [],
      stats: {},
      screen: false,
      _desired: false,
    });
    this.notify(...ALL_TOPICS);
  }

  private failEnter(room: string, error: unknown): void {
    if (!(error instanceof SignalingError)) {
      this.fail("bad_request", `Could not enter room “${room}”.`, error);
      return;
    }
    const detail = error.message;
    switch (error.code) {
      case "room_full": {
        const holds = error.refusal?.capacity ?? Number(/holds (\d+)/.exec(detail)?.[1] ?? NaN);
        const size = Number.isFinite(holds) ? ` (it holds ${holds})` : "";
        this.fail("room_full", `Room “${room}” is full${size}. Pick another room name.`);
        return;
      }
      case "wrong_dialect":
        this.fail("wrong_dialect", `Room “${room}” is in use by a two-person tutorial page. Pick another room name.`);
        return;
      case "forbidden":
        this.fail("forbidden", `You may not enter room “${room}”: ${detail}`);
        return;
      case "unknown_widget":
        this.fail(
          "unknown_widget",
          "This room's kernel has restarted (or the widget was closed), so this view can no longer take part. Re-run the cell that shows the room.",
        );
        return;
      case "already_in_room":
        this.fail("already_in_room", "This page is already in a room. Hang up, then Connect again.");
        return;
      case "rate_limited":
        this.fail("rate_limited", "The signaller is getting too many messages from this page. Wait a moment, then Connect again.");
        return;
      case "timeout":
        this.fail("timeout", `${detail} ${this.deps.unreachableHint}`);
        return;
      case "disconnected":
        this.fail("disconnected", `Lost the connection to the ipymeet signaller. ${this.deps.unreachableHint}`);
        return;
      default:
        this.fail(knownCode(error.code) || "bad_request", `The signaller refused room “${room}”: ${detail}`);
    }
  }

  /** Close the connections, stop the tracks, leave (acknowledged, then disconnect). */
  private endSession({ leave }: { leave: boolean }): void {
    const session = this.session;
    if (session === null) return;
    this.session = null;
    session.abort.abort();
    if (session.reconnectTimer !== null) clearTimeout(session.reconnectTimer);
    session.reconnectTimer = null;
    session.lostSince = null;
    if (session.statsTimer !== null) clearInterval(session.statsTimer);
    session.statsTimer = null;
    session.pendingChat.length = 0;
    this.sentFlags = "";
    for (const member of session.members.values()) member.peer?.close();
    session.members.clear();
    stopStream(session.stream);
    session.stream = null;
    session.screen?.stop();
    session.screen = null;
    session.shared = null;
    const client = session.client;
    if (client !== null) {
      if (leave && session.selfId !== "") {
        // A Connect right after Hang up must not enter before this leave is done: on another
        // connection the server could see the new `enter` first and find the room full of us.
        this.leaving = client.leave().then(
          () => client.close(),
          () => client.close(),
        );
      } else {
        client.close();
      }
    }
  }

  // -- the members ----------------------------------------------------------------------------------

  private addMember(session: Session, info: PeerInfo, initiator: boolean): void {
    const known = session.members.get(info.id);
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
      this.connectionsChanged(session);
      return;
    }
    if (info.id === session.selfId) return;
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
    };
    session.members.set(info.id, member);
    member.peer = this.createPeer(session, member, initiator);
    this.capBitrates(session);
    this.connectionsChanged(session);
  }

  private createPeer(session: Session, member: Member, initiator: boolean): Peer {
    const client = session.client;
    const peer = this.deps.createPeer({
      selfId: session.selfId,
      peerId: member.id,
      iceServers: session.iceServers,
      localStream: this.outgoing(session),
      initiator,
      send: (signal) => {
        if (this.session !== session || client === null || member.peer !== peer) return;
        client.signal({ to: member.id, ...signal }).catch((error: unknown) => {
          // A peer that left meanwhile answers not_in_room, and nothing is sent while the
          // signaller is out of reach: the connection's recovery offers again later.
          if (this.session === session) console.debug("ipymeet: signal not delivered", error);
        });
      },
      onRemoteStream: () => this.notify("members"),
      onConnectionState: () => {
        if (member.peer === peer) this.connectionsChanged(session);
      },
      onError: (error) => console.warn(`ipymeet: connection to ${member.id} failed a step`, error),
      onChannelOpen: () => {
        if (member.peer === peer) this.channelOpened(session, member);
      },
      onChannelMessage: (data) => {
        if (member.peer === peer) this.channelMessage(session, member, data);
      },
      onGiveUp: () => {
        if (member.peer === peer) this.gaveUp(session, member);
      },
      onChannelClose: () => {
        // The other page closed this connection while it was away: it is not coming back on it.
        if (member.peer === peer && !member.present) {
          console.info(`ipymeet: ${member.id}: gone: closed its connection while away`);
          this.removeMember(session, member.id);
        }
      },
    });
    return peer;
  }

  /** Give `member` a new connection (its old one is dead, or the other page made a new one). */
  private replacePeer(session: Session, member: Member, initiator: boolean): void {
    member.peer?.close();
    member.stats = null;
    member.snapshot = null;
    member.peer = this.createPeer(session, member, initiator);
    member.peer.setMaxVideoBitrate(maxBitrateFor(session.members.size));
    this.connectionsChanged(session);
  }

  private removeMember(session: Session, id: string): void {
    const member = session.members.get(id);
    if (member === undefined) return;
    session.members.delete(id);
    if (member.lingerTimer !== null) clearTimeout(member.lingerTimer);
    member.peer?.close();
    this.capBitrates(session);
    this.connectionsChanged(session);
  }

  /** Each video sender's cap follows the number of others: every member sends to each. */
  private capBitrates(session: Session): void {
    const cap = maxBitrateFor(session.members.size);
    for (const member of session.members.values()) member.peer?.setMaxVideoBitrate(cap);
  }

  private route(session: Session, message: IncomingSignal): void {
    let member = session.members.get(message.from);
    if (member === undefined) {
      // Unknown sender (no peer_joined seen): accept an offer, ignore anything else.
      if (message.description?.type !== "offer") return;
      this.addMember(session, { id: message.from, name: "" }, false);
      member = session.members.get(message.from);
    } else if (message.description !== undefined && member.peer?.isFromAnotherConnection(message.description)) {
      console.info(`ipymeet: ${member.id}: new connection: offered from one`);
      this.replacePeer(session, member, false);
    }
    member?.peer?.receive(message);
  }

  private connectedCount(session: Session): number {
    return this.visibleMembers(session).filter((m) => m.peer?.connectionState === "connected").length;
  }

  private connectionsChanged(session: Session): void {
    if (this.session !== session) return;
    const connected = this.connectedCount(session);
    if (this.dispatch({ type: "connections", connected })) {
      this.reporter.now({ state: this.state, _browser_peers: this.browserPeers() });
    } else {
      this.reporter.soon({ _browser_peers: this.browserPeers() });
    }
    this.notify("members");
  }

  private browserPeers(): BrowserPeer[] {
    return this.remotePeers.map(({ id, name, connection, audio, video, screen }) => ({ id, name, connection, audio, video, screen }));
  }

  private applyMute(): void {
    const session = this.session;
    const stream = session?.stream ?? null;
    if (!session || (!stream && !session.screen)) return;
    for (const track of stream?.getAudioTracks() ?? []) track.enabled = this.model.get("audio");
    for (const track of stream?.getVideoTracks() ?? []) track.enabled = this.model.get("video");
    if (session.screen !== null) session.screen.enabled = this.model.get("video");
    const flags = JSON.stringify(this.localFlags(session));
    if (flags !== this.sentFlags) {
      this.sentFlags = flags;
      for (const member of session.members.values()) member.peer?.sendData(flags);
    }
    this.notify("local");
  }

  // -- the devices ---------------------------------------------------------------------------------

  private deviceChoice(): DeviceChoice {
    return { camera: this.model.get("camera") ?? "", microphone: this.model.get("microphone") ?? "" };
  }

  /** Write `cameras` and `microphones` from enumerateDevices (labels once permission is granted). */
  private async refreshDevices(): Promise<void> {
    let devices;
    try {
      devices = await this.deps.devices.enumerate();
    } catch (error) {
      console.debug("ipymeet: could not list the devices", error);
      return;
    }
    if (this.disposed) return;
    const list = (kind: MediaDeviceKind): DeviceInfo[] => {
      const seen = new Set<string>();
      const out: DeviceInfo[] = [];
      for (const device of devices) {
        // Before permission the ids are empty; "default" / "communications" are aliases of "".
        if (device.kind !== kind || device.deviceId === "" || seen.has(device.deviceId)) continue;
        if (device.deviceId === "default" || device.deviceId === "communications") continue;
        seen.add(device.deviceId);
        out.push({ id: device.deviceId, label: device.label });
      }
      return out;
    };
    this.reporter.now({ cameras: list("videoinput"), microphones: list("audioinput") });
    this.notify("local");
  }

  /**
   * Switch the camera or microphone during a call: that device only (`exact`), swapped into every
   * connection with replaceTrack (no renegotiation), the old track stopped, the mute state kept.
   * Outside a call the choice is used at the next join.
   */
  private async switchDevice(kind: "audio" | "video"): Promise<void> {
    const session = this.session;
    if (session === null || session.stream === null) return;
    const ticket = ++this.switches[kind];
    const choice = this.deviceChoice();
    const all = constraintsFor(choice, true);
    const constraints: MediaStreamConstraints = kind === "video" ? { video: all.video ?? true } : { audio: all.audio ?? true };
    let fresh: MediaStream;
    try {
      fresh = await this.deps.devices.getUserMedia(constraints);
    } catch (error) {
      if (this.session !== session || ticket !== this.switches[kind]) return;
      console.warn(`ipymeet: could not switch the ${kind === "video" ? "camera" : "microphone"}`, error);
      const what = kind === "video" ? "camera" : "microphone";
      const problem = classifyMediaError(error);
      this.reporter.now({
        error:
          problem === "missing"
            ? `That ${what} was not found. Pick another one.`
            : problem === "camera_denied"
              ? `The ${what} is blocked for this page. Allow it in the browser's site settings.`
              : `That ${what} could not be started: another program may be using it. The previous one stays on.`,
        error_code: problem === "missing" ? "no_camera" : problem === "camera_denied" ? "camera_denied" : "camera_busy",
      });
      return;
    }
    const track = kind === "video" ? fresh.getVideoTracks()[0] : fresh.getAudioTracks()[0];
    if (this.session !== session || ticket !== this.switches[kind] || session.stream === null || track === undefined) {
      stopStream(fresh);
      return;
    }
    const old = session.stream.getTracks().filter((t) => t.kind === kind);
    track.enabled = this.model.get(kind);
    // A new stream object, so the views take the new track.
    session.stream = new MediaStream([...session.stream.getTracks().filter((t) => t.kind !== kind), track]);
    session.shared = null;
    // While the screen is shared the camera is not sent: it waits for Stop sharing.
    this.applyMute();
    this.notify("local");
    if (!(kind === "video" && session.screen !== null)) {
      const outgoing = this.outgoing(session);
      await Promise.all(
        [...session.members.values()].map((member) =>
          member.peer?.replaceTrack(kind, track, outgoing).catch((error: unknown) => {
            console.warn(`ipymeet: could not switch the ${kind} sent to ${member.id}`, error);
          }),
        ),
      );
    }
    // Only once every sender has the new track: stopping a sender's track while replaceTrack is
    // still under way left Chromium's sender with no frames from the new one.
    for (const t of old) t.stop();
  }

  // -- the screen ----------------------------------------------------------------------------------

  /** The stream sent and previewed: the camera's, or while sharing the microphone plus the screen. */
  private outgoing(session: Session): MediaStream | null {
    if (session.screen === null) return session.stream;
    session.shared ??= new MediaStream([...(session.stream?.getAudioTracks() ?? []), session.screen]);
    return session.shared;
  }

  /** Follow `screen`: share (getDisplayMedia, at once: the click's gesture) or go back to the camera. */
  private applyScreen(): void {
    const session = this.session;
    if (this.model.get("screen") !== true) {
      if (session !== null && session.screen !== null) this.stopScreen(session);
      return;
    }
    if (session === null) {
      this.reporter.now({ screen: false, error: "Join a room first, then share your screen.", error_code: "screen_denied" });
      return;
    }
    if (session.screen !== null || session.screenPending) return;
    session.screenPending = true;
    let asked: Promise<MediaStream>;
    try {
      asked = this.deps.openScreen();
    } catch (error) {
      asked = Promise.reject(error);
    }
    asked.then(
      (stream) => {
        session.screenPending = false;
        const track = stream.getVideoTracks()[0];
        if (this.session !== session || this.model.get("screen") !== true || track === undefined) {
          stopStream(stream);
          if (this.session === session && track === undefined) this.screenFailed(new Error("no video track"));
          return;
        }
        for (const other of stream.getTracks()) if (other !== track) other.stop();
        session.screen = track;
        track.enabled = this.model.get("video");
        // The user ended the share from the browser's own bar ("Stop sharing").
        track.addEventListener("ended", () => {
          if (this.session !== session || session.screen !== track) return;
          this.stopScreen(session);
          this.reporter.now({ screen: false });
        });
        this.sendVideo(session);
      },
      (error: unknown) => {
        session.screenPending = false;
        if (this.session === session) this.screenFailed(error);
      },
    );
  }

  private screenFailed(error: unknown): void {
    console.warn("ipymeet: screen sharing failed", error);
    this.reporter.now({ screen: false, error: screenMessage(error), error_code: "screen_denied" });
  }

  private stopScreen(session: Session): void {
    const track = session.screen;
    if (track === null) return;
    session.screen = null;
    track.stop();
    this.sendVideo(session);
  }

  /** Every connection sends the current video (the screen or the camera) instead: replaceTrack. */
  private sendVideo(session: Session): void {
    session.shared = null;
    const stream = this.outgoing(session);
    const track = session.screen ?? session.stream?.getVideoTracks()[0] ?? null;
    for (const member of session.members.values()) {
      member.peer?.replaceTrack("video", track, stream).catch((error: unknown) => {
        console.warn(`ipymeet: could not switch the video sent to ${member.id}`, error);
      });
    }
    this.applyMute(); // the flags (screen) to everyone, the new track's enabled state, the views
  }

  // -- the data channels ---------------------------------------------------------------------------

  /** What the others should show of us: a missing device counts as off. */
  private localFlags(session: Session): StatePeerMessage {
    const stream = session.stream;
    const sharing = session.screen !== null;
    return {
      t: "state",
      audio: this.model.get("audio") && (stream?.getAudioTracks().length ?? 0) > 0,
      video: this.model.get("video") && (sharing || (stream?.getVideoTracks().length ?? 0) > 0),
      screen: sharing,
    };
  }

  private channelOpened(session: Session, member: Member): void {
    if (this.session !== session || member.peer === null) return;
    const peer = member.peer;
    peer.sendData(JSON.stringify(this.localFlags(session)));
    member.outbox.flush((data) => peer.sendData(data));
  }

  private channelMessage(session: Session, member: Member, data: string): void {
    if (this.session !== session || session.members.get(member.id) !== member) return;
    const message = parsePeerMessage(data);
    if (message === null) {
      console.debug(`ipymeet: ignored a malformed message from ${member.id}`);
      return;
    }
    switch (message.t) {
      case "state":
        if (member.audio === message.audio && member.video === message.video && member.screen === message.screen) return;
        member.audio = message.audio;
        member.video = message.video;
        member.screen = message.screen;
        this.reporter.soon({ _browser_peers: this.browserPeers() });
        this.notify("members");
        return;
      case "ping":
        member.peer?.sendData(JSON.stringify({ t: "pong", id: message.id }));
        return;
      case "pong":
        member.probes.get(message.id)?.();
        return;
      case "chat":
        this.record({
          id: message.id,
          from: member.id,
          name: message.name || member.name,
          text: message.text,
          time: message.time,
          mine: false,
        });
        return;
    }
  }

  // -- the chat ----------------------------------------------------------------------------------------

  /** Send a chat line as this member; the reason when nothing was sent, null when it was. */
  private chatAs(raw: string): string | null {
    const text = chatText(raw);
    if (text === null) return "a chat message needs a non-empty text";
    const session = this.session;
    if (session === null) return "not in a room: join first, then send";
    if (session.selfId === "") {
      session.pendingChat.push(text); // joining: sent once the room is entered
      return null;
    }
    this.deliverChat(session, text);
    return null;
  }

  /** To every member present now, each over its own ordered channel (queued until it opens). */
  private deliverChat(session: Session, text: string): void {
    const message: ChatPeerMessage = {
      t: "chat",
      id: newMessageId(),
      name: this.model.get("name"),
      text,
      time: this.deps.now(),
    };
    const data = JSON.stringify(message);
    for (const member of session.members.values()) {
      const peer = member.peer;
      member.outbox.push(data, (out) => peer !== null && peer.sendData(out));
    }
    this.record({ id: message.id, from: session.selfId, name: message.name, text, time: message.time, mine: true });
  }

  /** A line enters the history: into `messages`, to the kernel, to the views. Once per id. */
  private record(entry: ChatEntry): void {
    if (!this.chat.add(entry)) return;
    this.reporter.soon({ messages: [...this.chat.entries] });
    this.model.send({ type: "chat", ...entry });
    this.notify("chat");
  }

  private readonly onKernelMessage = (content: unknown): void => {
    if (this.disposed) return;
    const reply = dispatchKernelMessage(content, {
      chat: ({ text }) => {
        const problem = this.chatAs(text);
        if (problem !== null) {
          console.warn(`ipymeet: a chat message from Python was not sent: ${problem}`);
          this.model.send({ type: "error", message: `chat not sent: ${problem}` });
        }
      },
      snapshot: (request) => void this.answerSnapshot(request),
    });
    if (reply !== null) this.model.send(reply);
  };

  /** Take the frame asked for; answer by custom message and, if asked, through the signaller. */
  private async answerSnapshot({ id, peer, format, upload }: SnapshotRequest): Promise<void> {
    const client = this.session?.client ?? null;
    let frame: Frame;
    try {
      frame = await this.snapshot(peer, format);
    } catch (error) {
      const reason = error instanceof NoFrame ? error.message : `the frame could not be taken (${String(error)})`;
      if (!(error instanceof NoFrame)) console.warn("ipymeet: a snapshot failed", error);
      if (this.disposed) return;
      this.model.send({ type: "frame", id, error: reason });
      if (upload && client !== null) uploadError(frameSink(client), id, reason);
      return;
    }
    if (this.disposed) return;
    const { width, height } = frame;
    if (upload && client !== null) {
      // Through the signaller first: it reaches a kernel whose cell is waiting for it.
      void uploadFrame(frameSink(client), id, frame);
    }
    this.model.send({ type: "frame", id, width, height, format }, undefined, [exactBuffer(frame.bytes)]);
  }

  // -- call quality ------------------------------------------------------------------------------------

  /** Read every connection's statistics, then write `stats` once for the current members. */
  private async measure(session: Session): Promise<void> {
    if (session.measuring || this.session !== session) return;
    session.measuring = true;
    try {
      await Promise.all(
        [...session.members.values()].map(async (member) => {
          if (member.peer === null) return;
          try {
            const report = await member.peer.getStats();
            const { stats, snapshot } = computeStats(member.snapshot, report, performance.now());
            member.stats = stats;
            member.snapshot = snapshot;
          } catch (error) {
            console.debug(`ipymeet: no statistics for ${member.id}`, error);
          }
        }),
      );
    } finally {
      session.measuring = false;
    }
    if (this.session !== session) return;
    const stats: Record<string, PeerStats> = {};
    for (const member of session.members.values()) if (member.stats !== null) stats[member.id] = member.stats;
    this.reporter.soon({ stats });
    this.notify("stats");
  }

  private notify(...topics: CallTopic[]): void {
    for (const { listener, topics: wanted } of [...this.listeners]) {
      if (!topics.some((topic) => wanted.has(topic))) continue;
      try {
        listener();
      } catch (error) {
        console.error("ipymeet: a view failed to update", error);
      }
    }
  }
}

function frameSink(client: SignalingClient): FrameSink {
  return { emit: (_event, meta, chunk) => client.sendFrame(meta, chunk) };
}

export function unreachableMessage(urls: readonly string[], hint: string): string {
  if (urls.length === 0) {
    return `Can't reach the ipymeet signaller: its address is unknown (no signaling_url and no kernel port). ${hint}`;
  }
  return `Can't reach the ipymeet signaller (tried: ${urls.join(", ")}). ${hint}`;
}

/** The signaller lists `member` (again): in view, no longer lingering. */
function markPresent(member: Member): void {
  member.present = true;
  member.hidden = false;
  if (member.lingerTimer !== null) clearTimeout(member.lingerTimer);
  member.lingerTimer = null;
}

/** Refusals on entering again that no retry will change: the call ends with their message. */
const ENDS_THE_CALL = new Set(["room_full", "forbidden", "wrong_dialect", "bad_request", "unknown_widget"]);

const CODES: readonly ErrorCode[] = [
  "room_full", "unreachable", "bad_request", "camera_denied", "no_camera", "camera_busy",
  "insecure_context", "disconnected", "forbidden", "wrong_dialect", "already_in_room",
  "rate_limited", "timeout", "unknown_widget", "internal_error",
];

function knownCode(code: string): ErrorCode {
  return (CODES as readonly string[]).includes(code) ? (code as ErrorCode) : "";
}
