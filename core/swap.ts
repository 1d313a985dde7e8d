// The swap: one service replaced by a new version while the runtime serves,
// one swap per service at a time. The swap prepares, then drives the
// transfer (transfer.ts: quiesce, dump, restore, cutover — the blackout),
// then commits and puts the new version on probation (probation.ts):
//
//   prepare  → compile and boot the new instance, check it can take the
//              state, rehearse its restore on a dump of the state as it is
//              now, and verify the transfer (the state goes to the new
//              version and back, and must come back the same); the old one
//              serves throughout
//   shadow   → (when asked) the new instance runs the next N messages
//              beside the old one, with no side effects, and a version
//              that answers differently is refused (shadow.ts)
//   transfer → the old instance stops and hands its state to the new one,
//              which starts and goes behind the mailbox
//   commit   → inventory, snapshot of the handed-over state, probation,
//              dispose of the old instance
//
// A failure in prepare changes nothing; one during the transfer gives the
// service back to the old instance, which still holds its state.
//
// A fresh-state swap (`freshState`, the operator's escape hatch for a
// service whose state cannot be handed over) prepares the state from the
// new version's own init instead, and the transfer stops the old instance
// best effort without dumping it: a stop that throws or hangs is recorded
// and passed over, since the old instance goes away with its state anyway.

import type { Bundle } from "./bundle.ts";
import { ErrorCode, isSwapCode, MoltError, toMoltError } from "./errors.ts";
import type { Instance } from "./instance.ts";
import { fixesField, Outcome, Via, type Inventory, type VersionRecord } from "./inventory.ts";
import type { KernelLog } from "./log.ts";
import { probation } from "./probation.ts";
import { checkStateVersion, freshDump, noteDumpSize, rehearse, verifyTransfer, type Blame } from "./swap-prepare.ts";
import { Shadow } from "./shadow.ts";
import type { Slot } from "./slot.ts";
import { round, transfer, type State } from "./transfer.ts";

export { Phase, type SwapReport, type VersionInfo } from "../protocol/admin.ts";
import { Phase, type SwapReport, type VersionInfo } from "../protocol/admin.ts";

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
  /** false: no verified transfer for this swap (`molt swap --no-verify`). Default: the config's `swap.verify`. */
  verify?: boolean;
  /** Shadow traffic: the next N messages run by both versions before the cutover (shadow.ts). Default: the config's `swap.shadow`. */
  shadow?: number;
  /** Methods the new version is meant to answer differently: reported, not counted. */
  expectChange?: readonly string[];
  /** Past this many divergences the swap is refused (ERR_SWAP_SHADOW). Default 0. */
  maxDivergence?: number;
  /** Told as the shadow compares messages. */
  onShadow?: (messages: number, of: number, divergences: number) => void;
}

export interface SwapRequest {
  slot: Slot;
  bundle: Bundle;
  via: Via;
  /** Boots an instance of `bundle` for this slot, loaded but holding no state. */
  boot: (bundle: Bundle) => Promise<Instance>;
  inventory: Inventory;
  log: KernelLog;
  settings: {
    drainTimeoutMs: number;
    blackoutTimeoutMs: number;
    probationMs: number;
    probationMaxErrors: number;
    verify?: boolean;
    shadow?: number;
    shadowTimeoutMs?: number;
  };
  /** Called as each phase ends, for progress output. */
  onPhase?: (phase: Phase, ms: number) => void;
  /** The new version starts from its init; see SwapOptions. */
  freshState?: boolean;
  /**
   * Whether prepare verifies the transfer; see SwapOptions. Default:
   * `settings.verify` (the config's `swap.verify`, itself true by default);
   * a request built without either does not verify.
   */
  verify?: boolean;
  /**
   * Called when an instance goes live through the swap (at commit, and again
   * if probation sends the state back), with the dump it restored from: the
   * state to snapshot, with no extra dump.
   */
  onSettled?: (instance: Instance, dump: Uint8Array, stateVersion: number) => void;
  /** An instance the swap stopped could not start again: it must be replaced, from `state` if given (see transfer.ts). */
  lost: (reason: MoltError, state: State | undefined) => void;
  /** Resolves once no restart of the service is under way. */
  settled: () => Promise<void>;
  /** Shadow traffic; see SwapOptions. */
  shadow?: number;
  expectChange?: readonly string[];
  maxDivergence?: number;
  onShadow?: SwapOptions["onShadow"];
}

/** Codes of the phase a failure happened in, unless the failure says timeout or memory. */
const PHASE_CODE: Record<Phase, string> = {
  prepare: ErrorCode.SWAP_COMPILE,
  shadow: ErrorCode.SWAP_SHADOW,
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
  const code = STEP_CODE[e.code] ?? (e.code === ErrorCode.STATE_VERSION || isSwapCode(e.code) ? e.code : fallback);
  return new MoltError(code, `${phase} failed: ${e.message}`, { service, cause: e });
}

export { checkStateVersion } from "./swap-prepare.ts";

/** A failure as the swap reports it: the swap's own codes as they are, anything else named by its phase. */
function swapError(phase: Phase, err: unknown, service: string): MoltError {
  return err instanceof MoltError && (isSwapCode(err.code) || err.code === ErrorCode.STATE_VERSION) ? err : phaseError(phase, err, service);
}

function info(instance: Instance): VersionInfo {
  return { version: instance.versionId, semver: instance.meta.semver, stateVersion: instance.meta.stateVersion };
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
  let mark = performance.now();
  /** A phase ended: its time recorded and, unless it failed (`quiet`), told to whoever follows the swap. */
  const done = (p: Phase, quiet = false): void => {
    const now = performance.now();
    report.phases[p] = round(now - mark);
    if (!quiet) req.onPhase?.(p, report.phases[p] as number);
    mark = now;
  };
  const record = (outcome: Outcome, fields: Partial<VersionRecord>, next: Instance | undefined): Readonly<VersionRecord> =>
    inventory.add({
      service: slot.name,
      version: next?.versionId ?? req.bundle.hash,
      semver: next?.meta.semver ?? "?",
      stateVersion: next?.meta.stateVersion ?? -1,
      ...fixesField(next?.meta.fixes),
      entry: req.bundle.entry,
      parent: old.versionId,
      via: req.via,
      requestedAt,
      startedAt: null,
      replacedAt: null,
      outcome,
      phases: report.phases,
      ...(fresh ? { freshState: true } : {}),
      ...(report.verify === undefined ? {} : { verify: report.verify }),
      ...(report.shadow === undefined ? {} : { shadow: report.shadow }),
      ...fields,
    });
  const rolledBack = (phase: Phase, error: MoltError, next: Instance | undefined): SwapReport => {
    next?.dispose();
    report.outcome = "rolled-back";
    report.error = { code: error.code, message: error.message, phase };
    record(Outcome.ROLLED_BACK, { code: error.code, message: error.message, ...(report.blackoutMs === null ? {} : { blackoutMs: report.blackoutMs }) }, next);
    saveQuietly(inventory, log);
    log.log("warn", "swap rolled back", { service: slot.name, code: error.code, phase, error: error.message });
    return report;
  };

  const blame: Blame = (phase, err, fallback) => phaseError(phase, err, slot.name, fallback);
  // prepare: everything that can be done while the old instance serves.
  let next: Instance | undefined;
  let given: State | undefined;
  try {
    try {
      next = await req.boot(req.bundle);
    } catch (err) {
      throw phaseError(Phase.PREPARE, err, slot.name);
    }
    report.to = info(next);
    if (fresh) {
      given = { dump: await freshDump(slot, next, blame), stateVersion: next.meta.stateVersion };
      report.verify = { ok: false, skipped: "fresh state: no state is handed over" };
    } else {
      const incompatible = checkStateVersion(next, old.meta.stateVersion);
      if (incompatible !== undefined) throw incompatible;
      const draft = await rehearse(slot, old, next, blame);
      if (!(req.verify ?? req.settings.verify ?? false)) {
        report.verify = { ok: false, skipped: "turned off" };
      } else {
        report.verify = await verifyTransfer({ old, next, draft, oldBundle: slot.bundle, boot: req.boot });
        if (report.verify.path !== undefined) {
          throw new MoltError(
            ErrorCode.SWAP_ROUNDTRIP,
            `the state did not survive the round trip ${old.meta.semver} → ${next.meta.semver} → ${old.meta.semver}: it differs at ${report.verify.path}`,
            { service: slot.name },
          );
        }
      }
    }
  } catch (err) {
    const error = swapError(Phase.PREPARE, err, slot.name);
    // A way back that failed outright is a failed verification without a path.
    if (error.code === ErrorCode.SWAP_ROUNDTRIP && report.verify === undefined) report.verify = { ok: false };
    return rolledBack(Phase.PREPARE, error, next);
  }
  done(Phase.PREPARE);

  // shadow: the new version beside the old one on the next N messages, off the callers' path.
  const shadowed = fresh ? 0 : (req.shadow ?? req.settings.shadow ?? 0);
  if (shadowed > 0) {
    const shadow = new Shadow(slot, old, next, {
      messages: shadowed,
      expectChange: req.expectChange ?? [],
      timeoutMs: req.settings.shadowTimeoutMs ?? 60_000,
      drainMs: req.settings.drainTimeoutMs,
      onProgress: (messages, divergences) => req.onShadow?.(messages, shadowed, divergences),
    });
    slot.shadow = shadow;
    try {
      report.shadow = await shadow.run();
    } catch (err) {
      return rolledBack(Phase.SHADOW, swapError(Phase.SHADOW, err, slot.name), next);
    } finally {
      slot.shadow = undefined;
    }
    const allowed = req.maxDivergence ?? 0;
    // A shadowed message still running in the new instance would act for real after the cutover: that instance cannot go live.
    const refused = report.shadow.divergences > allowed || shadow.stray;
    // A refused shadow keeps its time in the report, but is not announced as a phase that passed.
    done(Phase.SHADOW, refused);
    if (refused) {
      const first = report.shadow.examples.find((e) => e.expected !== true);
      return rolledBack(
        Phase.SHADOW,
        new MoltError(
          ErrorCode.SWAP_SHADOW,
          (shadow.stray && report.shadow.divergences <= allowed
            ? `a shadowed message passed its deadline in ${next.meta.semver}, whose handler may still be running: that instance cannot go live`
            : `${next.meta.semver} diverged from ${old.meta.semver} on ${report.shadow.divergences} of ${report.shadow.messages} shadowed messages (at most ${allowed} allowed)`) +
            (first === undefined ? "" : `; first: ${first.method}(${first.payload}): ${first.why}`),
          { service: slot.name },
        ),
        next,
      );
    }
  }

  // The blackout has one budget, below the deadlines of the service's
  // callers: a message queued behind a failing swap is answered after the
  // rollback, never timed out by its caller while it still waits to run.
  const moved = await transfer({
    slot,
    from: old,
    to: next,
    bundle: req.bundle,
    budget: req.settings,
    ...(given === undefined ? {} : { given }),
    onStep: done,
    lost: req.lost,
  });
  report.blackoutMs = moved.blackoutMs;
  if (!moved.ok) {
    return rolledBack(moved.step, swapError(moved.step, moved.error, slot.name), next);
  }
  if (moved.stopError !== undefined) {
    report.stopError = { code: moved.stopError.code, message: moved.stopError.message };
    log.log("warn", "the old stop failed in a fresh-state swap; passed over", { service: slot.name, code: moved.stopError.code, error: moved.stopError.message });
  }
  if (!fresh) noteDumpSize(slot, moved.state.dump.byteLength);

  // commit: record, then probation, then the old isolate goes.
  const now = new Date().toISOString();
  inventory.replaced(slot.name, now);
  const committed = record(Outcome.LIVE, { startedAt: now, blackoutMs: moved.blackoutMs, ...(fresh ? dropped(report, old) : {}) }, next);
  saveQuietly(inventory, log);
  // Snapshot now, not after probation: a snapshot taken during probation is newer and must not be overwritten.
  req.onSettled?.(next, moved.state.dump, moved.state.stateVersion);
  report.outcome = "committed";
  const verdict = await probation({ ...req, next, old, committed });
  if (verdict !== undefined) {
    report.outcome = verdict.outcome;
    report.error = { code: verdict.error.code, message: verdict.error.message, phase: Phase.COMMIT };
    if (verdict.blackoutMs !== null) report.rollbackBlackoutMs = verdict.blackoutMs;
  }
  done(Phase.COMMIT);
  inventory.update(committed, { phases: report.phases });
  saveQuietly(inventory, log);
  return report;
}

/** What a fresh-state swap's record says beside `freshState`: what was dropped, and the old stop's failure if it had one. */
function dropped(report: SwapReport, old: Instance): Pick<VersionRecord, "message" | "code"> {
  const message = `started from init; the state of ${old.meta.semver} was dropped`;
  const failed = report.stopError;
  return failed === undefined ? { message } : { code: failed.code, message: `${message}; its stop failed: ${failed.message}` };
}

function saveQuietly(inventory: Inventory, log: KernelLog): void {
  inventory.save().catch((err: unknown) => log.log("error", "cannot write the inventory", { error: (err as Error).message }));
}
