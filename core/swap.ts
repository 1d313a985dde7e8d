// The swap: one service replaced by a new version while the runtime serves.
// An explicit state machine, driven by the kernel, one swap per service at a
// time:
//
//   prepare  → compile and boot the new instance, warm it; the old one serves
//   quiesce  → pause the mailbox (messages queue, none lost), let in-flight
//              messages finish                               ← blackout starts
//   dump     → the old `stop`, then its state, msgpack-encoded (one crossing)
//   restore  → the new `restore(dump, fromStateVersion)`, then `start` (one crossing)
//   cutover  → point the mailbox at the new instance, resume ← blackout ends
//   commit   → inventory, probation, dispose the old instance, snapshot
//
// Any failure from quiesce to cutover is a rollback: the old instance, which
// still holds its state, starts again and takes the queued messages.
//
// A fresh-state swap (`freshState`, the operator's escape hatch for a
// service whose state cannot be handed over) runs the same machine with the
// state taken from the new version's own init instead of the old dump:
//
//   prepare  → boot the new instance, run its `init`, dump that fresh state
//              (the snapshot to commit); nothing of the old one is read
//   quiesce  → pause, drain, then the old `stop`, best effort: a stop that
//              throws or hangs is recorded and passed over, since the old
//              instance is going away with its state anyway
//   restore  → the new instance takes its fresh state back and starts
//   cutover, commit → as above; the record and the report say `freshState`

import type { Bundle } from "./bundle.ts";
import { ErrorCode, MoltError, toMoltError } from "./errors.ts";
import type { Instance } from "./instance.ts";
import { Outcome, Via, type Inventory, type VersionRecord } from "./inventory.ts";
import type { KernelLog } from "./log.ts";
import type { Slot } from "./slot.ts";

export const Phase = {
  PREPARE: "prepare",
  QUIESCE: "quiesce",
  DUMP: "dump",
  RESTORE: "restore",
  CUTOVER: "cutover",
  COMMIT: "commit",
} as const;
export type Phase = (typeof Phase)[keyof typeof Phase];

export interface VersionInfo {
  version: string;
  semver: string;
  stateVersion: number;
}

/** How a swap is asked for: what the kernel, the admin API and the CLI pass on. */
export interface SwapOptions {
  /** Called as each phase ends, for progress output. */
  onPhase?: (phase: Phase, ms: number) => void;
  /**
   * Start the new version from its `init` and drop the old version's state,
   * which is never dumped (`molt swap --fresh-state`): the way to replace a
   * service whose dump fails or hangs, or whose state the new code cannot take.
   */
  freshState?: boolean;
  /** Every file the new bundle reads must lie under one of these (by real path), or the swap is refused with ERR_PERMISSION before anything changes. */
  allowedRoots?: readonly string[];
}

export interface SwapReport {
  service: string;
  outcome: "committed" | "rolled-back" | "unchanged" | "unhealthy";
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
}

export interface SwapRequest {
  slot: Slot;
  bundle: Bundle;
  via: Via;
  /** Boots an instance of `bundle` for this slot, loaded but holding no state. */
  boot: (bundle: Bundle) => Promise<Instance>;
  inventory: Inventory;
  log: KernelLog;
  settings: { drainTimeoutMs: number; blackoutTimeoutMs: number; probationMs: number; probationMaxErrors: number };
  /** Called as each phase ends, for progress output. */
  onPhase?: (phase: Phase, ms: number) => void;
  /** The new version starts from its init; see SwapOptions. */
  freshState?: boolean;
  /**
   * Called when an instance goes live through the swap (at commit, and again
   * if probation sends the state back), with the dump it restored from: the
   * state to snapshot, with no extra dump.
   */
  onSettled?: (instance: Instance, dump: Uint8Array, stateVersion: number) => void;
}

/** Codes of the phase a failure happened in, unless the failure says timeout or memory. */
const PHASE_CODE: Record<Phase, string> = {
  prepare: ErrorCode.SWAP_COMPILE,
  quiesce: ErrorCode.SWAP_STOP,
  dump: ErrorCode.SWAP_DUMP,
  restore: ErrorCode.SWAP_RESTORE,
  cutover: ErrorCode.SWAP_RESTORE,
  commit: ErrorCode.SWAP_PROBATION,
};

/** The failures the guest names by lifecycle step, whatever phase ran the step. */
const STEP_CODE: Record<string, string> = {
  [ErrorCode.INIT_FAILED]: ErrorCode.SWAP_INIT,
  ERR_STOP_FAILED: ErrorCode.SWAP_STOP,
  ERR_DUMP_FAILED: ErrorCode.SWAP_DUMP,
  [ErrorCode.UNENCODABLE]: ErrorCode.SWAP_DUMP,
  ERR_RESTORE_FAILED: ErrorCode.SWAP_RESTORE,
  ERR_START_FAILED: ErrorCode.SWAP_RESTORE,
  [ErrorCode.TIMEOUT]: ErrorCode.SWAP_TIMEOUT,
  [ErrorCode.OOM]: ErrorCode.SWAP_OOM,
};

function phaseError(phase: Phase, err: unknown, service: string, fallback: string = PHASE_CODE[phase]): MoltError {
  const e = toMoltError(err);
  const code = STEP_CODE[e.code] ?? (e.code === ErrorCode.STATE_VERSION || e.code.startsWith("ERR_SWAP_") ? e.code : fallback);
  return new MoltError(code, `${phase} failed: ${e.message}`, { service, cause: e });
}

function info(instance: Instance): VersionInfo {
  return { version: instance.versionId, semver: instance.meta.semver, stateVersion: instance.meta.stateVersion };
}

/** Whether `next` can take state dumped at `fromStateVersion`, judged before anything changes. */
export function checkStateVersion(next: Instance, fromStateVersion: number): MoltError | undefined {
  const { stateVersion, restoresFrom, hasRestore } = next.meta;
  if (fromStateVersion === stateVersion) return undefined;
  const accepted = restoresFrom !== null ? restoresFrom.includes(fromStateVersion) : hasRestore;
  if (accepted) return undefined;
  return new MoltError(
    ErrorCode.STATE_VERSION,
    `${next.service} ${next.meta.semver} holds stateVersion ${stateVersion} and cannot restore stateVersion ${fromStateVersion}` +
      (restoresFrom !== null ? ` (it restores from ${restoresFrom.join(", ") || "none"})` : " (it has no restore)"),
    { service: next.service },
  );
}

export async function swap(req: SwapRequest): Promise<SwapReport> {
  const { slot, inventory, log } = req;
  const old = slot.instance;
  if (old === undefined) throw new MoltError(ErrorCode.SERVICE_DOWN, `${slot.name} has no live instance to swap`, { service: slot.name });
  const fresh = req.freshState === true;
  const report: SwapReport = {
    service: slot.name,
    outcome: "unchanged",
    via: req.via,
    from: info(old),
    to: null,
    blackoutMs: null,
    phases: {},
    ...(fresh ? { freshState: true as const } : {}),
  };
  // A fresh-state swap to the running version is a deliberate reset of its state, not a no-op.
  if (req.bundle.hash === old.versionId && !fresh) {
    report.to = report.from;
    return report;
  }
  const requestedAt = new Date().toISOString();
  let phase: Phase = Phase.PREPARE;
  let mark = performance.now();
  const done = (p: Phase): void => {
    const now = performance.now();
    report.phases[p] = round(now - mark);
    req.onPhase?.(p, report.phases[p] as number);
    mark = now;
  };
  const record = (outcome: Outcome, fields: Partial<VersionRecord>, next: Instance | undefined): Readonly<VersionRecord> =>
    inventory.add({
      service: slot.name,
      version: next?.versionId ?? req.bundle.hash,
      semver: next?.meta.semver ?? "?",
      stateVersion: next?.meta.stateVersion ?? -1,
      entry: req.bundle.entry,
      parent: old.versionId,
      via: req.via,
      requestedAt,
      startedAt: null,
      replacedAt: null,
      outcome,
      phases: report.phases,
      ...(fresh ? { freshState: true } : {}),
      ...fields,
    });

  let next: Instance | undefined;
  let dumped: Uint8Array | undefined;
  // The stateVersion of the state the new instance restores: the old one's, or its own when it starts fresh.
  let fromStateVersion = old.meta.stateVersion;
  let paused = false;
  let stopped = false;
  let pausedAt = 0;
  try {
    // prepare: everything that can be done while the old instance serves.
    try {
      next = await req.boot(req.bundle);
    } catch (err) {
      throw phaseError(phase, err, slot.name);
    }
    report.to = info(next);
    if (fresh) {
      dumped = await freshDump(req, next);
      fromStateVersion = next.meta.stateVersion;
    } else {
      const incompatible = checkStateVersion(next, old.meta.stateVersion);
      if (incompatible !== undefined) throw incompatible;
      await rehearse(req, old, next);
    }
    done(phase);

    phase = Phase.QUIESCE;
    slot.mailbox.pause();
    paused = true;
    pausedAt = performance.now();
    // The blackout has one budget, below the deadlines of the service's
    // callers: a message queued behind a failing swap is answered after the
    // rollback, never timed out by its caller while it still waits to run.
    const left = budget(pausedAt, req.settings.blackoutTimeoutMs);
    await drain(slot, Math.min(req.settings.drainTimeoutMs, left()));
    if (fresh) {
      stopped = true;
      // Half of what is left at most, so that the new start keeps the other half.
      const stopError = await stopBestEffort(old, Math.max(1, Math.floor(left() / 2)));
      if (stopError !== undefined) {
        report.stopError = { code: stopError.code, message: stopError.message };
        log.log("warn", "the old stop failed in a fresh-state swap; passed over", {
          service: slot.name,
          code: stopError.code,
          error: stopError.message,
        });
      }
    }
    done(phase);

    if (!fresh) {
      phase = Phase.DUMP;
      stopped = true;
      dumped = await old.dump({ stop: true, timeoutMs: left() }).catch((err: unknown) => {
        throw phaseError(phase, err, slot.name);
      });
      slot.lastDumpBytes = dumped.byteLength;
      done(phase);
    }

    phase = Phase.RESTORE;
    try {
      // A fresh instance takes back the state its init made (the dump committed below): the state it serves is the one snapshotted.
      await next.restore(dumped as Uint8Array, fromStateVersion, { start: true, timeoutMs: left() });
    } catch (err) {
      throw phaseError(phase, err, slot.name);
    }
    done(phase);

    phase = Phase.CUTOVER;
    slot.attach(next, req.bundle);
    slot.mailbox.resume();
    paused = false;
    report.blackoutMs = round(performance.now() - pausedAt);
    done(phase);
  } catch (err) {
    const e = err instanceof MoltError && (err.code.startsWith("ERR_SWAP_") || err.code === ErrorCode.STATE_VERSION) ? err : phaseError(phase, err, slot.name);
    // Rollback: the old instance still holds its state; it goes live again and takes the queue.
    if (stopped && !old.disposed) {
      await old.start().catch((startErr: unknown) =>
        log.log("error", "old instance failed to start again after a failed swap", { service: slot.name, error: String(startErr) }),
      );
    }
    if (paused) {
      slot.mailbox.resume();
      report.blackoutMs = round(performance.now() - pausedAt);
    }
    next?.dispose();
    report.outcome = "rolled-back";
    report.error = { code: e.code, message: e.message, phase };
    record(Outcome.ROLLED_BACK, { code: e.code, message: e.message, ...(report.blackoutMs === null ? {} : { blackoutMs: report.blackoutMs }) }, next);
    saveQuietly(inventory, log);
    log.log("warn", "swap rolled back", { service: slot.name, code: e.code, phase, error: e.message });
    return report;
  }

  // commit: record, then probation, then the old isolate goes.
  const now = new Date().toISOString();
  inventory.replaced(slot.name, now);
  const committed = record(Outcome.LIVE, { startedAt: now, blackoutMs: report.blackoutMs as number, ...(fresh ? dropped(report, old) : {}) }, next);
  saveQuietly(inventory, log);
  // Snapshot now, not after probation: a snapshot taken during probation is newer and must not be overwritten.
  req.onSettled?.(next, dumped as Uint8Array, fromStateVersion);
  report.outcome = "committed";
  const verdict = await probation(req, next, old, committed);
  if (verdict !== undefined) {
    report.outcome = verdict.outcome;
    report.error = { code: verdict.error.code, message: verdict.error.message, phase: Phase.COMMIT };
  }
  done(Phase.COMMIT);
  inventory.update(committed, { phases: report.phases });
  saveQuietly(inventory, log);
  return report;
}

/**
 * A fresh-state swap's state: the new instance's own `init`, dumped, before
 * the blackout and without touching the old instance. The dump is what the
 * new instance restores at cutover and what is snapshotted at commit, so a
 * crash after the swap resumes from the fresh state, never the dropped one.
 */
async function freshDump(req: SwapRequest, next: Instance): Promise<Uint8Array> {
  try {
    await next.init();
  } catch (err) {
    throw phaseError(Phase.PREPARE, err, req.slot.name, ErrorCode.SWAP_INIT);
  }
  let dumped: Uint8Array;
  try {
    dumped = await next.dump();
  } catch (err) {
    throw phaseError(Phase.DUMP, err, req.slot.name);
  }
  req.slot.lastDumpBytes = dumped.byteLength;
  // The rehearsal of a fresh start: a restore that refuses this state fails here, with nothing paused (see rehearse).
  if (dumped.byteLength <= REHEARSAL_MAX_BYTES) {
    try {
      await next.restore(dumped, next.meta.stateVersion);
    } catch (err) {
      throw phaseError(Phase.RESTORE, err, req.slot.name);
    }
  }
  return dumped;
}

/** What a fresh-state swap's record says beside `freshState`: what was dropped, and the old stop's failure if it had one. */
function dropped(report: SwapReport, old: Instance): Pick<VersionRecord, "message" | "code"> {
  const message = `started from init; the state of ${old.meta.semver} was dropped`;
  const failed = report.stopError;
  return failed === undefined ? { message } : { code: failed.code, message: `${message}; its stop failed: ${failed.message}` };
}

/**
 * The old `stop` of a fresh-state swap, within `timeoutMs`: a failure is
 * returned, not thrown. The operator asked to drop this instance because
 * something in it is broken; a stop that throws or hangs must not keep it
 * in place, and disposing the isolate at commit ends whatever it left
 * running (timers, a stop still pending).
 */
async function stopBestEffort(old: Instance, timeoutMs: number): Promise<MoltError | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new MoltError(ErrorCode.TIMEOUT, `stop of ${old.service} exceeded ${timeoutMs} ms`, { service: old.service })),
      timeoutMs,
    );
  });
  const stopping = old.stop();
  // Settles after the deadline when it loses the race; nobody waits for it then.
  stopping.catch(() => undefined);
  try {
    await Promise.race([stopping, deadline]);
    return undefined;
  } catch (err) {
    return toMoltError(err);
  } finally {
    clearTimeout(timer);
  }
}

/** States up to this size are rehearsed; past it the rehearsal would cost more than it saves. */
const REHEARSAL_MAX_BYTES = 256 * 1024;

/**
 * A dress rehearsal, before the blackout: the new version restores a dump
 * of the state as it is now, and the result is thrown away. It warms the
 * paths the real restore will take (V8 compiles a function on its first
 * call: the blackout should not pay for that), and a restore that throws,
 * hangs or runs out of memory on the current state fails the swap here,
 * with nothing paused. `dump` and `restore` are pure by contract; `stop`
 * and `start` have effects and are not rehearsed.
 */
async function rehearse(req: SwapRequest, old: Instance, next: Instance): Promise<void> {
  if ((req.slot.lastDumpBytes ?? 0) > REHEARSAL_MAX_BYTES) return;
  let draft: Uint8Array;
  try {
    draft = await old.dump();
  } catch (err) {
    throw phaseError(Phase.DUMP, err, req.slot.name);
  }
  req.slot.lastDumpBytes = draft.byteLength;
  if (draft.byteLength > REHEARSAL_MAX_BYTES) return;
  try {
    await next.restore(draft, old.meta.stateVersion);
  } catch (err) {
    throw phaseError(Phase.RESTORE, err, req.slot.name);
  }
}

/** The ms left of a budget that started at `from`; at least 1, so an exhausted budget fails the next step at once. */
function budget(from: number, ms: number): () => number {
  return () => Math.max(1, Math.floor(from + ms - performance.now()));
}

/** Waits for in-flight messages, including their outgoing calls, within the drain deadline. */
async function drain(slot: Slot, timeoutMs: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new MoltError(ErrorCode.SWAP_DRAIN_TIMEOUT, `${slot.mailbox.inFlight} message(s) still running after ${timeoutMs} ms`, { service: slot.name })),
      timeoutMs,
    );
  });
  try {
    await Promise.race([slot.mailbox.drained(), deadline]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Probation: for `probationMs` after cutover, errors of the new version past
 * `probationMaxErrors` send its state back to the old version (through the
 * new `dump` and the old `restore`). If the old version cannot take that
 * state, the new one stays and is marked unhealthy: state is never dropped
 * to make a rollback possible.
 */
async function probation(
  req: SwapRequest,
  next: Instance,
  old: Instance,
  committed: VersionRecord,
): Promise<{ outcome: "rolled-back" | "unhealthy"; error: MoltError } | undefined> {
  const { slot, settings, log, inventory } = req;
  if (settings.probationMs > 0) {
    const failed = await slot.watchErrors(settings.probationMs, settings.probationMaxErrors);
    if (failed !== undefined && slot.instance === next) {
      const error = new MoltError(
        ErrorCode.SWAP_PROBATION,
        `${failed.count} error(s) during probation (most recent ${failed.last.code}: ${failed.last.message})`,
        { service: slot.name, cause: failed.last },
      );
      slot.mailbox.pause();
      const left = budget(performance.now(), settings.blackoutTimeoutMs);
      let back: Uint8Array | undefined;
      try {
        await drain(slot, Math.min(settings.drainTimeoutMs, left()));
        back = await next.dump({ stop: true, timeoutMs: left() });
        await old.restore(back, next.meta.stateVersion, { start: true, timeoutMs: left() });
      } catch (err) {
        // The old version cannot take the newer state back: the new one keeps serving, marked.
        await next.start().catch(() => undefined);
        slot.mailbox.resume();
        inventory.update(committed, {
          outcome: Outcome.UNHEALTHY,
          code: error.code,
          message: `${error.message}; rollback impossible: ${toMoltError(err).message}`,
        });
        old.dispose();
        if (back !== undefined) req.onSettled?.(next, back, next.meta.stateVersion);
        log.log("error", "probation failed and the old version cannot take the state back; keeping the new one", {
          service: slot.name,
          error: committed.message,
        });
        return { outcome: "unhealthy", error };
      }
      slot.attach(old, slot.previousBundle ?? req.bundle);
      slot.mailbox.resume();
      // Recorded while the failed version is still the running record, so that it is marked replaced.
      inventory.live(old, {
        entry: slot.bundle?.entry ?? "",
        parent: next.versionId,
        via: Via.ROLLBACK,
        message: "automatic rollback after failed probation",
      });
      inventory.update(committed, { outcome: Outcome.PROBATION_FAILED, code: error.code, message: error.message });
      next.dispose();
      req.onSettled?.(old, back, next.meta.stateVersion);
      log.log("warn", "probation failed; rolled back", { service: slot.name, error: error.message });
      return { outcome: "rolled-back", error };
    }
  }
  old.dispose();
  return undefined;
}

function saveQuietly(inventory: Inventory, log: KernelLog): void {
  inventory.save().catch((err: unknown) => log.log("error", "cannot write the inventory", { error: (err as Error).message }));
}

function round(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}
