/**
 * The stage: a tile per other member, the own preview, and a line while no one else is there
 * (in the room alone: a card that says how others get there, alone.ts). Tiles come and go with
 * the members ("members"), the preview follows the local stream ("local") and the own traits, and
 * the once-a-second "stats" touches only the quality marks.
 */
import { isActive } from "../state";
import type { CallState, WidgetModel } from "../types";
import { AloneCard, aloneText, hubServiceOf } from "./alone";
import { Bindings, detach, h, mutedMark, setClass, setData, setHidden, setPresent, setText } from "./dom";
import type { CallSource } from "./source";
import { initial, markSpeaking, Tile } from "./tile";

/** The label of the tile of this widget's own camera processed in Python (`room.process`). */
export const PROCESSED_LABEL = "You (processed)";

export class Stage {
  /** The stage's box, for the view's main area. */
  readonly root: HTMLElement;
  private readonly model: WidgetModel;
  private readonly call: CallSource;
  private readonly bindings = new Bindings();
  private readonly stage: HTMLElement;
  private readonly grid: HTMLElement;
  private readonly empty: HTMLElement;
  private readonly alone = new AloneCard();
  private readonly self: HTMLElement;
  private readonly selfName: HTMLElement;
  private readonly selfMuted: HTMLElement;
  private readonly selfNameText: Text;
  private readonly selfAvatar: HTMLElement;
  private readonly localVideo: HTMLVideoElement;
  private readonly tiles = new Map<string, Tile>();

  constructor(model: WidgetModel, call: CallSource) {
    this.model = model;
    this.call = call;
    this.grid = h("div", { class: "ipymeet-grid" });
    this.empty = h("div", { class: "ipymeet-empty" });
    this.localVideo = h("video", { class: "ipymeet-local-video", "data-testid": "local-video", "aria-label": "Your camera" });
    this.localVideo.muted = true;
    this.localVideo.autoplay = true;
    this.localVideo.playsInline = true;
    this.localVideo.setAttribute("muted", "");
    this.localVideo.setAttribute("autoplay", "");
    this.localVideo.setAttribute("playsinline", "");
    this.selfAvatar = h("span", { class: "ipymeet-avatar", "aria-hidden": "true" });
    this.selfMuted = mutedMark();
    this.selfNameText = document.createTextNode("");
    this.selfName = h("span", { class: "ipymeet-tile-name" }, this.selfNameText);
    this.self = h(
      "div",
      { class: "ipymeet-self" },
      this.localVideo,
      h("span", { class: "ipymeet-placeholder ipymeet-self-off" }, this.selfAvatar, h("span", { class: "ipymeet-placeholder-name" }, "Camera off")),
      this.selfName,
    );
    this.stage = h("div", { class: "ipymeet-stage" }, this.grid, this.empty, this.alone.root, this.self);
    this.root = h("div", { class: "ipymeet-stage-box" }, this.stage);

    const b = this.bindings;
    b.traits(model, ["state", "room", "_invite_base", "_shared", "_secure", "signaling_url", "connected_via", "_processed_by"], () =>
      this.renderMembers(),
    );
    b.traits(model, ["state", "audio", "video", "name"], () => this.renderSelf());
    b.add(call.subscribe("members", () => this.renderMembers()));
    b.add(call.subscribe("local", () => this.renderSelf()));
    b.add(call.subscribe("stats", () => this.renderStats()));
    this.renderMembers();
    this.renderSelf();
  }

  dispose(): void {
    this.bindings.dispose();
    this.alone.dispose();
    for (const tile of this.tiles.values()) tile.dispose();
    this.tiles.clear();
    detach(this.localVideo);
  }

  /** The tiles (made or removed only as members come and go), the empty line, the layout. */
  private renderMembers(): void {
    const state = this.model.get("state");
    const active = isActive(state);
    const peers = this.call.remotePeers;
    const shown = active ? peers : [];
    const seen = new Set<string>();
    const processed = this.model.get("_processed_by") ?? "";
    for (const peer of shown) {
      seen.add(peer.id);
      let tile = this.tiles.get(peer.id);
      if (tile === undefined) {
        tile = new Tile(peer.id);
        this.tiles.set(peer.id, tile);
        this.grid.append(tile.root);
      }
      const mine = processed !== "" && peer.id === processed;
      tile.update(mine ? { ...peer, name: PROCESSED_LABEL } : peer);
      setData(tile.root, "processed", mine ? "true" : "false");
    }
    for (const [id, tile] of this.tiles) {
      if (seen.has(id)) continue;
      tile.dispose();
      this.tiles.delete(id);
    }
    setData(this.grid, "count", String(this.tiles.size));
    const model = this.model;
    const alone =
      state === "waiting" && peers.length === 0
        ? aloneText({
            room: model.get("room"),
            base: model.get("_invite_base") ?? "",
            shared: model.get("_shared") === true,
            secure: model.get("_secure") === true,
            explicit: model.get("signaling_url") !== "",
            via: model.get("connected_via"),
            hubService: hubServiceOf(model.get("signaling_url"), location.href),
          })
        : null;
    this.alone.update(alone);
    setText(this.empty, emptyText(state, model.get("room"), peers.length));
    setHidden(this.empty, (peers.length > 0 && active) || alone !== null);
    this.renderLayout();
  }

  /** The quality marks: their text and level only. */
  private renderStats(): void {
    for (const peer of this.call.remotePeers) this.tiles.get(peer.id)?.updateQuality(peer);
  }

  /** The own preview: the local stream, camera off, muted, the own name. */
  private renderSelf(): void {
    const model = this.model;
    const state = model.get("state");
    const local = this.call.localStream;
    if (this.localVideo.srcObject !== local) {
      this.localVideo.srcObject = local;
      if (local !== null) void this.localVideo.play().catch(() => undefined);
    }
    setHidden(this.self, local === null);
    const audio = model.get("audio");
    const joined = state === "waiting" || state === "in_call";
    const noMic = joined && (local === null || local.getAudioTracks().length === 0);
    setClass(this.self, "ipymeet-self-screen", this.call.sharingScreen);
    setClass(this.self, "ipymeet-self-camera-off", !model.get("video") || local?.getVideoTracks().length === 0);
    setClass(this.self, "ipymeet-tile-muted", !audio || noMic);
    markSpeaking(this.self, audio && !noMic && this.call.selfSpeaking === true, false);
    const ownName = model.get("name");
    setText(this.selfAvatar, initial(ownName || "You"));
    setPresent(this.selfName, this.selfMuted, !audio || noMic, this.selfNameText);
    const label = ownName ? `You (${ownName})` : "You";
    if (this.selfNameText.data !== label) this.selfNameText.data = label;
    this.renderLayout();
  }

  /**
   * Alone: your own picture takes the stage. With one other: theirs does, yours in a corner.
   * With more: everyone, you included, in equal tiles (columnsFor), you last.
   */
  private renderLayout(): void {
    const hasLocal = this.call.localStream !== null;
    const shown = this.tiles.size;
    const tiles = shown + (hasLocal ? 1 : 0);
    const layout = !hasLocal ? (shown <= 1 ? "grid" : "tiles") : shown === 0 ? "solo" : shown === 1 ? "grid" : "tiles";
    setData(this.stage, "layout", layout);
    setData(this.stage, "tiles", String(tiles));
    const columns = String(columnsFor(tiles));
    if (this.stage.style.getPropertyValue("--ipymeet-columns") !== columns) this.stage.style.setProperty("--ipymeet-columns", columns);
  }
}

/**
 * How many columns for `tiles` equal tiles (you included, last): two side by side, three as two
 * over one, four as 2×2, five and six as 3×2. A short last row is centred.
 */
export function columnsFor(tiles: number): number {
  if (tiles <= 1) return 1;
  if (tiles <= 4) return 2;
  return 3;
}

function emptyText(state: CallState, room: string, members: number): string {
  switch (state) {
    case "joining":
      return `Joining “${room}”…`;
    case "waiting":
    case "in_call":
    case "reconnecting":
      return members === 0 ? `No one else is here yet. Others join with the room name “${room}”.` : "";
    case "failed":
      return "Could not join. See the message above.";
    default:
      return room ? `Press Connect to join “${room}”.` : "Type a room name, then press Connect.";
  }
}
