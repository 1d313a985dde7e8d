// bench:fleet — a fleet on one machine: one nats-server with JetStream and
// N runtime processes (default 20) joined to it. Measures, in one run:
//   - a call through a binding to a service on another runtime (over NATS)
//     next to the same call to the same service running locally, both from
//     HTTP through the gateway of runtime 0, interleaved so both see the
//     same machine;
//   - a rollout of the counter v1 → v2 (canary 1, batches of 5): the time the
//     rollout tool takes, and the time until every runtime's heartbeat shows
//     v2 (what `molt fleet status` sees).
//
//   npm run bench:fleet        (BENCH_FLEET_RUNTIMES=n to change N)

import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { cpus, tmpdir, totalmem } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { rollout } from "../fleet/rollout.ts";
import { readFleet } from "../fleet/status.ts";
import { NatsServer } from "../test/support/nats.ts";
import { startRuntime, type RunningRuntime } from "../test/support/runtime.ts";
import { printTable, summarize } from "./lib/stats.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const N = Number(process.env.BENCH_FLEET_RUNTIMES ?? 20);
const CALLS = 2000;
const V1 = join(ROOT, "services/counter/index.ts");
const V2 = join(ROOT, "services/counter/v2.ts");
const WHERE = join(ROOT, "test/fixtures/fleet/where.ts");

function config(i: number, natsUrl: string): string {
  const where = i === N - 1;
  return `export default {
  services: {
    gateway: {
      entry: ${JSON.stringify(join(ROOT, "services/gateway/index.ts"))},
      bindings: { counter: "counter", where: "where", here: "here" },
      config: { routes: { "/counter": "counter", "/where": "where", "/here": "here" } },
    },
    counter: { entry: ${JSON.stringify(V1)} },
    // The same service twice: "here" on every runtime, "where" only on the last one.
    here: { entry: ${JSON.stringify(WHERE)}, config: { node: "n${i}" } },
    ${where ? `where: { entry: ${JSON.stringify(WHERE)}, config: { node: "n${i}" } },` : ""}
  },
  http: { port: 0, service: "gateway" },
  dataDir: "./data",
  fleet: { nats: ${JSON.stringify(natsUrl)}, node: "n${String(i).padStart(2, "0")}", heartbeatMs: 1000, reconcileMs: 30000 },
};
`;
}

async function until(what: string, probe: () => Promise<boolean>, timeoutMs: number): Promise<number> {
  const t0 = performance.now();
  while (!(await probe())) {
    if (performance.now() - t0 > timeoutMs) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return performance.now() - t0;
}

async function timedGet(url: string): Promise<number> {
  const t0 = performance.now();
  const res = await fetch(url);
  await res.text();
  if (res.status !== 200) throw new Error(`${url}: ${res.status}`);
  return performance.now() - t0;
}

async function main(): Promise<void> {
  const nats = await NatsServer.start();
  const runtimes: RunningRuntime[] = [];
  try {
    const t0 = performance.now();
    // Started a few at a time: each bundles and boots its services.
    for (let i = 0; i < N; i += 4) {
      const batch = [];
      for (let j = i; j < Math.min(N, i + 4); j++) {
        const dir = mkdtempSync(join(tmpdir(), `molt-bench-fleet-${j}-`));
        writeFileSync(join(dir, "molt.config.ts"), config(j, nats.url));
        batch.push(startRuntime(join(dir, "molt.config.ts"), { readyTimeoutMs: 120_000, env: { MOLT_LOG_LEVEL: "warn" } }));
      }
      runtimes.push(...(await Promise.all(batch)));
    }
    const joinedMs = await until("all runtimes joined", async () => (await readFleet(nats.url)).nodes.filter((n) => n.live).length === N, 60_000);
    console.log(`${N} runtimes started and joined in ${((performance.now() - t0) / 1000).toFixed(1)} s (last joins ${joinedMs.toFixed(0)} ms after the last ready line)`);

    // Calls: local binding vs a binding to a service on another runtime.
    const front = runtimes[0] as RunningRuntime;
    for (let i = 0; i < 200; i++) {
      await timedGet(`${front.url}/here`);
      await timedGet(`${front.url}/where`);
    }
    const local: number[] = [];
    const remote: number[] = [];
    for (let i = 0; i < CALLS; i++) {
      local.push(await timedGet(`${front.url}/here`));
      remote.push(await timedGet(`${front.url}/where`));
    }
    const l = summarize(local);
    const r = summarize(remote);

    // Rollout, then convergence as the fleet's inventory shows it.
    let v2 = "";
    const tr = performance.now();
    const record = await rollout({ nats: nats.url, service: "counter", entry: V2, canary: 1, batch: 5 });
    v2 = record.version;
    const rolloutMs = performance.now() - tr;
    await until(
      "all runtimes on v2",
      async () => (await readFleet(nats.url)).nodes.every((n) => n.services.find((s) => s.name === "counter")?.version === v2),
      60_000,
    );
    const convergedMs = performance.now() - tr;

    printTable(
      ["HTTP → gateway → where (ms)", "p50", "p99", "max"],
      [
        ["on the same runtime", l.p50, l.p99, l.max],
        ["on another runtime (NATS)", r.p50, r.p99, r.max],
      ],
    );
    printTable(
      ["rollout of counter v1 → v2", "value"],
      [
        ["runtimes", N],
        ["swapped", record.swapped.length],
        ["failed", record.failed.length],
        ["rollout tool, start → completed (s)", (rolloutMs / 1000).toFixed(2)],
        ["start → every heartbeat shows v2 (s)", (convergedMs / 1000).toFixed(2)],
      ],
    );
    const result = {
      machine: { cpus: cpus().length, model: cpus()[0]?.model, memGiB: Math.round(totalmem() / 2 ** 30), node: process.version },
      runtimes: N,
      calls: CALLS,
      local_ms: l,
      remote_ms: r,
      remote_over_local_p50: Math.round((r.p50 / l.p50) * 100) / 100,
      rollout: { swapped: record.swapped.length, failed: record.failed.length, rollout_s: rolloutMs / 1000, converged_s: convergedMs / 1000 },
    };
    mkdirSync(join(ROOT, "bench/results"), { recursive: true });
    writeFileSync(join(ROOT, "bench/results/fleet.json"), `${JSON.stringify(result, null, 2)}\n`);
    console.log(`remote/local p50: ${result.remote_over_local_p50}×; written to bench/results/fleet.json`);
  } finally {
    await Promise.all(runtimes.map((rt) => rt.stop()));
    await nats.stop();
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
