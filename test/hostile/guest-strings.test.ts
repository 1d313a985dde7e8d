// Hostile services, strings: a service chooses its errors' codes and
// messages, and the kernel keeps them (a caller's error, the inventory, the
// service's failure). None of them may hold a guest string of any size.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { join } from "node:path";
import { rejection, startKernel, type TestKernel } from "../support/kernel.ts";
import { FIXTURES } from "../support/runtime.ts";
import { expectHealthy, underLoad } from "../support/hostile.ts";

describe("hostile services: error strings of any size", () => {
  let t: TestKernel;
  beforeAll(async () => {
    t = await startKernel({ services: { huge: { entry: "./hostile/strings-huge.ts" }, healthy: { entry: "./probe.ts" } } });
  });
  afterAll(() => t.kernel.stop());

  it("a handler's 1 MB message and 100 KB code reach the kernel's caller cut to a few KB", async () => {
    const err = await rejection(t.kernel.call("huge", "fail", { codeChars: 100_000, messageChars: 1_000_000 }));
    expect(err.code.startsWith("ERR_XXX")).toBe(true);
    expect(err.code.length).toBeLessThan(200);
    expect(err.message.length).toBeLessThan(5000);
  });

  it("a dump that throws 1 MB: the swap rolls back, and the inventory keeps a bounded code and message", async () => {
    const load = await underLoad(t, () => t.kernel.swap("huge", join(FIXTURES, "hostile", "clean.ts")));
    expectHealthy(load);
    expect(load.value.outcome).toBe("rolled-back");
    const record = t.kernel.history("huge").at(-1);
    expect(record?.outcome).toBe("rolled-back");
    expect(JSON.stringify(record).length).toBeLessThan(20_000);
    expect(await t.kernel.call("huge", "ping")).toBe("pong");
  });
});
