import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import {
  FIX_INSECURE,
  judgeDevice,
  judgeIce,
  judgeRoutes,
  judgeSecure,
  judgeTurn,
  report,
  routeKind,
  untriedRoutes,
  type Diagnosis,
  type IceResult,
  type RouteContext,
  type RouteResult,
} from "./diagnose";
import { Doctor, UNFINISHED, type DoctorCall, type DoctorDeps, type GatheringConnection } from "./doctor";
import { FakeServer, KernelModel, fakeStream, settle, wait } from "./harness";
import { KernelLink } from "./kernel";
import { openRoute } from "./deps";
import { KERNEL_ROUTE } from "./route";
import { SocketIoTransport } from "./socketio";
import type { BrowserMessage } from "./types";

const lab: RouteContext = {
  route: "auto",
  signalingUrl: "",
  port: 8765,
  pageOrigin: "https://hub.example.org",
  pageHostname: "hub.example.org",
  baseUrl: "/user/ada/",
};
const route = (patch: Partial<RouteResult>): RouteResult => ({ kind: "proxy", url: "u", status: "failed", ms: 12, detail: "", ...patch });
const ice = (patch: Partial<IceResult> = {}): IceResult => ({
  source: "kernel",
  servers: [],
  candidates: { host: 2, srflx: 0, prflx: 0, relay: 0 },
  errors: [],
  ms: 80,
  complete: true,
  ...patch,
});
const TURN = { urls: ["turn:turn.example.org:3478"], credential: true };

describe("the judgements: each problem with its fix", () => {
  it("an insecure page: open it over https or localhost", () => {
    expect(judgeSecure("https://a.org", true).status).toBe("ok");
    const insecure = judgeSecure("http://192.168.1.20:8888", false);
    expect(insecure).toMatchObject({ status: "problem", fix: FIX_INSECURE });
    expect(insecure.fix).toMatch(/https:\/\/.*localhost/);
  });

  it("the camera and microphone: blocked, missing, busy, unchecked, working", () => {
    const denied = judgeDevice("camera", { outcome: "camera_denied" }, 0);
    expect(denied.status).toBe("problem");
    expect(denied.fix).toContain("Allow the camera in the browser's site settings");
    expect(judgeDevice("microphone", { outcome: "missing" }, 0).fix).toContain("Plug in a microphone");
    expect(judgeDevice("camera", { outcome: "camera_busy", error: "Could not start video source" }, 1)).toMatchObject({
      status: "problem",
      detail: "The camera could not be started (Could not start video source).",
    });
    expect(judgeDevice("camera", { outcome: "insecure" }, 0)).toMatchObject({ status: "skipped", fix: "" });
    expect(judgeDevice("camera", { outcome: "working", label: "FaceTime HD", inCall: false }, 2)).toMatchObject({
      status: "ok",
      detail: "Allowed and working: FaceTime HD (2 found).",
      fix: "",
    });
    expect(judgeDevice("microphone", { outcome: "working", label: "", inCall: true }, 0).detail).toBe("In use by this call.");
  });

  it("no route answers from a remote page: install jupyter-server-proxy, or the kernel route", () => {
    const routes = [route({ kind: "proxy", url: "https://hub.example.org/user/ada/proxy/8765/" }), route({ kind: "kernel", url: "kernel" })];
    const verdict = judgeRoutes(routes, lab);
    expect(verdict.status).toBe("problem");
    expect(verdict.detail).toContain("tried: proxy (https://hub.example.org/user/ada/proxy/8765/), the kernel route");
    expect(verdict.fix).toContain("not reachable from this page: install jupyter-server-proxy");
    expect(verdict.fix).toContain('route="kernel"');
  });

  it("only the kernel route answers: a warning (calls work, slower), with the fix", () => {
    const verdict = judgeRoutes([route({ kind: "proxy" }), route({ kind: "kernel", url: "kernel", status: "answered", ms: 40 })], lab);
    expect(verdict).toMatchObject({ status: "warning" });
    expect(verdict.detail).toContain("Only the kernel route answers in 40 ms");
    expect(verdict.fix).toContain("jupyter-server-proxy");
  });

  it("a direct route that answers is enough, and says how fast", () => {
    const verdict = judgeRoutes([route({ kind: "direct", url: "http://127.0.0.1:8765", status: "answered", ms: 7.4 }), route({ kind: "kernel", url: "kernel" })], lab);
    expect(verdict).toEqual(expect.objectContaining({ status: "ok", detail: "Reached the signaller through direct (http://127.0.0.1:8765) in 7 ms.", fix: "" }));
  });

  it("an explicit URL: is ipymeet serve running there; an https page and an http signaller", () => {
    const explicit = { ...lab, signalingUrl: "http://10.0.0.5:8765" };
    const blocked = judgeRoutes([route({ kind: "explicit", url: "http://10.0.0.5:8765" })], explicit);
    expect(blocked.detail).toContain("browsers block");
    expect(blocked.fix).toContain("--tls");
    const plain = judgeRoutes([route({ kind: "explicit", url: "http://10.0.0.5:8765" })], { ...explicit, pageOrigin: "http://10.0.0.5:8765" });
    expect(plain.fix).toContain("ipymeet serve");
    expect(plain.fix).toContain("--allow-origin http://10.0.0.5:8765");
    const answered = judgeRoutes([route({ kind: "explicit", url: "https://meet.example.org", status: "answered", ms: 30 })], explicit);
    expect(answered.detail).toBe("Reached the signaller at https://meet.example.org in 30 ms.");
  });

  it("no address at all, and routes still running", () => {
    expect(judgeRoutes([], { ...lab, port: 0 }).fix).toContain("Re-run the cell");
    expect(judgeRoutes([route({ status: "running", ms: null })], lab).status).toBe("running");
  });

  it("tells the routes apart, also a local Jupyter's proxy on 127.0.0.1", () => {
    const local = { ...lab, pageOrigin: "http://127.0.0.1:8888", pageHostname: "127.0.0.1", baseUrl: "/" };
    expect(routeKind("http://127.0.0.1:8765", local)).toBe("direct");
    expect(routeKind("http://127.0.0.1:8888/proxy/8765/", local)).toBe("proxy");
    expect(routeKind("kernel", local)).toBe("kernel");
    expect(routeKind("http://127.0.0.1:8765", { ...local, signalingUrl: "http://127.0.0.1:8765" })).toBe("explicit");
  });

  it("the routes route.ts leaves out are listed with why", () => {
    expect(untriedRoutes(lab)).toEqual([{ kind: "direct", url: "direct", status: "not_tried", ms: null, detail: "this page is not on the kernel's machine" }]);
    expect(untriedRoutes({ ...lab, route: "kernel" }).map((r) => r.kind)).toEqual(["direct", "proxy"]);
    expect(untriedRoutes({ ...lab, signalingUrl: "https://x" })).toEqual([]);
  });

  it("ICE: host candidates and no server is fine; nothing gathered, or a silent STUN server, is not", () => {
    const fine = judgeIce(ice());
    expect(fine.status).toBe("ok");
    expect(fine.detail).toContain("Gathered 2 host, 0 srflx and 0 relay candidates with no STUN or TURN server in 80 ms");
    const none = judgeIce(ice({ candidates: { host: 0, srflx: 0, prflx: 0, relay: 0 } }));
    expect(none.status).toBe("problem");
    expect(none.fix).toContain("Allow WebRTC");
    const stun = judgeIce(ice({ servers: [{ urls: ["stun:stun.example.org:3478"], credential: false }] }));
    expect(stun.status).toBe("warning");
    expect(stun.fix).toContain("stun:stun.example.org:3478");
    expect(judgeIce(ice({ failure: "RTCPeerConnection is not defined" })).status).toBe("problem");
  });

  it("TURN: none configured is skipped with how to add one", () => {
    const none = judgeTurn(ice());
    expect(none.status).toBe("skipped");
    expect(none.fix).toContain("--turn-url and --turn-secret");
    expect(judgeTurn(ice({ source: "none" })).detail).toContain("No ICE servers are known to this page");
  });

  it("TURN: a relay candidate says it answers; no relay says why, from the error code", () => {
    expect(judgeTurn(ice({ servers: [TURN], candidates: { host: 1, srflx: 1, prflx: 0, relay: 1 } })).status).toBe("ok");
    const refused = judgeTurn(ice({ servers: [TURN], errors: [{ url: "turn:turn.example.org:3478?transport=udp", code: 401, text: "Unauthorized" }] }));
    expect(refused.status).toBe("problem");
    expect(refused.detail).toContain("refused the credentials (401 Unauthorized)");
    expect(refused.fix).toContain("--turn-secret");
    const silent = judgeTurn(ice({ servers: [TURN], errors: [{ url: "turn:turn.example.org:3478?transport=udp", code: 701, text: "" }] }));
    expect(silent.detail).toContain("did not answer");
    expect(silent.fix).toContain("Check --turn-url");
    const late = judgeTurn(ice({ servers: [TURN], complete: false, ms: 10_000 }));
    expect(late.detail).toContain("did not answer within 10 s");
    const bare = judgeTurn(ice({ servers: [{ ...TURN, credential: false }] }));
    expect(bare).toMatchObject({ status: "problem" });
    expect(bare.fix).toContain("--turn-secret");
  });
});

// -- the doctor at work, on fakes -------------------------------------------------------------

/** An RTCPeerConnection that gathers what it is told to, after setLocalDescription. */
class FakeGathering implements GatheringConnection {
  onicecandidate: GatheringConnection["onicecandidate"] = null;
  onicecandidateerror: GatheringConnection["onicecandidateerror"] = null;
  closed = false;
  constructor(
    readonly config: RTCConfiguration,
    private readonly gathered: string[],
    private readonly errors: { url: string; errorCode: number; errorText: string }[] = [],
    private readonly finishes = true,
  ) {}
  createDataChannel(): unknown {
    return {};
  }
  async createOffer(): Promise<RTCSessionDescriptionInit> {
    return { type: "offer", sdp: "v=0" };
  }
  async setLocalDescription(): Promise<void> {
    setTimeout(() => {
      for (const candidate of this.gathered) this.onicecandidate?.({ candidate: { candidate } });
      for (const error of this.errors) this.onicecandidateerror?.(error);
      if (this.finishes) this.onicecandidate?.({ candidate: null });
    }, 1);
  }
  close(): void {
    this.closed = true;
  }
}

const HOST = "candidate:1 1 udp 2122260223 7f2c.local 54321 typ host generation 0";
const RELAY = "candidate:3 1 udp 41885439 203.0.113.9 50000 typ relay raddr 0.0.0.0 rport 0";

interface Fixture {
  secure?: boolean;
  hostname?: string;
  getUserMedia?: (constraints: MediaStreamConstraints) => Promise<MediaStream>;
  servers?: Record<string, FakeServer>;
  gathered?: string[];
  iceErrors?: { url: string; errorCode: number; errorText: string }[];
  finishes?: boolean;
  call?: DoctorCall;
  kernel?: boolean;
}

function doctorWith(fixture: Fixture = {}, traits: Record<string, unknown> = {}) {
  const model = new KernelModel({ room: "lab", _client: "k1", _port: 8765, ...traits });
  const kernel = fixture.kernel === false ? null : new KernelLink(model);
  const connections: FakeGathering[] = [];
  const opened: string[] = [];
  const deps: Partial<DoctorDeps> = {
    page: () => ({
      origin: `http://${fixture.hostname ?? "127.0.0.1"}:8888`,
      hostname: fixture.hostname ?? "127.0.0.1",
      secure: fixture.secure ?? true,
      baseUrl: "/",
    }),
    mediaDevices: () => ({
      getUserMedia: fixture.getUserMedia ?? (async () => fakeStream().stream),
      enumerateDevices: async () => [
        { deviceId: "c1", kind: "videoinput", label: "Cam", groupId: "", toJSON: () => ({}) },
        { deviceId: "m1", kind: "audioinput", label: "Mic", groupId: "", toJSON: () => ({}) },
      ],
    }),
    openRoute: (url, client, link) => {
      opened.push(url);
      if (url === KERNEL_ROUTE && link !== undefined) return openRoute(url, { client, kernel: link });
      const server = fixture.servers?.[url];
      if (server === undefined) throw new Error(`no fake for ${url}`);
      return new SocketIoTransport(server, url);
    },
    createConnection: (config) => {
      const connection = new FakeGathering(config, fixture.gathered ?? [HOST], fixture.iceErrors, fixture.finishes ?? true);
      connections.push(connection);
      return connection;
    },
    routeTimeoutMs: 200,
    iceTimeoutMs: 200,
    kernelAnswerMs: 30,
  };
  const doctor = new Doctor(model, fixture.call ?? { localStream: null }, kernel, deps);
  doctor.start();
  const reports: Diagnosis[] = [];
  model.on("change:diagnosis", () => reports.push(model.get("diagnosis") as Diagnosis));
  const status = (): Record<string, string> =>
    Object.fromEntries((model.get("diagnosis") as Diagnosis).checks.map((check) => [check.name, check.status]));
  return { model, doctor, connections, opened, reports, status };
}

const up = (): FakeServer => {
  const server = new FakeServer();
  server.connected = false;
  return server;
};
const down = (): FakeServer => {
  const server = up();
  server.reachable = false;
  return server;
};

describe("the Doctor, on fakes", () => {
  beforeEach(() => {
    vi.spyOn(console, "warn").mockImplementation(() => undefined);
  });
  afterEach(() => {
    vi.restoreAllMocks();
  });

  it("a working page: host candidates, every route timed, no problem; the report fills in as checks finish", async () => {
    const direct = up();
    const { model, doctor, opened, reports, status, connections } = doctorWith(
      { servers: { "http://127.0.0.1:8765": direct, "http://127.0.0.1:8888/proxy/8765/": up() } },
      { route: "direct" },
    );
    const done = await doctor.run("k-1", []);
    expect(done?.state).toBe("done");
    expect(status()).toEqual({ secure_context: "ok", camera: "ok", microphone: "ok", signaller: "ok", ice: "ok", turn: "skipped" });
    const report = model.get("diagnosis") as Diagnosis;
    expect(report).toMatchObject({ id: "k-1", state: "done", problems: 0, devices: { cameras: 1, microphones: 1 } });
    expect(report.ice?.candidates).toEqual({ host: 1, srflx: 0, prflx: 0, relay: 0 });
    expect(report.routes[0]).toMatchObject({ kind: "direct", url: "http://127.0.0.1:8765", status: "answered" });
    expect(report.routes[0]!.ms).toBeGreaterThanOrEqual(0);
    expect(opened).toEqual(["http://127.0.0.1:8765"]);
    expect(direct.disconnected).toBe(true); // the route's connection closed again
    expect(connections.every((c) => c.closed)).toBe(true);
    // The first write already says what is running; the last that everything is done.
    expect(reports[0]!.state).toBe("running");
    expect(reports.at(-1)!.state).toBe("done");
    expect(reports.length).toBeGreaterThan(2);
  });

  it("a denied camera: the camera check fails with the site-settings fix, the rest still runs", async () => {
    const denied = Object.assign(new Error("Permission denied"), { name: "NotAllowedError" });
    const { doctor, status, model } = doctorWith({ getUserMedia: () => Promise.reject(denied), servers: { "http://127.0.0.1:8765": up() } }, { route: "direct" });
    await doctor.run("k-2", []);
    expect(status()).toMatchObject({ camera: "problem", microphone: "problem", signaller: "ok", ice: "ok" });
    const report = model.get("diagnosis") as Diagnosis;
    expect(report.problems).toBe(2);
    expect(report.checks.find((c) => c.name === "camera")!.fix).toContain("site settings");
  });

  it("an insecure page: the secure-context fix; the devices are not asked for", async () => {
    const getUserMedia = vi.fn(async () => fakeStream().stream);
    const { doctor, status } = doctorWith({ secure: false, hostname: "192.168.1.20", getUserMedia, servers: { "http://192.168.1.20:8888/proxy/8765/": up() } }, { route: "proxy" });
    await doctor.run("k-3", []);
    expect(status()).toMatchObject({ secure_context: "problem", camera: "skipped", microphone: "skipped" });
    expect(getUserMedia).not.toHaveBeenCalled();
  });

  it("an unreachable signaller: the route failed, with its error, and the fix", async () => {
    const { doctor, model, status } = doctorWith({ servers: { "http://127.0.0.1:8765": down() } }, { route: "direct" });
    await doctor.run("k-4", []);
    expect(status().signaller).toBe("problem");
    const report = model.get("diagnosis") as Diagnosis;
    expect(report.routes[0]).toMatchObject({ kind: "direct", status: "failed", detail: "refused" });
    expect(report.routes.slice(1).map((r) => [r.kind, r.status])).toEqual([["proxy", "not_tried"], ["kernel", "not_tried"]]);
    expect(report.checks.find((c) => c.name === "signaller")!.fix).toContain("auto");
  });

  it("the kernel's TURN credentials are used for the check and never written into the report", async () => {
    const { model, connections, status } = doctorWith(
      { gathered: [HOST, RELAY], servers: { "http://127.0.0.1:8765": up() } },
      { route: "direct" },
    );
    const servers = [{ urls: ["turn:127.0.0.1:3478"], username: "1700000000:doctor-k", credential: "c2VjcmV0LWNyZWRlbnRpYWw=" }];
    model.fromKernel({ type: "diagnose", id: "k-5", ice_servers: servers });
    await vi.waitFor(() => expect((model.get("diagnosis") as Diagnosis).state).toBe("done"));
    expect(connections[0]!.config.iceServers).toEqual(servers);
    expect(status().turn).toBe("ok");
    const written = JSON.stringify(model.get("diagnosis"));
    expect(written).not.toContain("c2VjcmV0LWNyZWRlbnRpYWw=");
    expect(written).not.toContain("1700000000:doctor-k");
    expect((model.get("diagnosis") as Diagnosis).ice?.servers).toEqual([{ urls: ["turn:127.0.0.1:3478"], credential: true }]);
  });

  it("a TURN server that refuses: its 401 comes with the fix of the secret", async () => {
    const { doctor, model } = doctorWith({ iceErrors: [{ url: "turn:127.0.0.1:3478?transport=udp", errorCode: 401, errorText: "Unauthorized" }], servers: { "http://127.0.0.1:8765": up() } }, { route: "direct" });
    await doctor.run("k-6", [{ urls: "turn:127.0.0.1:3478", username: "u", credential: "p" }]);
    const turn = (model.get("diagnosis") as Diagnosis).checks.find((c) => c.name === "turn")!;
    expect(turn.status).toBe("problem");
    expect(turn.fix).toContain("--turn-secret");
  });

  it("null servers from the kernel: the call's own, from its last enter", async () => {
    const call = { localStream: null, iceServers: [{ urls: "stun:stun.example.org" }] };
    const { doctor, connections, model } = doctorWith({ call, servers: { "http://127.0.0.1:8765": up() } }, { route: "direct" });
    await doctor.run("k-7", null);
    expect(connections[0]!.config.iceServers).toEqual([{ urls: "stun:stun.example.org" }]);
    expect((model.get("diagnosis") as Diagnosis).ice?.source).toBe("call");
  });

  it("the call's servers the kernel did not give are added (a hub's TURN server); the same URLs once", async () => {
    const call = { localStream: null, iceServers: [{ urls: "stun:a.example.org" }, { urls: ["turn:hub.example.org"], username: "u", credential: "c" }] };
    const { doctor, connections, model } = doctorWith({ call, servers: { "http://127.0.0.1:8765": up() } }, { route: "direct" });
    await doctor.run("k-11", [{ urls: "stun:a.example.org" }]);
    expect(connections[0]!.config.iceServers).toEqual([{ urls: "stun:a.example.org" }, call.iceServers[1]]);
    expect((model.get("diagnosis") as Diagnosis).ice?.source).toBe("kernel and call");
  });

  it("a camera the call holds counts as working: it is not opened again", async () => {
    const getUserMedia = vi.fn(async () => fakeStream().stream);
    const { stream } = fakeStream();
    const { doctor, status } = doctorWith({ getUserMedia, call: { localStream: stream }, servers: { "http://127.0.0.1:8765": up() } }, { route: "direct" });
    await doctor.run("k-8", []);
    expect(status()).toMatchObject({ camera: "ok", microphone: "ok" });
    expect(getUserMedia).not.toHaveBeenCalled();
  });

  it("the kernel route is not tried during a call on another route, and counts as answering when the call uses it", async () => {
    const direct = up();
    const during = doctorWith({ servers: { "http://127.0.0.1:8765": direct } }, { state: "in_call", connected_via: "http://127.0.0.1:8765" });
    await during.doctor.run("k-9", []);
    const routes = (during.model.get("diagnosis") as Diagnosis).routes;
    expect(routes.find((r) => r.kind === "kernel")).toMatchObject({ status: "not_tried" });
    expect(during.model.messages.filter((m) => m.type === "sig_connect")).toEqual([]);
    const viaKernel = doctorWith({ servers: { "http://127.0.0.1:8765": down() } }, { state: "in_call", connected_via: "kernel" });
    await viaKernel.doctor.run("k-10", []);
    const report = viaKernel.model.get("diagnosis") as Diagnosis;
    expect(report.routes.find((r) => r.kind === "kernel")).toMatchObject({ status: "answered", detail: "this call is connected through it" });
    expect(report.checks.find((c) => c.name === "signaller")!.status).toBe("warning");
  });

  it("Connect pressed while the kernel route is tried: the call's connection replaces the check's, which is not counted as failed", async () => {
    const { doctor, model } = doctorWith({}, { route: "kernel" });
    const running = doctor.run("k-11", []);
    await vi.waitFor(() => expect(model.messages.some((m) => m.type === "sig_connect")).toBe(true));
    const [probe] = model.messages.filter((m): m is Extract<BrowserMessage, { type: "sig_connect" }> => m.type === "sig_connect");
    model.set("state", "joining");
    model.fromKernel({ type: "sig_dropped", n: probe!.n, reason: "replaced by a newer connection of this widget" });
    await running;
    const report = model.get("diagnosis") as Diagnosis;
    expect(report.routes.find((r) => r.kind === "kernel")).toMatchObject({ status: "not_tried", detail: expect.stringContaining("the call began during the check") });
    expect(report.checks.find((c) => c.name === "signaller")).toMatchObject({ status: "skipped", fix: expect.stringContaining("Check connection again") });
    expect(report.problems).toBe(0);
  });

  it("the kernel route failing with no call begun is still a failure", async () => {
    const { doctor, model } = doctorWith({}, { route: "kernel" });
    const running = doctor.run("k-12", []);
    await vi.waitFor(() => expect(model.messages.some((m) => m.type === "sig_connect")).toBe(true));
    const [probe] = model.messages.filter((m): m is Extract<BrowserMessage, { type: "sig_connect" }> => m.type === "sig_connect");
    model.fromKernel({ type: "sig_dropped", n: probe!.n, reason: "refused" });
    await running;
    const report = model.get("diagnosis") as Diagnosis;
    expect(report.routes.find((r) => r.kind === "kernel")).toMatchObject({ status: "failed" });
    expect(report.checks.find((c) => c.name === "signaller")!.status).toBe("problem");
  });

  it("the view's check asks the kernel for the servers and runs with its answer", async () => {
    const { doctor, model } = doctorWith({ servers: { "http://127.0.0.1:8765": up() } }, { route: "direct" });
    doctor.check();
    expect(doctor.waiting).toBe(true);
    const asked = model.messages.find((m): m is Extract<BrowserMessage, { type: "diagnose_request" }> => m.type === "diagnose_request");
    expect(asked).toBeDefined();
    model.fromKernel({ type: "diagnose", id: asked!.id, ice_servers: [] });
    expect(doctor.waiting).toBe(false);
    await vi.waitFor(() => expect((model.get("diagnosis") as Diagnosis).state).toBe("done"));
    expect((model.get("diagnosis") as Diagnosis).id).toBe(asked!.id);
  });

  it("the view's check waits while a cell runs, and goes on without an idle kernel's answer", async () => {
    const { doctor, model } = doctorWith({ servers: { "http://127.0.0.1:8765": up() } }, { route: "direct", _kernel_busy: true });
    doctor.check();
    await wait(80); // past kernelAnswerMs: a busy kernel is waited for
    expect(doctor.waiting).toBe(true);
    expect(model.get("diagnosis")).toEqual({});
    model.set("_kernel_busy", false);
    await vi.waitFor(() => expect((model.get("diagnosis") as Diagnosis).state).toBe("done"));
    expect((model.get("diagnosis") as Diagnosis).ice?.source).toBe("none");
  });

  it("without a kernel (the standalone page) the check runs at once", async () => {
    const { doctor, model } = doctorWith({ kernel: false, servers: { "http://127.0.0.1:9000": up() } }, { signaling_url: "http://127.0.0.1:9000" });
    doctor.check();
    expect(model.messages).toEqual([]);
    await vi.waitFor(() => expect((model.get("diagnosis") as Diagnosis).state).toBe("done"));
    expect((model.get("diagnosis") as Diagnosis).routes).toEqual([expect.objectContaining({ kind: "explicit", status: "answered" })]);
  });

  it("a newer check replaces a running one: the older one's late findings are dropped", async () => {
    const { doctor, model } = doctorWith({ finishes: false, servers: { "http://127.0.0.1:8765": up() } }, { route: "direct" });
    const first = doctor.run("old", []);
    await settle();
    const second = doctor.run("new", []);
    expect(await first).toBeNull();
    await second;
    expect((model.get("diagnosis") as Diagnosis).id).toBe("new");
    expect((model.get("diagnosis") as Diagnosis).ice?.complete).toBe(false);
  });

  it("a report left running by a page that went away is marked unfinished, not 'Checking…' for ever", () => {
    const stale = report({
      id: "gone",
      started: 1,
      finished: null,
      page: "http://127.0.0.1:8888",
      secure: true,
      checks: { secure_context: { name: "secure_context", title: "Secure page", status: "ok", detail: "fine", fix: "" } },
      routes: [],
      ice: null,
      devices: { cameras: 0, microphones: 0 },
    });
    expect(stale.state).toBe("running");
    const { model } = doctorWith({}, { diagnosis: stale });
    const now = model.get("diagnosis") as Diagnosis;
    expect(now.state).toBe("done");
    expect(now.checks.map((c) => c.status)).toEqual(["ok", "skipped", "skipped", "skipped", "skipped", "skipped"]);
    expect(now.checks[1]!.detail).toBe(UNFINISHED);
  });

  it("a malformed diagnose message is refused and runs nothing", () => {
    const { model } = doctorWith();
    model.fromKernel({ type: "diagnose", id: "x", ice_servers: [{ urls: 5 }] });
    model.fromKernel({ type: "diagnose", id: "", ice_servers: null });
    expect(model.messages.filter((m) => m.type === "error")).toHaveLength(2);
    expect(model.get("diagnosis")).toEqual({});
  });
});
