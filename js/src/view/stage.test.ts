// @vitest-environment happy-dom
import { afterEach, describe, expect, it, vi } from "vitest";
import type { RemotePeer } from "../call";
import { FakeCall, remotePeer } from "../harness";
import { PageModel } from "../page";
import type { Model } from "../types";
import { type AloneFacts, aloneText, COPIED_MS, hubServiceOf } from "./alone";
import { columnsFor, PROCESSED_LABEL, Stage } from "./stage";

describe("columnsFor", () => {
  it("lays out everyone (you included) as 2 side by side, 2 over 1, 2×2, then 3×2", () => {
    expect([1, 2, 3, 4, 5, 6].map(columnsFor)).toEqual([1, 2, 2, 2, 3, 3]);
  });
});

const facts = (overrides: Partial<AloneFacts> = {}): AloneFacts => ({
  room: "lobby",
  base: "http://127.0.0.1:24567",
  shared: true,
  secure: false,
  explicit: false,
  via: "http://127.0.0.1:24567",
  hubService: "",
  ...overrides,
});

describe("aloneText (the card while you are alone)", () => {
  it("on a shared signaller: any notebook or dashboard of yours, and the link", () => {
    expect(aloneText(facts())).toEqual({
      title: "No one else is in “lobby” yet",
      where: "Listening on 127.0.0.1:24567, the signaller your notebooks, dashboards and marimo apps share.",
      jupyter: "Any notebook, Voilà dashboard or marimo app of yours on this machine that opens “lobby”.",
      link: "http://127.0.0.1:24567/?room=lobby",
      browser: "Opens in browsers on this machine (the signaller listens on loopback only).",
    });
  });

  it("on the kernel's own signaller: another widget of this kernel", () => {
    const text = aloneText(facts({ shared: false }));
    expect(text?.where).toBe("Listening on 127.0.0.1:24567, this kernel's own signaller.");
    expect(text?.jupyter).toBe("Another widget of this kernel in “lobby”.");
  });

  it("a room that needs a token shows no link, but where to get one", () => {
    const kernel = aloneText(facts({ secure: true, base: "https://192.168.1.20:24567" }));
    expect(kernel?.link).toBeNull();
    expect(kernel?.browser).toBe("The room needs a join token: room.invite_url in Python gives a link with one.");
    const explicit = aloneText(facts({ secure: true, explicit: true, shared: false, base: "https://meet.example.org" }));
    expect(explicit?.link).toBeNull();
    expect(explicit?.browser).toBe("This signaller needs a join token: ipymeet token lobby gives a link with one.");
  });

  it("names an explicit signaller as signaling_url's, and a reachable address as such", () => {
    const text = aloneText(facts({ explicit: true, shared: false, base: "https://meet.example.org/" }));
    expect(text).toEqual({
      title: "No one else is in “lobby” yet",
      where: "Listening on meet.example.org, the signaller signaling_url names.",
      jupyter: "Any VideoRoom with this signaling_url and the room “lobby”.",
      link: "https://meet.example.org/?room=lobby",
      browser: "Anyone who can reach this address opens the room in a browser.",
    });
  });

  it("a page that reached a loopback signaller by a detour is elsewhere: no link, join from Jupyter", () => {
    for (const via of ["kernel", "https://hub.example.org/user/ada/proxy/24567"]) {
      expect(aloneText(facts({ via }))).toEqual({
        title: "No one else is in “lobby” yet",
        where: "Listening on 127.0.0.1:24567 on the server, the signaller your notebooks, dashboards and marimo apps share.",
        jupyter: "Any notebook, Voilà dashboard or marimo app of yours on this server that opens “lobby”.",
        link: null,
        browser: "The signaller listens on the server's loopback only, out of other browsers' reach: they join from Jupyter.",
      });
    }
    // A signaller listening beyond loopback: its link is worth giving, whatever the route.
    expect(aloneText(facts({ via: "kernel", base: "https://192.168.1.20:24567" }))?.link).toBe("https://192.168.1.20:24567/?room=lobby");
  });

  it("on a JupyterHub: the hub's service, every user's notebooks, and the hub's login", () => {
    // As a hub user's kernel sees it: attached to the service (its signaling_url a path), shared,
    // and its own address of the service, which may be one the browser cannot reach.
    const hub = facts({
      explicit: true,
      base: "http://proxy-public/services/ipymeet",
      via: "https://hub.example.org/services/ipymeet/",
      hubService: "https://hub.example.org/services/ipymeet/",
    });
    expect(aloneText(hub)).toEqual({
      title: "No one else is in “lobby” yet",
      where: "Listening on hub.example.org, the hub's ipymeet service.",
      jupyter: "Any notebook or Voilà dashboard on this hub, yours or another user's, that opens “lobby”.",
      link: "https://hub.example.org/services/ipymeet/?room=lobby",
      browser: "Opens for anyone the hub lets into its ipymeet service, after the hub's login.",
    });
    expect(JSON.stringify(aloneText(hub))).not.toContain("signaling_url");
    expect(aloneText({ ...hub, room: "" })).toBeNull();
  });

  it("knows the hub's service by a signaling_url that is a path on the page's origin", () => {
    const page = "https://hub.example.org/user/ada/lab/tree/call.ipynb";
    expect(hubServiceOf("/services/ipymeet/", page)).toBe("https://hub.example.org/services/ipymeet/");
    for (const other of ["", "https://meet.example.org", "//meet.example.org/x/"]) expect(hubServiceOf(other, page)).toBe("");
  });

  it("says nothing more than the usual line without an address or a room", () => {
    expect(aloneText(facts({ base: "" }))).toBeNull();
    expect(aloneText(facts({ base: "not a url" }))).toBeNull();
    expect(aloneText(facts({ room: "" }))).toBeNull();
  });
});

/** The Call as the stage reads it: members and the local stream, by topic. */

const stages: Stage[] = [];
afterEach(() => {
  for (const stage of stages.splice(0)) stage.dispose();
  document.body.replaceChildren();
  vi.useRealTimers();
});

function mount(initial: Partial<Model>) {
  const model = new PageModel({
    room: "lobby",
    state: "waiting",
    _invite_base: "http://127.0.0.1:24567",
    _shared: true,
    connected_via: "http://127.0.0.1:24567",
    ...initial,
  });
  const call = new FakeCall();
  const stage = new Stage(model, call);
  stages.push(stage);
  document.body.append(stage.root);
  const card = stage.root.querySelector<HTMLElement>("[data-testid=alone]")!;
  const empty = stage.root.querySelector<HTMLElement>(".ipymeet-empty")!;
  return { model, call, stage, card, empty };
}

const peer = (id: string): RemotePeer => remotePeer(id, { connection: "connecting" });

describe("the stage while alone", () => {
  it("shows the card in the room alone, and the usual line otherwise", () => {
    const { model, call, card, empty } = mount({ state: "joining" });
    expect(card.hidden).toBe(true);
    expect(empty.hidden).toBe(false);
    expect(empty.textContent).toBe("Joining “lobby”…");

    model.set("state", "waiting");
    expect(card.hidden).toBe(false);
    expect(empty.hidden).toBe(true);
    expect(card.querySelector(".ipymeet-alone-title")?.textContent).toBe("No one else is in “lobby” yet");
    expect(card.querySelector<HTMLInputElement>("[data-testid=invite-link]")?.value).toBe("http://127.0.0.1:24567/?room=lobby");

    call.members = [peer("bea")];
    call.emit("members");
    expect(card.hidden).toBe(true);

    call.members = [];
    call.emit("members");
    expect(card.hidden).toBe(false);
    model.set("state", "left");
    expect(card.hidden).toBe(true);
    expect(empty.hidden).toBe(false);
  });

  it("follows the traits it shows: tokens hide the link, the signaller's kind changes the words", () => {
    const { model, card } = mount({});
    const linkRow = card.querySelector<HTMLElement>(".ipymeet-alone-link-row")!;
    expect(linkRow.hidden).toBe(false);
    model.set("_secure", true);
    expect(linkRow.hidden).toBe(true);
    expect(card.querySelector("[data-testid=alone-browser]")?.textContent).toContain("room.invite_url");
    model.set("_shared", false);
    expect(card.querySelector("[data-testid=alone-jupyter]")?.textContent).toBe("Another widget of this kernel in “lobby”.");
    model.set("_secure", false);
    model.set("connected_via", "kernel");
    expect(linkRow.hidden).toBe(true);
    expect(card.querySelector("[data-testid=alone-where]")?.textContent).toContain("on the server");
  });

  it("in a hub user's kernel (signaling_url a path) names the hub's service and its link on the page's origin", () => {
    const { card } = mount({ signaling_url: "/services/ipymeet/", _invite_base: "http://proxy-public/services/ipymeet" });
    const text = (id: string): string | null | undefined => card.querySelector(`[data-testid=${id}]`)?.textContent;
    expect(card.hidden).toBe(false);
    expect(text("alone-where")).toBe(`Listening on ${location.host}, the hub's ipymeet service.`);
    expect(text("alone-jupyter")).toBe("Any notebook or Voilà dashboard on this hub, yours or another user's, that opens “lobby”.");
    expect(card.querySelector<HTMLInputElement>("[data-testid=invite-link]")?.value).toBe(`${location.origin}/services/ipymeet/?room=lobby`);
    expect(text("alone-browser")).toBe("Opens for anyone the hub lets into its ipymeet service, after the hub's login.");
  });

  it("without the signaller's address (the standalone page) keeps the usual line", () => {
    const { card, empty } = mount({ _invite_base: "" });
    expect(card.hidden).toBe(true);
    expect(empty.hidden).toBe(false);
    expect(empty.textContent).toBe("No one else is here yet. Others join with the room name “lobby”.");
  });

  it("Copy puts the link on the clipboard and says so for a moment", async () => {
    vi.useFakeTimers();
    const written: string[] = [];
    Object.defineProperty(navigator, "clipboard", {
      configurable: true,
      value: { writeText: async (text: string) => void written.push(text) },
    });
    const { card } = mount({});
    const copy = card.querySelector<HTMLButtonElement>("[data-testid=copy-invite]")!;
    copy.click();
    await vi.waitFor(() => expect(copy.textContent).toBe("Copied"));
    expect(written).toEqual(["http://127.0.0.1:24567/?room=lobby"]);
    vi.advanceTimersByTime(COPIED_MS);
    expect(copy.textContent).toBe("Copy");
  });

  it("an update that changes nothing touches nothing", () => {
    const { model, call, card } = mount({});
    const records: MutationRecord[] = [];
    const observer = new MutationObserver((found) => records.push(...found));
    observer.observe(card, { subtree: true, childList: true, attributes: true, characterData: true });
    call.emit("members");
    model.set("name", "Ada");
    observer.disconnect();
    records.push(...observer.takeRecords());
    expect(records).toEqual([]);
  });
});

describe("the processed tile (room.process)", () => {
  it("labels the processor's tile as your processed camera while _processed_by names it", () => {
    const { model, call, stage } = mount({ state: "in_call" });
    call.members = [remotePeer("bea", { name: "Bea" }), remotePeer("proc", { name: "Ada (processed)" })];
    call.emit("members");
    const name = (id: string) => stage.root.querySelector(`[data-peer-id=${id}] .ipymeet-tile-name-text`)?.textContent;
    expect(name("proc")).toBe("Ada (processed)");
    model.set("_processed_by", "proc");
    expect(name("proc")).toBe(PROCESSED_LABEL);
    expect(stage.root.querySelector<HTMLElement>("[data-peer-id=proc]")?.dataset.processed).toBe("true");
    expect(name("bea")).toBe("Bea");
    call.members = [remotePeer("bea", { name: "Bea" })];
    call.emit("members");
    expect(stage.root.querySelector("[data-peer-id=proc]")).toBeNull();
  });
});
