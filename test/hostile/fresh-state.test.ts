// Hostile services, state that cannot be handed over (issue 12, item 13). A
// service whose dump always throws, or that poisons its own
// Object.prototype.then, must not fail another service's snapshot, and an
// operator must still be able to replace it: `swap --fresh-state` starts the
// new version from its init, dumps nothing of the old instance, and says in
// the report and the inventory that the state was dropped.
//
// These tests hold whether or not the guest runtime survives a poisoned
// `then`: what must fail is asserted on a service whose `dump` throws.
import { existsSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Packr } from "msgpackr";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SnapshotStore } from "../../core/snapshots.ts";
import { expectHealthy, underLoad } from "../support/hostile.ts";
import { rejection, startKernel, type TestKernel } from "../support/kernel.ts";

/** The state in a service's snapshot on disk, with the version it was written for. */
function snapshotOf(dataDir: string, service: string): { version: string; state: unknown } | undefined {
  const snapshot = new SnapshotStore(dataDir).read(service);
  if (snapshot === undefined) return undefined;
  const [, , state] = new Packr({ structuredClone: true }).unpack(snapshot.dump) as [number, number, unknown];
  return { version: snapshot.version, state };
}

describe("hostile services: a service that cannot dump its state", () => {
  let t: TestKernel;
  const fixture = (name: string): string => `${t.kernel.config.dir}/hostile/${name}.ts`;
  beforeAll(async () => {
    t = await startKernel({
      services: {
        poisoned: { entry: "./hostile/fresh-poison-then.ts", limits: { timeoutMs: 1000 } },
        nodump: { entry: "./hostile/dump-throws.ts", limits: { timeoutMs: 1000 } },
        // A second one, for the rollback after a fresh-state swap.
        nodump2: { entry: "./hostile/dump-throws.ts", limits: { timeoutMs: 1000 } },
        stopthrows: { entry: "./hostile/stop-throws.ts", limits: { timeoutMs: 1000 } },
        stophangs: { entry: "./hostile/stop-hangs.ts", limits: { timeoutMs: 1000 } },
        clean: { entry: "./hostile/clean.ts" },
        schema: { entry: "./hostile/clean.ts" },
        initfails: { entry: "./hostile/clean.ts" },
        healthy: { entry: "./probe.ts" },
      },
    });
    for (const name of ["nodump", "nodump2", "stopthrows", "stophangs", "clean", "schema", "initfails"]) await t.kernel.call(name, "incr", 5);
    // With today's guest runtime this breaks the service's dump; with a guest that holds up, it does not. Either way is fine here.
    await t.kernel.call("poisoned", "poison", "reject").catch(() => undefined);
  });
  afterAll(() => t.kernel.stop());

  it("kernel.snapshot() writes every service that can dump and reports each one that cannot on its own entry", async () => {
    const results = await t.kernel.snapshot();
    const byService = new Map(results.map((r) => [r.service, r]));
    expect([...byService.keys()].sort()).toEqual(Object.keys(t.kernel.config.services).sort());
    expect(byService.get("nodump")).toMatchObject({ service: "nodump", error: { code: "ERR_DUMP_FAILED" } });
    expect(byService.get("nodump2")).toMatchObject({ error: { code: "ERR_DUMP_FAILED" } });
    for (const name of ["clean", "healthy", "stopthrows"]) {
      const written = byService.get(name);
      expect(written).toMatchObject({ service: name, version: t.kernel.running(name) });
      expect(written !== undefined && "bytes" in written && written.bytes > 0).toBe(true);
      expect(existsSync(join(t.kernel.config.dataDir, "snapshots", `${name}.msgpack`))).toBe(true);
    }
    expect(snapshotOf(t.kernel.config.dataDir, "clean")?.state).toMatchObject({ count: 5 });
    // One service asked for alone still fails with its own code.
    expect((await rejection(t.kernel.snapshot("nodump"))).code).toBe("ERR_DUMP_FAILED");
  });

  it("a normal swap of a service whose dump throws still rolls back with ERR_SWAP_DUMP, before anything pauses, state kept", async () => {
    const report = await t.kernel.swap("nodump", fixture("clean-v2"));
    expect(report).toMatchObject({ outcome: "rolled-back", blackoutMs: null, error: { code: "ERR_SWAP_DUMP", phase: "prepare" } });
    expect(report.freshState).toBeUndefined();
    expect(await t.kernel.call("nodump", "get")).toBe(5);
  });

  it("swap --fresh-state replaces a service whose dump throws: the new version starts from init, the report and the inventory say the state was dropped", async () => {
    const old = t.kernel.running("nodump");
    const load = await underLoad(t, () => t.kernel.swap("nodump", fixture("clean-v2"), { freshState: true }));
    expectHealthy(load);
    const report = load.value;
    expect(report).toMatchObject({ outcome: "committed", freshState: true, from: { version: old }, to: { semver: "2.0.0" } });
    expect(report.error).toBeUndefined();
    // Nothing of the old instance was dumped: no dump phase.
    expect(Object.keys(report.phases)).toEqual(["prepare", "quiesce", "restore", "cutover", "commit"]);
    expect(typeof report.blackoutMs).toBe("number");
    expect(await t.kernel.call("nodump", "which")).toBe("2.0.0");
    expect(await t.kernel.call("nodump", "get")).toBe(0);
    expect(await t.kernel.call("nodump", "starts")).toBe(1);
    expect(t.kernel.history("nodump").at(-1)).toMatchObject({
      via: "swap",
      outcome: "live",
      parent: old,
      semver: "2.0.0",
      freshState: true,
      replacedAt: null,
    });
    // The snapshot is the new version's fresh state: a crash now must not bring the old state back.
    expect(snapshotOf(t.kernel.config.dataDir, "nodump")).toEqual({
      version: t.kernel.running("nodump"),
      state: expect.objectContaining({ count: 0 }),
    });
  });

  it("swap --fresh-state replaces a service that poisoned its Object.prototype.then, while its neighbour answers every call", async () => {
    const load = await underLoad(t, () => t.kernel.swap("poisoned", fixture("clean-v2"), { freshState: true }));
    expectHealthy(load);
    expect(load.value).toMatchObject({ outcome: "committed", freshState: true });
    expect(await t.kernel.call("poisoned", "which")).toBe("2.0.0");
    expect(await t.kernel.call("poisoned", "incr", 2)).toBe(2);
    // The new instance is a new isolate: the poison did not come along, and it dumps again.
    expect(await t.kernel.snapshot("poisoned")).toEqual([expect.objectContaining({ service: "poisoned", stateVersion: 1 })]);
  });

  it("a rollback after a fresh-state swap goes back to the old code with the new version's state", async () => {
    const old = t.kernel.running("nodump2");
    expect((await t.kernel.swap("nodump2", fixture("clean-v2"), { freshState: true })).outcome).toBe("committed");
    await t.kernel.call("nodump2", "incr", 2);
    const back = await t.kernel.rollback("nodump2");
    expect(back).toMatchObject({ outcome: "committed", via: "rollback", to: { version: old } });
    expect(back.freshState).toBeUndefined();
    expect(await t.kernel.call("nodump2", "which")).toBe("1.0.0-dump-throws");
    expect(await t.kernel.call("nodump2", "get")).toBe(2);
  });

  it("swap --fresh-state takes a version whose state schema cannot restore the old one, which a normal swap refuses", async () => {
    const refused = await t.kernel.swap("schema", fixture("fresh-v3"));
    expect(refused).toMatchObject({ outcome: "rolled-back", error: { code: "ERR_STATE_VERSION" } });
    const fresh = await t.kernel.swap("schema", fixture("fresh-v3"), { freshState: true });
    expect(fresh).toMatchObject({ outcome: "committed", freshState: true, to: { semver: "3.0.0", stateVersion: 3 } });
    expect(await t.kernel.call("schema", "get")).toBe(0);
  });

  it("a fresh-state swap whose new init throws rolls back in prepare with ERR_SWAP_INIT: nothing paused, the old instance never stopped", async () => {
    const version = t.kernel.running("initfails");
    const report = await t.kernel.swap("initfails", fixture("init-throws"), { freshState: true });
    expect(report).toMatchObject({ outcome: "rolled-back", freshState: true, blackoutMs: null, error: { code: "ERR_SWAP_INIT", phase: "prepare" } });
    expect(t.kernel.history("initfails").at(-1)).toMatchObject({ outcome: "rolled-back", code: "ERR_SWAP_INIT", freshState: true });
    expect(t.kernel.running("initfails")).toBe(version);
    expect(await t.kernel.call("initfails", "get")).toBe(5);
    expect(await t.kernel.call("initfails", "stops")).toBe(0);
  });

  it.each([
    ["stopthrows", "ERR_STOP_FAILED"],
    ["stophangs", "ERR_TIMEOUT"],
  ])("a fresh-state swap of %s passes over the old stop that fails (%s): recorded, and the swap goes on", async (service, code) => {
    const load = await underLoad(t, () => t.kernel.swap(service, fixture("clean-v2"), { freshState: true }));
    expectHealthy(load);
    expect(load.value).toMatchObject({ outcome: "committed", freshState: true, stopError: { code } });
    expect(t.kernel.history(service).at(-1)).toMatchObject({ outcome: "live", freshState: true, code });
    expect(await t.kernel.call(service, "which")).toBe("2.0.0");
    expect(await t.kernel.call(service, "get")).toBe(0);
  });

  it("a fresh-state swap to the version already running resets its state rather than doing nothing", async () => {
    const version = t.kernel.running("clean");
    const report = await t.kernel.swap("clean", fixture("clean"), { freshState: true });
    expect(report).toMatchObject({ outcome: "committed", freshState: true, from: { version }, to: { version } });
    expect(await t.kernel.call("clean", "get")).toBe(0);
    expect(t.kernel.history("clean").at(-1)).toMatchObject({ version, parent: version, freshState: true, outcome: "live" });
  });
});

describe("hostile services: the graceful stop's snapshots", () => {
  it("a service that cannot dump does not keep any other service's final snapshot from being written", async () => {
    const dataDir = mkdtempSync(join(tmpdir(), "molt-data-"));
    const t = await startKernel({
      services: {
        poisoned: { entry: "./hostile/fresh-poison-then.ts", limits: { timeoutMs: 300 } },
        nodump: { entry: "./hostile/dump-throws.ts", limits: { timeoutMs: 300 } },
        clean: { entry: "./hostile/clean.ts" },
        healthy: { entry: "./probe.ts" },
      },
      dataDir,
    });
    await t.kernel.call("poisoned", "poison", "reject").catch(() => undefined);
    await t.kernel.call("clean", "incr", 7);
    await t.kernel.stop();
    expect(t.logs.filter((l) => l.msg === "stop or final snapshot failed").map((l) => l.service)).toContain("nodump");
    expect(snapshotOf(dataDir, "clean")?.state).toMatchObject({ count: 7 });
    expect(existsSync(join(dataDir, "snapshots", "healthy.msgpack"))).toBe(true);
  });
});
