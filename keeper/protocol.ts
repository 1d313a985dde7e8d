// What the keeper and a runtime it started say to each other over the child
// process's IPC channel (Node's "advanced" serialization: structured clone,
// so a state travels as bytes, and a socket travels as a handle beside a
// message). Plain objects only: the keeper imports nothing but Node and this.
//
// A runtime's life, as the keeper sees it:
//   spawned ─ hello (its listeners, its kernel settings) ─▶ listening (or listen-failed)
//   prepared (every service booted, no state, nothing on disk written) ─ activate ─▶ ready (connections flow to it)
// An upgrade, asked of the serving runtime (old) through its admin API:
//   old: upgrade ─▶ keeper spawns new ─ prepared ─▶ keeper: hand-out ─▶ old: states
//   keeper: activate(states) ─▶ new: ready ─▶ keeper: handed ─▶ old forwards what it still holds, then exits
//   a failure at any step ─▶ keeper: resume ─▶ old serves again; new is killed

/** The settings the keeper needs from the config it never reads itself. */
export interface KernelSettings {
  standby: boolean;
  restart: { maxRestarts: number; windowMs: number };
}

export type ListenerName = "http" | "admin";

export interface ListenerSpec {
  name: ListenerName;
  port: number;
  host: string;
}

/** A service's state handed from one runtime to the next, as its kernel dumped it. */
export interface HandedState {
  service: string;
  version: string;
  stateVersion: number;
  dump: Uint8Array;
}

/** How a runtime came to be, for the kernel's version chain. */
export type Via = "start" | "upgrade" | "restart";

export type UpgradePhase = "boot" | "drain" | "dump" | "handover" | "restore" | "sockets";

export interface ErrorJson {
  code: string;
  message: string;
}

/** Runtime → keeper. */
export type FromRuntime =
  | { t: "hello"; listeners: ListenerSpec[]; kernel: KernelSettings }
  | { t: "prepared" }
  /** `kernel`: the build this runtime loaded (its version hash and semver). */
  | { t: "ready"; restoreMs: number; kernel: { version: string; semver: string } }
  | { t: "activate-failed"; error: ErrorJson }
  | { t: "upgrade" }
  | { t: "states"; states: HandedState[] }
  | { t: "hand-out-failed"; phase: UpgradePhase; error: ErrorJson }
  | { t: "forward"; id: number; service: string; method: string; payload: unknown }
  | { t: "forwarded"; id: number; ok: boolean; value: unknown }
  | { exitCode: number };

/** Keeper → runtime. */
export type ToRuntime =
  | { t: "listening"; listeners: { name: ListenerName; url: string }[] }
  | { t: "listen-failed"; name: ListenerName; port: number; host: string; code: string; message: string }
  /** `since`: when nothing was served any more (the old runtime's hand-out began, or it died), in epoch ms; null for a start. */
  | { t: "activate"; via: Via; states: HandedState[] | null; since: number | null }
  | { t: "conn"; listener: ListenerName }
  | { t: "phase"; phase: UpgradePhase; ms: number }
  | { t: "hand-out" }
  /** `phases`: the steps the keeper and the new runtime timed (handover, restore, sockets), said once the new runtime serves. */
  | { t: "handed"; pid: number; kernel: { version: string; semver: string }; phases: { phase: UpgradePhase; ms: number }[] }
  | { t: "resume"; phase: UpgradePhase; error: ErrorJson }
  | { t: "forward"; id: number; service: string; method: string; payload: unknown }
  | { t: "forwarded"; id: number; ok: boolean; value: unknown };

/** Set in a runtime's environment by the keeper that started it. */
export const KEEPER_ENV = "MOLT_KEEPER";
