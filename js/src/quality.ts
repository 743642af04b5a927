/**
 * Call quality: how much each video sender may use as the room grows, and the figures of one
 * connection computed from two `getStats()` snapshots. Pure code, tested with fake reports, but
 * for `measureEach`, which reads the connections.
 */
import type { CandidateType, PeerStats } from "./types";

/**
 * The cap on each video sender, in bits per second, with `others` other members. Every member
 * sends its camera once per other member (a mesh), so the cap shrinks as the room grows; with four
 * people at 720p this keeps the uplink near 3 Mbps.
 */
export function maxBitrateFor(others: number): number | null {
  if (others <= 0) return null;
  if (others === 1) return 2_500_000;
  if (others === 2) return 1_500_000;
  if (others === 3) return 1_000_000;
  return 700_000;
}

/** What the receiving side wants of a video sender (a `want` message's numbers; null: anything). */
export interface VideoWant {
  width: number | null;
  height: number | null;
  fps: number | null;
}

/**
 * A video sender's `scaleResolutionDownBy` for a track of `width` x `height` (0: unknown): the
 * smallest scale, and at least `minimum` (the small start's), at which the sent picture fits
 * within what `want` asks for. Never below 1: a sender does not enlarge its track.
 */
export function sendScale(width: number, height: number, want: VideoWant | null, minimum = 1): number {
  let fit = 1;
  if (want !== null && want.width !== null && want.height !== null && width > 0 && height > 0) {
    fit = Math.max(width / want.width, height / want.height);
  }
  return Math.max(1, minimum, fit);
}

/** The cumulative counters of one connection at one moment. */
export interface StatsSnapshot {
  /** Milliseconds, on any clock that only goes forward. */
  time: number;
  bytesIn: number;
  bytesOut: number;
  packetsLost: number;
  packetsReceived: number;
}

/** The part of `RTCStatsReport` read here (a maplike of stats dictionaries by id). */
export interface StatsReportLike {
  forEach(callback: (value: Record<string, unknown>) => void): void;
  get(id: string): unknown;
}

/** One connection's figures as measured so far (members.ts keeps one per member). */
export interface Measured {
  readonly id: string;
  readonly peer: { getStats(): Promise<StatsReportLike> } | null;
  stats: PeerStats | null;
  snapshot: StatsSnapshot | null;
}

/** Read each connection's statistics (all at once) into its `stats` and `snapshot`. */
export async function measureEach(measured: Iterable<Measured>): Promise<void> {
  await Promise.all(
    [...measured].map(async (one) => {
      if (one.peer === null) return;
      try {
        const report = await one.peer.getStats();
        const { stats, snapshot } = computeStats(one.snapshot, report, performance.now());
        one.stats = stats;
        one.snapshot = snapshot;
      } catch (error) {
        console.debug(`ipymeet: no statistics for ${one.id}`, error);
      }
    }),
  );
}

const CANDIDATE_TYPES: readonly string[] = ["host", "srflx", "prflx", "relay"];

/**
 * The figures since `previous` (or since the start, for the first report) and the snapshot to
 * pass next time. Rates over an interval need two snapshots: the first report gives bit rates of 0.
 */
export function computeStats(
  previous: StatsSnapshot | null,
  report: StatsReportLike,
  time: number,
): { stats: PeerStats; snapshot: StatsSnapshot } {
  const snapshot: StatsSnapshot = { time, bytesIn: 0, bytesOut: 0, packetsLost: 0, packetsReceived: 0 };
  let fpsIn = 0;
  let fpsOut = 0;
  let width = 0;
  let height = 0;
  let pair: Record<string, unknown> | undefined;
  let fallbackPair: Record<string, unknown> | undefined;

  report.forEach((entry) => {
    const kind = entry.kind ?? entry.mediaType;
    switch (entry.type) {
      case "inbound-rtp":
        if (kind !== "audio" && kind !== "video") break;
        snapshot.bytesIn += num(entry.bytesReceived);
        snapshot.packetsLost += num(entry.packetsLost);
        snapshot.packetsReceived += num(entry.packetsReceived);
        if (kind === "video") {
          fpsIn = Math.max(fpsIn, num(entry.framesPerSecond));
          if (num(entry.frameWidth) * num(entry.frameHeight) > width * height) {
            width = num(entry.frameWidth);
            height = num(entry.frameHeight);
          }
        }
        break;
      case "outbound-rtp":
        if (kind !== "audio" && kind !== "video") break;
        snapshot.bytesOut += num(entry.bytesSent);
        if (kind === "video") fpsOut = Math.max(fpsOut, num(entry.framesPerSecond));
        break;
      case "transport":
        if (typeof entry.selectedCandidatePairId === "string") {
          const selected = report.get(entry.selectedCandidatePairId);
          if (isRecord(selected)) pair = selected;
        }
        break;
      case "candidate-pair":
        // Browsers without transport stats mark the pair in use themselves.
        if (entry.selected === true || (entry.nominated === true && entry.state === "succeeded")) {
          fallbackPair ??= entry;
        }
        break;
    }
  });
  pair ??= fallbackPair;

  let rtt: number | null = null;
  let candidateType: CandidateType | null = null;
  if (pair !== undefined) {
    if (typeof pair.currentRoundTripTime === "number") rtt = round(pair.currentRoundTripTime * 1000, 1);
    const local = typeof pair.localCandidateId === "string" ? report.get(pair.localCandidateId) : undefined;
    if (isRecord(local) && typeof local.candidateType === "string" && CANDIDATE_TYPES.includes(local.candidateType)) {
      candidateType = local.candidateType as CandidateType;
    }
  }

  const seconds = previous === null ? 0 : (time - previous.time) / 1000;
  const rate = (now: number, before: number | undefined): number =>
    seconds > 0 && before !== undefined ? Math.max(0, Math.round(((now - before) * 8) / 1000 / seconds)) : 0;
  const lost = Math.max(0, snapshot.packetsLost - (previous?.packetsLost ?? 0));
  const received = Math.max(0, snapshot.packetsReceived - (previous?.packetsReceived ?? 0));

  return {
    snapshot,
    stats: {
      rtt_ms: rtt,
      bitrate_in_kbps: rate(snapshot.bytesIn, previous?.bytesIn),
      bitrate_out_kbps: rate(snapshot.bytesOut, previous?.bytesOut),
      fps_in: round(fpsIn, 1),
      fps_out: round(fpsOut, 1),
      width,
      height,
      packet_loss: lost + received > 0 ? round(lost / (lost + received), 4) : 0,
      candidate_type: candidateType,
    },
  };
}

export type Quality = "good" | "fair" | "poor" | "unknown";

/** A rough grade for the tile's dot, from loss and round trip. */
export function qualityOf(stats: PeerStats | null, connection: RTCPeerConnectionState): Quality {
  if (connection === "failed" || connection === "disconnected") return "poor";
  if (stats === null || connection !== "connected") return "unknown";
  const rtt = stats.rtt_ms ?? 0;
  if (stats.packet_loss > 0.08 || rtt > 400) return "poor";
  if (stats.packet_loss > 0.02 || rtt > 200) return "fair";
  return "good";
}

/** The figures in a line, for the dot's tooltip. */
export function describeStats(stats: PeerStats | null, quality: Quality): string {
  const grade = { good: "Good connection", fair: "Fair connection", poor: "Poor connection", unknown: "Connection quality not measured yet" }[quality];
  if (stats === null) return grade;
  const parts = [grade];
  if (stats.rtt_ms !== null) parts.push(`${Math.round(stats.rtt_ms)} ms round trip`);
  parts.push(`${(stats.packet_loss * 100).toFixed(1)}% loss`);
  parts.push(`${stats.bitrate_in_kbps} kbps in, ${stats.bitrate_out_kbps} kbps out`);
  if (stats.width > 0) parts.push(`${stats.width}×${stats.height} at ${Math.round(stats.fps_in)} fps`);
  if (stats.candidate_type !== null) parts.push(`via ${stats.candidate_type}`);
  return parts.join(" · ");
}

function num(value: unknown): number {
  return typeof value === "number" && Number.isFinite(value) ? value : 0;
}

function round(value: number, digits: number): number {
  const factor = 10 ** digits;
  return Math.round(value * factor) / factor;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null;
}
