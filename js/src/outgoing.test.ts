import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { FakeMediaStream, FakeTrack, inRoom, settle, setup } from "./harness";

// The Call logs failed steps with console.warn for developers; keep the test output readable.
beforeEach(() => {
  vi.spyOn(console, "warn").mockImplementation(() => undefined);
});
afterEach(() => {
  vi.restoreAllMocks();
});

describe("Outgoing: mute flags", () => {
  it("tells each peer its mute flags when the channel opens and on every change", async () => {
    const { model, peers } = await inRoom(["a"]);
    const [a] = peers;
    a!.open();
    expect(a!.sentMessages()).toEqual([{ t: "state", audio: true, video: true, screen: false }]);
    model.set("video", false);
    model.set("video", false);
    model.set("audio", false);
    expect(a!.sentMessages().slice(1)).toEqual([
      { t: "state", audio: true, video: false, screen: false },
      { t: "state", audio: false, video: false, screen: false },
    ]);
  });
});

describe("Outgoing: screen sharing", () => {
  class ScreenTrack extends FakeTrack {
    private readonly ended = new Set<() => void>();
    constructor() {
      super("video");
    }
    addEventListener(_event: string, listener: () => void) {
      this.ended.add(listener);
    }
    end() {
      for (const listener of this.ended) listener();
    }
  }
  beforeEach(() => {
    vi.stubGlobal("MediaStream", FakeMediaStream);
  });
  afterEach(() => {
    vi.unstubAllGlobals();
  });

  it("sends the screen instead of the camera with replaceTrack, tells the others, and goes back", async () => {
    const screen = new ScreenTrack();
    const { model, peers, tracks, call } = await inRoom(["a"], {
      openScreen: async () => new FakeMediaStream([screen]) as unknown as MediaStream,
    });
    peers[0]!.open();
    model.set("screen", true);
    await settle();
    expect(call.sharingScreen).toBe(true);
    expect(peers[0]!.replaced).toEqual([["video", screen]]);
    expect(call.localStream!.getVideoTracks()).toEqual([screen]);
    expect(peers[0]!.sentMessages().at(-1)).toEqual({ t: "state", audio: true, video: true, screen: true });
    // The user ends the share from the browser's bar: the camera again, and `_screen_ended` says so.
    screen.end();
    const camera = tracks.find((t) => t.kind === "video");
    expect(peers[0]!.replaced.at(-1)).toEqual(["video", camera]);
    expect(model.get("_screen_ended")).toBe(1);
    expect(screen.stopped).toBe(true);
    expect(camera!.stopped).toBe(false);
    expect(peers[0]!.sentMessages().at(-1)).toEqual({ t: "state", audio: true, video: true, screen: false });
  });

  it("reports a refused share as screen_denied and in `_screen_ended`, leaving `screen` to Python", async () => {
    const { model, call } = await inRoom(["a"], {
      openScreen: async () => {
        throw Object.assign(new Error("denied"), { name: "NotAllowedError" });
      },
    });
    model.set("screen", true);
    await settle();
    expect(call.sharingScreen).toBe(false);
    expect(model.get("_screen_ended")).toBe(1);
    expect(model.get("screen")).toBe(true); // the intent is Python's (or the page's) to set back
    expect(model.get("error_code")).toBe("screen_denied");
    expect(model.get("error")).toMatch(/not allowed/);
  });

  it("stops the screen on hang up", async () => {
    const screen = new ScreenTrack();
    const { model } = await inRoom(["a"], { openScreen: async () => new FakeMediaStream([screen]) as unknown as MediaStream });
    model.set("screen", true);
    await settle();
    model.set("_desired", false);
    await settle();
    expect(screen.stopped).toBe(true);
    expect(model.get("_screen_ended")).toBe(1);
  });
});

describe("Outgoing: choosing devices", () => {
  beforeEach(() => {
    vi.stubGlobal("MediaStream", FakeMediaStream);
  });
  afterEach(() => {
    vi.unstubAllGlobals();
  });

  const listed = [
    { deviceId: "default", kind: "audioinput", label: "Default" },
    { deviceId: "m1", kind: "audioinput", label: "Mic 1" },
    { deviceId: "c1", kind: "videoinput", label: "Cam 1" },
    { deviceId: "c2", kind: "videoinput", label: "" },
    { deviceId: "s1", kind: "audiooutput", label: "Speaker" },
  ] as MediaDeviceInfo[];

  it("lists cameras and microphones, again on devicechange", async () => {
    let changed = () => undefined as void;
    const { model } = setup({
      devices: { enumerate: async () => listed, getUserMedia: () => Promise.reject(new Error("no")), watch: (l) => ((changed = l), () => undefined) },
    });
    await settle();
    expect(model.get("cameras")).toEqual([{ id: "c1", label: "Cam 1" }, { id: "c2", label: "" }]);
    expect(model.get("microphones")).toEqual([{ id: "m1", label: "Mic 1" }]);
    listed.push({ deviceId: "m2", kind: "audioinput", label: "Mic 2" } as MediaDeviceInfo);
    changed();
    await settle();
    expect(model.get("microphones")).toEqual([{ id: "m1", label: "Mic 1" }, { id: "m2", label: "Mic 2" }]);
    listed.pop();
  });

  it("switches the camera in a call: exact device, replaceTrack everywhere, old track stopped, mute kept", async () => {
    const asked: MediaStreamConstraints[] = [];
    const fresh = new FakeTrack("video");
    const { model, peers, tracks, call } = await inRoom(["a", "b"], {
      devices: {
        enumerate: async () => [],
        getUserMedia: async (constraints) => {
          asked.push(constraints);
          return new FakeMediaStream([fresh]) as unknown as MediaStream;
        },
        watch: () => () => undefined,
      },
    });
    model.set("video", false);
    model.set("camera", "c2");
    await settle();
    expect(asked).toEqual([{ video: expect.objectContaining({ deviceId: { exact: "c2" } }) }]);
    expect(peers.map((p) => p.replaced)).toEqual([[["video", fresh]], [["video", fresh]]]);
    expect(tracks.find((t) => t.kind === "video")!.stopped).toBe(true);
    expect(tracks.find((t) => t.kind === "audio")!.stopped).toBe(false);
    expect(fresh.enabled).toBe(false);
    expect(call.localStream!.getTracks()).toEqual([tracks.find((t) => t.kind === "audio"), fresh]);
  });

  it("gives the live camera a new video_size and frame_rate in a call, then refits every sender", async () => {
    const asked: MediaStreamConstraints[] = [];
    const { model, peers, tracks } = await inRoom(["a", "b"], {
      devices: { enumerate: async () => [], getUserMedia: async (c) => (asked.push(c), Promise.reject(new Error("no"))), watch: () => () => undefined },
    });
    model.set("video_size", [640, 480]);
    await settle();
    model.set("frame_rate", 15);
    await settle();
    const camera = tracks.find((t) => t.kind === "video")!;
    expect(camera.applied.at(-1)).toEqual({ width: { ideal: 640 }, height: { ideal: 480 }, frameRate: { ideal: 15 } });
    expect(asked).toEqual([]); // the same track: no new camera, the call goes on
    expect(camera.stopped).toBe(false);
    expect(peers.map((p) => p.refits)).toEqual([2, 2]);
  });

  it("keeps the old device and says so when the new one fails", async () => {
    const { model, peers, tracks } = await inRoom(["a"], {
      devices: {
        enumerate: async () => [],
        getUserMedia: async () => {
          throw Object.assign(new Error("gone"), { name: "OverconstrainedError" });
        },
        watch: () => () => undefined,
      },
    });
    model.set("microphone", "m9");
    await settle();
    expect(peers[0]!.replaced).toEqual([]);
    expect(tracks.every((t) => !t.stopped)).toBe(true);
    expect(model.get("error_code")).toBe("no_camera");
    expect(model.get("error")).toBe("That microphone was not found. Pick another one.");
  });
});
