// @vitest-environment happy-dom
import { describe as group, expect, it } from "vitest";
import type { CallTopic, RemotePeer } from "../call";
import { remotePeer } from "../harness";
import { PageModel } from "../page";
import { Controls, WAITING_FOR_KERNEL, describe } from "./controls";
import type { CallSource } from "./source";

const peer = (name: string, connection: RTCPeerConnectionState = "connected"): RemotePeer =>
  remotePeer(name, { connection });

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

/** The Call as the controls read it, waiting on its kernel or not. */
class WaitingCall implements CallSource {
  localStream = null;
  sharingScreen = false;
  remotePeers: RemotePeer[] = [];
  messages = [];
  canChat = false;
  waitingForKernel = false;
  private readonly listeners = new Set<{ topic: CallTopic; listener: () => void }>();
  sendChat(): boolean {
    return false;
  }
  subscribe(topic: CallTopic, listener: () => void): () => void {
    const entry = { topic, listener };
    this.listeners.add(entry);
    return () => this.listeners.delete(entry);
  }
  wait(waiting: boolean): void {
    this.waitingForKernel = waiting;
    for (const entry of [...this.listeners]) if (entry.topic === "kernel") entry.listener();
  }
}

group("the status line while the kernel runs a cell", () => {
  it("says why the call waits while the Call waits on its kernel, and the route once connected", () => {
    const model = new PageModel({ room: "lab", state: "joining" });
    const call = new WaitingCall();
    const controls = new Controls("t", model, call);
    const status = controls.nodes.find((node) => node.dataset.testid === "status")!;
    expect(status.textContent).toBe("Joining “lab”…");
    call.wait(true);
    expect(status.textContent).toBe(WAITING_FOR_KERNEL);
    expect(WAITING_FOR_KERNEL).toBe("Waiting for the kernel: a cell is running; the call connects when it ends");
    call.wait(false);
    model.set("connected_via", "kernel");
    model.set("state", "waiting");
    expect(status.textContent).toBe("In “lab”, waiting for othersvia kernel");
    expect(status.querySelector(".ipymeet-status-via")!.textContent).toBe("via kernel");
    // Not in a call (it ended meanwhile): nothing to wait for.
    call.wait(true);
    model.set("state", "idle");
    expect(status.textContent).toBe("Not connected");
    controls.dispose();
  });
});
