// Waves in a real rollout: a nats-server on loopback and 30 fleet members in
// this process on one shared connection, each over a stub kernel that swaps
// by changing a field. Checks each wave's share of the fleet, the number of
// swaps in flight, and a halt in the last wave that takes every runtime back.

import { afterEach, describe, expect, it } from "vitest";
import type { Bundle } from "../../core/bundle.ts";
import type { ResolvedFleet } from "../../core/config.ts";
import { FleetMember, type MemberKernel } from "../../fleet/member.ts";
import { readNodes } from "../../fleet/nodes.ts";
import { rollout, storedRollout, type RolloutEvent } from "../../fleet/rollout.ts";
import type { ServiceStatus, SwapReport } from "../../protocol/admin.ts";
import { natsPerSuite } from "../support/fleet.ts";
import { FIXTURES } from "../support/runtime.ts";

const V1 = "a1".repeat(32);
const NEW = `${FIXTURES}/fixes/v3.ts`;
const RUNTIMES = 30;

/** Swaps in progress across every stub, and the most there ever were. */
const swaps = { now: 0, most: 0 };

/** A kernel running "api" that swaps by taking the new version, or refuses to when told to fail on it. */
class StubKernel {
  version = V1;
  readonly #fails: boolean;
  constructor(fails: boolean) {
    this.#fails = fails;
  }
  useRemote(): void {}
  has(service: string): boolean {
    return service === "api";
  }
  running(): string {
    return this.version;
  }
  status(): ServiceStatus[] {
    const s = { name: "api", state: "running", version: this.version, semver: "1.0.0", stateVersion: 1, fixes: [], uptimeMs: 0, queueDepth: 0, inFlight: 0 };
    return [{ ...s, paused: false, restarts: 0, isolation: "isolate", error: null, lastSwap: null }] as ServiceStatus[];
  }
  history(): [] {
    return [];
  }
  recorded(): { entry: string } {
    return { entry: "old.ts" };
  }
  storedBundle(version: string, entry: string): Bundle {
    if (version !== V1) throw new Error("not here");
    return { code: "", hash: V1, entry };
  }
  async swapBundle(service: string, bundle: Bundle): Promise<SwapReport> {
    swaps.most = Math.max(swaps.most, ++swaps.now);
    await new Promise((resolve) => setTimeout(resolve, 10));
    swaps.now--;
    const from = { version: this.version, semver: "1.0.0", stateVersion: 1 };
    if (this.#fails && bundle.hash !== V1) {
      const error = { code: "ERR_SWAP_RESTORE", message: "cannot start here", phase: "restore" as const };
      return { service, outcome: "rolled-back", via: "swap", from, to: null, blackoutMs: 1, phases: {}, error } as SwapReport;
    }
    this.version = bundle.hash;
    return { service, outcome: "committed", via: "swap", from, to: { version: bundle.hash, semver: "3.0.0", stateVersion: 1 }, blackoutMs: 1, phases: {} } as SwapReport;
  }
}

describe("a rollout in waves", () => {
  const nats = natsPerSuite();
  let members: FleetMember[] = [];
  let kernels: StubKernel[] = [];

  afterEach(async () => {
    const { stores } = nats();
    await Promise.all(members.map((m) => m.leave()));
    // Each test starts from a fleet that has not settled on anything.
    await stores.desired.purge("api");
    await Promise.all(members.map((m) => stores.nodes.purge(m.node)));
    members = [];
    kernels = [];
    swaps.most = 0;
  });

  async function fleetOf(failing: string[] = []): Promise<string> {
    const { server, nc, stores } = nats();
    const fleet = { nats: server.url, heartbeatMs: 60_000, reconcileMs: 600_000 } as ResolvedFleet;
    for (let i = 0; i < RUNTIMES; i++) {
      const node = `n${String(i).padStart(2, "0")}`;
      const kernel = new StubKernel(failing.includes(node));
      kernels.push(kernel);
      members.push(new FleetMember({ kernel: kernel as unknown as MemberKernel, fleet: { ...fleet, node }, dataDir: "/nonexistent", log: { log: () => undefined }, connection: { nc, stores } }));
    }
    for (const m of members) m.join();
    await Promise.all(members.map((m) => m.joined()));
    return server.url;
  }

  it("leaves each wave's share of the fleet on the new version, with at most --batch swaps in flight", async () => {
    const url = await fleetOf();
    const events: RolloutEvent[] = [];
    const record = await rollout({ nats: url, service: "api", entry: NEW, waves: [10, 50, 100], batch: 4, onEvent: (e) => events.push(e) });
    expect(record.outcome).toBe("completed");
    expect(record.swapped).toHaveLength(RUNTIMES);
    const ends = events.filter((e) => e.type === "wave" && e.phase === "end");
    // 10% of 30 is 3 (the canary among them), 50% is 15, then every one.
    expect(ends.map((e) => (e.type === "wave" ? [e.wave, e.target, e.onNew] : []))).toEqual([
      [1, 3, 3],
      [2, 15, 15],
      [3, 30, 30],
    ]);
    // Runtimes go in wave order: none of wave 3 before wave 2 ended.
    const stages = events.flatMap((e) => (e.type === "runtime" ? [e.stage] : []));
    expect(stages).toEqual(["canary", "wave 1", "wave 1", ...Array<string>(12).fill("wave 2"), ...Array<string>(15).fill("wave 3")]);
    expect(swaps.most).toBeLessThanOrEqual(4);
    expect(kernels.every((k) => k.version === record.version)).toBe(true);
    const nodes = await readNodes(nats().stores.nodes);
    expect(nodes.filter((n) => n.services[0]?.version === record.version)).toHaveLength(RUNTIMES);
  });

  it("halts in the wave where a swap fails, asks no more runtimes, and takes every one it swapped back", async () => {
    const url = await fleetOf(["n20"]);
    const events: RolloutEvent[] = [];
    const halted = await rollout({ nats: url, service: "api", entry: NEW, waves: [10, 50, 100], batch: 4, onEvent: (e) => events.push(e) }).catch((err: unknown) => err);
    expect(halted).toMatchObject({ code: "ERR_ROLLOUT_HALTED" });
    const asked = events.flatMap((e) => (e.type === "runtime" ? [e.node] : []));
    expect(asked).toContain("n20");
    // At most the swaps already in flight when n20 failed (batch 4: three others) were answered after it, whatever order the runtimes were asked in.
    expect(asked.length - asked.indexOf("n20") - 1).toBeLessThanOrEqual(3);
    expect(asked.length).toBeLessThan(RUNTIMES);
    const rolledBack = events.flatMap((e) => (e.type === "rollback" ? [e.node] : []));
    expect(rolledBack.sort()).toEqual(asked.filter((n) => n !== "n20").sort());
    expect(kernels.every((k) => k.version === V1)).toBe(true);
    expect((await nats().stores.desired.get("api"))?.operation ?? "none").not.toBe("PUT");
  });

  it("keeps a rollout over thousands of runtimes in its history as counts and a few names, so the history fits one KV value", () => {
    const names = Array.from({ length: 50_000 }, (_, i) => `node-${i}`);
    const record = { id: "r", service: "api", version: V1, semver: null, from: [V1], startedAt: "", endedAt: "", outcome: "completed" as const };
    const stored = storedRollout({ ...record, swapped: names, failed: [{ node: "x", code: "ERR_X", message: "m".repeat(5000) }], skipped: [] });
    expect(stored.swapped).toEqual(names.slice(0, 50));
    expect(stored.counts).toEqual({ swapped: 50_000, failed: 1, skipped: 0 });
    expect(stored.failed[0]?.message).toHaveLength(300);
    // A small rollout is kept whole, without counts.
    expect(storedRollout({ ...record, swapped: ["a"], failed: [], skipped: [] })).toEqual({ ...record, swapped: ["a"], failed: [], skipped: [] });
  });
});
