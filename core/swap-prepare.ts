// A swap's prepare phase: everything that can be done while the old
// instance still serves, so that the blackout holds only the transfer. The
// new version is checked against the state it must take, and its restore is
// rehearsed on a dump of the state as it is now (or, for a fresh start, on
// the state its own init made). Then the transfer is verified: the state
// goes to the new version and back into a scratch instance of the old one,
// and must come back the same (see verifyTransfer).

import type { VerifyResult } from "../protocol/admin.ts";
import type { Bundle } from "./bundle.ts";
import { ErrorCode, MoltError, toMoltError } from "./errors.ts";
import type { Instance } from "./instance.ts";
import type { Slot } from "./slot.ts";
import { firstDifference } from "./state-diff.ts";
import { decode } from "./wire.ts";

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
 * A dress rehearsal, before the blackout: the old instance runs the path of
 * its blackout step (`quiesce`) and the new one the path of its own
 * (`resume`) on a dump of the state as it is now, the result thrown away.
 * The blackout then runs code each isolate has just run: V8 compiles a
 * function on its first call, and a function the instance had never called
 * (`stop`'s commit of pending writes, in an instance that served no message
 * since it went live) cost 0.25 ms of a 2 ms blackout (bench/README.md). A
 * restore that throws, hangs or runs out of memory on the current state
 * fails the swap here, with nothing paused. `dump` and `restore` are pure
 * by contract and run for real; the `stop` and `start` hooks and clearing
 * timers have effects, and are left out (write sets that ended handlers
 * left queued are committed, as their turn would have).
 */
export async function rehearse(slot: Slot, old: Instance, next: Instance, blame: Blame): Promise<Uint8Array | undefined> {
  if ((lastDumpBytes.get(slot) ?? 0) > REHEARSAL_MAX_BYTES) return undefined;
  let draft: Uint8Array;
  try {
    draft = await old.dump({ rehearse: true });
  } catch (err) {
    throw blame("dump", err);
  }
  lastDumpBytes.set(slot, draft.byteLength);
  if (draft.byteLength > REHEARSAL_MAX_BYTES) return undefined;
  try {
    await next.restore(draft, old.meta.stateVersion, { rehearse: true });
  } catch (err) {
    throw blame("restore", err);
  }
  return draft;
}

/** What the verified transfer needs: the two instances, the rehearsal's dump, and a way to boot a scratch instance of the old version. */
export interface RoundTrip {
  old: Instance;
  /** The new instance, holding the rehearsal's restore of `draft`. */
  next: Instance;
  /** The old instance's dump the rehearsal restored; undefined when the rehearsal was skipped (too large). */
  draft: Uint8Array | undefined;
  /** The running version's bundle, from which the scratch instance boots. */
  oldBundle: Bundle | undefined;
  boot: (bundle: Bundle) => Promise<Instance>;
}

/**
 * The verified transfer (MINIX 3's time-traveling state transfer): the new
 * instance, which holds the rehearsal's restore, is dumped, and that dump is
 * restored into a scratch instance of the old version, booted for this and
 * disposed after. Its dump must decode to the same value as the old
 * instance's own: a restore that drops or changes a field, a dump that
 * forgets one, or a way back that loses it shows here, while the old
 * instance still serves and nothing has paused. It costs a boot, a restore
 * and two dumps in prepare, and it reuses the rehearsal's dump.
 *
 * Resolves with the result: `ok`, the `path` of the first difference (the
 * caller refuses the swap), or why it was `skipped`. A way back that fails
 * outright (the scratch instance's restore throws) is a failed round trip
 * too: it rejects with ERR_SWAP_ROUNDTRIP. A new version that cannot dump
 * the state it restored leaves nothing to take back: skipped, with the code.
 */
export async function verifyTransfer(trip: RoundTrip): Promise<VerifyResult> {
  const { old, next, draft } = trip;
  if (draft === undefined) return { ok: false, skipped: `the state is over ${REHEARSAL_MAX_BYTES / 1024} KB, too large to check in prepare` };
  // Going back to an older stateVersion, what only the newer state holds is
  // expected to be lost: there is nothing to hold the older version to.
  if (next.meta.stateVersion < old.meta.stateVersion) {
    return { ok: false, skipped: `a move to an older stateVersion (${old.meta.stateVersion} → ${next.meta.stateVersion}): what only the newer state holds is not expected back` };
  }
  const back = checkStateVersion(old, next.meta.stateVersion);
  if (back !== undefined) {
    return { ok: false, skipped: `${old.meta.semver} cannot restore stateVersion ${next.meta.stateVersion}: there is no way back to check` };
  }
  if (trip.oldBundle === undefined) return { ok: false, skipped: "the running version's bundle is not at hand" };
  let forward: Uint8Array;
  try {
    forward = await next.dump();
  } catch (err) {
    // Not this swap's failure: its transfer never dumps the new version (a
    // rollback to a version whose dump is broken is how an operator gets
    // back to it), so there is only nothing to take back.
    return { ok: false, skipped: `${next.meta.semver} could not dump the state it restored (${toMoltError(err).code})` };
  }
  if (forward.byteLength > REHEARSAL_MAX_BYTES) {
    return { ok: false, skipped: `the new version's state is over ${REHEARSAL_MAX_BYTES / 1024} KB, too large to check in prepare` };
  }
  let returned: Uint8Array;
  try {
    returned = await throughScratch(trip.oldBundle, trip, forward);
  } catch (err) {
    // The way back itself is broken (a scratch copy that cannot boot, restore
    // or dump): like a stateVersion it cannot take, there is nothing to compare.
    return { ok: false, skipped: toMoltError(err).message };
  }
  const [, , original] = decode(draft) as [number, number, unknown];
  const [, , roundTripped] = decode(returned) as [number, number, unknown];
  let path: string | undefined;
  try {
    path = firstDifference(original, roundTripped, "state");
  } catch (err) {
    if (err instanceof RangeError) return { ok: false, skipped: "the state is nested too deeply to compare" };
    throw err;
  }
  return path === undefined ? { ok: true } : { ok: false, path };
}

/** `forward` restored into a scratch instance of the old version, and that instance's dump; the instance is disposed whatever happens. */
async function throughScratch(bundle: Bundle, trip: RoundTrip, forward: Uint8Array): Promise<Uint8Array> {
  const { old, next } = trip;
  const way = `${next.meta.semver} → ${old.meta.semver}`;
  let scratch: Instance;
  try {
    scratch = await trip.boot(bundle);
  } catch (err) {
    throw roundTripFailure(old, `a scratch instance of ${old.meta.semver} could not boot`, err);
  }
  try {
    try {
      await scratch.restore(forward, next.meta.stateVersion);
    } catch (err) {
      throw roundTripFailure(old, `the way back (${way}) failed: ${old.meta.semver}'s restore refused the state ${next.meta.semver} dumped`, err);
    }
    try {
      return await scratch.dump();
    } catch (err) {
      throw roundTripFailure(old, `the way back (${way}) failed: ${old.meta.semver} could not dump the state it restored`, err);
    }
  } finally {
    scratch.dispose();
  }
}

function roundTripFailure(old: Instance, what: string, err: unknown): MoltError {
  const cause = toMoltError(err);
  return new MoltError(ErrorCode.SWAP_ROUNDTRIP, `${what} (${cause.code}: ${cause.message})`, { service: old.service, cause });
}

