import { describe, expect, it } from "vitest";
import { computeStats, describeStats, maxBitrateFor, qualityOf, sendScale } from "./quality";
import type { PeerStats } from "./types";

/** A fake RTCStatsReport: a Map of stats dictionaries by id. */
function report(...entries: Record<string, unknown>[]) {
  return new Map(entries.map((entry) => [entry.id as string, entry]));
}

function snapshotAt(bytes: number, lost: number, received: number, sent: number) {
  return report(
    { id: "T", type: "transport", selectedCandidatePairId: "CP1" },
    { id: "CP1", type: "candidate-pair", localCandidateId: "L1", currentRoundTripTime: 0.0423 },
    { id: "CP2", type: "candidate-pair", localCandidateId: "L2", currentRoundTripTime: 0.9 },
    { id: "L1", type: "local-candidate", candidateType: "srflx" },
    { id: "L2", type: "local-candidate", candidateType: "relay" },
    { id: "IV", type: "inbound-rtp", kind: "video", bytesReceived: bytes, packetsLost: lost, packetsReceived: received, framesPerSecond: 29.97, frameWidth: 1280, frameHeight: 720 },
    { id: "IA", type: "inbound-rtp", kind: "audio", bytesReceived: bytes / 10, packetsLost: 0, packetsReceived: received / 2 },
    { id: "OV", type: "outbound-rtp", kind: "video", bytesSent: sent, framesPerSecond: 30 },
    { id: "OA", type: "outbound-rtp", kind: "audio", bytesSent: sent / 10 },
    { id: "R", type: "remote-inbound-rtp", kind: "video", packetsLost: 999 },
  );
}

describe("maxBitrateFor", () => {
  it("shrinks the cap as the room grows", () => {
    expect([0, 1, 2, 3, 4, 5, 8].map(maxBitrateFor)).toEqual([null, 2_500_000, 1_500_000, 1_000_000, 700_000, 700_000, 700_000]);
  });
});

describe("sendScale", () => {
  const want = (width: number | null, height: number | null) => ({ width, height, fps: null });

  it("scales the track down to fit within the wanted box, by its tighter side", () => {
    expect(sendScale(640, 480, want(320, 240))).toBe(2);
    expect(sendScale(1280, 720, want(320, 240))).toBe(4); // 320x180 fits
    expect(sendScale(640, 480, want(640, 240))).toBe(2);
    expect(sendScale(1920, 1080, want(1280, 720))).toBe(1.5);
  });

  it("never enlarges: a smaller track, no box or an unknown size go as they are", () => {
    expect(sendScale(640, 480, want(1280, 720))).toBe(1);
    expect(sendScale(640, 480, null)).toBe(1);
    expect(sendScale(640, 480, want(null, null))).toBe(1);
    expect(sendScale(0, 0, want(320, 240))).toBe(1);
  });

  it("keeps the small start's scale while it is larger, and the wanted one once that is", () => {
    expect(sendScale(640, 480, want(320, 240), 4)).toBe(4);
    expect(sendScale(1920, 1080, want(160, 120), 4)).toBe(12);
    expect(sendScale(640, 480, null, 4)).toBe(4);
  });
});

describe("computeStats", () => {
  it("computes rates and loss from the difference of two snapshots", () => {
    const first = computeStats(null, snapshotAt(100_000, 5, 995, 200_000), 10_000);
    expect(first.stats).toEqual({
      rtt_ms: 42.3,
      bitrate_in_kbps: 0, // one snapshot: no rate yet
      bitrate_out_kbps: 0,
      fps_in: 30,
      fps_out: 30,
      width: 1280,
      height: 720,
      packet_loss: 0.0033, // 5 of 1492.5 so far
      candidate_type: "srflx",
    });
    // Two seconds later: 250 kB more in (+25 kB audio), 550 kB more out (+55 kB audio).
    const second = computeStats(first.snapshot, snapshotAt(350_000, 25, 1975, 750_000), 12_000);
    expect(second.stats.bitrate_in_kbps).toBe(1100); // 275 kB * 8 / 2 s
    expect(second.stats.bitrate_out_kbps).toBe(2420); // 605 kB * 8 / 2 s
    // 20 lost, 980 + 490 received.
    expect(second.stats.packet_loss).toBe(Math.round((20 / 1490) * 10_000) / 10_000);
    expect(second.snapshot).toEqual({ time: 12_000, bytesIn: 385_000, bytesOut: 825_000, packetsLost: 25, packetsReceived: 2962.5 });
  });

  it("gives zeros and nulls before anything flows, and never negative figures", () => {
    const empty = computeStats(null, report(), 0);
    expect(empty.stats).toEqual({
      rtt_ms: null,
      bitrate_in_kbps: 0,
      bitrate_out_kbps: 0,
      fps_in: 0,
      fps_out: 0,
      width: 0,
      height: 0,
      packet_loss: 0,
      candidate_type: null,
    });
    // Counters that went back (a new inbound stream after renegotiation): clamped at 0.
    const before = computeStats(null, snapshotAt(500_000, 50, 5000, 500_000), 0);
    const after = computeStats(before.snapshot, snapshotAt(1000, 0, 10, 1000), 1000);
    expect(after.stats.bitrate_in_kbps).toBe(0);
    expect(after.stats.packet_loss).toBe(0);
  });

  it("finds the pair in use without transport stats (selected / nominated)", () => {
    const r = report(
      { id: "CP1", type: "candidate-pair", nominated: true, state: "succeeded", localCandidateId: "L", currentRoundTripTime: 0.01 },
      { id: "L", type: "local-candidate", candidateType: "host" },
    );
    expect(computeStats(null, r, 0).stats).toMatchObject({ rtt_ms: 10, candidate_type: "host" });
  });
});

describe("qualityOf", () => {
  const stats = (loss: number, rtt: number | null): PeerStats => ({
    rtt_ms: rtt,
    bitrate_in_kbps: 0,
    bitrate_out_kbps: 0,
    fps_in: 0,
    fps_out: 0,
    width: 0,
    height: 0,
    packet_loss: loss,
    candidate_type: null,
  });

  it("grades loss and round trip", () => {
    expect(qualityOf(stats(0, 30), "connected")).toBe("good");
    expect(qualityOf(stats(0.03, 30), "connected")).toBe("fair");
    expect(qualityOf(stats(0, 250), "connected")).toBe("fair");
    expect(qualityOf(stats(0.1, 30), "connected")).toBe("poor");
    expect(qualityOf(stats(0, 500), "connected")).toBe("poor");
    expect(qualityOf(null, "connected")).toBe("unknown");
    expect(qualityOf(stats(0, 30), "connecting")).toBe("unknown");
    expect(qualityOf(null, "failed")).toBe("poor");
  });

  it("lists the figures for the tooltip", () => {
    const s = { ...stats(0.012, 42.3), bitrate_in_kbps: 900, bitrate_out_kbps: 1200, fps_in: 24.6, width: 640, height: 360, candidate_type: "host" as const };
    expect(describeStats(s, "good")).toBe("Good connection · 42 ms round trip · 1.2% loss · 900 kbps in, 1200 kbps out · 640×360 at 25 fps · via host");
    expect(describeStats(null, "unknown")).toBe("Connection quality not measured yet");
  });
});
