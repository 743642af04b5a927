import { describe, expect, it } from "vitest";
import { initial } from "./tile";

describe("initial", () => {
  it("takes the first letter, upper case, or a question mark", () => {
    expect(initial("ada")).toBe("A");
    expect(initial("  émile")).toBe("É");
    expect(initial("😀 smile")).toBe("😀");
    expect(initial("")).toBe("?");
  });
});
