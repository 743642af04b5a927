/**
 * The card on the stage while you are in the room alone: where the widget listens, and how others
 * get there — from a notebook (the notebooks, dashboards and marimo apps that reach the same
 * signaller) and from a browser (the invite link, or where to get one when the room needs a
 * token); on a JupyterHub, the hub's ipymeet service and its login instead. `aloneText` decides
 * the words (a pure function, tested by table); `AloneCard` shows them, with a Copy button.
 */
import { Bindings, h, setAttr, setHidden, setText } from "./dom";

/** What the card reads of the model (the traits of the same names). */
export interface AloneFacts {
  room: string;
  /** `_invite_base`: the signaller's public URL without a token ("" when not known). */
  base: string;
  /** `_shared`: other kernels of this user can join this signaller. */
  shared: boolean;
  /** `_secure`: entering needs a join token. */
  secure: boolean;
  /** `signaling_url`: an explicit signaller, not the kernel's. */
  explicit: boolean;
  /** `connected_via`: the route the page took ("kernel", a proxy URL, or the signaller's own). */
  via: string;
  /**
   * The hub's ipymeet service as this page reaches it, when the widget's kernel is attached to
   * one (`signaling_url` is then its path on the page's own origin, server/hub/client.py); "" elsewhere.
   */
  hubService: string;
}

export interface AloneText {
  title: string;
  /** Where the signaller listens, and whose it is. */
  where: string;
  /** Who can join from Jupyter. */
  jupyter: string;
  /** The invite link, or null when the room needs a token (then `browser` says where to get one). */
  link: string | null;
  /** Beside the link: who it reaches; without a link: how to get one. */
  browser: string;
}

/**
 * The card's words, or null when there is nothing more to say than the stage's usual line (the
 * signaller's address is not known, as on the standalone page, where the address bar is the link).
 */
export function aloneText(facts: AloneFacts): AloneText | null {
  if (facts.hubService !== "") return hubText(facts.room, facts.hubService);
  const url = parseUrl(facts.base);
  if (url === null || facts.room === "") return null;
  const room = `“${facts.room}”`;
  // A signaller on the server's loopback that this page reached only by a detour (the kernel's
  // comm, a proxy) is on another machine than this browser: its address means nothing here.
  const remote = isLoopback(url.hostname) && parseUrl(facts.via)?.origin !== url.origin;
  const whose = facts.explicit
    ? "the signaller signaling_url names"
    : facts.shared
      ? "the signaller your notebooks, dashboards and marimo apps share"
      : "this kernel's own signaller";
  const jupyter = facts.explicit
    ? `Any VideoRoom with this signaling_url and the room ${room}.`
    : facts.shared
      ? `Any notebook, Voilà dashboard or marimo app of yours on this ${remote ? "server" : "machine"} that opens ${room}.`
      : `Another widget of this kernel in ${room}.`;
  let link: string | null = null;
  let browser: string;
  if (facts.secure) {
    browser = facts.explicit
      ? `This signaller needs a join token: ipymeet token ${facts.room} gives a link with one.`
      : "The room needs a join token: room.invite_url in Python gives a link with one.";
  } else if (remote) {
    browser = "The signaller listens on the server's loopback only, out of other browsers' reach: they join from Jupyter.";
  } else {
    link = `${facts.base.replace(/\/+$/, "")}/?room=${encodeURIComponent(facts.room)}`;
    browser = isLoopback(url.hostname)
      ? "Opens in browsers on this machine (the signaller listens on loopback only)."
      : "Anyone who can reach this address opens the room in a browser.";
  }
  const where = `Listening on ${url.host}${remote ? " on the server" : ""}, ${whose}.`;
  return { title: `No one else is in ${room} yet`, where, jupyter, link, browser };
}

/**
 * On a JupyterHub every user's kernel attaches to the hub's service (IPYMEET_SIGNALLER), and the
 * hub's login, not a join token, lets browsers in (docs/deploy.md, "JupyterHub").
 */
function hubText(roomName: string, service: string): AloneText | null {
  const url = parseUrl(service);
  if (url === null || roomName === "") return null;
  const room = `“${roomName}”`;
  return {
    title: `No one else is in ${room} yet`,
    where: `Listening on ${url.host}, the hub's ipymeet service.`,
    jupyter: `Any notebook or Voilà dashboard on this hub, yours or another user's, that opens ${room}.`,
    link: `${service.replace(/\/+$/, "")}/?room=${encodeURIComponent(roomName)}`,
    browser: "Opens for anyone the hub lets into its ipymeet service, after the hub's login.",
  };
}

/** `signaling_url` as `hubService`: a path is the hub's service on the page's own origin. */
export function hubServiceOf(signalingUrl: string, page: string): string {
  if (!signalingUrl.startsWith("/") || signalingUrl.startsWith("//")) return "";
  try {
    return new URL(signalingUrl, page).href;
  } catch {
    return "";
  }
}

function parseUrl(base: string): URL | null {
  if (base === "") return null;
  try {
    return new URL(base);
  } catch {
    return null;
  }
}

function isLoopback(hostname: string): boolean {
  return hostname === "localhost" || hostname === "[::1]" || /^127\./.test(hostname);
}

/** How long "Copied" shows before the button says "Copy" again. */
export const COPIED_MS = 2000;

export class AloneCard {
  readonly root: HTMLElement;
  private readonly bindings = new Bindings();
  private readonly title: HTMLElement;
  private readonly where: HTMLElement;
  private readonly jupyter: HTMLElement;
  private readonly linkRow: HTMLElement;
  private readonly link: HTMLInputElement;
  private readonly copy: HTMLButtonElement;
  private readonly browser: HTMLElement;
  private copiedTimer: ReturnType<typeof setTimeout> | undefined;

  constructor() {
    this.title = h("span", { class: "ipymeet-alone-title" });
    this.where = h("p", { class: "ipymeet-alone-where", "data-testid": "alone-where" });
    this.jupyter = h("div", { class: "ipymeet-alone-way-body", "data-testid": "alone-jupyter" });
    this.link = h("input", {
      class: "ipymeet-alone-link",
      "data-testid": "invite-link",
      type: "text",
      readonly: "",
      spellcheck: "false",
      "aria-label": "Invite link",
    });
    this.copy = h("button", { type: "button", class: "ipymeet-btn ipymeet-alone-copy", "data-testid": "copy-invite" }, "Copy");
    this.linkRow = h("span", { class: "ipymeet-alone-link-row" }, this.link, this.copy);
    this.browser = h("span", { class: "ipymeet-alone-note", "data-testid": "alone-browser" });
    // Not live: on entering alone the announcements say no one else is here (announce.ts).
    this.root = h(
      "section",
      { class: "ipymeet-alone", "data-testid": "alone" },
      h("div", { class: "ipymeet-alone-head" }, h("span", { class: "ipymeet-alone-pulse", "aria-hidden": "true" }), this.title),
      this.where,
      h(
        "div",
        { class: "ipymeet-alone-ways" },
        h("div", { class: "ipymeet-alone-way" }, h("span", { class: "ipymeet-alone-label" }, "From a notebook"), this.jupyter),
        h(
          "div",
          { class: "ipymeet-alone-way" },
          h("span", { class: "ipymeet-alone-label" }, "From a browser"),
          h("div", { class: "ipymeet-alone-way-body" }, this.linkRow, this.browser),
        ),
      ),
    );
    this.root.hidden = true;
    // One click selects the whole link, ready to copy by hand too.
    this.bindings.dom(this.link, "focus", () => this.link.select());
    this.bindings.dom(this.copy, "click", () => void this.copyLink());
  }

  /** Show `text`, or hide the card (null). */
  update(text: AloneText | null): void {
    setHidden(this.root, text === null);
    if (text === null) return;
    setAttr(this.root, "aria-label", text.title);
    setText(this.title, text.title);
    setText(this.where, text.where);
    setText(this.jupyter, text.jupyter);
    setHidden(this.linkRow, text.link === null);
    if (text.link !== null && this.link.value !== text.link) this.link.value = text.link;
    setText(this.browser, text.browser);
  }

  dispose(): void {
    this.bindings.dispose();
    clearTimeout(this.copiedTimer);
  }

  private async copyLink(): Promise<void> {
    const copied = await writeClipboard(this.link);
    setText(this.copy, copied ? "Copied" : "Select and copy");
    clearTimeout(this.copiedTimer);
    this.copiedTimer = setTimeout(() => setText(this.copy, "Copy"), COPIED_MS);
  }
}

/** Copy the input's text: the Clipboard API where the page may use it, else the selection. */
async function writeClipboard(input: HTMLInputElement): Promise<boolean> {
  try {
    await navigator.clipboard.writeText(input.value);
    return true;
  } catch {
    // Not a secure context, or permission refused: select it, and let the browser try.
    input.focus();
    input.select();
    try {
      return document.execCommand("copy");
    } catch {
      return false;
    }
  }
}
