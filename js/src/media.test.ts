import { describe, expect, it } from "vitest";
import { MESSAGES, MediaAborted, captureConstraints, classifyMediaError, constraintsFor, openLocalMedia, type MediaEnvironment } from "./media";

const named = (name: string) => new DOMException("nope", name);

class FakeTrack {
  stopped = false;
  constructor(readonly kind: string) {}
  stop() {
    this.stopped = true;
  }
}

function fakeStream(...kinds: string[]) {
  const tracks = kinds.map((kind) => new FakeTrack(kind));
  return { stream: { getTracks: () => tracks } as unknown as MediaStream, tracks };
}

/** getUserMedia that answers each call with the next outcome, recording the constraints. */
function devices(outcomes: (MediaStream | Error)[]) {
  const asked: MediaStreamConstraints[] = [];
  const mediaDevices = {
    getUserMedia: async (constraints?: MediaStreamConstraints) => {
      asked.push(constraints ?? {});
      const outcome = outcomes.shift();
      if (outcome === undefined) throw new Error("unexpected call");
      if (outcome instanceof Error) throw outcome;
      return outcome;
    },
  };
  return { env: { mediaDevices, isSecureContext: true } as MediaEnvironment, asked };
}

describe("classifyMediaError", () => {
  it.each([
    ["NotAllowedError", "camera_denied"],
    ["SecurityError", "camera_denied"],
    ["NotFoundError", "missing"],
    ["OverconstrainedError", "missing"],
    ["NotReadableError", "camera_busy"],
    ["AbortError", "camera_busy"],
  ])("%s → %s", (name, code) => {
    expect(classifyMediaError(named(name))).toBe(code);
  });

  it("treats anything unknown as a device that could not start", () => {
    expect(classifyMediaError("weird")).toBe("camera_busy");
  });
});

describe("openLocalMedia", () => {
  it("asks for 720p video and sound", async () => {
    const { stream } = fakeStream("audio", "video");
    const { env, asked } = devices([stream]);
    expect(await openLocalMedia(env)).toEqual({ stream, warning: null });
    expect(asked).toEqual([{ audio: true, video: { width: { ideal: 1280 }, height: { ideal: 720 } } }]);
  });

  it("is receive-only on an insecure page", async () => {
    const result = await openLocalMedia({ mediaDevices: undefined, isSecureContext: false });
    expect(result).toEqual({ stream: null, warning: { code: "insecure_context", message: MESSAGES.insecure_context } });
    const { env, asked } = devices([]);
    expect((await openLocalMedia({ ...env, isSecureContext: false })).warning?.code).toBe("insecure_context");
    expect(asked).toEqual([]);
  });

  it("is receive-only when the user blocks the camera, without retrying", async () => {
    const { env, asked } = devices([named("NotAllowedError")]);
    const result = await openLocalMedia(env);
    expect(result.stream).toBeNull();
    expect(result.warning?.code).toBe("camera_denied");
    expect(result.warning?.message).toMatch(/site settings.*Hang up and Connect again/);
    expect(asked).toHaveLength(1);
  });

  it("falls back to sound only when there is no camera", async () => {
    const { stream } = fakeStream("audio");
    const { env, asked } = devices([named("NotFoundError"), stream]);
    const result = await openLocalMedia(env);
    expect(result.stream).toBe(stream);
    expect(result.warning).toEqual({ code: "no_camera", message: MESSAGES.audio_only });
    expect(asked[1]).toEqual({ audio: true, video: false });
  });

  it("then to video only, then to nothing", async () => {
    const { stream } = fakeStream("video");
    const video = devices([named("NotFoundError"), named("NotFoundError"), stream]);
    expect((await openLocalMedia(video.env)).warning?.message).toBe(MESSAGES.video_only);

    const none = devices([named("NotFoundError"), named("NotFoundError"), named("NotFoundError")]);
    expect(await openLocalMedia(none.env)).toEqual({
      stream: null,
      warning: { code: "no_camera", message: "No camera or microphone was found. You joined receive-only." },
    });
  });

  it("reports a busy camera", async () => {
    const { env } = devices([named("NotReadableError")]);
    expect((await openLocalMedia(env)).warning?.code).toBe("camera_busy");
  });

  it("stops a stream that arrives after a Hang up", async () => {
    const { stream, tracks } = fakeStream("audio", "video");
    const abort = new AbortController();
    const mediaDevices = {
      getUserMedia: async () => {
        abort.abort(); // the user hangs up while the browser is still asking
        return stream;
      },
    };
    await expect(openLocalMedia({ mediaDevices, isSecureContext: true }, abort.signal)).rejects.toBeInstanceOf(MediaAborted);
    expect(tracks.every((track) => track.stopped)).toBe(true);
  });
});

describe("captureConstraints", () => {
  it("asks for video_size and frame_rate as ideal constraints, 1280x720 at the camera's rate by default", () => {
    expect(captureConstraints({})).toEqual({ width: { ideal: 1280 }, height: { ideal: 720 } });
    expect(captureConstraints({ videoSize: null, frameRate: null })).toEqual({ width: { ideal: 1280 }, height: { ideal: 720 } });
    expect(captureConstraints({ videoSize: [320, 240], frameRate: 15 })).toEqual({
      width: { ideal: 320 },
      height: { ideal: 240 },
      frameRate: { ideal: 15 },
    });
  });

  it("goes into getUserMedia's video constraints with the chosen camera", () => {
    expect(constraintsFor({ camera: "c1", microphone: "", videoSize: [640, 480], frameRate: 30 }, true).video).toEqual({
      width: { ideal: 640 },
      height: { ideal: 480 },
      frameRate: { ideal: 30 },
      deviceId: { exact: "c1" },
    });
  });
});

describe("constraintsFor", () => {
  it("asks for the chosen devices: ideal when joining, exact when switching, the default for \"\"", () => {
    expect(constraintsFor({ camera: "", microphone: "" })).toEqual({ audio: true, video: captureConstraints({}) });
    expect(constraintsFor({ camera: "c1", microphone: "m1" })).toEqual({
      audio: { deviceId: { ideal: "m1" } },
      video: { ...captureConstraints({}), deviceId: { ideal: "c1" } },
    });
    expect(constraintsFor({ camera: "c1", microphone: "" }, true)).toEqual({
      audio: true,
      video: { ...captureConstraints({}), deviceId: { exact: "c1" } },
    });
  });
});
