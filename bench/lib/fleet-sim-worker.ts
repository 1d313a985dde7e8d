// One process of simulated runtimes for bench:fleet-scale: many real
// FleetMembers (fleet/member.ts), each over its own stub kernel
// (fleet-sim-kernel.ts). The bench forks a few of these and drives them over
// IPC: "start" joins the members, "leave" makes each leave as a runtime does
// on a graceful stop. The process reports when all its members have joined,
// and what it costs (memory, CPU).

import type { Bundle } from "../../core/bundle.ts";
import type { KernelLog, Level } from "../../core/log.ts";
import type { NatsConnection } from "@nats-io/transport-node";
import { connectFleet, openStores, type FleetStores } from "../../fleet/connection.ts";
import { FleetMember } from "../../fleet/member.ts";
import { BundleShelf, StubKernel, type SimVersion } from "./fleet-sim-kernel.ts";

export interface WorkerStart {
  type: "start";
  nats: string;
  nodes: string[];
  services: string[];
  /** The version every service starts on, and its bundle (so a rollback to it needs no fetch, as on a real runtime). */
  initial: Bundle;
  versions: SimVersion[];
  swapMs: number;
  heartbeatMs: number;
  reconcileMs: number;
  /** NATS connections this process opens; its members share them, in turn. */
  connections: number;
  /** Each member joins at a random moment within this many ms (0: all at once). */
  spreadMs: number;
}

export type ToWorker = WorkerStart | { type: "leave" } | { type: "usage" };

export type FromWorker =
  | { type: "ready" }
  | { type: "joined"; members: number; ms: number; failed: number }
  | { type: "usage"; rssMb: number; cpuMs: number; swaps: number; logs: Record<Level, number>; lastError: string | null }
  | { type: "left"; ms: number };

/** Counts what members log, and keeps the last error for the bench to show; printing 50,000 join lines would be the bench's bottleneck. */
class CountingLog implements KernelLog {
  readonly counts: Record<Level, number> = { debug: 0, info: 0, warn: 0, error: 0 };
  lastError: string | null = null;

  log(level: Level, msg: string, fields?: Record<string, unknown>): void {
    this.counts[level]++;
    if (level === "error" || level === "warn") this.lastError = `${msg} ${JSON.stringify(fields ?? {})}`.slice(0, 500);
  }
}

const log = new CountingLog();
let members: FleetMember[] = [];
let kernels: StubKernel[] = [];
const shared: { nc: NatsConnection; stores: FleetStores }[] = [];

function tell(message: FromWorker): void {
  process.send?.(message);
}

async function start(order: WorkerStart): Promise<void> {
  const t0 = performance.now();
  const shelf = new BundleShelf(order.versions);
  shelf.keep(order.initial);
  const fleet = { nats: order.nats, heartbeatMs: order.heartbeatMs, reconcileMs: order.reconcileMs };
  for (let c = 0; c < order.connections; c++) {
    const nc = await connectFleet({ servers: order.nats, name: `sim-worker-${process.pid}-${c}`, waitOnFirstConnect: false });
    shared.push({ nc, stores: await openStores(nc) });
  }
  order.nodes.forEach((node, i) => {
    const kernel = new StubKernel({ services: order.services, initial: order.initial.hash, entry: order.initial.entry, swapMs: order.swapMs, shelf });
    kernels.push(kernel);
    const connection = shared.length === 0 ? undefined : shared[i % shared.length];
    members.push(new FleetMember({ kernel, fleet: { ...fleet, node }, dataDir: `/sim/${node}`, log, ...(connection === undefined ? {} : { connection }) }));
  });
  const joined = await Promise.allSettled(
    members.map(async (member) => {
      if (order.spreadMs > 0) await new Promise((resolve) => setTimeout(resolve, Math.random() * order.spreadMs));
      member.join();
      await member.joined();
    }),
  );
  tell({ type: "joined", members: members.length, ms: performance.now() - t0, failed: joined.filter((r) => r.status === "rejected").length });
}

async function leave(): Promise<void> {
  const t0 = performance.now();
  await Promise.allSettled(members.map((m) => m.leave()));
  members = [];
  kernels = [];
  await Promise.allSettled(shared.splice(0).map(({ nc }) => nc.drain()));
  tell({ type: "left", ms: performance.now() - t0 });
}

function usage(): void {
  const cpu = process.cpuUsage();
  tell({
    type: "usage",
    rssMb: Math.round(process.memoryUsage.rss() / 2 ** 20),
    cpuMs: Math.round((cpu.user + cpu.system) / 1000),
    swaps: kernels.reduce((n, k) => n + k.swaps, 0),
    logs: { ...log.counts },
    lastError: log.lastError,
  });
}

process.on("message", (message: ToWorker) => {
  const run = message.type === "start" ? start(message) : message.type === "leave" ? leave() : Promise.resolve(usage());
  run.catch((err: unknown) => {
    console.error(err);
    process.exit(1);
  });
});
tell({ type: "ready" });
// The bench going away (killed, crashed) takes its workers with it.
process.on("disconnect", () => process.exit(0));
