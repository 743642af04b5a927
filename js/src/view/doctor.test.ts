// @vitest-environment happy-dom
import { describe, expect, it } from "vitest";
import { report, type Check, type Diagnosis } from "../diagnose";
import { Doctor } from "../doctor";
import { KernelModel } from "../harness";
import { KernelLink } from "../kernel";
import { DoctorPanel, summarize } from "./doctor";

const checked = (id: string, checks: Partial<Record<Check["name"], Check>>): Diagnosis =>
  report({
    id,
    started: 1,
    finished: 2,
    page: "http://127.0.0.1:8888",
    secure: true,
    checks,
    routes: [
      { kind: "direct", url: "http://127.0.0.1:8765", status: "failed", ms: 3, detail: "refused" },
      { kind: "kernel", url: "kernel", status: "answered", ms: 41.6, detail: "" },
    ],
    ice: null,
    devices: { cameras: 1, microphones: 1 },
  });
const ok = (name: Check["name"]): Check => ({ name, title: name, status: "ok", detail: `${name} fine`, fix: "" });
const ALL_OK = { secure_context: ok("secure_context"), camera: ok("camera"), microphone: ok("microphone"), signaller: ok("signaller"), ice: ok("ice"), turn: ok("turn") };
const DENIED: Check = { name: "camera", title: "Camera", status: "problem", detail: "Camera access is blocked for this page.", fix: "Allow the camera in the browser's site settings." };

function panel(traits: Record<string, unknown> = {}) {
  const model = new KernelModel({ room: "lab", _client: "k1", _port: 8765, ...traits });
  const kernel = new KernelLink(model);
  const doctor = new Doctor(model, { localStream: null }, kernel, { kernelAnswerMs: 60_000 });
  doctor.start();
  const view = new DoctorPanel(model, doctor);
  document.body.append(view.button, view.panel);
  return { model, doctor, view };
}

describe("the doctor's panel", () => {
  it("is hidden until there is a report, then shows each check, the routes and each fix", () => {
    const { model, view } = panel();
    expect(view.panel.hidden).toBe(true);
    expect(view.button.textContent).toBe("Check connection");
    // A check started from Python: the page's report reaches the view through the trait.
    model.set("diagnosis", checked("k-1", { ...ALL_OK, camera: DENIED }));
    expect(view.panel.hidden).toBe(false);
    const rows = [...view.panel.querySelectorAll<HTMLElement>(".ipymeet-check")];
    expect(rows.map((row) => [row.dataset.check, row.dataset.status])).toEqual([
      ["secure_context", "ok"],
      ["camera", "problem"],
      ["microphone", "ok"],
      ["signaller", "ok"],
      ["ice", "ok"],
      ["turn", "ok"],
    ]);
    expect(view.panel.querySelector("[data-testid=fix-camera]")!.textContent).toBe("Allow the camera in the browser's site settings.");
    expect(view.panel.querySelectorAll(".ipymeet-check-fix")).toHaveLength(1);
    const routes = [...view.panel.querySelectorAll(".ipymeet-routes li")].map((li) => li.textContent);
    expect(routes).toEqual(["direct http://127.0.0.1:8765: no answer in 3 ms (refused)", "kernel route: answered in 42 ms"]);
    expect(view.panel.querySelector("[data-testid=doctor-summary]")!.textContent).toBe("1 problem");
  });

  it("says it checks while running, and disables the button meanwhile", () => {
    const { model, view } = panel();
    model.set("diagnosis", checked("k-1", { secure_context: ok("secure_context") }));
    expect(view.button.disabled).toBe(true);
    expect(view.button.textContent).toBe("Checking…");
    expect(view.panel.querySelector("[data-testid=doctor-summary]")!.textContent).toBe("Checking…");
    model.set("diagnosis", checked("k-1", ALL_OK));
    expect(view.button.disabled).toBe(false);
    expect(view.panel.querySelector("[data-testid=doctor-summary]")!.textContent).toBe("No problem found");
  });

  it("the button asks the kernel, and says so while a cell keeps it busy", () => {
    const { model, view } = panel({ _kernel_busy: true });
    view.button.click();
    expect(model.messages.map((m) => m.type)).toEqual(["diagnose_request"]);
    expect(view.panel.hidden).toBe(false);
    expect(view.panel.querySelector(".ipymeet-doctor-note")!.textContent).toBe(
      "Waiting for the kernel: a cell is running; the check starts when it ends.",
    );
    model.set("_kernel_busy", false);
    expect(view.panel.querySelector(".ipymeet-doctor-note")!.textContent).toBe("Asking the kernel for the ICE servers…");
  });

  it("closing hides this report; the next one shows again", () => {
    const { model, view } = panel();
    model.set("diagnosis", checked("k-1", ALL_OK));
    view.panel.querySelector<HTMLButtonElement>("[data-testid=doctor-close]")!.click();
    expect(view.panel.hidden).toBe(true);
    model.set("diagnosis", checked("k-2", ALL_OK));
    expect(view.panel.hidden).toBe(false);
  });

  it("summarizes problems and warnings", () => {
    const warned: Check = { ...ok("signaller"), status: "warning" };
    expect(summarize(checked("a", { ...ALL_OK, camera: DENIED, signaller: warned }))).toBe("1 problem, 1 warning");
    expect(summarize(checked("a", { ...ALL_OK, signaller: warned }))).toBe("1 warning");
  });
});
