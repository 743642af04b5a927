/**
 * The keyboard shortcuts: M the microphone, V the camera, S the screen, C the chat field, ? their
 * list. They are heard only while focus is inside this view (its root is made focusable, so a
 * click on the widget gives it focus): in JupyterLab or Notebook 7 a key pressed in a cell never
 * reaches them. The keys they take stop there (Jupyter's command mode binds M, V, C and S itself:
 * M turns the cell to markdown); every other key goes on untouched.
 *
 * The listener is the window's, in the capture phase, and keeps only the keys whose path goes
 * through the root: Notebook 7 (unlike JupyterLab, which starts its app with `bubblingKeydown`)
 * runs its shortcuts from a capturing listener on the document, which a listener on the root
 * would hear only after the cell had already become markdown (seen with notebook 7.5).
 */
import { h } from "./dom";

export type Shortcut = "mic" | "camera" | "screen" | "chat" | "help";

/** The keys, in the order the list shows them. */
export const SHORTCUTS: readonly { key: string; action: Shortcut; what: string }[] = [
  { key: "M", action: "mic", what: "Mute or unmute your microphone" },
  { key: "V", action: "camera", what: "Turn your camera off or on" },
  { key: "S", action: "screen", what: "Share your screen, or stop sharing" },
  { key: "C", action: "chat", what: "Go to the chat field" },
  { key: "?", action: "help", what: "Show or hide this list" },
];

/** What `shortcutFor` reads of a keydown (a KeyboardEvent has it all). */
export interface KeyPress {
  key: string;
  ctrlKey: boolean;
  altKey: boolean;
  metaKey: boolean;
  isComposing?: boolean;
  target: EventTarget | null;
}

/**
 * The shortcut a key press asks for, or null: never with Ctrl, Alt or Meta (the browser's and
 * the notebook's own combinations), never while composing, never while typing in a field.
 */
export function shortcutFor(event: KeyPress): Shortcut | null {
  if (event.ctrlKey || event.altKey || event.metaKey || event.isComposing === true) return null;
  if (isTyping(event.target)) return null;
  const key = event.key.length === 1 ? event.key.toUpperCase() : "";
  return SHORTCUTS.find((shortcut) => shortcut.key === key)?.action ?? null;
}

/** Whether keys pressed on `target` are text being typed: a field, a list, editable content. */
export function isTyping(target: EventTarget | null): boolean {
  if (!(target instanceof Element)) return false;
  if (target instanceof HTMLElement && target.isContentEditable) return true;
  return target.closest('input, textarea, select, [contenteditable=""], [contenteditable="true"]') !== null;
}

/** What each key does; the list (`help`) is the Shortcuts' own. */
export type Actions = Record<Exclude<Shortcut, "help">, () => void>;

export class Shortcuts {
  /** The list of the keys: a dialog, closed with Escape or its button; focus goes back. */
  readonly dialog: HTMLDialogElement;
  private readonly root: HTMLElement;
  private readonly actions: Actions;
  private readonly onKey = (event: KeyboardEvent): void => this.keydown(event);
  private readonly onClose = (): void => this.closed();
  private readonly window: Window;
  private returnTo: HTMLElement | null = null;

  /** `root`: the view's root element, where the keys are heard and the dialog goes. */
  constructor(id: string, root: HTMLElement, actions: Actions) {
    this.root = root;
    this.actions = actions;
    // Focusable by a click or from code, not a Tab stop of its own: its controls are those.
    if (!root.hasAttribute("tabindex")) root.setAttribute("tabindex", "-1");
    const close = h("button", { type: "button", class: "ipymeet-btn ipymeet-keys-close", "data-testid": "shortcuts-close" }, "Close");
    close.addEventListener("click", () => this.hide());
    const rows = SHORTCUTS.map(({ key, what }) =>
      h("div", { class: "ipymeet-keys-row" }, h("dt", {}, h("kbd", {}, key)), h("dd", {}, what)),
    );
    this.dialog = h(
      "dialog",
      { class: "ipymeet-keys", "data-testid": "shortcuts", "aria-labelledby": `${id}-keys-title` },
      h("h2", { id: `${id}-keys-title`, class: "ipymeet-keys-title" }, "Keyboard shortcuts"),
      h("p", { class: "ipymeet-keys-note" }, "While the call has focus (click it, or Tab to one of its buttons):"),
      h("dl", { class: "ipymeet-keys-list" }, ...rows),
      close,
    );
    this.dialog.addEventListener("close", this.onClose);
    this.window = root.ownerDocument.defaultView ?? window;
    this.window.addEventListener("keydown", this.onKey, true);
  }

  get open(): boolean {
    return this.dialog.open;
  }

  /** Show the list, remembering where focus was so closing it goes back there. */
  show(): void {
    if (this.dialog.open) return;
    const active = document.activeElement;
    this.returnTo = active instanceof HTMLElement && this.root.contains(active) ? active : this.root;
    if (typeof this.dialog.showModal === "function") this.dialog.showModal();
    else this.dialog.setAttribute("open", "");
    this.dialog.querySelector<HTMLElement>(".ipymeet-keys-close")?.focus();
  }

  hide(): void {
    if (!this.dialog.open) return;
    if (typeof this.dialog.close === "function") this.dialog.close();
    else {
      this.dialog.removeAttribute("open");
      this.closed();
    }
  }

  dispose(): void {
    this.window.removeEventListener("keydown", this.onKey, true);
    this.dialog.removeEventListener("close", this.onClose);
    this.hide();
  }

  private closed(): void {
    const target = this.returnTo;
    this.returnTo = null;
    target?.focus();
  }

  private keydown(event: KeyboardEvent): void {
    // The path, not the target: inside a shadow root (marimo) the window sees the host as target.
    const path = event.composedPath();
    if (event.defaultPrevented || !path.includes(this.root)) return;
    if (this.dialog.open && event.key === "Escape") {
      this.take(event);
      this.hide();
      return;
    }
    const shortcut = shortcutFor({ ...pick(event), target: path[0] ?? event.target });
    if (shortcut === null) return;
    // The widget's key: it stops here (no markdown cell, and C types no "c" in the chat field).
    this.take(event);
    if (event.repeat) return; // a held M toggles once
    if (shortcut === "help") {
      if (this.dialog.open) this.hide();
      else this.show();
      return;
    }
    if (this.dialog.open) return; // the list is in front: it closes first
    this.actions[shortcut]();
  }

  private take(event: KeyboardEvent): void {
    event.preventDefault();
    event.stopPropagation();
  }
}

function pick(event: KeyboardEvent): Omit<KeyPress, "target"> {
  const { key, ctrlKey, altKey, metaKey, isComposing } = event;
  return { key, ctrlKey, altKey, metaKey, isComposing };
}
