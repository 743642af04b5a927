/**
 * One join, from Connect to Hang up: the camera, the way to the signaller (the route trial over
 * a transport), entering the room, entering it again after a dropped connection (with growing
 * pauses), the members and what is sent to them. The Call (call.ts) makes one per join and hears
 * what happens through `SessionHost`; `close()` ends it, and from then on nothing of it acts, so
 * a late camera stream is stopped and a late socket closed.
 */
import type { ErrorCode } from "./contract";
import type { CallDeps } from "./deps";
import { ERRORS, couldNotEnterMessage, endsTheCall, knownCode, refusal, retryingMessage } from "./errors";
import type { KernelLink } from "./kernel";
import { MediaAborted, stopStream } from "./media";
import { Members } from "./members";
import { newMessageId } from "./messages";
import { Outgoing, deviceChoice } from "./outgoing";
import { SPEAKING_POLL_MS, SpeakingGate, sentLevel } from "./speaking";
import { SignalingClient, SignalingError, UnreachableError, type EnterAccepted, type EnterRequest } from "./signaling";
import type { FrameSink } from "./snapshot";
import type { ChatPeerMessage, Model, PeerStats, WidgetModel } from "./types";

/**
 * Pauses between attempts to reach the signaller again: RECONNECT_FIRST_MS for the first
 * RECONNECT_QUICK attempts (about two seconds, in which a kernel taking over the shared signaller
 * is back), then doubling up to RECONNECT_MAX_MS.
 */
export const RECONNECT_FIRST_MS = 250;
export const RECONNECT_QUICK = 8;
export const RECONNECT_MAX_MS = 5000;
/** How long the signaller may be out of reach before the view says so in an error. */
export const RECONNECT_NOTICE_MS = 10000;

/**
 * The pause before attempt `attempt` to reach the signaller again (0: the first, at once), with
 * ±25 % jitter so that the pages that lost a restarted signaller do not all come back at one
 * instant.
 */
export function reconnectPause(attempt: number, random: () => number = Math.random): number {
  if (attempt === 0) return 0;
  const steps = Math.max(0, attempt - RECONNECT_QUICK);
  return Math.min(RECONNECT_FIRST_MS * 2 ** steps, RECONNECT_MAX_MS) * (0.75 + random() / 2);
}

/** What a session tells its Call. None of it is called once the session is closed. */
export interface SessionHost {
  readonly model: WidgetModel;
  readonly deps: CallDeps;
  /** The widget's link to its kernel: the kernel route signals through it. */
  readonly kernel: KernelLink;
  /** The previous session's `leave`: entering waits for it. */
  leaving(): Promise<void>;
  /** Write these reports now. */
  report(patch: Partial<Model>): void;
  /** The stream sent and previewed, or the share, changed. */
  localChanged(): void;
  /** The members' list, a stream, a flag or a connection state changed. */
  membersChanged(): void;
  /** The camera is open: the devices now have their names. */
  mediaOpened(): void;
  /** In the room (`wasLost`: again, after the signaller was out of reach). */
  entered(wasLost: boolean): void;
  /** The room is entered and the events held meanwhile delivered: lines written while joining can go. */
  ready(): void;
  /** The signaller dropped while in the room; the session tries to enter again. */
  lost(): void;
  /** The session cannot go on; the Call ends it. */
  failed(code: ErrorCode, message: string, cause?: unknown): void;
  /** The share stopped or was refused without the person asking (`error`: why, if refused). */
  screenEnded(error?: string): void;
  chat(from: { id: string; name: string }, message: ChatPeerMessage): void;
  measured(stats: Record<string, PeerStats>): void;
}

export class Session {
  readonly room: string;
  readonly members: Members;
  readonly outgoing: Outgoing;
  /** Chat lines written before the room was entered, sent once it is. */
  readonly pending: string[] = [];
  private readonly host: SessionHost;
  /** This page's secret for the call: entering again with it keeps its id (docs/protocol.md). */
  private readonly key = newMessageId() + newMessageId();
  private readonly abort = new AbortController();
  private client: SignalingClient | null = null;
  /** Since when the signaller has been out of reach (ms since the epoch), null while connected. */
  private lostSince: number | null = null;
  private reconnectTimer: ReturnType<typeof setTimeout> | null = null;
  private statsTimer: ReturnType<typeof setInterval> | null = null;
  private listenTimer: ReturnType<typeof setInterval> | null = null;
  /** Whether this page's own microphone is speaking (its sent level); `selfSpeaking`. */
  private readonly voice = new SpeakingGate();
  private readingOwnLevel = false;
  private closed = false;

  constructor(room: string, host: SessionHost) {
    this.room = room;
    this.host = host;
    const live = (): boolean => !this.closed;
    this.members = new Members({
      createPeer: (options) => host.deps.createPeer(options),
      signal: (message) => this.client?.signal(message) ?? Promise.reject(new Error("no signaller")),
      outgoing: () => this.outgoing.current,
      flags: () => JSON.stringify(this.outgoing.flags()),
      changed: () => live() && host.membersChanged(),
      chat: (from, message) => live() && host.chat(from, message),
      relayOnly: () => host.model.get("relay_only"),
      relayProblem: (problem, turn) => {
        if (!live()) return;
        const context = { room, hint: host.deps.unreachableHint, ...(turn === null ? {} : { turn }) };
        const message = ERRORS[problem].message(context);
        if (ERRORS[problem].final) host.failed(problem, message);
        else host.report({ error: message, error_code: problem });
      },
    });
    this.outgoing = new Outgoing({
      model: host.model,
      members: this.members,
      getUserMedia: (constraints) => host.deps.devices.getUserMedia(constraints),
      openScreen: () => host.deps.openScreen(),
      report: (patch) => live() && host.report(patch),
      changed: () => live() && host.localChanged(),
      screenEnded: (error) => live() && host.screenEnded(error),
    });
  }

  /** Whether the room was entered (the own id is known). */
  get entered(): boolean {
    return this.members.selfId !== "";
  }

  /** The signalling connection, for a snapshot's chunks; null before it is made. */
  get frames(): FrameSink | null {
    const client = this.client;
    return client === null ? null : { emit: (_event, meta, chunk) => client.sendFrame(meta, chunk) };
  }

  /** Open the camera and reach the signaller (in parallel), then enter the room. */
  async run(): Promise<void> {
    const { deps, model } = this.host;
    const live = (): boolean => !this.closed;
    // The preview shows as soon as the camera is on.
    const media = deps.openMedia(this.abort.signal, deviceChoice(model)).then(
      (local) => {
        if (!live()) {
          stopStream(local.stream);
          return;
        }
        this.outgoing.take(local.stream);
        if (local.stream !== null) this.host.mediaOpened();
        if (local.warning !== null) this.host.report({ error: local.warning.message, error_code: local.warning.code });
        this.host.localChanged();
      },
      (error: unknown) => {
        if (!(error instanceof MediaAborted)) console.warn("ipymeet: opening the camera failed", error);
      },
    );
    const hint = deps.unreachableHint;
    const urls = deps.routes(model);
    let transport;
    try {
      if (urls.length === 0) throw new UnreachableError([], []);
      const options = { client: model.get("_client"), signal: this.abort.signal, kernel: this.host.kernel };
      transport = await deps.connect(urls, options);
    } catch (error) {
      if (live()) this.host.failed("unreachable", ERRORS.unreachable.message({ room: this.room, hint, urls }), error);
      return;
    }
    if (!live()) {
      transport.disconnect();
      return;
    }
    const url = transport.url;
    this.client = new SignalingClient(transport, {
      peerJoined: (peer) => live() && this.members.add(peer, false),
      peerLeft: ({ id, reason }) => live() && this.members.left(id, reason),
      signal: (message) => live() && this.members.route(message),
      iceServers: (servers) => live() && this.members.renewed(servers),
      error: (error) => live() && this.host.report({ error: error.message, error_code: knownCode(error.code) }),
      disconnected: () => {
        if (!live()) return;
        // Not in the room yet: nothing to keep, so say so at once.
        if (!this.entered) this.host.failed("disconnected", ERRORS.disconnected.message({ room: this.room, hint, url }));
        else this.signalerLost();
      },
    });
    this.host.report({ connected_via: url });

    await media;
    await this.host.leaving();
    if (!live()) return;
    let accepted;
    try {
      accepted = await this.enter(this.client);
    } catch (error) {
      if (live()) this.failEnter(error);
      return;
    }
    if (accepted === null || !live()) return;
    this.take(accepted);
    this.statsTimer = setInterval(() => void this.measure(), deps.statsIntervalMs);
    this.listenTimer = setInterval(() => void this.listen(), SPEAKING_POLL_MS);
  }

  /** Whether this page's microphone is speaking now (never while muted). */
  get selfSpeaking(): boolean {
    return this.voice.speaking;
  }

  /**
   * End the session: its connections closed, its tracks stopped, and with `leave` (once entered)
   * the room left, acknowledged, then disconnected. Returns that leave, or null.
   */
  close({ leave }: { leave: boolean }): Promise<void> | null {
    if (this.closed) return null;
    this.closed = true;
    this.abort.abort();
    if (this.reconnectTimer !== null) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = null;
    this.lostSince = null;
    if (this.statsTimer !== null) clearInterval(this.statsTimer);
    this.statsTimer = null;
    if (this.listenTimer !== null) clearInterval(this.listenTimer);
    this.listenTimer = null;
    this.pending.length = 0;
    const entered = this.entered;
    this.members.close();
    this.outgoing.close();
    const client = this.client;
    if (client === null) return null;
    if (!leave || !entered) {
      client.close();
      return null;
    }
    return client.leave().then(
      () => client.close(),
      () => client.close(),
    );
  }

  private async enter(client: SignalingClient): Promise<EnterAccepted | null> {
    const token = await this.host.deps.token(this.room);
    if (this.closed) return null;
    const request: EnterRequest = { room: this.room, name: this.host.model.get("name"), session: this.key };
    if (token !== undefined) request.token = token;
    return client.enter(request);
  }

  /** In the room (first or again): take in the members the signaller lists, then the events. */
  private take(accepted: EnterAccepted): void {
    if (this.entered) {
      console.debug(`ipymeet: entered again, with ${accepted.peers.map((p) => p.id).join(", ") || "no one"}`);
    }
    this.members.entered(accepted);
    if (this.closed) return; // it could not go on (relay only, and no relay)
    const wasLost = this.lostSince !== null;
    this.lostSince = null;
    this.host.entered(wasLost);
    this.client?.deliver();
    if (!this.closed) this.host.ready();
  }

  private failEnter(error: unknown): void {
    if (!(error instanceof SignalingError)) {
      this.host.failed("bad_request", couldNotEnterMessage(this.room), error);
      return;
    }
    const context = { room: this.room, hint: this.host.deps.unreachableHint, detail: error.message };
    const capacity = error.refusal?.capacity;
    const { code, message } = refusal(error.code, capacity === undefined ? context : { ...context, capacity });
    this.host.failed(code, message);
  }

  // -- when the signaller is out of reach ------------------------------------------------------------

  /**
   * The connection to the signaller dropped while in the room. The peer connections stay (their
   * media does not pass through the signaller); the page reconnects with growing pauses and enters
   * again with its session key, so the others know it as the same member.
   */
  private signalerLost(): void {
    if (this.lostSince !== null) return;
    this.lostSince = this.host.deps.now();
    this.host.lost();
    this.scheduleReconnect(0);
  }

  private scheduleReconnect(attempt: number): void {
    if (this.reconnectTimer !== null) clearTimeout(this.reconnectTimer);
    const pause = reconnectPause(attempt);
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      void this.reconnect(attempt);
    }, pause);
  }

  private async reconnect(attempt: number): Promise<void> {
    const client = this.client;
    const live = (): boolean => !this.closed && this.lostSince !== null;
    if (!live() || client === null) return;
    let accepted;
    try {
      await client.reconnect();
      accepted = await this.enter(client);
    } catch (error) {
      if (!live()) return;
      if (error instanceof SignalingError && endsTheCall(error.code)) {
        this.failEnter(error);
        return;
      }
      const { deps, model } = this.host;
      const lostFor = deps.now() - (this.lostSince ?? deps.now());
      if (lostFor >= RECONNECT_NOTICE_MS && model.get("error_code") !== "disconnected") {
        this.host.report({ error: retryingMessage(client.url, deps.unreachableHint), error_code: "disconnected" });
        this.host.membersChanged();
      }
      this.scheduleReconnect(attempt + 1);
      return;
    }
    if (accepted !== null && live()) this.take(accepted);
  }

  /** Who speaks: the members' received levels, and this page's own through one connection. */
  private async listen(): Promise<void> {
    const now = this.host.deps.now();
    this.members.listen(now);
    const pc = this.members.sending();
    if (this.readingOwnLevel) return;
    this.readingOwnLevel = true;
    let level: number | null = null;
    try {
      level = pc === null ? null : await sentLevel(pc);
    } catch (error) {
      console.debug("ipymeet: could not read the microphone's level", error);
    } finally {
      this.readingOwnLevel = false;
    }
    if (this.closed) return;
    const was = this.voice.speaking;
    if (this.voice.update(level, !this.outgoing.flags().audio, this.host.deps.now()) !== was) this.host.localChanged();
  }

  /** Read every connection's statistics, then hand them on once for the current members. */
  private async measure(): Promise<void> {
    const stats = await this.members.measure();
    if (stats !== null && !this.closed) this.host.measured(stats);
  }
}
