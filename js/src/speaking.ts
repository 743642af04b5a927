/**
 * Who is speaking: a gate with hysteresis over audio levels, and where the levels come from.
 *
 * A received member's level is what its connection's audio receiver says of the last packets
 * (`getSynchronizationSources()`: the level each packet carries, RFC 6464); this page's own is
 * its audio sender's `media-source` statistics (the microphone as captured). Levels are 0-1,
 * linear. The gate turns on at SPEAKING_ON_LEVEL and off once the level stayed below
 * SPEAKING_OFF_LEVEL for SPEAKING_HOLD_MS, so the mark does not flicker between words; muted, it
 * is off at once, whatever the level (a muted track still reports the level of its silence).
 */
import { SPEAKING_HOLD_MS, SPEAKING_OFF_LEVEL, SPEAKING_ON_LEVEL } from "./contract";

/** How often the page reads the levels, in ms: well under the hold, so a word is not missed. */
export const SPEAKING_POLL_MS = 150;

export class SpeakingGate {
  private on = false;
  /** Since when the level has been below the off level while on (ms), null while above it. */
  private quietSince: number | null = null;

  get speaking(): boolean {
    return this.on;
  }

  /** Not speaking from now on (muted). */
  off(): void {
    this.on = false;
    this.quietSince = null;
  }

  /** Take one reading (`level` null: none to be had); returns whether the member speaks now. */
  update(level: number | null, muted: boolean, now: number): boolean {
    if (muted) {
      this.off();
      return false;
    }
    const value = level ?? 0;
    if (value >= SPEAKING_ON_LEVEL) {
      this.on = true;
      this.quietSince = null;
    } else if (this.on && value < SPEAKING_OFF_LEVEL) {
      this.quietSince ??= now;
      if (now - this.quietSince >= SPEAKING_HOLD_MS) {
        this.on = false;
        this.quietSince = null;
      }
    } else if (this.on) {
      // Between the two levels: still speaking, and the quiet spell starts over.
      this.quietSince = null;
    }
    return this.on;
  }
}

/** The loudest level among `pc`'s audio receivers' latest packets, or null when none carries one. */
export function receivedLevel(pc: RTCPeerConnection): number | null {
  let level: number | null = null;
  for (const receiver of pc.getReceivers()) {
    if (receiver.track.kind !== "audio" || typeof receiver.getSynchronizationSources !== "function") continue;
    for (const source of receiver.getSynchronizationSources()) {
      if (typeof source.audioLevel === "number") level = Math.max(level ?? 0, source.audioLevel);
    }
  }
  return level;
}

/** The level of the microphone `pc` sends (its `media-source` stats), or null without one. */
export async function sentLevel(pc: RTCPeerConnection): Promise<number | null> {
  const sender = pc.getSenders().find((s) => s.track?.kind === "audio");
  if (sender === undefined) return null;
  const report = await sender.getStats();
  let level: number | null = null;
  report.forEach((entry: { type?: string; kind?: string; audioLevel?: number }) => {
    if (entry.type === "media-source" && entry.kind === "audio" && typeof entry.audioLevel === "number") level = entry.audioLevel;
  });
  return level;
}
