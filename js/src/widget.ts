/**
 * The anywidget entry (the AFX form): `initialize` makes the model's one Call, `render` a view of
 * it. `mountPage` is the standalone page's entry (page.ts), from the same bundle.
 */
import type { Initialize, Render } from "@anywidget/types";
import { Call } from "./call";
import { Doctor } from "./doctor";
import { KernelLink } from "./kernel";
import { mountPage } from "./page";
import { KernelTokens } from "./tokens";
import type { Model } from "./types";
import { RoomView } from "./ui";

/**
 * The Call of each widget: the camera and the connections live at model level, so a widget shown
 * twice uses one camera. Keyed by the widget's `_client` key, not by the model object: anywidget
 * (0.10+) hands `initialize` and each `render` a different proxy of the same model, so the object
 * is no key (a WeakMap of it would give each view a Call of its own). The Call also listens through
 * initialize's proxy, whose listeners outlive the views.
 */
const calls = new Map<string, { call: Call; doctor: Doctor }>();

const initialize: Initialize<Model> = ({ model }) => {
  const key = model.get("_client");
  if (key === "") return; // no key to find it by: each view then runs its own call (render)
  const old = calls.get(key); // a re-initialize (hot reload) replaces the old call
  old?.call.dispose();
  old?.doctor.dispose();
  // One listener for all the kernel's custom messages; join tokens come that way, never in a trait.
  const kernel = new KernelLink(model);
  const tokens = new KernelTokens(model, kernel);
  const call = new Call(model, { token: tokens.get }, kernel);
  // The connection doctor, like the Call at model level: the kernel's `diagnose` may come before a view.
  const doctor = new Doctor(model, call, kernel);
  const entry = { call, doctor };
  calls.set(key, entry);
  call.start();
  doctor.start();
  return () => {
    doctor.dispose();
    call.dispose();
    tokens.dispose();
    kernel.dispose();
    if (calls.get(key) === entry) calls.delete(key);
  };
};

const render: Render<Model> = ({ model, el }) => {
  const shared = calls.get(model.get("_client"));
  if (shared !== undefined) {
    const view = new RoomView(el, model, shared.call, shared.doctor);
    return () => view.destroy();
  }
  // A host that never called initialize, or a widget without a key: the view owns its call.
  const kernel = new KernelLink(model);
  const tokens = new KernelTokens(model, kernel);
  const own = new Call(model, { token: tokens.get }, kernel);
  const doctor = new Doctor(model, own, kernel);
  own.start();
  doctor.start();
  const view = new RoomView(el, model, own, doctor);
  return () => {
    view.destroy();
    doctor.dispose();
    own.dispose();
    tokens.dispose();
    kernel.dispose();
  };
};

export default { initialize, render };
export { mountPage };
