import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { eventually, rejection, startKernel, type TestKernel } from "../support/kernel.ts";

describe("services in cells (isolation: process)", () => {
  let t: TestKernel;
  beforeAll(async () => {
    t = await startKernel({
      services: {
        celled: { entry: "./swap/counter-v1.ts", isolation: "process", bindings: { slow: "slow" } },
        bomb: { entry: "./map-bomb.ts", isolation: "process", limits: { memoryMb: 128, timeoutMs: 60_000 } },
        slow: { entry: "./probe.ts", bindings: { celled: "celled" } },
        healthy: { entry: "./probe.ts" },
      },
    });
  });
  afterAll(() => t.kernel.stop());

  it("serves calls, and calls other services through its bindings, both ways across the process boundary", async () => {
    expect(await t.kernel.call("celled", "incr", 2)).toBe(2);
    expect(await t.kernel.call("celled", "relayIncr", 5)).toBe(3);
    expect(await t.kernel.call("slow", "call", { binding: "celled", method: "get" })).toBe(3);
    expect((await rejection(t.kernel.call("celled", "nope"))).code).toBe("ERR_NO_HANDLER");
  });

  it("swaps like any service, state and all", async () => {
    const report = await t.kernel.swap("celled", `${t.kernel.config.dir}/swap/counter-v2.ts`);
    expect(report.outcome).toBe("committed");
    expect(await t.kernel.call("celled", "which")).toBe("v2");
    expect(await t.kernel.call("celled", "get")).toBe(3);
  });

  it("contains a Map that grows until V8 aborts: the caller gets ERR_SERVICE_CRASHED, the service beside answers every call, the bombed one restarts", async () => {
    // The same bomb in the kernel's own process aborts it (measured: exit 134 with memoryMb 32, 128 and 512).
    let answered = 0;
    let failed = 0;
    let bombing = true;
    const beside = (async () => {
      while (bombing) {
        try {
          await t.kernel.call("healthy", "echo", answered);
          answered++;
        } catch {
          failed++;
        }
      }
    })();
    const err = await rejection(t.kernel.call("bomb", "bomb"));
    bombing = false;
    await beside;
    expect(err.code).toBe("ERR_SERVICE_CRASHED");
    expect(failed).toBe(0);
    expect(answered).toBeGreaterThan(0);
    expect(await eventually(() => t.kernel.call("bomb", "ping"))).toBe("pong");
    const status = t.kernel.status().find((s) => s.name === "bomb");
    expect(status?.restarts).toBe(1);
    console.log(`healthy service answered ${answered} calls while the bomb went off, ${failed} failed`);
  });
});
