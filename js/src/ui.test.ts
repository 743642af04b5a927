// @vitest-environment happy-dom
/**
 * The view on a real in-memory model (PageModel) and a fake Call that says by topic what changed.
 * A MutationObserver on the whole view shows what an update touched: every write in the view is
 * made only when the value differs, so records appear only where something really changed.
 */
import { afterEach, describe, expect, it } from "vitest";
import type { RemotePeer } from "./call";
import { FakeCall } from "./harness";
import { PageModel } from "./page";
import type { Model, PeerStats } from "./types";
import { RoomView } from "./ui";

function stream(...kinds: ("audio" | "video")[]): MediaStream {
  // happy-dom's MediaStream keeps any track-like objects; its tracks cannot be constructed.
  return new MediaStream(kinds.map((kind) => ({ kind, id: `${kind}-${Math.random()}` })) as unknown as MediaStreamTrack[]);
}

function member(id: string, name: string, overrides: Partial<RemotePeer> = {}): RemotePeer {
  return { id, name, connection: "connected", away: false, stream: stream("audio", "video"), audio: true, video: true, screen: false, speaking: false, lastSpeaker: false, stats: null, ...overrides };
}

function stats(rtt: number): PeerStats {
  return { rtt_ms: rtt, bitrate_in_kbps: 1500, bitrate_out_kbps: 1400, fps_in: 30, fps_out: 30, width: 1280, height: 720, packet_loss: 0, candidate_type: "host" };
}

/** The Call as the view reads it; `emit` plays the Call's notify. */
const views: RoomView[] = [];
afterEach(() => {
  for (const view of views.splice(0)) view.destroy();
  document.body.replaceChildren();
});

function mount(initial: Partial<Model> = {}) {
  const model = new PageModel({ room: "lab-42", name: "Ada", ...initial });
  const call = new FakeCall();
  const el = document.createElement("div");
  document.body.append(el);
  const view = new RoomView(el, model, call);
  views.push(view);
  return { model, call, el, view };
}

/** A call with Bea and Cy, the own camera on. */
function inCall() {
  const mounted = mount();
  const { model, call } = mounted;
  model.set("cameras", [{ id: "c1", label: "Front" }]);
  model.set("microphones", [{ id: "m1", label: "Built-in" }]);
  model.set("state", "in_call");
  model.set("connected_via", "http://127.0.0.1:8765");
  call.canChat = true;
  call.localStream = stream("audio", "video");
  call.members = [member("b", "Bea"), member("c", "Cy")];
  call.emit("local");
  call.emit("members");
  call.sendChat("hello");
  return mounted;
}

/** Every mutation of `el`'s subtree while `action` runs. */
function mutations(el: HTMLElement, action: () => void): MutationRecord[] {
  const observer = new MutationObserver(() => undefined);
  observer.observe(el, { subtree: true, childList: true, attributes: true, characterData: true });
  action();
  const records = observer.takeRecords();
  observer.disconnect();
  return records;
}

function elementOf(record: MutationRecord): Element {
  const target = record.target;
  return target instanceof Element ? target : target.parentElement!;
}

function describeRecord(record: MutationRecord): string {
  return `${record.type} ${record.attributeName ?? ""} on ${elementOf(record).outerHTML.slice(0, 120)}`;
}

const all = (el: HTMLElement, selector: string) => [...el.querySelectorAll(selector)];

describe("RoomView", () => {
  it("shows the call: a tile per member, the own preview, the status, the chat", () => {
    const { el } = inCall();
    expect(all(el, ".ipymeet-tile").map((tile) => tile.getAttribute("data-peer-id"))).toEqual(["b", "c"]);
    expect(el.querySelector("[data-testid=status]")!.textContent).toBe("In a call in “lab-42” with Bea and Cyvia http://127.0.0.1:8765");
    expect(el.querySelector(".ipymeet-stage")!.getAttribute("data-layout")).toBe("tiles");
    expect(el.querySelector(".ipymeet-root")!.getAttribute("data-state")).toBe("in_call");
    expect(el.querySelector(".ipymeet-main")!.getAttribute("data-chat")).toBe("on");
    expect(all(el, "[data-testid=chat-message]")).toHaveLength(1);
    expect(el.querySelector("[data-testid=connect]")!.textContent).toBe("Hang up");
  });

  it("a stats report changes the quality marks' level and figures, and nothing else", () => {
    const { el, call } = inCall();
    const buttons = all(el, "button");
    const buttonHtml = buttons.map((button) => button.innerHTML);
    const videos = all(el, "video");
    const icons = all(el, "svg");
    const tiles = all(el, ".ipymeet-tile");
    const html = el.innerHTML;

    const records = mutations(el, () => {
      call.change("b", { stats: stats(40) });
      call.change("c", { stats: stats(900) });
      call.emit("stats");
    });

    expect(records.length).toBeGreaterThan(0);
    for (const record of records) {
      expect(record.type).toBe("attributes");
      expect(["data-level", "title", "aria-label"]).toContain(record.attributeName);
      expect(elementOf(record).matches("[data-testid=quality]")).toBe(true);
    }
    expect(all(el, "[data-testid=quality]").map((q) => q.getAttribute("data-level"))).toEqual(["good", "poor"]);
    // The very same nodes, and no button changed inside.
    expect(all(el, "button")).toEqual(buttons);
    expect(all(el, "button").map((button) => button.innerHTML)).toEqual(buttonHtml);
    all(el, "video").forEach((video, i) => expect(video).toBe(videos[i]));
    all(el, "svg").forEach((svg, i) => expect(svg).toBe(icons[i]));
    all(el, ".ipymeet-tile").forEach((tile, i) => expect(tile).toBe(tiles[i]));
    const strip = (text: string) => text.replace(/ (data-level|title|aria-label)="[^"]*"/g, "");
    expect(strip(el.innerHTML)).toBe(strip(html));

    // The same figures again: not one write.
    expect(mutations(el, () => call.emit("stats"))).toEqual([]);
  });

  it("only the stage hears the stats; the controls and the chat never subscribe to them", () => {
    const { call, view } = inCall();
    expect(call.subscribers("stats")).toBe(1);
    view.destroy();
    expect(call.subscribers()).toBe(0);
  });

  it("a member's mute touches that member's tile only, and keeps its nodes", () => {
    const { el, call } = inCall();
    const bea = el.querySelector<HTMLElement>("[data-peer-id=b]")!;
    const mark = bea.querySelector<HTMLElement>(".ipymeet-muted")!;
    const video = bea.querySelector("video")!;
    expect(mark.hidden).toBe(true);

    const records = mutations(el, () => {
      call.change("b", { audio: false });
      call.emit("members");
    });

    expect(records.length).toBeGreaterThan(0);
    for (const record of records) expect(bea.contains(elementOf(record)), describeRecord(record)).toBe(true);
    expect(bea.classList.contains("ipymeet-tile-muted")).toBe(true);
    expect(bea.querySelector(".ipymeet-muted")).toBe(mark);
    expect(mark.hidden).toBe(false);
    expect(bea.querySelector("video")).toBe(video);
    expect(el.querySelector("[data-peer-id=c]")!.classList.contains("ipymeet-tile-muted")).toBe(false);
  });

  it("makes and removes tiles only as members come and go", () => {
    const { el, call } = inCall();
    const [bea, cy] = all(el, ".ipymeet-tile");
    const beaVideo = bea!.querySelector("video");

    call.members = [...call.members, member("d", "Dee")];
    call.emit("members");
    const afterJoin = all(el, ".ipymeet-tile");
    expect(afterJoin.map((tile) => tile.getAttribute("data-peer-id"))).toEqual(["b", "c", "d"]);
    expect(afterJoin[0]).toBe(bea);
    expect(afterJoin[1]).toBe(cy);

    call.members = call.members.filter((peer) => peer.id !== "c");
    call.emit("members");
    const afterLeave = all(el, ".ipymeet-tile");
    expect(afterLeave.map((tile) => tile.getAttribute("data-peer-id"))).toEqual(["b", "d"]);
    expect(afterLeave[0]).toBe(bea);
    expect(afterLeave[0]!.querySelector("video")).toBe(beaVideo);
    expect(cy!.isConnected).toBe(false);
  });

  it("a new stream goes into the same <video>", () => {
    const { el, call } = inCall();
    const video = el.querySelector<HTMLVideoElement>("[data-peer-id=b] video")!;
    const next = stream("video");
    call.change("b", { stream: next });
    call.emit("members");
    expect(el.querySelector("[data-peer-id=b] video")).toBe(video);
    expect(video.srcObject).toBe(next);
  });

  it("the mic button gains and loses its slash without making its icons again", () => {
    const { el, model } = inCall();
    const mic = el.querySelector<HTMLButtonElement>("[data-testid=mic]")!;
    const [micIcon] = all(mic, "svg");
    const label = mic.querySelector(".ipymeet-btn-label")!;
    expect(mic.querySelectorAll("svg")).toHaveLength(1);

    model.set("audio", false);
    const [first, slash] = all(mic, "svg");
    expect(first).toBe(micIcon);
    expect(slash!.classList.contains("ipymeet-icon-slash")).toBe(true);
    expect(label.textContent).toBe("Mic off");
    expect(mic.getAttribute("aria-pressed")).toBe("false");
    // The own preview says muted too.
    expect(el.querySelector(".ipymeet-self")!.classList.contains("ipymeet-tile-muted")).toBe(true);

    model.set("audio", true);
    expect(all(mic, "svg")).toEqual([micIcon]);
    expect(mic.lastChild).toBe(label);
    model.set("audio", false);
    expect(all(mic, "svg")[1]).toBe(slash);
  });

  it("without a microphone in the room the mic button says so and is disabled", () => {
    const { el, call } = inCall();
    call.localStream = stream("video");
    call.emit("local");
    const mic = el.querySelector<HTMLButtonElement>("[data-testid=mic]")!;
    expect(mic.textContent).toBe("No mic");
    expect(mic.disabled).toBe(true);
    expect(mic.querySelectorAll(".ipymeet-icon-slash")).toHaveLength(1);
  });

  it("a chat line appends one element and leaves the others", () => {
    const { el, call } = inCall();
    const [first] = all(el, "[data-testid=chat-message]");
    const records = mutations(el, () => call.sendChat("again"));
    const lines = all(el, "[data-testid=chat-message]");
    expect(lines).toHaveLength(2);
    expect(lines[0]).toBe(first);
    // The new line, and the second line's grouping under the first (same person, same minute).
    for (const record of records) expect(el.querySelector("[data-testid=chat-log]")!.contains(elementOf(record))).toBe(true);
  });
});

describe("RoomView's intent", () => {
  function changes(model: PageModel, traits: (keyof Model)[]): [string, unknown][] {
    const seen: [string, unknown][] = [];
    for (const trait of traits) model.on(`change:${trait}`, () => seen.push([trait, model.get(trait)]));
    return seen;
  }

  it("Connect adds one to _joins, then sets _desired; Hang up takes _desired back", () => {
    const { el, model } = mount();
    const connect = el.querySelector<HTMLButtonElement>("[data-testid=connect]")!;
    const seen = changes(model, ["_joins", "_desired"]);
    connect.click();
    expect(seen).toEqual([["_joins", 1], ["_desired", true]]);

    model.set("state", "in_call");
    connect.click();
    expect(seen.slice(2)).toEqual([["_desired", false]]);
    expect(model.get("_joins")).toBe(1);
  });

  it("Connect asks again even while _desired is still true from an attempt that ended", () => {
    const { el, model } = mount({ _desired: true, state: "failed" });
    const seen = changes(model, ["_joins", "_desired"]);
    el.querySelector<HTMLButtonElement>("[data-testid=connect]")!.click();
    expect(seen).toEqual([["_joins", 1]]);
  });

  it("Share screen writes false then true when screen is asked for but nothing is shared", () => {
    const { el, model, call } = inCall();
    const share = el.querySelector<HTMLButtonElement>("[data-testid=screen]")!;
    const seen = changes(model, ["screen"]);
    share.click();
    expect(seen).toEqual([["screen", true]]);
    // The share ended on its own; the kernel has not set screen back yet.
    share.click();
    expect(seen.slice(1)).toEqual([["screen", false], ["screen", true]]);

    call.sharingScreen = true;
    call.emit("local");
    expect(share.textContent).toBe("Stop sharing");
    share.click();
    expect(seen.slice(3)).toEqual([["screen", false]]);
  });

  it("the room field writes only valid names, and Enter connects", () => {
    const { el, model } = mount({ room: "" });
    const room = el.querySelector<HTMLInputElement>("[data-testid=room-input]")!;
    room.focus(); // typing: the field keeps what is typed
    const connect = el.querySelector<HTMLButtonElement>("[data-testid=connect]")!;
    expect(connect.disabled).toBe(true);
    room.value = "no spaces";
    room.dispatchEvent(new Event("input"));
    expect(model.get("room")).toBe("");
    expect(room.getAttribute("aria-invalid")).toBe("true");
    room.value = "lab-7";
    room.dispatchEvent(new Event("input"));
    expect(model.get("room")).toBe("lab-7");
    expect(connect.disabled).toBe(false);
    room.dispatchEvent(new KeyboardEvent("keydown", { key: "Enter" }));
    expect(model.get("_desired")).toBe(true);
  });
});

describe("what a screen reader is given", () => {
  it("names the toggles by their visible text, their state in aria-pressed", () => {
    const { el, model } = inCall();
    model.set("audio", true);
    model.set("video", false);
    const mic = el.querySelector<HTMLButtonElement>("[data-testid=mic]")!;
    const cam = el.querySelector<HTMLButtonElement>("[data-testid=cam]")!;
    // No aria-label: the name is the text a person sees (and may say to speech control).
    expect(mic.hasAttribute("aria-label")).toBe(false);
    expect(mic.textContent).toBe("Mic on");
    expect(mic.getAttribute("aria-pressed")).toBe("true");
    expect(cam.hasAttribute("aria-label")).toBe(false);
    expect(cam.textContent).toBe("Camera off");
    expect(cam.getAttribute("aria-pressed")).toBe("false");
  });

  it("labels each tile and its video with the member's name", () => {
    const { el, call } = inCall();
    const tile = el.querySelector<HTMLElement>("[data-peer-id=b]")!;
    expect(tile.getAttribute("role")).toBe("group");
    expect(tile.getAttribute("aria-label")).toBe("Bea");
    expect(tile.querySelector("video")!.getAttribute("aria-label")).toBe("Bea");
    call.members = [member("b", "")];
    call.emit("members");
    expect(tile.getAttribute("aria-label")).toBe("Guest");
  });

  it("has one polite live region, one alert, and the chat's heading under the page's", () => {
    const { el } = inCall();
    const live = [...el.querySelectorAll("[aria-live], [role=status], [role=alert], [role=log]")];
    expect(live.map((node) => node.getAttribute("data-testid"))).toEqual(["error", "chat-log", "announcements"]);
    expect(el.querySelector("[data-testid=status]")!.hasAttribute("aria-live")).toBe(false);
    // The chat's, and the shortcut list's (a modal dialog: a heading of its own, not under the chat's).
    const headings = [...el.querySelectorAll("h1, h2, h3, h4, h5, h6")];
    expect(headings.map((node) => [node.tagName, node.closest("dialog") !== null])).toEqual([
      ["H2", false],
      ["H2", true],
    ]);
    // The chat is no named landmark: a second widget on the page would repeat its name.
    expect(el.querySelector(".ipymeet-chat")!.hasAttribute("aria-label")).toBe(false);
  });
});
