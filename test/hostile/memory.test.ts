// Hostile services, memory: bombs against a small limits.memoryMb, beside a
// healthy service under continuous load. The bomb's caller gets a code
// (ERR_OOM when the isolate dies and is restarted, ERR_HANDLER when V8
// throws a catchable RangeError); the healthy service answers every call.
// The hash-table bombs (Map, Set, an object grown with string keys) abort V8
// itself, past any memory limit: they run in cells (isolation: "process").
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { eventually, rejection, startKernel, type TestKernel } from "../support/kernel.ts";

interface Load<T> {
  value: T;
  answered: number;
  failed: number;
  errors: string[];
}

/**
 * Runs `hostile` while a loop calls `healthy.echo` back to back; counts the
 * calls answered (with the right value) and the calls that failed.
 */
async function underLoad<T>(t: TestKernel, hostile: () => Promise<T>): Promise<Load<T>> {
  let going = true;
  let answered = 0;
  const errors: string[] = [];
  const loop = (async () => {
    for (let i = 0; (going || answered === 0) && errors.length < 100; i++) {
      try {
        const echoed = await t.kernel.call("healthy", "echo", i);
        if (echoed !== i) throw Object.assign(new Error("wrong answer"), { code: `WRONG_ANSWER ${String(echoed)} for ${i}` });
        answered++;
      } catch (err) {
        errors.push(String((err as { code?: unknown }).code ?? err));
      }
    }
  })();
  try {
    const value = await hostile();
    return { value, answered, failed: errors.length, errors };
  } finally {
    going = false;
    await loop;
  }
}

function expectHealthy(load: Load<unknown>): void {
  expect(load.errors).toEqual([]);
  expect(load.failed).toBe(0);
  expect(load.answered).toBeGreaterThan(0);
}

const restarts = (t: TestKernel, name: string): number => t.kernel.status().find((s) => s.name === name)?.restarts ?? -1;
const serviceLog = (t: TestKernel, service: string): Record<string, unknown>[] =>
  t.out.map((line) => JSON.parse(line) as Record<string, unknown>).filter((r) => r.service === service);

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
      const again = await eventually(() => t.kernel.call(service, "ping"), 10_000);
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

  it("many 1 MB ArrayBuffers held by the handler: ERR_HANDLER, and the memory is free again once the handler failed", async () => {
    expect(await detonate("buffers", "manyBuffers")).toEqual({ code: "ERR_HANDLER", restarted: 0 });
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

  it("growing arrays in a timer callback: no caller, so the service's log gets ERR_OOM, and the service restarts", async () => {
    const before = restarts(t, "timer");
    const load = await underLoad(t, async () => {
      const armed = await t.kernel.call("timer", "arraysInTimer");
      await eventually(() => expect(restarts(t, "timer")).toBe(before + 1), 10_000);
      const again = await eventually(() => t.kernel.call("timer", "ping"), 10_000);
      return { armed, again };
    });
    expect(load.value).toEqual({ armed: "armed", again: "pong" });
    const logged = t.out.map((l) => JSON.parse(l) as Record<string, unknown>).filter((r) => r.service === "timer" && r.level === "error");
    expect(logged.some((r) => String(r.message).includes("ERR_OOM"))).toBe(true);
    expect(t.logs.some((l) => l.msg === "instance died; restarting from its last snapshot" && l.service === "timer" && l.code === "ERR_OOM")).toBe(true);
    expectHealthy(load);
  });

  it("a Map grown without end, in a cell (memoryMb 128): ERR_SERVICE_CRASHED, and the service restarts", async () => {
    expect(await detonate("mapcell", "map")).toEqual({ code: "ERR_SERVICE_CRASHED", restarted: 1 });
  });

  it("a Set grown without end, in a cell: ERR_SERVICE_CRASHED, and the service restarts", async () => {
    expect(await detonate("setcell", "set")).toEqual({ code: "ERR_SERVICE_CRASHED", restarted: 1 });
  });

  it("a plain object grown with string keys, in a cell: ERR_SERVICE_CRASHED, and the service restarts", async () => {
    expect(await detonate("objectcell", "objectKeys")).toEqual({ code: "ERR_SERVICE_CRASHED", restarted: 1 });
  });
});

// BUG (see the report): the documented limit names only the Map, but a Set,
// a WeakMap and a plain object grown with string keys abort the whole Node
// process the same way, in-process, past isolated-vm's memoryLimit. Each is
// run in a child process of its own, so the abort cannot take this test
// process down; the test shows whether the kernel's process survived.
describe("hash-table bombs in the kernel's own process (the known limit, beyond the Map)", () => {
  const kernelModule = fileURLToPath(new URL("../support/kernel.ts", import.meta.url));
  const runInChild = (method: string) => {
    const script = `
      import { startKernel } from ${JSON.stringify(kernelModule)};
      const t = await startKernel({ services: { bomb: { entry: "./hostile/memory.ts", limits: { memoryMb: 32, timeoutMs: 20000 } } } });
      const code = await t.kernel.call("bomb", ${JSON.stringify(method)}).then(() => "answered", (e) => e.code);
      console.log("RESULT " + code);
      await t.kernel.stop();`;
    const child = spawnSync(process.execPath, ["--no-node-snapshot", "--import", "tsx", "--input-type=module", "-e", script], {
      cwd: fileURLToPath(new URL("../..", import.meta.url)),
      encoding: "utf8",
      timeout: 60_000,
    });
    const result = /RESULT (\S+)/.exec(child.stdout)?.[1] ?? null;
    return { method, status: child.status, signal: child.signal, result };
  };

  it.each(["set", "objectKeys", "weakMap"])("%s: the kernel's process survives and the caller gets ERR_OOM", (method) => {
    expect(runInChild(method)).toEqual({ method, status: 0, signal: null, result: "ERR_OOM" });
  });
});
