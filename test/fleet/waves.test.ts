// Waves: `--waves` as the user types it, and how many runtimes each wave
// should leave on the new version.

import { describe, expect, it } from "vitest";
import { parseWaves, waveTarget } from "../../fleet/waves.ts";

describe("rollout waves", () => {
  it("reads increasing percentages that end at 100", () => {
    expect(parseWaves("1,5,25,100")).toEqual([1, 5, 25, 100]);
    expect(parseWaves(" 0.5, 50 ,100")).toEqual([0.5, 50, 100]);
    expect(parseWaves("100")).toEqual([100]);
  });

  it("refuses a list that is not increasing, leaves the fleet behind, or is not percentages, with ERR_USAGE", () => {
    for (const bad of ["", "1,,100", "5,1,100", "5,5,100", "1,5,25", "0,100", "-1,100", "1,101", "a,100", "1;100", "Infinity,100"]) {
      expect(() => parseWaves(bad), bad).toThrow(expect.objectContaining({ code: "ERR_USAGE" }));
    }
  });

  it("rounds each wave's share up, so a small wave of a small fleet moves one runtime and 100% moves all", () => {
    expect([1, 5, 25, 100].map((p) => waveTarget(p, 50_000))).toEqual([500, 2500, 12_500, 50_000]);
    expect([1, 5, 25, 100].map((p) => waveTarget(p, 3))).toEqual([1, 1, 1, 3]);
    expect([34, 67, 100].map((p) => waveTarget(p, 3))).toEqual([2, 3, 3]);
    // Exact shares are not pushed up by floating-point error.
    expect(waveTarget(25, 4)).toBe(1);
    expect(waveTarget(10, 30)).toBe(3);
    expect(waveTarget(100, 0)).toBe(0);
  });
});
