import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { SignalingClient, SignalingError, UnreachableError, connectFirst, type SignalingHandlers } from "./signaling";
import { SocketIoTransport, type SocketLike } from "./socketio";
import type { SignalingTransport } from "./transport";

type Listener = (...args: any[]) => void;

/** A socket.io-client stand-in: records emits, lets the test play the server. */
class FakeSocket implements SocketLike {
  listeners = new Map<string, Set<Listener>>();
  emitted: { event: string; payload: unknown; ack?: Listener }[] = [];
  disconnected = false;
  connected = true;
  connects = 0;
  connect() {
    this.connects++;
  }
  on(event: string, listener: Listener) {
    if (!this.listeners.has(event)) this.listeners.set(event, new Set());
    this.listeners.get(event)!.add(listener);
  }
  off(event: string, listener: Listener) {
    this.listeners.get(event)?.delete(listener);
  }
  emit(event: string, payload: unknown, ack?: Listener) {
    this.emitted.push({ event, payload, ack });
  }
  disconnect() {
    this.disconnected = true;
    this.connected = false;
  }
  /** The server sends an event. */
  serve(event: string, ...args: unknown[]) {
    for (const listener of [...(this.listeners.get(event) ?? [])]) listener(...args);
  }
  /** The server answers the last request named `event`. */
  answer(event: string, answer: unknown) {
    const request = [...this.emitted].reverse().find((e) => e.event === event);
    request?.ack?.(answer);
  }
}

function recorder() {
  const log: string[] = [];
  const handlers: SignalingHandlers = {
    peerJoined: (p) => log.push(`joined ${p.id} ${p.name}`),
    peerLeft: (p) => log.push(`left ${p.id}`),
    signal: (s) => log.push(`signal ${s.from} ${s.description?.type ?? "candidate"}`),
    iceServers: (servers) => log.push(`ice_servers ${servers.map((server) => server.username ?? "-").join(" ")}`),
    error: (e) => log.push(`error ${e.code}`),
    disconnected: (reason) => log.push(`disconnected ${reason}`),
  };
  return { log, handlers };
}

const accepted = { ok: true, self: "me", peers: [{ id: "a", name: "Ada" }], capacity: 4, ice_servers: [] };

describe("SignalingClient", () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it("holds events that arrive before the enter ack, and delivers them in order after", async () => {
    const socket = new FakeSocket();
    const { log, handlers } = recorder();
    const client = new SignalingClient(new SocketIoTransport(socket, "http://x"), handlers);
    const entering = client.enter({ room: "lab", name: "Me" });
    expect(socket.emitted[0]).toMatchObject({ event: "enter", payload: { room: "lab", name: "Me" } });

    socket.serve("peer_joined", { id: "b", name: "Bo" });
    socket.serve("signal", { from: "a", description: { type: "offer", sdp: "v=0" } });
    socket.serve("peer_left", { id: "b" });
    socket.serve("ice_servers", { ice_servers: [{ urls: "turn:t", username: "9:me", credential: "c" }] });
    socket.serve("ice_servers", { ice_servers: "not a list" });
    expect(log).toEqual([]);

    socket.answer("enter", accepted);
    const ack = await entering;
    expect(ack).toEqual(accepted);
    expect(log).toEqual([]); // still held until the caller has taken in the ack

    client.deliver();
    expect(log).toEqual(["joined b Bo", "signal a offer", "left b", "ice_servers 9:me"]);
    socket.serve("signal", { from: "a", candidate: { candidate: "candidate:1" } });
    expect(log.at(-1)).toBe("signal a candidate");
  });

  it("rejects a refused enter with the protocol's code", async () => {
    const socket = new FakeSocket();
    const client = new SignalingClient(new SocketIoTransport(socket, "http://x"), recorder().handlers);
    const entering = client.enter({ room: "lab" });
    socket.answer("enter", { ok: false, code: "room_full", message: "room 'lab' is full (it holds 2)" });
    await expect(entering).rejects.toMatchObject({ code: "room_full", message: "room 'lab' is full (it holds 2)" });
  });

  it("times out a request the server never answers", async () => {
    const socket = new FakeSocket();
    const client = new SignalingClient(new SocketIoTransport(socket, "http://x"), recorder().handlers);
    const leaving = client.leave();
    const caught = leaving.catch((error: unknown) => error);
    await vi.advanceTimersByTimeAsync(5000);
    const error = await caught;
    expect(error).toBeInstanceOf(SignalingError);
    expect((error as SignalingError).code).toBe("timeout");
    expect((error as SignalingError).message).toMatch(/did not answer “leave” within 5 s/);
  });

  it("sends signals with acks and reports not_in_room", async () => {
    const socket = new FakeSocket();
    const client = new SignalingClient(new SocketIoTransport(socket, "http://x"), recorder().handlers);
    const sending = client.signal({ to: "a", candidate: { candidate: "candidate:1", sdpMid: "0", sdpMLineIndex: 0 } });
    expect(socket.emitted[0]!.payload).toEqual({ to: "a", candidate: { candidate: "candidate:1", sdpMid: "0", sdpMLineIndex: 0 } });
    socket.answer("signal", { ok: false, code: "not_in_room", message: "gone" });
    await expect(sending).rejects.toMatchObject({ code: "not_in_room" });
  });

  it("reports an unexpected disconnect once and fails pending requests", async () => {
    const socket = new FakeSocket();
    const { log, handlers } = recorder();
    const client = new SignalingClient(new SocketIoTransport(socket, "http://x"), handlers);
    const leaving = client.leave();
    socket.serve("disconnect", "transport close");
    await expect(leaving).rejects.toMatchObject({ code: "disconnected" });
    expect(log).toEqual(["disconnected transport close"]);
  });

  it("close() removes its listeners, disconnects and reports nothing", () => {
    const socket = new FakeSocket();
    const { log, handlers } = recorder();
    const client = new SignalingClient(new SocketIoTransport(socket, "http://x"), handlers);
    client.close();
    expect(socket.disconnected).toBe(true);
    expect([...socket.listeners.values()].every((set) => set.size === 0)).toBe(true);
    socket.serve("disconnect", "io client disconnect");
    expect(log).toEqual([]);
  });

  it("passes error events through", () => {
    const socket = new FakeSocket();
    const { log, handlers } = recorder();
    new SignalingClient(new SocketIoTransport(socket, "http://x"), handlers);
    socket.serve("error", { code: "rate_limited", message: "slow down" });
    expect(log).toEqual(["error rate_limited"]);
  });
});

describe("connectFirst", () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it("takes the first URL that connects, with websocket only and the client key", async () => {
    const made: { origin: string; options: any; socket: FakeSocket }[] = [];
    const factory = (origin: string, options: any) => {
      const socket = new FakeSocket();
      made.push({ origin, options, socket });
      queueMicrotask(() => {
        if (made.length === 1) socket.serve("connect_error", new Error("websocket error"));
        else socket.serve("connect");
      });
      return socket;
    };
    const result = await connectFirst(["http://127.0.0.1:8765", "http://127.0.0.1:8888/proxy/8765/"], {
      client: "k1",
      factory,
    });
    expect(result.url).toBe("http://127.0.0.1:8888/proxy/8765/");
    expect(made[0]!.socket.disconnected).toBe(true);
    expect(made[1]!.origin).toBe("http://127.0.0.1:8888");
    expect(made[1]!.options).toMatchObject({
      path: "/proxy/8765/socket.io",
      transports: ["websocket"],
      reconnection: false,
      auth: { client: "k1" },
    });
  });

  it("gives up on a silent URL after the timeout and says what it tried", async () => {
    vi.useFakeTimers();
    const factory = () => new FakeSocket();
    const trying = connectFirst(["http://127.0.0.1:1", "http://127.0.0.1:2"], { client: "", factory, timeoutMs: 4000 });
    const caught = trying.catch((error: unknown) => error);
    await vi.advanceTimersByTimeAsync(8000);
    const error = (await caught) as UnreachableError;
    expect(error).toBeInstanceOf(UnreachableError);
    expect(error.code).toBe("unreachable");
    expect(error.tried).toEqual(["http://127.0.0.1:1", "http://127.0.0.1:2"]);
    expect(error.message).toContain("no answer within 4 s");
  });
});

describe("connectFirst over any transport", () => {
  it("opens each URL's transport in turn and returns the first that connects", async () => {
    const opened: string[] = [];
    const open = (url: string): SignalingTransport => {
      opened.push(url);
      const transport: SignalingTransport = {
        url,
        connected: false,
        connect: async () => {
          if (url.endsWith("1")) throw new Error("no route");
        },
        request: () => undefined,
        send: () => undefined,
        listen: () => () => undefined,
        disconnect: () => undefined,
      };
      return transport;
    };
    const transport = await connectFirst(["comm://1", "comm://2", "comm://3"], { client: "k", open });
    expect(transport.url).toBe("comm://2");
    expect(opened).toEqual(["comm://1", "comm://2"]);
    await expect(connectFirst(["comm://1"], { client: "k", open })).rejects.toThrow("comm://1 (no route)");
  });
});

describe("SignalingClient after a dropped connection", () => {
  it("refuses requests while down, reconnects on request, and enters again", async () => {
    const socket = new FakeSocket();
    const { log, handlers } = recorder();
    const client = new SignalingClient(new SocketIoTransport(socket, "http://x"), handlers);
    const entering = client.enter({ room: "lab", session: "k".repeat(24) });
    socket.answer("enter", accepted);
    await entering;
    client.deliver();

    const pending = client.signal({ to: "a", candidate: { candidate: "candidate:1" } }).catch((e: unknown) => e);
    socket.connected = false;
    socket.serve("disconnect", "transport close");
    expect(log).toEqual(["disconnected transport close"]);
    expect(((await pending) as SignalingError).code).toBe("disconnected");
    expect(client.connected).toBe(false);
    // Nothing is queued for later while down (socket.io-client would send it on reconnecting).
    const sentBefore = socket.emitted.length;
    await expect(client.leave()).rejects.toMatchObject({ code: "disconnected" });
    expect(socket.emitted).toHaveLength(sentBefore);

    const back = client.reconnect();
    expect(socket.connects).toBe(1);
    socket.connected = true;
    socket.serve("connect");
    await back;
    const again = client.enter({ room: "lab", session: "k".repeat(24) });
    socket.serve("peer_left", { id: "a", reason: "disconnected" }); // held until delivered
    socket.answer("enter", accepted);
    await again;
    client.deliver();
    expect(log.at(-1)).toBe("left a");
  });

  it("rejects a reconnection that fails, so the caller can pause and try again", async () => {
    const socket = new FakeSocket();
    const client = new SignalingClient(new SocketIoTransport(socket, "http://x"), recorder().handlers);
    socket.connected = false;
    socket.serve("disconnect", "transport close");
    const back = client.reconnect().catch((e: unknown) => e);
    socket.serve("connect_error", new Error("xhr poll error"));
    const error = (await back) as SignalingError;
    expect(error.code).toBe("unreachable");
    expect(socket.disconnected).toBe(true); // it stops trying on its own
    expect(socket.listeners.get("connect")?.size ?? 0).toBe(0);
  });

  it("reads the reason a member left, and takes a missing one as hung up", () => {
    const socket = new FakeSocket();
    const left: string[] = [];
    const client = new SignalingClient(new SocketIoTransport(socket, "http://x"), { ...recorder().handlers, peerLeft: (p) => left.push(`${p.id} ${p.reason}`) });
    client.deliver();
    socket.serve("peer_left", { id: "a", reason: "disconnected" });
    socket.serve("peer_left", { id: "b" });
    socket.serve("peer_left", { id: "c", reason: "whatever" });
    expect(left).toEqual(["a disconnected", "b left", "c left"]);
  });
});
