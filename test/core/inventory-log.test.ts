import { copyFileSync, existsSync, mkdtempSync, readFileSync, statSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { writeRecord } from "../../core/disk.ts";
import { Inventory, Outcome, Via, type InventoryOptions, type VersionRecord } from "../../core/inventory.ts";
import type { KernelLog } from "../../core/log.ts";

const DAMAGED = "inventory log damaged; keeping the frames before it and ignoring the rest";

function dataDir(): string {
  return mkdtempSync(join(tmpdir(), "molt-inventory-"));
}

function capture(): { log: KernelLog; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  return { log: { log: (level, msg, fields) => lines.push({ level, msg, ...fields }) }, lines };
}

/** What the inventory holds, as plain data: the thing a reload must give back. */
function contents(inventory: Inventory): unknown {
  return structuredClone(inventory.toJSON());
}

function reopen(dir: string, options: InventoryOptions = {}): { inventory: Inventory; lines: Record<string, unknown>[] } {
  const { log, lines } = capture();
  return { inventory: Inventory.open(dir, log, options), lines };
}

/** A service's first start, as the supervisor records it. */
function start(inventory: Inventory, service: string): VersionRecord {
  return inventory.live({ service, versionId: `${service}-v0`, meta: { semver: "1.0.0", stateVersion: 1 } }, { entry: "./v0.ts", parent: null, via: Via.START });
}

/** A committed swap, with the record updates swap.ts makes: replaced, added, then its phases once probation ends. */
function swapTo(inventory: Inventory, service: string, n: number): VersionRecord {
  const now = new Date(1_700_000_000_000 + n * 1000).toISOString();
  const parent = inventory.current(service)?.version ?? null;
  const phases: Record<string, number> = { prepare: 3.1, quiesce: 0.2, dump: 0.1, restore: 0.3, cutover: 0.01 };
  inventory.replaced(service, now);
  const committed = inventory.add({
    service,
    version: `${service}-v${n}`,
    semver: `1.0.${n}`,
    stateVersion: 1,
    entry: `./v${n}.ts`,
    parent,
    via: Via.SWAP,
    requestedAt: now,
    startedAt: now,
    replacedAt: null,
    outcome: Outcome.LIVE,
    phases,
    blackoutMs: 0.61,
  });
  phases.commit = 12.5;
  inventory.update(committed, { phases });
  return committed;
}

describe("the inventory's log", () => {
  it("reloads exactly the records it wrote", async () => {
    const dir = dataDir();
    const inventory = Inventory.open(dir);
    start(inventory, "counter");
    start(inventory, "gateway");
    await inventory.save();
    for (let n = 1; n <= 5; n++) {
      swapTo(inventory, "counter", n);
      await inventory.save();
    }
    expect(existsSync(join(dir, "inventory.log"))).toBe(true);
    const { inventory: reloaded, lines } = reopen(dir);
    expect(contents(reloaded)).toEqual(contents(inventory));
    expect(reloaded.current("counter")?.version).toBe("counter-v5");
    expect(reloaded.history("counter").map((r) => r.seq)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(lines).toEqual([]);
  });

  it("keeps every update made to a record, including ones made between saves", async () => {
    const dir = dataDir();
    const inventory = Inventory.open(dir);
    start(inventory, "counter");
    void inventory.save();
    for (let n = 1; n <= 200; n++) {
      const committed = swapTo(inventory, "counter", n);
      // Saves are not awaited, as swap.ts asks for them: they coalesce.
      void inventory.save();
      if (n % 7 === 0) {
        // Probation ends after the committed record was written.
        await inventory.save();
        // A failed probation: the old version comes back live and the committed record is marked afterwards.
        inventory.live({ service: "counter", versionId: `counter-v${n - 1}`, meta: { semver: `1.0.${n - 1}`, stateVersion: 1 } }, {
          entry: `./v${n - 1}.ts`,
          parent: committed.version,
          via: Via.ROLLBACK,
          message: "automatic rollback after failed probation",
        });
        inventory.update(committed, { outcome: Outcome.PROBATION_FAILED, code: "ERR_SWAP_PROBATION", message: "3 error(s) during probation" });
        void inventory.save();
      }
      if (n % 11 === 0) {
        await inventory.save();
        inventory.update(committed, { blackoutMs: n / 100 });
      }
    }
    await inventory.flush();
    const { inventory: reloaded } = reopen(dir);
    expect(contents(reloaded)).toEqual(contents(inventory));
    expect(reloaded.history("counter").filter((r) => r.outcome === Outcome.PROBATION_FAILED)).toHaveLength(28);
    // Coalesced: far fewer frames than updates.
    expect(inventory.logFrames).toBeLessThan(100);
  });

  it("does not let a caller's later change to an object it passed in reach the record", async () => {
    const dir = dataDir();
    const inventory = Inventory.open(dir);
    start(inventory, "counter");
    const phases: Record<string, number> = { prepare: 1 };
    const record = swapTo(inventory, "counter", 1);
    inventory.update(record, { phases });
    phases.commit = 99; // not passed to update again: neither the record nor the log sees it
    await inventory.save();
    expect(inventory.current("counter")?.phases).toEqual({ prepare: 1 });
    expect(contents(reopen(dir).inventory)).toEqual(contents(inventory));
  });

  it("compacts the log into a new base once it passes the threshold, and reloads the same records", async () => {
    const dir = dataDir();
    const options = { compaction: { minFrames: 20, minBaseFraction: 0 } };
    const inventory = Inventory.open(dir, undefined, options);
    start(inventory, "counter");
    for (let n = 1; n <= 50; n++) {
      swapTo(inventory, "counter", n);
      await inventory.save();
      expect(inventory.logFrames).toBeLessThan(20);
    }
    expect(existsSync(join(dir, "inventory.msgpack"))).toBe(true);
    expect(existsSync(join(dir, "inventory.msgpack.prev"))).toBe(true);
    expect(existsSync(join(dir, "inventory.log.prev"))).toBe(true);
    expect(inventory.logFrames).toBe(50 - 2 * 20);
    const { inventory: reloaded, lines } = reopen(dir, options);
    expect(contents(reloaded)).toEqual(contents(inventory));
    expect(reloaded.logFrames).toBe(inventory.logFrames);
    expect(lines).toEqual([]);
  });

  it("compacts less often as the base grows, by default", async () => {
    const dir = dataDir();
    const inventory = Inventory.open(dir, undefined, { compaction: { minFrames: 10, minBaseFraction: 0.5 } });
    start(inventory, "counter");
    for (let n = 1; n <= 300; n++) {
      swapTo(inventory, "counter", n);
      await inventory.save();
    }
    // With 300 records the base is far larger than 10 frames: the log must reach half its size first.
    expect(inventory.logFrames).toBeGreaterThan(10);
    expect(contents(reopen(dir).inventory)).toEqual(contents(inventory));
  });

  it("ignores a torn last frame, keeping every frame before it, in one log line; the next write repairs the log", async () => {
    const dir = dataDir();
    const inventory = Inventory.open(dir);
    start(inventory, "counter");
    for (let n = 1; n <= 9; n++) {
      swapTo(inventory, "counter", n);
      await inventory.save();
    }
    const before = contents(inventory);
    swapTo(inventory, "counter", 10);
    await inventory.save();
    const log = join(dir, "inventory.log");
    truncateSync(log, statSync(log).size - 3); // a crash in the middle of the last append

    const { inventory: reloaded, lines } = reopen(dir);
    expect(contents(reloaded)).toEqual(before);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ level: "error", msg: DAMAGED, path: log, code: "ERR_CORRUPT", frames: 9 });

    // Nothing may be appended after the damage: the next write folds everything into a new base.
    swapTo(reloaded, "counter", 11);
    await reloaded.save();
    expect(existsSync(join(dir, "inventory.log.damaged"))).toBe(true);
    const again = reopen(dir);
    expect(contents(again.inventory)).toEqual(contents(reloaded));
    expect(again.lines).toEqual([]);
    expect(again.inventory.current("counter")?.version).toBe("counter-v11");
  });

  it("detects a flipped byte in a frame in the middle, keeping the frames before it", async () => {
    const dir = dataDir();
    const inventory = Inventory.open(dir);
    const log = join(dir, "inventory.log");
    const states: unknown[] = [];
    const ends: number[] = [];
    start(inventory, "counter");
    for (let n = 1; n <= 10; n++) {
      swapTo(inventory, "counter", n);
      await inventory.save();
      states.push(contents(inventory));
      ends.push(statSync(log).size);
    }
    // A byte inside the sixth frame's payload.
    const bytes = readFileSync(log);
    const at = Math.floor(((ends[4] as number) + (ends[5] as number)) / 2);
    bytes[at] = (bytes[at] as number) ^ 0x40;
    writeFileSync(log, bytes);

    const { inventory: reloaded, lines } = reopen(dir);
    expect(contents(reloaded)).toEqual(states[4]);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ msg: DAMAGED, code: "ERR_CORRUPT", offset: ends[4], ignoredBytes: (ends[9] as number) - (ends[4] as number) });
    expect(String(lines[0]?.error)).toContain("checksum");
  });

  it("replays idempotently after a crash between writing the new base and resetting the log", async () => {
    const dir = dataDir();
    const options = { compaction: { minFrames: 10, minBaseFraction: 0 } };
    const inventory = Inventory.open(dir, undefined, options);
    start(inventory, "counter");
    for (let n = 1; n <= 10; n++) {
      swapTo(inventory, "counter", n);
      await inventory.save();
    }
    expect(inventory.logFrames).toBe(0); // compacted
    // The crash: the new base is on disk, the old log still in place.
    copyFileSync(join(dir, "inventory.log.prev"), join(dir, "inventory.log"));

    const first = reopen(dir, options);
    expect(contents(first.inventory)).toEqual(contents(inventory));
    expect(first.lines).toEqual([]);
    // Writing goes on after the stale frames, and a reload still gives the same records.
    for (let n = 11; n <= 14; n++) {
      swapTo(first.inventory, "counter", n);
      await first.inventory.save();
    }
    const second = reopen(dir, options);
    expect(contents(second.inventory)).toEqual(contents(first.inventory));
    expect(second.inventory.current("counter")?.version).toBe("counter-v14");
    expect(second.lines).toEqual([]);
  });

  it("falls back to the previous base and replays the previous log on it when the base is corrupt", async () => {
    const dir = dataDir();
    const options = { compaction: { minFrames: 10, minBaseFraction: 0 } };
    const inventory = Inventory.open(dir, undefined, options);
    start(inventory, "counter");
    for (let n = 1; n <= 25; n++) {
      swapTo(inventory, "counter", n);
      await inventory.save();
    }
    const base = join(dir, "inventory.msgpack");
    writeFileSync(base, readFileSync(base).subarray(0, 10));

    const { inventory: reloaded, lines } = reopen(dir, options);
    expect(contents(reloaded)).toEqual(contents(inventory));
    expect(lines.map((l) => l.msg)).toEqual(["inventory file corrupt; using the previous copy"]);
  });

  it("loads a dataDir written before the log: one whole inventory record and its previous copy", async () => {
    const dir = dataDir();
    // What the previous inventory.ts wrote: { services } in a record file, no lastSeq, no log.
    const written = Inventory.open(dataDir());
    start(written, "counter");
    for (let n = 1; n <= 3; n++) swapTo(written, "counter", n);
    writeRecord(join(dir, "inventory.msgpack"), "inventory", { services: { counter: written.history("counter").slice(0, 3).map((r) => ({ ...r })) } });
    writeRecord(join(dir, "inventory.msgpack"), "inventory", { services: { counter: written.history("counter").map((r) => ({ ...r })) } });
    expect(existsSync(join(dir, "inventory.log"))).toBe(false);

    const { inventory, lines } = reopen(dir);
    expect(contents(inventory)).toEqual(contents(written));
    expect(lines).toEqual([]);
    // It carries on with a log from there.
    swapTo(inventory, "counter", 4);
    await inventory.save();
    const reloaded = reopen(dir).inventory;
    expect(contents(reloaded)).toEqual(contents(inventory));
    expect(reloaded.history("counter").map((r) => r.seq)).toEqual([1, 2, 3, 4, 5]);
  });
});
