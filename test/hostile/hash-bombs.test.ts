// Hostile services, memory, in the default isolation: a Map, a Set and a
// plain object grown without end inside a 32 MiB in-process isolate. Each
// used to abort the whole Node process (V8's CALL_AND_RETRY_LAST); now the
// bomb's caller gets ERR_OOM, the service comes back from its snapshot (in a
// cell of its own when its isolate had to be quarantined), and its neighbour
// answers every call meanwhile.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { eventually, rejection, startKernel, type TestKernel } from "../support/kernel.ts";
import { expectHealthy, restarts, underLoad } from "../support/hostile.ts";

describe("hostile services: hash-table bombs in the default isolation", () => {
  let t: TestKernel;
  const bomb = { entry: "./hostile/memory.ts", limits: { memoryMb: 32, timeoutMs: 30_000 } };
  beforeAll(async () => {
    t = await startKernel({
      services: { mapbomb: bomb, setbomb: bomb, objectbomb: bomb, healthy: { entry: "./probe.ts" } },
      restart: { maxRestarts: 5, windowMs: 60_000 },
    });
  });
  afterAll(() => t.kernel.stop());

  const isolation = (name: string): string | undefined => t.kernel.status().find((s) => s.name === name)?.isolation;

  it.each([
    ["mapbomb", "map"],
    ["setbomb", "set"],
    ["objectbomb", "objectKeys"],
  ])("%s: ERR_OOM for its caller, a restart in a cell, and a neighbour that never failed", async (service, method) => {
    expect(isolation(service)).toBe("isolate");
    const before = restarts(t, service);
    const load = await underLoad(t, async () => {
      const err = await rejection(t.kernel.call(service, method));
      const again = await eventually(() => t.kernel.call(service, "ping"), 20_000);
      return { code: err.code, again };
    });
    expect(load.value).toEqual({ code: "ERR_OOM", again: "pong" });
    expect(restarts(t, service)).toBe(before + 1);
    // Most often V8 gives up on the heap (the isolate is quarantined and the
    // service moves to a cell); now and then isolated-vm's own heap check
    // catches the table first, and the isolate is simply disposed.
    const moved = t.logs.some((l) => l.msg === "service moved to a cell of its own" && l.service === service);
    expect(isolation(service)).toBe(moved ? "process" : "isolate");
    expectHealthy(load);
  });
});
