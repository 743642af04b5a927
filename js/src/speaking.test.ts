import { describe, expect, it } from "vitest";
import { SPEAKING_HOLD_MS, SPEAKING_OFF_LEVEL, SPEAKING_ON_LEVEL } from "./contract";
import { inRoom, wait } from "./harness";
import { SpeakingGate, receivedLevel } from "./speaking";

const LOUD = 0.3;
const QUIET = 0.001;
const BETWEEN = (SPEAKING_ON_LEVEL + SPEAKING_OFF_LEVEL) / 2;

describe("SpeakingGate", () => {
  it("turns on at the on level and off only after the hold below the off level", () => {
    const gate = new SpeakingGate();
    expect(gate.update(QUIET, false, 0)).toBe(false);
    expect(gate.update(BETWEEN, false, 100)).toBe(false); // not loud enough to start
    expect(gate.update(LOUD, false, 200)).toBe(true);
    expect(gate.update(QUIET, false, 300)).toBe(true); // a pause between words
    expect(gate.update(QUIET, false, 300 + SPEAKING_HOLD_MS - 1)).toBe(true);
    expect(gate.update(QUIET, false, 300 + SPEAKING_HOLD_MS)).toBe(false);
    expect(gate.speaking).toBe(false);
  });

  it("does not flicker: a level between the two keeps it on and starts the quiet spell over", () => {
    const gate = new SpeakingGate();
    gate.update(LOUD, false, 0);
    gate.update(QUIET, false, 100);
    expect(gate.update(BETWEEN, false, 100 + SPEAKING_HOLD_MS - 10)).toBe(true);
    expect(gate.update(QUIET, false, 100 + SPEAKING_HOLD_MS + 10)).toBe(true); // the spell began again
    expect(gate.update(QUIET, false, 100 + 2 * SPEAKING_HOLD_MS + 10)).toBe(false);
  });

  it("a muted member is never speaking, however loud, and stops at once when muted", () => {
    const gate = new SpeakingGate();
    expect(gate.update(1, true, 0)).toBe(false);
    expect(gate.update(LOUD, false, 100)).toBe(true);
    expect(gate.update(LOUD, true, 150)).toBe(false);
    expect(gate.update(null, false, 200)).toBe(false); // no reading: silence
  });
});

describe("receivedLevel", () => {
  it("is the loudest audio source's level, null without one", () => {
    const pc = (receivers: unknown[]) => ({ getReceivers: () => receivers }) as unknown as RTCPeerConnection;
    const audio = (...levels: (number | undefined)[]) => ({
      track: { kind: "audio" },
      getSynchronizationSources: () => levels.map((audioLevel) => ({ audioLevel })),
    });
    expect(receivedLevel(pc([]))).toBeNull();
    expect(receivedLevel(pc([audio(undefined)]))).toBeNull();
    expect(receivedLevel(pc([audio(0.1, 0.4), { track: { kind: "video" }, getSynchronizationSources: () => [{ audioLevel: 1 }] }]))).toBe(0.4);
  });
});

describe("members speaking", () => {
  it("reports who speaks in _browser_peers and the tiles' peers; a muted member never", async () => {
    const { model, peers, call } = await inRoom(["a", "b"]);
    peers[0]!.audioLevel = LOUD;
    peers[1]!.audioLevel = QUIET;
    await wait(500);
    const speaking = () => (model.get("_browser_peers") as { id: string; speaking: boolean }[]).map((p) => [p.id, p.speaking]);
    expect(speaking()).toEqual([["a", true], ["b", false]]);
    expect(call.remotePeers.map((p) => [p.id, p.speaking, p.lastSpeaker])).toEqual([["a", true, true], ["b", false, false]]);

    peers[0]!.deliver({ t: "state", audio: false, video: true }); // muted, still loud (the level of a muted track is not trusted)
    expect(call.remotePeers[0]!.speaking).toBe(false);
    await wait(500);
    expect(speaking()).toEqual([["a", false], ["b", false]]);
    expect(call.remotePeers[0]!.lastSpeaker).toBe(true); // still the last to speak

    peers[0]!.deliver({ t: "state", audio: true, video: true });
    await wait(500);
    expect(speaking()).toEqual([["a", true], ["b", false]]);
  });
});
