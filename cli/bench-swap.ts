// `molt bench swap <service> <entry-a> <entry-b>`: how long the user's own
// service is dark when it is swapped, under the user's own traffic. It swaps
// the service back and forth between two entries through the admin API of a
// running runtime, N times, while autocannon drives HTTP load at a URL, and
// reports the blackout and every phase, client latency in steady state and
// during swaps, and failed requests: as a table, as JSON, and as an HTML page.

import { writeFileSync } from "node:fs";
import { resolve } from "node:path";
import { bundleService } from "../core/bundle.ts";
import { ErrorCode, MoltError, toMoltError } from "../core/errors.ts";
import { Phase, type SwapReport } from "../protocol/admin.ts";
import { startLoad, type Load } from "./bench-load.ts";
import { fmtMs, reportHtml } from "./bench-report.ts";
import { benchResult, type BenchResult, type BenchRun, type SwapRun } from "./bench-result.ts";
import { connect, type AdminClient } from "./client.ts";

export interface BenchSwapOptions {
  config: string | undefined;
  json: boolean;
  swaps?: string | undefined;
  load?: string | undefined;
  connections?: string | undefined;
  method?: string | undefined;
  body?: string | undefined;
  durationBetween?: string | undefined;
  report?: string | undefined;
  stopOnFailure?: boolean | undefined;
}

/** Load before the first swap that counts as neither steady nor during a swap: connections open, code warms up. */
const WARM_UP_MS = 1000;

const out = (line = ""): void => void process.stdout.write(`${line}\n`);
const note = (line: string): void => void process.stderr.write(`${line}\n`);

/** `molt bench <kind> …`: swap is the one benchmark there is. */
export function benchCommand(args: readonly string[], options: BenchSwapOptions): Promise<number> {
  const [kind, service, entryA, entryB] = args;
  if (kind !== "swap" || service === undefined || entryA === undefined || entryB === undefined || args.length > 4) {
    throw new MoltError(ErrorCode.USAGE, "usage: molt bench swap <service> <entry-a> <entry-b> [--swaps N] [--load <url>] …");
  }
  return benchSwapCommand(service, entryA, entryB, options);
}

/**
 * Exits 0 when every swap committed and no request failed, 1 otherwise, and
 * 130 when Ctrl-C stopped it (after printing what it had).
 */
export async function benchSwapCommand(service: string, entryA: string, entryB: string, options: BenchSwapOptions): Promise<number> {
  const swaps = count(options.swaps, "--swaps", 50, 1);
  const connections = count(options.connections, "--connections", 8, 1);
  const pauseMs = count(options.durationBetween, "--duration-between", 250, 0);
  if (options.load !== undefined && !/^https?:\/\//.test(options.load)) throw new MoltError(ErrorCode.USAGE, `--load takes an http:// or https:// URL, not "${options.load}"`);

  const client = await connect(options.config);
  const { services } = await client.status();
  if (!services.some((s) => s.name === service)) throw new MoltError(ErrorCode.NO_SERVICE, `no service named "${service}" runs there`, { service });
  const entries: [string, string] = [resolve(process.cwd(), entryA), resolve(process.cwd(), entryB)];
  await compileBoth(client, service, entries);

  // Ctrl-C lets the swap in flight finish (the runtime would finish it anyway), then stops; a second one exits at once.
  const interrupt = new Interrupt();
  const method = options.method ?? "GET";
  const url = options.load;
  const load = url === undefined ? null : startLoad({ url, connections, method, ...(options.body === undefined ? {} : { body: options.body }) });
  const run: BenchRun = {
    service,
    entries,
    startedAt: performance.now(),
    date: new Date().toISOString(),
    warmUntil: performance.now() + (load === null ? 0 : WARM_UP_MS),
    endedAt: 0,
    swaps: [],
    load: load === null || url === undefined ? null : { url, connections, method, answers: load.answers, errors: load.errors },
    stopped: null,
    leftOn: null,
  };
  let current: string | null = null;
  try {
    if (load !== null) await interrupt.sleep(WARM_UP_MS);
    current = await swapLoop(client, run, { swaps, pauseMs, stopOnFailure: options.stopOnFailure === true, json: options.json }, interrupt);
  } finally {
    interrupt.dispose();
    await stopLoad(load);
    run.endedAt = performance.now();
  }
  if (interrupt.fired) run.stopped = "interrupted";
  const now = (await client.status()).services.find((s) => s.name === service);
  if (now?.version != null) run.leftOn = { version: now.version, semver: now.semver ?? "?", entry: current };

  const result = benchResult(run);
  if (options.json) out(JSON.stringify(result));
  else printTable(result, run);
  if (options.report !== undefined) {
    const path = resolve(process.cwd(), options.report);
    writeFileSync(path, reportHtml(run, result));
    note(`report: ${path}`);
  }
  if (interrupt.fired) {
    note(`molt: interrupted after ${result.swaps} swap(s): ${service} was left on ${leftOnText(result)}`);
    return 130;
  }
  return result.failed_swaps === 0 && (result.requests?.failed ?? 0) === 0 ? 0 : 1;
}

/** A positive whole number from the command line, or the default. */
function count(value: string | undefined, flag: string, fallback: number, least: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < least) throw new MoltError(ErrorCode.USAGE, `${flag} takes a whole number of at least ${least}, not "${value}"`);
  return n;
}

/**
 * Both entries are bundled here, before anything is swapped, as the runtime
 * will bundle them (and within the same allowedRoots), so code that does not
 * compile stops the benchmark before its first swap instead of at its second.
 */
async function compileBoth(client: AdminClient, service: string, entries: readonly string[]): Promise<void> {
  const allowedRoots = client.config.admin?.allowedRoots;
  const hashes: string[] = [];
  for (const entry of entries) {
    try {
      hashes.push((await bundleService(entry, allowedRoots === undefined ? {} : { allowedRoots })).hash);
    } catch (err) {
      const e = toMoltError(err);
      if (e.code === ErrorCode.PERMISSION) throw e;
      throw new MoltError(ErrorCode.SWAP_COMPILE, e.message, { service, cause: e });
    }
  }
  if (hashes[0] === hashes[1]) throw new MoltError(ErrorCode.USAGE, `${entries[0]} and ${entries[1]} are the same code: there is nothing to swap between`);
}

interface LoopOptions {
  swaps: number;
  pauseMs: number;
  stopOnFailure: boolean;
  json: boolean;
}

/**
 * Swaps to whichever entry the service does not run, `swaps` times, and
 * returns the entry it was left on (null if no swap committed and the
 * service ran neither). A swap that rolled back leaves the service where it
 * was, so the next one tries the same entry again.
 */
async function swapLoop(client: AdminClient, run: BenchRun, options: LoopOptions, interrupt: Interrupt): Promise<string | null> {
  const [a, b] = run.entries;
  let current: string | null = null;
  let first = true;
  while (run.swaps.length < options.swaps && !interrupt.fired) {
    const entry: string = current === a ? b : a;
    const sentAt = performance.now();
    const { report, cutoverAt } = await swapOnce(client, run.service, entry);
    const endedAt = performance.now();
    if (report.outcome === "unchanged") {
      // The service already ran this entry: only possible on the first try, which then does not count.
      if (!first) throw new MoltError(ErrorCode.SWAP_BUSY, `${run.service} already ran ${entry}: is something else swapping it?`, { service: run.service });
      first = false;
      current = entry;
      continue;
    }
    first = false;
    const swap: SwapRun = { n: run.swaps.length + 1, entry, sentAt, endedAt, cutoverAt, report };
    run.swaps.push(swap);
    if (report.outcome === "committed" || report.outcome === "unhealthy") current = entry;
    if (report.outcome !== "committed") {
      note(`molt: swap ${swap.n} to ${entry} ${report.outcome}: ${report.error?.code ?? ""} ${report.error?.message ?? ""}`.trimEnd());
      // Code that cannot even boot is not a swap to measure: every later try would fail the same way.
      if (report.error?.code === ErrorCode.SWAP_COMPILE) throw new MoltError(ErrorCode.SWAP_COMPILE, report.error.message, { service: run.service });
      if (options.stopOnFailure) {
        run.stopped = "failure";
        break;
      }
    } else if (!options.json && process.stderr.isTTY) {
      process.stderr.write(`\rswap ${swap.n}/${options.swaps}: blackout ${fmtMs(report.blackoutMs)}   `);
    }
    if (run.swaps.length < options.swaps) await interrupt.sleep(options.pauseMs);
  }
  if (!options.json && process.stderr.isTTY) process.stderr.write("\n");
  return current;
}

/** One swap through the admin API: its report and when its cutover ended, or the error that kept it from beginning. */
async function swapOnce(client: AdminClient, service: string, entry: string): Promise<{ report: SwapReport; cutoverAt: number | null }> {
  let report: SwapReport | undefined;
  let cutoverAt: number | null = null;
  await client.swap(service, { entry }, (line) => {
    if (line.event === "phase" && line.phase === Phase.CUTOVER) cutoverAt = performance.now();
    if (line.event === "report") report = line.report;
    if (line.event === "error") throw new MoltError(line.error.code, line.error.message, { service });
  });
  if (report === undefined) throw new MoltError(ErrorCode.ADMIN, "the runtime ended the swap without a report", { service });
  return { report, cutoverAt };
}

async function stopLoad(load: Load | null): Promise<void> {
  if (load !== null) await load.stop();
}

/** Ctrl-C as a flag and a way to cut a pause short. */
class Interrupt {
  fired = false;
  #wake: (() => void) | undefined;
  readonly #onSignal = (): void => {
    if (this.fired) process.exit(130);
    this.fired = true;
    note("molt: stopping after the swap in flight (Ctrl-C again to quit now)");
    this.#wake?.();
  };

  constructor() {
    process.on("SIGINT", this.#onSignal);
  }

  sleep(ms: number): Promise<void> {
    if (this.fired || ms === 0) return Promise.resolve();
    return new Promise((done) => {
      const timer = setTimeout(done, ms);
      this.#wake = () => {
        clearTimeout(timer);
        done();
      };
    });
  }

  dispose(): void {
    process.off("SIGINT", this.#onSignal);
  }
}

function leftOnText(r: BenchResult): string {
  if (r.left_on === null) return "no running version";
  return `${r.left_on.semver} (${r.left_on.version.slice(0, 12)})${r.left_on.entry === null ? "" : `, ${r.left_on.entry}`}`;
}

function printTable(r: BenchResult, run: BenchRun): void {
  const load = run.load === null ? "no load" : `${run.load.connections} connections, ${run.load.method} ${run.load.url}`;
  out(`molt bench swap ${r.service}: ${r.swaps} swaps, ${r.committed} committed, ${r.failed_swaps} rolled back; ${load}${r.stopped === null ? "" : ` (stopped early: ${r.stopped})`}`);
  out();
  const rows: string[][] = [["", "p50", "p99", "max"], ["blackout", ...triple(r.blackout_ms)]];
  for (const [phase, s] of Object.entries(r.phases_ms)) rows.push([`  ${phase}`, ...triple(s)]);
  if (r.latency_ms !== null) {
    rows.push(["latency, steady", ...triple(r.latency_ms.steady)], ["latency, during a swap", ...triple(r.latency_ms.during_swap)]);
  }
  const widths = [0, 1, 2, 3].map((i) => Math.max(...rows.map((row) => (row[i] ?? "").length)));
  for (const row of rows) out(row.map((cell, i) => (i === 0 ? cell.padEnd(widths[i] ?? 0) : cell.padStart(widths[i] ?? 0))).join("   ").trimEnd());
  out();
  if (r.requests !== null) {
    const byStatus = Object.entries(r.requests.failed_by_status).map(([status, n]) => `${n} × ${status}`);
    out(`requests   ${r.requests.ok} ok, ${r.requests.failed} failed${byStatus.length === 0 ? "" : ` (${byStatus.join(", ")})`}`);
  }
  for (const f of r.failures) out(`rolled back: swap ${f.swap} to ${f.entry}: ${f.code} in ${f.phase}${f.blackout_ms === null ? "" : `, blackout ${fmtMs(f.blackout_ms)}`}`);
  out(`left on    ${leftOnText(r)}`);
}

function triple(s: { p50: number; p99: number; max: number }): string[] {
  return [fmtMs(s.p50), fmtMs(s.p99), fmtMs(s.max)];
}
