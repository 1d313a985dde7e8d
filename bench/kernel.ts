// bench:kernel — molt replacing its own kernel under load, and outliving a
// kill -9 of it, beside what a plain restart of molt costs.
//
// The example daemon (the services of molt.config.ts: gateway, counter, kv,
// log) runs under `molt run` from a copy of the molt package in a temporary
// folder, while 8 closed-loop keep-alive HTTP clients POST /counter/incr
// through the gateway (bench/lib/load.ts, as bench:swap). In one run:
//   1. N kernel upgrades (POST /v1/kernel/upgrade). Before each, a comment is
//      appended to core/kernel.ts of the copy, so every upgrade starts a
//      runtime whose kernel hash differs from the one it replaces.
//   2. N SIGKILLs of the runtime process (its pid from GET /v1/status), with
//      no standby: the keeper boots a new runtime from the snapshots.
//   3. The same with `kernel: { standby: true }`: a booted runtime waits.
//   4. The baseline: the whole process tree killed and `molt run` started
//      again, as any process manager would restart a daemon.
// `kernel.restart` is raised in the bench's configs so that the kills stay
// within the restart policy.
//
//   npm run bench:kernel [-- --upgrades N --kills N --restarts N]   (BENCH_QUICK=1: 3 of each)

import { appendFileSync, cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { execFileSync } from "node:child_process";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { recordFailures, type FailureLog } from "./lib/failures.ts";
import { startLoad, type Load, type Sample } from "./lib/load.ts";
import { running, startMolt, waitFor, type MoltProcess } from "./lib/molt-process.ts";
import { printTable, summarize, type Summary } from "./lib/stats.ts";
import { barChart } from "./lib/svg.ts";
import type { KernelHistoryBody, KernelUpgradeReport } from "../protocol/kernel.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const QUICK = process.env.BENCH_QUICK === "1";
const CLIENTS = 8;
const UPGRADES = count("--upgrades", QUICK ? 3 : 10);
const KILLS = count("--kills", QUICK ? 3 : 10);
const RESTARTS = count("--restarts", QUICK ? 3 : 10);
/** What the runtime loads from the package, copied so that its code can change under a running molt. */
const PACKAGE = ["bin", "cli", "core", "dashboard", "fleet", "guest", "keeper", "protocol", "sdk", "services", "templates", "types", "package.json", "tsconfig.json"];
/** How long a runtime may take to come back before the run is declared broken (a boot takes seconds on a busy machine). */
const COMEBACK_MS = 90_000;

/**
 * The bench's own requests (admin calls, reading the counter) each take a new
 * connection: a pooled keep-alive connection may belong to a runtime that
 * has since been replaced and is closing its connections, and a request
 * sent on it as it closes is reset (ECONNRESET) without being answered.
 */
const FRESH = { connection: "close" } as const;

const TARGETS = { upgradeBlackoutP50Ms: 50, firstOkMs: 1000, firstOkStandbyMs: 100 };

/** One section's load: what the clients sent, what failed and why, and whether the counter holds every acknowledged increment. */
interface Section {
  requests: number;
  failed: number;
  failed_by_kind: Record<string, number>;
  refused: number;
  /** Increments the clients were told happened that the counter no longer holds (0 means the state carried). */
  state_lost: number;
}

async function main(): Promise<void> {
  const failures = recordFailures();
  const work = mkdtempSync(join(tmpdir(), "molt-bench-kernel-"));
  const molt = copyPackage(work);
  const started: MoltProcess[] = [];
  const start = async (name: string, kernel: { standby: boolean }, httpPort = 0): Promise<MoltProcess> => {
    const project = writeProject(work, name, molt, kernel, httpPort);
    const m = await startMolt(molt, project.config, project.dataDir, project.dir);
    started.push(m);
    return m;
  };
  const load0 = loadavg()[0] ?? Number.NaN;
  try {
    console.log(`molt copied to ${molt}; ${CLIENTS} clients; ${UPGRADES} upgrades, ${KILLS} kills each way, ${RESTARTS} restarts`);
    const plain = await start("plain", { standby: false });
    const upgrade = await upgrades(plain, molt, failures);
    const sigkill = await kills(plain, false, failures);
    await plain.stop();
    const standby = await start("standby", { standby: true });
    const sigkillStandby = await kills(standby, true, failures);
    await standby.stop();
    const baseline = await restartBaseline((port) => start("restart", { standby: false }, port), failures);
    report({ upgrade, sigkill, sigkill_standby: sigkillStandby, restart_baseline: baseline }, load0);
  } finally {
    for (const m of started) if (m.launcher.exitCode === null && m.launcher.signalCode === null) await m.killTree().catch(() => undefined);
    rmSync(work, { recursive: true, force: true });
  }
}

/** N upgrades under load, each after a change to the copy's kernel code. */
async function upgrades(m: MoltProcess, molt: string, failures: FailureLog): Promise<Record<string, unknown>> {
  const load = startLoad(`${m.url}/counter/incr`, CLIENTS);
  const from = performance.now();
  await sleep(1000);
  const runs: { report: KernelUpgradeReport; sent: number; blackoutFrom: number; done: number }[] = [];
  for (let i = 0; i < UPGRADES; i++) {
    appendFileSync(join(molt, "core/kernel.ts"), `// bench:kernel upgrade ${i + 1}\n`);
    const run = await upgrade(m);
    runs.push(run);
    await sleep(500);
    const failed = load.samples.filter((s) => !s.ok && s.end >= run.sent).length;
    process.stdout.write(`  upgrade ${i + 1}: blackout ${ms(run.report.blackoutMs)}, ${failed} failed\n`);
  }
  await load.stop();
  const finalCount = await counter(m.url);
  const section = sectionOf(load, failures, from, performance.now(), 0, finalCount);
  const ends = okEnds(load.samples);
  const gaps = runs.map((r) => longestGap(ends, r.blackoutFrom, r.done));
  const wholeGaps = runs.map((r) => longestGap(ends, r.sent, r.done));
  const maxLatency = runs.map((r) => Math.max(0, ...load.samples.filter((s) => s.ok && s.start < r.done && s.end > r.blackoutFrom).map((s) => s.end - s.start)));
  return {
    runs: runs.length,
    blackout_ms: summarize(runs.map((r) => r.report.blackoutMs)),
    client_gap_ms: summarize(gaps),
    client_gap_whole_upgrade_ms: summarize(wholeGaps),
    max_latency_in_blackout_ms: summarize(maxLatency),
    boot_ms: summarize(runs.map((r) => r.report.phases.find((p) => p.name === "boot")?.ms ?? Number.NaN)),
    failed: section.failed,
    failed_by_kind: section.failed_by_kind,
    refused: section.refused,
    requests: section.requests,
    final_count: finalCount,
    state_lost: section.state_lost,
    state_ok: section.state_lost === 0,
    kernel_hash_changed: runs.filter((r) => r.report.from.version !== r.report.to.version).length,
    code_change: "a comment appended to core/kernel.ts of a copy of the package before each upgrade",
  };
}

/** One upgrade through the admin API, its NDJSON read as it streams: sent, the boot phase's line (the blackout begins right after it), the report. */
async function upgrade(m: MoltProcess): Promise<{ report: KernelUpgradeReport; sent: number; blackoutFrom: number; done: number }> {
  const sent = performance.now();
  const res = await fetch(`${m.adminUrl}/v1/kernel/upgrade`, {
    method: "POST",
    headers: { ...FRESH, authorization: `Bearer ${m.token}`, "content-type": "application/json" },
    body: "{}",
  });
  if (res.body === null) throw new Error(`upgrade answered ${res.status} with no body`);
  let blackoutFrom = Number.NaN;
  let buffered = "";
  const decoder = new TextDecoder();
  for await (const chunk of res.body) {
    buffered += decoder.decode(chunk, { stream: true });
    for (let nl = buffered.indexOf("\n"); nl >= 0; nl = buffered.indexOf("\n")) {
      const line = JSON.parse(buffered.slice(0, nl)) as { event: string; phase?: string; report?: KernelUpgradeReport; error?: unknown };
      buffered = buffered.slice(nl + 1);
      if (line.event === "phase" && line.phase === "boot") blackoutFrom = performance.now();
      if (line.event === "error") throw new Error(`upgrade failed: ${JSON.stringify(line.error)}`);
      if (line.event === "report" && line.report !== undefined) return { report: line.report, sent, blackoutFrom, done: performance.now() };
    }
  }
  throw new Error("the upgrade ended without a report");
}

/** N SIGKILLs of the runtime process under load; with a standby, each waits until the next standby has booted. */
async function kills(m: MoltProcess, standby: boolean, failures: FailureLog): Promise<Record<string, unknown>> {
  const before = await counter(m.url);
  const load = startLoad(`${m.url}/counter/incr`, CLIENTS);
  const from = performance.now();
  await sleep(1000);
  const firstOk: number[] = [];
  let standbyUsed = 0;
  for (let i = 0; i < KILLS; i++) {
    if (standby) await standbyBooted(m);
    const { pid } = (await m.status()).kernel;
    const killedAt = performance.now();
    process.kill(pid, "SIGKILL");
    firstOk.push(await firstOkAfter(load, killedAt));
    await waitFor(async () => (await m.status().catch(() => undefined))?.kernel.pid !== pid, COMEBACK_MS, "the new runtime's status");
    const died = m.keeperLog.find((l) => l.runtime === pid && l.msg.startsWith("the runtime died"));
    if (died?.standby === true) standbyUsed++;
    process.stdout.write(`  kill ${i + 1}${standby ? " (standby)" : ""}: first OK after ${ms(firstOk.at(-1))}${died === undefined ? ", the keeper logged no death" : died.standby === true ? ", the standby took over" : ""}\n`);
    await sleep(300);
  }
  await load.stop();
  const after = await counter(m.url);
  const section = sectionOf(load, failures, from, performance.now(), before, after);
  // The blackout each restarted runtime recorded in the kernel chain: from the death the keeper saw to serving again.
  const { kernel: chain } = await m.admin<KernelHistoryBody>("/v1/kernel/history");
  const recorded = chain.filter((r) => r.via === "restart" && r.blackoutMs !== null).map((r) => r.blackoutMs ?? Number.NaN);
  return { runs: firstOk.length, first_ok_ms: summarize(firstOk), chain_blackout_ms: summarize(recorded), ...section, standby_used: standbyUsed };
}

/** Waits until the keeper says a standby beside the serving runtime has booted (its "standby runtime booted" line). */
async function standbyBooted(m: MoltProcess): Promise<void> {
  const { pid: serving } = (await m.status()).kernel;
  await waitFor(
    () => m.keeperLog.some((l) => l.msg === "standby runtime booted" && l.runtime !== undefined && l.runtime !== serving && running(l.runtime)),
    COMEBACK_MS,
    "a booted standby",
  );
}

/** The whole tree killed and `molt run` started again on the same port, N times under load. */
async function restartBaseline(start: (httpPort: number) => Promise<MoltProcess>, failures: FailureLog): Promise<Record<string, unknown>> {
  // The first start takes any free port; every restart after it takes the same one, as a daemon's clients expect.
  let m = await start(0);
  const port = Number(new URL(m.url).port);
  const load = startLoad(`${m.url}/counter/incr`, CLIENTS);
  const from = performance.now();
  await sleep(1000);
  const firstOk: number[] = [];
  for (let i = 0; i < RESTARTS; i++) {
    const killedAt = performance.now();
    await m.killTree();
    m = await start(port);
    firstOk.push(await firstOkAfter(load, killedAt));
    process.stdout.write(`  restart ${i + 1}: first OK after ${ms(firstOk.at(-1))}\n`);
    await sleep(300);
  }
  await load.stop();
  const after = await counter(m.url);
  const section = sectionOf(load, failures, from, performance.now(), 0, after);
  await m.stop();
  return { runs: firstOk.length, first_ok_ms: summarize(firstOk), ...section };
}

/** How long after `since` the first request sent after it succeeded: what a client connecting then waits. */
async function firstOkAfter(load: Load, since: number): Promise<number> {
  let first: Sample | undefined;
  // Samples are recorded as they end, and only those that began after `since` count: start the scan where those may be.
  let seen = load.samples.findIndex((s) => s.end >= since);
  await waitFor(
    () => {
      for (; first === undefined && seen >= 0 && seen < load.samples.length; seen++) {
        const s = load.samples[seen];
        if (s !== undefined && s.ok && s.start >= since) first = s;
      }
      if (seen < 0) seen = load.samples.findIndex((s) => s.end >= since);
      return first !== undefined;
    },
    COMEBACK_MS,
    "the first successful response",
  );
  return (first?.end ?? Number.NaN) - since;
}

function sectionOf(load: Load, failures: FailureLog, from: number, to: number, countBefore: number, countAfter: number): Section {
  const failed = load.samples.filter((s) => !s.ok);
  const kinds = failures.between(from, to);
  // Answers that came back but not 200 (a gateway's 5xx) are failures the socket did not see.
  for (const s of failed) if (s.status !== 0) kinds[`HTTP ${s.status}`] = (kinds[`HTTP ${s.status}`] ?? 0) + 1;
  const acknowledged = load.samples.length - failed.length;
  return { requests: load.samples.length, failed: failed.length, failed_by_kind: kinds, refused: kinds.ECONNREFUSED ?? 0, state_lost: countBefore + acknowledged - countAfter };
}

function report(result: Record<"upgrade" | "sigkill" | "sigkill_standby" | "restart_baseline", Record<string, unknown>>, load0: number): void {
  const { upgrade, sigkill, sigkill_standby: standby, restart_baseline: baseline } = result;
  const blackout = upgrade.blackout_ms as Summary;
  const firstOk = (r: Record<string, unknown>): Summary => r.first_ok_ms as Summary;
  const met = (ok: boolean): string => (ok ? "met" : "NOT met");
  printTable(
    ["scenario", "runs", "dark p50", "p99", "max", "failed", "refused", "state lost", "target", ""],
    [
      ["upgrade (blackout)", String(upgrade.runs), ms(blackout.p50), ms(blackout.p99), ms(blackout.max), String(upgrade.failed), String(upgrade.refused), String(upgrade.state_lost), `0 failed, p50 ≤ ${TARGETS.upgradeBlackoutP50Ms} ms`, met(upgrade.failed === 0 && upgrade.state_ok === true && blackout.p50 <= TARGETS.upgradeBlackoutP50Ms)],
      ["upgrade (client gap)", String(upgrade.runs), ...row(upgrade.client_gap_ms as Summary), "", "", "", "", ""],
      ["SIGKILL", String(sigkill.runs), ...row(firstOk(sigkill)), String(sigkill.failed), String(sigkill.refused), String(sigkill.state_lost), `0 refused, first OK ≤ ${TARGETS.firstOkMs} ms`, met(sigkill.refused === 0 && firstOk(sigkill).p50 <= TARGETS.firstOkMs)],
      ["SIGKILL, standby", String(standby.runs), ...row(firstOk(standby)), String(standby.failed), String(standby.refused), String(standby.state_lost), `0 refused, first OK ≤ ${TARGETS.firstOkStandbyMs} ms`, met(standby.refused === 0 && firstOk(standby).p50 <= TARGETS.firstOkStandbyMs)],
      ["process restart", String(baseline.runs), ...row(firstOk(baseline)), String(baseline.failed), String(baseline.refused), String(baseline.state_lost), "baseline", ""],
    ],
  );
  console.log(`SIGKILL with standby: the standby took over ${String(standby.standby_used)} of ${String(standby.runs)} times; upgrade boot p50 ${ms((upgrade.boot_ms as Summary).p50)} (outside the blackout)`);
  const chain = (r: Record<string, unknown>): Summary => r.chain_blackout_ms as Summary;
  console.log(`restart blackout as the kernel chain records it, p50: ${ms(chain(sigkill).p50)} without standby, ${ms(chain(standby).p50)} with`);
  const out = {
    ...result,
    targets: {
      upgrade: { failed: 0, blackout_p50_ms: TARGETS.upgradeBlackoutP50Ms },
      sigkill: { refused: 0, first_ok_ms: TARGETS.firstOkMs },
      sigkill_standby: { refused: 0, first_ok_ms: TARGETS.firstOkStandbyMs },
    },
    load: { clients: CLIENTS, request: "POST /counter/incr through the gateway, keep-alive, closed loop" },
    code: codeVersion(),
    machine: { cpu: readFileSync("/proc/cpuinfo", "utf8").match(/model name\s*:\s*(.*)/)?.[1] ?? "unknown", node: process.version, loadavg_before: load0, loadavg_after: loadavg()[0] },
    date: new Date().toISOString(),
  };
  mkdirSync(join(ROOT, "bench/results"), { recursive: true });
  writeFileSync(join(ROOT, "bench/results/kernel.json"), `${JSON.stringify(out, null, 2)}\n`);
  writeFileSync(
    join(ROOT, "bench/results/kernel.svg"),
    barChart("How long clients wait: kernel upgrade, runtime SIGKILL and a restart of molt", "ms", [
      { label: "upgrade", bars: [{ series: "p50", value: blackout.p50 }, { series: "max", value: blackout.max }] },
      { label: "upgrade, client gap", bars: [{ series: "p50", value: (upgrade.client_gap_ms as Summary).p50 }, { series: "max", value: (upgrade.client_gap_ms as Summary).max }] },
      { label: "SIGKILL, standby", bars: [{ series: "p50", value: firstOk(standby).p50 }, { series: "max", value: firstOk(standby).max }] },
      { label: "SIGKILL", bars: [{ series: "p50", value: firstOk(sigkill).p50 }, { series: "max", value: firstOk(sigkill).max }] },
      { label: "process restart", bars: [{ series: "p50", value: firstOk(baseline).p50 }, { series: "max", value: firstOk(baseline).max }] },
    ]),
  );
  console.log("wrote bench/results/kernel.json and bench/results/kernel.svg");
}

/** The longest time between two successful answers (any client) that overlaps [from, to]: the gap clients felt. */
function longestGap(ends: readonly number[], from: number, to: number): number {
  let longest = 0;
  for (let i = 1; i < ends.length; i++) {
    const [a, b] = [ends[i - 1] ?? 0, ends[i] ?? 0];
    if (a >= to) break;
    if (b > from) longest = Math.max(longest, b - a);
  }
  return longest;
}

/** When each successful request ended, in order (the load records them as they end). */
function okEnds(samples: readonly Sample[]): number[] {
  return samples.filter((s) => s.ok).map((s) => s.end);
}

function copyPackage(work: string): string {
  const molt = join(work, "molt");
  for (const entry of PACKAGE) cpSync(join(ROOT, entry), join(molt, entry), { recursive: true });
  symlinkSync(join(ROOT, "node_modules"), join(molt, "node_modules"));
  return molt;
}

/** The example daemon's config (molt.config.ts) with the copy's services, free ports and the bench's kernel settings. */
function writeProject(work: string, name: string, molt: string, kernel: { standby: boolean }, httpPort: number): { dir: string; config: string; dataDir: string } {
  const dir = join(work, name);
  const dataDir = join(dir, "data");
  mkdirSync(dir, { recursive: true });
  const entry = (service: string): string => JSON.stringify(join(molt, "services", service, "index.ts"));
  const config = join(dir, "molt.config.ts");
  writeFileSync(
    config,
    `export default {
  services: {
    gateway: { entry: ${entry("gateway")}, bindings: { counter: "counter", kv: "kv" }, config: { routes: { "/counter": "counter", "/kv": "kv" } } },
    counter: { entry: ${entry("counter")}, limits: { memoryMb: 64, timeoutMs: 1000 } },
    kv: { entry: ${entry("kv")} },
    log: { entry: ${entry("log")}, permissions: { stdout: true }, config: { level: "info" } },
  },
  http: { port: ${httpPort}, service: "gateway" },
  admin: { port: 0 },
  log: { service: "log" },
  dataDir: ${JSON.stringify(dataDir)},
  kernel: { standby: ${kernel.standby}, restart: { maxRestarts: 1000, windowMs: 60000 } },
};\n`,
  );
  return { dir, config, dataDir };
}

async function counter(url: string): Promise<number> {
  const res = await fetch(`${url}/counter/get`, { headers: FRESH });
  if (!res.ok) throw new Error(`GET /counter/get answered ${res.status}`);
  return Number((await res.text()).trim());
}

function codeVersion(): { commit: string; dirty: boolean } {
  const git = (...args: string[]): string => execFileSync("git", args, { cwd: ROOT, encoding: "utf8" }).trim();
  return { commit: git("rev-parse", "--short", "HEAD"), dirty: git("status", "--porcelain", "--untracked-files=no").length > 0 };
}

function count(flag: string, fallback: number): number {
  const at = process.argv.indexOf(flag);
  const value = at < 0 ? fallback : Number(process.argv[at + 1]);
  if (!Number.isInteger(value) || value < 1) throw new Error(`${flag} takes a whole number of at least 1`);
  return value;
}

const row = (s: Summary): string[] => [ms(s.p50), ms(s.p99), ms(s.max)];
const sleep = (t: number): Promise<void> => new Promise((r) => setTimeout(r, t));
const ms = (v: number | undefined): string => (v === undefined || !Number.isFinite(v) ? "-" : `${v.toFixed(v < 10 ? 2 : 0)} ms`);

await main();
process.exit(0);
