/**
 * The messages of the call that are not signalling: the kernel's custom messages (one typed
 * contract, `types.ts` ⇄ `widget/messages.py`, read here; kernel.ts routes them), the JSON on each
 * connection's data channel, and the chat history. Pure code: whatever arrives is checked here
 * before the Call believes it.
 */
import {
  MAX_CHAT,
  MAX_FRAME_RATE,
  MAX_HISTORY,
  MAX_NAME,
  MAX_ROUTE_NUMBER,
  MAX_VIDEO_HEIGHT,
  MAX_VIDEO_WIDTH,
  MIN_VIDEO_SIDE,
  ROOM_RE,
  SIGNALLER_EVENTS,
  type KernelMessageType,
  type SignallerEvent,
} from "./contract";
import type { ChatEntry, ErrorMessage, KernelMessage, PeerMessage } from "./types";

export { MAX_CHAT, MAX_HISTORY };
/** Longest data channel message read at all: a chat line with its envelope fits well inside. */
export const MAX_PEER_MESSAGE = 16 * 1024;
/** Longest peer or chat line id read (the signaller's and ours are far shorter). */
const MAX_ID = 64;

/** A random id for a chat line (works on insecure pages too, unlike `crypto.randomUUID`). */
export function newMessageId(): string {
  const bytes = new Uint8Array(12);
  crypto.getRandomValues(bytes);
  return [...bytes].map((byte) => byte.toString(16).padStart(2, "0")).join("");
}

/** A chat text as it may be sent: at most `MAX_CHAT` characters, not blank; null otherwise. */
export function chatText(text: unknown): string | null {
  if (typeof text !== "string") return null;
  const capped = [...text].slice(0, MAX_CHAT).join("");
  return capped.trim() === "" ? null : capped;
}

// -- the kernel's custom messages -----------------------------------------------------------------

/** One handler per type of kernel message (KERNEL_MESSAGE_TYPES). */
export type KernelHandlers = {
  [T in KernelMessageType]: (message: Extract<KernelMessage, { type: T }>) => void;
};

/** Longest join token accepted from the kernel (ipymeet's are 44 characters). */
const MAX_TOKEN = 4096;

/** Longest snapshot request id accepted (the kernel's are 22 characters). */
const MAX_REQUEST_ID = 128;

/** Longest error text from the kernel that is logged whole. */
const MAX_ERROR = 2000;

/** Longest reason of a kernel-route drop kept (the kernel's are shorter). */
const MAX_REASON = 500;

/** A kernel-route connection or request number: an integer from 1 to MAX_ROUTE_NUMBER. */
function isRouteNumber(value: unknown): value is number {
  return typeof value === "number" && Number.isInteger(value) && value >= 1 && value <= MAX_ROUTE_NUMBER;
}

/**
 * Check one custom message from the kernel and hand it to its type's handler. Returns the error
 * to answer with when the message is unknown or malformed (after logging it), null when it was
 * handled.
 */
export function dispatchKernelMessage(content: unknown, handlers: KernelHandlers): ErrorMessage | null {
  const type = isRecord(content) ? content.type : undefined;
  const fields = isRecord(content) ? content : {};
  switch (type as KernelMessageType | undefined) {
    case "chat": {
      const text = chatText(fields.text);
      if (text === null) return refuse("a chat message needs a non-empty text");
      handlers.chat({ type: "chat", text });
      return null;
    }
    case "snapshot": {
      const { id, peer, format, via } = fields;
      if (typeof id !== "string" || id === "" || id.length > MAX_REQUEST_ID) {
        return refuse("a snapshot request needs an id");
      }
      if (peer !== null && (typeof peer !== "string" || peer === "" || peer.length > MAX_ID)) {
        return refuse("a snapshot's peer must be a peer id or null");
      }
      if (format !== "rgba" && format !== "png") return refuse("a snapshot's format must be 'rgba' or 'png'");
      if (via !== "signaller" && via !== "comm") return refuse("a snapshot's via must be 'signaller' or 'comm'");
      handlers.snapshot({ type: "snapshot", id, peer, format, via });
      return null;
    }
    case "token": {
      const { room, token } = fields;
      if (typeof room !== "string" || !ROOM_RE.test(room)) return refuse("a token message needs a room");
      if (token !== null && (typeof token !== "string" || token.length > MAX_TOKEN)) {
        return refuse("a token message's token must be a string or null");
      }
      handlers.token({ type: "token", room, token });
      return null;
    }
    // The kernel route: only the envelope is checked here; the signalling client
    // (signaling.ts) reads `data` and `reply` as it reads the signaller's own.
    case "sig_open": {
      if (!isRouteNumber(fields.n)) return refuse("a sig_open message needs its connection's n");
      handlers.sig_open({ type: "sig_open", n: fields.n });
      return null;
    }
    case "sig_event": {
      const { n, event } = fields;
      if (!isRouteNumber(n)) return refuse("a sig_event message needs its connection's n");
      if (typeof event !== "string" || !(SIGNALLER_EVENTS as readonly string[]).includes(event)) {
        return refuse(`a sig_event message's event must be one of ${SIGNALLER_EVENTS.join(", ")}`);
      }
      handlers.sig_event({ type: "sig_event", n, event: event as SignallerEvent, data: fields.data });
      return null;
    }
    case "sig_answer": {
      const { n, id } = fields;
      if (!isRouteNumber(n) || !isRouteNumber(id)) return refuse("a sig_answer message needs its connection's n and its request's id");
      handlers.sig_answer({ type: "sig_answer", n, id, reply: fields.reply });
      return null;
    }
    case "sig_dropped": {
      const { n, reason } = fields;
      if (!isRouteNumber(n)) return refuse("a sig_dropped message needs its connection's n");
      if (typeof reason !== "string") return refuse("a sig_dropped message needs a reason");
      handlers.sig_dropped({ type: "sig_dropped", n, reason: reason.slice(0, MAX_REASON) || "dropped" });
      return null;
    }
    case "diagnose": {
      const { id } = fields;
      if (typeof id !== "string" || id === "" || id.length > MAX_REQUEST_ID) return refuse("a diagnose message needs an id");
      const servers = iceServers(fields.ice_servers);
      if (servers === undefined) return refuse("a diagnose message's ice_servers must be RTCIceServer objects or null");
      handlers.diagnose({ type: "diagnose", id, ice_servers: servers });
      return null;
    }
    case "error": {
      // Never answered with an error of our own: two sides that disagree must not loop.
      const message = typeof fields.message === "string" ? fields.message.slice(0, MAX_ERROR) : "";
      handlers.error({ type: "error", message: message || "(no reason given)" });
      return null;
    }
    default:
      return refuse(`unknown message type ${JSON.stringify(type ?? null)}`);
  }
}

/** Most ICE servers one `diagnose` message may carry. */
const MAX_ICE_SERVERS = 16;

/** RTCIceServer objects (`urls` a string or strings; `username`, `credential` strings), or null; undefined when not. */
function iceServers(value: unknown): RTCIceServer[] | null | undefined {
  if (value === null) return null;
  if (!Array.isArray(value) || value.length > MAX_ICE_SERVERS) return undefined;
  const servers: RTCIceServer[] = [];
  for (const server of value) {
    if (!isRecord(server)) return undefined;
    const { urls, username, credential } = server;
    const list = typeof urls === "string" ? [urls] : urls;
    if (!Array.isArray(list) || list.length === 0 || !list.every((url) => typeof url === "string" && url.length <= 512)) return undefined;
    if (username !== undefined && typeof username !== "string") return undefined;
    if (credential !== undefined && typeof credential !== "string") return undefined;
    const clean: RTCIceServer = { urls: urls as string | string[] };
    if (username !== undefined) clean.username = username;
    if (credential !== undefined) clean.credential = credential;
    servers.push(clean);
  }
  return servers;
}

function refuse(message: string): ErrorMessage {
  console.warn(`ipymeet: ${message}`);
  return { type: "error", message };
}

// -- the data channel -------------------------------------------------------------------------------

/** Read one data channel message; anything that is not a well-formed message gives null. */
export function parsePeerMessage(raw: unknown): PeerMessage | null {
  if (typeof raw !== "string" || raw.length > MAX_PEER_MESSAGE) return null;
  let value: unknown;
  try {
    value = JSON.parse(raw);
  } catch {
    return null;
  }
  if (!isRecord(value)) return null;
  if (value.t === "state") {
    if (typeof value.audio !== "boolean" || typeof value.video !== "boolean") return null;
    // `screen` is newer: a peer that does not send it is not sharing.
    if (value.screen !== undefined && typeof value.screen !== "boolean") return null;
    return { t: "state", audio: value.audio, video: value.video, screen: value.screen === true };
  }
  if (value.t === "chat") {
    const { id, name, time } = value;
    const text = chatText(value.text);
    if (typeof id !== "string" || id === "" || id.length > MAX_ID) return null;
    if (typeof name !== "string" || typeof time !== "number" || !Number.isFinite(time) || text === null) return null;
    return { t: "chat", id, name: cleanName(name), text, time };
  }
  if (value.t === "ping" || value.t === "pong") {
    if (typeof value.id !== "string" || value.id === "" || value.id.length > MAX_ID) return null;
    return { t: value.t, id: value.id };
  }
  if (value.t === "want") {
    const width = bounded(value.width, MIN_VIDEO_SIDE, MAX_VIDEO_WIDTH);
    const height = bounded(value.height, MIN_VIDEO_SIDE, MAX_VIDEO_HEIGHT);
    const fps = bounded(value.fps, 1, MAX_FRAME_RATE);
    if (width === undefined || height === undefined || fps === undefined) return null;
    if ((width === null) !== (height === null)) return null; // a box has both sides
    return { t: "want", width, height, fps };
  }
  return null;
}

/** A whole number within `min..max`; null when absent or null (nothing asked); undefined when bad. */
function bounded(value: unknown, min: number, max: number): number | null | undefined {
  if (value === undefined || value === null) return null;
  if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > max) return undefined;
  return value;
}

/** A display name from another browser: no control characters, at most `MAX_NAME` characters. */
function cleanName(name: string): string {
  return name.replace(/[\u0000-\u001f\u007f-\u009f]/g, "").slice(0, MAX_NAME);
}

// -- the history ------------------------------------------------------------------------------------

/** The room's recent chat in arrival order, each line once (by id). */
export class ChatLog {
  private lines: ChatEntry[] = [];
  /** Ids seen, remembered longer than the lines are kept, so a late duplicate is still dropped. */
  private readonly seen = new Set<string>();
  private readonly max: number;

  constructor(initial: readonly unknown[] = [], max = MAX_HISTORY) {
    this.max = max;
    for (const line of initial) {
      const entry = asEntry(line);
      if (entry !== null) this.add(entry);
    }
  }

  get entries(): readonly ChatEntry[] {
    return this.lines;
  }

  /** Add a line; false (and nothing changes) when its id was seen before. */
  add(entry: ChatEntry): boolean {
    if (this.seen.has(entry.id)) return false;
    this.seen.add(entry.id);
    if (this.seen.size > this.max * 10) {
      // Forget the oldest ids (a Set iterates in insertion order).
      const drop = this.seen.size - this.max * 5;
      let index = 0;
      for (const id of this.seen) {
        if (index++ >= drop) break;
        this.seen.delete(id);
      }
    }
    this.lines = [...this.lines, entry].slice(-this.max);
    return true;
  }
}

/** A history line restored from the model (it may come from a saved notebook): checked. */
function asEntry(value: unknown): ChatEntry | null {
  if (!isRecord(value)) return null;
  const { id, from, name, text, time, mine } = value;
  if (typeof id !== "string" || typeof from !== "string" || typeof name !== "string") return null;
  if (typeof text !== "string" || typeof time !== "number" || typeof mine !== "boolean") return null;
  return { id, from, name, text, time, mine };
}

// -- the queue of lines waiting for a channel ---------------------------------------------------------

/**
 * What one connection still has to send, in order. A chat line sent while the channel is not open
 * waits here; once the channel opens the whole queue goes first, so each sender's lines arrive in
 * the order they were written.
 */
export class Outbox {
  private readonly queue: string[] = [];
  private readonly max: number;

  constructor(max = 500) {
    this.max = max;
  }

  get size(): number {
    return this.queue.length;
  }

  /** Send `message` now if `send` can and nothing is waiting before it; otherwise queue it. */
  push(message: string, send: (message: string) => boolean): void {
    if (this.queue.length === 0 && send(message)) return;
    if (this.queue.length >= this.max) this.queue.shift();
    this.queue.push(message);
  }

  /** Send what waits, in order, until `send` refuses. */
  flush(send: (message: string) => boolean): void {
    while (this.queue.length > 0 && send(this.queue[0]!)) this.queue.shift();
  }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
