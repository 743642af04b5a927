import { describe as group, expect, it } from "vitest";
import type { RemotePeer } from "../call";
import { describe } from "./controls";

const peer = (name: string, connection: RTCPeerConnectionState = "connected"): RemotePeer => ({
  id: name,
  name,
  connection,
  away: false,
  stream: null,
  audio: true,
  video: true,
  screen: false,
  stats: null,
});

group("describe (the status line)", () => {
  it("names the connected members, three at most", () => {
    expect(describe("in_call", "lab", [peer("Bea"), peer("Cy", "connecting")])).toBe("In a call in “lab” with Bea");
    expect(describe("in_call", "lab", [peer("Bea"), peer("Cy"), peer("")])).toBe("In a call in “lab” with Bea, Cy and a guest");
    expect(describe("in_call", "lab", ["A", "B", "C", "D", "E"].map((n) => peer(n)))).toBe("In a call in “lab” with A, B and 3 others");
  });

  it("says what the page waits for", () => {
    expect(describe("waiting", "lab", [])).toBe("In “lab”, waiting for others");
    expect(describe("waiting", "lab", [peer("Bea", "connecting")])).toBe("In “lab”, connecting to Bea…");
    expect(describe("joining", "lab", [])).toBe("Joining “lab”…");
    expect(describe("idle", "lab", [])).toBe("Not connected");
  });
});
