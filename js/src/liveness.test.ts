import { describe, expect, it } from "vitest";
import { judge, type LivenessAction, type LivenessEvent, type MemberFacts } from "./liveness";

const facts = (present: boolean, channelClosed: boolean, connection: RTCPeerConnectionState): MemberFacts => ({
  present,
  channelClosed,
  connection,
});

describe("judge", () => {
  // [what happened, present, channel closed by the other page, connection state, verdict]
  const table: [LivenessEvent, boolean, boolean, RTCPeerConnectionState, LivenessAction][] = [
    [{ type: "peer_left", reason: "left" }, true, false, "connected", "remove"],
    [{ type: "peer_left", reason: "disconnected" }, false, false, "connected", "probe"],
    // It answers: kept whatever else is known (ICE restarts if its connection is down).
    [{ type: "probed", answered: true }, false, true, "connected", "recover"],
    [{ type: "probed", answered: true }, true, false, "disconnected", "recover"],
    // Gone from the room, no answer: its tab closed the connection, or it crashed / moved.
    [{ type: "probed", answered: false }, false, true, "connected", "remove"],
    [{ type: "probed", answered: false }, false, true, "failed", "remove"],
    [{ type: "probed", answered: false }, false, false, "connected", "hide"],
    // Gone from the room, no answer, its connection down: the network may be at fault.
    [{ type: "probed", answered: false }, false, false, "disconnected", "recover"],
    // Still in the room (this page entered again) but its channel closed: it gave us up.
    [{ type: "probed", answered: false }, true, true, "connected", "replace"],
    [{ type: "probed", answered: false }, true, false, "connected", "recover"],
    [{ type: "probed", answered: false }, true, false, "failed", "recover"],
    [{ type: "gave_up" }, true, false, "failed", "replace"],
    [{ type: "gave_up" }, false, false, "failed", "remove"],
    [{ type: "channel_closed" }, true, true, "connected", "keep"],
    [{ type: "channel_closed" }, false, true, "connected", "remove"],
    [{ type: "linger_over" }, true, false, "connected", "keep"],
    [{ type: "linger_over" }, false, false, "connected", "remove"],
  ];

  it.each(table)("%j (present %s, channel closed %s, %s) → %s", (event, present, closed, connection, action) => {
    expect(judge(event, facts(present, closed, connection)).action).toBe(action);
  });

  it("says why, for the console", () => {
    expect(judge({ type: "probed", answered: false }, facts(false, false, "connected")).reason).toBe(
      "out of view: no answer, connection up",
    );
    expect(judge({ type: "peer_left", reason: "left" }, facts(true, false, "connected")).reason).toBe("gone: hung up");
  });
});
