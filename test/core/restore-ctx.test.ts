// Issue 20, item 4: `restore(dumped, fromStateVersion, ctx)`. A migration
// that needs a config value reads it from ctx during the swap, as init and
// start do, instead of parking data until start.

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startKernel, type TestKernel } from "../support/kernel.ts";

describe("restore gets the service's context", () => {
  let t: TestKernel;
  beforeAll(async () => {
    t = await startKernel({ services: { sessions: { entry: "./i20c-restore-ctx-v1.ts", config: { ttlMs: 60_000 } } } });
  });
  afterAll(() => t.kernel.stop());

  it("a migration reads ctx.config, ctx.service and ctx.version while a swap restores the state", async () => {
    await t.kernel.call("sessions", "login", { name: "ada", at: 1_000 });
    await t.kernel.call("sessions", "login", { name: "bob", at: 5_000 });
    const report = await t.kernel.swap("sessions", `${t.kernel.config.dir}/i20c-restore-ctx-v2.ts`);
    expect(report.error).toBeUndefined();
    expect(report).toMatchObject({ outcome: "committed", from: { stateVersion: 1 }, to: { semver: "2.0.0", stateVersion: 2 } });
    expect(await t.kernel.call("sessions", "get")).toEqual({
      sessions: { ada: { createdAt: 1_000, expiresAt: 61_000 }, bob: { createdAt: 5_000, expiresAt: 65_000 } },
      migratedBy: "sessions 2.0.0",
    });
  });
});
