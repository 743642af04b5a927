import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { MAX_ROUTE_SIGNALS, SIGNALLER_EVENTS } from "./contract";
import { defaultDeps, openRoute } from "./deps";
import { FakeServer, KernelModel, fromKernel, settle, setup } from "./harness";
import { KernelLink } from "./kernel";
import { HOLD_AFTER_BUSY_MS, KernelRouteTransport, WAIT_NOTICE_MS } from "./kernelroute";
import type { PageModel } from "./page";
import { KERNEL_ROUTE } from "./route";
import { ACK_TIMEOUT_MS, SignalingClient } from "./signaling";
import { CONNECT_TIMEOUT_MS } from "./socketio";
import type { BrowserMessage } from "./types";

beforeEach(() => {
  vi.spyOn(console, "warn").mockImplementation(() => undefined);
});
afterEach(() => {
  vi.useRealTimers();
  vi.restoreAllMocks();
});

type Sent = Extract<BrowserMessage, { type: `sig_${string}` }>;

/**
 * The kernel's part of the route (widget/relay.py) in front of a fake signaller: it answers the
 * page's sig_* messages through its own connection to the signaller and sends back what the
 * signaller says, at once (from its relay thread), while the page's messages wait as long as a
 * cell runs (`busy`), as a real kernel's do.
 */
class FakeKernel {
  /** The live route connection's number, 0 for none. */
  n = 0;
  /** Every route message the page sent, in order. */
  route: Sent[] = [];
  /** The page's messages waiting for the running cell to end. */
  private waiting: [Sent, unknown][] = [];
  /** What the `frame` events carried: [metadata, chunk]. */
  frames: [unknown, unknown][] = [];
  /** Whether sig_connect opens (false: the kernel's signaller is down). */
  reachable = true;
  /** A kernel that is gone: it takes the page's messages and never answers. */
  silent = false;

  constructor(
    readonly model: PageModel,
    readonly server: FakeServer,
  ) {
    const record = model.send.bind(model);
    model.send = (content, callbacks, buffers) => {
      record(content, callbacks, buffers);
      if (!content.type.startsWith("sig_")) return;
      this.route.push(content as Sent);
      if (this.silent) return;
      if (this.model.get("_kernel_busy")) this.waiting.push([content as Sent, buffers]);
      else this.handle(content as Sent, buffers);
    };
    for (const event of SIGNALLER_EVENTS) {
      server.on(event, (data: unknown) => this.say({ type: "sig_event", n: this.n, event, data }));
    }
    server.on("disconnect", (reason: unknown) => {
      const n = this.n;
      this.n = 0;
      this.say({ type: "sig_dropped", n, reason: String(reason) });
    });
  }

  /** A cell starts or ends: the kernel says so, and then works through what waited. */
  busy(busy: boolean): void {
    this.model.set("_kernel_busy", busy);
    if (!busy) for (const [message, buffers] of this.waiting.splice(0)) this.handle(message, buffers);
  }

  types(): string[] {
    return this.route.map((message) => message.type);
  }

  private handle(message: Sent, buffers: unknown): void {
    switch (message.type) {
      case "sig_connect":
        this.n = message.n;
        this.server.connected = this.reachable;
        this.say(this.reachable ? { type: "sig_open", n: message.n } : { type: "sig_dropped", n: message.n, reason: "refused" });
        return;
      case "sig_request":
        if (message.n !== this.n) return; // an older connection's: dropped
        // As widget/relay.py: a request numbered 0 is relayed and never answered.
        this.server.emit(message.event, message.payload, (reply: unknown) => {
          if (message.id !== 0) this.say({ type: "sig_answer", n: message.n, id: message.id, reply });
        });
        return;
      case "sig_signals":
        if (message.n !== this.n) return;
        for (const payload of message.payloads) this.server.emit("signal", payload, () => undefined);
        return;
      case "sig_send":
        if (message.n === this.n) this.frames.push([message.payload, (buffers as unknown[] | undefined)?.[0]]);
        return;
      case "sig_close":
        if (message.n === this.n) this.n = 0;
        return;
    }
  }

  say(content: unknown): void {
    queueMicrotask(() => fromKernel(this.model, content));
  }
}

/** What the Call logged as the cause of its failure (the route trial's reasons). */
function loggedCause(): string {
  const causes = vi.mocked(console.warn).mock.calls.map(([, cause]) => (cause instanceof Error ? cause.message : ""));
  return causes.join(" ");
}

/** A Call on a page model whose only route is the kernel's (the default deps' opener). */
function overTheKernel(options: Parameters<typeof setup>[0] = {}) {
  const context = setup({ connect: (_urls, connectOptions) => defaultDeps.connect([KERNEL_ROUTE], connectOptions), ...options });
  const kernel = new FakeKernel(context.model, context.server);
  return { ...context, kernel };
}

describe("KernelRouteTransport in a call", () => {
  it("goes through a whole call over the widget's comm", async () => {
    const { model, states, server, peers, join, kernel, call } = overTheKernel();
    join();
    await settle();
    expect(model.get("connected_via")).toBe("kernel");
    expect(model.get("state")).toBe("waiting");
    const [connect, enter] = kernel.route;
    expect(connect).toEqual({ type: "sig_connect", n: kernel.n });
    expect(enter).toMatchObject({ type: "sig_request", n: kernel.n, id: 1, event: "enter", payload: { room: "lab-42", name: "Ada" } });

    server.serve("peer_joined", { id: "zed", name: "Grace" });
    await settle();
    expect(peers.map((peer) => peer.options.peerId)).toEqual(["zed"]);
    peers[0]!.become("connected");
    expect(model.get("state")).toBe("in_call");
    server.serve("signal", { from: "zed", description: { type: "offer", sdp: "v=0" } });
    await settle();
    expect(peers[0]!.received).toEqual([{ from: "zed", description: { type: "offer", sdp: "v=0" } }]);
    peers[0]!.options.send({ description: { type: "answer", sdp: "v=0" } });
    await settle();
    expect(kernel.route.at(-1)).toMatchObject({ type: "sig_request", event: "signal", payload: { to: "zed", description: { type: "answer" } } });

    server.serve("peer_left", { id: "zed", reason: "left" });
    await settle();
    expect(model.get("state")).toBe("waiting");
    expect(call.waitingForKernel).toBe(false);
    model.set("_desired", false);
    await settle();
    expect(server.requests).toEqual(["enter", "signal", "leave"]);
    expect(kernel.types()).toEqual(["sig_connect", "sig_request", "sig_request", "sig_request", "sig_close"]);
    expect(states).toEqual(["idle", "joining", "waiting", "in_call", "waiting", "left"]);
  });

  it("brings the signaller's fresh TURN credentials to the connections, as its other events", async () => {
    const { server, peers, join } = overTheKernel();
    join();
    await settle();
    server.serve("peer_joined", { id: "zed", name: "Grace" });
    await settle();
    const fresh = [{ urls: ["turn:10.9.9.1:3478"], username: "1700006300:me", credential: "f" }];
    server.serve("ice_servers", { ice_servers: fresh });
    await settle();
    expect(peers[0]!.renewals).toEqual([fresh]);
  });

  it("carries a snapshot's chunks with their bytes, by the signaller's path", async () => {
    const bytes = new Uint8Array([1, 2, 3, 4]);
    const { model, join, kernel } = overTheKernel({
      captureFrame: async () => ({ width: 1, height: 1, format: "rgba", bytes }),
    });
    join();
    await settle();
    fromKernel(model, { type: "snapshot", id: "s1", peer: null, format: "rgba", via: "signaller" });
    await settle();
    expect(kernel.frames).toHaveLength(1);
    const [meta, chunk] = kernel.frames[0]!;
    expect(meta).toEqual({ id: "s1", index: 0, count: 1, width: 1, height: 1, format: "rgba" });
    expect([...new Uint8Array(chunk as ArrayBuffer)]).toEqual([1, 2, 3, 4]);
  });

  it("numbers its connections: after a drop it reconnects under a new n and ignores the old one's", async () => {
    const { model, states, server, join, kernel, peers, sent } = overTheKernel();
    server.enterAnswer = { ok: true, self: "me", peers: [{ id: "zed", name: "Grace" }], capacity: 4, ice_servers: [] };
    join();
    await settle();
    const first = kernel.n;
    server.drop("transport close");
    await settle();
    await settle();
    expect(states).toEqual(["idle", "joining", "waiting", "reconnecting", "waiting"]);
    const second = kernel.n;
    expect(second).toBe(first + 1);
    expect(kernel.route.filter((m) => m.type === "sig_connect").map((m) => m.n)).toEqual([first, second]);
    expect(kernel.route.filter((m) => m.type === "sig_request").map((m) => [m.n, m.event])).toEqual([
      [first, "enter"],
      [second, "enter"],
    ]);
    // Late messages of the first connection change nothing, and are not answered as errors.
    const errors = (): number => sent.filter((message) => (message as { type: string }).type === "error").length;
    kernel.say({ type: "sig_event", n: first, event: "peer_left", data: { id: "zed", reason: "left" } });
    kernel.say({ type: "sig_dropped", n: first, reason: "late" });
    await settle();
    expect(model.get("state")).toBe("waiting");
    expect(peers.filter((peer) => !peer.closed).map((peer) => peer.options.peerId)).toEqual(["zed"]);
    expect(errors()).toBe(0);
    // The live one's do.
    kernel.say({ type: "sig_event", n: second, event: "peer_left", data: { id: "zed", reason: "left" } });
    await settle();
    expect(peers.every((peer) => peer.closed)).toBe(true);
  });

  it("fails as unreachable when the kernel cannot open the route, with its reason", async () => {
    const { model, join, kernel } = overTheKernel();
    kernel.reachable = false;
    join();
    await settle();
    expect(model.get("state")).toBe("failed");
    expect(model.get("error_code")).toBe("unreachable");
    expect(loggedCause()).toContain("kernel (refused)");
  });
});

describe("KernelRouteTransport while a cell runs", () => {
  it("does not time out connecting while the kernel is busy, says so after a second, and connects when the cell ends", async () => {
    vi.useFakeTimers();
    const { model, join, kernel, call } = overTheKernel();
    const heard = vi.fn();
    call.subscribe("kernel", heard);
    kernel.busy(true);
    join();
    await vi.advanceTimersByTimeAsync(WAIT_NOTICE_MS - 100);
    expect(call.waitingForKernel).toBe(false);
    await vi.advanceTimersByTimeAsync(200);
    expect(call.waitingForKernel).toBe(true);
    expect(heard).toHaveBeenCalled();
    await vi.advanceTimersByTimeAsync(CONNECT_TIMEOUT_MS * 5);
    expect(model.get("state")).toBe("joining");
    expect(kernel.types()).toEqual(["sig_connect"]);

    kernel.busy(false);
    await vi.advanceTimersByTimeAsync(0);
    expect(model.get("state")).toBe("waiting");
    expect(model.get("connected_via")).toBe("kernel");
    expect(call.waitingForKernel).toBe(false);
  });

  it("times out connecting to an idle kernel that does not answer", async () => {
    vi.useFakeTimers();
    const { model, join, kernel } = overTheKernel();
    kernel.silent = true;
    join();
    await vi.advanceTimersByTimeAsync(CONNECT_TIMEOUT_MS + HOLD_AFTER_BUSY_MS);
    expect(model.get("state")).toBe("failed");
    expect(loggedCause()).toContain("kernel (the kernel did not answer within 4 s)");
    expect(kernel.types()).toEqual(["sig_connect", "sig_close"]);
  });

  it("holds a request while the kernel is busy, and for a moment after the cell ended", async () => {
    vi.useFakeTimers();
    const model = new KernelModel({ _client: "k1" });
    const link = new KernelLink(model);
    const transport = new KernelRouteTransport(link);
    const dropped = vi.fn();
    const client = new SignalingClient(transport, {
      peerJoined: vi.fn(),
      peerLeft: vi.fn(),
      signal: vi.fn(),
      iceServers: vi.fn(),
      error: vi.fn(),
      disconnected: dropped,
    });
    const connecting = transport.connect(CONNECT_TIMEOUT_MS);
    const n = (model.messages[0] as { n: number }).n;
    model.fromKernel({ type: "sig_open", n });
    await connecting;

    model.set("_kernel_busy", true);
    const left = client.leave();
    await vi.advanceTimersByTimeAsync(ACK_TIMEOUT_MS * 3 - 1000); // its timer fired twice meanwhile
    expect(link.waiting).toBe(true);
    model.set("_kernel_busy", false); // the cell ended: the kernel now works through what waited
    expect(link.waiting).toBe(false);
    await vi.advanceTimersByTimeAsync(1000); // fires a second after the cell's end: still held
    await vi.advanceTimersByTimeAsync(ACK_TIMEOUT_MS - 1);
    const request = model.messages[1] as { id: number };
    model.fromKernel({ type: "sig_answer", n, id: request.id, reply: { ok: true } });
    await expect(left).resolves.toBeUndefined();

    // Not busy, and not just after a cell: a lost answer times out as over any transport.
    await vi.advanceTimersByTimeAsync(HOLD_AFTER_BUSY_MS);
    const late = client.leave();
    const failed = expect(late).rejects.toMatchObject({ code: "timeout" });
    await vi.advanceTimersByTimeAsync(ACK_TIMEOUT_MS);
    await failed;
    expect(dropped).not.toHaveBeenCalled();
    client.close();
    expect(model.messages.at(-1)).toEqual({ type: "sig_close", n });
  });
});

/** A transport whose route the fake kernel opened: its model, and the route's number. */
async function opened(): Promise<{ model: KernelModel; transport: KernelRouteTransport; n: number }> {
  const model = new KernelModel({ _client: "k1" });
  const transport = new KernelRouteTransport(new KernelLink(model));
  const connecting = transport.connect(CONNECT_TIMEOUT_MS);
  const n = (model.messages[0] as { n: number }).n;
  model.fromKernel({ type: "sig_open", n });
  await connecting;
  return { model, transport, n };
}

describe("KernelRouteTransport's messages", () => {
  it("answers malformed route messages with an error and ignores those of other connections", async () => {
    const model = new KernelModel({ _client: "k1" });
    const link = new KernelLink(model);
    const transport = new KernelRouteTransport(link);
    const connecting = transport.connect(CONNECT_TIMEOUT_MS);
    const n = (model.messages[0] as { n: number }).n;
    model.fromKernel({ type: "sig_open" });
    model.fromKernel({ type: "sig_open", n: 0 });
    model.fromKernel({ type: "sig_open", n: 2 ** 31 });
    model.fromKernel({ type: "sig_event", n, event: "teleport", data: {} });
    model.fromKernel({ type: "sig_answer", n, id: "1", reply: {} });
    model.fromKernel({ type: "sig_dropped", n, reason: 7 });
    expect(model.messages.slice(1).map((m) => m.type)).toEqual(["error", "error", "error", "error", "error", "error"]);
    expect(transport.connected).toBe(false);
    model.fromKernel({ type: "sig_open", n: n + 1 }); // another connection's: quietly ignored
    expect(transport.connected).toBe(false);
    expect(model.messages).toHaveLength(7);
    model.fromKernel({ type: "sig_open", n });
    await connecting;
    expect(transport.connected).toBe(true);
  });

  it("refuses requests it does not carry, and sends only frame events", async () => {
    const { model, transport, n } = await opened();
    const answer = vi.fn();
    transport.request("join", "lab", answer);
    await settle();
    expect(answer).toHaveBeenCalledWith({ ok: false, code: "bad_request", message: "the kernel route does not carry “join”" });
    transport.send("start_call", "lab");
    const chunk = new ArrayBuffer(2);
    transport.send("frame", { id: "f" }, chunk);
    expect(model.sent.slice(1)).toEqual([[{ type: "sig_send", n, event: "frame", payload: { id: "f" } }, [chunk]]]);
    transport.disconnect();
    transport.disconnect();
    expect(model.messages.slice(2)).toEqual([{ type: "sig_close", n }]);
  });
});

describe("KernelRouteTransport's signals", () => {
  const candidate = (i: number) => ({ to: "p1", candidate: { candidate: `c${i}`, sdpMid: "0" } });

  it("sends signals unanswered (id 0) and takes them as delivered at once", async () => {
    const { model, transport, n } = await opened();
    const answer = vi.fn();
    const payload = candidate(0);
    transport.request("signal", payload, answer);
    await settle();
    expect(model.messages.slice(1)).toEqual([{ type: "sig_request", n, id: 0, event: "signal", payload }]);
    expect(answer).toHaveBeenCalledWith({ ok: true });
    // Other requests are still numbered and wait for the kernel's answer.
    const entered = vi.fn();
    transport.request("enter", { room: "lab" }, entered);
    const request = model.messages[2] as { id: number };
    expect(request.id).toBeGreaterThan(0);
    await settle();
    expect(entered).not.toHaveBeenCalled();
    model.fromKernel({ type: "sig_answer", n, id: request.id, reply: { ok: true } });
    expect(entered).toHaveBeenCalledWith({ ok: true });
    transport.disconnect();
  });

  it("sends the signals of one turn of the event loop as one message, in order", async () => {
    const { model, transport, n } = await opened();
    const answer = vi.fn();
    // Each ICE candidate comes in a task of its own: what comes before the queue is sent joins it.
    transport.request("signal", candidate(0), answer);
    await Promise.resolve();
    transport.request("signal", candidate(1), answer);
    transport.request("signal", candidate(2), answer);
    expect(model.messages).toHaveLength(1); // only the sig_connect so far
    await settle();
    expect(model.messages.slice(1)).toEqual([{ type: "sig_signals", n, payloads: [candidate(0), candidate(1), candidate(2)] }]);
    expect(answer).toHaveBeenCalledTimes(3);
    transport.disconnect();
  });

  it("sends what waits before a request or a chunk, and at most MAX_ROUTE_SIGNALS in one", async () => {
    const { model, transport, n } = await opened();
    const many = Array.from({ length: MAX_ROUTE_SIGNALS + 1 }, (_, i) => candidate(i));
    for (const payload of many) transport.request("signal", payload, vi.fn());
    // The full batch went at once; the one more waits for the turn's end, or for what follows.
    expect(model.messages.slice(1)).toEqual([{ type: "sig_signals", n, payloads: many.slice(0, -1) }]);
    transport.request("leave", {}, vi.fn());
    expect(model.messages.slice(2)).toEqual([
      { type: "sig_request", n, id: 0, event: "signal", payload: many.at(-1) },
      { type: "sig_request", n, id: 1, event: "leave", payload: {} },
    ]);
    transport.request("signal", candidate(99), vi.fn());
    transport.send("frame", { id: "f" }, new ArrayBuffer(1));
    expect(model.messages.slice(4).map((message) => (message as { type: string }).type)).toEqual(["sig_request", "sig_send"]);
    transport.disconnect();
  });

  it("drops the signals still waiting when it disconnects", async () => {
    const { model, transport } = await opened();
    transport.request("signal", candidate(0), vi.fn());
    transport.disconnect();
    await settle();
    expect(model.messages.map((message) => (message as { type: string }).type)).toEqual(["sig_connect", "sig_close"]);
  });
});

describe("openRoute", () => {
  it("opens the kernel route only with the widget's kernel link", () => {
    expect(() => openRoute(KERNEL_ROUTE, { client: "k1" })).toThrow("no kernel to signal through");
    const model = new KernelModel({ _client: "k1" });
    const transport = openRoute(KERNEL_ROUTE, { client: "k1", kernel: new KernelLink(model) });
    expect(transport).toBeInstanceOf(KernelRouteTransport);
    expect(transport.url).toBe("kernel");
    expect(model.sent).toEqual([]); // nothing is sent before it connects
    transport.disconnect();
  });
});
