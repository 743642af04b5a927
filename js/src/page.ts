/**
 * Page mode: the standalone page the signaller serves at `/` (server/core/page.html) runs the same
 * Call and view on a small in-memory model instead of a kernel's. With no Python there, the page
 * itself plays Python's part in following what the Call reports (`followTheCall`).
 */
import { Call } from "./call";
import { MAX_NAME, ROOM_RE } from "./contract";
import type { BrowserMessage, EventHandler, Model, WidgetModel } from "./types";
import { takeUrlToken } from "./tokens";
import { RoomView } from "./ui";

export interface PageOptions {
  room?: string;
  /**
   * The name to start with; without one, the page's `<meta name="ipymeet-name">` (the hub's
   * ipymeet service puts its logged-in user's there, server/hub/service.py), else none.
   */
  name?: string;
  /** Where the signaller is; defaults to the page's origin. */
  signalingUrl?: string;
}

type Listener = EventHandler;

/** The subset of anywidget's model API that ipymeet uses, in memory. */
export class PageModel implements WidgetModel {
  private readonly values: Model;
  private readonly listeners = new Map<string, Set<Listener>>();

  constructor(initial: Partial<Model> = {}) {
    this.values = {
      room: "",
      name: "",
      audio: true,
      video: true,
      screen: false,
      camera: "",
      microphone: "",
      video_size: null,
      frame_rate: null,
      signaling_url: "",
      route: "auto",
      relay_only: false,
      _port: 0,
      _client: "",
      _desired: false,
      _joins: 0,
      _secure: false,
      _kernel_busy: false,
      _shared: false,
      _invite_base: "",
      _processed_by: "",
      _call_ended: 0,
      _screen_ended: 0,
      state: "idle",
      error: "",
      error_code: "",
      connected_via: "",
      _browser_peers: [],
      cameras: [],
      microphones: [],
      messages: [],
      stats: {},
      diagnosis: {},
      peers: [],
      ...initial,
    };
  }

  get<K extends keyof Model>(key: K): Model[K] {
    return this.values[key];
  }

  set<K extends keyof Model>(key: K, value: Model[K]): void {
    const old = this.values[key];
    if (old === value || (typeof value === "object" && JSON.stringify(old) === JSON.stringify(value))) return;
    this.values[key] = value;
    for (const listener of [...(this.listeners.get(`change:${String(key)}`) ?? [])]) listener(this, value);
  }

  on(eventName: string, callback: Listener): void {
    let set = this.listeners.get(eventName);
    if (set === undefined) this.listeners.set(eventName, (set = new Set()));
    set.add(callback);
  }

  off(eventName?: string | null, callback?: Listener | null): void {
    if (eventName == null) {
      if (callback == null) this.listeners.clear();
      else for (const set of this.listeners.values()) set.delete(callback);
      return;
    }
    if (callback == null) this.listeners.delete(eventName);
    else this.listeners.get(eventName)?.delete(callback);
  }

  save_changes(): void {
    // Nothing to sync with: there is no kernel.
  }

  send(_message: BrowserMessage, _callbacks?: unknown, _buffers?: ArrayBuffer[] | ArrayBufferView[]): void {
    // Custom messages go nowhere in page mode: there is no kernel.
  }
}

declare global {
  interface Window {
    ipymeet?: { model: PageModel; call: Call };
  }
}

/**
 * Show a room in `el`, talking to the signaller at `options.signalingUrl`. With `?autojoin=1` in
 * the page's address it joins at once; otherwise it waits for Connect. `?relay=1` sends media only
 * through the signaller's TURN server (`relay_only`). Returns the model (also
 * at `window.ipymeet.model`, and the Call at `window.ipymeet.call`, e.g.
 * `window.ipymeet.call.sendChat("hi")`, for browser tests).
 */
export function mountPage(el: HTMLElement, options: PageOptions = {}): PageModel {
  const query = new URLSearchParams(location.search);
  const invite = takeUrlToken();
  const model = new PageModel({
    room: ROOM_RE.test(options.room ?? "") ? (options.room ?? "") : "",
    name: [...(options.name || servedName())].slice(0, MAX_NAME).join(""),
    signaling_url: options.signalingUrl ?? location.origin,
    relay_only: query.get("relay") === "1",
    // No widget key: a page is nobody's widget (a kernel's signaller admits keys it issued only).
    _client: "",
  });
  const call = new Call(model, {
    unreachableHint: "Is the ipymeet server still running? Reload the page to try again.",
    // The invite link's token opens the link's room only; any other room is entered without one.
    token: async (room) => (invite.token !== null && room === invite.room ? invite.token : undefined),
  });
  const unfollow = followTheCall(model);
  call.start();
  const view = new RoomView(el, model, call);
  window.ipymeet = { model, call };
  addEventListener("pagehide", () => {
    view.destroy();
    call.dispose();
    unfollow();
  }, { once: true });
  if (query.get("autojoin") === "1" && model.get("room") !== "") {
    // As the view's Connect does: a new attempt, and the wish to be in the call.
    model.set("_joins", model.get("_joins") + 1);
    model.set("_desired", true);
  }
  return model;
}

/** The name the server put in the page for whoever it served (the hub's login), or "". */
function servedName(): string {
  return document.querySelector<HTMLMetaElement>('meta[name="ipymeet-name"]')?.content ?? "";
}

/**
 * What Python does for a widget, for the page: the person's intent follows what the Call ended
 * on its own. `_call_ended` reaching `_joins` sets `_desired` back to false; a change of
 * `_screen_ended` sets `screen` back to false. Returns the undo.
 */
export function followTheCall(model: WidgetModel): () => void {
  const callEnded = (): void => {
    if (model.get("_call_ended") === model.get("_joins")) model.set("_desired", false);
  };
  const screenEnded = (): void => model.set("screen", false);
  model.on("change:_call_ended", callEnded);
  model.on("change:_screen_ended", screenEnded);
  return () => {
    model.off("change:_call_ended", callEnded);
    model.off("change:_screen_ended", screenEnded);
  };
}
