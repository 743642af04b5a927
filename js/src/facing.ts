/**
 * Front and back camera: which camera one tap on "Switch camera" goes to, and whether the button
 * is worth showing. A phone lists its cameras with the way each faces (`facingMode` "user" for
 * the front, "environment" for the back); a desktop browser says nothing of the kind. So the
 * button shows when cameras face both ways, or when a touch-first device (a coarse pointer) has
 * two cameras or more and does not say which way they face; a laptop with a webcam and a
 * capture card keeps its camera list and no button.
 */
import type { DeviceInfo } from "./types";

export type Facing = "user" | "environment";

/** The way a device faces, from `InputDeviceInfo.getCapabilities().facingMode` ("" = not said). */
export function facingOf(device: unknown): Facing | "" {
  const capabilities = (device as { getCapabilities?: () => { facingMode?: unknown } }).getCapabilities;
  if (typeof capabilities !== "function") return "";
  let modes: unknown;
  try {
    modes = capabilities.call(device).facingMode;
  } catch {
    return "";
  }
  if (!Array.isArray(modes)) return "";
  if (modes.includes("user")) return "user";
  if (modes.includes("environment")) return "environment";
  return "";
}

/** Whether cameras face both ways (a phone's front and back camera). */
export function facesBothWays(cameras: readonly DeviceInfo[]): boolean {
  return cameras.some((c) => c.facing === "user") && cameras.some((c) => c.facing === "environment");
}

/** Whether to offer "Switch camera": cameras facing both ways, or two or more on a touch device. */
export function canSwitchCamera(cameras: readonly DeviceInfo[], touchFirst: boolean): boolean {
  return facesBothWays(cameras) || (touchFirst && cameras.length >= 2);
}

/**
 * The camera a tap switches to. `current`: the camera in use (the `camera` trait, or the live
 * track's device when that is "" = the default). Cameras that say which way they face: the first
 * one facing the other way; else the next camera in the list, round. null: nowhere to go.
 */
export function nextCamera(cameras: readonly DeviceInfo[], current: string): DeviceInfo | null {
  if (cameras.length < 2) return null;
  const index = cameras.findIndex((c) => c.id === current);
  const here = index >= 0 ? cameras[index] : cameras[0];
  if (facesBothWays(cameras) && here.facing) {
    const other = cameras.find((c) => c.facing !== undefined && c.facing !== here.facing);
    if (other !== undefined) return other;
  }
  return cameras[((index >= 0 ? index : 0) + 1) % cameras.length];
}
