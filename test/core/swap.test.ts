import { Packr } from "msgpackr";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { SnapshotStore } from "../../core/snapshots.ts";
import type { MoltConfig } from "../../sdk/config.ts";
import { kernelPerTest, rejection, startKernel, type TestKernel } from "../support/kernel.ts";

const v = (name: string): string => `./swap/${name}.ts`;
const entry = (t: TestKernel, name: string): string => `${t.kernel.config.dir}/${v(name)}`;
const semver = (t: TestKernel, service: string): string | null | undefined => t.kernel.status().find((s) => s.name === service)?.semver;

/** counter-v1 in front of a latch it relays through (`relayIncr`), so that a test can hold a call in flight. */
const COUNTER: MoltConfig = {
  services: {
    counter: { entry: v("counter-v1"), bindings: { slow: "slow" }, limits: { timeoutMs: 1000, memoryMb: 32 } },
    slow: { entry: "./latch.ts" },
    rich: { entry: v("rich-state") },
  },
  swap: { drainTimeoutMs: 2000 },
};

describe("swap", () => {
  const kernel = kernelPerTest(COUNTER);

  it("moves state to the new version through a migration and back, and reports every phase and the blackout", async () => {
    const t = kernel();
    await t.kernel.call("counter", "incr", 5);
    const up = await t.kernel.swap("counter", entry(t, "counter-v2"));
    expect(up.outcome).toBe("committed");
    expect(up.from).toMatchObject({ semver: "1.0.0", stateVersion: 1 });
    expect(up.to).toMatchObject({ semver: "2.0.0", stateVersion: 2 });
    expect(Object.keys(up.phases)).toEqual(["prepare", "quiesce", "dump", "restore", "cutover", "commit"]);
    expect(up.blackoutMs).toEqual(expect.any(Number));
    expect(await t.kernel.call("counter", "which")).toBe("v2");
    expect(await t.kernel.call("counter", "get")).toBe(5);
    const down = await t.kernel.swap("counter", entry(t, "counter-v1"));
    expect(down.outcome).toBe("committed");
    expect(await t.kernel.call("counter", "which")).toBe("v1");
    expect(await t.kernel.call("counter", "get")).toBe(5);
  });

  it("says so and changes nothing when asked to swap to the version already running", async () => {
    const t = kernel();
    const before = t.kernel.history("counter").length;
    const same = await t.kernel.swap("counter", entry(t, "counter-v1"));
    expect(same.outcome).toBe("unchanged");
    expect(same.blackoutMs).toBeNull();
    expect(t.kernel.history("counter")).toHaveLength(before);
  });

  it("keeps Maps, Sets, Dates and binary data through a swap", async () => {
    const t = kernel();
    await t.kernel.call("rich", "add", "b");
    const report = await t.kernel.swap("rich", entry(t, "rich-state-v2"));
    expect(report.outcome).toBe("committed");
    expect(await t.kernel.call("rich", "describe")).toEqual({ map: [["a", 1], ["b", 2]], set: ["x", "b"], when: 1000, bytes: [1, 2, 3] });
  });

  it.each([
    ["restore-throws", "ERR_SWAP_RESTORE"],
    ["restore-hangs", "ERR_SWAP_TIMEOUT"],
    ["restore-spins", "ERR_SWAP_TIMEOUT"],
    ["restore-oom", "ERR_SWAP_OOM"],
    ["only-v3-state", "ERR_STATE_VERSION"],
  ])("rolls back a new version that fails (%s) with %s, keeping version and state", async (fixture, code) => {
    const t = kernel();
    await t.kernel.call("counter", "incr", 4);
    const version = t.kernel.running("counter");
    const report = await t.kernel.swap("counter", entry(t, fixture));
    expect(report.outcome).toBe("rolled-back");
    expect(report.error?.code).toBe(code);
    expect(t.kernel.running("counter")).toBe(version);
    expect(await t.kernel.call("counter", "get")).toBe(4);
    expect(await t.kernel.call("counter", "which")).toBe("v1");
    expect(t.kernel.history("counter").at(-1)).toMatchObject({ outcome: "rolled-back", code, startedAt: null });
  });

  it("refuses a bundle that does not compile with ERR_SWAP_COMPILE before the swap begins: nothing recorded, nothing changed", async () => {
    const t = kernel();
    await t.kernel.call("counter", "incr", 4);
    const version = t.kernel.running("counter");
    const history = t.kernel.history("counter").length;
    expect((await rejection(t.kernel.swap("counter", entry(t, "syntax-error")))).code).toBe("ERR_SWAP_COMPILE");
    expect(t.kernel.running("counter")).toBe(version);
    expect(t.kernel.history("counter")).toHaveLength(history);
    expect(await t.kernel.call("counter", "get")).toBe(4);
  });

  it("refuses a second swap of the same service while one is in progress", async () => {
    const t = kernel();
    const first = t.kernel.swap("counter", entry(t, "counter-v2"));
    const second = await rejection(t.kernel.swap("counter", entry(t, "counter-v3")));
    expect(second.code).toBe("ERR_SWAP_BUSY");
    expect((await first).outcome).toBe("committed");
    expect(await t.kernel.call("counter", "which")).toBe("v2");
  });

  it("queues messages sent during the blackout and delivers them to the new version", async () => {
    const t = kernel();
    await t.kernel.call("counter", "incr", 1);
    const queued: Promise<unknown>[] = [];
    const report = await t.kernel.swap("counter", entry(t, "counter-v2"), {
      onPhase: (phase) => {
        // The mailbox is held from the end of quiesce to the cutover.
        if (phase === "quiesce") for (let i = 0; i < 25; i++) queued.push(t.kernel.call("counter", "incr", 1), t.kernel.call("counter", "which"));
      },
    });
    expect(report.outcome).toBe("committed");
    const answers = await Promise.all(queued);
    expect(answers.filter((a) => typeof a === "string")).toEqual(Array.from({ length: 25 }, () => "v2"));
    expect(await t.kernel.call("counter", "get")).toBe(26);
  });

  it("rolls back to the previous version and to a named one, migrating the state down", async () => {
    const t = kernel();
    await t.kernel.call("counter", "incr", 6);
    const v1 = t.kernel.running("counter");
    expect((await t.kernel.swap("counter", entry(t, "counter-v2"))).outcome).toBe("committed");
    expect((await t.kernel.swap("counter", entry(t, "counter-v3"))).outcome).toBe("committed");
    const back = await t.kernel.rollback("counter");
    expect(back).toMatchObject({ outcome: "committed", via: "rollback" });
    expect(await t.kernel.call("counter", "which")).toBe("v2");
    const named = await t.kernel.rollback("counter", v1?.slice(0, 12));
    expect(named.outcome).toBe("committed");
    expect(await t.kernel.call("counter", "which")).toBe("v1");
    expect(await t.kernel.call("counter", "get")).toBe(6);
    expect((await rejection(t.kernel.rollback("counter", "ffffffff"))).code).toBe("ERR_NO_VERSION");
  });

  it("records every version with its parent, stateVersion, hash and outcome", async () => {
    const t = kernel();
    await t.kernel.swap("counter", entry(t, "counter-v2"));
    await t.kernel.swap("counter", entry(t, "restore-throws"));
    const history = t.kernel.history("counter");
    const [v1, v2, failed] = history;
    expect(history).toHaveLength(3);
    expect(v1).toMatchObject({ via: "start", parent: null, semver: "1.0.0", stateVersion: 1, outcome: "live" });
    expect(v1?.replacedAt).toEqual(expect.any(String));
    expect(v2).toMatchObject({ via: "swap", parent: v1?.version, semver: "2.0.0", stateVersion: 2, outcome: "live", replacedAt: null });
    expect(failed).toMatchObject({ via: "swap", parent: v2?.version, outcome: "rolled-back", code: "ERR_SWAP_RESTORE", startedAt: null });
    for (const r of history) expect(r.version).toMatch(/^[0-9a-f]{64}$/);
  });
});

describe("a call in flight when a swap begins", () => {
  // The default deadline, so that the held call outlasts the swap's prepare on a busy machine.
  const kernel = kernelPerTest({ services: { counter: { entry: v("counter-v1"), bindings: { slow: "slow" } }, slow: { entry: "./latch.ts" } } });

  it("completes a call the old instance is awaiting before the dump, and its caller gets the answer", async () => {
    const t = kernel();
    await t.kernel.call("counter", "incr", 2);
    const pending = t.kernel.call("counter", "relayIncr", 0);
    // Once the latch holds the relay, the old instance is awaiting it: the call is in flight.
    await vi.waitFor(async () => expect(await t.kernel.call("slow", "held")).toEqual(["relay"]), { timeout: 10_000, interval: 20 });
    // Released only once the swap is past its prepare phase, so the call is still in flight when the mailbox is held.
    let released: Promise<unknown> | undefined;
    const report = await t.kernel.swap("counter", entry(t, "counter-v3"), {
      onPhase: (phase) => {
        if (phase === "prepare") released = t.kernel.call("slow", "release", "relay");
      },
    });
    expect(await released).toBe(true);
    expect(report.outcome).toBe("committed");
    expect(await pending).toBe(3);
    expect(await t.kernel.call("counter", "get")).toBe(3);
    expect(await t.kernel.call("counter", "which")).toBe("v3");
  });
});

describe("failures of the running version", () => {
  let t: TestKernel;
  // Each test uses its own service, so they share a kernel.
  beforeAll(async () => {
    t = await startKernel({
      services: {
        counter: { entry: v("counter-v1"), bindings: { slow: "slow" } },
        nodump: { entry: v("dump-throws"), bindings: { slow: "slow" } },
        slow: { entry: "./latch.ts" },
      },
      swap: { drainTimeoutMs: 150 },
    });
  });
  afterAll(() => t.kernel.stop());

  it("rolls back with ERR_SWAP_DRAIN_TIMEOUT when in-flight work outlasts the drain deadline, and that work completes", async () => {
    await t.kernel.call("counter", "incr", 2);
    const pending = t.kernel.call("counter", "relayIncr", 0);
    await vi.waitFor(async () => expect(await t.kernel.call("slow", "held")).toEqual(["relay"]), { timeout: 10_000, interval: 20 });
    const report = await t.kernel.swap("counter", entry(t, "counter-v2"));
    expect(report.outcome).toBe("rolled-back");
    expect(report.error).toMatchObject({ code: "ERR_SWAP_DRAIN_TIMEOUT", phase: "quiesce" });
    expect(await t.kernel.call("slow", "release", "relay")).toBe(true);
    expect(await pending).toBe(3);
    expect(await t.kernel.call("counter", "which")).toBe("v1");
    // The old instance never stopped, so its start did not run again.
    expect(await t.kernel.call("counter", "started")).toBe(1);
  });

  it("refuses with ERR_SWAP_DUMP when the running version cannot dump, found by the rehearsal before anything pauses", async () => {
    await t.kernel.call("nodump", "incr", 4);
    const report = await t.kernel.swap("nodump", entry(t, "counter-v2"));
    expect(report.outcome).toBe("rolled-back");
    expect(report.error).toMatchObject({ code: "ERR_SWAP_DUMP", phase: "prepare" });
    expect(report.blackoutMs).toBeNull();
    expect(await t.kernel.call("nodump", "get")).toBe(4);
    // It was never stopped.
    expect(await t.kernel.call("nodump", "started")).toBe(1);
  });
});

describe("probation", () => {
  const kernel = kernelPerTest({
    services: { counter: { entry: v("counter-v2"), bindings: { slow: "slow" } }, slow: { entry: "./probe.ts" } },
    // Long enough for a loaded machine to fail three calls, or take a snapshot, inside it; a failed probation ends early.
    swap: { probationMs: 3000, probationMaxErrors: 2 },
  });

  /** Swaps to a version whose handlers fail, and fails three calls once it serves. */
  async function failProbation(t: TestKernel): Promise<{ report: Awaited<ReturnType<TestKernel["kernel"]["swap"]>>; codes: string[] }> {
    await t.kernel.call("counter", "incr", 3);
    const swapping = t.kernel.swap("counter", entry(t, "probation-fails"));
    await vi.waitFor(() => expect(semver(t, "counter")).toBe("9.0.0-faulty"), 5000);
    const codes: string[] = [];
    for (let i = 0; i < 3; i++) codes.push((await rejection(t.kernel.call("counter", "incr", 1))).code);
    return { report: await swapping, codes };
  }

  it("rolls a new version back with the state it reached when its handlers fail during probation", async () => {
    const t = kernel();
    const { report, codes } = await failProbation(t);
    expect(codes).toEqual(["ERR_HANDLER", "ERR_HANDLER", "ERR_HANDLER"]);
    expect(report.outcome).toBe("rolled-back");
    expect(report.error?.code).toBe("ERR_SWAP_PROBATION");
    expect(await t.kernel.call("counter", "which")).toBe("v2");
    expect(await t.kernel.call("counter", "get")).toBe(3);
    const history = t.kernel.history("counter");
    expect(history.at(-2)).toMatchObject({ outcome: "probation-failed", code: "ERR_SWAP_PROBATION" });
    expect(history.at(-2)?.replacedAt).toEqual(expect.any(String));
    expect(history.at(-1)).toMatchObject({ via: "rollback", outcome: "live", semver: "2.0.0" });
  });

  it("does not offer the failed version as the one to roll back to", async () => {
    const t = kernel();
    expect((await failProbation(t)).report.outcome).toBe("rolled-back");
    const err = await rejection(t.kernel.rollback("counter"));
    expect(err.code).toBe("ERR_NO_VERSION");
    expect(err.service).toBe("counter");
  });

  it("commits a healthy version once probation passes, keeping a snapshot taken during probation", async () => {
    const t = kernel();
    await t.kernel.call("counter", "incr", 2);
    const swapping = t.kernel.swap("counter", entry(t, "counter-v3"));
    await vi.waitFor(() => expect(semver(t, "counter")).toBe("3.0.0"), 5000);
    await t.kernel.call("counter", "incr", 5);
    await t.kernel.snapshot("counter");
    const report = await swapping;
    expect(report.outcome).toBe("committed");
    expect(await t.kernel.call("counter", "which")).toBe("v3");
    // The swap's own snapshot (taken at cutover) must not land over the newer one.
    const snap = new SnapshotStore(t.kernel.config.dataDir).read("counter");
    const [, , state] = new Packr({ structuredClone: true }).unpack(snap?.dump as Uint8Array) as [number, number, { value: { count: number } }];
    expect(state.value.count).toBe(7);
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
    let queued: Promise<unknown> | undefined;
    const report = await t.kernel.swap("counter", `${t.kernel.config.dir}/behaviour-swap/start-hangs.ts`, {
      // Called through a binding whose caller has a 1500 ms deadline, once the mailbox is held.
      onPhase: (phase) => {
        if (phase === "quiesce") queued = t.kernel.call("slow", "call", { binding: "counter", method: "incr", payload: 1 });
      },
    });
    expect(report.outcome).toBe("rolled-back");
    expect(report.error?.code).toBe("ERR_SWAP_TIMEOUT");
    expect(await queued).toBe(3);
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
    await first.kernel.swap("counter", entry(first, "counter-v2"));
    await first.kernel.call("counter", "incr", 1);
    const history = first.kernel.history("counter").map((r) => r.version);
    await first.kernel.stop();

    const second = await startKernel({ ...config, dataDir });
    try {
      expect(await second.kernel.call("counter", "which")).toBe("v2");
      expect(await second.kernel.call("counter", "get")).toBe(8);
      expect(second.kernel.history("counter").map((r) => r.version)).toEqual(history);
    } finally {
      await second.kernel.stop();
    }
  });
});
