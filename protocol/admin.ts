// The admin API's contract: every path, request body, answer and streamed
// event the runtime's admin port speaks (core/admin.ts), written once for
// everyone who speaks it — the CLI (cli/client.ts, cli/commands.ts), the
// dashboard (dashboard/, in a browser) and the tests. It is JSON over HTTP,
// so it holds types and constants only, and imports nothing from either side.

import type { KernelInfo } from "./kernel.ts";
import type { WireError } from "./wire.ts";

// The kernel's own identity and chain are spoken of here too (status, history, upgrade).
export * from "./kernel.ts";

// --- paths ----------------------------------------------------------------

/** Where each call lives; a service's name is a path segment, percent-encoded. */
export const AdminPath = {
  metrics: "/metrics",
  events: "/v1/events",
  status: "/v1/status",
  snapshot: "/v1/snapshot",
  history: (service: string): string => `/v1/services/${encodeURIComponent(service)}/history`,
  swap: (service: string): string => `/v1/services/${encodeURIComponent(service)}/swap`,
  rollback: (service: string): string => `/v1/services/${encodeURIComponent(service)}/rollback`,
  restart: (service: string): string => `/v1/services/${encodeURIComponent(service)}/restart`,
  kernelHistory: "/v1/kernel/history",
  kernelUpgrade: "/v1/kernel/upgrade",
} as const;

// --- what the runtime records and reports ---------------------------------

/** The phases of a swap, in order; each one's time is reported as it ends. */
export const Phase = {
  PREPARE: "prepare",
  /** Only with shadow traffic: the new version runs beside the old one on the next N messages. */
  SHADOW: "shadow",
  QUIESCE: "quiesce",
  DUMP: "dump",
  RESTORE: "restore",
  CUTOVER: "cutover",
  COMMIT: "commit",
} as const;
export type Phase = (typeof Phase)[keyof typeof Phase];

/** How a version came to run. */
export const Via = { START: "start", SWAP: "swap", ROLLBACK: "rollback", RESTART: "restart" } as const;
export type Via = (typeof Via)[keyof typeof Via];

/** How the attempt to run a version ended. */
export const Outcome = {
  /** Running now, or ran until it was replaced. */
  LIVE: "live",
  /** A swap to it failed and the previous version kept serving. */
  ROLLED_BACK: "rolled-back",
  /** It failed its probation and the previous version took its state back. */
  PROBATION_FAILED: "probation-failed",
  /** It failed its probation but the previous version could not take its state: it stays, marked. */
  UNHEALTHY: "unhealthy",
} as const;
export type Outcome = (typeof Outcome)[keyof typeof Outcome];

/** How a swap or a rollback ended. */
export type SwapOutcome = "committed" | "rolled-back" | "unchanged" | "unhealthy";

/**
 * What the verified transfer found in a swap's prepare: the state went to
 * the new version and back into a scratch instance of the old one. `ok` is
 * true only when it was checked and came back the same; `path` names the
 * first value that differed (the swap was refused, ERR_SWAP_ROUNDTRIP);
 * `skipped` says why it was not checked.
 */
export interface VerifyResult {
  ok: boolean;
  path?: string;
  skipped?: string;
}

/** One message on which the two versions did not agree, as a shadow report shows it. */
export interface ShadowExample {
  method: string;
  /** The payload, the old reply and the new one, shown as JSON-like text (at most 300 characters each); a failed reply as its code. */
  payload: string;
  old: string;
  new: string;
  /** What differed: the reply (and where), or a call the old version did not make. */
  why: string;
  /** In a method named by `expectChange`: reported, not counted. */
  expected?: true;
}

/**
 * What shadow traffic found: how many messages both versions ran, how many
 * diverged (not counting the methods the new version declares it changes),
 * the first examples, the two states compared at the end, and what the new
 * version tried to do that was not performed.
 */
export interface ShadowResult {
  /** The messages asked for (`--shadow N`). */
  requested: number;
  messages: number;
  divergences: number;
  /** Divergences in `expectChange` methods. */
  expected: number;
  /** False when fewer than `requested` messages came before the shadow's time ran out. */
  complete: boolean;
  examples: ShadowExample[];
  /** The states after the last message: equal, the first path that differs, or why they were not compared. */
  state?: VerifyResult;
  suppressed: { sends: number; fetches: number; stdout: number; console: number };
}

/** One version of one service, as the inventory keeps it. */
export interface VersionRecord {
  /** Position in the service's history, from 1. */
  seq: number;
  service: string;
  /** Content hash of the bundle: the version id. */
  version: string;
  semver: string;
  stateVersion: number;
  /** The advisory ids this version's module declares it fixes; absent when it declares none. */
  fixes?: string[];
  entry: string;
  /** The version this one replaced (or tried to), null for the first. */
  parent: string | null;
  via: Via;
  requestedAt: string;
  /** When it went live; null if it never did. */
  startedAt: string | null;
  replacedAt: string | null;
  outcome: Outcome;
  code?: string;
  message?: string;
  blackoutMs?: number;
  phases?: Record<string, number>;
  /** Set by a fresh-state swap: this version started from its own init and the previous state was dropped. */
  freshState?: boolean;
  /** What the verified transfer found before this version went live (or was refused). */
  verify?: VerifyResult;
  /** What shadow traffic found before this version went live (or was refused). */
  shadow?: ShadowResult;
}

export interface VersionInfo {
  version: string;
  semver: string;
  stateVersion: number;
}

/** What a swap or a rollback did. */
export interface SwapReport {
  service: string;
  outcome: SwapOutcome;
  via: Via;
  from: VersionInfo;
  to: VersionInfo | null;
  /** Mailbox paused → resumed, in ms; null when the mailbox was never paused. */
  blackoutMs: number | null;
  phases: Partial<Record<Phase, number>>;
  error?: { code: string; message: string; phase: Phase };
  /** Present on a fresh-state swap: the new version started from init and the old state was dropped (if it committed). */
  freshState?: true;
  /** A fresh-state swap only: the old `stop` failed and was passed over. */
  stopError?: { code: string; message: string };
  /** A failed probation sent the state back: how long that second transfer held the mailbox. */
  rollbackBlackoutMs?: number;
  /** What the verified transfer found in prepare; absent when the swap failed before it ran. */
  verify?: VerifyResult;
  /** What shadow traffic found; present when the swap asked for it and got that far. */
  shadow?: ShadowResult;
}

/** One service as `GET /v1/status` shows it. */
export interface ServiceStatus {
  name: string;
  state: "running" | "down" | "starting";
  version: string | null;
  semver: string | null;
  stateVersion: number | null;
  /** The advisory ids the running version declares it fixes (empty when none, or nothing runs). */
  fixes: string[];
  uptimeMs: number;
  queueDepth: number;
  inFlight: number;
  /** True while the mailbox holds deliveries (a swap's blackout, a restart). */
  paused: boolean;
  restarts: number;
  /** "isolate" in the runtime's process, "process" in a cell of its own. */
  isolation: "isolate" | "process";
  error: { code: string; message: string } | null;
  lastSwap: VersionRecord | null;
}

/** What a restart did: `restarted` is false when the service was up already. */
export interface RestartResult {
  service: string;
  version: string;
  restarted: boolean;
}

/** A snapshot written: what `molt snapshot` reports for one service. */
export interface SnapshotWritten {
  service: string;
  version: string;
  stateVersion: number;
  bytes: number;
}

/** One service's snapshot: what was written, or why nothing was. */
export type SnapshotResult = SnapshotWritten | { service: string; error: { code: string; message: string } };

// --- requests -------------------------------------------------------------

/** POST /v1/services/:name/swap. `entry` is an absolute path inside the allowed roots. */
export interface SwapBody {
  entry: string;
  freshState?: boolean;
  /** false: skip the verified transfer for this swap (`molt swap --no-verify`). Default: the config's `swap.verify`. */
  verify?: boolean;
  /** Shadow traffic: the next N messages run by both versions before the cutover (`molt swap --shadow N`). Default: the config's `swap.shadow` (0: none). */
  shadow?: number;
  /** Methods the new version is meant to answer differently: their divergences are reported, not counted (`--expect-change`). */
  expectChange?: string[];
  /** Past this many divergences the swap is refused with ERR_SWAP_SHADOW (`--max-divergence`, default 0). */
  maxDivergence?: number;
}

/**
 * POST /v1/services/:name/rollback: to a version id, or the previous version.
 * `freshState`: the older version starts from its init and the current state
 * is dropped (for an older version that cannot take the newer stateVersion).
 */
export interface RollbackBody {
  to?: string;
  freshState?: boolean;
}

/** POST /v1/services/:name/restart takes an empty object. */
export type RestartBody = Record<string, never>;

/** POST /v1/snapshot: one service, or every service. */
export interface SnapshotBody {
  service?: string;
}

// --- answers --------------------------------------------------------------

/** Any call refused or failed: an HTTP status of 4xx or 5xx and this body. */
export interface ErrorBody {
  error: WireError;
}

export interface StatusBody {
  /** The runtime itself: its build, process and how often it was upgraded or restarted since `molt run`. */
  kernel: KernelInfo;
  services: ServiceStatus[];
}

export interface HistoryBody {
  service: string;
  records: VersionRecord[];
}

export interface RestartAnswer {
  result: RestartResult;
}

export interface SnapshotAnswer {
  result: SnapshotResult[];
}

/**
 * One line of a swap's or a rollback's NDJSON answer: a line per phase as it
 * ends, then the report, or an error once the swap has begun. A swap that
 * cannot begin (busy, unknown version, bad code) answers an ErrorBody instead.
 */
export type SwapProgress =
  | { event: "phase"; phase: Phase; ms: number }
  | { event: "shadow"; messages: number; of: number; divergences: number }
  | { event: "report"; report: SwapReport }
  | { event: "error"; error: WireError };

/** The content type of a swap's or a rollback's streamed answer. */
export const NDJSON = "application/x-ndjson";

// --- GET /v1/events (server-sent events) ------------------------------------

/** One service in one second: its rate, errors and p99. */
export interface ServiceTick extends Pick<ServiceStatus, "name" | "version" | "semver" | "stateVersion" | "uptimeMs" | "queueDepth" | "inFlight"> {
  rps: number;
  errors: number;
  p99Ms: number | null;
}

/** Each event's `event:` name is its `type`; its `data:` is the event as JSON. */
export type LiveEvent = { type: "tick"; time: number; services: ServiceTick[] } | { type: "swap"; time: number; report: SwapReport };

export type Tick = Extract<LiveEvent, { type: "tick" }>;

/** A version id (a content hash) as people read it: its first 12 hex digits. */
export function shortId(hash: string): string {
  return hash.slice(0, 12);
}
