/**
 * What a screen reader hears of the call: one sentence per event (you joined or left, someone
 * joined or left, the connection was lost or came back), each added once to a polite live region
 * kept visually hidden. The status line is not live: it rewrites itself on each step of a join,
 * and a listener would hear the call's members again with every change. Errors are not said here:
 * the error banner is an alert (assertive) of its own.
 */
import type { RemotePeer } from "../call";
import type { CallState, WidgetModel } from "../types";
import { Bindings, h } from "./dom";
import type { CallSource } from "./source";

/** What the announcements follow: the call's state, its room, and the others (id → name). */
export interface Heard {
  state: CallState;
  room: string;
  members: ReadonlyMap<string, string>;
}

/** The lines kept in the region: enough to read back, few enough to stay small. */
export const KEPT = 20;

/**
 * The sentences to say going from `before` to `after`. The members are compared only while in
 * the room and connected: on entering, those already there are named in one sentence; while
 * reconnecting nothing is said of them, and on coming back only the differences from before the
 * connection dropped are (pass that `before`: see `Announcer`).
 */
export function announcements(before: Heard, after: Heard): string[] {
  const wasIn = inRoom(before.state);
  const nowIn = inRoom(after.state);
  if (!wasIn && nowIn) {
    const names = [...after.members.values()].map(nameOf);
    const others = names.length === 0 ? "no one else is here yet" : `${list(names)} ${names.length === 1 ? "is" : "are"} here`;
    return [`You joined “${after.room}”; ${others}.`];
  }
  if (wasIn && !nowIn) return after.state === "failed" ? [] : ["You left the call."];
  if (!nowIn) return [];
  if (after.state === "reconnecting") return before.state === "reconnecting" ? [] : ["Connection to the room lost; reconnecting…"];
  const said = before.state === "reconnecting" ? ["Reconnected."] : [];
  for (const [id, name] of after.members) if (!before.members.has(id)) said.push(`${nameOf(name)} joined.`);
  for (const [id, name] of before.members) if (!after.members.has(id)) said.push(`${nameOf(name)} left.`);
  return said;
}

/**
 * The live region of one view. It starts from what the call is when the view is made (a view
 * displayed later does not repeat what happened before it), and keeps the members last seen
 * connected, so a reconnection is compared with the room as it was before the drop.
 */
export class Announcer {
  readonly root: HTMLElement;
  private readonly model: WidgetModel;
  private readonly call: CallSource;
  private readonly bindings = new Bindings();
  private heard: Heard;

  constructor(model: WidgetModel, call: CallSource) {
    this.model = model;
    this.call = call;
    this.root = h("div", { class: "ipymeet-visually-hidden", role: "log", "aria-live": "polite", "data-testid": "announcements" });
    this.heard = this.now();
    this.bindings.traits(model, ["state", "room", "_processed_by"], () => this.update());
    this.bindings.add(call.subscribe("members", () => this.update()));
  }

  dispose(): void {
    this.bindings.dispose();
  }

  private now(): Heard {
    const processedBy = this.model.get("_processed_by") ?? "";
    // This widget's own processed camera (room.process) is not someone who joins.
    const others = this.call.remotePeers.filter((peer: RemotePeer) => processedBy === "" || peer.id !== processedBy);
    return {
      state: this.model.get("state"),
      room: this.model.get("room"),
      members: new Map(others.map((peer) => [peer.id, peer.name])),
    };
  }

  private update(): void {
    const now = this.now();
    for (const sentence of announcements(this.heard, now)) this.say(sentence);
    // While reconnecting, the members to compare with stay those from before the drop.
    this.heard = now.state === "reconnecting" && inRoom(this.heard.state) ? { ...now, members: this.heard.members } : now;
  }

  private say(sentence: string): void {
    this.root.append(h("p", {}, sentence));
    while (this.root.childElementCount > KEPT) this.root.firstElementChild?.remove();
  }
}

function inRoom(state: CallState): boolean {
  return state === "waiting" || state === "in_call" || state === "reconnecting";
}

function nameOf(name: string): string {
  return name || "A guest";
}

function list(names: readonly string[]): string {
  return names.length <= 1 ? names.join("") : `${names.slice(0, -1).join(", ")} and ${names[names.length - 1]}`;
}
