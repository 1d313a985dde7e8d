// The kernel's own identity and history, as the admin API and the CLI speak
// of them: which build of molt runs, how it came to run (a `molt run`, a
// `molt upgrade`, or a restart after the previous runtime died), and how each
// runtime before it ended. Types and constants only, like protocol/admin.ts,
// which re-exports them.

import type { WireError } from "./wire.ts";

/** Which build of molt: the content hash of its code (sha256, hex) and the package's semver. */
export interface KernelIdentity {
  version: string;
  semver: string;
}

/** How a runtime came to run. */
export const KernelVia = {
  /** `molt run`: a keeper started it, with no runtime before it. */
  START: "start",
  /** `molt upgrade`: it took the sockets and the state from the runtime before it. */
  UPGRADE: "upgrade",
  /** The runtime before it died, and the keeper started this one from the snapshots. */
  RESTART: "restart",
} as const;
export type KernelVia = (typeof KernelVia)[keyof typeof KernelVia];

/** How a runtime's life ended, derived from what came after it. */
export const KernelOutcome = {
  /** Running now, or ended without a word and nothing after it yet. */
  LIVE: "live",
  /** An upgrade replaced it. */
  REPLACED: "replaced",
  /** It ended without a graceful stop: the next runtime came via restart, or a later `molt run`. */
  CRASHED: "crashed",
  /** It stopped gracefully (SIGINT, SIGTERM). */
  STOPPED: "stopped",
} as const;
export type KernelOutcome = (typeof KernelOutcome)[keyof typeof KernelOutcome];

/** The phases of a kernel upgrade, in order; each one's time is reported as it ends. */
export const KernelUpgradePhase = {
  /** The new runtime boots every service from its current bundle, outside the blackout. */
  BOOT: "boot",
  /** The old runtime stops accepting and drains what is in flight. */
  DRAIN: "drain",
  /** The old runtime dumps every service's state. */
  DUMP: "dump",
  /** The dumps go to the new runtime over IPC. */
  HANDOVER: "handover",
  /** The new runtime restores every service. */
  RESTORE: "restore",
  /** The new runtime takes the listening sockets; the old one exits. */
  SOCKETS: "sockets",
} as const;
export type KernelUpgradePhase = (typeof KernelUpgradePhase)[keyof typeof KernelUpgradePhase];

/** An upgrade that did not take while a runtime ran: that runtime kept serving. */
export interface KernelUpgradeFailure {
  at: string;
  code: string;
  message: string;
  /** The build the upgrade tried to start. */
  tried: KernelIdentity;
}

/** One runtime in the kernel's chain, as `molt history --kernel` shows it. */
export interface KernelRecord extends KernelIdentity {
  /** Position in the chain as kept on disk, from 1 (the oldest kept). */
  seq: number;
  /** The version of the runtime before it, null for the first one recorded. */
  parent: string | null;
  via: KernelVia;
  /** The runtime's process, not the keeper's. */
  pid: number;
  startedAt: string;
  /** How long no request was served on the way in (upgrade, restart); null for a start. */
  blackoutMs: number | null;
  /** When the next runtime started, or when this one stopped; null while it runs. */
  replacedAt: string | null;
  outcome: KernelOutcome;
  /** Upgrades tried while it ran that did not take, oldest first (the last few). */
  failedUpgrades: KernelUpgradeFailure[];
}

/** The running kernel, as `GET /v1/status` shows it under `kernel`. */
export interface KernelInfo extends KernelIdentity {
  pid: number;
  startedAt: string;
  /** Upgrades and restarts since the last `molt run`. */
  upgrades: number;
  restarts: number;
}

/** One runtime at one end of an upgrade. */
export interface KernelEnd extends KernelIdentity {
  pid: number;
}

/** What a kernel upgrade did. */
export interface KernelUpgradeReport {
  from: KernelEnd;
  to: KernelEnd;
  /** The old runtime stopped accepting → the new one serves, in ms. */
  blackoutMs: number;
  phases: { name: KernelUpgradePhase; ms: number }[];
  /** How many services' state was carried across. */
  services: number;
}

/** GET /v1/kernel/history. `corrupt`: damaged stretches of the file skipped on reading. */
export interface KernelHistoryBody {
  kernel: KernelRecord[];
  corrupt: number;
}

/** POST /v1/kernel/upgrade takes an empty object. */
export type KernelUpgradeBody = Record<string, never>;

/**
 * One line of an upgrade's NDJSON answer: a line per phase as it ends, then
 * the report, or an error once a phase has ended. An upgrade that cannot
 * begin (no keeper, one already running), or fails before its first phase
 * ends (the new runtime does not boot), answers an ErrorBody instead.
 */
export type KernelUpgradeProgress =
  | { event: "phase"; phase: KernelUpgradePhase; ms: number }
  | { event: "report"; report: KernelUpgradeReport }
  | { event: "error"; error: WireError };
