/**
 * Snapshots: one frame of a video, for the kernel (`room.snapshot()` / `room.snapshot_png()`).
 *
 * The frame is taken from the stream itself, not from a view's <video>: an offscreen video
 * element plays the stream's video track and is drawn onto a canvas at the video's native size.
 * It goes back to the kernel once, by the path the request names (`via`): as a binary custom
 * message (read by the kernel between cells), or through the signaller in chunks (read even while
 * a cell runs: server/core/frames.py).
 */
import type { FrameFormat, FrameMessage, SnapshotRequest } from "./types";

/** Largest chunk the signaller accepts (MAX_CHUNK_BYTES in server/core/frames.py). */
export const MAX_CHUNK_BYTES = 192 * 1024;
/** How long a video may take to show its first frame. */
export const FIRST_FRAME_TIMEOUT_MS = 5000;

export interface Frame {
  width: number;
  height: number;
  format: FrameFormat;
  /** RGBA rows (width×height×4) or a PNG file; the view covers its whole buffer. */
  bytes: Uint8Array;
}

/** Why no frame was taken, in words for the kernel's exception. */
export class NoFrame extends Error {
  constructor(message: string) {
    super(message);
    this.name = "NoFrame";
  }
}

/** The bytes as an ArrayBuffer of exactly their length (a copy only when the view is partial). */
export function exactBuffer(bytes: Uint8Array): ArrayBuffer {
  if (bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength && bytes.buffer instanceof ArrayBuffer) {
    return bytes.buffer;
  }
  return bytes.slice().buffer as ArrayBuffer;
}

/** Split `bytes` into chunks of at most `max` bytes; always at least one (maybe empty) chunk. */
export function chunkBytes(bytes: Uint8Array, max = MAX_CHUNK_BYTES): ArrayBuffer[] {
  if (!(max > 0)) throw new RangeError("chunk size must be positive");
  const chunks: ArrayBuffer[] = [];
  for (let start = 0; start < bytes.byteLength; start += max) {
    chunks.push(bytes.slice(start, Math.min(start + max, bytes.byteLength)).buffer as ArrayBuffer);
  }
  if (chunks.length === 0) chunks.push(new ArrayBuffer(0));
  return chunks;
}

/** Where an upload goes: the call's signalling connection (no acknowledgements). */
export interface FrameSink {
  emit(event: "frame", meta: Record<string, unknown>, chunk?: ArrayBuffer): unknown;
}

/**
 * How fast chunks go out: the signaller allows a connection 50 events a second and bursts of 200
 * (docs/protocol.md), and the call's own signals share them. A 1280×720 frame (19 chunks) goes at once;
 * a 4K one (169) sends its first `burst` at once, then `perSecond`, below the refill.
 */
export const UPLOAD_PACE = { burst: 100, perSecond: 40 };

/**
 * Send `frame` as `frame` events of at most `max` bytes each, paced (`UPLOAD_PACE`); resolves
 * with the number of chunks once all are sent. Stops early if the sink says it is closed.
 */
export async function uploadFrame(
  sink: FrameSink,
  id: string,
  frame: Frame,
  max = MAX_CHUNK_BYTES,
  pace = UPLOAD_PACE,
): Promise<number> {
  const chunks = chunkBytes(frame.bytes, max);
  const count = chunks.length;
  for (const [index, chunk] of chunks.entries()) {
    if (index >= pace.burst) await new Promise((resolve) => setTimeout(resolve, 1000 / pace.perSecond));
    const meta = { id, index, count, width: frame.width, height: frame.height, format: frame.format };
    if (sink.emit("frame", meta, chunk) === false) break;
  }
  return count;
}

/** Tell the signaller that no frame comes: `frame` event `{id, error}`. */
export function uploadError(sink: FrameSink, id: string, error: string): void {
  sink.emit("frame", { id, error });
}

/** The two ways back to the kernel. */
export interface SnapshotPaths {
  /** One custom message through the widget's comm, its bytes in one buffer. */
  comm(message: FrameMessage, buffers?: ArrayBuffer[]): void;
  /** The call's signalling connection, null when there is none (not in a call). */
  signaller: FrameSink | null;
  /** True once the answer should no longer be sent (the widget is gone). */
  closed(): boolean;
}

/**
 * Take the frame `request` asks for with `take` and answer it by the path it names, only by it:
 * "signaller", `frame` events in chunks (or `{id, error}`); "comm", one `FrameMessage`. Without
 * a signalling connection (not in a call) the answer, an error then, can only go by comm.
 */
export async function answerSnapshot(
  { id, peer, format, via }: SnapshotRequest,
  take: (peer: string | null, format: FrameFormat) => Promise<Frame>,
  paths: SnapshotPaths,
): Promise<void> {
  const sink = via === "signaller" ? paths.signaller : null;
  let frame: Frame;
  try {
    frame = await take(peer, format);
  } catch (error) {
    const reason = error instanceof NoFrame ? error.message : `the frame could not be taken (${String(error)})`;
    if (!(error instanceof NoFrame)) console.warn("ipymeet: a snapshot failed", error);
    if (paths.closed()) return;
    if (sink !== null) uploadError(sink, id, reason);
    else paths.comm({ type: "frame", id, error: reason });
    return;
  }
  if (paths.closed()) return;
  if (sink !== null) {
    await uploadFrame(sink, id, frame);
    return;
  }
  paths.comm({ type: "frame", id, width: frame.width, height: frame.height, format }, [exactBuffer(frame.bytes)]);
}

/**
 * The current frame of `stream`'s (first live) video track. Rejects with NoFrame when there is no
 * video or it shows no frame in time.
 */
export async function captureFrame(stream: MediaStream, format: FrameFormat): Promise<Frame> {
  const track = stream.getVideoTracks().find((t) => t.readyState === "live");
  if (track === undefined) throw new NoFrame("there is no video");
  const video = document.createElement("video");
  video.muted = true;
  video.playsInline = true;
  video.srcObject = new MediaStream([track]);
  try {
    await firstFrame(video);
    const width = video.videoWidth;
    const height = video.videoHeight;
    const canvas = document.createElement("canvas");
    canvas.width = width;
    canvas.height = height;
    const context = canvas.getContext("2d", { willReadFrequently: format === "rgba" });
    if (context === null) throw new NoFrame("this browser cannot draw a frame (no 2D canvas)");
    context.drawImage(video, 0, 0, width, height);
    if (format === "rgba") {
      const data = context.getImageData(0, 0, width, height).data;
      return { width, height, format, bytes: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) };
    }
    const blob = await new Promise<Blob | null>((resolve) => canvas.toBlob(resolve, "image/png"));
    if (blob === null) throw new NoFrame("the frame could not be encoded as PNG");
    return { width, height, format, bytes: new Uint8Array(await blob.arrayBuffer()) };
  } finally {
    video.pause();
    video.srcObject = null;
  }
}

/** Play `video` until it has a frame of known size. */
async function firstFrame(video: HTMLVideoElement): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      cleanup();
      reject(new NoFrame(`no video frame arrived within ${FIRST_FRAME_TIMEOUT_MS / 1000} s`));
    }, FIRST_FRAME_TIMEOUT_MS);
    const check = (): void => {
      if (video.readyState >= HTMLMediaElement.HAVE_CURRENT_DATA && video.videoWidth > 0 && video.videoHeight > 0) {
        cleanup();
        resolve();
      }
    };
    const events = ["loadeddata", "resize", "playing", "timeupdate"];
    const cleanup = (): void => {
      clearTimeout(timer);
      for (const event of events) video.removeEventListener(event, check);
    };
    for (const event of events) video.addEventListener(event, check);
    video.play().then(check, () => undefined);
    check();
  });
}
