// The inventory: the history of versions of every service — what runs now,
// what ran, what replaced what, and how each swap ended. It answers "which
// version runs here, and how did it get there", and survives restarts in
// dataDir (as a base and an append-only log of changes: inventory-log.ts).
// Writes happen after a swap's blackout, never during it.

import { InventoryLog, type CompactionPolicy, type Frame } from "./inventory-log.ts";
import { ErrorCode, MoltError } from "./errors.ts";
import type { KernelLog } from "./log.ts";

export { Outcome, Via, type VersionRecord } from "../protocol/admin.ts";
import { Outcome, type Via, type VersionRecord } from "../protocol/admin.ts";

export interface InventoryOptions {
  /** When the log is folded into a new base (default: inventory-log.ts); tests and benchmarks lower it. */
  compaction?: CompactionPolicy;
}

export class Inventory {
  #files: InventoryLog<VersionRecord>;
  readonly #log: KernelLog | undefined;
  /** The records as they are written, per service. */
  #records: Record<string, VersionRecord[]>;
  /** Records changed since the last write, in the order of their first change: a new record follows its predecessor in a frame. */
  readonly #changed = new Set<VersionRecord>();
  /** The seq of the last frame written or replayed. */
  #lastSeq: number;

  private constructor(files: InventoryLog<VersionRecord>, records: Record<string, VersionRecord[]>, lastSeq: number, log: KernelLog | undefined) {
    this.#files = files;
    this.#records = records;
    this.#lastSeq = lastSeq;
    this.#log = log;
  }

  /**
   * Opens the inventory in `dataDir`, or an empty one. A corrupt base falls
   * back to the previous copy; a damaged log is replayed up to the damage.
   * Either is reported on `log`.
   */
  static open(dataDir: string, log?: KernelLog, options: InventoryOptions = {}): Inventory {
    const { files, services, lastSeq } = InventoryLog.load<VersionRecord>(dataDir, log, options.compaction);
    const inventory = new Inventory(files, services, lastSeq, log);
    inventory.#reopen = () => InventoryLog.load<VersionRecord>(dataDir, log, options.compaction);
    return inventory;
  }

  #reopen: (() => { files: InventoryLog<VersionRecord>; services: Record<string, VersionRecord[]>; lastSeq: number }) | undefined;

  /**
   * Reads the inventory again from disk, for a runtime that opened it while
   * another one still ran and wrote to it (an upgrade's new runtime, a
   * standby), once that one has stopped writing. Call it before recording
   * anything: changes not yet written here are dropped.
   */
  reload(): void {
    if (this.#reopen === undefined) return;
    const { files, services, lastSeq } = this.#reopen();
    this.#files = files;
    this.#records = services;
    this.#lastSeq = lastSeq;
    this.#changed.clear();
  }

  /** Every record of a service, oldest first. Read-only: changes go through `update`, so that each reaches the log. */
  history(service: string): readonly Readonly<VersionRecord>[] {
    return this.#records[service] ?? [];
  }

  /** The record of the version running now (the last live one). */
  current(service: string): Readonly<VersionRecord> | undefined {
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
  previous(service: string): Readonly<VersionRecord> | undefined {
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
  find(service: string, version: string): Readonly<VersionRecord> | undefined {
    const matches = this.history(service).filter((r) => r.version.startsWith(version) && r.startedAt !== null);
    const ids = new Set(matches.map((r) => r.version));
    return ids.size === 1 ? matches[matches.length - 1] : undefined;
  }

  /** Appends a record for an attempt; returns it for later updates. */
  add(record: Omit<VersionRecord, "seq">): Readonly<VersionRecord> {
    const records = (this.#records[record.service] ??= []);
    // A copy: an object the caller goes on changing (a swap report's phases) changes the record only through `update`.
    const full: VersionRecord = structuredClone({ seq: records.length + 1, ...record });
    records.push(full);
    this.#changed.add(full);
    return full;
  }

  /** Changes fields of a record (its outcome when a probation ends, its phase times); written by the next `save`. */
  update(record: Readonly<VersionRecord>, fields: Partial<Omit<VersionRecord, "seq" | "service" | "version">>): void {
    const own = this.#records[record.service]?.[record.seq - 1];
    if (own !== record) throw new MoltError(ErrorCode.INTERNAL, `inventory: ${record.service} #${record.seq} is not a record of this inventory`);
    Object.assign(own, structuredClone(fields));
    this.#changed.add(own);
  }

  /** Records an instance that has just gone live, replacing the running record of the service, if any. */
  live(
    instance: { service: string; versionId: string; meta: { semver: string; stateVersion: number; fixes?: string[] } },
    fields: { entry: string; parent: string | null; via: Via; code?: string; message?: string; blackoutMs?: number },
  ): Readonly<VersionRecord> {
    const now = new Date().toISOString();
    this.replaced(instance.service, now);
    return this.add({
      service: instance.service,
      version: instance.versionId,
      semver: instance.meta.semver,
      stateVersion: instance.meta.stateVersion,
      ...fixesField(instance.meta.fixes),
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
    if (current !== undefined) this.update(current, { replacedAt: at });
  }

  /**
   * Writes what changed since the last write, without blocking the event
   * loop: one frame holding the changed records, appended to the log and
   * synced, so a write costs the same however long the history. Writes are
   * chained: each one writes the changes there are when its turn comes.
   */
  save(): Promise<void> {
    // Saves asked for while one is waiting to start share it: it will write
    // the latest changes anyway. So a burst of swaps costs two writes, not one each.
    if (this.#queued !== undefined) return this.#queued;
    const next = this.#saving
      .catch(() => undefined)
      .then(() => {
        this.#queued = undefined;
        return this.#write();
      });
    this.#queued = next;
    this.#saving = next;
    return next;
  }

  #queued: Promise<void> | undefined;

  /**
   * Folds everything into a new base now and starts a fresh log, after the
   * writes already asked for. Writes do this on their own when the log is
   * long enough; this is for a quiet moment (or a test) that wants it done.
   */
  compact(): Promise<void> {
    const next = this.#saving.catch(() => undefined).then(() => this.#compactAll());
    this.#saving = next;
    return next;
  }

  async #write(): Promise<void> {
    // Nothing can follow damage in the log: everything goes into a new base instead.
    if (this.#files.damaged) return this.#compactAll();
    if (this.#changed.size > 0) {
      const frame: Frame<VersionRecord> = { seq: ++this.#lastSeq, records: [...this.#changed] };
      this.#changed.clear();
      await this.#files.append(frame);
    }
    if (this.#files.due) {
      // The changes are on disk already: a failed compaction costs only a longer log, and is tried again on the next write.
      await this.#files.compact(this.#records, this.#lastSeq).catch((err: unknown) => {
        this.#log?.log("error", "cannot compact the inventory log", { error: (err as Error).message });
      });
    }
  }

  /** The base is encoded at the call: it holds every change made so far, frame or no frame, as of frame #lastSeq. */
  #compactAll(): Promise<void> {
    this.#changed.clear();
    return this.#files.compact(this.#records, this.#lastSeq);
  }

  /** Resolves when every write asked for so far has landed. */
  flush(): Promise<void> {
    return this.#saving.catch(() => undefined);
  }

  #saving: Promise<void> = Promise.resolve();

  /** Frames in the current log, for tests and benchmarks. */
  get logFrames(): number {
    return this.#files.frames;
  }

  toJSON(): { services: Record<string, VersionRecord[]> } {
    return { services: this.#records };
  }
}

/** A record's `fixes`: kept only when the version declares some, so records of versions that declare none stay as they were. */
export function fixesField(fixes: readonly string[] | undefined): { fixes?: string[] } {
  return fixes === undefined || fixes.length === 0 ? {} : { fixes: [...fixes] };
}
