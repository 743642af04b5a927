/**
 * The Call: one per model, so a widget shown twice uses one camera and one set of connections.
 *
 * Python (or the view's controls) sets the intent: `_desired` and `_joins`, `room`, `audio`,
 * `video`, `screen`, `camera`, `microphone`. The Call reconciles toward it and reports what
 * happened: `state`, `error`/`error_code`, `connected_via`, `_browser_peers`, `stats`, `messages`,
 * and, where it ended something on its own, `_call_ended` / `_screen_ended` (Python's intent then
 * follows). It never writes an intent trait.
 *
 * The parts: session.ts (one join: the camera, the signaller over a transport, entering again),
 * members.ts (the others and their connections), outgoing.ts (what this page sends), chat.ts,
 * errors.ts (every message), kernel.ts (the kernel's custom messages). A session closed by a Hang
 * up (or a new join) acts no more, so one ended in the middle of a step leaves nothing behind.
 */
import { Chat } from "./chat";
import { ROOM_RE, type CallState, type ErrorCode } from "./contract";
import { defaultDeps, type CallDeps } from "./deps";
import { SCREEN_OUTSIDE_CALL, roomNameMessage } from "./errors";
import { KernelLink } from "./kernel";
import { listDevices } from "./media";
import type { RemotePeer } from "./members";
import type { Outgoing } from "./outgoing";
import { Session } from "./session";
import { NoFrame, answerSnapshot, type Frame } from "./snapshot";
import { Reporter, isActive, reduce, type CallEvent } from "./state";
import type { ChatEntry, FrameFormat, Model, WidgetModel } from "./types";

export type { CallDeps } from "./deps";
export { defaultDeps } from "./deps";
export type { RemotePeer } from "./members";
// Kept here for the modules that import them from "./call".
export { ROOM_RE } from "./contract";
export { ScreenUnsupported, screenMessage, unreachableMessage } from "./errors";
export { LINGER_MS, PROBE_LEFT_MS, PROBE_REENTER_MS } from "./liveness";
export { RECONNECT_FIRST_MS, RECONNECT_MAX_MS, RECONNECT_NOTICE_MS } from "./session";

/**
 * What changed, for `Call.subscribe`: "local" the local stream or `sharingScreen` (and the
 * devices); "members" `remotePeers` (the list, a stream, a flag, a connection state); "stats" new
 * per-member stats (the once-a-second measurement, nothing else); "chat" `messages` / `canChat`;
 * "kernel" `waitingForKernel`.
 */
export type CallTopic = "local" | "members" | "stats" | "chat" | "kernel";
const ALL_TOPICS: readonly CallTopic[] = ["local", "members", "stats", "chat", "kernel"];

export class Call {
  private readonly model: WidgetModel;
  private readonly deps: CallDeps;
  private readonly reporter: Reporter;
  private readonly kernel: KernelLink;
  /** Whether `kernel` is this Call's own (no link given), to dispose with it. */
  private readonly ownKernel: boolean;
  private readonly chat: Chat;
  private readonly listeners = new Set<{ topic: CallTopic; listener: () => void }>();
  private readonly modelListeners: [string, () => void][];
  private state: CallState = "idle";
  private session: Session | null = null;
  private disposed = false;
  /** The previous session's `leave`, acknowledged (or failed) when this settles. */
  private leaving: Promise<void> = Promise.resolve();
  private unwatchDevices: () => void = () => undefined;
  private releaseKernel: () => void = () => undefined;
  private unwatchKernel: () => void = () => undefined;

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
      ["change:video_size", () => void outgoing()?.applyCapture()],
      ["change:frame_rate", () => void outgoing()?.applyCapture()],
      ["change:room", () => {
        // A new room while in one: leave it and enter the new one.
        if (this.session !== null && this.model.get("room") !== this.session.room && this.wanted()) this.join();
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
        void answerSnapshot(request, (peer, format) => this.snapshot(peer, format), {
          comm: (message, buffers) => this.kernel.send(message, buffers),
          signaller: this.session?.frames ?? null,
          closed: () => this.disposed,
        });
      },
    });
    this.unwatchKernel = this.kernel.watch(() => this.notify("kernel"));
    this.unwatchDevices = this.deps.devices.watch(() => void this.refreshDevices());
    void this.refreshDevices();
    const reported = this.model.get("state");
    if (isActive(reported)) {
      this.state = "left";
      if (!this.wanted()) {
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
    this.unwatchKernel();
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

  /** Whether this page's own microphone is speaking now (never while muted). */
  get selfSpeaking(): boolean {
    return this.session?.selfSpeaking ?? false;
  }

  /** Whether the screen is being sent instead of the camera. */
  get sharingScreen(): boolean {
    return this.session?.outgoing.sharing ?? false;
  }

  /** The ICE servers of the call's last `enter` ([] before one): the connection doctor's fallback. */
  get iceServers(): readonly RTCIceServer[] {
    return this.session?.members.iceServers ?? [];
  }

  get remotePeers(): RemotePeer[] {
    return this.session?.members.remotePeers ?? [];
  }

  /** The room's recent chat, oldest first. */
  get messages(): readonly ChatEntry[] {
    return this.chat.entries;
  }

  /**
   * Whether the page has waited a while on its kernel, which runs a cell: on the kernel route the
   * signalling waits for the cell to end (kernelroute.ts).
   */
  get waitingForKernel(): boolean {
    return this.kernel.waiting;
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

  /** Be told when `topic` changes (see CallTopic). Returns the unsubscribe. */
  subscribe(topic: CallTopic, listener: () => void): () => void {
    const entry = { topic, listener };
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
    if (wanted && !isActive(this.state)) this.join();
    else if (!wanted && isActive(this.state)) this.hangUp();
  }

  private dispatch(event: CallEvent): boolean {
    const next = reduce(this.state, event);
    if (next === this.state) return false;
    this.state = next;
    return true;
  }

  private join(): void {
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
    void session.run();
  }

  /** A session whose news, while it is the current one, comes here. */
  private newSession(room: string): Session {
    const session: Session = new Session(room, {
      model: this.model,
      deps: this.deps,
      kernel: this.kernel,
      leaving: () => this.leaving,
      report: (patch) => this.reporter.now(patch),
      localChanged: () => this.notify("local"),
      membersChanged: () => this.connectionsChanged(session),
      mediaOpened: () => void this.refreshDevices(),
      entered: (wasLost) => {
        this.dispatch({ type: "entered", connected: session.members.connectedCount() });
        const patch: Partial<Model> = { state: this.state, _browser_peers: session.members.browserPeers() };
        if (wasLost && this.model.get("error_code") === "disconnected") Object.assign(patch, { error: "", error_code: "" });
        this.reporter.now(patch);
        this.notify("members");
      },
      ready: () => this.chat.entered(session),
      lost: () => {
        this.dispatch({ type: "lost" });
        this.reporter.now({ state: this.state });
        this.notify("members");
      },
      failed: (code, message, cause) => this.fail(code, message, cause),
      screenEnded: (error) => {
        const why: Partial<Model> = error === undefined ? {} : { error, error_code: "screen_denied" };
        this.reporter.now({ ...this.screenEnded(), ...why });
      },
      chat: (from, message) => this.chat.heard(from, message),
      measured: (stats) => {
        this.reporter.soon({ stats });
        this.notify("stats");
      },
    });
    return session;
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

  /** `_screen_ended` one up: the share stopped (or was refused) without the person asking. */
  private screenEnded(): Partial<Model> {
    return { _screen_ended: (this.model.get("_screen_ended") ?? 0) + 1 };
  }

  /** End the session; returns what to report with the end: a share it held (or was asked for) stopped. */
  private endSession({ leave }: { leave: boolean }): Partial<Model> {
    const session = this.session;
    if (session === null) return {};
    this.session = null;
    // A Connect right after Hang up must not enter before this leave is done: on another
    // connection the server could see the new `enter` first and find the room full of us.
    const leaving = session.close({ leave });
    if (leaving !== null) this.leaving = leaving;
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

  private notify(...topics: CallTopic[]): void {
    for (const { topic, listener } of [...this.listeners]) {
      if (!topics.includes(topic)) continue;
      try {
        listener();
      } catch (error) {
        console.error("ipymeet: a view failed to update", error);
      }
    }
  }
}
