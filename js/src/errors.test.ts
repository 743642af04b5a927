import { describe, expect, it } from "vitest";
import { ERROR_CODES, type ErrorCode } from "./contract";
import { ERRORS, endsTheCall, knownCode, refusal, roomNameMessage, screenMessage, switchFailure, unreachableMessage } from "./errors";

const context = { room: "lab", hint: "Is the kernel running?", detail: "the signaller's words" };

describe("ERRORS", () => {
  it("has an entry for exactly the contract's codes (the same as Python's ErrorCode)", () => {
    expect(Object.keys(ERRORS).sort()).toEqual([...ERROR_CODES].sort());
  });

  // [code, ends the call on a refused re-entry, message for `context`]
  const table: [Exclude<ErrorCode, "">, boolean, string][] = [
    ["room_full", true, "Room “lab” is full. Pick another room name."],
    ["unreachable", false, "Can't reach the ipymeet signaller: its address is unknown (no signaling_url and no kernel port). Is the kernel running?"],
    ["bad_request", true, "The signaller refused room “lab”: the signaller's words"],
    ["camera_denied", false, "Camera and microphone are blocked for this page. Allow them in the browser's site settings, then Hang up and Connect again. You joined without sending video or sound."],
    ["no_camera", false, "No camera or microphone was found. You joined receive-only."],
    ["camera_busy", false, "The camera or microphone could not be started: another program may be using it. Close it, then Hang up and Connect again. You joined receive-only."],
    ["screen_denied", false, "the signaller's words"],
    ["insecure_context", false, "Camera access needs a secure page: open it through https:// or http://localhost. You joined receive-only."],
    ["disconnected", false, "Lost the connection to the ipymeet signaller. Is the kernel running?"],
    ["forbidden", true, "You may not enter room “lab”: the signaller's words"],
    ["wrong_dialect", true, "Room “lab” is in use by a two-person tutorial page. Pick another room name."],
    ["already_in_room", false, "This page is already in a room. Hang up, then Connect again."],
    ["rate_limited", false, "The signaller is getting too many messages from this page. Wait a moment, then Connect again."],
    ["timeout", false, "the signaller's words Is the kernel running?"],
    ["unknown_widget", true, "This room's kernel has restarted (or the widget was closed), so this view can no longer take part. Re-run the cell that shows the room."],
    ["internal_error", false, "The signaller refused room “lab”: the signaller's words"],
  ];

  it.each(table)("%s: final %s", (code, final, message) => {
    expect(ERRORS[code].final).toBe(final);
    expect(endsTheCall(code)).toBe(final);
    expect(ERRORS[code].message(context)).toBe(message);
  });

  it("says how many a full room holds, from the refusal or its words", () => {
    expect(ERRORS.room_full.message({ ...context, capacity: 4 })).toBe("Room “lab” is full (it holds 4). Pick another room name.");
    expect(ERRORS.room_full.message({ ...context, detail: "room 'lab' is full (it holds 2)" })).toBe(
      "Room “lab” is full (it holds 2). Pick another room name.",
    );
  });

  it("names the signaller's address when one is known", () => {
    expect(ERRORS.disconnected.message({ ...context, url: "http://h:1" })).toBe(
      "Lost the connection to the ipymeet signaller (http://h:1). Is the kernel running?",
    );
    expect(unreachableMessage(["http://a", "http://b"], "Hint.")).toBe("Can't reach the ipymeet signaller (tried: http://a, http://b). Hint.");
  });
});

describe("refusal", () => {
  it("keeps the contract's codes and takes any other as a bad request", () => {
    expect(refusal("forbidden", context)).toEqual({ code: "forbidden", message: "You may not enter room “lab”: the signaller's words" });
    expect(refusal("teapot", context)).toEqual({ code: "bad_request", message: "The signaller refused room “lab”: the signaller's words" });
    expect(knownCode("teapot")).toBe("");
    expect(endsTheCall("teapot")).toBe(false);
  });
});

describe("the situations worded their own way", () => {
  it("room names", () => {
    expect(roomNameMessage("")).toBe("Choose a room name first: type one in the room field, then Connect.");
    expect(roomNameMessage("no spaces")).toBe("“no spaces” is not a valid room name: use 1–64 letters, digits, “_”, “.” or “-”.");
  });

  it("screen shares", () => {
    expect(screenMessage({ name: "NotAllowedError" })).toMatch(/^Screen sharing was not allowed/);
    expect(screenMessage({ name: "ScreenUnsupported" })).toMatch(/^This browser cannot share the screen/);
    expect(screenMessage(new Error("?"))).toBe("The screen could not be shared. Press Share screen to try again.");
  });

  it("device switches", () => {
    expect(switchFailure("audio", "missing")).toEqual({ code: "no_camera", message: "That microphone was not found. Pick another one." });
    expect(switchFailure("video", "camera_denied").code).toBe("camera_denied");
    expect(switchFailure("video", "camera_busy")).toEqual({
      code: "camera_busy",
      message: "That camera could not be started: another program may be using it. The previous one stays on.",
    });
  });
});
