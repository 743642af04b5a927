/**
 * The connection doctor: what a call needs, checked in this page, and a plain fix for each problem
 * found. Python's `room.diagnose()` (widget/diagnose.py) and the view's "Check connection" run the
 * same checks here and read the same report, the `diagnosis` trait:
 *
 * - the secure context (the browser gives cameras to secure pages only);
 * - the camera and the microphone: allowed, present, free (a fresh getUserMedia of each, stopped
 *   at once; the ones a call holds already count as working);
 * - each route to the signaller (route.ts), opened at once, timed and closed;
 * - the ICE candidates one RTCPeerConnection gathers with the room's ICE servers (host, srflx,
 *   relay), and so whether the TURN server answers and takes its credentials (a relay candidate,
 *   or the `icecandidateerror` code: 701 no answer, 401 refused).
 *
 * The ICE servers come from the kernel in the `diagnose` message, with TURN credentials made for
 * the check (never in a trait: the report lists each server's URLs and whether it had a
 * credential, nothing more), or else are the call's own from its last `enter`.
 *
 * The judgements are pure functions of what was found (`judge*`), tested on their own; `Doctor`
 * gathers the findings through `DoctorDeps`, which the tests replace.
 */
import type { KernelLink } from "./kernel";
import { classifyMediaError } from "./media";
import { KERNEL_ROUTE, candidateUrls, isLoopbackHost, readBaseUrl } from "./route";
import { openRoute } from "./deps";
import type { SignalingTransport } from "./transport";
import type { DiagnoseMessage, Route, WidgetModel } from "./types";

// -- the report (the `diagnosis` trait) ----------------------------------------------------------

export type CheckName = "secure_context" | "camera" | "microphone" | "signaller" | "ice" | "turn";
export type CheckStatus = "running" | "ok" | "warning" | "problem" | "skipped";

export interface Check {
  name: CheckName;
  title: string;
  status: CheckStatus;
  /** What was found, in words. */
  detail: string;
  /** What to do about it ("" when nothing is to be done). */
  fix: string;
}

/** How the page reaches the signaller (route.ts): the kinds of its routes. */
export type RouteKind = "explicit" | "direct" | "proxy" | "kernel";

export interface RouteResult {
  kind: RouteKind;
  /** The URL tried ("kernel" for the kernel route). */
  url: string;
  status: "running" | "answered" | "failed" | "not_tried";
  /** Milliseconds until it answered (or failed); null when not tried or still running. */
  ms: number | null;
  /** Why it failed or was not tried ("" when it answered). */
  detail: string;
}

export type CandidateKind = "host" | "srflx" | "prflx" | "relay";

export interface IceResult {
  /** Where the servers came from: the kernel (for this check), the call's `enter`, or nowhere. */
  source: "kernel" | "call" | "none";
  /** The servers' URLs and whether each had a credential; never the credential itself. */
  servers: { urls: string[]; credential: boolean }[];
  candidates: Record<CandidateKind, number>;
  /** The `icecandidateerror`s: the server's URL, the code (701: no answer; 401: refused) and text. */
  errors: { url: string; code: number; text: string }[];
  /** Milliseconds the gathering took, or the time-out when it did not finish. */
  ms: number;
  /** Whether the gathering finished before the time-out. */
  complete: boolean;
  /** Set when no connection could be made at all. */
  failure?: string;
}

export interface Diagnosis {
  /** The request's id (the kernel's or the view's). */
  id: string;
  state: "running" | "done";
  /** Milliseconds since the epoch. */
  started: number;
  finished: number | null;
  /** The page's origin and whether it is a secure context. */
  page: string;
  secure: boolean;
  checks: Check[];
  routes: RouteResult[];
  ice: IceResult | null;
  devices: { cameras: number; microphones: number };
  /** How many checks found a problem (warnings not counted). */
  problems: number;
}

export const TITLES: Record<CheckName, string> = {
  secure_context: "Secure page",
  camera: "Camera",
  microphone: "Microphone",
  signaller: "Signaller",
  ice: "Network (ICE)",
  turn: "TURN relay",
};

const ORDER: readonly CheckName[] = ["secure_context", "camera", "microphone", "signaller", "ice", "turn"];

// -- the judgements: what was found → a check with its fix ---------------------------------------

const check = (name: CheckName, status: CheckStatus, detail: string, fix = ""): Check => ({
  name,
  title: TITLES[name],
  status,
  detail,
  fix,
});

export const FIX_INSECURE =
  "Open the notebook over https:// or on http://localhost (or 127.0.0.1): browsers give the camera " +
  "and microphone only to secure pages. On a server, serve Jupyter over HTTPS.";

export function judgeSecure(origin: string, secure: boolean): Check {
  if (secure) return check("secure_context", "ok", `${origin} is a secure context: the browser lets it use the camera.`);
  return check("secure_context", "problem", `${origin} is not a secure context (plain http from another address).`, FIX_INSECURE);
}

/** What opening one kind of device gave: working (with its label), or a problem. */
export type DeviceFinding =
  | { outcome: "working"; label: string; inCall: boolean }
  | { outcome: "insecure" | "unsupported" | "camera_denied" | "missing" | "camera_busy"; error?: string };

export function judgeDevice(kind: "camera" | "microphone", finding: DeviceFinding, count: number): Check {
  const Noun = kind === "camera" ? "Camera" : "Microphone";
  const noun = kind;
  switch (finding.outcome) {
    case "working": {
      const name = finding.label === "" ? "" : `: ${finding.label}`;
      const seen = count > 0 ? ` (${count} found)` : "";
      return check(kind, "ok", `${finding.inCall ? "In use by this call" : "Allowed and working"}${name}${seen}.`);
    }
    case "insecure":
      return check(kind, "skipped", "Not checked: the page is not a secure context (see above).");
    case "unsupported":
      return check(kind, "problem", "This browser offers no camera or microphone here (no navigator.mediaDevices).", "Use a recent Chrome, Edge, Firefox or Safari.");
    case "camera_denied":
      return check(
        kind,
        "problem",
        `${Noun} access is blocked for this page.`,
        `Allow the ${noun} in the browser's site settings (the icon left of the address), then check again.`,
      );
    case "missing":
      return check(
        kind,
        "problem",
        `No ${noun} was found.`,
        `Plug in a ${noun}, or let the browser use it in the system's privacy settings; then check again. Meanwhile you can join without it.`,
      );
    case "camera_busy":
      return check(
        kind,
        "problem",
        `The ${noun} could not be started${finding.error ? ` (${finding.error})` : ""}.`,
        `Close the other program or tab that uses the ${noun}, then check again.`,
      );
  }
}

/** What the routes say about the page's surroundings. */
export interface RouteContext {
  route: Route;
  /** The `signaling_url` trait, "" for the kernel's signaller. */
  signalingUrl: string;
  port: number;
  pageOrigin: string;
  pageHostname: string;
  /** Jupyter's base URL, null outside Jupyter. */
  baseUrl: string | null;
}

export function routeKind(url: string, context: RouteContext): RouteKind {
  if (context.signalingUrl.trim() !== "") return "explicit";
  if (url === KERNEL_ROUTE) return "kernel";
  return url.startsWith("http://127.0.0.1:") ? "direct" : "proxy";
}

/** The routes route.ts leaves out for this page, with why (shown beside those tried). */
export function untriedRoutes(context: RouteContext): RouteResult[] {
  if (context.signalingUrl.trim() !== "" || context.port <= 0) return [];
  const skip = (kind: RouteKind, detail: string): RouteResult => ({ kind, url: kind, status: "not_tried", ms: null, detail });
  const out: RouteResult[] = [];
  if (context.route === "auto") {
    if (!isLoopbackHost(context.pageHostname)) out.push(skip("direct", "this page is not on the kernel's machine"));
    if (context.baseUrl === null) out.push(skip("proxy", "this page is not served by Jupyter"));
  } else {
    const forced = `route="${context.route}" forces one route`;
    for (const kind of ["direct", "proxy", "kernel"] as const) if (kind !== context.route) out.push(skip(kind, forced));
  }
  return out;
}

const mixedContent = (url: string, origin: string): boolean => {
  try {
    const target = new URL(url);
    return origin.startsWith("https:") && target.protocol === "http:" && !isLoopbackHost(target.hostname);
  } catch {
    return false;
  }
};

export function judgeRoutes(routes: readonly RouteResult[], context: RouteContext): Check {
  const tried = routes.filter((route) => route.status !== "not_tried");
  if (tried.length === 0) {
    return check(
      "signaller",
      "problem",
      "The signaller's address is unknown: no signaling_url, and the kernel's signaller has no port.",
      "Re-run the cell that shows the room; if that does not help, restart the kernel.",
    );
  }
  if (tried.some((route) => route.status === "running")) return check("signaller", "running", "Trying the routes…");
  const answered = tried.filter((route) => route.status === "answered");
  const label = (route: RouteResult): string => (route.kind === "kernel" ? "the kernel route" : `${route.kind} (${route.url})`);
  const timing = (route: RouteResult): string => (route.ms === null ? "" : ` in ${Math.round(route.ms)} ms`);
  const direct = answered.find((route) => route.kind !== "kernel");
  if (direct !== undefined) return check("signaller", "ok", `Reached through ${label(direct)}${timing(direct)}.`);
  if (answered.length > 0) {
    const kernel = answered[0]!;
    return check(
      "signaller",
      "warning",
      `Only the kernel route answers${timing(kernel)}: calls work, but their signalling waits while a cell runs.`,
      "For a direct route, install jupyter-server-proxy where Jupyter runs (pip install jupyter-server-proxy), then restart Jupyter.",
    );
  }
  const names = tried.map(label).join(", ");
  if (context.signalingUrl.trim() !== "") {
    const url = context.signalingUrl.trim();
    if (mixedContent(url, context.pageOrigin)) {
      return check(
        "signaller",
        "problem",
        `Nothing answered at ${url}: this page is https and the signaller plain http, which browsers block.`,
        "Serve the signaller over HTTPS (ipymeet serve --tls, or behind an HTTPS proxy) and use its https:// URL.",
      );
    }
    return check(
      "signaller",
      "problem",
      `Nothing answered at ${url}.`,
      "Check that `ipymeet serve` runs there, that this page can reach that address and port (firewall, proxy), " +
        "and that it allows this page's origin (ipymeet serve --allow-origin " +
        `${context.pageOrigin}).`,
    );
  }
  if (context.route !== "auto") {
    return check(
      "signaller",
      "problem",
      `The forced route did not answer: ${names}.`,
      `Use route="auto" (the default) to let the page try every route, or fix the forced one (${context.route}).`,
    );
  }
  return check(
    "signaller",
    "problem",
    `No route to the signaller answered (tried: ${names}).`,
    "The signaller's port is not reachable from this page: install jupyter-server-proxy where Jupyter runs " +
      "(pip install jupyter-server-proxy, then restart Jupyter), or use VideoRoom(..., route=\"kernel\"). " +
      "If the kernel route failed too, the kernel is not answering: restart it and re-run the cell.",
  );
}

const turnUrl = (url: string): boolean => /^turns?:/i.test(url);
const stunUrl = (url: string): boolean => /^stuns?:/i.test(url);

export function judgeIce(ice: IceResult): Check {
  if (ice.failure !== undefined) {
    return check("ice", "problem", `No WebRTC connection could be made here: ${ice.failure}.`, "Use a recent Chrome, Edge, Firefox or Safari, and allow WebRTC for this site.");
  }
  const { host, srflx, relay, prflx } = ice.candidates;
  const found = `Gathered ${host} host, ${srflx} srflx and ${relay} relay candidate${host + srflx + relay === 1 ? "" : "s"}`;
  const urls = ice.servers.flatMap((server) => server.urls);
  const stun = urls.filter(stunUrl);
  const turn = urls.filter(turnUrl);
  const from = { kernel: " (from the kernel)", call: " (the call's)", none: "" }[ice.source];
  const servers =
    urls.length === 0
      ? "with no STUN or TURN server"
      : `with ${stun.length} STUN and ${turn.length} TURN server URL${stun.length + turn.length === 1 ? "" : "s"}${from}`;
  const took = ice.complete ? ` in ${Math.round(ice.ms)} ms` : ` (still gathering after ${Math.round(ice.ms / 1000)} s)`;
  const detail = `${found} ${servers}${took}.`;
  if (host + srflx + relay + prflx === 0) {
    return check(
      "ice",
      "problem",
      `${detail} WebRTC gathers no address at all in this browser.`,
      "Something blocks WebRTC here: an extension, or a browser policy. Allow WebRTC for this site.",
    );
  }
  if (stun.length > 0 && srflx === 0 && relay === 0) {
    return check(
      "ice",
      "warning",
      `${detail} No STUN server answered, so this page's public address is unknown.`,
      "Calls within one network still work. Across networks, let UDP through to the STUN server " +
        `(${stun.join(", ")}), or configure a TURN server (--turn-url).`,
    );
  }
  if (urls.length === 0) return check("ice", "ok", `${detail} Enough on this machine and its network.`);
  return check("ice", "ok", detail);
}

export function judgeTurn(ice: IceResult | null): Check {
  const configured = (ice?.servers ?? []).filter((server) => server.urls.some(turnUrl));
  if (ice === null || configured.length === 0) {
    const where =
      ice?.source === "none"
        ? "No ICE servers are known to this page (the signaller hands them out when a call enters its room)."
        : "No TURN server is configured.";
    return check(
      "turn",
      "skipped",
      `${where} Calls between networks whose firewalls block direct traffic need one.`,
      "For such calls, run a TURN server (coturn) and start the signaller with --turn-url and --turn-secret (IPYMEET_TURN_URLS, IPYMEET_TURN_SECRET for the kernel's).",
    );
  }
  if (ice.failure !== undefined) return check("turn", "skipped", "Not checked: no WebRTC connection could be made.");
  const urls = configured.flatMap((server) => server.urls.filter(turnUrl));
  if (configured.some((server) => !server.credential)) {
    return check(
      "turn",
      "problem",
      `The TURN server (${urls.join(", ")}) came without credentials.`,
      "Give the signaller the TURN server's shared secret: --turn-secret env:NAME or file:PATH (IPYMEET_TURN_SECRET).",
    );
  }
  if (ice.candidates.relay > 0) {
    return check("turn", "ok", `A relay candidate from ${urls.join(", ")}: the TURN server answers and takes the credentials.`);
  }
  const errors = ice.errors.filter((error) => turnUrl(error.url) || error.url === "");
  const refused = errors.find((error) => error.code === 401 || error.code === 403 || error.code === 438);
  if (refused !== undefined) {
    return check(
      "turn",
      "problem",
      `No relay candidate: the TURN server refused the credentials (${refused.code} ${refused.text}).`.replace(" )", ")"),
      "Check --turn-secret: it must be the TURN server's static-auth-secret (coturn with use-auth-secret), " +
        "and the clocks of the two machines must agree (the credentials expire).",
    );
  }
  const other = errors.find((error) => error.code !== 701);
  if (other !== undefined) {
    return check(
      "turn",
      "problem",
      `No relay candidate: the TURN server answered ${other.code} ${other.text}`.trim() + ".",
      "Check --turn-url (host, port, transport) and the secret.",
    );
  }
  const silence = errors.length > 0 ? "did not answer" : ice.complete ? "gave no relay candidate" : `did not answer within ${Math.round(ice.ms / 1000)} s`;
  return check(
    "turn",
    "problem",
    `No relay candidate: the TURN server (${urls.join(", ")}) ${silence}.`,
    "Check --turn-url (host and port), that the TURN server runs, and that this browser can reach it " +
      "(UDP or TCP 3478, TLS 5349 for turns:).",
  );
}

/** A report of the checks so far, in order (missing ones still running). */
export function report(parts: Omit<Diagnosis, "checks" | "problems" | "state"> & { checks: Partial<Record<CheckName, Check>> }): Diagnosis {
  const checks = ORDER.map((name) => parts.checks[name] ?? check(name, "running", "Checking…"));
  const done = checks.every((item) => item.status !== "running");
  return {
    ...parts,
    state: done ? "done" : "running",
    finished: done ? parts.finished : null,
    checks,
    problems: checks.filter((item) => item.status === "problem").length,
  };
}

// -- gathering the findings --------------------------------------------------------------------

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
};

/** What the doctor reads of the Call: what it holds already, so the check does not fight it. */
export interface DoctorCall {
  readonly localStream: MediaStream | null;
  /** The ICE servers of the call's last `enter` ([] before one). */
  readonly iceServers?: readonly RTCIceServer[];
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

/** A fresh id for a check the page starts itself. */
export function newCheckId(): string {
  const bytes = new Uint8Array(9);
  crypto.getRandomValues(bytes);
  return `v${[...bytes].map((byte) => byte.toString(16).padStart(2, "0")).join("")}`;
}

/** How long the view's "Check connection" waits for an idle kernel's ICE servers before it goes on without. */
export const KERNEL_ANSWER_MS = 3000;

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
  start(): void {
    if (this.kernel !== null) this.release = this.kernel.handle({ diagnose: (message) => this.onKernel(message) });
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
   * The view's "Check connection". A widget on the kernel's signaller asks its kernel for the
   * ICE servers (the TURN credentials are made there); the answer waits while a cell runs, and an
   * idle kernel that does not answer within KERNEL_ANSWER_MS is done without. Elsewhere (the
   * standalone page, a widget with a `signaling_url`) the check runs at once with the call's.
   */
  check(): void {
    if (this.disposed || this.waiting) return;
    const id = newCheckId();
    if (this.kernel === null || this.model.get("_port") <= 0 || this.model.get("signaling_url") !== "") {
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
      }, KERNEL_ANSWER_MS);
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
    const fromCall = this.call.iceServers ?? [];
    const iceServers = servers ?? fromCall;
    const source: IceResult["source"] = servers !== null ? "kernel" : fromCall.length > 0 ? "call" : "none";
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
      let listed: Pick<MediaDeviceInfo, "kind">[] = [];
      try {
        if (typeof media?.enumerateDevices === "function") listed = await media.enumerateDevices();
      } catch {
        listed = [];
      }
      state.devices = {
        cameras: listed.filter((device) => device.kind === "videoinput").length,
        microphones: listed.filter((device) => device.kind === "audioinput").length,
      };
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
  private probe(url: string, context: RouteContext): Promise<RouteResult> {
    const kind = routeKind(url, context);
    const state = this.model.get("state");
    const active = state === "joining" || state === "waiting" || state === "in_call" || state === "reconnecting";
    if (url === KERNEL_ROUTE && active) {
      if (this.model.get("connected_via") === KERNEL_ROUTE && state !== "reconnecting") {
        return Promise.resolve({ kind, url, status: "answered", ms: null, detail: "this call is connected through it" });
      }
      return Promise.resolve({ kind, url, status: "not_tried", ms: null, detail: "not tried during a call: the kernel holds one such connection per widget, the call's" });
    }
    const client = this.model.get("_client");
    const kernel = this.kernel ?? undefined;
    return probeRoute(url, kind, () => this.deps.openRoute(url, client, kernel), this.deps, this.deps.routeTimeoutMs);
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
