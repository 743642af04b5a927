// @vitest-environment happy-dom
import { describe, expect, it } from "vitest";
import { FakeCall, remotePeer } from "../harness";
import { PageModel } from "../page";
import type { CallState } from "../types";
import { Announcer, announcements, KEPT, type Heard } from "./announce";

const heard = (state: CallState, members: Record<string, string> = {}): Heard => ({
  state,
  room: "lab",
  members: new Map(Object.entries(members)),
});

describe("announcements", () => {
  it.each<[string, Heard, Heard, string[]]>([
    ["entering alone", heard("joining"), heard("waiting"), ["You joined “lab”; no one else is here yet."]],
    ["entering with one", heard("joining"), heard("in_call", { b: "Bea" }), ["You joined “lab”; Bea is here."]],
    [
      "entering with three",
      heard("joining"),
      heard("waiting", { b: "Bea", c: "Cy", d: "" }),
      ["You joined “lab”; Bea, Cy and A guest are here."],
    ],
    ["someone joins", heard("waiting"), heard("waiting", { b: "Bea" }), ["Bea joined."]],
    ["a guest joins", heard("waiting"), heard("in_call", { b: "" }), ["A guest joined."]],
    ["one leaves as another joins", heard("in_call", { b: "Bea" }), heard("in_call", { c: "Cy" }), ["Cy joined.", "Bea left."]],
    ["nothing changes", heard("in_call", { b: "Bea" }), heard("in_call", { b: "Bea" }), []],
    ["a name is not a member", heard("in_call", { b: "Bea" }), heard("in_call", { b: "Beatrice" }), []],
    ["the call is lost", heard("in_call", { b: "Bea" }), heard("reconnecting"), ["Connection to the room lost; reconnecting…"]],
    ["still reconnecting", heard("reconnecting", { b: "Bea" }), heard("reconnecting"), []],
    ["back, Bea gone meanwhile", heard("reconnecting", { b: "Bea" }), heard("waiting"), ["Reconnected.", "Bea left."]],
    ["hanging up", heard("in_call", { b: "Bea" }), heard("left"), ["You left the call."]],
    ["failing: the alert says why", heard("in_call", { b: "Bea" }), heard("failed"), []],
    ["a join that fails", heard("joining"), heard("failed"), []],
    ["not in a room", heard("idle"), heard("joining"), []],
  ])("%s", (_, before, after, said) => {
    expect(announcements(before, after)).toEqual(said);
  });
});

describe("Announcer", () => {
  function mount(state: CallState = "idle") {
    const model = new PageModel({ room: "lab", name: "Ada", state });
    const call = new FakeCall();
    const announcer = new Announcer(model, call);
    const said = () => [...announcer.root.children].map((line) => line.textContent);
    return { model, call, announcer, said };
  }

  it("is a polite live region, hidden from sight", () => {
    const { announcer } = mount();
    expect(announcer.root.getAttribute("aria-live")).toBe("polite");
    expect(announcer.root.getAttribute("role")).toBe("log");
    expect(announcer.root.classList.contains("ipymeet-visually-hidden")).toBe(true);
  });

  it("says each event once, however often the call repeats itself", () => {
    const { model, call, said } = mount();
    model.set("state", "joining");
    model.set("state", "waiting");
    call.members = [remotePeer("b", { name: "Bea" })];
    call.emit("members");
    call.emit("members");
    model.set("state", "in_call");
    call.emit("members");
    call.members = [];
    call.emit("members");
    call.emit("members");
    expect(said()).toEqual(["You joined “lab”; no one else is here yet.", "Bea joined.", "Bea left."]);
  });

  it("compares a reconnection with the room before the drop", () => {
    const { model, call, said } = mount();
    model.set("state", "in_call");
    call.members = [remotePeer("b", { name: "Bea" }), remotePeer("c", { name: "Cy" })];
    call.emit("members");
    model.set("state", "reconnecting");
    call.members = []; // the others drop out of sight while the socket is gone...
    call.emit("members");
    call.members = [remotePeer("b", { name: "Bea" })]; // ...and come back, Cy having left
    call.emit("members");
    model.set("state", "in_call");
    expect(said()).toEqual([
      "You joined “lab”; no one else is here yet.",
      "Bea joined.",
      "Cy joined.",
      "Connection to the room lost; reconnecting…",
      "Reconnected.",
      "Cy left.",
    ]);
  });

  it("says nothing of what happened before it was made, nor of the widget's own processed camera", () => {
    const { model, call, said } = mount("in_call");
    model.set("_processed_by", "kp");
    call.members = [remotePeer("kp", { name: "Ada (processed)" })];
    call.emit("members");
    expect(said()).toEqual([]);
  });

  it(`keeps the last ${KEPT} sentences`, () => {
    const { model, call, said } = mount("in_call");
    for (let i = 0; i < KEPT + 5; i++) {
      call.members = i % 2 === 0 ? [remotePeer("b", { name: "Bea" })] : [];
      call.emit("members");
    }
    expect(said()).toHaveLength(KEPT);
    expect(said().at(-1)).toBe("Bea joined.");
    model.set("state", "left");
    expect(said().at(-1)).toBe("You left the call.");
  });

  it("stops listening when disposed", () => {
    const { call, announcer } = mount();
    announcer.dispose();
    expect(call.subscribers()).toBe(0);
  });
});
