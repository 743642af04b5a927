import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { KernelLink } from "./kernel";
import { KernelModel } from "./harness";
import { KernelTokens } from "./tokens";

beforeEach(() => {
  vi.spyOn(console, "warn").mockImplementation(() => undefined);
});
afterEach(() => {
  vi.restoreAllMocks();
});

describe("KernelLink", () => {
  it("is the one listener for every type, tokens included, each handed to its taker", async () => {
    const model = new KernelModel({ _secure: true });
    const kernel = new KernelLink(model);
    const tokens = new KernelTokens(model, kernel);
    const chat = vi.fn();
    const snapshot = vi.fn();
    kernel.handle({ chat, snapshot });
    expect(model.custom).toHaveLength(1);
    const pending = tokens.get("lab");
    expect(model.sent).toEqual([[{ type: "token_request", room: "lab" }, undefined]]);
    model.fromKernel({ type: "token", room: "lab", token: "T" });
    model.fromKernel({ type: "chat", text: "hi" });
    model.fromKernel({ type: "snapshot", id: "s1", peer: null, format: "png", via: "comm" });
    await expect(pending).resolves.toBe("T");
    expect(chat).toHaveBeenCalledWith({ type: "chat", text: "hi" });
    expect(snapshot).toHaveBeenCalledWith({ type: "snapshot", id: "s1", peer: null, format: "png", via: "comm" });
    expect(model.sent).toHaveLength(1); // nothing answered with an error
    tokens.dispose();
    kernel.dispose();
    expect(model.custom).toHaveLength(0);
  });

  it("answers the unknown and the malformed with an error message", () => {
    const model = new KernelModel();
    new KernelLink(model);
    model.fromKernel({ type: "teleport" });
    model.fromKernel({ type: "snapshot", id: "s1", peer: null, format: "png", upload: true });
    expect(model.sent.map(([message]) => message)).toEqual([
      { type: "error", message: 'unknown message type "teleport"' },
      { type: "error", message: "a snapshot's via must be 'signaller' or 'comm'" },
    ]);
  });

  it("drops quietly a well-formed message nobody takes (its taker is gone)", () => {
    const model = new KernelModel();
    const kernel = new KernelLink(model);
    const chat = vi.fn();
    const release = kernel.handle({ chat });
    release();
    model.fromKernel({ type: "chat", text: "hi" });
    model.fromKernel({ type: "token", room: "lab", token: null });
    expect(chat).not.toHaveBeenCalled();
    expect(model.sent).toEqual([]);
  });

  it("logs the kernel's error answers once per distinct text, and answers none", () => {
    const model = new KernelModel();
    new KernelLink(model);
    for (const message of ["unknown message type 'x'", "unknown message type 'x'", "bad frame"]) {
      model.fromKernel({ type: "error", message });
    }
    expect(vi.mocked(console.warn).mock.calls.map(([text]) => text)).toEqual([
      "ipymeet: the kernel could not read a message from this page: unknown message type 'x'",
      "ipymeet: the kernel could not read a message from this page: bad frame",
    ]);
    expect(model.sent).toEqual([]);
  });

  it("hands the kernel route's messages to their taker, checked", () => {
    const model = new KernelModel();
    const kernel = new KernelLink(model);
    const taken: unknown[] = [];
    kernel.handle({
      sig_open: (m) => taken.push(m),
      sig_event: (m) => taken.push(m),
      sig_answer: (m) => taken.push(m),
      sig_dropped: (m) => taken.push(m),
    });
    model.fromKernel({ type: "sig_open", n: 3 });
    model.fromKernel({ type: "sig_event", n: 3, event: "peer_joined", data: { id: "z" } });
    model.fromKernel({ type: "sig_answer", n: 3, id: 1, reply: { ok: true } });
    model.fromKernel({ type: "sig_dropped", n: 3, reason: "x".repeat(900) });
    model.fromKernel({ type: "sig_dropped", n: 3, reason: "" });
    expect(taken).toEqual([
      { type: "sig_open", n: 3 },
      { type: "sig_event", n: 3, event: "peer_joined", data: { id: "z" } },
      { type: "sig_answer", n: 3, id: 1, reply: { ok: true } },
      { type: "sig_dropped", n: 3, reason: "x".repeat(500) },
      { type: "sig_dropped", n: 3, reason: "dropped" },
    ]);
    expect(model.sent).toEqual([]);
  });

  it("follows the kernel's busy flag and who waits on it, and numbers route connections anew", () => {
    const model = new KernelModel();
    const kernel = new KernelLink(model);
    const heard = vi.fn();
    const unwatch = kernel.watch(heard);
    expect(kernel.busy).toBe(false);
    model.set("_kernel_busy", true);
    expect(kernel.busy).toBe(true);
    expect(heard).toHaveBeenCalledTimes(1);
    const owner = {};
    kernel.setWaiting(owner, true);
    kernel.setWaiting(owner, true); // no change, no news
    expect(kernel.waiting).toBe(true);
    expect(heard).toHaveBeenCalledTimes(2);
    kernel.setWaiting(owner, false);
    expect(kernel.waiting).toBe(false);
    unwatch();
    model.set("_kernel_busy", false);
    expect(heard).toHaveBeenCalledTimes(3);
    const first = kernel.nextRoute();
    expect(kernel.nextRoute()).toBe(first + 1);
    expect(first).toBeGreaterThanOrEqual(1);
    expect(first).toBeLessThanOrEqual(2 ** 30 + 1);
    // Another page's link (another tab on the same widget) starts elsewhere.
    const others = new Set(Array.from({ length: 5 }, () => new KernelLink(new KernelModel()).nextRoute()));
    expect(others.size).toBeGreaterThan(1);
    kernel.dispose();
    model.set("_kernel_busy", true);
    expect(heard).toHaveBeenCalledTimes(3);
  });

  it("sends binary buffers as anywidget's third argument", () => {
    const model = new KernelModel();
    const kernel = new KernelLink(model);
    const buffer = new ArrayBuffer(4);
    kernel.send({ type: "frame", id: "f", width: 1, height: 1, format: "rgba" }, [buffer]);
    expect(model.sent).toEqual([[{ type: "frame", id: "f", width: 1, height: 1, format: "rgba" }, [buffer]]]);
  });
});
