/**
 * The controls: the room and name fields, the microphone, camera, Switch camera (phones), screen
 * and Connect buttons, the device lists, the status line and the error banner. They write the
 * person's intent into the model and follow the model's traits; of the Call they hear "local" (is
 * there a microphone, a camera, a shared screen) and, for the status line only, "members" and
 * "kernel" (the page waits on a kernel busy with a cell). Never "stats".
 */
import { MAX_NAME, ROOM_RE } from "../contract";
import { canSwitchCamera, facesBothWays, nextCamera } from "../facing";
import type { RemotePeer } from "../call";
import { isActive } from "../state";
import type { CallState, DeviceInfo, Model, WidgetModel } from "../types";
import { Bindings, h, icon, ICONS, setAttr, setClass, setDisabled, setHidden, setPresent, setText } from "./dom";
import type { CallSource } from "./source";

/** A toggle button: its icon, the slash over it when off, and its label. */
interface Toggle {
  button: HTMLButtonElement;
  slash: SVGSVGElement;
  label: HTMLElement;
}

export class Controls {
  /** The bar, the room hint, the device lists, the status line and the error banner, in order. */
  readonly nodes: readonly HTMLElement[];
  private readonly model: WidgetModel;
  private readonly call: CallSource;
  private readonly bindings = new Bindings();
  private readonly roomInput: HTMLInputElement;
  private readonly roomHint: HTMLElement;
  private readonly nameInput: HTMLInputElement;
  private readonly connectButton: HTMLButtonElement;
  private readonly connectLabel: HTMLElement;
  private readonly mic: Toggle;
  private readonly cam: Toggle;
  private readonly screenButton: HTMLButtonElement;
  private readonly flipButton: HTMLButtonElement;
  private readonly screenLabel: HTMLElement;
  private readonly devices: HTMLElement;
  private readonly cameraSelect: HTMLSelectElement;
  private readonly micSelect: HTMLSelectElement;
  private readonly statusText: HTMLElement;
  private readonly statusVia: HTMLElement;
  private readonly errorBanner: HTMLElement;

  constructor(id: string, model: WidgetModel, call: CallSource) {
    this.model = model;
    this.call = call;

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
    this.roomHint.hidden = true;
    this.nameInput = h("input", {
      id: `${id}-name`,
      class: "ipymeet-room-input ipymeet-name-input",
      "data-testid": "name-input",
      type: "text",
      autocomplete: "nickname",
      maxlength: String(MAX_NAME),
      placeholder: "Your name",
    });

    this.mic = toggle("mic", ICONS.mic);
    this.cam = toggle("cam", ICONS.cam);
    // Front/back camera (phones): one tap writes `camera`, which the call switches to as the
    // camera list does; shown only where it means something (facing.ts).
    this.flipButton = h(
      "button",
      { type: "button", class: "ipymeet-btn ipymeet-flip", "data-testid": "switch-camera" },
      icon(ICONS.flip),
      h("span", { class: "ipymeet-btn-label" }, "Switch camera"),
    );
    this.flipButton.hidden = true;
    this.screenLabel = h("span", { class: "ipymeet-btn-label" });
    this.screenButton = h(
      "button",
      { type: "button", class: "ipymeet-btn ipymeet-screen", "data-testid": "screen", "aria-label": "Share screen" },
      icon(ICONS.screen),
      this.screenLabel,
    );
    this.connectLabel = h("span", { class: "ipymeet-btn-label" });
    this.connectButton = h(
      "button",
      { type: "button", class: "ipymeet-btn ipymeet-connect", "data-testid": "connect" },
      icon(ICONS.phone),
      this.connectLabel,
    );

    this.cameraSelect = h("select", { class: "ipymeet-select", "data-testid": "camera-select", "aria-label": "Camera", title: "Camera" });
    this.micSelect = h("select", { class: "ipymeet-select", "data-testid": "mic-select", "aria-label": "Microphone", title: "Microphone" });
    this.devices = h(
      "div",
      { class: "ipymeet-devices" },
      h("span", { class: "ipymeet-device" }, icon(ICONS.cam), this.cameraSelect),
      h("span", { class: "ipymeet-device" }, icon(ICONS.mic), this.micSelect),
    );

    this.statusText = h("span", { class: "ipymeet-status-text" });
    this.statusVia = h("span", { class: "ipymeet-status-via" });
    // Not a live region: it rewrites itself at each step of a join. What a listener needs to
    // hear of the call is said once in the view's announcements (announce.ts).
    const status = h(
      "div",
      { class: "ipymeet-status", "data-testid": "status" },
      h("span", { class: "ipymeet-dot", "aria-hidden": "true" }),
      this.statusText,
      this.statusVia,
    );
    this.errorBanner = h("div", { class: "ipymeet-error", "data-testid": "error", role: "alert" });

    const bar = h(
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
      h("div", { class: "ipymeet-controls" }, this.mic.button, this.cam.button, this.flipButton, this.screenButton, this.connectButton),
    );
    this.nodes = [bar, this.roomHint, this.devices, status, this.errorBanner];
    // The keyboard shortcuts (keys.ts) press these buttons: said to assistive technology too.
    this.mic.button.setAttribute("aria-keyshortcuts", "M");
    this.cam.button.setAttribute("aria-keyshortcuts", "V");
    this.screenButton.setAttribute("aria-keyshortcuts", "S");

    this.listen();
    const b = this.bindings;
    b.traits(model, ["state", "room", "name"], () => this.renderFields());
    b.traits(model, ["state", "audio", "video", "screen"], () => this.renderMedia());
    b.traits(model, ["cameras", "microphones", "camera", "microphone"], () => this.renderDevices());
    b.traits(model, ["state", "room", "connected_via", "_processed_by"], () => this.renderStatus());
    b.traits(model, ["state", "error", "error_code"], () => this.renderError());
    b.add(call.subscribe("local", () => this.renderMedia()));
    b.add(call.subscribe("members", () => this.renderStatus()));
    b.add(call.subscribe("kernel", () => this.renderStatus()));

    this.roomInput.value = model.get("room");
    this.renderFields();
    this.renderMedia();
    this.renderDevices();
    this.renderStatus();
    this.renderError();
  }

  dispose(): void {
    this.bindings.dispose();
  }

  /**
   * A keyboard shortcut's press of the microphone, camera or screen button: a click, so it does
   * what the click does (and nothing while the button is disabled). The screen's stays within
   * the key's own gesture, which getDisplayMedia asks for.
   */
  press(which: "mic" | "camera" | "screen"): void {
    const button = which === "mic" ? this.mic.button : which === "camera" ? this.cam.button : this.screenButton;
    if (!button.disabled) button.click();
  }

  private listen(): void {
    const b = this.bindings;
    b.dom(this.roomInput, "input", () => this.onRoomInput());
    // The name goes with the next Connect (the others learn it on entering); not editable in a call.
    b.dom(this.nameInput, "input", () => this.write("name", [...this.nameInput.value].slice(0, MAX_NAME).join("")));
    b.dom(this.nameInput, "keydown", (event) => {
      if ((event as KeyboardEvent).key === "Enter" && !this.active() && !this.connectButton.disabled) this.connectButton.click();
    });
    b.dom(this.roomInput, "keydown", (event) => {
      if ((event as KeyboardEvent).key === "Enter" && !this.active()) this.connectButton.click();
    });
    b.dom(this.connectButton, "click", () => this.onConnect());
    b.dom(this.mic.button, "click", () => this.write("audio", !(this.model.get("audio") === true)));
    b.dom(this.cam.button, "click", () => this.write("video", !(this.model.get("video") === true)));
    // Synchronously down to getDisplayMedia: the browser asks for the click's gesture.
    b.dom(this.screenButton, "click", () => this.onScreen());
    b.dom(this.flipButton, "click", () => this.onFlip());
    b.dom(this.cameraSelect, "change", () => this.choose("camera", this.cameraSelect.value));
    b.dom(this.micSelect, "change", () => this.choose("microphone", this.micSelect.value));
  }

  private active(): boolean {
    return isActive(this.model.get("state"));
  }

  private write<K extends keyof Model>(trait: K, value: Model[K]): void {
    this.model.set(trait, value);
    this.model.save_changes();
  }

  /**
   * Connect asks for a new attempt (`_joins` + 1, then `_desired`), so it is heard even when
   * `_desired` is still true from a call the Call ended on its own (the Call never writes
   * `_desired`); Hang up (or Cancel) takes the wish back.
   */
  private onConnect(): void {
    if (this.active()) {
      this.write("_desired", false);
      return;
    }
    this.model.set("_joins", (this.model.get("_joins") ?? 0) + 1);
    this.write("_desired", true);
  }

  /**
   * `screen` may still be true while nothing is shared (the share ended on its own and the kernel
   * has not answered yet): the Call asks again only when `screen` changes, so write false first.
   */
  private onScreen(): void {
    if (this.call.sharingScreen) {
      this.write("screen", false);
      return;
    }
    if (this.model.get("screen") === true) this.write("screen", false);
    this.write("screen", true);
  }

  /** Switch camera: the camera facing the other way (or the next one), as if chosen in the list. */
  private onFlip(): void {
    const next = nextCamera(this.model.get("cameras") ?? [], this.currentCamera());
    if (next !== null) this.choose("camera", next.id);
  }

  /** The camera in use: the chosen one, or the device the live camera track comes from. */
  private currentCamera(): string {
    const chosen = this.model.get("camera") ?? "";
    if (chosen !== "") return chosen;
    return this.call.localStream?.getVideoTracks()[0]?.getSettings().deviceId ?? "";
  }

  private choose(trait: "camera" | "microphone", id: string): void {
    if ((this.model.get(trait) ?? "") === id) return;
    this.write(trait, id);
  }

  private onRoomInput(): void {
    const value = this.roomInput.value.trim();
    const valid = value === "" || ROOM_RE.test(value);
    setAttr(this.roomInput, "aria-invalid", String(!valid));
    setHidden(this.roomHint, valid);
    // Only valid names reach the model: Python validates `room` and would refuse the others.
    if (valid && value !== this.model.get("room")) this.write("room", value);
    this.renderFields();
  }

  /** The room and name fields and the Connect button. */
  private renderFields(): void {
    const state = this.model.get("state");
    const active = isActive(state);
    const room = this.model.get("room");
    // Room field: follows the model unless the user is typing something not yet valid.
    if (document.activeElement !== this.roomInput && this.roomInput.value !== room) {
      this.roomInput.value = room;
      setAttr(this.roomInput, "aria-invalid", "false");
      setHidden(this.roomHint, true);
    }
    setDisabled(this.roomInput, active);
    const name = this.model.get("name");
    if (document.activeElement !== this.nameInput && this.nameInput.value !== name) this.nameInput.value = name;
    setDisabled(this.nameInput, active);

    const typed = this.roomInput.value.trim();
    const roomOk = typed !== "" && ROOM_RE.test(typed);
    setText(this.connectLabel, state === "joining" ? "Cancel" : active ? "Hang up" : "Connect");
    setClass(this.connectButton, "ipymeet-danger", active);
    setDisabled(this.connectButton, !active && !roomOk);
    setAttr(this.connectButton, "title", !active && !roomOk ? "Type a room name first" : "");
  }

  /** The microphone, camera and screen buttons. */
  private renderMedia(): void {
    const model = this.model;
    const state = model.get("state");
    const audio = model.get("audio");
    const video = model.get("video");
    // In the room without a microphone or camera (receive-only): say so instead of "on".
    const local = this.call.localStream;
    const joined = state === "waiting" || state === "in_call";
    const noMic = joined && (local === null || local.getAudioTracks().length === 0);
    const noCam = joined && (local === null || local.getVideoTracks().length === 0);
    renderToggle(this.mic, audio, noMic, noMic ? "No mic" : audio ? "Mic on" : "Mic off", audio ? "Mute your microphone" : "Unmute your microphone");
    renderToggle(this.cam, video, noCam, noCam ? "No camera" : video ? "Camera on" : "Camera off", video ? "Turn your camera off" : "Turn your camera on");

    // Share screen: in a room only; pressed while the screen is asked for or sent.
    const sharing = this.call.sharingScreen;
    const wantScreen = model.get("screen") === true;
    setAttr(this.screenButton, "aria-pressed", String(sharing || wantScreen));
    setText(this.screenLabel, sharing ? "Stop sharing" : "Share screen");
    setAttr(this.screenButton, "aria-label", sharing ? "Stop sharing" : "Share screen");
    setDisabled(this.screenButton, !joined && !sharing);
    setAttr(
      this.screenButton,
      "title",
      !joined ? "Join a room to share your screen" : sharing ? "Send your camera again" : "Show your screen instead of your camera",
    );
  }

  private renderDevices(): void {
    const model = this.model;
    const cameras = model.get("cameras") ?? [];
    const microphones = model.get("microphones") ?? [];
    fillSelect(this.cameraSelect, cameras, model.get("camera") ?? "", "Default camera", "Camera");
    fillSelect(this.micSelect, microphones, model.get("microphone") ?? "", "Default microphone", "Microphone");
    setHidden(this.devices, cameras.length === 0 && microphones.length === 0);
    setHidden(this.flipButton, !canSwitchCamera(cameras, touchFirst()));
    setAttr(this.flipButton, "title", facesBothWays(cameras) ? "Use the camera facing the other way" : "Use your next camera");
  }

  private renderStatus(): void {
    const state = this.model.get("state");
    const waiting = this.call.waitingForKernel === true && isActive(state);
    const processedBy = this.model.get("_processed_by") ?? "";
    setText(this.statusText, waiting ? WAITING_FOR_KERNEL : describe(state, this.model.get("room"), this.call.remotePeers, processedBy));
    const via = this.model.get("connected_via");
    setText(this.statusVia, via && isActive(state) ? `via ${via}` : "");
  }

  private renderError(): void {
    const error = this.model.get("error");
    setText(this.errorBanner, error);
    setHidden(this.errorBanner, error === "");
    setClass(this.errorBanner, "ipymeet-warning", isWarning(this.model.get("error_code")) && this.active());
  }
}

/**
 * Its accessible name is its visible label ("Mic on"), which a person using speech control reads
 * off the screen; whether it is on is said by `aria-pressed` too.
 */
function toggle(testId: string, paths: string): Toggle {
  const label = h("span", { class: "ipymeet-btn-label" });
  const button = h(
    "button",
    { type: "button", class: "ipymeet-btn ipymeet-toggle", "data-testid": testId },
    icon(paths),
    label,
  );
  return { button, slash: icon(ICONS.off, "ipymeet-icon-slash"), label };
}

/** A toggle's state, in place: its icons are made once, the slash only goes in or out. */
function renderToggle(toggle: Toggle, on: boolean, missing: boolean, label: string, title: string): void {
  setAttr(toggle.button, "aria-pressed", String(on));
  setPresent(toggle.button, toggle.slash, !on || missing, toggle.label);
  setText(toggle.label, label);
  setDisabled(toggle.button, missing);
  setAttr(toggle.button, "title", title);
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
  setDisabled(select, devices.length === 0);
}

/** A touch-first device (phone, tablet): its main pointer is coarse. */
function touchFirst(): boolean {
  return typeof matchMedia === "function" && matchMedia("(pointer: coarse)").matches;
}

function names(peers: readonly RemotePeer[], processedBy = ""): string {
  const list = peers.map((peer) => (isProcessor(peer, processedBy) ? PROCESSED : peer.name || "a guest"));
  if (list.length <= 3) return list.join(", ").replace(/, ([^,]*)$/, " and $1");
  return `${list.slice(0, 2).join(", ")} and ${list.length - 2} others`;
}

function isProcessor(peer: RemotePeer, processedBy: string): boolean {
  return processedBy !== "" && peer.id === processedBy;
}

/** The status line's words for this widget's processor (`room.process`): your camera, not a person. */
const PROCESSED = "your processed camera";

/** The status line while the page's signalling waits on a kernel busy with a cell. */
export const WAITING_FOR_KERNEL = "Waiting for the kernel: a cell is running; the call connects when it ends";

/**
 * The status line. `processedBy`: the member id of this widget's processor (`_processed_by`), a
 * kernel peer showing your own camera back, named as such and never as someone you are in a call
 * with.
 */
export function describe(state: CallState, room: string, peers: readonly RemotePeer[], processedBy = ""): string {
  switch (state) {
    case "idle":
      return "Not connected";
    case "joining":
      return `Joining “${room}”…`;
    case "waiting": {
      if (peers.length === 0) return `In “${room}”, waiting for others`;
      return `In “${room}”, connecting to ${names(peers, processedBy)}…`;
    }
    case "in_call": {
      const connected = peers.filter((peer) => peer.connection === "connected");
      const others = connected.filter((peer) => !isProcessor(peer, processedBy));
      if (others.length > 0 || connected.length === 0) return `In a call in “${room}” with ${names(others)}`;
      // Only your own camera is back: no one else is in the call yet.
      const coming = peers.filter((peer) => !isProcessor(peer, processedBy) && peer.connection !== "connected");
      return `In “${room}” with ${PROCESSED}, ${coming.length > 0 ? `connecting to ${names(coming)}…` : "waiting for others"}`;
    }
    case "reconnecting":
      return `Reconnecting to “${room}”… the call goes on meanwhile`;
    case "left":
      return "You left the room";
    case "failed":
      return "Not connected";
  }
}

function isWarning(code: string): boolean {
  return code === "camera_denied" || code === "no_camera" || code === "camera_busy" || code === "insecure_context";
}
