// @vitest-environment happy-dom
import { describe, expect, it } from "vitest";
import { remotePeer } from "../harness";
import { Tile, initial } from "./tile";

describe("initial", () => {
  it("takes the first letter, upper case, or a question mark", () => {
    expect(initial("ada")).toBe("A");
    expect(initial("  émile")).toBe("É");
    expect(initial("😀 smile")).toBe("😀");
    expect(initial("")).toBe("?");
  });
});

describe("Tile's speaking mark", () => {
  it("rings a speaking member, faintly the last to speak once quiet, and never a muted one", () => {
    const tile = new Tile("a");
    tile.update(remotePeer("a", { speaking: true, lastSpeaker: true }));
    expect(tile.root.dataset.speaking).toBe("true");
    expect(tile.root.classList.contains("ipymeet-tile-speaking")).toBe(true);
    tile.update(remotePeer("a", { speaking: false, lastSpeaker: true }));
    expect(tile.root.dataset.speaking).toBe("false");
    expect(tile.root.classList.contains("ipymeet-tile-speaking")).toBe(false);
    expect(tile.root.classList.contains("ipymeet-tile-last-speaker")).toBe(true);
    tile.update(remotePeer("a", { speaking: true, audio: false }));
    expect(tile.root.dataset.speaking).toBe("false");
    expect(tile.root.classList.contains("ipymeet-tile-speaking")).toBe(false);
  });
});
