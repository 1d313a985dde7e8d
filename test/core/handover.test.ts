// Handing every service over to another runtime (core/handover.ts,
// Kernel.prepare/activate/handOut): two kernels on one dataDir play the old
// and the new runtime of a kernel upgrade, in one process.

import { mkdtempSync, readdirSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it, vi } from "vitest";
import { resolveConfig } from "../../core/config.ts";
import { Kernel } from "../../core/kernel.ts";
import { lmdbStorage } from "../../core/lmdb-store.ts";
import { localBoot } from "../../core/local-boot.ts";
import { rejection } from "../support/kernel.ts";
import { FIXTURES } from "../support/runtime.ts";

const quiet = { log: () => undefined };
const kernels: Kernel[] = [];

function kernelOn(dataDir: string, snapshotEveryMs = 0): Kernel {
  const config = resolveConfig(
    { dataDir, snapshot: { everyMs: snapshotEveryMs }, services: { a: { entry: "./handover.ts" }, b: { entry: "./handover.ts", concurrency: 4 } } },
    FIXTURES,
  );
  const kernel = new Kernel(config, { boot: localBoot, log: quiet, storage: lmdbStorage(config.dataDir, quiet) });
  kernels.push(kernel);
  return kernel;
}

/** Every file under `dir` with its size and modification time: what "writes nothing" is checked against. */
function files(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const entry of readdirSync(dir, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile()) continue;
    const path = join(entry.parentPath, entry.name);
    const s = statSync(path);
    out[path] = `${s.size}:${s.mtimeMs}`;
  }
  return out;
}

type Seen = { count: number; starts: number; stops: number };

afterEach(async () => {
  for (const k of kernels.splice(0)) await k.stop().catch(() => undefined);
});

describe("a kernel handing its services to another", () => {
  it("carries every service's state to a kernel that prepared while the first served, and that kernel wrote nothing before", async () => {
    const dataDir = mkdtempSync(join(tmpdir(), "molt-handover-"));
    const old = kernelOn(dataDir);
    await old.start();
    for (let i = 0; i < 3; i++) await old.call("a", "incr");
    await old.call("b", "incr");
    const before = files(dataDir);
    const next = kernelOn(dataDir);
    await next.prepare();
    expect(files(dataDir)).toEqual(before);
    // Still the old one's: it serves while the new one prepares.
    expect(await old.call("a", "incr")).toBe(4);

    const out = await old.handOut(5000);
    expect(out.states.map((s) => s.service).sort()).toEqual(["a", "b"]);
    await next.activate(out.states);
    await out.retire();
    expect(((await next.call("a", "get")) as Seen).count).toBe(4);
    expect(((await next.call("b", "get")) as Seen).count).toBe(1);
    // The old instance ran its stop on the way out; the new one its start on the way in.
    expect(((await next.call("a", "get")) as Seen).stops).toBe(1);
    expect(((await next.call("a", "get")) as Seen).starts).toBe(2);
  });

  it("waits for the messages in flight (and queued) before it dumps, so none is lost or answered twice", async () => {
    const dataDir = mkdtempSync(join(tmpdir(), "molt-handover-"));
    const old = kernelOn(dataDir);
    await old.start();
    const slow = [old.call("b", "slowIncr", 150), old.call("b", "slowIncr", 100), old.call("a", "slowIncr", 120), old.call("a", "incr")];
    const out = await old.handOut(5000);
    expect((await Promise.all(slow)).length).toBe(4);
    const next = kernelOn(dataDir);
    await next.prepare();
    await next.activate(out.states);
    await out.retire();
    expect(((await next.call("a", "get")) as Seen).count).toBe(2);
    expect(((await next.call("b", "get")) as Seen).count).toBe(2);
  });

  it("serves again as before when the other kernel does not take over (resume), with what was sent meanwhile", async () => {
    const dataDir = mkdtempSync(join(tmpdir(), "molt-handover-"));
    const old = kernelOn(dataDir);
    await old.start();
    await old.call("a", "incr");
    const out = await old.handOut(5000);
    // Held, not refused: it is answered once the hand-out ends.
    const meanwhile = old.call("a", "incr");
    await out.resume();
    expect(await meanwhile).toBe(2);
    const seen = (await old.call("a", "get")) as Seen;
    expect(seen).toMatchObject({ count: 2, stops: 1, starts: 2 });
  });

  it("refuses with ERR_KERNEL_UPGRADE_DUMP when a service cannot dump, and every service serves on, started again", async () => {
    const dataDir = mkdtempSync(join(tmpdir(), "molt-handover-"));
    const old = kernelOn(dataDir);
    await old.start();
    await old.call("b", "failNextDump");
    await old.call("a", "incr");
    expect((await rejection(old.handOut(5000))).code).toBe("ERR_KERNEL_UPGRADE_DUMP");
    expect(await old.call("a", "incr")).toBe(2);
    // a dumped (and stopped) before b refused: it was started again.
    const a = (await old.call("a", "get")) as Seen;
    expect(a.stops).toBe(a.starts - 1);
    await old.call("b", "failNextDump", false);
    // The next hand-out goes through.
    const out = await old.handOut(5000);
    expect(out.states).toHaveLength(2);
    await out.resume();
  });

  it("takes periodic snapshots again after a refused hand-out", async () => {
    const dataDir = mkdtempSync(join(tmpdir(), "molt-handover-"));
    const old = kernelOn(dataDir, 50);
    await old.start();
    await old.call("b", "failNextDump");
    expect((await rejection(old.handOut(5000))).code).toBe("ERR_KERNEL_UPGRADE_DUMP");
    const snapshots = join(dataDir, "snapshots");
    const newest = (): number => Math.max(0, ...readdirSync(snapshots).map((f) => statSync(join(snapshots, f)).mtimeMs));
    const after = Date.now();
    await vi.waitFor(() => expect(newest()).toBeGreaterThan(after), { timeout: 5000, interval: 50 });
  });

  it("refuses a swap during a hand-out, and a second hand-out, with ERR_KERNEL_UPGRADE_BUSY", async () => {
    const dataDir = mkdtempSync(join(tmpdir(), "molt-handover-"));
    const old = kernelOn(dataDir);
    await old.start();
    const out = await old.handOut(5000);
    expect((await rejection(old.swap("a", join(FIXTURES, "handover.ts")))).code).toBe("ERR_KERNEL_UPGRADE_BUSY");
    expect((await rejection(old.handOut(5000))).code).toBe("ERR_KERNEL_UPGRADE_BUSY");
    await out.resume();
  });

  it("gives up with ERR_KERNEL_UPGRADE_DRAIN when a message outlasts the deadline, and serves on", async () => {
    const dataDir = mkdtempSync(join(tmpdir(), "molt-handover-"));
    const old = kernelOn(dataDir);
    await old.start();
    const slow = old.call("a", "slowIncr", 400);
    expect((await rejection(old.handOut(50))).code).toBe("ERR_KERNEL_UPGRADE_DRAIN");
    expect(await slow).toBe(1);
    expect(await old.call("a", "incr")).toBe(2);
  });
});
