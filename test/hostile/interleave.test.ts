// Hostile services, interleaving: a service at `concurrency: 1` runs one
// handler at a time, before and after a timeout. A handler still awaiting
// past its deadline has its caller answered ERR_TIMEOUT at the deadline, but
// keeps its place: the next message starts inside the service only once the
// late handler has settled, or, if it holds its place for longer than
// another deadline while messages wait, once its instance has been replaced.
import { afterEach, describe, expect, it, vi } from "vitest";
import { rejection, startKernel, type TestKernel } from "../support/kernel.ts";

const TIMEOUT_MS = 800;

describe("hostile services: handlers past their deadline do not interleave with the next message", () => {
  let t: TestKernel | undefined;
  afterEach(async () => {
    // A call the latch still holds would keep the kernel's stop waiting for it.
    const k = t;
    t = undefined;
    if (k === undefined) return;
    for (const tag of (await k.kernel.call("latch", "held")) as string[]) await k.kernel.call("latch", "release", tag);
    await k.kernel.stop();
  });

  const start = async (): Promise<TestKernel> => {
    t = await startKernel({
      services: {
        serial: {
          entry: "./hostile/interleave-serial.ts",
          concurrency: 1,
          bindings: { latch: "latch" },
          limits: { timeoutMs: TIMEOUT_MS },
        },
        latch: { entry: "./hostile/interleave-latch.ts", limits: { timeoutMs: 30_000 } },
        spinner: { entry: "./hostile/loops.ts", concurrency: 1, bindings: { healthy: "healthy" }, limits: { timeoutMs: 300 } },
        healthy: { entry: "./probe.ts" },
      },
    });
    return t;
  };
  const held = async (k: TestKernel, tag: string): Promise<void> =>
    vi.waitFor(async () => expect(await k.kernel.call("latch", "held")).toContain(tag), { timeout: 5000, interval: 20 });
  const restarts = (k: TestKernel, name = "serial"): number => k.kernel.status().find((s) => s.name === name)?.restarts ?? -1;

  it("answers a handler awaiting past its deadline with ERR_TIMEOUT, and starts the next message only when that handler has left", async () => {
    const k = await start();
    const slow = k.kernel.call("serial", "slow", "late");
    await held(k, "late");
    expect((await rejection(slow)).code).toBe("ERR_TIMEOUT");
    // Handed to the service while `slow` still awaits its latch, which lets go
    // only afterwards, and well before a second deadline would have the instance replaced.
    const quick = k.kernel.call("serial", "quick");
    expect(await k.kernel.call("latch", "release", "late")).toBe(true);
    expect(await quick).toBe("quick done");
    const report = await vi.waitFor(
      async () => {
        const r = (await k.kernel.call("serial", "report")) as { max: number; trace: string[] };
        expect(r.trace).toContain("<slow");
        return r;
      },
      { timeout: 5000, interval: 20 },
    );
    expect(report).toEqual({ max: 1, trace: ["slow>", "<slow", "quick>", "<quick"] });
    expect(restarts(k)).toBe(0);
  });

  it("replaces the instance of a handler that never settles once messages wait behind it, and the next instance answers them", async () => {
    const k = await start();
    const slow = k.kernel.call("serial", "slow", "never");
    await held(k, "never");
    expect((await rejection(slow)).code).toBe("ERR_TIMEOUT");
    // Waits inside the service for longer than its own deadline without timing out: that runs from its start.
    expect(await k.kernel.call("serial", "quick")).toBe("quick done");
    expect(restarts(k)).toBe(1);
    // The next instance started from init (no snapshot was taken): the late handler never ran beside `quick`.
    expect(await k.kernel.call("serial", "report")).toEqual({ max: 1, trace: ["quick>", "<quick"] });
  });

  // A loop stopped by the deadline also drops the continuation it ran in:
  // that handler will never settle, and the instance is told so, rather
  // than replaced (which would lose the state since the last snapshot).
  it.each(["spinAfterTimer", "spinAfterCall"])("frees the place of a handler whose continuation a deadline stopped (%s), without replacing the instance", async (method) => {
    const k = await start();
    expect((await rejection(k.kernel.call("spinner", method))).code).toBe("ERR_TIMEOUT");
    expect(await k.kernel.call("spinner", "ping")).toBe("pong");
    expect(restarts(k, "spinner")).toBe(0);
  });
});
