import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { rejection, startKernel, type TestKernel } from "../support/kernel.ts";

const v = (name: string) => `./swap/${name}.ts`;

describe("swap", () => {
  let t: TestKernel;
  beforeAll(async () => {
    t = await startKernel({
      services: {
        counter: { entry: v("counter-v1"), bindings: { slow: "slow" }, limits: { timeoutMs: 1000, memoryMb: 32 } },
        slow: { entry: "./probe.ts" },
        rich: { entry: v("rich-state") },
      },
      swap: { drainTimeoutMs: 2000 },
    });
  });
  afterAll(() => t.kernel.stop());

  it("moves state to the new version through a migration and back, and reports every phase and the blackout", async () => {
    await t.kernel.call("counter", "incr", 5);
    const up = await t.kernel.swap("counter", t.kernel.config.dir + "/" + v("counter-v2"));
    expect(up.outcome).toBe("committed");
    expect(up.from).toMatchObject({ semver: "1.0.0", stateVersion: 1 });
    expect(up.to).toMatchObject({ semver: "2.0.0", stateVersion: 2 });
    expect(Object.keys(up.phases)).toEqual(["prepare", "quiesce", "dump", "restore", "cutover", "commit"]);
    expect(typeof up.blackoutMs).toBe("number");
    console.log(`blackout v1→v2: ${up.blackoutMs} ms`, up.phases);
    expect(await t.kernel.call("counter", "which")).toBe("v2");
    expect(await t.kernel.call("counter", "get")).toBe(5);
    const down = await t.kernel.swap("counter", t.kernel.config.dir + "/" + v("counter-v1"));
    expect(down.outcome).toBe("committed");
    expect(await t.kernel.call("counter", "which")).toBe("v1");
    expect(await t.kernel.call("counter", "get")).toBe(5);
  });

  it("says so and changes nothing when asked to swap to the version already running", async () => {
    const before = t.kernel.inventory.history("counter").length;
    const same = await t.kernel.swap("counter", t.kernel.config.dir + "/" + v("counter-v1"));
    expect(same.outcome).toBe("unchanged");
    expect(same.blackoutMs).toBeNull();
    expect(t.kernel.inventory.history("counter")).toHaveLength(before);
  });

  it("keeps Maps, Sets, Dates and binary data through a swap", async () => {
    await t.kernel.call("rich", "add", "b");
    const report = await t.kernel.swap("rich", t.kernel.config.dir + "/" + v("rich-state-v2"));
    expect(report.outcome).toBe("committed");
    expect(await t.kernel.call("rich", "describe")).toEqual({ map: [["a", 1], ["b", 2]], set: ["x", "b"], when: 1000, bytes: [1, 2, 3] });
  });

  it.each([
    ["restore-throws", "ERR_SWAP_RESTORE"],
    ["restore-hangs", "ERR_SWAP_TIMEOUT"],
    ["restore-spins", "ERR_SWAP_TIMEOUT"],
    ["restore-oom", "ERR_SWAP_OOM"],
    ["syntax-error", "ERR_SWAP_COMPILE"],
    ["only-v3-state", "ERR_STATE_VERSION"],
  ])("rolls back a new version that fails (%s) with %s, keeping version and state", async (fixture, code) => {
    const before = t.kernel.status().find((s) => s.name === "counter");
    const count = await t.kernel.call("counter", "get");
    let report;
    try {
      report = await t.kernel.swap("counter", t.kernel.config.dir + "/" + v(fixture));
    } catch (err) {
      // A bundle that does not compile is refused before the swap begins.
      expect((err as { code: string }).code).toBe(code);
      return;
    }
    expect(report.outcome).toBe("rolled-back");
    expect(report.error?.code).toBe(code);
    const after = t.kernel.status().find((s) => s.name === "counter");
    expect(after?.version).toBe(before?.version);
    expect(await t.kernel.call("counter", "get")).toBe(count);
    expect(await t.kernel.call("counter", "which")).toBe("v1");
    const last = t.kernel.inventory.history("counter").at(-1);
    expect(last).toMatchObject({ outcome: "rolled-back", code, startedAt: null });
  });

  it("refuses a second swap of the same service while one is in progress", async () => {
    const first = t.kernel.swap("counter", t.kernel.config.dir + "/" + v("counter-v2"));
    const second = await rejection(t.kernel.swap("counter", t.kernel.config.dir + "/" + v("counter-v3")));
    expect(second.code).toBe("ERR_SWAP_BUSY");
    expect((await first).outcome).toBe("committed");
  });

  it("completes a call the old instance is awaiting before the dump, and its caller gets the answer", async () => {
    const before = (await t.kernel.call("counter", "get")) as number;
    const pending = t.kernel.call("counter", "relayIncr", 200);
    await new Promise((r) => setTimeout(r, 30));
    const report = await t.kernel.swap("counter", t.kernel.config.dir + "/" + v("counter-v3"));
    expect(report.outcome).toBe("committed");
    expect(await pending).toBe(before + 1);
    expect(await t.kernel.call("counter", "get")).toBe(before + 1);
    expect(await t.kernel.call("counter", "which")).toBe("v3");
  });

  it("queues messages during a swap and delivers them to the new version", async () => {
    const before = (await t.kernel.call("counter", "get")) as number;
    const swapping = t.kernel.swap("counter", t.kernel.config.dir + "/" + v("counter-v2"));
    const calls = Array.from({ length: 50 }, () => t.kernel.call("counter", "incr", 1));
    const [report, ...results] = await Promise.all([swapping, ...calls]);
    expect(report.outcome).toBe("committed");
    expect(results).toHaveLength(50);
    expect(await t.kernel.call("counter", "get")).toBe(before + 50);
  });

  it("rolls back to the previous version and to a named one, migrating the state down", async () => {
    const count = await t.kernel.call("counter", "get");
    const back = await t.kernel.rollback("counter");
    expect(back.outcome).toBe("committed");
    expect(back.via).toBe("rollback");
    expect(await t.kernel.call("counter", "which")).toBe("v3");
    const v1 = t.kernel.inventory.history("counter").find((r) => r.semver === "1.0.0");
    const named = await t.kernel.rollback("counter", v1?.version.slice(0, 12));
    expect(named.outcome).toBe("committed");
    expect(await t.kernel.call("counter", "which")).toBe("v1");
    expect(await t.kernel.call("counter", "get")).toBe(count);
    expect((await rejection(t.kernel.rollback("counter", "ffffffff"))).code).toBe("ERR_NO_VERSION");
  });

  it("records every version with its parent, stateVersion, hash and outcome", () => {
    const history = t.kernel.inventory.history("counter");
    expect(history[0]).toMatchObject({ via: "start", parent: null, semver: "1.0.0", stateVersion: 1, outcome: "live" });
    for (let i = 1; i < history.length; i++) {
      const r = history[i];
      expect(r?.version).toMatch(/^[0-9a-f]{64}$/);
      expect(r?.parent).toMatch(/^[0-9a-f]{64}$/);
      expect(["live", "rolled-back"]).toContain(r?.outcome);
    }
    const live = history.filter((r) => r.outcome === "live" && r.replacedAt === null);
    expect(live).toHaveLength(1);
  });
});

describe("failures of the running version", () => {
  let t: TestKernel;
  beforeAll(async () => {
    t = await startKernel({
      services: {
        counter: { entry: v("counter-v1"), bindings: { slow: "slow" } },
        nodump: { entry: v("dump-throws"), bindings: { slow: "slow" } },
        slow: { entry: "./probe.ts" },
      },
      swap: { drainTimeoutMs: 150 },
    });
  });
  afterAll(() => t.kernel.stop());

  it("rolls back with ERR_SWAP_DRAIN_TIMEOUT when in-flight work outlasts the drain deadline, and that work completes", async () => {
    await t.kernel.call("counter", "incr", 2);
    const slow = t.kernel.call("counter", "slowIncr", 600);
    await new Promise((r) => setTimeout(r, 20));
    const report = await t.kernel.swap("counter", t.kernel.config.dir + "/" + v("counter-v2"));
    expect(report.outcome).toBe("rolled-back");
    expect(report.error).toMatchObject({ code: "ERR_SWAP_DRAIN_TIMEOUT", phase: "quiesce" });
    expect(await slow).toBe(3);
    expect(await t.kernel.call("counter", "which")).toBe("v1");
    // The old instance never stopped, so its start did not run again.
    expect(await t.kernel.call("counter", "started")).toBe(1);
  });

  it("refuses with ERR_SWAP_DUMP when the running version cannot dump, found by the rehearsal before anything pauses", async () => {
    await t.kernel.call("nodump", "incr", 4);
    const report = await t.kernel.swap("nodump", t.kernel.config.dir + "/" + v("counter-v2"));
    expect(report.outcome).toBe("rolled-back");
    expect(report.error).toMatchObject({ code: "ERR_SWAP_DUMP", phase: "prepare" });
    expect(report.blackoutMs).toBeNull();
    expect(await t.kernel.call("nodump", "get")).toBe(4);
    // It was never stopped.
    expect(await t.kernel.call("nodump", "started")).toBe(1);
  });
});

describe("probation", () => {
  let t: TestKernel;
  beforeAll(async () => {
    t = await startKernel({
      services: { counter: { entry: v("counter-v2"), bindings: { slow: "slow" } }, slow: { entry: "./probe.ts" } },
      swap: { probationMs: 400, probationMaxErrors: 2 },
    });
  });
  afterAll(() => t.kernel.stop());

  it("rolls a new version back with the state it reached when its handlers fail during probation", async () => {
    await t.kernel.call("counter", "incr", 3);
    const swapping = t.kernel.swap("counter", t.kernel.config.dir + "/" + v("probation-fails"));
    // Wait for the cutover, then make calls fail.
    const semver = () => t.kernel.status().find((st) => st.name === "counter")?.semver;
    for (let i = 0; i < 200 && semver() !== "9.0.0-faulty"; i++) await new Promise((r) => setTimeout(r, 5));
    expect(semver()).toBe("9.0.0-faulty");
    for (let i = 0; i < 3; i++) await t.kernel.call("counter", "incr", 1).catch(() => undefined);
    const report = await swapping;
    expect(report.outcome).toBe("rolled-back");
    expect(report.error?.code).toBe("ERR_SWAP_PROBATION");
    expect(await t.kernel.call("counter", "which")).toBe("v2");
    expect(await t.kernel.call("counter", "get")).toBe(3);
    const history = t.kernel.inventory.history("counter");
    expect(history.at(-2)).toMatchObject({ outcome: "probation-failed", code: "ERR_SWAP_PROBATION" });
    expect(history.at(-2)?.replacedAt).not.toBeNull();
    expect(history.at(-1)).toMatchObject({ via: "rollback", outcome: "live", semver: "2.0.0" });
  });

  it("does not offer the failed version as the one to roll back to", async () => {
    const err = await rejection(t.kernel.rollback("counter"));
    expect(err.code).toBe("ERR_NO_VERSION");
    expect(err.service).toBe("counter");
  });

  it("commits a healthy version once probation passes, keeping a snapshot taken during probation", async () => {
    const before = (await t.kernel.call("counter", "get")) as number;
    const swapping = t.kernel.swap("counter", t.kernel.config.dir + "/" + v("counter-v3"));
    const semver = () => t.kernel.status().find((st) => st.name === "counter")?.semver;
    for (let i = 0; i < 200 && semver() !== "3.0.0"; i++) await new Promise((r) => setTimeout(r, 5));
    await t.kernel.call("counter", "incr", 5);
    await t.kernel.snapshot("counter");
    const report = await swapping;
    expect(report.outcome).toBe("committed");
    expect(await t.kernel.call("counter", "which")).toBe("v3");
    // The swap's own snapshot (taken at cutover) must not land over the newer one.
    const { SnapshotStore } = await import("../../core/snapshots.ts");
    const { Packr } = await import("msgpackr");
    const snap = new SnapshotStore(t.kernel.config.dataDir).read("counter");
    const [, , state] = new Packr({ structuredClone: true }).unpack(snap?.dump as Uint8Array) as [number, number, { value: { count: number } }];
    expect(state.value.count).toBe(before + 5);
    expect((await t.kernel.rollback("counter")).outcome).toBe("committed");
    expect(await t.kernel.call("counter", "which")).toBe("v2");
  });
});

describe("the blackout budget", () => {
  let t: TestKernel;
  beforeAll(async () => {
    t = await startKernel({
      services: {
        counter: { entry: v("counter-v1"), bindings: { slow: "slow" } },
        slow: { entry: "./probe.ts", bindings: { counter: "counter" }, limits: { timeoutMs: 1500 } },
      },
      swap: { blackoutTimeoutMs: 300 },
    });
  });
  afterAll(() => t.kernel.stop());

  it("rolls back a swap whose new start hangs within the budget, so a caller queued behind it is answered, not timed out", async () => {
    await t.kernel.call("counter", "incr", 2);
    const swapping = t.kernel.swap("counter", `${t.kernel.config.dir}/behaviour-swap/start-hangs.ts`);
    // Wait for the blackout, then call through a binding whose caller has a 1500 ms deadline.
    const paused = () => t.kernel.status().find((s) => s.name === "counter")?.paused === true;
    for (let i = 0; i < 400 && !paused(); i++) await new Promise((r) => setTimeout(r, 2));
    expect(paused()).toBe(true);
    const queued = t.kernel.call("slow", "call", { binding: "counter", method: "incr", payload: 1 });
    const report = await swapping;
    expect(report.outcome).toBe("rolled-back");
    expect(report.error?.code).toBe("ERR_SWAP_TIMEOUT");
    expect(await queued).toBe(3);
    console.log(`blackout of a swap that hit its 300 ms budget: ${report.blackoutMs} ms`);
  });
});

describe("persistence", () => {
  it("restarts every service at its last committed version and state, with the inventory intact", async () => {
    const config = {
      services: { counter: { entry: v("counter-v1"), bindings: { slow: "slow" } }, slow: { entry: "./probe.ts" } },
    };
    const first = await startKernel(config);
    const dataDir = first.kernel.config.dataDir;
    await first.kernel.call("counter", "incr", 7);
    await first.kernel.swap("counter", first.kernel.config.dir + "/" + v("counter-v2"));
    await first.kernel.call("counter", "incr", 1);
    const history = first.kernel.inventory.history("counter").map((r) => r.version);
    await first.kernel.stop();

    const second = await startKernel({ ...config, dataDir });
    try {
      expect(await second.kernel.call("counter", "which")).toBe("v2");
      expect(await second.kernel.call("counter", "get")).toBe(8);
      expect(second.kernel.inventory.history("counter").map((r) => r.version)).toEqual(history);
    } finally {
      await second.kernel.stop();
    }
  });
});
