// The transfer: the one way a service's state moves from one instance to
// another behind its mailbox, as OTP's release handler moves a process
// through suspend, code_change and resume whichever way it goes. A swap, a
// probation's way back, and any later handover or cutover are drivers of
// this one primitive:
//
//   quiesce  → hold the mailbox (messages queue, none lost), let in-flight
//              messages finish                              ← blackout starts
//   dump     → `from` stops and hands over its state (one crossing); or, for
//              a given state, `from` only stops, best effort
//   restore  → `to` takes the state and starts (one crossing)
//   cutover  → `to` goes behind the mailbox; the hold is released ← blackout ends
//
// A failure before cutover gives the service back to `from`: started again
// only if it was stopped, and, if it cannot start, handed to the caller's
// `lost` as a dead instance with the state it dumped, so a stopped instance
// never serves. Whatever happens, the blackout is measured and the hold is
// released; `to` is the caller's to keep or dispose.

import type { Bundle } from "./bundle.ts";
import { ErrorCode, MoltError, toMoltError } from "./errors.ts";
import type { Instance } from "./instance.ts";
import type { Slot } from "./slot.ts";

export const Step = { QUIESCE: "quiesce", DUMP: "dump", RESTORE: "restore", CUTOVER: "cutover" } as const;
export type Step = (typeof Step)[keyof typeof Step];

/** A state in hand: a dump envelope and the stateVersion it was written at. */
export interface State {
  dump: Uint8Array;
  stateVersion: number;
}

export interface TransferPlan {
  slot: Slot;
  from: Instance;
  to: Instance;
  /** What goes behind the mailbox with `to`. */
  bundle: Bundle;
  /** The drain's own deadline, and the whole blackout's; the drain gets the smaller. */
  budget: { drainTimeoutMs: number; blackoutTimeoutMs: number };
  /** The state `to` starts from instead of `from`'s: `from` is then stopped best effort and never dumped. */
  given?: State;
  /** Called as each step ends. */
  onStep?: (step: Step) => void;
  /** `from` was stopped and cannot start again: it must be replaced, from `state` when the dump got that far. */
  lost: (reason: MoltError, state: State | undefined) => void;
}

export type TransferResult =
  | { ok: true; blackoutMs: number; state: State; stopError?: MoltError }
  | { ok: false; blackoutMs: number | null; step: Step; error: MoltError; /** What `from` dumped before the failure, if it got that far. */ state?: State };

export async function transfer(plan: TransferPlan): Promise<TransferResult> {
  const { slot, from, to, budget } = plan;
  const release = slot.mailbox.hold();
  const heldAt = performance.now();
  const left = (): number => Math.max(1, Math.floor(heldAt + budget.blackoutTimeoutMs - performance.now()));
  // From here on, `from` dying is this transfer's to handle (see Slot.transferring).
  slot.transferring = from;
  let step: Step = Step.QUIESCE;
  let stopped = false;
  let state: State | undefined;
  let stopError: MoltError | undefined;
  try {
    await drain(slot, Math.min(budget.drainTimeoutMs, left()));
    if (plan.given !== undefined) {
      stopped = true;
      // Half of what is left at most, so that the new start keeps the other half.
      stopError = await stopBestEffort(from, Math.max(1, Math.floor(left() / 2)));
      state = plan.given;
    }
    plan.onStep?.(step);
    if (state === undefined) {
      step = Step.DUMP;
      stopped = true;
      state = { dump: await from.dump({ stop: true, timeoutMs: left() }), stateVersion: from.meta.stateVersion };
      plan.onStep?.(step);
    }
    step = Step.RESTORE;
    await to.restore(state.dump, state.stateVersion, { start: true, timeoutMs: left() });
    plan.onStep?.(step);
    step = Step.CUTOVER;
    // `from` may have died since its dump: `to` holds the state all the same.
    slot.attach(to, plan.bundle);
  } catch (err) {
    const error = toMoltError(err);
    await giveBack(plan, error, stopped, plan.given === undefined ? state : undefined);
    slot.transferring = undefined;
    release();
    return { ok: false, blackoutMs: round(performance.now() - heldAt), step, error, ...(state === undefined || plan.given !== undefined ? {} : { state }) };
  }
  slot.transferring = undefined;
  release();
  const blackoutMs = round(performance.now() - heldAt);
  plan.onStep?.(Step.CUTOVER);
  return { ok: true, blackoutMs, state, ...(stopError === undefined ? {} : { stopError }) };
}

/**
 * A transfer that failed gives the service back to `from`: started again if
 * it was stopped; if it died meanwhile or cannot start, handed over to be
 * replaced (from `state` when the dump got that far) before the hold is
 * released, so a stopped or dead instance never serves.
 */
async function giveBack(plan: TransferPlan, error: MoltError, stopped: boolean, state: State | undefined): Promise<void> {
  const { from, slot } = plan;
  if (slot.instance !== from) return;
  if (from.disposed) {
    plan.lost(new MoltError(error.code, `${slot.name}'s instance ended during a transfer: ${error.message}`, { service: slot.name, cause: error }), state);
    return;
  }
  if (!stopped) return;
  try {
    await from.start();
  } catch (err) {
    const e = toMoltError(err);
    if (slot.instance !== from) return;
    from.dispose();
    plan.lost(new MoltError(e.code, `${slot.name} could not start again after a failed transfer (${error.code}): ${e.message}`, { service: slot.name, cause: e }), state);
  }
}

/**
 * Runs `step` between two of the service's messages: its mailbox held and
 * drained, so no handler is halfway through (awaiting) while `step` looks at
 * the instance, and released after, whatever `step` does. A snapshot and a
 * shadow's start and end take the state this way.
 */
export async function betweenMessages<T>(slot: Slot, timeoutMs: number, code: string, step: () => Promise<T>): Promise<T> {
  const release = slot.mailbox.hold();
  try {
    await drain(slot, timeoutMs, code);
    return await step();
  } finally {
    release();
  }
}

/** Waits for in-flight messages, including their outgoing calls, within the drain deadline (past it: `code`). */
export async function drain(slot: Slot, timeoutMs: number, code: string = ErrorCode.SWAP_DRAIN_TIMEOUT): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new MoltError(code, `${slot.mailbox.inFlight} message(s) still running after ${timeoutMs} ms`, { service: slot.name })),
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
 * `from`'s stop when it hands over no state, within `timeoutMs`: a failure
 * is returned, not thrown. Its state is being dropped because something in
 * it is broken; a stop that throws or hangs must not keep it in place, and
 * disposing the isolate afterwards ends whatever it left running.
 */
async function stopBestEffort(from: Instance, timeoutMs: number): Promise<MoltError | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new MoltError(ErrorCode.TIMEOUT, `stop of ${from.service} exceeded ${timeoutMs} ms`, { service: from.service })),
      timeoutMs,
    );
  });
  const stopping = from.stop();
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

export function round(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}
