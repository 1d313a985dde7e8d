// Issue 16, molt upgrading its own kernel: one real `molt run`, started from
// a copy of the molt package so that a test can edit the kernel's code as a
// `git pull` would, taken through one story: an upgrade under HTTP load after
// a file under core/ changed; an upgrade whose new runtime cannot boot, after
// which the old one serves on; a SIGKILL of the upgraded runtime; and the
// kernel chain those leave, as `molt history --kernel` prints it. The tests
// run in order on the same keeper, each starting from where the last ended.
// Counts and codes are asserted, never timings.

import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import type { KernelRecord } from "../../protocol/admin.ts";
import { alive, copyMolt, counted, killKeepers, request, snapshotCount, startKeeper, touchKernelFile, type RunningKeeper, type UpgradeAnswer } from "../support/keeper.ts";
import { startLoad, type LoadResult } from "../support/load.ts";
import { FIXTURES, runCli } from "../support/runtime.ts";

const COUNTER = join(FIXTURES, "keeper", "counter.ts");
const WAIT = { timeout: 60_000, interval: 200 };

let molt: string;
let k: RunningKeeper;

beforeAll(async () => {
  molt = copyMolt();
  k = await startKeeper({ services: { counter: { entry: COUNTER } }, http: { port: 0, service: "counter" }, snapshot: { everyMs: 200 } }, molt);
}, 90_000);
afterAll(async () => {
  await killKeepers();
  rmSync(dirname(molt), { recursive: true, force: true });
});

/**
 * An upgrade asked while eight keep-alive clients POST to the counter in a
 * loop, `ok` answers before it and `ok` after; also the boot ids of the
 * runtimes that answered.
 */
async function upgradeUnderLoad(ok: number): Promise<{ answer: UpgradeAnswer; result: LoadResult; boots: Set<string> }> {
  const boots = new Set<string>();
  const gen = startLoad({ url: k.url, clients: 8, maxDurationMs: 120_000, onOk: (r) => boots.add(counted(r.body).boot) });
  try {
    await gen.moreOk(ok);
    const answer = await k.upgrade();
    await gen.moreOk(ok);
    return { answer, result: await gen.stop(), boots };
  } finally {
    await gen.stop();
  }
}

function expectEveryRequestAnswered(result: LoadResult): void {
  const detail = JSON.stringify({ failuresByKind: result.failuresByKind, first: result.failed.slice(0, 3) });
  expect(result.failed, detail).toEqual([]);
  expect(result.lost).toBe(0);
  expect(result.answered).toBe(result.sent);
  expect(result.ok).toBe(result.sent);
}

async function count(): Promise<number> {
  return counted((await request(k.url)).body).count;
}

describe("molt upgrades its own kernel", () => {
  it("upgrades under HTTP load after a kernel file changed: a new version and pid, no request failed, every count kept", async () => {
    const before = await k.status();
    expect(before.kernel.upgrades).toBe(0);
    touchKernelFile(molt, "core/kernel.ts");
    const { answer, result, boots } = await upgradeUnderLoad(200);
    expect(answer.error).toBeUndefined();
    const report = answer.report;
    expect(report).toBeDefined();
    if (report === undefined) return;
    expect(answer.phases).toEqual(["boot", "drain", "dump", "handover", "restore", "sockets"]);
    expect(report.from).toEqual({ version: before.kernel.version, semver: before.kernel.semver, pid: before.kernel.pid });
    expect(report.to.version).not.toBe(report.from.version);
    expect(report.to.pid).not.toBe(report.from.pid);
    expect(report.services).toBe(1);

    // 0 failed requests, and the counter holds every acknowledged increment: its state crossed over whole.
    expectEveryRequestAnswered(result);
    expect(await count()).toBe(result.okByMethod.POST);
    // Both runtimes answered the load: the upgrade happened under it.
    expect(boots.size).toBe(2);
    console.log(`[upgrade] ${result.ok} requests, 0 failed, blackout ${report.blackoutMs} ms`);

    const after = await k.status();
    expect(after.kernel).toMatchObject({ version: report.to.version, pid: report.to.pid, upgrades: 1, restarts: 0 });
    // The old runtime lets its last connections go and exits.
    await vi.waitFor(() => expect(alive(report.from.pid)).toBe(false), WAIT);
  }, 150_000);

  it("keeps the old runtime serving, state and all, when the new one cannot boot; the command exits 1 with ERR_KERNEL_UPGRADE_BOOT", async () => {
    const before = await k.status();
    const counted0 = await count();
    const entry = join(molt, "cli", "runtime.ts");
    const original = readFileSync(entry, "utf8");
    writeFileSync(entry, `${original}\nthrow new Error("a runtime that cannot boot, on purpose");\n`);
    try {
      const { answer, result, boots } = await upgradeUnderLoad(100);
      expect(answer.error?.code).toBe("ERR_KERNEL_UPGRADE_BOOT");
      expect(answer.report).toBeUndefined();
      // The old runtime never stopped serving: the same process, every request answered, every count kept.
      expectEveryRequestAnswered(result);
      expect(boots.size).toBe(1);
      expect(await count()).toBe(counted0 + (result.okByMethod.POST ?? 0));
      const after = await k.status();
      expect(after.kernel).toMatchObject({ version: before.kernel.version, pid: before.kernel.pid, upgrades: 1, restarts: 0 });

      // The failed attempt is in the chain, on the runtime that kept serving.
      const live = (await k.kernelHistory()).at(-1);
      expect(live?.pid).toBe(before.kernel.pid);
      expect(live?.failedUpgrades.map((f) => f.code)).toEqual(["ERR_KERNEL_UPGRADE_BOOT"]);
      expect(live?.failedUpgrades[0]?.tried.version).not.toBe(before.kernel.version);

      // The command a user runs says the same, and exits 1.
      const cli = await runCli(["upgrade", "--config", k.configPath]);
      expect(cli.code, cli.stdout + cli.stderr).toBe(1);
      expect(cli.stdout + cli.stderr).toMatch(/ERR_KERNEL_UPGRADE_BOOT/);
      expect((await k.status()).kernel.pid).toBe(before.kernel.pid);
    } finally {
      writeFileSync(entry, original);
    }
  }, 150_000);

  it("shows the chain in molt history --kernel: start, upgrade, restart, each linked to its parent", async () => {
    const before = await k.status();
    const final = await count();
    // Resumed from the snapshots: wait for one that holds every count, so the restart must come back to it.
    await vi.waitFor(() => expect(snapshotCount(k.dataDir, "counter")).toBe(final), WAIT);
    process.kill(before.kernel.pid, "SIGKILL");
    await vi.waitFor(async () => expect((await k.status()).kernel.pid).not.toBe(before.kernel.pid), WAIT);
    expect(await count()).toBe(final);
    const status = await k.status();
    expect(status.kernel).toMatchObject({ upgrades: 1, restarts: 1 });

    const out = await runCli(["history", "--kernel", "--json", "--config", k.configPath]);
    expect(out.code, out.stderr).toBe(0);
    const chain = (JSON.parse(out.stdout) as { kernel: KernelRecord[] }).kernel;
    expect(chain.map((r) => [r.via, r.outcome])).toEqual([
      ["start", "replaced"],
      ["upgrade", "crashed"],
      ["restart", "live"],
    ]);
    const [start, upgraded, restarted] = chain as [KernelRecord, KernelRecord, KernelRecord];
    expect(start.parent).toBeNull();
    expect(upgraded.parent).toBe(start.version);
    expect(restarted.parent).toBe(upgraded.version);
    // The upgrade changed the code; the restart ran the same code again.
    expect(upgraded.version).not.toBe(start.version);
    expect(restarted.version).toBe(upgraded.version);
    expect(new Set(chain.map((r) => r.pid)).size).toBe(3);
    expect(restarted.pid).toBe(status.kernel.pid);
    expect(upgraded.failedUpgrades.map((f) => f.code)).toEqual(["ERR_KERNEL_UPGRADE_BOOT", "ERR_KERNEL_UPGRADE_BOOT"]);
    for (const r of [start, upgraded]) expect(r.replacedAt).not.toBeNull();

    // The table a user reads names each way a runtime came.
    const table = await runCli(["history", "--kernel", "--config", k.configPath]);
    expect(table.code, table.stderr).toBe(0);
    for (const via of ["start", "upgrade", "restart"]) expect(table.stdout).toContain(via);
  }, 150_000);

  it("stops on Ctrl-C with exit 0, no runtime left behind", async () => {
    const chain = await k.kernelHistory();
    expect(await k.stop("SIGINT")).toBe(0);
    expect(k.stdout()).toMatch(/molt: stopped/);
    for (const r of chain) expect(alive(r.pid), `pid ${r.pid} (${r.via})`).toBe(false);
  }, 60_000);
});
