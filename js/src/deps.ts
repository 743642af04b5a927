/**
 * What the Call needs from the page (the browser's media, the way to the signaller, the clock),
 * as one object the tests replace piece by piece.
 */
import { ScreenUnsupported } from "./errors";
import { openLocalMedia, type DeviceChoice, type LocalMedia } from "./media";
import { Peer, type PeerOptions } from "./peer";
import { KernelRouteTransport } from "./kernelroute";
import { KERNEL_ROUTE, candidateUrls, readBaseUrl } from "./route";
import { connectFirst, type ConnectOptions } from "./signaling";
import { openSocketIo } from "./socketio";
import { captureFrame, type Frame } from "./snapshot";
import type { SignalingTransport } from "./transport";
import type { FrameFormat, WidgetModel } from "./types";

export interface CallDeps {
  /** The signaller URLs to try, best first (route.ts). */
  routes(model: WidgetModel): string[];
  /**
   * The route trial: the first transport of `urls` that connects (signaling.ts's connectFirst,
   * each URL opened by `openRoute`).
   */
  connect(urls: readonly string[], options: ConnectOptions): Promise<SignalingTransport>;
  openMedia(signal: AbortSignal, choice: DeviceChoice): Promise<LocalMedia>;
  /** The browser's cameras and microphones, a fresh stream of one device, and its device changes. */
  devices: {
    enumerate(): Promise<Pick<MediaDeviceInfo, "deviceId" | "kind" | "label">[]>;
    getUserMedia(constraints: MediaStreamConstraints): Promise<MediaStream>;
    /** Call `listener` on every `devicechange`; returns the unsubscribe. */
    watch(listener: () => void): () => void;
  };
  createPeer(options: PeerOptions): Peer;
  /** How often the connections' quality is measured, in milliseconds. */
  statsIntervalMs: number;
  /** Milliseconds since the epoch, for chat times. */
  now(): number;
  /** Appended to the "can't reach the signaller" message: what the user should do. */
  unreachableHint: string;
  /**
   * Ask for the screen (getDisplayMedia). Called synchronously from the change of `screen`, so a
   * click on the view's button still counts as the user's gesture.
   */
  openScreen(): Promise<MediaStream>;
  /** The current frame of a stream's video (snapshot.ts); rejects with NoFrame. */
  captureFrame(stream: MediaStream, format: FrameFormat): Promise<Frame>;
  /**
   * A join token for `room` (a signaller started with a secret requires one), asked for before
   * every `enter`, so a re-entry gets a fresh one; undefined when there is none.
   */
  token(room: string): Promise<string | undefined>;
}

/**
 * A transport to one of the routes: the kernel route through the widget's kernel link for
 * `KERNEL_ROUTE` (route.ts lists it only for a widget without a `signaling_url`, never for the
 * standalone page), else Socket.IO to the URL.
 */
export function openRoute(url: string, options: ConnectOptions): SignalingTransport {
  if (url !== KERNEL_ROUTE) return openSocketIo(url, options.client, options.factory);
  if (options.kernel === undefined) throw new Error("no kernel to signal through");
  return new KernelRouteTransport(options.kernel);
}

function mediaDevices(): MediaDevices | undefined {
  return typeof navigator === "undefined" ? undefined : (navigator.mediaDevices as MediaDevices | undefined);
}

export const defaultDeps: CallDeps = {
  routes: (model) =>
    candidateUrls({
      signalingUrl: model.get("signaling_url"),
      route: model.get("route"),
      port: model.get("_port"),
      pageOrigin: location.origin,
      pageHostname: location.hostname,
      baseUrl: readBaseUrl(document),
    }),
  connect: (urls, options) => connectFirst(urls, { ...options, open: options.open ?? ((url) => openRoute(url, options)) }),
  openMedia: (signal, choice) =>
    openLocalMedia({ mediaDevices: mediaDevices(), isSecureContext: window.isSecureContext }, signal, choice),
  devices: {
    enumerate: async () => {
      const devices = mediaDevices();
      return typeof devices?.enumerateDevices === "function" ? devices.enumerateDevices() : [];
    },
    getUserMedia: (constraints) => navigator.mediaDevices.getUserMedia(constraints),
    watch: (listener) => {
      const devices = mediaDevices();
      if (typeof devices?.addEventListener !== "function") return () => undefined;
      devices.addEventListener("devicechange", listener);
      return () => devices.removeEventListener("devicechange", listener);
    },
  },
  createPeer: (options) => new Peer(options),
  statsIntervalMs: 1000,
  now: () => Date.now(),
  unreachableHint: "Is the kernel running? Re-run the cell that shows the room.",
  captureFrame,
  token: async () => undefined,
  openScreen: () => {
    const devices = mediaDevices();
    if (devices === undefined || typeof devices.getDisplayMedia !== "function") {
      return Promise.reject(new ScreenUnsupported());
    }
    return devices.getDisplayMedia({ video: true, audio: false });
  },
};
