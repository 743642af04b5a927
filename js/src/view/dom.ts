/**
 * Small DOM helpers shared by the parts of the view: element and icon builders, and writes that
 * touch the DOM only when the value differs (so an update that changes nothing mutates nothing,
 * which the tests check with a MutationObserver).
 */
import type { Model, WidgetModel } from "../types";

export const ICONS = {
  mic: '<path d="M12 3a3 3 0 0 0-3 3v5a3 3 0 0 0 6 0V6a3 3 0 0 0-3-3z"/><path d="M5.5 11a6.5 6.5 0 0 0 13 0M12 17.5V21"/>',
  cam: '<rect x="3" y="6.5" width="12.5" height="11" rx="2"/><path d="M15.5 10.5 21 7.5v9l-5.5-3z"/>',
  off: '<path d="M4 4l16 16"/>',
  micOff:
    '<path d="M9 9v2a3 3 0 0 0 5.1 2.1M15 10V6a3 3 0 0 0-5.7-1.3"/><path d="M5.5 11a6.5 6.5 0 0 0 10.9 4.8M18.4 13.3a6.5 6.5 0 0 0 .1-2.3M12 17.5V21M4 4l16 16"/>',
  flip: '<path d="M4 9a8 8 0 0 1 14.3-3.2M20 15a8 8 0 0 1-14.3 3.2"/><path d="M18.5 2.5v3.5H15M5.5 21.5V18H9"/><circle cx="12" cy="12" r="2.5"/>',
  screen: '<rect x="3" y="4.5" width="18" height="12" rx="1.5"/><path d="M8.5 20h7M12 16.5V20"/>',
  send: '<path d="M4 12 20 4l-6 16-3-7z"/><path d="m11 13 9-9"/>',
  phone:
    '<path d="M6.6 3.5h2.9l1.6 4.3-2 1.4a11.5 11.5 0 0 0 5.7 5.7l1.4-2 4.3 1.6v2.9a2 2 0 0 1-2.2 2A16.5 16.5 0 0 1 4.6 5.7a2 2 0 0 1 2-2.2z"/>',
};

export function icon(paths: string, extraClass = ""): SVGSVGElement {
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("aria-hidden", "true");
  svg.setAttribute("class", `ipymeet-icon ${extraClass}`.trim());
  svg.innerHTML = paths; // constant strings above, never user data
  return svg;
}

export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attributes: Record<string, string> = {},
  ...children: (Node | string)[]
): HTMLElementTagNameMap[K] {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) element.setAttribute(name, value);
  element.append(...children);
  return element;
}

/** The mic-off mark shown beside a muted person's name. */
export function mutedMark(): HTMLElement {
  return h(
    "span",
    { class: "ipymeet-muted", role: "img", "aria-label": "Microphone muted", title: "Microphone muted" },
    icon(ICONS.micOff),
  );
}

export function setText(element: Element, text: string): void {
  if (element.textContent !== text) element.textContent = text;
}

export function setAttr(element: Element, name: string, value: string): void {
  if (element.getAttribute(name) !== value) element.setAttribute(name, value);
}

export function setData(element: HTMLElement, key: string, value: string): void {
  if (element.dataset[key] !== value) element.dataset[key] = value;
}

/** Like `classList.toggle(name, on)`, which some DOMs count as a change even when it is none. */
export function setClass(element: Element, name: string, on: boolean): void {
  if (element.classList.contains(name) !== on) element.classList.toggle(name, on);
}

export function setHidden(element: HTMLElement, hidden: boolean): void {
  if (element.hidden !== hidden) element.hidden = hidden;
}

export function setDisabled(element: HTMLButtonElement | HTMLInputElement | HTMLSelectElement, disabled: boolean): void {
  if (element.disabled !== disabled) element.disabled = disabled;
}

/** Put `node` in `parent` before `before` when `shown`, take it out when not; else leave both. */
export function setPresent(parent: Element, node: Node, shown: boolean, before: Node | null): void {
  if (shown === (node.parentNode === parent)) return;
  if (shown) parent.insertBefore(node, before);
  else node.parentNode?.removeChild(node);
}

export function detach(video: HTMLVideoElement): void {
  video.pause();
  video.srcObject = null;
}

/** Listeners to remove together when a part of the view goes. */
export class Bindings {
  private readonly undo: (() => void)[] = [];

  dom(target: EventTarget, event: string, listener: EventListener): void {
    target.addEventListener(event, listener);
    this.undo.push(() => target.removeEventListener(event, listener));
  }

  /** `listener` on each of `traits`' change events of `model`. */
  traits(model: WidgetModel, traits: readonly (keyof Model)[], listener: () => void): void {
    for (const trait of traits) {
      const event = `change:${trait}` as const;
      model.on(event, listener);
      this.undo.push(() => model.off(event, listener));
    }
  }

  add(undo: () => void): void {
    this.undo.push(undo);
  }

  dispose(): void {
    for (const undo of this.undo.splice(0)) undo();
  }
}
