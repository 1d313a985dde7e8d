// bench:fleet-scale — the fleet at full size on one machine: one real
// nats-server with JetStream and N simulated runtimes (default 50,000),
// packed many per process across a few worker processes. Each simulated
// runtime is a real FleetMember (fleet/member.ts: its subjects, heartbeats,
// reconcile, swap requests and bundle fetches) over a stub kernel whose swap
// sleeps a set time (bench/lib/fleet-sim-kernel.ts). Measures, for each N:
//   - the time for all to join (every heartbeat in the nodes bucket);
//   - the steady NATS and JetStream load, from the server's own counters;
//   - `molt fleet status` and `--advisory` query times (the library calls
//     the CLI makes);
//   - a rollout to all N in waves, from start to every heartbeat showing the
//     new version, and its failures;
//   - convergence after a broadcast (a settled desired version written and
//     announced as a rollout does: every heartbeat shows it);
//   - nats-server's memory.
//
//   npm run bench:fleet-scale -- [--runtimes 50000 | --runtimes 1000,5000,20000]
//     [--processes 2] [--swap-ms 20] [--heartbeat-ms auto] [--reconcile-ms auto]

import { createHash } from "node:crypto";
import { mkdirSync, writeFileSync } from "node:fs";
import { cpus, loadavg, totalmem } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { jetstreamManager } from "@nats-io/jetstream";
import { bundleService, type Bundle } from "../core/bundle.ts";
import { connectFleet, openStores, type FleetStores } from "../fleet/connection.ts";
import { addToAdvisory, changeAdvisory, openAdvisories } from "../fleet/advisory.ts";
import { formatAdvisoryStatus } from "../fleet/advisory-status.ts";
import { Bucket, decodeRecord, encodeRecord, Subject, type DesiredChange, type DesiredRecord } from "../fleet/protocol.ts";
import { rollout, type RolloutEvent } from "../fleet/rollout.ts";
import { formatFleet, readAdvisoryStatus, readFleet } from "../fleet/status.ts";
import type { SimVersion } from "./lib/fleet-sim-kernel.ts";
import { rates, SimNats, type ServerCounters } from "./lib/fleet-sim-nats.ts";
import { HeartbeatWatch } from "./lib/fleet-sim-watch.ts";
import type { FromWorker, WorkerStart } from "./lib/fleet-sim-worker.ts";
import { SimProcess } from "./lib/fleet-sim-process.ts";
import { fitLinear, type LinearFit } from "./lib/fleet-sim-fit.ts";
import { median, printTable } from "./lib/stats.ts";
import { barChart } from "./lib/svg.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const SERVICE = "counter";
const ADVISORY = "MOLT-SIM-0001";
/** Each query is timed this many times. */
const QUERIES = 3;
const QUERY_BUDGET_MS = 60_000;
/** How long the bench waits for every heartbeat to show a version before it records how many did and goes on. */
const WAIT_MS = 5 * 60_000;
const WAVES = [1, 5, 25, 100];

const { values: args } = parseArgs({
  options: {
    runtimes: { type: "string", default: "50000" },
    processes: { type: "string", default: "2" },
    connections: { type: "string", default: "16" },
    "swap-ms": { type: "string", default: "20" },
    "in-flight": { type: "string", default: "500" },
    "heartbeat-ms": { type: "string", default: "auto" },
    "reconcile-ms": { type: "string", default: "auto" },
    out: { type: "string", default: join(ROOT, "bench/results/fleet-scale.json") },
  },
});

const SIZES = (args.runtimes ?? "50000").split(",").map((s) => Number(s.trim()));
const PROCESSES = Number(args.processes);
/** NATS connections per worker process, shared by its members; 0: one connection per member, as real runtimes have. */
const CONNECTIONS = Number(args.connections);
const SWAP_MS = Number(args["swap-ms"]);
/** The rollout's `batch`: within a wave, how many swaps are in flight at once (the CLI's --batch). */
const IN_FLIGHT = Number(args["in-flight"]);

/**
 * The heartbeat period for a fleet of n: the default 5 s up to 5,000
 * runtimes, then longer so that the nodes bucket takes at most about 1,000
 * puts a second (50,000 runtimes: 50 s). Said in the results.
 */
function heartbeatMs(n: number): number {
  return args["heartbeat-ms"] === "auto" ? Math.max(5000, Math.round(n / 1000) * 1000) : Number(args["heartbeat-ms"]);
}

/** The reconcile period: the default 60 s up to 5,000, then 12 heartbeats (at most ~140 desired gets a second at 50,000). */
function reconcileMs(n: number): number {
  return args["reconcile-ms"] === "auto" ? Math.max(60_000, 12 * heartbeatMs(n)) : Number(args["reconcile-ms"]);
}

interface Versions {
  v1: Bundle;
  v2: Bundle;
  v3: Bundle;
  catalog: SimVersion[];
}

/** v1 and v2 are the example counter's two versions; v3 is v2's code with a comment added (a new hash), for the broadcast. */
async function versions(): Promise<Versions> {
  const v1 = await bundleService(join(ROOT, "services/counter/index.ts"));
  const v2 = await bundleService(join(ROOT, "services/counter/v2.ts"));
  const code = `${v2.code}\n// v3 (bench:fleet-scale)\n`;
  const v3: Bundle = { code, hash: createHash("sha256").update(code).digest("hex"), entry: join(ROOT, "services/counter/v3-sim.ts") };
  const catalog: SimVersion[] = [
    { hash: v1.hash, semver: "1.0.0", stateVersion: 1, fixes: [] },
    { hash: v2.hash, semver: "2.0.0", stateVersion: 2, fixes: [ADVISORY] },
    { hash: v3.hash, semver: "2.0.1", stateVersion: 2, fixes: [ADVISORY] },
  ];
  return { v1, v2, v3, catalog };
}

/**
 * Times a query, giving up waiting after QUERY_BUDGET_MS: a query that does
 * not answer is a result (reported as Infinity, "did not answer"), not a
 * reason to stop the run. The abandoned query may still run meanwhile.
 */
async function budgeted(run: () => Promise<string>): Promise<{ ms: number; value: string }> {
  const t0 = performance.now();
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<string>((resolve) => {
    timer = setTimeout(() => resolve(`no answer within ${QUERY_BUDGET_MS / 1000} s`), QUERY_BUDGET_MS);
  });
  const value = await Promise.race([run(), late]);
  clearTimeout(timer);
  const ms = performance.now() - t0;
  return { ms: ms >= QUERY_BUDGET_MS ? Number.POSITIVE_INFINITY : ms, value };
}

/** A time for the JSON: null when it was not measured (a halt) or did not end within its budget. */
function msOrNull(ms: number): number | null {
  return Number.isFinite(ms) ? Math.round(ms) : null;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Writes a settled desired version and broadcasts it, as a completed rollout does. */
async function settle(stores: FleetStores, nc: Awaited<ReturnType<typeof connectFleet>>, bundle: Bundle): Promise<void> {
  const current = await stores.desired.get(SERVICE);
  const before = current === null || current.operation !== "PUT" ? null : decodeRecord<DesiredRecord>(current.value, "desired");
  const record: DesiredRecord = {
    service: SERVICE,
    version: bundle.hash,
    semver: null,
    entry: bundle.entry,
    revision: (before?.revision ?? 0) + 1,
    state: "settled",
    rollout: "bench-broadcast",
    at: new Date().toISOString(),
    lastSettled: null,
  };
  await stores.desired.put(SERVICE, encodeRecord(record));
  const change: DesiredChange = { service: SERVICE, revision: record.revision, version: bundle.hash, state: "settled" };
  nc.publish(Subject.desired, encodeRecord(change));
  await nc.flush();
}

async function runOnce(n: number, v: Versions): Promise<Record<string, unknown>> {
  const hb = heartbeatMs(n);
  const rc = reconcileMs(n);
  console.log(`\n== ${n} simulated runtimes in ${PROCESSES} processes; heartbeatMs ${hb}, reconcileMs ${rc}, swap ${SWAP_MS} ms (load ${loadavg()[0]?.toFixed(2)})`);
  const nats = await SimNats.start();
  const workers: SimProcess[] = [];
  const nc = await connectFleet({ servers: nats.url, name: "bench", waitOnFirstConnect: false });
  let watch: HeartbeatWatch | undefined;
  try {
    const stores = await openStores(nc);
    await stores.bundles.putBlob({ name: v.v3.hash, description: v.v3.entry }, new TextEncoder().encode(v.v3.code));
    const jsm = await jetstreamManager(nc);
    const stream = `KV_${Bucket.nodes}`;
    const heartbeats = async (): Promise<number> => (await jsm.streams.info(stream)).state.num_subjects ?? 0;

    // Join, twice. First every runtime at once (as after a NATS restart, the
    // hardest case): joined when every runtime's heartbeat is in the bucket.
    // Those heartbeats then stay in step, a burst of N puts each period, as
    // no long-running fleet's would; so the runtimes leave and join again
    // spread over one heartbeat period, and that fleet is the one measured.
    const nodes = Array.from({ length: n }, (_, i) => `sim-${String(i).padStart(6, "0")}`);
    for (let p = 0; p < PROCESSES; p++) workers.push(new SimProcess());
    await Promise.all(workers.map((w) => w.ready));
    const start = (spreadMs: number): Promise<Extract<FromWorker, { type: "joined" }>[]> =>
      Promise.all(
        workers.map((w, p) => {
          const order: WorkerStart = {
            type: "start",
            nats: nats.url,
            nodes: nodes.filter((_, i) => i % PROCESSES === p),
            services: [SERVICE],
            initial: v.v1,
            versions: v.catalog,
            swapMs: SWAP_MS,
            heartbeatMs: hb,
            reconcileMs: rc,
            connections: CONNECTIONS,
            spreadMs,
          };
          return w.ask(order, "joined", 30 * 60_000);
        }),
      );
    const t0 = performance.now();
    const reports = start(0);
    while ((await heartbeats()) < n) {
      if (performance.now() - t0 > 30 * 60_000) throw new Error(`only ${await heartbeats()} of ${n} joined in 30 minutes`);
      await sleep(250);
    }
    const joinMs = performance.now() - t0;
    const joined = await reports;
    console.log(`joined: ${n} heartbeats in ${(joinMs / 1000).toFixed(1)} s (workers: ${joined.map((j) => `${j.members} in ${(j.ms / 1000).toFixed(1)} s, ${j.failed} failed`).join("; ")})`);
    const left = await Promise.all(workers.map((w) => w.ask({ type: "leave" }, "left", 10 * 60_000)));
    const rejoined = await start(hb);
    console.log(`left in ${left.map((l) => (l.ms / 1000).toFixed(1)).join(", ")} s; joined again spread over ${hb / 1000} s: ${rejoined.map((j) => `${j.members}, ${j.failed} failed`).join("; ")}`);

    // Steady state: two periods of the server's counters.
    const windowMs = Math.max(2 * hb, 20_000);
    const c1 = await nats.counters();
    await sleep(windowMs);
    const c2 = await nats.counters();
    const steady = rates(c1, c2);
    console.log(`steady: ${JSON.stringify(steady)}`);

    // Queries, as the CLI makes them (the same library calls and the same
    // formatting, printing left out), three times each. The advisory is
    // declared by v2 and v3: before the rollout every runtime is vulnerable.
    await changeAdvisory(await openAdvisories(nc, true), ADVISORY, (current) =>
      addToAdvisory(current, ADVISORY, { title: "bench:fleet-scale's advisory, fixed by v2", severity: "high" }),
    );
    const statusRuns: number[] = [];
    const advisoryRuns: number[] = [];
    let listed = "";
    for (let i = 0; i < QUERIES; i++) {
      const status = await budgeted(async () => {
        const read = await readFleet(nats.url);
        formatFleet(read);
        return `${read.nodes.length} runtimes listed`;
      });
      const advisory = await budgeted(async () => {
        const read = await readAdvisoryStatus(nats.url, ADVISORY);
        formatAdvisoryStatus(read);
        return `advisory: ${read.fixed.length} fixed, ${read.vulnerable.length} vulnerable, ${read.unknown.length} unknown`;
      });
      statusRuns.push(status.ms);
      advisoryRuns.push(advisory.ms);
      listed = `${status.value}; ${advisory.value}`;
    }
    console.log(`status: ${statusRuns.map((ms) => ms.toFixed(0)).join(", ")} ms; --advisory: ${advisoryRuns.map((ms) => ms.toFixed(0)).join(", ")} ms (${listed})`);

    // Rollout in waves, timed until every heartbeat shows v2 (the bench's own watch).
    watch = await HeartbeatWatch.start(stores.nodes, SERVICE);
    if (Number.isNaN(await watch.until(v.v1.hash, n, 60_000))) throw new Error(`the bench's watch sees ${watch.count(v.v1.hash)} of ${n} runtimes on v1`);
    const beforeRollout = await nats.counters();
    const tr = performance.now();
    const waves: { wave: number; percent: number; target: number; ms: number }[] = [];
    let end: Extract<RolloutEvent, { type: "end" }> | undefined;
    const onEvent = (event: RolloutEvent): void => {
      if (event.type === "end") end = event;
      if (event.type !== "wave" || event.phase !== "end") return;
      const ms = performance.now() - tr;
      waves.push({ wave: event.wave, percent: event.percent, target: event.target, ms: Math.round(ms) });
      console.log(`  wave ${event.wave}/${event.waves} (${event.percent}%): ${event.onNew} of ${event.runtimes} on v2 at ${(ms / 1000).toFixed(1)} s, ${event.failed} failed`);
    };
    // A halted rollout is a result too (its failures are the figure): its end event says what happened.
    const halt = await rollout({ nats: nats.url, service: SERVICE, entry: v.v2.entry, canary: 1, waves: WAVES, batch: IN_FLIGHT, onEvent }).then(
      () => null,
      (err: unknown) => err as Error,
    );
    const rolloutToolMs = performance.now() - tr;
    if (end === undefined) throw halt ?? new Error("the rollout ended without an end event");
    const record = end;
    const rolloutMs = halt === null ? await watch.until(v.v2.hash, n, WAIT_MS, tr) : Number.NaN;
    const onV2 = watch.count(v.v2.hash);
    if (halt !== null) console.log(`rollout halted: ${halt.message.slice(0, 600)}`);
    const afterRollout = await nats.counters();
    console.log(`rollout: tool ${(rolloutToolMs / 1000).toFixed(1)} s; ${onV2} of ${n} heartbeats on v2 ${Number.isNaN(rolloutMs) ? "(not all)" : `at ${(rolloutMs / 1000).toFixed(1)} s`}; ${record.swapped.length} swapped, ${record.failed.length} failed, ${record.skipped.length} skipped`);

    // A broadcast: the desired version changed, every runtime converges on its own.
    const tc = performance.now();
    await settle(stores, nc, v.v3);
    const convergeMs = await watch.until(v.v3.hash, n, WAIT_MS, tc);
    const onV3 = watch.count(v.v3.hash);
    const afterConverge = await nats.counters();
    console.log(`converge: ${onV3} of ${n} heartbeats on v3 ${Number.isNaN(convergeMs) ? `after ${WAIT_MS / 1000} s (gave up waiting)` : `at ${(convergeMs / 1000).toFixed(1)} s`} after the broadcast`);

    const usage = await Promise.all(workers.map((w) => w.ask({ type: "usage" }, "usage", 60_000)));
    const result = {
      runtimes: n,
      join_ms: Math.round(joinMs),
      status_ms: msOrNull(median(statusRuns)),
      status_runs_ms: statusRuns.map(msOrNull),
      advisory_ms: msOrNull(median(advisoryRuns)),
      advisory_runs_ms: advisoryRuns.map(msOrNull),
      rollout: {
        runtimes: n,
        ms: msOrNull(rolloutMs),
        tool_ms: Math.round(rolloutToolMs),
        failed: record.failed.length,
        failures: summarizeFailures(record.failed),
        swapped: record.swapped.length,
        skipped: record.skipped.length,
        on_new_version: onV2,
        outcome: record.outcome,
        waves,
        in_flight: IN_FLIGHT,
        load: rates(beforeRollout, afterRollout),
      },
      converge_ms: msOrNull(convergeMs),
      converged: onV3,
      converge_load: rates(afterRollout, afterConverge),
      nats_rss_mb: Math.round(c2.mem / 2 ** 20),
      nats_peak_rss_mb: Math.round(nats.peakRss() / 2 ** 20),
      nats_connections: c2.connections,
      nats_subscriptions: c2.subscriptions,
      nats_warnings: Object.fromEntries(nats.warnings),
      steady,
      heartbeat_ms: hb,
      reconcile_ms: rc,
      swap_ms: SWAP_MS,
      processes: PROCESSES,
      workers: usage.map(({ rssMb, cpuMs, swaps, logs, lastError }) => ({ rss_mb: rssMb, cpu_ms: cpuMs, swaps, logs, last_error: lastError })),
    };
    return result;
  } finally {
    await watch?.stop().catch(() => undefined);
    await Promise.all(workers.map((w) => w.ask({ type: "leave" }, "left", 60_000).catch(() => undefined)));
    await Promise.all(workers.map((w) => w.kill()));
    await nc.close().catch(() => undefined);
    await nats.stop();
  }
}

async function main(): Promise<void> {
  const v = await versions();
  const series: Record<string, unknown>[] = [];
  for (const n of SIZES) series.push(await runOnce(n, v));
  const last = series[series.length - 1] ?? {};
  const out = {
    ...last,
    model: costModel(series),
    machine: { cpus: cpus().length, model: cpus()[0]?.model, memGiB: Math.round(totalmem() / 2 ** 30), node: process.version, load_at_end: loadavg()[0] },
    simulated: simulated(),
    series,
  };
  mkdirSync(join(ROOT, "bench/results"), { recursive: true });
  writeFileSync(String(args.out), `${JSON.stringify(out, null, 2)}\n`);
  writeFileSync(String(args.out).replace(/\.json$/, ".svg"), chart(series));
  printTable(
    ["runtimes", "join s", "status s", "advisory s", "rollout s", "failed", "converge s", "nats peak MB"],
    series.map((r) => {
      const f = (name: string, digits: number): string => {
        const v = FIGURES[name]?.(r) ?? Number.NaN;
        return Number.isFinite(v) ? v.toFixed(digits) : "-";
      };
      return [String(r.runtimes), f("join_s", 1), f("status_s", 2), f("advisory_s", 2), f("rollout_s", 1), String((r.rollout as { failed: number }).failed), f("converge_s", 1), String(r.nats_peak_rss_mb)];
    }),
  );
  console.log(`written to ${String(args.out)}`);
}

/** Failed swaps counted by code and message: a halted rollout at scale lists thousands. */
function summarizeFailures(failed: readonly { code: string; message: string }[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const f of failed) {
    const key = `${f.code}: ${f.message.slice(0, 120)}`;
    counts[key] = (counts[key] ?? 0) + 1;
  }
  return counts;
}

/** The figures of each size, by name, in seconds (or MB) as the chart and the model show them. */
const FIGURES: Record<string, (r: Record<string, unknown>) => number> = {
  join_s: (r) => seconds(r.join_ms),
  status_s: (r) => seconds(r.status_ms),
  advisory_s: (r) => seconds(r.advisory_ms),
  rollout_s: (r) => seconds((r.rollout as { ms: unknown }).ms),
  converge_s: (r) => seconds(r.converge_ms),
  nats_peak_rss_mb: (r) => r.nats_peak_rss_mb as number,
};

/** A time in the results (ms, or null when not measured) in seconds, NaN for none. */
function seconds(ms: unknown): number {
  return typeof ms === "number" ? ms / 1000 : Number.NaN;
}

/** Each figure fitted to a + b·N over the sizes that ran (null with one size). */
function costModel(series: Record<string, unknown>[]): Record<string, LinearFit | null> {
  return Object.fromEntries(Object.entries(FIGURES).map(([name, read]) => [name, fitLinear(series.map((r) => ({ x: r.runtimes as number, y: read(r) })))]));
}

function chart(series: Record<string, unknown>[]): string {
  const shown = ["join_s", "status_s", "advisory_s", "rollout_s", "converge_s"] as const;
  return barChart(
    "bench:fleet-scale: simulated runtimes on one nats-server",
    "s",
    series.map((r) => ({ label: `${String(r.runtimes)} runtimes`, bars: shown.map((name) => ({ series: name.replace(/_s$/, ""), value: FIGURES[name]?.(r) ?? Number.NaN })) })),
  );
}

function simulated(): string {
  return (
    `Each runtime is a real FleetMember (fleet/member.ts) over a stub kernel: no isolates; a swap sleeps ${SWAP_MS} ms and reports the new version. ` +
    `Runtimes are packed ${PROCESSES === 1 ? "in one process" : `across ${PROCESSES} processes`} on one machine with the nats-server, ` +
    (CONNECTIONS === 0
      ? "each with its own NATS connection, as real runtimes have. "
      : `sharing ${CONNECTIONS} NATS connection${CONNECTIONS === 1 ? "" : "s"} (and the stores opened on them) per process, where each real runtime has its own: the server sees ${PROCESSES * CONNECTIONS} clients, not N. `) +
    `Each runs one service ("${SERVICE}"). Versions' semver and fixes are told to the stub, not read from modules. ` +
    `Heartbeat and reconcile periods are raised with N (heartbeat_ms, reconcile_ms per run).`
  );
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
