import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import {
  ChatLog,
  MAX_CHAT,
  Outbox,
  chatText,
  dispatchKernelMessage,
  newMessageId,
  parsePeerMessage,
  type KernelHandlers,
} from "./messages";
import type { ChatEntry } from "./types";

beforeEach(() => {
  vi.spyOn(console, "warn").mockImplementation(() => undefined);
});
afterEach(() => {
  vi.restoreAllMocks();
});

const entry = (id: string, text = id): ChatEntry => ({ id, from: "p", name: "P", text, time: 1, mine: false });

describe("parsePeerMessage", () => {
  it("reads state and chat messages", () => {
    // Without `screen` (an older peer): not sharing.
    expect(parsePeerMessage('{"t":"state","audio":false,"video":true}')).toEqual({ t: "state", audio: false, video: true, screen: false });
    expect(parsePeerMessage('{"t":"state","audio":true,"video":true,"screen":true}')).toEqual({ t: "state", audio: true, video: true, screen: true });
    expect(parsePeerMessage('{"t":"state","audio":true,"video":true,"screen":"yes"}')).toBeNull();
    expect(parsePeerMessage(JSON.stringify({ t: "chat", id: "a1", name: "Ada", text: "hi", time: 12, extra: 1 }))).toEqual({
      t: "chat",
      id: "a1",
      name: "Ada",
      text: "hi",
      time: 12,
    });
  });

  it("ignores junk", () => {
    for (const raw of [
      "",
      "nope",
      "null",
      "[]",
      '"state"',
      '{"t":"state","audio":1,"video":true}',
      '{"t":"state","audio":true}',
      '{"t":"chat","id":"","name":"A","text":"hi","time":1}',
      '{"t":"chat","id":"x","name":"A","text":"  ","time":1}',
      '{"t":"chat","id":"x","name":"A","text":"hi","time":"now"}',
      '{"t":"chat","id":"x","name":5,"text":"hi","time":1}',
      JSON.stringify({ t: "chat", id: "x".repeat(65), name: "A", text: "hi", time: 1 }),
      '{"t":"other"}',
      "x".repeat(20_000),
    ]) {
      expect(parsePeerMessage(raw), raw.slice(0, 60)).toBeNull();
    }
    expect(parsePeerMessage(new ArrayBuffer(3))).toBeNull();
  });

  it("caps chat text at 2000 characters and strips control characters from names", () => {
    const message = parsePeerMessage(JSON.stringify({ t: "chat", id: "x", name: "A\u0000da\u001b", text: "é".repeat(3000), time: 1 }));
    expect(message).toMatchObject({ name: "Ada" });
    expect(message?.t === "chat" && [...message.text].length).toBe(MAX_CHAT);
  });
});

describe("parsePeerMessage: want", () => {
  it("reads a kernel peer's wanted size and frame rate, null or absent asking nothing", () => {
    expect(parsePeerMessage('{"t":"want","width":320,"height":240,"fps":15}')).toEqual({ t: "want", width: 320, height: 240, fps: 15 });
    expect(parsePeerMessage('{"t":"want","width":null,"height":null,"fps":30}')).toEqual({ t: "want", width: null, height: null, fps: 30 });
    expect(parsePeerMessage('{"t":"want","width":3840,"height":2160}')).toEqual({ t: "want", width: 3840, height: 2160, fps: null });
  });

  it("ignores a want out of bounds, not whole, or with one side only", () => {
    for (const raw of [
      '{"t":"want","width":15,"height":240,"fps":15}',
      '{"t":"want","width":3841,"height":240}',
      '{"t":"want","width":320,"height":2161}',
      '{"t":"want","width":320,"height":240,"fps":0}',
      '{"t":"want","width":320,"height":240,"fps":61}',
      '{"t":"want","width":320.5,"height":240}',
      '{"t":"want","width":"320","height":240}',
      '{"t":"want","width":320,"fps":15}',
      '{"t":"want","width":1e400,"height":240}',
    ]) {
      expect(parsePeerMessage(raw), raw).toBeNull();
    }
  });
});

describe("chatText", () => {
  it("keeps what may be sent", () => {
    expect(chatText("hello")).toBe("hello");
    expect(chatText("  ")).toBeNull();
    expect(chatText(3)).toBeNull();
    expect(chatText("a".repeat(2001))).toHaveLength(2000);
  });
});

describe("ChatLog", () => {
  it("drops a second copy of an id and keeps the latest lines", () => {
    const log = new ChatLog([], 3);
    expect(log.add(entry("1"))).toBe(true);
    expect(log.add(entry("1", "again"))).toBe(false);
    for (const id of ["2", "3", "4"]) log.add(entry(id));
    expect(log.entries.map((e) => e.id)).toEqual(["2", "3", "4"]);
    expect(log.add(entry("1"))).toBe(false); // gone from the list, still remembered
  });

  it("restores a saved history, skipping malformed lines", () => {
    const log = new ChatLog([entry("1"), { id: 2 }, null, entry("1"), entry("3")]);
    expect(log.entries.map((e) => e.id)).toEqual(["1", "3"]);
  });

  it("gives a new array on each change, so views can tell", () => {
    const log = new ChatLog();
    const before = log.entries;
    log.add(entry("1"));
    expect(log.entries).not.toBe(before);
  });
});

describe("Outbox", () => {
  it("sends at once when it can, otherwise queues, and keeps the order", () => {
    const out: string[] = [];
    let open = false;
    const send = (message: string) => open && out.push(message) > 0;
    const box = new Outbox();
    box.push("1", send);
    box.push("2", send);
    expect(out).toEqual([]);
    open = true;
    box.push("3", send); // must not overtake 1 and 2
    expect(out).toEqual([]);
    box.flush(send);
    box.push("4", send);
    expect(out).toEqual(["1", "2", "3", "4"]);
    expect(box.size).toBe(0);
  });

  it("keeps at most `max` lines, dropping the oldest", () => {
    const box = new Outbox(2);
    for (const m of ["1", "2", "3"]) box.push(m, () => false);
    const out: string[] = [];
    box.flush((m) => out.push(m) > 0);
    expect(out).toEqual(["2", "3"]);
  });
});

/** A handler for every kernel message type, each a spy unless given. */
function handlersWith(given: Partial<KernelHandlers> = {}): KernelHandlers {
  return {
    chat: vi.fn(),
    snapshot: vi.fn(),
    token: vi.fn(),
    error: vi.fn(),
    sig_open: vi.fn(),
    sig_event: vi.fn(),
    sig_answer: vi.fn(),
    sig_dropped: vi.fn(),
    diagnose: vi.fn(),
    ...given,
  };
}

describe("dispatchKernelMessage", () => {
  it("hands a chat request to its handler", () => {
    const chat = vi.fn();
    expect(dispatchKernelMessage({ type: "chat", text: "hi" }, handlersWith({ chat }))).toBeNull();
    expect(chat).toHaveBeenCalledWith({ type: "chat", text: "hi" });
  });

  it("answers unknown or malformed messages with an error, and logs them", () => {
    const handlers = handlersWith();
    expect(dispatchKernelMessage({ type: "video" }, handlers)).toEqual({ type: "error", message: 'unknown message type "video"' });
    expect(dispatchKernelMessage("chat", handlers)).toEqual({ type: "error", message: "unknown message type null" });
    expect(dispatchKernelMessage({ type: "chat" }, handlers)).toEqual({ type: "error", message: "a chat message needs a non-empty text" });
    expect(handlers.chat).not.toHaveBeenCalled();
    expect(console.warn).toHaveBeenCalledTimes(3);
  });

  it("hands a checked snapshot request to its handler, with the path to answer by", () => {
    const snapshot = vi.fn();
    const handlers = handlersWith({ snapshot });
    expect(dispatchKernelMessage({ type: "snapshot", id: "r1", peer: null, format: "rgba", via: "signaller" }, handlers)).toBeNull();
    expect(dispatchKernelMessage({ type: "snapshot", id: "r2", peer: "p9", format: "png", via: "comm" }, handlers)).toBeNull();
    expect(snapshot.mock.calls).toEqual([
      [{ type: "snapshot", id: "r1", peer: null, format: "rgba", via: "signaller" }],
      [{ type: "snapshot", id: "r2", peer: "p9", format: "png", via: "comm" }],
    ]);
    for (const bad of [
      { type: "snapshot", peer: null, format: "rgba", via: "comm" },
      { type: "snapshot", id: "r", peer: 3, format: "rgba", via: "comm" },
      { type: "snapshot", id: "r", peer: null, format: "jpeg", via: "comm" },
      { type: "snapshot", id: "r", peer: null, format: "rgba" },
      { type: "snapshot", id: "r", peer: null, format: "rgba", upload: true },
      { type: "snapshot", id: "r", peer: null, format: "rgba", via: "both" },
    ]) {
      expect(dispatchKernelMessage(bad, handlers)).toMatchObject({ type: "error" });
    }
    expect(snapshot).toHaveBeenCalledTimes(2);
  });

  it("hands the kernel's own error to its handler and never answers it", () => {
    const error = vi.fn();
    const handlers = handlersWith({ error });
    expect(dispatchKernelMessage({ type: "error", message: "unknown message type 'x'" }, handlers)).toBeNull();
    expect(dispatchKernelMessage({ type: "error" }, handlers)).toBeNull();
    expect(error.mock.calls).toEqual([
      [{ type: "error", message: "unknown message type 'x'" }],
      [{ type: "error", message: "(no reason given)" }],
    ]);
  });
});

describe("newMessageId", () => {
  it("is random hex", () => {
    const ids = new Set(Array.from({ length: 100 }, newMessageId));
    expect(ids.size).toBe(100);
    expect([...ids].every((id) => /^[0-9a-f]{24}$/.test(id))).toBe(true);
  });
});

describe("dispatchKernelMessage: tokens", () => {
  it("hands a well-formed token message to its handler and refuses malformed ones", () => {
    const token = vi.fn();
    const handlers = handlersWith({ token });
    expect(dispatchKernelMessage({ type: "token", room: "lab", token: "T" }, handlers)).toBeNull();
    expect(dispatchKernelMessage({ type: "token", room: "lab", token: null }, handlers)).toBeNull();
    expect(token.mock.calls).toEqual([[{ type: "token", room: "lab", token: "T" }], [{ type: "token", room: "lab", token: null }]]);
    expect(dispatchKernelMessage({ type: "token", room: "", token: "T" }, handlers)?.type).toBe("error");
    expect(dispatchKernelMessage({ type: "token", room: "lab", token: 3 }, handlers)?.type).toBe("error");
  });
});
