// Hostile services, timers: each pending guest timer is a Node timer on the
// host, outside the isolate's heap limit (500,000 of them took the host from
// 177 to 566 MB of RSS). limits.timers caps them per instance: past it,
// setTimeout throws ERR_LIMIT inside the service, and the host holds no more.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startKernel, type TestKernel } from "../support/kernel.ts";
import { expectHealthy, underLoad } from "../support/hostile.ts";

const hostTimers = (): number => process.getActiveResourcesInfo().filter((r) => r === "Timeout").length;

describe("hostile services: timer floods", () => {
  let t: TestKernel;
  beforeAll(async () => {
    t = await startKernel({
      services: {
        flood: { entry: "./hostile/timers-flood.ts" },
        small: { entry: "./hostile/timers-flood.ts", limits: { timers: 50 } },
        healthy: { entry: "./probe.ts" },
      },
    });
  });
  afterAll(() => t.kernel.stop());

  it("500,000 setTimeouts: 10,000 are armed (the default limit), the next throws ERR_LIMIT, and the host holds no more than that", async () => {
    const before = hostTimers();
    const load = await underLoad(t, () => t.kernel.call("flood", "arm", 500_000));
    expect(load.value).toEqual({ armed: 10_000, code: "ERR_LIMIT" });
    expect(hostTimers() - before).toBeLessThanOrEqual(10_000 + 10);
    expect(await t.kernel.call("flood", "clear")).toBe(10_000);
    expect(hostTimers() - before).toBeLessThan(10);
    expectHealthy(load);
  });

  it("limits.timers is per service: a service limited to 50 gets 50, and clearing makes room again", async () => {
    expect(await t.kernel.call("small", "arm", 1000)).toEqual({ armed: 50, code: "ERR_LIMIT" });
    expect(await t.kernel.call("small", "clear")).toBe(50);
    expect(await t.kernel.call("small", "arm", 50)).toEqual({ armed: 50, code: null });
  });
});
