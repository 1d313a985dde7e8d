// Every error code molt gives out, and the one error class that carries
// them, on both sides of an isolate boundary: the kernel imports this file
// through core/errors.ts, the guest runtime through guest/errors.ts. Callers
// branch on `code`, never on the message text: codes are part of molt's
// public contract. This file is bundled into every isolate, so it imports
// nothing from either side and uses nothing but ECMAScript.

import type { WireError } from "./wire.ts";

export const ErrorCode = {
  CONFIG: "ERR_CONFIG",
  // The command line was given arguments it cannot use.
  USAGE: "ERR_USAGE",
  BUNDLE: "ERR_BUNDLE",
  BAD_SERVICE: "ERR_BAD_SERVICE",
  NO_SERVICE: "ERR_NO_SERVICE",
  NO_BINDING: "ERR_NO_BINDING",
  NO_HANDLER: "ERR_NO_HANDLER",
  HANDLER: "ERR_HANDLER",
  MAILBOX_FULL: "ERR_MAILBOX_FULL",
  TIMEOUT: "ERR_TIMEOUT",
  OOM: "ERR_OOM",
  SERVICE_DOWN: "ERR_SERVICE_DOWN",
  SERVICE_CRASHED: "ERR_SERVICE_CRASHED",
  // An instance ended before it started a message: the kernel delivers it again, to the next instance.
  REDELIVER: "ERR_REDELIVER",
  UNENCODABLE: "ERR_UNENCODABLE",
  MESSAGE_TOO_LARGE: "ERR_MESSAGE_TOO_LARGE",
  BAD_MESSAGE: "ERR_BAD_MESSAGE",
  BAD_RESPONSE: "ERR_BAD_RESPONSE",
  PERMISSION: "ERR_PERMISSION",
  FETCH: "ERR_FETCH",
  STOPPING: "ERR_STOPPING",
  CORRUPT: "ERR_CORRUPT",
  // A lifecycle step failed, one code per control operation (protocol/control.ts);
  // the hook's own code, if it had one, is in the message.
  ACTIVATE_FAILED: "ERR_ACTIVATE_FAILED",
  WARM_FAILED: "ERR_WARM_FAILED",
  INIT_FAILED: "ERR_INIT_FAILED",
  START_FAILED: "ERR_START_FAILED",
  STOP_FAILED: "ERR_STOP_FAILED",
  DUMP_FAILED: "ERR_DUMP_FAILED",
  RESTORE_FAILED: "ERR_RESTORE_FAILED",
  QUIESCE_FAILED: "ERR_QUIESCE_FAILED",
  RESUME_FAILED: "ERR_RESUME_FAILED",
  SWAP_BUSY: "ERR_SWAP_BUSY",
  SWAP_COMPILE: "ERR_SWAP_COMPILE",
  SWAP_DRAIN_TIMEOUT: "ERR_SWAP_DRAIN_TIMEOUT",
  SWAP_STOP: "ERR_SWAP_STOP",
  SWAP_DUMP: "ERR_SWAP_DUMP",
  SWAP_RESTORE: "ERR_SWAP_RESTORE",
  // A fresh-state swap whose new version's init failed (caught in prepare: nothing paused).
  SWAP_INIT: "ERR_SWAP_INIT",
  SWAP_TIMEOUT: "ERR_SWAP_TIMEOUT",
  SWAP_OOM: "ERR_SWAP_OOM",
  SWAP_PROBATION: "ERR_SWAP_PROBATION",
  // The verified transfer: the state, taken to the new version and back into a
  // scratch instance of the old one, came back different (caught in prepare).
  SWAP_ROUNDTRIP: "ERR_SWAP_ROUNDTRIP",
  // Shadow traffic: the new version, run beside the old one on real messages,
  // answered differently more often than allowed (caught before the cutover).
  SWAP_SHADOW: "ERR_SWAP_SHADOW",
  STATE_VERSION: "ERR_STATE_VERSION",
  // A dump met an object whose prototype is not plain data (a class instance):
  // its methods would not survive the handover, so the dump is refused.
  STATE_NOT_PLAIN: "ERR_STATE_NOT_PLAIN",
  NO_VERSION: "ERR_NO_VERSION",
  UNAUTHORIZED: "ERR_UNAUTHORIZED",
  ADMIN: "ERR_ADMIN",
  // The fleet: NATS could not be reached or answered wrongly; a rollout stopped and rolled back.
  FLEET: "ERR_FLEET",
  ROLLOUT_HALTED: "ERR_ROLLOUT_HALTED",
  ROLLOUT_BUSY: "ERR_ROLLOUT_BUSY",
  // A per-instance budget (timers, console output) was exhausted.
  LIMIT: "ERR_LIMIT",
  // A metric label for an error code that is not a well-formed molt code.
  OTHER: "ERR_OTHER",
  BAD_REQUEST: "ERR_BAD_REQUEST",
  INTERNAL: "ERR_INTERNAL",
  // A port the config names (http.port, admin.port) is taken by another process.
  PORT_IN_USE: "ERR_PORT_IN_USE",
  // `molt init` would overwrite a file that already exists.
  EXISTS: "ERR_EXISTS",
  // ctx.storage: a write past limits.storageMb; a key that is not a string of
  // 1 to 1,024 UTF-8 bytes; a write by an instance that is not the one behind
  // the mailbox (init, restore and start run before it is: they only read);
  // the store could not commit (the disk refused) or this runtime has none.
  STORAGE_FULL: "ERR_STORAGE_FULL",
  BAD_KEY: "ERR_BAD_KEY",
  STORAGE_READONLY: "ERR_STORAGE_READONLY",
  STORAGE_FAILED: "ERR_STORAGE_FAILED",
  // `molt upgrade`: the phase of the kernel's handover that failed (the old
  // runtime resumes as it was); one upgrade at a time; a runtime no keeper
  // started (`molt dev`, a test) has nobody to hand over to.
  KERNEL_UPGRADE_BOOT: "ERR_KERNEL_UPGRADE_BOOT",
  KERNEL_UPGRADE_DRAIN: "ERR_KERNEL_UPGRADE_DRAIN",
  KERNEL_UPGRADE_DUMP: "ERR_KERNEL_UPGRADE_DUMP",
  KERNEL_UPGRADE_HANDOVER: "ERR_KERNEL_UPGRADE_HANDOVER",
  KERNEL_UPGRADE_RESTORE: "ERR_KERNEL_UPGRADE_RESTORE",
  KERNEL_UPGRADE_SOCKETS: "ERR_KERNEL_UPGRADE_SOCKETS",
  KERNEL_UPGRADE_BUSY: "ERR_KERNEL_UPGRADE_BUSY",
  KERNEL_UPGRADE_UNAVAILABLE: "ERR_KERNEL_UPGRADE_UNAVAILABLE",
  NO_ADVISORY: "ERR_NO_ADVISORY",
} as const;

export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

const SWAP_CODES: ReadonlySet<string> = new Set([
  ErrorCode.SWAP_BUSY,
  ErrorCode.SWAP_COMPILE,
  ErrorCode.SWAP_DRAIN_TIMEOUT,
  ErrorCode.SWAP_STOP,
  ErrorCode.SWAP_DUMP,
  ErrorCode.SWAP_RESTORE,
  ErrorCode.SWAP_INIT,
  ErrorCode.SWAP_TIMEOUT,
  ErrorCode.SWAP_OOM,
  ErrorCode.SWAP_PROBATION,
  ErrorCode.SWAP_ROUNDTRIP,
  ErrorCode.SWAP_SHADOW,
  // Found by the guest runtime in the state a swap hands over, in whichever phase dumps it.
  ErrorCode.STATE_NOT_PLAIN,
]);

/**
 * Whether a code is one of the swap's own failures, which a failure keeps
 * through every later phase. Checked against the list, not a prefix: a
 * service's hook that throws "ERR_SWAP_…" of its own has not named a phase.
 */
export function isSwapCode(code: string): boolean {
  return SWAP_CODES.has(code);
}

/** The shape every error code must have to be reported as itself (metrics, admin, HTTP). */
export const ERROR_CODE_PATTERN = /^ERR_[A-Z0-9_]{1,64}$/;

/**
 * A service chooses its errors' codes and messages, and the kernel keeps
 * them: in the inventory, in logs, in a service's failure. Bounded here,
 * once, for both sides, so no guest string of any size is kept host-side
 * through an error, and none is copied out of an isolate through one built
 * by its runtime.
 */
export const MAX_MESSAGE_CHARS = 4096;
export const MAX_CODE_CHARS = 128;

// Captured when this module is loaded, before any service code runs in an
// isolate: a service that replaces String or String.prototype.slice later
// cannot change how its runtime bounds the errors it builds.
const toText = String;
const stringSlice = String.prototype.slice;
const reflectApply = Reflect.apply;

function bounded(text: unknown, max: number): string {
  const s = toText(text);
  if (s.length <= max) return s;
  return `${reflectApply(stringSlice, s, [0, max]) as string}… [${s.length - max} more characters cut]`;
}

export interface ErrorDetails {
  service?: string | undefined;
  version?: string | undefined;
  cause?: unknown;
}

export class MoltError extends Error {
  override readonly name = "MoltError";
  readonly code: string;
  readonly service: string | undefined;
  readonly version: string | undefined;

  constructor(code: string, message: string, details: ErrorDetails = {}) {
    super(bounded(message, MAX_MESSAGE_CHARS), details.cause === undefined ? undefined : { cause: details.cause });
    this.code = bounded(code, MAX_CODE_CHARS);
    this.service = details.service;
    this.version = details.version;
  }

  /** The plain shape that crosses isolate boundaries and HTTP bodies. */
  toJSON(): WireError {
    return {
      code: this.code,
      message: this.message,
      ...(this.service === undefined ? {} : { service: this.service }),
      ...(this.version === undefined ? {} : { version: this.version }),
    };
  }
}

/** Wraps anything thrown into a MoltError, keeping an existing code. */
export function toMoltError(err: unknown, fallback: string = ErrorCode.INTERNAL): MoltError {
  if (err instanceof MoltError) return err;
  const message = err instanceof Error ? err.message : String(err);
  const code =
    typeof err === "object" && err !== null && typeof (err as { code?: unknown }).code === "string"
      ? (err as { code: string }).code
      : fallback;
  return new MoltError(code, message, { cause: err });
}
