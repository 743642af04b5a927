import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { fromKernel, inRoom, same, settle, setup } from "./harness";
import { MAX_CHUNK_BYTES, UPLOAD_PACE, chunkBytes, exactBuffer, uploadError, uploadFrame } from "./snapshot";

describe("chunkBytes", () => {
  it("splits into chunks of at most 192 KiB that join back to the bytes", () => {
    expect(MAX_CHUNK_BYTES).toBe(192 * 1024);
    for (const size of [1, MAX_CHUNK_BYTES - 1, MAX_CHUNK_BYTES, MAX_CHUNK_BYTES + 1, 1280 * 720 * 4]) {
      const bytes = new Uint8Array(size).map((_, i) => i % 256);
      const chunks = chunkBytes(bytes);
      expect(chunks).toHaveLength(Math.ceil(size / MAX_CHUNK_BYTES));
      expect(chunks.every((chunk) => chunk.byteLength > 0 && chunk.byteLength <= MAX_CHUNK_BYTES)).toBe(true);
      const joined = new Uint8Array(size);
      let at = 0;
      for (const chunk of chunks) {
        joined.set(new Uint8Array(chunk), at);
        at += chunk.byteLength;
      }
      expect(joined.every((value, i) => value === bytes[i])).toBe(true);
    }
  });

  it("gives one empty chunk for no bytes, and respects a smaller size", () => {
    expect(chunkBytes(new Uint8Array(0)).map((c) => c.byteLength)).toEqual([0]);
    expect(chunkBytes(new Uint8Array(10), 4).map((c) => c.byteLength)).toEqual([4, 4, 2]);
  });

  it("copies a partial view but not a whole one", () => {
    const whole = new Uint8Array([1, 2, 3]);
    expect(exactBuffer(whole)).toBe(whole.buffer);
    const part = new Uint8Array(new Uint8Array([9, 1, 2, 9]).buffer, 1, 2);
    expect([...new Uint8Array(exactBuffer(part))]).toEqual([1, 2]);
  });
});

describe("uploadFrame", () => {
  it("emits each chunk as a frame event with its index and the count", async () => {
    const events: unknown[][] = [];
    const sink = { emit: (...args: unknown[]) => events.push(args) };
    const count = await uploadFrame(sink, "id1", { width: 3, height: 2, format: "rgba", bytes: new Uint8Array(24) }, 10);
    expect(count).toBe(3);
    expect(events.map(([event, meta, chunk]) => [event, meta, (chunk as ArrayBuffer).byteLength])).toEqual([
      ["frame", { id: "id1", index: 0, count: 3, width: 3, height: 2, format: "rgba" }, 10],
      ["frame", { id: "id1", index: 1, count: 3, width: 3, height: 2, format: "rgba" }, 10],
      ["frame", { id: "id1", index: 2, count: 3, width: 3, height: 2, format: "rgba" }, 4],
    ]);
    uploadError(sink, "id2", "no video");
    expect(events.at(-1)).toEqual(["frame", { id: "id2", error: "no video" }]);
  });
});

describe("uploadFrame's pace", () => {
  it("sends a 4K frame's first chunks at once, then below the signaller's refill rate", async () => {
    vi.useFakeTimers();
    try {
      const sent: number[] = [];
      const sink = { emit: () => sent.push(Date.now()) };
      const bytes = new Uint8Array(3840 * 2160 * 4);
      const done = uploadFrame(sink, "big", { width: 3840, height: 2160, format: "rgba", bytes });
      await vi.advanceTimersByTimeAsync(0);
      expect(sent).toHaveLength(UPLOAD_PACE.burst);
      await vi.advanceTimersByTimeAsync(1000);
      expect(sent).toHaveLength(UPLOAD_PACE.burst + UPLOAD_PACE.perSecond);
      await vi.advanceTimersByTimeAsync(10_000);
      expect(await done).toBe(169);
      expect(sent).toHaveLength(169);
      // Never more than the burst plus 50 a second (the server's bucket) in any stretch from the start.
      const start = sent[0]!;
      sent.forEach((time, index) => expect(index + 1).toBeLessThanOrEqual(200 + ((time - start) / 1000) * 50));
    } finally {
      vi.useRealTimers();
    }
  });

  it("stops when the connection is closed", async () => {
    let calls = 0;
    const sink = { emit: () => (++calls < 3 ? true : false) };
    await uploadFrame(sink, "x", { width: 1, height: 10, format: "rgba", bytes: new Uint8Array(40) }, 4);
    expect(calls).toBe(3);
  });
});

describe("answerSnapshot, through a Call", () => {
  beforeEach(() => {
    vi.spyOn(console, "warn").mockImplementation(() => undefined);
  });
  afterEach(() => {
    vi.restoreAllMocks();
  });

  it('via "signaller": the frame in chunks of at most 192 KiB through the signaller, no custom message', async () => {
    const bytes = new Uint8Array(640 * 480 * 4).map((_, i) => i % 251);
    const captured: [MediaStream, string][] = [];
    const { model, server, sent, stream } = await inRoom(["a"], {
      captureFrame: async (from, format) => {
        captured.push([from, format]);
        return { width: 640, height: 480, format, bytes };
      },
    });
    const before = sent.length;
    fromKernel(model, { type: "snapshot", id: "req1", peer: null, format: "rgba", via: "signaller" });
    await settle();
    expect(captured).toEqual([[stream, "rgba"]]);
    expect(sent.slice(before)).toEqual([]); // once, by the path asked
    const count = Math.ceil(bytes.length / (192 * 1024));
    expect(server.frames.map(([meta]) => meta)).toEqual(
      Array.from({ length: count }, (_, index) => ({ id: "req1", index, count, width: 640, height: 480, format: "rgba" })),
    );
    expect(server.frames.every(([, chunk]) => chunk!.byteLength <= 192 * 1024)).toBe(true);
    const joined = new Uint8Array(bytes.length);
    let at = 0;
    for (const [, chunk] of server.frames) {
      joined.set(new Uint8Array(chunk!), at);
      at += chunk!.byteLength;
    }
    expect(at).toBe(bytes.length);
    expect(same(joined, bytes)).toBe(true);
  });

  it('via "comm": one binary custom message, nothing through the signaller', async () => {
    const bytes = new Uint8Array(64 * 48 * 4).map((_, i) => i % 251);
    const { model, server, sent, buffers } = await inRoom(["a"], {
      captureFrame: async (_from, format) => ({ width: 64, height: 48, format, bytes }),
    });
    fromKernel(model, { type: "snapshot", id: "req0", peer: null, format: "rgba", via: "comm" });
    await settle();
    expect(sent.at(-1)).toEqual({ type: "frame", id: "req0", width: 64, height: 48, format: "rgba" });
    const [buffer] = buffers.at(-1) as ArrayBuffer[];
    expect(same(new Uint8Array(buffer!), bytes)).toBe(true);
    expect(server.frames).toEqual([]);
  });

  it("takes a peer's remote video", async () => {
    const remote = { getVideoTracks: () => [{}] } as unknown as MediaStream;
    const captured: MediaStream[] = [];
    const { model, server, sent, peers } = await inRoom(["a"], {
      captureFrame: async (from, format) => {
        captured.push(from);
        return { width: 2, height: 1, format, bytes: new Uint8Array([137, 80, 78, 71]) };
      },
    });
    peers[0]!.remoteStream = remote;
    fromKernel(model, { type: "snapshot", id: "req2", peer: "a", format: "png", via: "comm" });
    await settle();
    expect(captured).toEqual([remote]);
    expect(sent.at(-1)).toEqual({ type: "frame", id: "req2", width: 2, height: 1, format: "png" });
    expect(server.frames).toEqual([]);
  });

  it("answers with a plain error, by the path asked, when there is no such peer or no video yet", async () => {
    const { model, server, sent } = await inRoom(["a"], {
      captureFrame: async () => {
        throw new Error("not reached");
      },
    });
    const before = sent.length;
    fromKernel(model, { type: "snapshot", id: "r3", peer: "ghost", format: "rgba", via: "signaller" });
    await settle();
    expect(server.frames).toEqual([[{ id: "r3", error: 'no peer "ghost" in this call' }, undefined]]);
    expect(sent.slice(before)).toEqual([]);
    fromKernel(model, { type: "snapshot", id: "r4", peer: "a", format: "rgba", via: "comm" });
    await settle();
    expect(sent.at(-1)).toEqual({ type: "frame", id: "r4", error: "no video from A yet" });
    expect(server.frames).toHaveLength(1);
  });

  it("says so when not in a call: by comm, the only path there is then", async () => {
    const { model, sent } = setup();
    fromKernel(model, { type: "snapshot", id: "r5", peer: null, format: "png", via: "signaller" });
    await settle();
    expect(sent.at(-1)).toEqual({ type: "frame", id: "r5", error: "not in a call: join a room first" });
  });
});
