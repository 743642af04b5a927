/**
 * Where the page connects to the signaller.
 *
 * An explicit `signaling_url` wins, and is then the only way tried (a path is on the page's own
 * origin: the hub's ipymeet service, server/hub/client.py, sets one). Otherwise the kernel's
 * signaller listens on 127.0.0.1:_port, which the page reaches directly (only when the browser
 * runs on the kernel's machine), through jupyter-server-proxy on the page's own origin (remote
 * Jupyter, HTTPS, JupyterHub), or, when neither answers, through the widget's own comm and its
 * kernel (KERNEL_ROUTE: kernelroute.ts), which needs nothing but the page's tie to its kernel.
 */
import type { Route } from "./types";

/** The kernel route's entry among the URLs to try (and `connected_via` on it). */
export const KERNEL_ROUTE = "kernel";

export interface RouteInputs {
  /** The `signaling_url` trait ("" = pick a route). */
  signalingUrl: string;
  /** The `route` trait. */
  route: Route;
  /** The `_port` trait: the kernel signaller's port (0 = unknown). */
  port: number;
  /** The page's `location.origin` and `location.hostname`. */
  pageOrigin: string;
  pageHostname: string;
  /** Jupyter's base URL (from #jupyter-config-data), or null outside Jupyter. */
  baseUrl: string | null;
}

/** True for the hostnames of this machine's loopback interface. */
export function isLoopbackHost(hostname: string): boolean {
  const host = hostname.toLowerCase().replace(/^\[|\]$/g, "");
  return (
    host === "localhost" ||
    host.endsWith(".localhost") ||
    host === "::1" ||
    /^127(\.\d{1,3}){3}$/.test(host)
  );
}

/**
 * The URLs to try, best first; `KERNEL_ROUTE` stands for the kernel route. May be empty (no
 * explicit URL and no kernel signaller's port).
 */
export function candidateUrls(inputs: RouteInputs): string[] {
  const explicit = inputs.signalingUrl.trim();
  // A path ("/services/ipymeet/": a JupyterHub service) is on the page's own origin.
  if (explicit !== "") return [explicit.startsWith("/") ? new URL(explicit, inputs.pageOrigin).href : explicit];
  if (!Number.isInteger(inputs.port) || inputs.port <= 0) return [];
  const direct = `http://127.0.0.1:${inputs.port}`;
  const proxy =
    inputs.baseUrl === null ? null : `${inputs.pageOrigin}${withSlash(inputs.baseUrl)}proxy/${inputs.port}/`;
  const only = <T>(...urls: (T | null)[]): T[] => urls.filter((url): url is T => url !== null);
  switch (inputs.route) {
    case "direct":
      return [direct];
    case "proxy":
      return only(proxy);
    case "kernel":
      return [KERNEL_ROUTE];
    default:
      // The signaller admits other origins than loopback pages only when told to: a page of
      // another host goes by the proxy, or its kernel.
      return isLoopbackHost(inputs.pageHostname) ? only(direct, proxy, KERNEL_ROUTE) : only(proxy, KERNEL_ROUTE);
  }
}

/**
 * What socket.io-client needs for a signaller URL: its origin, and the Engine.IO path under the
 * URL's own path (`http://h/proxy/8765/` → origin `http://h`, path `/proxy/8765/socket.io`).
 */
export function socketTarget(url: string): { origin: string; path: string } {
  const parsed = new URL(url);
  return { origin: parsed.origin, path: `${withSlash(parsed.pathname)}socket.io` };
}

/** Jupyter's base URL from the page's #jupyter-config-data, or null when there is none. */
export function readBaseUrl(doc: Pick<Document, "getElementById">): string | null {
  const element = doc.getElementById("jupyter-config-data");
  if (element === null) return null;
  try {
    const config: unknown = JSON.parse(element.textContent ?? "");
    if (config !== null && typeof config === "object" && "baseUrl" in config) {
      const baseUrl = (config as { baseUrl: unknown }).baseUrl;
      if (typeof baseUrl === "string") return baseUrl;
    }
    return "/";
  } catch {
    return null;
  }
}

function withSlash(path: string): string {
  const rooted = path.startsWith("/") ? path : `/${path}`;
  return rooted.endsWith("/") ? rooted : `${rooted}/`;
}
