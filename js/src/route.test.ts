import { describe, expect, it } from "vitest";
import { KERNEL_ROUTE, candidateUrls, isLoopbackHost, readBaseUrl, socketTarget, type RouteInputs } from "./route";

const base: RouteInputs = {
  signalingUrl: "",
  route: "auto",
  port: 8765,
  pageOrigin: "http://127.0.0.1:8888",
  pageHostname: "127.0.0.1",
  baseUrl: "/",
};

describe("candidateUrls", () => {
  it("uses only an explicit signaling_url: never the kernel route, even forced", () => {
    for (const route of ["auto", "direct", "proxy", "kernel"] as const) {
      expect(candidateUrls({ ...base, route, signalingUrl: "https://meet.example.org/" })).toEqual([
        "https://meet.example.org/",
      ]);
    }
  });

  it("takes a signaling_url that is a path on the page's own origin (the hub's service)", () => {
    const hub = { ...base, pageOrigin: "https://hub.example.org", pageHostname: "hub.example.org" };
    expect(candidateUrls({ ...hub, signalingUrl: "/services/ipymeet/" })).toEqual([
      "https://hub.example.org/services/ipymeet/",
    ]);
    expect(socketTarget(candidateUrls({ ...hub, signalingUrl: "/services/ipymeet/" })[0])).toEqual({
      origin: "https://hub.example.org",
      path: "/services/ipymeet/socket.io",
    });
  });

  it("tries direct first when the page itself is on loopback, then the proxy, then the kernel", () => {
    expect(candidateUrls(base)).toEqual(["http://127.0.0.1:8765", "http://127.0.0.1:8888/proxy/8765/", "kernel"]);
    expect(candidateUrls({ ...base, pageOrigin: "http://localhost:8888", pageHostname: "localhost" })).toEqual([
      "http://127.0.0.1:8765",
      "http://localhost:8888/proxy/8765/",
      "kernel",
    ]);
  });

  it("from another host tries the proxy with Jupyter's base URL, then the kernel, never direct", () => {
    // The signaller admits loopback pages only (unless told other origins): direct cannot work.
    const remote = { ...base, pageOrigin: "https://hub.example.org", pageHostname: "hub.example.org", baseUrl: "/user/ada/" };
    expect(candidateUrls(remote)).toEqual(["https://hub.example.org/user/ada/proxy/8765/", KERNEL_ROUTE]);
  });

  it("honours a forced route", () => {
    expect(candidateUrls({ ...base, route: "direct" })).toEqual(["http://127.0.0.1:8765"]);
    expect(candidateUrls({ ...base, route: "proxy" })).toEqual(["http://127.0.0.1:8888/proxy/8765/"]);
    expect(candidateUrls({ ...base, route: "kernel" })).toEqual([KERNEL_ROUTE]);
    const remote = { ...base, pageOrigin: "https://hub.example.org", pageHostname: "hub.example.org" };
    expect(candidateUrls({ ...remote, route: "direct" })).toEqual(["http://127.0.0.1:8765"]);
  });

  it("has no proxy outside Jupyter: the kernel follows direct", () => {
    expect(candidateUrls({ ...base, baseUrl: null })).toEqual(["http://127.0.0.1:8765", KERNEL_ROUTE]);
    expect(candidateUrls({ ...base, baseUrl: null, route: "proxy" })).toEqual([]);
    const remote = { ...base, pageOrigin: "https://colab.example.org", pageHostname: "colab.example.org", baseUrl: null };
    expect(candidateUrls(remote)).toEqual([KERNEL_ROUTE]);
  });

  it("has nothing to try without the kernel's signaller (no port)", () => {
    for (const route of ["auto", "direct", "proxy", "kernel"] as const) {
      expect(candidateUrls({ ...base, route, port: 0 })).toEqual([]);
    }
  });
});

describe("isLoopbackHost", () => {
  it.each([
    ["127.0.0.1", true],
    ["127.1.2.3", true],
    ["localhost", true],
    ["[::1]", true],
    ["::1", true],
    ["LOCALHOST", true],
    ["192.0.2.1", false],
    ["example.org", false],
    ["127.0.0.1.example.org", false],
  ])("%s → %s", (host, expected) => {
    expect(isLoopbackHost(host)).toBe(expected);
  });
});

describe("socketTarget", () => {
  it("puts socket.io under the URL's path", () => {
    expect(socketTarget("http://127.0.0.1:8765")).toEqual({ origin: "http://127.0.0.1:8765", path: "/socket.io" });
    expect(socketTarget("http://127.0.0.1:8888/proxy/8765/")).toEqual({
      origin: "http://127.0.0.1:8888",
      path: "/proxy/8765/socket.io",
    });
    expect(socketTarget("https://h.example.org/base/proxy/1")).toEqual({
      origin: "https://h.example.org",
      path: "/base/proxy/1/socket.io",
    });
  });
});

describe("readBaseUrl", () => {
  const doc = (text: string | null) => ({
    getElementById: (id: string) => (id === "jupyter-config-data" && text !== null ? ({ textContent: text } as HTMLElement) : null),
  });

  it("reads baseUrl from the Jupyter config", () => {
    expect(readBaseUrl(doc('{"baseUrl": "/user/ada/"}'))).toBe("/user/ada/");
  });

  it("is null outside Jupyter or when the config is broken", () => {
    expect(readBaseUrl(doc(null))).toBeNull();
    expect(readBaseUrl(doc("{not json"))).toBeNull();
  });
});
