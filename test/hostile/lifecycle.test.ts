// Hostile services, lifecycle hooks: init, start, stop, dump and restore
// that throw or hang (or spin, or run out of memory). At boot the runtime
// refuses to start, with a code. In a swap the service rolls back, exactly
// as it was, with the swap's stable code, while a healthy service beside it
// (and the swapped service itself) answers every call under continuous load.
// A stop hook that fails does not keep the other services from stopping.
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { eventually, rejection, startKernel, type TestKernel } from "../support/kernel.ts";
import { underLoad, expectHealthy, restarts } from "../support/hostile.ts";

/** The cells (child processes running core/cell-main.ts) this test process has now. */
const cells = (): string[] =>
  execFileSync("ps", ["-o", "pid=,args=", "--ppid", String(process.pid)], { encoding: "utf8" })
    .split("\n")
    .filter((line) => line.includes("cell-main"));

describe("hostile services: a lifecycle hook that fails at boot", () => {
  it.each([
    ["init-throws", "ERR_INIT_FAILED"],
    ["init-hangs", "ERR_TIMEOUT"],
    ["init-spins", "ERR_TIMEOUT"],
    ["start-throws", "ERR_START_FAILED"],
    ["start-hangs", "ERR_TIMEOUT"],
  ])("%s: the runtime refuses to start with %s, naming the service", async (fixture, code) => {
    const err = await rejection(
      startKernel({
        services: {
          healthy: { entry: "./probe.ts" },
          bad: { entry: `./hostile/${fixture}.ts`, limits: { timeoutMs: 300 } },
        },
      }),
    );
    expect({ code: err.code, service: err.service }).toEqual({ code, service: "bad" });
  });

  it("leaves no cell behind when a service beside a celled one fails its init", async () => {
    const before = cells().length;
    const err = await rejection(
      startKernel({
        services: {
          celled: { entry: "./probe.ts", isolation: "process" },
          bad: { entry: "./hostile/init-throws.ts" },
        },
      }),
    );
    expect(err.code).toBe("ERR_INIT_FAILED");
    await eventually(() => expect(cells()).toHaveLength(before), 5000);
  });
});

describe("hostile services: lifecycle hooks that fail during a swap", () => {
  let t: TestKernel;
  const FROM = [
    "stop-throws",
    "stop-hangs",
    "stop-spins",
    "dump-throws",
    "dump-hangs",
    "dump-hangs-gc",
    "dump-throws-late",
    "dump-hangs-late",
    "dump-unencodable",
    "dump-oom",
  ];
  const TO = ["restore-throws", "restore-hangs", "restore-spins", "restore-throws-late", "restore-hangs-late", "start-throws", "start-hangs"];
  const fixture = (name: string) => `${t.kernel.config.dir}/hostile/${name}.ts`;
  beforeAll(async () => {
    const services: Record<string, unknown> = { healthy: { entry: "./probe.ts" } };
    // A deadline short enough to keep hangs quick, long enough for the calls beside them on a busy machine.
    for (const name of FROM) services[name] = { entry: `./hostile/${name}.ts`, limits: { timeoutMs: 1000 } };
    // Time enough to run out of memory before the deadline.
    services["dump-oom"] = { entry: "./hostile/dump-oom.ts", limits: { timeoutMs: 10_000, memoryMb: 32 } };
    for (const name of TO) services[`to-${name}`] = { entry: "./hostile/clean.ts", limits: { timeoutMs: 1000 } };
    t = await startKernel({ services: services as never, swap: { blackoutTimeoutMs: 600 } });
    for (const name of [...FROM, ...TO.map((n) => `to-${n}`)]) await t.kernel.call(name, "incr", 5);
  });
  afterAll(() => t.kernel.stop());

  /** Swaps `service` to `target` under load; the swapped service must answer every call too, with its count. */
  async function failedSwap(service: string, target: string, { besideToo = true } = {}) {
    const version = t.kernel.status().find((s) => s.name === service)?.version;
    const load = await underLoad(t, () => t.kernel.swap(service, fixture(target)), besideToo ? { service, value: 5 } : undefined);
    expectHealthy(load);
    const report = load.value;
    expect(report.outcome).toBe("rolled-back");
    const last = t.kernel.history(service).at(-1);
    expect(last).toMatchObject({ outcome: "rolled-back", code: report.error?.code });
    return {
      code: report.error?.code,
      inPrepare: report.error?.phase === "prepare",
      paused: report.blackoutMs !== null,
      sameVersion: t.kernel.status().find((s) => s.name === service)?.version === version,
    };
  }

  // [running version, swap target, code, failed in prepare (before the blackout), starts of the old instance after the rollback]
  it.each([
    ["stop-throws", "clean-v2", "ERR_SWAP_STOP", false, 2],
    ["stop-hangs", "clean-v2", "ERR_SWAP_TIMEOUT", false, 2],
    ["stop-spins", "clean-v2", "ERR_SWAP_TIMEOUT", false, 2],
    ["dump-throws", "clean-v2", "ERR_SWAP_DUMP", true, 1],
    ["dump-hangs", "clean-v2", "ERR_SWAP_TIMEOUT", true, 1],
    // BUG (see the report): once a GC has collected the dump's never-settling
    // promise, isolated-vm says "Promise was abandoned", and the swap reports
    // ERR_SWAP_COMPILE (the code of a prepare failure with no better name).
    ["dump-hangs-gc", "clean-v2", "ERR_SWAP_TIMEOUT", true, 1],
    ["dump-throws-late", "clean-v2", "ERR_SWAP_DUMP", false, 2],
    ["dump-hangs-late", "clean-v2", "ERR_SWAP_TIMEOUT", false, 2],
    // BUG (see the report): a dump that cannot be encoded is reported as ERR_SWAP_COMPILE.
    ["dump-unencodable", "clean-v2", "ERR_SWAP_DUMP", true, 1],
    ["to-restore-throws", "restore-throws", "ERR_SWAP_RESTORE", true, 1],
    ["to-restore-hangs", "restore-hangs", "ERR_SWAP_TIMEOUT", true, 1],
    ["to-restore-spins", "restore-spins", "ERR_SWAP_TIMEOUT", true, 1],
    ["to-restore-throws-late", "restore-throws-late", "ERR_SWAP_RESTORE", false, 2],
    ["to-restore-hangs-late", "restore-hangs-late", "ERR_SWAP_TIMEOUT", false, 2],
    ["to-start-throws", "start-throws", "ERR_SWAP_RESTORE", false, 2],
    ["to-start-hangs", "start-hangs", "ERR_SWAP_TIMEOUT", false, 2],
  ])("%s → %s: rolled back with %s (in prepare: %s), version and state kept", async (service, target, code, inPrepare, starts) => {
    expect(await failedSwap(service, target)).toEqual({ code, inPrepare, paused: !inPrepare, sameVersion: true });
    expect(await t.kernel.call(service, "get")).toBe(5);
    // A rollback from inside the blackout starts the old instance again; one found in prepare never stopped it.
    expect(await t.kernel.call(service, "starts")).toBe(starts);
  });

  it("dump-oom → clean-v2: a dump that runs out of memory in the rehearsal is ERR_SWAP_OOM; the service restarts and answers", async () => {
    const before = restarts(t, "dump-oom");
    const result = await failedSwap("dump-oom", "clean-v2", { besideToo: false });
    expect(result).toMatchObject({ code: "ERR_SWAP_OOM", inPrepare: true, paused: false });
    expect(await eventually(() => t.kernel.call("dump-oom", "ping"))).toBe("pong");
    expect(restarts(t, "dump-oom")).toBe(before + 1);
  });

  it("after failed swaps, a healthy version still swaps in, state and all", async () => {
    const load = await underLoad(t, async () => [
      await t.kernel.swap("to-restore-throws-late", fixture("clean-v2")),
      await t.kernel.swap("to-start-hangs", fixture("clean-v2")),
    ]);
    expect(load.value.map((r) => r.outcome)).toEqual(["committed", "committed"]);
    for (const service of ["to-restore-throws-late", "to-start-hangs"]) {
      expect(await t.kernel.call(service, "which")).toBe("2.0.0");
      expect(await t.kernel.call(service, "get")).toBe(5);
    }
    expectHealthy(load);
  });
});

describe("hostile services: stop hooks that fail when the runtime stops", () => {
  it("a stop hook that throws, hangs or spins, or a dump that throws, does not keep the services after it from stopping and snapshotting", async () => {
    const dataDir = mkdtempSync(join(tmpdir(), "molt-data-"));
    const hostile = ["stop-throws", "stop-hangs", "stop-spins", "dump-throws"];
    const services: Record<string, unknown> = {};
    // The hostile services come first in the config, so they stop first.
    for (const name of hostile) services[name] = { entry: `./hostile/${name}.ts`, limits: { timeoutMs: 300 } };
    services.clean1 = { entry: "./hostile/clean.ts" };
    services.clean2 = { entry: "./hostile/clean.ts" };
    services.healthy = { entry: "./probe.ts" };
    const t = await startKernel({ services: services as never, dataDir });
    for (const name of ["clean1", "clean2"]) await t.kernel.call(name, "incr", 3);

    // No load here: every service, the healthy one too, stops.
    await t.kernel.stop();

    const failures = t.logs.filter((l) => l.msg === "stop or final snapshot failed").map((l) => [l.service, l.code]);
    expect(failures).toEqual([
      ["stop-throws", "ERR_STOP_FAILED"],
      ["stop-hangs", "ERR_TIMEOUT"],
      ["stop-spins", "ERR_TIMEOUT"],
      ["dump-throws", "ERR_DUMP_FAILED"],
    ]);
    const stopped = t.out.map((line) => JSON.parse(line) as { message?: string }).map((r) => r.message);
    expect(stopped).toEqual(expect.arrayContaining(["clean1 stopped", "clean2 stopped"]));
    for (const name of ["clean1", "clean2", "healthy"]) expect(existsSync(join(dataDir, "snapshots", `${name}.msgpack`))).toBe(true);
    expect((await rejection(t.kernel.call("clean1", "get"))).code).toBe("ERR_STOPPING");
  });
});
