// bench:calls — what a message costs: service → service round trips
// (latency, measured inside the calling isolate) and pipelined throughput
// with 1, 2 and 4 pairs of services, next to the floors measured in the
// same run: a raw isolated-vm apply into one isolate (pipelined, and one at
// a time for the round trip), and Node
// worker_threads postMessage round trips.
//
//   npm run bench:calls            (BENCH_QUICK=1 for a short run)

import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Worker } from "node:worker_threads";
import ivm from "isolated-vm";
import { resolveConfig } from "../core/config.ts";
import { Kernel } from "../core/kernel.ts";
import { localBoot } from "../core/local-boot.ts";
import { percentile, printTable } from "./lib/stats.ts";
import { barChart } from "./lib/svg.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const QUICK = process.env.BENCH_QUICK === "1";
const LATENCY_CALLS = QUICK ? 2_000 : 20_000;
const FLOOD_CALLS = QUICK ? 20_000 : 200_000;
const WINDOW = 256;

async function pairs(count: number): Promise<{ pairs: number; round_trip_us: { p50: number; p99: number }; throughput_msgs_per_s: number; clock_us: number }> {
  const services: Record<string, unknown> = {};
  for (let i = 0; i < count; i++) {
    services[`caller${i}`] = { entry: join(ROOT, "bench/services/caller.ts"), bindings: { peer: `echo${i}` }, queue: 1_000_000, limits: { timeoutMs: 600_000 } };
    services[`echo${i}`] = { entry: join(ROOT, "bench/services/echo.ts"), queue: 1_000_000, limits: { timeoutMs: 600_000 } };
  }
  const kernel = new Kernel(resolveConfig({ services, dataDir: mkdtempSync(join(tmpdir(), "molt-bench-calls-")) } as never, ROOT), {
    boot: localBoot,
    log: { log: () => undefined },
  });
  await kernel.start();
  try {
    // Warm-up, then latency with one call in flight per pair.
    await kernel.call("caller0", "latency", 500);
    const latency = (await Promise.all(
      Array.from({ length: count }, (_, i) => kernel.call(`caller${i}`, "latency", LATENCY_CALLS / count)),
    )) as { samples: number[]; clockMs: number }[];
    const samples = latency.flatMap((l) => l.samples).sort((a, b) => a - b);
    const clock = latency[0]?.clockMs ?? 0;
    // Throughput: every pair flooding at once.
    await kernel.call("caller0", "flood", { n: 2_000, window: WINDOW });
    const t0 = performance.now();
    await Promise.all(Array.from({ length: count }, (_, i) => kernel.call(`caller${i}`, "flood", { n: FLOOD_CALLS / count, window: WINDOW })));
    const elapsed = performance.now() - t0;
    return {
      pairs: count,
      round_trip_us: { p50: round(percentile(samples, 50) * 1000), p99: round(percentile(samples, 99) * 1000) },
      throughput_msgs_per_s: Math.round(FLOOD_CALLS / (elapsed / 1000)),
      clock_us: round(clock * 1000),
    };
  } finally {
    await kernel.stop();
  }
}

/**
 * The floor for a round trip: a bare async apply into an isolate and back,
 * one at a time (two thread hand-offs), at its median. A molt call makes
 * four (caller → kernel → callee → kernel → caller), so twice this is what
 * any kernel-mediated round trip costs here before molt does anything.
 */
async function ivmRoundTrip(): Promise<number> {
  const isolate = new ivm.Isolate({ memoryLimit: 64 });
  const context = await isolate.createContext();
  await context.eval("globalThis.echo = (x) => x;");
  const echo = (await context.global.get("echo", { reference: true })) as ivm.Reference;
  const samples: number[] = [];
  for (let i = 0; i < 500; i++) await echo.apply(undefined, [i]);
  for (let i = 0; i < LATENCY_CALLS / 4; i++) {
    const t0 = performance.now();
    await echo.apply(undefined, [i]);
    samples.push(performance.now() - t0);
  }
  isolate.dispose();
  samples.sort((a, b) => a - b);
  return round(percentile(samples, 50) * 1000);
}

/** The floor for a call into an isolate: a bare async apply, pipelined. */
async function ivmFloor(): Promise<number> {
  const isolate = new ivm.Isolate({ memoryLimit: 64 });
  const context = await isolate.createContext();
  await context.eval("globalThis.echo = (x) => x;");
  const echo = (await context.global.get("echo", { reference: true })) as ivm.Reference;
  const n = FLOOD_CALLS;
  const run = async (count: number): Promise<number> => {
    const t0 = performance.now();
    let next = 0;
    await Promise.all(
      Array.from({ length: WINDOW }, async () => {
        while (next < count) {
          next++;
          await echo.apply(undefined, [next]);
        }
      }),
    );
    return performance.now() - t0;
  };
  await run(5_000);
  const elapsed = await run(n);
  isolate.dispose();
  return Math.round(n / (elapsed / 1000));
}

/** The floor for a message to another thread: worker_threads postMessage round trips, pipelined. */
async function workerFloor(): Promise<number> {
  const worker = new Worker("const { parentPort } = require('node:worker_threads'); parentPort.on('message', (m) => parentPort.postMessage(m));", { eval: true });
  const n = FLOOD_CALLS;
  const run = (count: number): Promise<number> =>
    new Promise((resolve) => {
      let sent = 0;
      let received = 0;
      const t0 = performance.now();
      worker.on("message", function onMessage() {
        received++;
        if (sent < count) worker.postMessage(sent++);
        if (received === count) {
          worker.off("message", onMessage);
          resolve(performance.now() - t0);
        }
      });
      for (; sent < Math.min(WINDOW, count); sent++) worker.postMessage(sent);
    });
  await run(5_000);
  const elapsed = await run(n);
  await worker.terminate();
  return Math.round(n / (elapsed / 1000));
}

const round = (x: number): number => Math.round(x * 10) / 10;

const results = [];
for (const count of [1, 2, 4]) {
  results.push(await pairs(count));
  console.log(`  ${count} pair(s) done`);
}
const floors = { ivm_apply_msgs_per_s: await ivmFloor(), worker_threads_msgs_per_s: await workerFloor(), ivm_round_trip_us: await ivmRoundTrip() };
printTable(
  ["pairs", "round trip p50", "p99", "msgs/s", "clock cost"],
  results.map((r) => [r.pairs, `${r.round_trip_us.p50} µs`, `${r.round_trip_us.p99} µs`, r.throughput_msgs_per_s, `${r.clock_us} µs`]),
);
console.log(`floors: isolated-vm apply ${floors.ivm_apply_msgs_per_s} msgs/s, worker_threads ${floors.worker_threads_msgs_per_s} msgs/s`);
console.log(
  `round trip floor: a bare isolated-vm apply and back ${floors.ivm_round_trip_us} µs at the median; a molt call crosses threads twice as often (${round(2 * floors.ivm_round_trip_us)} µs)`,
);
mkdirSync(join(ROOT, "bench/results"), { recursive: true });
const json = { pairs: results.map(({ clock_us, ...r }) => ({ ...r, clock_cost_us: clock_us })), floors, window: WINDOW, date: new Date().toISOString(), node: process.version };
writeFileSync(join(ROOT, "bench/results/calls.json"), `${JSON.stringify(json, null, 2)}\n`);
writeFileSync(
  join(ROOT, "bench/results/calls.svg"),
  barChart("Service → service throughput (msgs/s) next to the floors", "msgs/s", [
    ...results.map((r) => ({ label: `${r.pairs} pair${r.pairs > 1 ? "s" : ""}`, bars: [{ series: "molt call", value: r.throughput_msgs_per_s }] })),
    { label: "isolated-vm apply", bars: [{ series: "floor", value: floors.ivm_apply_msgs_per_s }] },
    { label: "worker_threads", bars: [{ series: "floor", value: floors.worker_threads_msgs_per_s }] },
  ], { log: false }),
);
console.log("wrote bench/results/calls.json and bench/results/calls.svg");
process.exit(0);
