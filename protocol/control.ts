// The control operations: how a host drives the lifecycle of the service in
// an isolate. They enter the isolate through the guest runtime's `control`
// entry, never through `deliverBatch`, so a lifecycle step is never queued
// behind user messages (OTP's sys module keeps system messages apart the
// same way). One table, read by all three parties: the guest runtime
// answers these ops, the isolate host (core/isolate-host.ts) asks them, and
// a cell (core/cell-*.ts) carries them across its process boundary.
//
// An op's bytes arguments are arguments of the crossing, copied into the
// isolate; its result comes back in an ordinary reply envelope
// (protocol/wire.ts), so a hook's error reaches the host with its code.

import { ErrorCode } from "./errors.ts";

/** What a service module declares about itself: `activate`'s answer. */
export interface ServiceMeta {
  semver: string;
  stateVersion: number;
  /** The advisory ids the module declares it fixes (`fixes` in its definition); absent before the module is activated. */
  fixes?: string[];
  restoresFrom: number[] | null;
  /** Handlers the module says may run at once (`concurrency` in its definition), or null. */
  concurrency?: number | null;
  hasRestore: boolean;
  handlers: string[];
}

/** Each op's arguments after its name, and what its reply carries. */
export interface ControlOps {
  /** Reads the module the bundle defined and checks it is a service; runs no hook. */
  activate: { args: []; result: ServiceMeta };
  /** Runs the runtime's own side of a swap on a throwaway value, so that V8 has compiled it before a blackout; runs no hook. */
  warm: { args: []; result: Uint8Array };
  init: { args: []; result: undefined };
  start: { args: []; result: undefined };
  stop: { args: []; result: undefined };
  /** The state as a dump envelope: [DUMP_VERSION, stateVersion, value, codec?] (guest/dump-codec.ts). */
  dump: { args: []; result: Uint8Array };
  restore: { args: [dump: Uint8Array, fromStateVersion: number]; result: undefined };
  /** `stop`, then `dump`: a swap's old side in one crossing. */
  quiesce: { args: []; result: Uint8Array };
  /** `restore`, then `start`: a swap's new side in one crossing. */
  resume: { args: [dump: Uint8Array, fromStateVersion: number]; result: undefined };
  /**
   * `quiesce` as a rehearsal, before a blackout: the same path, with what has
   * effects left out (the `stop` hook, clearing timers); write sets that
   * handlers which ended left queued are committed, as their turn would
   * have. Its dump is the state as it is now; the instance keeps serving.
   */
  "rehearse-quiesce": { args: []; result: Uint8Array };
  /** `resume` as a rehearsal on an instance not yet live: the state restored, `start` left out. */
  "rehearse-resume": { args: [dump: Uint8Array, fromStateVersion: number]; result: undefined };
}

export type ControlOp = keyof ControlOps;
export type ControlArgs<Op extends ControlOp> = ControlOps[Op]["args"];
export type ControlResult<Op extends ControlOp> = ControlOps[Op]["result"];

export const ControlOp = {
  ACTIVATE: "activate",
  WARM: "warm",
  INIT: "init",
  START: "start",
  STOP: "stop",
  DUMP: "dump",
  RESTORE: "restore",
  QUIESCE: "quiesce",
  RESUME: "resume",
  REHEARSE_QUIESCE: "rehearse-quiesce",
  REHEARSE_RESUME: "rehearse-resume",
} as const satisfies Record<string, ControlOp>;

/** The op a dump runs as: a rehearsal of a swap's old side, the swap's own step (`stop` first), or a plain dump. */
export function dumpOp(options: { stop?: boolean; rehearse?: boolean }): "rehearse-quiesce" | "quiesce" | "dump" {
  return options.rehearse === true ? ControlOp.REHEARSE_QUIESCE : options.stop === true ? ControlOp.QUIESCE : ControlOp.DUMP;
}

/** The op a restore runs as: a rehearsal of a swap's new side, the swap's own step (`start` too), or a plain restore. */
export function restoreOp(options: { start?: boolean; rehearse?: boolean }): "rehearse-resume" | "resume" | "restore" {
  return options.rehearse === true ? ControlOp.REHEARSE_RESUME : options.start === true ? ControlOp.RESUME : ControlOp.RESTORE;
}

/**
 * The code of an op whose hook threw a plain Error; a hook's own code is
 * kept. Inside `quiesce` and `resume` each step's failure carries its own
 * op's code (the hook's code, if any, goes into the message), so a swap
 * knows which of the two steps failed.
 */
export const CONTROL_FAILURE = {
  activate: ErrorCode.ACTIVATE_FAILED,
  warm: ErrorCode.WARM_FAILED,
  init: ErrorCode.INIT_FAILED,
  start: ErrorCode.START_FAILED,
  stop: ErrorCode.STOP_FAILED,
  dump: ErrorCode.DUMP_FAILED,
  restore: ErrorCode.RESTORE_FAILED,
  quiesce: ErrorCode.QUIESCE_FAILED,
  resume: ErrorCode.RESUME_FAILED,
  "rehearse-quiesce": ErrorCode.QUIESCE_FAILED,
  "rehearse-resume": ErrorCode.RESUME_FAILED,
} as const satisfies { readonly [Op in ControlOp]: ErrorCode };

/** The ops a host asks of an instance it has booted: `activate` and `warm` are part of booting it. */
export type LifecycleOp = Exclude<ControlOp, "activate" | "warm">;
