// bench:storage — what ctx.storage costs, on LMDB (core/lmdb-store.ts) in a
// kernel started in-process:
//
// 1. get latency inside an isolate: a handler loops over `await
//    ctx.storage.get(key)`, timing each get with performance.now(), for
//    keys in the instance's record cache (hits) and keys it never read
//    (misses: a fresh instance after a swap, whose cache is empty). A miss
//    is one synchronous crossing to the kernel's thread and an LMDB read.
// 2. put throughput behind the output gate: C callers in a closed loop of
//    `kernel.call` into a handler that does one put of ~100 bytes; a put
//    counts once its reply arrives, and the reply is held until the write is
//    on disk. Beside it, the same loop into a handler that writes nothing.
// 3. swap blackouts of one small in-heap state whose storage holds nothing,
//    100 MiB or 1 GiB, swapped back and forth in turn under 8 callers.
//
//   npm run bench:storage            (BENCH_QUICK=1 for a short run, without the 1 GiB case)

import { closeSync, fdatasyncSync, mkdirSync, mkdtempSync, openSync, readdirSync, rmSync, statSync, writeFileSync, writeSync } from "node:fs";
import { cpus, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { open } from "lmdb";
import { resolveConfig } from "../core/config.ts";
import { toMoltError } from "../core/errors.ts";
import { Kernel } from "../core/kernel.ts";
import { lmdbStorage } from "../core/lmdb-store.ts";
import { localBoot } from "../core/local-boot.ts";
import { printTable, summarize, type Summary } from "./lib/stats.ts";
import { barChart } from "./lib/svg.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const QUICK = process.env.BENCH_QUICK === "1";
const ENTRIES = [join(ROOT, "bench/services/stored-v2.ts"), join(ROOT, "bench/services/stored.ts")];

const GET_KEYS = QUICK ? 2_000 : 20_000;
const GET_ROUNDS = QUICK ? 2 : 3;
const WARM_KEYS = 1_000;
// 1024 callers: whether more puts in flight than the service's concurrency still share commits.
const PUT_CALLERS = QUICK ? [64, 256] : [64, 256, 1024];
const PUT_SECONDS = QUICK ? 2 : 5;
const PUT_WARMUP_SECONDS = 1;
const FSYNCS = QUICK ? 50 : 200;
const SWAP_CALLERS = 8;
const SWAPS_PER_CASE = QUICK ? 8 : 40;
const BLOB_BYTES = 1 << 20;
const BLOBS_PER_COMMIT = 16;
const SWAP_CASES = [
  { service: "empty", mib: 0 },
  { service: "stored100m", mib: 100 },
  ...(QUICK ? [] : [{ service: "stored1g", mib: 1024 }]),
];

const dir = mkdtempSync(join(tmpdir(), "molt-bench-storage-"));
const started = performance.now();
const loadAtStart = loadavg().map((x) => round(x, 2));

const storedService = (extra: Record<string, unknown>): Record<string, unknown> => ({ entry: ENTRIES[1], queue: 100_000, ...extra });
const services: Record<string, unknown> = {
  reads: storedService({ limits: { timeoutMs: 600_000 } }),
  writes: storedService({ concurrency: 256, limits: { timeoutMs: 60_000 } }),
};
for (const { service } of SWAP_CASES) {
  // 1 GiB of 1 MiB values, plus keys and record headers, passes the default quota of 1024 MiB.
  services[service] = storedService({ limits: { memoryMb: 512, storageMb: 2048, maxMessageBytes: 8 << 20, timeoutMs: 600_000 } });
}
const config = resolveConfig({ services, dataDir: join(dir, "data") } as never, ROOT);
const log = {
  log: (level: string, msg: string, fields?: Record<string, unknown>): void => {
    if (level === "error" || level === "warn") console.error(`kernel ${level}: ${msg} ${JSON.stringify(fields ?? {})}`);
  },
};
const kernel = new Kernel(config, { boot: localBoot, log, storage: lmdbStorage(config.dataDir, log) });

/** Each service's version on the next swap: they alternate between v2 and v1. */
const swapsDone = new Map<string, number>();

async function swapOnce(service: string): Promise<{ blackoutMs: number; phases: Record<string, number> }> {
  const n = swapsDone.get(service) ?? 0;
  swapsDone.set(service, n + 1);
  const report = await kernel.swap(service, ENTRIES[n % 2] as string);
  if (report.outcome !== "committed" || report.blackoutMs === null) throw new Error(`swap ${n} of ${service} ended ${report.outcome}: ${JSON.stringify(report.error)}`);
  return { blackoutMs: report.blackoutMs, phases: report.phases as Record<string, number> };
}

interface GetPass {
  samples: number[];
  clock: number[];
  elapsed: number;
}

interface GetCase {
  gets: number;
  /** Each get timed on its own, the clock's crossings included. */
  per_get_us: Summary;
  /** p50 of a get less p50 of an empty pair of clock reads: the get alone, by estimate. */
  per_get_p50_less_clock_us: number;
  /** A whole pass timed as one block, over the number of gets: the mean with no clock inside. */
  mean_untimed_us: number;
}

async function getLatency(): Promise<{ hit: GetCase; miss: GetCase; clock_us: Summary; keys: number; rounds: number }> {
  await kernel.call("reads", "seed", { prefix: "w/", count: WARM_KEYS });
  await kernel.call("reads", "seed", { prefix: "k/", count: GET_KEYS });
  const passes = { hit: [] as GetPass[], miss: [] as GetPass[] };
  const blocks = { hit: [] as number[], miss: [] as number[] };
  for (let round = 0; round < GET_ROUNDS; round++) {
    // A swap puts a fresh instance behind the mailbox, and an instance empties its cache when it goes live.
    await swapOnce("reads");
    // Warms the read path's code in the new isolate on other keys, so that the first pass is not also the JIT's first.
    await kernel.call("reads", "gets", { prefix: "w/", count: WARM_KEYS });
    passes.miss.push((await kernel.call("reads", "gets", { prefix: "k/", count: GET_KEYS })) as GetPass);
    passes.hit.push((await kernel.call("reads", "gets", { prefix: "k/", count: GET_KEYS })) as GetPass);
    await swapOnce("reads");
    await kernel.call("reads", "getsBlock", { prefix: "w/", count: WARM_KEYS });
    blocks.miss.push((await kernel.call("reads", "getsBlock", { prefix: "k/", count: GET_KEYS })) as number);
    blocks.hit.push((await kernel.call("reads", "getsBlock", { prefix: "k/", count: GET_KEYS })) as number);
    console.log(`  get round ${round + 1}/${GET_ROUNDS} done`);
  }
  const clockMs = [...passes.hit, ...passes.miss].flatMap((p) => p.clock);
  const clock = summarize(clockMs.map(us), 2);
  const summarizeCase = (mine: GetPass[], block: number[]): GetCase => {
    const perGet = summarize(mine.flatMap((p) => p.samples).map(us), 2);
    return {
      gets: mine.length * GET_KEYS,
      per_get_us: perGet,
      per_get_p50_less_clock_us: round(perGet.p50 - clock.p50, 2),
      mean_untimed_us: round(us(block.reduce((a, b) => a + b, 0) / (block.length * GET_KEYS)), 2),
    };
  };
  return { hit: summarizeCase(passes.hit, blocks.hit), miss: summarizeCase(passes.miss, blocks.miss), clock_us: clock, keys: GET_KEYS, rounds: GET_ROUNDS };
}

interface LoopResult {
  calls: number;
  failed: number;
  seconds: number;
  latencies: number[];
}

/** `callers` closed loops of `once` for `seconds`; each records how long each took. */
async function closedLoop(callers: number, seconds: number, once: (caller: number, i: number) => Promise<unknown>): Promise<LoopResult> {
  const latencies: number[] = [];
  let failed = 0;
  const t0 = performance.now();
  const end = t0 + seconds * 1000;
  await Promise.all(
    Array.from({ length: callers }, async (_, caller) => {
      for (let i = 0; performance.now() < end; i++) {
        const a = performance.now();
        try {
          await once(caller, i);
          latencies.push(performance.now() - a);
        } catch (err) {
          failed++;
          if (failed === 1) console.error(`  first failure: ${toMoltError(err).code} ${String(err)}`);
        }
      }
    }),
  );
  return { calls: latencies.length, failed, seconds: (performance.now() - t0) / 1000, latencies };
}

interface PutRow {
  callers: number;
  handler: "put" | "nop" | "lmdb";
  acknowledged: number;
  failed: number;
  per_s: number;
  reply_ms: Summary;
}

/**
 * Acknowledged puts through molt beside the same messages writing nothing,
 * and the floor under both: the same closed loop of puts straight into
 * lmdb-js, opened as core/lmdb-store.ts opens a store, in this process.
 */
async function putThroughput(): Promise<PutRow[]> {
  const floorEnv = open({ path: join(dir, "floor.mdb"), overlappingSync: false, maxDbs: 4, mapSize: 1 << 30 });
  const floorDb = floorEnv.openDB<Uint8Array, Uint8Array>({ name: "data", encoding: "binary", keyEncoding: "binary" });
  // About what the store writes for one put: a record header and a ~100-byte value.
  const value = Buffer.alloc(104, 0x76);
  const rows: PutRow[] = [];
  let run = 0;
  for (const callers of PUT_CALLERS) {
    for (const handler of ["nop", "put", "lmdb"] as const) {
      const prefix = `p${run++}/`;
      const once = (key: string): Promise<unknown> =>
        handler === "lmdb" ? floorDb.put(Buffer.from(key), value) : kernel.call("writes", handler, key);
      await closedLoop(callers, PUT_WARMUP_SECONDS, (c, i) => once(`${prefix}${c}/${i}/warm`));
      const r = await closedLoop(callers, PUT_SECONDS, (c, i) => once(`${prefix}${c}/${i}`));
      rows.push({ callers, handler, acknowledged: r.calls, failed: r.failed, per_s: Math.round(r.calls / r.seconds), reply_ms: summarize(r.latencies) });
      console.log(`  ${callers} callers, ${handler}: ${Math.round(r.calls / r.seconds)}/s`);
    }
  }
  await floorEnv.close();
  return rows;
}

/** The disk's own floor: one small write and fdatasync, again and again, in ms. */
function fsyncFloor(): Summary {
  const fd = openSync(join(dir, "fsync-probe"), "w");
  const times: number[] = [];
  try {
    for (let i = 0; i < FSYNCS; i++) {
      const t0 = performance.now();
      writeSync(fd, Buffer.alloc(100, i & 0xff), 0, 100, 0);
      fdatasyncSync(fd);
      times.push(performance.now() - t0);
    }
  } finally {
    closeSync(fd);
  }
  return summarize(times);
}

/** Bytes of a store on disk: LMDB's file, or the files of its directory. */
function storeBytes(service: string): number {
  const path = join(config.dataDir, "storage", `${service}.mdb`);
  try {
    const s = statSync(path);
    if (!s.isDirectory()) return s.size;
    return readdirSync(path).reduce((sum, f) => sum + statSync(join(path, f)).size, 0);
  } catch {
    return 0;
  }
}

interface SwapCase {
  service: string;
  stored_mib: number;
  file_bytes: number;
  fill_s: number;
  swaps: number;
  blackout_ms: Summary;
  /** Every swap's blackout, in order. */
  blackouts_ms: number[];
  phases_p50_ms: Record<string, number>;
  calls_answered: number;
  final_count: number;
}

async function swapRows(): Promise<{ cases: SwapCase[]; failed_calls: number }> {
  const fillS = new Map<string, number>();
  for (const { service, mib } of SWAP_CASES) {
    const t0 = performance.now();
    for (let start = 0; start < mib; start += BLOBS_PER_COMMIT) {
      await kernel.call(service, "fill", { start, count: Math.min(BLOBS_PER_COMMIT, mib - start), bytes: BLOB_BYTES });
    }
    await kernel.call(service, "setMeta", { service, mib });
    fillS.set(service, (performance.now() - t0) / 1000);
    console.log(`  ${service}: ${mib} MiB stored in ${round(fillS.get(service) ?? 0, 1)} s`);
  }
  // One warm-up swap each: the first swap of a service bundles and compiles what the others reuse.
  for (const { service } of SWAP_CASES) await swapOnce(service);

  // The callers follow `target`: the service about to be swapped has the load.
  let target = SWAP_CASES[0]?.service as string;
  let running = true;
  let failed = 0;
  const answered = new Map<string, number>();
  const loops = Array.from({ length: SWAP_CALLERS }, async () => {
    while (running) {
      const service = target;
      try {
        await kernel.call(service, "incr");
        answered.set(service, (answered.get(service) ?? 0) + 1);
      } catch (err) {
        failed++;
        if (failed === 1) console.error(`  first failed call: ${toMoltError(err).code} ${String(err)}`);
      }
    }
  });
  const samples = new Map<string, { blackoutMs: number; phases: Record<string, number> }[]>();
  // The cases take turns, swap by swap, so that none runs on a machine quieter
  // or busier than the others; the order rotates each round, so that none
  // always follows the same one (and whatever its swap leaves running).
  for (let i = 0; i < SWAPS_PER_CASE; i++) {
    for (let j = 0; j < SWAP_CASES.length; j++) {
      const service = SWAP_CASES[(i + j) % SWAP_CASES.length]?.service as string;
      target = service;
      await sleep(30);
      const s = await swapOnce(service);
      samples.set(service, [...(samples.get(service) ?? []), s]);
    }
    if ((i + 1) % 10 === 0) console.log(`  ${i + 1}/${SWAPS_PER_CASE} swaps of each`);
  }
  running = false;
  await Promise.all(loops);

  const cases: SwapCase[] = [];
  for (const { service, mib } of SWAP_CASES) {
    const mine = samples.get(service) ?? [];
    const phases: Record<string, number> = {};
    for (const phase of Object.keys(mine[0]?.phases ?? {})) phases[phase] = summarize(mine.map((s) => s.phases[phase] ?? Number.NaN)).p50;
    cases.push({
      service,
      stored_mib: mib,
      file_bytes: storeBytes(service),
      fill_s: round(fillS.get(service) ?? 0, 2),
      swaps: mine.length,
      blackout_ms: summarize(mine.map((s) => s.blackoutMs)),
      blackouts_ms: mine.map((s) => s.blackoutMs),
      phases_p50_ms: phases,
      calls_answered: answered.get(service) ?? 0,
      // Every answered increment is in the state after all the swaps: the in-heap state moved intact.
      final_count: (await kernel.call(service, "count")) as number,
    });
  }
  return { cases, failed_calls: failed };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
function round(x: number, digits = 1): number {
  return Math.round(x * 10 ** digits) / 10 ** digits;
}
function us(ms: number): number {
  return ms * 1000;
}
const PUT_LABELS = { nop: "no write", put: "one put", lmdb: "lmdb-js alone" } as const;
const ratio = (a: number | undefined, b: number | undefined): number | null => (a === undefined || b === undefined ? null : round(a / b, 2));

try {
  await kernel.start();
  console.log(`dataDir ${config.dataDir}; load average ${loadAtStart.join(" ")}`);
  console.log("get latency");
  const gets = await getLatency();
  const loadAfterGets = loadavg().map((x) => round(x, 2));
  console.log("put throughput");
  const puts = await putThroughput();
  const fsync = fsyncFloor();
  const loadAfterPuts = loadavg().map((x) => round(x, 2));
  console.log("swaps beside stored data");
  const swaps = await swapRows();
  const loadAtEnd = loadavg().map((x) => round(x, 2));

  printTable(
    ["get", "count", "p50", "p99", "p50 less clock", "mean, untimed"],
    (["hit", "miss"] as const).map((k) => [
      k === "hit" ? "cache hit" : "cache miss",
      gets[k].gets,
      `${gets[k].per_get_us.p50} µs`,
      `${gets[k].per_get_us.p99} µs`,
      `${gets[k].per_get_p50_less_clock_us} µs`,
      `${gets[k].mean_untimed_us} µs`,
    ]),
  );
  console.log(`a pair of performance.now() in the isolate: p50 ${gets.clock_us.p50} µs, p99 ${gets.clock_us.p99} µs (each read is a crossing to the host)`);
  printTable(
    ["callers", "handler", "replies/s", "reply p50", "p99", "failed"],
    puts.map((r) => [r.callers, PUT_LABELS[r.handler], r.per_s, `${r.reply_ms.p50} ms`, `${r.reply_ms.p99} ms`, r.failed]),
  );
  console.log(`one 100-byte write + fdatasync on this disk: p50 ${fsync.p50} ms, p99 ${fsync.p99} ms`);
  printTable(
    ["stored", "file", "swaps", "blackout p50", "p99", "max", "calls answered", "final count"],
    swaps.cases.map((c) => [`${c.stored_mib} MiB`, `${round(c.file_bytes / 2 ** 20)} MiB`, c.swaps, `${c.blackout_ms.p50} ms`, `${c.blackout_ms.p99} ms`, `${c.blackout_ms.max} ms`, c.calls_answered, c.final_count]),
  );
  const empty = swaps.cases[0]?.blackout_ms;
  const mid = swaps.cases.find((c) => c.stored_mib === 100)?.blackout_ms;
  const big = swaps.cases.find((c) => c.stored_mib === 1024)?.blackout_ms;
  const ratios = {
    p50_100mib_over_empty: ratio(mid?.p50, empty?.p50),
    p99_100mib_over_empty: ratio(mid?.p99, empty?.p99),
    p50_1gib_over_empty: ratio(big?.p50, empty?.p50),
    p99_1gib_over_empty: ratio(big?.p99, empty?.p99),
  };
  console.log(`blackout ratios: ${JSON.stringify(ratios)}${QUICK ? " (quick run: no 1 GiB case)" : ""}`);
  console.log(`load average: start ${loadAtStart.join(" ")}, end ${loadAtEnd.join(" ")}`);

  const bestPut = Math.max(...puts.filter((r) => r.handler === "put").map((r) => r.per_s));
  const json = {
    date: new Date().toISOString(),
    node: process.version,
    quick: QUICK,
    machine: {
      cpu: cpus()[0]?.model ?? "unknown",
      cores: cpus().length,
      load_avg: { start: loadAtStart, after_gets: loadAfterGets, after_puts: loadAfterPuts, end: loadAtEnd },
      note: "A 2-core machine shared with other work (test suites of other sessions) during the run: compare figures only within one run.",
    },
    run_s: round((performance.now() - started) / 1000),
    get: {
      what: `A handler loops over \`await ctx.storage.get(key)\` for ${GET_KEYS} keys of ~100-byte values in a scattered order, each get timed with performance.now() inside the isolate. Misses: the first pass of a fresh instance (just swapped in, its record cache empty; a warm-up pass over ${WARM_KEYS} other keys ran first), each get one synchronous crossing to the kernel's thread and an LMDB read. Hits: the same keys again, answered from the instance's record cache. Every performance.now() in an isolate is itself a crossing, so the per-get figures include the clock; p50_less_clock takes away the p50 of two clock reads in a row, and mean_untimed times a whole pass as one block (another fresh instance, same keys). ${GET_ROUNDS} rounds.`,
      ...gets,
      target: { p50_us: 20 },
    },
    put: {
      what: `C callers in a closed loop of kernel.call from the host into a handler that does one ctx.storage.put of a ~100-byte value under a new key; the reply is held until the write is on disk (output gate), so each reply is one acknowledged put. The service runs with concurrency 256, so concurrent messages' commits share LMDB's group commits. "nop": the same messages writing nothing, in the same run. "lmdb": the floor, the same closed loop of \`await db.put(key, value)\` straight into lmdb-js in this process, opened as core/lmdb-store.ts opens a store (overlappingSync off: each commit synced). fsync_floor_ms: one 100-byte write and fdatasync of a file, repeated. ${PUT_WARMUP_SECONDS} s warm-up, ${PUT_SECONDS} s measured, per row.`,
      rows: puts,
      fsync_floor_ms: fsync,
      best_acknowledged_per_s: bestPut,
      target: { acknowledged_per_s: 50_000 },
    },
    swap: {
      what: `One service (bench/services/stored.ts ⇄ stored-v2.ts, a counter in the heap) per stored size, its storage filled beforehand through its own handlers (1 MiB values, ${BLOBS_PER_COMMIT} per commit); each swapped through kernel.swap ${SWAPS_PER_CASE} times, the sizes taking turns swap by swap, in an order that rotates each round, while ${SWAP_CALLERS} closed-loop callers call the one about to be swapped (an in-heap increment and a stored read each). blackout: SwapReport.blackoutMs. final_count equal to calls_answered: the in-heap state moved intact through every swap.`,
      cases: swaps.cases,
      failed_calls: swaps.failed_calls,
      ratios,
      target: { p50_1gib_over_empty: 1.5 },
      ...(QUICK ? { note: "quick run: the 1 GiB case is skipped" } : {}),
    },
  };
  mkdirSync(join(ROOT, "bench/results"), { recursive: true });
  writeFileSync(join(ROOT, "bench/results/storage.json"), `${JSON.stringify(json, null, 2)}\n`);
  writeFileSync(
    join(ROOT, "bench/results/storage.svg"),
    barChart(
      "Swap blackout of a small in-heap state by what its storage holds",
      "ms",
      swaps.cases.map((c) => ({
        label: `${c.stored_mib === 0 ? "empty" : c.stored_mib >= 1024 ? `${c.stored_mib / 1024} GiB` : `${c.stored_mib} MiB`} stored`,
        bars: [
          { series: "blackout p50", value: c.blackout_ms.p50 },
          { series: "blackout p99", value: c.blackout_ms.p99 },
        ],
      })),
      { log: false },
    ),
  );
  console.log("wrote bench/results/storage.json and bench/results/storage.svg");
} finally {
  await kernel.stop();
  rmSync(dir, { recursive: true, force: true });
}
process.exit(0);
