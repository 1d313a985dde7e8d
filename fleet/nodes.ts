// Reading the fleet's heartbeat records: every runtime that announced itself,
// and whether it is still alive. A listing is one consumer over the nodes
// bucket that the server streams every record through, never one get per
// runtime: at 50,000 runtimes that is the difference between one request
// and 50,000.

import type { KV, KvEntry } from "@nats-io/kv";
import { ErrorCode, MoltError } from "../core/errors.ts";
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

/** How long a reading of the heartbeats waits for the next record before it gives up on NATS. */
export const READ_IDLE_TIMEOUT_MS = 15_000;

/** The heartbeats as read, and the highest revision the reading reached (a watch resumes after it). */
export interface HeartbeatReading {
  seen: Map<string, Heartbeat>;
  revision: number;
}

/**
 * Every heartbeat record in the bucket: the latest record of each runtime,
 * streamed by one ordered consumer.
 *
 * The reading is bounded by the bucket as it was when the reading began:
 * the stream's last sequence L and its number of values K (history 1, so
 * one value per key). It ends once a record at or past L has arrived and K
 * keys have been seen. Stopping when nothing is pending instead never ends
 * while heartbeats arrive faster than they are read (thousands of runtimes
 * on a loaded machine); the consumer's pending count is no help either, as
 * it reads 0 while keys rewritten during the reading are still to come.
 * Stopping at L alone misses those keys: a key's old value is gone once it
 * is rewritten, and its new one comes after L.
 *
 * Should fewer than K keys have come by L (records that expired or were
 * purged meanwhile), the bound is taken again from the bucket as it is
 * then, and the reading ends at the first bound that brought no new key.
 */
export async function readHeartbeats(nodes: KV, idleTimeoutMs = READ_IDLE_TIMEOUT_MS): Promise<Map<string, Heartbeat>> {
  return (await readHeartbeatsAt(nodes, idleTimeoutMs)).seen;
}

export async function readHeartbeatsAt(nodes: KV, idleTimeoutMs = READ_IDLE_TIMEOUT_MS): Promise<HeartbeatReading> {
  const seen = new Map<string, Heartbeat>();
  let bound = await boundOf(nodes);
  if (bound.values === 0) return { seen, revision: bound.lastSeq };

  const keys = new Set<string>();
  let keysAtBound = 0;
  let revision = 0;
  let idle = false;
  let watch: Awaited<ReturnType<KV["watch"]>>;
  try {
    watch = await nodes.watch({ ignoreDeletes: false });
  } catch (cause) {
    throw new MoltError(ErrorCode.FLEET, `cannot read the fleet's heartbeats: ${(cause as Error).message}`, { cause });
  }
  const onIdle = (): void => {
    idle = true;
    watch.stop();
  };
  let timer = setTimeout(onIdle, idleTimeoutMs);
  try {
    for await (const entry of watch) {
      clearTimeout(timer);
      applyEntry(seen, entry);
      keys.add(entry.key);
      revision = Math.max(revision, entry.revision);
      if (revision >= bound.lastSeq) {
        if (keys.size >= bound.values || keys.size === keysAtBound) break;
        keysAtBound = keys.size;
        bound = await boundOf(nodes);
      }
      timer = setTimeout(onIdle, idleTimeoutMs);
    }
  } finally {
    clearTimeout(timer);
    watch.stop();
  }
  if (idle) {
    throw new MoltError(ErrorCode.FLEET, `NATS stopped sending the fleet's heartbeats: nothing for ${idleTimeoutMs} ms, after ${keys.size} of ${bound.values}`);
  }
  return { seen, revision };
}

/** The nodes stream's last sequence and number of values, as of now. */
async function boundOf(nodes: KV): Promise<{ lastSeq: number; values: number }> {
  try {
    const status = await nodes.status();
    return { lastSeq: status.streamInfo.state.last_seq, values: status.values };
  } catch (cause) {
    throw new MoltError(ErrorCode.FLEET, `cannot read the fleet's heartbeats: ${(cause as Error).message}`, { cause });
  }
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
