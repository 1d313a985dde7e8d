// What runtimes and the rollout tool say to each other over NATS: subject and
// bucket names, and the records they exchange. Records are msgpack in a
// versioned envelope, like everything else molt sends or stores.
//
// Subjects (core NATS, no JetStream on the call path):
//   molt.svc.<service>        calls and sends to a service; every runtime that
//                             runs it subscribes in one queue group, so each
//                             message reaches exactly one of them
//   molt.node.<node>.swap     "swap this service to that version", from a rollout
//   molt.fleet.desired        broadcast: a service's desired version changed
// JetStream (state that outlives any process):
//   KV molt_nodes             one heartbeat record per runtime, rewritten every
//                             heartbeatMs; the bucket's max age expires the dead
//   KV molt_desired           per service: the version the fleet should run
//   KV molt_rollouts          per service: every rollout and how it ended
//   KV molt_advisories        per advisory: what it is and which versions fix it
//   object store molt_bundles bundles by content hash

import { Packr } from "msgpackr";
import { ErrorCode, MoltError } from "../core/errors.ts";

export const FLEET_VERSION = 1;

export const Subject = {
  service: (service: string) => `molt.svc.${service}`,
  swap: (node: string) => `molt.node.${node}.swap`,
  desired: "molt.fleet.desired",
} as const;

export const Bucket = {
  nodes: "molt_nodes",
  desired: "molt_desired",
  rollouts: "molt_rollouts",
  bundles: "molt_bundles",
  advisories: "molt_advisories",
} as const;

/** A heartbeat record outlives its runtime by at most this long (the nodes bucket's max age). */
export const NODE_RECORD_MAX_AGE_MS = 10 * 60_000;

/** Headers on a message to a service. */
export const Header = { kind: "molt-kind", from: "molt-from" } as const;

/** One version in a service's recent history, as a heartbeat reports it. */
export interface ChainLink {
  version: string;
  semver: string;
  stateVersion: number;
  parent: string | null;
  via: string;
  outcome: string;
  startedAt: string | null;
}

export interface NodeService {
  name: string;
  state: string;
  version: string | null;
  semver: string | null;
  stateVersion: number | null;
  /**
   * The advisory ids the running version declares it fixes; null when this
   * heartbeat had no room left for them (HEARTBEAT_LIMITS.fixChars), so the
   * version counts only by the advisories' own lists. Absent in heartbeats
   * of runtimes older than advisories.
   */
  fixes?: string[] | null;
  /** The latest versions first, at most CHAIN_LENGTH of them. */
  chain: ChainLink[];
}

export const CHAIN_LENGTH = 8;

/** What a runtime announces about itself at every heartbeat. */
export interface NodeRecord {
  node: string;
  /** Differs for every process: tells a restart of this runtime from another runtime using the same node id. */
  instance: string;
  /** The runtime's dataDir: the same node id from the same host and dataDir is the same runtime, restarted. */
  dataDir: string;
  pid: number;
  host: string;
  startedAt: string;
  heartbeatAt: string;
  heartbeatMs: number;
  /** The molt kernel this runtime runs (issue 16), when its composition root says; absent from older runtimes. */
  kernel?: KernelInfo | null;
  services: NodeService[];
  /** The last thing that went wrong converging to a desired version, if anything did. */
  lastError: { service: string; version: string; code: string; message: string; at: string } | null;
  /** Set by the last heartbeat of a runtime that stopped gracefully. */
  stoppedAt: string | null;
}

/** The kernel a runtime runs: the content id of its code and its semver. */
export interface KernelInfo {
  version: string;
  semver: string;
}

/**
 * Bounds on what a heartbeat carries, so that it stays far below NATS's 1
 * MiB message limit: the characters of advisory ids it carries in all (a
 * module declares at most 64 ids of at most 128 characters, and 200
 * services of those would not fit).
 */
export const HEARTBEAT_LIMITS = { services: 200, message: 300, fixChars: 32_768 } as const;

/** The version a service should run across the fleet. */
export interface DesiredRecord {
  service: string;
  version: string;
  semver: string | null;
  /** Where the code came from, as the rollout was given it (recorded in each runtime's inventory). */
  entry: string;
  /** Increases with every change, so a runtime can tell a new decision from one it has seen. */
  revision: number;
  /** "rolling": a rollout is moving runtimes itself, leave them be; "settled": converge to `version`. */
  state: "rolling" | "settled";
  rollout: string;
  at: string;
  /** While rolling: the decision the fleet had settled on before, which a halted rollout restores. */
  lastSettled: SettledVersion | null;
}

export interface SettledVersion {
  version: string;
  semver: string | null;
  entry: string;
  rollout: string;
}

/** The broadcast that a service's desired version changed: enough for a runtime already on it to do nothing. */
export interface DesiredChange {
  service: string;
  revision: number;
  version: string | null;
  state: DesiredRecord["state"] | "cleared";
}

export interface RolloutRecord {
  id: string;
  service: string;
  version: string;
  semver: string | null;
  /** The versions the runtimes ran before. */
  from: string[];
  startedAt: string;
  endedAt: string | null;
  outcome: "running" | "completed" | "halted";
  swapped: string[];
  failed: { node: string; code: string; message: string }[];
  skipped: string[];
  message?: string;
  /**
   * Set when the lists above were cut to fit the stored history (a rollout
   * over thousands of runtimes): how many each had in full.
   */
  counts?: { swapped: number; failed: number; skipped: number };
}

/** Runtimes named per list of a stored rollout record; the rest are counted (RolloutRecord.counts). */
export const ROLLOUT_NAMES_KEPT = 50;

/** Every rollout of one service, oldest first (the last ROLLOUT_HISTORY kept). */
export interface RolloutHistory {
  service: string;
  rollouts: RolloutRecord[];
}

export const ROLLOUT_HISTORY = 100;

/** A swap request from a rollout to one runtime. */
export interface SwapRequest {
  service: string;
  version: string;
  entry: string;
  /** "rollback" when a halted rollout takes a runtime back. */
  via: "swap" | "rollback";
  rollout: string;
}

/** A runtime's answer to a swap request. */
export interface SwapAnswer {
  node: string;
  outcome: "committed" | "unchanged" | "rolled-back" | "probation-failed" | "unhealthy" | "error";
  from: string | null;
  to: string | null;
  blackoutMs: number | null;
  code?: string;
  message?: string;
}

/**
 * A named problem and the versions that fix it (`molt fleet advisory add`).
 * Which versions fix it is decided by `fixesAdvisory` (fleet/advisory.ts):
 * a version's own declaration, or this list, unless revoked here.
 */
export interface AdvisoryRecord {
  id: string;
  title: string | null;
  severity: string | null;
  /** Versions (ids or unique prefixes of at least 8 hex digits) that fix it without declaring so. */
  fixedIn: string[];
  /** Versions whose claim was withdrawn: they do not count as fixed, whatever they declare. */
  revoked: string[];
  createdAt: string;
  updatedAt: string;
}

const packr = new Packr({ useRecords: false });

export function encodeRecord(value: unknown): Uint8Array {
  return packr.pack([FLEET_VERSION, value]);
}

export function decodeRecord<T>(bytes: Uint8Array, what: string): T {
  let envelope: unknown;
  try {
    envelope = packr.unpack(bytes);
  } catch (cause) {
    throw new MoltError(ErrorCode.FLEET, `cannot decode ${what}: not msgpack`, { cause });
  }
  if (!Array.isArray(envelope) || envelope.length !== 2 || envelope[0] !== FLEET_VERSION) {
    throw new MoltError(ErrorCode.FLEET, `cannot decode ${what}: unknown envelope (this molt speaks fleet version ${FLEET_VERSION})`);
  }
  return envelope[1] as T;
}
