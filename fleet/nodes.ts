// Reading the fleet's heartbeat records: every runtime that announced itself,
// and whether it is still alive.

import type { KV } from "@nats-io/kv";
import { decodeRecord, type NodeRecord } from "./protocol.ts";

export interface SeenNode extends NodeRecord {
  stoppedAt: string | null;
  /** Milliseconds since its last heartbeat. */
  ageMs: number;
  /** Heartbeating (within three of its periods) and not stopped. */
  live: boolean;
}

/** A runtime whose heartbeat is older than this many of its own periods is taken for gone. */
export const MISSED_HEARTBEATS = 3;

export async function readNodes(nodes: KV, now = Date.now()): Promise<SeenNode[]> {
  // A key rewritten while the listing runs (a heartbeat) can be listed twice.
  const keys = new Set<string>();
  for await (const key of await nodes.keys()) keys.add(key);
  const seen: SeenNode[] = [];
  for (const key of keys) {
    const entry = await nodes.get(key);
    if (entry === null || entry.operation !== "PUT") continue;
    let record: NodeRecord & { stoppedAt?: string | null };
    try {
      record = decodeRecord(entry.value, `heartbeat of ${key}`);
    } catch {
      continue;
    }
    const ageMs = Math.max(0, now - Date.parse(record.heartbeatAt));
    const stoppedAt = record.stoppedAt ?? null;
    seen.push({ ...record, stoppedAt, ageMs, live: stoppedAt === null && ageMs <= MISSED_HEARTBEATS * record.heartbeatMs });
  }
  return seen.sort((a, b) => a.node.localeCompare(b.node));
}

/** The version a runtime runs of a service, or undefined when it does not run it. */
export function runningVersion(node: NodeRecord, service: string): string | null | undefined {
  const found = node.services.find((s) => s.name === service);
  return found === undefined ? undefined : found.version;
}
