/**
 * The local camera and microphone. Whatever goes wrong here, the call goes on receive-only: the
 * user still sees and hears the others, and gets a plain message saying what to do.
 */
import { MEDIA_MESSAGES } from "./errors";
import { facingOf } from "./facing";
import type { DeviceInfo } from "./types";

export type MediaProblem = "insecure_context" | "camera_denied" | "no_camera" | "camera_busy";

export interface MediaWarning {
  code: MediaProblem;
  message: string;
}

export interface LocalMedia {
  /** The local stream, or null when receive-only. */
  stream: MediaStream | null;
  /** Why some or all of the local media is missing, or null. */
  warning: MediaWarning | null;
}

/** What the page offers: `navigator.mediaDevices` (absent on insecure pages) and the context. */
export interface MediaEnvironment {
  mediaDevices: Pick<MediaDevices, "getUserMedia"> | undefined;
  isSecureContext: boolean;
}

export const CONSTRAINTS: MediaStreamConstraints = {
  audio: true,
  video: { width: 1280, height: 720 },
};

/** The messages of the problems above (errors.ts holds every error message). */
export const MESSAGES = MEDIA_MESSAGES;

/**
 * The devices chosen in `camera` / `microphone` ("" = the browser's default), and what the camera
 * is asked for: `video_size` ([width, height]) and `frame_rate` (null or absent: 1280x720 as
 * `CONSTRAINTS` says, at the camera's own rate).
 */
export interface DeviceChoice {
  camera: string;
  microphone: string;
  videoSize?: readonly [number, number] | null;
  frameRate?: number | null;
}

/**
 * The camera's size and frame rate as `ideal` constraints: the browser picks the mode nearest to
 * them (a camera that cannot gives what it has). For getUserMedia and for `applyConstraints` on
 * the live track.
 */
export function captureConstraints(choice: Pick<DeviceChoice, "videoSize" | "frameRate">): MediaTrackConstraints {
  const fallback = CONSTRAINTS.video as { width: number; height: number };
  const [width, height] = choice.videoSize ?? [fallback.width, fallback.height];
  const video: MediaTrackConstraints = { width: { ideal: width }, height: { ideal: height } };
  if (choice.frameRate) video.frameRate = { ideal: choice.frameRate };
  return video;
}

/**
 * The constraints for the chosen devices. `exact` when switching during a call (that device or an
 * error); `ideal` when joining, so a device remembered from another machine falls back to the
 * default instead of leaving the call without a camera.
 */
export function constraintsFor(choice: DeviceChoice, strict = false): MediaStreamConstraints {
  const pick = (id: string): ConstrainDOMString => (strict ? { exact: id } : { ideal: id });
  const video = captureConstraints(choice);
  return {
    audio: choice.microphone ? { deviceId: pick(choice.microphone) } : true,
    video: choice.camera ? { ...video, deviceId: pick(choice.camera) } : video,
  };
}

/** Raised when the request was cancelled (Hang up) while the browser was still asking. */
export class MediaAborted extends Error {
  constructor() {
    super("Opening the camera was cancelled.");
    this.name = "MediaAborted";
  }
}

/**
 * What a getUserMedia failure means: one of the problems, or "missing" when the device asked for
 * does not exist (worth retrying with fewer kinds). Legacy Chrome names are included.
 */
export function classifyMediaError(error: unknown): MediaProblem | "missing" {
  const name = error instanceof Error || isNamed(error) ? (error as { name: string }).name : "";
  switch (name) {
    case "NotAllowedError":
    case "PermissionDeniedError":
    case "SecurityError":
      return "camera_denied";
    case "NotFoundError":
    case "DevicesNotFoundError":
    case "OverconstrainedError":
    case "ConstraintNotSatisfiedError":
      return "missing";
    case "NotReadableError":
    case "TrackStartError":
    case "AbortError":
      return "camera_busy";
    case "TypeError":
      // getUserMedia is there but refuses to run, as on some insecure pages.
      return "insecure_context";
    default:
      return "camera_busy";
  }
}

/**
 * Open camera and microphone, falling back to audio only, then video only, then nothing. Never
 * rejects except with MediaAborted (then every track it opened is already stopped).
 */
export async function openLocalMedia(
  env: MediaEnvironment,
  signal?: AbortSignal,
  choice: DeviceChoice = { camera: "", microphone: "" },
): Promise<LocalMedia> {
  const devices = env.mediaDevices;
  if (!env.isSecureContext || devices === undefined || typeof devices.getUserMedia !== "function") {
    return receiveOnly("insecure_context");
  }
  const attempt = async (constraints: MediaStreamConstraints): Promise<MediaStream> => {
    const stream = await devices.getUserMedia(constraints);
    if (signal?.aborted) {
      stopStream(stream);
      throw new MediaAborted();
    }
    return stream;
  };
  const aborted = (): boolean => signal?.aborted === true;

  let problem: MediaProblem | "missing";
  try {
    const wanted = constraintsFor(choice);
    return { stream: await attempt(wanted), warning: null };
  } catch (error) {
    if (error instanceof MediaAborted) throw error;
    problem = classifyMediaError(error);
  }
  if (aborted()) throw new MediaAborted();
  if (problem !== "missing") return receiveOnly(problem);

  // One of the two kinds is missing: take what there is.
  const partial: [MediaStreamConstraints, "audio_only" | "video_only"][] = [
    [{ audio: constraintsFor(choice).audio ?? true, video: false }, "audio_only"],
    [{ audio: false, video: constraintsFor(choice).video ?? true }, "video_only"],
  ];
  for (const [constraints, which] of partial) {
    try {
      const stream = await attempt(constraints);
      return { stream, warning: { code: "no_camera", message: MESSAGES[which] } };
    } catch (error) {
      if (error instanceof MediaAborted) throw error;
      const again = classifyMediaError(error);
      if (again !== "missing") return receiveOnly(again);
    }
    if (aborted()) throw new MediaAborted();
  }
  return receiveOnly("no_camera");
}

export function stopStream(stream: MediaStream | null): void {
  for (const track of stream?.getTracks() ?? []) track.stop();
}

function receiveOnly(code: MediaProblem): LocalMedia {
  return { stream: null, warning: { code, message: MESSAGES[code] } };
}

function isNamed(value: unknown): value is { name: string } {
  return typeof value === "object" && value !== null && typeof (value as { name?: unknown }).name === "string";
}

/**
 * The cameras and microphones in `devices` (enumerateDevices), each once. Before permission the
 * ids are empty, and "default" / "communications" are aliases of the real devices: left out. A
 * camera that says which way it faces (phones) carries `facing`.
 */
export function listDevices(devices: readonly Pick<MediaDeviceInfo, "deviceId" | "kind" | "label">[]): {
  cameras: DeviceInfo[];
  microphones: DeviceInfo[];
} {
  const list = (kind: MediaDeviceKind): DeviceInfo[] => {
    const seen = new Set<string>();
    const out: DeviceInfo[] = [];
    for (const device of devices) {
      if (device.kind !== kind || device.deviceId === "" || seen.has(device.deviceId)) continue;
      if (device.deviceId === "default" || device.deviceId === "communications") continue;
      seen.add(device.deviceId);
      const facing = kind === "videoinput" ? facingOf(device) : "";
      out.push(facing ? { id: device.deviceId, label: device.label, facing } : { id: device.deviceId, label: device.label });
    }
    return out;
  };
  return { cameras: list("videoinput"), microphones: list("audioinput") };
}
