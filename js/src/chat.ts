/**
 * The room's chat as this page keeps it: lines go to every member over its data channel, and each
 * line that enters the history (anyone's, own included, once per id) goes into `messages` and to
 * the kernel. Kept at model level, not per view or per session, so a Hang up keeps the history.
 */
import type { KernelLink } from "./kernel";
import type { Members } from "./members";
import { ChatLog, chatText, newMessageId } from "./messages";
import type { ChatEntry, ChatPeerMessage, Model, WidgetModel } from "./types";

/** The room a line is said in: one session's (the own id is `members.selfId`, "" until entered). */
export interface ChatRoom {
  readonly members: Members;
  /** Lines written before the room was entered, sent once it is. */
  readonly pending: string[];
}

export interface ChatHost {
  readonly model: WidgetModel;
  readonly kernel: KernelLink;
  /** Milliseconds since the epoch, for the lines' times. */
  now(): number;
  /** Write `messages` (throttled). */
  report(patch: Partial<Model>): void;
  /** `messages` changed. */
  changed(): void;
}

export class Chat {
  private readonly host: ChatHost;
  private readonly log: ChatLog;

  constructor(host: ChatHost) {
    this.host = host;
    this.log = new ChatLog(host.model.get("messages") ?? []);
  }

  /** The room's recent chat, oldest first. */
  get entries(): readonly ChatEntry[] {
    return this.log.entries;
  }

  /** Say `raw` in `room` as this member; the reason when nothing was sent, null when it was. */
  say(room: ChatRoom | null, raw: string): string | null {
    const text = chatText(raw);
    if (text === null) return "a chat message needs a non-empty text";
    if (room === null) return "not in a room: join first, then send";
    if (room.members.selfId === "") {
      room.pending.push(text); // joining: sent once the room is entered
      return null;
    }
    this.deliver(room, text);
    return null;
  }

  /** The room is entered: the lines written while joining go to the members present now. */
  entered(room: ChatRoom): void {
    for (const text of room.pending.splice(0)) this.deliver(room, text);
  }

  /** A line from another member (checked already); `from` is who sent it, by its connection. */
  heard(from: { id: string; name: string }, message: ChatPeerMessage): void {
    this.record({
      id: message.id,
      from: from.id,
      name: message.name || from.name,
      text: message.text,
      time: message.time,
      mine: false,
    });
  }

  /** To every member present now, each over its own ordered channel (queued until it opens). */
  private deliver(room: ChatRoom, text: string): void {
    const message: ChatPeerMessage = {
      t: "chat",
      id: newMessageId(),
      name: this.host.model.get("name"),
      text,
      time: this.host.now(),
    };
    room.members.queue(JSON.stringify(message));
    this.record({ id: message.id, from: room.members.selfId, name: message.name, text, time: message.time, mine: true });
  }

  /** A line enters the history: into `messages`, to the kernel, to the views. Once per id. */
  private record(entry: ChatEntry): void {
    if (!this.log.add(entry)) return;
    this.host.report({ messages: [...this.log.entries] });
    this.host.kernel.send({ type: "chat", ...entry });
    this.host.changed();
  }
}
