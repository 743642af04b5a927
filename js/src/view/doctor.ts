/**
 * The connection doctor in the view: the "Check connection" button (beside the status line) and
 * the panel with the report (diagnose.ts), one line per check with what was found and, for each
 * problem, what to do. It follows the `diagnosis` trait, so a check started from Python
 * (`room.diagnose()`) shows here too, and every view of the widget shows the same report. Closing
 * the panel hides that report; the next one opens it again.
 */
import type { Check, Diagnosis, RouteResult } from "../diagnose";
import type { Doctor } from "../doctor";
import type { WidgetModel } from "../types";
import { Bindings, h, icon, setAttr, setData, setDisabled, setHidden, setText } from "./dom";

const PULSE = '<path d="M3 12h4l2.5-6 4 12 2.5-6H21"/>';
const MARKS: Record<Check["status"], string> = { ok: "✓", warning: "!", problem: "✕", skipped: "–", running: "…" };

export class DoctorPanel {
  /** The "Check connection" button. */
  readonly button: HTMLButtonElement;
  /** The report's panel (hidden until there is a report to show). */
  readonly panel: HTMLElement;
  private readonly model: WidgetModel;
  private readonly doctor: Doctor;
  private readonly bindings = new Bindings();
  private readonly label: HTMLElement;
  private readonly summary: HTMLElement;
  private readonly list: HTMLElement;
  private readonly waitingNote: HTMLElement;
  /** The id of the report the person closed (it stays hidden until a new one comes). */
  private closed = "";
  private shown = "";

  constructor(model: WidgetModel, doctor: Doctor) {
    this.model = model;
    this.doctor = doctor;
    this.label = h("span", { class: "ipymeet-btn-label" }, "Check connection");
    this.button = h(
      "button",
      {
        type: "button",
        class: "ipymeet-btn ipymeet-check-btn",
        "data-testid": "check-connection",
        title: "Check the camera, the way to the signaller and the network",
      },
      icon(PULSE),
      this.label,
    );
    const close = h(
      "button",
      { type: "button", class: "ipymeet-doctor-close", "data-testid": "doctor-close", "aria-label": "Close the connection check" },
      "×",
    );
    this.summary = h("span", { class: "ipymeet-doctor-summary", "data-testid": "doctor-summary" });
    this.waitingNote = h("p", { class: "ipymeet-doctor-note" });
    this.list = h("ul", { class: "ipymeet-doctor-list" });
    this.panel = h(
      "section",
      { class: "ipymeet-doctor", "data-testid": "doctor", "aria-label": "Connection check" },
      h("header", { class: "ipymeet-doctor-head" }, h("strong", {}, "Connection check"), this.summary, close),
      this.waitingNote,
      this.list,
    );
    this.bindings.dom(this.button, "click", () => {
      this.closed = "";
      doctor.check();
      this.render();
    });
    this.bindings.dom(close, "click", () => {
      this.closed = this.doctor.report?.id ?? "";
      this.render();
    });
    this.bindings.traits(model, ["diagnosis", "_kernel_busy"], () => this.render());
    this.bindings.add(doctor.subscribe(() => this.render()));
    this.render();
  }

  dispose(): void {
    this.bindings.dispose();
  }

  private render(): void {
    const report = this.doctor.report;
    const waiting = this.doctor.waiting;
    const running = waiting || report?.state === "running";
    setDisabled(this.button, running);
    setText(this.label, running ? "Checking…" : "Check connection");
    const visible = waiting || (report !== null && report.id !== this.closed);
    setHidden(this.panel, !visible);
    if (!visible) return;
    const busy = this.model.get("_kernel_busy") === true;
    setText(
      this.waitingNote,
      !waiting ? "" : busy ? "Waiting for the kernel: a cell is running; the check starts when it ends." : "Asking the kernel for the ICE servers…",
    );
    setHidden(this.waitingNote, !waiting);
    if (waiting || report === null) {
      setText(this.summary, "");
      this.list.replaceChildren();
      this.shown = "";
      return;
    }
    setText(this.summary, summarize(report));
    setData(this.panel, "state", report.state);
    const key = JSON.stringify([report.id, report.checks, report.routes]);
    if (key === this.shown) return;
    this.shown = key;
    this.list.replaceChildren(...report.checks.map((item) => line(item, item.name === "signaller" ? report.routes : [])));
  }
}

/** The panel's header: checking, or how many problems were found. */
export function summarize(report: Diagnosis): string {
  if (report.state === "running") return "Checking…";
  const warnings = report.checks.filter((item) => item.status === "warning").length;
  if (report.problems === 0 && warnings === 0) return "No problem found";
  const parts = [];
  if (report.problems > 0) parts.push(`${report.problems} problem${report.problems === 1 ? "" : "s"}`);
  if (warnings > 0) parts.push(`${warnings} warning${warnings === 1 ? "" : "s"}`);
  return parts.join(", ");
}

function line(item: Check, routes: readonly RouteResult[]): HTMLElement {
  const row = h(
    "li",
    { class: "ipymeet-check", "data-check": item.name, "data-status": item.status },
    h("span", { class: "ipymeet-check-mark", "aria-hidden": "true" }, MARKS[item.status]),
    h("span", { class: "ipymeet-check-title" }, item.title),
    h("span", { class: "ipymeet-check-detail" }, item.detail),
  );
  setAttr(row, "aria-label", `${item.title}: ${item.status}`);
  if (routes.length > 0) {
    row.append(h("ul", { class: "ipymeet-routes" }, ...routes.map(routeLine)));
  }
  if (item.fix !== "") row.append(h("p", { class: "ipymeet-check-fix", "data-testid": `fix-${item.name}` }, item.fix));
  return row;
}

function routeLine(route: RouteResult): HTMLElement {
  const where = route.kind === "kernel" ? "kernel route" : route.kind === "explicit" ? route.url : `${route.kind} ${route.url}`;
  const ms = route.ms === null ? "" : ` in ${Math.round(route.ms)} ms`;
  const outcome = {
    running: "trying…",
    answered: `answered${ms}`,
    failed: `no answer${ms}${route.detail ? ` (${route.detail})` : ""}`,
    not_tried: `not tried: ${route.detail}`,
  }[route.status];
  if (route.status === "answered" && route.detail !== "") {
    return h("li", { "data-status": route.status }, `${where}: ${outcome} (${route.detail})`);
  }
  return h("li", { "data-status": route.status }, `${where}: ${outcome}`);
}
