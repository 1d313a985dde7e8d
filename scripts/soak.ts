// npm run soak — 10,000 swaps under load with hostile services running
// beside, printing resident memory and live isolates at intervals and at
// the end: they must stay flat (no leaked isolates, references or timers).
// Not part of `npm test`: it runs for minutes.
//
//   npm run soak                 (SOAK_SWAPS=2000 for a shorter run)
//
// It runs through bin/launch.js, as `molt` does.

import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { resolveConfig } from "../core/config.ts";
import { liveIsolates } from "../core/isolate-host.ts";
import { Kernel } from "../core/kernel.ts";
import { localBoot } from "../core/local-boot.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const FIX = join(ROOT, "test/fixtures");
const SWAPS = Number(process.env.SOAK_SWAPS ?? 10_000);
const EVERY = Math.max(1, Math.floor(SWAPS / 20));

const kernel = new Kernel(
  resolveConfig(
    {
      services: {
        counter: { entry: join(FIX, "swap/counter-v1.ts"), bindings: { slow: "healthy" } },
        healthy: { entry: join(FIX, "probe.ts") },
        // Hostile neighbours: one that loops past its deadline, one that blows its memory limit, one that aborts V8 in its cell.
        spinner: { entry: join(FIX, "probe.ts"), limits: { timeoutMs: 50 } },
        hog: { entry: join(FIX, "probe.ts"), limits: { memoryMb: 16 } },
        bomb: { entry: join(FIX, "map-bomb.ts"), isolation: "process", limits: { memoryMb: 128 } },
      },
      dataDir: mkdtempSync(join(tmpdir(), "molt-soak-")),
      // Hostile services restart without end here: the point is to see that nothing leaks while they do.
      restart: { maxRestarts: 1_000_000, windowMs: 1000 },
    },
    ROOT,
  ),
  { boot: localBoot, log: { log: () => undefined }, stdout: () => undefined },
);
await kernel.start();

let calls = 0;
let failed = 0;
let running = true;
const load = Array.from({ length: 4 }, async () => {
  while (running) {
    try {
      await kernel.call("counter", "incr", 1);
      await kernel.call("healthy", "echo", calls);
      calls += 2;
    } catch {
      failed++;
    }
  }
});
let hostileRounds = 0;
const hostile = (async () => {
  while (running) {
    await Promise.allSettled([kernel.call("spinner", "spin"), kernel.call("hog", "hog")]);
    if (hostileRounds % 10 === 0) await kernel.call("bomb", "bomb").catch(() => undefined);
    hostileRounds++;
    await new Promise((r) => setTimeout(r, 200));
  }
})();

const mb = (): number => Math.round(process.memoryUsage().rss / (1 << 20));
// The host's own JS heap and its external memory, beside RSS: growth in RSS with both flat is native memory (V8 isolates, allocator).
const heap = (): string => {
  const m = process.memoryUsage();
  return `heap ${String(Math.round(m.heapUsed / (1 << 20))).padStart(4)} MB  external ${String(Math.round(m.external / (1 << 20))).padStart(4)} MB`;
};
// The pace since the last line: a runtime that slows down as it ages shows here before it shows anywhere else.
let mark = { at: performance.now(), swaps: 0, calls: 0 };
let prepareMs: number[] = [];
let blackoutMs: number[] = [];
const median = (xs: number[]): string => (xs.length === 0 ? "-" : [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!.toFixed(1));
const pace = (swaps: number): string => {
  const s = (performance.now() - mark.at) / 1000;
  const text = `${((swaps - mark.swaps) / s).toFixed(1)} swaps/s  ${Math.round((calls - mark.calls) / s)} calls/s  prepare ${median(prepareMs)} ms  blackout ${median(blackoutMs)} ms`;
  mark = { at: performance.now(), swaps, calls };
  prepareMs = [];
  blackoutMs = [];
  return text;
};
// Host timers alive: every guest timer, deadline and probe is one, so a leak of any of them shows here.
const timers = (): number => process.getActiveResourcesInfo().filter((r) => r === "Timeout").length;
const line = (swaps: number): void =>
  console.log(
    `swaps ${String(swaps).padStart(6)}  rss ${String(mb()).padStart(5)} MB  ${heap()}  isolates ${liveIsolates()}  timers ${timers()}  calls ${calls}  failed ${failed}  hostile rounds ${hostileRounds}  ${pace(swaps)}`,
  );

// Warm up, then take the baseline.
for (let i = 0; i < 20; i++) await kernel.swap("counter", join(FIX, `swap/counter-v${i % 2 === 0 ? 2 : 1}.ts`));
global.gc?.();
const before = { rss: mb(), isolates: liveIsolates(), timers: timers() };
line(0);
let failedSwaps = 0;
for (let i = 1; i <= SWAPS; i++) {
  const report = await kernel.swap("counter", join(FIX, `swap/counter-v${i % 2 === 0 ? 1 : 2}.ts`));
  if (report.outcome !== "committed") failedSwaps++;
  prepareMs.push(report.phases.prepare ?? 0);
  if (report.blackoutMs !== null) blackoutMs.push(report.blackoutMs);
  if (i % EVERY === 0) {
    global.gc?.();
    line(i);
  }
}
const timersUnderLoad = timers();
running = false;
await Promise.all([...load, hostile]);
global.gc?.();
await new Promise((r) => setTimeout(r, 500));
const after = { rss: mb(), isolates: liveIsolates(), timers: timersUnderLoad };
const count = await kernel.call("counter", "get");
console.log(`done: ${SWAPS} swaps (${failedSwaps} not committed), ${calls} calls answered, ${failed} failed`);
console.log(`counter ${String(count)} after its increments; hostile rounds ${hostileRounds}`);
console.log(
  `rss before ${before.rss} MB, after ${after.rss} MB; isolates before ${before.isolates}, after ${after.isolates}; timers under load before ${before.timers}, after ${after.timers}; timers once idle ${timers()}`,
);
await kernel.stop();
console.log(`isolates after stop ${liveIsolates()}`);
process.exit(failed === 0 && failedSwaps === 0 && after.isolates === before.isolates ? 0 : 1);
