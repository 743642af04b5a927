/**
 * The Call: one per model, so a widget shown twice uses one camera and one set of connections.
 *
 * Python (or the view's controls) sets the intent: `_desired` and `_joins`, `room`, `audio`,
 * `video`, `screen`, `camera`, `microphone`. The Call reconciles toward it and reports what
 * happened: `state`, `error`/`error_code`, `connected_via`, `_browser_peers`, `stats`, `messages`,
 * and, where it ended something on its own, `_call_ended` / `_screen_ended` (Python's intent then
 * follows). It never writes an intent trait.
 *
 * The parts: members.ts (the others and their connections), outgoing.ts (what this page sends),
 * chat.ts, errors.ts (every message), kernel.ts (the kernel's custom messages), signaling.ts over
 * a transport (transport.ts). Every asynchronous step of a join checks that its session is still
 * the current one, so a Hang up (or a new join) in the middle leaves nothing behind.
 */
import { Chat } from "./chat";
import { ROOM_RE, type CallState, type ErrorCode } from "./contract";
import { defaultDeps, type CallDeps } from "./deps";
import {
  ERRORS,
  SCREEN_OUTSIDE_CALL,
  couldNotEnterMessage,
  endsTheCall,
  knownCode,
  refusal,
  retryingMessage,
  roomNameMessage,
} from "./errors";
import { KernelLink } from "./kernel";
import { MediaAborted, listDevices, stopStream } from "./media";
import { Members, type RemotePeer } from "./members";
import { newMessageId } from "./messages";
import { Outgoing, deviceChoice } from "./outgoing";
import { SignalingClient, SignalingError, UnreachableError, type EnterAccepted, type EnterRequest } from "./signaling";
import { NoFrame, answerSnapshot, type Frame } from "./snapshot";
import { Reporter, isActive, reduce, type CallEvent } from "./state";
import type { ChatEntry, FrameFormat, Model, WidgetModel } from "./types";

export type { CallDeps } from "./deps";
export { defaultDeps } from "./deps";
export type { RemotePeer } from "./members";
// Kept here for the views that import them from "./call".
export { ROOM_RE } from "./contract";
export { ScreenUnsupported, screenMessage, unreachableMessage } from "./errors";
export { LINGER_MS, PROBE_LEFT_MS, PROBE_REENTER_MS } from "./liveness";

/** Pauses between attempts to reach the signaller again: doubling from the first to the last. */
export const RECONNECT_FIRST_MS = 250;
export const RECONNECT_MAX_MS = 5000;
/** How long the signaller may be out of reach before the view says so in an error. */
export const RECONNECT_NOTICE_MS = 10000;

/**
 * What changed, for `Call.subscribe`: "local" the local stream or `sharingScreen` (and the
 * devices); "members" `remotePeers` (the list, a stream, a flag, a connection state); "stats" new
 * per-member stats (the once-a-second measurement, nothing else); "chat" `messages` / `canChat`.
 */
export type CallTopic = "local" | "members" | "stats" | "chat";
const ALL_TOPICS: readonly CallTopic[] = ["local", "members", "stats", "chat"];

/** Everything one join holds; dropped whole on Hang up or failure. */
interface Session {
  room: string;
  /** This page's secret for the call: entering again with it keeps its id (docs/protocol.md). */
  key: string;
  /** Since when the signaller has been out of reach (ms since the epoch), null while connected. */
  lostSince: number | null;
  reconnectTimer: ReturnType<typeof setTimeout> | null;
  abort: AbortController;
  client: SignalingClient | null;
  members: Members;
  outgoing: Outgoing;
  /** Chat lines written before the room was entered, sent once it is. */
  pending: string[];
  statsTimer: ReturnType<typeof setInterval> | null;
}

export class Call {
  private readonly model: WidgetModel;
  private readonly deps: CallDeps;
  private readonly reporter: Reporter;
  private readonly kernel: KernelLink;
  /** Whether `kernel` is this Call's own (no link given), to dispose with it. */
  private readonly ownKernel: boolean;
  private readonly chat: Chat;
  private readonly listeners = new Set<{ listener: () => void; topics: ReadonlySet<CallTopic> }>();
  private readonly modelListeners: [string, () => void][];
  private state: CallState = "idle";
  private session: Session | null = null;
  private disposed = false;
  /** The previous session's `leave`, acknowledged (or failed) when this settles. */
  private leaving: Promise<void> = Promise.resolve();
  private unwatchDevices: () => void = () => undefined;
  private releaseKernel: () => void = () => undefined;

  /** `kernel`: the widget's link to its kernel (kernel.ts); without one the Call makes its own. */
  constructor(model: WidgetModel, deps: Partial<CallDeps> = {}, kernel?: KernelLink) {
    this.model = model;
    this.deps = { ...defaultDeps, ...deps };
    this.reporter = new Reporter(model);
    this.ownKernel = kernel === undefined;
    this.kernel = kernel ?? new KernelLink(model);
    this.chat = new Chat({
      model,
      kernel: this.kernel,
      now: () => this.deps.now(),
      report: (patch) => this.reporter.soon(patch),
      changed: () => this.notify("chat"),
    });
    const outgoing = (): Outgoing | undefined => this.session?.outgoing;
    this.modelListeners = [
      ["change:_desired", () => this.reconcile()],
      ["change:_joins", () => this.reconcile()],
      ["change:_call_ended", () => this.reconcile()],
      ["change:audio", () => outgoing()?.applyMute()],
      ["change:video", () => outgoing()?.applyMute()],
      ["change:screen", () => this.applyScreen()],
      ["change:camera", () => void outgoing()?.switchDevice("video")],
      ["change:microphone", () => void outgoing()?.switchDevice("audio")],
      ["change:room", () => {
        // A new room while in one: leave it and enter the new one.
        if (this.session !== null && this.model.get("room") !== this.session.room && this.wanted()) void this.join();
      }],
    ];
  }

  /** Start following the model. A model that says "in a call" from an earlier page is stale. */
  start(): void {
    for (const [event, listener] of this.modelListeners) this.model.on(event as `change:${string}`, listener);
    this.releaseKernel = this.kernel.handle({
      chat: ({ text }) => {
        const problem = this.chat.say(this.session, text);
        if (problem === null) return;
        console.warn(`ipymeet: a chat message from Python was not sent: ${problem}`);
        this.kernel.send({ type: "error", message: `chat not sent: ${problem}` });
      },
      snapshot: (request) => {
        const client = this.session?.client ?? null;
        void answerSnapshot(request, (peer, format) => this.snapshot(peer, format), {
          comm: (message, buffers) => this.kernel.send(message, buffers),
          signaller: client === null ? null : { emit: (_event, meta, chunk) => client.sendFrame(meta, chunk) },
          closed: () => this.disposed,
        });
      },
    });
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
    this.releaseKernel();
    if (this.ownKernel) this.kernel.dispose();
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
    return this.session?.outgoing.current ?? null;
  }

  /** Whether the screen is being sent instead of the camera. */
  get sharingScreen(): boolean {
    return this.session?.outgoing.sharing ?? false;
  }

  get remotePeers(): RemotePeer[] {
    return this.session?.members.remotePeers ?? [];
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
    return this.chat.say(this.session, text) === null;
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
      stream = session.outgoing.camera;
      if (stream === null || stream.getVideoTracks().length === 0) throw new NoFrame("this browser sends no video (no camera)");
      if (!this.model.get("video")) throw new NoFrame("your camera is off");
    } else {
      const member = session.members.find(peer);
      if (member === undefined) throw new NoFrame(`no peer ${JSON.stringify(peer)} in this call`);
      stream = member.stream;
      if (stream === null || stream.getVideoTracks().length === 0) throw new NoFrame(`no video from ${member.name || peer} yet`);
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

  /** Whether the intent is to be in a call: asked for, and that attempt not ended by the Call. */
  private wanted(): boolean {
    return this.model.get("_desired") && this.model.get("_joins") !== this.model.get("_call_ended");
  }

  private reconcile(): void {
    if (this.disposed) return;
    const wanted = this.wanted();
    if (wanted && !isActive(this.state)) void this.join();
    else if (!wanted && isActive(this.state)) this.hangUp();
  }

  private dispatch(event: CallEvent): boolean {
    const next = reduce(this.state, event);
    if (next === this.state) return false;
    this.state = next;
    return true;
  }

  private async join(): Promise<void> {
    const ended = this.endSession({ leave: true });
    this.dispatch({ type: "join" });
    this.reporter.now({ state: this.state, error: "", error_code: "", connected_via: "", _browser_peers: [], ...ended });
    this.notify(...ALL_TOPICS);

    const room = this.model.get("room");
    if (!ROOM_RE.test(room)) {
      this.fail("bad_request", roomNameMessage(room));
      return;
    }
    const session = this.newSession(room);
    this.session = session;
    const current = (): boolean => this.session === session && !this.disposed;

    // Camera and signaller in parallel; the preview shows as soon as the camera is on.
    const media = this.deps.openMedia(session.abort.signal, deviceChoice(this.model)).then(
      (local) => {
        if (!current()) {
          stopStream(local.stream);
          return;
        }
        session.outgoing.take(local.stream);
        // Permission granted: the devices now have their names.
        if (local.stream !== null) void this.refreshDevices();
        if (local.warning !== null) this.reporter.now({ error: local.warning.message, error_code: local.warning.code });
        this.notify("local");
      },
      (error: unknown) => {
        if (!(error instanceof MediaAborted)) console.warn("ipymeet: opening the camera failed", error);
      },
    );
    const hint = this.deps.unreachableHint;
    const urls = this.deps.routes(this.model);
    let transport;
    try {
      if (urls.length === 0) throw new UnreachableError([], []);
      transport = await this.deps.connect(urls, { client: this.model.get("_client"), signal: session.abort.signal });
    } catch (error) {
      if (current()) this.fail("unreachable", ERRORS.unreachable.message({ room, hint, urls }), error);
      return;
    }
    if (!current()) {
      transport.disconnect();
      return;
    }
    const client = new SignalingClient(transport, {
      peerJoined: (peer) => current() && session.members.add(peer, false),
      peerLeft: ({ id, reason }) => current() && session.members.left(id, reason),
      signal: (message) => current() && session.members.route(message),
      error: (error) => {
        if (current()) this.reporter.now({ error: error.message, error_code: knownCode(error.code) });
      },
      disconnected: () => {
        if (!current()) return;
        // Not in the room yet: nothing to keep, so say so at once.
        if (session.members.selfId === "") this.fail("disconnected", ERRORS.disconnected.message({ room, hint, url: transport.url }));
        else this.signalerLost(session);
      },
    });
    session.client = client;
    this.reporter.now({ connected_via: transport.url });

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
    this.chat.entered(session);
    session.statsTimer = setInterval(() => void this.measure(session), this.deps.statsIntervalMs);
  }

  private newSession(room: string): Session {
    // The members and the outgoing media of one session: each acts only while it is current.
    const current = (): boolean => this.session === session;
    const members: Members = new Members({
      createPeer: (options) => this.deps.createPeer(options),
      signal: (message) => session.client?.signal(message) ?? Promise.reject(new Error("no signaller")),
      outgoing: (): MediaStream | null => outgoing.current,
      flags: () => JSON.stringify(outgoing.flags()),
      changed: () => this.connectionsChanged(session),
      chat: (from, message) => {
        if (current()) this.chat.heard(from, message);
      },
    });
    const outgoing: Outgoing = new Outgoing({
      model: this.model,
      members,
      getUserMedia: (constraints) => this.deps.devices.getUserMedia(constraints),
      openScreen: () => this.deps.openScreen(),
      report: (patch) => {
        if (current()) this.reporter.now(patch);
      },
      changed: () => {
        if (current()) this.notify("local");
      },
      screenEnded: (error) => {
        if (!current()) return;
        const why: Partial<Model> = error === undefined ? {} : { error, error_code: "screen_denied" };
        this.reporter.now({ ...this.screenEnded(), ...why });
      },
    });
    const session: Session = {
      room,
      key: newMessageId() + newMessageId(),
      lostSince: null,
      reconnectTimer: null,
      abort: new AbortController(),
      client: null,
      members,
      outgoing,
      pending: [],
      statsTimer: null,
    };
    return session;
  }

  private enterRequest(session: Session, token: string | undefined): EnterRequest {
    const request: EnterRequest = { room: session.room, name: this.model.get("name"), session: session.key };
    if (token !== undefined) request.token = token;
    return request;
  }

  /** In the room (first or again): take in the members the signaller lists. */
  private entered(session: Session, accepted: EnterAccepted): void {
    if (session.members.selfId !== "") {
      console.debug(`ipymeet: entered again, with ${accepted.peers.map((p) => p.id).join(", ") || "no one"}`);
    }
    session.members.entered(accepted);
    const wasLost = session.lostSince !== null;
    session.lostSince = null;
    this.dispatch({ type: "entered", connected: session.members.connectedCount() });
    const patch: Partial<Model> = { state: this.state, _browser_peers: session.members.browserPeers() };
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
      if (error instanceof SignalingError && endsTheCall(error.code)) {
        this.failEnter(session.room, error);
        return;
      }
      const lostFor = this.deps.now() - (session.lostSince ?? this.deps.now());
      if (lostFor >= RECONNECT_NOTICE_MS && this.model.get("error_code") !== "disconnected") {
        this.reporter.now({ error: retryingMessage(client.url, this.deps.unreachableHint), error_code: "disconnected" });
        this.notify("members");
      }
      this.scheduleReconnect(session, attempt + 1);
      return;
    }
    if (current()) this.entered(session, accepted);
  }

  // -- ending -------------------------------------------------------------------------------------

  private hangUp(): void {
    const ended = this.endSession({ leave: true });
    this.dispatch({ type: "hangup" });
    this.reporter.now({ state: this.state, _browser_peers: [], connected_via: "", stats: {}, ...ended });
    this.notify(...ALL_TOPICS);
  }

  /** The call ends on its own: `_call_ended` says which attempt, and Python's `_desired` follows. */
  private fail(code: ErrorCode, message: string, cause?: unknown): void {
    if (cause !== undefined) console.warn(`ipymeet: ${message}`, cause);
    const ended = this.endSession({ leave: false });
    this.dispatch({ type: "fail" });
    // The state first: the change of _call_ended that follows must find the call no longer active.
    this.reporter.now({
      state: this.state,
      error: message,
      error_code: code,
      connected_via: "",
      _browser_peers: [],
      stats: {},
      ...ended,
      _call_ended: this.model.get("_joins"),
    });
    this.notify(...ALL_TOPICS);
  }

  private failEnter(room: string, error: unknown): void {
    if (!(error instanceof SignalingError)) {
      this.fail("bad_request", couldNotEnterMessage(room), error);
      return;
    }
    const context = { room, hint: this.deps.unreachableHint, detail: error.message };
    const capacity = error.refusal?.capacity;
    const { code, message } = refusal(error.code, capacity === undefined ? context : { ...context, capacity });
    this.fail(code, message);
  }

  /** `_screen_ended` one up: the share stopped (or was refused) without the person asking. */
  private screenEnded(): Partial<Model> {
    return { _screen_ended: (this.model.get("_screen_ended") ?? 0) + 1 };
  }

  /**
   * Close the connections, stop the tracks, leave (acknowledged, then disconnect). Returns what to
   * report with the end: a share the session held (or was asked for) stopped with it.
   */
  private endSession({ leave }: { leave: boolean }): Partial<Model> {
    const session = this.session;
    if (session === null) return {};
    this.session = null;
    session.abort.abort();
    if (session.reconnectTimer !== null) clearTimeout(session.reconnectTimer);
    session.reconnectTimer = null;
    session.lostSince = null;
    if (session.statsTimer !== null) clearInterval(session.statsTimer);
    session.statsTimer = null;
    session.pending.length = 0;
    const entered = session.members.selfId !== "";
    session.members.close();
    session.outgoing.close();
    const client = session.client;
    if (client !== null) {
      if (leave && entered) {
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
    return this.model.get("screen") === true ? this.screenEnded() : {};
  }

  // -- following the model -----------------------------------------------------------------------------

  private connectionsChanged(session: Session): void {
    if (this.session !== session) return;
    const connected = session.members.connectedCount();
    if (this.dispatch({ type: "connections", connected })) {
      this.reporter.now({ state: this.state, _browser_peers: session.members.browserPeers() });
    } else {
      this.reporter.soon({ _browser_peers: session.members.browserPeers() });
    }
    this.notify("members");
  }

  /** Follow `screen`; outside a call a share cannot start, and `_screen_ended` says so. */
  private applyScreen(): void {
    if (this.session !== null) {
      this.session.outgoing.applyScreen();
      return;
    }
    if (this.model.get("screen") === true) {
      this.reporter.now({ ...this.screenEnded(), error: SCREEN_OUTSIDE_CALL, error_code: "screen_denied" });
    }
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
    this.reporter.now(listDevices(devices));
    this.notify("local");
  }

  /** Read every connection's statistics, then write `stats` once for the current members. */
  private async measure(session: Session): Promise<void> {
    if (this.session !== session) return;
    const stats = await session.members.measure();
    if (stats === null || this.session !== session) return;
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
