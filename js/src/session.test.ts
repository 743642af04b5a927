import { describe, expect, it } from "vitest";
import { RECONNECT_FIRST_MS, RECONNECT_MAX_MS, RECONNECT_QUICK, reconnectPause } from "./session";

describe("reconnectPause", () => {
  const middle = (): number => 0.5; // no jitter
  const schedule = (count: number): number[] => Array.from({ length: count }, (_, n) => reconnectPause(n, middle));

  it("tries at once, then every quarter second for about two seconds (a kernel's takeover)", () => {
    const pauses = schedule(RECONNECT_QUICK + 1);
    expect(pauses[0]).toBe(0);
    expect(pauses.slice(1)).toEqual(Array(RECONNECT_QUICK).fill(RECONNECT_FIRST_MS));
    expect(pauses.reduce((a, b) => a + b, 0)).toBe(2000);
  });

  it("then doubles, up to the longest pause", () => {
    expect(schedule(RECONNECT_QUICK + 8).slice(RECONNECT_QUICK + 1)).toEqual([500, 1000, 2000, 4000, 5000, 5000, 5000]);
    expect(reconnectPause(1000, middle)).toBe(RECONNECT_MAX_MS);
  });

  it("jitters each pause by a quarter either way", () => {
    expect(reconnectPause(1, () => 0)).toBe(RECONNECT_FIRST_MS * 0.75);
    expect(reconnectPause(1, () => 1)).toBe(RECONNECT_FIRST_MS * 1.25);
  });
});
