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

import { fork, type ChildProcess } from "node:child_process";
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
import type { FromWorker, ToWorker, WorkerStart } from "./lib/fleet-sim-worker.ts";
import { median, printTable } from "./lib/stats.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const WORKER = join(ROOT, "bench/lib/fleet-sim-worker.ts");
const SERVICE = "counter";
const ADVISORY = "MOLT-SIM-0001";
const WAVES = [1, 5, 25, 100];

const { values: args } = parseArgs({
  options: {
    runtimes: { type: "string", default: "50000" },
    processes: { type: "string", default: "2" },
    connections: { type: "string", default: "4" },
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

class Worker {
  readonly child: ChildProcess;
  readonly #waiters = new Map<FromWorker["type"], (m: FromWorker) => void>();

  /** Resolves once the process has loaded and listens. */
  readonly ready: Promise<void>;

  constructor() {
    this.child = fork(WORKER, [], { execArgv: ["--import", "tsx"], stdio: ["ignore", "inherit", "inherit", "ipc"] });
    this.ready = new Promise((resolve) => this.#waiters.set("ready", () => resolve()));
    this.child.on("message", (m: FromWorker) => {
      const waiter = this.#waiters.get(m.type);
      this.#waiters.delete(m.type);
      waiter?.(m);
    });
  }

  ask<T extends FromWorker["type"]>(message: ToWorker, answer: T, timeoutMs: number): Promise<Extract<FromWorker, { type: T }>> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`worker ${this.child.pid}: no "${answer}" within ${timeoutMs} ms`)), timeoutMs);
      this.#waiters.set(answer, (m) => {
        clearTimeout(timer);
        resolve(m as Extract<FromWorker, { type: T }>);
      });
      this.child.send(message);
    });
  }

  async kill(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise((r) => this.child.once("exit", r));
    this.child.kill("SIGKILL");
    await exited;
  }
}

async function timed<T>(run: () => Promise<T>): Promise<{ ms: number; value: T }> {
  const t0 = performance.now();
  const value = await run();
  return { ms: performance.now() - t0, value };
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
  const workers: Worker[] = [];
  const nc = await connectFleet({ servers: nats.url, name: "bench", waitOnFirstConnect: false });
  let watch: HeartbeatWatch | undefined;
  try {
    const stores = await openStores(nc);
    await stores.bundles.putBlob({ name: v.v3.hash, description: v.v3.entry }, new TextEncoder().encode(v.v3.code));
    const jsm = await jetstreamManager(nc);
    const stream = `KV_${Bucket.nodes}`;
    const heartbeats = async (): Promise<number> => (await jsm.streams.info(stream)).state.num_subjects ?? 0;

    // Join: every worker starts its members at once; joined when every runtime's heartbeat is in the bucket.
    const nodes = Array.from({ length: n }, (_, i) => `sim-${String(i).padStart(6, "0")}`);
    for (let p = 0; p < PROCESSES; p++) workers.push(new Worker());
    await Promise.all(workers.map((w) => w.ready));
    const t0 = performance.now();
    const reports = workers.map((w, p) => {
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
      };
      return w.ask(order, "joined", 30 * 60_000);
    });
    while ((await heartbeats()) < n) {
      if (performance.now() - t0 > 30 * 60_000) throw new Error(`only ${await heartbeats()} of ${n} joined in 30 minutes`);
      await sleep(250);
    }
    const joinMs = performance.now() - t0;
    const joined = await Promise.all(reports);
    console.log(`joined: ${n} heartbeats in ${(joinMs / 1000).toFixed(1)} s (workers: ${joined.map((j) => `${j.members} in ${(j.ms / 1000).toFixed(1)} s, ${j.failed} failed`).join("; ")})`);

    // Steady state: a period for the join's burst to pass, then two periods of counters.
    await sleep(hb * 1.2);
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
    for (let i = 0; i < 3; i++) {
      const status = await timed(async () => {
        const read = await readFleet(nats.url);
        formatFleet(read);
        return read.nodes.length;
      });
      const advisory = await timed(async () => {
        const read = await readAdvisoryStatus(nats.url, ADVISORY);
        formatAdvisoryStatus(read);
        return read;
      });
      statusRuns.push(status.ms);
      advisoryRuns.push(advisory.ms);
      listed = `${status.value} runtimes listed; advisory: ${advisory.value.fixed.length} fixed, ${advisory.value.vulnerable.length} vulnerable, ${advisory.value.unknown.length} unknown`;
    }
    console.log(`status: ${statusRuns.map((ms) => ms.toFixed(0)).join(", ")} ms; --advisory: ${advisoryRuns.map((ms) => ms.toFixed(0)).join(", ")} ms (${listed})`);

    // Rollout in waves, timed until every heartbeat shows v2 (the bench's own watch).
    watch = await HeartbeatWatch.start(stores.nodes, SERVICE);
    await watch.until(v.v1.hash, n, 60_000);
    const beforeRollout = await nats.counters();
    const tr = performance.now();
    const waves: { wave: number; percent: number; target: number; ms: number }[] = [];
    const onEvent = (event: RolloutEvent): void => {
      if (event.type !== "wave" || event.phase !== "end") return;
      const ms = performance.now() - tr;
      waves.push({ wave: event.wave, percent: event.percent, target: event.target, ms: Math.round(ms) });
      console.log(`  wave ${event.wave}/${event.waves} (${event.percent}%): ${event.onNew} of ${event.runtimes} on v2 at ${(ms / 1000).toFixed(1)} s, ${event.failed} failed`);
    };
    const record = await rollout({ nats: nats.url, service: SERVICE, entry: v.v2.entry, canary: 1, waves: WAVES, batch: IN_FLIGHT, onEvent });
    const rolloutToolMs = performance.now() - tr;
    const rolloutMs = await watch.until(v.v2.hash, n, 10 * 60_000, tr);
    const afterRollout = await nats.counters();
    console.log(`rollout: tool ${(rolloutToolMs / 1000).toFixed(1)} s, every heartbeat on v2 at ${(rolloutMs / 1000).toFixed(1)} s; ${record.swapped.length} swapped, ${record.failed.length} failed, ${record.skipped.length} skipped`);

    // A broadcast: the desired version changed, every runtime converges on its own.
    const tc = performance.now();
    await settle(stores, nc, v.v3);
    const convergeMs = await watch.until(v.v3.hash, n, 10 * 60_000, tc);
    const afterConverge = await nats.counters();
    console.log(`converge: every heartbeat on v3 at ${(convergeMs / 1000).toFixed(1)} s after the broadcast`);

    const usage = await Promise.all(workers.map((w) => w.ask({ type: "usage" }, "usage", 60_000)));
    const result = {
      runtimes: n,
      join_ms: Math.round(joinMs),
      status_ms: Math.round(median(statusRuns)),
      status_runs_ms: statusRuns.map(Math.round),
      advisory_ms: advisoryRuns.length === 0 ? null : Math.round(median(advisoryRuns)),
      advisory_runs_ms: advisoryRuns.map(Math.round),
      rollout: {
        runtimes: n,
        ms: Math.round(rolloutMs),
        tool_ms: Math.round(rolloutToolMs),
        failed: record.failed.length,
        swapped: record.swapped.length,
        skipped: record.skipped.length,
        outcome: record.outcome,
        waves,
        in_flight: IN_FLIGHT,
        load: rates(beforeRollout, afterRollout),
      },
      converge_ms: Math.round(convergeMs),
      converge_load: rates(afterRollout, afterConverge),
      nats_rss_mb: Math.round(c2.mem / 2 ** 20),
      nats_peak_rss_mb: Math.round(nats.peakRss() / 2 ** 20),
      nats_connections: c2.connections,
      nats_subscriptions: c2.subscriptions,
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
    machine: { cpus: cpus().length, model: cpus()[0]?.model, memGiB: Math.round(totalmem() / 2 ** 30), node: process.version, load_at_end: loadavg()[0] },
    simulated: simulated(),
    series,
  };
  mkdirSync(join(ROOT, "bench/results"), { recursive: true });
  writeFileSync(String(args.out), `${JSON.stringify(out, null, 2)}\n`);
  printTable(
    ["runtimes", "join s", "status ms", "advisory ms", "rollout s", "failed", "converge s", "nats MB"],
    series.map((r) => [
      String(r.runtimes),
      ((r.join_ms as number) / 1000).toFixed(1),
      String(r.status_ms),
      String(r.advisory_ms ?? "-"),
      (((r.rollout as { ms: number }).ms) / 1000).toFixed(1),
      String((r.rollout as { failed: number }).failed),
      ((r.converge_ms as number) / 1000).toFixed(1),
      String(r.nats_rss_mb),
    ]),
  );
  console.log(`written to ${String(args.out)}`);
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
