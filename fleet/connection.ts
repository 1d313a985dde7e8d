// One NATS connection and the JetStream stores the fleet keeps, opened the
// same way by a runtime and by the rollout tool. Reconnects never give up and
// wait a jittered while between attempts, so that when a NATS server comes
// back, tens of thousands of runtimes do not all reconnect in the same
// instant.

import { hostname } from "node:os";
import { jetstream, JetStreamApiCodes, JetStreamApiError, type DirectStreamAPI, type JetStreamClient } from "@nats-io/jetstream";
import { Kvm, type KV } from "@nats-io/kv";
import { Objm, type ObjectStore } from "@nats-io/obj";
import { connect, errors, type NatsConnection } from "@nats-io/transport-node";
import { ErrorCode, MoltError } from "../core/errors.ts";
import { Bucket, NODE_RECORD_MAX_AGE_MS } from "./protocol.ts";

export interface FleetStores {
  nodes: KV;
  desired: KV;
  rollouts: KV;
  bundles: ObjectStore;
  /** Direct gets on the fleet's streams: how a runtime reads a bundle without creating a consumer (fleet/bundles.ts). */
  direct: DirectStreamAPI;
}

export interface ConnectOptions {
  servers: string;
  name: string;
  /** false: fail at once when no server answers (a CLI); true: keep trying (a runtime). */
  waitOnFirstConnect: boolean;
}

export async function connectFleet(options: ConnectOptions): Promise<NatsConnection> {
  try {
    return await connect({
      servers: options.servers.split(",").map((s) => s.trim()),
      name: `molt ${options.name} (${hostname()})`,
      waitOnFirstConnect: options.waitOnFirstConnect,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 1000,
      reconnectJitter: 1000,
      timeout: 5000,
      pingInterval: 10_000,
    });
  } catch (cause) {
    throw new MoltError(ErrorCode.FLEET, `cannot connect to NATS at ${options.servers}: ${(cause as Error).message}`, { cause });
  }
}

/** Opens (creating where missing) the fleet's KV buckets and object store: what a runtime and a rollout do. */
export async function openStores(nc: NatsConnection): Promise<FleetStores> {
  const js: JetStreamClient = jetstream(nc, { timeout: 10_000 });
  const kvm = new Kvm(js);
  try {
    const [nodes, desired, rollouts, bundles, jsm] = await Promise.all([
      kvm.create(Bucket.nodes, { history: 1, ttl: NODE_RECORD_MAX_AGE_MS }),
      kvm.create(Bucket.desired, { history: 5 }),
      kvm.create(Bucket.rollouts, { history: 1 }),
      new Objm(js).create(Bucket.bundles),
      // The stores above have just proved JetStream answers: no second check.
      js.jetstreamManager(false),
    ]);
    return { nodes, desired, rollouts, bundles, direct: jsm.direct };
  } catch (cause) {
    throw storesFailure(cause);
  }
}

/** Opens the buckets a reader needs without creating anything; null when no runtime has made them yet. */
export async function openExistingStores(nc: NatsConnection): Promise<Omit<FleetStores, "bundles" | "direct"> | null> {
  const kvm = new Kvm(jetstream(nc, { timeout: 10_000 }));
  try {
    const [nodes, desired, rollouts] = await Promise.all([kvm.open(Bucket.nodes), kvm.open(Bucket.desired), kvm.open(Bucket.rollouts)]);
    // Opening binds a name without asking the server; asking each bucket's
    // status is what finds out whether it exists.
    await Promise.all([nodes.status(), desired.status(), rollouts.status()]);
    return { nodes, desired, rollouts };
  } catch (cause) {
    if (cause instanceof JetStreamApiError && cause.code === JetStreamApiCodes.StreamNotFound) return null;
    throw storesFailure(cause);
  }
}

function storesFailure(cause: unknown): MoltError {
  return new MoltError(ErrorCode.FLEET, `cannot open the fleet's JetStream stores (is nats-server running with -js?): ${(cause as Error).message}`, {
    cause,
  });
}

/**
 * Whether a JetStream write lost its compare-and-set: the key changed since
 * the revision the writer gave (or, for a create, it exists). Told by
 * JetStream's error code, not its text.
 */
export function isStaleRevision(err: unknown): boolean {
  return (
    err instanceof JetStreamApiError &&
    (err.code === JetStreamApiCodes.StreamWrongLastSequence || err.code === JetStreamApiCodes.StreamWrongLastSequenceUnknown)
  );
}

/** The largest message the connected server takes (NATS's max_payload, 1 MiB by default), less room for headers. */
export function maxPayload(nc: NatsConnection): number {
  return (nc.info?.max_payload ?? 1024 * 1024) - 4096;
}

/** What a NATS request failure means for a molt caller. */
export function requestFailure(err: unknown, subject: string, timeoutMs: number): MoltError {
  const e = err as Error & { cause?: unknown };
  if (e instanceof errors.NoRespondersError || (e instanceof errors.RequestError && e.isNoResponders())) {
    return new MoltError(ErrorCode.NO_SERVICE, `no runtime answers on ${subject}`, { cause: err });
  }
  if (e instanceof errors.TimeoutError || e.cause instanceof errors.TimeoutError) {
    return new MoltError(ErrorCode.TIMEOUT, `no answer on ${subject} within ${timeoutMs} ms`, { cause: err });
  }
  return new MoltError(ErrorCode.FLEET, `request on ${subject} failed: ${e.message}`, { cause: err });
}
