// Snapshots: a service's dump written to dataDir with its version record, so
// that a stop and start (or a crash) resumes from committed state. A live
// service is dumped through its mailbox, between two of its messages, each
// service on its own, so one failure never touches another's snapshot. One file
// per service, the previous one kept; bundles are stored by content hash so
// any recorded version can be booted again, whatever happened to its source.
// The store is opened when the kernel starts, before anything is written: it
// makes dataDir private then (see tightenDataDir in disk.ts).

import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { Bundle } from "./bundle.ts";
import { readRecord, tightenDataDir, writeAtomic, writeRecordAsync } from "./disk.ts";
import { ErrorCode, MoltError, toMoltError } from "./errors.ts";
import type { Instance } from "./instance.ts";
import type { KernelLog } from "./log.ts";
import type { Slot } from "./slot.ts";
import { betweenMessages } from "./transfer.ts";

export interface Snapshot {
  service: string;
  version: string;
  semver: string;
  stateVersion: number;
  time: string;
  /** The dump envelope as the instance produced it: [DUMP_VERSION, stateVersion, value, codec?]. */
  dump: Uint8Array;
}

export type { SnapshotResult, SnapshotWritten } from "../protocol/admin.ts";
import type { SnapshotResult, SnapshotWritten } from "../protocol/admin.ts";

export class SnapshotStore {
  readonly #dir: string;
  readonly #log: KernelLog | undefined;

  constructor(dataDir: string, log?: KernelLog) {
    this.#dir = dataDir;
    this.#log = log;
    const tightened = tightenDataDir(dataDir);
    if (tightened.length > 0) {
      log?.log("info", "dataDir was readable by other users; made it private (folders 0700, files 0600)", { dataDir, paths: tightened.length });
    }
  }

  /**
   * Writes a snapshot without blocking the event loop. Writes of one service
   * are chained, so an older snapshot never lands after a newer one.
   */
  write(snapshot: Snapshot): Promise<void> {
    const previous = this.#writing.get(snapshot.service) ?? Promise.resolve();
    const next = previous
      .catch(() => undefined)
      .then(() => writeRecordAsync(join(this.#dir, "snapshots", `${snapshot.service}.msgpack`), "snapshot", snapshot));
    this.#writing.set(snapshot.service, next);
    return next;
  }

  readonly #writing = new Map<string, Promise<void>>();

  /**
   * Writes a dump as the service's snapshot, to boot `instance`'s version
   * from. `stateVersion` is the dump's own, which may be older than the
   * instance's: a swap's snapshot is the dump the new version restored from.
   */
  keep(slot: Slot, instance: Instance, dump: Uint8Array, stateVersion: number = instance.meta.stateVersion): Promise<void> {
    return this.write({
      service: slot.name,
      version: instance.versionId,
      semver: instance.meta.semver,
      stateVersion,
      time: new Date().toISOString(),
      dump,
    });
  }

  /**
   * Dumps a live service between two of its messages and writes the dump as
   * its snapshot. A failure (the service down, its dump failing) rejects
   * this call only: no other service's snapshot depends on it.
   */
  async take(slot: Slot): Promise<SnapshotWritten> {
    // Between two messages: held and drained, so that no handler is halfway
    // through (awaiting) when the state is dumped, as messages handed to the
    // instance in one batch could otherwise be.
    const { written, result } = await betweenMessages(slot, slot.spec.limits.timeoutMs, ErrorCode.TIMEOUT, async () => {
      const current = slot.instance;
      if (current === undefined || current.disposed) {
        const why = slot.failure === undefined ? "" : ` (${slot.failure.code}: ${slot.failure.message})`;
        throw new MoltError(ErrorCode.SERVICE_DOWN, `${slot.name} is down${why}: nothing to snapshot`, { service: slot.name, cause: slot.failure });
      }
      // A swap writes the state it hands over itself, after this would.
      if (slot.transferring !== undefined) throw new MoltError(ErrorCode.SWAP_BUSY, `${slot.name} is being swapped: its swap writes the snapshot`, { service: slot.name });
      const dump = await current.dump();
      return {
        // Queued for writing before the hold is released, so before any later transfer can start: its snapshot is written after this one.
        written: this.keep(slot, current, dump),
        result: { service: slot.name, version: current.versionId, stateVersion: current.meta.stateVersion, bytes: dump.byteLength } satisfies SnapshotWritten,
      };
    });
    await written;
    return result;
  }

  /**
   * Snapshots every service, each on its own: one that is down or cannot
   * dump gets an `error` entry (and a log line), and every other is written
   * all the same.
   */
  takeAll(slots: Iterable<Slot>): Promise<SnapshotResult[]> {
    return Promise.all(
      [...slots].map((slot) =>
        this.take(slot).catch((err: unknown): SnapshotResult => {
          const { code, message } = toMoltError(err);
          // A service that is down was logged when it went down; the periodic snapshot must not repeat that every time.
          if (code !== ErrorCode.SERVICE_DOWN) this.#log?.log("error", "snapshot failed", { service: slot.name, code, error: message });
          return { service: slot.name, error: { code, message } };
        }),
      ),
    );
  }

  /** The last good snapshot of a service; a corrupt file is reported and the previous one used. */
  read(service: string): Snapshot | undefined {
    const path = join(this.#dir, "snapshots", `${service}.msgpack`);
    try {
      const read = readRecord<Snapshot>(path, "snapshot");
      if (read?.recoveredFrom !== undefined) {
        this.#log?.log("error", "snapshot corrupt; using the previous one", { service, path, error: read.recoveredFrom.message });
      }
      return read?.value;
    } catch (err) {
      this.#log?.log("error", "no readable snapshot; starting from init", { service, path, error: (err as Error).message });
      return undefined;
    }
  }

  saveBundle(bundle: Bundle): void {
    const path = this.#bundlePath(bundle.hash);
    if (!existsSync(path)) writeAtomic(path, bundle.code);
  }

  loadBundle(hash: string, entry: string): Bundle {
    const path = this.#bundlePath(hash);
    if (!existsSync(path)) throw new MoltError(ErrorCode.NO_VERSION, `no stored bundle for version ${hash.slice(0, 12)}`);
    const code = readFileSync(path, "utf8");
    if (createHash("sha256").update(code).digest("hex") !== hash) {
      throw new MoltError(ErrorCode.CORRUPT, `stored bundle ${path} does not match its content hash`);
    }
    return { code, hash, entry };
  }

  #bundlePath(hash: string): string {
    return join(this.#dir, "bundles", `${hash}.js`);
  }
}
