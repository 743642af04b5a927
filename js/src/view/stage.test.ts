import { describe, expect, it } from "vitest";
import { columnsFor } from "./stage";

describe("columnsFor", () => {
  it("lays out everyone (you included) as 2 side by side, 2 over 1, 2×2, then 3×2", () => {
    expect([1, 2, 3, 4, 5, 6].map(columnsFor)).toEqual([1, 2, 2, 2, 3, 3]);
  });
});
