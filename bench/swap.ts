// bench:swap — how long a swap keeps a service dark, and what clients feel.
//
// A real runtime (bin/molt.js run) serves a stateful service through the
// gateway while 8 closed-loop HTTP clients POST to it; the service is
// swapped again and again through the admin API at four state sizes. Then,
// in the same run, the two things users would do instead: restart a Node
// process holding the same state, and (when `erl` is installed) Erlang/OTP's
// hot code change of a gen_server holding the same state. Like with like:
// both sides are also swapped idle (molt at the small state, before the
// clients start), and the gen_server under as many callers as molt has
// clients, each looping on gen_server:call.
//
//   npm run bench:swap            (BENCH_QUICK=1 for a short run)

import { spawn, spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { startLoad, type Sample } from "./lib/load.ts";
import { printTable, summarize, type Summary } from "./lib/stats.ts";
import { barChart } from "./lib/svg.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const QUICK = process.env.BENCH_QUICK === "1";
const CLIENTS = 8;
const SIZES = QUICK
  ? [{ bytes: 100, swaps: 40 }, { bytes: 65_536, swaps: 10 }, { bytes: 1 << 20, swaps: 5 }, { bytes: 10 << 20, swaps: 3 }]
  : [{ bytes: 100, swaps: 200 }, { bytes: 65_536, swaps: 50 }, { bytes: 1 << 20, swaps: 20 }, { bytes: 10 << 20, swaps: 8 }];
const RESTARTS = QUICK ? 5 : 20;
const IDLE_SWAPS = QUICK ? 20 : 100;
/** Swaps with shadow traffic of SHADOW_MESSAGES each, under the same load: what the shadow costs the callers. */
const SHADOW_SWAPS = QUICK ? 2 : 5;
const SHADOW_MESSAGES = 1000;

interface SwapSample {
  bytes: number;
  blackoutMs: number;
  dumpMs: number;
  restoreMs: number;
  window: [number, number];
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "molt-bench-swap-"));
  const configPath = join(dir, "molt.config.ts");
  writeFileSync(
    configPath,
    `export default {
  services: {
    gateway: { entry: ${JSON.stringify(join(ROOT, "services/gateway/index.ts"))}, bindings: { bench: "bench" }, config: { routes: { "/bench": "bench" } } },
    bench: { entry: ${JSON.stringify(join(ROOT, "bench/services/stateful.ts"))}, limits: { memoryMb: 1024, timeoutMs: 60000 }, queue: 100000 },
  },
  http: { port: 0, service: "gateway" },
  admin: { port: 0, allowedRoots: [${JSON.stringify(ROOT)}] },
  dataDir: ${JSON.stringify(join(dir, "data"))},
  swap: { drainTimeoutMs: 30000 },
};\n`,
  );
  const runtime = await startRuntime(configPath);
  const token = readFileSync(join(dir, "data", "admin.token"), "utf8").trim();
  const entries = [join(ROOT, "bench/services/stateful-v2.ts"), join(ROOT, "bench/services/stateful.ts")];

  // Idle: the small state, no clients, the same swaps.
  const idle: number[] = [];
  let n = 0;
  await fetch(`${runtime.url}/bench/fill?bytes=${SIZES[0]?.bytes ?? 100}`, { method: "POST" });
  for (let i = 0; i < IDLE_SWAPS; i++) {
    const report = await swap(runtime.adminUrl, token, entries[n++ % 2] as string);
    if (report.outcome !== "committed") throw new Error(`idle swap ${n} ended ${report.outcome}: ${JSON.stringify(report.error)}`);
    idle.push(report.blackoutMs);
    await sleep(20);
  }
  console.log(`  idle, ${SIZES[0]?.bytes ?? 100} B: ${IDLE_SWAPS} swaps`);

  console.log(`runtime at ${runtime.url}; ${CLIENTS} clients; warming up`);
  const load = startLoad(`${runtime.url}/bench/incr`, CLIENTS);
  await sleep(1500);
  const steadyFrom = performance.now();
  await sleep(2000);
  const steadyTo = performance.now();

  const swaps: SwapSample[] = [];
  for (const { bytes, swaps: count } of SIZES) {
    await fetch(`${runtime.url}/bench/fill?bytes=${bytes}`, { method: "POST" });
    for (let i = 0; i < count; i++) {
      const t0 = performance.now();
      const report = await swap(runtime.adminUrl, token, entries[n++ % 2] as string);
      const t1 = performance.now();
      if (report.outcome !== "committed") throw new Error(`swap ${n} ended ${report.outcome}: ${JSON.stringify(report.error)}`);
      swaps.push({ bytes, blackoutMs: report.blackoutMs, dumpMs: report.phases.dump ?? Number.NaN, restoreMs: report.phases.restore ?? Number.NaN, window: [t0, t1] });
      await sleep(20);
    }
    console.log(`  ${bytes} B: ${count} swaps`);
  }
  // Shadow traffic: the new version runs the next SHADOW_MESSAGES messages beside the old one before each cutover.
  await fetch(`${runtime.url}/bench/fill?bytes=${SIZES[0]?.bytes ?? 100}`, { method: "POST" });
  const shadows: { window: [number, number]; messages: number; divergences: number }[] = [];
  for (let i = 0; i < SHADOW_SWAPS; i++) {
    const timed = await swapTimed(runtime.adminUrl, token, entries[n++ % 2] as string, { shadow: SHADOW_MESSAGES });
    if (timed.report.outcome !== "committed") throw new Error(`shadowed swap ended ${timed.report.outcome}: ${JSON.stringify(timed.report.error)}`);
    shadows.push({ window: timed.shadowWindow, messages: timed.report.shadow?.messages ?? 0, divergences: timed.report.shadow?.divergences ?? -1 });
    await sleep(200);
  }
  console.log(`  shadow: ${SHADOW_SWAPS} swaps with ${SHADOW_MESSAGES} shadowed messages each`);
  await load.stop();
  const finalCount = Number(await (await fetch(`${runtime.url}/bench/get`)).text());
  await runtime.stop();

  const ok = load.samples.filter((s) => s.ok && s.start > 0);
  const failed = load.samples.filter((s) => !s.ok).length;
  const latency = (s: Sample): number => s.end - s.start;
  const overlaps = (s: Sample): boolean => swaps.some((w) => s.start < w.window[1] && s.end > w.window[0]);
  const steady = ok.filter((s) => s.start >= steadyFrom && s.end <= steadyTo).map(latency);
  const during = ok.filter(overlaps).map(latency);
  // Requests that ran wholly inside a shadow phase (from the end of prepare to the end of the shadow).
  const inShadow = ok.filter((s) => shadows.some((w) => s.start >= w.window[0] && s.end <= w.window[1])).map(latency);
  // Every POST that succeeded was counted exactly once: the state is intact.
  const posted = ok.length;

  const bySize = SIZES.map(({ bytes }) => {
    const mine = swaps.filter((s) => s.bytes === bytes);
    return {
      bytes,
      swaps: mine.length,
      blackout_ms: summarize(mine.map((s) => s.blackoutMs)),
      dump_ms: summarize(mine.map((s) => s.dumpMs)).p50,
      restore_ms: summarize(mine.map((s) => s.restoreMs)).p50,
    };
  });

  console.log("baseline: process restart");
  const restart = await restartBaseline();
  console.log("baseline: Erlang/OTP");
  const erlang = erlangBaseline();

  const result = {
    swaps: swaps.length,
    failed_requests: failed,
    requests: load.samples.length,
    final_count: finalCount,
    successful_posts: posted,
    blackout_ms: bySize[0]?.blackout_ms as Summary,
    idle_blackout_ms: summarize(idle),
    by_state_size: bySize,
    latency_ms: { steady: summarize(steady), during_swap: summarize(during), during_shadow: summarize(inShadow) },
    shadow: {
      swaps: shadows.length,
      messages_each: SHADOW_MESSAGES,
      phase_ms: summarize(shadows.map((w) => w.window[1] - w.window[0])),
      messages: shadows.map((w) => w.messages),
      divergences: shadows.map((w) => w.divergences),
      p50_ratio_to_steady: summarize(inShadow).p50 / summarize(steady).p50,
    },
    baselines: {
      process_restart_ms: restart.ms,
      process_restart_failed_requests: restart.failed,
      process_restart_state: "lost: the restarted process starts from an empty state",
      erlang_swap_ms: erlang === null ? null : erlang.small,
      erlang_idle_swap_ms: erlang === null ? null : erlang.idleSmall,
      erlang_by_state_size: erlang?.bySize ?? null,
      erlang_idle_by_state_size: erlang?.idleBySize ?? null,
      erlang_note:
        erlang === null
          ? "erl not installed (apt-get install erlang-base)"
          : `gen_server: sys:suspend, code:load_binary, sys:change_code, sys:resume; erlang_swap_ms and erlang_by_state_size under ${CLIENTS} callers each looping on gen_server:call, erlang_idle_* with none`,
    },
    machine: machine(),
    date: new Date().toISOString(),
  };

  printTable(
    ["state", "swaps", "blackout p50", "p99", "max", "dump p50", "restore p50", "OTP p50", "OTP p99"],
    bySize.map((s) => [
      human(s.bytes),
      s.swaps,
      ms(s.blackout_ms.p50),
      ms(s.blackout_ms.p99),
      ms(s.blackout_ms.max),
      ms(s.dump_ms),
      ms(s.restore_ms),
      ms(erlang?.bySize.find((e) => e.bytes === s.bytes)?.ms.p50),
      ms(erlang?.bySize.find((e) => e.bytes === s.bytes)?.ms.p99),
    ]),
  );
  const idleSummary = summarize(idle);
  console.log(`idle, small state: molt blackout p50 ${ms(idleSummary.p50)} p99 ${ms(idleSummary.p99)}${erlang === null ? "" : `; Erlang/OTP p50 ${ms(erlang.idleSmall.p50)} p99 ${ms(erlang.idleSmall.p99)}`}`);
  console.log(`requests ${load.samples.length}, failed ${failed}; final count ${finalCount} for ${posted} successful POSTs`);
  console.log(`latency steady p50 ${ms(result.latency_ms.steady.p50)} p99 ${ms(result.latency_ms.steady.p99)}; during a swap p50 ${ms(result.latency_ms.during_swap.p50)} p99 ${ms(result.latency_ms.during_swap.p99)} max ${ms(result.latency_ms.during_swap.max)}`);
  console.log(
    `shadow of ${SHADOW_MESSAGES} messages (${shadows.length} swaps, phase p50 ${ms(result.shadow.phase_ms.p50)}): callers' latency p50 ${ms(result.latency_ms.during_shadow.p50)} p99 ${ms(result.latency_ms.during_shadow.p99)}, ${result.shadow.p50_ratio_to_steady.toFixed(2)}× steady`,
  );
  console.log(`process restart: p50 ${ms(restart.ms.p50)} p99 ${ms(restart.ms.p99)}, ${restart.failed} failed requests, state lost`);
  if (erlang !== null) console.log(`Erlang/OTP swap under ${CLIENTS} callers (small state): p50 ${ms(erlang.small.p50)} p99 ${ms(erlang.small.p99)}`);

  mkdirSync(join(ROOT, "bench/results"), { recursive: true });
  writeFileSync(join(ROOT, "bench/results/swap.json"), `${JSON.stringify(result, null, 2)}\n`);
  writeFileSync(
    join(ROOT, "bench/results/swap.svg"),
    barChart("How long a service is dark: molt swap vs Erlang/OTP vs process restart (p50)", "ms", [
      ...bySize.map((s) => ({
        label: human(s.bytes),
        bars: [
          { series: "molt blackout", value: s.blackout_ms.p50 },
          ...(erlang === null ? [] : [{ series: "Erlang/OTP swap", value: erlang.bySize.find((e) => e.bytes === s.bytes)?.ms.p50 ?? Number.NaN }]),
        ],
      })),
      { label: "process restart", bars: [{ series: "process restart", value: restart.ms.p50 }] },
    ]),
  );
  console.log("wrote bench/results/swap.json and bench/results/swap.svg");
}

async function swap(adminUrl: string, token: string, entry: string): Promise<{ outcome: string; blackoutMs: number; phases: Record<string, number>; error?: unknown }> {
  const res = await fetch(`${adminUrl}/v1/services/bench/swap`, {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: JSON.stringify({ entry }),
  });
  const lines = (await res.text()).trim().split("\n").map((l) => JSON.parse(l) as { event: string; report?: never; error?: unknown });
  const last = lines.at(-1);
  if (last?.report === undefined) throw new Error(`swap failed: ${JSON.stringify(last)}`);
  return last.report;
}

/** A swap through the admin API, its NDJSON read as it streams: when the shadow phase began (prepare's line) and ended (its own line). */
async function swapTimed(
  adminUrl: string,
  token: string,
  entry: string,
  extra: Record<string, unknown>,
): Promise<{ report: { outcome: string; error?: unknown; shadow?: { messages: number; divergences: number } }; shadowWindow: [number, number] }> {
  const res = await fetch(`${adminUrl}/v1/services/bench/swap`, {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: JSON.stringify({ entry, ...extra }),
  });
  const reader = (res.body as ReadableStream<Uint8Array>).getReader();
  const decoder = new TextDecoder();
  let buffered = "";
  let from = Number.NaN;
  let to = Number.NaN;
  let report: { outcome: string; error?: unknown; shadow?: { messages: number; divergences: number } } | undefined;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    buffered += decoder.decode(value, { stream: true });
    let nl = buffered.indexOf("\n");
    while (nl >= 0) {
      const line = JSON.parse(buffered.slice(0, nl)) as { event: string; phase?: string; report?: typeof report };
      buffered = buffered.slice(nl + 1);
      if (line.event === "phase" && line.phase === "prepare") from = performance.now();
      if (line.event === "phase" && line.phase === "shadow") to = performance.now();
      if (line.event === "report") report = line.report;
      nl = buffered.indexOf("\n");
    }
  }
  if (report === undefined) throw new Error("swap ended without a report");
  return { report, shadowWindow: [from, to] };
}

interface Runtime {
  url: string;
  adminUrl: string;
  stop(): Promise<void>;
}

function startRuntime(configPath: string): Promise<Runtime> {
  const child = spawn(process.execPath, [join(ROOT, "bin/molt.js"), "run", configPath], { stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  child.stderr.resume();
  return new Promise((resolve, reject) => {
    child.on("exit", (code) => reject(new Error(`runtime exited with ${code}: ${out}`)));
    child.stdout.on("data", (d: Buffer) => {
      out += d.toString();
      const http = /http listening on (\S+)/.exec(out)?.[1];
      const admin = /admin listening on (\S+)/.exec(out)?.[1];
      if (http !== undefined && admin !== undefined && out.includes("molt: ready")) {
        child.stdout.resume();
        resolve({
          url: http,
          adminUrl: admin,
          stop: () =>
            new Promise<void>((r) => {
              child.removeAllListeners("exit");
              child.on("exit", () => r());
              child.kill("SIGTERM");
            }),
        });
      }
    });
  });
}

/** Kill a Node server holding the state, start it again, and time the first successful response. */
async function restartBaseline(): Promise<{ ms: Summary; failed: number }> {
  const port = 20000 + Math.floor(Math.random() * 20000);
  const server = join(ROOT, "bench/baselines/restart-server.mjs");
  const start = () => spawn(process.execPath, [server, String(port), "100"], { stdio: "ignore" });
  let child = start();
  const url = `http://127.0.0.1:${port}/`;
  while ((await fetch(url).catch(() => undefined))?.ok !== true) await sleep(10);
  const load = startLoad(url, CLIENTS);
  await sleep(500);
  const times: number[] = [];
  for (let i = 0; i < RESTARTS; i++) {
    const killedAt = performance.now();
    child.kill("SIGKILL");
    await new Promise((r) => child.once("exit", r));
    child = start();
    // The first request that began after the kill and succeeded.
    for (;;) {
      const first = load.samples.find((s) => s.ok && s.start >= killedAt);
      if (first !== undefined) {
        times.push(first.end - killedAt);
        break;
      }
      await sleep(1);
    }
    await sleep(200);
  }
  await load.stop();
  child.kill("SIGKILL");
  return { ms: summarize(times), failed: load.samples.filter((s) => !s.ok).length };
}

type ErlangRun = { bytes: number; swaps: number; mode: "idle" | "loaded"; clients: number; calls: number; us: number[] };

/** Erlang/OTP's hot code change of a gen_server with the same state sizes, idle and under CLIENTS callers, when erl is installed. */
function erlangBaseline(): {
  small: Summary;
  idleSmall: Summary;
  bySize: { bytes: number; swaps: number; calls: number; ms: Summary }[];
  idleBySize: { bytes: number; swaps: number; ms: Summary }[];
} | null {
  if (spawnSync("erl", ["-version"], { stdio: "ignore" }).status !== 0) return null;
  const dir = mkdtempSync(join(tmpdir(), "molt-bench-erl-"));
  const src = join(ROOT, "bench/erlang");
  for (const [v, out] of [["1", "v1"], ["2", "v2"]] as const) {
    mkdirSync(join(dir, out));
    const c = spawnSync("erlc", [`-DVSN=${v}`, "-o", join(dir, out), join(src, "molt_bench_server.erl")], { encoding: "utf8" });
    if (c.status !== 0) throw new Error(`erlc failed: ${c.stderr}`);
  }
  spawnSync("erlc", ["-o", dir, join(src, "molt_bench.erl")]);
  const sizes = SIZES.map((s) => s.bytes).join(",");
  const counts = SIZES.map((s) => s.swaps).join(",");
  const run = spawnSync("erl", ["-noshell", "-pa", dir, "-eval", `molt_bench:run(["${dir}", "${sizes}", "${counts}", "${CLIENTS}"])`], {
    encoding: "utf8",
    maxBuffer: 64 << 20,
  });
  if (run.status !== 0) throw new Error(`erl failed: ${run.stderr}`);
  const runs = run.stdout
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l) as ErlangRun);
  const loaded = runs.filter((r) => r.mode === "loaded").map((r) => ({ bytes: r.bytes, swaps: r.swaps, calls: r.calls, ms: summarize(r.us.map((u) => u / 1000)) }));
  const idle = runs.filter((r) => r.mode === "idle").map((r) => ({ bytes: r.bytes, swaps: r.swaps, ms: summarize(r.us.map((u) => u / 1000)) }));
  return { small: (loaded[0] as { ms: Summary }).ms, idleSmall: (idle[0] as { ms: Summary }).ms, bySize: loaded, idleBySize: idle };
}

function machine(): Record<string, unknown> {
  const cpu = readFileSync("/proc/cpuinfo", "utf8").match(/model name\s*:\s*(.*)/)?.[1] ?? "unknown";
  return { cpu, cores: (readFileSync("/proc/cpuinfo", "utf8").match(/^processor/gm) ?? []).length, node: process.version, platform: process.platform };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const ms = (v: number | undefined): string => (v === undefined || !Number.isFinite(v) ? "-" : v < 1 ? `${(v * 1000).toFixed(0)} µs` : `${v.toFixed(2)} ms`);
const human = (b: number): string => (b >= 1 << 20 ? `${b / (1 << 20)} MB` : b >= 1024 ? `${b / 1024} KB` : `${b} B`);

await main();
process.exit(0);
