// @vitest-environment happy-dom
/**
 * The keyboard shortcuts on a real view (RoomView on a PageModel and a fake Call): which key
 * presses are shortcuts, what each does to the model, which keys stop at the widget and which go
 * on to the page (Jupyter's own shortcuts listen above it), and the list's dialog.
 */
import { afterEach, describe, expect, it } from "vitest";
import { FakeCall } from "../harness";
import { PageModel } from "../page";
import { RoomView } from "../ui";
import { shortcutFor, type KeyPress } from "./keys";

const views: RoomView[] = [];
afterEach(() => {
  for (const view of views.splice(0)) view.destroy();
  document.body.replaceChildren();
});

/** A view in a call (so screen and chat are enabled), with a camera and a microphone. */
function inCall() {
  const model = new PageModel({ room: "lab-42", name: "Ada", state: "in_call" });
  const call = new FakeCall();
  call.canChat = true;
  const tracks = (["audio", "video"] as const).map((kind) => ({ kind, id: kind }));
  call.localStream = new MediaStream(tracks as unknown as MediaStreamTrack[]);
  const el = document.createElement("div");
  document.body.append(el);
  const view = new RoomView(el, model, call);
  views.push(view);
  call.emit("local");
  call.emit("chat");
  const root = el.querySelector<HTMLElement>(".ipymeet-root")!;
  const find = <T extends HTMLElement = HTMLElement>(id: string): T => el.querySelector<T>(`[data-testid=${id}]`)!;
  return { model, call, root, find };
}

/** Press `key` on `target` as the browser would; returns the event (was it taken?). */
function press(target: HTMLElement, key: string, extra: KeyboardEventInit = {}): KeyboardEvent {
  const event = new KeyboardEvent("keydown", { key, bubbles: true, cancelable: true, ...extra });
  target.dispatchEvent(event);
  return event;
}

/** The keys that reached the document (where JupyterLab's shortcuts listen) while `action` ran. */
function reachingDocument(action: () => void): string[] {
  const seen: string[] = [];
  const listener = (event: KeyboardEvent): void => void seen.push(event.key);
  document.addEventListener("keydown", listener);
  try {
    action();
  } finally {
    document.removeEventListener("keydown", listener);
  }
  return seen;
}

describe("shortcutFor", () => {
  const key = (k: string, extra: Partial<KeyPress> = {}): KeyPress => ({
    key: k, ctrlKey: false, altKey: false, metaKey: false, target: document.body, ...extra,
  });

  it("maps M, V, S, C and ? (either case) to their actions", () => {
    expect(["m", "M", "v", "V", "s", "S", "c", "C", "?"].map((k) => shortcutFor(key(k)))).toEqual([
      "mic", "mic", "camera", "camera", "screen", "screen", "chat", "chat", "help",
    ]);
  });

  it("ignores other keys, and any key with Ctrl, Alt or Meta or while composing", () => {
    for (const other of ["a", "x", "Enter", " ", "Escape", "Meta", "/"]) expect(shortcutFor(key(other))).toBeNull();
    expect(shortcutFor(key("m", { ctrlKey: true }))).toBeNull();
    expect(shortcutFor(key("m", { altKey: true }))).toBeNull();
    expect(shortcutFor(key("m", { metaKey: true }))).toBeNull();
    expect(shortcutFor(key("m", { isComposing: true }))).toBeNull();
  });

  it("ignores keys typed in a field, a list or editable content", () => {
    const input = document.createElement("input");
    const textarea = document.createElement("textarea");
    const select = document.createElement("select");
    const editable = document.createElement("div");
    editable.setAttribute("contenteditable", "true");
    const inside = document.createElement("span");
    editable.append(inside);
    document.body.append(input, textarea, select, editable);
    for (const target of [input, textarea, select, editable, inside]) expect(shortcutFor(key("m", { target }))).toBeNull();
    expect(shortcutFor(key("m", { target: document.createElement("button") }))).toBe("mic");
  });
});

describe("the view's shortcuts", () => {
  it("makes the root focusable by a click without adding a Tab stop", () => {
    const { root } = inCall();
    expect(root.getAttribute("tabindex")).toBe("-1");
  });

  it("M, V and S press the microphone, camera and screen buttons", () => {
    const { model, root, find } = inCall();
    press(root, "m");
    expect(model.get("audio")).toBe(false);
    expect(find("mic").getAttribute("aria-pressed")).toBe("false");
    press(root, "M");
    expect(model.get("audio")).toBe(true);
    press(find("mic"), "v"); // from a focused button too
    expect(model.get("video")).toBe(false);
    press(root, "s");
    expect(model.get("screen")).toBe(true);
    expect(find("mic").getAttribute("aria-keyshortcuts")).toBe("M");
    expect(find("cam").getAttribute("aria-keyshortcuts")).toBe("V");
    expect(find("screen").getAttribute("aria-keyshortcuts")).toBe("S");
  });

  it("does nothing from a field: typing m in the chat mutes nothing", () => {
    const { model, find } = inCall();
    for (const field of ["chat-input", "room-input", "name-input"]) {
      const event = press(find(field), "m");
      expect(event.defaultPrevented).toBe(false);
    }
    expect(model.get("audio")).toBe(true);
  });

  it("stops its own keys at the widget and lets every other key go on", () => {
    const { root } = inCall();
    const seen = reachingDocument(() => {
      for (const key of ["m", "v", "c", "?", "a", "Enter", "ArrowDown"]) press(root, key);
      press(root, "m", { ctrlKey: true });
    });
    expect(seen).toEqual(["a", "Enter", "ArrowDown", "m"]);
  });

  it("hears nothing from outside the widget: M in the page (a notebook cell) is the page's", () => {
    const { model } = inCall();
    const outside = document.createElement("div");
    outside.tabIndex = -1;
    document.body.append(outside);
    const seen = reachingDocument(() => {
      const event = press(outside, "m");
      expect(event.defaultPrevented).toBe(false);
    });
    expect(seen).toEqual(["m"]);
    expect(model.get("audio")).toBe(true);
  });

  it("a held key toggles once", () => {
    const { model, root } = inCall();
    press(root, "m");
    press(root, "m", { repeat: true });
    press(root, "m", { repeat: true });
    expect(model.get("audio")).toBe(false);
  });

  it("does nothing with a disabled button: no microphone, no mute", () => {
    const { model, call, root, find } = inCall();
    call.localStream = new MediaStream([{ kind: "video", id: "v" }] as unknown as MediaStreamTrack[]);
    call.emit("local");
    expect((find<HTMLButtonElement>("mic")).disabled).toBe(true);
    press(root, "m");
    expect(model.get("audio")).toBe(true);
  });

  it("C puts focus in the chat field without typing a c there", () => {
    const { root, find } = inCall();
    const event = press(root, "c");
    expect(document.activeElement).toBe(find("chat-input"));
    expect(event.defaultPrevented).toBe(true);
  });

  it("? shows the list in a dialog; Escape closes it and focus goes back", () => {
    const { model, root, find } = inCall();
    const mic = find("mic");
    mic.focus();
    const dialog = find<HTMLDialogElement>("shortcuts");
    expect(dialog.open).toBe(false);
    press(mic, "?", { shiftKey: true });
    expect(dialog.open).toBe(true);
    expect(dialog.getAttribute("aria-labelledby")).toBe(dialog.querySelector("h2")!.id);
    expect([...dialog.querySelectorAll("kbd")].map((k) => k.textContent)).toEqual(["M", "V", "S", "C", "?"]);
    expect(document.activeElement).toBe(find("shortcuts-close"));
    // The list is in front: M does nothing until it closes.
    press(find("shortcuts-close"), "m");
    expect(model.get("audio")).toBe(true);
    const seen = reachingDocument(() => press(find("shortcuts-close"), "Escape"));
    expect(seen).toEqual([]);
    expect(dialog.open).toBe(false);
    expect(document.activeElement).toBe(mic);
    // Its Close button closes it too; focus goes back to the root when it was there.
    root.focus();
    press(root, "?");
    find("shortcuts-close").click();
    expect(dialog.open).toBe(false);
    expect(document.activeElement).toBe(root);
  });

  it("hears nothing once the view is gone", () => {
    const { model, root } = inCall();
    views.pop()!.destroy();
    press(root, "m");
    expect(model.get("audio")).toBe(true);
  });
});
