// bench:inventory — what recording a swap in the inventory costs as the
// history grows. A committed swap makes two inventory writes (swap.ts: the
// old record replaced and the new one added; then the new one's phases once
// probation ends), each awaited here so that every swap is on disk before
// the next one starts.
//
// - the append-only log (core/inventory.ts now): 10,000 swaps on one
//   inventory, every swap timed, compactions included;
// - the whole-file rewrite it replaced (core/inventory.ts at OLD_COMMIT,
//   taken from git into a temporary file in the same run): its cost grows
//   with the history, so it is timed in windows at 1,000 and 10,000 records
//   (the history filled in memory first) and its total is estimated from them.
//
//   node --no-node-snapshot --import tsx bench/inventory.ts      (BENCH_QUICK=1: 2,000 swaps)

import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { Inventory, Outcome, Via, type VersionRecord } from "../core/inventory.ts";
import { printTable } from "./lib/stats.ts";
import { barChart } from "./lib/svg.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const QUICK = process.env.BENCH_QUICK === "1";
const SWAPS = QUICK ? 2_000 : 10_000;
/** The history sizes reported, and the swaps around each that are averaged. */
const AT = QUICK ? [1_000, 2_000] : [1_000, 10_000];
const WINDOW = 200;
/** The last commit whose inventory rewrote one whole file. */
const OLD_COMMIT = "cd58c3d7488db0300d538086266209cfbea28249";

/** What both implementations offer and a swap uses. */
interface Recorder {
  current(service: string): Readonly<VersionRecord> | undefined;
  add(record: Omit<VersionRecord, "seq">): Readonly<VersionRecord>;
  update(record: Readonly<VersionRecord>, fields: Partial<VersionRecord>): void;
  replaced(service: string, at: string): void;
  save(): Promise<void>;
}

/** Records swap number `n` going live, as swap.ts does; returns its record. */
function commit(inventory: Recorder, n: number, phases: Record<string, number>): Readonly<VersionRecord> {
  const now = new Date().toISOString();
  const parent = inventory.current("counter")?.version ?? null;
  inventory.replaced("counter", now);
  return inventory.add({
    service: "counter",
    version: `${n.toString(16).padStart(8, "0")}${"0".repeat(56)}`,
    semver: `1.${n}.0`,
    stateVersion: 1,
    entry: "/srv/molt/services/counter/index.ts",
    parent,
    via: Via.SWAP,
    requestedAt: now,
    startedAt: now,
    replacedAt: null,
    outcome: Outcome.LIVE,
    phases,
    blackoutMs: 0.61,
  });
}

const PHASES = { prepare: 3.1, quiesce: 0.2, dump: 0.1, restore: 0.3, cutover: 0.01 };

/** One committed swap, as swap.ts records it (two writes: at commit, then the phase times). Returns the wall and CPU ms it cost. */
async function swap(inventory: Recorder, n: number): Promise<{ wall: number; cpu: number }> {
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const committed = commit(inventory, n, PHASES);
  await inventory.save();
  inventory.update(committed, { phases: { ...PHASES, commit: 12.5 } });
  await inventory.save();
  const cpu = process.cpuUsage(cpu0);
  return { wall: performance.now() - t0, cpu: (cpu.user + cpu.system) / 1000 };
}

function mean(values: readonly number[]): number {
  return values.reduce((a, b) => a + b, 0) / Math.max(1, values.length);
}

const round = (x: number, digits = 3): number => Math.round(x * 10 ** digits) / 10 ** digits;

async function measureLog(): Promise<{ perSwap: { wall: number; cpu: number }[]; totalMs: number; compactions: number }> {
  const dir = mkdtempSync(join(tmpdir(), "molt-bench-inventory-"));
  try {
    const inventory = Inventory.open(dir);
    const perSwap: { wall: number; cpu: number }[] = [];
    let compactions = 0;
    let frames = 0;
    const t0 = performance.now();
    for (let n = 1; n <= SWAPS; n++) {
      perSwap.push(await swap(inventory, n));
      if (inventory.logFrames < frames) compactions++;
      frames = inventory.logFrames;
    }
    const totalMs = performance.now() - t0;
    // The check that makes the figures mean something: everything is there after a reload.
    const reloaded = Inventory.open(dir);
    if (reloaded.history("counter").length !== SWAPS) throw new Error(`reload found ${reloaded.history("counter").length} records, not ${SWAPS}`);
    return { perSwap, totalMs, compactions };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The previous inventory.ts, from git, importing today's disk.ts (which only gained functions since). */
async function loadOldInventory(): Promise<{ open(dataDir: string): Recorder } | undefined> {
  let source: string;
  try {
    source = execFileSync("git", ["show", `${OLD_COMMIT}:core/inventory.ts`], { cwd: ROOT, encoding: "utf8" });
  } catch {
    return undefined;
  }
  const dir = mkdtempSync(join(tmpdir(), "molt-bench-old-inventory-"));
  const path = join(dir, "old-inventory.mts");
  writeFileSync(
    path,
    source
      .replace(`from "./disk.ts"`, `from ${JSON.stringify(pathToFileURL(join(ROOT, "core/disk.ts")).href)}`)
      .replace(`from "./log.ts"`, `from ${JSON.stringify(pathToFileURL(join(ROOT, "core/log.ts")).href)}`),
  );
  type Old = Omit<Recorder, "update">;
  const module = (await import(pathToFileURL(path).href)) as { Inventory: { open(dataDir: string): Old } };
  // It had no update(): its callers changed records in place.
  return {
    open: (dataDir) =>
      Object.assign(module.Inventory.open(dataDir), {
        update: (record: Readonly<VersionRecord>, fields: Partial<VersionRecord>) => Object.assign(record, fields),
      }),
  };
}

async function measureOld(old: { open(dataDir: string): Recorder }, history: number): Promise<{ wall: number; cpu: number }> {
  const dir = mkdtempSync(join(tmpdir(), "molt-bench-inventory-old-"));
  try {
    const inventory = old.open(dir);
    // The history as it stands after `history` swaps, built in memory and written once.
    for (let n = 1; n < history - WINDOW / 2; n++) commit(inventory, n, { ...PHASES, commit: 12.5 });
    await inventory.save();
    const samples: { wall: number; cpu: number }[] = [];
    for (let n = history - WINDOW / 2; n < history + WINDOW / 2; n++) samples.push(await swap(inventory, n));
    return { wall: mean(samples.map((s) => s.wall)), cpu: mean(samples.map((s) => s.cpu)) };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const log = await measureLog();
  const around = (at: number): { wall: number; cpu: number } => {
    const window = log.perSwap.slice(Math.max(0, at - WINDOW / 2 - 1), Math.min(log.perSwap.length, at + WINDOW / 2 - 1));
    return { wall: mean(window.map((s) => s.wall)), cpu: mean(window.map((s) => s.cpu)) };
  };
  const rows: { history: number; log: { wall: number; cpu: number }; old?: { wall: number; cpu: number } }[] = AT.map((history) => ({ history, log: around(history) }));

  const old = await loadOldInventory();
  if (old === undefined) console.log(`(git show ${OLD_COMMIT}:core/inventory.ts failed: the whole-file rewrite is not measured)`);
  else for (const row of rows) row.old = await measureOld(old, row.history);

  printTable(
    ["history", "log ms/swap", "log cpu ms/swap", "rewrite ms/swap", "rewrite cpu ms/swap", "ratio"],
    rows.map((r) => [
      r.history,
      round(r.log.wall),
      round(r.log.cpu),
      r.old === undefined ? "—" : round(r.old.wall),
      r.old === undefined ? "—" : round(r.old.cpu),
      r.old === undefined ? "—" : `${round(r.old.wall / r.log.wall, 1)}×`,
    ]),
  );
  // The rewrite's cost per swap is close to linear in the history: a + b·n, summed over the run.
  const [low, high] = rows;
  let oldTotalEstimateMs: number | undefined;
  if (low?.old !== undefined && high?.old !== undefined) {
    const b = (high.old.wall - low.old.wall) / (high.history - low.history);
    const a = low.old.wall - b * low.history;
    oldTotalEstimateMs = a * SWAPS + (b * SWAPS * (SWAPS + 1)) / 2;
  }
  console.log(
    `\n${SWAPS} swaps with the log: ${round(log.totalMs / 1000, 2)} s in all (${log.compactions} compactions)` +
      (oldTotalEstimateMs === undefined ? "" : `; with the rewrite, estimated from the two windows: ${round(oldTotalEstimateMs / 1000, 1)} s`),
  );

  mkdirSync(join(ROOT, "bench/results"), { recursive: true });
  const result = {
    swaps: SWAPS,
    window: WINDOW,
    rows: rows.map((r) => ({
      history: r.history,
      log_ms_per_swap: round(r.log.wall),
      log_cpu_ms_per_swap: round(r.log.cpu),
      ...(r.old === undefined ? {} : { rewrite_ms_per_swap: round(r.old.wall), rewrite_cpu_ms_per_swap: round(r.old.cpu) }),
    })),
    log_total_s: round(log.totalMs / 1000, 2),
    log_compactions: log.compactions,
    ...(oldTotalEstimateMs === undefined ? {} : { rewrite_total_s_estimated: round(oldTotalEstimateMs / 1000, 1) }),
    old_commit: OLD_COMMIT,
    date: new Date().toISOString(),
    node: process.version,
  };
  writeFileSync(join(ROOT, "bench/results/inventory.json"), `${JSON.stringify(result, null, 2)}\n`);
  writeFileSync(
    join(ROOT, "bench/results/inventory.svg"),
    barChart(
      "Recording one swap in the inventory (two durable writes), by history size",
      "ms per swap",
      rows.map((r) => ({
        label: `${r.history.toLocaleString("en")} records`,
        bars: [{ series: "append-only log", value: r.log.wall }, ...(r.old === undefined ? [] : [{ series: "whole-file rewrite", value: r.old.wall }])],
      })),
    ),
  );
  console.log("wrote bench/results/inventory.json and bench/results/inventory.svg");
}

await main();
