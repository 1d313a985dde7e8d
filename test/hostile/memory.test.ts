// Hostile services, memory: bombs against a small limits.memoryMb, beside a
// healthy service under continuous load. The bomb's caller gets a code
// (ERR_OOM when the isolate dies and is restarted, ERR_HANDLER when V8
// throws a catchable RangeError); the healthy service answers every call.
// The hash-table bombs (Map, Set, an object grown with string keys) abort V8
// itself, past any memory limit: they run in cells (isolation: "process").
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { eventually, rejection, startKernel, type TestKernel } from "../support/kernel.ts";
import { underLoad, expectHealthy, restarts } from "../support/hostile.ts";

describe("hostile services: memory bombs", () => {
  let t: TestKernel;
  const bomb = (extra: Record<string, unknown> = {}) => ({
    entry: "./hostile/memory.ts",
    bindings: { healthy: "healthy" },
    limits: { memoryMb: 32, timeoutMs: 10_000 },
    ...extra,
  });
  const cell = (memoryMb: number) => bomb({ isolation: "process", limits: { memoryMb, timeoutMs: 60_000 } });
  beforeAll(async () => {
    t = await startKernel({
      services: {
        arrays: bomb(),
        strings: bomb(),
        buffers: bomb(),
        typed: bomb(),
        recursion: bomb(),
        continuation: bomb(),
        timer: bomb(),
        wasm: bomb(),
        mapcell: cell(128),
        setcell: cell(32),
        objectcell: cell(32),
        healthy: { entry: "./probe.ts" },
      },
      restart: { maxRestarts: 20, windowMs: 60_000 },
    });
  });
  afterAll(() => t.kernel.stop());

  /** Sets off `method` of `service` under load; returns the caller's error code, the restarts it caused, and the service's next answer. */
  async function detonate(service: string, method: string) {
    const before = restarts(t, service);
    const load = await underLoad(t, async () => {
      const err = await rejection(t.kernel.call(service, method));
      const again = await eventually(() => t.kernel.call(service, "ping"), 5000);
      return { code: err.code, again };
    });
    expectHealthy(load);
    expect(load.value.again).toBe("pong");
    return { code: load.value.code, restarted: restarts(t, service) - before };
  }

  it("growing arrays: ERR_OOM, and the service restarts", async () => {
    expect(await detonate("arrays", "arrays")).toEqual({ code: "ERR_OOM", restarted: 1 });
  });

  it("string doubling: ERR_OOM, and the service restarts", async () => {
    expect(await detonate("strings", "strings")).toEqual({ code: "ERR_OOM", restarted: 1 });
  });

  it("new ArrayBuffer(1e9) and a 1.6 GB Float64Array: a RangeError in the handler, ERR_HANDLER; no restart needed", async () => {
    expect(await detonate("buffers", "hugeBuffer")).toEqual({ code: "ERR_HANDLER", restarted: 0 });
    expect(await detonate("typed", "hugeTyped")).toEqual({ code: "ERR_HANDLER", restarted: 0 });
  });

  // BUG (see the report): after "Array buffer allocation failed" in a handler,
  // the isolate can be left unable to take any message: every later call
  // fails with ERR_INTERNAL ("Array buffer allocation failed" while copying
  // the request in), and the service is never restarted. Seen whenever the
  // kernel also runs a cell, as this one does.
  it("many 1 MB ArrayBuffers held by the handler: ERR_HANDLER, then the service answers again (replaced if its buffer allocator stays exhausted)", async () => {
    const { code, restarted } = await detonate("buffers", "manyBuffers");
    expect(code).toBe("ERR_HANDLER");
    expect(restarted).toBeLessThanOrEqual(1);
  });

  it("many 1 MB typed arrays kept by the service: ERR_HANDLER, and the service answers again (restarted if what it kept leaves no room)", async () => {
    const { code } = await detonate("typed", "manyTyped");
    expect(code).toBe("ERR_HANDLER");
  });

  it("deep recursion: the stack overflow is a RangeError in the handler, ERR_HANDLER; no restart", async () => {
    expect(await detonate("recursion", "recursion")).toEqual({ code: "ERR_HANDLER", restarted: 0 });
    expect(await detonate("recursion", "recursionWithObjects")).toEqual({ code: "ERR_HANDLER", restarted: 0 });
  });

  // BUG (see the report): the same bomb as "growing arrays", after an await,
  // reaches the caller as ERR_SERVICE_CRASHED ("Promise was abandoned"), not ERR_OOM.
  it("growing arrays after an awaited ctx.call: ERR_OOM, and the service restarts", async () => {
    expect(await detonate("continuation", "arraysAfterCall")).toEqual({ code: "ERR_OOM", restarted: 1 });
  });

  // WebAssembly.Memory would not be counted against limits.memoryMb (a 32 MB
  // service could fill 256 MB of the kernel's own process), so the guest has
  // no WebAssembly at all: the handler fails on its own TypeError.
  it("WebAssembly memories past the limit (256 MB in a 32 MB service): not offered, so ERR_HANDLER and no restart", async () => {
    const before = restarts(t, "wasm");
    const load = await underLoad(t, async () => {
      const outcome = await t.kernel.call("wasm", "wasm", 256).then(
        (mib) => ({ granted: mib }),
        (err: { code: string }) => ({ code: err.code }),
      );
      const again = await eventually(() => t.kernel.call("wasm", "ping"), 5000);
      return { outcome, again };
    });
    expect(load.value.again).toBe("pong");
    expectHealthy(load);
    expect(load.value.outcome).toEqual({ code: "ERR_HANDLER" });
    expect(restarts(t, "wasm")).toBe(before);
  });

  it("growing arrays in a timer callback: no caller, so the kernel logs the death with ERR_OOM, and the service restarts", async () => {
    const before = restarts(t, "timer");
    const load = await underLoad(t, async () => {
      const armed = await t.kernel.call("timer", "arraysInTimer");
      await eventually(() => expect(restarts(t, "timer")).toBe(before + 1), 10_000);
      const again = await eventually(() => t.kernel.call("timer", "ping"), 10_000);
      return { armed, again };
    });
    expect(load.value).toEqual({ armed: "armed", again: "pong" });
    expect(t.logs.some((l) => l.msg === "instance died; restarting from its last snapshot" && l.service === "timer" && l.code === "ERR_OOM")).toBe(true);
    expectHealthy(load);
  });

  it("a Map (memoryMb 128), a Set and a plain object grown with string keys, each in a cell, all at once: ERR_SERVICE_CRASHED, and each service restarts", async () => {
    const bombs: [string, string][] = [["mapcell", "map"], ["setcell", "set"], ["objectcell", "objectKeys"]];
    const before = bombs.map(([service]) => restarts(t, service));
    const load = await underLoad(t, async () => {
      const codes = await Promise.all(bombs.map(async ([service, method]) => (await rejection(t.kernel.call(service, method))).code));
      const again = await Promise.all(bombs.map(([service]) => eventually(() => t.kernel.call(service, "ping"), 10_000)));
      return { codes, again };
    });
    expect(load.value).toEqual({ codes: ["ERR_SERVICE_CRASHED", "ERR_SERVICE_CRASHED", "ERR_SERVICE_CRASHED"], again: ["pong", "pong", "pong"] });
    expect(bombs.map(([service]) => restarts(t, service))).toEqual(before.map((n) => n + 1));
    expectHealthy(load);
  });
});

