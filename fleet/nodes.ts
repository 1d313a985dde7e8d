// Reading the fleet's heartbeat records: every runtime that announced itself,
// and whether it is still alive. A listing is one consumer over the nodes
// bucket that the server streams every record through, never one get per
// runtime: at 50,000 runtimes that is the difference between one request
// and 50,000.

import type { KV, KvEntry } from "@nats-io/kv";
import { decodeRecord, type NodeRecord } from "./protocol.ts";

export interface SeenNode extends NodeRecord {
  /** Milliseconds since its last heartbeat reached the NATS server. */
  ageMs: number;
  /** Heartbeating (within three of its periods) and not stopped. */
  live: boolean;
}

/** A runtime whose heartbeat is older than this many of its own periods is taken for gone. */
export const MISSED_HEARTBEATS = 3;

/** A heartbeat as read off the bucket: the record and when the server stored it. */
export interface Heartbeat {
  record: NodeRecord;
  /** The server's timestamp of the write, in ms since the epoch. */
  storedAt: number;
  revision: number;
}

/**
 * Every heartbeat record in the bucket. The nodes bucket keeps one value
 * per key (history 1), so its whole history is the latest record of each
 * runtime: one ordered consumer streams them all and stops when it has
 * caught up. A key rewritten meanwhile arrives twice; the later one wins.
 */
export async function readHeartbeats(nodes: KV): Promise<Map<string, Heartbeat>> {
  const seen = new Map<string, Heartbeat>();
  for await (const entry of await nodes.history()) applyEntry(seen, entry);
  return seen;
}

export async function readNodes(nodes: KV, now = Date.now()): Promise<SeenNode[]> {
  return seenNodes((await readHeartbeats(nodes)).values(), now);
}

/** One runtime's record by its key: for a runtime checking its own node id, not for listing. */
export async function readNode(nodes: KV, key: string, now = Date.now()): Promise<SeenNode | null> {
  const entry = await nodes.get(key);
  if (entry === null) return null;
  const heartbeat = heartbeatOf(entry);
  return heartbeat === null ? null : seenNode(heartbeat, now);
}

/** Applies one entry of a listing or a watch to a map of heartbeats by key. */
export function applyEntry(seen: Map<string, Heartbeat>, entry: KvEntry): void {
  if (entry.operation !== "PUT") {
    seen.delete(entry.key);
    return;
  }
  const known = seen.get(entry.key);
  if (known !== undefined && known.revision > entry.revision) return;
  const heartbeat = heartbeatOf(entry);
  if (heartbeat === null) seen.delete(entry.key);
  else seen.set(entry.key, heartbeat);
}

function heartbeatOf(entry: KvEntry): Heartbeat | null {
  if (entry.operation !== "PUT") return null;
  try {
    return { record: decodeRecord<NodeRecord>(entry.value, `heartbeat of ${entry.key}`), storedAt: entry.created.getTime(), revision: entry.revision };
  } catch {
    // A record this molt cannot read (a newer fleet version) is left out of the listing.
    return null;
  }
}

/**
 * A heartbeat as of `now`. The age is read off the server's timestamp, not
 * the runtime's clock: a runtime whose clock is off is not taken for dead
 * (or alive) because of it.
 */
export function seenNode({ record, storedAt }: Heartbeat, now = Date.now()): SeenNode {
  const ageMs = Math.max(0, now - storedAt);
  const stoppedAt = record.stoppedAt ?? null;
  return { ...record, stoppedAt, ageMs, live: stoppedAt === null && ageMs <= MISSED_HEARTBEATS * record.heartbeatMs };
}

export function seenNodes(heartbeats: Iterable<Heartbeat>, now = Date.now()): SeenNode[] {
  const seen: SeenNode[] = [];
  for (const heartbeat of heartbeats) seen.push(seenNode(heartbeat, now));
  return seen.sort((a, b) => (a.node < b.node ? -1 : a.node > b.node ? 1 : 0));
}

/** The version a runtime runs of a service, or undefined when it does not run it. */
export function runningVersion(node: NodeRecord, service: string): string | null | undefined {
  const found = node.services.find((s) => s.name === service);
  return found === undefined ? undefined : found.version;
}
