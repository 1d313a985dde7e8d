// bench:http — what one HTTP request costs through molt, next to what a user
// would pick instead, measured by a real HTTP load generator (autocannon).
//
// Each target runs in a process of its own, and so does the load generator:
// a generator sharing a thread with the server under test would take its
// time from the very thing it measures. The targets, in one run:
//   plain    a plain Node `http` server doing the same increment;
//   gateway  molt's example daemon: HTTP → gateway → counter;
//   direct   molt with the counter answering HTTP itself (`http.service: "counter"`);
//   workerd  Cloudflare's workerd (npm `workerd`), one worker doing the same,
//            when its binary runs here (otherwise skipped, and the JSON says why).
// Each target takes load at 8 and at 64 connections, each after a warm-up.
// Beside req/s, the server's own CPU per answer (its whole process tree,
// from /proc): what a request costs the machine, which the load generator's
// share of the cores does not move the way it moves req/s.
//
//   npm run bench:http            (BENCH_QUICK=1 for a short run)

import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { createServer } from "node:net";
import { cpus, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { treeCpuMs } from "./lib/molt-process.ts";
import { printTable, summarize, type Summary } from "./lib/stats.ts";
import { barChart } from "./lib/svg.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const SELF = fileURLToPath(import.meta.url);
const QUICK = process.env.BENCH_QUICK === "1";
const CONNECTIONS = [8, 64] as const;
const WARMUP_S = QUICK ? 1 : 2;
const DURATION_S = QUICK ? 3 : 10;
const TARGETS = ["plain", "gateway", "direct", "workerd"] as const;
type Target = (typeof TARGETS)[number];

/** What the load process measured in one run (the warm-up apart). */
interface LoadResult {
  seconds: number;
  ok: number;
  non2xx: number;
  /** Socket errors and timeouts, as autocannon counts them (timeouts included). */
  socketErrors: number;
  timeouts: number;
  statusCodes: Record<string, number>;
  latency: Summary;
  warmupOk: number;
  /** The load process's CPU time over the measured run, in cores: near 1 means the generator, not the target, set the pace. */
  loadCpu: number;
}

interface LoadSpec {
  url: string;
  connections: number;
  warmupS: number;
  durationS: number;
}

/** A server under test, in its own process. */
interface Server {
  origin: string;
  /** The path that increments, as this server routes it. */
  incrPath: string;
  /** The path that answers the count. */
  countPath: string;
  /** The last lines the server printed, for when something failed. */
  output(): string[];
  /** The process at the root of the server's process tree (molt's keeper and runtime run below it). */
  pid: number;
  stop(): Promise<void>;
}

// ---------------------------------------------------------------------------
// Child processes: every one is stopped at the end, also when the run fails.

const children = new Set<ChildProcess>();
/** The runtimes' data folders, removed at exit whatever happened. */
const tempDirs = new Set<string>();

function track(child: ChildProcess): ChildProcess {
  children.add(child);
  child.once("exit", () => children.delete(child));
  return child;
}

/** SIGTERM, then SIGKILL if the process has not exited after `graceMs`. */
async function stopChild(child: ChildProcess, graceMs = 10_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), graceMs);
  await exited;
  clearTimeout(timer);
}

function killAll(): void {
  for (const child of children) child.kill("SIGKILL");
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
}

process.on("exit", killAll);
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.on(signal, () => {
    killAll();
    process.exit(130);
  });
}

/** Keeps the last `max` lines a process prints, so a failure can be shown. */
function tail(child: ChildProcess, max = 40): () => string[] {
  const lines: string[] = [];
  const take = (d: Buffer): void => {
    for (const line of d.toString().split("\n")) if (line.trim() !== "") lines.push(line);
    if (lines.length > max) lines.splice(0, lines.length - max);
  };
  child.stdout?.on("data", take);
  child.stderr?.on("data", take);
  return () => [...lines];
}

// ---------------------------------------------------------------------------
// The targets.

async function startPlain(): Promise<Server> {
  const child = track(spawn(process.execPath, [join(ROOT, "bench/baselines/http-plain.mjs")], { stdio: ["ignore", "pipe", "pipe", "ipc"] }));
  const output = tail(child);
  const port = await new Promise<number>((resolve, reject) => {
    child.once("message", (m: { port: number }) => resolve(m.port));
    child.once("exit", (code) => reject(new Error(`the plain server exited with ${code}: ${output().join("\n")}`)));
  });
  return { origin: `http://127.0.0.1:${port}`, incrPath: "/counter/incr", countPath: "/counter", output, pid: child.pid as number, stop: () => stopChild(child) };
}

/** A real runtime (`node bin/molt.js run`) with the example daemon's services, answering HTTP with `service`. */
async function startMolt(service: "gateway" | "counter"): Promise<Server> {
  const dataDir = mkdtempSync(join(tmpdir(), "molt-bench-http-"));
  tempDirs.add(dataDir);
  const child = track(
    spawn(process.execPath, [join(ROOT, "bin/molt.js"), "run", join(ROOT, "bench/http.config.ts")], {
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, BENCH_HTTP_SERVICE: service, BENCH_HTTP_DATA_DIR: dataDir },
    }),
  );
  const output = tail(child);
  let out = "";
  const origin = await new Promise<string>((resolve, reject) => {
    child.once("exit", (code) => reject(new Error(`molt exited with ${code}: ${output().join("\n")}`)));
    const onData = (d: Buffer): void => {
      out += d.toString();
      const http = /http listening on (\S+)/.exec(out)?.[1];
      if (http !== undefined && out.includes("molt: ready")) {
        child.stdout?.off("data", onData);
        resolve(http);
      }
    };
    child.stdout?.on("data", onData);
  });
  // The counter routes its own paths; through the gateway they sit under /counter.
  const prefix = service === "gateway" ? "/counter" : "";
  return {
    origin,
    incrPath: `${prefix}/incr`,
    countPath: prefix === "" ? "/" : prefix,
    output,
    pid: child.pid as number,
    stop: async () => {
      await stopChild(child);
      rmSync(dataDir, { recursive: true, force: true });
      tempDirs.delete(dataDir);
    },
  };
}

/** workerd's binary as its npm package installs it, and its version; or why it cannot run here. */
function workerdBinary(): { path: string; version: string } | { skipped: string } {
  let path: string;
  try {
    path = (createRequire(import.meta.url)("workerd") as { default: string }).default;
  } catch (err) {
    return { skipped: `the workerd npm package is not installed or has no binary for this platform: ${String(err)}` };
  }
  const probe = spawnSync(path, ["--version"], { encoding: "utf8", timeout: 10_000 });
  if (probe.status !== 0) return { skipped: `${path} --version failed (status ${probe.status}): ${probe.error?.message ?? probe.stderr}` };
  return { path, version: probe.stdout.trim() };
}

async function startWorkerd(binary: string): Promise<Server> {
  const port = await freePort();
  const child = track(
    spawn(binary, ["serve", join(ROOT, "bench/baselines/http-workerd.capnp"), "--socket-addr", `http=127.0.0.1:${port}`], {
      stdio: ["ignore", "pipe", "pipe"],
    }),
  );
  const output = tail(child);
  const origin = `http://127.0.0.1:${port}`;
  const deadline = performance.now() + 15_000;
  // workerd prints nothing when it listens: poll until it answers.
  while ((await fetch(`${origin}/counter`).catch(() => undefined))?.ok !== true) {
    if (child.exitCode !== null || performance.now() > deadline) {
      await stopChild(child);
      throw new Error(`workerd did not start: ${output().join("\n")}`);
    }
    await sleep(50);
  }
  return { origin, incrPath: "/counter/incr", countPath: "/counter", output, pid: child.pid as number, stop: () => stopChild(child) };
}

/** A port nothing listens on now: workerd takes its address on the command line. */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() => (typeof address === "object" && address !== null ? resolve(address.port) : reject(new Error("no port"))));
    });
  });
}

// ---------------------------------------------------------------------------
// The load: autocannon's Node API, in a child process of its own.

/** Runs one warm-up and one measured run in a fresh load process. */
function runLoad(spec: LoadSpec): Promise<LoadResult> {
  const child = track(spawn(process.execPath, [...process.execArgv, SELF, "--load", JSON.stringify(spec)], { stdio: ["ignore", "inherit", "inherit", "ipc"] }));
  return new Promise((resolve, reject) => {
    let result: LoadResult | undefined;
    child.once("message", (m: LoadResult) => (result = m));
    child.once("exit", (code) => (result === undefined ? reject(new Error(`the load process exited with ${code} and no result`)) : resolve(result)));
  });
}

/** The minimal shape of autocannon's API this bench uses (the package ships no types). */
interface AutocannonRun extends PromiseLike<{ duration: number; non2xx: number; errors: number; timeouts: number; "2xx": number; statusCodeStats: Record<string, { count: number }> }> {
  on(event: "response", listener: (client: unknown, statusCode: number, bytes: number, responseTimeMs: number) => void): void;
}
type Autocannon = (options: Record<string, unknown>) => AutocannonRun;

/** The load process: warm up, then measure, and send the result to the parent. */
async function loadMain(spec: LoadSpec): Promise<void> {
  // When the parent goes away (even killed), the load stops with it.
  process.on("disconnect", () => process.exit(1));
  const autocannon = createRequire(import.meta.url)("autocannon") as Autocannon;
  const base = { url: spec.url, method: "POST", connections: spec.connections, pipelining: 1, timeout: 10 };
  const warmup = await autocannon({ ...base, duration: spec.warmupS });
  // Latencies are kept here, to the microsecond: autocannon's own histogram
  // keeps whole milliseconds, and a plain server answers in a fraction of one.
  const latencies: number[] = [];
  const cpuBefore = process.cpuUsage();
  const run = autocannon({ ...base, duration: spec.durationS });
  run.on("response", (_client, status, _bytes, ms) => {
    if (status >= 200 && status < 300) latencies.push(ms);
  });
  const r = await run;
  const cpu = process.cpuUsage(cpuBefore);
  const statusCodes: Record<string, number> = {};
  for (const [code, { count }] of Object.entries(r.statusCodeStats)) statusCodes[code] = count;
  const result: LoadResult = {
    seconds: r.duration,
    ok: r["2xx"],
    non2xx: r.non2xx,
    socketErrors: r.errors,
    timeouts: r.timeouts,
    statusCodes,
    latency: summarize(latencies),
    warmupOk: warmup["2xx"],
    loadCpu: Math.round(((cpu.user + cpu.system) / 1e6 / r.duration) * 100) / 100,
  };
  process.send?.(result, () => process.exit(0));
}

// ---------------------------------------------------------------------------
// The run.

interface Run {
  target: Target;
  connections: number;
  req_per_s: number;
  latency_ms: Summary;
  errors: number;
  /** The server's CPU (its whole process tree, every thread) over the warm-up and the run, per 2xx answer. */
  server_cpu_us_per_req: number;
}

async function main(): Promise<void> {
  const loadBefore = loadavg();
  const runs: Run[] = [];
  const details: Record<string, unknown>[] = [];
  /** The load process's CPU per run, in the order of `runs`, for the printed table. */
  const generatorCpu: number[] = [];
  const targets: Record<string, unknown> = {};
  let workerd = workerdBinary();
  const failures: string[] = [];

  for (const target of TARGETS) {
    let server: Server;
    if (target === "workerd") {
      if ("skipped" in workerd) {
        console.log(`workerd: skipped (${workerd.skipped})`);
        continue;
      }
      // workerd is an optional comparison: when it cannot serve here, the run goes on without it.
      try {
        server = await startWorkerd(workerd.path);
      } catch (err) {
        workerd = { skipped: `${workerd.path} serve failed: ${err instanceof Error ? err.message : String(err)}` };
        console.log(`workerd: skipped (${workerd.skipped})`);
        continue;
      }
    } else {
      server = target === "plain" ? await startPlain() : await startMolt(target === "gateway" ? "gateway" : "counter");
    }
    try {
      let answered = 0;
      for (const connections of CONNECTIONS) {
        console.log(`${target}: ${connections} connections, ${WARMUP_S} s warm-up + ${DURATION_S} s`);
        const cpuBefore = treeCpuMs(server.pid);
        const r = await runLoad({ url: `${server.origin}${server.incrPath}`, connections, warmupS: WARMUP_S, durationS: DURATION_S });
        const serverCpuUs = r.ok + r.warmupOk === 0 ? 0 : Math.round(((treeCpuMs(server.pid) - cpuBefore) * 1000 * 10) / (r.ok + r.warmupOk)) / 10;
        answered += r.ok + r.warmupOk;
        const errors = r.non2xx + r.socketErrors;
        generatorCpu.push(r.loadCpu);
        runs.push({ target, connections, req_per_s: Math.round(r.ok / r.seconds), latency_ms: r.latency, errors, server_cpu_us_per_req: serverCpuUs });
        details.push({ target, connections, seconds: r.seconds, responses_2xx: r.ok, non_2xx: r.non2xx, socket_errors: r.socketErrors, timeouts: r.timeouts, status_codes: r.statusCodes, load_process_cpu_cores: r.loadCpu });
        if (errors > 0) failures.push(`${target} at ${connections} connections: ${r.non2xx} non-2xx (${JSON.stringify(r.statusCodes)}), ${r.socketErrors} socket errors (${r.timeouts} timeouts)`);
      }
      // Every 2xx answer to a POST was one increment; requests cut off when a
      // run ended may have counted without being answered, never the reverse.
      // A target that died under load is a finding, not a reason to lose the other targets' figures.
      const count = await fetch(`${server.origin}${server.countPath}`)
        .then(async (res) => Number((await res.text()).trim()))
        .catch((err: unknown) => {
          failures.push(`${target}: the count could not be read after the runs: ${String(err)}`);
          return Number.NaN;
        });
      targets[target] = { incr_path: server.incrPath, final_count: count, answered_2xx: answered, ...(failures.some((f) => f.startsWith(target)) ? { last_output: server.output() } : {}) };
      if (!(count >= answered)) failures.push(`${target}: final count ${count} is below the ${answered} increments answered with 2xx`);
    } finally {
      await server.stop();
    }
  }

  const at64 = (t: Target): number | undefined => runs.find((r) => r.target === t && r.connections === 64)?.req_per_s;
  const ratio = (t: Target): number | null => {
    const mine = at64(t);
    const plain = at64("plain");
    return mine === undefined || plain === undefined || plain === 0 ? null : Math.round((mine / plain) * 10_000) / 10_000;
  };
  /** How many times plain Node's CPU per answer the target spends, at 64 connections: the machine's cost of a request, steadier than req/s on shared cores. */
  const cpuCost = (t: Target): number | null => {
    const mine = runs.find((r) => r.target === t && r.connections === 64)?.server_cpu_us_per_req;
    const plain = runs.find((r) => r.target === "plain" && r.connections === 64)?.server_cpu_us_per_req;
    return mine === undefined || plain === undefined || plain === 0 ? null : Math.round((mine / plain) * 100) / 100;
  };
  const cpu = /model name\s*:\s*(.*)/.exec(readFileSync("/proc/cpuinfo", "utf8"))?.[1] ?? "unknown";
  const result = {
    runs,
    ratio_to_plain: { gateway: ratio("gateway"), direct: ratio("direct") },
    cpu_per_request_to_plain: { gateway: cpuCost("gateway"), direct: cpuCost("direct"), workerd: cpuCost("workerd") },
    workerd: "skipped" in workerd ? { skipped: workerd.skipped } : { version: workerd.version, ratio_to_plain: ratio("workerd") },
    date: new Date().toISOString(),
    node: process.version,
    cores: cpus().length,
    cpu,
    quick: QUICK,
    warmup_s: WARMUP_S,
    duration_s: DURATION_S,
    load_average: { before: loadBefore.map(round2), after: loadavg().map(round2) },
    targets,
    details,
    failures,
    notes: [
      "Each ratio is the target's req/s over the plain Node server's, both at 64 connections in this run.",
      "req_per_s counts 2xx answers only, over the measured run (after the warm-up); latencies are of 2xx answers, measured in the load process; errors are non-2xx answers plus socket errors and timeouts.",
      "Every request is POST with an empty body. plain and workerd route POST /counter/incr; gateway is molt's example daemon (molt.config.ts through bench/http.config.ts) routing POST /counter/incr to the counter's POST /incr; direct is the same runtime with http.service: \"counter\", so the counter's own route, POST /incr.",
      "The load generator is one autocannon process (one thread), and it shares this machine's cores with the server under test: where details[].load_process_cpu_cores is near 1, the generator rather than the target set the pace, and that target's req/s (plain Node's above all, and so every ratio's denominator) is a floor.",
      "Compare figures only within one run: the machine may be shared (see load_average).",
      "server_cpu_us_per_req is the CPU time of the server's whole process tree (every thread: for molt the keeper, the runtime's main thread, its isolates' threads and V8's) from /proc, over the warm-up and the run, divided by the 2xx answers in both; cpu_per_request_to_plain divides it by plain Node's at 64 connections.",
    ],
  };

  printTable(
    ["target", "conns", "req/s", "p50 ms", "p99 ms", "max ms", "errors", "server CPU/req", "load gen CPU"],
    runs.map((r, i) => [r.target, r.connections, r.req_per_s, r.latency_ms.p50, r.latency_ms.p99, r.latency_ms.max, r.errors, `${r.server_cpu_us_per_req} µs`, generatorCpu[i] ?? "-"]),
  );
  console.log(`ratio to plain Node at 64 connections: gateway ${result.ratio_to_plain.gateway}, direct ${result.ratio_to_plain.direct}${"version" in workerd ? `, workerd ${ratio("workerd")}` : ""}`);
  console.log(
    `CPU per request, times plain Node's, at 64 connections: gateway ${result.cpu_per_request_to_plain.gateway}, direct ${result.cpu_per_request_to_plain.direct}${"version" in workerd ? `, workerd ${result.cpu_per_request_to_plain.workerd}` : ""}`,
  );
  for (const f of failures) console.log(`FAILED: ${f}`);

  mkdirSync(join(ROOT, "bench/results"), { recursive: true });
  writeFileSync(join(ROOT, "bench/results/http.json"), `${JSON.stringify(result, null, 2)}\n`);
  writeFileSync(
    join(ROOT, "bench/results/http.svg"),
    barChart(
      "POST /counter/incr: requests per second (higher is better)",
      "req/s",
      CONNECTIONS.map((connections) => ({
        label: `${connections} connections`,
        bars: runs.filter((r) => r.connections === connections).map((r) => ({ series: r.target, value: r.req_per_s })),
      })),
    ),
  );
  console.log("wrote bench/results/http.json and bench/results/http.svg");
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const round2 = (x: number): number => Math.round(x * 100) / 100;

if (process.argv[2] === "--load") {
  await loadMain(JSON.parse(process.argv[3] ?? "{}") as LoadSpec);
} else {
  try {
    await main();
  } finally {
    // Anything still running (a failure mid-run) is stopped before exiting.
    await Promise.all([...children].map((c) => stopChild(c, 2_000)));
  }
  process.exit(0);
}
