// @vitest-environment happy-dom
import { afterEach, describe as group, expect, it, vi } from "vitest";
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

  it("never names the widget's processor (room.process) as someone you are in a call with", () => {
    const processor = (connection: RTCPeerConnectionState = "connected"): RemotePeer =>
      remotePeer("kp1", { name: "Ada (processed)", connection });
    expect(describe("in_call", "lab", [processor()], "kp1")).toBe("In “lab” with your processed camera, waiting for others");
    expect(describe("in_call", "lab", [processor(), peer("Bea")], "kp1")).toBe("In a call in “lab” with Bea");
    expect(describe("in_call", "lab", [peer("Bea"), processor(), peer("Cy"), peer("Di")], "kp1")).toBe(
      "In a call in “lab” with Bea, Cy and Di",
    );
    expect(describe("in_call", "lab", [processor(), peer("Bea", "connecting")], "kp1")).toBe(
      "In “lab” with your processed camera, connecting to Bea…",
    );
    expect(describe("waiting", "lab", [processor("connecting"), peer("Bea", "connecting")], "kp1")).toBe(
      "In “lab”, connecting to your processed camera and Bea…",
    );
    // Another widget's processor is someone else's camera: named as its member is.
    expect(describe("in_call", "lab", [processor()], "kp2")).toBe("In a call in “lab” with Ada (processed)");
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

group("the status line of a processed camera", () => {
  it("follows `_processed_by` and the members", () => {
    const model = new PageModel({ room: "lab", state: "in_call" });
    const call = new WaitingCall();
    call.remotePeers = [remotePeer("kp1", { name: "Ada (processed)" })];
    const controls = new Controls("t", model, call);
    const status = controls.nodes.find((node) => node.dataset.testid === "status")!;
    expect(status.textContent).toBe("In a call in “lab” with Ada (processed)");
    model.set("_processed_by", "kp1");
    expect(status.textContent).toBe("In “lab” with your processed camera, waiting for others");
    controls.dispose();
  });
});

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

group("Switch camera", () => {
  afterEach(() => vi.unstubAllGlobals());

  const front = { id: "f", label: "Front", facing: "user" as const };
  const back = { id: "b", label: "Back", facing: "environment" as const };
  const find = (controls: Controls): HTMLButtonElement =>
    controls.nodes[0].querySelector<HTMLButtonElement>("[data-testid=switch-camera]")!;
  /** The page's main pointer: coarse (a phone) or not (a desktop). */
  const pointer = (coarse: boolean): void => {
    vi.stubGlobal("matchMedia", (query: string) => ({ matches: coarse && query === "(pointer: coarse)", media: query }));
  };

  it("is hidden on a desktop, even with two cameras that do not say which way they face", () => {
    pointer(false);
    const model = new PageModel({ cameras: [{ id: "a", label: "A" }, { id: "c", label: "C" }] });
    const controls = new Controls("t", model, new WaitingCall());
    expect(find(controls).hidden).toBe(true);
    controls.dispose();
  });

  it("shows for a front and a back camera; a tap writes the other one into `camera`, and back", () => {
    pointer(false);
    const model = new PageModel({ cameras: [front, back], camera: "f" });
    const controls = new Controls("t", model, new WaitingCall());
    const button = find(controls);
    expect(button.hidden).toBe(false);
    expect(button.textContent).toBe("Switch camera");
    expect(button.title).toBe("Use the camera facing the other way");
    button.click();
    expect(model.get("camera")).toBe("b");
    button.click();
    expect(model.get("camera")).toBe("f");
    controls.dispose();
  });

  it("on a touch device with two cameras, starts from the live camera when none is chosen", () => {
    pointer(true);
    const model = new PageModel({ cameras: [{ id: "a", label: "A" }, { id: "c", label: "C" }], camera: "" });
    const call = new WaitingCall();
    const track = { getSettings: () => ({ deviceId: "c" }) };
    (call as { localStream: unknown }).localStream = { getVideoTracks: () => [track], getAudioTracks: () => [] };
    const controls = new Controls("t", model, call);
    const button = find(controls);
    expect(button.hidden).toBe(false);
    expect(button.title).toBe("Use your next camera");
    button.click();
    expect(model.get("camera")).toBe("a");
    // A camera unplugged: one left, the button goes.
    model.set("cameras", [{ id: "a", label: "A" }]);
    expect(button.hidden).toBe(true);
    controls.dispose();
  });
});
