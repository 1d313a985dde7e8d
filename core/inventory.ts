// The inventory: the history of versions of every service — what runs now,
// what ran, what replaced what, and how each swap ended. It answers "which
// version runs here, and how did it get there", and survives restarts in
// dataDir. Writes happen after a swap's blackout, never during it.

import { join } from "node:path";
import { readRecord, writeRecordAsync } from "./disk.ts";
import type { KernelLog } from "./log.ts";

/** How a record came to be. */
export const Via = { START: "start", SWAP: "swap", ROLLBACK: "rollback", RESTART: "restart" } as const;
export type Via = (typeof Via)[keyof typeof Via];

/** How the attempt to run a version ended. */
export const Outcome = {
  /** Running now, or ran until it was replaced. */
  LIVE: "live",
  /** A swap to it failed and the previous version kept serving. */
  ROLLED_BACK: "rolled-back",
  /** It failed its probation and the previous version took its state back. */
  PROBATION_FAILED: "probation-failed",
  /** It failed its probation but the previous version could not take its state: it stays, marked. */
  UNHEALTHY: "unhealthy",
} as const;
export type Outcome = (typeof Outcome)[keyof typeof Outcome];

export interface VersionRecord {
  /** Position in the service's history, from 1. */
  seq: number;
  service: string;
  /** Content hash of the bundle: the version id. */
  version: string;
  semver: string;
  stateVersion: number;
  entry: string;
  /** The version this one replaced (or tried to), null for the first. */
  parent: string | null;
  via: Via;
  requestedAt: string;
  /** When it went live; null if it never did. */
  startedAt: string | null;
  replacedAt: string | null;
  outcome: Outcome;
  code?: string;
  message?: string;
  blackoutMs?: number;
  phases?: Record<string, number>;
}

interface InventoryFile {
  services: Record<string, VersionRecord[]>;
}

export class Inventory {
  readonly #path: string;
  readonly #services: Record<string, VersionRecord[]>;

  private constructor(path: string, services: Record<string, VersionRecord[]>) {
    this.#path = path;
    this.#services = services;
  }

  /** Opens the inventory in `dataDir`, or an empty one. A corrupt file falls back to the previous copy. */
  static open(dataDir: string, log?: KernelLog): Inventory {
    const path = join(dataDir, "inventory.msgpack");
    const read = readRecord<InventoryFile>(path, "inventory");
    if (read?.recoveredFrom !== undefined) {
      log?.log("error", "inventory file corrupt; using the previous copy", { path, error: read.recoveredFrom.message });
    }
    return new Inventory(path, read?.value.services ?? {});
  }

  history(service: string): readonly VersionRecord[] {
    return this.#services[service] ?? [];
  }

  /** The record of the version running now (the last live one). */
  current(service: string): VersionRecord | undefined {
    const records = this.history(service);
    for (let i = records.length - 1; i >= 0; i--) {
      const r = records[i] as VersionRecord;
      if ((r.outcome === Outcome.LIVE || r.outcome === Outcome.UNHEALTHY) && r.replacedAt === null) return r;
    }
    return undefined;
  }

  /**
   * The version a rollback without `--to` goes back to: the last other
   * version that ran and was replaced in the normal way, walking back from
   * the current one. Versions that were rolled back, failed their probation
   * or never started are passed over: going "back" to one of them would
   * redeploy a failure.
   */
  previous(service: string): VersionRecord | undefined {
    const records = this.history(service);
    const current = this.current(service);
    if (current === undefined) return undefined;
    for (let i = records.indexOf(current) - 1; i >= 0; i--) {
      const r = records[i] as VersionRecord;
      if (r.version !== current.version && r.startedAt !== null && r.outcome === Outcome.LIVE) return r;
    }
    return undefined;
  }

  /** A recorded version by full id or unique prefix (as `molt history` prints it). */
  find(service: string, version: string): VersionRecord | undefined {
    const matches = this.history(service).filter((r) => r.version.startsWith(version) && r.startedAt !== null);
    const ids = new Set(matches.map((r) => r.version));
    return ids.size === 1 ? matches[matches.length - 1] : undefined;
  }

  /** Appends a record for an attempt; returns it for later updates. */
  add(record: Omit<VersionRecord, "seq">): VersionRecord {
    const records = (this.#services[record.service] ??= []);
    const full = { seq: records.length + 1, ...record };
    records.push(full);
    return full;
  }

  /** Records an instance that has just gone live, replacing the running record of the service, if any. */
  live(
    instance: { service: string; versionId: string; meta: { semver: string; stateVersion: number } },
    fields: { entry: string; parent: string | null; via: Via; code?: string; message?: string },
  ): VersionRecord {
    const now = new Date().toISOString();
    this.replaced(instance.service, now);
    return this.add({
      service: instance.service,
      version: instance.versionId,
      semver: instance.meta.semver,
      stateVersion: instance.meta.stateVersion,
      requestedAt: now,
      startedAt: now,
      replacedAt: null,
      outcome: Outcome.LIVE,
      ...fields,
    });
  }

  /** Marks the running record replaced, as of now. */
  replaced(service: string, at: string): void {
    const current = this.current(service);
    if (current !== undefined) current.replacedAt = at;
  }

  /**
   * Writes the inventory without blocking the event loop (it grows with
   * every swap). Writes are chained: each one writes the inventory as it is
   * when its turn comes, so the last write always holds the latest records.
   */
  save(): Promise<void> {
    // Saves asked for while one is waiting to start share it: it will write
    // the latest records anyway. So a burst of swaps costs two writes, not one each.
    if (this.#queued !== undefined) return this.#queued;
    const next = this.#saving
      .catch(() => undefined)
      .then(() => {
        this.#queued = undefined;
        return writeRecordAsync(this.#path, "inventory", { services: this.#services } satisfies InventoryFile);
      });
    this.#queued = next;
    this.#saving = next;
    return next;
  }

  #queued: Promise<void> | undefined;

  /** Resolves when every write asked for so far has landed. */
  flush(): Promise<void> {
    return this.#saving.catch(() => undefined);
  }

  #saving: Promise<void> = Promise.resolve();

  toJSON(): InventoryFile {
    return { services: this.#services };
  }
}
