// The fleet's inventory: which runtime runs which version of which service,
// what the fleet should run, which runtimes still run a version that a
// later rollout superseded, and which have the fix for an advisory. A
// reading costs one consumer over the heartbeats plus a get per service,
// never a get per runtime (fleet/nodes.ts).

import type { NatsConnection } from "@nats-io/transport-node";
import { shortId } from "../core/bundle.ts";
import { openAdvisories, readAdvisory } from "./advisory.ts";
import { advisoryStatus, type AdvisoryStatus } from "./advisory-status.ts";
import { connectFleet, openExistingStores } from "./connection.ts";
import { readNodes, runningVersion, type SeenNode } from "./nodes.ts";
import { decodeRecord, type DesiredRecord, type RolloutHistory, type RolloutRecord } from "./protocol.ts";

export interface FleetStatus {
  at: string;
  nodes: SeenNode[];
  desired: Record<string, DesiredRecord>;
  rollouts: Record<string, RolloutRecord[]>;
}

export interface VersionGroup {
  version: string | null;
  semver: string | null;
  stateVersion: number | null;
  parent: string | null;
  nodes: string[];
  /** Runtimes in the group whose heartbeat stopped. */
  gone: string[];
  desired: boolean;
  /** Set when the fleet has settled on another version since this one. */
  superseded: { by: string; rollout: string } | null;
}

export interface ServiceView {
  service: string;
  desired: DesiredRecord | null;
  groups: VersionGroup[];
}

export async function readFleet(nats: string): Promise<FleetStatus> {
  return withConnection(nats, "status", readStatus);
}

/** Which runtimes run a version that fixes an advisory; ERR_NO_ADVISORY when there is no such advisory. */
export async function readAdvisoryStatus(nats: string, id: string): Promise<AdvisoryStatus> {
  return withConnection(nats, "status", async (nc) => {
    // The record first: an unknown id is an error before the fleet is read.
    const advisory = await readAdvisory(await openAdvisories(nc, false), id);
    const stores = await openExistingStores(nc);
    return advisoryStatus(stores === null ? [] : await readNodes(stores.nodes), advisory);
  });
}

async function withConnection<T>(nats: string, name: string, run: (nc: NatsConnection) => Promise<T>): Promise<T> {
  const nc = await connectFleet({ servers: nats, name, waitOnFirstConnect: false });
  try {
    return await run(nc);
  } finally {
    await nc.close().catch(() => undefined);
  }
}

async function readStatus(nc: NatsConnection): Promise<FleetStatus> {
  // A reader creates nothing: before any runtime joined, the fleet is empty.
  const stores = await openExistingStores(nc);
  if (stores === null) return { at: new Date().toISOString(), nodes: [], desired: {}, rollouts: {} };
  const nodes = await readNodes(stores.nodes);
  const services = new Set(nodes.flatMap((n) => n.services.map((s) => s.name)));
  const desired: Record<string, DesiredRecord> = {};
  const rollouts: Record<string, RolloutRecord[]> = {};
  for await (const key of await stores.desired.keys()) services.add(key);
  for (const service of services) {
    const d = await stores.desired.get(service);
    if (d !== null && d.operation === "PUT") desired[service] = decodeRecord<DesiredRecord>(d.value, "desired version");
    const r = await stores.rollouts.get(service);
    if (r !== null && r.operation === "PUT") rollouts[service] = decodeRecord<RolloutHistory>(r.value, "rollout history").rollouts;
  }
  return { at: new Date().toISOString(), nodes, desired, rollouts };
}

/** One service across the fleet: its runtimes grouped by the version they run. */
export function serviceView(status: FleetStatus, service: string): ServiceView {
  const desired = status.desired[service] ?? null;
  const groups = new Map<string | null, VersionGroup>();
  for (const node of status.nodes) {
    const version = runningVersion(node, service);
    if (version === undefined) continue;
    let group = groups.get(version);
    if (group === undefined) {
      const running = node.services.find((s) => s.name === service);
      group = {
        version,
        semver: running?.semver ?? null,
        stateVersion: running?.stateVersion ?? null,
        parent: running?.chain.find((link) => link.version === version)?.parent ?? null,
        nodes: [],
        gone: [],
        desired: desired !== null && desired.state === "settled" && desired.version === version,
        superseded: desired !== null && desired.state === "settled" && version !== null && version !== desired.version ? supersededBy(status.rollouts[service] ?? [], version, desired) : null,
      };
      groups.set(version, group);
    }
    group.nodes.push(node.node);
    if (!node.live) group.gone.push(node.node);
  }
  return { service, desired, groups: [...groups.values()].sort((a, b) => b.nodes.length - a.nodes.length) };
}

/** The completed rollout that replaced `version`: the latest one that started from it, else the one the fleet settled on. */
function supersededBy(rollouts: RolloutRecord[], version: string, desired: DesiredRecord): { by: string; rollout: string } {
  const completed = rollouts.filter((r) => r.outcome === "completed");
  const from = [...completed].reverse().find((r) => r.from.includes(version));
  return from === undefined ? { by: desired.version, rollout: desired.rollout } : { by: from.version, rollout: from.id };
}

export function formatFleet(status: FleetStatus): string {
  if (status.nodes.length === 0) return "no runtime has joined this fleet\n";
  const lines: string[] = [];
  for (const node of status.nodes) {
    const state = node.stoppedAt !== null ? "stopped" : node.live ? "live" : "gone";
    const kernel = node.kernel === undefined || node.kernel === null ? "" : `, kernel ${node.kernel.semver} ${shortId(node.kernel.version)}`;
    lines.push(`${node.node}  ${state}  last heartbeat ${(node.ageMs / 1000).toFixed(1)} s ago  (${node.host}, pid ${node.pid}${kernel})`);
    for (const s of node.services) {
      const desired = status.desired[s.name];
      const mark = desired !== undefined && desired.state === "settled" && s.version !== desired.version ? "  ← superseded" : "";
      const chain = s.chain.map((c) => `${shortId(c.version)} ${c.semver} (${c.via}, ${c.outcome})`).join(" ← ");
      const fixes = s.fixes === undefined || s.fixes === null || s.fixes.length === 0 ? "" : `  fixes ${s.fixes.join(", ")}`;
      lines.push(`  ${s.name.padEnd(12)} ${s.version === null ? "-" : shortId(s.version)}  ${s.semver ?? "-"}  stateVersion ${s.stateVersion ?? "-"}  ${s.state}${mark}${fixes}`);
      if (chain !== "") lines.push(`  ${"".padEnd(12)} history: ${chain}`);
    }
    if (node.lastError !== null) lines.push(`  last error: ${node.lastError.service} → ${shortId(node.lastError.version)}: ${node.lastError.code} ${node.lastError.message}`);
  }
  return `${lines.join("\n")}\n`;
}

export function formatService(view: ServiceView): string {
  const lines: string[] = [];
  const d = view.desired;
  lines.push(
    d === null ? `${view.service}: no desired version (no rollout yet)` : `${view.service}: desired ${shortId(d.version)} (${d.state}, rollout ${d.rollout}, revision ${d.revision})`,
  );
  if (view.groups.length === 0) lines.push("  no runtime runs it");
  for (const g of view.groups) {
    const count = `${g.nodes.length} runtime${g.nodes.length === 1 ? "" : "s"}`;
    const flag = g.superseded !== null ? `  SUPERSEDED by ${shortId(g.superseded.by)} (rollout ${g.superseded.rollout})` : g.desired ? "  desired" : "";
    const gone = g.gone.length > 0 ? ` (no heartbeat: ${g.gone.join(", ")})` : "";
    lines.push(`  ${g.version === null ? "-".padEnd(12) : shortId(g.version)}  ${g.semver ?? "-"}  stateVersion ${g.stateVersion ?? "-"}  ${count}: ${g.nodes.join(", ")}${gone}${flag}`);
  }
  return `${lines.join("\n")}\n`;
}
