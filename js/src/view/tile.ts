/**
 * One other member's tile: their video, or their initial while their camera is off; their name
 * with a mark while muted; a badge while the connection is not up; the quality mark; a ring while
 * they speak, and a fainter one on the last to speak once quiet (easy to find). Made once per
 * member and changed in place: `update` writes only what differs from what it shows, and the
 * once-a-second stats reach `updateQuality` alone.
 */
import type { RemotePeer } from "../call";
import { describeStats, qualityOf } from "../quality";
import { detach, h, mutedMark, setAttr, setClass, setData, setHidden, setText } from "./dom";

export class Tile {
  readonly root: HTMLElement;
  readonly video: HTMLVideoElement;
  private readonly nameText: HTMLElement;
  private readonly muted: HTMLElement;
  private readonly avatar: HTMLElement;
  private readonly placeholderName: HTMLElement;
  private readonly badge: HTMLElement;
  private readonly quality: HTMLElement;
  private readonly unmute: HTMLButtonElement;
  private stream: MediaStream | null = null;

  constructor(peerId: string) {
    const video = h("video", { class: "ipymeet-remote-video", "data-testid": "remote-video" });
    video.autoplay = true;
    video.playsInline = true;
    video.setAttribute("autoplay", "");
    video.setAttribute("playsinline", "");
    this.video = video;
    this.muted = mutedMark();
    this.nameText = h("span", { class: "ipymeet-tile-name-text" });
    const name = h("span", { class: "ipymeet-tile-name" }, this.muted, this.nameText);
    this.avatar = h("span", { class: "ipymeet-avatar", "aria-hidden": "true" });
    this.avatar.style.setProperty("--ipymeet-hue", String(hue(peerId)));
    this.placeholderName = h("span", { class: "ipymeet-placeholder-name" });
    const placeholder = h("div", { class: "ipymeet-placeholder" }, this.avatar, this.placeholderName);
    this.badge = h("span", { class: "ipymeet-badge" });
    this.quality = h("span", { class: "ipymeet-quality", "data-testid": "quality", role: "img", "data-level": "unknown" });
    this.unmute = h("button", { type: "button", class: "ipymeet-btn ipymeet-unmute" }, "Click to hear");
    this.unmute.hidden = true;
    this.root = h("div", { class: "ipymeet-tile", role: "group", "data-peer-id": peerId }, video, placeholder, name, this.badge, this.quality, this.unmute);
    this.unmute.addEventListener("click", () => {
      video.muted = false;
      this.unmute.hidden = true;
      void video.play().catch(() => undefined);
    });
  }

  /** Show `peer`'s name, flags, connection and stream. */
  update(peer: RemotePeer): void {
    const name = peer.name || "Guest";
    setText(this.nameText, name);
    // The tile and its video say whose they are to a screen reader.
    setAttr(this.root, "aria-label", name);
    setAttr(this.video, "aria-label", name);
    setText(this.placeholderName, name);
    setText(this.avatar, initial(name));
    setData(this.root, "connection", peer.connection);
    setClass(this.root, "ipymeet-tile-muted", !peer.audio);
    setClass(this.root, "ipymeet-tile-camera-off", !peer.video);
    setClass(this.root, "ipymeet-tile-screen", peer.screen);
    setHidden(this.muted, peer.audio);
    markSpeaking(this.root, peer.speaking && peer.audio, peer.lastSpeaker);
    setClass(this.root, "ipymeet-tile-away", peer.away);
    const badge = peer.away && peer.connection === "connected" ? "Reconnecting…" : badgeText(peer.connection, peer.stream !== null || !peer.video);
    setText(this.badge, badge);
    setHidden(this.badge, badge === "");
    if (this.stream !== peer.stream) {
      this.stream = peer.stream;
      this.video.srcObject = peer.stream;
      if (peer.stream !== null) this.play();
    }
    this.updateQuality(peer);
  }

  /** The quality mark, from `peer`'s latest stats and its connection; its text only, in place. */
  updateQuality(peer: RemotePeer): void {
    const quality = qualityOf(peer.stats, peer.connection);
    const figures = describeStats(peer.stats, quality);
    setData(this.quality, "level", quality);
    setAttr(this.quality, "title", figures);
    setAttr(this.quality, "aria-label", figures);
  }

  dispose(): void {
    detach(this.video);
    this.root.remove();
  }

  /**
   * Play the video with sound. A browser that refuses autoplay with sound (no click on the page
   * yet) would leave it frozen: play it muted instead and offer a button to hear it.
   */
  private play(): void {
    const video = this.video;
    video.muted = false;
    video.play().catch((error: unknown) => {
      if ((error as { name?: string } | null)?.name !== "NotAllowedError") return;
      video.muted = true;
      this.unmute.hidden = false;
      void video.play().catch(() => undefined);
    });
  }
}

/**
 * Mark `tile` as speaking (`data-speaking`, a ring) or as the last to speak (a fainter ring).
 * The caller passes `speaking` false while muted: a muted member is never marked.
 */
export function markSpeaking(tile: HTMLElement, speaking: boolean, last: boolean): void {
  setData(tile, "speaking", speaking ? "true" : "false");
  setClass(tile, "ipymeet-tile-speaking", speaking);
  setClass(tile, "ipymeet-tile-last-speaker", last && !speaking);
}

/** The first letter of a name, for the placeholder of a camera that is off. */
export function initial(name: string): string {
  const first = [...name.trim()][0];
  return first === undefined ? "?" : first.toLocaleUpperCase();
}

/** A steady hue per person, so each placeholder keeps its colour. */
function hue(id: string): number {
  let hash = 0;
  for (const char of id) hash = (hash * 31 + char.charCodeAt(0)) | 0;
  return Math.abs(hash) % 360;
}

function badgeText(connection: RTCPeerConnectionState, hasStream: boolean): string {
  switch (connection) {
    case "connected":
      return hasStream ? "" : "No video";
    case "disconnected":
      return "Reconnecting…";
    case "failed":
      return "Connection failed";
    case "closed":
      return "Left";
    default:
      return "Connecting…";
  }
}
