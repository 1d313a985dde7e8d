// The kernel's version chain: each runtime on a dataDir, how it came and how
// it ended. Several runtimes are played on one file, each a KernelChain with
// its own pid and build, as the keeper's successive children would be.

import { appendFileSync, mkdtempSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { CHAIN_FILE, KernelChain, MAX_FAILURES, type KernelChainOptions } from "../../core/kernel-chain.ts";
import { rejection } from "../support/kernel.ts";

const V1 = { version: "a".repeat(64), semver: "0.1.0" };
const V2 = { version: "b".repeat(64), semver: "0.2.0" };
const V3 = { version: "c".repeat(64), semver: "0.2.0" };

/** A dataDir, and a way to make the runtimes that take turns on it, with a clock that ticks a second per reading. */
function bench(options: Partial<KernelChainOptions> = {}): { dir: string; runtime: (pid: number, build?: typeof V1) => KernelChain } {
  const dir = mkdtempSync(join(tmpdir(), "molt-chain-"));
  let clock = Date.UTC(2026, 0, 1);
  const now = (): Date => new Date((clock += 1000));
  return { dir, runtime: (pid, build = V1) => new KernelChain(dir, { identity: () => build, pid, now, ...options }) };
}

describe("KernelChain", () => {
  it("records a `molt run` as a start with no parent, live while it runs", async () => {
    const { dir, runtime } = bench();
    const a = runtime(100);
    const record = await a.started({ via: "start" });
    expect(record).toMatchObject({ seq: 1, ...V1, parent: null, via: "start", pid: 100, blackoutMs: null, replacedAt: null, outcome: "live", failedUpgrades: [] });
    expect(a.info()).toEqual({ ...V1, pid: 100, startedAt: record.startedAt, upgrades: 0, restarts: 0 });
    expect(a.list()).toEqual({ records: [record], corrupt: 0 });
    expect(a.current()).toEqual(record);
    expect(statSync(join(dir, CHAIN_FILE)).mode & 0o777).toBe(0o600);
  });

  it("chains an upgrade to the runtime it replaced, and a restart to the one that crashed", async () => {
    const { runtime } = bench();
    const a = runtime(100, V1);
    await a.started({ via: "start" });
    const b = runtime(200, V2);
    const upgraded = await b.started({ via: "upgrade", blackoutMs: 12 });
    expect(b.info()).toMatchObject({ ...V2, pid: 200, upgrades: 1, restarts: 0 });
    const c = runtime(300, V2);
    const restarted = await c.started({ via: "restart", blackoutMs: 340 });
    expect(c.info()).toMatchObject({ pid: 300, upgrades: 1, restarts: 1 });

    const { records } = c.list();
    expect(records.map((r) => [r.pid, r.via, r.parent, r.outcome, r.blackoutMs])).toEqual([
      [100, "start", null, "replaced", null],
      [200, "upgrade", V1.version, "crashed", 12],
      [300, "restart", V2.version, "live", 340],
    ]);
    expect(records[0]?.replacedAt).toBe(upgraded.startedAt);
    expect(records[1]?.replacedAt).toBe(restarted.startedAt);
    // Every runtime reads the same chain from the file, whichever wrote last.
    expect(a.list().records).toEqual(records);
  });

  it("keeps an upgrade that did not take on the runtime that kept serving, with its code and the build it tried", async () => {
    const { runtime } = bench();
    const a = runtime(100, V1);
    await a.started({ via: "start" });
    await a.upgradeFailed({ code: "ERR_KERNEL_UPGRADE_BOOT", message: "the new runtime did not boot", tried: V2 });
    const [record] = a.list().records;
    expect(record?.outcome).toBe("live");
    expect(record?.failedUpgrades).toEqual([{ at: expect.any(String) as string, code: "ERR_KERNEL_UPGRADE_BOOT", message: "the new runtime did not boot", tried: V2 }]);
    // The next upgrade that takes replaces it as usual; the failure stays in its history.
    await runtime(200, V3).started({ via: "upgrade", blackoutMs: 9 });
    expect(a.list().records.map((r) => [r.outcome, r.failedUpgrades.length])).toEqual([
      ["replaced", 1],
      ["live", 0],
    ]);
  });

  it("ends a graceful stop as stopped, and counts upgrades and restarts again from the next `molt run`", async () => {
    const { runtime } = bench();
    await runtime(100).started({ via: "start" });
    await runtime(200).started({ via: "restart", blackoutMs: 300 });
    const c = runtime(300, V2);
    await c.started({ via: "upgrade", blackoutMs: 10 });
    await c.stopped();
    const d = runtime(400, V2);
    await d.started({ via: "start" });
    expect(d.info()).toMatchObject({ upgrades: 0, restarts: 0 });
    const records = d.list().records;
    expect(records.map((r) => r.outcome)).toEqual(["crashed", "replaced", "stopped", "live"]);
    expect(records[2]?.replacedAt).not.toBeNull();
    expect(records[3]?.parent).toBe(V2.version);
  });

  it("says crashed for a runtime that ended without a stop before the next `molt run`, and replaced for one that stopped after its handover", async () => {
    const { runtime } = bench();
    await runtime(100).started({ via: "start" });
    await runtime(200).started({ via: "start" });
    const c = runtime(300);
    await c.started({ via: "start" });
    await runtime(400).started({ via: "upgrade", blackoutMs: 5 });
    // The old runtime's stop, written after the new one started, does not undo the upgrade.
    await c.stopped();
    expect(c.list().records.map((r) => r.outcome)).toEqual(["crashed", "crashed", "replaced", "live"]);
  });

  it("skips damaged frames and counts them, never failing a start over them", async () => {
    const { dir, runtime } = bench();
    await runtime(100).started({ via: "start" });
    await runtime(200).started({ via: "upgrade", blackoutMs: 5 });
    await runtime(300).started({ via: "restart", blackoutMs: 50 });
    const path = join(dir, CHAIN_FILE);
    const bytes = readFileSync(path);
    // A flipped byte inside the second frame's payload, and a torn frame at the end.
    const second = bytes.readUInt32LE(0) + 12;
    bytes[second + 20] = (bytes[second + 20] as number) ^ 0xff;
    writeFileSync(path, bytes);
    appendFileSync(path, bytes.subarray(0, 30));
    const d = runtime(400);
    const { records, corrupt } = d.list();
    expect(corrupt).toBe(2);
    expect(records.map((r) => r.pid)).toEqual([100, 300]);
    await d.started({ via: "restart", blackoutMs: 40 });
    // The torn tail is skipped and the frame after it is read.
    expect(d.list().records.map((r) => r.pid)).toEqual([100, 300, 400]);
  });

  it("reads garbage where the file should be as an empty chain", async () => {
    const { dir, runtime } = bench();
    writeFileSync(join(dir, CHAIN_FILE), "not a kernel chain at all\n".repeat(50));
    const a = runtime(100);
    expect(a.list()).toEqual({ records: [], corrupt: 1 });
    await a.started({ via: "start" });
    expect(a.list().records.map((r) => r.pid)).toEqual([100]);
  });

  it("keeps the newest runtimes once the chain is full, compacting when one starts", async () => {
    const { dir, runtime } = bench({ maxRecords: 5 });
    for (let pid = 1; pid <= 8; pid++) await runtime(pid, pid % 2 === 0 ? V2 : V1).started({ via: pid === 1 ? "start" : "upgrade", blackoutMs: pid });
    const { records } = runtime(99).list();
    expect(records.map((r) => [r.seq, r.pid])).toEqual([
      [1, 4],
      [2, 5],
      [3, 6],
      [4, 7],
      [5, 8],
    ]);
    // The oldest kept still names the runtime before it, which is gone from the file.
    expect(records[0]?.parent).toBe(V1.version);
    const size = statSync(join(dir, CHAIN_FILE)).size;
    for (let pid = 9; pid <= 20; pid++) await runtime(pid).started({ via: "upgrade", blackoutMs: 1 });
    expect(runtime(99).list().records).toHaveLength(5);
    expect(statSync(join(dir, CHAIN_FILE)).size).toBe(size);
  });

  it(`keeps the last ${MAX_FAILURES} failed upgrades of a runtime`, async () => {
    const { dir, runtime } = bench({ maxRecords: 2 });
    const a = runtime(100);
    await a.started({ via: "start" });
    for (let i = 1; i <= MAX_FAILURES + 3; i++) await a.upgradeFailed({ code: `ERR_KERNEL_UPGRADE_BOOT`, message: `attempt ${i}`, tried: V2 });
    const latest = Array.from({ length: MAX_FAILURES }, (_, i) => `attempt ${i + 4}`);
    expect(a.list().records[0]?.failedUpgrades.map((f) => f.message)).toEqual(latest);
    // A compaction (the chain holds 2 runtimes) writes the same ones back, and nothing older.
    const size = statSync(join(dir, CHAIN_FILE)).size;
    await runtime(200).started({ via: "upgrade", blackoutMs: 1 });
    expect(statSync(join(dir, CHAIN_FILE)).size).toBeLessThan(size);
    expect(a.list().records.map((r) => [r.pid, r.failedUpgrades.map((f) => f.message)])).toEqual([
      [100, latest],
      [200, []],
    ]);
  });

  it("records a runtime once, and has no info for one not recorded", async () => {
    const { runtime } = bench();
    const a = runtime(100);
    expect(a.info()).toBeUndefined();
    await a.started({ via: "start" });
    expect((await rejection(a.started({ via: "start" }))).code).toBe("ERR_INTERNAL");
    expect(a.list().records).toHaveLength(1);
  });
});
