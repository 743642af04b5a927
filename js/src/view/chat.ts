/**
 * The chat panel: the room's lines and a field to write one. It follows the Call's "chat" (the
 * lines, whether one can be sent) and the model's `state` (the panel shows during a call, or while
 * there are lines to read).
 */
import { MAX_CHAT } from "../contract";
import { isActive } from "../state";
import type { ChatEntry, WidgetModel } from "../types";
import { Bindings, h, icon, ICONS, setAttr, setClass, setData, setDisabled, setHidden } from "./dom";
import type { CallSource } from "./source";

export class Chat {
  readonly root: HTMLElement;
  private readonly model: WidgetModel;
  private readonly call: CallSource;
  /** The element whose `data-chat` says whether the panel shows (the view's main area). */
  private readonly host: HTMLElement;
  private readonly bindings = new Bindings();
  private readonly list: HTMLElement;
  private readonly empty: HTMLElement;
  private readonly input: HTMLInputElement;
  private readonly send: HTMLButtonElement;
  private readonly lines = new Map<string, HTMLElement>();
  private shownMessages: readonly ChatEntry[] | null = null;

  constructor(id: string, model: WidgetModel, call: CallSource, host: HTMLElement) {
    this.model = model;
    this.call = call;
    this.host = host;
    this.list = h("ol", { class: "ipymeet-chat-list", "aria-live": "polite", "aria-label": "Chat messages", "data-testid": "chat-log" });
    this.empty = h("p", { class: "ipymeet-chat-empty" }, "Messages go to everyone in the room.");
    this.input = h("input", {
      id: `${id}-chat`,
      class: "ipymeet-chat-input",
      "data-testid": "chat-input",
      type: "text",
      autocomplete: "off",
      maxlength: String(MAX_CHAT),
      placeholder: "Message everyone",
    });
    this.send = h(
      "button",
      { type: "submit", class: "ipymeet-btn ipymeet-chat-send", "data-testid": "chat-send", title: "Send (Enter)", "aria-label": "Send" },
      icon(ICONS.send),
    );
    const form = h(
      "form",
      { class: "ipymeet-chat-form" },
      h("label", { class: "ipymeet-visually-hidden", for: `${id}-chat` }, "Message to everyone in the room"),
      this.input,
      this.send,
    );
    // Not a named region: two widgets on a page would make two landmarks of one name (found by
    // axe-core in Voilà); its heading is what a screen reader moves to.
    this.root = h(
      "section",
      { class: "ipymeet-chat" },
      h("h2", { class: "ipymeet-chat-title" }, "Chat"),
      this.list,
      this.empty,
      form,
    );

    const b = this.bindings;
    b.dom(form, "submit", (event) => {
      event.preventDefault();
      this.sendChat();
    });
    b.dom(this.input, "keydown", (event) => {
      // Enter sends. Not left to the form's implicit submission: a notebook may swallow the
      // keypress that triggers it (JupyterLab does).
      const key = event as KeyboardEvent;
      if (key.key !== "Enter" || key.shiftKey || key.isComposing) return;
      key.preventDefault();
      this.sendChat();
    });
    b.dom(this.input, "input", () => this.renderForm());
    b.traits(model, ["state"], () => this.render());
    b.add(call.subscribe("chat", () => this.render()));
    this.render();
  }

  dispose(): void {
    this.bindings.dispose();
  }

  /** Put focus in the message field (the C shortcut), when a message can be written. */
  focus(): void {
    if (!this.input.disabled) this.input.focus();
  }

  private sendChat(): void {
    const text = this.input.value;
    if (text.trim() === "" || !this.call.canChat) return;
    if (this.call.sendChat(text)) {
      this.input.value = "";
      this.list.scrollTop = this.list.scrollHeight;
      this.render();
    }
  }

  private renderForm(): void {
    const canChat = this.call.canChat;
    setDisabled(this.input, !canChat);
    setAttr(this.input, "placeholder", canChat ? "Message everyone" : "Connect to chat");
    setDisabled(this.send, !canChat || this.input.value.trim() === "");
  }

  private render(): void {
    const messages = this.call.messages;
    setData(this.host, "chat", isActive(this.model.get("state")) || messages.length > 0 ? "on" : "off");
    this.renderForm();
    setHidden(this.empty, messages.length > 0);
    if (messages === this.shownMessages) return;
    this.shownMessages = messages;

    const list = this.list;
    const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
    const ids = new Set(messages.map((m) => m.id));
    for (const [id, line] of this.lines) {
      if (ids.has(id)) continue;
      line.remove();
      this.lines.delete(id);
    }
    let ownAdded = false;
    let previous: ChatEntry | null = null;
    for (const message of messages) {
      let line = this.lines.get(message.id);
      if (line === undefined) {
        line = chatLine(message);
        this.lines.set(message.id, line);
        list.append(line);
        ownAdded ||= message.mine;
      }
      // A line from the same person within two minutes of the last goes under it, without a header.
      const more = previous !== null && previous.from === message.from && previous.name === message.name &&
        message.time - previous.time >= 0 && message.time - previous.time < 120_000;
      setClass(line, "ipymeet-chat-more", more);
      previous = message;
    }
    if (atBottom || ownAdded) list.scrollTop = list.scrollHeight;
  }
}

function chatLine(message: ChatEntry): HTMLElement {
  const when = new Date(message.time);
  const time = h(
    "time",
    { class: "ipymeet-chat-time", datetime: Number.isNaN(when.getTime()) ? "" : when.toISOString() },
    Number.isNaN(when.getTime()) ? "" : when.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }),
  );
  const name = message.mine ? "You" : message.name || "Guest";
  return h(
    "li",
    { class: `ipymeet-chat-message${message.mine ? " ipymeet-chat-mine" : ""}`, "data-testid": "chat-message" },
    h("div", { class: "ipymeet-chat-meta" }, h("span", { class: "ipymeet-chat-name" }, name), time),
    h("div", { class: "ipymeet-chat-text" }, message.text), // text node: never parsed as HTML
  );
}
