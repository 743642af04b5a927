/**
 * The view: the controls, the connection doctor's button and panel, the stage, the chat and the
 * sentences a screen reader is told (view/), each following only the traits and the Call topics
 * it shows, and the keyboard shortcuts that press the controls (view/keys.ts). It owns DOM and
 * listeners only; the camera, the connections and the chat history belong to the Call (one per
 * model), so a widget displayed twice shows the same call twice.
 */
import { Doctor } from "./doctor";
import type { WidgetModel } from "./types";
import { Announcer } from "./view/announce";
import { Chat } from "./view/chat";
import { Controls } from "./view/controls";
import { DoctorPanel } from "./view/doctor";
import { Bindings, h, setData } from "./view/dom";
import { Shortcuts } from "./view/keys";
import type { CallSource } from "./view/source";
import { Stage } from "./view/stage";

export { describe } from "./view/controls";
export { columnsFor } from "./view/stage";
export { initial } from "./view/tile";

let viewCount = 0;

export class RoomView {
  private readonly root: HTMLElement;
  private readonly controls: Controls;
  private readonly stage: Stage;
  private readonly chat: Chat;
  private readonly doctor: DoctorPanel;
  private readonly shortcuts: Shortcuts;
  private readonly announcer: Announcer;
  /** The doctor this view made itself (none was given: the standalone page), disposed with it. */
  private readonly ownDoctor: Doctor | null = null;
  private readonly bindings = new Bindings();
  private destroyed = false;

  /** `doctor`: the model's connection doctor (diagnose.ts); without one the view makes its own. */
  constructor(el: HTMLElement, model: WidgetModel, call: CallSource, doctor?: Doctor) {
    const id = `ipymeet-${++viewCount}`;
    this.controls = new Controls(id, model, call);
    this.stage = new Stage(model, call);
    const main = h("div", { class: "ipymeet-main" }, this.stage.root);
    this.chat = new Chat(id, model, call, main);
    main.append(this.chat.root);
    if (doctor === undefined) {
      this.ownDoctor = new Doctor(model, call, null);
      this.ownDoctor.start();
    }
    this.doctor = new DoctorPanel(model, doctor ?? this.ownDoctor!);
    // The doctor's button shares the status line's row; its panel goes below the error banner.
    const nodes = this.controls.nodes.map((node) =>
      node.dataset.testid === "status" ? h("div", { class: "ipymeet-status-row" }, node, this.doctor.button) : node,
    );
    this.announcer = new Announcer(model, call);
    this.root = h("div", { class: "ipymeet-root" }, ...nodes, this.doctor.panel, main, this.announcer.root);
    this.shortcuts = new Shortcuts(id, this.root, {
      mic: () => this.controls.press("mic"),
      camera: () => this.controls.press("camera"),
      screen: () => this.controls.press("screen"),
      chat: () => this.chat.focus(),
    });
    this.root.append(this.shortcuts.dialog);
    const showState = (): void => setData(this.root, "state", model.get("state"));
    this.bindings.traits(model, ["state"], showState);
    showState();
    el.replaceChildren(this.root);
  }

  /** Remove this view's DOM and listeners; the call goes on. */
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.bindings.dispose();
    this.shortcuts.dispose();
    this.controls.dispose();
    this.stage.dispose();
    this.chat.dispose();
    this.doctor.dispose();
    this.announcer.dispose();
    this.ownDoctor?.dispose();
    this.root.remove();
  }
}
