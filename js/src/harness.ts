/**
 * Test support for the Call's modules (not shipped: only *.test.ts import it): a fake signaller,
 * fake connections and tracks, and `setup()` / `inRoom()`, which put a Call on a page model.
 */
import { Call, type CallDeps, type CallTopic, type RemotePeer } from "./call";
import type { LocalMedia } from "./media";
import { PageModel } from "./page";
import type { Peer, PeerOptions } from "./peer";
import { SocketIoTransport, type SocketLike } from "./socketio";
import type { BrowserMessage, CallState, ChatEntry } from "./types";
import type { CallSource } from "./view/source";

export const settle = async (): Promise<void> => {
  for (let i = 0; i < 10; i++) await new Promise<void>((resolve) => setTimeout(resolve, 0));
};

type Listener = (...args: any[]) => void;

/** A signaller on the other end of a fake socket, answering enter/leave/signal. */
export class FakeServer implements SocketLike {
  listeners = new Map<string, Set<Listener>>();
  requests: string[] = [];
  /** The payloads of the `enter` requests, in order. */
  enters: Record<string, unknown>[] = [];
  disconnected = false;
  connected = true;
  /** Whether `connect()` (a reconnection) succeeds. */
  reachable = true;
  connect() {
    queueMicrotask(() => {
      this.connected = this.reachable;
      this.serve(this.reachable ? "connect" : "connect_error", new Error("refused"));
    });
  }
  enterAnswer: unknown = { ok: true, self: "me", peers: [], capacity: 4, ice_servers: [] };
  on(event: string, listener: Listener) {
    if (!this.listeners.has(event)) this.listeners.set(event, new Set());
    this.listeners.get(event)!.add(listener);
  }
  off(event: string, listener: Listener) {
    this.listeners.get(event)?.delete(listener);
  }
  /** `frame` events (no acknowledgement): [metadata, chunk?]. */
  frames: [Record<string, unknown>, ArrayBuffer | undefined][] = [];
  emit(event: string, _payload: unknown, ack: Listener) {
    if (event === "frame") {
      this.frames.push([_payload as Record<string, unknown>, ack as unknown as ArrayBuffer | undefined]);
      return;
    }
    this.requests.push(event);
    if (event === "enter") this.enters.push(_payload as Record<string, unknown>);
    queueMicrotask(() => ack(event === "enter" ? this.enterAnswer : { ok: true }));
  }
  disconnect() {
    this.disconnected = true;
    this.connected = false;
  }
  /** The connection drops (the server's end). */
  drop(reason = "transport close") {
    this.connected = false;
    this.serve("disconnect", reason);
  }
  serve(event: string, ...args: unknown[]) {
    for (const listener of [...(this.listeners.get(event) ?? [])]) listener(...args);
  }
}

export class FakePeer {
  connectionState: RTCPeerConnectionState = "new";
  remoteStream: MediaStream | null = null;
  /** replaceTrack calls: [kind, track]. */
  replaced: [string, unknown][] = [];
  async replaceTrack(kind: string, track: unknown) {
    this.replaced.push([kind, track]);
  }
  closed = false;
  received: unknown[] = [];
  channelOpen = false;
  /** What went out on the data channel. */
  data: string[] = [];
  caps: (number | null)[] = [];
  statsCalls = 0;
  report = new Map<string, Record<string, unknown>>();
  recovered = 0;
  /** What `isFromAnotherConnection` says. */
  anotherConnection = false;
  constructor(readonly options: PeerOptions) {}
  /** The level its audio receiver reports of the latest packets (0-1), null for none. */
  audioLevel: number | null = null;
  /** Enough of an RTCPeerConnection for speaking.ts: one audio receiver, no sender. */
  get pc(): RTCPeerConnection {
    const sources = this.audioLevel === null ? [] : [{ audioLevel: this.audioLevel }];
    const receiver = { track: { kind: "audio" }, getSynchronizationSources: () => sources };
    return { getReceivers: () => [receiver], getSenders: () => [] } as unknown as RTCPeerConnection;
  }
  recover() {
    this.recovered++;
  }
  resynced = 0;
  resync() {
    this.resynced++;
  }
  /** The servers of each `renewIceServers` call. */
  renewals: RTCIceServer[][] = [];
  renewIceServers(servers: RTCIceServer[]) {
    this.renewals.push(servers);
  }
  isFromAnotherConnection() {
    return this.anotherConnection;
  }
  receive(message: unknown) {
    this.received.push(message);
  }
  close() {
    this.closed = true;
    this.channelOpen = false;
  }
  become(state: RTCPeerConnectionState) {
    this.connectionState = state;
    this.options.onConnectionState(state);
  }
  sendData(data: string) {
    if (!this.channelOpen) return false;
    this.data.push(data);
    return true;
  }
  open() {
    this.channelOpen = true;
    this.options.onChannelOpen?.();
  }
  /** A message from the other side. */
  deliver(message: unknown) {
    this.options.onChannelMessage?.(typeof message === "string" ? message : JSON.stringify(message));
  }
  sentMessages() {
    return this.data.map((d) => JSON.parse(d) as Record<string, unknown>);
  }
  setMaxVideoBitrate(cap: number | null) {
    this.caps.push(cap);
  }
  /** What each `setWant` asked (the other side's `want` messages). */
  wants: unknown[] = [];
  setWant(want: unknown) {
    this.wants.push(want);
  }
  refits = 0;
  refitVideo() {
    this.refits++;
  }
  async getStats() {
    this.statsCalls++;
    return this.report as unknown as RTCStatsReport;
  }
}

export class FakeTrack {
  enabled = true;
  stopped = false;
  /** The constraints of each `applyConstraints`, in order. */
  applied: MediaTrackConstraints[] = [];
  constructor(readonly kind: string) {}
  getConstraints(): MediaTrackConstraints {
    return this.applied.at(-1) ?? {};
  }
  async applyConstraints(constraints: MediaTrackConstraints) {
    this.applied.push(constraints);
  }
  stop() {
    this.stopped = true;
  }
}

/** A MediaStream of fake tracks (for streams made during a call: the screen, a new camera). */
export class FakeMediaStream {
  constructor(readonly tracks: FakeTrack[]) {}
  getTracks() {
    return this.tracks;
  }
  getAudioTracks() {
    return this.tracks.filter((t) => t.kind === "audio");
  }
  getVideoTracks() {
    return this.tracks.filter((t) => t.kind === "video");
  }
}

export function fakeStream() {
  const tracks = [new FakeTrack("audio"), new FakeTrack("video")];
  const stream = new FakeMediaStream(tracks) as unknown as MediaStream;
  return { stream, tracks };
}

export interface SetupOptions {
  media?: () => Promise<LocalMedia>;
  connect?: CallDeps["connect"];
  statsIntervalMs?: number;
  captureFrame?: CallDeps["captureFrame"];
  openScreen?: CallDeps["openScreen"];
  devices?: CallDeps["devices"];
  now?: () => number;
}

/**
 * A Call on a page model, with a fake signaller (reached through the Socket.IO transport), fake
 * connections and a fake camera. `join()` does what the view's Connect does.
 */
export function setup(options: SetupOptions = {}) {
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
        server.connected = true; // a new socket to the same signaller
        return new SocketIoTransport(server, urls[0]!);
      }),
    openMedia: options.media ?? (async () => ({ stream, warning: null })),
    createPeer: (peerOptions) => {
      const peer = new FakePeer(peerOptions);
      peers.push(peer);
      return peer as unknown as Peer;
    },
    unreachableHint: "Is the kernel running?",
    statsIntervalMs: options.statsIntervalMs ?? 60_000,
    now: options.now ?? (() => 1_700_000_000_000),
    ...(options.captureFrame ? { captureFrame: options.captureFrame } : {}),
    ...(options.openScreen ? { openScreen: options.openScreen } : {}),
    devices: options.devices ?? { enumerate: async () => [], getUserMedia: () => Promise.reject(new Error("no")), watch: () => () => undefined },
  });
  const sent: unknown[] = [];
  const buffers: unknown[] = [];
  model.send = (content, _callbacks, sentBuffers) => {
    sent.push(content);
    buffers.push(sentBuffers);
  };
  call.start();
  const join = () => {
    model.set("_joins", model.get("_joins") + 1);
    model.set("_desired", true);
  };
  return { model, states, server, peers, tracks, stream, call, join, connectedWith, sent, buffers };
}

export const wait = (ms: number): Promise<void> => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Join with members already in the room (this side offers to each). */
export async function inRoom(ids: string[], options: SetupOptions = {}) {
  const context = setup(options);
  context.server.enterAnswer = {
    ok: true,
    self: "me",
    peers: ids.map((id) => ({ id, name: id.toUpperCase() })),
    capacity: 6,
    ice_servers: [],
  };
  context.join();
  await settle();
  return context;
}

/** The kernel sends `content` (a custom message) to the widget. */
export function fromKernel(model: PageModel, content: unknown): void {
  const listeners = (model as unknown as { listeners: Map<string, Set<(c: unknown) => void>> }).listeners;
  for (const listener of [...(listeners.get("msg:custom") ?? [])]) listener(content);
}

/** Byte equality without vitest's slow deep comparison of megabytes. */
export function same(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((value, i) => value === b[i]);
}

/**
 * A page model whose custom messages a test plays (`fromKernel`), recording what the browser sends
 * (`sent`: each message with its buffers; `messages`: the messages alone) and the `msg:custom`
 * listeners (`custom`).
 */
export class KernelModel extends PageModel {
  sent: [BrowserMessage, unknown][] = [];
  custom: ((content: unknown) => void)[] = [];
  get messages(): BrowserMessage[] {
    return this.sent.map(([message]) => message);
  }
  override send(message: BrowserMessage, _callbacks?: unknown, buffers?: unknown): void {
    this.sent.push([message, buffers]);
  }
  override on(eventName: string, callback: (...args: any[]) => void): void {
    if (eventName === "msg:custom") this.custom.push(callback);
    else super.on(eventName, callback);
  }
  override off(eventName?: string | null, callback?: ((...args: any[]) => void) | null): void {
    if (eventName === "msg:custom") this.custom = this.custom.filter((c) => c !== callback);
    else super.off(eventName, callback);
  }
  fromKernel(content: unknown): void {
    for (const callback of [...this.custom]) callback(content);
  }
}

/** A Call as the view sees it (view/source.ts), driven by the test: members, chat, topics. */
export class FakeCall implements CallSource {
  localStream: MediaStream | null = null;
  sharingScreen = false;
  members: RemotePeer[] = [];
  messages: ChatEntry[] = [];
  canChat = false;
  private readonly listeners = new Set<{ topic: CallTopic; listener: () => void }>();

  /** Like the Call's: fresh objects each time, so the view cannot lean on their identity. */
  get remotePeers(): RemotePeer[] {
    return this.members.map((peer) => ({ ...peer }));
  }

  subscribe(topic: CallTopic, listener: () => void): () => void {
    const entry = { topic, listener };
    this.listeners.add(entry);
    return () => this.listeners.delete(entry);
  }

  emit(topic: CallTopic): void {
    for (const entry of [...this.listeners]) if (entry.topic === topic) entry.listener();
  }

  subscribers(topic?: CallTopic): number {
    return [...this.listeners].filter((entry) => topic === undefined || entry.topic === topic).length;
  }

  sendChat(text: string): boolean {
    if (!this.canChat || text.trim() === "") return false;
    this.messages = [...this.messages, { id: `m${this.messages.length}`, from: "me", name: "Ada", text, time: Date.now(), mine: true }];
    this.emit("chat");
    return true;
  }

  /** Change one member, as a data-channel message or a connection state would. */
  change(id: string, patch: Partial<RemotePeer>): void {
    this.members = this.members.map((peer) => (peer.id === id ? { ...peer, ...patch } : peer));
  }
}

/** A remote member as the view gets it, connected unless `patch` says otherwise. */
export function remotePeer(id: string, patch: Partial<RemotePeer> = {}): RemotePeer {
  return { id, name: id, connection: "connected", away: false, stream: null, audio: true, video: true, screen: false, speaking: false, lastSpeaker: false, stats: null, ...patch };
}
