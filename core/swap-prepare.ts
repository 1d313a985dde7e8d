// A swap's prepare phase: everything that can be done while the old
// instance still serves, so that the blackout holds only the transfer. The
// new version is checked against the state it must take, and its restore is
// rehearsed on a dump of the state as it is now (or, for a fresh start, on
// the state its own init made).

import { ErrorCode, MoltError } from "./errors.ts";
import type { Instance } from "./instance.ts";
import type { Slot } from "./slot.ts";

/** Names a failure by the phase it happened in (phaseError in swap.ts). */
export type Blame = (phase: "prepare" | "dump" | "restore", err: unknown, fallback?: string) => MoltError;

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

/**
 * A fresh-state swap's state: the new instance's own `init`, dumped, before
 * the blackout and without touching the old instance. The dump is what the
 * new instance restores at cutover and what is snapshotted at commit, so a
 * crash after the swap resumes from the fresh state, never the dropped one.
 */
export async function freshDump(slot: Slot, next: Instance, blame: Blame): Promise<Uint8Array> {
  try {
    await next.init();
  } catch (err) {
    throw blame("prepare", err, ErrorCode.SWAP_INIT);
  }
  let dumped: Uint8Array;
  try {
    dumped = await next.dump();
  } catch (err) {
    throw blame("dump", err);
  }
  lastDumpBytes.set(slot, dumped.byteLength);
  // The rehearsal of a fresh start: a restore that refuses this state fails here, with nothing paused (see rehearse).
  if (dumped.byteLength <= REHEARSAL_MAX_BYTES) {
    try {
      await next.restore(dumped, next.meta.stateVersion);
    } catch (err) {
      throw blame("restore", err);
    }
  }
  return dumped;
}

/** Size of each service's last dump, to judge whether a rehearsal is worth it. */
const lastDumpBytes = new WeakMap<Slot, number>();

/** Notes the size of a dump taken of `slot`'s state, for its next swap's rehearsal. */
export function noteDumpSize(slot: Slot, bytes: number): void {
  lastDumpBytes.set(slot, bytes);
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
export async function rehearse(slot: Slot, old: Instance, next: Instance, blame: Blame): Promise<void> {
  if ((lastDumpBytes.get(slot) ?? 0) > REHEARSAL_MAX_BYTES) return;
  let draft: Uint8Array;
  try {
    draft = await old.dump();
  } catch (err) {
    throw blame("dump", err);
  }
  lastDumpBytes.set(slot, draft.byteLength);
  if (draft.byteLength > REHEARSAL_MAX_BYTES) return;
  try {
    await next.restore(draft, old.meta.stateVersion);
  } catch (err) {
    throw blame("restore", err);
  }
}

