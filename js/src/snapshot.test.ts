import { describe, expect, it } from "vitest";
import { MAX_CHUNK_BYTES, chunkBytes, exactBuffer, uploadError, uploadFrame } from "./snapshot";

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
  it("emits each chunk as a frame event with its index and the count", () => {
    const events: unknown[][] = [];
    const sink = { emit: (...args: unknown[]) => events.push(args) };
    const count = uploadFrame(sink, "id1", { width: 3, height: 2, format: "rgba", bytes: new Uint8Array(24) }, 10);
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
