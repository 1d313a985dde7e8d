// Probation: for `probationMs` after a swap's cutover, the new version's own
// errors are counted; past `probationMaxErrors` its state goes back to the
// old version through the same transfer the swap used, the other way. If
// the old version cannot take that state, the new one stays and is marked
// unhealthy: state is never dropped to make a rollback possible.

import { ErrorCode, MoltError } from "./errors.ts";
import type { Instance } from "./instance.ts";
import { Outcome, Via, type Inventory, type VersionRecord } from "./inventory.ts";
import type { KernelLog } from "./log.ts";
import type { Slot } from "./slot.ts";
import { transfer, type State } from "./transfer.ts";

export interface ProbationRequest {
  slot: Slot;
  next: Instance;
  old: Instance;
  /** The inventory record of `next`, marked with the verdict. */
  committed: VersionRecord;
  inventory: Inventory;
  log: KernelLog;
  settings: { drainTimeoutMs: number; blackoutTimeoutMs: number; probationMs: number; probationMaxErrors: number };
  onSettled?: (instance: Instance, dump: Uint8Array, stateVersion: number) => void;
  lost: (reason: MoltError, state: State | undefined) => void;
  /** Resolves once no restart of the service is under way. */
  settled: () => Promise<void>;
}

export interface Verdict {
  outcome: "rolled-back" | "unhealthy";
  error: MoltError;
  /** How long the way back held the mailbox; null if it never did. */
  blackoutMs: number | null;
}

/** Resolves with undefined when the new version passed (the old instance is disposed), or with what failed and where the state went. */
export async function probation(req: ProbationRequest): Promise<Verdict | undefined> {
  const { slot, settings, next, old, committed, inventory, log } = req;
  const failed = settings.probationMs > 0 ? await watchErrors(slot, settings.probationMs, settings.probationMaxErrors) : undefined;
  if (failed === undefined) {
    old.dispose();
    return undefined;
  }
  const error = new MoltError(ErrorCode.SWAP_PROBATION, `${failed.count} error(s) during probation (most recent ${failed.last})`, {
    service: slot.name,
  });
  // The version is on probation, not one instance: one that crashed is being
  // restarted at the same version, and it is that one whose state goes back.
  await req.settled();
  const current = slot.instance;
  if (current === undefined || current.versionId !== next.versionId) {
    // Down past its restart policy, or replaced meanwhile: there is no state of the new version to hand back.
    old.dispose();
    inventory.update(committed, { outcome: Outcome.UNHEALTHY, code: error.code, message: `${error.message}; the new version is not running to hand its state back` });
    log.log("error", "probation failed and the new version is not running; nothing to roll back", { service: slot.name });
    return { outcome: "unhealthy", error, blackoutMs: null };
  }
  const back = await transfer({
    slot,
    from: current,
    to: old,
    bundle: slot.previousBundle ?? (slot.bundle as NonNullable<typeof slot.bundle>),
    budget: settings,
    lost: req.lost,
  });
  if (!back.ok) {
    // The old version cannot take the newer state back: the new one keeps serving (the transfer started it again), marked.
    old.dispose();
    inventory.update(committed, {
      outcome: Outcome.UNHEALTHY,
      code: error.code,
      message: `${error.message}; rollback impossible (${back.step}): ${back.error.message}`,
    });
    log.log("error", "probation failed and the old version cannot take the state back; keeping the new one", {
      service: slot.name,
      code: back.error.code,
      error: back.error.message,
    });
    // Still the newest state: snapshotted, so a crash does not go back to the state committed before probation.
    if (back.state !== undefined) req.onSettled?.(current, back.state.dump, back.state.stateVersion);
    return { outcome: "unhealthy", error, blackoutMs: back.blackoutMs };
  }
  // Recorded while the failed version is still the running record, so that it is marked replaced.
  inventory.live(old, {
    entry: slot.bundle?.entry ?? "",
    parent: current.versionId,
    via: Via.ROLLBACK,
    blackoutMs: back.blackoutMs,
    message: "automatic rollback after failed probation",
  });
  inventory.update(committed, { outcome: Outcome.PROBATION_FAILED, code: error.code, message: error.message });
  current.dispose();
  req.onSettled?.(old, back.state.dump, back.state.stateVersion);
  log.log("warn", "probation failed; rolled back", { service: slot.name, blackoutMs: back.blackoutMs, error: error.message });
  return { outcome: "rolled-back", error, blackoutMs: back.blackoutMs };
}

/**
 * Counts the service's own failures (errors it raised, timeouts, crashes;
 * not errors it passed on from a callee) for `ms`; resolves early once the
 * count passes `max`, or with undefined when the window ends.
 */
function watchErrors(slot: Slot, ms: number, max: number): Promise<{ count: number; last: string } | undefined> {
  return new Promise((resolve) => {
    let count = 0;
    const finish = (failed: { count: number; last: string } | undefined): void => {
      clearTimeout(timer);
      stop();
      resolve(failed);
    };
    const timer = setTimeout(() => finish(undefined), ms);
    // A failure counts against the version unless it names a service this one calls: no other name can disown it.
    const callees = new Set(Object.values(slot.spec.bindings));
    const stop = slot.observe((_ms, failure) => {
      if (failure === undefined || (failure.service !== null && failure.service !== slot.name && callees.has(failure.service))) return;
      if (++count > max) finish({ count, last: failure.code });
    });
  });
}
