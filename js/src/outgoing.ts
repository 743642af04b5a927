/**
 * What this page sends in one call: the camera and microphone (muted as `audio` / `video` say,
 * switched as `camera` / `microphone` say) or the screen instead of the camera (`screen`), and
 * the mute flags that tell the others. One `Outgoing` per session; `close()` stops every track.
 */
import { screenMessage, switchFailure } from "./errors";
import { captureConstraints, classifyMediaError, constraintsFor, stopStream, type DeviceChoice } from "./media";
import type { Members } from "./members";
import type { Model, StatePeerMessage, WidgetModel } from "./types";

export interface OutgoingHost {
  readonly model: WidgetModel;
  readonly members: Members;
  /** A fresh stream of one device (a switch during the call). */
  getUserMedia(constraints: MediaStreamConstraints): Promise<MediaStream>;
  /** Ask for the screen (getDisplayMedia); called synchronously from the change of `screen`. */
  openScreen(): Promise<MediaStream>;
  /** Show a problem (`error`, `error_code`). */
  report(patch: Partial<Model>): void;
  /** The stream sent and previewed, or the share, changed. */
  changed(): void;
  /** The share stopped, or was refused, without the person asking: `error` is why, if it failed. */
  screenEnded(error?: string): void;
}

/** The devices chosen in the model. */
export function deviceChoice(model: WidgetModel): DeviceChoice {
  return {
    camera: model.get("camera") ?? "",
    microphone: model.get("microphone") ?? "",
    videoSize: model.get("video_size") ?? null,
    frameRate: model.get("frame_rate") ?? null,
  };
}

export class Outgoing {
  private readonly host: OutgoingHost;
  /** The camera and microphone, as opened (null until then, or receive-only). */
  private stream: MediaStream | null = null;
  /** The screen's video track while it is shared (sent instead of the camera's), else null. */
  private screen: MediaStreamTrack | null = null;
  /** A screen asked for and not answered yet. */
  private screenPending = false;
  /** The stream sent and previewed while sharing: the microphone plus the screen (made lazily). */
  private shared: MediaStream | null = null;
  /** The mute flags last sent to the others, so a change is sent once. */
  private sentFlags = "";
  /** One number per kind, raised by each device switch: a switch overtaken by a newer one gives up. */
  private readonly switches = { audio: 0, video: 0 };
  private closed = false;

  constructor(host: OutgoingHost) {
    this.host = host;
  }

  /** The camera and microphone as opened (what a snapshot of the own video takes). */
  get camera(): MediaStream | null {
    return this.stream;
  }

  /** What this page sends and previews: the camera and microphone, or the screen instead. */
  get current(): MediaStream | null {
    if (this.screen === null) return this.stream;
    this.shared ??= new MediaStream([...(this.stream?.getAudioTracks() ?? []), this.screen]);
    return this.shared;
  }

  get sharing(): boolean {
    return this.screen !== null;
  }

  /** The camera and microphone are open (null: receive-only). */
  take(stream: MediaStream | null): void {
    if (this.closed) {
      stopStream(stream);
      return;
    }
    this.stream = stream;
    this.shared = null;
    this.applyMute();
  }

  /** What the others should show of us: a missing device counts as off. */
  flags(): StatePeerMessage {
    const model = this.host.model;
    const sharing = this.screen !== null;
    return {
      t: "state",
      audio: model.get("audio") && (this.stream?.getAudioTracks().length ?? 0) > 0,
      video: model.get("video") && (sharing || (this.stream?.getVideoTracks().length ?? 0) > 0),
      screen: sharing,
    };
  }

  /** Follow `audio` / `video`: the tracks' `enabled`, and the flags to everyone once changed. */
  applyMute(): void {
    if (this.closed || (this.stream === null && this.screen === null)) return;
    const model = this.host.model;
    for (const track of this.stream?.getAudioTracks() ?? []) track.enabled = model.get("audio");
    for (const track of this.stream?.getVideoTracks() ?? []) track.enabled = model.get("video");
    if (this.screen !== null) this.screen.enabled = model.get("video");
    const flags = JSON.stringify(this.flags());
    if (flags !== this.sentFlags) {
      this.sentFlags = flags;
      this.host.members.broadcast(flags);
    }
    this.host.changed();
  }

  // -- the screen ----------------------------------------------------------------------------------

  /** Follow `screen`: share (getDisplayMedia, at once: the click's gesture) or go back to the camera. */
  applyScreen(): void {
    if (this.closed) return;
    const model = this.host.model;
    if (model.get("screen") !== true) {
      this.stopScreen();
      return;
    }
    if (this.screen !== null || this.screenPending) return;
    this.screenPending = true;
    let asked: Promise<MediaStream>;
    try {
      asked = this.host.openScreen();
    } catch (error) {
      asked = Promise.reject(error);
    }
    asked.then(
      (stream) => {
        this.screenPending = false;
        const track = stream.getVideoTracks()[0];
        if (this.closed || model.get("screen") !== true || track === undefined) {
          stopStream(stream);
          if (!this.closed && track === undefined) this.screenFailed(new Error("no video track"));
          return;
        }
        for (const other of stream.getTracks()) if (other !== track) other.stop();
        this.screen = track;
        track.enabled = model.get("video");
        // The user ended the share from the browser's own bar ("Stop sharing").
        track.addEventListener("ended", () => {
          if (this.closed || this.screen !== track) return;
          this.stopScreen();
          this.host.screenEnded();
        });
        this.sendVideo();
      },
      (error: unknown) => {
        this.screenPending = false;
        if (!this.closed) this.screenFailed(error);
      },
    );
  }

  private screenFailed(error: unknown): void {
    console.warn("ipymeet: screen sharing failed", error);
    this.host.screenEnded(screenMessage(error));
  }

  private stopScreen(): void {
    const track = this.screen;
    if (track === null) return;
    this.screen = null;
    track.stop();
    this.sendVideo();
  }

  /** Every connection sends the current video (the screen or the camera) instead: replaceTrack. */
  private sendVideo(): void {
    this.shared = null;
    const track = this.screen ?? this.stream?.getVideoTracks()[0] ?? null;
    void this.host.members.replaceTrack("video", track, this.current);
    this.applyMute(); // the flags (screen) to everyone, the new track's enabled state, the views
  }

  // -- the devices ---------------------------------------------------------------------------------

  /**
   * Switch the camera or microphone during a call: that device only (`exact`), swapped into every
   * connection with replaceTrack (no renegotiation), the old track stopped, the mute state kept.
   * Outside a call the choice is used at the next join.
   */
  async switchDevice(kind: "audio" | "video"): Promise<void> {
    if (this.closed || this.stream === null) return;
    const ticket = ++this.switches[kind];
    const overtaken = (): boolean => this.closed || ticket !== this.switches[kind];
    const all = constraintsFor(deviceChoice(this.host.model), true);
    const constraints: MediaStreamConstraints = kind === "video" ? { video: all.video ?? true } : { audio: all.audio ?? true };
    let fresh: MediaStream;
    try {
      fresh = await this.host.getUserMedia(constraints);
    } catch (error) {
      if (overtaken()) return;
      console.warn(`ipymeet: could not switch the ${kind === "video" ? "camera" : "microphone"}`, error);
      const problem = classifyMediaError(error);
      const { code, message } = switchFailure(kind, problem);
      this.host.report({ error: message, error_code: code });
      return;
    }
    const track = kind === "video" ? fresh.getVideoTracks()[0] : fresh.getAudioTracks()[0];
    if (overtaken() || this.stream === null || track === undefined) {
      stopStream(fresh);
      return;
    }
    const old = this.stream.getTracks().filter((t) => t.kind === kind);
    track.enabled = this.host.model.get(kind);
    // A new stream object, so the views take the new track.
    this.stream = new MediaStream([...this.stream.getTracks().filter((t) => t.kind !== kind), track]);
    this.shared = null;
    // While the screen is shared the camera is not sent: it waits for Stop sharing.
    this.applyMute();
    if (!(kind === "video" && this.screen !== null)) await this.host.members.replaceTrack(kind, track, this.current);
    // Only once every sender has the new track: stopping a sender's track while replaceTrack is
    // still under way left Chromium's sender with no frames from the new one.
    for (const t of old) t.stop();
  }

  /**
   * The camera's size or frame rate changed (`video_size`, `frame_rate`) during a call: the live
   * camera track takes them (`applyConstraints`, no new getUserMedia, the call goes on), then each
   * connection fits its sender to the new size again (what a kernel peer wants of it).
   */
  async applyCapture(): Promise<void> {
    const track = this.stream?.getVideoTracks()[0];
    if (this.closed || track === undefined) return;
    try {
      await track.applyConstraints({ ...track.getConstraints(), ...captureConstraints(deviceChoice(this.host.model)) });
    } catch (error) {
      console.warn("ipymeet: the camera did not take the new size or frame rate", error);
      return;
    }
    if (!this.closed) this.host.members.refitVideo();
  }

  /** Stop every track; nothing of this session's media acts any more. */
  close(): void {
    this.closed = true;
    stopStream(this.stream);
    this.stream = null;
    this.screen?.stop();
    this.screen = null;
    this.shared = null;
  }
}
