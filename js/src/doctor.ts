/**
 * The connection doctor at work (diagnose.ts has the report and its judgements): it gathers the
 * findings in this page, the checks in parallel, and writes the report into `diagnosis` as each
 * check finishes. One per model, like the Call: the kernel's `diagnose` (Python's
 * `room.diagnose()`) may come before any view, and every view shows the same report.
 *
 * What it takes care not to disturb: a camera the call holds already counts as working (it is not
 * opened again), and the kernel route is not tried during a call (the kernel holds one such
 * connection per widget: a second would replace the call's).
 */
import {
  INTERRUPTED_BY_CALL,
  judgeDevice,
  judgeIce,
  judgeRoutes,
  judgeSecure,
  judgeTurn,
  report,
  routeKind,
  untriedRoutes,
  type Check,
  type CheckName,
  type DeviceFinding,
  type Diagnosis,
  type IceResult,
  type RouteContext,
  type RouteKind,
  type RouteResult,
} from "./diagnose";
import { openRoute } from "./deps";
import type { KernelLink } from "./kernel";
import { classifyMediaError, listDevices } from "./media";
import { KERNEL_ROUTE, candidateUrls, readBaseUrl } from "./route";
import type { SignalingTransport } from "./transport";
import type { DiagnoseMessage, WidgetModel } from "./types";

/** What gathers ICE candidates: the part of RTCPeerConnection the check uses (tests fake it). */
export interface GatheringConnection {
  onicecandidate: ((event: { candidate: { candidate: string; type?: string | null } | null }) => void) | null;
  onicecandidateerror: ((event: { url?: string; errorCode: number; errorText?: string }) => void) | null;
  createDataChannel(label: string): unknown;
  createOffer(): Promise<RTCSessionDescriptionInit>;
  setLocalDescription(description: RTCSessionDescriptionInit): Promise<void>;
  close(): void;
}

export interface DoctorDeps {
  /** The page: its origin, host name, whether it is a secure context, Jupyter's base URL. */
  page(): { origin: string; hostname: string; secure: boolean; baseUrl: string | null };
  mediaDevices(): Pick<MediaDevices, "getUserMedia" | "enumerateDevices"> | undefined;
  /** A transport to one route (the call's own `openRoute`). */
  openRoute(url: string, client: string, kernel: KernelLink | undefined): SignalingTransport;
  createConnection(config: RTCConfiguration): GatheringConnection;
  /** A monotonic clock in milliseconds (timings), and the epoch's (the report's times). */
  now(): number;
  clock(): number;
  routeTimeoutMs: number;
  iceTimeoutMs: number;
  /** How long the view's check waits for an idle kernel's ICE servers before it goes on without. */
  kernelAnswerMs: number;
}

export const defaultDoctorDeps: DoctorDeps = {
  page: () => ({
    origin: location.origin,
    hostname: location.hostname,
    secure: window.isSecureContext,
    baseUrl: readBaseUrl(document),
  }),
  mediaDevices: () => (typeof navigator === "undefined" ? undefined : (navigator.mediaDevices as MediaDevices | undefined)),
  openRoute: (url, client, kernel) => openRoute(url, kernel === undefined ? { client } : { client, kernel }),
  createConnection: (config) => new RTCPeerConnection(config) as unknown as GatheringConnection,
  now: () => performance.now(),
  clock: () => Date.now(),
  routeTimeoutMs: 4000,
  iceTimeoutMs: 10000,
  kernelAnswerMs: 3000,
};

/** What the doctor reads of the Call: what it holds already, so the check does not fight it. */
export interface DoctorCall {
  readonly localStream: MediaStream | null;
  /** The ICE servers of the call's last `enter` ([] before one). */
  readonly iceServers?: readonly RTCIceServer[];
}

/** What a check says that the page running it went away before it finished. */
export const UNFINISHED = "Not finished: the page that ran this check was closed or reloaded. Check again.";

/** An ICE server's URLs, as one key (its credentials differ from one member to the next). */
function serverKey(server: RTCIceServer): string {
  return JSON.stringify(typeof server.urls === "string" ? [server.urls] : [...server.urls].sort());
}

/** Open one kind of device and close it again; what a call holding it already has counts. */
export async function probeDevice(
  kind: "audio" | "video",
  devices: Pick<MediaDevices, "getUserMedia"> | undefined,
  secure: boolean,
  held: MediaStream | null,
): Promise<DeviceFinding> {
  const live = held?.getTracks().find((track) => track.kind === kind && track.readyState !== "ended");
  if (live !== undefined) return { outcome: "working", label: live.label, inCall: true };
  if (!secure) return { outcome: "insecure" };
  if (devices === undefined || typeof devices.getUserMedia !== "function") return { outcome: "unsupported" };
  try {
    const stream = await devices.getUserMedia(kind === "audio" ? { audio: true } : { video: true });
    const track = stream.getTracks()[0];
    for (const each of stream.getTracks()) each.stop();
    return { outcome: "working", label: track?.label ?? "", inCall: false };
  } catch (error) {
    const problem = classifyMediaError(error);
    const message = error instanceof Error ? error.message : "";
    if (problem === "insecure_context") return { outcome: "insecure" };
    if (problem === "camera_busy") return { outcome: problem, error: message };
    return { outcome: problem === "camera_denied" ? "camera_denied" : "missing" };
  }
}

/** Gather candidates with `servers` until the gathering ends or `timeoutMs` passes. */
export async function gatherCandidates(
  servers: readonly RTCIceServer[],
  source: IceResult["source"],
  deps: Pick<DoctorDeps, "createConnection" | "now">,
  timeoutMs: number,
): Promise<IceResult> {
  const result: IceResult = {
    source,
    servers: servers.map((server) => ({
      urls: typeof server.urls === "string" ? [server.urls] : [...server.urls],
      credential: typeof server.credential === "string" && server.credential !== "" && typeof server.username === "string",
    })),
    candidates: { host: 0, srflx: 0, prflx: 0, relay: 0 },
    errors: [],
    ms: 0,
    complete: false,
  };
  const start = deps.now();
  let connection: GatheringConnection;
  try {
    connection = deps.createConnection({ iceServers: [...servers] });
  } catch (error) {
    result.failure = error instanceof Error ? error.message : String(error);
    return result;
  }
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(resolve, timeoutMs);
      connection.onicecandidate = ({ candidate }) => {
        if (candidate === null || candidate.candidate === "") {
          result.complete = true;
          clearTimeout(timer);
          resolve();
          return;
        }
        const type = candidate.type ?? / typ (\w+)/.exec(candidate.candidate)?.[1];
        if (type === "host" || type === "srflx" || type === "prflx" || type === "relay") result.candidates[type] += 1;
      };
      connection.onicecandidateerror = (event) => {
        if (result.errors.length < 20) result.errors.push({ url: event.url ?? "", code: event.errorCode, text: event.errorText ?? "" });
      };
      connection.createDataChannel("ipymeet-doctor");
      connection
        .createOffer()
        .then((offer) => connection.setLocalDescription(offer))
        .catch((error: unknown) => {
          clearTimeout(timer);
          reject(error instanceof Error ? error : new Error(String(error)));
        });
    });
  } catch (error) {
    result.failure = error instanceof Error ? error.message : String(error);
  } finally {
    connection.close();
  }
  result.ms = deps.now() - start;
  return result;
}

/** Open one route, time it, close it. */
export async function probeRoute(
  url: string,
  kind: RouteKind,
  open: () => SignalingTransport,
  deps: Pick<DoctorDeps, "now">,
  timeoutMs: number,
): Promise<RouteResult> {
  const start = deps.now();
  let transport: SignalingTransport | null = null;
  try {
    transport = open();
    await transport.connect(timeoutMs);
    return { kind, url, status: "answered", ms: deps.now() - start, detail: "" };
  } catch (error) {
    const detail = error instanceof Error ? error.message : String(error);
    return { kind, url, status: "failed", ms: deps.now() - start, detail };
  } finally {
    transport?.disconnect();
  }
}

/** Whether the call holds (or is making) its connection to the signaller. */
function isActive(state: string): boolean {
  return state === "joining" || state === "waiting" || state === "in_call" || state === "reconnecting";
}

/** A fresh id for a check the page starts itself. */
export function newCheckId(): string {
  const bytes = new Uint8Array(9);
  crypto.getRandomValues(bytes);
  return `v${[...bytes].map((byte) => byte.toString(16).padStart(2, "0")).join("")}`;
}

/**
 * The doctor of one model (one per widget, like the Call): it runs a check when the kernel sends
 * `diagnose` (Python's `room.diagnose()`) or the view asks (`check()`), and writes the report into
 * `diagnosis` as each check finishes. A new check ends the one before (its late findings are
 * dropped).
 */
export class Doctor {
  private readonly model: WidgetModel;
  private readonly deps: DoctorDeps;
  private readonly kernel: KernelLink | null;
  private readonly call: DoctorCall;
  private readonly listeners = new Set<() => void>();
  private release: () => void = () => undefined;
  private current = "";
  /** The id the view asked the kernel for, while it waits; "" otherwise. */
  private asked = "";
  private askTimer: ReturnType<typeof setTimeout> | null = null;
  private disposed = false;

  constructor(model: WidgetModel, call: DoctorCall, kernel: KernelLink | null, deps: Partial<DoctorDeps> = {}) {
    this.model = model;
    this.call = call;
    this.kernel = kernel;
    this.deps = { ...defaultDoctorDeps, ...deps };
  }

  /** Take the kernel's `diagnose` messages. */
  /**
   * Take the kernel's `diagnose` messages. A report still "running" in the model is a page's that
   * went away mid-check (a reload): nothing finishes it now, so its unfinished checks are marked
   * so (else the view would say "Checking…" for ever).
   */
  start(): void {
    if (this.kernel !== null) this.release = this.kernel.handle({ diagnose: (message) => this.onKernel(message) });
    const stale = this.report;
    if (stale !== null && stale.state === "running") {
      const checks = stale.checks.map((item) =>
        item.status === "running" ? { ...item, status: "skipped" as const, detail: UNFINISHED } : item,
      );
      this.model.set("diagnosis", { ...stale, checks, state: "done" });
      this.model.save_changes();
    }
  }

  /** The last report, or null before any. */
  get report(): Diagnosis | null {
    const value = this.model.get("diagnosis");
    return value !== undefined && "id" in value ? (value as Diagnosis) : null;
  }

  /** Whether the view's check waits for the kernel (to hand it the ICE servers). */
  get waiting(): boolean {
    return this.asked !== "";
  }

  /** Be told when the report or `waiting` changes. Returns the unsubscribe. */
  subscribe(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /**
   * The view's "Check connection". A widget asks its kernel for the ICE servers (the TURN
   * credentials are made there); the answer waits while a cell runs, and an idle kernel that does
   * not answer within `kernelAnswerMs` is done without (the call's servers are used then).
   * Without a kernel (the standalone page) the check runs at once.
   */
  check(): void {
    if (this.disposed || this.waiting) return;
    const id = newCheckId();
    if (this.kernel === null) {
      void this.run(id, null);
      return;
    }
    this.asked = id;
    this.kernel.send({ type: "diagnose_request", id });
    this.notify();
    const arm = (): void => {
      this.askTimer = setTimeout(() => {
        if (this.asked !== id) return;
        if (this.kernel?.busy === true) arm();
        else void this.run(id, null);
      }, this.deps.kernelAnswerMs);
    };
    arm();
  }

  /** Run every check for request `id`; `servers` null: the call's ICE servers. */
  async run(id: string, servers: readonly RTCIceServer[] | null): Promise<Diagnosis | null> {
    if (this.disposed) return null;
    this.stopAsking();
    this.current = id;
    const deps = this.deps;
    const page = deps.page();
    const routeContext: RouteContext = {
      route: this.model.get("route"),
      signalingUrl: this.model.get("signaling_url"),
      port: this.model.get("_port"),
      pageOrigin: page.origin,
      pageHostname: page.hostname,
      baseUrl: page.baseUrl,
    };
    // The call's servers, from its `enter`, beside the kernel's: a signaller the kernel only
    // attaches to (a hub's service) may hand out a TURN server the kernel knows nothing of.
    const fromCall = this.call.iceServers ?? [];
    const known = new Set((servers ?? []).map(serverKey));
    const added = fromCall.filter((server) => !known.has(serverKey(server)));
    const iceServers = [...(servers ?? []), ...added];
    const source: IceResult["source"] =
      servers === null ? (added.length > 0 ? "call" : "none") : added.length > 0 ? "kernel and call" : "kernel";
    const state = {
      id,
      started: deps.clock(),
      finished: null as number | null,
      page: page.origin,
      secure: page.secure,
      checks: {} as Partial<Record<CheckName, Check>>,
      routes: [] as RouteResult[],
      ice: null as IceResult | null,
      devices: { cameras: 0, microphones: 0 },
    };
    const live = (): boolean => !this.disposed && this.current === id;
    const write = (): Diagnosis => {
      state.finished = deps.clock();
      const next = report(state);
      if (live()) {
        this.model.set("diagnosis", next);
        this.model.save_changes();
        this.notify();
      }
      return next;
    };

    state.checks.secure_context = judgeSecure(page.origin, page.secure);
    const urls = candidateUrls(routeContext);
    state.routes = [
      ...urls.map((url): RouteResult => ({ kind: routeKind(url, routeContext), url, status: "running", ms: null, detail: "" })),
      ...untriedRoutes(routeContext),
    ];
    state.checks.signaller = judgeRoutes(state.routes, routeContext);
    write();

    const media = deps.mediaDevices();
    const devices = async (): Promise<void> => {
      const camera = await probeDevice("video", media, page.secure, this.call.localStream);
      const microphone = await probeDevice("audio", media, page.secure, this.call.localStream);
      let listed: Pick<MediaDeviceInfo, "deviceId" | "kind" | "label">[] = [];
      try {
        if (typeof media?.enumerateDevices === "function") listed = await media.enumerateDevices();
      } catch {
        listed = [];
      }
      // Each device once: "default" and "communications" are aliases (media.ts's listDevices).
      const { cameras, microphones } = listDevices(listed);
      state.devices = { cameras: cameras.length, microphones: microphones.length };
      if (!live()) return;
      state.checks.camera = judgeDevice("camera", camera, state.devices.cameras);
      state.checks.microphone = judgeDevice("microphone", microphone, state.devices.microphones);
      write();
    };
    const routes = urls.map(async (url, index): Promise<void> => {
      const result = await this.probe(url, routeContext);
      if (!live()) return;
      state.routes[index] = result;
      state.checks.signaller = judgeRoutes(state.routes, routeContext);
      write();
    });
    const ice = (async (): Promise<void> => {
      const result = await gatherCandidates(iceServers, source, deps, deps.iceTimeoutMs);
      if (!live()) return;
      state.ice = result;
      state.checks.ice = judgeIce(result);
      state.checks.turn = judgeTurn(result);
      write();
    })();
    await Promise.all([devices(), ...routes, ice]);
    return live() ? write() : null;
  }

  dispose(): void {
    this.disposed = true;
    this.stopAsking();
    this.release();
    this.listeners.clear();
  }

  /** One route, unless trying it would disturb the call (the kernel route has one connection per widget). */
  private async probe(url: string, context: RouteContext): Promise<RouteResult> {
    const kind = routeKind(url, context);
    const state = this.model.get("state");
    if (url === KERNEL_ROUTE && isActive(state)) {
      if (this.model.get("connected_via") === KERNEL_ROUTE && state !== "reconnecting") {
        return { kind, url, status: "answered", ms: null, detail: "this call is connected through it" };
      }
      return { kind, url, status: "not_tried", ms: null, detail: "not tried during a call: the kernel holds one such connection per widget, the call's" };
    }
    const client = this.model.get("_client");
    const kernel = this.kernel ?? undefined;
    const result = await probeRoute(url, kind, () => this.deps.openRoute(url, client, kernel), this.deps, this.deps.routeTimeoutMs);
    // Connect pressed meanwhile: the call's kernel connection replaced the check's, which says
    // nothing of the route then.
    if (url === KERNEL_ROUTE && result.status === "failed" && isActive(this.model.get("state"))) {
      return { kind, url, status: "not_tried", ms: null, detail: INTERRUPTED_BY_CALL };
    }
    return result;
  }

  private onKernel(message: DiagnoseMessage): void {
    void this.run(message.id, message.ice_servers);
  }

  private stopAsking(): void {
    if (this.askTimer !== null) clearTimeout(this.askTimer);
    this.askTimer = null;
    if (this.asked !== "") {
      this.asked = "";
      this.notify();
    }
  }

  private notify(): void {
    for (const listener of [...this.listeners]) listener();
  }
}
