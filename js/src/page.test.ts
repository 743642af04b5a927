// @vitest-environment happy-dom
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { setup, settle } from "./harness";
import { PageModel, followTheCall, mountPage } from "./page";

beforeEach(() => {
  vi.spyOn(console, "warn").mockImplementation(() => undefined);
});
afterEach(() => {
  vi.restoreAllMocks();
});

describe("followTheCall (page mode plays Python's part)", () => {
  it("sets `_desired` back once the Call ended the current attempt, and `screen` once a share ended", () => {
    const model = new PageModel({ _joins: 2, _desired: true, screen: true });
    const unfollow = followTheCall(model);
    model.set("_call_ended", 1); // an older attempt: nothing to follow
    expect(model.get("_desired")).toBe(true);
    model.set("_call_ended", 2);
    expect(model.get("_desired")).toBe(false);
    model.set("_screen_ended", 1);
    expect(model.get("screen")).toBe(false);
    unfollow();
    model.set("screen", true);
    model.set("_screen_ended", 2);
    expect(model.get("screen")).toBe(true);
  });

  it("with a Call: a full room leaves the page ready for the next Connect", async () => {
    const { model, server, join, states } = setup();
    followTheCall(model);
    server.enterAnswer = { ok: false, code: "room_full", message: "room 'lab-42' is full" };
    join();
    await settle();
    expect(model.get("_desired")).toBe(false);
    server.enterAnswer = { ok: true, self: "me", peers: [], capacity: 4, ice_servers: [] };
    join();
    await settle();
    expect(states).toEqual(["idle", "joining", "failed", "joining", "waiting"]);
  });
});

describe("mountPage", () => {
  it("asks for relayed media only with ?relay=1 in the address", () => {
    for (const [search, relay] of [["?room=lab-1&relay=1", true], ["?room=lab-1", false], ["?room=lab-1&relay=0", false]] as const) {
      history.replaceState(null, "", `/${search}`);
      const model = mountPage(document.createElement("div"));
      expect([search, model.get("relay_only")]).toEqual([search, relay]);
      dispatchEvent(new Event("pagehide"));
    }
  });

  it("starts with the name the server put in the page (the hub's login) unless given one", () => {
    const served = `ada "the" </script><img src=x onerror=alert(1)>`;
    const meta = document.createElement("meta");
    meta.name = "ipymeet-name";
    meta.content = served;
    document.head.append(meta);
    try {
      history.replaceState(null, "", "/?room=lab-1");
      const view = document.createElement("div");
      const fromHub = mountPage(view);
      expect(fromHub.get("name")).toBe(served);
      expect(view.querySelector<HTMLInputElement>("[data-testid=name-input]")?.value).toBe(served);
      dispatchEvent(new Event("pagehide"));
      const given = mountPage(document.createElement("div"), { name: "Grace" });
      expect(given.get("name")).toBe("Grace");
      dispatchEvent(new Event("pagehide"));
    } finally {
      meta.remove();
    }
    const none = mountPage(document.createElement("div"));
    expect(none.get("name")).toBe("");
    dispatchEvent(new Event("pagehide"));
  });
});
