// A module's `fixes` (the advisories its version fixes) as the kernel keeps
// them: read once when the module loads, checked there, and carried by the
// service's status and by the version's record in the inventory.

import { describe, expect, it } from "vitest";
import { bundleService } from "../../core/bundle.ts";
import { rejection, startKernel } from "../support/kernel.ts";
import { FIXTURES } from "../support/runtime.ts";

const fixture = (file: string): string => `${FIXTURES}/fixes/${file}`;

describe("a version's fixes", () => {
  it("are in the service's status and in its inventory records, and a version that declares none has none", async () => {
    const { kernel } = await startKernel({ services: { patched: { entry: fixture("v3.ts"), config: { node: "x" } } } });
    try {
      expect(kernel.status()[0]?.fixes).toEqual(["MOLT-2026-0001", "MOLT-2026-0002"]);
      expect(kernel.history("patched").at(-1)?.fixes).toEqual(["MOLT-2026-0001", "MOLT-2026-0002"]);
      const report = await kernel.swapBundle("patched", await bundleService(fixture("v1.ts")), "swap");
      expect(report.outcome).toBe("committed");
      expect(kernel.status()[0]?.fixes).toEqual([]);
      const records = kernel.history("patched");
      expect(records.at(-1)?.semver).toBe("1.0.0");
      expect(records.at(-1)).not.toHaveProperty("fixes");
    } finally {
      await kernel.stop();
    }
  });

  it("that are not a list of advisory ids keep the module from loading, with ERR_BAD_SERVICE", async () => {
    const { kernel } = await startKernel({ services: { patched: { entry: fixture("v1.ts"), config: { node: "x" } } } });
    try {
      const report = await kernel.swapBundle("patched", await bundleService(fixture("bad-fixes.ts")), "swap");
      expect(report.outcome).toBe("rolled-back");
      // A swap names the phase that refused it: the new module did not load (prepare).
      expect(report.error).toMatchObject({ code: "ERR_SWAP_COMPILE", phase: "prepare" });
      expect(kernel.status()[0]?.semver).toBe("1.0.0");
    } finally {
      await kernel.stop();
    }
    const failed = await rejection(startKernel({ services: { bad: { entry: fixture("bad-fixes.ts") } } }));
    expect(failed.code).toBe("ERR_BAD_SERVICE");
  });
});
