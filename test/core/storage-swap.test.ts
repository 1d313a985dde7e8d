// Swaps never move storage (issue 15): the old and new versions read the
// same records, each through its own `migrate`, in both directions; the
// blackout never reads the store; no instance that is not behind the
// mailbox (a rehearsal, a scratch copy, a new version before its cutover)
// writes it; and a service in a cell keeps the same store and output gate.
//
// The kernels here are built as test/support/kernel.ts builds them, except
// that the store each service gets is wrapped, so that a test can count the
// requests that reach it, read its raw records, and hold its output gate.

import { mkdtempSync, readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it, vi } from "vitest";
import { resolveConfig } from "../../core/config.ts";
import { Kernel } from "../../core/kernel.ts";
import { lmdbStorage } from "../../core/lmdb-store.ts";
import { localBoot } from "../../core/local-boot.ts";
import { SnapshotStore } from "../../core/snapshots.ts";
import type { ServiceStore, StorageProvider } from "../../core/storage.ts";
import { decode, encode } from "../../core/wire.ts";
import { StorageOp, STORAGE_OK } from "../../protocol/storage.ts";
import type { MoltConfig } from "../../sdk/config.ts";
import { traceKey } from "../fixtures/storage/sw-modes.ts";
import { FIXTURES } from "../support/runtime.ts";

const V1 = "./storage/sw-v1.ts";
const V2 = `${FIXTURES}/storage/sw-v2.ts`;

/** One service's store as the kernel uses it, watched. */
class WatchedStore implements ServiceStore {
  readonly inner: ServiceStore;
  /** Every request the kernel passed on, of every instance. */
  requests = 0;
  /** While set, `durable()` settles only once this does too: the output gate is held. */
  hold: Promise<void> | undefined;
  /** How many times the kernel asked for durability while the gate was held. */
  heldAsks = 0;

  constructor(inner: ServiceStore) {
    this.inner = inner;
  }

  request(...args: Parameters<ServiceStore["request"]>): Uint8Array {
    this.requests++;
    return this.inner.request(...args);
  }

  scratch(): ReturnType<ServiceStore["scratch"]> {
    return this.inner.scratch();
  }

  durable(): Promise<void> | undefined {
    const durable = this.inner.durable();
    const hold = this.hold;
    if (hold === undefined) return durable;
    this.heldAsks++;
    return Promise.all([durable, hold]).then(() => undefined);
  }

  /** Every record as stored (key → header and value bytes, in hex), read past the wrapper so it is not counted. */
  raw(): Map<string, string> {
    const answer = decode(this.inner.request(encode([StorageOp.LIST, null, null, null, null, false]), false)) as [number, string[], Uint8Array[]];
    expect(answer[0]).toBe(STORAGE_OK);
    return new Map(answer[1].map((key, i) => [key, Buffer.from(answer[2][i] as Uint8Array).toString("hex")]));
  }
}

interface Running {
  kernel: Kernel;
  dataDir: string;
  store(service: string): WatchedStore;
}

const running: Kernel[] = [];
afterEach(async () => {
  for (const kernel of running.splice(0)) await kernel.stop();
});

/** A kernel over LMDB storage whose stores are watched; a fresh dataDir unless one is given. */
async function start(config: MoltConfig, dataDir: string = mkdtempSync(join(tmpdir(), "molt-data-"))): Promise<Running> {
  const resolved = resolveConfig({ dataDir, snapshot: { everyMs: 0 }, ...config }, FIXTURES);
  const log = { log: (): void => undefined };
  const lmdb = lmdbStorage(dataDir, log);
  const stores = new Map<string, WatchedStore>();
  const storage: StorageProvider = {
    open(service) {
      const store = new WatchedStore(lmdb.open(service));
      stores.set(service.name, store);
      return store;
    },
    close: () => lmdb.close(),
  };
  const kernel = new Kernel(resolved, { boot: localBoot, log, stdout: () => undefined, storage });
  running.push(kernel);
  await kernel.start();
  return {
    kernel,
    dataDir,
    store(service) {
      const store = stores.get(service);
      if (store === undefined) throw new Error(`no store opened for ${service}`);
      return store;
    },
  };
}

/** The files of the runtime's storage folder: a swap that copied the data would leave another. */
function storageFiles(dataDir: string): string[] {
  return readdirSync(join(dataDir, "storage")).sort();
}

describe("a swap with stored data", () => {
  it("leaves the records in place both ways: v2 reads v1's as B, v1 reads v2's as A after a rollback, and no byte moves", async () => {
    const t = await start({ services: { shop: { entry: V1 } } });
    const store = t.store("shop");
    await t.kernel.call("shop", "put", { key: "item/apple", value: { name: "apple", qty: 3 } });
    await t.kernel.call("shop", "put", { key: "item/pear", value: { name: "pear", qty: 5 } });
    const beforeUp = store.raw();
    const files = storageFiles(t.dataDir);

    const up = await t.kernel.swap("shop", V2);
    expect(up.outcome).toBe("committed");
    expect(up.verify).toEqual({ ok: true });
    expect(store.raw()).toEqual(beforeUp);
    expect(storageFiles(t.dataDir)).toEqual(files);
    expect(await t.kernel.call("shop", "which")).toBe("v2");
    // v1's records, read by v2 through its migrate; the in-heap count came over by restore.
    expect(await t.kernel.call("shop", "get", "item/apple")).toEqual({ label: "apple", amount: { count: 3, unit: "pcs" } });
    expect(await t.kernel.call("shop", "writes")).toBe(2);

    await t.kernel.call("shop", "put", { key: "item/plum", value: { label: "plum", amount: { count: 7, unit: "kg" } } });
    expect(await t.kernel.call("shop", "list", "item/")).toEqual({
      "item/apple": { label: "apple", amount: { count: 3, unit: "pcs" } },
      "item/pear": { label: "pear", amount: { count: 5, unit: "pcs" } },
      "item/plum": { label: "plum", amount: { count: 7, unit: "kg" } },
    });
    // A read migrates what it returns, never what is stored: v1's records are still v1's.
    const afterV2 = store.raw();
    expect(afterV2.get("item/apple")).toBe(beforeUp.get("item/apple"));
    expect(afterV2.size).toBe(3);

    const down = await t.kernel.rollback("shop");
    expect(down).toMatchObject({ outcome: "committed", via: "rollback" });
    expect(store.raw()).toEqual(afterV2);
    expect(storageFiles(t.dataDir)).toEqual(files);
    expect(await t.kernel.call("shop", "which")).toBe("v1");
    // What v1 wrote as it was, what v2 wrote through v1's migrate (down from 2).
    expect(await t.kernel.call("shop", "list", "item/")).toEqual({
      "item/apple": { name: "apple", qty: 3 },
      "item/pear": { name: "pear", qty: 5 },
      "item/plum": { name: "plum", qty: 7 },
    });
    expect(await t.kernel.call("shop", "writes")).toBe(3);
  });

  it("does not touch the store during the blackout, and hands over only the in-heap state however much is stored", async () => {
    const t = await start({ services: { bulk: { entry: V1 } } });
    const store = t.store("bulk");
    // About 1 MB stored, in 2,000 records.
    expect(await t.kernel.call("bulk", "fill", { count: 2000, bytes: 500 })).toBe(2000);
    await t.kernel.call("bulk", "put", { key: "item/fig", value: { name: "fig", qty: 1 } });
    const before = store.raw();
    expect(before.size).toBe(2001);

    const seen: Partial<Record<string, number>> = {};
    const report = await t.kernel.swap("bulk", V2, {
      onPhase: (phase) => {
        seen[phase] = store.requests;
      },
    });
    expect(report.outcome).toBe("committed");
    // From the hold of the mailbox (end of prepare) to its release (cutover), not one request reached the store.
    expect(seen.prepare).toEqual(expect.any(Number));
    expect(seen.cutover).toBe(seen.prepare);
    // The state v1 handed over, as snapshotted at commit, is its count alone.
    const handed = new SnapshotStore(t.dataDir).read("bulk");
    expect(handed?.stateVersion).toBe(1);
    expect(handed?.dump.byteLength).toBeLessThan(256);
    expect(store.raw()).toEqual(before);
    expect(await t.kernel.call("bulk", "get", "bulk/001999")).toEqual({ label: "x".repeat(500), amount: { count: 1999, unit: "pcs" } });
  });
});

describe("instances that are not behind the mailbox", () => {
  const services: MoltConfig["services"] = {
    throwsInRestore: { entry: V1, config: { v2: { restore: "throw" } } },
    throwsInStart: { entry: V1, config: { v2: { start: "throw" } } },
    goesOn: { entry: V1, config: { v2: { restore: "catch", start: "catch" } } },
    scratch: { entry: V1, config: { v1: { restore: "catch" } } },
  };
  const seed = async (t: Running, service: string): Promise<Map<string, string>> => {
    await t.kernel.call(service, "put", { key: "item/kiwi", value: { name: "kiwi", qty: 2 } });
    return t.store(service).raw();
  };

  it("refuses the rehearsal restore's write: the swap rolls back in prepare, the store unchanged, v1 still serving", async () => {
    const t = await start({ services });
    const before = await seed(t, "throwsInRestore");
    const report = await t.kernel.swap("throwsInRestore", V2);
    expect(report).toMatchObject({ outcome: "rolled-back", error: { code: "ERR_SWAP_RESTORE", phase: "prepare" }, blackoutMs: null });
    expect(t.store("throwsInRestore").raw()).toEqual(before);
    expect(await t.kernel.call("throwsInRestore", "which")).toBe("v1");
    expect(await t.kernel.call("throwsInRestore", "get", "item/kiwi")).toEqual({ name: "kiwi", qty: 2 });
    expect(await t.kernel.call("throwsInRestore", "put", { key: "item/lime", value: { name: "lime", qty: 1 } })).toBe(2);
  });

  it("refuses a write in the new version's start during the transfer: the swap rolls back, the store unchanged, v1 serving again", async () => {
    const t = await start({ services });
    const before = await seed(t, "throwsInStart");
    const report = await t.kernel.swap("throwsInStart", V2);
    expect(report).toMatchObject({ outcome: "rolled-back", error: { code: "ERR_SWAP_RESTORE", phase: "restore" } });
    expect(report.blackoutMs).toEqual(expect.any(Number));
    expect(t.store("throwsInStart").raw()).toEqual(before);
    expect(await t.kernel.call("throwsInStart", "which")).toBe("v1");
    expect(await t.kernel.call("throwsInStart", "get", "item/kiwi")).toEqual({ name: "kiwi", qty: 2 });
  });

  it("refuses with ERR_STORAGE_READONLY a new version whose restore and start go on: the swap commits, with no trace of their writes", async () => {
    const t = await start({ services });
    const before = await seed(t, "goesOn");
    const report = await t.kernel.swap("goesOn", V2);
    expect(report.outcome).toBe("committed");
    expect(await t.kernel.call("goesOn", "refused")).toEqual(["restore:ERR_STORAGE_READONLY", "start:ERR_STORAGE_READONLY"]);
    expect(t.store("goesOn").raw()).toEqual(before);
    // Behind the mailbox, the same version writes.
    await t.kernel.call("goesOn", "put", { key: "item/date", value: { label: "date", amount: { count: 4, unit: "pcs" } } });
    expect([...t.store("goesOn").raw().keys()]).toEqual(["item/date", "item/kiwi"]);
  });

  it("refuses the verified transfer's scratch copy of the old version: its restore's write leaves no trace", async () => {
    const t = await start({ services });
    const before = await seed(t, "scratch");
    const report = await t.kernel.swap("scratch", V2);
    expect(report.outcome).toBe("committed");
    // The scratch instance of v1 restored v2's dump (and tried to write) for this to be checked.
    expect(report.verify).toEqual({ ok: true });
    const after = t.store("scratch").raw();
    expect(after.has(traceKey("v1", "restore"))).toBe(false);
    expect(after).toEqual(before);
  });
});

describe("a failed probation", () => {
  it("goes back to v1 with the store as v2's committed messages left it, and v1 reads it", async () => {
    // A long window that the failures end early: the verdict does not depend on the machine's speed.
    const t = await start({ services: { shop: { entry: V1 } }, swap: { probationMs: 30_000, probationMaxErrors: 1 } });
    const store = t.store("shop");
    await t.kernel.call("shop", "put", { key: "item/apple", value: { name: "apple", qty: 3 } });
    expect(await t.kernel.call("shop", "get", "item/apple")).toEqual({ name: "apple", qty: 3 });
    const swapping = t.kernel.swap("shop", V2);
    await vi.waitFor(async () => expect(await t.kernel.call("shop", "which")).toBe("v2"), { timeout: 10_000, interval: 20 });
    await t.kernel.call("shop", "put", { key: "item/plum", value: { label: "plum", amount: { count: 7, unit: "kg" } } });
    await t.kernel.call("shop", "put", { key: "item/apple", value: { label: "apple", amount: { count: 4, unit: "pcs" } } });
    const committed = store.raw();
    for (const key of ["item/bad1", "item/bad2"]) await expect(t.kernel.call("shop", "fail", key)).rejects.toMatchObject({ code: "ERR_HANDLER" });
    const report = await swapping;
    expect(report).toMatchObject({ outcome: "rolled-back", error: { code: "ERR_SWAP_PROBATION" } });
    expect(await t.kernel.call("shop", "which")).toBe("v1");
    // The failed messages' writes never applied; the way back wrote nothing and copied nothing.
    expect(store.raw()).toEqual(committed);
    // The same v1 instance serves again: it must read what v2 wrote over the record it had read and cached.
    expect(await t.kernel.call("shop", "get", "item/apple")).toEqual({ name: "apple", qty: 4 });
    expect(await t.kernel.call("shop", "list", "item/")).toEqual({
      "item/apple": { name: "apple", qty: 4 },
      "item/plum": { name: "plum", qty: 7 },
    });
    expect(await t.kernel.call("shop", "writes")).toBe(3);
  });
});

describe("a service in a cell (isolation: process)", () => {
  it("reads and writes its storage, its reply waits at the output gate, and its data survives a restart", async () => {
    const config: MoltConfig = { services: { celled: { entry: V1, isolation: "process" } } };
    const first = await start(config);
    await first.kernel.call("celled", "put", { key: "item/one", value: { name: "one", qty: 1 } });
    expect(await first.kernel.call("celled", "get", "item/one")).toEqual({ name: "one", qty: 1 });

    // The gate held: the write is in the store, its reply is not out.
    const store = first.store("celled");
    let release = (): void => undefined;
    store.hold = new Promise<void>((resolve) => (release = resolve));
    let answered = false;
    const reply = first.kernel.call("celled", "put", { key: "item/two", value: { name: "two", qty: 2 } }).finally(() => (answered = true));
    await vi.waitFor(() => expect(store.heldAsks).toBeGreaterThan(0), { timeout: 10_000, interval: 20 });
    expect(store.raw().has("item/two")).toBe(true);
    expect(answered).toBe(false);
    release();
    store.hold = undefined;
    expect(await reply).toBe(2);

    // A cell boots in seconds: the verified transfer's scratch cell is left out.
    const swapped = await first.kernel.swap("celled", V2, { verify: false });
    expect(swapped.outcome).toBe("committed");
    expect(await first.kernel.call("celled", "get", "item/two")).toEqual({ label: "two", amount: { count: 2, unit: "pcs" } });
    await first.kernel.stop();
    running.splice(running.indexOf(first.kernel), 1);

    const second = await start(config, first.dataDir);
    expect(await second.kernel.call("celled", "which")).toBe("v2");
    expect(await second.kernel.call("celled", "list", "item/")).toEqual({
      "item/one": { label: "one", amount: { count: 1, unit: "pcs" } },
      "item/two": { label: "two", amount: { count: 2, unit: "pcs" } },
    });
  });
});
