import { describe, expect, it } from "vitest";
import { canSwitchCamera, facesBothWays, facingOf, nextCamera } from "./facing";
import { listDevices } from "./media";
import type { DeviceInfo } from "./types";

/** An enumerateDevices entry; `modes`: what its getCapabilities() says of facingMode. */
const device = (deviceId: string, kind: MediaDeviceKind, modes?: unknown): Pick<MediaDeviceInfo, "deviceId" | "kind" | "label"> =>
  Object.assign(
    { deviceId, kind, label: deviceId, groupId: "" },
    modes === undefined ? {} : { getCapabilities: () => ({ facingMode: modes }) },
  );

const front: DeviceInfo = { id: "f", label: "Front", facing: "user" };
const back: DeviceInfo = { id: "b", label: "Back", facing: "environment" };
const plain = (id: string): DeviceInfo => ({ id, label: id });

describe("facingOf and listDevices", () => {
  it("reads the way a camera faces from its capabilities, and nothing else", () => {
    expect(facingOf(device("a", "videoinput", ["user"]))).toBe("user");
    expect(facingOf(device("a", "videoinput", ["environment"]))).toBe("environment");
    // Chromium's fake cameras and most desktop webcams say nothing.
    expect(facingOf(device("a", "videoinput", []))).toBe("");
    expect(facingOf(device("a", "videoinput"))).toBe("");
    expect(facingOf(device("a", "videoinput", "user"))).toBe("");
    expect(facingOf({ getCapabilities: () => { throw new Error("gone"); } })).toBe("");
  });

  it("puts `facing` on the cameras that say it, never on microphones", () => {
    const listed = listDevices([
      device("f", "videoinput", ["user"]),
      device("b", "videoinput", ["environment"]),
      device("w", "videoinput", []),
      device("m", "audioinput", ["user"]),
    ]);
    expect(listed.cameras).toEqual([
      { id: "f", label: "f", facing: "user" },
      { id: "b", label: "b", facing: "environment" },
      { id: "w", label: "w" },
    ]);
    expect(listed.microphones).toEqual([{ id: "m", label: "m" }]);
  });
});

describe("canSwitchCamera", () => {
  it("offers the switch for a front and a back camera, on any device", () => {
    expect(facesBothWays([front, back])).toBe(true);
    expect(canSwitchCamera([front, back], false)).toBe(true);
  });

  it("offers it for two cameras on a touch device, not on a desktop", () => {
    expect(canSwitchCamera([plain("a"), plain("b")], true)).toBe(true);
    expect(canSwitchCamera([plain("a"), plain("b")], false)).toBe(false);
    expect(canSwitchCamera([front, plain("usb")], false)).toBe(false);
  });

  it("never for one camera or none", () => {
    expect(canSwitchCamera([front], true)).toBe(false);
    expect(canSwitchCamera([], true)).toBe(false);
  });
});

describe("nextCamera", () => {
  it("goes to the camera facing the other way, and back", () => {
    const cameras = [front, plain("usb"), back];
    expect(nextCamera(cameras, "f")).toBe(back);
    expect(nextCamera(cameras, "b")).toBe(front);
  });

  it("from the default (no camera chosen, device unknown) starts at the first camera", () => {
    expect(nextCamera([front, back], "")).toBe(back);
    expect(nextCamera([plain("a"), plain("b")], "")!.id).toBe("b");
  });

  it("goes round the list when the cameras do not say which way they face", () => {
    const cameras = [plain("a"), plain("b"), plain("c")];
    expect(nextCamera(cameras, "a")!.id).toBe("b");
    expect(nextCamera(cameras, "c")!.id).toBe("a");
    // The camera in use says nothing (a USB camera on a phone): the next one.
    expect(nextCamera([front, plain("usb"), back], "usb")).toBe(back);
  });

  it("has nowhere to go with one camera", () => {
    expect(nextCamera([front], "f")).toBeNull();
    expect(nextCamera([], "")).toBeNull();
  });
});
