/**
 * The connection doctor's report and its judgements: what a call needs, checked in this page
 * (doctor.ts gathers the findings), and a plain fix for each problem found. Python's `room.diagnose()` (widget/diagnose.py) and the view's "Check connection" run the
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
 * credential, nothing more), together with those of the call's last `enter` that are not among
 * them (or alone, when the kernel does not know the signaller's servers).
 *
 * The judgements are pure functions of what was found (`judge*`), each tested on its own; the
 * Doctor (doctor.ts) gathers the findings and writes the report as they come.
 */
import { KERNEL_ROUTE, isLoopbackHost } from "./route";
import type { Route } from "./types";

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
  /** Where the servers came from: the kernel (for this check), the call's `enter`, both, or nowhere. */
  source: "kernel" | "call" | "kernel and call" | "none";
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
  // The proxy's URL may be on 127.0.0.1 too (a local Jupyter): only the bare port is direct.
  return url === `http://127.0.0.1:${context.port}` ? "direct" : "proxy";
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

/** Why a kernel-route check that Connect cut short says nothing (doctor.ts). */
export const INTERRUPTED_BY_CALL = "the call began during the check and took the kernel's one connection per widget";

export function judgeRoutes(routes: readonly RouteResult[], context: RouteContext): Check {
  const tried = routes.filter((route) => route.status !== "not_tried");
  if (tried.length === 0) {
    if (routes.some((route) => route.detail === INTERRUPTED_BY_CALL)) {
      // The route's line says why; the verdict, what to do.
      return check("signaller", "skipped", "Not checked: the call began during the check.", "Press Check connection again once the call has connected.");
    }
    return check(
      "signaller",
      "problem",
      "The signaller's address is unknown: no signaling_url, and the kernel's signaller has no port.",
      "Re-run the cell that shows the room; if that does not help, restart the kernel.",
    );
  }
  if (tried.some((route) => route.status === "running")) return check("signaller", "running", "Trying the routes…");
  const answered = tried.filter((route) => route.status === "answered");
  const label = (route: RouteResult): string =>
    route.kind === "kernel" ? "the kernel route" : route.kind === "explicit" ? route.url : `${route.kind} (${route.url})`;
  const timing = (route: RouteResult): string => (route.ms === null ? "" : ` in ${Math.round(route.ms)} ms`);
  const direct = answered.find((route) => route.kind !== "kernel");
  if (direct !== undefined) {
    const how = direct.kind === "explicit" ? `at ${direct.url}` : `through ${label(direct)}`;
    return check("signaller", "ok", `Reached the signaller ${how}${timing(direct)}.`);
  }
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
  const from = { kernel: " (from the kernel)", call: " (the call's)", "kernel and call": " (the kernel's and the call's)", none: "" }[ice.source];
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
