// bench:density — how many services one runtime holds: boot 10, 100 and
// 1000 services and measure the time until all are ready and the resident
// memory each adds. Each count runs in a fresh process, so one run's heap
// does not inflate the next.
//
//   npm run bench:density          (BENCH_QUICK=1 stops at 100)

import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { resolveConfig } from "../core/config.ts";
import { Kernel } from "../core/kernel.ts";
import { localBoot } from "../core/local-boot.ts";
import { printTable } from "./lib/stats.ts";
import { barChart } from "./lib/svg.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const COUNTS = process.env.BENCH_QUICK === "1" ? [10, 100] : [10, 100, 1000];

async function child(count: number): Promise<void> {
  const services: Record<string, unknown> = {};
  for (let i = 0; i < count; i++) services[`s${i}`] = { entry: join(ROOT, "bench/services/tiny.ts"), limits: { memoryMb: 16 } };
  const kernel = new Kernel(resolveConfig({ services, dataDir: mkdtempSync(join(tmpdir(), "molt-bench-density-")) } as never, ROOT), {
    boot: localBoot,
    log: { log: () => undefined },
  });
  // What the runtime costs before any service: the kernel, esbuild, the guest runtime bundle.
  const { bundleRuntime } = await import("../core/bundle.ts");
  await bundleRuntime();
  global.gc?.();
  const before = process.memoryUsage().rss;
  const t0 = performance.now();
  await kernel.start();
  const bootMs = performance.now() - t0;
  // Every service answers once, so each isolate has run real code.
  await Promise.all(Array.from({ length: count }, (_, i) => kernel.call(`s${i}`, "incr")));
  global.gc?.();
  await new Promise((r) => setTimeout(r, 200));
  const after = process.memoryUsage().rss;
  process.stdout.write(`${JSON.stringify({ services: count, boot_ms: Math.round(bootMs), rss_mb_per_service: Math.round(((after - before) / count / (1 << 20)) * 100) / 100, rss_total_mb: Math.round(after / (1 << 20)) })}\n`);
  await kernel.stop();
}

async function main(): Promise<void> {
  const runs = [];
  for (const count of COUNTS) {
    const r = spawnSync(process.execPath, ["--no-node-snapshot", "--expose-gc", "--import", "tsx", fileURLToPath(import.meta.url), String(count)], {
      encoding: "utf8",
      maxBuffer: 16 << 20,
    });
    const line = r.stdout.trim().split("\n").at(-1) ?? "";
    if (r.status !== 0 || !line.startsWith("{")) throw new Error(`density run of ${count} failed (${r.status}): ${r.stderr.slice(-2000)}`);
    runs.push(JSON.parse(line) as { services: number; boot_ms: number; rss_mb_per_service: number; rss_total_mb: number });
    console.log(`  ${count} services done`);
  }
  printTable(["services", "boot", "RSS per service", "RSS total"], runs.map((r) => [r.services, `${r.boot_ms} ms`, `${r.rss_mb_per_service} MB`, `${r.rss_total_mb} MB`]));
  mkdirSync(join(ROOT, "bench/results"), { recursive: true });
  writeFileSync(join(ROOT, "bench/results/density.json"), `${JSON.stringify({ runs, date: new Date().toISOString(), node: process.version }, null, 2)}\n`);
  writeFileSync(
    join(ROOT, "bench/results/density.svg"),
    barChart("Resident memory per service (MB)", "MB", runs.map((r) => ({ label: `${r.services} services`, bars: [{ series: "RSS per service", value: r.rss_mb_per_service }] })), { log: false }),
  );
  console.log("wrote bench/results/density.json and bench/results/density.svg");
}

if (process.argv[2] !== undefined) await child(Number(process.argv[2]));
else await main();
process.exit(0);
