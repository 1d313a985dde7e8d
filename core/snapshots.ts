// Snapshots: a service's dump written to dataDir with its version record, so
// that a stop and start (or a crash) resumes from committed state. One file
// per service, the previous one kept; bundles are stored by content hash so
// any recorded version can be booted again, whatever happened to its source.
// The store is opened when the kernel starts, before anything is written: it
// makes dataDir private then (see tightenDataDir in disk.ts).

import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { Bundle } from "./bundle.ts";
import { readRecord, tightenDataDir, writeAtomic, writeRecordAsync } from "./disk.ts";
import { ErrorCode, MoltError } from "./errors.ts";
import type { KernelLog } from "./log.ts";

export interface Snapshot {
  service: string;
  version: string;
  semver: string;
  stateVersion: number;
  time: string;
  /** The dump envelope as the instance produced it: [DUMP_VERSION, stateVersion, value]. */
  dump: Uint8Array;
}

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
