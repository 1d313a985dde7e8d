// Reading the fleet's heartbeat records: every runtime that announced itself,
// and whether it is still alive.

import type { KV } from "@nats-io/kv";
import { decodeRecord, type NodeRecord } from "./protocol.ts";

export interface SeenNode extends NodeRecord {
  /** Milliseconds since its last heartbeat reached the NATS server. */
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
    const node = await readNode(nodes, key, now);
    if (node !== null) seen.push(node);
  }
  return seen.sort((a, b) => a.node.localeCompare(b.node));
}

export async function readNode(nodes: KV, key: string, now = Date.now()): Promise<SeenNode | null> {
  const entry = await nodes.get(key);
  if (entry === null || entry.operation !== "PUT") return null;
  let record: NodeRecord;
  try {
    record = decodeRecord<NodeRecord>(entry.value, `heartbeat of ${key}`);
  } catch {
    return null;
  }
  // The age is read off the server's timestamp, not the runtime's clock: a
  // runtime whose clock is off is not taken for dead (or alive) because of it.
  const ageMs = Math.max(0, now - entry.created.getTime());
  const stoppedAt = record.stoppedAt ?? null;
  return { ...record, stoppedAt, ageMs, live: stoppedAt === null && ageMs <= MISSED_HEARTBEATS * record.heartbeatMs };
}

/** The version a runtime runs of a service, or undefined when it does not run it. */
export function runningVersion(node: NodeRecord, service: string): string | null | undefined {
  const found = node.services.find((s) => s.name === service);
  return found === undefined ? undefined : found.version;
}
