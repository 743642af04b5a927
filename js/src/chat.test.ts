import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { inRoom, settle, setup, wait, type FakePeer } from "./harness";
import type { LocalMedia } from "./media";

// The Call logs failed steps with console.warn for developers; keep the test output readable.
beforeEach(() => {
  vi.spyOn(console, "warn").mockImplementation(() => undefined);
});
afterEach(() => {
  vi.restoreAllMocks();
});

describe("Chat", () => {
  it("sends chat to every member, queued until each channel opens, in order", async () => {
    const { peers, call } = await inRoom(["a", "b"]);
    const [a, b] = peers;
    a!.open();
    expect(call.sendChat("one")).toBe(true);
    expect(call.sendChat("two")).toBe(true);
    const texts = (peer: FakePeer) => peer.sentMessages().filter((m) => m.t === "chat").map((m) => m.text);
    expect(texts(a!)).toEqual(["one", "two"]);
    expect(b!.data).toEqual([]);
    b!.open();
    expect(b!.sentMessages()[0]).toEqual({ t: "state", audio: true, video: true, screen: false });
    expect(texts(b!)).toEqual(["one", "two"]);
    const [first] = b!.sentMessages().filter((m) => m.t === "chat");
    expect(first).toEqual({ t: "chat", id: expect.stringMatching(/^[0-9a-f]{24}$/), name: "Ada", text: "one", time: 1_700_000_000_000 });
  });

  it("sends a queued line only to the members present when it was written", async () => {
    const { server, peers, call } = await inRoom(["a"]);
    call.sendChat("before c");
    server.serve("peer_joined", { id: "c", name: "C" });
    call.sendChat("after c");
    peers[0]!.open();
    peers[1]!.open();
    const texts = (peer: FakePeer) => peer.sentMessages().filter((m) => m.t === "chat").map((m) => m.text);
    expect(texts(peers[0]!)).toEqual(["before c", "after c"]);
    expect(texts(peers[1]!)).toEqual(["after c"]);
  });

  it("records chat once per id, in `messages` and to the kernel, own lines marked", async () => {
    const { model, peers, call, sent } = await inRoom(["a", "b"]);
    const line = { t: "chat", id: "x1", name: "Grace", text: "hi", time: 5 };
    peers[0]!.deliver(line);
    peers[1]!.deliver(line); // the same id again: dropped
    peers[1]!.deliver({ t: "chat", id: "x2", name: "", text: "x".repeat(2500), time: 6 });
    peers[1]!.deliver({ t: "chat", id: "x3", name: "B", text: "   ", time: 7 }); // blank: junk
    call.sendChat("mine");
    await wait(300);
    const messages = model.get("messages");
    expect(messages.map((m) => [m.id, m.from, m.name, m.text.length, m.mine])).toEqual([
      ["x1", "a", "Grace", 2, false],
      ["x2", "b", "B", 2000, false], // no name given: the signaller's name; text capped
      [expect.any(String), "me", "Ada", 4, true],
    ]);
    expect(sent).toEqual(messages.map((m) => ({ type: "chat", ...m })));
  });

  it("holds lines written while joining until the room is entered", async () => {
    let resolveMedia!: (media: LocalMedia) => void;
    const context = setup({ media: () => new Promise((resolve) => (resolveMedia = resolve)) });
    context.server.enterAnswer = { ok: true, self: "me", peers: [{ id: "a", name: "A" }], capacity: 6, ice_servers: [] };
    context.join();
    await settle();
    expect(context.call.sendChat("early")).toBe(true);
    resolveMedia({ stream: null, warning: null });
    await settle();
    context.peers[0]!.open();
    expect(context.peers[0]!.sentMessages()).toEqual([
      { t: "state", audio: false, video: false, screen: false }, // receive-only: shown as off
      expect.objectContaining({ t: "chat", text: "early" }),
    ]);
    expect(context.call.messages.map((m) => [m.from, m.text])).toEqual([["me", "early"]]);
  });

  it("refuses chat outside a room, and blank chat", async () => {
    const { call } = setup();
    expect(call.sendChat("hello")).toBe(false);
    expect(call.messages).toEqual([]);
    const inside = await inRoom(["a"]);
    expect(inside.call.sendChat("  \n ")).toBe(false);
  });
});
