/**
 * The view: controls bound to the model, the remote videos, the own preview, the chat. It owns DOM
 * and listeners only; the camera, the connections and the chat history belong to the Call (one per
 * model), so a widget displayed twice shows the same call twice.
 */
import { ROOM_RE, type Call, type RemotePeer } from "./call";
import { describeStats, qualityOf } from "./quality";
import type { CallState, ChatEntry, DeviceInfo, WidgetModel } from "./types";
import { isActive } from "./state";

const ICONS = {
  mic: '<path d="M12 3a3 3 0 0 0-3 3v5a3 3 0 0 0 6 0V6a3 3 0 0 0-3-3z"/><path d="M5.5 11a6.5 6.5 0 0 0 13 0M12 17.5V21"/>',
  cam: '<rect x="3" y="6.5" width="12.5" height="11" rx="2"/><path d="M15.5 10.5 21 7.5v9l-5.5-3z"/>',
  off: '<path d="M4 4l16 16"/>',
  micOff:
    '<path d="M9 9v2a3 3 0 0 0 5.1 2.1M15 10V6a3 3 0 0 0-5.7-1.3"/><path d="M5.5 11a6.5 6.5 0 0 0 10.9 4.8M18.4 13.3a6.5 6.5 0 0 0 .1-2.3M12 17.5V21M4 4l16 16"/>',
  screen: '<rect x="3" y="4.5" width="18" height="12" rx="1.5"/><path d="M8.5 20h7M12 16.5V20"/>',
  send: '<path d="M4 12 20 4l-6 16-3-7z"/><path d="m11 13 9-9"/>',
  phone:
    '<path d="M6.6 3.5h2.9l1.6 4.3-2 1.4a11.5 11.5 0 0 0 5.7 5.7l1.4-2 4.3 1.6v2.9a2 2 0 0 1-2.2 2A16.5 16.5 0 0 1 4.6 5.7a2 2 0 0 1 2-2.2z"/>',
};

function icon(paths: string, extraClass = ""): SVGSVGElement {
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("aria-hidden", "true");
  svg.setAttribute("class", `ipymeet-icon ${extraClass}`.trim());
  svg.innerHTML = paths; // constant strings above, never user data
  return svg;
}

function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attributes: Record<string, string> = {},
  ...children: (Node | string)[]
): HTMLElementTagNameMap[K] {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) element.setAttribute(name, value);
  element.append(...children);
  return element;
}

let viewCount = 0;

interface Tile {
  root: HTMLElement;
  video: HTMLVideoElement;
  name: HTMLElement;
  nameText: HTMLElement;
  muted: HTMLElement;
  avatar: HTMLElement;
  placeholderName: HTMLElement;
  badge: HTMLElement;
  quality: HTMLElement;
  unmute: HTMLButtonElement;
  stream: MediaStream | null;
}

export class RoomView {
  private readonly el: HTMLElement;
  private readonly model: WidgetModel;
  private readonly call: Call;
  private readonly root: HTMLElement;
  private readonly roomInput: HTMLInputElement;
  private readonly roomHint: HTMLElement;
  private readonly nameInput: HTMLInputElement;
  private readonly connectButton: HTMLButtonElement;
  private readonly connectLabel: HTMLElement;
  private readonly micButton: HTMLButtonElement;
  private readonly micLabel: HTMLElement;
  private readonly camButton: HTMLButtonElement;
  private readonly camLabel: HTMLElement;
  private readonly screenButton: HTMLButtonElement;
  private readonly devices: HTMLElement;
  private readonly cameraSelect: HTMLSelectElement;
  private readonly micSelect: HTMLSelectElement;
  private readonly screenLabel: HTMLElement;
  private readonly statusText: HTMLElement;
  private readonly statusVia: HTMLElement;
  private readonly errorBanner: HTMLElement;
  private readonly stage: HTMLElement;
  private readonly grid: HTMLElement;
  private readonly empty: HTMLElement;
  private readonly self: HTMLElement;
  private readonly selfName: HTMLElement;
  private readonly selfAvatar: HTMLElement;
  private readonly localVideo: HTMLVideoElement;
  private readonly main: HTMLElement;
  private readonly chatList: HTMLElement;
  private readonly chatEmpty: HTMLElement;
  private readonly chatInput: HTMLInputElement;
  private readonly chatSend: HTMLButtonElement;
  private readonly chatLines = new Map<string, HTMLElement>();
  private shownMessages: readonly ChatEntry[] | null = null;
  private readonly tiles = new Map<string, Tile>();
  private readonly modelListeners: [string, () => void][] = [];
  private readonly unsubscribe: () => void;
  private destroyed = false;

  constructor(el: HTMLElement, model: WidgetModel, call: Call) {
    this.el = el;
    this.model = model;
    this.call = call;
    const id = `ipymeet-${++viewCount}`;

    this.roomInput = h("input", {
      id: `${id}-room`,
      class: "ipymeet-room-input",
      "data-testid": "room-input",
      type: "text",
      autocomplete: "off",
      spellcheck: "false",
      maxlength: "64",
      placeholder: "e.g. lab-42",
      "aria-describedby": `${id}-hint`,
    });
    this.roomHint = h("span", { id: `${id}-hint`, class: "ipymeet-hint" }, "Use 1–64 letters, digits, “_”, “.” or “-”.");
    this.nameInput = h("input", {
      id: `${id}-name`,
      class: "ipymeet-room-input ipymeet-name-input",
      "data-testid": "name-input",
      type: "text",
      autocomplete: "nickname",
      maxlength: "64",
      placeholder: "Your name",
    });
    this.roomHint.hidden = true;

    this.micLabel = h("span", { class: "ipymeet-btn-label" });
    this.micButton = h("button", {
      type: "button",
      class: "ipymeet-btn ipymeet-toggle",
      "data-testid": "mic",
      "aria-label": "Microphone",
    });
    this.camLabel = h("span", { class: "ipymeet-btn-label" });
    this.camButton = h("button", {
      type: "button",
      class: "ipymeet-btn ipymeet-toggle",
      "data-testid": "cam",
      "aria-label": "Camera",
    });
    this.screenLabel = h("span", { class: "ipymeet-btn-label" });
    this.screenButton = h(
      "button",
      { type: "button", class: "ipymeet-btn ipymeet-screen", "data-testid": "screen", "aria-label": "Share screen" },
      icon(ICONS.screen),
      this.screenLabel,
    );
    this.cameraSelect = h("select", {
      class: "ipymeet-select",
      "data-testid": "camera-select",
      "aria-label": "Camera",
      title: "Camera",
    });
    this.micSelect = h("select", {
      class: "ipymeet-select",
      "data-testid": "mic-select",
      "aria-label": "Microphone",
      title: "Microphone",
    });
    this.devices = h(
      "div",
      { class: "ipymeet-devices" },
      h("span", { class: "ipymeet-device" }, icon(ICONS.cam), this.cameraSelect),
      h("span", { class: "ipymeet-device" }, icon(ICONS.mic), this.micSelect),
    );
    this.connectLabel = h("span", { class: "ipymeet-btn-label" });
    this.connectButton = h(
      "button",
      { type: "button", class: "ipymeet-btn ipymeet-connect", "data-testid": "connect" },
      icon(ICONS.phone),
      this.connectLabel,
    );

    this.statusText = h("span", { class: "ipymeet-status-text" });
    this.statusVia = h("span", { class: "ipymeet-status-via" });
    const status = h(
      "div",
      { class: "ipymeet-status", "data-testid": "status", role: "status", "aria-live": "polite" },
      h("span", { class: "ipymeet-dot", "aria-hidden": "true" }),
      this.statusText,
      this.statusVia,
    );
    this.errorBanner = h("div", { class: "ipymeet-error", "data-testid": "error", role: "alert" });

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
    this.selfName = h("span", { class: "ipymeet-tile-name" });
    this.self = h(
      "div",
      { class: "ipymeet-self" },
      this.localVideo,
      h("span", { class: "ipymeet-placeholder ipymeet-self-off" }, this.selfAvatar, h("span", { class: "ipymeet-placeholder-name" }, "Camera off")),
      this.selfName,
    );

    this.chatList = h("ol", { class: "ipymeet-chat-list", role: "log", "aria-live": "polite", "aria-label": "Chat messages", "data-testid": "chat-log" });
    this.chatEmpty = h("p", { class: "ipymeet-chat-empty" }, "Messages go to everyone in the room.");
    this.chatInput = h("input", {
      id: `${id}-chat`,
      class: "ipymeet-chat-input",
      "data-testid": "chat-input",
      type: "text",
      autocomplete: "off",
      maxlength: "2000",
      placeholder: "Message everyone",
    });
    this.chatSend = h(
      "button",
      { type: "submit", class: "ipymeet-btn ipymeet-chat-send", "data-testid": "chat-send", title: "Send (Enter)", "aria-label": "Send" },
      icon(ICONS.send),
    );
    const chatForm = h(
      "form",
      { class: "ipymeet-chat-form" },
      h("label", { class: "ipymeet-visually-hidden", for: `${id}-chat` }, "Message to everyone in the room"),
      this.chatInput,
      this.chatSend,
    );
    const chat = h(
      "section",
      { class: "ipymeet-chat", "aria-label": "Chat" },
      h("h3", { class: "ipymeet-chat-title" }, "Chat"),
      this.chatList,
      this.chatEmpty,
      chatForm,
    );

    this.root = h(
      "div",
      { class: "ipymeet-root" },
      h(
        "div",
        { class: "ipymeet-bar" },
        h(
          "div",
          { class: "ipymeet-field" },
          h("label", { class: "ipymeet-field-label", for: `${id}-room` }, "Room"),
          this.roomInput,
          h("label", { class: "ipymeet-field-label", for: `${id}-name` }, "Name"),
          this.nameInput,
        ),
        h("div", { class: "ipymeet-controls" }, this.micButton, this.camButton, this.screenButton, this.connectButton),
      ),
      this.roomHint,
      this.devices,
      status,
      this.errorBanner,
      (this.main = h(
        "div",
        { class: "ipymeet-main" },
        h("div", { class: "ipymeet-stage-box" }, (this.stage = h("div", { class: "ipymeet-stage" }, this.grid, this.empty, this.self))),
        chat,
      )),
    );
    this.el.replaceChildren(this.root);

    this.listen(this.roomInput, "input", () => this.onRoomInput());
    // The name goes with the next Connect (the others learn it on entering); not editable in a call.
    this.listen(this.nameInput, "input", () => {
      this.model.set("name", this.nameInput.value.slice(0, 64));
      this.model.save_changes();
    });
    this.listen(this.nameInput, "keydown", (event) => {
      if ((event as KeyboardEvent).key === "Enter" && !isActive(this.model.get("state")) && !this.connectButton.disabled) {
        this.connectButton.click();
      }
    });
    this.listen(this.roomInput, "keydown", (event) => {
      if ((event as KeyboardEvent).key === "Enter" && !isActive(this.model.get("state"))) this.connectButton.click();
    });
    this.listen(this.connectButton, "click", () => {
      const active = isActive(this.model.get("state"));
      this.model.set("_desired", !active);
      this.model.save_changes();
    });
    this.listen(this.micButton, "click", () => this.toggle("audio"));
    this.listen(this.camButton, "click", () => this.toggle("video"));
    // Synchronously down to getDisplayMedia: the browser asks for the click's gesture.
    this.listen(this.screenButton, "click", () => this.toggle("screen"));
    this.listen(this.cameraSelect, "change", () => this.choose("camera", this.cameraSelect.value));
    this.listen(this.micSelect, "change", () => this.choose("microphone", this.micSelect.value));
    this.listen(chatForm, "submit", (event) => {
      event.preventDefault();
      this.sendChat();
    });
    this.listen(this.chatInput, "keydown", (event) => {
      // Enter sends. Not left to the form's implicit submission: a notebook may swallow the
      // keypress that triggers it (JupyterLab does).
      const key = event as KeyboardEvent;
      if (key.key !== "Enter" || key.shiftKey || key.isComposing) return;
      key.preventDefault();
      this.sendChat();
    });
    this.listen(this.chatInput, "input", () => {
      this.chatSend.disabled = !this.call.canChat || this.chatInput.value.trim() === "";
    });

    for (const trait of ["state", "error", "error_code", "connected_via", "room", "audio", "video", "screen", "_browser_peers", "name", "cameras", "microphones", "camera", "microphone"]) {
      const listener = (): void => this.update();
      this.model.on(`change:${trait}`, listener);
      this.modelListeners.push([`change:${trait}`, listener]);
    }
    this.unsubscribe = call.subscribe(() => this.update());
    this.roomInput.value = this.model.get("room");
    this.update();
  }

  /** Remove this view's DOM and listeners; the call goes on. */
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.unsubscribe();
    for (const [event, listener] of this.modelListeners) this.model.off(event, listener);
    for (const [target, event, listener] of this.domListeners) target.removeEventListener(event, listener);
    for (const tile of this.tiles.values()) detach(tile.video);
    this.tiles.clear();
    detach(this.localVideo);
    this.root.remove();
  }

  private readonly domListeners: [EventTarget, string, EventListener][] = [];

  private listen(target: EventTarget, event: string, listener: EventListener): void {
    target.addEventListener(event, listener);
    this.domListeners.push([target, event, listener]);
  }

  private sendChat(): void {
    const text = this.chatInput.value;
    if (text.trim() === "" || !this.call.canChat) return;
    if (this.call.sendChat(text)) {
      this.chatInput.value = "";
      this.chatList.scrollTop = this.chatList.scrollHeight;
      this.update();
    }
  }

  private toggle(trait: "audio" | "video" | "screen"): void {
    this.model.set(trait, !(this.model.get(trait) === true));
    this.model.save_changes();
  }

  private choose(trait: "camera" | "microphone", id: string): void {
    if ((this.model.get(trait) ?? "") === id) return;
    this.model.set(trait, id);
    this.model.save_changes();
  }

  private onRoomInput(): void {
    const value = this.roomInput.value.trim();
    const valid = value === "" || ROOM_RE.test(value);
    this.roomInput.setAttribute("aria-invalid", String(!valid));
    this.roomHint.hidden = valid;
    // Only valid names reach the model: Python validates `room` and would refuse the others.
    if (valid && value !== this.model.get("room")) {
      this.model.set("room", value);
      this.model.save_changes();
    }
    this.update();
  }

  private update(): void {
    if (this.destroyed) return;
    const model = this.model;
    const state = model.get("state");
    const active = isActive(state);
    const room = model.get("room");
    this.root.dataset.state = state;

    // Room field: follows the model unless the user is typing something not yet valid.
    if (document.activeElement !== this.roomInput && this.roomInput.value !== room) {
      this.roomInput.value = room;
      this.roomInput.setAttribute("aria-invalid", "false");
      this.roomHint.hidden = true;
    }
    this.roomInput.disabled = active;
    const name = model.get("name");
    if (document.activeElement !== this.nameInput && this.nameInput.value !== name) this.nameInput.value = name;
    this.nameInput.disabled = active;
    const typed = this.roomInput.value.trim();
    const roomOk = typed !== "" && ROOM_RE.test(typed);

    this.connectLabel.textContent = state === "joining" ? "Cancel" : active ? "Hang up" : "Connect";
    this.connectButton.classList.toggle("ipymeet-danger", active);
    this.connectButton.disabled = !active && !roomOk;
    this.connectButton.title = !active && !roomOk ? "Type a room name first" : "";

    const audio = model.get("audio");
    const video = model.get("video");
    // In the room without a microphone or camera (receive-only): say so instead of "on".
    const local = this.call.localStream;
    const joined = state === "waiting" || state === "in_call";
    const noMic = joined && (local === null || local.getAudioTracks().length === 0);
    const noCam = joined && (local === null || local.getVideoTracks().length === 0);
    this.micButton.setAttribute("aria-pressed", String(audio));
    this.micButton.replaceChildren(icon(ICONS.mic), ...(audio && !noMic ? [] : [icon(ICONS.off, "ipymeet-icon-slash")]), this.micLabel);
    this.micLabel.textContent = noMic ? "No mic" : audio ? "Mic on" : "Mic off";
    this.micButton.disabled = noMic;
    this.micButton.title = audio ? "Mute your microphone" : "Unmute your microphone";
    this.camButton.setAttribute("aria-pressed", String(video));
    this.camButton.replaceChildren(icon(ICONS.cam), ...(video && !noCam ? [] : [icon(ICONS.off, "ipymeet-icon-slash")]), this.camLabel);
    this.camLabel.textContent = noCam ? "No camera" : video ? "Camera on" : "Camera off";
    this.camButton.disabled = noCam;
    this.camButton.title = video ? "Turn your camera off" : "Turn your camera on";

    // Share screen: in a room only; pressed while the screen is asked for or sent.
    const sharing = this.call.sharingScreen;
    const wantScreen = model.get("screen") === true;
    this.screenButton.setAttribute("aria-pressed", String(sharing || wantScreen));
    this.screenLabel.textContent = sharing ? "Stop sharing" : "Share screen";
    this.screenButton.setAttribute("aria-label", sharing ? "Stop sharing" : "Share screen");
    this.screenButton.disabled = !joined && !sharing;
    this.screenButton.title = !joined ? "Join a room to share your screen" : sharing ? "Send your camera again" : "Show your screen instead of your camera";
    this.self.classList.toggle("ipymeet-self-screen", sharing);

    const cameras = model.get("cameras") ?? [];
    const microphones = model.get("microphones") ?? [];
    fillSelect(this.cameraSelect, cameras, model.get("camera") ?? "", "Default camera", "Camera");
    fillSelect(this.micSelect, microphones, model.get("microphone") ?? "", "Default microphone", "Microphone");
    this.devices.hidden = cameras.length === 0 && microphones.length === 0;

    const peers = this.call.remotePeers;
    this.statusText.textContent = describe(state, room, peers);
    const via = model.get("connected_via");
    this.statusVia.textContent = via && active ? `via ${via}` : "";

    const error = model.get("error");
    this.errorBanner.textContent = error;
    this.errorBanner.hidden = error === "";
    this.errorBanner.classList.toggle("ipymeet-warning", isWarning(model.get("error_code")) && active);

    this.updateTiles(active ? peers : []);
    this.empty.textContent = emptyText(state, room, peers.length);
    this.empty.hidden = peers.length > 0 && active;

    if (this.localVideo.srcObject !== local) {
      this.localVideo.srcObject = local;
      if (local !== null) void this.localVideo.play().catch(() => undefined);
    }
    this.self.hidden = local === null;
    // Alone: your own picture takes the stage. With one other: theirs does, yours in a corner.
    // With more: everyone, you included, in equal tiles (columnsFor), you last.
    const shown = active ? peers.length : 0;
    const tiles = shown + (local === null ? 0 : 1);
    this.stage.dataset.layout =
      local === null ? (shown <= 1 ? "grid" : "tiles") : shown === 0 ? "solo" : shown === 1 ? "grid" : "tiles";
    this.stage.dataset.tiles = String(tiles);
    this.stage.style.setProperty("--ipymeet-columns", String(columnsFor(tiles)));
    this.self.classList.toggle("ipymeet-self-camera-off", !video || local?.getVideoTracks().length === 0);
    this.self.classList.toggle("ipymeet-tile-muted", !audio || noMic);
    const ownName = model.get("name");
    this.selfAvatar.textContent = initial(ownName || "You");
    this.selfName.replaceChildren(...(audio && !noMic ? [] : [mutedMark()]), ownName ? `You (${ownName})` : "You");

    this.updateChat(active);
  }

  private updateChat(active: boolean): void {
    const messages = this.call.messages;
    this.main.dataset.chat = active || messages.length > 0 ? "on" : "off";
    const canChat = this.call.canChat;
    this.chatInput.disabled = !canChat;
    this.chatInput.placeholder = canChat ? "Message everyone" : "Connect to chat";
    this.chatSend.disabled = !canChat || this.chatInput.value.trim() === "";
    this.chatEmpty.hidden = messages.length > 0;
    if (messages === this.shownMessages) return;
    this.shownMessages = messages;

    const list = this.chatList;
    const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
    const ids = new Set(messages.map((m) => m.id));
    for (const [id, line] of this.chatLines) {
      if (ids.has(id)) continue;
      line.remove();
      this.chatLines.delete(id);
    }
    let ownAdded = false;
    let previous: ChatEntry | null = null;
    for (const message of messages) {
      let line = this.chatLines.get(message.id);
      if (line === undefined) {
        line = chatLine(message);
        this.chatLines.set(message.id, line);
        list.append(line);
        ownAdded ||= message.mine;
      }
      // A line from the same person within two minutes of the last goes under it, without a header.
      const more = previous !== null && previous.from === message.from && previous.name === message.name &&
        message.time - previous.time >= 0 && message.time - previous.time < 120_000;
      line.classList.toggle("ipymeet-chat-more", more);
      previous = message;
    }
    if (atBottom || ownAdded) list.scrollTop = list.scrollHeight;
  }

  private updateTiles(peers: RemotePeer[]): void {
    const seen = new Set<string>();
    for (const peer of peers) {
      seen.add(peer.id);
      let tile = this.tiles.get(peer.id);
      if (tile === undefined) {
        tile = makeTile(peer.id);
        this.tiles.set(peer.id, tile);
        this.grid.append(tile.root);
      }
      const name = peer.name || "Guest";
      tile.nameText.textContent = name;
      tile.placeholderName.textContent = name;
      tile.avatar.textContent = initial(name);
      tile.avatar.style.setProperty("--ipymeet-hue", String(hue(peer.id)));
      tile.root.dataset.connection = peer.connection;
      tile.root.classList.toggle("ipymeet-tile-muted", !peer.audio);
      tile.root.classList.toggle("ipymeet-tile-camera-off", !peer.video);
      tile.root.classList.toggle("ipymeet-tile-screen", peer.screen);
      tile.muted.hidden = peer.audio;
      tile.root.classList.toggle("ipymeet-tile-away", peer.away);
      tile.badge.textContent = peer.away && peer.connection === "connected" ? "Reconnecting…" : badgeText(peer.connection, peer.stream !== null || !peer.video);
      tile.badge.hidden = tile.badge.textContent === "";
      const quality = qualityOf(peer.stats, peer.connection);
      const figures = describeStats(peer.stats, quality);
      tile.quality.dataset.level = quality;
      tile.quality.title = figures;
      tile.quality.setAttribute("aria-label", figures);
      if (tile.stream !== peer.stream) {
        tile.stream = peer.stream;
        tile.video.srcObject = peer.stream;
        if (peer.stream !== null) play(tile);
      }
    }
    for (const [id, tile] of this.tiles) {
      if (seen.has(id)) continue;
      detach(tile.video);
      tile.root.remove();
      this.tiles.delete(id);
    }
    this.grid.dataset.count = String(this.tiles.size);
  }
}

/** The options of a device list: the default first, then each device; the chosen one selected. */
function fillSelect(select: HTMLSelectElement, devices: readonly DeviceInfo[], chosen: string, fallback: string, noun: string): void {
  const wanted: [string, string][] = [["", fallback]];
  devices.forEach((device, index) => wanted.push([device.id, device.label || `${noun} ${index + 1}`]));
  // A chosen device that is not (or no longer) listed stays visible, so the choice is not lost.
  if (chosen !== "" && !devices.some((d) => d.id === chosen)) wanted.push([chosen, `${noun} (not found)`]);
  const current = [...select.options].map((o) => [o.value, o.text]);
  if (JSON.stringify(current) !== JSON.stringify(wanted)) {
    select.replaceChildren(...wanted.map(([value, text]) => h("option", { value }, text)));
  }
  if (select.value !== chosen) select.value = chosen;
  select.disabled = devices.length === 0;
}

function makeTile(peerId: string): Tile {
  const video = h("video", { class: "ipymeet-remote-video", "data-testid": "remote-video" });
  video.autoplay = true;
  video.playsInline = true;
  video.setAttribute("autoplay", "");
  video.setAttribute("playsinline", "");
  const muted = mutedMark();
  const nameText = h("span", { class: "ipymeet-tile-name-text" });
  const name = h("span", { class: "ipymeet-tile-name" }, muted, nameText);
  const avatar = h("span", { class: "ipymeet-avatar", "aria-hidden": "true" });
  const placeholderName = h("span", { class: "ipymeet-placeholder-name" });
  const placeholder = h("div", { class: "ipymeet-placeholder" }, avatar, placeholderName);
  const badge = h("span", { class: "ipymeet-badge" });
  const quality = h("span", { class: "ipymeet-quality", "data-testid": "quality", role: "img", "data-level": "unknown" });
  const unmute = h("button", { type: "button", class: "ipymeet-btn ipymeet-unmute" }, "Click to hear");
  unmute.hidden = true;
  const root = h("div", { class: "ipymeet-tile", "data-peer-id": peerId }, video, placeholder, name, badge, quality, unmute);
  const tile: Tile = { root, video, name, nameText, muted, avatar, placeholderName, badge, quality, unmute, stream: null };
  unmute.addEventListener("click", () => {
    video.muted = false;
    unmute.hidden = true;
    void video.play().catch(() => undefined);
  });
  return tile;
}

/**
 * Play a remote video with sound. A browser that refuses autoplay with sound (no click on the page
 * yet) would leave it frozen: play it muted instead and offer a button to hear it.
 */
function play(tile: Tile): void {
  tile.video.muted = false;
  tile.video.play().catch((error: unknown) => {
    if ((error as { name?: string } | null)?.name !== "NotAllowedError") return;
    tile.video.muted = true;
    tile.unmute.hidden = false;
    void tile.video.play().catch(() => undefined);
  });
}

/** The mic-off mark shown beside a muted person's name. */
function mutedMark(): HTMLElement {
  return h(
    "span",
    { class: "ipymeet-muted", role: "img", "aria-label": "Microphone muted", title: "Microphone muted" },
    icon(ICONS.micOff),
  );
}

function chatLine(message: ChatEntry): HTMLElement {
  const when = new Date(message.time);
  const time = h(
    "time",
    { class: "ipymeet-chat-time", datetime: Number.isNaN(when.getTime()) ? "" : when.toISOString() },
    Number.isNaN(when.getTime()) ? "" : when.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }),
  );
  const name = message.mine ? "You" : message.name || "Guest";
  return h(
    "li",
    { class: `ipymeet-chat-message${message.mine ? " ipymeet-chat-mine" : ""}`, "data-testid": "chat-message" },
    h("div", { class: "ipymeet-chat-meta" }, h("span", { class: "ipymeet-chat-name" }, name), time),
    h("div", { class: "ipymeet-chat-text" }, message.text), // text node: never parsed as HTML
  );
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

function detach(video: HTMLVideoElement): void {
  video.pause();
  video.srcObject = null;
}

function names(peers: RemotePeer[]): string {
  const list = peers.map((peer) => peer.name || "a guest");
  if (list.length <= 3) return list.join(", ").replace(/, ([^,]*)$/, " and $1");
  return `${list.slice(0, 2).join(", ")} and ${list.length - 2} others`;
}

export function describe(state: CallState, room: string, peers: RemotePeer[]): string {
  switch (state) {
    case "idle":
      return "Not connected";
    case "joining":
      return `Joining “${room}”…`;
    case "waiting": {
      if (peers.length === 0) return `In “${room}”, waiting for others`;
      return `In “${room}”, connecting to ${names(peers)}…`;
    }
    case "in_call": {
      const connected = peers.filter((peer) => peer.connection === "connected");
      return `In a call in “${room}” with ${names(connected)}`;
    }
    case "reconnecting":
      return `Reconnecting to “${room}”… the call goes on meanwhile`;
    case "left":
      return "You left the room";
    case "failed":
      return "Not connected";
  }
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

function isWarning(code: string): boolean {
  return code === "camera_denied" || code === "no_camera" || code === "camera_busy" || code === "insecure_context";
}
