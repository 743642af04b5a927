import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { KernelLink } from "./kernel";
import { KernelModel } from "./harness";
import { SignalingError } from "./signaling";
import { KernelTokens, takeUrlToken } from "./tokens";

beforeEach(() => {
  vi.useFakeTimers();
  vi.spyOn(console, "warn").mockImplementation(() => undefined);
});
afterEach(() => {
  vi.useRealTimers();
  vi.restoreAllMocks();
});

describe("KernelTokens", () => {
  it("asks nothing when the room needs no token", async () => {
    const model = new KernelModel({ _secure: false });
    const tokens = new KernelTokens(model, new KernelLink(model));
    await expect(tokens.get("lab")).resolves.toBeUndefined();
    expect(model.messages).toEqual([]);
  });

  it("asks the kernel by custom message and resolves with its answer", async () => {
    const model = new KernelModel({ _secure: true });
    const tokens = new KernelTokens(model, new KernelLink(model));
    const pending = tokens.get("lab");
    expect(model.messages).toEqual([{ type: "token_request", room: "lab" }]);
    model.fromKernel({ type: "token", room: "other", token: "not-this" });
    model.fromKernel({ type: "token", room: "lab", token: "T1" });
    await expect(pending).resolves.toBe("T1");
    // The token for the other room came unasked: kept for its next get, once.
    await expect(tokens.get("other")).resolves.toBe("not-this");
    const unanswered = tokens.get("other").catch(() => undefined);
    expect(model.messages).toHaveLength(2);
    tokens.dispose();
    await unanswered;
  });

  it("uses a token the kernel sent ahead (join()) while it is fresh", async () => {
    let now = 0;
    const model = new KernelModel({ _secure: true });
    const tokens = new KernelTokens(model, new KernelLink(model), { maxAgeMs: 1000, now: () => now });
    model.fromKernel({ type: "token", room: "lab", token: "early" });
    await expect(tokens.get("lab")).resolves.toBe("early");
    model.fromKernel({ type: "token", room: "lab", token: "stale" });
    now = 5000;
    const asked = tokens.get("lab").catch(() => undefined);
    expect(model.messages).toEqual([{ type: "token_request", room: "lab" }]);
    tokens.dispose();
    await asked;
  });

  it("fails with a clear timeout when the kernel does not answer", async () => {
    const model = new KernelModel({ _secure: true });
    const tokens = new KernelTokens(model, new KernelLink(model), { timeoutMs: 2000 });
    const pending = tokens.get("lab");
    const outcome = expect(pending).rejects.toThrow(/needs a join token.*within 2 s.*Connect again/);
    vi.advanceTimersByTime(2001);
    await outcome;
    await pending.catch((error: unknown) => expect((error as SignalingError).code).toBe("timeout"));
    // A late answer is kept for the next try, not lost.
    model.fromKernel({ type: "token", room: "lab", token: "late" });
    await expect(tokens.get("lab")).resolves.toBe("late");
    tokens.dispose();
  });

  it("ignores malformed token messages and stops listening once disposed", async () => {
    const model = new KernelModel({ _secure: true });
    const tokens = new KernelTokens(model, new KernelLink(model), { timeoutMs: 100 });
    const pending = tokens.get("lab");
    model.fromKernel({ type: "token", room: "lab", token: 42 });
    expect(model.messages.at(-1)).toEqual({ type: "error", message: "a token message's token must be a string or null" });
    tokens.dispose();
    await expect(pending).rejects.toThrow(/closed/);
    await expect(tokens.get("lab")).resolves.toBeUndefined();
  });
});

describe("takeUrlToken", () => {
  const storage = () => {
    const items = new Map<string, string>();
    return { getItem: (k: string) => items.get(k) ?? null, setItem: (k: string, v: string) => void items.set(k, v) };
  };

  it("reads the token and drops it from the address, keeping the rest", () => {
    const replaceState = vi.fn();
    const store = storage();
    const href = "https://h:1/?room=lab&token=abc&autojoin=1";
    const got = takeUrlToken({ search: "?room=lab&token=abc&autojoin=1", href }, { replaceState, state: null }, store);
    expect(got).toEqual({ room: "lab", token: "abc" });
    expect(replaceState).toHaveBeenCalledWith(null, "", "https://h:1/?room=lab&autojoin=1");
    // A reload of the cleaned address in the same tab still has it.
    const again = takeUrlToken({ search: "?room=lab&autojoin=1", href: "https://h:1/?room=lab&autojoin=1" }, { replaceState, state: null }, store);
    expect(again).toEqual({ room: "lab", token: "abc" });
    expect(replaceState).toHaveBeenCalledTimes(1);
  });

  it("gives no token when the link has none", () => {
    const replaceState = vi.fn();
    expect(takeUrlToken({ search: "?room=lab", href: "http://h/?room=lab" }, { replaceState, state: null }, storage())).toEqual({
      room: "lab",
      token: null,
    });
    expect(replaceState).not.toHaveBeenCalled();
  });
});
