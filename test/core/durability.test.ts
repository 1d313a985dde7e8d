import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Packr } from "msgpackr";
import { describe, expect, it } from "vitest";
import { Inventory } from "../../core/inventory.ts";
import { SnapshotStore } from "../../core/snapshots.ts";
import { eventually, rejection, startKernel } from "../support/kernel.ts";

/** The count in a counter-v1 dump ([DUMP_VERSION, stateVersion, { count }]). */
function countIn(dump: Uint8Array | undefined): number | undefined {
  if (dump === undefined) return undefined;
  const [, , state] = new Packr({ structuredClone: true }).unpack(dump) as [number, number, { count: number }];
  return state.count;
}

const services = { counter: { entry: "./swap/counter-v1.ts", bindings: { slow: "slow" } }, slow: { entry: "./probe.ts" } };

describe("durability", () => {
  it("uses the previous snapshot, with a log line, when the latest one is corrupt", async () => {
    const first = await startKernel({ services });
    const dataDir = first.kernel.config.dataDir;
    await first.kernel.call("counter", "incr", 3);
    await first.kernel.snapshot("counter");
    await first.kernel.call("counter", "incr", 4);
    await first.kernel.snapshot("counter");
    await first.kernel.stop(); // the stop writes a third snapshot (7); the one before it (7) is kept as .prev
    const path = join(dataDir, "snapshots", "counter.msgpack");
    const bytes = readFileSync(path);
    // Flip bytes in the middle: the checksum no longer matches.
    const mid = Math.floor(bytes.length / 2);
    bytes.writeUInt16BE(bytes.readUInt16BE(mid) ^ 0xffff, mid);
    writeFileSync(path, bytes);

    const second = await startKernel({ services, dataDir });
    try {
      expect(await second.kernel.call("counter", "get")).toBe(7);
      expect(second.logs.some((l) => l.msg === "snapshot corrupt; using the previous one" && l.service === "counter")).toBe(true);
    } finally {
      await second.kernel.stop();
    }
  });

  it("starts from init, with a log line, when no snapshot is readable, and from a truncated inventory's previous copy", async () => {
    const first = await startKernel({ services });
    const dataDir = first.kernel.config.dataDir;
    await first.kernel.call("counter", "incr", 1);
    await first.kernel.swap("counter", `${first.kernel.config.dir}/swap/counter-v2.ts`);
    await first.kernel.stop();
    // The inventory's base and its previous copy, as a runtime that has compacted its log twice leaves them.
    const written = Inventory.open(dataDir);
    await written.compact();
    await written.compact();
    for (const f of readdirSync(join(dataDir, "snapshots")).filter((f) => f.startsWith("counter"))) writeFileSync(join(dataDir, "snapshots", f), "garbage");
    const inventory = join(dataDir, "inventory.msgpack");
    writeFileSync(inventory, readFileSync(inventory).subarray(0, 10));

    const logs: Record<string, unknown>[] = [];
    const recovered = Inventory.open(dataDir, { log: (level, msg, fields) => logs.push({ level, msg, ...fields }) });
    expect(logs.some((l) => l.msg === "inventory file corrupt; using the previous copy")).toBe(true);
    expect(recovered.history("counter")).toEqual(written.history("counter"));

    const second = await startKernel({ services, dataDir });
    try {
      expect(second.logs.some((l) => l.msg === "no readable snapshot; starting from init" && l.service === "counter")).toBe(true);
      expect(await second.kernel.call("counter", "get")).toBe(0);
    } finally {
      await second.kernel.stop();
    }
  });

  it("writes periodic snapshots every snapshot.everyMs", async () => {
    const t = await startKernel({ services, snapshot: { everyMs: 50 } });
    try {
      await t.kernel.call("counter", "incr", 9);
      // The state after the call, so not a snapshot written before it.
      await eventually(() => expect(countIn(new SnapshotStore(t.kernel.config.dataDir).read("counter")?.dump)).toBe(9));
    } finally {
      await t.kernel.stop();
    }
  });

  it("records a crash and the restart in the inventory and status", async () => {
    const t = await startKernel({ services: { p: { entry: "./probe.ts", limits: { memoryMb: 16 } } } });
    try {
      expect((await rejection(t.kernel.call("p", "hog"))).code).toBe("ERR_OOM");
      await eventually(() => t.kernel.call("p", "echo", 1));
      expect(t.kernel.history("p").at(-1)).toMatchObject({ via: "restart", outcome: "live", replacedAt: null, code: "ERR_OOM" });
      expect(t.kernel.status().find((s) => s.name === "p")?.restarts).toBe(1);
    } finally {
      await t.kernel.stop();
    }
  });
});
